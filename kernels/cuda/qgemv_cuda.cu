// qgemv_cuda: decode GEMV over ggml weight blocks, dequantised in registers.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "qgemv_cuda.h"
extern "C" {
#include "quant.h"
#include "tis_error.h"
}

enum { CHUNK = 32, WARP = 32, THREADS = WARP * QGEMV_ROWS };

// Host and device: the chunk decoding below also runs on the host
// (qgemv_cuda_chunk_host), where tests check it without a GPU.
#define HD __host__ __device__ __forceinline__

HD float s_h2f(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)(p[0] | p[1] << 8))); }

HD uint32_t s_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Dequantisation with explicit rounding (__fmul_rn / __fadd_rn: no fused
// multiply-add; on the host, plain x86-64 SSE arithmetic, which has none),
// the same f32 operations in the same order as formats/quant.c, so each
// weight equals the CPU's unless the host compiler fused its multiply-add
// (then they differ by at most half an ulp).
#ifdef __CUDA_ARCH__
#define MUL(a, b) __fmul_rn(a, b)
#define ADD(a, b) __fadd_rn(a, b)
#define SUB(a, b) __fsub_rn(a, b)
#define LDG(p) __ldg(p)
#define UNROLL _Pragma("unroll")
#define BITS_F32(u) __uint_as_float(u)
#else
#define BITS_F32(u) s_bits_f32_host(u)
#define MUL(a, b) ((a) * (b))
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define LDG(p) (*(p))
#define UNROLL
#endif
#ifndef __CUDA_ARCH__
static inline float s_bits_f32_host(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#endif
HD float s_affine(float d, int q, float m) { return ADD(MUL(d, (float)q), m); }

// w[0..32) = elements [32c, 32c + 32) of a row of TYPE; for plain types
// elements at or past n are 0 (a row need not fill its last chunk).
template <int TYPE>
HD void s_chunk(const uint8_t *row, int64_t c, int64_t n, float *w) {
    if (TYPE == GGML_TYPE_F32 || TYPE == GGML_TYPE_F16 || TYPE == GGML_TYPE_BF16) {
        const int64_t e0 = c * CHUNK;
UNROLL
        for (int j = 0; j < CHUNK; j++) {
            int64_t e = e0 + j;
            float v = 0.0f;
            if (e < n) {
                if (TYPE == GGML_TYPE_F32) v = LDG((const float *)row + e);
                else if (TYPE == GGML_TYPE_F16) v = s_h2f(row + 2 * e);
                else v = BITS_F32((uint32_t)(row[2 * e] | row[2 * e + 1] << 8) << 16);
            }
            w[j] = v;
        }
    } else if (TYPE == GGML_TYPE_Q8_0) { // f16 d; i8 q[32]
        const uint8_t *b = row + c * 34;
        float d = s_h2f(b);
UNROLL
        for (int j = 0; j < 32; j++) w[j] = MUL(d, (float)(int8_t)b[2 + j]);
    } else if (TYPE == GGML_TYPE_Q4_0) { // f16 d; u8 qs[16]
        const uint8_t *b = row + c * 18;
        float d = s_h2f(b);
UNROLL
        for (int j = 0; j < 16; j++) {
            w[j] = MUL(d, (float)((b[2 + j] & 0x0f) - 8));
            w[j + 16] = MUL(d, (float)((b[2 + j] >> 4) - 8));
        }
    } else if (TYPE == GGML_TYPE_Q4_1) { // f16 d, m; u8 qs[16]
        const uint8_t *b = row + c * 20;
        float d = s_h2f(b), m = s_h2f(b + 2);
UNROLL
        for (int j = 0; j < 16; j++) {
            w[j] = s_affine(d, b[4 + j] & 0x0f, m);
            w[j + 16] = s_affine(d, b[4 + j] >> 4, m);
        }
    } else if (TYPE == GGML_TYPE_Q5_0 || TYPE == GGML_TYPE_Q5_1) { // f16 d (, m); u32 qh; u8 qs[16]
        const bool one = TYPE == GGML_TYPE_Q5_1;
        const uint8_t *b = row + c * (one ? 24 : 22);
        float d = s_h2f(b), m = one ? s_h2f(b + 2) : 0.0f;
        uint32_t qh = s_u32(b + (one ? 4 : 2));
        const uint8_t *qs = b + (one ? 8 : 6);
UNROLL
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10);
            int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            w[j] = one ? s_affine(d, lo, m) : MUL(d, (float)(lo - 16));
            w[j + 16] = one ? s_affine(d, hi, m) : MUL(d, (float)(hi - 16));
        }
    } else if (TYPE == GGML_TYPE_Q4_K) { // 144 bytes: f16 d, dmin; u8 scales[12]; u8 qs[128]
        const uint8_t *b = row + (c >> 3) * 144;
        int k = (int)(c & 7), g = k >> 1; // sub-block k: group g's low (k even) or high nibbles
        const uint8_t *s = b + 4;
        int sc, mn;
        if (k < 4) {
            sc = s[k] & 63;
            mn = s[k + 4] & 63;
        } else {
            sc = (s[k + 4] & 0x0f) | (s[k - 4] >> 6) << 4;
            mn = (s[k + 4] >> 4) | (s[k] >> 6) << 4;
        }
        float d = MUL(s_h2f(b), (float)sc), m = MUL(s_h2f(b + 2), (float)mn);
        const uint8_t *q = b + 16 + 32 * g;
        const int sh = (k & 1) * 4;
UNROLL
        for (int l = 0; l < 32; l++) w[l] = SUB(MUL(d, (float)((q[l] >> sh) & 0x0f)), m);
    } else if (TYPE == GGML_TYPE_Q6_K) { // 210 bytes: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
        const uint8_t *b = row + (c >> 3) * 210;
        int k = (int)(c & 7), h = k >> 2, kk = k & 3; // half h, quarter kk of it
        const uint8_t *ql = b + 64 * h + 32 * (kk & 1), *qh = b + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * h) + 2 * kk;
        const int nsh = (kk >> 1) * 4, hsh = 2 * kk;
        float d = s_h2f(b + 208);
        float d0 = MUL(d, (float)sc[0]), d1 = MUL(d, (float)sc[1]); // elements l < 16 / l >= 16
UNROLL
        for (int l = 0; l < 32; l++) {
            int q = (((ql[l] >> nsh) & 0x0f) | ((qh[l] >> hsh) & 3) << 4) - 32;
            w[l] = MUL(l < 16 ? d0 : d1, (float)q);
        }
    }
}

