/* request: the prefill stage of one request (eval's computations for one
 * policy and budget). */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "generate.h"
#include "oracle.h"
#include "tis_error.h"

/* A request between its prefill and its compression. */
struct request_state {
    const model *m;
    forward_state *st;
    request_opts o;
    const press *pr;          /* &o.policy */
    eval_prompt p;
    kv_cache *kv;
    press_obs obs;
    oracle_labels orc;
    const head *hd;
    bool qa_path;
    int64_t n_suf, win;
    double prefill_s;
};

void request_state_free(request_state **pp) {
    if (!pp || !*pp) return;
    request_state *r = *pp;
    oracle_labels_free(&r->orc);
    press_obs_free(&r->obs);
    kv_cache_destroy(&r->kv);
    eval_prompt_free(&r->p);
    free(r);
    *pp = NULL;
}

int request_begin(forward_state *st, const chat_template *ct, bool chat, const bench_sample *s,
                  const request_opts *o, bool outside_scores, request_state **out) {
    *out = NULL;
    const model *m = forward_model(st);
    const press *pr = &o->policy;
    if (pr->query_head && !o->query_aware)
        return tis_error(TIS_EINVAL, "request: %s needs the query-aware protocol", pr->name);
    if (pr->needs_head && !outside_scores && !(pr->query_head ? o->head_q : o->head_ctx))
        return tis_error(TIS_EINVAL, "request: %s needs an importance head", pr->name);
    if (pr->needs_head && outside_scores && o->head_layer < 0)
        return tis_error(TIS_EINVAL, "request: %s scored outside needs the head's layer", pr->name);
    if (pr->needs_oracle && s->n_answers < 1)
        return tis_error(TIS_EINVAL, "request: oracle needs the sample's answer");
    request_state *r = calloc(1, sizeof *r);
    if (!r) return tis_error(TIS_ENOMEM, "request: out of memory");
    r->m = m;
    r->st = st;
    r->o = *o;
    r->pr = &r->o.policy;
    int rc = eval_prompt_build(m->tok, ct, chat, s, &r->p);
    if (rc) {
        free(r);
        return rc;
    }
    eval_prompt *p = &r->p;
    r->n_suf = p->n - p->suf_begin;
    int64_t ctx_end = p->ctx_begin + p->n_ctx;
    r->qa_path = o->query_aware || !pr->score; /* full: as eval, the question goes in uncompressed */
    kv_cache *fork = NULL;
    int32_t *ans = NULL;
    int64_t n_ans = 0;
    r->hd = pr->needs_head && !outside_scores ? (pr->query_head ? o->head_q : o->head_ctx) : NULL;
    int64_t layer = r->hd ? r->hd->cfg.layer : pr->needs_head ? o->head_layer : -1;
    r->win = o->window < p->n_ctx ? o->window : p->n_ctx;
    rc = eval_prefill_context(st, p, r->win, layer, &r->kv, &r->obs, &r->prefill_s);
    if (!rc && r->qa_path) {
        press_obs_window(&r->obs, ctx_end);
        double t0 = tis_now();
        rc = press_obs_prefill(&r->obs, st, r->kv, p->ids + p->suf_begin, r->n_suf - 1, NULL, 0);
        r->prefill_s += tis_now() - t0;
    }
    if (rc) goto done;
    if (pr->needs_oracle) { /* the answer after the whole prompt, on a fork */
        rc = eval_answer_ids(m->tok, s, &ans, &n_ans);
        if (!rc && n_ans < 1) rc = tis_error(TIS_EINVAL, "request: the answer encodes to nothing");
        if (!rc) rc = kv_cache_compact(&fork, r->kv, NULL, r->n_suf + n_ans);
        if (!rc && !r->qa_path) rc = forward_run(st, fork, p->ids + p->suf_begin, r->n_suf - 1, NULL, 0, NULL);
        if (!rc) rc = forward_run(st, fork, p->ids + p->n - 1, 1, NULL, 0, NULL);
        if (!rc) rc = oracle_compute(st, fork, p->ctx_begin, p->n_ctx, ans, n_ans, false, &r->orc);
        kv_cache_destroy(&fork);
    }
done:
    free(ans);
    if (rc) request_state_free(&r);
    *out = r;
    return rc;
}

bool request_needs_scores(const request_state *r) { return r->pr->needs_head && !r->hd; }

