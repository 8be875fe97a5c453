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
#include "wire_eval.h"
#include "wire_label.h"

/* One request in the decode worker's continuous batch. */
typedef struct dseq {
    uint64_t request_id;
    kv_cache *kv;                /* owned */
    int32_t *q;                  /* [seq.n_feed] question tokens, the decoder's feed (owned) */
    decoder_seq seq;             /* generated tokens, stop state, timings */
    sampler *smp;                /* GenParams.temperature > 0: sampled (owned), else greedy */
    double t0, handoff_s;        /* accepted at t0; the block copy took handoff_s */
    bool stream;                 /* TokenChunk messages as tokens come */
    bool until_eog;              /* no short-answer stop, the text untrimmed */
    int64_t n_sent;              /* tokens looked at (streamed, scanned for stops) so far */
    size_t text_sent;            /* stream: bytes of the answer's text sent so far */
    char **stop;                 /* [n_stop] stop strings (owned) */
    size_t n_stop;
    bool stopped;                /* a stop string ended it: the answer is text[0..cut) */
    size_t cut;
    int64_t prompt_tokens;       /* the block's sequence + the question run first */
} dseq;

static void s_dseq_free(dseq *d) {
    kv_cache_destroy(&d->kv);
    free(d->q);
    decoder_seq_free(&d->seq);
    if (d->smp) sampler_free(d->smp);
    free(d->smp);
    for (size_t i = 0; i < d->n_stop; i++) free(d->stop[i]);
    free(d->stop);
    memset(d, 0, sizeof *d);
}

static volatile sig_atomic_t s_stop = 0;
static void s_on_term(int sig) {
    (void)sig;
    s_stop = 1;
}

/* A prefill request waiting for its scores from a scorer worker. */
typedef struct parked {
    uint64_t request_id;
    session *rs;              /* owned */
    uint64_t hidden_lease;    /* its hidden rows in our arena */
    uint64_t since_ms;
    int64_t n_ctx;
} parked;

enum { MAX_PARKED = 64 };

typedef struct self_t {
    const worker_opts *o;
    bool prefill, decode, scorer;
    parked park[MAX_PARKED];  /* prefill: requests scored elsewhere */
    int n_park;
    bool ready_owed;          /* a READY whose send failed: sent on the next turn */
    void *ctx, *sock;
    model *m;
    forward_state *st;
    chat_template ct;
    head *h_ctx, *h_q;
    arena *own;                  /* prefill: where compressed blocks go */
    arena_peers peers;           /* prefill, scorer, decode: peers' arenas, mapped once */
    decoder *dec;                /* decode: the continuous batch's steps */
    decoder_seq **seqp;          /* decode: [max_batch] the step's sequences */
    uint64_t seq;
    int64_t jobs;
    struct dseq *act;            /* decode: sequences being generated [max_batch] */
    int64_t n_act;
    struct dseq *pend;           /* decode: accepted jobs waiting for a slot */
    int64_t n_pend, cap_pend;
    fetch_job *fx;               /* decode: blocks coming from another host [max_batch] */
    int64_t n_fx;
    /* prefill: eval jobs (tis eval --workers); the runner borrows its spec */
    eval_runner *er;
    Tis__EvalSpec *er_spec;
    uint8_t *er_packed;
    size_t er_len;
} self_t;

static void s_self_destroy(self_t **p) {
    if (!p || !*p) return;
    self_t *s = *p;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    arena_destroy(&s->own);
    arena_peers_free(&s->peers);
    for (int64_t i = 0; i < s->n_act; i++) s_dseq_free(&s->act[i]);
    for (int64_t i = 0; i < s->n_pend; i++) s_dseq_free(&s->pend[i]);
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
    model_destroy(&s->m);
    decoder_destroy(&s->dec);
    free(s);
    *p = NULL;
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
    if (!rc && !s->scorer) rc = forward_state_new(&s->st, s->m, backend_cpu(), 512);
    if (!rc) rc = chat_template_init(&s->ct, tokenizer_chat_template(s->m->tok));
    if (!rc && s->scorer && !o->head_path && !o->head_query_path)
        rc = tis_error(TIS_EINVAL, "worker: a scorer needs --head and/or --head_query");
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

static int s_send(self_t *s, Tis__Envelope *env) {
    env->seq = ++s->seq;
    return wire_send(s->sock, NULL, env);
}

static uint32_t s_capacity(const self_t *s) {
    int64_t mb = s->o->max_batch > 0 ? s->o->max_batch : 8;
    int64_t free_slots = mb - s->n_act - s->n_pend - s->n_fx;
    return !s->decode ? 1 : (uint32_t)(free_slots > 0 ? free_slots : 0);
}

static Tis__Role s_role(const self_t *s) {
    return s->prefill ? TIS__ROLE__ROLE_PREFILL : s->scorer ? TIS__ROLE__ROLE_SCORER : TIS__ROLE__ROLE_DECODE;
}

static int s_ready(self_t *s) {
    Tis__Ready rd = TIS__READY__INIT;
    rd.role = s_role(s);
    rd.worker_id = (char *)s->o->name;
    rd.capacity = s_capacity(s);
    if (s->own) {
        rd.arena = (char *)arena_name(s->own);
        rd.arena_bytes = arena_size(s->own);
    }
    Tis__Envelope env = TIS__ENVELOPE__INIT;
    env.body_case = TIS__ENVELOPE__BODY_READY;
    env.ready = &rd;
    return s_send(s, &env);
}

/* READY once the worker is free again. A send that fails (no memory for
 * the frame) does not end the worker: the loop sends it on its next turn. */
static int s_ready_again(self_t *s) {
    s->ready_owed = s_ready(s) != 0;
    return 0;
}

static void s_error(self_t *s, uint64_t request_id, int code, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, tis_last_error());
    wire_send_error(s->sock, NULL, request_id, code, msg);
}

