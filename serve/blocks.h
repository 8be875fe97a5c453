/* blocks: the block table of a worker's data plane (docs/design.md §9): the
 * bytes [begin, end) of one region (a shared-memory arena, a device pool),
 * blocks named by offset, first fit, 64-byte aligned, each held under a
 * lease until released or expired. Only bookkeeping: no memory is touched
 * here, so the same table serves host and device regions and is tested on
 * the CPU (tests/test_arena.c, tests/test_devpool.c).
 *
 * A lease id's bits 32..62 are the region instance's nonce: a lease of an
 * earlier instance of a producer (one that restarted) matches nothing. */
#ifndef TIS_BLOCKS_H
#define TIS_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { BLOCKS_ALIGN = 64 };

typedef struct block_span {
    uint64_t off, len;   /* len rounded up to BLOCKS_ALIGN */
    uint64_t lease;
    uint64_t expires_ms;
} block_span;

typedef struct block_table {
    block_span *b;       /* [n] in use, sorted by offset (owned) */
    int64_t n, cap;
    uint64_t begin, end; /* the region's bytes the blocks may use */
    uint64_t nonce;      /* 31 bits, nonzero */
    uint64_t next_lease;
    const char *what;    /* the region's name for messages (borrowed: outlives the table) */
} block_table;

/* An empty table over [begin, end) for the instance `nonce` (31 bits, nonzero). */
void block_table_init(block_table *t, uint64_t begin, uint64_t end, uint64_t nonce, const char *what);
void block_table_free(block_table *t);

/* A block of `bytes` (> 0) under a lease of ttl_ms from now_ms. */
int block_table_alloc(block_table *t, size_t bytes, uint64_t now_ms, uint32_t ttl_ms, uint64_t *off,
                      uint64_t *lease);
/* Extends a lease to now_ms + ttl_ms. TIS_ENOTFOUND when it expired or was released. */
int block_table_renew(block_table *t, uint64_t lease, uint64_t now_ms, uint32_t ttl_ms);
/* Frees a lease's block (idempotent). */
void block_table_release(block_table *t, uint64_t lease);
/* Frees the blocks whose lease ended before now_ms; returns how many. */
int64_t block_table_expire(block_table *t, uint64_t now_ms);
/* A live lease's block. TIS_ENOTFOUND when expired or released. */
int block_table_range(const block_table *t, uint64_t lease, uint64_t *off, uint64_t *len);
/* Whether a lease id belongs to this instance (its nonce bits). */
static inline bool block_table_owns(const block_table *t, uint64_t lease) { return (lease >> 32) == t->nonce; }
size_t block_table_bytes(const block_table *t);

/* 31 random bits, nonzero (getrandom): an instance's nonce. */
uint64_t block_nonce(void);
/* n random bytes from the kernel (the clock and the pid where it has none). */
void block_random(void *dst, size_t n);

#endif