int request_hidden(const request_state *r, float **rows, int64_t *n_ctx, int64_t *n_q) {
    *rows = NULL;
    *n_ctx = r->p.n_ctx;
    *n_q = r->n_suf - 1;
    int64_t d = r->m->config.d_model;
    if (!r->obs.hid) return tis_error(TIS_EINVAL, "request: no hidden states were kept");
    float *out = malloc((size_t)((*n_ctx + *n_q) * d) * sizeof(float));
    if (!out) return tis_error(TIS_ENOMEM, "request: out of memory");
    memcpy(out, r->obs.hid + r->p.ctx_begin * d, (size_t)(*n_ctx * d) * sizeof(float));
    memcpy(out + *n_ctx * d, r->obs.hid + r->p.suf_begin * d, (size_t)(*n_q * d) * sizeof(float));
    *rows = out;
    return 0;
}

int request_finish(request_state *r, const float *scores, request_prefilled *out) {
    memset(out, 0, sizeof *out);
    const press *pr = r->pr;
    const eval_prompt *p = &r->p;
    const request_opts *o = &r->o;
    kv_cache *kv = r->kv;
    int64_t *kept = NULL;
    float *hs = NULL;
    press_plan *plan = NULL;
    int rc = 0;
    out->prefill_s = r->prefill_s;
    double tc = tis_now();
    if (pr->needs_head && !scores) {
        if (!r->hd) return tis_error(TIS_EINVAL, "request: %s needs scores from a scorer", pr->name);
        hs = malloc((size_t)p->n_ctx * sizeof(float));
        rc = hs ? head_score_context(r->hd, r->obs.hid, p->ctx_begin, p->n_ctx, p->suf_begin, r->n_suf - 1, hs)
                : tis_error(TIS_ENOMEM, "request: out of memory for head scores");
        if (rc) goto done;
        scores = hs;
    }
    out->n_rest = r->qa_path ? 1 : r->n_suf;
    if (!pr->score) { /* full */
        rc = kv_cache_compact(&out->kv, kv, NULL, out->n_rest + o->max_new);
        out->kept_mean = p->n_ctx;
    } else {
        int64_t k = o->budget > 0 ? press_budget_tokens(o->budget, p->n_ctx)
                                  : (o->budget_tokens < p->n_ctx ? o->budget_tokens : p->n_ctx);
        press_ctx pc = {.kv = kv, .obs = &r->obs, .oracle = r->orc.total ? &r->orc : NULL,
                        .ctx_begin = p->ctx_begin, .n_ctx = p->n_ctx, .window = r->qa_path ? 0 : r->win,
                        .n_sink = o->n_sink, .seed = o->seed ^ (uint64_t)p->n * 0x9e3779b97f4a7c15ull,
                        .head_scores = pr->needs_head ? scores : NULL};
        kept = malloc((size_t)kv->n_stream * sizeof *kept);
        if (!kept) rc = tis_error(TIS_ENOMEM, "request: out of memory");
        if (!rc && k < 1) rc = tis_error(TIS_EINVAL, "request: a budget of %lld tokens", (long long)k);
        if (!rc) rc = press_plan_new(&plan, pr, &pc);
        if (!rc) rc = press_plan_compact(plan, k, out->n_rest + o->max_new, &out->kv, kept);
        if (!rc) {
            int64_t sum = 0;
            for (int64_t q = 0; q < kv->n_stream; q++) sum += kept[q];
            out->kept_mean = (sum + kv->n_stream / 2) / kv->n_stream;
        }
    }
    out->compress_s = tis_now() - tc;
    if (rc) goto done;
    out->rest = malloc((size_t)out->n_rest * sizeof(int32_t));
    if (!out->rest) {
        rc = tis_error(TIS_ENOMEM, "request: out of memory");
        goto done;
    }
    memcpy(out->rest, p->ids + p->n - out->n_rest, (size_t)out->n_rest * sizeof(int32_t));
    out->n_ctx = p->n_ctx;
    out->full_kv_bytes = (int64_t)((size_t)p->n * (size_t)kv->n_stream *
                                   (2 * (size_t)kv->head_dim * sizeof(float) + sizeof(int32_t)));
done:
    free(kept);
    free(hs);
    press_plan_destroy(&plan);
    if (rc) request_prefilled_free(out);
    return rc;
}

int request_prefill(forward_state *st, const chat_template *ct, bool chat, const bench_sample *s,
                    const request_opts *o, request_prefilled *out) {
    memset(out, 0, sizeof *out);
    request_state *r = NULL;
    int rc = request_begin(st, ct, chat, s, o, false, &r);
    if (!rc) rc = request_finish(r, NULL, out);
    request_state_free(&r);
    return rc;
}

void request_prefilled_free(request_prefilled *p) {
    if (!p) return;
    kv_cache_destroy(&p->kv);
    free(p->rest);
    memset(p, 0, sizeof *p);
}
