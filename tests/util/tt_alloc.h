/* tt_alloc: SQLite-style allocation-failure sweeps over an operation
 * (base/alloc_fault.h does the counting and the failing).
 *
 *   int op(void *ctx);   // does the work, frees what it made, 0 or a status
 *   tt_alloc_sweep("press", op, ctx, 0);
 *
 * runs op with its 1st allocation failing, then its 2nd, ... until a run in
 * which nothing failed (every allocation point visited), then the same with
 * every allocation from the k-th on failing (the cleanup paths under
 * failure too). A run where a failure was injected must return TIS_ENOMEM
 * with a message; 0 is allowed (a failure the code works around: op checks
 * its result against the reference itself) and is counted as benign. Leaks
 * show in the ASan build (LeakSanitizer at exit). */
#ifndef TIS_TT_ALLOC_H
#define TIS_TT_ALLOC_H

#include <stdint.h>

/* The number of allocation points of op (allocations in the clean run);
 * -1 when injection is not linked (TIS_ALLOC_FAULT off). max_points > 0
 * stops a sweep there (for long operations: counted as a failure). */
int64_t tt_alloc_sweep(const char *what, int (*op)(void *ctx), void *ctx, int64_t max_points);

#endif
