/* test_devpool: the host side of the CUDA data plane, on the CPU, through a
 * fake table of device calls that counts them: the producer's pool and
 * event created and exported once, blocks under leases (renew, release,
 * expiry, no room), the block handle's fields; the consumer's cache opening
 * a producer's pool ONCE for any number of blocks, and closing it when the
 * producer restarts, its handle changes, it goes idle, a read fails, or room
 * is needed; untrusted handles refused before anything is opened; fetches of
 * device blocks; the path a decode worker picks. No GPU: the real table
 * (serve/devmem_cuda.c) is exercised by tests/test_cuda_ipc.c on a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "devpool.h"
#include "devspec.h"
#include "fetch.h"
#include "tis_error.h"
#include "tt.h"

/* ---- the fake device: pools are host memory, handles name them ------------ */

typedef struct fpool {
    uint8_t *mem;      /* the creator's (shared by its openers) */
    size_t size;
    int id, device;
    bool owner;
} fpool;

typedef struct fake {
    int creates, opens, pool_closes, ev_creates, ev_opens, ev_closes, records, waits, writes, reads, copies;
    int fail_open, fail_read;  /* the next open / read fails */
    int last_device, last_dst_device;
    char log[4096];            /* W(rite) R(ecord) w(ait) r(ead), in order */
    fpool *live[64];           /* created pools by id */
    int next_id;
} fake;

static fake F;

static void s_log(char c) {
    size_t n = strlen(F.log);
    if (n + 1 < sizeof F.log) F.log[n] = c, F.log[n + 1] = 0;
}

static int f_pool_create(void *ctx, int device, size_t bytes, void **pool, size_t *size, uint8_t *h) {
    (void)ctx;
    fpool *p = calloc(1, sizeof *p);
    p->size = (bytes + 4095) / 4096 * 4096; /* rounded up, as cuda_pool_create rounds to 2 MiB */
    p->mem = calloc(1, p->size);
    p->id = ++F.next_id;
    p->device = device;
    p->owner = true;
    F.live[p->id] = p;
    memset(h, 0, DEVPOOL_HANDLE_BYTES);
    memcpy(h, "fakepool", 8);
    memcpy(h + 8, &p->id, sizeof p->id);
    *pool = p;
    *size = p->size;
    F.creates++;
    return 0;
}

static int f_event_create(void *ctx, int device, void **ev, uint8_t *h) {
    (void)ctx, (void)device;
    static int evs;
    memset(h, 0, DEVPOOL_HANDLE_BYTES);
    memcpy(h, "fakeevnt", 8);
    *ev = malloc(1);
    h[8] = (uint8_t)++evs;
    F.ev_creates++;
    return 0;
}

static int f_event_record(void *ctx, void *ev) {
    (void)ctx, (void)ev;
    F.records++;
    s_log('R');
    return 0;
}

static int f_pool_open(void *ctx, int device, const uint8_t *h, size_t bytes, void **pool) {
    (void)ctx;
    int id = 0;
    memcpy(&id, h + 8, sizeof id);
    F.last_device = device;
    if (F.fail_open) {
        F.fail_open = 0;
        return tis_error(TIS_EIO, "fake: cudaIpcOpenMemHandle failed");
    }
    if (memcmp(h, "fakepool", 8) || id < 1 || id > 63 || !F.live[id] || bytes > F.live[id]->size)
        return tis_error(TIS_EINVAL, "fake: no such pool");
    fpool *p = calloc(1, sizeof *p);
    *p = *F.live[id];
    p->owner = false;
    *pool = p;
    F.opens++;
    return 0;
}

static int f_event_open(void *ctx, int device, const uint8_t *h, void **ev) {
    (void)ctx, (void)device;
    if (memcmp(h, "fakeevnt", 8)) return tis_error(TIS_EINVAL, "fake: no such event");
    *ev = malloc(1);
    F.ev_opens++;
    return 0;
}

static int f_event_wait(void *ctx, void *ev) {
    (void)ctx, (void)ev;
    F.waits++;
    s_log('w');
    return 0;
}

