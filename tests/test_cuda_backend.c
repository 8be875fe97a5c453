/* test_cuda_backend: every op of the CUDA backend against its CPU twin
 * (kernels/cpu, the reference) on awkward shapes: sizes that are not
 * multiples of a tile, GQA groups 1, 3, 4, 7, 8, ragged per-head caches
 * (heads left 0 or 1 context entries), contexts of 1, 17 and past 4k, with
 * and without the attention bias, f32 caches and (where the CUDA backend
 * takes them) f16 / bf16 ones. Both compute in f32 (cuBLAS
 * without TF32), so the tolerance is f32 summation-order noise: a relative
 * 1e-4 of the output's scale, plus 1e-5. Skips (77) without CUDA or a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv.h"
#include "quant.h"
#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#include "cuda/cuda_probe.h"

static const tis_backend *s_gpu;
static uint64_t s_rng = 12345;

static float *s_rand(int64_t n, float scale) {
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = scale * tt_randf(&s_rng);
    return v;
}

static float *s_up(const float *h, int64_t n) {
    float *d = s_gpu->alloc(s_gpu->ctx, (size_t)(n ? n : 1) * sizeof(float));
    TT_CHECK(d != NULL);
    if (d) TT_OK(backend_cuda_upload(d, h, (size_t)n * sizeof(float)));
    return d;
}

static void s_down(float *h, const float *d, int64_t n) { TT_OK(backend_cuda_download(h, d, (size_t)n * sizeof(float))); }

/* max |a - b| within 1e-4 of max |a| (+ 1e-5) */
static bool s_close(const char *what, const float *a, const float *b, int64_t n) {
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(a[i]));
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    }
    bool ok = worst <= 1e-4 * scale + 1e-5;
    fprintf(stderr, "  %-40s max |cpu - cuda| %.2e (scale %.2e) %s\n", what, worst, scale, ok ? "ok" : "FAIL");
    return ok;
}

static void s_matmul(int64_t T, int64_t n_in, int64_t n_out, bool acc) {
    const tis_backend *cpu = backend_cpu();
    float *x = s_rand(T * n_in, 1), *w = s_rand(n_out * n_in, 0.1f), *y = s_rand(T * n_out, 1);
    float *yc = malloc((size_t)(T * n_out) * sizeof *yc), *yg = malloc((size_t)(T * n_out) * sizeof *yg);
    memcpy(yc, y, (size_t)(T * n_out) * sizeof *yc);
    tis_weight wh = {.type = 0 /* F32 */, .data = w, .row_bytes = (size_t)n_in * sizeof(float), .n_in = n_in,
                     .n_out = n_out};
    cpu->matmul(NULL, yc, x, &wh, T, acc);
    float *dx = s_up(x, T * n_in), *dw = s_up(w, n_out * n_in), *dy = s_up(y, T * n_out);
    tis_weight wd = wh;
    wd.data = dw;
    s_gpu->matmul(s_gpu->ctx, dy, dx, &wd, T, acc);
    s_down(yg, dy, T * n_out);
    char what[64];
    snprintf(what, sizeof what, "matmul T=%lld %lldx%lld%s", (long long)T, (long long)n_in, (long long)n_out,
             acc ? " +=" : "");
    TT_CHECK(s_close(what, yc, yg, T * n_out));
    s_gpu->free(s_gpu->ctx, dx), s_gpu->free(s_gpu->ctx, dw), s_gpu->free(s_gpu->ctx, dy);
    free(x), free(w), free(y), free(yc), free(yg);
}

