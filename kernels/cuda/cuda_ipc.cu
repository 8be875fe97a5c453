// cuda_ipc: device memory pools and events shared between processes.
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ipc.h"
extern "C" {
#include "tis_error.h"
}

static_assert(sizeof(cudaIpcMemHandle_t) == CUDA_IPC_HANDLE_BYTES, "cudaIpcMemHandle_t size");
static_assert(sizeof(cudaIpcEventHandle_t) == CUDA_IPC_HANDLE_BYTES, "cudaIpcEventHandle_t size");

struct cuda_pool {
    void *base;
    size_t size;
    int device;
    bool owner;
};

struct cuda_ipc_event {
    cudaEvent_t ev;
    int device;
};

// Every call here leaves the caller's current device as it found it: a
// decode worker on cuda:1 opens a pool on cuda:0 (its producer's device), and
// its own backend's launches must stay on cuda:1.
struct s_device_keep {
    int prev = -1;
    s_device_keep() {
        if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    }
    ~s_device_keep() {
        if (prev >= 0) cudaSetDevice(prev);
    }
};

static int s_fail(cudaError_t e, const char *what) {
    cudaGetLastError(); // clear a sticky error for later calls
    return tis_error(TIS_EIO, "cuda: %s: %s", what, cudaGetErrorString(e));
}

extern "C" int cuda_pool_create(cuda_pool **out, int device, size_t bytes, uint8_t *handle_out) {
    *out = NULL;
    if (bytes == 0) return tis_error(TIS_EINVAL, "cuda: an empty pool");
    size_t size = (bytes + CUDA_POOL_ALIGN - 1) / CUDA_POOL_ALIGN * CUDA_POOL_ALIGN;
    s_device_keep keep;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return s_fail(e, "cudaSetDevice");
    cuda_pool *p = (cuda_pool *)calloc(1, sizeof *p);
    if (!p) return tis_error(TIS_ENOMEM, "cuda: out of memory");
    if ((e = cudaMalloc(&p->base, size)) != cudaSuccess) {
        free(p);
        return s_fail(e, "cudaMalloc of the pool");
    }
    cudaIpcMemHandle_t h;
    if ((e = cudaIpcGetMemHandle(&h, p->base)) != cudaSuccess) {
        cudaFree(p->base);
        free(p);
        return s_fail(e, "cudaIpcGetMemHandle");
    }
    memcpy(handle_out, &h, sizeof h);
    p->size = size;
    p->device = device;
    p->owner = true;
    *out = p;
    return 0;
}

extern "C" int cuda_pool_open(cuda_pool **out, int device, const uint8_t *handle, size_t bytes) {
    *out = NULL;
    s_device_keep keep;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return s_fail(e, "cudaSetDevice");
    cuda_pool *p = (cuda_pool *)calloc(1, sizeof *p);
    if (!p) return tis_error(TIS_ENOMEM, "cuda: out of memory");
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof h);
    if ((e = cudaIpcOpenMemHandle(&p->base, h, cudaIpcMemLazyEnablePeerAccess)) != cudaSuccess) {
        free(p);
        return s_fail(e, "cudaIpcOpenMemHandle (a pool of another process)");
    }
    p->size = bytes;
    p->device = device;
    *out = p;
    return 0;
}

extern "C" void cuda_pool_destroy(cuda_pool **pp) {
    if (!pp || !*pp) return;
    cuda_pool *p = *pp;
    s_device_keep keep;
    cudaSetDevice(p->device);
    if (p->owner) cudaFree(p->base);
    else cudaIpcCloseMemHandle(p->base);
    free(p);
    *pp = NULL;
}

extern "C" size_t cuda_pool_size(const cuda_pool *p) { return p->size; }

extern "C" void *cuda_pool_at(const cuda_pool *p, uint64_t off, uint64_t len) {
    if (off > p->size || len > p->size - off) {
        tis_error(TIS_ERANGE, "cuda: block [%llu, +%llu) outside a pool of %zu bytes", (unsigned long long)off,
                  (unsigned long long)len, p->size);
        return NULL;
    }
    return (char *)p->base + off;
}

