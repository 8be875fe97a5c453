/* label_pipeline: label jobs over a coordinator, in order. */
#include "label_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "arena.h"
#include "clock.h"
#include "pipeline_local.h"
#include "tis_error.h"
#include "wire.h"
#include "wire_eval.h"
#include "wire_label.h"

enum { SILENCE_S = 900 };

typedef struct slot {
    int state;          /* 0 to send, 1 sent, 2 labelled, 3 skipped */
    uint64_t probe;     /* status requests sent before it was (last) sent */
    label_sample ls;
    char *why;
} slot;

struct label_remote {
    const model_config *mc;
    const label_config *cfg;
    const bench_sample *const *todo;
    int64_t n, next_send, next_take, in_flight, window;
    slot *slots;
    pipeline_local pl;
    bool local;
    void *ctx, *sock;
    Tis__LabelSpec spec;
    arena_peers peers;        /* the workers' arenas, mapped once each */
    uint64_t status_seq;
    double next_probe, last_msg;
};

void label_remote_close(label_remote **p) {
    if (!p || !*p) return;
    label_remote *r = *p;
    if (r->sock) zmq_close(r->sock);
    if (r->ctx) zmq_ctx_term(r->ctx);
    if (r->local) pipeline_local_stop(&r->pl);
    arena_peers_free(&r->peers);
    for (int64_t i = 0; r->slots && i < r->n; i++) {
        label_sample_free(&r->slots[i].ls);
        free(r->slots[i].why);
    }
    free(r->slots);
    free(r);
    *p = NULL;
}

