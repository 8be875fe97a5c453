/* tt: a minimal test harness. */
#define _GNU_SOURCE
#include "tt.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tt_failures = 0;
int tt_checks = 0;
static char s_tmp[256];

int tt_done(const char *name) {
    if (s_tmp[0] && !getenv("TT_KEEP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_tmp);
        if (system(cmd) != 0) fprintf(stderr, "tt: could not remove %s\n", s_tmp);
    }
    printf("%s: %d passed, %d failed\n", name, tt_checks - tt_failures, tt_failures);
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
