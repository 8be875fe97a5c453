/* qdot_simd: AVX2 (+FMA, F16C) and AVX-512 VNNI (256-bit, VL) versions of
 * the dot products whose reference is in qdot.c. Compiled for every x86-64
 * build with per-function target attributes; used only where the CPU has
 * the instructions (qdot_isa_best). Each block: unpack the weights to 32
 * bytes, multiply-add with the activation bytes into 8 int32 lanes, scale
 * by the block's float factor into a float accumulator. */
#include "qdot_impl.h"

#include <string.h>

#include "quant.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "qdot_x86.h"

/* sum of u[j] * s[j] (u unsigned bytes < 256 with pair sums in int16 range,
 * s signed) as 8 int32 lanes, in float. */
AVX2 static inline __m256 s_dot_us(__m256i u, __m256i s) {
    __m256i p = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
VNNI static inline __m256 s_dot_us_vnni(__m256i u, __m256i s) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
}

/* activation row r's block i */
#define QDOT_A(r, i) ((const qdot_q8 *)(act + (size_t)(r) * as) + (i))

/* One template per ISA: DOT is the unsigned x signed byte dot above. For
 * the types with an offset (Q4_0's 8, Q5_0's 16, Q4_1 / Q5_1's m) the
 * offset times the activation block's sum is a scalar correction. */
