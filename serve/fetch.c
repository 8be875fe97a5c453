/* fetch: block bytes in chunks with a CRC-32, the host identity. */
#include "fetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "tis_error.h"

/* Slicing by 8 (eight table lookups per 8 bytes): t[0] is the bytewise
 * table, t[k][i] the CRC of byte i followed by k zero bytes. */
static uint32_t s_crc_t[8][256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void s_crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        s_crc_t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++) s_crc_t[k][i] = (s_crc_t[k - 1][i] >> 8) ^ s_crc_t[0][s_crc_t[k - 1][i] & 0xFF];
}

uint32_t fetch_crc32(const void *p, size_t n) {
    pthread_once(&s_crc_once, s_crc_init);
    const uint8_t *b = p;
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; n -= 8, b += 8) {
        uint32_t lo = c ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        c = s_crc_t[7][lo & 0xFF] ^ s_crc_t[6][(lo >> 8) & 0xFF] ^ s_crc_t[5][(lo >> 16) & 0xFF] ^
            s_crc_t[4][lo >> 24] ^ s_crc_t[3][b[4]] ^ s_crc_t[2][b[5]] ^ s_crc_t[1][b[6]] ^ s_crc_t[0][b[7]];
    }
    for (; n; n--, b++) c = s_crc_t[0][(c ^ *b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

const char *fetch_host_id(void) {
    static char id[160];
    if (id[0]) return id;
    char boot[64] = "no-boot-id";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) snprintf(boot, sizeof boot, "no-boot-id");
        fclose(f);
        boot[strcspn(boot, "\n")] = 0;
    }
    struct stat sb = {0};
    stat("/dev/shm", &sb);
    snprintf(id, sizeof id, "%s/%llx:%llx", boot, (unsigned long long)sb.st_dev, (unsigned long long)sb.st_ino);
    return id;
}

bool fetch_is_remote(const Tis__BlockRef *br) {
    return br->host && *br->host && strcmp(br->host, fetch_host_id()) != 0;
}

int fetch_serve_check(const char *name, const block_table *t, const Tis__BlockFetch *f, uint64_t *at) {
    uint64_t off = 0, len = 0;
    const Tis__BlockRef *br = f->block;
    if (!br || !br->arena || strcmp(br->arena, name)) return tis_error(TIS_EINVAL, "not a block of this worker's arena");
    if (block_table_range(t, br->lease_id, &off, &len)) return TIS_ENOTFOUND;
    if (br->offset != off || br->length > len) return tis_error(TIS_ERANGE, "the handle is not the lease's block");
    if (f->length == 0 || f->length > FETCH_CHUNK || f->offset > br->length || f->length > br->length - f->offset)
        return tis_error(TIS_ERANGE, "bytes [%llu, +%u) are outside the block of %llu bytes (or over %d at once)",
                         (unsigned long long)f->offset, f->length, (unsigned long long)br->length, FETCH_CHUNK);
    *at = off + f->offset;
    return 0;
}

void fetch_serve(arena *own, uint32_t lease_ms, const Tis__BlockFetch *f, Tis__BlockChunk *c, char *err,
                 size_t cap) {
    tis__block_chunk__init(c);
    c->offset = f->offset;
    uint64_t at = 0;
    const Tis__BlockRef *br = f->block;
    int rc = own ? fetch_serve_check(arena_name(own), arena_table(own), f, &at)
                 : tis_error(TIS_EINVAL, "not a block of this worker's arena");
    const uint8_t *p = rc ? NULL : arena_at(own, at, f->length);
    if (!rc && !p) rc = TIS_ERANGE;
    if (rc) {
        snprintf(err, cap, "%s", tis_last_error());
        c->error = err;
        return;
    }
    arena_lease_renew(own, br->lease_id, lease_ms); /* its consumer is reading it */
    c->data.data = (uint8_t *)p;
    c->data.len = f->length;
    c->crc32 = fetch_crc32(p, f->length);
}

int fetch_begin(fetch_job *f, const Tis__Envelope *job) {
    memset(f, 0, sizeof *f);
    const Tis__BlockRef *br = job->decode_job ? job->decode_job->kv : NULL;
    if (!br || !br->arena) return tis_error(TIS_EINVAL, "fetch: a job without a block");
    if (br->length == 0 || br->length > ((uint64_t)1 << 36))
        return tis_error(TIS_ERANGE, "fetch: a block of %llu bytes", (unsigned long long)br->length);
    f->request_id = job->request_id;
    f->len = br->length;
    f->ref = *br;
    snprintf(f->names[0], sizeof f->names[0], "%s", br->arena);
    snprintf(f->names[1], sizeof f->names[1], "%s", br->host ? br->host : "");
    f->ref.arena = f->names[0];
    f->ref.host = f->names[1];
    f->ref.ipc_handle.len = f->ref.event_handle.len = 0;
    f->ref.ipc_handle.data = f->ref.event_handle.data = NULL;
    uint64_t n_chunks = (f->len + FETCH_CHUNK - 1) / FETCH_CHUNK;
    f->buf = malloc(f->len);
    f->have = calloc(n_chunks, 1);
    int rc = msg_pack((Tis__Envelope *)job, &f->job, &f->job_len);
    if (!rc && (!f->buf || !f->have)) rc = tis_error(TIS_ENOMEM, "fetch: out of memory for %llu bytes",
                                                     (unsigned long long)f->len);
    if (rc) {
        fetch_free(f);
        return rc;
    }
    f->t0 = tis_now();
    f->last_ms = tis_now_ms();
    return 0;
}

bool fetch_next(fetch_job *f, Tis__BlockFetch *bf) {
    if (f->inflight >= FETCH_WINDOW || f->next >= f->len) return false;
    tis__block_fetch__init(bf);
    bf->block = &f->ref;
    bf->offset = f->next;
    bf->length = (uint32_t)(f->len - f->next < FETCH_CHUNK ? f->len - f->next : FETCH_CHUNK);
    f->next += bf->length;
    f->inflight++;
    return true;
}

int fetch_take(fetch_job *f, const Tis__BlockChunk *c) {
    if (c->error && *c->error) return tis_error(TIS_EIO, "the block's holder: %s", c->error);
    uint64_t k = c->offset / FETCH_CHUNK;
    uint64_t want = f->len - c->offset < FETCH_CHUNK ? f->len - c->offset : FETCH_CHUNK;
    if (c->offset % FETCH_CHUNK || c->offset >= f->next || c->data.len != want || f->have[k])
        return tis_error(TIS_ERANGE, "fetch: an unexpected chunk [%llu, +%zu) of a %llu-byte block",
                         (unsigned long long)c->offset, c->data.len, (unsigned long long)f->len);
    if (fetch_crc32(c->data.data, c->data.len) != c->crc32)
        return tis_error(TIS_EFORMAT, "fetch: chunk [%llu, +%zu): CRC-32 %08x, sent as %08x",
                         (unsigned long long)c->offset, c->data.len, fetch_crc32(c->data.data, c->data.len),
                         c->crc32);
    memcpy(f->buf + c->offset, c->data.data, c->data.len);
    f->have[k] = 1;
    f->got += c->data.len;
    f->inflight--;
    f->last_ms = tis_now_ms();
    return 0;
}

void fetch_free(fetch_job *f) {
    free(f->job);
    free(f->buf);
    free(f->have);
    memset(f, 0, sizeof *f);
}
