/* replay_main: runs a fuzz target over files and directories of inputs
 * (its committed regressions), outside libFuzzer: any build, any compiler.
 * Exit 0 when every input ran (a crash aborts the process, as in the
 * fuzzer); 77 when no input was found (ctest: skipped). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int s_one(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf) return 0;
    fprintf(stderr, "replay %s (%zu bytes)\n", path, got);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 1;
}

static int s_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue;
        if (!S_ISDIR(st.st_mode)) {
            n += s_one(argv[i]);
            continue;
        }
        DIR *d = opendir(argv[i]);
        char **names = NULL;
        size_t k = 0, cap = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
            if (k == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names))) return 1;
            names[k++] = strdup(e->d_name);
        }
        if (d) closedir(d);
        if (k) qsort(names, k, sizeof *names, s_cmp);
        for (size_t j = 0; j < k; j++) {
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[j]);
            n += s_one(p);
            free(names[j]);
        }
        free(names);
    }
    fprintf(stderr, "%d inputs replayed\n", n);
    return n ? 0 : 77;
}
