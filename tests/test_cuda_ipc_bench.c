/* test_cuda_ipc_bench: the CUDA IPC hand-off between two processes, timed
 * per block size (kernels/cuda/cuda_ipc; docs/design.md §9).
 *
 * A producer process owns a pool; a consumer opens its handle once (timed:
 * "open_ms", the cost the pipeline pays once per peer). Per hand-off the
 * producer writes the block on the device (cudaMemset, waited for: the
 * writes are not part of the hand-off), takes t0, records the interprocess
 * event and sends (size, t0) down a pipe; the consumer waits for the event
 * (host side), takes the block's device address in the pool (t1: the block
 * is usable in place), copies it into its own device buffer and waits (t2),
 * then checks the first and last bytes and answers. Reported per size, over
 * the repetitions: the median and 90th percentile of t1 - t0 (hand-off: a
 * pipe message + the event, expected constant whatever the size) and the
 * median of t2 - t1 with its rate (what a consumer that copies, or a
 * cudaMemcpyPeer across devices without P2P, would add). Both processes
 * read CLOCK_MONOTONIC (base/clock.h), one clock for the machine.
 *
 * As a ctest (no arguments): 4 KiB, 1 MiB and 64 MiB, 10 hand-offs each;
 * checks that every block arrives intact; timings are printed, never a pass
 * condition. As a benchmark: --sizes 4K,1M,... --reps N --csv PATH.
 * Skips (77) without CUDA or a GPU. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_ipc.h"
#include "cuda/cuda_probe.h"

enum { MAX_SIZES = 32 };

typedef struct hand {   /* producer -> consumer */
    uint64_t size;      /* 0: stop */
    uint32_t rep;
    double t0;
} hand;

typedef struct answer { /* consumer -> producer */
    double t1, t2;
    int ok;             /* 1: first and last bytes as written */
} answer;

static int s_full_read(int fd, void *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* The consumer: opens the pool and the event, then answers hand-offs. */
static int s_consumer(int rd, int wr) {
    uint8_t msg[1 + 2 * CUDA_IPC_HANDLE_BYTES + 8];
    if (s_full_read(rd, msg, sizeof msg)) return 3;
    if (msg[0] == 'S') return 77;
    uint64_t pool_bytes;
    memcpy(&pool_bytes, msg + 1 + 2 * CUDA_IPC_HANDLE_BYTES, 8);
    double t = tis_now();
    cuda_pool *p = NULL;
    cuda_ipc_event *ev = NULL;
    if (cuda_pool_open(&p, 0, msg + 1, pool_bytes) || cuda_ipc_event_open(&ev, 0, msg + 1 + CUDA_IPC_HANDLE_BYTES)) {
        fprintf(stderr, "consumer: %s\n", tis_last_error());
        return 4;
    }
    double open_ms = (tis_now() - t) * 1e3;
    void *own = NULL;
    if (cudaMalloc(&own, pool_bytes) != cudaSuccess) return 5;
    if (write(wr, &open_ms, sizeof open_ms) != (ssize_t)sizeof open_ms) return 6;
    for (;;) {
        hand h;
        if (s_full_read(rd, &h, sizeof h)) return 7;
        if (h.size == 0) break;
        answer a = {0};
        if (cuda_ipc_event_sync(ev)) return 8;
        void *blk = cuda_pool_at(p, 0, h.size);
        a.t1 = tis_now();
        if (!blk || cudaMemcpy(own, blk, h.size, cudaMemcpyDeviceToDevice) != cudaSuccess ||
            cudaDeviceSynchronize() != cudaSuccess)
            return 9;
        a.t2 = tis_now();
        uint8_t first = 0, last = 0;
        cudaMemcpy(&first, own, 1, cudaMemcpyDeviceToHost);
        cudaMemcpy(&last, (char *)own + h.size - 1, 1, cudaMemcpyDeviceToHost);
        a.ok = first == (uint8_t)(h.rep * 37 + 1) && last == first;
        if (write(wr, &a, sizeof a) != (ssize_t)sizeof a) return 10;
    }
    cudaFree(own);
    cuda_ipc_event_destroy(&ev);
    cuda_pool_destroy(&p);
    return 0;
}

static int s_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t s_parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'K': case 'k': v *= 1024; break;
    case 'M': case 'm': v *= 1048576; break;
    case 'G': case 'g': v *= 1073741824; break;
    default: break;
    }
    return v >= 1 ? (uint64_t)v : 0;
}

