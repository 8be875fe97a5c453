/* devpool: a device pool's blocks and leases (producer), the peers' pools
 * opened once (consumer), the path a block takes. */
#include "devpool.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "devspec.h"
#include "fetch.h"
#include "tis_error.h"

struct devpool {
    const devmem_ops *ops;   /* borrowed */
    int device;
    void *pool, *ev;         /* created here (freed by destroy) */
    size_t size;
    uint8_t handle[DEVPOOL_HANDLE_BYTES], ev_handle[DEVPOOL_HANDLE_BYTES];
    char name[232];
    block_table t;
};

static int s_check_name(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200) return tis_error(TIS_EINVAL, "device pool: bad worker name length %zu", n);
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i]))
            return tis_error(TIS_EINVAL, "device pool: bad character in worker name '%s'", name);
    return 0;
}

int devpool_create(devpool **out, const devmem_ops *ops, int device, const char *name, size_t bytes) {
    *out = NULL;
    if (!ops) return tis_error(TIS_EUNSUPPORTED, "device pool: no device memory here (tis was built without CUDA)");
    int rc = s_check_name(name);
    if (rc) return rc;
    if (bytes <= BLOCKS_ALIGN || bytes > ((size_t)1 << 40)) return tis_error(TIS_EINVAL, "device pool: bad size %zu", bytes);
    devpool *p = calloc(1, sizeof *p);
    if (!p) return tis_error(TIS_ENOMEM, "device pool: out of memory");
    p->ops = ops;
    p->device = device;
    uint64_t nonce = block_nonce();
    snprintf(p->name, sizeof p->name, "cuda-%s-%08" PRIx64, name, nonce);
    rc = ops->pool_create(ops->ctx, device, bytes, &p->pool, &p->size, p->handle);
    if (!rc) rc = ops->event_create(ops->ctx, device, &p->ev, p->ev_handle);
    if (rc) {
        devpool_destroy(&p);
        return rc;
    }
    block_table_init(&p->t, 0, p->size, nonce, p->name);
    *out = p;
    return 0;
}

void devpool_destroy(devpool **pp) {
    if (!pp || !*pp) return;
    devpool *p = *pp;
    if (p->ev) p->ops->event_close(p->ops->ctx, &p->ev);
    if (p->pool) p->ops->pool_close(p->ops->ctx, &p->pool);
    block_table_free(&p->t);
    free(p);
    *pp = NULL;
}

const char *devpool_name(const devpool *p) { return p->name; }
size_t devpool_size(const devpool *p) { return p->size; }
int devpool_device(const devpool *p) { return p->device; }
bool devpool_owns(const devpool *p, uint64_t lease) { return block_table_owns(&p->t, lease); }
int64_t devpool_blocks(const devpool *p) { return p->t.n; }
size_t devpool_bytes_used(const devpool *p) { return block_table_bytes(&p->t); }

int devpool_put(devpool *p, const void *src, size_t bytes, uint32_t ttl_ms, uint64_t *off, uint64_t *lease) {
    block_table_expire(&p->t, tis_now_ms()); /* blocks nobody came for */
    int rc = block_table_alloc(&p->t, bytes ? bytes : 1, tis_now_ms(), ttl_ms, off, lease);
    if (rc) return rc;
    if (bytes) rc = p->ops->write(p->ops->ctx, p->pool, *off, src, bytes);
    if (!rc) rc = p->ops->event_record(p->ops->ctx, p->ev); /* the consumer's copy waits for it */
    if (rc) block_table_release(&p->t, *lease);
    return rc;
}

int devpool_renew(devpool *p, uint64_t lease, uint32_t ttl_ms) {
    return block_table_renew(&p->t, lease, tis_now_ms(), ttl_ms);
}
void devpool_release(devpool *p, uint64_t lease) { block_table_release(&p->t, lease); }
int64_t devpool_expire(devpool *p, uint64_t now_ms) { return block_table_expire(&p->t, now_ms); }

Tis__BlockRef devpool_blockref(const devpool *p, uint64_t off, uint64_t len, uint64_t lease, const char *host) {
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = (char *)p->name;
    br.device = TIS__DEVICE__DEVICE_CUDA;
    br.device_index = p->device;
    br.offset = off;
    br.length = len;
    br.lease_id = lease;
    br.ipc_handle = (ProtobufCBinaryData){DEVPOOL_HANDLE_BYTES, (uint8_t *)p->handle};
    br.event_handle = (ProtobufCBinaryData){DEVPOOL_HANDLE_BYTES, (uint8_t *)p->ev_handle};
    br.pool_bytes = p->size;
    br.host = (char *)host;
    return br;
}