static void f_pool_close(void *ctx, void **pool) {
    (void)ctx;
    fpool *p = *pool;
    if (p->owner) {
        F.live[p->id] = NULL;
        free(p->mem);
    }
    free(p);
    *pool = NULL;
    F.pool_closes++;
}

static void f_event_close(void *ctx, void **ev) {
    (void)ctx;
    free(*ev);
    *ev = NULL;
    F.ev_closes++;
}

static int f_write(void *ctx, void *pool, uint64_t off, const void *src, size_t len) {
    (void)ctx;
    fpool *p = pool;
    TT_CHECK(off + len <= p->size); /* the caller checked */
    memcpy(p->mem + off, src, len);
    F.writes++;
    s_log('W');
    return 0;
}

static int f_read(void *ctx, void *pool, uint64_t off, void *dst, size_t len) {
    (void)ctx;
    fpool *p = pool;
    if (F.fail_read) {
        F.fail_read = 0;
        return tis_error(TIS_EIO, "fake: copy out of the pool failed");
    }
    TT_CHECK(off + len <= p->size);
    memcpy(dst, p->mem + off, len);
    F.reads++;
    s_log('r');
    return 0;
}

static int f_copy_to_device(void *ctx, void *dst, int dst_device, void *pool, uint64_t off, size_t len) {
    (void)ctx;
    F.last_dst_device = dst_device;
    F.copies++;
    memcpy(dst, ((fpool *)pool)->mem + off, len);
    return 0;
}

static const devmem_ops FAKE = {
    .pool_create = f_pool_create, .event_create = f_event_create, .event_record = f_event_record,
    .pool_open = f_pool_open, .event_open = f_event_open, .event_wait = f_event_wait,
    .pool_close = f_pool_close, .event_close = f_event_close, .write = f_write, .read = f_read,
    .copy_to_device = f_copy_to_device,
};

