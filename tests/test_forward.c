/* test_forward: the batched forward pass against a naive reference (plain
 * loops, whole sequence recomputed), on tiny random models; prefill in one
 * batch, in chunks and token by token agree; errors for bad input; hooks,
 * compaction, batches and their invariance. The attention kernels' own
 * checks are in test_attention.c. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "forward.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "tiny_model.h"
#include "tt.h"

/* Optional attention mask for the reference: key j visible to query t of
 * (layer, kv head g)? NULL: plain causal. */
static bool (*s_visible)(int64_t layer, int64_t g, int64_t t, int64_t j);

/* The reference can round keys and values to f16 as an f16 cache stores
 * them. Off: exact. */
static bool s_ref_f16kv;

static void s_round_f16(float *x, int64_t n) {
    for (int64_t i = 0; s_ref_f16kv && i < n; i++) x[i] = quant_f16_to_f32(quant_f32_to_f16(x[i]));
}

/* A weight matrix dequantised to f32 [n_out][n_in] (malloc'd). */
static float *s_deq(const tis_weight *w) {
    float *f = malloc((size_t)(w->n_out * w->n_in) * sizeof(float));
    for (int64_t r = 0; r < w->n_out; r++)
        quant_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, f + r * w->n_in, w->n_in);
    return f;
}

/* The reference: llama2.c-style, every position recomputed from scratch,
 * no BLAS, double accumulators. Returns logits[T][n_vocab]. */
