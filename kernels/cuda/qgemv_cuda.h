/* qgemv_cuda: decode-sized products with weights in the model file's own
 * blocks, on the device: y[T][n_out] = x[T][n_in] . W^T (+ y), f32
 * activations, the weights dequantised in registers (never to memory).
 *
 * Layout: one warp per output row, QGEMV_ROWS rows per 256-thread block.
 * A row is cut into 32-element chunks (a 32-block, or an eighth of a
 * 256-block: Q4_K and Q6_K); lane l takes chunks l, l + 32, ..., so in each
 * step a warp reads 32 neighbouring chunks of the row: contiguous bytes.
 * Each lane keeps T partial sums (f32) and the warp adds them with shuffles.
 * T > QGEMV_MAX_T rows go in slices of QGEMV_MAX_T (each re-reads W: for
 * prefill-sized T a dequantise + cuBLAS GEMM is the better path).
 *
 * The CPU twin is kernels/cpu's reference dot with f32 activations
 * (qdot_f32act_fn_for(type, QDOT_REF)), which dequantises with formats/
 * quant.c; tests/test_cuda_qgemv.c holds the two against each other.
 *
 * Status: compiled in CI; tested only where a GPU is present: passed on an
 * H200 (2026-11-30). Not wired into the forward: cuBLAS with bf16 weights
 * was faster at every real shape there (docs/results/gpu). */
#ifndef TIS_QGEMV_CUDA_H
#define TIS_QGEMV_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { QGEMV_MAX_T = 16, QGEMV_ROWS = 8 };

/* True for the ggml types these kernels read: F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q6_K. */
bool qgemv_cuda_supported(int type);

/* y[T][n_out] = x[T][n_in] . w^T (+ y when accumulate), on the current
 * device, on `stream` (a cudaStream_t; NULL: the default stream), launched
 * asynchronously. y, x, w are device pointers (borrowed): x [T][n_in] f32,
 * y [T][n_out] f32, w [n_out] rows of row_bytes holding n_in elements of
 * `type`. Checks the arguments against each other (type supported, n_in a
 * multiple of the type's block for block types, row_bytes exactly the
 * row's size, sizes >= 0) before anything runs: 0, or TIS_EINVAL /
 * TIS_EUNSUPPORTED, or TIS_EIO when a launch fails (with CUDA's reason). */
int qgemv_cuda(float *y, const float *x, const void *w, int type, size_t row_bytes, int64_t n_in, int64_t n_out,
               int64_t T, bool accumulate, void *stream);

/* The kernels' own decoding of chunk c (elements [32c, 32c + 32)) of a
 * host row of n elements of `type` into w[32] (plain types: 0 past n), run
 * on the host: lets tests check the block layouts without a GPU. 0 or
 * TIS_EUNSUPPORTED. */
int qgemv_cuda_chunk_host(int type, const void *row, int64_t c, int64_t n, float *w);

#ifdef __cplusplus
}
#endif

#endif
