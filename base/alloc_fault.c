/* alloc_fault: the countdown and the --wrap allocation wrappers. */
#include "alloc_fault.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_bool s_armed;
static atomic_bool s_persist;
static atomic_int_fast64_t s_at;       /* fail when seen reaches this */
static atomic_int_fast64_t s_seen;
static atomic_int_fast64_t s_injected;

void alloc_fault_arm(int64_t n, bool persist) {
    atomic_store(&s_armed, false);
    atomic_store(&s_seen, 0);
    atomic_store(&s_injected, 0);
    atomic_store(&s_at, n);
    atomic_store(&s_persist, persist);
    if (n > 0) atomic_store(&s_armed, true);
}

void alloc_fault_disarm(void) { atomic_store(&s_armed, false); }
int64_t alloc_fault_seen(void) { return atomic_load(&s_seen); }
int64_t alloc_fault_injected(void) { return atomic_load(&s_injected); }

bool alloc_fault_fail(void) {
    if (!atomic_load_explicit(&s_armed, memory_order_relaxed)) return false;
    int64_t k = atomic_fetch_add(&s_seen, 1) + 1;
    int64_t at = atomic_load(&s_at);
    if (k == at || (k > at && atomic_load(&s_persist))) {
        atomic_fetch_add(&s_injected, 1);
        return true;
    }
    return false;
}

#ifdef TIS_ALLOC_FAULT_WRAP
/* The linker renames our objects' calls of malloc to __wrap_malloc, and
 * __real_malloc to the C library's. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t al, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int __wrap_asprintf(char **out, const char *fmt, ...);

#define S_FAIL_OR(call)         \
    do {                        \
        if (alloc_fault_fail()) { \
            errno = ENOMEM;     \
            return NULL;        \
        }                       \
        return call;            \
    } while (0)

void *__wrap_malloc(size_t n) { S_FAIL_OR(__real_malloc(n)); }
void *__wrap_calloc(size_t k, size_t n) { S_FAIL_OR(__real_calloc(k, n)); }
void *__wrap_realloc(void *p, size_t n) { S_FAIL_OR(__real_realloc(p, n)); }
void *__wrap_aligned_alloc(size_t al, size_t n) { S_FAIL_OR(__real_aligned_alloc(al, n)); }
char *__wrap_strdup(const char *s) { S_FAIL_OR(__real_strdup(s)); }
char *__wrap_strndup(const char *s, size_t n) { S_FAIL_OR(__real_strndup(s, n)); }

int __wrap_vasprintf(char **out, const char *fmt, va_list ap) {
    if (alloc_fault_fail()) {
        errno = ENOMEM;
        return -1;
    }
    return __real_vasprintf(out, fmt, ap);
}

int __wrap_asprintf(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = __wrap_vasprintf(out, fmt, ap);
    va_end(ap);
    return r;
}

bool alloc_fault_available(void) { return true; }
#else
bool alloc_fault_available(void) { return false; }
#endif
