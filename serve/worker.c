/* worker: the pipeline worker actor: setup, the poll loop, heartbeats,
 * leases, fault injection; the roles' jobs live in worker_prefill.c,
 * worker_scorer.c and worker_decode.c. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "alloc_fault.h"
#include "arena.h"
#include "bench.h"
#include "chat.h"
#include "eval.h"
#include "fetch.h"
#include "forward.h"
#include "clock.h"
#include "decoder.h"
#include "head.h"
#include "label.h"
#include "model.h"
#include "session.h"
#include "tis_error.h"
#include "wire.h"
#include "worker_internal.h"
#ifdef TIS_HAVE_CUDA
#include "backend_cuda.h"
#endif


static volatile sig_atomic_t s_stop = 0;
static void s_on_term(int sig) {
    (void)sig;
    s_stop = 1;
}


static void s_self_destroy(self_t **p) {
    if (!p || !*p) return;
    self_t *s = *p;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    arena_destroy(&s->own);
    devpool_destroy(&s->dpool); /* (kill -9: the driver frees the pool with the process) */
    devpool_peers_free(&s->dpeers);
    free(s->stage);
    arena_peers_free(&s->peers);
    for (int64_t i = 0; i < s->n_act; i++) worker_dseq_free(&s->act[i]);
    for (int64_t i = 0; i < s->n_pend; i++) worker_dseq_free(&s->pend[i]);
    for (int64_t i = 0; i < s->n_fx; i++) fetch_free(&s->fx[i]);
    free(s->fx);
    free(s->act);
    free(s->seqp);
    free(s->pend);
    for (int i = 0; i < s->n_park; i++) session_destroy(&s->park[i].rs);
    eval_runner_destroy(&s->er);
    if (s->er_spec) tis__eval_spec__free_unpacked(s->er_spec, NULL);
    free(s->er_packed);
    forward_state_destroy(&s->st);
    chat_template_free(&s->ct);
    head_destroy(&s->h_ctx);
    head_destroy(&s->h_q);
    for (int64_t i = 0; s->h_named && i < s->o->n_head_as; i++) head_destroy(&s->h_named[i]);
    free(s->h_named);
    model_destroy(&s->m);
    decoder_destroy(&s->dec);
    free(s);
    *p = NULL;
}

/* A worker on cuda:N (devspec_check passed): a prefill worker's compressed
 * blocks go to a device pool of --arena_mb (its shm arena keeps the rest:
 * hidden rows, labels); a decode worker opens producers' pools through CUDA
 * IPC. The forward pass itself still runs on the CPU backend until the
 * device-resident forward (engine/forward.c) is in: the block crosses the
 * host/device boundary in devpool_put / devpool_peers_read. */
static int s_device_setup(self_t *s) {
    const worker_opts *o = s->o;
    if (!o->device.cuda) return 0;
    const devmem_ops *dm = devmem_workers();
    if (!dm) return tis_error(TIS_EUNSUPPORTED, "worker: cuda:%d: tis was built without CUDA", o->device.index);
    if (s->decode) devpool_peers_init(&s->dpeers, dm);
    int rc = 0;
    if (s->prefill) {
        rc = devpool_create(&s->dpool, dm, o->device.index, o->name, o->arena_bytes);
        if (!rc && !(s->stage = malloc(FETCH_CHUNK))) rc = tis_error(TIS_ENOMEM, "worker: out of memory");
    }
    if (!rc)
        fprintf(stderr, "[worker %s] cuda:%d: %s; its forward pass runs on %s%s\n", o->name, o->device.index,
                s->prefill ? "compressed blocks in a device pool, handed over by CUDA IPC"
                : s->decode ? "blocks of cuda prefill workers read through CUDA IPC" : "as a cpu scorer",
                backend_is_host(s->be) ? "the CPU" : s->be->name,
                devspec_standin() ? " (TIS_DEVMEM=host: shared memory stands in for the device, a test)" : "");
    return rc;
}

/* A decode worker on cuda:N decodes there: the weights prepared once on the
 * device (model_to_backend), each accepted block's cache uploaded
 * (worker_decode.c), the steps on the CUDA backend (engine/forward.c).
 * Prefill and scorer workers compute on the CPU: the presses' scoring and
 * compaction need host caches (engine/kv.h). TIS_WORKER_HOST_FORWARD=1
 * keeps a cuda decode worker's steps on the CPU (its blocks still come
 * through CUDA IPC): to tell the data path from the device forward on a
 * GPU machine. Run once on an H200 (scripts/gpu_pipeline_check.sh: the answers
 * equal the cpu workers'; docs/results/gpu). */
