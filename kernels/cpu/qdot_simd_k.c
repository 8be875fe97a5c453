/* qdot_simd_k: AVX2 and AVX-512 VNNI integer dot products of the 256-block
 * "K" types (Q4_K, Q6_K) with 8-bit activations (qdot_q8k), the decode path
 * of Q4_K_M files. References: s_ref_q4_k / s_ref_q6_k in qdot.c; the
 * tests compare every version here with them (tests/test_qdot.c).
 *
 * Per 32 weights: unpack to 32 unsigned bytes, byte-dot them with the
 * activation bytes into int32 lanes, multiply by the sub-block's 6-bit
 * (Q4_K) or 8-bit signed (Q6_K) scale in integers, so one block of 256 ends
 * as one int32 vector and one float multiply-add. The constant offsets
 * (Q4_K's mins, Q6_K's -32) are applied once per block from the activation's
 * 16-element sums (bsums), in integers. */
#include "qdot_impl.h"

#include <string.h>

#include "quant.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "qdot_x86.h"

/* sum over pairs of u[j]*s[j] times the int16 scale of each lane's half:
 * (u unsigned < 64, s signed): maddubs keeps pair sums in int16 range. */
AVX2 static inline __m256i s_dot_sc_avx2(__m256i u, __m256i s, __m256i sc16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16);
}

/* Each dot is written for nr = 1..QDOT_NR activation rows (qdot_x86.h):
 * the weights' unpacking and scales are shared, each row's integer sums are
 * exact and its float operations are the one-row function's, so the T-row
 * function gives the one-row function's bits. One version for both ISAs:
 * VNNI's dpbusd would need a 32-bit multiply per scale (vpmulld, 10 cycles)
 * where maddubs + madd applies it for free; measured slower (896 x 4864:
 * Q4_K 351 vs 310 us, Q6_K 199 vs 180 us). */

/* activation row r's block i */
#define QDOT_AK(r, i) ((const qdot_q8k *)(act + (size_t)(r) * as) + (i))

/* Q4_K: d, dmin (f16), 12 bytes of packed 6-bit scales and mins, 128 bytes
 * of nibbles: 4 groups of 64 weights, low nibbles then high nibbles. */
AVX2 static INL void s_q4_k_avx2_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, const int nr) {
    const uint8_t *b = w;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[QDOT_NR];
    float accm[QDOT_NR];
    for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps(), accm[r] = 0;
    for (int64_t i = 0; i < n / 256; i++, b += 144) {
        QDOT_PREFETCH(b);
        QDOT_PREFETCH(b + 64);
        QDOT_PREFETCH(b + 128);
        const uint8_t *q = b + 16;
        __m256i sumi[QDOT_NR];
        int summ[QDOT_NR];
        for (int r = 0; r < nr; r++) sumi[r] = _mm256_setzero_si256(), summ[r] = 0;
        for (int g = 0; g < 4; g++, q += 32) {
            int sc1, m1, sc2, m2;
            s_k4_scale_min(2 * g, b + 4, &sc1, &m1);
            s_k4_scale_min(2 * g + 1, b + 4, &sc2, &m2);
            __m256i qv = _mm256_loadu_si256((const __m256i *)q);
            __m256i lo = _mm256_and_si256(qv, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            __m256i s1 = _mm256_set1_epi16((short)sc1), s2 = _mm256_set1_epi16((short)sc2);
            for (int r = 0; r < nr; r++) {
                const qdot_q8k *a = QDOT_AK(r, i);
                __m256i a1 = _mm256_loadu_si256((const __m256i *)(a->q + 64 * g));
                __m256i a2 = _mm256_loadu_si256((const __m256i *)(a->q + 64 * g + 32));
                sumi[r] = _mm256_add_epi32(sumi[r], s_dot_sc_avx2(lo, a1, s1));
                sumi[r] = _mm256_add_epi32(sumi[r], s_dot_sc_avx2(hi, a2, s2));
                summ[r] += m1 * (a->bsums[4 * g] + a->bsums[4 * g + 1]) +
                           m2 * (a->bsums[4 * g + 2] + a->bsums[4 * g + 3]);
            }
        }
        for (int r = 0; r < nr; r++) {
            const qdot_q8k *a = QDOT_AK(r, i);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a->d * s_h(b)), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            accm[r] += a->d * s_h(b + 2) * (float)summ[r];
        }
    }
    for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]) - accm[r];
}
QDOT_WRAP(AVX2, s_q4_k_avx2)

/* One half (128 weights) of a Q6_K block as four runs of 32 unsigned bytes
 * (0..63, stored +32): low nibbles from ql[64], two high bits from qh[32]. */
AVX2 static inline void s_q6_half(const uint8_t *ql, const uint8_t *qh, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m3));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m3));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m3));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(hb, 2), m3));
}

/* Q6_K: ql[128] low nibbles, qh[64] two high bits, 16 signed 8-bit scales,
 * d (f16). Two halves of 128 weights; in each, 32 bytes of ql/qh give four
 * runs of 32 weights, each run two 16-weight sub-blocks (one scale per
 * 128-bit lane). Weights are stored +32: subtracted via bsums. */
