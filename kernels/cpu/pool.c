/* pool: persistent workers released by a generation counter. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"

enum { MAX_THREADS = 256 };
#define SPIN_S 20e-6        /* busy-wait this long for the next job */
#define SLEEP_AFTER_S 300e-6 /* then yield until this, then sleep */

typedef struct job {
    pool_fn fn;
    void *ctx;
    int64_t n, grain;
    int parts;
} job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid[MAX_THREADS];
    int n_workers;            /* started (threads - 1) */
    int want;                 /* threads asked for (0: not decided) */
    job j;                    /* the current job (written before gen moves) */
    atomic_uint_fast64_t gen; /* bumped once per job */
    atomic_int done;          /* parts finished of the current job */
    uint64_t gen0;            /* gen when the workers were started */
    bool started;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int s_env_threads(void) {
    const char *v = getenv("TIS_THREADS");
    if (!v || !*v) v = getenv("OPENBLAS_NUM_THREADS");
    int n = v && *v ? atoi(v) : 0;
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

int pool_threads(void) { return P.want ? P.want : s_env_threads(); }

void pool_set_threads(int n) { P.want = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n; }

static void s_part(const job *j, int part) {
    int64_t per = (j->n + j->parts - 1) / j->parts;
    per = (per + j->grain - 1) / j->grain * j->grain;
    int64_t i0 = (int64_t)part * per, i1 = i0 + per < j->n ? i0 + per : j->n;
    if (i0 < i1) j->fn(j->ctx, i0, i1);
}

static void *s_worker(void *arg) {
    int id = (int)(intptr_t)arg; /* 1..n_workers */
    uint64_t seen = P.gen0;        /* jobs after the start are all ours, however late we run */
    for (;;) {
        /* the next matmul of a decode step comes within microseconds: spin
         * briefly, then yield the core (other processes of a pipeline share
         * it), then sleep until the generation moves */
        double t0 = tis_now(), waited = 0;
        uint64_t g;
        while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen && waited < SLEEP_AFTER_S) {
            if (waited > SPIN_S) sched_yield();
            waited = tis_now() - t0;
        }
        if (g == seen) {
            pthread_mutex_lock(&P.mu);
            while ((g = atomic_load(&P.gen)) == seen) pthread_cond_wait(&P.cv, &P.mu);
            pthread_mutex_unlock(&P.mu);
        }
        seen = g;
        job j = P.j;
        if (id < j.parts) s_part(&j, id);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
    }
    return NULL;
}

/* Starts the workers once (their number is fixed for the process; a later
 * pool_set_threads may use fewer of them). */
/* A forked child has only the forking thread: it starts its own workers. */
static void s_after_fork_child(void) {
    P.started = false;
    P.n_workers = 0;
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
}

static void s_start(int threads) {
    static bool atfork;
    if (!atfork) {
        pthread_atfork(NULL, NULL, s_after_fork_child);
        atfork = true;
    }
    P.started = true;
    P.gen0 = atomic_load(&P.gen);
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&P.tid[i], NULL, s_worker, (void *)(intptr_t)i) != 0) break;
        pthread_detach(P.tid[i]);
        P.n_workers++;
    }
}

void pool_for(int64_t n, int64_t grain, pool_fn fn, void *ctx) {
    if (grain < 1) grain = 1;
    int threads = pool_threads();
    if (!P.started && threads > 1) s_start(threads);
    /* Every started worker takes part in every job (so none can miss one):
     * a job too small for all of them, or fewer threads asked for than
     * started, runs here alone. */
    int parts = P.n_workers + 1;
    if (parts <= 1 || threads < parts || (n + grain - 1) / grain < parts) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    P.j = (job){fn, ctx, n, grain, parts};
    atomic_store(&P.done, 0);
    pthread_mutex_lock(&P.mu);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    s_part(&P.j, 0);
    /* the workers report; on a loaded machine one may not be running:
     * give it the core rather than spin against it */
    double t0 = tis_now();
    while (atomic_load_explicit(&P.done, memory_order_acquire) < P.n_workers)
        if (tis_now() - t0 > SPIN_S) sched_yield();
}
