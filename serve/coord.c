/* coord: the coordinator actor: sockets, clients, workers, liveness,
 * status (a request's stages: coord_request.c). */
#include "coord.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "coord_internal.h"
#include "press.h"
#include "press_spec.h"
#include "tis_error.h"
#include "wire.h"

static const char *const LAT_NAME[LAT_N] = {"queue", "prefill", "scoring", "handoff", "decode", "ttft", "total"};

static volatile sig_atomic_t s_stop = 0;
static void s_on_term(int sig) {
    (void)sig;
    s_stop = 1;
}

void coord_error_to_client(self_t *s, const wire_peer *client, uint64_t req, int code, const char *msg) {
    s->n_error++;
    wire_send_error(s->front, client, req, code, msg);
}

/* Frees a block at the worker holding it (a gone worker: nothing to free). */
void coord_release(self_t *s, const wire_peer *worker, uint64_t lease) {
    Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
    rl.lease_id = lease;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
    e.lease_release = &rl;
    wire_send(s->back, worker, &e);
}

static int64_t s_queued(const self_t *s) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_rq; i++) n += s->rq[i].st != ST_FREE;
    return n;
}

/* The record of worker p, or NULL (create: a new one, unless full). */
worker_rec *coord_worker(self_t *s, const wire_peer *p, bool create) {
    for (int i = 0; i < s->n_w; i++)
        if (coord_same(&s->w[i].peer, p)) return &s->w[i];
    if (!create || s->n_w == MAX_WORKERS) return NULL;
    worker_rec *w = &s->w[s->n_w++];
    memset(w, 0, sizeof *w);
    w->peer = *p;
    return w;
}

bool coord_role_alive(const self_t *s, Tis__Role role) {
    for (int k = 0; k < s->n_w; k++)
        if (s->w[k].role == role) return true;
    return false;
}

/* A client's release names its request and the lease (lease ids are per
 * worker: the request tells whose). */
static void s_client_release(self_t *s, const wire_peer *client, uint64_t req, uint64_t lease) {
    for (int64_t k = 0; k < CLIENT_LEASES && k < s->n_cl; k++)
        if (s->cl[k].lease == lease && s->cl[k].req == req && coord_same(&s->cl[k].client, client)) {
            coord_release(s, &s->cl[k].worker, lease);
            s->cl[k].lease = 0;
            return;
        }
}

static const char *s_role_name(Tis__Role role) {
    return role == TIS__ROLE__ROLE_PREFILL ? "prefill" : role == TIS__ROLE__ROLE_SCORER ? "scorer" : "decode";
}

/* ---- tis status ------------------------------------------------------------- */

static int s_cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (nearest rank). */
static double s_quantile(const double *v, int64_t n, double q) {
    int64_t k = (int64_t)(q * (double)n + 0.999999);
    return v[k < 1 ? 0 : k > n ? n - 1 : k - 1];
}

/* Queued and running requests per role (COORD_STAGE's roles). */
static void s_count_stages(const self_t *s, Tis__Status *st) {
    for (int64_t k = 0; k < s->n_rq; k++) {
        const request *r = &s->rq[k];
        if (r->st == ST_FREE) continue;
        switch (COORD_STAGE[r->st].role) {
        case TIS__ROLE__ROLE_PREFILL: *(r->running ? &st->prefilling : &st->waiting_prefill) += 1; break;
        case TIS__ROLE__ROLE_SCORER: *(r->running ? &st->scoring : &st->waiting_score) += 1; break;
        default: *(r->running ? &st->decoding : &st->waiting_decode) += 1; break;
        }
    }
}