static void s_elementwise(void) {
    const tis_backend *cpu = backend_cpu();
    int64_t T = 5, d = 577, n = T * d;
    float *x = s_rand(n, 2), *w = s_rand(d, 1), *u = s_rand(n, 1), *yc = malloc((size_t)n * 4), *yg = malloc((size_t)n * 4);
    float *dx = s_up(x, n), *dw = s_up(w, d), *du = s_up(u, n), *dy = s_up(x, n);
    cpu->rmsnorm(NULL, yc, x, w, T, d, 1e-5f);
    s_gpu->rmsnorm(s_gpu->ctx, dy, dx, dw, T, d, 1e-5f);
    s_down(yg, dy, n);
    TT_CHECK(s_close("rmsnorm 5 x 577", yc, yg, n));
    memcpy(yc, x, (size_t)n * 4);
    cpu->swiglu(NULL, yc, u, n);
    s_gpu->swiglu(s_gpu->ctx, dx, du, n);
    s_down(yg, dx, n);
    TT_CHECK(s_close("swiglu 2885", yc, yg, n));
    memcpy(yc, u, (size_t)n * 4);
    cpu->add(NULL, yc, x, n);
    TT_OK(backend_cuda_upload(dx, x, (size_t)n * 4));
    s_gpu->add(s_gpu->ctx, du, dx, n);
    s_down(yg, du, n);
    TT_CHECK(s_close("add 2885", yc, yg, n));
    memcpy(yc, x, (size_t)n * 4);
    cpu->add_bias(NULL, yc, w, T, d);
    s_gpu->add_bias(s_gpu->ctx, dx, dw, T, d);
    s_down(yg, dx, n);
    TT_CHECK(s_close("add_bias 5 x 577", yc, yg, n));
    s_gpu->free(s_gpu->ctx, dx), s_gpu->free(s_gpu->ctx, dw), s_gpu->free(s_gpu->ctx, du), s_gpu->free(s_gpu->ctx, dy);
    free(x), free(w), free(u), free(yc), free(yg);
}

static void s_rope(int64_t hd, int64_t rope_dim, bool interleaved) {
    const tis_backend *cpu = backend_cpu();
    int64_t T = 7, nh = 3, n = T * nh * hd;
    float inv[128];
    for (int64_t i = 0; i < rope_dim / 2; i++) inv[i] = (float)pow(100000.0, -2.0 * (double)i / (double)rope_dim);
    rope_params rp = {.head_dim = hd, .rope_dim = rope_dim, .interleaved = interleaved, .inv_freq = inv,
                      .pos_scale = 1.0f};
    int32_t pos[7] = {0, 1, 17, 4095, 4096, 33333, 99999};
    float *x = s_rand(n, 1), *yg = malloc((size_t)n * 4), *dx = s_up(x, n);
    int32_t *dpos = s_gpu->alloc(s_gpu->ctx, sizeof pos);
    TT_OK(backend_cuda_upload(dpos, pos, sizeof pos));
    cpu->rope(NULL, x, pos, T, nh, &rp);
    s_gpu->rope(s_gpu->ctx, dx, dpos, T, nh, &rp);
    s_down(yg, dx, n);
    char what[64];
    snprintf(what, sizeof what, "rope hd %lld, %lld rotated, %s", (long long)hd, (long long)rope_dim,
             interleaved ? "pairs" : "halves");
    TT_CHECK(s_close(what, x, yg, n));
    s_gpu->free(s_gpu->ctx, dx), s_gpu->free(s_gpu->ctx, dpos);
    free(x), free(yg);
}

/* Layer 1 of a 2-layer cache of element type dtype, n_kv kv heads with
 * ragged lengths len[], the last T entries of each stream new; n_head =
 * group * n_kv queries. A stream of length T kept none of its context (a
 * budget that leaves the head 0 entries), T + 1 kept one. f16 / bf16
 * entries are the same values for both backends (each widens them to f32
 * exactly), so the f32 tolerance holds for them too. */
