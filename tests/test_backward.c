/* test_backward: the suffix pass of engine/backward.c.
 *
 * 1. Its forward (no bias) gives the log-probabilities forward_run gives on
 *    the same cache (f32 cache, f32 activations: summation order only).
 * 2. Its gradient of KL(full || biased) w.r.t. every entry's bias matches
 *    central finite differences, on llama (adjacent-pair RoPE, tied) and
 *    qwen2 (half RoPE, QKV biases) shapes, GQA, a ragged (compacted) cache,
 *    f32 and Q8_0 matrices. Tolerance: the finite difference's truncation
 *    error is eps^2/6 * |L'''| (eps 1e-2: ~1e-5 relative to the curvature
 *    scale) and its rounding error about 1e-7 * |L| / eps (~1e-4 here); both stay under
 *    0.2 % of the largest gradient plus 2e-5, which an error in any step of
 *    the backward (a missing transpose, a wrong RoPE sign, a dropped
 *    residual) exceeds by orders of magnitude.
 * 3. With no bias the loss and every gradient are zero (the minimum).
 * 4. A bias of -1e4 on the dropped entries gives what the compacted cache
 *    gives: the soft eviction's limit is the hard one.
 * 5. Bad arguments are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "forward.h"
#include "quant.h"
#include "tiny_model.h"
#include "tis_error.h"
#include "tt.h"

enum { N_CTX = 23, T_SUF = 7, N_ROWS = 4 };

static void s_log_softmax(const float *z, float *lp, int64_t n) {
    double mx = z[0], sum = 0;
    for (int64_t i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    for (int64_t i = 0; i < n; i++) sum += exp(z[i] - mx);
    for (int64_t i = 0; i < n; i++) lp[i] = (float)(z[i] - mx - log(sum));
}

static double s_loss(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, const int64_t *rows,
                     const float *ref, int64_t V) {
    float *lp = malloc((size_t)(N_ROWS * V) * sizeof *lp);
    TT_OK(suffix_logprobs(g, kv, bias, ids, T_SUF, rows, N_ROWS, lp));
    double kl = 0;
    for (int64_t i = 0; i < N_ROWS * V; i++) kl += exp((double)ref[i]) * ((double)ref[i] - lp[i]);
    free(lp);
    return kl;
}

/* A context prefilled into an f32 cache, compacted to a ragged one when asked. */
static kv_cache *s_context(const model *m, const int32_t *ctx, bool ragged, uint64_t *rng) {
    forward_state *st = NULL;
    kv_cache *kv = NULL, *out = NULL;
    float *lg = malloc((size_t)m->config.n_vocab * sizeof *lg);
    TT_OK(forward_kv_new(m, N_CTX, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 64));
    TT_OK(forward_run(st, kv, ctx, N_CTX, lg, 1, NULL));
    uint8_t *keep = malloc((size_t)kv_cache_entries(kv));
    for (int64_t e = 0; e < kv_cache_entries(kv); e++) keep[e] = !ragged || tt_randf(rng) > -0.4f;
    TT_OK(kv_cache_compact(&out, kv, keep, T_SUF));
    free(keep);
    free(lg);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    return out;
}

static void s_check_forward(const model *m, kv_cache *kv, suffix_grad *g, const int32_t *suf, const int64_t *rows) {
    int64_t V = m->config.n_vocab;
    float *lp = malloc((size_t)(N_ROWS * V) * sizeof *lp), *lg = malloc((size_t)(T_SUF * V) * sizeof *lg),
          *ref = malloc((size_t)V * sizeof *ref);
    TT_OK(suffix_logprobs(g, kv, NULL, suf, T_SUF, rows, N_ROWS, lp));
    kv_cache *fork = NULL;
    forward_state *st = NULL;
    TT_OK(kv_cache_compact(&fork, kv, NULL, T_SUF));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 64));
    TT_OK(forward_run(st, fork, suf, T_SUF, lg, T_SUF, NULL));
    double worst = 0;
    for (int64_t r = 0; r < N_ROWS; r++) {
        s_log_softmax(lg + rows[r] * V, ref, V);
        for (int64_t i = 0; i < V; i++) worst = fmax(worst, fabs((double)ref[i] - lp[r * V + i]));
    }
    fprintf(stderr, "  forward vs forward_run: max |dlogp| %.2e\n", worst);
    TT_CHECK(worst < 1e-4);
    forward_state_destroy(&st);
    kv_cache_destroy(&fork);
    free(lp), free(lg), free(ref);
}

