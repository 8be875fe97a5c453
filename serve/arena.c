/* arena: POSIX shared memory + a block table (blocks.h). */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blocks.h"
#include "clock.h"
#include "tis_error.h"

/* The segment opens with a header: "tisarena" and the instance's nonce
 * (u64), so a peer can tell which instance of a name it has mapped. */
enum { HEADER = 64 };
/* An instance's segment is /tis-<name>-<16 hex digits from getrandom>:
 * another user can neither guess it nor make it first (O_EXCL). */
enum { SUFFIX_HEX = 16 };
static const char S_MAGIC[8] = {'t', 'i', 's', 'a', 'r', 'e', 'n', 'a'};

struct arena {
    char name[224];      /* "/tis-<name>" */
    void *base;
    size_t size;
    bool owner;
    block_table t;       /* the blocks in use (creator only) */
    uint64_t nonce;      /* this instance's: 31 random bits, nonzero; a lease's bits 32..62 */
};

static int s_check_name(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200) return tis_error(TIS_EINVAL, "arena: bad name length %zu", n);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return tis_error(TIS_EINVAL, "arena: bad character in name '%s'", name);
    }
    return 0;
}

/* "tis-<name>-" + 16 hex digits, the form of an instance's segment. */
static bool s_is_instance(const char *entry, const char *name) {
    size_t n = strlen(name);
    if (strncmp(entry, "tis-", 4) || strncmp(entry + 4, name, n) || entry[4 + n] != '-') return false;
    const char *h = entry + 5 + n;
    size_t k = 0;
    for (; h[k]; k++)
        if (!((h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f'))) return false;
    return k == SUFFIX_HEX;
}

int64_t arena_unlink_stale(const char *name) {
    if (s_check_name(name)) return -1;
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    int64_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char path[300];
        struct stat sb;
        if (!s_is_instance(e->d_name, name)) continue;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (lstat(path, &sb) || sb.st_uid != geteuid()) continue; /* not ours: not ours to remove */
        snprintf(path, sizeof path, "/%s", e->d_name);
        n += shm_unlink(path) == 0;
    }
    closedir(d);
    return n;
}

int arena_create(arena **out, const char *name, size_t bytes) {
    *out = NULL;
    arena *a = calloc(1, sizeof *a);
    if (!a) return tis_error(TIS_ENOMEM, "arena: out of memory");
    int rc = s_check_name(name);
    if (rc) {
        free(a);
        return rc;
    }
    uint64_t r = 0;
    block_random(&r, sizeof r);
    snprintf(a->name, sizeof a->name, "/tis-%s-%016llx", name, (unsigned long long)r);
    if (bytes <= HEADER || bytes > ((size_t)1 << 40)) {
        free(a);
        return tis_error(TIS_EINVAL, "arena: bad size %zu", bytes);
    }
    arena_unlink_stale(name); /* the segments of crashed instances of this name */
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
    a->nonce = block_nonce();
    block_table_init(&a->t, HEADER, bytes, a->nonce, a->name);
    memcpy(a->base, S_MAGIC, sizeof S_MAGIC);
    memcpy((char *)a->base + 8, &a->nonce, sizeof a->nonce);
    *out = a;
    return 0;
}

int arena_open(arena **out, const char *name) {
    *out = NULL;
    arena *a = calloc(1, sizeof *a);
    if (!a) return tis_error(TIS_ENOMEM, "arena: out of memory");
    int rc = 0;
    if (!name || strncmp(name, "/tis-", 5) || s_check_name(name + 5)) {
        free(a);
        return tis_error(TIS_EINVAL, "arena: '%s' is not a tis arena's name", name ? name : "");
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    int fd = shm_open(a->name, O_RDWR, 0);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        rc = tis_error(TIS_EIO, "arena: cannot open %s: %s", a->name, strerror(errno));
        if (fd >= 0) close(fd);
        free(a);
        return rc;
    }
    /* ours only: a segment another user made (or can write) could hand us
     * bytes of its choosing */
    if (sb.st_uid != geteuid() || (sb.st_mode & 077)) {
        rc = tis_error(TIS_EINVAL, "arena: %s belongs to uid %u with mode %04o, not to us (uid %u, 0600): refused",
                       a->name, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777), (unsigned)geteuid());
        close(fd);
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
    if (a->size < HEADER || memcmp(a->base, S_MAGIC, sizeof S_MAGIC)) {
        munmap(a->base, a->size);
        rc = tis_error(TIS_EFORMAT, "arena: %s is not a tis arena", a->name);
        free(a);
        return rc;
    }
    memcpy(&a->nonce, (char *)a->base + 8, sizeof a->nonce);
    *out = a;
    return 0;
}

void arena_destroy(arena **p) {
    if (!p || !*p) return;
    arena *a = *p;
    if (a->base && a->base != MAP_FAILED) munmap(a->base, a->size);
    if (a->owner) shm_unlink(a->name);
    block_table_free(&a->t);
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
    return block_table_alloc(&a->t, bytes, tis_now_ms(), ttl_ms, off, lease);
}

int arena_lease_renew(arena *a, uint64_t lease, uint32_t ttl_ms) {
    return block_table_renew(&a->t, lease, tis_now_ms(), ttl_ms);
}

void arena_lease_release(arena *a, uint64_t lease) { block_table_release(&a->t, lease); }
int64_t arena_expire(arena *a, uint64_t now_ms) { return block_table_expire(&a->t, now_ms); }
int64_t arena_blocks(const arena *a) { return a->t.n; }
const block_table *arena_table(const arena *a) { return &a->t; }
size_t arena_bytes_used(const arena *a) { return block_table_bytes(&a->t); }

int arena_lease_range(const arena *a, uint64_t lease, uint64_t *off, uint64_t *len) {
    return block_table_range(&a->t, lease, off, len);
}

int arena_check_lease(const arena *a, uint64_t lease) {
    if ((lease >> 32) == a->nonce) return 0;
    return tis_error(TIS_ENOTFOUND, "arena: lease %llx is not of the instance of %s mapped here (its producer "
                     "restarted: the block is gone)", (unsigned long long)lease, a->name);
}

arena *arena_peers_get(arena_peers *p, const char *name, uint64_t lease) {
    if (!name || strncmp(name, "/tis-", 5) != 0) {
        tis_error(TIS_EINVAL, "not a tis arena: '%s'", name ? name : "");
        return NULL;
    }
    int k = 0;
    while (k < p->n && strcmp(arena_name(p->a[k]), name)) k++;
    if (k < p->n && (lease >> 32) == p->a[k]->nonce) return p->a[k];
    if (k < p->n) { /* another instance of the name now: map it again */
        arena_destroy(&p->a[k]);
        p->a[k] = p->a[--p->n];
    }
    if (p->n == ARENA_PEERS_MAX) arena_destroy(&p->a[--p->n]); /* a stale peer makes room */
    arena *a = NULL;
    if (arena_open(&a, name)) return NULL;
    if (arena_check_lease(a, lease)) {
        arena_destroy(&a);
        return NULL;
    }
    /* a new instance of a producer: the mappings of its earlier instances
     * (their segments unlinked, their memory held while mapped) go */
    const char *dash = strrchr(name, '-');
    size_t base = dash ? (size_t)(dash - name) + 1 : 0;
    for (int i = 0; base && i < p->n;) {
        const char *o = arena_name(p->a[i]);
        if (strlen(o) == strlen(name) && !strncmp(o, name, base)) {
            arena_destroy(&p->a[i]);
            p->a[i] = p->a[--p->n];
        } else {
            i++;
        }
    }
    p->a[p->n++] = a;
    return a;
}

void arena_peers_free(arena_peers *p) {
    for (int i = 0; i < p->n; i++) arena_destroy(&p->a[i]);
    p->n = 0;
}
