/* devpool: the device side of a worker's data plane (docs/design.md §9,
 * docs/pipeline.md "Workers on GPUs"): a CUDA worker's compressed KV blocks
 * in one device pool, handed to decode workers through CUDA IPC.
 *
 * Producer (a prefill worker with device cuda:N): one pool allocated once at
 * start and exported once (its IPC handle), one interprocess event exported
 * once; blocks are offset + length in the pool under leases (blocks.h, the
 * same bookkeeping as the shm arena: renewed by the coordinator, expired,
 * released); the event is recorded after each block's bytes are written.
 * The pool dies with the process (kill -9 included: the driver frees it),
 * and its blocks' requests start again at PREFILL like any lost worker's.
 *
 * Consumer (a decode worker with device cuda:M): a cache of the producers'
 * pools, each opened ONCE per (producer instance, handle) on the producer's
 * device and kept (opening costs milliseconds: never per request); an entry
 * is closed when a new instance of its producer appears (another nonce), when
 * its handle changes, when it is unused for idle_ms (its producer is gone),
 * when a read through it fails, or to make room (least recently used).
 *
 * The device calls sit behind devmem_ops so that all of this runs, and is
 * tested, on the CPU with a fake (tests/test_devpool.c); devmem_cuda() is the
 * CUDA table (serve/devmem_cuda.c, kernels/cuda/cuda_ipc.h), NULL in a build
 * without CUDA. The CUDA table ran once on an H200 (test_cuda_ipc, the pipeline check:
 * docs/results/gpu). */
#ifndef TIS_DEVPOOL_H
#define TIS_DEVPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "tis.pb-c.h"

enum { DEVPOOL_HANDLE_BYTES = 64, DEVPOOL_PEERS_MAX = 32 };

/* The device memory calls (a NULL table: none in this process). Pools and
 * events are opaque; handles are DEVPOOL_HANDLE_BYTES bytes. All return 0
 * or a negative tis_error code with a message. */
typedef struct devmem_ops {
    void *ctx;
    /* producer: a pool of >= bytes on device (*size: what it got), exported */
    int (*pool_create)(void *ctx, int device, size_t bytes, void **pool, size_t *size, uint8_t *handle);
    int (*event_create)(void *ctx, int device, void **ev, uint8_t *handle);
    int (*event_record)(void *ctx, void *ev);          /* after the writes queued so far */
    /* consumer: another process's pool / event from its handle */
    int (*pool_open)(void *ctx, int device, const uint8_t *handle, size_t bytes, void **pool);
    int (*event_open)(void *ctx, int device, const uint8_t *handle, void **ev);
    int (*event_wait)(void *ctx, void *ev);            /* later copies wait for the producer's writes */
    void (*pool_close)(void *ctx, void **pool);        /* the creator frees, a peer closes; NULLs *pool */
    void (*event_close)(void *ctx, void **ev);
    /* host <-> pool, bounds already checked by the caller */
    int (*write)(void *ctx, void *pool, uint64_t off, const void *src, size_t len);
    int (*read)(void *ctx, void *pool, uint64_t off, void *dst, size_t len);
    /* pool -> device memory of device dst_device (cudaMemcpyPeer when the
     * pool sits on another device): the decode side once its KV cache lives
     * on its device (engine/kv.c, not yet) */
    int (*copy_to_device)(void *ctx, void *dst, int dst_device, void *pool, uint64_t off, size_t len);
} devmem_ops;

/* The CUDA table (kernels/cuda/cuda_ipc.h), or NULL without CUDA. */
const devmem_ops *devmem_cuda(void);
/* POSIX shared memory standing in for device memory (serve/devmem_host.c):
 * the workers' device path on a machine without a GPU, for tests only. */
const devmem_ops *devmem_host(void);
/* The workers' table: devmem_host() under TIS_DEVMEM=host (devspec_standin),
 * else devmem_cuda(). */
const devmem_ops *devmem_workers(void);

/* ---- producer ----------------------------------------------------------- */

typedef struct devpool devpool;

/* One pool of `bytes` on `device` for worker `name` ([A-Za-z0-9._-], 1..200
 * bytes) and its event, each created and exported once. */
int devpool_create(devpool **out, const devmem_ops *ops, int device, const char *name, size_t bytes);
void devpool_destroy(devpool **p);   /* frees the pool and the event */

const char *devpool_name(const devpool *p);   /* "cuda-<name>-<nonce, 8 hex>": BlockRef.arena */
size_t devpool_size(const devpool *p);
int devpool_device(const devpool *p);
/* Whether a lease is one of this pool's (its nonce bits). */
bool devpool_owns(const devpool *p, uint64_t lease);