static float *s_naive(const model *m, const int32_t *ids, int64_t T) {
    const model_config *c = &m->config;
    const model_weights *w = &m->weights;
    int64_t d = c->d_model, hd = c->head_dim, nh = c->n_head, nkv = c->n_kv_head;
    int64_t qd = nh * hd, kd = nkv * hd, ff = c->d_ff, V = c->n_vocab;
    float *x = calloc((size_t)(T * d), sizeof(float));
    float *xn = calloc((size_t)(T * d), sizeof(float));
    float *q = calloc((size_t)(T * qd), sizeof(float));
    float *k = calloc((size_t)(T * kd), sizeof(float));
    float *v = calloc((size_t)(T * kd), sizeof(float));
    float *o = calloc((size_t)(T * qd), sizeof(float));
    float *h = calloc((size_t)(T * ff), sizeof(float));
    float *logits = calloc((size_t)(T * V), sizeof(float));
    double *att = calloc((size_t)T, sizeof(double));
    for (int64_t t = 0; t < T; t++)
        quant_dequantize_row(w->tok_embd.type, (const uint8_t *)w->tok_embd.data + (size_t)ids[t] * w->tok_embd.row_bytes,
                             x + t * d, d);
#define NORM(dst, src, wt)                                                        \
    for (int64_t t = 0; t < T; t++) {                                             \
        double ss = 0;                                                            \
        for (int64_t i = 0; i < d; i++) ss += (double)src[t * d + i] * src[t * d + i]; \
        double r = 1.0 / sqrt(ss / d + c->norm_eps);                              \
        for (int64_t i = 0; i < d; i++) dst[t * d + i] = (float)(src[t * d + i] * r * wt[i]); \
    }
#define MATVEC(dst, Wt, src, n_out, n_in, T_)                                     \
    do {                                                                          \
        float *W = s_deq(&(Wt));                                                  \
        for (int64_t t = 0; t < T_; t++)                                          \
            for (int64_t r = 0; r < n_out; r++) {                                 \
                double s = 0;                                                     \
                for (int64_t i = 0; i < n_in; i++) s += (double)W[r * n_in + i] * src[t * n_in + i]; \
                dst[t * n_out + r] = (float)s;                                    \
            }                                                                     \
        free(W);                                                                  \
    } while (0)
    for (int64_t l = 0; l < c->n_layer; l++) {
        const layer_weights *L = &w->layers[l];
        NORM(xn, x, L->attn_norm);
        MATVEC(q, L->wq, xn, qd, d, T);
        MATVEC(k, L->wk, xn, kd, d, T);
        MATVEC(v, L->wv, xn, kd, d, T);
        if (L->bq)
            for (int64_t t = 0; t < T; t++) {
                for (int64_t i = 0; i < qd; i++) q[t * qd + i] += L->bq[i];
                for (int64_t i = 0; i < kd; i++) k[t * kd + i] += L->bk[i], v[t * kd + i] += L->bv[i];
            }
        /* RoPE at position t, pairs per the model's convention. */
        for (int64_t t = 0; t < T; t++)
            for (int64_t which = 0; which < 2; which++) {
                float *base = which ? k + t * kd : q + t * qd;
                int64_t heads = which ? nkv : nh;
                for (int64_t hh = 0; hh < heads; hh++)
                    for (int64_t i = 0; i < hd / 2; i++) {
                        double f = pow(c->rope_theta, -2.0 * i / hd), a = t * f;
                        int64_t i0 = c->rope_interleaved ? 2 * i : i;
                        int64_t i1 = c->rope_interleaved ? 2 * i + 1 : i + hd / 2;
                        float *vv = base + hh * hd;
                        double x0 = vv[i0], x1 = vv[i1];
                        vv[i0] = (float)(x0 * cos(a) - x1 * sin(a));
                        vv[i1] = (float)(x0 * sin(a) + x1 * cos(a));
                    }
            }
        s_round_f16(k, T * kd);
        s_round_f16(v, T * kd);
        for (int64_t t = 0; t < T; t++)
            for (int64_t hh = 0; hh < nh; hh++) {
                int64_t g = hh / (nh / nkv);
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j <= t; j++) {
                    if (s_visible && !s_visible(l, g, t, j)) {
                        att[j] = -1e300; /* exp() -> 0 */
                        continue;
                    }
                    double s = 0;
                    for (int64_t i = 0; i < hd; i++) s += (double)q[t * qd + hh * hd + i] * k[j * kd + g * hd + i];
                    att[j] = s / sqrt((double)hd);
                    if (att[j] > mx) mx = att[j];
                }
                for (int64_t j = 0; j <= t; j++) sum += (att[j] = exp(att[j] - mx));
                for (int64_t i = 0; i < hd; i++) {
                    double s = 0;
                    for (int64_t j = 0; j <= t; j++) s += att[j] / sum * v[j * kd + g * hd + i];
                    o[t * qd + hh * hd + i] = (float)s;
                }
            }
        MATVEC(xn, L->wo, o, d, qd, T);
        for (int64_t i = 0; i < T * d; i++) x[i] += xn[i];
        NORM(xn, x, L->ffn_norm);
        float *u = calloc((size_t)(T * ff), sizeof(float));
        MATVEC(h, L->w_gate, xn, ff, d, T);
        MATVEC(u, L->w_up, xn, ff, d, T);
        for (int64_t i = 0; i < T * ff; i++) h[i] = h[i] / (1.0f + expf(-h[i])) * u[i];
        free(u);
        MATVEC(xn, L->w_down, h, d, ff, T);
        for (int64_t i = 0; i < T * d; i++) x[i] += xn[i];
    }
    NORM(xn, x, w->out_norm);
    MATVEC(logits, w->output, xn, V, d, T);
#undef NORM
#undef MATVEC
    free(x), free(xn), free(q), free(k), free(v), free(o), free(h), free(att);
    return logits;
}

