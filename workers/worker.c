/* worker: the prefill / decode actor. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "arena.h"
#include "bench.h"
#include "chat.h"
#include "forward.h"
#include "generate.h"
#include "head.h"
#include "model.h"
#include "request.h"
#include "tis_error.h"
#include "wire.h"

enum { MAX_PEERS = 32 };

static volatile sig_atomic_t s_stop = 0;
static void s_on_term(int sig) {
    (void)sig;
    s_stop = 1;
}

typedef struct self_t {
    const worker_opts *o;
    bool prefill;
    void *ctx, *sock;
    model *m;
    forward_state *st;
    chat_template ct;
    head *h_ctx, *h_q;
    arena *own;                  /* prefill: where compressed blocks go */
    arena *peers[MAX_PEERS];     /* decode: prefill arenas, opened once */
    int n_peers;
    float *logits;               /* [n_vocab] */
    uint64_t seq;
    int64_t jobs;
} self_t;

static void s_self_destroy(self_t **p) {
    if (!p || !*p) return;
    self_t *s = *p;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    arena_destroy(&s->own);
    for (int i = 0; i < s->n_peers; i++) arena_destroy(&s->peers[i]);
    forward_state_destroy(&s->st);
    chat_template_free(&s->ct);
    head_destroy(&s->h_ctx);
    head_destroy(&s->h_q);
    model_destroy(&s->m);
    free(s->logits);
    free(s);
    *p = NULL;
}

