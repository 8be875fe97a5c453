// backend_cuda: the vtable of kernels/backend.h on a CUDA device.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
extern "C" {
#include "quant.h"
#include "tis_error.h"
}

enum { MAX_KV_HEADS = 64, ATT_THREADS = 256, MAX_HEAD_DIM = ATT_THREADS };

typedef struct cuda_ctx {
    int device;
    cublasHandle_t blas;
    float *inv_freq;      // rope's frequencies on this device (rope_params.inv_freq is a host array)
    int64_t inv_freq_cap;
    float inv_shadow[512]; // what inv_freq holds (its first inv_n), to copy only when they change
    int64_t inv_n;
} cuda_ctx;

// A kernel launch or cuBLAS call that fails here is a bug or a lost device:
// the vtable has no error path, so it stops the process with the reason.
#define CUDA_OK(call)                                                                                               \
    do {                                                                                                            \
        cudaError_t e_ = (call);                                                                                    \
        if (e_ != cudaSuccess) {                                                                                    \
            fprintf(stderr, "tis: cuda: %s failed: %s (%s:%d)\n", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
            abort();                                                                                                \
        }                                                                                                           \
    } while (0)

static void *s_alloc(void *ctx, size_t bytes) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    void *p = NULL;
    cudaSetDevice(c->device);
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void s_free(void *ctx, void *p) {
    cudaSetDevice(((cuda_ctx *)ctx)->device);
    cudaFree(p);
}

// y[T][n_out] = x[T][n_in] . w[n_out][n_in]^T: in cuBLAS's column-major
// terms Y^T (n_out x T) = op(W^T stored) . X^T.
static int s_matmul(void *ctx, float *y, const float *x, const tis_weight *wt, int64_t T, bool accumulate) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (wt->type != GGML_TYPE_F32 || wt->row_bytes != (size_t)wt->n_in * sizeof(float))
        return tis_error(TIS_EUNSUPPORTED, "cuda: weights of ggml type %d: the device multiplies f32 "
                                           "(weight_prepare makes them)", wt->type);
    const float *w = (const float *)wt->data;
    int64_t n_in = wt->n_in, n_out = wt->n_out;
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t st = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T, (int)n_in, &alpha, w,
                                    (int)n_in, x, (int)n_in, &beta, y, (int)n_out);
    if (st != CUBLAS_STATUS_SUCCESS)
        return tis_error(st == CUBLAS_STATUS_ALLOC_FAILED ? TIS_ENOMEM : TIS_EIO, "cuda: cublasSgemm failed (%d)",
                         (int)st);
    return 0;
}

__device__ float s_block_sum(float v, float *red) { // blockDim.x a multiple of 32, <= 1024
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = threadIdx.x < nw ? red[threadIdx.x] : 0.0f;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) red[0] = v;
    __syncthreads();
    return red[0];
}

__device__ float s_block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = threadIdx.x < nw ? red[threadIdx.x] : -INFINITY;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) red[0] = v;
    __syncthreads();
    return red[0];
}