/* A handle to [off, off + len) of our arena under `lease`. */
static Tis__BlockRef s_blockref(const self_t *s, uint64_t off, uint64_t len, uint64_t lease) {
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = (char *)arena_name(s->own);
    br.offset = off;
    br.length = len;
    br.lease_id = lease;
    br.host = (char *)fetch_host_id(); /* a consumer elsewhere fetches the bytes (fetch.h) */
    return br;
}

/* The compressed cache as a flat block in our arena, under a lease ->
 * PrefillDone (BlockRef + KvLayout + the tokens decode runs first). */
static int s_send_block(self_t *s, uint64_t request_id, const session_result *rp) {
    size_t nb = kv_cache_block_bytes(rp->kv);
    uint64_t off = 0, lease = 0;
    arena_expire(s->own, tis_now_ms()); /* blocks nobody came for */
    int rc = arena_alloc(s->own, nb ? nb : 1, s->o->lease_ms, &off, &lease);
    if (rc) return rc;
    kv_cache_block_write(rp->kv, arena_at(s->own, off, nb));
    uint32_t *lens = malloc((size_t)rp->kv->n_stream * sizeof *lens);
    if (!lens) {
        arena_lease_release(s->own, lease);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < rp->kv->n_stream; i++) lens[i] = (uint32_t)rp->kv->len[i];
    Tis__BlockRef br = s_blockref(s, off, nb, lease);
    Tis__KvLayout lay = TIS__KV_LAYOUT__INIT;
    lay.n_layer = (uint32_t)rp->kv->n_layer;
    lay.n_kv_head = (uint32_t)rp->kv->n_kv_head;
    lay.head_dim = (uint32_t)rp->kv->head_dim;
    lay.n_stream_len = (size_t)rp->kv->n_stream;
    lay.stream_len = lens;
    lay.n_past = (uint64_t)rp->kv->n_past;
    lay.dtype = (uint32_t)rp->kv->dtype;
    lay.bias = rp->kv->bias != NULL; /* the +hook policies' attention bias travels with the block */
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.kv = &br;
    pd.layout = &lay;
    pd.n_ctx = (uint32_t)rp->n_ctx;
    pd.n_question_ids = (size_t)rp->n_rest;
    pd.question_ids = rp->rest;
    pd.prefill_s = rp->prefill_s + rp->compress_s;
    pd.compress_s = rp->compress_s;
    pd.full_kv_bytes = (uint64_t)rp->full_kv_bytes;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = request_id;
    out.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    out.prefill_done = &pd;
    rc = s_send(s, &out);
    free(lens);
    return rc;
}

enum { MAX_HISTORY = 256 };

/* A request's earlier turns as chat messages (borrowing q's strings) into
 * out[MAX_HISTORY]: user and assistant turns only, none in a raw prompt. */
static int s_history(const Tis__Submit *q, chat_msg *out, size_t *n) {
    *n = 0;
    if (q->n_history > MAX_HISTORY)
        return tis_error(TIS_EINVAL, "%zu earlier turns (%d at most)", q->n_history, MAX_HISTORY);
    if (q->n_history && q->raw) return tis_error(TIS_EINVAL, "a raw prompt has no conversation turns");
    for (size_t i = 0; i < q->n_history; i++) {
        const Tis__ChatTurn *t = q->history[i];
        if (!t->role || (strcmp(t->role, "user") && strcmp(t->role, "assistant")) || !t->content)
            return tis_error(TIS_EINVAL, "turn %zu: a role of user or assistant, and a content", i);
        out[(*n)++] = (chat_msg){t->role, t->content};
    }
    return 0;
}

/* PrefillJob -> PrefillDone with the compressed block; or, when a scorer
 * scores (outside_scores and a head policy), PrefillDone with the head's
 * input rows while the request waits here for its CompressJob. */
static int s_prefill(self_t *s, const Tis__Envelope *env) {
    const Tis__Submit *q = env->prefill_job->request;
    if (!q || !q->context || !*q->context || !q->question)
        return tis_error(TIS_EINVAL, "prefill job without context or question");
    char id[32];
    snprintf(id, sizeof id, "req-%llu", (unsigned long long)env->request_id);
    chat_msg hist[MAX_HISTORY];
    size_t n_hist = 0;
    int rc = s_history(q, hist, &n_hist);
    if (rc) return rc;
    session_input in = {.id = id, .context = q->context, .question = q->question,
                        .prefix = q->prefix && *q->prefix ? q->prefix : NULL,
                        .answer_prefix = q->answer_prefix && *q->answer_prefix ? q->answer_prefix : NULL,
                        .verbatim = q->raw, .history = hist, .n_history = n_hist};
    session_request rq = {.budget = q->budget, .budget_tokens = q->budget_tokens, .query_aware = q->query_aware,
                          .chat = tokenizer_chat_template(s->m->tok) != NULL, .window = 64, .n_sink = 4,
                          .seed = q->gen ? q->gen->seed : 42,
                          .max_new = q->gen && q->gen->max_new ? q->gen->max_new : 16, .hook_lambda = -1};
    int64_t n_ctx_train = s->m->config.n_ctx_train;
    if (n_ctx_train > 0) { /* the prompt and the answer must fit the model's context */
        if (rq.max_new >= n_ctx_train)
            return tis_error(TIS_ERANGE, "%lld tokens to generate: the model's context is %lld tokens",
                             (long long)rq.max_new, (long long)n_ctx_train);
        rq.max_tokens = n_ctx_train - rq.max_new;
    }
    rc = press_parse(q->policy && *q->policy ? q->policy : "full", &rq.policy);
    if (rc) return rc;
    const head *hd = !rq.policy.needs_head ? NULL : rq.policy.query_head ? s->h_q : s->h_ctx;
    if (q->keep_context && (rq.query_aware || !rq.policy.score)) /* the kept block must hold no question */
        return tis_error(TIS_EINVAL, "keep_context needs a compression policy (not %s) without query_aware: the "
                         "kept block must hold the context alone", rq.policy.name);
    bool outside = env->prefill_job->outside_scores && rq.policy.needs_head;
    if (outside) { /* the scorer's head reads this layer: ours must be the same head */
        if (!hd) return tis_error(TIS_EINVAL, "%s scored outside: this worker needs the head's layer (--head)",
                                  rq.policy.name);
        if (s->n_park == MAX_PARKED) return tis_error(TIS_ERANGE, "%d requests already wait for scores", MAX_PARKED);
        rq.hook_lambda = hd->attn_hook_lambda;
    }
    session *rs = NULL;
    double t0 = tis_now();
    rc = session_request_begin(&rs, s->st, &s->ct, &in, &rq, outside ? NULL : hd, hd ? hd->cfg.layer : -1);
    if (rc) return rc;
    double begin_s = tis_now() - t0;
    if (!outside) {
        session_result rp;
        rc = session_request_finish(rs, NULL, 1, &rp);
        session_destroy(&rs);
        if (rc) return rc;
        rc = s_send_block(s, env->request_id, &rp);
        session_result_free(&rp);
        return rc;
    }
    float *rows = NULL;
    int64_t n_ctx = 0, n_q = 0, d = s->m->config.d_model;
    uint64_t off = 0, lease = 0;
    size_t nb = 0;
    rc = session_hidden(rs, &rows, &n_ctx, &n_q);
    if (!rc) {
        nb = (size_t)((n_ctx + n_q) * d) * sizeof(float);
        arena_expire(s->own, tis_now_ms());
        rc = arena_alloc(s->own, nb ? nb : 1, s->o->lease_ms, &off, &lease);
    }
    if (rc) {
        free(rows);
        session_destroy(&rs);
        return rc;
    }
    memcpy(arena_at(s->own, off, nb ? nb : 1), rows, nb);
    free(rows);
    s->park[s->n_park++] = (parked){.request_id = env->request_id, .rs = rs, .hidden_lease = lease,
                                    .since_ms = tis_now_ms(), .n_ctx = n_ctx};
    Tis__BlockRef br = s_blockref(s, off, nb, lease);
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.hidden = &br;
    pd.n_ctx = (uint32_t)n_ctx;
    pd.n_query = (uint32_t)n_q;
    pd.d_model = (uint32_t)d;
    pd.prefill_s = begin_s;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    out.prefill_done = &pd;
    return s_send(s, &out);
}