#define QDOT_DEFINE(ATTR, SUF, DOT)                                                                         \
    ATTR static INL void s_q8_0_##SUF##_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, \
                                          const int nr) {                                                   \
        const uint8_t *b = w;                                                                               \
        __m256 acc[QDOT_NR];                                                                                \
        for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();                                          \
        for (int64_t i = 0; i < n / 32; i++, b += 34) {                                                     \
            QDOT_PREFETCH(b);                                                                               \
            __m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));                                       \
            __m256i qa = _mm256_sign_epi8(q, q);                                                            \
            float d = s_h(b);                                                                               \
            for (int r = 0; r < nr; r++) {                                                                  \
                __m256i aq = _mm256_loadu_si256((const __m256i *)QDOT_A(r, i)->q);                          \
                __m256 dot = DOT(qa, _mm256_sign_epi8(aq, q));                                              \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * QDOT_A(r, i)->d), dot, acc[r]);                 \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]);                                                 \
    }                                                                                                       \
    QDOT_WRAP(ATTR, s_q8_0_##SUF)                                                                           \
    ATTR static INL void s_q4_0_##SUF##_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, \
                                          const int nr) {                                                   \
        const uint8_t *b = w;                                                                               \
        __m256 acc[QDOT_NR];                                                                                \
        float corr[QDOT_NR];                                                                                \
        for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps(), corr[r] = 0;                             \
        for (int64_t i = 0; i < n / 32; i++, b += 18) {                                                     \
            QDOT_PREFETCH(b);                                                                               \
            float d = s_h(b);                                                                               \
            __m256i q = s_nibbles(b + 2);                                                                   \
            for (int r = 0; r < nr; r++) {                                                                  \
                __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)QDOT_A(r, i)->q));                  \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * QDOT_A(r, i)->d), dot, acc[r]);                 \
                corr[r] += d * QDOT_A(r, i)->s;                                                             \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]) - 8.0f * corr[r];                                \
    }                                                                                                       \
    QDOT_WRAP(ATTR, s_q4_0_##SUF)                                                                           \
    ATTR static INL void s_q4_1_##SUF##_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, \
                                          const int nr) {                                                   \
        const uint8_t *b = w;                                                                               \
        __m256 acc[QDOT_NR];                                                                                \
        float corr[QDOT_NR];                                                                                \
        for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps(), corr[r] = 0;                             \
        for (int64_t i = 0; i < n / 32; i++, b += 20) {                                                     \
            QDOT_PREFETCH(b);                                                                               \
            float d = s_h(b), m = s_h(b + 2);                                                               \
            __m256i q = s_nibbles(b + 4);                                                                   \
            for (int r = 0; r < nr; r++) {                                                                  \
                __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)QDOT_A(r, i)->q));                  \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * QDOT_A(r, i)->d), dot, acc[r]);                 \
                corr[r] += m * QDOT_A(r, i)->s;                                                             \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]) + corr[r];                                       \
    }                                                                                                       \
    QDOT_WRAP(ATTR, s_q4_1_##SUF)                                                                           \
    ATTR static INL void s_q5_0_##SUF##_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, \
                                          const int nr) {                                                   \
        const uint8_t *b = w;                                                                               \
        __m256 acc[QDOT_NR];                                                                                \
        float corr[QDOT_NR];                                                                                \
        for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps(), corr[r] = 0;                             \
        for (int64_t i = 0; i < n / 32; i++, b += 22) {                                                     \
            QDOT_PREFETCH(b);                                                                               \
            uint32_t qh;                                                                                    \
            memcpy(&qh, b + 2, 4);                                                                          \
            float d = s_h(b);                                                                               \
            __m256i q = _mm256_or_si256(s_nibbles(b + 6), s_bit4(qh));                                      \
            for (int r = 0; r < nr; r++) {                                                                  \
                __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)QDOT_A(r, i)->q));                  \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * QDOT_A(r, i)->d), dot, acc[r]);                 \
                corr[r] += d * QDOT_A(r, i)->s;                                                             \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]) - 16.0f * corr[r];                               \
    }                                                                                                       \
    QDOT_WRAP(ATTR, s_q5_0_##SUF)                                                                           \
    ATTR static INL void s_q5_1_##SUF##_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, \
                                          const int nr) {                                                   \
        const uint8_t *b = w;                                                                               \
        __m256 acc[QDOT_NR];                                                                                \
        float corr[QDOT_NR];                                                                                \
        for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps(), corr[r] = 0;                             \
        for (int64_t i = 0; i < n / 32; i++, b += 24) {                                                     \
            QDOT_PREFETCH(b);                                                                               \
            uint32_t qh;                                                                                    \
            memcpy(&qh, b + 4, 4);                                                                          \
            float d = s_h(b), m = s_h(b + 2);                                                               \
            __m256i q = _mm256_or_si256(s_nibbles(b + 8), s_bit4(qh));                                      \
            for (int r = 0; r < nr; r++) {                                                                  \
                __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)QDOT_A(r, i)->q));                  \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * QDOT_A(r, i)->d), dot, acc[r]);                 \
                corr[r] += m * QDOT_A(r, i)->s;                                                             \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]) + corr[r];                                       \
    }                                                                                                       \
    QDOT_WRAP(ATTR, s_q5_1_##SUF)

QDOT_DEFINE(AVX2, avx2, s_dot_us)
QDOT_DEFINE(VNNI, vnni, s_dot_us_vnni)

AVX2 static float s_f16_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i), acc);
    }
    float s = s_hsum(acc);
    for (; i < n; i++) s += s_h(p + 2 * i) * x[i];
    (void)act;
    return s;
}

AVX2 static float s_f32_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const float *p = w;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), _mm256_loadu_ps(x + i), acc);
    float s = s_hsum(acc);
    for (; i < n; i++) {
        float v;
        memcpy(&v, p + i, 4);
        s += v * x[i];
    }
    (void)act;
    return s;
}

qdot_row_fn qdot_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_F32: return s_f32_avx2;
    case GGML_TYPE_F16: return s_f16_avx2;
    case GGML_TYPE_Q8_0: return s_q8_0_avx2;
    case GGML_TYPE_Q4_0: return s_q4_0_avx2;
    case GGML_TYPE_Q4_1: return s_q4_1_avx2;
    case GGML_TYPE_Q5_0: return s_q5_0_avx2;
    case GGML_TYPE_Q5_1: return s_q5_1_avx2;
    case GGML_TYPE_BF16: return qdot_f32act_more_avx2_fn(type); /* takes x in f32 either way */
    default: return qdot_k_avx2_fn(type);
    }
}