/* The producer's side of one size: reps hand-offs; prints and appends a CSV row. */
static void s_size(cuda_pool *p, cuda_ipc_event *ev, int rd, int wr, uint64_t size, int reps, double open_ms,
                   FILE *csv) {
    double *ho = calloc((size_t)reps, sizeof *ho), *cp = calloc((size_t)reps, sizeof *cp);
    int bad = 0;
    for (int r = 0; r < reps; r++) {
        TT_CHECK(cudaMemset(cuda_pool_at(p, 0, size), (int)(uint8_t)(r * 37 + 1), size) == cudaSuccess);
        TT_CHECK(cudaDeviceSynchronize() == cudaSuccess);
        hand h = {.size = size, .rep = (uint32_t)r, .t0 = tis_now()};
        TT_OK(cuda_ipc_event_record(ev));
        answer a;
        if (write(wr, &h, sizeof h) != (ssize_t)sizeof h || s_full_read(rd, &a, sizeof a)) {
            TT_CHECK(!"the consumer went away");
            break;
        }
        bad += !a.ok;
        ho[r] = (a.t1 - h.t0) * 1e6;
        cp[r] = (a.t2 - a.t1) * 1e6;
    }
    TT_CHECK(bad == 0); /* every block arrived as written */
    qsort(ho, (size_t)reps, sizeof *ho, s_cmp);
    qsort(cp, (size_t)reps, sizeof *cp, s_cmp);
    double h50 = ho[reps / 2], h90 = ho[(reps * 9) / 10 < reps ? (reps * 9) / 10 : reps - 1], c50 = cp[reps / 2];
    printf("| %12llu | %10.1f | %10.1f | %12.1f | %9.1f | %s\n", (unsigned long long)size, h50, h90, c50,
           c50 > 0 ? (double)size / (c50 * 1e-6) / 1e9 : 0.0, bad ? "CORRUPT" : "ok");
    if (csv)
        fprintf(csv, "%llu,%d,%.2f,%.2f,%.2f,%.3f,%.3f,%d\n", (unsigned long long)size, reps, h50, h90, c50,
                c50 > 0 ? (double)size / (c50 * 1e-6) / 1e9 : 0.0, open_ms, bad);
    free(ho), free(cp);
}

static int s_producer(int down, int up, const uint64_t *sizes, int n_sizes, int reps, const char *csv_path) {
    uint64_t big = 0;
    for (int i = 0; i < n_sizes; i++) big = sizes[i] > big ? sizes[i] : big;
    cuda_pool *p = NULL;
    cuda_ipc_event *ev = NULL;
    uint8_t msg[1 + 2 * CUDA_IPC_HANDLE_BYTES + 8] = {'H'};
    TT_OK(cuda_pool_create(&p, 0, big, msg + 1));
    TT_OK(cuda_ipc_event_create(&ev, 0, msg + 1 + CUDA_IPC_HANDLE_BYTES));
    if (!p || !ev) return 1;
    uint64_t pool_bytes = cuda_pool_size(p);
    memcpy(msg + 1 + 2 * CUDA_IPC_HANDLE_BYTES, &pool_bytes, 8);
    double open_ms = -1;
    TT_CHECK(write(down, msg, sizeof msg) == (ssize_t)sizeof msg);
    TT_CHECK(s_full_read(up, &open_ms, sizeof open_ms) == 0);
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    if (csv_path) TT_CHECK(csv != NULL);
    if (csv) fprintf(csv, "block_bytes,reps,handoff_us_p50,handoff_us_p90,copy_us_p50,copy_gbs,open_ms,corrupt\n");
    printf("consumer opened the pool and the event once in %.2f ms\n", open_ms);
    printf("| %12s | %10s | %10s | %12s | %9s |\n", "block bytes", "hand-off", "p90 (us)", "copy (us)", "GB/s");
    for (int i = 0; i < n_sizes && open_ms >= 0; i++) s_size(p, ev, up, down, sizes[i], reps, open_ms, csv);
    hand stop = {0};
    TT_CHECK(write(down, &stop, sizeof stop) == (ssize_t)sizeof stop);
    if (csv) fclose(csv);
    cuda_ipc_event_destroy(&ev);
    cuda_pool_destroy(&p);
    return 0;
}
#endif

int main(int argc, char **argv) {
#ifdef TIS_HAVE_CUDA
    uint64_t sizes[MAX_SIZES] = {4096, 1 << 20, 64 << 20};
    int n_sizes = 3, reps = 10;
    const char *csv = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_sizes < MAX_SIZES; tok = strtok(NULL, ","))
                if (!(sizes[n_sizes++] = s_parse_size(tok))) {
                    fprintf(stderr, "test_cuda_ipc_bench: bad size '%s'\n", tok);
                    return 2;
                }
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > 100000) return fprintf(stderr, "test_cuda_ipc_bench: bad --reps\n"), 2;
        } else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
            csv = argv[++i];
        } else {
            fprintf(stderr, "usage: test_cuda_ipc_bench [--sizes 4K,1M,64M] [--reps N] [--csv PATH]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN); /* a consumer that died: a failed write, not a killed test */
    int down[2], up[2];
    TT_CHECK(pipe(down) == 0 && pipe(up) == 0);
    fflush(stdout);
    pid_t pid = fork(); /* before any CUDA call: a forked CUDA context is unusable */
    if (pid == 0) _exit(s_consumer(down[0], up[1]));
    char info[1024];
    if (cuda_probe(info, sizeof info) == 0) {
        uint8_t skip[1 + 2 * CUDA_IPC_HANDLE_BYTES + 8] = {'S'};
        TT_CHECK(write(down[1], skip, sizeof skip) == (ssize_t)sizeof skip);
        waitpid(pid, NULL, 0);
        printf("test_cuda_ipc_bench: skipped: %s\n", info);
        return 77;
    }
    printf("%s", info);
    s_producer(down[1], up[0], sizes, n_sizes, reps, csv);
    int st = 0;
    waitpid(pid, &st, 0);
    TT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "consumer: exit status %d\n", WEXITSTATUS(st));
    return tt_done("test_cuda_ipc_bench");
#else
    (void)argc, (void)argv;
    printf("test_cuda_ipc_bench: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