static void s_fill(uint8_t *b, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* ---- producer ------------------------------------------------------------ */

static void s_producer(void) {
    tt_case("producer");
    memset(&F, 0, sizeof F);
    devpool *p = NULL;
    TT_FAILS(devpool_create(&p, NULL, 0, "w", 1 << 20), TIS_EUNSUPPORTED); /* no device calls */
    TT_FAILS(devpool_create(&p, &FAKE, 0, "bad/name", 1 << 20), TIS_EINVAL);
    TT_FAILS(devpool_create(&p, &FAKE, 0, "w", 0), TIS_EINVAL);
    TT_CHECK(F.creates == 0);
    TT_OK(devpool_create(&p, &FAKE, 1, "s7-prefill-0", 10000));
    TT_CHECK(F.creates == 1 && F.ev_creates == 1 && devpool_size(p) == 12288 && devpool_device(p) == 1);
    TT_CHECK(!strncmp(devpool_name(p), "cuda-s7-prefill-0-", 18) && strlen(devpool_name(p)) == 18 + 8);
    uint8_t a[3000], b[5000];
    s_fill(a, sizeof a, 1);
    s_fill(b, sizeof b, 2);
    uint64_t oa, la, ob, lb, oc, lc;
    TT_OK(devpool_put(p, a, sizeof a, 30000, &oa, &la));
    TT_OK(devpool_put(p, b, sizeof b, 30000, &ob, &lb));
    TT_CHECK(oa == 0 && ob == 3008 && devpool_blocks(p) == 2 && devpool_bytes_used(p) == 3008 + 5056);
    TT_CHECK(!strcmp(F.log, "WRWR")); /* each block's bytes, then the event the consumer waits on */
    TT_CHECK(devpool_owns(p, la) && !devpool_owns(p, la ^ (1ull << 40)));
    TT_CHECK(!memcmp(F.live[1]->mem + ob, b, sizeof b));
    TT_FAILS(devpool_put(p, a, 8000, 30000, &oc, &lc), TIS_ERANGE); /* no room */
    TT_CHECK(strstr(tis_last_error(), "no room for 8000 bytes in cuda-s7-prefill-0-") != NULL);
    TT_CHECK(devpool_blocks(p) == 2);
    /* the handle a decode worker gets */
    Tis__BlockRef br = devpool_blockref(p, ob, sizeof b, lb, "host-1");
    TT_CHECK(br.device == TIS__DEVICE__DEVICE_CUDA && br.device_index == 1 && br.offset == ob &&
             br.length == sizeof b && br.lease_id == lb && br.pool_bytes == 12288 &&
             br.ipc_handle.len == DEVPOOL_HANDLE_BYTES && !memcmp(br.ipc_handle.data, "fakepool", 8) &&
             br.event_handle.len == DEVPOOL_HANDLE_BYTES && !strcmp(br.arena, devpool_name(p)) &&
             !strcmp(br.host, "host-1"));
    /* leases: renewed, released (idempotent), expired */
    TT_OK(devpool_renew(p, la, 30000));
    devpool_release(p, la);
    devpool_release(p, la);
    TT_FAILS(devpool_renew(p, la, 30000), TIS_ENOTFOUND);
    TT_OK(devpool_put(p, a, 100, 30000, &oc, &lc));
    TT_CHECK(oc == 0); /* first fit: the released block's room */
    TT_CHECK(devpool_expire(p, tis_now_ms() + 1000) == 0);
    TT_CHECK(devpool_expire(p, tis_now_ms() + 60000) == 2 && devpool_blocks(p) == 0);
    TT_FAILS(devpool_renew(p, lb, 30000), TIS_ENOTFOUND);
    devpool_destroy(&p);
    TT_CHECK(!p && F.pool_closes == 1 && F.ev_closes == 1 && !F.live[1]); /* freed with the worker */
    devpool_destroy(&p);
}

/* ---- consumer ------------------------------------------------------------ */

static void s_consumer(void) {
    tt_case("consumer");
    memset(&F, 0, sizeof F);
    devpool *p = NULL;
    TT_OK(devpool_create(&p, &FAKE, 0, "pre-0", 1 << 20));
    devpool_peers c;
    devpool_peers_init(&c, &FAKE);
    /* 100 blocks from one producer: one open of its pool and event */
    uint8_t src[4096], dst[4096];
    int bad = 0;
    for (uint32_t i = 0; i < 100; i++) {
        size_t n = 1 + (i * 37) % sizeof src;
        s_fill(src, n, i);
        uint64_t off, lease;
        TT_OK(devpool_put(p, src, n, 30000, &off, &lease));
        Tis__BlockRef br = devpool_blockref(p, off, n, lease, "");
        memset(dst, 0, sizeof dst);
        TT_OK(devpool_peers_read(&c, &br, dst, 1000 + i));
        bad += memcmp(src, dst, n) != 0;
        devpool_release(p, lease);
    }
    TT_CHECK(bad == 0 && c.opens == 1 && F.opens == 1 && F.ev_opens == 1 && c.n == 1);
    TT_CHECK(F.waits == 100 && F.reads == 100);
    TT_CHECK(!strncmp(F.log, "WRwrWRwr", 8)); /* each read after the wait on the producer's event */
    uint64_t off, lease;
    TT_OK(devpool_put(p, src, 512, 30000, &off, &lease));
    Tis__BlockRef br = devpool_blockref(p, off, 512, lease, "");
    /* into device memory of another device (cudaMemcpyPeer on a GPU) */
    TT_OK(devpool_peers_copy_to_device(&c, &br, dst, 3, 2000));
    TT_CHECK(F.copies == 1 && F.last_dst_device == 3 && F.last_device == 0 && !memcmp(dst, src, 512));
    TT_CHECK(c.opens == 1);
    /* untrusted handles: refused before anything is opened */
    int opens0 = F.opens;
    Tis__BlockRef x = br;
    x.device = TIS__DEVICE__DEVICE_CPU;
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_EINVAL);
    x = br, x.ipc_handle.len = 10;
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_EINVAL);
    x = br, x.lease_id ^= 1ull << 33; /* a lease of another instance */
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_ENOTFOUND);
    x = br, x.offset = br.pool_bytes - 100;
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_ERANGE);
    x = br, x.length = UINT64_MAX;
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_ERANGE);
    x = br, x.arena = "cuda-pre-0-zzzzzzzz";
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_ENOTFOUND);
    x = br, x.device_index = 99;
    TT_FAILS(devpool_peers_read(&c, &x, dst, 2000), TIS_EINVAL);
    TT_CHECK(F.opens == opens0 && c.n == 1);
    /* a read that fails closes the entry; the next block opens the pool again */
    F.fail_read = 1;
    TT_FAILS(devpool_peers_read(&c, &br, dst, 3000), TIS_EIO);
    TT_CHECK(c.n == 0 && c.closes == 1 && F.pool_closes == 1 && F.ev_closes == 1);
    F.fail_open = 1;
    TT_FAILS(devpool_peers_read(&c, &br, dst, 3001), TIS_EIO); /* an open that fails leaves nothing */
    TT_CHECK(c.n == 0 && c.opens == 1);
    TT_OK(devpool_peers_read(&c, &br, dst, 3002));
    TT_CHECK(c.n == 1 && c.opens == 2 && !memcmp(dst, src, 512));
    /* the producer restarts (same worker name, another instance): the old
     * pool is closed, the new one opened */
    devpool *p2 = NULL;
    TT_OK(devpool_create(&p2, &FAKE, 0, "pre-0", 1 << 20));
    TT_OK(devpool_put(p2, src, 64, 30000, &off, &lease));
    Tis__BlockRef b2 = devpool_blockref(p2, off, 64, lease, "");
    TT_OK(devpool_peers_read(&c, &b2, dst, 4000));
    TT_CHECK(c.n == 1 && c.opens == 3 && c.closes == 2 && !strcmp(c.p[0].name, devpool_name(p2)));
    /* the same pool name with another handle: reopened, never read through the old one */
    uint8_t h[DEVPOOL_HANDLE_BYTES];
    memcpy(h, b2.ipc_handle.data, sizeof h);
    int id2 = 0;
    memcpy(&id2, h + 8, sizeof id2);
    int id1 = id2 - 1; /* p's pool, still alive */
    memcpy(h + 8, &id1, sizeof id1);
    Tis__BlockRef b3 = b2;
    b3.ipc_handle.data = h;
    TT_OK(devpool_peers_read(&c, &b3, dst, 4001));
    TT_CHECK(c.n == 1 && c.opens == 4 && c.closes == 3);
    TT_OK(devpool_peers_read(&c, &b2, dst, 4002));
    TT_CHECK(c.opens == 5 && !memcmp(dst, src, 64));
    /* idle entries (their producer gone) close at the heartbeat; forget closes one */
    TT_CHECK(devpool_peers_expire(&c, 5000, 10000) == 0 && c.n == 1);
    TT_CHECK(devpool_peers_expire(&c, 4002 + 10001, 10000) == 1 && c.n == 0);
    TT_OK(devpool_peers_read(&c, &b2, dst, 20000));
    TT_CHECK(devpool_peers_forget(&c, "cuda-nobody-00000001") == 0);
    TT_CHECK(devpool_peers_forget(&c, devpool_name(p2)) == 1 && c.n == 0);
    devpool_peers_free(&c);
    TT_CHECK(c.opens == c.closes && F.opens == F.pool_closes - 0 && F.ev_opens == F.ev_closes);
    devpool_destroy(&p);
    devpool_destroy(&p2);
    TT_CHECK(F.pool_closes == F.opens + 2 && F.ev_closes == F.ev_opens + 2); /* every open closed, every pool freed */
}

