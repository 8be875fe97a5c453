/* fuzz_util: scratch files and the default model's path for the targets. */
#define _GNU_SOURCE
#include "fuzz_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[256];

static void s_cleanup(void) {
    DIR *d = s_dir[0] ? opendir(s_dir) : NULL;
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", s_dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    if (s_dir[0]) rmdir(s_dir);
}

const char *fuzz_dir(void) {
    if (!s_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(s_dir, sizeof s_dir, "%s/tis-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(s_dir)) {
            s_dir[0] = 0;
            return NULL;
        }
        atexit(s_cleanup);
    }
    return s_dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char paths[8][600];
    static const char *names[8];
    const char *dir = fuzz_dir();
    if (!dir) return NULL;
    int slot = 0;
    while (slot < 7 && names[slot] && strcmp(names[slot], name)) slot++;
    names[slot] = name;
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return paths[slot];
}

const char *fuzz_model_path(void) {
    static char p[1024];
    const char *m = getenv("TIS_MODEL");
    if (m && access(m, R_OK) == 0) return m;
    const char *src = getenv("TIS_SOURCE_DIR");
    snprintf(p, sizeof p, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", src && *src ? src : ".");
    return access(p, R_OK) == 0 ? p : NULL;
}