void devpool_fetch_serve(devpool *p, uint32_t lease_ms, const Tis__BlockFetch *f, Tis__BlockChunk *c,
                         uint8_t *stage, char *err, size_t cap) {
    tis__block_chunk__init(c);
    c->offset = f->offset;
    uint64_t at = 0;
    int rc = fetch_serve_check(p->name, &p->t, f, &at);
    if (!rc) rc = p->ops->read(p->ops->ctx, p->pool, at, stage, f->length);
    if (rc) {
        snprintf(err, cap, "%s", tis_last_error());
        c->error = err;
        return;
    }
    block_table_renew(&p->t, f->block->lease_id, tis_now_ms(), lease_ms); /* its consumer is reading it */
    c->data.data = stage;
    c->data.len = f->length;
    c->crc32 = fetch_crc32(stage, f->length);
}

/* ---- consumer ----------------------------------------------------------- */

void devpool_peers_init(devpool_peers *c, const devmem_ops *ops) {
    memset(c, 0, sizeof *c);
    c->ops = ops;
}

static void s_close(devpool_peers *c, int k) {
    devpool_peer *e = &c->p[k];
    if (e->ev) c->ops->event_close(c->ops->ctx, &e->ev);
    if (e->pool) c->ops->pool_close(c->ops->ctx, &e->pool);
    c->closes++;
    c->p[k] = c->p[--c->n];
}

void devpool_peers_free(devpool_peers *c) {
    while (c->n) s_close(c, c->n - 1);
}

/* The instance nonce at the end of a pool's name ("cuda-<name>-<8 hex>"), or 0. */
static uint64_t s_name_nonce(const char *name, size_t *base) {
    const char *dash = strrchr(name, '-');
    if (strncmp(name, "cuda-", 5) || !dash || dash - name < 6 || strlen(dash + 1) != 8) return 0;
    uint64_t x = 0;
    for (const char *h = dash + 1; *h; h++) {
        int v = *h >= '0' && *h <= '9' ? *h - '0' : *h >= 'a' && *h <= 'f' ? *h - 'a' + 10 : -1;
        if (v < 0) return 0;
        x = x << 4 | (uint64_t)v;
    }
    *base = (size_t)(dash - name) + 1;
    return x;
}

/* The checks of a handle before anything is opened (messages are untrusted). */
static int s_check_ref(const Tis__BlockRef *br, uint64_t *nonce, size_t *base) {
    if (br->device != TIS__DEVICE__DEVICE_CUDA || !br->arena || strlen(br->arena) >= sizeof ((devpool_peer *)0)->name)
        return tis_error(TIS_EINVAL, "not a device block");
    if (br->ipc_handle.len != DEVPOOL_HANDLE_BYTES || br->event_handle.len != DEVPOOL_HANDLE_BYTES)
        return tis_error(TIS_EINVAL, "device block %s: IPC handles of %zu and %zu bytes (%d expected)", br->arena,
                         br->ipc_handle.len, br->event_handle.len, DEVPOOL_HANDLE_BYTES);
    if (br->device_index < 0 || br->device_index > 63)
        return tis_error(TIS_EINVAL, "device block %s: device %d", br->arena, br->device_index);
    if (!(*nonce = s_name_nonce(br->arena, base)) || (br->lease_id >> 32) != *nonce)
        return tis_error(TIS_ENOTFOUND, "device block %s: lease %llx is not of that pool's instance (its producer "
                         "restarted: the block is gone)", br->arena, (unsigned long long)br->lease_id);
    if (br->pool_bytes == 0 || br->offset > br->pool_bytes || br->length > br->pool_bytes - br->offset)
        return tis_error(TIS_ERANGE, "device block [%llu, +%llu) is outside %s (%llu bytes)",
                         (unsigned long long)br->offset, (unsigned long long)br->length, br->arena,
                         (unsigned long long)br->pool_bytes);
    return 0;
}

