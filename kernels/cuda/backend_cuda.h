/* backend_cuda: the CUDA twin of the CPU reference backend: the same
 * vtable (kernels/backend.h), f32 on device memory, cuBLAS (FP32 math, no
 * TF32) for the matrix products; RMSNorm, RoPE, SwiGLU, adds and causal
 * grouped-query attention over ragged (compacted) per-head caches as
 * kernels. Attention tiles the keys with an online softmax: no T x T score
 * matrix exists, however long the context. It does not observe attention
 * probabilities (the presses that need them run on the CPU path).
 *
 * Residency (kernels/backend.h): upload / download, kv_append (f32 rows
 * stored as the cache's f32, f16 or bf16; attention reads all three),
 * weight_prepare (every matrix dequantised on the host to f32 and uploaded
 * once; the hook for keeping quantised blocks is s_keep_quantised), sync.
 * cannot_observe is set: forward_run refuses on_attn up front. With these
 * the forward pass runs entirely on the device (engine/forward.c): the
 * step's embedded rows and positions go up, the logits come down.
 *
 * Status: compiled in CI; each op is tested against backend_cpu by
 * tests/test_cuda_backend.c and the whole forward pass against the CPU by
 * tests/test_cuda_forward.c, which run only where a GPU is present: both
 * passed on an H200 (2026-11-30, docs/results/gpu). Correct, and slow:
 * f32 weights, f32 attention without tensor cores, a batch stepped one
 * sequence after another (the figures are there). */
#ifndef TIS_BACKEND_CUDA_H
#define TIS_BACKEND_CUDA_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend of device `device` (set up once), or NULL with an error. */
const tis_backend *backend_cuda(int device);

/* Host <-> device copies of backend buffers. 0 or a negative status. */
int backend_cuda_upload(void *dst_dev, const void *src_host, size_t bytes);
int backend_cuda_download(void *dst_host, const void *src_dev, size_t bytes);

/* *dev: host's layout with its k, v and bias copied to new device memory
 * (off / len stay the host's, borrowed); released by backend_cuda_kv_release. */
int backend_cuda_kv_upload(kv_view *dev, const kv_view *host);
void backend_cuda_kv_release(kv_view *dev);

#ifdef __cplusplus
}
#endif

#endif