/* More producers than the cache holds: the least recently used closes. */
static void s_lru(void) {
    tt_case("lru");
    memset(&F, 0, sizeof F);
    enum { N = DEVPOOL_PEERS_MAX + 2 };
    devpool *p[N] = {0};
    Tis__BlockRef br[N];
    devpool_peers c;
    devpool_peers_init(&c, &FAKE);
    uint8_t src[64] = {1, 2, 3}, dst[64];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "pre-%d", i);
        uint64_t off, lease;
        TT_OK(devpool_create(&p[i], &FAKE, 0, name, 4096));
        TT_OK(devpool_put(p[i], src, sizeof src, 30000, &off, &lease));
        br[i] = devpool_blockref(p[i], off, sizeof src, lease, "");
        TT_OK(devpool_peers_read(&c, &br[i], dst, (uint64_t)(100 + i)));
        if (i == 5) TT_OK(devpool_peers_read(&c, &br[0], dst, 200)); /* 0 used again: 1 is the oldest */
    }
    TT_CHECK(c.n == DEVPOOL_PEERS_MAX && c.opens == N && c.closes == 2);
    TT_OK(devpool_peers_read(&c, &br[0], dst, 300));
    TT_CHECK(c.opens == N); /* 0 stayed */
    TT_OK(devpool_peers_read(&c, &br[1], dst, 301));
    TT_CHECK(c.opens == N + 1); /* 1 had been closed */
    devpool_peers_free(&c);
    for (int i = 0; i < N; i++) devpool_destroy(&p[i]);
    TT_CHECK(F.opens == c.closes && F.ev_opens == F.ev_closes - N);
}

