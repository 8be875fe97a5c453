/* tt: a minimal test harness. */
#define _GNU_SOURCE
#include "tt.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int tt_failures = 0;
int tt_checks = 0;
static char s_tmp[256];

/* Cases: the current one's tag ("[name] "), how many there were, and the
 * names of those that failed (the first few, in order). */
enum { TT_NAME_MAX = 128, TT_FAILED_NAMES = 1024 };
static char s_tag[TT_NAME_MAX + 3];
static int s_cases = 0, s_cases_failed = 0;
static int s_case_start = 0; /* tt_failures when the current case began */
static char s_failed[TT_FAILED_NAMES];

/* Closes the current case: counts it as failed when a check failed in it. */
static void s_case_end(void) {
    if (!s_tag[0] || tt_failures == s_case_start) return;
    s_cases_failed++;
    size_t n = strlen(s_failed), len = strlen(s_tag) - 3; /* "[" name "] " */
    if (n + len + 8 < sizeof s_failed)
        snprintf(s_failed + n, sizeof s_failed - n, "%s%.*s", n ? ", " : "", (int)len, s_tag + 1);
    else if (n + 6 < sizeof s_failed && !strstr(s_failed, ", ..."))
        snprintf(s_failed + n, sizeof s_failed - n, ", ...");
}

void tt_case(const char *fmt, ...) {
    s_case_end();
    char name[TT_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(s_tag, sizeof s_tag, "[%s] ", name);
    s_case_start = tt_failures;
    s_cases++;
}

const char *tt_case_tag(void) { return s_tag; }

int tt_done(const char *name) {
    s_case_end();
    s_tag[0] = 0;
    if (s_tmp[0] && !getenv("TT_KEEP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_tmp);
        if (system(cmd) != 0) fprintf(stderr, "tt: could not remove %s\n", s_tmp);
    }
    printf("%s: %d passed, %d failed", name, tt_checks - tt_failures, tt_failures);
    if (s_cases > 0) {
        printf("; %d case%s", s_cases, s_cases == 1 ? "" : "s");
        if (s_cases_failed) printf(", %d failed: %s", s_cases_failed, s_failed);
    }
    printf("\n");
    return tt_failures ? 1 : 0;
}

const char *tt_tmpdir(void) {
    if (!s_tmp[0]) {
        snprintf(s_tmp, sizeof s_tmp, "/tmp/tis-test-XXXXXX");
        if (!mkdtemp(s_tmp)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return s_tmp;
}

const char *tt_path(const char *file) {
    static char bufs[8][512];
    static int slot = 0;
    char *b = bufs[slot++ & 7];
    snprintf(b, 512, "%s/%s", tt_tmpdir(), file);
    return b;
}

const char *tt_src(const char *rel) {
    static char bufs[8][512];
    static int slot = 0;
    char *b = bufs[slot++ & 7];
    const char *root = getenv("TIS_SOURCE_DIR");
    snprintf(b, 512, "%s/%s", root ? root : ".", rel);
    return b;
}

const char *tt_model(void) {
    const char *m = getenv("TIS_MODEL");
    if (!m || access(m, R_OK) != 0) {
        fprintf(stderr, "tt: the default model is missing (TIS_MODEL=%s); run "
                        "scripts/fetch_model.sh first\n", m ? m : "(unset)");
        return NULL;
    }
    return m;
}

char *tt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

int tt_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

float tt_randf(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

double tt_maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

int tt_sh(const char *cmd, char *out, size_t cap) {
    size_t n = strlen(cmd) + 8;
    char *full = malloc(n);
    if (!full) return -1;
    snprintf(full, n, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t got = cap ? fread(out, 1, cap - 1, p) : 0;
    if (cap) out[got] = 0;
    char drop[4096]; /* the child must not block on a full pipe */
    while (fread(drop, 1, sizeof drop, p) > 0) {}
    int st = pclose(p);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool tt_rerun_same(const char *cmd, const char *path, char *before, size_t n) {
    static char out[1 << 14];
    size_t n2 = 0;
    bool ok = tt_sh(cmd, out, sizeof out) == 0;
    char *after = ok ? tt_read_file(path, &n2) : NULL;
    ok = ok && before && after && n2 == n && !memcmp(before, after, n);
    free(before);
    free(after);
    return ok;
}

const char *tt_bin(const char *test) {
    const char *bin = getenv("TIS_BIN");
    if (!bin) {
        fprintf(stderr, "%s: TIS_BIN is not set (run through ctest)\n", test);
        exit(77);
    }
    return bin;
}

int tt_tis(const char *args, char *out, size_t cap) {
    const char *bin = getenv("TIS_BIN");
    size_t n = strlen(args) + (bin ? strlen(bin) : 3) + 4;
    char *cmd = malloc(n);
    if (!cmd) return -1;
    snprintf(cmd, n, "'%s' %s", bin ? bin : "tis", args);
    int rc = tt_sh(cmd, out, cap);
    free(cmd);
    return rc;
}

pid_t tt_spawn(const char *const *argv, const char *log, const char *const *env) {
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        for (const char *const *e = env; e && *e; e++) putenv((char *)*e);
        if (log && (!freopen(log, "w", stderr) || !freopen(log, "a", stdout))) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int tt_wait(pid_t pid, int timeout_s) {
    int st = 0;
    for (int t = 0; t < timeout_s * 20; t++) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int tt_shm_find(const char *name, char *out, size_t cap) {
    char pre[256];
    snprintf(pre, sizeof pre, "tis-%s-", name);
    size_t np = strlen(pre);
    int n = 0;
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, pre, np) || strlen(e->d_name) != np + 16) continue;
        n++;
        if (out) snprintf(out, cap, "/%s", e->d_name);
    }
    if (d) closedir(d);
    return n;
}