qdot_row_fn qdot_avx512_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return s_q8_0_vnni;
    case GGML_TYPE_Q4_0: return s_q4_0_vnni;
    case GGML_TYPE_Q4_1: return s_q4_1_vnni;
    case GGML_TYPE_Q5_0: return s_q5_0_vnni;
    case GGML_TYPE_Q5_1: return s_q5_1_vnni;
    default: return qdot_k_avx512_fn(type);
    }
}

qdot_rows_fn qdot_avx2_rows_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return s_q8_0_avx2_rows;
    case GGML_TYPE_Q4_0: return s_q4_0_avx2_rows;
    case GGML_TYPE_Q4_1: return s_q4_1_avx2_rows;
    case GGML_TYPE_Q5_0: return s_q5_0_avx2_rows;
    case GGML_TYPE_Q5_1: return s_q5_1_avx2_rows;
    default: return qdot_k_avx2_rows_fn(type);
    }
}

qdot_rows_fn qdot_avx512_rows_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return s_q8_0_vnni_rows;
    case GGML_TYPE_Q4_0: return s_q4_0_vnni_rows;
    case GGML_TYPE_Q4_1: return s_q4_1_vnni_rows;
    case GGML_TYPE_Q5_0: return s_q5_0_vnni_rows;
    case GGML_TYPE_Q5_1: return s_q5_1_vnni_rows;
    default: return qdot_k_avx2_rows_fn(type);
    }
}

#else
qdot_row_fn qdot_avx2_fn(int type) { (void)type; return NULL; }
qdot_row_fn qdot_avx512_fn(int type) { (void)type; return NULL; }
qdot_rows_fn qdot_avx2_rows_fn(int type) { (void)type; return NULL; }
qdot_rows_fn qdot_avx512_rows_fn(int type) { (void)type; return NULL; }
#endif

/* ---- f32 activations: weights dequantised in registers ------------------
 * The same products with x kept in f32: each block's weights are expanded
 * to floats and fused-multiply-added with x, so the result is the f32
 * product of the dequantised weights up to summation order (what the f32
 * engine computed), at the cost of more instructions per weight byte. */
#if defined(__x86_64__)
#define F512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

AVX2 static inline __m256 s_u8x8_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }

/* x . nibbles of one 32-block (low nibbles: x[0..16), high: x[16..32)) */
AVX2 static inline __m256 s_nib_dot_avx2(const uint8_t *qs, const float *x, __m256 *xsum) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
    __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
           x3 = _mm256_loadu_ps(x + 24);
    __m256 a = _mm256_mul_ps(s_u8x8_ps(lo), x0);
    a = _mm256_fmadd_ps(s_u8x8_ps(_mm_srli_si128(lo, 8)), x1, a);
    a = _mm256_fmadd_ps(s_u8x8_ps(hi), x2, a);
    a = _mm256_fmadd_ps(s_u8x8_ps(_mm_srli_si128(hi, 8)), x3, a);
    *xsum = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
    return a;
}

AVX2 static float s_q4_1_f_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    /* separate accumulators: a block's multiply-adds do not wait for the last block's */
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 20, x += 32) {
        QDOT_PREFETCH(b);
        __m256 xs, dot = s_nib_dot_avx2(b + 4, x, &xs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b)), dot, acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b + 2)), xs, accm);
    }
    (void)act;
    return s_hsum(_mm256_add_ps(acc, accm));
}

AVX2 static float s_q4_0_f_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 18, x += 32) {
        QDOT_PREFETCH(b);
        __m256 xs, dot = s_nib_dot_avx2(b + 2, x, &xs);
        __m256 d = _mm256_set1_ps(s_h(b));
        acc = _mm256_fmadd_ps(d, _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), xs, dot), acc);
    }
    (void)act;
    return s_hsum(acc);
}