/* A block of `bytes` from the host copied into the pool under a lease of
 * ttl_ms, the event recorded after it. The boundary copy: the compressed
 * cache lives on the host until engine/kv.c keeps it on the device; then the
 * compaction writes into the pool and only the event is recorded here. */
int devpool_put(devpool *p, const void *src, size_t bytes, uint32_t ttl_ms, uint64_t *off, uint64_t *lease);
int devpool_renew(devpool *p, uint64_t lease, uint32_t ttl_ms);   /* TIS_ENOTFOUND when gone */
void devpool_release(devpool *p, uint64_t lease);
int64_t devpool_expire(devpool *p, uint64_t now_ms);
int64_t devpool_blocks(const devpool *p);
size_t devpool_bytes_used(const devpool *p);

/* The handle of a block (borrows p's strings and handles, and host). */
Tis__BlockRef devpool_blockref(const devpool *p, uint64_t off, uint64_t len, uint64_t lease, const char *host);

/* A BlockFetch of one of our blocks (a consumer that cannot open the pool:
 * another host, or a cpu worker): checked as fetch_serve checks an arena's,
 * the chunk copied out of the pool into stage[FETCH_CHUNK] (c->data points
 * there), the lease renewed by lease_ms; c->error (err[cap]) says why not. */
void devpool_fetch_serve(devpool *p, uint32_t lease_ms, const Tis__BlockFetch *f, Tis__BlockChunk *c,
                         uint8_t *stage, char *err, size_t cap);

/* ---- consumer ----------------------------------------------------------- */

typedef struct devpool_peer {
    char name[232];                        /* the producer's pool name (BlockRef.arena) */
    uint8_t handle[DEVPOOL_HANDLE_BYTES];  /* the pool's */
    uint8_t ev_handle[DEVPOOL_HANDLE_BYTES];
    void *pool, *ev;                       /* opened (owned: closed through the ops) */
    uint64_t bytes;                        /* the pool's size, as its producer said */
    uint64_t nonce;                        /* the producer instance's (in its name and leases) */
    uint64_t last_ms;                      /* last used */
} devpool_peer;

typedef struct devpool_peers {
    const devmem_ops *ops;                 /* borrowed */
    devpool_peer p[DEVPOOL_PEERS_MAX];
    int n;
    int64_t opens, closes;                 /* pools opened / closed so far (for tests and logs) */
} devpool_peers;

void devpool_peers_init(devpool_peers *c, const devmem_ops *ops);
void devpool_peers_free(devpool_peers *c);   /* closes every entry */

/* *out: br's pool, from the cache or opened (once) on the producer's
 * device (br->device_index); or an error. Checks the handle first: a CUDA
 * block, handles of the right size, a pool name with the lease's nonce,
 * [offset, offset + length) inside pool_bytes. */
int devpool_peers_get(devpool_peers *c, const Tis__BlockRef *br, uint64_t now_ms, devpool_peer **out);
/* br's bytes into dst[br->length]: the entry, a wait on the producer's
 * event, the copy. A failed wait or copy closes the entry (the next block
 * opens the pool again). */
int devpool_peers_read(devpool_peers *c, const Tis__BlockRef *br, void *dst, uint64_t now_ms);
/* The same into device memory dst of dst_device (cudaMemcpyPeer when the
 * pool is on another device): for the decode worker once its KV cache
 * lives on its device (engine/kv.c, not yet: it reads to the host today). */
int devpool_peers_copy_to_device(devpool_peers *c, const Tis__BlockRef *br, void *dst, int dst_device,
                                 uint64_t now_ms);
/* Closes the entries of pools named `name` (0 or 1). */
int devpool_peers_forget(devpool_peers *c, const char *name);
/* Closes the entries unused since now_ms - idle_ms; returns how many. */
int devpool_peers_expire(devpool_peers *c, uint64_t now_ms, uint64_t idle_ms);

/* ---- which way a block comes -------------------------------------------- */

typedef enum block_path {
    BLOCK_PATH_SHM,       /* the producer's shm arena, mapped here (arena_peers) */
    BLOCK_PATH_CUDA_IPC,  /* the producer's device pool, opened here (devpool_peers) */
    BLOCK_PATH_FETCH,     /* chunks through the coordinator (fetch.h): another host, or a device
                             block for a consumer without device memory calls */
} block_path;

/* How a consumer reads br. remote: br's host is not ours (fetch_is_remote);
 * have_devmem: this process has device memory calls (a cuda worker). */
block_path devpool_path(const Tis__BlockRef *br, bool remote, bool have_devmem);

#endif