static void s_check_model(const char *label, const tiny_spec *sp) {
    TT_CASE("model: %s", label);
    fprintf(stderr, "model %s\n", label);
    const char *path = tt_path("tiny.gguf");
    TT_OK(tiny_model_write(path, sp));
    model *m = NULL;
    TT_OK(model_load(&m, path));
    if (!m) return;
    backend_cpu_set_f32_act(true); /* exact; f16 KV and the defaults are checked in 4. and 5. */
    m->kv_type = kv_types_of(GGML_TYPE_F32);
    const int64_t T = 37, V = m->config.n_vocab;
    int32_t ids[37];
    uint64_t rng = 99;
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    float *ref = s_naive(m, ids, T);
    /* f32 with sgemm vs double loops: differences ~1e-5 on O(1) logits. */
    const double tol = 2e-4;

    /* 1. one batch, all logits */
    kv_cache *kv = NULL;
    forward_state *st = NULL;
    float *lg = malloc((size_t)(T * V) * sizeof(float));
    TT_OK(forward_kv_new(m, T, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 64));
    TT_OK(forward_run(st, kv, ids, T, lg, T, NULL));
    double dmax = tt_maxdiff(lg, ref, T * V);
    fprintf(stderr, "  batch vs naive: max |diff| %.2e\n", dmax);
    TT_CHECK(dmax < tol);
    TT_CHECK(kv->n_past == T);
    for (int64_t s = 0; s < kv->n_stream; s++) TT_CHECK(kv->len[s] == T);
    TT_CHECK(kv_cache_pos(kv, kv->n_stream - 1)[T - 1] == T - 1);
    TT_CHECK(kv_cache_bytes_used(kv) ==
             (size_t)(T * kv->n_stream) * (2 * (size_t)m->config.head_dim * 4 + 4));
    /* a full cache refuses more */
    TT_FAILS(forward_run(st, kv, ids, 1, lg, 1, NULL), TIS_ERANGE);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);

    /* 2. chunks of 8 (the batch limit), last 5 logits */
    TT_OK(forward_kv_new(m, T, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 8));
    TT_OK(forward_run(st, kv, ids, T, lg, 5, NULL));
    dmax = tt_maxdiff(lg, ref + (T - 5) * V, 5 * V);
    fprintf(stderr, "  chunked vs naive: max |diff| %.2e\n", dmax);
    TT_CHECK(dmax < tol);
    kv_cache_destroy(&kv);

    /* 3. a prefix in one call, then token by token (decode) */
    TT_OK(forward_kv_new(m, T + 3, &kv));
    TT_OK(forward_run(st, kv, ids, 20, lg, 1, NULL));
    double worst = tt_maxdiff(lg, ref + 19 * V, V);
    for (int64_t t = 20; t < T; t++) {
        TT_OK(forward_run(st, kv, ids + t, 1, lg, 1, NULL));
        double dd = tt_maxdiff(lg, ref + t * V, V);
        if (dd > worst) worst = dd;
    }
    fprintf(stderr, "  decode vs naive: max |diff| %.2e\n", worst);
    TT_CHECK(worst < tol);

    /* bad input */
    int32_t bad = (int32_t)V;
    TT_FAILS(forward_run(st, kv, &bad, 1, lg, 1, NULL), TIS_EINVAL);
    bad = -1;
    TT_FAILS(forward_run(st, kv, &bad, 1, lg, 1, NULL), TIS_EINVAL);
    TT_FAILS(forward_run(st, kv, ids, 0, lg, 0, NULL), TIS_EINVAL);
    TT_FAILS(forward_run(st, kv, ids, 2, lg, 3, NULL), TIS_EINVAL);
    kv_cache *other = NULL;
    TT_OK(kv_cache_new(&other, m->config.n_layer + 1, m->config.n_kv_head, m->config.head_dim, 4, m->kv_type.k));
    TT_FAILS(forward_run(st, other, ids, 1, lg, 1, NULL), TIS_EINVAL);
    kv_cache_destroy(&other);

    forward_state_destroy(&st);
    kv_cache_destroy(&kv);

    /* 4. an f16 KV cache against the reference that rounds keys and values
     * to f16 the same way. Engine and reference differ by ~1e-6 before the
     * rounding, so an element near the midpoint of two f16 values may round
     * to the other one: one f16 step (2^-11 relative) on a few elements, an
     * order of magnitude above the exact tolerance: 10x it. */
    m->kv_type = kv_types_of(GGML_TYPE_F16);
    s_ref_f16kv = true;
    float *ref_h = s_naive(m, ids, T);
    s_ref_f16kv = false;
    TT_OK(forward_kv_new(m, T, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 8));
    TT_OK(forward_run(st, kv, ids, T, lg, T, NULL));
    dmax = tt_maxdiff(lg, ref_h, T * V);
    fprintf(stderr, "  f16 KV vs naive rounding K, V to f16: max |diff| %.2e (vs the exact reference: %.2e)\n", dmax,
            tt_maxdiff(lg, ref, T * V));
    TT_CHECK(dmax < 10 * tol);
    TT_CHECK(kv_cache_bytes_used(kv) == (size_t)(T * kv->n_stream) * (2 * (size_t)m->config.head_dim * 2 + 4));
    kv_cache_destroy(&kv);
    /* 5. the defaults (8-bit activations in generated-token steps, f16 KV),
     * token by token, against the exact reference: normalised mean squared
     * error within the bound docs/correctness.md derives (the golden
     * test's, 1e-3) */
    backend_cpu_set_f32_act(false);
    TT_OK(forward_kv_new(m, T, &kv));
    for (int64_t t = 0; t < T; t++) TT_OK(forward_run(st, kv, ids + t, 1, lg + t * V, 1, NULL));
    double se = 0, ss = 0;
    for (int64_t i = 0; i < T * V; i++) se += ((double)lg[i] - ref[i]) * ((double)lg[i] - ref[i]), ss += (double)ref[i] * ref[i];
    fprintf(stderr, "  defaults vs the exact reference: NMSE %.2e, max |diff| %.2e\n", se / ss, tt_maxdiff(lg, ref, T * V));
    TT_CHECK(se / ss <= 1e-3);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    backend_cpu_set_f32_act(true);
    free(ref_h);
    free(lg);
    free(ref);
    model_destroy(&m);
}

