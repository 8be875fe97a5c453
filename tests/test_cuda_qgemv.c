/* test_cuda_qgemv: the device's decode GEMV over weight blocks
 * (kernels/cuda/qgemv_cuda) against its CPU twin, kernels/cpu's reference
 * dot with f32 activations (qdot_f32act_fn_for(type, QDOT_REF)), on awkward
 * shapes: n_in a multiple of the block but not of a warp's 1024-element
 * step, n_in not a multiple of 32 for the plain types, n_out 1 and odd and
 * not a multiple of the 8 rows a thread block takes, T 1, 16 and 17 (two
 * launches), with and without accumulation. Half the rows are quantised
 * from random floats, half are random bytes (every scale and high bit
 * pattern) with their f16 scales set to finite values.
 *
 * Tolerance, derived: both sides multiply the same dequantised weights w_i
 * (bit-equal: the device rounds each dequantising multiply and add
 * separately, as formats/quant.c does, unless the host compiler fused a
 * multiply-add: then they differ by up to u |w_i|, u = 2^-24) with the same
 * f32 x_i, and sum n = n_in products in f32 in different orders: the CPU
 * reference sequentially in one f32 accumulator (F32/F16/BF16: in double),
 * the device per lane sequentially with fused multiply-adds over its
 * chunks, then a 5-level shuffle tree. Each order's error is at most
 * gamma_n S <= 1.001 n u S, S = sum |w_i x_i| (Higham, recursive and tree
 * summation alike), so
 *   |gpu - cpu|    <= (2n + 2) u S * 1.001   (two orders + the dequantisation)
 *   |gpu - exact|  <= (n + 1) u S * 1.001    (exact: the same sum in double)
 * A kernel reading a wrong scale, nibble or chunk is off by a sizeable part
 * of one chunk's terms, about S sqrt(32) / n: above n u S for every n here
 * (n u <= 2.9e-4). The worst error seen is printed in units of u S.
 * `test_cuda_qgemv --bench [CSV]` times the kernels against cuBLAS (bf16 GemmEx, f32 Sgemm) at
 * SmolLM2, Qwen2.5-0.5B and 7B matrix shapes, T 1 and 16 (scripts/gpu_check.sh runs it).
 * Skips (77) without CUDA or a GPU, after the checks that run on the host:
 * the arguments, and the kernels' own chunk decoding (compiled for the host
 * too) against formats/quant.c on every type. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdot.h"
#include "quant.h"
#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include "backend.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_probe.h"
#include "cuda/qgemv_cuda.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>

static const tis_backend *s_gpu;
static uint64_t s_rng = 20261130;

static const double U = 1.0 / 16777216.0; /* 2^-24: f32 unit roundoff */

/* Byte offsets of the f16 scales in a block of `type` (-1 ends). */
static const int *s_f16_fields(int type) {
    static const int d0[] = {0, -1}, dm[] = {0, 2, -1}, q6k[] = {208, -1}, none[] = {-1};
    switch (type) {
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: return d0;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: return dm;
    case GGML_TYPE_Q6_K: return q6k;
    default: return none;
    }
}

/* Row o of n_in elements: quantised from floats (even o) or random bytes
 * with finite f16 scales (odd o, block types). */
static void s_fill_row(int type, uint8_t *row, size_t row_bytes, int64_t n_in, int64_t o) {
    int64_t be = quant_block_elems(type);
    if (o % 2 == 0 || be == 1) {
        float *f = malloc((size_t)n_in * sizeof *f);
        float amp = 0.05f * (float)(1 + o % 5);
        for (int64_t i = 0; i < n_in; i++) f[i] = amp * tt_randf(&s_rng);
        quant_quantize_row(type, f, row, n_in);
        free(f);
        return;
    }
    for (size_t i = 0; i < row_bytes; i++) row[i] = (uint8_t)(tt_randf(&s_rng) * 128.0f + 128.0f);
    size_t bb = quant_block_bytes(type);
    for (size_t b = 0; b < row_bytes; b += bb)
        for (const int *f = s_f16_fields(type); *f >= 0; f++) {
            uint16_t h = quant_f32_to_f16(0.002f * (1.5f + tt_randf(&s_rng)));
            row[b + (size_t)*f] = (uint8_t)h;
            row[b + (size_t)*f + 1] = (uint8_t)(h >> 8);
        }
}