/* f32 activation rows: QDOT_WRAP's shape with x rows n floats apart */
#define QDOT_WRAP_F(ATTR, NAME)                                                                             \
    ATTR static float NAME(const void *w, const void *act, const float *x, int64_t n) {                     \
        float y;                                                                                            \
        (void)act;                                                                                          \
        NAME##_n(w, x, n, &y, 1);                                                                           \
        return y;                                                                                           \
    }                                                                                                       \
    ATTR static void NAME##_rows(const void *w, const void *act, size_t as, const float *x, int64_t T,      \
                                 int64_t n, float *y) {                                                     \
        int64_t t = 0;                                                                                      \
        (void)act, (void)as;                                                                                \
        for (; t + QDOT_NR <= T; t += QDOT_NR) NAME##_n(w, x + t * n, n, y + t, QDOT_NR);                   \
        if (T - t == 3) NAME##_n(w, x + t * n, n, y + t, 3);                                                \
        if (T - t == 2) NAME##_n(w, x + t * n, n, y + t, 2);                                                \
        if (T - t == 1) NAME##_n(w, x + t * n, n, y + t, 1);                                                \
    }

AVX2 static INL void s_q8_0_f_avx2_n(const void *w, const float *x, int64_t n, float *y, const int nr) {
    const uint8_t *b = w;
    __m256 acc[QDOT_NR];
    for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 34, x += 32) {
        QDOT_PREFETCH(b);
        __m128i q0 = _mm_loadu_si128((const __m128i *)(b + 2)), q1 = _mm_loadu_si128((const __m128i *)(b + 18));
        __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
        __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
        __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
        __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
        __m256 d = _mm256_set1_ps(s_h(b));
        for (int r = 0; r < nr; r++) {
            const float *xr = x + r * n;
            __m256 a = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
            a = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), a);
            a = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), a);
            a = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), a);
            acc[r] = _mm256_fmadd_ps(d, a, acc[r]);
        }
    }
    for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]);
}
QDOT_WRAP_F(AVX2, s_q8_0_f_avx2)

F512 static inline float s_hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* 16 nibbles (one half of a 32-block) as 16 floats */
F512 static inline __m512 s_nib16_ps(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)); }

F512 static float s_q4_1_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    /* independent accumulators: the fused multiply-adds of one block do not
     * wait for the previous block's */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    const __m128i m = _mm_set1_epi8(0x0f);
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2, b += 40, x += 64) {
        __m128i qa = _mm_loadu_si128((const __m128i *)(b + 4)), qb = _mm_loadu_si128((const __m128i *)(b + 24));
        __m512 xa0 = _mm512_loadu_ps(x), xa1 = _mm512_loadu_ps(x + 16);
        __m512 xb0 = _mm512_loadu_ps(x + 32), xb1 = _mm512_loadu_ps(x + 48);
        __m512 a = _mm512_mul_ps(s_nib16_ps(_mm_and_si128(qa, m)), xa0);
        __m512 c = _mm512_mul_ps(s_nib16_ps(_mm_and_si128(qb, m)), xb0);
        a = _mm512_fmadd_ps(s_nib16_ps(_mm_and_si128(_mm_srli_epi16(qa, 4), m)), xa1, a);
        c = _mm512_fmadd_ps(s_nib16_ps(_mm_and_si128(_mm_srli_epi16(qb, 4), m)), xb1, c);
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc0);
        acc1 = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b + 20)), c, acc1);
        accm = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b + 2)), _mm512_add_ps(xa0, xa1), accm);
        accm = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b + 22)), _mm512_add_ps(xb0, xb1), accm);
    }
    for (; i < nb; i++, b += 20, x += 32) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 4));
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        __m512 a = _mm512_mul_ps(s_nib16_ps(_mm_and_si128(q, m)), x0);
        a = _mm512_fmadd_ps(s_nib16_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m)), x1, a);
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc0);
        accm = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b + 2)), _mm512_add_ps(x0, x1), accm);
    }
    (void)act;
    return s_hsum512(_mm512_add_ps(_mm512_add_ps(acc0, acc1), accm));
}

