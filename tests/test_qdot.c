/* test_qdot: the quantised dot products. For every weight type: the
 * reference against the f32 dot of the dequantised row, within the bound
 * the activation's 8-bit quantisation allows; every SIMD version this CPU
 * runs against the reference (equal up to float summation order) on
 * awkward lengths and unaligned rows (blocks inside an mmap sit anywhere);
 * the T-row functions (a batched decode step) bitwise equal to the row
 * function for every T. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qdot.h"
#include "quant.h"
#include "tt.h"

static uint64_t s_rng = 42;

static const int s_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                              GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};

/* The bound on |ref - exact| from quantising the activation: each element
 * moves by at most half its block's step d/2, so the dot moves by at most
 * sum_j |w_j| * d_block / 2 (plus float rounding). */
static double s_bound(const float *wd, const float *x, int64_t n, int64_t blk) {
    double b = 0;
    for (int64_t i = 0; i < n; i += blk) {
        float amax = 0;
        for (int64_t j = i; j < i + blk; j++) amax = fmaxf(amax, fabsf(x[j]));
        double step = amax / 127.0;
        for (int64_t j = i; j < i + blk; j++) b += fabs(wd[j]) * step / 2;
    }
    return b;
}

static void s_case(int type, int64_t n, int misalign) {
    int64_t blk = quant_block_elems(type);
    if (n % blk) return;
    size_t rb = 0;
    TT_OK(quant_row_bytes(type, n, &rb));
    float *w = malloc((size_t)n * sizeof(float)), *x = malloc((size_t)n * sizeof(float));
    float *wd = malloc((size_t)n * sizeof(float));
    uint8_t *raw = malloc(rb + 8), *row = raw + misalign;
    for (int64_t j = 0; j < n; j++) {
        w[j] = tt_randf(&s_rng) * (j % 97 == 0 ? 4.0f : 1.0f); /* a few outliers */
        x[j] = tt_randf(&s_rng) * (j % 61 == 0 ? 8.0f : 1.0f);
    }
    quant_quantize_row(type, w, row, n);
    quant_dequantize_row(type, row, wd, n);
    double exact = 0, mag = 0;
    for (int64_t j = 0; j < n; j++) {
        exact += (double)wd[j] * x[j];
        mag += fabs((double)wd[j] * x[j]);
    }
    size_t ab = qdot_act_bytes(type, n);
    void *act = malloc(ab ? ab : 1);
    qdot_act_quantize(type, x, n, act);
    float ref = qdot_row_fn_for(type, QDOT_REF)(row, act, x, n);
    double bound = (ab ? s_bound(wd, x, n, blk < 32 ? 32 : blk) : 0) + 1e-5 * mag + 1e-6;
    bool ok = fabs(ref - exact) <= bound;
    TT_CHECK(ok);
    if (!ok)
        fprintf(stderr, "  %s n=%lld: ref %.6g, exact %.6g, bound %.3g\n", quant_type_name(type), (long long)n, ref,
                exact, bound);
    /* rows to f32: quant_dequantize_row's values */
    for (qdot_isa isa = QDOT_REF; isa <= qdot_isa_best(); isa++) {
        float *dq = malloc((size_t)n * sizeof(float));
        qdot_deq_fn_for(type, isa)(row, dq, n);
        /* d*q + m may or may not be fused, here or in the reference: one rounding */
        double worst = 0;
        for (int64_t j = 0; j < n; j++) worst = fmax(worst, fabs((double)dq[j] - wd[j]) / (fabs(wd[j]) + 1e-3));
        TT_CHECK(worst <= 1e-6);
        free(dq);
    }
    /* f32 activations: the exact product up to float summation order */
    for (qdot_isa isa = QDOT_REF; isa <= qdot_isa_best(); isa++) {
        float got = qdot_f32act_fn_for(type, isa)(row, NULL, x, n);
        bool near = fabs(got - exact) <= 2e-6 * mag + 1e-6;
        TT_CHECK(near);
        if (!near)
            fprintf(stderr, "  f32act %s %s n=%lld +%d: %.8g vs exact %.8g\n", quant_type_name(type),
                    qdot_isa_name(isa), (long long)n, misalign, got, exact);
    }
    for (qdot_isa isa = QDOT_AVX2; isa <= qdot_isa_best(); isa++) {
        qdot_row_fn fn = qdot_row_fn_for(type, isa);
        float got = fn(row, act, x, n);
        bool same = fabs(got - ref) <= 2e-6 * mag + 1e-6;
        TT_CHECK(same);
        if (!same)
            fprintf(stderr, "  %s %s n=%lld +%d: %.8g vs ref %.8g\n", quant_type_name(type), qdot_isa_name(isa),
                    (long long)n, misalign, got, ref);
    }
    free(w), free(x), free(wd), free(raw), free(act);
}

/* qdot_rows_fn against T calls of the row function at the same isa: the
 * same bits (a sequence's logits must not depend on its batch). Returns
 * how many (isa, kind) pairs had a T-row function. */