static arena *s_peer(self_t *s, const Tis__BlockRef *br);

/* CompressJob: a parked request's scores are in: compress, hand the block. */
static int s_compress(self_t *s, const Tis__Envelope *env) {
    const Tis__CompressJob *j = env->compress_job;
    int k = -1;
    for (int i = 0; i < s->n_park && k < 0; i++)
        if (s->park[i].request_id == env->request_id) k = i;
    if (k < 0) return tis_error(TIS_ENOTFOUND, "no request %llu waits for scores here (expired?)",
                                (unsigned long long)env->request_id);
    parked pk = s->park[k];
    s->park[k] = s->park[--s->n_park];
    arena_lease_release(s->own, pk.hidden_lease);
    int rc = 0;
    const float *sc = NULL;
    /* one score per context token, or a per-head head's one per (stream, token) */
    uint64_t row = (uint64_t)pk.n_ctx * sizeof(float);
    int64_t n_out = j->scores && row ? (int64_t)(j->scores->length / row) : 0;
    if (!j->scores || !j->scores->arena || j->n != (uint32_t)pk.n_ctx || n_out < 1 ||
        j->scores->length != (uint64_t)n_out * row)
        rc = tis_error(TIS_EINVAL, "compress job: %u scores for %lld context tokens", j->n, (long long)pk.n_ctx);
    arena *a = rc ? NULL : s_peer(s, j->scores);
    if (!rc && !a) rc = TIS_EIO;
    if (!rc && !(sc = arena_at(a, j->scores->offset, j->scores->length ? j->scores->length : 1))) rc = TIS_ERANGE;
    session_result rp;
    if (!rc) rc = session_request_finish(pk.rs, sc, n_out, &rp);
    session_destroy(&pk.rs);
    if (rc) return rc;
    rp.prefill_s = 0; /* reported with the hidden rows already: this is the compression */
    rc = s_send_block(s, env->request_id, &rp);
    session_result_free(&rp);
    return rc;
}

/* ScoreJob (scorer): the head over hidden rows in a prefill worker's arena
 * -> scores in our arena -> ScoreDone. */
static int s_score(self_t *s, const Tis__Envelope *env) {
    const Tis__ScoreJob *j = env->score_job;
    press pr;
    int rc = press_parse(j->policy && *j->policy ? j->policy : "?", &pr);
    if (rc) return rc;
    const head *hd = !pr.needs_head ? NULL : pr.query_head ? s->h_q : s->h_ctx;
    if (!hd) return tis_error(TIS_EINVAL, "this scorer has no head for policy %s", pr.name);
    int64_t n = j->n_rows, nq = j->n_query, d = s->m->config.d_model;
    if (!j->hidden || !j->hidden->arena || j->d_model != (uint32_t)d || n < 1 || n > (1 << 24) || nq > (1 << 24) ||
        j->hidden->length != (uint64_t)((n + nq) * d) * sizeof(float))
        return tis_error(TIS_EINVAL, "score job: the hidden block does not hold %lld + %lld rows of %lld", (long long)n,
                         (long long)nq, (long long)d);
    arena *a = s_peer(s, j->hidden);
    const float *rows = a ? arena_at(a, j->hidden->offset, j->hidden->length) : NULL;
    if (!rows) return a ? TIS_ERANGE : TIS_EIO;
    double t0 = tis_now();
    size_t nb = (size_t)(n * (hd->cfg.n_out > 1 ? hd->cfg.n_out : 1)) * sizeof(float); /* [n_out][n] */
    uint64_t off = 0, lease = 0;
    arena_expire(s->own, tis_now_ms());
    rc = arena_alloc(s->own, nb, s->o->lease_ms, &off, &lease);
    if (rc) return rc;
    rc = head_score_context(hd, rows, 0, n, n, nq, arena_at(s->own, off, nb));
    if (rc) {
        arena_lease_release(s->own, lease);
        return rc;
    }
    Tis__BlockRef br = s_blockref(s, off, nb, lease);
    Tis__ScoreDone sd = TIS__SCORE_DONE__INIT;
    sd.scores = &br;
    sd.n = (uint32_t)n;
    sd.scoring_s = tis_now() - t0;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_SCORE_DONE;
    out.score_done = &sd;
    return s_send(s, &out);
}