int devpool_peers_get(devpool_peers *c, const Tis__BlockRef *br, uint64_t now_ms, devpool_peer **out) {
    uint64_t nonce = 0;
    size_t base = 0;
    *out = NULL;
    if (!c->ops) return tis_error(TIS_EUNSUPPORTED, "a device block, and no device memory calls in this worker");
    int rc = s_check_ref(br, &nonce, &base);
    if (rc) return rc;
    for (int k = 0; k < c->n;) {
        devpool_peer *e = &c->p[k];
        bool same_producer = !strncmp(e->name, br->arena, base) && strlen(e->name) == strlen(br->arena);
        if (!strcmp(e->name, br->arena) && !memcmp(e->handle, br->ipc_handle.data, DEVPOOL_HANDLE_BYTES) &&
            !memcmp(e->ev_handle, br->event_handle.data, DEVPOOL_HANDLE_BYTES) && e->bytes == br->pool_bytes) {
            e->last_ms = now_ms;
            *out = e; /* opened before: the common case */
            return 0;
        }
        if (same_producer) s_close(c, k); /* an earlier instance of the producer, or its handle changed */
        else k++;
    }
    if (c->n == DEVPOOL_PEERS_MAX) { /* the least recently used makes room */
        int lru = 0;
        for (int k = 1; k < c->n; k++)
            if (c->p[k].last_ms < c->p[lru].last_ms) lru = k;
        s_close(c, lru);
    }
    devpool_peer *e = &c->p[c->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", br->arena);
    memcpy(e->handle, br->ipc_handle.data, DEVPOOL_HANDLE_BYTES);
    memcpy(e->ev_handle, br->event_handle.data, DEVPOOL_HANDLE_BYTES);
    e->bytes = br->pool_bytes;
    e->nonce = nonce;
    e->last_ms = now_ms;
    /* opened on the producer's device: without peer access that is the only
     * device the pool is mapped on; copies to ours go through copy_to_device */
    rc = c->ops->pool_open(c->ops->ctx, br->device_index, e->handle, (size_t)e->bytes, &e->pool);
    if (!rc) rc = c->ops->event_open(c->ops->ctx, br->device_index, e->ev_handle, &e->ev);
    if (rc) {
        if (e->pool) c->ops->pool_close(c->ops->ctx, &e->pool);
        return rc;
    }
    c->opens++;
    c->n++;
    *out = e;
    return 0;
}

int devpool_peers_read(devpool_peers *c, const Tis__BlockRef *br, void *dst, uint64_t now_ms) {
    devpool_peer *e = NULL;
    int rc = devpool_peers_get(c, br, now_ms, &e);
    if (!rc) rc = c->ops->event_wait(c->ops->ctx, e->ev);
    if (!rc && br->length) rc = c->ops->read(c->ops->ctx, e->pool, br->offset, dst, (size_t)br->length);
    if (rc && e) s_close(c, (int)(e - c->p)); /* opened again by the next block */
    return rc;
}

int devpool_peers_copy_to_device(devpool_peers *c, const Tis__BlockRef *br, void *dst, int dst_device,
                                 uint64_t now_ms) {
    devpool_peer *e = NULL;
    int rc = devpool_peers_get(c, br, now_ms, &e);
    if (!rc) rc = c->ops->event_wait(c->ops->ctx, e->ev);
    if (!rc && br->length)
        rc = c->ops->copy_to_device(c->ops->ctx, dst, dst_device, e->pool, br->offset, (size_t)br->length);
    if (rc && e) s_close(c, (int)(e - c->p));
    return rc;
}

int devpool_peers_forget(devpool_peers *c, const char *name) {
    for (int k = 0; k < c->n; k++)
        if (!strcmp(c->p[k].name, name)) {
            s_close(c, k);
            return 1;
        }
    return 0;
}

int devpool_peers_expire(devpool_peers *c, uint64_t now_ms, uint64_t idle_ms) {
    int n = 0;
    for (int k = 0; k < c->n;)
        if (now_ms - c->p[k].last_ms > idle_ms) s_close(c, k), n++;
        else k++;
    return n;
}

const devmem_ops *devmem_workers(void) { return devspec_standin() ? devmem_host() : devmem_cuda(); }

block_path devpool_path(const Tis__BlockRef *br, bool remote, bool have_devmem) {
    if (remote) return BLOCK_PATH_FETCH;
    if (br->device == TIS__DEVICE__DEVICE_CUDA) return have_devmem ? BLOCK_PATH_CUDA_IPC : BLOCK_PATH_FETCH;
    return BLOCK_PATH_SHM;
}