/* Hooks see every layer's hidden state and attention rows that sum to 1.
 * Counts are kept per query head (on_attn may run on several threads, one
 * KV head each). */
typedef struct hook_log {
    int64_t hidden_calls, attn_rows[16];
    double worst_row_err[16];
} hook_log;

static void s_on_attn(void *u, int64_t layer, int64_t head, int64_t t0, int64_t nq,
                      const float *probs, int64_t n_keys) {
    hook_log *hl = u;
    for (int64_t r = 0; r < nq; r++) {
        double s = 0;
        for (int64_t j = 0; j < n_keys; j++) s += probs[r * n_keys + j];
        if (fabs(s - 1) > hl->worst_row_err[head]) hl->worst_row_err[head] = fabs(s - 1);
        hl->attn_rows[head]++;
    }
}

static void s_on_hidden(void *u, int64_t layer, int64_t t0, const float *x, int64_t T) {
    ((hook_log *)u)->hidden_calls++;
}

static void s_check_hooks(void) {
    TT_CASE("hooks");
    tiny_spec sp = tiny_spec_default();
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("hooks.gguf"), &sp, &m));
    if (!m) return;
    kv_cache *kv = NULL;
    forward_state *st = NULL;
    TT_OK(forward_kv_new(m, 16, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 16));
    int32_t ids[10] = {5, 9, 30, 31, 40, 41, 42, 100, 7, 8};
    hook_log hl = {0};
    forward_hooks hk = {.on_attn = s_on_attn, .on_hidden = s_on_hidden, .user = &hl};
    TT_OK(forward_run(st, kv, ids, 10, NULL, 0, &hk));
    TT_CHECK(hl.hidden_calls == sp.n_layer + 1);
    for (int64_t h = 0; h < sp.n_head; h++) {
        TT_CHECK(hl.attn_rows[h] == 10 * sp.n_layer);
        TT_CHECK(hl.worst_row_err[h] < 1e-5);
    }
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    model_destroy(&m);
}

/* forward_hooks.stop_layer: the residual stream entering layer L is the
 * same whether the pass stops there or runs on (over chunks that attend
 * to the earlier chunks' cache), nothing above L is reported, and a pass
 * that stops early refuses to give logits. */
typedef struct grab {
    int64_t layer, d, max_layer_seen;
    float *x; /* [T][d] */
} grab;

static void s_grab(void *u, int64_t layer, int64_t t0, const float *x, int64_t T) {
    grab *g = u;
    if (layer > g->max_layer_seen) g->max_layer_seen = layer;
    if (layer == g->layer) memcpy(g->x + t0 * g->d, x, (size_t)(T * g->d) * sizeof(float));
}