int label_remote_open(label_remote **out, const char *connect, const sec_opts *sec, int64_t workers,
                      const char *model_path, const model_config *mc, const label_config *cfg,
                      const bench_sample *const *todo, int64_t n) {
    *out = NULL;
    label_remote *r = calloc(1, sizeof *r);
    if (!r || !(r->slots = calloc((size_t)(n ? n : 1), sizeof *r->slots))) {
        free(r);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    r->mc = mc;
    r->cfg = cfg;
    r->todo = todo;
    r->n = n;
    r->window = connect ? 16 : 2 * workers + 2;
    r->pl.pid = -1;
    wire_label_spec_view(cfg, mc->name, &r->spec);
    const char *ep = connect;
    int rc = 0;
    if (!ep) {
        r->local = true;
        rc = pipeline_local_start(&r->pl, workers, model_path, NULL, NULL, 512);
        ep = r->pl.front;
    }
    if (!rc) {
        r->ctx = zmq_ctx_new();
        r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
        rc = r->sock ? sec_connect(r->sock, ep, sec) : tis_error(TIS_EIO, "cannot make a socket");
    }
    if (rc) {
        label_remote_close(&r);
        return rc;
    }
    r->last_msg = tis_now();
    r->next_probe = r->last_msg + 2.0;
    *out = r;
    return 0;
}

static void s_release(label_remote *r, uint64_t request_id, uint64_t lease) {
    Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
    rl.lease_id = lease;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = request_id;
    e.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
    e.lease_release = &rl;
    wire_send(r->sock, NULL, &e);
}

static int s_send(label_remote *r, int64_t k) {
    Tis__EvalSample sm;
    wire_eval_sample_view(r->todo[k], &sm);
    Tis__LabelJob lj = TIS__LABEL_JOB__INIT;
    lj.sample = &sm;
    lj.spec = &r->spec;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = (uint64_t)k + 1;
    e.body_case = TIS__ENVELOPE__BODY_LABEL_JOB;
    e.label_job = &lj;
    return wire_send(r->sock, NULL, &e);
}

/* One message from the coordinator (or none within 200 ms). */
static int s_pump(label_remote *r) {
    double now = tis_now();
    if (r->in_flight > 0 && now >= r->next_probe) {
        wire_send_status_request(r->sock, UINT64_MAX - r->status_seq++);
        r->next_probe = now + 2.0;
    }
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    int got = zmq_poll(&it, 1, 200);
    if (got <= 0) {
        if (r->local && !pipeline_local_alive(&r->pl))
            return tis_error(TIS_EIO, "the workers' server exited (see its messages above)");
        if (tis_now() - r->last_msg > SILENCE_S)
            return tis_error(TIS_EIO, "no answer from the coordinator for %d s", (int)SILENCE_S);
        return 0;
    }
    Tis__Envelope *e = NULL;
    if (wire_recv(r->sock, 0, NULL, &e)) {
        fprintf(stderr, "\ntis label: a bad message from the coordinator: %s\n", tis_last_error());
        msg_free(e);
        return 0;
    }
    r->last_msg = tis_now();
    int rc = 0;
    int64_t k = (int64_t)e->request_id - 1;
    if (e->body_case == TIS__ENVELOPE__BODY_STATUS) { /* jobs the coordinator lost: again */
        uint64_t q = UINT64_MAX - e->request_id;
        int64_t again = 0;
        for (int64_t i = 0; i < r->n; i++) {
            if (r->slots[i].state != 1 || r->slots[i].probe > q) continue;
            if (wire_status_holds(e->status, (uint64_t)i + 1)) continue;
            r->slots[i].state = 0;
            r->next_send = i < r->next_send ? i : r->next_send;
            r->in_flight--;
            again++;
        }
        if (again)
            fprintf(stderr, "\n[label] the coordinator lost %lld samples in flight (a restart?): sent again\n",
                    (long long)again);
    } else if (k >= 0 && k < r->n && r->slots[k].state == 1) {
        slot *sl = &r->slots[k];
        r->in_flight--;
        if (e->body_case == TIS__ENVELOPE__BODY_BUSY) {
            sl->state = 0;
            r->next_send = k < r->next_send ? k : r->next_send;
        } else if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
            rc = tis_error(TIS_EIO, "sample %s: %s", r->todo[k]->id, e->error->message ? e->error->message : "error");
        } else if (e->body_case == TIS__ENVELOPE__BODY_LABEL_DONE) {
            const Tis__LabelDone *lr = e->label_done;
            if (lr->skipped && *lr->skipped) {
                sl->state = 3;
                sl->why = strdup(lr->skipped);
            } else if (!lr->block || !lr->block->arena) {
                rc = tis_error(TIS_EIO, "sample %s: a label result without a block", r->todo[k]->id);
            } else {
                arena *a = arena_peers_get(&r->peers, lr->block->arena, lr->block->lease_id);
                const void *blk = a ? arena_at(a, lr->block->offset, lr->block->length ? lr->block->length : 1) : NULL;
                rc = blk ? wire_label_block_read(lr, r->mc, blk, lr->block->length, r->todo[k]->id, &sl->ls) : TIS_EIO;
                s_release(r, e->request_id, lr->block->lease_id);
                if (!rc) sl->state = 2;
                else rc = tis_error(rc, "sample %s: reading its labels: %s", r->todo[k]->id, tis_last_error());
            }
        } else {
            rc = tis_error(TIS_EIO, "sample %s: an unexpected %s", r->todo[k]->id, msg_body_name(e));
        }
    }
    msg_free(e);
    return rc;
}

int label_remote_next(label_remote *r, label_sample *ls, char *why, size_t why_cap) {
    if (r->next_take >= r->n) return tis_error(TIS_EINVAL, "label: no samples left");
    int64_t k = r->next_take;
    for (;;) {
        /* keep the window full (ahead of the sample we wait for) */
        for (; r->next_send < r->n && r->in_flight < r->window && r->next_send < k + r->window; r->next_send++) {
            if (r->slots[r->next_send].state != 0) continue;
            int rc = s_send(r, r->next_send);
            if (rc) return rc;
            r->slots[r->next_send].state = 1;
            r->slots[r->next_send].probe = r->status_seq;
            r->in_flight++;
        }
        slot *sl = &r->slots[k];
        if (sl->state == 2 || sl->state == 3) {
            r->next_take++;
            if (sl->state == 3) {
                snprintf(why, why_cap, "%s", sl->why ? sl->why : "skipped");
                return 1;
            }
            *ls = sl->ls;
            memset(&sl->ls, 0, sizeof sl->ls);
            return 0;
        }
        int rc = s_pump(r);
        if (rc) return rc;
    }
}
