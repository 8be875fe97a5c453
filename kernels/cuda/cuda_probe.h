/* cuda_probe: which CUDA devices this process can use (none is normal on a
 * CPU-only machine). The CUDA backend itself comes with kernels/cuda. */
#ifndef TIS_CUDA_PROBE_H
#define TIS_CUDA_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable devices (0 when there is no driver or GPU); writes one
 * line per device ("cuda:0 NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB") or the
 * reason there is none into buf. */
int cuda_probe(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
