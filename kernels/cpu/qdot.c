/* qdot: activation quantisation, the reference dot products of every
 * weight type, and the run-time choice of SIMD versions (qdot_simd.c). */
#include "qdot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qdot_impl.h"
#include "quant.h"

/* ---- activations -------------------------------------------------------- */

static bool s_k_type(int type) { return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K; }
static bool s_f32_type(int type) {
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

bool qdot_type_supported(int type) {
    switch (type) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K: return true;
    default: return false;
    }
}

size_t qdot_act_bytes(int type, int64_t n) {
    if (s_f32_type(type)) return 0;
    if (s_k_type(type)) return (size_t)(n / 256) * sizeof(qdot_q8k);
    return (size_t)(n / 32) * sizeof(qdot_q8);
}

static void s_quant_q8(const float *x, int64_t n, qdot_q8 *b) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)lrintf(x[j] * id);
            b[i].q[j] = (int8_t)q;
            sum += q;
        }
        b[i].d = d;
        b[i].s = d * (float)sum;
    }
}

static void s_quant_q8k(const float *x, int64_t n, qdot_q8k *b) {
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                int q = (int)lrintf(x[j] * id);
                b[i].q[j] = (int8_t)q;
                sum += q;
            }
            b[i].bsums[g] = (int16_t)sum;
        }
        b[i].d = d;
    }
}

void qdot_act_quantize(int type, const float *x, int64_t n, void *act) {
    if (s_f32_type(type)) return;
    if (s_k_type(type)) s_quant_q8k(x, n, act);
    else s_quant_q8(x, n, act);
}

/* ---- reference dot products ---------------------------------------------- */

static inline float s_h(const uint8_t *p) { return quant_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static inline uint32_t s_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static float s_ref_f32(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, p + 4 * i, 4);
        acc += (double)v * x[i];
    }
    (void)act;
    return (float)acc;
}

static float s_ref_f16(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)s_h(p + 2 * i) * x[i];
    (void)act;
    return (float)acc;
}

static float s_ref_bf16(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)quant_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)) * x[i];
    (void)act;
    return (float)acc;
}

static float s_ref_q8_0(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8 *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 34) {
        const int8_t *q = (const int8_t *)(b + 2);
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += q[j] * a[i].q[j];
        acc += s_h(b) * a[i].d * (float)isum;
    }
    (void)x;
    return acc;
}

/* sum over the 32 elements of nibble(j) * a.q[j] (j < 16 low, else high). */
static inline int s_isum_q4(const uint8_t *qs, const int8_t *aq) {
    int isum = 0;
    for (int j = 0; j < 16; j++) isum += (qs[j] & 0x0f) * aq[j] + (qs[j] >> 4) * aq[j + 16];
    return isum;
}

static inline int s_isum_q5(const uint8_t *qs, uint32_t qh, const int8_t *aq) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10);
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        isum += lo * aq[j] + hi * aq[j + 16];
    }
    return isum;
}

static float s_ref_q4_0(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8 *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 18)
        acc += s_h(b) * (a[i].d * (float)s_isum_q4(b + 2, a[i].q) - 8.0f * a[i].s);
    (void)x;
    return acc;
}

static float s_ref_q4_1(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8 *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 20)
        acc += s_h(b) * a[i].d * (float)s_isum_q4(b + 4, a[i].q) + s_h(b + 2) * a[i].s;
    (void)x;
    return acc;
}

static float s_ref_q5_0(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8 *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 22)
        acc += s_h(b) * (a[i].d * (float)s_isum_q5(b + 6, s_u32(b + 2), a[i].q) - 16.0f * a[i].s);
    (void)x;
    return acc;
}

static float s_ref_q5_1(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8 *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 32; i++, b += 24)
        acc += s_h(b) * a[i].d * (float)s_isum_q5(b + 8, s_u32(b + 4), a[i].q) + s_h(b + 2) * a[i].s;
    (void)x;
    return acc;
}

/* Q4_K's six-bit scale and min of sub-block j from its 12 packed bytes. */
static void qdot_k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K: 8 sub-blocks of 32, x = d*sc*q - dmin*m; group g of 64 holds
 * sub-block 2g in the low nibbles of its 32 bytes, 2g+1 in the high ones. */
static float s_ref_q4_k(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8k *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 144) {
        const uint8_t *scales = b + 4, *q = b + 16;
        const int8_t *aq = a[i].q;
        int sum_q = 0, sum_m = 0;
        for (int g = 0; g < 4; g++, q += 32, aq += 64) {
            int sc1, m1, sc2, m2, s1 = 0, s2 = 0;
            qdot_k4_scale_min(2 * g, scales, &sc1, &m1);
            qdot_k4_scale_min(2 * g + 1, scales, &sc2, &m2);
            for (int l = 0; l < 32; l++) {
                s1 += (q[l] & 0x0f) * aq[l];
                s2 += (q[l] >> 4) * aq[l + 32];
            }
            sum_q += sc1 * s1 + sc2 * s2;
            sum_m += m1 * (a[i].bsums[4 * g] + a[i].bsums[4 * g + 1]) +
                     m2 * (a[i].bsums[4 * g + 2] + a[i].bsums[4 * g + 3]);
        }
        acc += a[i].d * (s_h(b) * (float)sum_q - s_h(b + 2) * (float)sum_m);
    }
    (void)x;
    return acc;
}