/* EvalJob: one sample through every policy x budget x protocol of its
 * spec (eval_run_sample, as tis eval runs it in one process) -> EvalDone
 * with the rows. The runner is kept while the spec stays the same. */
static int s_eval(self_t *s, const Tis__Envelope *env) {
    const Tis__EvalJob *j = env->eval_job;
    if (!j->spec || !j->sample || !j->benchmark || !*j->benchmark || strlen(j->benchmark) >= 32)
        return tis_error(TIS_EINVAL, "eval job without a spec, a sample or a benchmark name");
    if (j->spec->model_name && *j->spec->model_name && strcmp(j->spec->model_name, s->m->config.name))
        return tis_error(TIS_EINVAL, "eval job for model '%s'; this worker runs '%s'", j->spec->model_name,
                         s->m->config.name);
    size_t len = tis__eval_spec__get_packed_size(j->spec);
    /* A new spec replaces the runner only. The requests parked here for
     * their scores belong to other clients and own their caches (the runner
     * has its own forward state): they stay until their CompressJob. */
    if (!s->er || len != s->er_len || !s->er_packed) {
        eval_runner_destroy(&s->er);
    } else {
        uint8_t *tmp = malloc(len ? len : 1);
        if (!tmp) return tis_error(TIS_ENOMEM, "out of memory");
        tis__eval_spec__pack(j->spec, tmp);
        if (memcmp(tmp, s->er_packed, len)) eval_runner_destroy(&s->er);
        free(tmp);
    }
    if (!s->er) {
        if (s->er_spec) tis__eval_spec__free_unpacked(s->er_spec, NULL);
        s->er_spec = NULL;
        free(s->er_packed);
        s->er_len = len;
        if (!(s->er_packed = malloc(len ? len : 1))) return tis_error(TIS_ENOMEM, "out of memory");
        tis__eval_spec__pack(j->spec, s->er_packed);
        s->er_spec = tis__eval_spec__unpack(NULL, len, s->er_packed);
        if (!s->er_spec) return tis_error(TIS_ENOMEM, "out of memory");
        eval_config cfg;
        int rc = wire_eval_spec_from(s->er_spec, &cfg);
        if (!rc && !cfg.head_path) cfg.head_path = s->o->head_path; /* the worker's own */
        if (!rc && !cfg.head_query_path) cfg.head_query_path = s->o->head_query_path;
        if (!rc) rc = eval_runner_new(&s->er, s->m, &cfg);
        if (rc) {
            free(s->er_packed);
            s->er_packed = NULL;
            return rc;
        }
    }
    bench_sample smp;
    int rc = wire_eval_sample_from(j->sample, &smp);
    if (rc) return rc;
    eval_row *rows = NULL;
    int64_t n = 0, cap = 0;
    rc = eval_run_sample(s->er, j->benchmark, &smp, &rows, &n, &cap);
    Tis__EvalRow *rm = rc ? NULL : malloc((size_t)(n ? n : 1) * sizeof *rm);
    Tis__EvalRow **rp = rc ? NULL : malloc((size_t)(n ? n : 1) * sizeof *rp);
    if (!rc && (!rm || !rp)) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (!rc) {
        for (int64_t i = 0; i < n; i++) {
            wire_eval_row_view(&rows[i], &rm[i]);
            rp[i] = &rm[i];
        }
        Tis__EvalDone done = TIS__EVAL_DONE__INIT;
        done.n_rows = (size_t)n;
        done.rows = rp;
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = env->request_id;
        out.body_case = TIS__ENVELOPE__BODY_EVAL_DONE;
        out.eval_done = &done;
        rc = s_send(s, &out);
    }
    free(rm);
    free(rp);
    free(rows);
    return rc;
}

/* LabelJob: label_run, the arrays into the arena under a lease ->
 * LabelDone with their handle (the client copies them and releases the
 * lease). A sample that cannot be labelled is answered as skipped, like
 * tis label in one process does. */
static int s_label(self_t *s, const Tis__Envelope *env) {
    const Tis__LabelJob *j = env->label_job;
    if (!j->spec || !j->sample) return tis_error(TIS_EINVAL, "label job without a spec or a sample");
    label_config cfg;
    bench_sample smp;
    int rc = wire_label_spec_from(j->spec, &s->m->config, &cfg);
    if (!rc) rc = wire_eval_sample_from(j->sample, &smp);
    if (rc) return rc;
    label_sample ls = {0};
    Tis__LabelDone lr = TIS__LABEL_DONE__INIT;
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    char why[512] = "";
    if (label_run(s->st, cfg.chat ? &s->ct : NULL, &cfg, &smp, &ls)) {
        snprintf(why, sizeof why, "%s", tis_last_error());
        lr.skipped = why;
    } else {
        size_t nb = wire_label_block_bytes(&ls, &s->m->config, cfg.per_head);
        uint64_t off = 0, lease = 0;
        arena_expire(s->own, tis_now_ms());
        rc = arena_alloc(s->own, nb ? nb : 1, s->o->lease_ms, &off, &lease);
        if (rc) {
            label_sample_free(&ls);
            return rc;
        }
        wire_label_block_write(&ls, &s->m->config, cfg.per_head, arena_at(s->own, off, nb ? nb : 1));
        br = s_blockref(s, off, nb, lease);
        lr.block = &br;
        lr.n_tokens = ls.n_tokens;
        lr.ctx_begin = ls.ctx_begin;
        lr.n_ctx = ls.n_ctx;
        lr.suf_begin = ls.suf_begin;
        lr.n_answer = ls.n_answer;
        lr.answer = ls.answer ? ls.answer : "";
        lr.answer_from_model = ls.answer_from_model;
        lr.per_head = cfg.per_head;
    }
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_LABEL_DONE;
    out.label_done = &lr;
    rc = s_send(s, &out);
    label_sample_free(&ls);
    return rc;
}