static int s_decode_backend(self_t *s) {
    const char *host = getenv("TIS_WORKER_HOST_FORWARD");
    if ((host && !strcmp(host, "1")) || devspec_standin()) return 0;
#ifdef TIS_HAVE_CUDA
    const tis_backend *be = backend_cuda(s->o->device.index);
    if (!be) return tis_error(TIS_EIO, "worker: cuda:%d: %s", s->o->device.index, tis_last_error());
    int rc = model_to_backend(s->m, be);
    if (!rc) s->be = be;
    return rc;
#else
    return tis_error(TIS_EUNSUPPORTED, "worker: cuda:%d: tis was built without CUDA", s->o->device.index);
#endif
}

static int s_self_new(self_t **out, const worker_opts *o) {
    *out = NULL;
    self_t *s = calloc(1, sizeof *s);
    if (!s) return tis_error(TIS_ENOMEM, "worker: out of memory");
    s->o = o;
    s->prefill = !strcmp(o->role, "prefill");
    s->decode = !strcmp(o->role, "decode");
    s->scorer = !strcmp(o->role, "scorer");
    int rc = 0;
    if (!s->prefill && !s->decode && !s->scorer)
        rc = tis_error(TIS_EINVAL, "worker: unknown role '%s' (prefill, scorer or decode)", o->role);
    if (!rc) rc = model_load(&s->m, o->model_path);
    s->be = backend_cpu();
    if (!rc && s->decode && o->device.cuda) rc = s_decode_backend(s);
    if (!rc && !s->scorer) rc = forward_state_new(&s->st, s->m, s->be, 512);
    if (!rc) rc = chat_template_init(&s->ct, tokenizer_chat_template(s->m->tok));
    if (!rc && s->scorer && !o->head_path && !o->head_query_path && !o->n_head_as)
        rc = tis_error(TIS_EINVAL, "worker: a scorer needs --head, --head_query or --head_as");
    if (!rc) rc = press_head_as_check(o->head_as, o->n_head_as, "worker: --head_as");
    if (!rc && (s->prefill || s->scorer) && o->n_head_as &&
        !(s->h_named = calloc((size_t)o->n_head_as, sizeof *s->h_named)))
        rc = tis_error(TIS_ENOMEM, "worker: out of memory");
    for (int64_t i = 0; !rc && s->h_named && i < o->n_head_as; i++) {
        const char *path = o->head_as[i] + press_head_as_name_len(o->head_as[i]) + 1;
        rc = head_load(&s->h_named[i], path);
        if (!rc) rc = head_check_model(s->h_named[i], s->m->config.name, s->m->config.d_model, s->m->config.n_layer,
                                       s->m->config.n_kv_head);
        if (!rc && s->h_named[i]->cfg.query_aware)
            rc = tis_error(TIS_EINVAL, "worker: --head_as %s: a query-aware head (give it to --head_query)",
                           o->head_as[i]);
    }
    if (!rc && (s->prefill || s->scorer) && o->head_path) {
        rc = head_load(&s->h_ctx, o->head_path);
        if (!rc) rc = head_check_model(s->h_ctx, s->m->config.name, s->m->config.d_model, s->m->config.n_layer,
                                       s->m->config.n_kv_head);
    }
    if (!rc && (s->prefill || s->scorer) && o->head_query_path) {
        rc = head_load(&s->h_q, o->head_query_path);
        if (!rc) rc = head_check_model(s->h_q, s->m->config.name, s->m->config.d_model, s->m->config.n_layer,
                                       s->m->config.n_kv_head);
    }
    if (!rc && (s->prefill || s->scorer)) rc = arena_create(&s->own, o->name, o->arena_bytes);
    if (!rc) rc = s_device_setup(s);
    int64_t mb = o->max_batch > 0 ? o->max_batch : 8;
    if (!rc && s->decode) rc = decoder_new(&s->dec, s->st, mb);
    if (!rc && (!(s->act = calloc((size_t)mb, sizeof *s->act)) || !(s->seqp = calloc((size_t)mb, sizeof *s->seqp)) ||
                !(s->fx = calloc((size_t)mb, sizeof *s->fx))))
        rc = tis_error(TIS_ENOMEM, "worker: out of memory");
    if (!rc) {
        s->ctx = zmq_ctx_new();
        s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
        int linger = 0;
        if (!s->sock || zmq_setsockopt(s->sock, ZMQ_ROUTING_ID, o->name, strlen(o->name)) ||
            zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger))
            rc = tis_error(TIS_EIO, "worker: cannot connect to %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
        else rc = sec_connect(s->sock, o->endpoint, &o->sec);
    }
    if (rc) {
        s_self_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

int worker_send(self_t *s, Tis__Envelope *env) {
    env->seq = ++s->seq;
    return wire_send(s->sock, NULL, env);
}

static uint32_t s_capacity(const self_t *s) {
    int64_t mb = s->o->max_batch > 0 ? s->o->max_batch : 8;
    int64_t free_slots = mb - s->n_act - s->n_pend - s->n_fx;
    return !s->decode ? 1 : (uint32_t)(free_slots > 0 ? free_slots : 0);
}

int worker_policy(const self_t *s, const char *name, press_spec *sp, const head *hd[2]) {
    hd[0] = hd[1] = NULL;
    int rc = press_spec_parse(name, s->o->head_as, s->o->n_head_as, sp);
    if (rc == TIS_ENOTFOUND) { /* perhaps a head's name: say how one is given */
        char why[256];
        snprintf(why, sizeof why, "%s", tis_last_error());
        return tis_error(TIS_ENOTFOUND, "%s (or a head this worker was not given: tis serve --head_as NAME=PATH)",
                         why);
    }
    int miss = rc ? -1 : press_spec_heads(sp, s->h_ctx, s->h_q, s->h_named, hd);
    if (miss >= 0)
        rc = tis_error(TIS_EINVAL, "policy %s: this worker has no head for %s (tis serve %s)", sp->name,
                       sp->m[miss].name, sp->head[miss] == PRESS_HEAD_QUERY ? "--head_query" : "--head");
    return rc;
}

Tis__Role worker_role(const self_t *s) {
    return s->prefill ? TIS__ROLE__ROLE_PREFILL : s->scorer ? TIS__ROLE__ROLE_SCORER : TIS__ROLE__ROLE_DECODE;
}

static int s_ready(self_t *s) {
    Tis__Ready rd = TIS__READY__INIT;
    rd.role = worker_role(s);
    rd.worker_id = (char *)s->o->name;
    rd.capacity = s_capacity(s);
    rd.device = s->o->device.cuda ? TIS__DEVICE__DEVICE_CUDA : TIS__DEVICE__DEVICE_CPU;
    rd.device_index = s->o->device.index;
    if (s->own) {
        rd.arena = (char *)arena_name(s->own);
        rd.arena_bytes = arena_size(s->own);
    }
    Tis__Envelope env = TIS__ENVELOPE__INIT;
    env.body_case = TIS__ENVELOPE__BODY_READY;
    env.ready = &rd;
    return worker_send(s, &env);
}

/* READY once the worker is free again. A send that fails (no memory for
 * the frame) does not end the worker: the loop sends it on its next turn. */
int worker_ready_again(self_t *s) {
    s->ready_owed = s_ready(s) != 0;
    return 0;
}

void worker_error(self_t *s, uint64_t request_id, int code, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, tis_last_error());
    wire_send_error(s->sock, NULL, request_id, code, msg);
}

/* A handle to [off, off + len) of our arena under `lease`. */
Tis__BlockRef worker_blockref(const self_t *s, uint64_t off, uint64_t len, uint64_t lease) {
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = (char *)arena_name(s->own);
    br.offset = off;
    br.length = len;
    br.lease_id = lease;
    br.host = (char *)fetch_host_id(); /* a consumer elsewhere fetches the bytes (fetch.h) */
    return br;
}


/* A peer's arena holding the block br (mapped once; again when its
 * producer restarted), or NULL with a message. */
arena *worker_peer(self_t *s, const Tis__BlockRef *br) { return arena_peers_get(&s->peers, br->arena, br->lease_id); }

int worker_lease_renew(self_t *s, uint64_t lease, uint32_t ttl_ms) {
    if (s->dpool && devpool_owns(s->dpool, lease)) return devpool_renew(s->dpool, lease, ttl_ms);
    return s->own ? arena_lease_renew(s->own, lease, ttl_ms) : 0;
}

void worker_lease_release(self_t *s, uint64_t lease) {
    if (s->dpool && devpool_owns(s->dpool, lease)) devpool_release(s->dpool, lease);
    else if (s->own) arena_lease_release(s->own, lease);
}

/* TIS_FAULT_ALLOC=PART:FROM: the worker whose name contains PART runs its
 * job number FROM + k - 1 (k = 1, 2, ...) with the k-th allocation after
 * the job arrives failing (base/alloc_fault.h), so successive jobs visit
 * every allocation point of a job, its reply and the READY after it (the
 * scope ends there: ending; a decode job's when its sequence is answered,
 * which is one job at a time in the tests). Each armed job then leaves
 * "alloc fault: job J: A allocations, F failed" on stderr. */
void worker_fault_alloc(const self_t *s, bool ending) {
    static int64_t armed_job = 0;
    const char *f = getenv("TIS_FAULT_ALLOC");
    const char *colon = f ? strrchr(f, ':') : NULL;
    if (!colon) return;
    char part[64];
    snprintf(part, sizeof part, "%.*s", (int)(colon - f), f);
    if (!strstr(s->o->name, part)) return;
    if (armed_job) {
        alloc_fault_disarm();
        fprintf(stderr, "alloc fault: job %lld: %lld allocations, %lld failed\n", (long long)armed_job,
                (long long)alloc_fault_seen(), (long long)alloc_fault_injected());
        armed_job = 0;
    }
    int64_t from = atoll(colon + 1), job = s->jobs + 1;
    if (ending || from < 1 || job < from) return;
    armed_job = job;
    alloc_fault_arm(job - from + 1, false);
}

/* Fault injection for tests, when a job arrives. TIS_FAULT_EXIT=PART:N:
 * the worker whose name contains PART dies (like kill -9) at its N-th job.
 * TIS_FAULT_SLEEP=PART:MS[,PART:MS...]: that worker's first job takes MS
 * longer (a long prefill: silent, but alive); MS* every job. */
static void s_fault_inject(const self_t *s) {
    worker_fault_alloc(s, false);
    const char *fault = getenv("TIS_FAULT_EXIT");
    const char *colon = fault ? strrchr(fault, ':') : NULL;
    if (colon && s->jobs + 1 == atoll(colon + 1)) {
        char part[64];
        snprintf(part, sizeof part, "%.*s", (int)(colon - fault), fault);
        if (strstr(s->o->name, part)) _exit(137);
    }
    for (const char *f = getenv("TIS_FAULT_SLEEP"); f && *f;) {
        size_t fl = strcspn(f, ",");
        char one[96];
        snprintf(one, sizeof one, "%.*s", (int)(fl < 95 ? fl : 95), f);
        char *sc = strrchr(one, ':');
        if (sc && (s->jobs == 0 || one[strlen(one) - 1] == '*')) {
            *sc = 0;
            if (strstr(s->o->name, one)) usleep((useconds_t)(atoll(sc + 1) * 1000));
        }
        f += fl + (f[fl] == ',');
    }
}

/* The jobs a worker takes, by the role that runs them. */
static const struct {
    Tis__Envelope__BodyCase body;
    Tis__Role role;
    int (*run)(self_t *s, const Tis__Envelope *env);
} JOBS[] = {
    {TIS__ENVELOPE__BODY_PREFILL_JOB, TIS__ROLE__ROLE_PREFILL, worker_prefill},
    {TIS__ENVELOPE__BODY_EVAL_JOB, TIS__ROLE__ROLE_PREFILL, worker_eval},
    {TIS__ENVELOPE__BODY_LABEL_JOB, TIS__ROLE__ROLE_PREFILL, worker_label},
    {TIS__ENVELOPE__BODY_SCORE_JOB, TIS__ROLE__ROLE_SCORER, worker_score},
    {TIS__ENVELOPE__BODY_DECODE_JOB, TIS__ROLE__ROLE_DECODE, worker_decode_accept},
};

/* Runs a job (one of JOBS) if this worker's role takes it; *refused: it
 * does not (an error). */
static int s_job(self_t *s, const Tis__Envelope *env, bool *refused) {
    s_fault_inject(s);
    s->jobs++;
    for (size_t i = 0; i < sizeof JOBS / sizeof JOBS[0]; i++)
        if (JOBS[i].body == env->body_case && JOBS[i].role == worker_role(s)) return JOBS[i].run(s, env);
    *refused = true;
    return tis_error(TIS_EINVAL, "a %s sent to a %s worker", msg_body_name(env), s->o->role);
}

int worker_run(const worker_opts *o) {
    /* the handler first: a SIGTERM while the worker sets up (model, arena)
     * then ends it through the same clean-up, its segment unlinked */
    struct sigaction sa = {0};
    sa.sa_handler = s_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    self_t *s = NULL;
    int rc = s_self_new(&s, o);
    if (rc) return rc;
    if (!s_stop) rc = s_ready(s);
    int64_t hb_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 1000;
    uint64_t next_hb = tis_now_ms() + (uint64_t)hb_ms;
    while (!rc && !s_stop) {
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        int64_t wait = (int64_t)(next_hb - tis_now_ms());
        if (s->n_act > 0 || s->n_pend > 0) wait = 0; /* generating: only look for new jobs */
        int n = zmq_poll(&it, 1, wait > 0 ? (long)wait : 0);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = tis_error(TIS_EIO, "worker: poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (s->ready_owed) worker_ready_again(s);
        if (tis_now_ms() >= next_hb) {
            Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
            hb.time_ms = tis_now_ms();
            hb.role = worker_role(s);
            hb.capacity = s_capacity(s);
            Tis__Envelope env = TIS__ENVELOPE__INIT;
            env.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat = &hb;
            worker_send(s, &env);
            if (s->own) arena_expire(s->own, tis_now_ms());
            if (s->dpool) devpool_expire(s->dpool, tis_now_ms());
            /* producers' pools unused for 10 leases: their producer is gone (or idle) */
            devpool_peers_expire(&s->dpeers, tis_now_ms(), 10ull * (s->o->lease_ms > 0 ? s->o->lease_ms : 30000));
            /* a holder busy with a long prefill answers fetches after it: 10 leases */
            worker_fetch_expire(s, 10ull * (s->o->lease_ms > 0 ? s->o->lease_ms : 30000));
            for (int i = 0; i < s->n_park; i++) /* scores that never came: drop the request */
                if (tis_now_ms() - s->park[i].since_ms > s->o->lease_ms) {
                    session_destroy(&s->park[i].rs);
                    s->park[i--] = s->park[--s->n_park];
                }
            next_hb = tis_now_ms() + (uint64_t)hb_ms;
        }
        if (n == 0) {
            if (s->decode) rc = worker_decode_step(s);
            continue;
        }
        Tis__Envelope *env = NULL;
        int r = wire_recv(s->sock, 0, NULL, &env);
        if (r) { /* a bad message: say so, keep serving */
            worker_error(s, env ? env->request_id : 0, r, "bad message");
            msg_free(env);
            continue;
        }
        bool job = false;
        switch (env->body_case) {
        case TIS__ENVELOPE__BODY_COMPRESS_JOB:
            r = s->prefill ? worker_compress(s, env)
                           : tis_error(TIS_EINVAL, "a compress job sent to a %s worker", o->role);
            if (r) worker_error(s, env->request_id, r, "compress failed");
            break;
        case TIS__ENVELOPE__BODY_PREFILL_JOB:
        case TIS__ENVELOPE__BODY_EVAL_JOB:
        case TIS__ENVELOPE__BODY_LABEL_JOB:
        case TIS__ENVELOPE__BODY_SCORE_JOB:
        case TIS__ENVELOPE__BODY_DECODE_JOB: {
            bool refused = false;
            r = s_job(s, env, &refused);
            if (r) worker_error(s, env->request_id, r, "job failed");
            /* a prefill worker is free again; a decode worker says so when a
             * sequence finishes (or at once when the job was refused) */
            job = !s->decode || r != 0 || refused;
            break;
        }
        case TIS__ENVELOPE__BODY_LEASE_RENEW:
            if (worker_lease_renew(s, env->lease_renew->lease_id, env->lease_renew->ttl_ms))
                worker_error(s, env->request_id, TIS_ENOTFOUND, "the request's block expired before its consumer came");
            for (int i = 0; i < s->n_park; i++) /* a request waiting for scores is kept as long */
                if (s->park[i].hidden_lease == env->lease_renew->lease_id) s->park[i].since_ms = tis_now_ms();
            break;
        case TIS__ENVELOPE__BODY_LEASE_RELEASE:
            worker_lease_release(s, env->lease_release->lease_id);
            break;
        case TIS__ENVELOPE__BODY_CANCEL:
            if (s->decode) rc = worker_decode_cancel(s, env->request_id);
            break;
        case TIS__ENVELOPE__BODY_BLOCK_FETCH:
            worker_fetch_serve(s, env);
            break;
        case TIS__ENVELOPE__BODY_BLOCK_CHUNK:
            if (s->decode) worker_fetch_chunk(s, env);
            break;
        case TIS__ENVELOPE__BODY_HEARTBEAT:
            break;
        case TIS__ENVELOPE__BODY_SHUTDOWN:
            s_stop = 1;
            break;
        default:
            tis_error(TIS_EINVAL, "a worker does not take %s messages", msg_body_name(env));
            worker_error(s, env->request_id, TIS_EINVAL, "unexpected message");
        }
        msg_free(env);
        if (job && !s_stop) rc = worker_ready_again(s);
        if (job) worker_fault_alloc(s, true); /* the job's scope ends with its READY */
        if (!rc && s->decode && !s_stop) rc = worker_decode_step(s);
    }
    worker_fault_alloc(s, true);
    s_self_destroy(&s);
    return rc;
}