static int s_self_new(self_t **out, const worker_opts *o) {
    *out = NULL;
    self_t *s = calloc(1, sizeof *s);
    if (!s) return tis_error(TIS_ENOMEM, "worker: out of memory");
    s->o = o;
    s->prefill = !strcmp(o->role, "prefill");
    int rc = 0;
    if (!s->prefill && strcmp(o->role, "decode"))
        rc = tis_error(TIS_EINVAL, "worker: unknown role '%s' (prefill or decode)", o->role);
    if (!rc) rc = model_load(&s->m, o->model_path);
    if (!rc) rc = forward_state_new(&s->st, s->m, backend_cpu(), 512);
    if (!rc) rc = chat_template_init(&s->ct, tokenizer_chat_template(s->m->tok));
    if (!rc && s->prefill && o->head_path) {
        rc = head_load(&s->h_ctx, o->head_path);
        if (!rc) rc = head_check_model(s->h_ctx, s->m->config.name, s->m->config.d_model, s->m->config.n_layer);
    }
    if (!rc && s->prefill && o->head_query_path) {
        rc = head_load(&s->h_q, o->head_query_path);
        if (!rc) rc = head_check_model(s->h_q, s->m->config.name, s->m->config.d_model, s->m->config.n_layer);
    }
    if (!rc && s->prefill) rc = arena_create(&s->own, o->name, o->arena_bytes);
    if (!rc && !(s->logits = malloc((size_t)s->m->config.n_vocab * sizeof(float))))
        rc = tis_error(TIS_ENOMEM, "worker: out of memory");
    if (!rc) {
        s->ctx = zmq_ctx_new();
        s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
        int linger = 0;
        if (!s->sock || zmq_setsockopt(s->sock, ZMQ_ROUTING_ID, o->name, strlen(o->name)) ||
            zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(s->sock, o->endpoint))
            rc = tis_error(TIS_EIO, "worker: cannot connect to %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
    }
    if (rc) {
        s_self_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

static int s_send(self_t *s, Tis__Envelope *env) {
    env->seq = ++s->seq;
    return wire_send(s->sock, NULL, env);
}

static int s_ready(self_t *s) {
    Tis__Ready rd = TIS__READY__INIT;
    rd.role = s->prefill ? TIS__ROLE__ROLE_PREFILL : TIS__ROLE__ROLE_DECODE;
    rd.worker_id = (char *)s->o->name;
    rd.capacity = 1;
    if (s->own) {
        rd.arena = (char *)arena_name(s->own);
        rd.arena_bytes = arena_size(s->own);
    }
    Tis__Envelope env = TIS__ENVELOPE__INIT;
    env.body_case = TIS__ENVELOPE__BODY_READY;
    env.ready = &rd;
    return s_send(s, &env);
}

static void s_error(self_t *s, uint64_t request_id, int code, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, tis_last_error());
    wire_send_error(s->sock, NULL, request_id, code, msg);
}

/* PrefillJob -> PrefillDone. */
static int s_prefill(self_t *s, const Tis__Envelope *env) {
    const Tis__Submit *q = env->prefill_job->request;
    if (!q || !q->context || !*q->context || !q->question)
        return tis_error(TIS_EINVAL, "prefill job without context or question");
    bench_sample smp = {0};
    snprintf(smp.id, sizeof smp.id, "req-%llu", (unsigned long long)env->request_id);
    smp.context = q->context;
    smp.question = q->question;
    smp.prefix = q->prefix && *q->prefix ? q->prefix : NULL;
    smp.answer_prefix = q->answer_prefix && *q->answer_prefix ? q->answer_prefix : NULL;
    request_opts ro = {.budget = q->budget, .budget_tokens = q->budget_tokens, .query_aware = q->query_aware,
                       .window = 64, .n_sink = 4, .seed = q->gen ? q->gen->seed : 42,
                       .max_new = q->gen && q->gen->max_new ? q->gen->max_new : 16,
                       .head_ctx = s->h_ctx, .head_q = s->h_q};
    int rc = press_parse(q->policy && *q->policy ? q->policy : "full", &ro.policy);
    if (rc) return rc;
    if (ro.policy.score && ro.budget <= 0 && ro.budget_tokens == 0)
        return tis_error(TIS_EINVAL, "policy %s needs a budget", ro.policy.name);
    request_prefilled rp;
    rc = request_prefill(s->st, &s->ct, tokenizer_chat_template(s->m->tok) != NULL, &smp, &ro, &rp);
    if (rc) return rc;
    size_t nb = kv_cache_block_bytes(rp.kv);
    uint64_t off = 0, lease = 0;
    arena_expire(s->own, arena_now_ms()); /* blocks nobody came for */
    rc = arena_alloc(s->own, nb ? nb : 1, s->o->lease_ms, &off, &lease);
    if (rc) {
        request_prefilled_free(&rp);
        return rc;
    }
    kv_cache_block_write(rp.kv, arena_at(s->own, off, nb));
    uint32_t *lens = malloc((size_t)rp.kv->n_stream * sizeof *lens);
    if (!lens) {
        arena_lease_release(s->own, lease);
        request_prefilled_free(&rp);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < rp.kv->n_stream; i++) lens[i] = (uint32_t)rp.kv->len[i];
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = (char *)arena_name(s->own);
    br.offset = off;
    br.length = nb;
    br.lease_id = lease;
    Tis__KvLayout lay = TIS__KV_LAYOUT__INIT;
    lay.n_layer = (uint32_t)rp.kv->n_layer;
    lay.n_kv_head = (uint32_t)rp.kv->n_kv_head;
    lay.head_dim = (uint32_t)rp.kv->head_dim;
    lay.n_stream_len = (size_t)rp.kv->n_stream;
    lay.stream_len = lens;
    lay.n_past = (uint64_t)rp.kv->n_past;
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.kv = &br;
    pd.layout = &lay;
    pd.n_ctx = (uint32_t)rp.n_ctx;
    pd.n_question_ids = (size_t)rp.n_rest;
    pd.question_ids = rp.rest;
    pd.prefill_s = rp.prefill_s + rp.compress_s;
    pd.full_kv_bytes = (uint64_t)rp.full_kv_bytes;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    out.prefill_done = &pd;
    rc = s_send(s, &out);
    free(lens);
    request_prefilled_free(&rp);
    return rc;
}

static arena *s_peer(self_t *s, const char *name) {
    for (int i = 0; i < s->n_peers; i++)
        if (!strcmp(arena_name(s->peers[i]), name)) return s->peers[i];
    if (strncmp(name, "/tis-", 5) != 0) {
        tis_error(TIS_EINVAL, "not a tis arena: '%s'", name);
        return NULL;
    }
    if (s->n_peers == MAX_PEERS) arena_destroy(&s->peers[--s->n_peers]); /* a stale peer makes room */
    arena *a = NULL;
    if (arena_open(&a, name + 5)) return NULL;
    s->peers[s->n_peers++] = a;
    return a;
}

/* DecodeJob -> Reply. */
static int s_decode(self_t *s, const Tis__Envelope *env) {
    const Tis__DecodeJob *j = env->decode_job;
    if (!j->kv || !j->layout || !j->kv->arena || j->n_question_ids == 0)
        return tis_error(TIS_EINVAL, "decode job without a block, layout or question");
    const Tis__KvLayout *lay = j->layout;
    const model_config *c = &s->m->config;
    if (lay->n_layer != c->n_layer || lay->n_kv_head != c->n_kv_head || lay->head_dim != c->head_dim ||
        lay->n_stream_len != (size_t)(c->n_layer * c->n_kv_head))
        return tis_error(TIS_EINVAL, "the block's layout does not fit this model");
    arena *a = s_peer(s, j->kv->arena);
    if (!a) return TIS_EIO;
    const void *blk = arena_at(a, j->kv->offset, j->kv->length);
    if (!blk) return TIS_ERANGE;
    int64_t ns = (int64_t)lay->n_stream_len, max_new = j->gen && j->gen->max_new ? j->gen->max_new : 16;
    int64_t *lens = malloc((size_t)ns * sizeof *lens);
    if (!lens) return tis_error(TIS_ENOMEM, "out of memory");
    for (int64_t i = 0; i < ns; i++) lens[i] = lay->stream_len[i];
    for (size_t i = 0; i < j->n_question_ids; i++)
        if (j->question_ids[i] < 0 || j->question_ids[i] >= c->n_vocab) {
            free(lens);
            return tis_error(TIS_EINVAL, "question token %d outside the vocabulary", j->question_ids[i]);
        }
    kv_cache *kv = NULL;
    double t0 = tis_now();
    int rc = kv_cache_block_read(&kv, c->n_layer, c->n_kv_head, c->head_dim, lens, (int64_t)lay->n_past, blk,
                                 j->kv->length, (int64_t)j->n_question_ids + max_new);
    double handoff_s = tis_now() - t0;
    free(lens);
    if (rc) return rc;
    answer_out ao = {0};
    const int32_t *q = j->question_ids;
    int64_t nq = (int64_t)j->n_question_ids;
    rc = generate_answers(s->st, s->m, &kv, 1, &q, &nq, max_new, s->logits, &ao);
    kv_cache_destroy(&kv);
    if (rc) return rc;
    Tis__Timing tm = TIS__TIMING__INIT;
    tm.handoff_s = handoff_s;
    tm.decode_s = ao.first_s + ao.rest_s;
    tm.ttft_s = ao.first_s;
    Tis__Reply rp = TIS__REPLY__INIT;
    rp.answer = ao.text ? ao.text : "";
    rp.n_ids = (size_t)ao.n_gen;
    rp.ids = ao.ids;
    rp.timing = &tm;
    rp.kv_bytes = (uint64_t)ao.kv_bytes;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_REPLY;
    out.reply = &rp;
    rc = s_send(s, &out);
    free(ao.text);
    free(ao.ids);
    return rc;
}

int worker_run(const worker_opts *o) {
    self_t *s = NULL;
    int rc = s_self_new(&s, o);
    if (rc) return rc;
    struct sigaction sa = {0};
    sa.sa_handler = s_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    rc = s_ready(s);
    int64_t hb_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 1000;
    uint64_t next_hb = arena_now_ms() + (uint64_t)hb_ms;
    while (!rc && !s_stop) {
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        int64_t wait = (int64_t)(next_hb - arena_now_ms());
        int n = zmq_poll(&it, 1, wait > 0 ? (long)wait : 0);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = tis_error(TIS_EIO, "worker: poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (arena_now_ms() >= next_hb) {
            Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
            hb.time_ms = arena_now_ms();
            Tis__Envelope env = TIS__ENVELOPE__INIT;
            env.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat = &hb;
            s_send(s, &env);
            if (s->own) arena_expire(s->own, arena_now_ms());
            next_hb = arena_now_ms() + (uint64_t)hb_ms;
        }
        if (n == 0) continue;
        Tis__Envelope *env = NULL;
        int r = wire_recv(s->sock, 0, NULL, &env);
        if (r) { /* a bad message: say so, keep serving */
            s_error(s, env ? env->request_id : 0, r, "bad message");
            msg_free(env);
            continue;
        }
        bool job = false;
        switch (env->body_case) {
        case TIS__ENVELOPE__BODY_PREFILL_JOB:
        case TIS__ENVELOPE__BODY_DECODE_JOB: {
            /* Fault injection for tests: TIS_FAULT_EXIT=PART:N makes the worker
             * whose name contains PART die (like kill -9) when its N-th job arrives. */
            const char *fault = getenv("TIS_FAULT_EXIT");
            const char *colon = fault ? strrchr(fault, ':') : NULL;
            if (colon && s->jobs + 1 == atoll(colon + 1)) {
                char part[64];
                snprintf(part, sizeof part, "%.*s", (int)(colon - fault), fault);
                if (strstr(o->name, part)) _exit(137);
            }
            bool mine = (env->body_case == TIS__ENVELOPE__BODY_PREFILL_JOB) == s->prefill;
            job = true;
            r = !mine ? tis_error(TIS_EINVAL, "a %s job sent to a %s worker", msg_body_name(env), o->role)
                : s->prefill ? s_prefill(s, env) : s_decode(s, env);
            if (r) s_error(s, env->request_id, r, "job failed");
            s->jobs++;
            break;
        }
        case TIS__ENVELOPE__BODY_LEASE_RENEW:
            if (s->own && arena_lease_renew(s->own, env->lease_renew->lease_id, env->lease_renew->ttl_ms))
                s_error(s, env->request_id, TIS_ENOTFOUND, "lease");
            break;
        case TIS__ENVELOPE__BODY_LEASE_RELEASE:
            if (s->own) arena_lease_release(s->own, env->lease_release->lease_id);
            break;
        case TIS__ENVELOPE__BODY_HEARTBEAT:
            break;
        case TIS__ENVELOPE__BODY_SHUTDOWN:
            s_stop = 1;
            break;
        default:
            tis_error(TIS_EINVAL, "a worker does not take %s messages", msg_body_name(env));
            s_error(s, env->request_id, TIS_EINVAL, "unexpected message");
        }
        msg_free(env);
        if (job && !s_stop) rc = s_ready(s);
    }
    s_self_destroy(&s);
    return rc;
}