static void s_send_status(self_t *s, const wire_peer *client, uint64_t req) {
    Tis__Status st = TIS__STATUS__INIT;
    Tis__WorkerStatus ws[MAX_WORKERS], *wp[MAX_WORKERS];
    char ids[MAX_WORKERS][257];
    double now = tis_now();
    uint64_t now_ms = tis_now_ms();
    for (int i = 0; i < s->n_w; i++) {
        const worker_rec *w = &s->w[i];
        tis__worker_status__init(&ws[i]);
        size_t n = w->peer.len < 256 ? w->peer.len : 256;
        memcpy(ids[i], w->peer.id, n);
        ids[i][n] = 0;
        for (size_t c = 0; c < n; c++) /* identities are bytes; status is text */
            if ((unsigned char)ids[i][c] < 32 || (unsigned char)ids[i][c] > 126) ids[i][c] = '?';
        ws[i].id = ids[i];
        ws[i].role = w->role;
        ws[i].free_slots = w->credit;
        ws[i].jobs_done = w->jobs_done;
        ws[i].last_seen_s = (double)(now_ms - w->last_seen) / 1000.0;
        for (int64_t k = 0; k < s->n_rq; k++) ws[i].running += coord_runs(&s->rq[k], &w->peer);
        wp[i] = &ws[i];
    }
    st.n_workers = (size_t)s->n_w;
    st.workers = wp;
    s_count_stages(s, &st);
    st.uptime_s = now - s->t_start;
    st.instance = s->instance;
    uint64_t *mine = malloc((size_t)(s->n_rq ? s->n_rq : 1) * sizeof *mine);
    for (int64_t k = 0; mine && k < s->n_rq; k++)
        if (s->rq[k].st != ST_FREE && coord_same(&s->rq[k].client, client)) mine[st.n_client_requests++] = s->rq[k].client_req;
    st.client_requests = mine;
    st.submitted = s->submitted;
    st.answered = s->n_reply;
    st.errors = s->n_error;
    st.busy = s->n_busy;
    st.retried = s->n_retried;
    st.handoff_bytes = s->handoff_bytes;
    st.handoffs = s->handoffs;
    st.full_kv_bytes = s->full_kv_bytes;
    st.cancelled = s->n_cancelled;
    st.contexts = coord_context_count(s);
    Tis__StageStats ss[LAT_N], *sp[LAT_N];
    int64_t n = s->n_lat < LAT_RING ? s->n_lat : LAT_RING;
    double *v = n ? malloc((size_t)n * sizeof *v) : NULL;
    for (int k = 0; k < LAT_N; k++) {
        tis__stage_stats__init(&ss[k]);
        ss[k].stage = (char *)LAT_NAME[k];
        sp[k] = &ss[k];
        if (!v) continue;
        memcpy(v, s->lat[k], (size_t)n * sizeof *v);
        qsort(v, (size_t)n, sizeof *v, s_cmp_f64);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += v[i];
        ss[k].n = (uint32_t)n;
        ss[k].mean_s = sum / (double)n;
        ss[k].p50_s = s_quantile(v, n, 0.5);
        ss[k].p90_s = s_quantile(v, n, 0.9);
        ss[k].p99_s = s_quantile(v, n, 0.99);
        ss[k].max_s = v[n - 1];
    }
    free(v);
    st.n_stages = LAT_N;
    st.stages = sp;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = req;
    out.body_case = TIS__ENVELOPE__BODY_STATUS;
    out.status = &st;
    wire_send(s->front, client, &out);
    free(mine);
}

/* ---- the front end: clients ---------------------------------------------------- */

/* A request this client has in flight or had answered recently: dropped
 * (it is answered once, when done). */
static bool s_duplicate(const self_t *s, const wire_peer *client, uint64_t req) {
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE && s->rq[i].client_req == req && coord_same(&s->rq[i].client, client)) return true;
    for (int64_t i = 0; i < s->n_recent && i < RECENT; i++)
        if (s->recent[i].req == req && coord_same(&s->recent[i].client, client)) return true;
    return false;
}