/* A peer's arena holding the block br (mapped once; again when its
 * producer restarted), or NULL with a message. */
static arena *s_peer(self_t *s, const Tis__BlockRef *br) { return arena_peers_get(&s->peers, br->arena, br->lease_id); }

/* The tokens a decode job runs first (malloc'd): the ids the prefill
 * worker sent, or, for a kept context (no ids), its own question's tokens
 * framed as the prefill worker frames a suffix (after the context). */
static int s_decode_question(self_t *s, const Tis__DecodeJob *j, int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    if (j->n_question_ids) {
        for (size_t i = 0; i < j->n_question_ids; i++)
            if (j->question_ids[i] < 0 || j->question_ids[i] >= s->m->config.n_vocab)
                return tis_error(TIS_EINVAL, "question token %d outside the vocabulary", j->question_ids[i]);
        if (!(*ids = malloc(j->n_question_ids * sizeof **ids))) return tis_error(TIS_ENOMEM, "out of memory");
        memcpy(*ids, j->question_ids, j->n_question_ids * sizeof **ids);
        *n = (int64_t)j->n_question_ids;
        return 0;
    }
    const Tis__Submit *q = j->question;
    if (!q || !q->question) return tis_error(TIS_EINVAL, "decode job without a question");
    session_input in = {.id = "kept context", .context = "", .question = q->question,
                        .answer_prefix = q->answer_prefix && *q->answer_prefix ? q->answer_prefix : NULL,
                        .verbatim = q->raw};
    session_prompt p;
    int rc = session_prompt_build(s->m->tok, &s->ct, tokenizer_chat_template(s->m->tok) != NULL, &in, &p);
    if (rc) return rc;
    *n = p.n - p.suf_begin;
    *ids = malloc((size_t)*n * sizeof **ids);
    if (*ids) memcpy(*ids, p.ids + p.suf_begin, (size_t)*n * sizeof **ids);
    session_prompt_free(&p);
    return *ids ? 0 : tis_error(TIS_ENOMEM, "out of memory");
}

static int s_decode_build(self_t *s, const Tis__Envelope *env, const void *blk, double t0);
static int s_fetch_start(self_t *s, const Tis__Envelope *env);

/* DecodeJob: checked, the block copied out of the peer's arena (or fetched
 * from its host: fetch.h) into a cache with room for the question and the
 * answer, queued for the batch. */
static int s_decode_accept(self_t *s, const Tis__Envelope *env) {
    const Tis__DecodeJob *j = env->decode_job;
    if (!j->kv || !j->layout || !j->kv->arena || (j->n_question_ids == 0 && !j->question))
        return tis_error(TIS_EINVAL, "decode job without a block, layout or question");
    const Tis__KvLayout *lay = j->layout;
    const model_config *c = &s->m->config;
    if (lay->n_layer != c->n_layer || lay->n_kv_head != c->n_kv_head || lay->head_dim != c->head_dim ||
        lay->n_stream_len != (size_t)(c->n_layer * c->n_kv_head))
        return tis_error(TIS_EINVAL, "the block's layout does not fit this model");
    if (lay->dtype > 64 || !kv_dtype_ok((int)lay->dtype))
        return tis_error(TIS_EUNSUPPORTED, "a KV block of dtype %u: this worker reads f32 (0), f16 (1), bf16 (30)",
                         lay->dtype);
    if (fetch_is_remote(j->kv)) return s_fetch_start(s, env);
    arena *a = s_peer(s, j->kv);
    if (!a) return TIS_EIO;
    const void *blk = arena_at(a, j->kv->offset, j->kv->length);
    if (!blk) return TIS_ERANGE;
    return s_decode_build(s, env, blk, -1);
}

/* The checked job's block (blk: its bytes) into a sequence queued for the
 * batch. t0: when the hand-off began (a fetch's start), or < 0: now (the
 * copy out of shared memory is the hand-off). */
static int s_decode_build(self_t *s, const Tis__Envelope *env, const void *blk, double t0) {
    const Tis__DecodeJob *j = env->decode_job;
    const Tis__KvLayout *lay = j->layout;
    const model_config *c = &s->m->config;
    int64_t ns = (int64_t)lay->n_stream_len, max_new = j->gen && j->gen->max_new ? j->gen->max_new : 16;
    if (max_new > 4096) return tis_error(TIS_EINVAL, "max_new %lld", (long long)max_new);
    dseq d = {.request_id = env->request_id};
    int64_t nq = 0;
    int rc = s_decode_question(s, j, &d.q, &nq);
    if (!rc && c->n_ctx_train > 0 && (int64_t)lay->n_past + nq + max_new > c->n_ctx_train)
        rc = tis_error(TIS_ERANGE, "a prompt of %lld tokens + %lld to generate is over the model's context of %lld",
                       (long long)(lay->n_past + (uint64_t)nq), (long long)max_new, (long long)c->n_ctx_train);
    int64_t *lens = rc ? NULL : malloc((size_t)ns * sizeof *lens);
    if (!rc && !lens) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (rc) {
        free(d.q);
        return rc;
    }
    for (int64_t i = 0; i < ns; i++) lens[i] = lay->stream_len[i];
    d.prompt_tokens = (int64_t)lay->n_past + nq;
    d.t0 = t0 >= 0 ? t0 : tis_now();
    rc = kv_cache_block_read(&d.kv, c->n_layer, c->n_kv_head, c->head_dim, (int)lay->dtype, lens,
                                 (int64_t)lay->n_past,
                                 lay->bias, blk, j->kv->length, nq + max_new);
    d.handoff_s = tis_now() - d.t0;
    free(lens);
    if (rc) {
        free(d.q);
        return rc;
    }
    if (s->n_pend == s->cap_pend) {
        int64_t cap = s->cap_pend ? 2 * s->cap_pend : 16;
        dseq *np = realloc(s->pend, (size_t)cap * sizeof *np);
        if (np) {
            s->pend = np;
            s->cap_pend = cap;
        }
    }
    rc = s->n_pend < s->cap_pend ? 0 : tis_error(TIS_ENOMEM, "out of memory");
    if (!rc) rc = decoder_seq_init(&d.seq, d.kv, d.q, nq, max_new);
    if (!rc && j->gen && j->gen->until_eog) { /* a full answer: only end-of-generation or max_new stop it */
        d.until_eog = true;
        d.seq.stop_answer = false;
    }
    d.stream = j->stream;
    if (!rc && j->gen && j->gen->n_stop) {
        if (j->gen->n_stop > 16) rc = tis_error(TIS_EINVAL, "%zu stop strings (16 at most)", j->gen->n_stop);
        else if (!(d.stop = calloc(j->gen->n_stop, sizeof *d.stop))) rc = tis_error(TIS_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < j->gen->n_stop; i++) {
            const char *t = j->gen->stop[i];
            if (!t || !*t) rc = tis_error(TIS_EINVAL, "an empty stop string");
            else if (!(d.stop[d.n_stop++] = strdup(t))) rc = tis_error(TIS_ENOMEM, "out of memory");
        }
    }
    if (!rc && j->gen && j->gen->temperature > 0) { /* sampled, as the request asks */
        float top_p = j->gen->top_p > 0 && j->gen->top_p <= 1 ? j->gen->top_p : 1.0f;
        d.smp = calloc(1, sizeof *d.smp);
        rc = d.smp ? sampler_init(d.smp, c->n_vocab, j->gen->temperature, top_p, j->gen->seed)
                   : tis_error(TIS_ENOMEM, "out of memory");
        d.seq.smp = d.smp;
    }
    if (rc) {
        s_dseq_free(&d);
        return rc;
    }
    s->pend[s->n_pend++] = d;
    return 0;
}

