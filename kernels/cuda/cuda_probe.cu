// cuda_probe: device enumeration through the CUDA runtime.
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_probe.h"

extern "C" int cuda_probe(char *buf, size_t cap) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(buf, cap, "no CUDA device: %s", cudaGetErrorString(err));
        cudaGetLastError(); // clear the sticky error for later calls
        return 0;
    }
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < cap; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        int w = snprintf(buf + used, cap - used, "cuda:%d %s, sm_%d%d, %.1f GiB\n", i, p.name,
                         p.major, p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
        if (w < 0) break;
        used += (size_t)w;
    }
    return n;
}