extern "C" int cuda_pool_write(cuda_pool *p, uint64_t off, const void *src, size_t len) {
    void *d = cuda_pool_at(p, off, len);
    if (!d) return TIS_ERANGE;
    s_device_keep keep;
    cudaSetDevice(p->device);
    cudaError_t e = cudaMemcpy(d, src, len, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : s_fail(e, "copy into the pool");
}

extern "C" int cuda_pool_read(const cuda_pool *p, uint64_t off, void *dst, size_t len) {
    const void *d = cuda_pool_at(p, off, len);
    if (!d) return TIS_ERANGE;
    s_device_keep keep;
    cudaSetDevice(p->device);
    cudaError_t e = cudaMemcpy(dst, d, len, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : s_fail(e, "copy out of the pool");
}

extern "C" int cuda_pool_copy_to_device(void *dst, int dst_device, const cuda_pool *p, uint64_t off, size_t len) {
    const void *src = cuda_pool_at(p, off, len);
    if (!src) return TIS_ERANGE;
    s_device_keep keep;
    cudaError_t e = cudaSetDevice(dst_device);
    if (e != cudaSuccess) return s_fail(e, "cudaSetDevice");
    if (p->device == dst_device) {
        e = cudaMemcpyAsync(dst, src, len, cudaMemcpyDeviceToDevice, 0);
        return e == cudaSuccess ? 0 : s_fail(e, "copy out of the pool");
    }
    /* another device: the runtime takes the peer path when the two have
     * peer access, and stages through the host when they do not */
    e = cudaMemcpyPeerAsync(dst, dst_device, src, p->device, len, 0);
    return e == cudaSuccess ? 0 : s_fail(e, "cudaMemcpyPeer out of the pool");
}

extern "C" int cuda_ipc_event_create(cuda_ipc_event **out, int device, uint8_t *handle_out) {
    *out = NULL;
    s_device_keep keep;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return s_fail(e, "cudaSetDevice");
    cuda_ipc_event *v = (cuda_ipc_event *)calloc(1, sizeof *v);
    if (!v) return tis_error(TIS_ENOMEM, "cuda: out of memory");
    if ((e = cudaEventCreateWithFlags(&v->ev, cudaEventInterprocess | cudaEventDisableTiming)) != cudaSuccess) {
        free(v);
        return s_fail(e, "cudaEventCreateWithFlags(interprocess)");
    }
    cudaIpcEventHandle_t h;
    if ((e = cudaIpcGetEventHandle(&h, v->ev)) != cudaSuccess) {
        cudaEventDestroy(v->ev);
        free(v);
        return s_fail(e, "cudaIpcGetEventHandle");
    }
    memcpy(handle_out, &h, sizeof h);
    v->device = device;
    *out = v;
    return 0;
}

extern "C" int cuda_ipc_event_open(cuda_ipc_event **out, int device, const uint8_t *handle) {
    *out = NULL;
    s_device_keep keep;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return s_fail(e, "cudaSetDevice");
    cuda_ipc_event *v = (cuda_ipc_event *)calloc(1, sizeof *v);
    if (!v) return tis_error(TIS_ENOMEM, "cuda: out of memory");
    cudaIpcEventHandle_t h;
    memcpy(&h, handle, sizeof h);
    if ((e = cudaIpcOpenEventHandle(&v->ev, h)) != cudaSuccess) {
        free(v);
        return s_fail(e, "cudaIpcOpenEventHandle");
    }
    v->device = device;
    *out = v;
    return 0;
}

extern "C" void cuda_ipc_event_destroy(cuda_ipc_event **pv) {
    if (!pv || !*pv) return;
    s_device_keep keep;
    cudaSetDevice((*pv)->device);
    cudaEventDestroy((*pv)->ev);
    free(*pv);
    *pv = NULL;
}

extern "C" int cuda_ipc_event_record(cuda_ipc_event *v) {
    s_device_keep keep;
    cudaSetDevice(v->device);
    cudaError_t e = cudaEventRecord(v->ev, 0);
    return e == cudaSuccess ? 0 : s_fail(e, "cudaEventRecord");
}

extern "C" int cuda_ipc_event_wait(cuda_ipc_event *v) {
    s_device_keep keep;
    cudaSetDevice(v->device);
    cudaError_t e = cudaStreamWaitEvent(0, v->ev, 0);
    return e == cudaSuccess ? 0 : s_fail(e, "cudaStreamWaitEvent");
}

extern "C" int cuda_ipc_event_sync(cuda_ipc_event *v) {
    s_device_keep keep;
    cudaSetDevice(v->device);
    cudaError_t e = cudaEventSynchronize(v->ev);
    return e == cudaSuccess ? 0 : s_fail(e, "cudaEventSynchronize");
}