static int s_rows_case(int type, int64_t n, int misalign, int64_t T) {
    size_t rb = 0;
    if (quant_row_bytes(type, n, &rb)) return 0;
    uint8_t *raw = malloc(rb + 8), *row = raw + misalign;
    float *w = malloc((size_t)n * sizeof(float)), *x = malloc((size_t)(n * T) * sizeof(float));
    for (int64_t j = 0; j < n; j++) w[j] = tt_randf(&s_rng) * (j % 97 == 0 ? 4.0f : 1.0f);
    for (int64_t j = 0; j < n * T; j++) x[j] = tt_randf(&s_rng) * (j % 61 == 0 ? 8.0f : 1.0f);
    quant_quantize_row(type, w, row, n);
    size_t ab = qdot_act_bytes(type, n);
    uint8_t *act = malloc(ab * (size_t)T + 1);
    for (int64_t t = 0; t < T && ab; t++) qdot_act_quantize(type, x + t * n, n, act + ab * (size_t)t);
    float got[24], want[24];
    int had = 0;
    for (qdot_isa isa = QDOT_REF; isa <= qdot_isa_best(); isa++)
        for (int f32 = 0; f32 < 2; f32++) {
            qdot_rows_fn rows = f32 ? qdot_f32act_rows_fn_for(type, isa) : qdot_rows_fn_for(type, isa);
            qdot_row_fn one = f32 ? qdot_f32act_fn_for(type, isa) : qdot_row_fn_for(type, isa);
            if (!rows) continue;
            had++;
            rows(row, f32 ? NULL : act, ab, x, T, n, got);
            for (int64_t t = 0; t < T; t++) want[t] = one(row, f32 ? NULL : act + ab * (size_t)t, x + t * n, n);
            bool same = !memcmp(got, want, (size_t)T * sizeof(float));
            TT_CHECK(same);
            if (!same)
                fprintf(stderr, "  rows %s %s%s n=%lld T=%lld: not the row function's bits\n", quant_type_name(type),
                        qdot_isa_name(isa), f32 ? " f32act" : "", (long long)n, (long long)T);
        }
    free(raw), free(w), free(x), free(act);
    return had;
}

int main(void) {
    fprintf(stderr, "  this CPU: %s\n", qdot_isa_name(qdot_isa_best()));
    const int64_t lens[] = {32, 64, 96, 256, 512, 576, 1536, 2560, 4864};
    TT_CASE("every type, lengths and alignments");
    for (size_t t = 0; t < sizeof s_types / sizeof s_types[0]; t++) {
        TT_CHECK(qdot_type_supported(s_types[t]));
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
            for (int mis = 0; mis < 4; mis += 3) s_case(s_types[t], lens[l], mis);
    }
    TT_CASE("T-row functions: the row function's bits for every T");
    {
        int had = 0;
        for (size_t t = 0; t < sizeof s_types / sizeof s_types[0]; t++)
            for (int64_t T = 1; T <= 9; T++) {
                had += s_rows_case(s_types[t], 64, (int)(T % 4), T);
                had += s_rows_case(s_types[t], 576, 0, T);
                had += s_rows_case(s_types[t], 768, 2, T); /* the 256-blocks too */
            }
        had += s_rows_case(GGML_TYPE_Q5_0, 4864, 1, 24);
        /* the types of both default models have them on an x86 with AVX2 */
        if (qdot_isa_best() >= QDOT_AVX2)
            TT_CHECK(qdot_rows_fn_for(GGML_TYPE_Q5_0, qdot_isa_best()) &&
                     qdot_rows_fn_for(GGML_TYPE_Q4_1, qdot_isa_best()) &&
                     qdot_rows_fn_for(GGML_TYPE_Q4_K, qdot_isa_best()) &&
                     qdot_rows_fn_for(GGML_TYPE_Q6_K, qdot_isa_best()) &&
                     qdot_f32act_rows_fn_for(GGML_TYPE_Q8_0, qdot_isa_best()));
        fprintf(stderr, "  %d (type, length, T, isa, kind) cases had a T-row function\n", had);
    }
    TT_CASE("unsupported types");
    TT_CHECK(!qdot_type_supported(GGML_TYPE_Q2_K) && !qdot_type_supported(GGML_TYPE_Q8_1));
    TT_CASE("zero activations give 0");
    {
        uint8_t row[20] = {0x00, 0x3c, 0x00, 0x3c, 0x12}; /* d = m = 1 */
        float x[32] = {0};
        qdot_q8 a;
        qdot_act_quantize(GGML_TYPE_Q4_1, x, 32, &a);
        for (qdot_isa isa = QDOT_REF; isa <= qdot_isa_best(); isa++)
            TT_CHECK(qdot_row_fn_for(GGML_TYPE_Q4_1, isa)(row, &a, x, 32) == 0.0f);
    }
    return tt_done("test_qdot");
}
