/* fetch: a block's bytes for a consumer on another host (docs/pipeline.md
 * "Workers on another host").
 *
 * A block handle carries its producer's host: the machine's boot id and the
 * identity (device, inode) of the /dev/shm it sees. Two processes with the
 * same host map each other's arenas; a consumer with another one (another
 * machine, or a container with its own /dev/shm) asks for the bytes
 * instead: BlockFetch messages of at most FETCH_CHUNK bytes, FETCH_WINDOW
 * in flight (16 MiB), through the coordinator to the producer (the only socket a
 * worker has, CURVE on tcp), each answered by a BlockChunk with the bytes
 * and their CRC-32. The producer checks every request against the lease's
 * block (a live lease of its arena, the range inside it) and renews the
 * lease while the consumer reads. */
#ifndef TIS_FETCH_H
#define TIS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "msg.h"

enum { FETCH_CHUNK = 1 << 20, FETCH_WINDOW = 16 };

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32). */
uint32_t fetch_crc32(const void *p, size_t n);

/* This process's host for shared memory ("<boot id>/<dev>:<ino>"; cached). */
const char *fetch_host_id(void);

/* Whether a handle's bytes are out of reach here (its producer's host is
 * another; a handle without one is local). */
bool fetch_is_remote(const Tis__BlockRef *br);

/* The producer's checks of f against its region named `name` with block
 * table t (a live lease of it, the handle its block, the range inside it):
 * 0 and the chunk's offset in the region (*at), or an error. */
int fetch_serve_check(const char *name, const block_table *t, const Tis__BlockFetch *f, uint64_t *at);

/* Producer: the answer to f from our arena (renewing the lease by
 * lease_ms). c->data points into the arena; c->error (in err[cap]) says
 * why not. */
void fetch_serve(arena *own, uint32_t lease_ms, const Tis__BlockFetch *f, Tis__BlockChunk *c, char *err,
                 size_t cap);

/* Consumer: one block on its way. */
typedef struct fetch_job {
    uint64_t request_id;
    uint8_t *job;              /* the DecodeJob envelope, packed (owned) */
    size_t job_len;
    Tis__BlockRef ref;         /* the handle (ref.arena, ref.host point into names) */
    char names[2][256];
    uint8_t *buf;              /* [len] the bytes (owned) */
    uint8_t *have;             /* [n_chunks] chunk k arrived (owned) */
    uint64_t len, next, got;
    int inflight;
    double t0;                 /* tis_now() at the start */
    uint64_t last_ms;          /* tis_now_ms() when a chunk last came */
} fetch_job;

/* Starts fetching job's block (job: a DecodeJob envelope): 0, or an error. */
int fetch_begin(fetch_job *f, const Tis__Envelope *job);
/* The next request to send, while fewer than FETCH_WINDOW are out and
 * bytes remain: true (bf filled; bf->block points into f). */
bool fetch_next(fetch_job *f, Tis__BlockFetch *bf);
/* A chunk: 0 (taken), or an error (the producer's, a range or a CRC that
 * does not match, a duplicate). */
int fetch_take(fetch_job *f, const Tis__BlockChunk *c);
static inline bool fetch_done(const fetch_job *f) { return f->got == f->len; }
void fetch_free(fetch_job *f);

#endif
