/* tt: a minimal test harness (checks, named cases, temp dirs, env lookups).
 *
 * A test main is a sequence of checks, grouped into named cases:
 *
 *   TT_CASE("roundtrip");            // or TT_CASE("model %s", name)
 *   TT_CHECK(x == 3);                // fails as "[roundtrip] test_x.c:12: CHECK failed: x == 3"
 *   ...
 *   return tt_done("test_x");        // "test_x: 41 passed, 1 failed; 6 cases, 1 failed: roundtrip"
 *
 * A case lasts until the next TT_CASE; checks before the first have no
 * case (and no prefix). */
#ifndef TIS_TT_H
#define TIS_TT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "tis_error.h"

extern int tt_failures;
extern int tt_checks;

/* Starts a named case (printf-style; the name is copied, cut at 127
 * bytes): failing checks after it print "[name] " first, and tt_done
 * counts the cases and names those with a failure. */
void tt_case(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
#define TT_CASE(...) tt_case(__VA_ARGS__)
/* "[name] " of the current case, "" before the first. */
const char *tt_case_tag(void);

#define TT_CHECK(cond)                                                          \
    do {                                                                        \
        tt_checks++;                                                            \
        if (!(cond)) {                                                          \
            tt_failures++;                                                      \
            fprintf(stderr, "%s%s:%d: CHECK failed: %s\n", tt_case_tag(),      \
                    __FILE__, __LINE__, #cond);                                 \
        }                                                                       \
    } while (0)

/* A status call that must succeed; prints tis_last_error() otherwise. */
#define TT_OK(expr)                                                             \
    do {                                                                        \
        tt_checks++;                                                            \
        int tt_rc_ = (expr);                                                    \
        if (tt_rc_ != 0) {                                                      \
            tt_failures++;                                                      \
            fprintf(stderr, "%s%s:%d: %s returned %d (%s): %s\n",               \
                    tt_case_tag(), __FILE__, __LINE__, #expr, tt_rc_,           \
                    tis_status_name(tt_rc_), tis_last_error());                 \
        }                                                                       \
    } while (0)

/* A status call that must fail with `code`; the message must be non-empty. */
#define TT_FAILS(expr, code)                                                    \
    do {                                                                        \
        tt_checks++;                                                            \
        int tt_rc_ = (expr);                                                    \
        if (tt_rc_ != (code) || tis_last_error()[0] == 0) {                     \
            tt_failures++;                                                      \
            fprintf(stderr, "%s%s:%d: %s returned %d (%s), wanted %d (%s)\n",   \
                    tt_case_tag(), __FILE__, __LINE__, #expr, tt_rc_,           \
                    tis_status_name(tt_rc_), (code), tis_status_name(code));    \
        } else {                                                                \
            fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());          \
        }                                                                       \
    } while (0)

#define TT_NEAR(a, b, tol)                                                      \
    do {                                                                        \
        tt_checks++;                                                            \
        double tt_a_ = (a), tt_b_ = (b);                                        \
        if (!(fabs(tt_a_ - tt_b_) <= (tol))) {                                  \
            tt_failures++;                                                      \
            fprintf(stderr, "%s%s:%d: %s = %g, %s = %g, |diff| > %g\n",         \
                    tt_case_tag(), __FILE__, __LINE__, #a, tt_a_, #b, tt_b_,    \
                    (double)(tol));                                             \
        }                                                                       \
    } while (0)

/* Prints "NAME: N passed, N failed; K cases, F failed: a, b" (the case
 * part when there were cases) and returns the exit code for main. */
int tt_done(const char *name);

/* A fresh temporary directory (removed by tt_done unless TT_KEEP is set). */
const char *tt_tmpdir(void);
/* Path under tt_tmpdir(); returned buffer is static per call slot (8). */
const char *tt_path(const char *file);
/* Path under $TIS_SOURCE_DIR (tests run from anywhere). */
const char *tt_src(const char *rel);
/* $TIS_MODEL, or NULL with a message when the file is missing. */
const char *tt_model(void);
/* Reads a whole file (malloc'd, NUL-terminated); NULL on error. */
char *tt_read_file(const char *path, size_t *len);
/* Writes bytes to a file; 0 on success. */
int tt_write_file(const char *path, const void *data, size_t len);
/* Runs a shell command with stderr joined to stdout; out[cap] gets the
 * first cap - 1 bytes of it (NUL-terminated; the rest is read and dropped).
 * Returns the exit status, 128 + N when killed by signal N, -1 when it
 * could not start. */
int tt_sh(const char *cmd, char *out, size_t cap);
/* Runs cmd once more and tells whether it succeeded and path then holds
 * exactly before[n] (a writer that must be deterministic, e.g. a training
 * run with a seed); frees before (may be NULL: false). */
bool tt_rerun_same(const char *cmd, const char *path, char *before, size_t n);
/* The tis binary ctest passes in $TIS_BIN; without it the test is skipped:
 * "TEST: TIS_BIN is not set (run through ctest)" and exit status 77. */
const char *tt_bin(const char *test);
/* tt_sh of "'$TIS_BIN' ARGS" (the tis binary ctest passes; "tis" without). */
int tt_tis(const char *args, char *out, size_t cap);
/* Starts argv[0] with argv (NULL-terminated) in a child that is killed
 * when the test dies; its stdout and stderr go to log (truncated first;
 * NULL: the test's own), env: "NAME=VALUE" strings set in the child
 * (NULL-terminated, or NULL). Returns the pid, -1 when fork fails. */
pid_t tt_spawn(const char *const *argv, const char *log, const char *const *env);
/* Waits up to timeout_s for pid: its exit status (128 + N when killed by
 * signal N), or -1 after the timeout (the process is then killed). */
int tt_wait(pid_t pid, int timeout_s);
/* The shared-memory segments of the instances of arena name NAME
 * (/dev/shm/tis-NAME-<16 hex>): how many; out (when not NULL) gets the
 * last one's segment name ("/tis-NAME-..."). */
int tt_shm_find(const char *name, char *out, size_t cap);
/* Deterministic uniform float in [-1, 1). */
float tt_randf(uint64_t *state);
/* max |a[i] - b[i]| over n floats, in double. */
double tt_maxdiff(const float *a, const float *b, int64_t n);

#endif
