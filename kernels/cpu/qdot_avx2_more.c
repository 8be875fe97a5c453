/* qdot_avx2_more: AVX2 (+FMA, F16C) versions of what AVX-512 had alone:
 * f32-activation dots of Q5_0 / Q5_1 / Q4_K / Q6_K rows (the prompt steps'
 * products on a CPU without AVX-512) and Q5_0 / Q5_1 dequantisation for
 * prefill's f32 tiles; BF16 rows (dot and dequantisation) for every step. The K-types reuse their AVX2 dequantisers block by
 * block (256 floats on the stack) and dot the block with x; the Q5 types
 * unpack 32 weights to bytes as their 8-bit kernels do. References: qdot.c
 * (tests/test_qdot.c compares every ISA with them). */
#include "qdot_impl.h"

#include <string.h>

#include "quant.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "qdot_x86.h"

/* The 32 five-bit weights of a Q5 block as bytes 0..31: nibbles (low half
 * first) with bit 4 from qh. */
AVX2 static inline __m256i s_q5_bytes(const uint8_t *qs, uint32_t qh) {
    return _mm256_or_si256(s_nibbles(qs), s_bit4(qh));
}

/* the 8 bytes k*8.. of q as floats */
AVX2 static inline __m256 s_b8(__m256i q, int k) {
    __m128i h = k < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
    if (k & 1) h = _mm_srli_si128(h, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h));
}

/* sum q[j] x[j] and sum x[j] over one 32-block, in 8 lanes */
AVX2 static inline void s_block(__m256i q, const float *x, __m256 *qx, __m256 *sx) {
    __m256 a = _mm256_setzero_ps(), s = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        __m256 xv = _mm256_loadu_ps(x + 8 * k);
        a = _mm256_fmadd_ps(s_b8(q, k), xv, a);
        s = _mm256_add_ps(s, xv);
    }
    *qx = a;
    *sx = s;
}

/* Q5_0: w = d (q - 16);  Q5_1: w = d q + m */
AVX2 static float s_q5_0_f_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 22, x += 32) {
        QDOT_PREFETCH(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m256 qx, sx;
        s_block(s_q5_bytes(b + 6, qh), x, &qx, &sx);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b)), _mm256_fnmadd_ps(_mm256_set1_ps(16.0f), sx, qx), acc);
    }
    (void)act;
    return s_hsum(acc);
}

AVX2 static float s_q5_1_f_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++, b += 24, x += 32) {
        QDOT_PREFETCH(b);
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m256 qx, sx;
        s_block(s_q5_bytes(b + 8, qh), x, &qx, &sx);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b)), qx, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s_h(b + 2)), sx, acc);
    }
    (void)act;
    return s_hsum(acc);
}

/* K-types: a block dequantised on the stack, then dotted */
#define K_F32ACT(NAME, DEQ, BYTES)                                                            \
    AVX2 static float NAME(const void *w, const void *act, const float *x, int64_t n) {      \
        const uint8_t *b = w;                                                                 \
        qdot_deq_fn deq = qdot_deq_k_avx2_fn(DEQ);                                            \
        float y[256];                                                                         \
        __m256 acc = _mm256_setzero_ps();                                                     \
        for (int64_t i = 0; i < n / 256; i++, b += (BYTES), x += 256) {                       \
            for (int o = 0; o < (BYTES); o += 64) QDOT_PREFETCH(b + o);                       \
            deq(b, y, 256);                                                                   \
            for (int j = 0; j < 256; j += 8)                                                  \
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(y + j), _mm256_loadu_ps(x + j), acc);   \
        }                                                                                     \
        (void)act;                                                                            \
        return s_hsum(acc);                                                                   \
    }
K_F32ACT(s_q4_k_f_avx2, GGML_TYPE_Q4_K, 144)
K_F32ACT(s_q6_k_f_avx2, GGML_TYPE_Q6_K, 210)

/* Q5 rows to f32 */
AVX2 static void s_deq_q5_0_avx2(const void *row, float *y, int64_t n) {
    const uint8_t *b = row;
    for (int64_t i = 0; i < n / 32; i++, b += 22, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m256i q = s_q5_bytes(b + 6, qh);
        __m256 d = _mm256_set1_ps(s_h(b)), c = _mm256_set1_ps(16.0f);
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_sub_ps(s_b8(q, k), c)));
    }
}

AVX2 static void s_deq_q5_1_avx2(const void *row, float *y, int64_t n) {
    const uint8_t *b = row;
    for (int64_t i = 0; i < n / 32; i++, b += 24, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m256i q = s_q5_bytes(b + 8, qh);
        __m256 d = _mm256_set1_ps(s_h(b)), m = _mm256_set1_ps(s_h(b + 2));
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_fmadd_ps(d, s_b8(q, k), m));
    }
}

/* BF16 rows (safetensors weights): the high half of an f32 */
AVX2 static float s_bf16_avx2(const void *w, const void *act, const float *x, int64_t n) {
    const uint8_t *p = w;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if ((i & 31) == 0) QDOT_PREFETCH(p + 2 * i);
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i))), 16);
        acc = _mm256_fmadd_ps(_mm256_castsi256_ps(u), _mm256_loadu_ps(x + i), acc);
    }
    float sum = s_hsum(acc);
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        sum += quant_bf16_to_f32(h) * x[i];
    }
    (void)act;
    return sum;
}

AVX2 static void s_deq_bf16_avx2(const void *row, float *y, int64_t n) {
    const uint8_t *p = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i))), 16));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = quant_bf16_to_f32(h);
    }
}

qdot_row_fn qdot_f32act_more_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_BF16: return s_bf16_avx2;
    case GGML_TYPE_Q5_0: return s_q5_0_f_avx2;
    case GGML_TYPE_Q5_1: return s_q5_1_f_avx2;
    case GGML_TYPE_Q4_K: return s_q4_k_f_avx2;
    case GGML_TYPE_Q6_K: return s_q6_k_f_avx2;
    default: return NULL;
    }
}

qdot_deq_fn qdot_deq_q5_avx2_fn(int type) {
    switch (type) {
    case GGML_TYPE_BF16: return s_deq_bf16_avx2;
    case GGML_TYPE_Q5_0: return s_deq_q5_0_avx2;
    case GGML_TYPE_Q5_1: return s_deq_q5_1_avx2;
    default: return NULL;
    }
}
#else
qdot_row_fn qdot_f32act_more_avx2_fn(int type) { (void)type; return NULL; }
qdot_deq_fn qdot_deq_q5_avx2_fn(int type) { (void)type; return NULL; }
#endif