template <int TYPE>
__global__ void __launch_bounds__(THREADS) k_qgemv(float *__restrict__ y, const float *__restrict__ x,
                                                   const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_in,
                                                   int64_t n_out, int nT, bool accumulate) {
    const int lane = threadIdx.x & (WARP - 1);
    const int64_t o = (int64_t)blockIdx.x * QGEMV_ROWS + (threadIdx.x >> 5);
    if (o >= n_out) return; // a whole warp leaves together
    const uint8_t *row = w + (size_t)o * row_bytes;
    const int64_t n_chunks = (n_in + CHUNK - 1) / CHUNK;
    float acc[QGEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < QGEMV_MAX_T; t++) acc[t] = 0.0f;
    for (int64_t c = lane; c < n_chunks; c += WARP) {
        float wv[CHUNK];
        s_chunk<TYPE>(row, c, n_in, wv);
        const int64_t e0 = c * CHUNK;
        const bool full = e0 + CHUNK <= n_in && (n_in & 3) == 0 && ((uintptr_t)x & 15) == 0;
#pragma unroll
        for (int t = 0; t < QGEMV_MAX_T; t++) {
            if (t >= nT) break;
            const float *xt = x + (int64_t)t * n_in + e0;
            float s = acc[t];
            if (full) {
                const float4 *x4 = (const float4 *)xt;
#pragma unroll
                for (int j = 0; j < CHUNK / 4; j++) {
                    float4 v = __ldg(x4 + j);
                    s = fmaf(wv[4 * j], v.x, s);
                    s = fmaf(wv[4 * j + 1], v.y, s);
                    s = fmaf(wv[4 * j + 2], v.z, s);
                    s = fmaf(wv[4 * j + 3], v.w, s);
                }
            } else {
#pragma unroll
                for (int j = 0; j < CHUNK; j++)
                    if (e0 + j < n_in) s = fmaf(wv[j], __ldg(xt + j), s);
            }
            acc[t] = s;
        }
    }
#pragma unroll
    for (int t = 0; t < QGEMV_MAX_T; t++) {
        if (t >= nT) break;
        float s = acc[t];
        for (int off = WARP / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) {
            float *yo = y + (int64_t)t * n_out + o;
            *yo = accumulate ? *yo + s : s;
        }
    }
}

typedef void (*qgemv_kernel)(float *, const float *, const uint8_t *, size_t, int64_t, int64_t, int, bool);

