/* worker_prefill: the prefill worker's jobs: a question prefilled and
 * compressed into a block of its arena, compression after outside scores,
 * eval samples, label samples; and the fetches of its blocks by decode
 * workers on other hosts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"
#include "label.h"
#include "tis_error.h"
#include "wire_eval.h"
#include "wire_label.h"
#include "worker_internal.h"

/* The compressed cache as a flat block under a lease: in our device pool
 * (a cuda worker) or our arena. *br: its handle. */
static int s_put_block(self_t *s, const kv_cache *kv, size_t nb, Tis__BlockRef *br) {
    uint64_t off = 0, lease = 0;
    int rc;
    if (s->dpool) {
        /* The boundary copy: the cache is on the host until engine/kv.c keeps
         * it on the device (then the compaction writes into the pool). */
        void *host = malloc(nb ? nb : 1);
        if (!host) return tis_error(TIS_ENOMEM, "out of memory");
        kv_cache_block_write(kv, host);
        rc = devpool_put(s->dpool, host, nb, s->o->lease_ms, &off, &lease);
        free(host);
        if (!rc) *br = devpool_blockref(s->dpool, off, nb, lease, fetch_host_id());
        return rc;
    }
    arena_expire(s->own, tis_now_ms()); /* blocks nobody came for */
    rc = arena_alloc(s->own, nb ? nb : 1, s->o->lease_ms, &off, &lease);
    if (rc) return rc;
    kv_cache_block_write(kv, arena_at(s->own, off, nb));
    *br = worker_blockref(s, off, nb, lease);
    return 0;
}

/* The compressed cache as a flat block under a lease -> PrefillDone
 * (BlockRef + KvLayout + the tokens decode runs first). */
static int s_send_block(self_t *s, uint64_t request_id, const session_result *rp) {
    size_t nb = kv_cache_block_bytes(rp->kv);
    Tis__BlockRef br;
    int rc = s_put_block(s, rp->kv, nb, &br);
    if (rc) return rc;
    uint32_t *lens = malloc((size_t)rp->kv->n_stream * sizeof *lens);
    if (!lens) {
        worker_lease_release(s, br.lease_id);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < rp->kv->n_stream; i++) lens[i] = (uint32_t)rp->kv->len[i];
    Tis__KvLayout lay = TIS__KV_LAYOUT__INIT;
    lay.n_layer = (uint32_t)rp->kv->n_layer;
    lay.n_kv_head = (uint32_t)rp->kv->n_kv_head;
    lay.head_dim = (uint32_t)rp->kv->head_dim;
    lay.n_stream_len = (size_t)rp->kv->n_stream;
    lay.stream_len = lens;
    lay.n_past = (uint64_t)rp->kv->n_past;
    lay.dtype = (uint32_t)rp->kv->k_type;
    if (rp->kv->v_type != rp->kv->k_type) lay.v_dtype1 = (uint32_t)rp->kv->v_type + 1;
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
    rc = worker_send(s, &out);
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
int worker_prefill(self_t *s, const Tis__Envelope *env) {
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
    session_request rq = {.budget = q->budget, .budget_tokens = q->budget_tokens, .threshold = q->kv_threshold,
                          .query_aware = q->query_aware,
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
    press_spec ps;
    const head *hd[2];
    rc = worker_policy(s, q->policy && *q->policy ? q->policy : "full", &ps, hd);
    if (rc) return rc;
    rq.policy = ps.m[0];
    if (ps.n == 2) rq.policy_b = ps.m[1]; /* a union: tis_si+lpool5|tis+lpool5+recent64/8 */
    if (q->keep_context && (rq.query_aware || !rq.policy.score)) /* the kept block must hold no question */
        return tis_error(TIS_EINVAL, "keep_context needs a compression policy (not %s) without query_aware: the "
                         "kept block must hold the context alone", ps.name);
    bool outside = env->prefill_job->outside_scores && press_spec_needs_head(&ps);
    if (outside) { /* the scorer's heads read the layer our copies read */
        if (s->n_park == MAX_PARKED) return tis_error(TIS_ERANGE, "%d requests already wait for scores", MAX_PARKED);
        if (hd[0]) rq.hook_lambda = hd[0]->attn_hook_lambda;
    }
    session *rs = NULL;
    double t0 = tis_now();
    rc = session_request_begin(&rs, s->st, &s->ct, &in, &rq, hd[0], hd[1], outside);
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
    Tis__BlockRef br = worker_blockref(s, off, nb, lease);
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.hidden = &br;
    pd.n_ctx = (uint32_t)n_ctx;
    pd.n_query = (uint32_t)n_q;
    pd.d_model = (uint32_t)d;
    const session_prompt *sp = session_get_prompt(rs); /* parked: alive until the send */
    pd.n_ctx_ids = (size_t)n_ctx;
    pd.ctx_ids = sp->ids + sp->ctx_begin;
    pd.prefill_s = begin_s;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    out.prefill_done = &pd;
    return worker_send(s, &out);
}

/* CompressJob: a parked request's scores are in: compress, hand the block. */
int worker_compress(self_t *s, const Tis__Envelope *env) {
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
    arena *a = rc ? NULL : worker_peer(s, j->scores);
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

/* EvalJob: one sample through every policy x budget x protocol of its
 * spec (eval_run_sample, as tis eval runs it in one process) -> EvalDone
 * with the rows. The runner is kept while the spec stays the same. */
int worker_eval(self_t *s, const Tis__Envelope *env) {
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
        rc = worker_send(s, &out);
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
int worker_label(self_t *s, const Tis__Envelope *env) {
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
        br = worker_blockref(s, off, nb, lease);
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
    rc = worker_send(s, &out);
    label_sample_free(&ls);
    return rc;
}


/* A BlockFetch (a decode worker on another host reads one of our blocks). */
void worker_fetch_serve(self_t *s, const Tis__Envelope *env) {
    char err[512];
    Tis__BlockChunk c;
    const Tis__BlockRef *br = env->block_fetch->block;
    if (s->dpool && br && br->device == TIS__DEVICE__DEVICE_CUDA) /* a consumer that cannot open our pool */
        devpool_fetch_serve(s->dpool, s->o->lease_ms, env->block_fetch, &c, s->stage, err, sizeof err);
    else
        fetch_serve(s->own, s->o->lease_ms, env->block_fetch, &c, err, sizeof err);
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_BLOCK_CHUNK;
    out.block_chunk = &c;
    worker_send(s, &out);
}