/* The kernels' chunk decoding, run on the host, against formats/quant.c's
 * dequantisation of the same row: equal up to one rounding of a
 * multiply-add (a host compiler may fuse quant.c's), 1e-6 of the row's
 * largest value; a wrong nibble, scale or offset is off by a whole step. */
static void s_chunks_host(int type, int64_t n_in) {
    TT_CASE("host chunk decoding %s n_in %lld", quant_type_name(type), (long long)n_in);
    size_t rb = 0;
    TT_OK(quant_row_bytes(type, n_in, &rb));
    uint8_t *row = malloc(rb);
    float *ref = malloc((size_t)n_in * sizeof *ref), w[32];
    int64_t bad = 0;
    for (int64_t o = 0; o < 6; o++) {
        s_fill_row(type, row, rb, n_in, o);
        quant_dequantize_row(type, row, ref, n_in);
        double big = 0;
        for (int64_t i = 0; i < n_in; i++) big = fmax(big, fabs(ref[i]));
        for (int64_t c = 0; c * 32 < n_in; c++) {
            TT_OK(qgemv_cuda_chunk_host(type, row, c, n_in, w));
            for (int64_t j = 0; j < 32; j++) {
                double want = c * 32 + j < n_in ? ref[c * 32 + j] : 0.0;
                if (!(fabs(w[j] - want) <= 1e-6 * big) && bad++ < 3)
                    fprintf(stderr, "  row %lld element %lld: chunk %g, quant.c %g\n", (long long)o,
                            (long long)(c * 32 + j), w[j], want);
            }
        }
    }
    TT_CHECK(bad == 0);
    free(row), free(ref);
}

static void *s_up(const void *h, size_t bytes) {
    void *d = s_gpu->alloc(s_gpu->ctx, bytes ? bytes : 1);
    TT_CHECK(d != NULL);
    if (d && bytes) TT_OK(backend_cuda_upload(d, h, bytes));
    return d;
}

