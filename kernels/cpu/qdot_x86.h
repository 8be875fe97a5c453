/* qdot_x86: the small x86 helpers the SIMD kernel files share (qdot_simd.c,
 * qdot_simd_k.c, qdot_avx2_more.c; not a public header). Each is compiled
 * with a per-function target attribute, so every x86-64 build has them and
 * the callers run them only where the CPU has the instructions. */
#ifndef TIS_QDOT_X86_H
#define TIS_QDOT_X86_H

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* Every dot of the SIMD files is written once for nr = 1..QDOT_NR activation rows
 * (NAME_n, inlined with nr a constant): a block's weights are unpacked once
 * and dotted with each row, whose own operations are those of the one-row
 * function in the same order. So the one-row function (NAME, nr = 1) and
 * the batched one (NAME_rows, groups of QDOT_NR) give bitwise the same
 * numbers: a sequence's logits do not depend on what it is decoded with. */
#define INL __attribute__((always_inline)) inline
#define QDOT_NR 4
/* the one-row and T-row functions around NAME_n (act rows `as` bytes apart) */
#define QDOT_WRAP(ATTR, NAME)                                                                               \
    ATTR static float NAME(const void *w, const void *act, const float *x, int64_t n) {                     \
        float y;                                                                                            \
        (void)x;                                                                                            \
        NAME##_n(w, act, 0, n, &y, 1);                                                                      \
        return y;                                                                                           \
    }                                                                                                       \
    ATTR static void NAME##_rows(const void *w, const void *act, size_t as, const float *x, int64_t T,      \
                                 int64_t n, float *y) {                                                     \
        const uint8_t *a = act;                                                                             \
        int64_t t = 0;                                                                                      \
        (void)x;                                                                                            \
        for (; t + QDOT_NR <= T; t += QDOT_NR) NAME##_n(w, a + (size_t)t * as, as, n, y + t, QDOT_NR);      \
        if (T - t == 3) NAME##_n(w, a + (size_t)t * as, as, n, y + t, 3);                                   \
        if (T - t == 2) NAME##_n(w, a + (size_t)t * as, as, n, y + t, 2);                                   \
        if (T - t == 1) NAME##_n(w, a + (size_t)t * as, as, n, y + t, 1);                                   \
    }

/* f16 at p -> f32 with F16C */
__attribute__((target("f16c"))) static inline float s_h(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

/* the sum of 8 float lanes */
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

/* Q4_K's six-bit scale and min of sub-block j from its 12 packed bytes
 * (qdot_k4_scale_min, inlined: a call per sub-block cost 10 %). */
static inline void s_k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}
#endif

#endif
