/* test_cli: the tis binary: usage errors exit 2 with a usage text, runtime
 * errors exit 1 with a message, and the subcommands work on a tiny model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tiny_model.h"
#include "tt.h"

/* Runs `tis ARGS` (shell-quoted by the caller); returns the exit code and
 * the combined output in out (cap bytes). */
static int s_run(const char *args, char *out, size_t cap) {
    const char *bin = getenv("TIS_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin ? bin : "tis", args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    static char out[1 << 16];
    char args[1024];
    const char *tiny = tt_path("tiny.gguf");
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));

    TT_CHECK(s_run("", out, sizeof out) == 2 && strstr(out, "usage: tis"));
    TT_CHECK(s_run("frobnicate", out, sizeof out) == 2 && strstr(out, "unknown command"));
    TT_CHECK(s_run("--help", out, sizeof out) == 0 && strstr(out, "generate"));
    TT_CHECK(s_run("generate", out, sizeof out) == 2 && strstr(out, "prompt is required"));
    TT_CHECK(s_run("generate -p hi -n abc", out, sizeof out) == 2 && strstr(out, "bad value"));
    TT_CHECK(s_run("generate -p hi --temp -1", out, sizeof out) == 2);
    TT_CHECK(s_run("generate -p hi --top_p 1.5", out, sizeof out) == 2);
    TT_CHECK(s_run("generate -p hi --bogus 1", out, sizeof out) == 2 && strstr(out, "unknown option"));
    TT_CHECK(s_run("generate -p hi -m", out, sizeof out) == 2);
    TT_CHECK(s_run("bench -r 0", out, sizeof out) == 2);
    TT_CHECK(s_run("info", out, sizeof out) == 2);
    TT_CHECK(s_run("tokenize", out, sizeof out) == 2);

    /* runtime errors: exit 1 with a message naming the problem */
    TT_CHECK(s_run("info /nonexistent/model.gguf", out, sizeof out) == 1 && strstr(out, "cannot open"));
    const char *junk = tt_path("junk.gguf");
    tt_write_file(junk, "GGUF\x03\0\0\0garbage", 15);
    snprintf(args, sizeof args, "generate -m '%s' -p hi", junk);
    TT_CHECK(s_run(args, out, sizeof out) == 1 && strstr(out, "tis: loading the model"));
    fprintf(stderr, "  junk model -> %s", out);

    /* the subcommands on a tiny model */
    snprintf(args, sizeof args, "info '%s'", tiny);
    TT_CHECK(s_run(args, out, sizeof out) == 0 && strstr(out, "architecture    llama") &&
             strstr(out, "layers          2"));
    snprintf(args, sizeof args, "tokenize -m '%s' --ids 'the then'", tiny);
    TT_CHECK(s_run(args, out, sizeof out) == 0);
    fprintf(stderr, "  tokenize -> %s", out);
    snprintf(args, sizeof args, "generate -m '%s' -p 'the' -n 8 --quiet", tiny);
    TT_CHECK(s_run(args, out, sizeof out) == 0);
    /* sampling is deterministic by seed */
    char first[4096];
    snprintf(args, sizeof args, "generate -m '%s' -p 'the' -n 12 --temp 0.9 --seed 5 --quiet", tiny);
    TT_CHECK(s_run(args, first, sizeof first) == 0);
    TT_CHECK(s_run(args, out, sizeof out) == 0 && strcmp(out, first) == 0);
    snprintf(args, sizeof args, "generate -m '%s' -p 'hello' --chat -n 4 --quiet", tiny);
    TT_CHECK(s_run(args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "bench -m '%s' -p 16 -n 4 -r 1", tiny);
    TT_CHECK(s_run(args, out, sizeof out) == 0 && strstr(out, "pp16") && strstr(out, "tg4"));
    fprintf(stderr, "%s", out);
    return tt_done("test_cli");
}