static void s_case(int type, int64_t n_in, int64_t n_out, int64_t T, bool acc) {
    TT_CASE("%s n_in %lld n_out %lld T %lld%s", quant_type_name(type), (long long)n_in, (long long)n_out,
            (long long)T, acc ? " +=" : "");
    size_t rb = 0;
    TT_OK(quant_row_bytes(type, n_in, &rb));
    uint8_t *w = calloc((size_t)n_out, rb);
    float *x = malloc((size_t)(T * n_in) * sizeof *x), *y0 = malloc((size_t)(T * n_out) * sizeof *y0);
    float *yc = malloc((size_t)(T * n_out) * sizeof *yc), *yg = malloc((size_t)(T * n_out) * sizeof *yg);
    float *deq = malloc((size_t)n_in * sizeof *deq);
    for (int64_t o = 0; o < n_out; o++) s_fill_row(type, w + (size_t)o * rb, rb, n_in, o);
    for (int64_t i = 0; i < T * n_in; i++) x[i] = tt_randf(&s_rng);
    for (int64_t i = 0; i < T * n_out; i++) y0[i] = acc ? tt_randf(&s_rng) : NAN; /* NaN: must be overwritten */
    qdot_row_fn twin = qdot_f32act_fn_for(type, QDOT_REF);
    TT_CHECK(twin != NULL);
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < n_out; o++) {
            float d = twin(w + (size_t)o * rb, NULL, x + t * n_in, n_in);
            yc[t * n_out + o] = acc ? y0[t * n_out + o] + d : d;
        }
    float *dw = s_up(w, (size_t)n_out * rb), *dx = s_up(x, (size_t)(T * n_in) * 4), *dy = s_up(y0, (size_t)(T * n_out) * 4);
    TT_OK(qgemv_cuda(dy, dx, dw, type, rb, n_in, n_out, T, acc, NULL));
    TT_OK(backend_cuda_download(yg, dy, (size_t)(T * n_out) * 4));
    double worst_cpu = 0, worst_exact = 0; /* in units of u S */
    int64_t bad = 0;
    for (int64_t o = 0; o < n_out; o++) {
        quant_dequantize_row(type, w + (size_t)o * rb, deq, n_in);
        for (int64_t t = 0; t < T; t++) {
            double exact = 0, S = 0;
            for (int64_t i = 0; i < n_in; i++) {
                exact += (double)deq[i] * x[t * n_in + i];
                S += fabs((double)deq[i] * x[t * n_in + i]);
            }
            float base = acc ? y0[t * n_out + o] : 0.0f;
            /* the += adds one more rounding of |base + dot| on each side */
            double Sb = S + fabs(base) + fabs(exact);
            double g = yg[t * n_out + o], c = yc[t * n_out + o];
            double e_cpu = fabs(g - c), e_exact = fabs(g - (base + exact));
            bool ok = e_cpu /* NaN: false */ <= (2.0 * (double)n_in + 4.0) * U * Sb * 1.001 &&
                      e_exact <= ((double)n_in + 2.0) * U * Sb * 1.001;
            if (!ok && bad++ < 3)
                fprintf(stderr, "  row %lld, t %lld: gpu %.9g, cpu %.9g, exact %.9g (S %.3g)\n", (long long)o,
                        (long long)t, g, c, base + exact, S);
            if (Sb > 0) {
                worst_cpu = fmax(worst_cpu, e_cpu / (U * Sb));
                worst_exact = fmax(worst_exact, e_exact / (U * Sb));
            }
        }
    }
    TT_CHECK(bad == 0);
    fprintf(stderr, "  %-6s %5lld x %5lld T %2lld%s: worst |gpu-cpu| %.1f u S (bound %.0f), |gpu-exact| %.1f u S %s\n",
            quant_type_name(type), (long long)n_in, (long long)n_out, (long long)T, acc ? " +=" : "   ", worst_cpu,
            2.0 * (double)n_in + 4.0, worst_exact, bad ? "FAIL" : "ok");
    s_gpu->free(s_gpu->ctx, dw), s_gpu->free(s_gpu->ctx, dx), s_gpu->free(s_gpu->ctx, dy);
    free(w), free(x), free(y0), free(yc), free(yg), free(deq);
}

/* ---- --bench: time per product against cuBLAS (the question of issue 16 item 1: the file's
 * blocks through these kernels, or bf16 weights through cuBLAS?). Effective bandwidth = the
 * bytes a product must read (weights at their stored size + x) / time; the mean of 50 launches
 * after 5 warm-ups, between CUDA events. Printed and (--csv) written; never a pass condition. */
typedef struct timer {
    cudaEvent_t a, b;
} timer;

static double s_ms(timer *tm, int type, const void *w, size_t rb, const float *x, float *y, int64_t n_in,
                   int64_t n_out, int64_t T, const void *xb, cublasHandle_t blas, int how) {
    const float one = 1.0f, zero = 0.0f;
    double ms = -1;
    for (int it = -5; it < 50; it++) {
        if (it == 0) cudaEventRecord(tm->a, 0);
        int rc = 0;
        if (how == 0) rc = qgemv_cuda(y, x, w, type, rb, n_in, n_out, T, false, NULL);
        else if (how == 1) /* bf16 W, bf16 X (already converted), f32 Y, f32 accumulation */
            rc = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T, (int)n_in, &one, w, CUDA_R_16BF,
                              (int)n_in, xb, CUDA_R_16BF, (int)n_in, &zero, y, CUDA_R_32F, (int)n_out,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS;
        else /* f32 W: what backend_cuda's matmul does today */
            rc = cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T, (int)n_in, &one, w, (int)n_in, x,
                             (int)n_in, &zero, y, (int)n_out) != CUBLAS_STATUS_SUCCESS;
        if (rc) return -1;
    }
    cudaEventRecord(tm->b, 0);
    float f = 0;
    if (cudaEventSynchronize(tm->b) == cudaSuccess && cudaEventElapsedTime(&f, tm->a, tm->b) == cudaSuccess)
        ms = f / 50.0;
    return ms;
}