/* The first stage of a client's job, or ST_FREE (*why says what is missing). */
static stage s_first_stage(const Tis__Envelope *e, bool *head_policy, const char **why) {
    *head_policy = false;
    *why = NULL;
    if (e->body_case == TIS__ENVELOPE__BODY_EVAL_JOB) {
        if (!e->eval_job->sample || !e->eval_job->spec) *why = "an eval job needs a sample and a spec";
        return *why ? ST_FREE : ST_EVAL;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_LABEL_JOB) {
        if (!e->label_job->sample || !e->label_job->spec) *why = "a label job needs a sample and a spec";
        return *why ? ST_FREE : ST_LABEL;
    }
    const Tis__Submit *q = e->submit;
    if (q->context_id) { /* a kept context: straight to decode with the new question */
        if ((q->context && *q->context) || q->keep_context) *why = "a request naming a kept context has no context";
        return *why ? ST_FREE : ST_DECODE;
    }
    if (!q->context || !*q->context) { /* the question may be empty: the context is the whole message */
        *why = "a request needs a context";
        return ST_FREE;
    }
    press_spec sp; /* the heads are the workers': any head name may be one */
    *head_policy = q->policy && press_spec_parse(q->policy, NULL, -1, &sp) == 0 && press_spec_needs_head(&sp);
    return ST_PREFILL;
}

/* A free request slot (the table grows), or NULL. */
static request *s_slot(self_t *s) {
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st == ST_FREE) return &s->rq[i];
    if (s->n_rq == s->cap_rq) {
        int64_t nc = s->cap_rq ? 2 * s->cap_rq : 64;
        request *p = realloc(s->rq, (size_t)nc * sizeof *p);
        if (!p) return NULL;
        s->rq = p;
        s->cap_rq = nc;
    }
    return &s->rq[s->n_rq++];
}

/* A client's job (Submit, EvalJob, LabelJob): dropped when a duplicate,
 * refused with Busy when the queues are full, else queued at its first
 * stage (keeping *e). */
static void s_admit(self_t *s, const wire_peer *client, Tis__Envelope **e, double t_recv) {
    uint64_t req = (*e)->request_id;
    if (s_duplicate(s, client, req)) return;
    bool head_policy;
    const char *why;
    stage first = s_first_stage(*e, &head_policy, &why);
    if (first == ST_FREE) {
        coord_error_to_client(s, client, req, TIS_EINVAL, why);
        return;
    }
    if (s_queued(s) >= s->o->max_queue) {
        Tis__Busy b = TIS__BUSY__INIT;
        b.queue_len = (uint32_t)s_queued(s);
        b.retry_after_ms = 200;
        s->n_busy++;
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = req;
        out.body_case = TIS__ENVELOPE__BODY_BUSY;
        out.busy = &b;
        wire_send(s->front, client, &out);
        return;
    }
    request *r = s_slot(s);
    if (!r) {
        coord_error_to_client(s, client, req, TIS_ENOMEM, "coordinator out of memory");
        return;
    }
    memset(r, 0, sizeof *r);
    r->id = ++s->next_id;
    r->client = *client;
    r->client_req = req;
    r->in = coord_take(e);
    r->head_policy = head_policy;
    r->t_submit = t_recv;
    if (first == ST_DECODE && coord_context_use(s, r, r->in->submit->context_id)) {
        coord_error_to_client(s, client, req, TIS_ENOTFOUND, tis_last_error());
        msg_free(r->in);
        memset(r, 0, sizeof *r);
        return;
    }
    s->submitted++;
    coord_request_enter(s, r, first, t_recv);
}

