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

/* fn(ctx, i0, i1) over [0, n) in chunks [k*grain, (k+1)*grain) (the last
 * one shorter), taken one at a time by the caller and the running workers;
 * returns when all are done. A worker that is not running (the core is
 * busy elsewhere) is not waited for. Runs inline when there is one chunk or
 * one thread. Callers size grain: a few chunks per thread. */
void pool_for(int64_t n, int64_t grain, pool_fn fn, void *ctx);

#endif
