/* request: the prefill stage of one request (eval's computations for one
 * policy and budget). */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "generate.h"
#include "oracle.h"
#include "tis_error.h"

int request_prefill(forward_state *st, const chat_template *ct, bool chat, const bench_sample *s,
                    const request_opts *o, request_prefilled *out) {
    memset(out, 0, sizeof *out);
    const model *m = forward_model(st);
    const press *pr = &o->policy;
    if (pr->query_head && !o->query_aware)
        return tis_error(TIS_EINVAL, "request: %s needs the query-aware protocol", pr->name);
    if (pr->needs_head && !(pr->query_head ? o->head_q : o->head_ctx))
        return tis_error(TIS_EINVAL, "request: %s needs an importance head", pr->name);
    if (pr->needs_oracle && s->n_answers < 1)
        return tis_error(TIS_EINVAL, "request: oracle needs the sample's answer");
    eval_prompt p;
    int rc = eval_prompt_build(m->tok, ct, chat, s, &p);
    if (rc) return rc;
    int64_t n_suf = p.n - p.suf_begin, ctx_end = p.ctx_begin + p.n_ctx;
    bool qa_path = o->query_aware || !pr->score; /* full: as eval, the question goes in uncompressed */
    kv_cache *kv = NULL, *fork = NULL;
    press_obs obs = {0};
    oracle_labels orc = {0};
    press_plan *plan = NULL;
    float *hs = NULL;
    int32_t *ans = NULL;
    int64_t n_ans = 0, *kept = NULL;
    rc = forward_kv_new(m, p.n, &kv);
    if (!rc) rc = press_obs_init(&obs, m, p.n);
    const head *hd = pr->needs_head ? (pr->query_head ? o->head_q : o->head_ctx) : NULL;
    if (!rc && hd) rc = press_obs_capture_hidden(&obs, hd->cfg.layer, m->config.d_model);
    if (rc) goto done;
    int64_t win = o->window < p.n_ctx ? o->window : p.n_ctx;
    press_obs_window(&obs, ctx_end - win);
    double t0 = tis_now();
    rc = press_obs_prefill(&obs, st, kv, p.ids, ctx_end, NULL, 0);
    if (!rc && qa_path) {
        press_obs_window(&obs, ctx_end);
        rc = press_obs_prefill(&obs, st, kv, p.ids + p.suf_begin, n_suf - 1, NULL, 0);
    }
    out->prefill_s = tis_now() - t0;
    if (rc) goto done;
    if (pr->needs_oracle) { /* the answer after the whole prompt, on a fork */
        rc = eval_answer_ids(m->tok, s, &ans, &n_ans);
        if (!rc && n_ans < 1) rc = tis_error(TIS_EINVAL, "request: the answer encodes to nothing");
        if (!rc) rc = kv_cache_compact(&fork, kv, NULL, n_suf + n_ans);
        if (!rc && !qa_path) rc = forward_run(st, fork, p.ids + p.suf_begin, n_suf - 1, NULL, 0, NULL);
        if (!rc) rc = forward_run(st, fork, p.ids + p.n - 1, 1, NULL, 0, NULL);
        if (!rc) rc = oracle_compute(st, fork, p.ctx_begin, p.n_ctx, ans, n_ans, false, &orc);
        kv_cache_destroy(&fork);
        if (rc) goto done;
    }
    double tc = tis_now();
    if (hd) {
        hs = malloc((size_t)p.n_ctx * sizeof(float));
        rc = hs ? head_score_context(hd, obs.hid, p.ctx_begin, p.n_ctx, p.suf_begin, n_suf - 1, hs)
                : tis_error(TIS_ENOMEM, "request: out of memory for head scores");
        if (rc) goto done;
    }
    out->n_rest = qa_path ? 1 : n_suf;
    if (!pr->score) { /* full */
        rc = kv_cache_compact(&out->kv, kv, NULL, out->n_rest + o->max_new);
        out->kept_mean = p.n_ctx;
    } else {
        int64_t k = o->budget > 0 ? press_budget_tokens(o->budget, p.n_ctx)
                                  : (o->budget_tokens < p.n_ctx ? o->budget_tokens : p.n_ctx);
        press_ctx pc = {.kv = kv, .obs = &obs, .oracle = orc.total ? &orc : NULL,
                        .ctx_begin = p.ctx_begin, .n_ctx = p.n_ctx, .window = qa_path ? 0 : win,
                        .n_sink = o->n_sink, .seed = o->seed ^ (uint64_t)p.n * 0x9e3779b97f4a7c15ull,
                        .head_scores = hs};
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
    memcpy(out->rest, p.ids + p.n - out->n_rest, (size_t)out->n_rest * sizeof(int32_t));
    out->n_ctx = p.n_ctx;
    out->full_kv_bytes = (int64_t)((size_t)p.n * (size_t)kv->n_stream *
                                   (2 * (size_t)kv->head_dim * sizeof(float) + sizeof(int32_t)));
done:
    free(kept);
    free(hs);
    free(ans);
    press_plan_destroy(&plan);
    oracle_labels_free(&orc);
    press_obs_free(&obs);
    kv_cache_destroy(&kv);
    eval_prompt_free(&p);
    if (rc) request_prefilled_free(out);
    return rc;
}

void request_prefilled_free(request_prefilled *p) {
    if (!p) return;
    kv_cache_destroy(&p->kv);
    free(p->rest);
    memset(p, 0, sizeof *p);
}