static void s_attention_dt(int64_t hd, int64_t n_kv, int64_t group, int64_t T, const int64_t *len, bool bias,
                           int dtype) {
    const tis_backend *cpu = backend_cpu();
    int64_t caps[2 * 64];
    for (int64_t l = 0; l < 2; l++)
        for (int64_t h = 0; h < n_kv; h++) caps[l * n_kv + h] = len[h] + 3;
    kv_cache *kv = NULL;
    TT_OK(kv_cache_new_ragged(&kv, 2, n_kv, hd, caps, dtype));
    if (!kv) return;
    if (bias) TT_OK(kv_cache_enable_bias(kv));
    float *kr = malloc((size_t)hd * sizeof *kr), *vr = malloc((size_t)hd * sizeof *vr);
    for (int64_t s = 0; s < kv->n_stream; s++) {
        kv->len[s] = len[s % n_kv];
        for (int64_t i = 0; i < kv->len[s]; i++) {
            for (int64_t d = 0; d < hd; d++) {
                kr[d] = tt_randf(&s_rng);
                vr[d] = tt_randf(&s_rng);
            }
            kv_cache_put(kv, s, i, kr, vr);
            kv->pos[kv->off[s] + i] = (int32_t)i;
            if (bias) kv->bias[kv->off[s] + i] = 2.0f * tt_randf(&s_rng) - (i % 7 == 0 ? 1e9f : 0.0f);
        }
    }
    int64_t nh = n_kv * group, n = T * nh * hd;
    float *q = s_rand(n, 1), *oc = malloc((size_t)n * 4), *og = malloc((size_t)n * 4);
    kv_view hv = kv_cache_view(kv), dv = {0};
    cpu->attention(NULL, oc, q, &hv, 1, T, nh, NULL);
    int up = backend_cuda_kv_upload(&dv, &hv);
    if (up == TIS_EUNSUPPORTED && dtype != GGML_TYPE_F32) {
        /* Not a pass: the CUDA backend cannot hold this cache type yet (the
         * compare runs as soon as it can). */
        fprintf(stderr, "  attention over a %s cache: NOT TESTED, the CUDA backend refuses it: %s\n",
                kv_dtype_name(dtype), tis_last_error());
        kv_cache_destroy(&kv);
        free(q), free(oc), free(og), free(kr), free(vr);
        return;
    }
    TT_OK(up);
    float *dq = s_up(q, n), *dout = s_up(q, n);
    if (!up) s_gpu->attention(s_gpu->ctx, dout, dq, &dv, 1, T, nh, NULL);
    s_down(og, dout, n);
    char what[128];
    snprintf(what, sizeof what, "attention %s hd %lld, %lldx%lld heads, T %lld, L %lld..%lld%s", kv_dtype_name(dtype),
             (long long)hd, (long long)n_kv, (long long)group, (long long)T, (long long)len[0],
             (long long)len[n_kv - 1], bias ? ", bias" : "");
    TT_CHECK(s_close(what, oc, og, n));
    if (!up) backend_cuda_kv_release(&dv);
    kv_cache_destroy(&kv);
    s_gpu->free(s_gpu->ctx, dq), s_gpu->free(s_gpu->ctx, dout);
    free(q), free(oc), free(og), free(kr), free(vr);
}

static void s_attention(int64_t hd, int64_t n_kv, int64_t group, int64_t T, const int64_t *len, bool bias) {
    s_attention_dt(hd, n_kv, group, T, len, bias, GGML_TYPE_F32);
}

static void s_obs_fn(void *u, int64_t layer, int64_t head, int64_t q0, int64_t nq, const float *p, int64_t nk) {}

/* The residency ops (kernels/backend.h) against the CPU's: upload and
 * download round trip; kv_append into f32 / f16 / bf16 caches (bit-equal:
 * both round to nearest even); a Q4_1 weight prepared (dequantised to f32)
 * and multiplied, against the CPU's product of the same blocks with f32
 * activations (f32 summation order: the matmul tolerance); sync; an
 * attention observer refused with an error, not an abort. */
