/* blocks: a first-fit block list with leases over one region. */
#include "blocks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tis_error.h"

void block_random(void *dst, size_t n) {
    uint8_t *p = dst;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
        for (; got < n; got++, x = x * 6364136223846793005ull + 1442695040888963407ull) p[got] = (uint8_t)(x >> 56);
    }
}

uint64_t block_nonce(void) {
    uint64_t x = 0;
    block_random(&x, sizeof x);
    x &= 0x7FFFFFFFull;
    return x ? x : 1;
}

void block_table_init(block_table *t, uint64_t begin, uint64_t end, uint64_t nonce, const char *what) {
    memset(t, 0, sizeof *t);
    t->begin = begin;
    t->end = end;
    t->nonce = nonce;
    t->next_lease = nonce << 32 | 1; /* leases of another instance match none of ours */
    t->what = what;
}

void block_table_free(block_table *t) {
    free(t->b);
    t->b = NULL;
    t->n = t->cap = 0;
}

size_t block_table_bytes(const block_table *t) {
    size_t n = 0;
    for (int64_t i = 0; i < t->n; i++) n += (size_t)t->b[i].len;
    return n;
}

int block_table_alloc(block_table *t, size_t bytes, uint64_t now_ms, uint32_t ttl_ms, uint64_t *off,
                      uint64_t *lease) {
    if (bytes == 0 || bytes > t->end - t->begin)
        return tis_error(TIS_ERANGE, "%s cannot hold %zu bytes", t->what, bytes);
    uint64_t len = ((uint64_t)bytes + BLOCKS_ALIGN - 1) / BLOCKS_ALIGN * BLOCKS_ALIGN;
    /* First fit in the gaps between blocks (sorted by offset). */
    uint64_t at = t->begin;
    int64_t pos = 0;
    for (; pos < t->n; pos++) {
        if (t->b[pos].off - at >= len) break;
        at = t->b[pos].off + t->b[pos].len;
    }
    if (at + len > t->end)
        return tis_error(TIS_ERANGE, "no room for %zu bytes in %s (%zu used of %llu)", bytes, t->what,
                         block_table_bytes(t), (unsigned long long)(t->end - t->begin));
    if (t->n == t->cap) {
        int64_t nc = t->cap ? 2 * t->cap : 16;
        block_span *b = realloc(t->b, (size_t)nc * sizeof *b);
        if (!b) return tis_error(TIS_ENOMEM, "%s: out of memory", t->what);
        t->b = b;
        t->cap = nc;
    }
    memmove(t->b + pos + 1, t->b + pos, (size_t)(t->n - pos) * sizeof *t->b);
    t->b[pos] = (block_span){at, len, t->next_lease++, now_ms + ttl_ms};
    t->n++;
    *off = at;
    *lease = t->b[pos].lease;
    return 0;
}

static int64_t s_find(const block_table *t, uint64_t lease) {
    for (int64_t i = 0; i < t->n; i++)
        if (t->b[i].lease == lease) return i;
    return -1;
}

static void s_remove(block_table *t, int64_t i) {
    memmove(t->b + i, t->b + i + 1, (size_t)(t->n - i - 1) * sizeof *t->b);
    t->n--;
}

int block_table_renew(block_table *t, uint64_t lease, uint64_t now_ms, uint32_t ttl_ms) {
    int64_t i = s_find(t, lease);
    if (i < 0)
        return tis_error(TIS_ENOTFOUND, "%s: lease %llx expired or released", t->what, (unsigned long long)lease);
    t->b[i].expires_ms = now_ms + ttl_ms;
    return 0;
}

void block_table_release(block_table *t, uint64_t lease) {
    int64_t i = s_find(t, lease);
    if (i >= 0) s_remove(t, i);
}

int64_t block_table_expire(block_table *t, uint64_t now_ms) {
    int64_t freed = 0;
    for (int64_t i = 0; i < t->n;) {
        if (t->b[i].expires_ms < now_ms) {
            s_remove(t, i);
            freed++;
        } else {
            i++;
        }
    }
    return freed;
}

int block_table_range(const block_table *t, uint64_t lease, uint64_t *off, uint64_t *len) {
    int64_t i = s_find(t, lease);
    if (i < 0)
        return tis_error(TIS_ENOTFOUND, "%s: lease %llx expired or released", t->what, (unsigned long long)lease);
    *off = t->b[i].off;
    *len = t->b[i].len;
    return 0;
}