static int s_bench(const char *csv_path) {
    static const int64_t shapes[][2] = {{576, 1536}, {1536, 576}, {576, 49152}, {896, 4864}, {4864, 896},
                                        {4096, 4096}, {4096, 14336}, {14336, 4096}};
    static const int types[] = {GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_BF16};
    static const int64_t Ts[] = {1, 16};
    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return fprintf(stderr, "cublasCreate failed\n"), 1;
    timer tm;
    cudaEventCreate(&tm.a), cudaEventCreate(&tm.b);
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    if (csv) fprintf(csv, "kernel,type,n_in,n_out,T,us,gbs\n");
    printf("| %-14s | %-5s | %6s | %6s | %2s | %9s | %7s |\n", "kernel", "type", "n_in", "n_out", "T", "us", "GB/s");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int64_t n_in = shapes[si][0], n_out = shapes[si][1];
        float *x = NULL, *y = NULL;
        void *w = NULL, *xb = NULL;
        size_t wmax = (size_t)n_in * (size_t)n_out * 4;
        if (cudaMalloc((void **)&x, (size_t)(16 * n_in) * 4) || cudaMalloc((void **)&y, (size_t)(16 * n_out) * 4) ||
            cudaMalloc(&w, wmax) || cudaMalloc(&xb, (size_t)(16 * n_in) * 2))
            return fprintf(stderr, "cudaMalloc failed\n"), 1;
        cudaMemset(w, 0x11, wmax), cudaMemset(x, 0, (size_t)(16 * n_in) * 4), cudaMemset(xb, 0, (size_t)(16 * n_in) * 2);
        for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
            int64_t T = Ts[ti];
            for (int k = 0; k < (int)(sizeof types / sizeof *types) + 2; k++) {
                int how = k < (int)(sizeof types / sizeof *types) ? 0 : k - (int)(sizeof types / sizeof *types) + 1;
                int type = how == 0 ? types[k] : how == 1 ? GGML_TYPE_BF16 : GGML_TYPE_F32;
                size_t rb = 0;
                if (quant_row_bytes(type, n_in, &rb)) continue; /* n_in not a multiple of the block */
                double ms = s_ms(&tm, type, w, rb, x, y, n_in, n_out, T, xb, blas, how);
                double bytes = (double)rb * (double)n_out + (double)(T * n_in) * (how == 1 ? 2 : 4);
                const char *kname = how == 0 ? "qgemv_cuda" : how == 1 ? "cublasGemmEx" : "cublasSgemm";
                if (ms <= 0) {
                    printf("| %-14s | %-5s | %6lld | %6lld | %2lld | failed: %s\n", kname, quant_type_name(type),
                           (long long)n_in, (long long)n_out, (long long)T, tis_last_error());
                    continue;
                }
                printf("| %-14s | %-5s | %6lld | %6lld | %2lld | %9.2f | %7.1f |\n", kname, quant_type_name(type),
                       (long long)n_in, (long long)n_out, (long long)T, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
                if (csv)
                    fprintf(csv, "%s,%s,%lld,%lld,%lld,%.3f,%.1f\n", kname, quant_type_name(type), (long long)n_in,
                            (long long)n_out, (long long)T, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
            }
        }
        cudaFree(x), cudaFree(y), cudaFree(w), cudaFree(xb);
    }
    if (csv) fclose(csv);
    cublasDestroy(blas);
    return 0;
}
#endif