/* The Reply of a finished sequence, or an Error when it cannot be made or
 * sent (out of memory): the request is answered either way. */
static void s_decode_reply(self_t *s, dseq *d) {
    char *text = NULL;
    int rc = decoder_seq_text(s->dec, &d->seq, !d->until_eog && !d->stopped, &text);
    if (rc) {
        s_error(s, d->request_id, rc, "decoding the answer");
        return;
    }
    if (d->stopped && d->cut < strlen(text)) text[d->cut] = 0;
    double now = tis_now();
    Tis__Timing tm = TIS__TIMING__INIT;
    tm.handoff_s = d->handoff_s;
    tm.decode_s = now - d->t0 - d->handoff_s;
    tm.ttft_s = d->seq.t_fed - d->t0;
    Tis__Reply rp = TIS__REPLY__INIT;
    rp.answer = text;
    rp.n_ids = (size_t)d->seq.n_gen;
    rp.ids = d->seq.gen;
    rp.timing = &tm;
    rp.kv_bytes = (uint64_t)d->seq.kv_bytes;
    rp.prompt_tokens = (uint32_t)d->prompt_tokens;
    rp.finish_reason = !d->stopped && d->seq.eog < 0 && d->seq.n_gen >= d->seq.max_new ? "length" : "stop";
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = d->request_id;
    out.body_case = TIS__ENVELOPE__BODY_REPLY;
    out.reply = &rp;
    rc = s_send(s, &out);
    if (rc) s_error(s, d->request_id, rc, "sending the answer");
    free(text);
}

/* Bytes of text[0..n) that end on a whole UTF-8 character (a token may end
 * inside one; its rest comes with the next token). */