/* A client message. */
static void s_front(self_t *s) {
    wire_peer client;
    Tis__Envelope *e = NULL;
    int rc = wire_recv(s->front, 1, &client, &e);
    double t_recv = tis_now();
    if (rc) {
        if (client.len) coord_error_to_client(s, &client, e ? e->request_id : 0, rc, tis_last_error());
        msg_free(e);
        return;
    }
    switch (e->body_case) {
    case TIS__ENVELOPE__BODY_SUBMIT:
    case TIS__ENVELOPE__BODY_EVAL_JOB:
    case TIS__ENVELOPE__BODY_LABEL_JOB: s_admit(s, &client, &e, t_recv); break;
    case TIS__ENVELOPE__BODY_LEASE_RELEASE:
        s_client_release(s, &client, e->request_id, e->lease_release->lease_id);
        break;
    case TIS__ENVELOPE__BODY_STATUS_REQUEST: s_send_status(s, &client, e->request_id); break;
    case TIS__ENVELOPE__BODY_CANCEL: coord_request_cancel(s, &client, e->request_id); break;
    default:
        coord_error_to_client(s, &client, e->request_id, TIS_EINVAL,
                          "the front end takes Submit, EvalJob, LabelJob, StatusRequest, LeaseRelease and Cancel");
    }
    msg_free(e);
}

/* ---- the back end: workers ------------------------------------------------------ */

/* Worker w is gone (why): the requests it ran start again, and so do those
 * that need the cache it held. */
static void s_drop_worker(self_t *s, int i, const char *why) {
    wire_peer gone = s->w[i].peer;
    s->w[i] = s->w[--s->n_w];
    coord_context_drop(s, &gone); /* the contexts it kept are lost with it */
    int64_t n_retry = 0, n_fail = 0;
    for (int64_t k = 0; k < s->n_rq; k++) {
        request *r = &s->rq[k];
        if (r->st == ST_FREE) continue;
        bool ran = coord_runs(r, &gone);
        bool cache_lost = COORD_STAGE[r->st].needs_holder && coord_same(&r->prefill_peer, &gone);
        if (!ran && !cache_lost) continue;
        if (coord_request_restart(s, r, cache_lost, why)) n_retry++;
        else n_fail++;
    }
    fprintf(stderr, "[coordinator] worker %.*s %s; %s\n", (int)gone.len, (const char *)gone.id, why,
            n_retry ? "its request is retried" : n_fail ? "its request fails" : "it held no request");
}

/* A worker message. */
static void s_back(self_t *s) {
    wire_peer peer;
    Tis__Envelope *e = NULL;
    int rc = wire_recv(s->back, 1, &peer, &e);
    double t_recv = tis_now(); /* after the receipt: the worker's figures end before it */
    worker_rec *w = peer.len ? coord_worker(s, &peer, true) : NULL;
    if (w) w->last_seen = tis_now_ms();
    if (rc) {
        if (peer.len) wire_send_error(s->back, &peer, e ? e->request_id : 0, rc, tis_last_error());
    } else if (!w) {
        /* more workers than MAX_WORKERS: not served */
    } else if (e->body_case == TIS__ENVELOPE__BODY_READY) {
        w->role = e->ready->role;
        w->credit = e->ready->capacity;
    } else if (e->body_case == TIS__ENVELOPE__BODY_HEARTBEAT) {
        /* a worker this coordinator has not heard READY from (it restarted,
         * the worker did not): registered from what its heartbeat says */
        if (w->role == TIS__ROLE__ROLE_UNSPECIFIED && e->heartbeat->role != TIS__ROLE__ROLE_UNSPECIFIED) {
            w->role = e->heartbeat->role;
            w->credit = e->heartbeat->capacity;
            fprintf(stderr, "[coordinator] worker %.*s joined from its heartbeat\n", (int)peer.len,
                    (const char *)peer.id);
        }
    } else if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
        coord_request_error(s, &peer, e);
    } else {
        coord_request_answer(s, w, &peer, &e, t_recv);
    }
    msg_free(e);
}