static void s_check_stop_layer(void) {
    TT_CASE("stop_layer");
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 4;
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("stop.gguf"), &sp, &m));
    if (!m) return;
    int64_t d = m->config.d_model;
    int32_t ids[11] = {5, 9, 30, 31, 40, 41, 42, 100, 7, 8, 3};
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), 4)); /* 3 chunks */
    for (int64_t L = 1; st && L < 4; L++) {
        float *a = calloc((size_t)(11 * d), sizeof(float)), *b = calloc((size_t)(11 * d), sizeof(float));
        grab ga = {L, d, -1, a}, gb = {L, d, -1, b};
        kv_cache *kv = NULL;
        forward_hooks ha = {.on_hidden = s_grab, .user = &ga}, hb = {.on_hidden = s_grab, .user = &gb, .stop_layer = L};
        TT_OK(forward_kv_new(m, 16, &kv));
        TT_OK(forward_run(st, kv, ids, 11, NULL, 0, &ha));
        kv_cache_destroy(&kv);
        TT_OK(forward_kv_new(m, 16, &kv));
        TT_OK(forward_run(st, kv, ids, 11, NULL, 0, &hb));
        TT_CHECK(kv && kv->n_past == 11);
        kv_cache_destroy(&kv);
        TT_CHECK(ga.max_layer_seen == 4 && gb.max_layer_seen == L);
        TT_CHECK(memcmp(a, b, (size_t)(11 * d) * sizeof(float)) == 0);
        free(a);
        free(b);
    }
    kv_cache *kv = NULL;
    float *lg = malloc((size_t)m->config.n_vocab * sizeof(float));
    TT_OK(forward_kv_new(m, 16, &kv));
    forward_hooks bad = {.stop_layer = 2};
    if (kv && lg) TT_FAILS(forward_run(st, kv, ids, 3, lg, 1, &bad), TIS_EINVAL);
    free(lg);
    bad.stop_layer = -1;
    TT_FAILS(forward_run(st, kv, ids, 3, NULL, 0, &bad), TIS_EINVAL);
    kv_cache_destroy(&kv);
    forward_state_destroy(&st);
    model_destroy(&m);
}

/* Compaction is attention masking: evict context entries per (layer, kv
 * head), continue with new tokens on the compacted cache; the logits equal
 * the reference's with the evicted keys masked for the new queries only
 * (original positions kept, no re-rotation). */
enum { M_PRE = 3, M_CTX = 29, M_SUF = 6 };
static uint8_t s_keep[8][8][M_CTX];
static bool s_mask_fn(int64_t layer, int64_t g, int64_t t, int64_t j) {
    if (t < M_PRE + M_CTX || j < M_PRE || j >= M_PRE + M_CTX) return true;
    return s_keep[layer][g][j - M_PRE] != 0;
}

