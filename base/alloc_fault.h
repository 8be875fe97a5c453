/* alloc_fault: allocation-failure injection, SQLite-style (docs/design.md §12).
 *
 * With the CMake option TIS_ALLOC_FAULT (on by default) every executable and
 * libtis.so are linked with `-Wl,--wrap=malloc,...`: each call of malloc,
 * calloc, realloc, aligned_alloc, strdup, strndup, asprintf and vasprintf
 * made by tis's own objects goes through a wrapper here that asks
 * alloc_fault_fail() first (one relaxed atomic load when nothing is armed).
 * Allocations made inside shared libraries (libzmq, OpenBLAS, cJSON, libc's
 * own getline) are not seen; protobuf-c's unpacking is, because proto/msg.c
 * hands it an allocator that calls malloc.
 *
 * A test arms a countdown, runs an operation, disarms, and repeats with
 * n = 1, 2, 3, ... until a run in which nothing was injected: that visits
 * every allocation point of the operation (tests/util/tt_alloc.h). A worker
 * arms it from TIS_FAULT_ALLOC (serve/worker.c). Counters are process-wide
 * (atomics); a test arms and disarms around one thread's work. */
#ifndef TIS_ALLOC_FAULT_H
#define TIS_ALLOC_FAULT_H

#include <stdbool.h>
#include <stdint.h>

/* Whether the wrappers are linked in (TIS_ALLOC_FAULT); when not, arming
 * does nothing and tests of it skip. */
bool alloc_fault_available(void);

/* Counts allocations from now on: the nth (1 = the next) fails, and with
 * persist every one after it too. n <= 0 disarms (counting goes on). */
void alloc_fault_arm(int64_t n, bool persist);
void alloc_fault_disarm(void);

/* Allocations seen since the last arm / failures injected since then. */
int64_t alloc_fault_seen(void);
int64_t alloc_fault_injected(void);

/* Called by the wrappers before each allocation: true = fail this one. */
bool alloc_fault_fail(void);

#endif
