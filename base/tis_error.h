/* tis_error: status codes and the per-thread "last error" message. */
#ifndef TIS_ERROR_H
#define TIS_ERROR_H

#include <stdio.h>
#include <stdlib.h>

/* Library functions return 0 on success or one of these (negative) codes,
 * after leaving a human-readable message for tis_last_error(). */
enum {
    TIS_OK = 0,
    TIS_EINVAL = -1,       /* bad argument */
    TIS_EIO = -2,          /* open/read/write/mmap failed */
    TIS_ENOMEM = -3,       /* allocation failed */
    TIS_EFORMAT = -4,      /* malformed file or message */
    TIS_EUNSUPPORTED = -5, /* well-formed but not handled (type, arch, ...) */
    TIS_ERANGE = -6,       /* size or index out of range, overflow */
    TIS_ENOTFOUND = -7,    /* key, tensor or token missing */
};

/* Sets the message (printf-style) and returns `code`, so callers write
 * `return tis_error(TIS_EFORMAT, "gguf: tensor '%s' ...", name);`. */
int tis_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The message of the last error set on this thread ("" if none). */
const char *tis_last_error(void);

/* Short name of a status code ("EFORMAT", ...). */
const char *tis_status_name(int code);

/* Invariant check for bugs (not for bad input): prints file:line, aborts. */
#define TIS_ASSERT(cond)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                      \
            abort();                                                             \
        }                                                                        \
    } while (0)

#endif
