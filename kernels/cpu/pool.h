/* pool: one set of persistent worker threads for the CPU kernels (the
 * decode step's quantised matmuls): a parallel-for over index ranges with
 * no thread start-up per call. Workers spin briefly between calls (a
 * decode step makes hundreds of small calls) and then sleep.
 *
 * One pool per process, used from one thread at a time (the forward pass's
 * thread). The thread count is pool_set_threads(n) (tis -t), else
 * $TIS_THREADS, else $OPENBLAS_NUM_THREADS, else the online CPUs. */
#ifndef TIS_POOL_H
#define TIS_POOL_H

#include <stdint.h>

typedef void (*pool_fn)(void *ctx, int64_t i0, int64_t i1);

/* Threads the pool runs with (the caller counts as one). */
int pool_threads(void);
/* Sets the thread count (>= 1); takes effect at the next pool_for. */
void pool_set_threads(int n);

/* fn(ctx, i0, i1) over [0, n) split into one contiguous range per thread
 * (ranges rounded to multiples of grain); returns when all are done. Runs
 * inline when n is small or one thread is asked for. */
void pool_for(int64_t n, int64_t grain, pool_fn fn, void *ctx);

#endif
