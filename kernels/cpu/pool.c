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
    int64_t n, grain, chunks;
} job;

/* A job's chunks [k*grain, (k+1)*grain) are taken one at a time from an
 * atomic counter by whoever is running: a worker the OS has not scheduled
 * (another process on the core) costs nothing but its help. A worker joins
 * a job by adding one to `state` unless the job is CLOSED; the caller
 * closes it once every chunk is taken and waits only for the workers that
 * joined (they are running), never for one that is asleep. */
#define CLOSED ((int_fast64_t)1 << 40)

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid[MAX_THREADS];
    int n_workers;            /* started (threads - 1) */
    int want;                 /* threads asked for (0: not decided) */
    job j;                    /* the current job (written while CLOSED) */
    atomic_uint_fast64_t gen; /* bumped once per job */
    atomic_int_fast64_t next; /* the next chunk to take */
    atomic_int_fast64_t state; /* CLOSED | workers inside the job */
    uint64_t gen0;            /* gen when the workers were started */
    bool started;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .state = CLOSED};

static int s_env_threads(void) {
    const char *v = getenv("TIS_THREADS");
    if (!v || !*v) v = getenv("OPENBLAS_NUM_THREADS");
    int n = v && *v ? atoi(v) : 0;
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

int pool_threads(void) { return P.want ? P.want : s_env_threads(); }

void pool_set_threads(int n) { P.want = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n; }

/* Takes chunks until none is left. */
static void s_chunks(const job *j) {
    for (;;) {
        int64_t k = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (k >= j->chunks) return;
        int64_t i0 = k * j->grain, i1 = i0 + j->grain < j->n ? i0 + j->grain : j->n;
        j->fn(j->ctx, i0, i1);
    }
}

static void *s_worker(void *arg) {
    (void)arg;
    uint64_t seen = P.gen0; /* jobs after the start are all ours, however late we run */
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
        /* join unless the job is closed (done, or being replaced) */
        if (atomic_fetch_add_explicit(&P.state, 1, memory_order_acq_rel) & CLOSED) {
            atomic_fetch_sub_explicit(&P.state, 1, memory_order_release);
            continue;
        }
        job j = P.j;
        s_chunks(&j);
        atomic_fetch_sub_explicit(&P.state, 1, memory_order_release);
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
    int64_t chunks = (n + grain - 1) / grain;
    /* fewer threads asked for than started (every started worker may join),
     * or a job of one chunk: here alone */
    if (P.n_workers == 0 || threads < P.n_workers + 1 || chunks < 2) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    /* the job is CLOSED here (no worker inside): publish it, open it */
    P.j = (job){fn, ctx, n, grain, chunks};
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    /* open it; a worker backing off from the last job may hold state at
     * CLOSED + 1 for an instant (it is running): wait for it */
    int_fast64_t closed = CLOSED;
    while (!atomic_compare_exchange_weak_explicit(&P.state, &closed, 0, memory_order_release, memory_order_relaxed))
        closed = CLOSED;
    pthread_mutex_lock(&P.mu);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    s_chunks(&P.j);
    /* every chunk is taken: close, then wait for those inside (running) */
    atomic_fetch_or_explicit(&P.state, CLOSED, memory_order_acq_rel);
    double t0 = tis_now();
    while (atomic_load_explicit(&P.state, memory_order_acquire) != CLOSED)
        if (tis_now() - t0 > SPIN_S) sched_yield();
}
