/* arena: POSIX shared memory + a first-fit block list with leases. */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tis_error.h"
#include "clock.h"

enum { ALIGN = 64 };

typedef struct block {
    uint64_t off, len;   /* len rounded up to ALIGN */
    uint64_t lease;      /* 0: free slot in the table */
    uint64_t expires_ms;
} block;

struct arena {
    char name[224];      /* "/tis-<name>" */
    void *base;
    size_t size;
    bool owner;
    block *blocks;       /* [n] in use, sorted by offset (creator only) */
    int64_t n, cap;
    uint64_t next_lease;
};

static int s_name(char *dst, size_t cap, const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200) return tis_error(TIS_EINVAL, "arena: bad name length %zu", n);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return tis_error(TIS_EINVAL, "arena: bad character in name '%s'", name);
    }
    snprintf(dst, cap, "/tis-%s", name);
    return 0;
}

int arena_create(arena **out, const char *name, size_t bytes) {
    *out = NULL;
    arena *a = calloc(1, sizeof *a);
    if (!a) return tis_error(TIS_ENOMEM, "arena: out of memory");
    int rc = s_name(a->name, sizeof a->name, name);
    if (rc) {
        free(a);
        return rc;
    }
    if (bytes == 0 || bytes > ((size_t)1 << 40)) {
        free(a);
        return tis_error(TIS_EINVAL, "arena: bad size %zu", bytes);
    }
    shm_unlink(a->name); /* a stale segment of a crashed instance of this name */
    int fd = shm_open(a->name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
        rc = tis_error(TIS_EIO, "arena: cannot create %s: %s", a->name, strerror(errno));
        free(a);
        return rc;
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        rc = tis_error(TIS_EIO, "arena: cannot size %s to %zu bytes: %s", a->name, bytes, strerror(errno));
        close(fd);
        shm_unlink(a->name);
        free(a);
        return rc;
    }
    a->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (a->base == MAP_FAILED) {
        rc = tis_error(TIS_EIO, "arena: cannot map %s: %s", a->name, strerror(errno));
        shm_unlink(a->name);
        free(a);
        return rc;
    }
    a->size = bytes;
    a->owner = true;
    a->next_lease = 1;
    *out = a;
    return 0;
}

int arena_open(arena **out, const char *name) {
    *out = NULL;
    arena *a = calloc(1, sizeof *a);
    if (!a) return tis_error(TIS_ENOMEM, "arena: out of memory");
    int rc = s_name(a->name, sizeof a->name, name);
    if (rc) {
        free(a);
        return rc;
    }
    int fd = shm_open(a->name, O_RDWR, 0);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        rc = tis_error(TIS_EIO, "arena: cannot open %s: %s", a->name, strerror(errno));
        if (fd >= 0) close(fd);
        free(a);
        return rc;
    }
    a->size = (size_t)sb.st_size;
    a->base = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (a->base == MAP_FAILED) {
        rc = tis_error(TIS_EIO, "arena: cannot map %s: %s", a->name, strerror(errno));
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void arena_destroy(arena **p) {
    if (!p || !*p) return;
    arena *a = *p;
    if (a->base && a->base != MAP_FAILED) munmap(a->base, a->size);
    if (a->owner) shm_unlink(a->name);
    free(a->blocks);
    free(a);
    *p = NULL;
}

const char *arena_name(const arena *a) { return a->name; }
size_t arena_size(const arena *a) { return a->size; }

void *arena_at(const arena *a, uint64_t off, uint64_t len) {
    if (off > a->size || len > a->size - off) {
        tis_error(TIS_ERANGE, "arena: [%llu, +%llu) is outside %s (%zu bytes)", (unsigned long long)off,
                  (unsigned long long)len, a->name, a->size);
        return NULL;
    }
    return (char *)a->base + off;
}

int arena_alloc(arena *a, size_t bytes, uint32_t ttl_ms, uint64_t *off, uint64_t *lease) {
    if (!a->owner) return tis_error(TIS_EINVAL, "arena: only the creator allocates in %s", a->name);
    if (bytes == 0 || bytes > a->size) return tis_error(TIS_ERANGE, "arena: cannot hold %zu bytes", bytes);
    uint64_t len = ((uint64_t)bytes + ALIGN - 1) / ALIGN * ALIGN;
    /* First fit in the gaps between blocks (sorted by offset). */
    uint64_t at = 0;
    int64_t pos = 0;
    for (; pos < a->n; pos++) {
        if (a->blocks[pos].off - at >= len) break;
        at = a->blocks[pos].off + a->blocks[pos].len;
    }
    if (at + len > a->size)
        return tis_error(TIS_ERANGE, "arena: no room for %zu bytes in %s (%zu used of %zu)", bytes, a->name,
                         arena_bytes_used(a), a->size);
    if (a->n == a->cap) {
        int64_t nc = a->cap ? 2 * a->cap : 16;
        block *b = realloc(a->blocks, (size_t)nc * sizeof *b);
        if (!b) return tis_error(TIS_ENOMEM, "arena: out of memory");
        a->blocks = b;
        a->cap = nc;
    }
    memmove(a->blocks + pos + 1, a->blocks + pos, (size_t)(a->n - pos) * sizeof *a->blocks);
    a->blocks[pos] = (block){at, len, a->next_lease++, tis_now_ms() + ttl_ms};
    a->n++;
    *off = at;
    *lease = a->blocks[pos].lease;
    return 0;
}

static int64_t s_find(const arena *a, uint64_t lease) {
    for (int64_t i = 0; i < a->n; i++)
        if (a->blocks[i].lease == lease) return i;
    return -1;
}

static void s_remove(arena *a, int64_t i) {
    memmove(a->blocks + i, a->blocks + i + 1, (size_t)(a->n - i - 1) * sizeof *a->blocks);
    a->n--;
}

int arena_lease_renew(arena *a, uint64_t lease, uint32_t ttl_ms) {
    int64_t i = s_find(a, lease);
    if (i < 0) return tis_error(TIS_ENOTFOUND, "arena: lease %llu expired or released", (unsigned long long)lease);
    a->blocks[i].expires_ms = tis_now_ms() + ttl_ms;
    return 0;
}

void arena_lease_release(arena *a, uint64_t lease) {
    int64_t i = s_find(a, lease);
    if (i >= 0) s_remove(a, i);
}

int64_t arena_expire(arena *a, uint64_t now_ms) {
    int64_t freed = 0;
    for (int64_t i = 0; i < a->n;) {
        if (a->blocks[i].expires_ms < now_ms) {
            s_remove(a, i);
            freed++;
        } else {
            i++;
        }
    }
    return freed;
}

int64_t arena_blocks(const arena *a) { return a->n; }

size_t arena_bytes_used(const arena *a) {
    size_t n = 0;
    for (int64_t i = 0; i < a->n; i++) n += (size_t)a->blocks[i].len;
    return n;
}