F512 static float s_q4_0_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    __m512 acc = _mm512_setzero_ps();
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m512 eight = _mm512_set1_ps(8.0f);
    for (int64_t i = 0; i < n / 32; i++, b += 18, x += 32) {
        QDOT_PREFETCH(b);
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(s_nib16_ps(_mm_and_si128(q, m)), eight), x0);
        a = _mm512_fmadd_ps(_mm512_sub_ps(s_nib16_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m)), eight), x1, a);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc);
    }
    (void)act;
    return s_hsum512(acc);
}

F512 static INL void s_q8_0_f_512_n(const void *w, const float *x, int64_t n, float *y, const int nr) {
    const uint8_t *b = w;
    /* two accumulators: a block's multiply-adds do not wait for the last block's */
    __m512 acc0[QDOT_NR], acc1[QDOT_NR];
    for (int r = 0; r < nr; r++) acc0[r] = _mm512_setzero_ps(), acc1[r] = _mm512_setzero_ps();
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2, b += 68, x += 64) {
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))));
        __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))));
        __m512 w2 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 36))));
        __m512 w3 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 52))));
        __m512 d0 = _mm512_set1_ps(s_h(b)), d1 = _mm512_set1_ps(s_h(b + 34));
        for (int r = 0; r < nr; r++) {
            const float *xr = x + r * n;
            __m512 a = _mm512_mul_ps(w0, _mm512_loadu_ps(xr));
            __m512 c = _mm512_mul_ps(w2, _mm512_loadu_ps(xr + 32));
            a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr + 16), a);
            c = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xr + 48), c);
            acc0[r] = _mm512_fmadd_ps(d0, a, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(d1, c, acc1[r]);
        }
    }
    for (; i < nb; i++, b += 34, x += 32) {
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))));
        __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))));
        __m512 d0 = _mm512_set1_ps(s_h(b));
        for (int r = 0; r < nr; r++) {
            const float *xr = x + r * n;
            __m512 a = _mm512_mul_ps(w0, _mm512_loadu_ps(xr));
            a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr + 16), a);
            acc0[r] = _mm512_fmadd_ps(d0, a, acc0[r]);
        }
    }
    for (int r = 0; r < nr; r++) y[r] = s_hsum512(_mm512_add_ps(acc0[r], acc1[r]));
}
QDOT_WRAP_F(F512, s_q8_0_f_512)

F512 static float s_f16_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i))), _mm512_loadu_ps(x + i),
                              acc);
    float s = s_hsum512(acc);
    for (; i < n; i++) s += s_h(p + 2 * i) * x[i];
    (void)act;
    return s;
}

F512 static float s_f32_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const float *p = w;
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(p + i), _mm512_loadu_ps(x + i), acc);
    float s = s_hsum512(acc);
    for (; i < n; i++) s += p[i] * x[i];
    (void)act;
    return s;
}

qdot_row_fn qdot_f32act_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_F32: return s_f32_avx2;
    case GGML_TYPE_F16: return s_f16_avx2;
    case GGML_TYPE_Q8_0: return s_q8_0_f_avx2;
    case GGML_TYPE_Q4_0: return s_q4_0_f_avx2;
    case GGML_TYPE_Q4_1: return s_q4_1_f_avx2;
    default: return NULL;
    }
}

qdot_row_fn qdot_f32act_avx512_fn(int type) {
    switch (type) {
    case GGML_TYPE_F32: return s_f32_f_512;
    case GGML_TYPE_F16: return s_f16_f_512;
    case GGML_TYPE_Q8_0: return s_q8_0_f_512;
    case GGML_TYPE_Q4_0: return s_q4_0_f_512;
    case GGML_TYPE_Q4_1: return s_q4_1_f_512;
    default: return NULL;
    }
}
qdot_rows_fn qdot_f32act_avx2_rows_fn(int type) { return type == GGML_TYPE_Q8_0 ? s_q8_0_f_avx2_rows : NULL; }
qdot_rows_fn qdot_f32act_avx512_rows_fn(int type) { return type == GGML_TYPE_Q8_0 ? s_q8_0_f_512_rows : NULL; }
#else
qdot_row_fn qdot_f32act_avx2_fn(int type) { (void)type; return NULL; }
qdot_row_fn qdot_f32act_avx512_fn(int type) { (void)type; return NULL; }
qdot_rows_fn qdot_f32act_avx2_rows_fn(int type) { (void)type; return NULL; }
qdot_rows_fn qdot_f32act_avx512_rows_fn(int type) { (void)type; return NULL; }
#endif

