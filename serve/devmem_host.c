/* devmem_host: devpool's device calls stood in by POSIX shared memory, for
 * running the CUDA workers' whole path (the prefill worker's pool, the
 * decode worker's pool cache, leases, fetches of device blocks) in worker
 * processes on a machine without a GPU: tests/test_devpipe.c. Chosen only
 * by TIS_DEVMEM=host (devspec_standin); never a substitute for a GPU: it
 * shows that the host-side logic holds, not that CUDA does.
 *
 * A pool is an arena (arena.h: its own 0600 segment, mapped once by a peer);
 * its handle is the segment's name; the pool's bytes follow the arena's
 * 64-byte header. Events have nothing to order (copies are synchronous):
 * record and wait only count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "devpool.h"
#include "tis_error.h"

enum { HOST_HEADER = 64 };

static int s_pool_create(void *ctx, int device, size_t bytes, void **pool, size_t *size, uint8_t *handle) {
    (void)ctx;
    static int n;
    char name[64];
    snprintf(name, sizeof name, "devhost%d-%d-%d", (int)getpid(), device, ++n);
    arena *a = NULL;
    int rc = arena_create(&a, name, bytes + HOST_HEADER);
    if (rc) return rc;
    memset(handle, 0, DEVPOOL_HANDLE_BYTES);
    if (strlen(arena_name(a)) >= DEVPOOL_HANDLE_BYTES) {
        arena_destroy(&a);
        return tis_error(TIS_EINVAL, "devmem_host: a segment name over %d bytes", DEVPOOL_HANDLE_BYTES - 1);
    }
    memcpy(handle, arena_name(a), strlen(arena_name(a)));
    *size = bytes;
    *pool = a;
    return 0;
}

static int s_pool_open(void *ctx, int device, const uint8_t *handle, size_t bytes, void **pool) {
    (void)ctx, (void)device;
    char name[DEVPOOL_HANDLE_BYTES + 1];
    memcpy(name, handle, DEVPOOL_HANDLE_BYTES);
    name[DEVPOOL_HANDLE_BYTES] = 0;
    arena *a = NULL;
    int rc = arena_open(&a, name);
    if (!rc && arena_size(a) < bytes + HOST_HEADER) {
        arena_destroy(&a);
        rc = tis_error(TIS_ERANGE, "devmem_host: %s holds fewer than %zu bytes", name, bytes);
    }
    *pool = a;
    return rc;
}

static void s_pool_close(void *ctx, void **pool) {
    (void)ctx;
    arena *a = *pool;
    arena_destroy(&a); /* the creator's unlinks the segment */
    *pool = NULL;
}

static int s_event_create(void *ctx, int device, void **ev, uint8_t *handle) {
    (void)ctx, (void)device;
    memset(handle, 0, DEVPOOL_HANDLE_BYTES);
    memcpy(handle, "devmem_host event", 17);
    *ev = malloc(1);
    return *ev ? 0 : tis_error(TIS_ENOMEM, "out of memory");
}

static int s_event_open(void *ctx, int device, const uint8_t *handle, void **ev) {
    (void)ctx, (void)device;
    if (memcmp(handle, "devmem_host event", 17)) return tis_error(TIS_EINVAL, "devmem_host: not an event handle");
    *ev = malloc(1);
    return *ev ? 0 : tis_error(TIS_ENOMEM, "out of memory");
}

static void s_event_close(void *ctx, void **ev) {
    (void)ctx;
    free(*ev);
    *ev = NULL;
}

static int s_event_nop(void *ctx, void *ev) {
    (void)ctx, (void)ev;
    return 0;
}

static void *s_at(void *pool, uint64_t off, size_t len) { return arena_at(pool, HOST_HEADER + off, len); }

static int s_write(void *ctx, void *pool, uint64_t off, const void *src, size_t len) {
    (void)ctx;
    void *d = s_at(pool, off, len);
    if (!d) return TIS_ERANGE;
    memcpy(d, src, len);
    return 0;
}

static int s_read(void *ctx, void *pool, uint64_t off, void *dst, size_t len) {
    (void)ctx;
    const void *p = s_at(pool, off, len);
    if (!p) return TIS_ERANGE;
    memcpy(dst, p, len);
    return 0;
}

static int s_copy_to_device(void *ctx, void *dst, int dst_device, void *pool, uint64_t off, size_t len) {
    (void)dst_device;
    return s_read(ctx, pool, off, dst, len); /* "device memory" is host memory here */
}

static const devmem_ops S_HOST = {
    .pool_create = s_pool_create,
    .event_create = s_event_create,
    .event_record = s_event_nop,
    .pool_open = s_pool_open,
    .event_open = s_event_open,
    .event_wait = s_event_nop,
    .pool_close = s_pool_close,
    .event_close = s_event_close,
    .write = s_write,
    .read = s_read,
    .copy_to_device = s_copy_to_device,
};

const devmem_ops *devmem_host(void) { return &S_HOST; }