static void s_check_compaction(void) {
    TT_CASE("compaction");
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("compact.gguf"), &sp, &m));
    if (!m) return;
    m->kv_type = kv_types_of(GGML_TYPE_F32); /* exact: against the naive reference */
    int64_t V = m->config.n_vocab, T = M_PRE + M_CTX + M_SUF;
    int32_t ids[M_PRE + M_CTX + M_SUF];
    uint64_t rng = 1234;
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), 8));
    kv_cache *kv = NULL, *c = NULL;
    TT_OK(forward_kv_new(m, M_PRE + M_CTX, &kv));
    TT_OK(forward_run(st, kv, ids, M_PRE + M_CTX, NULL, 0, NULL));
    /* ragged: each stream keeps its own random subset (some keep none) */
    uint8_t *keep = calloc((size_t)(kv->n_stream * (M_PRE + M_CTX)), 1);
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int64_t g = 0; g < kv->n_kv_head; g++) {
            int64_t s = kv_stream(kv, l, g);
            for (int64_t j = 0; j < M_PRE + M_CTX; j++) {
                bool in_ctx = j >= M_PRE;
                bool k = !in_ctx || (s == 1 ? false : tt_randf(&rng) > 0.2f);
                keep[kv->off[s] + j] = (uint8_t)k;
                if (in_ctx) s_keep[l][g][j - M_PRE] = (uint8_t)k;
            }
        }
    TT_OK(kv_cache_compact(&c, kv, keep, M_SUF));
    float *lg = malloc((size_t)V * sizeof(float));
    if (c) TT_OK(forward_run(st, c, ids + M_PRE + M_CTX, M_SUF, lg, 1, NULL));
    s_visible = s_mask_fn;
    float *ref = s_naive(m, ids, T);
    s_visible = NULL;
    double dmax = tt_maxdiff(lg, ref + (T - 1) * V, V);
    float *plain = s_naive(m, ids, T);
    double dplain = tt_maxdiff(lg, plain + (T - 1) * V, V);
    fprintf(stderr, "  compacted vs masked reference: %.2e (vs unmasked: %.2e)\n", dmax, dplain);
    TT_CHECK(dmax < 1e-3);
    TT_CHECK(dplain > 1e-2); /* the eviction did change the result */

    /* The attention bias: -1e9 on an entry is evicting it; it survives compaction. */
    kv_cache *bk = NULL, *bc = NULL;
    float *lb = malloc((size_t)V * sizeof(float));
    TT_OK(kv_cache_compact(&bk, kv, NULL, M_SUF));
    TT_OK(kv_cache_enable_bias(bk));
    if (bk && bk->bias) {
        for (int64_t s = 0; s < bk->n_stream; s++)
            for (int64_t j = 0; j < bk->len[s]; j++)
                bk->bias[bk->off[s] + j] = keep[kv->off[s] + j] ? 0.0f : -1e9f;
        TT_OK(kv_cache_compact(&bc, bk, NULL, 0)); /* a fork keeps the bias */
        TT_CHECK(bc && bc->bias && bc->bias[bc->off[1] + M_PRE] == -1e9f);
        TT_OK(forward_run(st, bk, ids + M_PRE + M_CTX, M_SUF, lb, 1, NULL));
        double db = tt_maxdiff(lb, lg, V);
        fprintf(stderr, "  bias -1e9 vs evicted: %.2e\n", db);
        TT_CHECK(db < 1e-4);
        TT_CHECK(bk->bias[bk->off[0] + M_PRE + M_CTX] == 0.0f); /* new entries: no bias */
    }
    kv_cache_destroy(&bk);
    kv_cache_destroy(&bc);
    free(lb);
    free(ref);
    free(plain);
    free(lg);
    free(keep);
    kv_cache_destroy(&c);
    kv_cache_destroy(&kv);
    forward_state_destroy(&st);
    model_destroy(&m);
}

/* forward_run_batch: several caches at different lengths, compressed or
 * not, token counts that split across chunks; each sequence's logits match
 * running it alone. Shared caches are refused. */
static void s_check_batch(void) {
    TT_CASE("batch");
    tiny_spec sp = tiny_spec_default();
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("batch.gguf"), &sp, &m));
    if (!m) return;
    m->kv_type = kv_types_of(GGML_TYPE_F32); /* exact: against the naive reference */
    int64_t V = m->config.n_vocab;
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), 8));
    enum { NS = 4 };
    int64_t pre[NS] = {5, 0, 12, 3}, ntok[NS] = {1, 11, 3, 7};
    int32_t ids[NS][16];
    uint64_t rng = 99;
    for (int i = 0; i < NS; i++)
        for (int t = 0; t < 16; t++) ids[i][t] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    kv_cache *a[NS], *b[NS];
    float *la = malloc((size_t)(NS * V) * sizeof(float)), *lb = malloc((size_t)(NS * V) * sizeof(float));
    for (int i = 0; i < NS; i++) {
        TT_OK(forward_kv_new(m, 32, &a[i]));
        if (pre[i]) TT_OK(forward_run(st, a[i], ids[(i + 1) % NS], pre[i], NULL, 0, NULL));
        /* sequence 2 decodes from a compacted (ragged) cache */
        uint8_t keep[32 * 8];
        for (int64_t e = 0; e < (int64_t)sizeof keep; e++) keep[e] = (uint8_t)(i != 2 || (e % 3) != 1);
        if (i == 2) {
            kv_cache *c = NULL;
            TT_OK(kv_cache_compact(&c, a[i], keep, 16));
            kv_cache_destroy(&a[i]);
            a[i] = c;
        }
        TT_OK(kv_cache_compact(&b[i], a[i], NULL, 16));
    }
    const int32_t *idp[NS];
    for (int i = 0; i < NS; i++) idp[i] = ids[i];
    TT_OK(forward_run_batch(st, a, NS, idp, ntok, la));
    double worst = 0;
    for (int i = 0; i < NS; i++) {
        TT_OK(forward_run(st, b[i], ids[i], ntok[i], lb + i * V, 1, NULL));
        TT_CHECK(a[i]->n_past == b[i]->n_past && a[i]->len[0] == b[i]->len[0]);
        for (int64_t j = 0; j < V; j++) {
            double e = fabs((double)la[i * V + j] - lb[i * V + j]);
            if (e > worst) worst = e;
        }
    }
    fprintf(stderr, "  batch vs alone: worst logit diff %.2e\n", worst);
    TT_CHECK(worst < 1e-4);
    kv_cache *dup[2] = {a[0], a[0]};
    const int32_t *dids[2] = {ids[0], ids[1]};
    int64_t dn[2] = {1, 1};
    TT_FAILS(forward_run_batch(st, dup, 2, dids, dn, la), TIS_EINVAL);
    for (int i = 0; i < NS; i++) {
        kv_cache_destroy(&a[i]);
        kv_cache_destroy(&b[i]);
    }
    free(la);
    free(lb);
    forward_state_destroy(&st);
    model_destroy(&m);
}