__global__ void k_rmsnorm(float *y, const float *x, const float *w, int64_t d, float eps) {
    __shared__ float red[32];
    const float *xt = x + blockIdx.x * d;
    float *yt = y + blockIdx.x * d;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xt[i] * xt[i];
    ss = s_block_sum(ss, red);
    float r = rsqrtf(ss / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yt[i] = xt[i] * r * w[i];
}

static void s_rmsnorm(void *ctx, float *y, const float *x, const float *w, int64_t T, int64_t d, float eps) {
    if (T < 1) return;
    k_rmsnorm<<<(unsigned)T, 256>>>(y, x, w, d, eps);
    CUDA_OK(cudaGetLastError());
}

// One thread per (token, rotated pair), looping over heads; the angle in
// double as on the CPU (positions up to 1e5+ times frequencies).
__global__ void k_rope(float *x, const int32_t *pos, int64_t T, int64_t n_heads, int64_t hd, int64_t n_pair,
                       bool interleaved, const float *inv_freq, float pos_scale) {
    int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (k >= T * n_pair) return;
    int64_t t = k / n_pair, i = k % n_pair;
    double ang = (double)((float)pos[t] * pos_scale) * (double)inv_freq[i];
    float c = (float)cos(ang), s = (float)sin(ang);
    int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + n_pair;
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + (t * n_heads + h) * hd;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

// rope_params.inv_freq is a host array (the model's): kept in a small
// device buffer of the context, copied again only when the values differ
// from the last ones copied (a synchronous copy per rope call would stall
// every layer of every step).
static float *s_inv_freq_dev(cuda_ctx *c, const rope_params *rp) {
    int64_t n = rp->rope_dim / 2;
    bool same = n == c->inv_n && n <= 512 && !memcmp(c->inv_shadow, rp->inv_freq, (size_t)n * sizeof(float));
    if (same) return c->inv_freq;
    if (n > c->inv_freq_cap) {
        cudaFree(c->inv_freq);
        c->inv_freq = NULL;
        c->inv_freq_cap = 0;
        CUDA_OK(cudaMalloc(&c->inv_freq, (size_t)n * sizeof(float)));
        c->inv_freq_cap = n;
    }
    CUDA_OK(cudaMemcpy(c->inv_freq, rp->inv_freq, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    c->inv_n = n <= 512 ? n : 0; // longer: copied every call
    if (c->inv_n) memcpy(c->inv_shadow, rp->inv_freq, (size_t)n * sizeof(float));
    return c->inv_freq;
}

// pos: device memory (the vtable's contract; forward uploads the step's).
static void s_rope(void *ctx, float *x, const int32_t *pos, int64_t T, int64_t n_heads, const rope_params *rp) {
    int64_t n_pair = rp->rope_dim / 2, n = T * n_pair;
    if (n < 1) return;
    float *f = s_inv_freq_dev((cuda_ctx *)ctx, rp);
    k_rope<<<(unsigned)((n + 255) / 256), 256>>>(x, pos, T, n_heads, rp->head_dim, n_pair, rp->interleaved, f,
                                                 rp->pos_scale);
    CUDA_OK(cudaGetLastError());
}

__global__ void k_swiglu(float *g, const float *u, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void k_add(float *y, const float *x, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

__global__ void k_add_bias(float *y, const float *b, int64_t T, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < T * n) y[i] += b[i % n];
}

static void s_swiglu(void *ctx, float *g, const float *u, int64_t n) {
    if (n < 1) return;
    k_swiglu<<<(unsigned)((n + 255) / 256), 256>>>(g, u, n);
    CUDA_OK(cudaGetLastError());
}

static void s_add(void *ctx, float *y, const float *x, int64_t n) {
    if (n < 1) return;
    k_add<<<(unsigned)((n + 255) / 256), 256>>>(y, x, n);
    CUDA_OK(cudaGetLastError());
}

static void s_add_bias(void *ctx, float *y, const float *b, int64_t T, int64_t n) {
    if (T * n < 1) return;
    k_add_bias<<<(unsigned)((T * n + 255) / 256), 256>>>(y, b, T, n);
    CUDA_OK(cudaGetLastError());
}

typedef struct streams {
    int64_t off[MAX_KV_HEADS], len[MAX_KV_HEADS];
} streams;

// One block per (new token t, query head h). Keys in tiles of ATT_THREADS:
// each thread scores one key of the tile (q . k * scale + bias), the block
// keeps the running max m and normaliser l, and thread d < hd accumulates
// output dimension d (rescaled when m grows): an online softmax, O(hd)
// shared memory whatever the length.
// Elements of the cache as f32 (kv_view.k_type = v_type: f32, f16 or bf16).
__device__ __forceinline__ float s_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float s_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float s_ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }

template <typename E>
__global__ void k_attention(float *out, const float *q, const E *K, const E *V, const float *bias,
                            streams st, int64_t T, int64_t n_head, int64_t group, int64_t hd, float scale) {
    __shared__ float qs[MAX_HEAD_DIM], ps[ATT_THREADS], red[32];
    int64_t t = blockIdx.x, h = blockIdx.y, kvh = h / group;
    int64_t off = st.off[kvh], L = st.len[kvh], vis = L - T + t + 1; // causal over the new tokens
    const float *qv = q + (t * n_head + h) * hd;
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qv[d];
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc = 0.0f;
    for (int64_t j0 = 0; j0 < vis; j0 += ATT_THREADS) {
        int64_t j = j0 + threadIdx.x;
        float sc = -INFINITY;
        if (j < vis) {
            const E *kr = K + (off + j) * hd;
            float dot = 0;
            for (int64_t d = 0; d < hd; d++) dot += qs[d] * s_ld(kr, d);
            sc = dot * scale + (bias ? bias[off + j] : 0.0f);
        }
        float mt = s_block_max(sc, red), mn = fmaxf(m, mt);
        float p = j < vis ? expf(sc - mn) : 0.0f;
        ps[threadIdx.x] = p;
        float lt = s_block_sum(p, red); // syncs: ps is complete
        float corr = expf(m - mn);      // 0 on the first tile (m = -inf)
        l = l * corr + lt;
        if (threadIdx.x < hd) {
            float a = acc * corr;
            int64_t nt = vis - j0 < ATT_THREADS ? vis - j0 : ATT_THREADS;
            for (int64_t k = 0; k < nt; k++) a += ps[k] * s_ld(V, (off + j0 + k) * hd + threadIdx.x);
            acc = a;
        }
        m = mn;
        __syncthreads(); // ps is rewritten by the next tile
    }
    if (threadIdx.x < hd) out[(t * n_head + h) * hd + threadIdx.x] = acc / l;
}

static int s_attention(void *ctx, float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T,
                        int64_t n_head, const attn_observer *obs) {
    if (obs && obs->fn)
        return tis_error(TIS_EUNSUPPORTED, "cuda: attention probabilities cannot be observed on the CUDA backend");
    if (kv->n_kv_head > MAX_KV_HEADS || kv->head_dim > MAX_HEAD_DIM || n_head % kv->n_kv_head)
        return tis_error(TIS_EUNSUPPORTED, "cuda: %lld kv heads / head dim %lld / %lld query heads: at most %d / %d, "
                                           "a whole number of query heads per kv head",
                         (long long)kv->n_kv_head, (long long)kv->head_dim, (long long)n_head, MAX_KV_HEADS,
                         MAX_HEAD_DIM);
    if ((kv->k_type != GGML_TYPE_F32 && kv->k_type != GGML_TYPE_F16 && kv->k_type != GGML_TYPE_BF16) ||
        kv->v_type != kv->k_type)
        return tis_error(TIS_EUNSUPPORTED, "cuda: attention reads f32, f16 or bf16 caches, keys and values of one "
                                           "type (this one: types %d, %d)", kv->k_type, kv->v_type);
    if (T < 1) return 0;
    streams st;
    for (int64_t h = 0; h < kv->n_kv_head; h++) {
        int64_t s = layer * kv->n_kv_head + h;
        st.off[h] = kv->off[s];
        st.len[h] = kv->len[s];
        if (st.len[h] < T)
            return tis_error(TIS_EINVAL, "cuda: stream %lld holds %lld entries, fewer than the %lld new tokens",
                             (long long)s, (long long)st.len[h], (long long)T);
    }
    dim3 grid((unsigned)T, (unsigned)n_head);
    int64_t g = n_head / kv->n_kv_head, hd = kv->head_dim;
    float sc = 1.0f / sqrtf((float)hd);
    if (kv->k_type == GGML_TYPE_F32)
        k_attention<float><<<grid, ATT_THREADS>>>(out, q, (const float *)kv->k, (const float *)kv->v, kv->bias, st, T,
                                                  n_head, g, hd, sc);
    else if (kv->k_type == GGML_TYPE_F16)
        k_attention<__half><<<grid, ATT_THREADS>>>(out, q, (const __half *)kv->k, (const __half *)kv->v, kv->bias, st,
                                                   T, n_head, g, hd, sc);
    else
        k_attention<__nv_bfloat16><<<grid, ATT_THREADS>>>(out, q, (const __nv_bfloat16 *)kv->k,
                                                          (const __nv_bfloat16 *)kv->v, kv->bias, st, T, n_head, g,
                                                          hd, sc);
    CUDA_OK(cudaGetLastError());
    return 0;
}

// ---- residency ops (kernels/backend.h) ----

static int s_upload(void *ctx, void *dst, const void *src, size_t bytes) {
    cudaSetDevice(((cuda_ctx *)ctx)->device);
    return backend_cuda_upload(dst, src, bytes);
}

static int s_download(void *ctx, void *dst, const void *src, size_t bytes) {
    cudaSetDevice(((cuda_ctx *)ctx)->device);
    return backend_cuda_download(dst, src, bytes);
}

// f32 -> bf16 exactly as the CPU (formats/quant.c): nan stays a quiet nan,
// everything else rounds to nearest even.
__device__ __forceinline__ uint16_t s_f32_to_bf16_bits(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

typedef struct rows_at {
    int64_t at[MAX_KV_HEADS];
} rows_at;

// One block per (new token t, kv head h): row t's columns [h*hd, (h+1)*hd)
// of k and v to cache rows at[h] + t, converted; bias zeroed.
__global__ void k_kv_append(void *kc, void *vc, float *bias, int dtype, int64_t hd, int64_t n_kv, rows_at ra,
                            const float *k, const float *v) {
    int64_t t = blockIdx.x, h = blockIdx.y, r = ra.at[h] + t;
    const float *ks = k + (t * n_kv + h) * hd, *vs = v + (t * n_kv + h) * hd;
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        if (dtype == GGML_TYPE_F32) {
            ((float *)kc)[r * hd + d] = ks[d];
            ((float *)vc)[r * hd + d] = vs[d];
        } else if (dtype == GGML_TYPE_F16) {
            ((__half *)kc)[r * hd + d] = __float2half_rn(ks[d]);
            ((__half *)vc)[r * hd + d] = __float2half_rn(vs[d]);
        } else {
            ((uint16_t *)kc)[r * hd + d] = s_f32_to_bf16_bits(ks[d]);
            ((uint16_t *)vc)[r * hd + d] = s_f32_to_bf16_bits(vs[d]);
        }
    }
    if (bias && threadIdx.x == 0) bias[r] = 0.0f;
}

static int s_kv_append(void *ctx, void *kc, void *vc, float *bias, int dtype, int v_type, int64_t hd, int64_t n_kv,
                       const int64_t *at, const float *kscale, const float *k, const float *v, int64_t T) {
    if ((dtype != GGML_TYPE_F32 && dtype != GGML_TYPE_F16 && dtype != GGML_TYPE_BF16) || v_type != dtype || kscale)
        return tis_error(TIS_EINVAL, "cuda: a KV cache of element types %d, %d (f32, f16 or bf16, keys and values "
                                     "alike)", dtype, v_type);
    if (n_kv < 1 || n_kv > MAX_KV_HEADS || hd < 1)
        return tis_error(TIS_EINVAL, "cuda: kv_append of %lld kv heads (1..%d), head dim %lld", (long long)n_kv,
                         MAX_KV_HEADS, (long long)hd);
    if (T < 1) return 0;
    rows_at ra;
    for (int64_t h = 0; h < n_kv; h++) ra.at[h] = at[h];
    cudaSetDevice(((cuda_ctx *)ctx)->device);
    k_kv_append<<<dim3((unsigned)T, (unsigned)n_kv), 128>>>(kc, vc, bias, dtype, hd, n_kv, ra, k, v);
    CUDA_OK(cudaGetLastError());
    return 0;
}

// The hook for quantised device products (kernels/cuda/qgemv_cuda.h, the
// decode GEMV over the file's blocks): true for a type whose blocks the
// device should keep as they are. Then weight_prepare uploads the blocks
// unchanged and s_matmul dispatches that type to qgemv_cuda for T <=
// QGEMV_MAX_T (and needs a prefill path: dequantise per call, or keep an
// f32/bf16 copy as well: to be measured). Not wired: every matrix is
// dequantised to f32 on the host and multiplied by cuBLAS SGEMM.
static bool s_keep_quantised(int type) {
    (void)type;
    return false;
}

// Rows of src dequantised on the host (formats/quant.c), 16 MiB at a time,
// and uploaded into dst's f32 [n_out][n_in].
static int s_upload_dequantised(float *dst, const tis_weight *src) {
    int64_t per = (int64_t)((16u << 20) / ((size_t)src->n_in * sizeof(float)));
    if (per < 1) per = 1;
    if (per > src->n_out) per = src->n_out;
    float *buf = (float *)malloc((size_t)per * (size_t)src->n_in * sizeof(float));
    if (!buf) return tis_error(TIS_ENOMEM, "cuda: out of host memory to dequantise a weight");
    int rc = 0;
    for (int64_t r0 = 0; !rc && r0 < src->n_out; r0 += per) {
        int64_t n = src->n_out - r0 < per ? src->n_out - r0 : per;
        for (int64_t r = 0; r < n; r++)
            quant_dequantize_row(src->type, (const uint8_t *)src->data + (size_t)(r0 + r) * src->row_bytes,
                                 buf + r * src->n_in, src->n_in);
        rc = backend_cuda_upload(dst + r0 * src->n_in, buf, (size_t)n * (size_t)src->n_in * sizeof(float));
    }
    free(buf);
    return rc;
}

static int s_weight_prepare(void *ctx, tis_weight *dst, const tis_weight *src) {
    memset(dst, 0, sizeof *dst);
    if (s_keep_quantised(src->type))
        return tis_error(TIS_EUNSUPPORTED, "cuda: quantised device products are not built");
    if (!quant_type_supported(src->type))
        return tis_error(TIS_EUNSUPPORTED, "cuda: weights of ggml type %d cannot be dequantised", src->type);
    size_t bytes = (size_t)src->n_out * (size_t)src->n_in * sizeof(float);
    float *d = (float *)s_alloc(ctx, bytes);
    if (!d) return tis_error(TIS_ENOMEM, "cuda: no device memory for a %.1f MiB weight", (double)bytes / 1048576.0);
    int rc = src->type == GGML_TYPE_F32 && src->row_bytes == (size_t)src->n_in * sizeof(float)
                 ? backend_cuda_upload(d, src->data, bytes)
                 : s_upload_dequantised(d, src);
    if (rc) {
        s_free(ctx, d);
        return rc;
    }
    *dst = (tis_weight){.type = GGML_TYPE_F32, .data = d, .row_bytes = (size_t)src->n_in * sizeof(float),
                        .n_in = src->n_in, .n_out = src->n_out, .f32_act = src->f32_act};
    return 0;
}

static int s_sync(void *ctx) {
    cudaSetDevice(((cuda_ctx *)ctx)->device);
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    return tis_error(TIS_EIO, "cuda: device %d: %s", ((cuda_ctx *)ctx)->device, cudaGetErrorString(e));
}

extern "C" const tis_backend *backend_cuda(int device) {
    static cuda_ctx ctx[16];
    static tis_backend be[16];
    static bool ready[16];
    if (device < 0 || device >= 16) {
        tis_error(TIS_EINVAL, "cuda: device %d", device);
        return NULL;
    }
    if (ready[device]) return &be[device];
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        tis_error(TIS_EIO, "cuda: device %d: %s", device, cudaGetErrorString(e));
        return NULL;
    }
    ctx[device].device = device;
    if (cublasCreate(&ctx[device].blas) != CUBLAS_STATUS_SUCCESS) {
        tis_error(TIS_EIO, "cuda: cublasCreate failed on device %d", device);
        return NULL;
    }
    cublasSetMathMode(ctx[device].blas, CUBLAS_DEFAULT_MATH); // FP32, no TF32: the CPU twin's precision
    be[device] = (tis_backend){.name = "cuda", .ctx = &ctx[device], .alloc = s_alloc, .free = s_free,
                               .matmul = s_matmul, .rmsnorm = s_rmsnorm, .rope = s_rope, .swiglu = s_swiglu,
                               .add = s_add, .add_bias = s_add_bias, .attention = s_attention, .prompt_step = NULL,
                               .upload = s_upload, .download = s_download, .kv_append = s_kv_append,
                               .weight_prepare = s_weight_prepare, .sync = s_sync, .cannot_observe = true};
    ready[device] = true;
    return &be[device];
}

extern "C" int backend_cuda_upload(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    return tis_error(TIS_EIO, "cuda: upload of %zu bytes: %s", bytes, cudaGetErrorString(e));
}

extern "C" int backend_cuda_download(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    return tis_error(TIS_EIO, "cuda: download of %zu bytes: %s", bytes, cudaGetErrorString(e));
}

extern "C" int backend_cuda_kv_upload(kv_view *dev, const kv_view *host) {
    *dev = *host;
    dev->k = dev->v = dev->bias = NULL;
    if ((host->k_type != GGML_TYPE_F32 && host->k_type != GGML_TYPE_F16 && host->k_type != GGML_TYPE_BF16) ||
        host->v_type != host->k_type)
        return tis_error(TIS_EUNSUPPORTED, "cuda: KV caches of types %d, %d cannot be uploaded", host->k_type,
                         host->v_type);
    size_t kb = (size_t)host->n_entries * (size_t)host->head_dim * (host->k_type == GGML_TYPE_F32 ? 4 : 2);
    float *k = NULL, *v = NULL, *b = NULL;
    if (cudaMalloc(&k, kb ? kb : 1) != cudaSuccess || cudaMalloc(&v, kb ? kb : 1) != cudaSuccess ||
        (host->bias && cudaMalloc(&b, (size_t)host->n_entries * sizeof(float) + 1) != cudaSuccess)) {
        cudaGetLastError();
        cudaFree(k);
        cudaFree(v);
        cudaFree(b);
        return tis_error(TIS_ENOMEM, "cuda: no device memory for a %zu-byte cache", 2 * kb);
    }
    dev->k = k;
    dev->v = v;
    dev->bias = b;
    int rc = backend_cuda_upload(k, host->k, kb);
    if (!rc) rc = backend_cuda_upload(v, host->v, kb);
    if (!rc && b) rc = backend_cuda_upload(b, host->bias, (size_t)host->n_entries * sizeof(float));
    if (rc) backend_cuda_kv_release(dev);
    return rc;
}

extern "C" void backend_cuda_kv_release(kv_view *dev) {
    cudaFree((void *)dev->k);
    cudaFree((void *)dev->v);
    cudaFree((void *)dev->bias);
    dev->k = dev->v = dev->bias = NULL;
}
