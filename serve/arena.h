/* arena: a worker's shared-memory data plane on CPU (docs/design.md §9).
 *
 * One POSIX shared-memory segment per worker instance (/tis-<name>-<random>, 0600),
 * created once, mapped by peers once and cached by them; blocks inside are
 * named by offset. Every block in flight is held under a lease that its
 * consumer renews; an expired lease frees the block (its consumer died or
 * hung), so a crashed peer never leaks arena space. The creator unlinks the
 * segment on destroy, and a new instance of the same name removes a stale
 * segment left by a crashed one. */
#ifndef TIS_ARENA_H
#define TIS_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "clock.h"

typedef struct arena arena;

/* Creates the segment /tis-<name>-<16 random hex digits> of `bytes`, mode
 * 0600 (after removing the segments of crashed instances of the name).
 * name: [A-Za-z0-9._-], at most 200 bytes. */
int arena_create(arena **out, const char *name, size_t bytes);
/* Maps a peer's segment by its full name (arena_name's, as a BlockRef
 * carries it; not owned: destroy only unmaps). A segment that is not ours
 * (another uid) or that others may open is refused. */
int arena_open(arena **out, const char *segment);
/* Removes the segments of every instance of name that are ours; returns
 * how many (-1 for a bad name). For a supervisor whose worker died. */
int64_t arena_unlink_stale(const char *name);
void arena_destroy(arena **p);

const char *arena_name(const arena *a);   /* "/tis-<name>-<random>" */
size_t arena_size(const arena *a);

/* The bytes [off, off + len) of the segment, or NULL (with an error
 * message) when that range is not inside it: offsets from messages are
 * untrusted. */
void *arena_at(const arena *a, uint64_t off, uint64_t len);

/* Block allocation (creator side), 64-byte aligned, first fit, after a
 * 64-byte header (a magic and the instance's random nonce). A block is born
 * with a lease of ttl_ms; *lease identifies it, and its bits 32..62 are the
 * instance's nonce: a lease of an earlier instance of the name (a producer
 * that restarted) matches nothing. */
int arena_alloc(arena *a, size_t bytes, uint32_t ttl_ms, uint64_t *off, uint64_t *lease);
/* Extends a lease to now + ttl_ms. TIS_ENOTFOUND when it expired or was released. */
int arena_lease_renew(arena *a, uint64_t lease, uint32_t ttl_ms);
/* Frees the block of a lease (idempotent: a released lease is not an error). */
void arena_lease_release(arena *a, uint64_t lease);
/* Frees the blocks whose lease ended before now_ms; returns how many. */
int64_t arena_expire(arena *a, uint64_t now_ms);
/* 0 when the lease belongs to the instance of the segment mapped in a
 * (else TIS_ENOTFOUND: its producer restarted since a was mapped). */
int arena_check_lease(const arena *a, uint64_t lease);
/* The block of a live lease (creator side): its offset and its length
 * (rounded up to the alignment). TIS_ENOTFOUND when expired or released. */
int arena_lease_range(const arena *a, uint64_t lease, uint64_t *off, uint64_t *len);

/* The peers' segments a consumer has mapped, by name, each once. A block
 * is looked up by its arena's name and its lease: a cached mapping of an
 * earlier instance of that name is replaced by the current one (reading a
 * new instance's block through the old mapping gave another request's
 * bytes), and a lease that is not the current instance's is an error. */
enum { ARENA_PEERS_MAX = 32 };
typedef struct arena_peers {
    arena *a[ARENA_PEERS_MAX];   /* owned (mappings only) */
    int n;
} arena_peers;
arena *arena_peers_get(arena_peers *p, const char *name, uint64_t lease);
void arena_peers_free(arena_peers *p);

/* The creator's block table (fetch_serve_check reads it). */
const block_table *arena_table(const arena *a);

/* Blocks and bytes in use. */
int64_t arena_blocks(const arena *a);
size_t arena_bytes_used(const arena *a);

#endif