static int s_cmp_order(const void *a, const void *b) {
    const struct dispatch_order *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

/* The queued requests' slots, oldest in its queue first (a slot's index
 * says nothing of age: freed slots are reused, and serving in slot order
 * starved the requests of high slots under load). NULL when out of memory
 * (then slot order). */
static const struct dispatch_order *s_order(self_t *s, int64_t *n) {
    *n = 0;
    if (s->n_rq > s->cap_order) {
        struct dispatch_order *p = realloc(s->order, (size_t)s->n_rq * sizeof *p);
        if (!p) return NULL;
        s->order = p;
        s->cap_order = s->n_rq;
    }
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE && !s->rq[i].running) s->order[(*n)++] = (struct dispatch_order){s->rq[i].t_wait, i};
    if (*n > 1) qsort(s->order, (size_t)*n, sizeof *s->order, s_cmp_order);
    return s->order;
}

/* Queued requests, oldest first, go to the least loaded worker of their
 * stage's role: the most free slots; among equals, the one sent a job
 * longest ago (round robin). A request with no worker of its role alive for
 * wait_ms fails. */
static void s_dispatch(self_t *s) {
    int64_t n_order = 0;
    const struct dispatch_order *ord = s_order(s, &n_order);
    int64_t n = ord ? n_order : s->n_rq;
    for (int64_t q = 0; q < n; q++) {
        request *r = &s->rq[ord ? ord[q].i : q];
        while (r->st != ST_FREE && !r->running && !COORD_STAGE[r->st].on_holder) {
            Tis__Role want = COORD_STAGE[r->st].role;
            if (!coord_role_alive(s, want)) {
                if (tis_now_ms() - r->waiting_since > (uint64_t)s->o->wait_ms) {
                    char msg[64];
                    snprintf(msg, sizeof msg, "no %s worker is alive", s_role_name(want));
                    coord_error_to_client(s, &r->client, r->client_req, TIS_EIO, msg);
                    coord_request_finish(s, r);
                }
                break;
            }
            int best = -1;
            for (int k = 0; k < s->n_w; k++) {
                const worker_rec *c = &s->w[k];
                if (c->role != want || c->credit <= 0) continue;
                if (best < 0 || c->credit > s->w[best].credit ||
                    (c->credit == s->w[best].credit && c->last_job < s->w[best].last_job))
                    best = k;
            }
            if (best < 0 || coord_request_start(s, &s->w[best], r)) break;
            s_drop_worker(s, best, "could not be reached");
        }
    }
}

/* Blocks waiting for their consumer (a decode slot, a scorer) are kept
 * alive: every heartbeat their leases are renewed at the prefill worker
 * holding them. A renewal that fails (the block expired: the worker hung or
 * restarted) comes back as an Error for the request: it is prefilled again
 * while attempts remain (coord_request_error). */
static void s_renew(self_t *s) {
    for (int64_t k = 0; k < s->n_rq; k++) {
        request *r = &s->rq[k];
        if (r->st == ST_FREE || !COORD_STAGE[r->st].keep_block || !r->kept) continue;
        Tis__LeaseRenew lr = TIS__LEASE_RENEW__INIT;
        lr.lease_id = r->kept;
        lr.ttl_ms = (uint32_t)s->o->lease_ms;
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = r->id;
        e.body_case = TIS__ENVELOPE__BODY_LEASE_RENEW;
        e.lease_renew = &lr;
        wire_send(s->back, &r->prefill_peer, &e); /* a gone worker: its requests restart anyway */
    }
}

/* Liveness. Every heartbeat period the coordinator sends each worker a
 * heartbeat: with ZMQ_ROUTER_MANDATORY a worker whose process is gone (its
 * connection closed) cannot be reached, and is dropped at once. A worker
 * that is reachable but silent is dead after `liveness` periods when idle;
 * one holding a job is single-threaded and silent while it computes (a 4k
 * prefill takes seconds), so it gets job_timeout_ms. */