/* A consumer without device calls (another host, a cpu worker): chunks. */
static void s_fetch(void) {
    tt_case("fetch");
    memset(&F, 0, sizeof F);
    devpool *p = NULL;
    TT_OK(devpool_create(&p, &FAKE, 0, "pre-0", 4 << 20));
    size_t n = FETCH_CHUNK + 1000;
    uint8_t *src = malloc(n), *stage = malloc(FETCH_CHUNK);
    s_fill(src, n, 9);
    uint64_t off, lease;
    TT_OK(devpool_put(p, src, n, 30000, &off, &lease));
    Tis__BlockRef br = devpool_blockref(p, off, n, lease, "elsewhere");
    char err[256];
    Tis__BlockChunk ck;
    Tis__BlockFetch f = TIS__BLOCK_FETCH__INIT;
    f.block = &br;
    f.offset = FETCH_CHUNK;
    f.length = 1000;
    devpool_fetch_serve(p, 30000, &f, &ck, stage, err, sizeof err);
    TT_CHECK(!*ck.error && ck.data.len == 1000 && !memcmp(ck.data.data, src + FETCH_CHUNK, 1000) &&
             ck.crc32 == fetch_crc32(src + FETCH_CHUNK, 1000));
    f.length = 1001; /* past the block */
    devpool_fetch_serve(p, 30000, &f, &ck, stage, err, sizeof err);
    TT_CHECK(*ck.error && strstr(ck.error, "outside the block"));
    f.length = 10;
    Tis__BlockRef other = br;
    other.arena = "cuda-pre-0-00000001";
    f.block = &other;
    devpool_fetch_serve(p, 30000, &f, &ck, stage, err, sizeof err);
    TT_CHECK(*ck.error && strstr(ck.error, "not a block of this worker's arena"));
    devpool_release(p, lease);
    f.block = &br;
    devpool_fetch_serve(p, 30000, &f, &ck, stage, err, sizeof err);
    TT_CHECK(*ck.error && strstr(ck.error, "expired or released"));
    free(src);
    free(stage);
    devpool_destroy(&p);
}

static void s_path(void) {
    tt_case("path");
    Tis__BlockRef shm = TIS__BLOCK_REF__INIT, dev = TIS__BLOCK_REF__INIT;
    dev.device = TIS__DEVICE__DEVICE_CUDA;
    TT_CHECK(devpool_path(&shm, false, false) == BLOCK_PATH_SHM);
    TT_CHECK(devpool_path(&shm, false, true) == BLOCK_PATH_SHM);
    TT_CHECK(devpool_path(&shm, true, true) == BLOCK_PATH_FETCH);
    TT_CHECK(devpool_path(&dev, false, true) == BLOCK_PATH_CUDA_IPC);
    TT_CHECK(devpool_path(&dev, false, false) == BLOCK_PATH_FETCH); /* a cpu decode worker */
    TT_CHECK(devpool_path(&dev, true, true) == BLOCK_PATH_FETCH);   /* another host: IPC cannot reach */
    TT_CHECK((devmem_cuda() != NULL) == devspec_have_cuda()); /* the CUDA table exactly in CUDA builds */
}

int main(void) {
    s_producer();
    s_consumer();
    s_lru();
    s_fetch();
    s_path();
    return tt_done("test_devpool");
}