#if defined(__x86_64__)

/* ---- rows to f32 (prefill's tiles) --------------------------------------- */

F512 static void s_deq_q4_1_512(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    const __m128i m = _mm_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / 32; i++, b += 20, y += 32) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 4));
        __m512 d = _mm512_set1_ps(s_h(b)), mn = _mm512_set1_ps(s_h(b + 2));
        _mm512_storeu_ps(y, _mm512_fmadd_ps(d, s_nib16_ps(_mm_and_si128(q, m)), mn));
        _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(d, s_nib16_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m)), mn));
    }
}

F512 static void s_deq_q4_0_512(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m512 eight = _mm512_set1_ps(8.0f);
    for (int64_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
        __m512 d = _mm512_set1_ps(s_h(b));
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_sub_ps(s_nib16_ps(_mm_and_si128(q, m)), eight)));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_sub_ps(s_nib16_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m)), eight)));
    }
}

F512 static void s_deq_q8_0_512(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    for (int64_t i = 0; i < n / 32; i++, b += 34, y += 32) {
        __m512 d = _mm512_set1_ps(s_h(b));
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))))));
        _mm512_storeu_ps(y + 16,
                         _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))))));
    }
}

F512 static void s_deq_f16_512(const void *w, float *y, int64_t n) {
    const uint8_t *p = w;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i))));
    for (; i < n; i++) y[i] = s_h(p + 2 * i);
}

qdot_deq_fn qdot_deq_avx512_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_1: return s_deq_q4_1_512;
    case GGML_TYPE_Q4_0: return s_deq_q4_0_512;
    case GGML_TYPE_Q8_0: return s_deq_q8_0_512;
    case GGML_TYPE_F16: return s_deq_f16_512;
    default: return NULL;
    }
}
#else
qdot_deq_fn qdot_deq_avx512_fn(int type) { (void)type; return NULL; }
#endif

#if defined(__x86_64__)
/* AVX2 row dequantisers (machines without AVX-512) */
AVX2 static void s_deq_q4_1_avx2(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    const __m128i m = _mm_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / 32; i++, b += 20, y += 32) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 4));
        __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
        __m256 d = _mm256_set1_ps(s_h(b)), mn = _mm256_set1_ps(s_h(b + 2));
        _mm256_storeu_ps(y, _mm256_fmadd_ps(d, s_u8x8_ps(lo), mn));
        _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(d, s_u8x8_ps(_mm_srli_si128(lo, 8)), mn));
        _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(d, s_u8x8_ps(hi), mn));
        _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(d, s_u8x8_ps(_mm_srli_si128(hi, 8)), mn));
    }
}

AVX2 static void s_deq_q4_0_avx2(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    for (int64_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
        __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
        __m256 d = _mm256_set1_ps(s_h(b));
        _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_sub_ps(s_u8x8_ps(lo), eight)));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_sub_ps(s_u8x8_ps(_mm_srli_si128(lo, 8)), eight)));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_sub_ps(s_u8x8_ps(hi), eight)));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_sub_ps(s_u8x8_ps(_mm_srli_si128(hi, 8)), eight)));
    }
}

AVX2 static void s_deq_q8_0_avx2(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    for (int64_t i = 0; i < n / 32; i++, b += 34, y += 32) {
        __m256 d = _mm256_set1_ps(s_h(b));
        for (int k = 0; k < 4; k++) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

AVX2 static void s_deq_f16_avx2(const void *w, float *y, int64_t n) {
    const uint8_t *p = w;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    for (; i < n; i++) y[i] = s_h(p + 2 * i);
}

qdot_deq_fn qdot_deq_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_1: return s_deq_q4_1_avx2;
    case GGML_TYPE_Q4_0: return s_deq_q4_0_avx2;
    case GGML_TYPE_Q8_0: return s_deq_q8_0_avx2;
    case GGML_TYPE_F16: return s_deq_f16_avx2;
    default: return NULL;
    }
}
#else
qdot_deq_fn qdot_deq_avx2_fn(int type) { (void)type; return NULL; }
#endif