static void s_residency(void) {
    const tis_backend *cpu = backend_cpu();
    void *g = s_gpu->ctx;
    float h[300], back[300];
    for (int i = 0; i < 300; i++) h[i] = tt_randf(&s_rng);
    float *d = s_gpu->alloc(g, sizeof h);
    TT_OK(s_gpu->upload(g, d, h, sizeof h));
    TT_OK(s_gpu->download(g, back, d, sizeof h));
    TT_CHECK(memcmp(h, back, sizeof h) == 0);
    s_gpu->free(g, d);
    int types[3] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    int64_t hd = 64, n_kv = 3, T = 5, rows = 60, at[3] = {0, 17, 40};
    for (int ti = 0; ti < 3; ti++) {
        size_t es = types[ti] == GGML_TYPE_F32 ? 4 : 2, kvb = (size_t)(rows * hd) * es;
        float *k = s_rand(T * n_kv * hd, 3), *v = s_rand(T * n_kv * hd, 3);
        char *kc = calloc(1, kvb), *vc = calloc(1, kvb), *kg = malloc(kvb), *vg = malloc(kvb);
        float bias[60], bias_g[60];
        for (int i = 0; i < 60; i++) bias[i] = 1.0f + (float)i;
        float *dk = s_up(k, T * n_kv * hd), *dv = s_up(v, T * n_kv * hd), *db = s_up(bias, rows);
        void *dkc = s_gpu->alloc(g, kvb), *dvc = s_gpu->alloc(g, kvb);
        TT_OK(s_gpu->upload(g, dkc, kc, kvb));
        TT_OK(s_gpu->upload(g, dvc, vc, kvb));
        TT_OK(cpu->kv_append(NULL, kc, vc, bias, types[ti], types[ti], hd, n_kv, at, NULL, k, v, T));
        TT_OK(s_gpu->kv_append(g, dkc, dvc, db, types[ti], types[ti], hd, n_kv, at, NULL, dk, dv, T));
        TT_OK(s_gpu->download(g, kg, dkc, kvb));
        TT_OK(s_gpu->download(g, vg, dvc, kvb));
        s_down(bias_g, db, rows);
        bool same = !memcmp(kc, kg, kvb) && !memcmp(vc, vg, kvb) && !memcmp(bias, bias_g, sizeof bias);
        fprintf(stderr, "  kv_append %-4s 3 heads x 5 rows: %s\n", kv_dtype_name(types[ti]), same ? "bit-equal" : "FAIL");
        TT_CHECK(same);
        s_gpu->free(g, dk), s_gpu->free(g, dv), s_gpu->free(g, db), s_gpu->free(g, dkc), s_gpu->free(g, dvc);
        free(k), free(v), free(kc), free(vc), free(kg), free(vg);
    }
    TT_CHECK(s_gpu->kv_append(g, NULL, NULL, NULL, GGML_TYPE_Q4_1, GGML_TYPE_Q4_1, hd, n_kv, at, NULL, NULL, NULL, T) == TIS_EINVAL);
    /* a Q4_1 weight, 257 x 96, prepared and multiplied (T = 1 and 9) */
    int64_t n_in = 96, n_out = 257;
    size_t rb = 0;
    TT_OK(quant_row_bytes(GGML_TYPE_Q4_1, n_in, &rb));
    float *wf = s_rand(n_in * n_out, 0.2f);
    uint8_t *wq = malloc(rb * (size_t)n_out);
    for (int64_t r = 0; r < n_out; r++) quant_quantize_row(GGML_TYPE_Q4_1, wf + r * n_in, wq + r * rb, n_in);
    tis_weight wh = {.type = GGML_TYPE_Q4_1, .data = wq, .row_bytes = rb, .n_in = n_in, .n_out = n_out}, wd = {0};
    TT_OK(s_gpu->weight_prepare(g, &wd, &wh));
    TT_CHECK(wd.type == GGML_TYPE_F32 && wd.n_in == n_in && wd.n_out == n_out);
    backend_cpu_set_f32_act(true);
    for (int64_t T2 = 1; T2 <= 9; T2 += 8) {
        float *x = s_rand(T2 * n_in, 1), *yc = malloc((size_t)(T2 * n_out) * 4), *yg = malloc((size_t)(T2 * n_out) * 4);
        float *dx = s_up(x, T2 * n_in), *dy = s_gpu->alloc(g, (size_t)(T2 * n_out) * 4);
        TT_OK(cpu->matmul(NULL, yc, x, &wh, T2, false));
        TT_OK(s_gpu->matmul(g, dy, dx, &wd, T2, false));
        s_down(yg, dy, T2 * n_out);
        TT_CHECK(s_close(T2 == 1 ? "Q4_1 prepared, matmul T=1" : "Q4_1 prepared, matmul T=9", yc, yg, T2 * n_out));
        s_gpu->free(g, dx), s_gpu->free(g, dy);
        free(x), free(yc), free(yg);
    }
    if (wd.data) s_gpu->free(g, (void *)wd.data);
    free(wf), free(wq);
    TT_OK(s_gpu->sync(g));
    TT_CHECK(s_gpu->cannot_observe);
    attn_observer obs = {s_obs_fn, NULL};
    kv_view none = {.n_layer = 1, .n_kv_head = 1, .head_dim = 64};
    TT_CHECK(s_gpu->attention(g, NULL, NULL, &none, 0, 1, 1, &obs) == TIS_EUNSUPPORTED);
}
#endif

