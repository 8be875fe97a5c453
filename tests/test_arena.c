/* test_arena: the CPU data plane: a segment shared with another process,
 * bounds-checked offsets, first-fit blocks, leases that expire, a stale
 * segment of a crashed creator replaced, a consumer's mapping of a restarted
 * producer's old instance replaced (and its old leases refused), nothing left
 * in /dev/shm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "tt.h"

static bool s_exists(const char *name) {
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return access(path, F_OK) == 0;
}

int main(void) {
    char name[64], stale[64];
    snprintf(name, sizeof name, "test-%d", (int)getpid());
    snprintf(stale, sizeof stale, "stale-%d", (int)getpid());
    arena *a = NULL;
    TT_OK(arena_create(&a, name, 1 << 20));
    if (!a) return tt_done("test_arena");
    TT_CHECK(s_exists(arena_name(a)) && arena_size(a) == (1 << 20));
    {   /* 0600, under a name with 16 random hex digits: another instance gets another */
        char path[300];
        snprintf(path, sizeof path, "/dev/shm%s", arena_name(a));
        struct stat sb;
        TT_CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 && sb.st_uid == geteuid());
        TT_CHECK(strlen(arena_name(a)) == 5 + strlen(name) + 1 + 16 && tt_shm_find(name, NULL, 0) == 1);
        arena *twin = NULL;
        TT_OK(arena_create(&twin, "twin-x", 4096));
        arena *twin2 = NULL;
        TT_OK(arena_create(&twin2, "twin-y", 4096));
        TT_CHECK(twin && twin2 && strcmp(arena_name(twin) + 12, arena_name(twin2) + 12) != 0);
        arena_destroy(&twin);
        arena_destroy(&twin2);
    }

    /* another process maps it and writes; we see the bytes */
    pid_t pid = fork();
    if (pid == 0) {
        arena *b = NULL;
        if (arena_open(&b, arena_name(a))) _exit(2);
        char *p = arena_at(b, 4096, 16);
        if (!p) _exit(3);
        memcpy(p, "hello from child", 16);
        bool bounds_ok = arena_at(b, (1 << 20) - 8, 16) == NULL && arena_at(b, UINT64_MAX, 1) == NULL;
        arena_destroy(&b); /* unmaps only */
        _exit(bounds_ok ? 0 : 4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    TT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    TT_CHECK(memcmp(arena_at(a, 4096, 16), "hello from child", 16) == 0);
    TT_CHECK(s_exists(arena_name(a))); /* the peer did not unlink it */
    TT_CHECK(arena_at(a, 1 << 20, 0) != NULL && arena_at(a, 1 << 20, 1) == NULL);

    /* first fit after the 64-byte header, 64-byte aligned, gaps reused */
    uint64_t o1, o2, o3, o4, l1, l2, l3, l4;
    TT_OK(arena_alloc(a, 100, 60000, &o1, &l1));
    TT_OK(arena_alloc(a, 1000, 60000, &o2, &l2));
    TT_OK(arena_alloc(a, 10, 60000, &o3, &l3));
    TT_CHECK(o1 == 64 && o2 == 64 + 128 && o3 == 64 + 128 + 1024 && l1 != l2 && l2 != l3);
    TT_CHECK(arena_blocks(a) == 3 && arena_bytes_used(a) == 128 + 1024 + 64);
    arena_lease_release(a, l2);
    arena_lease_release(a, l2); /* idempotent */
    TT_OK(arena_alloc(a, 500, 60000, &o4, &l4));
    TT_CHECK(o4 == 64 + 128); /* the freed gap */
    TT_OK(arena_check_lease(a, l1));
    TT_FAILS(arena_check_lease(a, 1), TIS_ENOTFOUND); /* no instance's (leases carry it) */
    uint64_t ob, lb;
    TT_FAILS(arena_alloc(a, 1 << 20, 60000, &ob, &lb), TIS_ERANGE);

    /* leases: renewed ones live, expired ones are freed */
    TT_OK(arena_lease_renew(a, l1, 60000));
    uint64_t o5, l5;
    TT_OK(arena_alloc(a, 64, 0, &o5, &l5));
    TT_CHECK(arena_expire(a, tis_now_ms() + 1) == 1);
    TT_FAILS(arena_lease_renew(a, l5, 1000), TIS_ENOTFOUND);
    TT_CHECK(arena_blocks(a) == 3);
    TT_CHECK(arena_expire(a, tis_now_ms() + 120000) == 3);
    TT_CHECK(arena_blocks(a) == 0 && arena_bytes_used(a) == 0);
    const char *nm = arena_name(a);
    char keep[256];
    snprintf(keep, sizeof keep, "%s", nm);
    arena_destroy(&a);
    TT_CHECK(a == NULL && !s_exists(keep));

    /* a creator that crashed leaves its segment; the next one replaces it */
    pid = fork();
    if (pid == 0) {
        arena *c = NULL;
        _exit(arena_create(&c, stale, 4096) ? 1 : 0); /* no destroy: a crash */
    }
    waitpid(pid, &st, 0);
    char sname[128] = "";
    TT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && tt_shm_find(stale, sname, sizeof sname) == 1);
    TT_OK(arena_create(&a, stale, 8192));
    TT_CHECK(a && arena_size(a) == 8192 && !s_exists(sname) && tt_shm_find(stale, NULL, 0) == 1);
    arena_destroy(&a);
    TT_CHECK(tt_shm_find(stale, NULL, 0) == 0);

    /* a producer that restarts under its name: a consumer's cached mapping of
     * the old instance is replaced when a block of the new one comes (it
     * read the new blocks through the old mapping: another request's bytes),
     * and a lease of the old instance is refused */
    arena *p1 = NULL, *p2 = NULL;
    arena_peers peers = {0};
    uint64_t po, pl, qo, ql;
    TT_OK(arena_create(&p1, stale, 8192));
    if (p1) TT_OK(arena_alloc(p1, 16, 60000, &po, &pl));
    if (p1) memcpy(arena_at(p1, po, 16), "first instance!", 16);
    arena *v = p1 ? arena_peers_get(&peers, arena_name(p1), pl) : NULL;
    TT_CHECK(v && !memcmp(arena_at(v, po, 16), "first instance!", 16));
    arena_destroy(&p1); /* dies; a new instance of the name */
    TT_OK(arena_create(&p2, stale, 8192));
    if (p2) TT_OK(arena_alloc(p2, 16, 60000, &qo, &ql));
    if (p2) memcpy(arena_at(p2, qo, 16), "second instance", 16);
    TT_CHECK(qo == po && ql != pl);
    v = p2 ? arena_peers_get(&peers, arena_name(p2), ql) : NULL;
    TT_CHECK(v && !memcmp(arena_at(v, qo, 16), "second instance", 16) && peers.n == 1);
    TT_CHECK(p2 && arena_peers_get(&peers, arena_name(p2), pl) == NULL); /* the old instance's block */
    fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
    arena_peers_free(&peers);
    arena_destroy(&p2);

    /* bad input */
    TT_FAILS(arena_create(&a, "../etc", 4096), TIS_EINVAL);
    TT_FAILS(arena_create(&a, "", 4096), TIS_EINVAL);
    TT_FAILS(arena_create(&a, "x", 0), TIS_EINVAL);
    TT_FAILS(arena_create(&a, "x", 64), TIS_EINVAL); /* no room after the header */
    TT_FAILS(arena_open(&a, "/tis-no-such-arena-here"), TIS_EIO);
    TT_FAILS(arena_open(&a, "no-such-arena-here"), TIS_EINVAL); /* not a tis arena's name */
    TT_FAILS(arena_open(&a, "/tis-../../etc/passwd"), TIS_EINVAL);
    TT_CHECK(a == NULL);

    /* handles that are not ours: a segment of another user, or one others
     * may write, is refused; forged offsets and lengths are refused */
    TT_CASE("forged handles");
    char forged[96];
    snprintf(forged, sizeof forged, "/tis-forged-%d-0123456789abcdef", (int)getpid());
    int fd = shm_open(forged, O_CREAT | O_EXCL | O_RDWR, 0600);
    TT_CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
    if (fd >= 0) TT_CHECK(write(fd, "tisarena", 8) == 8); /* looks like one */
    if (fd >= 0 && geteuid() == 0) { /* root can give it away: another user's segment */
        TT_CHECK(fchown(fd, 65534, 65534) == 0);
        TT_FAILS(arena_open(&a, forged), TIS_EINVAL);
        fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
        TT_CHECK(fchown(fd, geteuid(), getegid()) == 0);
    } else {
        fprintf(stderr, "  (not root: the other-user segment case is not made here)\n");
    }
    if (fd >= 0) {
        TT_CHECK(fchmod(fd, 0666) == 0); /* ours, but anyone could have written it */
        TT_FAILS(arena_open(&a, forged), TIS_EINVAL);
        TT_CHECK(fchmod(fd, 0600) == 0);
        TT_OK(arena_open(&a, forged)); /* ours and private: mapped */
        if (a) {
            TT_CHECK(arena_at(a, 4096, 1) == NULL && arena_at(a, 4000, 97) == NULL);
            TT_CHECK(arena_at(a, UINT64_MAX - 8, 16) == NULL && arena_at(a, 8, UINT64_MAX) == NULL);
            TT_CHECK(arena_at(a, 64, 4032) != NULL);
        }
        arena_destroy(&a); /* not the creator: unmaps only */
        TT_CHECK(s_exists(forged));
        close(fd);
        shm_unlink(forged);
    }
    arena_peers pp = {0};
    TT_CHECK(arena_peers_get(&pp, "/etc/passwd", 1ull << 32) == NULL);
    TT_CHECK(arena_peers_get(&pp, "/tis-nothing-here-0000000000000000", 1ull << 32) == NULL && pp.n == 0);
    return tt_done("test_arena");
}