#if defined(__x86_64__)
/* K-quants with f32 activations (AVX-512): Q4_K and Q6_K, the types of the
 * Q4_K_M files (Qwen2.5) */
F512 static inline __m512 s_u8x16_ps(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)); }

F512 static float s_q4_k_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const __m128i m = _mm_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++, b += 144) {
        QDOT_PREFETCH(b);
        QDOT_PREFETCH(b + 64);
        QDOT_PREFETCH(b + 128);
        float d = s_h(b), dmin = s_h(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int g = 0; g < 4; g++, q += 32, x += 64) {
            int sc1, m1, sc2, m2;
            s_k4_scale_min(2 * g, scales, &sc1, &m1);
            s_k4_scale_min(2 * g + 1, scales, &sc2, &m2);
            __m128i q0 = _mm_loadu_si128((const __m128i *)q), q1 = _mm_loadu_si128((const __m128i *)(q + 16));
            __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
            __m512 x2 = _mm512_loadu_ps(x + 32), x3 = _mm512_loadu_ps(x + 48);
            __m512 lo = _mm512_mul_ps(s_u8x16_ps(_mm_and_si128(q0, m)), x0);
            lo = _mm512_fmadd_ps(s_u8x16_ps(_mm_and_si128(q1, m)), x1, lo);
            __m512 hi = _mm512_mul_ps(s_u8x16_ps(_mm_and_si128(_mm_srli_epi16(q0, 4), m)), x2);
            hi = _mm512_fmadd_ps(s_u8x16_ps(_mm_and_si128(_mm_srli_epi16(q1, 4), m)), x3, hi);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc1), lo, acc);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc2), hi, acc);
            accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * (float)m1), _mm512_add_ps(x0, x1), accm);
            accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * (float)m2), _mm512_add_ps(x2, x3), accm);
        }
    }
    (void)act;
    return s_hsum512(_mm512_sub_ps(acc, accm));
}

F512 static float s_q6_k_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const __m128i m4 = _mm_set1_epi8(0x0f), m2 = _mm_set1_epi8(3);
    const __m512 c32 = _mm512_set1_ps(32.0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++, b += 210) {
        QDOT_PREFETCH(b);
        QDOT_PREFETCH(b + 64);
        QDOT_PREFETCH(b + 128);
        QDOT_PREFETCH(b + 192);
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = s_h(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const float *xh = x + 256 * i + 128 * h;
            for (int half = 0; half < 2; half++) { /* l in [16*half, 16*half + 16) */
                int l0 = 16 * half;
                __m128i A = _mm_loadu_si128((const __m128i *)(ql + l0));
                __m128i B = _mm_loadu_si128((const __m128i *)(ql + 32 + l0));
                __m128i H = _mm_loadu_si128((const __m128i *)(qh + l0));
                __m128i q[4];
                q[0] = _mm_or_si128(_mm_and_si128(A, m4), _mm_slli_epi16(_mm_and_si128(H, m2), 4));
                q[1] = _mm_or_si128(_mm_and_si128(B, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(H, 2), m2), 4));
                q[2] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(A, 4), m4),
                                    _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(H, 4), m2), 4));
                q[3] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(B, 4), m4),
                                    _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(H, 6), m2), 4));
                for (int k = 0; k < 4; k++) {
                    __m512 v = _mm512_sub_ps(s_u8x16_ps(q[k]), c32);
                    __m512 p = _mm512_mul_ps(v, _mm512_loadu_ps(xh + 32 * k + l0));
                    __m512 s = _mm512_set1_ps(d * (float)sc[8 * h + 2 * k + half]);
                    if (k & 1) acc1 = _mm512_fmadd_ps(s, p, acc1);
                    else acc0 = _mm512_fmadd_ps(s, p, acc0);
                }
            }
        }
    }
    (void)act;
    return s_hsum512(_mm512_add_ps(acc0, acc1));
}