AVX2 static INL void s_q6_k_avx2_n(const void *w, const uint8_t *act, size_t as, int64_t n, float *y, const int nr) {
    const uint8_t *b = w;
    __m256 acc[QDOT_NR];
    for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++, b += 210) {
        QDOT_PREFETCH(b);
        QDOT_PREFETCH(b + 64);
        QDOT_PREFETCH(b + 128);
        QDOT_PREFETCH(b + 192);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        __m256i sumi[QDOT_NR];
        for (int r = 0; r < nr; r++) sumi[r] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *s8 = sc + 8 * h;
            __m256i q[4];
            s_q6_half(ql, qh, q);
            for (int k = 0; k < 4; k++) {
                __m256i s16 = _mm256_set_m128i(_mm_set1_epi16(s8[2 * k + 1]), _mm_set1_epi16(s8[2 * k]));
                for (int r = 0; r < nr; r++) {
                    const int8_t *aq = QDOT_AK(r, i)->q + 128 * h + 32 * k;
                    __m256i av = _mm256_loadu_si256((const __m256i *)aq);
                    sumi[r] = _mm256_add_epi32(sumi[r], s_dot_sc_avx2(q[k], av, s16));
                }
            }
        }
        for (int r = 0; r < nr; r++) {
            const qdot_q8k *a = QDOT_AK(r, i);
            int off = 0;
            for (int g = 0; g < 16; g++) off += sc[g] * a->bsums[g];
            __m256i si = _mm256_sub_epi32(sumi[r], _mm256_setr_epi32(32 * off, 0, 0, 0, 0, 0, 0, 0));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a->d * s_h(b + 208)), _mm256_cvtepi32_ps(si), acc[r]);
        }
    }
    for (int r = 0; r < nr; r++) y[r] = s_hsum(acc[r]);
}
QDOT_WRAP(AVX2, s_q6_k_avx2)

/* ---- prefill tiles: rows of Q4_K / Q6_K to f32 ---------------------------
 * The same values as quant_dequantize_row (d*sc*q - dmin*m; d*sc*(q-32)),
 * 8 at a time: bytes widened to int32, converted, one multiply(-add). */

/* 32 unsigned bytes times a, plus b, to y[32] */
AVX2 static inline void s_u8x32_fma(__m256i q, __m256 a, __m256 b, float *y) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
        _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(a, f), b));
    }
}

AVX2 static void s_deq_q4_k_avx2(const void *row, float *y, int64_t n) {
    const uint8_t *b = row;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / 256; i++, b += 144) {
        float d = s_h(b), dmin = s_h(b + 2);
        const uint8_t *q = b + 16;
        for (int g = 0; g < 4; g++, q += 32, y += 64) {
            int sc1, m1, sc2, m2;
            s_k4_scale_min(2 * g, b + 4, &sc1, &m1);
            s_k4_scale_min(2 * g + 1, b + 4, &sc2, &m2);
            __m256i qv = _mm256_loadu_si256((const __m256i *)q);
            s_u8x32_fma(_mm256_and_si256(qv, m4), _mm256_set1_ps(d * (float)sc1), _mm256_set1_ps(dmin * (float)m1), y);
            s_u8x32_fma(_mm256_and_si256(_mm256_srli_epi16(qv, 4), m4), _mm256_set1_ps(d * (float)sc2),
                        _mm256_set1_ps(dmin * (float)m2), y + 32);
        }
    }
}

AVX2 static void s_deq_q6_k_avx2(const void *row, float *y, int64_t n) {
    const uint8_t *b = row;
    for (int64_t i = 0; i < n / 256; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = s_h(b + 208);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            __m256i q[4];
            s_q6_half(ql, qh, q);
            for (int r = 0; r < 4; r++) {
                /* (q - 32) * d * sc: the first 16 weights take sc[2r], the next sc[2r + 1] */
                float a0 = d * (float)sc[2 * r], a1 = d * (float)sc[2 * r + 1];
                __m256 A0 = _mm256_set1_ps(a0), A1 = _mm256_set1_ps(a1);
                __m128i lo = _mm256_castsi256_si128(q[r]), hi = _mm256_extracti128_si256(q[r], 1);
                __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
                for (int k = 0; k < 4; k++) {
                    __m256 f = _mm256_cvtepi32_ps(
                        _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), _mm256_set1_epi32(32)));
                    _mm256_storeu_ps(y + 32 * r + 8 * k, _mm256_mul_ps(k < 2 ? A0 : A1, f));
                }
            }
        }
    }
}

qdot_deq_fn qdot_deq_k_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_K: return s_deq_q4_k_avx2;
    case GGML_TYPE_Q6_K: return s_deq_q6_k_avx2;
    default: return NULL;
    }
}

qdot_row_fn qdot_k_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_K: return s_q4_k_avx2;
    case GGML_TYPE_Q6_K: return s_q6_k_avx2;
    default: return NULL;
    }
}

qdot_row_fn qdot_k_avx512_fn(int type) { return qdot_k_avx2_fn(type); }

qdot_rows_fn qdot_k_avx2_rows_fn(int type) {
    switch (type) {
    case GGML_TYPE_Q4_K: return s_q4_k_avx2_rows;
    case GGML_TYPE_Q6_K: return s_q6_k_avx2_rows;
    default: return NULL;
    }
}

#else
qdot_deq_fn qdot_deq_k_avx2_fn(int type) { (void)type; return NULL; }
qdot_row_fn qdot_k_avx2_fn(int type) { (void)type; return NULL; }
qdot_row_fn qdot_k_avx512_fn(int type) { (void)type; return NULL; }
qdot_rows_fn qdot_k_avx2_rows_fn(int type) { (void)type; return NULL; }
#endif