/* Q6_K: 16 groups of 16 with int8 scales, x = d*sc*(q6 - 32). */
static float s_ref_q6_k(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const qdot_q8k *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        int gsum[16] = {0};
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *aq = a[i].q + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = (ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4;
                int q2 = (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4;
                int q3 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
                int q4 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
                int g = 8 * h + l / 16;
                gsum[g + 0] += q1 * aq[l];
                gsum[g + 2] += q2 * aq[l + 32];
                gsum[g + 4] += q3 * aq[l + 64];
                gsum[g + 6] += q4 * aq[l + 96];
            }
        }
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += sc[g] * (gsum[g] - 32 * a[i].bsums[g]);
        acc += a[i].d * s_h(b + 208) * (float)isum;
    }
    (void)x;
    return acc;
}

qdot_row_fn qdot_ref_fn(int type) {
    switch (type) {
    case GGML_TYPE_F32: return s_ref_f32;
    case GGML_TYPE_F16: return s_ref_f16;
    case GGML_TYPE_BF16: return s_ref_bf16;
    case GGML_TYPE_Q8_0: return s_ref_q8_0;
    case GGML_TYPE_Q4_0: return s_ref_q4_0;
    case GGML_TYPE_Q4_1: return s_ref_q4_1;
    case GGML_TYPE_Q5_0: return s_ref_q5_0;
    case GGML_TYPE_Q5_1: return s_ref_q5_1;
    case GGML_TYPE_Q4_K: return s_ref_q4_k;
    case GGML_TYPE_Q6_K: return s_ref_q6_k;
    default: return NULL;
    }
}

/* ---- dispatch ------------------------------------------------------------------ */

qdot_isa qdot_isa_best(void) {
    static int cached = -1;
    if (cached >= 0) return (qdot_isa)cached;
    qdot_isa isa = QDOT_REF;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = QDOT_AVX2;
    if (isa == QDOT_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        isa = QDOT_AVX512;
#endif
    const char *cap = getenv("TIS_QDOT_ISA");
    if (cap && !strcmp(cap, "ref")) isa = QDOT_REF;
    else if (cap && !strcmp(cap, "avx2") && isa > QDOT_AVX2) isa = QDOT_AVX2;
    cached = (int)isa;
    return isa;
}

const char *qdot_isa_name(qdot_isa isa) {
    return isa == QDOT_AVX512 ? "avx512-vnni" : isa == QDOT_AVX2 ? "avx2" : "ref";
}

qdot_row_fn qdot_row_fn_for(int type, qdot_isa isa) {
    qdot_row_fn fn = NULL;
#if defined(__x86_64__)
    if (isa >= QDOT_AVX512) fn = qdot_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_avx2_fn(type);
#endif
    return fn ? fn : qdot_ref_fn(type);
}

/* The T-row function exists only where it is the twin of the row function
 * qdot_row_fn_for picks at this isa (the same level, the same operations). */
qdot_rows_fn qdot_rows_fn_for(int type, qdot_isa isa) {
#if defined(__x86_64__)
    if (isa >= QDOT_AVX512 && qdot_avx512_fn(type)) return qdot_avx512_rows_fn(type);
    if (isa >= QDOT_AVX2 && qdot_avx2_fn(type)) return qdot_avx2_rows_fn(type);
#endif
    (void)type, (void)isa;
    return NULL;
}

/* Reference with f32 activations: 32 weights at a time dequantised. */
static float s_ref_f32act(int type, const void *w, const float *x, int64_t n) {
    int64_t be = quant_block_elems(type);
    size_t bb = quant_block_bytes(type);
    const uint8_t *b = w;
    float buf[256];
    float acc = 0;
    for (int64_t i = 0; i < n; i += be, b += bb) {
        quant_dequantize_row(type, b, buf, be);
        for (int64_t j = 0; j < be; j++) acc += buf[j] * x[i + j];
    }
    return acc;
}

#define REF_F(NAME, TYPE)                                                           \
    static float NAME(const void *w, const void *act, const float *x, int64_t n) {  \
        (void)act;                                                                  \
        return s_ref_f32act(TYPE, w, x, n);                                         \
    }
REF_F(s_rf_q8_0, GGML_TYPE_Q8_0)
REF_F(s_rf_q4_0, GGML_TYPE_Q4_0)
REF_F(s_rf_q4_1, GGML_TYPE_Q4_1)
REF_F(s_rf_q5_0, GGML_TYPE_Q5_0)
REF_F(s_rf_q5_1, GGML_TYPE_Q5_1)
REF_F(s_rf_q4_k, GGML_TYPE_Q4_K)
REF_F(s_rf_q6_k, GGML_TYPE_Q6_K)

static qdot_row_fn s_ref_f32act_fn(int type) {
    switch (type) {
    case GGML_TYPE_F32: return s_ref_f32;
    case GGML_TYPE_F16: return s_ref_f16;
    case GGML_TYPE_BF16: return s_ref_bf16;
    case GGML_TYPE_Q8_0: return s_rf_q8_0;
    case GGML_TYPE_Q4_0: return s_rf_q4_0;
    case GGML_TYPE_Q4_1: return s_rf_q4_1;
    case GGML_TYPE_Q5_0: return s_rf_q5_0;
    case GGML_TYPE_Q5_1: return s_rf_q5_1;
    case GGML_TYPE_Q4_K: return s_rf_q4_k;
    case GGML_TYPE_Q6_K: return s_rf_q6_k;
    default: return NULL;
    }
}

qdot_row_fn qdot_f32act_fn_for(int type, qdot_isa isa) {
    qdot_row_fn fn = NULL;
#if defined(__x86_64__)
    if (isa >= QDOT_AVX512) fn = qdot_f32act_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX512) fn = qdot_f32act_k_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX512) fn = qdot_f32act_q5_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_f32act_avx2_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_f32act_more_avx2_fn(type);