int main(void) {
#ifdef TIS_HAVE_CUDA
    char info[1024];
    if (cuda_probe(info, sizeof info) == 0) {
        printf("test_cuda_backend: skipped: %s\n", info);
        return 77;
    }
    printf("%s", info);
    s_gpu = backend_cuda(0);
    TT_CHECK(s_gpu != NULL);
    if (!s_gpu) return tt_done("test_cuda_backend");
    s_matmul(1, 67, 129, false);
    s_matmul(7, 64, 33, true);
    s_matmul(33, 577, 65, false);
    s_matmul(300, 576, 1536, true);
    s_elementwise();
    s_rope(64, 64, true);
    s_rope(64, 64, false);
    s_rope(128, 32, false);
    int64_t l1[3] = {7, 300, 33}, l2[1] = {4100}, l3[8] = {1, 2, 3, 257, 256, 255, 1000, 64};
    s_attention(64, 3, 3, 1, l1, false);   /* decode, SmolLM2's GQA */
    s_attention(64, 3, 3, 5, l1, true);    /* a few new tokens, ragged, bias with evictions */
    s_attention(128, 1, 4, 1, l2, false);  /* past 4k */
    s_attention(128, 8, 4, 1, l3, true);   /* Llama-3 shape, lengths around a tile */
    s_attention(64, 2, 1, 40, (int64_t[]){600, 40}, false); /* prefill-like: 40 new tokens */
    /* Context lengths 1, 17, 4k+; GQA ratios 1, 7 (Qwen2.5-0.5B: 14 / 2), 8;
     * budgets that leave a head 0 or 1 context entries (length T, T + 1). */
    s_attention(64, 2, 7, 1, (int64_t[]){1, 17}, false);             /* Qwen's GQA, contexts 1 and 17 */
    s_attention(64, 2, 7, 17, (int64_t[]){17, 4113}, true);          /* 17 new tokens: all-new, and after 4096 */
    s_attention(128, 2, 8, 1, (int64_t[]){4097, 2}, true);           /* group 8, past 4096 next to 1 kept */
    s_attention(64, 4, 1, 1, (int64_t[]){1, 2, 1, 4097}, false);     /* group 1, heads with 0 and 1 kept */
    s_attention(64, 3, 3, 3, (int64_t[]){3, 4, 4099}, true);         /* 3 new tokens over 0, 1, 4096 kept */
    s_attention(64, 3, 3, 1, (int64_t[]){257, 1, 2}, false);         /* SmolLM2: a tile + 1, 0 and 1 kept */
    /* f16 and bf16 caches (both backends read them) */
    s_attention_dt(64, 2, 7, 1, (int64_t[]){17, 300}, true, GGML_TYPE_F16);
    s_attention_dt(64, 2, 7, 5, (int64_t[]){5, 4100}, false, GGML_TYPE_BF16);
    s_residency();
    return tt_done("test_cuda_backend");
#else
    printf("test_cuda_backend: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
