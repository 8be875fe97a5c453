/* test_fetch: a block's bytes in chunks (serve/fetch.h): the CRC-32 of
 * known strings; a block fetched whole through fetch_serve / fetch_take is
 * the block; the producer refuses a lease that is gone, a handle that is
 * not the lease's block, ranges outside it, oversized chunks, another
 * arena; the consumer refuses a bad CRC, a duplicate, an unexpected offset,
 * the producer's error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "fetch.h"
#include "tis_error.h"
#include "tt.h"

/* Whether a chunk is a refusal (an unset string is "", not NULL). */
static bool s_err(const Tis__BlockChunk *c) { return c->error && *c->error; }

/* Serves every request of f from a (at most `max_rounds` rounds). */
static int s_run(arena *a, fetch_job *f) {
    for (int round = 0; round < 10000 && !fetch_done(f); round++) {
        Tis__BlockFetch bf[FETCH_WINDOW];
        int n = 0;
        while (n < FETCH_WINDOW && fetch_next(f, &bf[n])) n++;
        if (n == 0) return tis_error(TIS_EINVAL, "stalled");
        for (int k = n - 1; k >= 0; k--) { /* answers out of order */
            char err[256];
            Tis__BlockChunk c;
            fetch_serve(a, 60000, &bf[k], &c, err, sizeof err);
            int rc = fetch_take(f, &c);
            if (rc) return rc;
        }
    }
    return fetch_done(f) ? 0 : tis_error(TIS_EINVAL, "not done");
}

int main(void) {
    TT_CASE("crc32");
    TT_CHECK(fetch_crc32("", 0) == 0);
    TT_CHECK(fetch_crc32("123456789", 9) == 0xCBF43926u); /* the check value of CRC-32/ISO-HDLC */
    TT_CHECK(fetch_crc32("The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u);
    {   /* slicing by 8 = the bytewise definition, every length and alignment */
        uint8_t buf[300];
        for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 131 + 7);
        bool same = true;
        for (int off = 0; off < 9; off++)
            for (int n = 0; n + off <= 300; n += 7) {
                uint32_t c = 0xFFFFFFFFu;
                for (int i = 0; i < n; i++) {
                    c ^= buf[off + i];
                    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                }
                same = same && fetch_crc32(buf + off, (size_t)n) == (c ^ 0xFFFFFFFFu);
            }
        TT_CHECK(same);
    }
    TT_CHECK(strchr(fetch_host_id(), '/') != NULL && strlen(fetch_host_id()) > 10);

    TT_CASE("a block, whole");
    char name[64];
    snprintf(name, sizeof name, "tf-%d", (int)getpid());
    arena *a = NULL;
    TT_OK(arena_create(&a, name, 8 << 20));
    if (!a) return tt_done("test_fetch");
    uint64_t nb = (3u << 20) + 12345, off = 0, lease = 0;
    TT_OK(arena_alloc(a, nb, 60000, &off, &lease));
    uint8_t *p = arena_at(a, off, nb);
    for (uint64_t i = 0; p && i < nb; i++) p[i] = (uint8_t)(i * 2654435761u >> 13);
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = (char *)arena_name(a);
    br.offset = off;
    br.length = nb;
    br.lease_id = lease;
    br.host = "another-host/0:0";
    TT_CHECK(fetch_is_remote(&br));
    Tis__DecodeJob dj = TIS__DECODE_JOB__INIT;
    dj.kv = &br;
    Tis__Envelope job = TIS__ENVELOPE__INIT;
    job.request_id = 42;
    job.body_case = TIS__ENVELOPE__BODY_DECODE_JOB;
    job.decode_job = &dj;
    fetch_job f;
    TT_OK(fetch_begin(&f, &job));
    TT_OK(s_run(a, &f));
    TT_CHECK(f.got == nb && !memcmp(f.buf, p, nb) && f.request_id == 42);
    /* the job travels with it */
    Tis__Envelope *back = NULL;
    TT_OK(msg_unpack(f.job, f.job_len, f.job_len, &back));
    TT_CHECK(back && back->decode_job && back->decode_job->kv->length == nb);
    msg_free(back);
    fetch_free(&f);
    br.host = (char *)fetch_host_id();
    TT_CHECK(!fetch_is_remote(&br));
    br.host = "";
    TT_CHECK(!fetch_is_remote(&br)); /* a producer that does not say: local */

    TT_CASE("the producer refuses");
    char err[256];
    Tis__BlockChunk c;
    Tis__BlockRef bad = br;
    Tis__BlockFetch bf = TIS__BLOCK_FETCH__INIT;
    bf.block = &bad;
    bf.offset = 0;
    bf.length = 4096;
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(!s_err(&c) && c.data.len == 4096); /* the good one */
    bad.lease_id = lease + 1; /* no such lease */
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c) && c.data.len == 0);
    bad = br;
    bad.offset = off + 64; /* not the lease's block */
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c) && strstr(c.error, "not the lease's block"));
    bad = br;
    bad.length = nb + (1 << 20); /* longer than the block */
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c));
    bad = br;
    bf.offset = nb - 10; /* past the end */
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c) && strstr(c.error, "outside the block"));
    bf.offset = UINT64_MAX - 100;
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c));
    bf.offset = 0;
    bf.length = FETCH_CHUNK + 1; /* too much at once */
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c));
    bf.length = 0;
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c));
    bf.length = 64;
    bad.arena = "/tis-someone-else-0123456789abcdef";
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c) && strstr(c.error, "not a block of this worker's arena"));
    fetch_serve(NULL, 60000, &bf, &c, err, sizeof err); /* a worker without an arena */
    TT_CHECK(s_err(&c));
    fprintf(stderr, "  ok, rejected: %s\n", c.error);
    bf.block = NULL;
    fetch_serve(a, 60000, &bf, &c, err, sizeof err);
    TT_CHECK(s_err(&c));

    TT_CASE("the consumer refuses");
    TT_OK(fetch_begin(&f, &job));
    Tis__BlockFetch r0, r1;
    TT_CHECK(fetch_next(&f, &r0) && fetch_next(&f, &r1) && r1.offset == FETCH_CHUNK);
    fetch_serve(a, 60000, &r0, &c, err, sizeof err);
    uint32_t good = c.crc32;
    c.crc32 ^= 1; /* a flipped bit in transit */
    TT_FAILS(fetch_take(&f, &c), TIS_EFORMAT);
    c.crc32 = good;
    TT_OK(fetch_take(&f, &c));
    TT_FAILS(fetch_take(&f, &c), TIS_ERANGE); /* twice */
    c.offset = 3 * (uint64_t)FETCH_CHUNK;     /* not asked for yet */
    TT_FAILS(fetch_take(&f, &c), TIS_ERANGE);
    c.offset = 100; /* not a chunk's start */
    TT_FAILS(fetch_take(&f, &c), TIS_ERANGE);
    Tis__BlockChunk e = TIS__BLOCK_CHUNK__INIT;
    e.offset = FETCH_CHUNK;
    e.error = "arena: lease expired";
    TT_FAILS(fetch_take(&f, &e), TIS_EIO);
    fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
    fetch_free(&f);
    br.length = 0;
    TT_FAILS(fetch_begin(&f, &job), TIS_ERANGE);
    br.length = (uint64_t)1 << 40;
    TT_FAILS(fetch_begin(&f, &job), TIS_ERANGE);
    dj.kv = NULL;
    TT_FAILS(fetch_begin(&f, &job), TIS_EINVAL);

    arena_destroy(&a);
    return tt_done("test_fetch");
}
