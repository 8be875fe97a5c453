/* test_layers: scripts/check_layers.py passes on the tree and fails, naming
 * the line, on copies of it with a planted upward include, an unknown
 * header and a header name held by two layers. */
#include <stdio.h>
#include <string.h>

#include "tt.h"

static char s_out[1 << 16];

/* Copies the tree's layer folders and the script into dir. */
static int s_copy(const char *dir) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; mkdir -p '%s/scripts'; cd '%s'; cp -r base formats kernels proto engine press eval serve "
             "include client http cli '%s/'; cp scripts/check_layers.py '%s/scripts/'",
             dir, tt_src(""), dir, dir);
    return tt_sh(cmd, s_out, sizeof s_out);
}

static int s_check(const char *root) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s/scripts/check_layers.py' --root '%s'", root, root);
    return tt_sh(cmd, s_out, sizeof s_out);
}

/* A fresh copy with `line` appended to `file`: the script must fail and
 * print `expect`. */
static void s_planted(const char *name, const char *file, const char *line, const char *expect) {
    const char *dir = tt_path(name);
    TT_CHECK(s_copy(dir) == 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' >> '%s/%s'", line, dir, file);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0);
    int rc = s_check(dir);
    TT_CHECK(rc == 1);
    TT_CHECK(strstr(s_out, expect) != NULL);
    fprintf(stderr, "  %s: rc %d: %s", name, rc, s_out);
}

int main(void) {
    if (tt_sh("python3 --version", s_out, sizeof s_out) != 0) {
        fprintf(stderr, "skip: python3 not found\n");
        return 77;
    }
    /* case: the tree as it is */
    int rc = s_check(tt_src(""));
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s", s_out);
    /* case: a copy unchanged passes too (the copy is complete) */
    const char *same = tt_path("same");
    TT_CHECK(s_copy(same) == 0);
    TT_CHECK(s_check(same) == 0);
    /* case: the engine includes the evaluation layer */
    s_planted("up", "engine/kv.c", "#include \"eval.h\"", "engine/kv.c:");
    s_planted("up2", "kernels/backend.h", "#include \"kv.h\"", "goes up from kernels/ to engine/");
    s_planted("up3", "press/press.h", "#include \"wire.h\"", "goes up from press/ to serve/");
    /* case: a header no layer holds */
    s_planted("unknown", "base/clock.c", "#include \"nowhere.h\"", "no layer holds this header");
    /* case: one header name in two layers */
    const char *dup = tt_path("dup");
    TT_CHECK(s_copy(dup) == 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp '%s/engine/kv.h' '%s/eval/kv.h'", dup, dup);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0);
    TT_CHECK(s_check(dup) == 1 && strstr(s_out, "names must be unique"));
    return tt_done("test_layers");
}