static void s_check_grad(const model *m, kv_cache *kv, suffix_grad *g, const int32_t *suf, const int64_t *rows,
                         uint64_t *rng) {
    int64_t V = m->config.n_vocab, n_e = kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1];
    float *ref = malloc((size_t)(N_ROWS * V) * sizeof *ref), *bias = calloc((size_t)n_e, sizeof *bias),
          *db = calloc((size_t)n_e, sizeof *db);
    TT_OK(suffix_logprobs(g, kv, NULL, suf, T_SUF, rows, N_ROWS, ref));
    /* 3. at the reference itself: zero loss, zero gradient */
    double loss = -1;
    TT_OK(suffix_kl_grad(g, kv, NULL, suf, T_SUF, rows, N_ROWS, ref, &loss, db));
    double gmax = 0;
    for (int64_t e = 0; e < n_e; e++) gmax = fmax(gmax, fabs(db[e]));
    fprintf(stderr, "  no bias: loss %.2e, max |grad| %.2e\n", loss, gmax);
    TT_CHECK(fabs(loss) < 1e-5 && gmax < 1e-5);
    /* 2. a random bias: analytic vs central differences */
    for (int64_t e = 0; e < n_e; e++) bias[e] = 1.5f * tt_randf(rng), db[e] = 0;
    TT_OK(suffix_kl_grad(g, kv, bias, suf, T_SUF, rows, N_ROWS, ref, &loss, db));
    double l0 = s_loss(g, kv, bias, suf, rows, ref, V);
    fprintf(stderr, "  loss %.6f (from the logprobs %.6f)\n", loss, l0);
    TT_CHECK(fabs(loss - l0) <= 1e-5 * fmax(1.0, fabs(l0)));
    gmax = 0;
    for (int64_t s = 0; s < kv->n_stream; s++)
        for (int64_t i = 0; i < kv->len[s]; i++) gmax = fmax(gmax, fabs(db[kv->off[s] + i]));
    const float eps = 1e-2f;
    double worst = 0;
    int n_checked = 0;
    for (int64_t s = 0; s < kv->n_stream; s++) {
        for (int64_t i = 0; i < kv->len[s]; i += 1 + (int64_t)((tt_randf(rng) + 1.0f) * 3.0f), n_checked++) {
            int64_t e = kv->off[s] + i;
            float b0 = bias[e];
            bias[e] = b0 + eps;
            double lp = s_loss(g, kv, bias, suf, rows, ref, V);
            bias[e] = b0 - eps;
            double lm = s_loss(g, kv, bias, suf, rows, ref, V);
            bias[e] = b0;
            double fd = (lp - lm) / (2.0 * eps), err = fabs(fd - db[e]);
            if (err > worst) worst = err;
        }
    }
    fprintf(stderr, "  %d entries: max |analytic - finite difference| %.2e, max |grad| %.2e\n", n_checked, worst, gmax);
    TT_CHECK(gmax > 1e-4); /* the check is not vacuous */
    TT_CHECK(worst <= 2e-3 * gmax + 2e-5);
    free(ref), free(bias), free(db);
}

/* 4. bias -1e4 on dropped entries == the compacted cache. */
static void s_check_eviction(const model *m, kv_cache *kv, suffix_grad *g, const int32_t *suf, const int64_t *rows,
                             uint64_t *rng) {
    int64_t V = m->config.n_vocab, n_e = kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1];
    float *bias = calloc((size_t)n_e, sizeof *bias), *a = malloc((size_t)(N_ROWS * V) * sizeof *a),
          *b = malloc((size_t)(N_ROWS * V) * sizeof *b);
    uint8_t *keep = calloc((size_t)n_e, 1);
    for (int64_t s = 0; s < kv->n_stream; s++)
        for (int64_t i = 0; i < kv->len[s]; i++) {
            keep[kv->off[s] + i] = tt_randf(rng) > 0.0f;
            bias[kv->off[s] + i] = keep[kv->off[s] + i] ? 0.0f : -1e4f;
        }
    kv_cache *small = NULL;
    TT_OK(kv_cache_compact(&small, kv, keep, 0));
    TT_OK(suffix_logprobs(g, kv, bias, suf, T_SUF, rows, N_ROWS, a));
    TT_OK(suffix_logprobs(g, small, NULL, suf, T_SUF, rows, N_ROWS, b));
    double worst = 0;
    for (int64_t i = 0; i < N_ROWS * V; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    fprintf(stderr, "  bias -1e4 vs compacted: max |dlogp| %.2e\n", worst);
    TT_CHECK(worst < 1e-5);
    kv_cache_destroy(&small);
    free(bias), free(a), free(b), free(keep);
}