#endif
    return fn ? fn : s_ref_f32act_fn(type);
}

qdot_rows_fn qdot_f32act_rows_fn_for(int type, qdot_isa isa) {
#if defined(__x86_64__)
    if (isa >= QDOT_AVX512 && qdot_f32act_avx512_fn(type)) return qdot_f32act_avx512_rows_fn(type);
    if (isa >= QDOT_AVX512 && (qdot_f32act_k_avx512_fn(type) || qdot_f32act_q5_avx512_fn(type))) return NULL;
    if (isa >= QDOT_AVX2 && qdot_f32act_avx2_fn(type)) return qdot_f32act_avx2_rows_fn(type);
#endif
    (void)type, (void)isa;
    return NULL;
}

#define DEQ_REF(NAME, TYPE) \
    static void NAME(const void *w, float *y, int64_t n) { quant_dequantize_row(TYPE, w, y, n); }
DEQ_REF(s_dq_f32, GGML_TYPE_F32)
DEQ_REF(s_dq_f16, GGML_TYPE_F16)
DEQ_REF(s_dq_bf16, GGML_TYPE_BF16)
DEQ_REF(s_dq_q8_0, GGML_TYPE_Q8_0)
DEQ_REF(s_dq_q4_0, GGML_TYPE_Q4_0)
DEQ_REF(s_dq_q4_1, GGML_TYPE_Q4_1)
DEQ_REF(s_dq_q5_0, GGML_TYPE_Q5_0)
DEQ_REF(s_dq_q5_1, GGML_TYPE_Q5_1)
DEQ_REF(s_dq_q4_k, GGML_TYPE_Q4_K)
DEQ_REF(s_dq_q6_k, GGML_TYPE_Q6_K)

qdot_deq_fn qdot_deq_fn_for(int type, qdot_isa isa) {
    qdot_deq_fn fn = NULL;
#if defined(__x86_64__)
    if (isa >= QDOT_AVX512) fn = qdot_deq_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX512) fn = qdot_deq_q5_avx512_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_deq_avx2_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_deq_k_avx2_fn(type);
    if (!fn && isa >= QDOT_AVX2) fn = qdot_deq_q5_avx2_fn(type);
#endif
    if (fn) return fn;
    switch (type) {
    case GGML_TYPE_F32: return s_dq_f32;
    case GGML_TYPE_F16: return s_dq_f16;
    case GGML_TYPE_BF16: return s_dq_bf16;
    case GGML_TYPE_Q8_0: return s_dq_q8_0;
    case GGML_TYPE_Q4_0: return s_dq_q4_0;
    case GGML_TYPE_Q4_1: return s_dq_q4_1;
    case GGML_TYPE_Q5_0: return s_dq_q5_0;
    case GGML_TYPE_Q5_1: return s_dq_q5_1;
    case GGML_TYPE_Q4_K: return s_dq_q4_k;
    case GGML_TYPE_Q6_K: return s_dq_q6_k;
    default: return NULL;
    }
}

void qdot_matvec(qdot_row_fn fn, float *y, const void *w, size_t row_bytes, int64_t n_out, const void *act,
                 const float *x, int64_t n) {
    const uint8_t *p = w;
    for (int64_t o = 0; o < n_out; o++) y[o] = fn(p + (size_t)o * row_bytes, act, x, n);
}