static qgemv_kernel s_kernel(int type) {
    switch (type) {
    case GGML_TYPE_F32: return k_qgemv<GGML_TYPE_F32>;
    case GGML_TYPE_F16: return k_qgemv<GGML_TYPE_F16>;
    case GGML_TYPE_BF16: return k_qgemv<GGML_TYPE_BF16>;
    case GGML_TYPE_Q8_0: return k_qgemv<GGML_TYPE_Q8_0>;
    case GGML_TYPE_Q4_0: return k_qgemv<GGML_TYPE_Q4_0>;
    case GGML_TYPE_Q4_1: return k_qgemv<GGML_TYPE_Q4_1>;
    case GGML_TYPE_Q5_0: return k_qgemv<GGML_TYPE_Q5_0>;
    case GGML_TYPE_Q5_1: return k_qgemv<GGML_TYPE_Q5_1>;
    case GGML_TYPE_Q4_K: return k_qgemv<GGML_TYPE_Q4_K>;
    case GGML_TYPE_Q6_K: return k_qgemv<GGML_TYPE_Q6_K>;
    default: return NULL;
    }
}

extern "C" bool qgemv_cuda_supported(int type) { return s_kernel(type) != NULL; }

extern "C" int qgemv_cuda(float *y, const float *x, const void *w, int type, size_t row_bytes, int64_t n_in,
                          int64_t n_out, int64_t T, bool accumulate, void *stream) {
    qgemv_kernel k = s_kernel(type);
    if (!k) return tis_error(TIS_EUNSUPPORTED, "cuda qgemv: weights of ggml type %d (%s)", type,
                             quant_type_name(type) ? quant_type_name(type) : "unknown");
    if (n_in < 1 || n_out < 0 || T < 0)
        return tis_error(TIS_EINVAL, "cuda qgemv: sizes n_in %lld, n_out %lld, T %lld", (long long)n_in,
                         (long long)n_out, (long long)T);
    size_t want = 0;
    int rc = quant_row_bytes(type, n_in, &want);
    if (rc) return rc; // n_in not a multiple of the block, or overflow: quant_row_bytes said which
    if (row_bytes != want)
        return tis_error(TIS_EINVAL, "cuda qgemv: row_bytes %zu, but %lld elements of %s take %zu", row_bytes,
                         (long long)n_in, quant_type_name(type), want);
    if (n_out == 0 || T == 0) return 0;
    if ((n_out + QGEMV_ROWS - 1) / QGEMV_ROWS > 0x7fffffff)
        return tis_error(TIS_ERANGE, "cuda qgemv: %lld output rows", (long long)n_out);
    if (!y || !x || !w) return tis_error(TIS_EINVAL, "cuda qgemv: NULL buffer");
    unsigned grid = (unsigned)((n_out + QGEMV_ROWS - 1) / QGEMV_ROWS);
    cudaStream_t st = (cudaStream_t)stream;
    for (int64_t t0 = 0; t0 < T; t0 += QGEMV_MAX_T) {
        int nT = (int)(T - t0 < (int64_t)QGEMV_MAX_T ? T - t0 : (int64_t)QGEMV_MAX_T);
        k<<<grid, THREADS, 0, st>>>(y + t0 * n_out, x + t0 * n_in, (const uint8_t *)w, row_bytes, n_in, n_out, nT,
                                    accumulate);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess)
            return tis_error(TIS_EIO, "cuda qgemv: launch (%s, %lld x %lld, T %d): %s", quant_type_name(type),
                             (long long)n_in, (long long)n_out, nT, cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int qgemv_cuda_chunk_host(int type, const void *row, int64_t c, int64_t n, float *w) {
    const uint8_t *r = (const uint8_t *)row;
    switch (type) {
    case GGML_TYPE_F32: s_chunk<GGML_TYPE_F32>(r, c, n, w); return 0;
    case GGML_TYPE_F16: s_chunk<GGML_TYPE_F16>(r, c, n, w); return 0;
    case GGML_TYPE_BF16: s_chunk<GGML_TYPE_BF16>(r, c, n, w); return 0;
    case GGML_TYPE_Q8_0: s_chunk<GGML_TYPE_Q8_0>(r, c, n, w); return 0;
    case GGML_TYPE_Q4_0: s_chunk<GGML_TYPE_Q4_0>(r, c, n, w); return 0;
    case GGML_TYPE_Q4_1: s_chunk<GGML_TYPE_Q4_1>(r, c, n, w); return 0;
    case GGML_TYPE_Q5_0: s_chunk<GGML_TYPE_Q5_0>(r, c, n, w); return 0;
    case GGML_TYPE_Q5_1: s_chunk<GGML_TYPE_Q5_1>(r, c, n, w); return 0;
    case GGML_TYPE_Q4_K: s_chunk<GGML_TYPE_Q4_K>(r, c, n, w); return 0;
    case GGML_TYPE_Q6_K: s_chunk<GGML_TYPE_Q6_K>(r, c, n, w); return 0;
    default: return tis_error(TIS_EUNSUPPORTED, "cuda qgemv: weights of ggml type %d", type);
    }
}