qdot_row_fn qdot_f32act_k_avx512_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_K: return s_q4_k_f_512;
    case GGML_TYPE_Q6_K: return s_q6_k_f_512;
    default: return NULL;
    }
}
#else
qdot_row_fn qdot_f32act_k_avx512_fn(int type) { (void)type; return NULL; }
#endif

#if defined(__x86_64__)
/* Q5_0 / Q5_1 with f32 activations, and their rows to f32 (AVX-512): the
 * fifth bit of element e is bit e of qh, applied as a lane mask */
F512 static inline void s_q5_lanes(const uint8_t *qs, uint32_t qh, __m512 *lo, __m512 *hi) {
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m512 c16 = _mm512_set1_ps(16.0f);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m512 a = s_nib16_ps(_mm_and_si128(q, m)), b = s_nib16_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m));
    *lo = _mm512_mask_add_ps(a, (__mmask16)(qh & 0xffff), a, c16);
    *hi = _mm512_mask_add_ps(b, (__mmask16)(qh >> 16), b, c16);
}

F512 static float s_q5_0_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    const __m512 c16 = _mm512_set1_ps(16.0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 22, x += 32) {
        QDOT_PREFETCH(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m512 lo, hi;
        s_q5_lanes(b + 6, qh, &lo, &hi);
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(lo, c16), _mm512_loadu_ps(x));
        a = _mm512_fmadd_ps(_mm512_sub_ps(hi, c16), _mm512_loadu_ps(x + 16), a);
        if (i & 1) acc1 = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc1);
        else acc0 = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc0);
    }
    (void)act;
    return s_hsum512(_mm512_add_ps(acc0, acc1));
}

F512 static float s_q5_1_f_512(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 24, x += 32) {
        QDOT_PREFETCH(b);
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m512 lo, hi, x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        s_q5_lanes(b + 8, qh, &lo, &hi);
        __m512 a = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b)), a, acc);
        accm = _mm512_fmadd_ps(_mm512_set1_ps(s_h(b + 2)), _mm512_add_ps(x0, x1), accm);
    }
    (void)act;
    return s_hsum512(_mm512_add_ps(acc, accm));
}

F512 static void s_deq_q5_0_512(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    const __m512 c16 = _mm512_set1_ps(16.0f);
    for (int64_t i = 0; i < n / 32; i++, b += 22, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m512 lo, hi, d = _mm512_set1_ps(s_h(b));
        s_q5_lanes(b + 6, qh, &lo, &hi);
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_sub_ps(lo, c16)));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_sub_ps(hi, c16)));
    }
}

F512 static void s_deq_q5_1_512(const void *w, float *y, int64_t n) {
    const uint8_t *b = w;
    for (int64_t i = 0; i < n / 32; i++, b += 24, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m512 lo, hi, d = _mm512_set1_ps(s_h(b)), mn = _mm512_set1_ps(s_h(b + 2));
        s_q5_lanes(b + 8, qh, &lo, &hi);
        _mm512_storeu_ps(y, _mm512_fmadd_ps(d, lo, mn));
        _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(d, hi, mn));
    }
}

qdot_row_fn qdot_f32act_q5_avx512_fn(int type) {
    return type == GGML_TYPE_Q5_0 ? s_q5_0_f_512 : type == GGML_TYPE_Q5_1 ? s_q5_1_f_512 : NULL;
}
qdot_deq_fn qdot_deq_q5_avx512_fn(int type) {
    return type == GGML_TYPE_Q5_0 ? s_deq_q5_0_512 : type == GGML_TYPE_Q5_1 ? s_deq_q5_1_512 : NULL;
}
#else
qdot_row_fn qdot_f32act_q5_avx512_fn(int type) { (void)type; return NULL; }
qdot_deq_fn qdot_deq_q5_avx512_fn(int type) { (void)type; return NULL; }
#endif
