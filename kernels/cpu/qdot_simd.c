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

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

static inline float s_h(const uint8_t *p) { return quant_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

AVX2 static inline float s_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high. */
AVX2 static inline __m256i s_nibbles(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

/* Byte e of the result is 0x10 when bit e of qh is set (Q5's fifth bit). */
AVX2 static inline __m256i s_bit4(uint32_t qh) {
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* sum of u[j] * s[j] (u unsigned bytes < 256 with pair sums in int16 range,
 * s signed) as 8 int32 lanes, in float. */
AVX2 static inline __m256 s_dot_us(__m256i u, __m256i s) {
    __m256i p = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
VNNI static inline __m256 s_dot_us_vnni(__m256i u, __m256i s) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
}

/* One template per ISA: DOT is the unsigned x signed byte dot above. */
#define QDOT_DEFINE(ATTR, SUF, DOT)                                                              \
    ATTR static float s_q8_0_##SUF(const void *w, const void *act, const float *x, int64_t n) {  \
        const uint8_t *b = w;                                                                    \
        const qdot_q8 *a = act;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                        \
        for (int64_t i = 0; i < n / 32; i++, b += 34) {                                          \
            __m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));                            \
            __m256i aq = _mm256_loadu_si256((const __m256i *)a[i].q);                            \
            __m256 dot = DOT(_mm256_sign_epi8(q, q), _mm256_sign_epi8(aq, q));                   \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b) * a[i].d), dot, acc);                    \
        }                                                                                        \
        (void)x;                                                                                 \
        return s_hsum(acc);                                                                      \
    }                                                                                            \
    ATTR static float s_q4_0_##SUF(const void *w, const void *act, const float *x, int64_t n) {  \
        const uint8_t *b = w;                                                                    \
        const qdot_q8 *a = act;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                        \
        float corr = 0;                                                                          \
        for (int64_t i = 0; i < n / 32; i++, b += 18) {                                          \
            float d = s_h(b);                                                                    \
            __m256 dot = DOT(s_nibbles(b + 2), _mm256_loadu_si256((const __m256i *)a[i].q));     \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a[i].d), dot, acc);                         \
            corr += d * a[i].s;                                                                  \
        }                                                                                        \
        (void)x;                                                                                 \
        return s_hsum(acc) - 8.0f * corr;                                                        \
    }                                                                                            \
    ATTR static float s_q4_1_##SUF(const void *w, const void *act, const float *x, int64_t n) {  \
        const uint8_t *b = w;                                                                    \
        const qdot_q8 *a = act;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                        \
        float corr = 0;                                                                          \
        for (int64_t i = 0; i < n / 32; i++, b += 20) {                                          \
            __m256 dot = DOT(s_nibbles(b + 4), _mm256_loadu_si256((const __m256i *)a[i].q));     \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b) * a[i].d), dot, acc);                    \
            corr += s_h(b + 2) * a[i].s;                                                         \
        }                                                                                        \
        (void)x;                                                                                 \
        return s_hsum(acc) + corr;                                                               \
    }                                                                                            \
    ATTR static float s_q5_0_##SUF(const void *w, const void *act, const float *x, int64_t n) {  \
        const uint8_t *b = w;                                                                    \
        const qdot_q8 *a = act;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                        \
        float corr = 0;                                                                          \
        for (int64_t i = 0; i < n / 32; i++, b += 22) {                                          \
            uint32_t qh;                                                                         \
            memcpy(&qh, b + 2, 4);                                                               \
            float d = s_h(b);                                                                    \
            __m256i q = _mm256_or_si256(s_nibbles(b + 6), s_bit4(qh));                           \
            __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)a[i].q));                    \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a[i].d), dot, acc);                         \
            corr += d * a[i].s;                                                                  \
        }                                                                                        \
        (void)x;                                                                                 \
        return s_hsum(acc) - 16.0f * corr;                                                       \
    }                                                                                            \
    ATTR static float s_q5_1_##SUF(const void *w, const void *act, const float *x, int64_t n) {  \
        const uint8_t *b = w;                                                                    \
        const qdot_q8 *a = act;                                                                  \
        __m256 acc = _mm256_setzero_ps();                                                        \
        float corr = 0;                                                                          \
        for (int64_t i = 0; i < n / 32; i++, b += 24) {                                          \
            uint32_t qh;                                                                         \
            memcpy(&qh, b + 4, 4);                                                               \
            __m256i q = _mm256_or_si256(s_nibbles(b + 8), s_bit4(qh));                           \
            __m256 dot = DOT(q, _mm256_loadu_si256((const __m256i *)a[i].q));                    \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b) * a[i].d), dot, acc);                    \
            corr += s_h(b + 2) * a[i].s;                                                         \
        }                                                                                        \
        (void)x;                                                                                 \
        return s_hsum(acc) + corr;                                                               \
    }

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
    default: return NULL;
    }
}

qdot_row_fn qdot_avx512_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return s_q8_0_vnni;
    case GGML_TYPE_Q4_0: return s_q4_0_vnni;
    case GGML_TYPE_Q4_1: return s_q4_1_vnni;
    case GGML_TYPE_Q5_0: return s_q5_0_vnni;
    case GGML_TYPE_Q5_1: return s_q5_1_vnni;
    default: return NULL;
    }
}

#else
qdot_row_fn qdot_avx2_fn(int type) { (void)type; return NULL; }
qdot_row_fn qdot_avx512_fn(int type) { (void)type; return NULL; }
#endif