/* Generated-token steps are batch-invariant with the defaults: one decode
 * step of 20 sequences (more than the 16 rows of the small-product path)
 * gives each sequence the logits it gets alone, bit for bit. */
static void s_check_batch_invariance(void) {
    TT_CASE("generated-token steps: batch-invariant (defaults, Q4_1)");
    tiny_spec sp = tiny_spec_default();
    sp.wtype = GGML_TYPE_Q4_1;
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("invariant.gguf"), &sp, &m));
    if (!m) return;
    backend_cpu_set_f32_act(false);
    m->kv_type = kv_types_of(GGML_TYPE_F16);
    enum { NS = 20 };
    int64_t V = m->config.n_vocab;
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), NS));
    kv_cache *a[NS], *b[NS];
    int32_t ids[NS][8];
    const int32_t *idp[NS];
    int64_t one[NS];
    uint64_t rng = 5;
    for (int i = 0; i < NS; i++) {
        for (int t = 0; t < 8; t++) ids[i][t] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
        TT_OK(forward_kv_new(m, 16, &a[i]));
        TT_OK(forward_run(st, a[i], ids[i], 3 + i % 5, NULL, 0, NULL)); /* prompts of 3..7 tokens */
        TT_OK(kv_cache_compact(&b[i], a[i], NULL, 4));
        idp[i] = &ids[i][7];
        one[i] = 1;
    }
    float *la = malloc((size_t)(NS * V) * sizeof(float)), *lb = malloc((size_t)V * sizeof(float));
    forward_set_prompt(st, 0);
    TT_OK(forward_run_batch(st, a, NS, idp, one, la));
    int differ = 0;
    for (int i = 0; i < NS; i++) {
        TT_OK(forward_run(st, b[i], idp[i], 1, lb, 1, NULL));
        differ += memcmp(la + i * V, lb, (size_t)V * sizeof(float)) != 0;
    }
    forward_set_prompt(st, -1);
    fprintf(stderr, "  %d of %d sequences differ between a step of %d and a step alone\n", differ, NS, NS);
    TT_CHECK(differ == 0);
    for (int i = 0; i < NS; i++) kv_cache_destroy(&a[i]), kv_cache_destroy(&b[i]);
    free(la), free(lb);
    forward_state_destroy(&st);
    backend_cpu_set_f32_act(true);
    model_destroy(&m);
}

int main(void) {
    tiny_spec sp = tiny_spec_default();
    s_check_model("llama, GQA 4:2, tied, f32", &sp);
    sp.n_kv_head = 1;
    sp.tied = 0;
    sp.seed = 11;
    s_check_model("llama, MQA 4:1, untied", &sp);
    sp = tiny_spec_default();
    sp.arch = "qwen2";
    sp.n_kv_head = 4;
    sp.seed = 3;
    s_check_model("qwen2 (QKV bias, half rotation), MHA", &sp);
    sp = tiny_spec_default();
    sp.wtype = GGML_TYPE_Q4_1;
    s_check_model("llama, Q4_1 weights", &sp);
    s_check_hooks();
    s_check_stop_layer();
    s_check_batch();
    s_check_batch_invariance();
    s_check_compaction();
    return tt_done("test_forward");
}
