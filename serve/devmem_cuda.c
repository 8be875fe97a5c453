/* devmem_cuda: devpool's device memory calls on CUDA (kernels/cuda/cuda_ipc.h).
 * Compiled in CUDA builds; run once on an H200 (docs/results/gpu). */
#include "devpool.h"

#ifdef TIS_HAVE_CUDA
#include "cuda_ipc.h"

_Static_assert((int)DEVPOOL_HANDLE_BYTES == (int)CUDA_IPC_HANDLE_BYTES, "IPC handle size");

static int s_pool_create(void *ctx, int device, size_t bytes, void **pool, size_t *size, uint8_t *handle) {
    (void)ctx;
    cuda_pool *p = NULL;
    int rc = cuda_pool_create(&p, device, bytes, handle);
    if (!rc) *size = cuda_pool_size(p);
    *pool = p;
    return rc;
}

static int s_event_create(void *ctx, int device, void **ev, uint8_t *handle) {
    (void)ctx;
    cuda_ipc_event *e = NULL;
    int rc = cuda_ipc_event_create(&e, device, handle);
    *ev = e;
    return rc;
}

static int s_event_record(void *ctx, void *ev) {
    (void)ctx;
    return cuda_ipc_event_record(ev);
}

static int s_pool_open(void *ctx, int device, const uint8_t *handle, size_t bytes, void **pool) {
    (void)ctx;
    cuda_pool *p = NULL;
    int rc = cuda_pool_open(&p, device, handle, bytes);
    *pool = p;
    return rc;
}

static int s_event_open(void *ctx, int device, const uint8_t *handle, void **ev) {
    (void)ctx;
    cuda_ipc_event *e = NULL;
    int rc = cuda_ipc_event_open(&e, device, handle);
    *ev = e;
    return rc;
}

/* The host waits for the producer's event: the copies that follow, on
 * whichever device (the pool's, or ours through cudaMemcpyPeer), see its
 * writes. (A device-side wait, cuda_ipc_event_wait, orders only the
 * default stream of the event's device.) */
static int s_event_wait(void *ctx, void *ev) {
    (void)ctx;
    return cuda_ipc_event_sync(ev);
}

static void s_pool_close(void *ctx, void **pool) {
    (void)ctx;
    cuda_pool *p = *pool;
    cuda_pool_destroy(&p);
    *pool = NULL;
}

static void s_event_close(void *ctx, void **ev) {
    (void)ctx;
    cuda_ipc_event *e = *ev;
    cuda_ipc_event_destroy(&e);
    *ev = NULL;
}

static int s_write(void *ctx, void *pool, uint64_t off, const void *src, size_t len) {
    (void)ctx;
    return cuda_pool_write(pool, off, src, len);
}

static int s_read(void *ctx, void *pool, uint64_t off, void *dst, size_t len) {
    (void)ctx;
    return cuda_pool_read(pool, off, dst, len);
}

static int s_copy_to_device(void *ctx, void *dst, int dst_device, void *pool, uint64_t off, size_t len) {
    (void)ctx;
    return cuda_pool_copy_to_device(dst, dst_device, pool, off, len);
}

static const devmem_ops S_CUDA = {
    .pool_create = s_pool_create,
    .event_create = s_event_create,
    .event_record = s_event_record,
    .pool_open = s_pool_open,
    .event_open = s_event_open,
    .event_wait = s_event_wait,
    .pool_close = s_pool_close,
    .event_close = s_event_close,
    .write = s_write,
    .read = s_read,
    .copy_to_device = s_copy_to_device,
};

const devmem_ops *devmem_cuda(void) { return &S_CUDA; }
#else
const devmem_ops *devmem_cuda(void) { return NULL; }
#endif
