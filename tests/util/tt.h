/* tt: a minimal test harness (checks, temp dirs, env lookups). */
#ifndef TIS_TT_H
#define TIS_TT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tis_error.h"

extern int tt_failures;
extern int tt_checks;

#define TT_CHECK(cond)                                                          \
    do {                                                                        \
        tt_checks++;                                                            \
        if (!(cond)) {                                                          \
            tt_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                     \
        }                                                                       \
    } while (0)

/* A status call that must succeed; prints tis_last_error() otherwise. */
#define TT_OK(expr)                                                             \
    do {                                                                        \
        tt_checks++;                                                            \
        int tt_rc_ = (expr);                                                    \
        if (tt_rc_ != 0) {                                                      \
            tt_failures++;                                                      \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__,       \
                    __LINE__, #expr, tt_rc_, tis_status_name(tt_rc_),           \
                    tis_last_error());                                          \
        }                                                                       \
    } while (0)

/* A status call that must fail with `code`; the message must be non-empty. */
#define TT_FAILS(expr, code)                                                    \
    do {                                                                        \
        tt_checks++;                                                            \
        int tt_rc_ = (expr);                                                    \
        if (tt_rc_ != (code) || tis_last_error()[0] == 0) {                     \
            tt_failures++;                                                      \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n",     \
                    __FILE__, __LINE__, #expr, tt_rc_, tis_status_name(tt_rc_), \
                    (code), tis_status_name(code));                             \
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
            fprintf(stderr, "%s:%d: %s = %g, %s = %g, |diff| > %g\n", __FILE__, \
                    __LINE__, #a, tt_a_, #b, tt_b_, (double)(tol));             \
        }                                                                       \
    } while (0)

/* Prints "N passed, N failed" and returns the exit code for main. */
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
/* Deterministic uniform float in [-1, 1). */
float tt_randf(uint64_t *state);

#endif