int main(int argc, char **argv) {
#ifdef TIS_HAVE_CUDA
    if (argc > 1 && strcmp(argv[1], "--bench")) {
        fprintf(stderr, "usage: test_cuda_qgemv [--bench [CSV]]\n");
        return 2;
    }
    /* Argument checks: host-side, before anything touches a device. */
    TT_CASE("arguments");
    float dummy[4];
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, GGML_TYPE_Q2_K, 84, 256, 1, 1, false, NULL), TIS_EUNSUPPORTED);
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, 999, 84, 256, 1, 1, false, NULL), TIS_EUNSUPPORTED);
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, GGML_TYPE_Q4_K, 144, 100, 1, 1, false, NULL), TIS_EFORMAT);
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, GGML_TYPE_Q4_1, 40, 32, 1, 1, false, NULL), TIS_EINVAL);
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, GGML_TYPE_Q8_0, 34, 32, -1, 1, false, NULL), TIS_EINVAL);
    TT_FAILS(qgemv_cuda(dummy, dummy, dummy, GGML_TYPE_Q8_0, 34, 0, 1, 1, false, NULL), TIS_EINVAL);
    TT_FAILS(qgemv_cuda(NULL, dummy, dummy, GGML_TYPE_Q8_0, 34, 32, 1, 1, false, NULL), TIS_EINVAL);
    TT_CHECK(qgemv_cuda(NULL, NULL, NULL, GGML_TYPE_Q8_0, 34, 32, 0, 1, false, NULL) == 0); /* nothing to do */
    TT_CHECK(qgemv_cuda_supported(GGML_TYPE_Q4_1) && qgemv_cuda_supported(GGML_TYPE_Q6_K) &&
             !qgemv_cuda_supported(GGML_TYPE_Q8_K));
    const int all[] = {GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                       GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_F32};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        s_chunks_host(all[k], quant_block_elems(all[k]) == 256 ? 4864 : quant_block_elems(all[k]) == 32 ? 1056 : 577);
    TT_CHECK(qgemv_cuda_chunk_host(GGML_TYPE_Q2_K, dummy, 0, 256, dummy) == TIS_EUNSUPPORTED);
    char info[1024];
    if (cuda_probe(info, sizeof info) == 0) {
        if (tt_failures) return tt_done("test_cuda_qgemv");
        printf("test_cuda_qgemv: skipped (argument checks and host chunk decoding passed): %s\n", info);
        return 77;
    }
    printf("%s", info);
    if (argc > 1) return s_bench(argc > 2 ? argv[2] : NULL);
    s_gpu = backend_cuda(0);
    TT_CHECK(s_gpu != NULL);
    if (!s_gpu) return tt_done("test_cuda_qgemv");
    /* 32-blocks: 1 chunk; 33 chunks (one lane takes two); SmolLM2's 576 and 1536 */
    const int b32[] = {GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1};
    for (size_t k = 0; k < sizeof b32 / sizeof *b32; k++) {
        s_case(b32[k], 32, 1, 1, false);
        s_case(b32[k], 1056, 7, 17, false);
        s_case(b32[k], 576, 33, 16, true);
        s_case(b32[k], 1536, 9, 1, false);
    }
    /* 256-blocks: one block (8 lanes busy); 5 blocks (40 chunks); Qwen's ffn_down 4864 = 19 blocks */
    const int b256[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof b256 / sizeof *b256; k++) {
        s_case(b256[k], 256, 1, 1, false);
        s_case(b256[k], 1280, 7, 17, true);
        s_case(b256[k], 4864, 33, 1, false);
        s_case(b256[k], 4864, 3, 16, false);
    }
    /* plain types: n_in not a multiple of 32 (a partial last chunk) */
    const int plain[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_F32};
    for (size_t k = 0; k < sizeof plain / sizeof *plain; k++) {
        s_case(plain[k], 1, 1, 1, false);
        s_case(plain[k], 577, 7, 17, false);
        s_case(plain[k], 1056, 33, 3, true);
    }
    return tt_done("test_cuda_qgemv");
#else
    (void)argc, (void)argv;
    printf("test_cuda_qgemv: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