static size_t s_utf8_whole(const char *text, size_t n) {
    size_t k = n, back = 0;
    while (k > 0 && back < 4 && ((unsigned char)text[k - 1] & 0xC0) == 0x80) k--, back++;
    if (k == 0) return n;
    unsigned char lead = (unsigned char)text[k - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 ? k - 1 : n;
}

/* Where the first stop string begins in text[n] (*hit), else the bytes
 * that cannot begin one: a tail that is the start of a stop string waits
 * for the next tokens. */
static size_t s_stop_scan(char *const *stop, size_t n_stop, const char *text, size_t n, bool *hit) {
    size_t safe = n;
    *hit = false;
    for (size_t i = 0; i < n_stop; i++) {
        const char *f = strstr(text, stop[i]);
        if (f && (size_t)(f - text) < safe) {
            safe = (size_t)(f - text);
            *hit = true;
        }
    }
    for (size_t i = 0; i < n_stop && !*hit; i++)
        for (size_t t = strlen(stop[i]) - 1; t > 0; t--)
            if (t <= n && !memcmp(text + n - t, stop[i], t)) {
                if (n - t < safe) safe = n - t;
                break;
            }
    return safe;
}

/* A sequence's new tokens: the stop strings looked for (one ends it), and,
 * streamed, the tokens and the text they completed as one TokenChunk (the
 * Reply follows when it is done). */
static void s_decode_chunk(self_t *s, dseq *d) {
    if ((!d->stream && !d->n_stop) || d->seq.n_gen <= d->n_sent) return;
    char *text = NULL;
    if (decoder_seq_text(s->dec, &d->seq, false, &text)) return; /* the Reply reports it */
    size_t n = strlen(text), whole = s_utf8_whole(text, n);
    if (d->n_stop) {
        bool hit = false;
        size_t safe = s_stop_scan(d->stop, d->n_stop, text, n, &hit);
        if (hit) {
            decoder_seq_finish(&d->seq);
            d->stopped = true;
            d->cut = safe;
        }
        if (safe < whole) whole = safe;
    }
    if (!d->stream) {
        d->n_sent = d->seq.n_gen;
        free(text);
        return;
    }
    Tis__TokenChunk tc = TIS__TOKEN_CHUNK__INIT;
    tc.n_ids = (size_t)(d->seq.n_gen - d->n_sent);
    tc.ids = d->seq.gen + d->n_sent;
    tc.text = whole > d->text_sent ? text + d->text_sent : "";
    char keep = text[whole];
    text[whole] = 0;
    tc.last = d->seq.done;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = d->request_id;
    out.body_case = TIS__ENVELOPE__BODY_TOKENS;
    out.tokens = &tc;
    s_send(s, &out);
    text[whole] = keep;
    d->n_sent = d->seq.n_gen;
    if (whole > d->text_sent) d->text_sent = whole;
    free(text);
}

/* Cancel: the request stops here and its slot is free (its client is gone). */
static int s_decode_cancel(self_t *s, uint64_t request_id) {
    for (int64_t i = 0; i < s->n_act; i++)
        if (s->act[i].request_id == request_id) {
            s_dseq_free(&s->act[i]);
            s->act[i] = s->act[--s->n_act];
            return s_ready_again(s);
        }
    for (int64_t i = 0; i < s->n_pend; i++)
        if (s->pend[i].request_id == request_id) {
            s_dseq_free(&s->pend[i]);
            memmove(s->pend + i, s->pend + i + 1, (size_t)(--s->n_pend - i) * sizeof *s->pend);
            return s_ready_again(s);
        }
    for (int64_t i = 0; i < s->n_fx; i++)
        if (s->fx[i].request_id == request_id) {
            fetch_free(&s->fx[i]);
            s->fx[i] = s->fx[--s->n_fx];
            return s_ready_again(s);
        }
    return 0; /* finished already: its Reply is on its way (and dropped) */
}

/* ---- blocks from another host (fetch.h) ----------------------------------- */

/* Sends f's next requests (up to the window). */
static int s_fetch_pump(self_t *s, fetch_job *f) {
    Tis__BlockFetch bf;
    while (fetch_next(f, &bf)) {
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = f->request_id;
        out.body_case = TIS__ENVELOPE__BODY_BLOCK_FETCH;
        out.block_fetch = &bf;
        int rc = s_send(s, &out);
        if (rc) return rc;
    }
    return 0;
}

static int s_fetch_start(self_t *s, const Tis__Envelope *env) {
    int64_t mb = s->o->max_batch > 0 ? s->o->max_batch : 8;
    if (s->n_fx >= mb) return tis_error(TIS_EINVAL, "more blocks in flight than decode slots");
    fetch_job *f = &s->fx[s->n_fx];
    int rc = fetch_begin(f, env);
    if (rc) return rc;
    static bool said;
    if (!said) { /* once: the operator sees which path the blocks take */
        fprintf(stderr, "[worker %s] blocks from %s come over the network (not this host: %s)\n", s->o->name,
                env->decode_job->kv->host, fetch_host_id());
        said = true;
    }
    s->n_fx++;
    rc = s_fetch_pump(s, f);
    if (rc) fetch_free(f), s->n_fx--;
    return rc;
}

/* A fetch ended (rc: how): the job goes on to the batch, or is answered with
 * an Error; either way its slot is free again. */
static void s_fetch_end(self_t *s, int64_t i, int rc) {
    fetch_job *f = &s->fx[i];
    if (!rc) {
        Tis__Envelope *job = NULL;
        rc = msg_unpack(f->job, f->job_len, f->job_len, &job);
        if (!rc) rc = s_decode_build(s, job, f->buf, f->t0);
        msg_free(job);
    }
    if (rc) s_error(s, f->request_id, rc, "the block from another host");
    fetch_free(f);
    s->fx[i] = s->fx[--s->n_fx];
    if (rc) s_ready_again(s);
}

/* A BlockChunk: taken into its fetch, more asked for, the job built when
 * the block is whole. */
static void s_fetch_chunk(self_t *s, const Tis__Envelope *env) {
    for (int64_t i = 0; i < s->n_fx; i++) {
        if (s->fx[i].request_id != env->request_id) continue;
        int rc = fetch_take(&s->fx[i], env->block_chunk);
        if (!rc && !fetch_done(&s->fx[i])) rc = s_fetch_pump(s, &s->fx[i]);
        if (rc || fetch_done(&s->fx[i])) s_fetch_end(s, i, rc);
        return;
    }
    /* a fetch that ended (cancelled, failed): dropped */
}

/* Fetches with no chunk for timeout_ms: their holder is gone or hung. */
static void s_fetch_expire(self_t *s, uint64_t timeout_ms) {
    for (int64_t i = 0; i < s->n_fx; i++)
        if (tis_now_ms() - s->fx[i].last_ms > timeout_ms) {
            tis_error(TIS_EIO, "no bytes of the block from its holder for %llu ms", (unsigned long long)timeout_ms);
            s_fetch_end(s, i--, TIS_EIO);
        }
}

/* A BlockFetch (a decode worker on another host reads one of our blocks). */
static void s_fetch_serve(self_t *s, const Tis__Envelope *env) {
    char err[512];
    Tis__BlockChunk c;
    fetch_serve(s->own, s->o->lease_ms, env->block_fetch, &c, err, sizeof err);
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_BLOCK_CHUNK;
    out.block_chunk = &c;
    s_send(s, &out);
}

static void s_fault_alloc(const self_t *s, bool ending);

/* One step of the continuous batch: new sequences run their question,
 * the others their last token, in one batched pass (weights read once);
 * finished sequences are answered and leave, queued ones take their slots. */
static int s_decode_step(self_t *s) {
    int64_t mb = decoder_max_batch(s->dec);
    while (s->n_act < mb && s->n_pend > 0) {
        s->act[s->n_act++] = s->pend[0];
        memmove(s->pend, s->pend + 1, (size_t)(--s->n_pend) * sizeof *s->pend);
    }
    if (s->n_act == 0) return 0;
    for (int64_t i = 0; i < s->n_act; i++) s->seqp[i] = &s->act[i].seq;
    int64_t k = decoder_step(s->dec, s->seqp, s->n_act);
    if (k < 0) { /* a sequence that does not fit its cache: fail them all, keep serving */
        for (int64_t i = 0; i < s->n_act; i++) {
            s_error(s, s->act[i].request_id, (int)k, "decode step");
            s_dseq_free(&s->act[i]);
        }
        s->n_act = 0;
        s_fault_alloc(s, true); /* a decode job's scope ends with its answer's READY */
        return s_ready_again(s);
    }
    int64_t kept = 0, finished = 0;
    for (int64_t i = 0; i < s->n_act; i++) {
        dseq *d = &s->act[i];
        s_decode_chunk(s, d);
        if (d->seq.done) {
            s_decode_reply(s, d);
            s_dseq_free(d);
            finished++;
        } else {
            s->act[kept++] = *d;
        }
    }
    s->n_act = kept;
    if (finished) s_ready_again(s);
    if (finished) s_fault_alloc(s, true);
    return 0;
}

/* TIS_FAULT_ALLOC=PART:FROM: the worker whose name contains PART runs its
 * job number FROM + k - 1 (k = 1, 2, ...) with the k-th allocation after
 * the job arrives failing (base/alloc_fault.h), so successive jobs visit
 * every allocation point of a job, its reply and the READY after it (the
 * scope ends there: ending; a decode job's when its sequence is answered,
 * which is one job at a time in the tests). Each armed job then leaves
 * "alloc fault: job J: A allocations, F failed" on stderr. */
static void s_fault_alloc(const self_t *s, bool ending) {
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
    s_fault_alloc(s, false);
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
    {TIS__ENVELOPE__BODY_PREFILL_JOB, TIS__ROLE__ROLE_PREFILL, s_prefill},
    {TIS__ENVELOPE__BODY_EVAL_JOB, TIS__ROLE__ROLE_PREFILL, s_eval},
    {TIS__ENVELOPE__BODY_LABEL_JOB, TIS__ROLE__ROLE_PREFILL, s_label},
    {TIS__ENVELOPE__BODY_SCORE_JOB, TIS__ROLE__ROLE_SCORER, s_score},
    {TIS__ENVELOPE__BODY_DECODE_JOB, TIS__ROLE__ROLE_DECODE, s_decode_accept},
};

/* Runs a job (one of JOBS) if this worker's role takes it; *refused: it
 * does not (an error). */
static int s_job(self_t *s, const Tis__Envelope *env, bool *refused) {
    s_fault_inject(s);
    s->jobs++;
    for (size_t i = 0; i < sizeof JOBS / sizeof JOBS[0]; i++)
        if (JOBS[i].body == env->body_case && JOBS[i].role == s_role(s)) return JOBS[i].run(s, env);
    *refused = true;
    return tis_error(TIS_EINVAL, "a %s sent to a %s worker", msg_body_name(env), s->o->role);
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
        if (s->ready_owed) s_ready_again(s);
        if (tis_now_ms() >= next_hb) {
            Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
            hb.time_ms = tis_now_ms();
            hb.role = s_role(s);
            hb.capacity = s_capacity(s);
            Tis__Envelope env = TIS__ENVELOPE__INIT;
            env.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat = &hb;
            s_send(s, &env);
            if (s->own) arena_expire(s->own, tis_now_ms());
            /* a holder busy with a long prefill answers fetches after it: 10 leases */
            s_fetch_expire(s, 10ull * (s->o->lease_ms > 0 ? s->o->lease_ms : 30000));
            for (int i = 0; i < s->n_park; i++) /* scores that never came: drop the request */
                if (tis_now_ms() - s->park[i].since_ms > s->o->lease_ms) {
                    session_destroy(&s->park[i].rs);
                    s->park[i--] = s->park[--s->n_park];
                }
            next_hb = tis_now_ms() + (uint64_t)hb_ms;
        }
        if (n == 0) {
            if (s->decode) rc = s_decode_step(s);
            continue;
        }
        Tis__Envelope *env = NULL;
        int r = wire_recv(s->sock, 0, NULL, &env);
        if (r) { /* a bad message: say so, keep serving */
            s_error(s, env ? env->request_id : 0, r, "bad message");
            msg_free(env);
            continue;
        }
        bool job = false;
        switch (env->body_case) {
        case TIS__ENVELOPE__BODY_COMPRESS_JOB:
            r = s->prefill ? s_compress(s, env)
                           : tis_error(TIS_EINVAL, "a compress job sent to a %s worker", o->role);
            if (r) s_error(s, env->request_id, r, "compress failed");
            break;
        case TIS__ENVELOPE__BODY_PREFILL_JOB:
        case TIS__ENVELOPE__BODY_EVAL_JOB:
        case TIS__ENVELOPE__BODY_LABEL_JOB:
        case TIS__ENVELOPE__BODY_SCORE_JOB:
        case TIS__ENVELOPE__BODY_DECODE_JOB: {
            bool refused = false;
            r = s_job(s, env, &refused);
            if (r) s_error(s, env->request_id, r, "job failed");
            /* a prefill worker is free again; a decode worker says so when a
             * sequence finishes (or at once when the job was refused) */
            job = !s->decode || r != 0 || refused;
            break;
        }
        case TIS__ENVELOPE__BODY_LEASE_RENEW:
            if (s->own && arena_lease_renew(s->own, env->lease_renew->lease_id, env->lease_renew->ttl_ms))
                s_error(s, env->request_id, TIS_ENOTFOUND, "the request's block expired before its consumer came");
            for (int i = 0; i < s->n_park; i++) /* a request waiting for scores is kept as long */
                if (s->park[i].hidden_lease == env->lease_renew->lease_id) s->park[i].since_ms = tis_now_ms();
            break;
        case TIS__ENVELOPE__BODY_LEASE_RELEASE:
            if (s->own) arena_lease_release(s->own, env->lease_release->lease_id);
            break;
        case TIS__ENVELOPE__BODY_CANCEL:
            if (s->decode) rc = s_decode_cancel(s, env->request_id);
            break;
        case TIS__ENVELOPE__BODY_BLOCK_FETCH:
            s_fetch_serve(s, env);
            break;
        case TIS__ENVELOPE__BODY_BLOCK_CHUNK:
            if (s->decode) s_fetch_chunk(s, env);
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
        if (job && !s_stop) rc = s_ready_again(s);
        if (job) s_fault_alloc(s, true); /* the job's scope ends with its READY */
        if (!rc && s->decode && !s_stop) rc = s_decode_step(s);
    }
    s_fault_alloc(s, true);
    s_self_destroy(&s);
    return rc;
}