static void s_liveness(self_t *s) {
    uint64_t now = tis_now_ms();
    bool probe = now >= s->next_probe;
    if (probe) {
        s->next_probe = now + (uint64_t)s->o->heartbeat_ms;
        s_renew(s);
        coord_context_renew(s);
    }
    Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
    hb.time_ms = now;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    for (int k = 0; k < s->n_w; k++) {
        bool busy = false;
        for (int64_t i = 0; i < s->n_rq && !busy; i++) busy = coord_runs(&s->rq[i], &s->w[k].peer);
        uint64_t limit = busy ? (uint64_t)s->o->job_timeout_ms : (uint64_t)(s->o->heartbeat_ms * s->o->liveness);
        const char *why = NULL;
        if (probe && wire_send(s->back, &s->w[k].peer, &e)) why = "disconnected";
        else if (now - s->w[k].last_seen > limit) why = busy ? "held a job past the job timeout" : "stopped answering";
        if (why) {
            s_drop_worker(s, k, why);
            k--;
        }
    }
}

int coord_run(const coord_opts *o) {
    self_t *s = calloc(1, sizeof *s);
    if (!s) return tis_error(TIS_ENOMEM, "coordinator: out of memory");
    s->o = o;
    s->t_start = tis_now();
    if (!(s->cl = calloc(CLIENT_LEASES, sizeof *s->cl))) {
        free(s);
        return tis_error(TIS_ENOMEM, "coordinator: out of memory");
    }
    {
        uint64_t x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(tis_now() * 1e9);
        x ^= x >> 31;
        s->instance = x ? x : 1;
    }
    /* Job ids unique across instances: a worker's late answer to a job of the
     * coordinator before a restart must match no request of this one (from 1
     * up, it took the answer of another request: scripts/chaos.sh). Below
     * 2^60: ids from 2^62 up are kept contexts' renewals (coord_context.c). */
    s->next_id = (s->instance & 0x0FFFFFFFull) << 32;
    s->ctx = zmq_ctx_new();
    s->front = zmq_socket(s->ctx, ZMQ_ROUTER);
    s->back = zmq_socket(s->ctx, ZMQ_ROUTER);
    int one = 1, linger = 0, rc = 0;
    zmq_setsockopt(s->front, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->back, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->front, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->back, ZMQ_LINGER, &linger, sizeof linger);
    sec_zap *zap = NULL; /* CURVE peers are checked against the allow-list before a bind lets them in */
    if (o->sec.key || o->sec.allow) rc = sec_zap_start(&zap, s->ctx, &o->sec);
    if (!rc) rc = sec_bind(s->front, o->front, &o->sec);
    if (!rc) rc = sec_bind(s->back, o->back, &o->sec);
    struct sigaction sa = {0};
    sa.sa_handler = s_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!rc && !s_stop && !(o->stop && *o->stop) && !(o->stop_after > 0 && s->answered >= o->stop_after)) {
        zmq_pollitem_t it[2] = {{s->front, 0, ZMQ_POLLIN, 0}, {s->back, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, 2, (long)o->heartbeat_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = tis_error(TIS_EIO, "coordinator: poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) s_back(s);
        if (it[0].revents & ZMQ_POLLIN) s_front(s);
        s_liveness(s);
        s_dispatch(s);
    }
    /* Stop the workers; anything still in flight is answered with an error. */
    Tis__Shutdown sh = TIS__SHUTDOWN__INIT;
    sh.reason = "coordinator stopping";
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &sh;
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE) {
            coord_error_to_client(s, &s->rq[i].client, s->rq[i].client_req, TIS_EIO, "the coordinator is stopping");
            coord_request_finish(s, &s->rq[i]);
        }
    for (int k = 0; k < s->n_w; k++) wire_send(s->back, &s->w[k].peer, &e);
    coord_context_drop(s, NULL);
    free(s->rq);
    free(s->order);
    free(s->cl);
    zmq_close(s->front);
    zmq_close(s->back);
    sec_zap_stop(&zap);
    zmq_ctx_term(s->ctx);
    free(s);
    return rc;
}