static void s_model_case(const char *label, const tiny_spec *sp, bool ragged) {
    TT_CASE("%s", label);
    fprintf(stderr, "%s\n", label);
    const char *path = tt_path("tiny.gguf");
    TT_OK(tiny_model_write(path, sp));
    model *m = NULL;
    TT_OK(model_load(&m, path));
    if (!m) return;
    m->kv_type = kv_types_of(GGML_TYPE_F32);
    uint64_t rng = sp->seed * 7 + 1;
    int64_t V = m->config.n_vocab;
    int32_t ctx[N_CTX], suf[T_SUF];
    for (int i = 0; i < N_CTX; i++) ctx[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    for (int i = 0; i < T_SUF; i++) suf[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    const int64_t rows[N_ROWS] = {3, 4, 5, 6};
    kv_cache *kv = s_context(m, ctx, ragged, &rng);
    suffix_grad *g = NULL;
    TT_OK(suffix_grad_new(&g, m, 16));
    if (kv && g) {
        if (!ragged) s_check_forward(m, kv, g, suf, rows);
        s_check_grad(m, kv, g, suf, rows, &rng);
        s_check_eviction(m, kv, g, suf, rows, &rng);
    }
    suffix_grad_destroy(&g);
    kv_cache_destroy(&kv);
    model_destroy(&m);
}

static void s_bad_input(void) {
    TT_CASE("bad input");
    tiny_spec sp = tiny_spec_default();
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("tiny.gguf"), &sp, &m));
    if (!m) return;
    suffix_grad *g = NULL;
    TT_FAILS(suffix_grad_new(&g, m, 0), TIS_EINVAL);
    TT_OK(suffix_grad_new(&g, m, 4));
    kv_cache *kv = NULL, *other = NULL;
    TT_OK(forward_kv_new(m, 8, &kv));
    TT_OK(kv_cache_new(&other, m->config.n_layer + 1, m->config.n_kv_head, m->config.head_dim, 8, GGML_TYPE_F32));
    int32_t ids[5] = {1, 2, 3, 4, 5}, bad[1] = {-3};
    int64_t rows[2] = {0, 4}, row0 = 0;
    float *lp = malloc((size_t)(2 * m->config.n_vocab) * sizeof *lp);
    TT_FAILS(suffix_logprobs(g, kv, NULL, ids, 5, &row0, 1, lp), TIS_EINVAL);  /* longer than max_T */
    TT_FAILS(suffix_logprobs(g, kv, NULL, ids, 4, rows, 2, lp), TIS_EINVAL);   /* row 4 of 4 */
    TT_FAILS(suffix_logprobs(g, kv, NULL, bad, 1, &row0, 1, lp), TIS_EINVAL);  /* token id */
    TT_FAILS(suffix_logprobs(g, other, NULL, ids, 2, &row0, 1, lp), TIS_EINVAL); /* another model's cache */
    double loss;
    TT_FAILS(suffix_kl_grad(g, kv, NULL, ids, 2, &row0, 1, NULL, &loss, NULL), TIS_EINVAL);
    TT_OK(suffix_logprobs(g, kv, NULL, ids, 2, &row0, 1, lp)); /* an empty cache is fine */
    free(lp);
    kv_cache_destroy(&kv);
    kv_cache_destroy(&other);
    suffix_grad_destroy(&g);
    model_destroy(&m);
}

int main(void) {
    backend_cpu_set_f32_act(true);
    tiny_spec sp = tiny_spec_default();
    s_model_case("llama, GQA 4/2, f32", &sp, false);
    tiny_spec q = tiny_spec_default();
    q.arch = "qwen2";
    q.n_head = 6, q.n_kv_head = 2, q.d_model = 72, q.seed = 5;
    s_model_case("qwen2, GQA 6/2, f32, ragged cache", &q, true);
    tiny_spec q8 = tiny_spec_default();
    q8.wtype = GGML_TYPE_Q8_0, q8.tied = 1, q8.seed = 11;
    s_model_case("llama, Q8_0, tied", &q8, false);
    s_bad_input();
    return tt_done("test_backward");
}
