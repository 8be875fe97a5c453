/* test_cuda_ipc: the GPU data plane between two processes: a pool exported
 * by one process is opened by another through its handle, bytes written by
 * one are read by the other after the interprocess event, offsets outside
 * the pool are refused. Skips (77) when built without CUDA or without a GPU
 * (CUDA is set up only after the fork: a forked CUDA context is unusable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include "cuda/cuda_ipc.h"
#include "cuda/cuda_probe.h"

enum { N = 1 << 20, OFF = 4096 };

static int s_child(int rd, int wr) {
    uint8_t msg[1 + 2 * CUDA_IPC_HANDLE_BYTES];
    if (read(rd, msg, sizeof msg) != (ssize_t)sizeof msg) return 3;
    if (msg[0] == 'S') return 77; /* the parent found no GPU */
    cuda_pool *p = NULL;
    cuda_ipc_event *ev = NULL;
    if (cuda_pool_open(&p, 0, msg + 1, 4 << 20) || cuda_ipc_event_open(&ev, 0, msg + 1 + CUDA_IPC_HANDLE_BYTES)) {
        fprintf(stderr, "child: %s\n", tis_last_error());
        return 4;
    }
    if (cuda_ipc_event_sync(ev)) return 5;
    uint32_t *buf = malloc(N * sizeof *buf);
    if (!buf || cuda_pool_read(p, OFF, buf, N * sizeof *buf)) return 6;
    for (uint32_t i = 0; i < N; i++)
        if (buf[i] != i * 2654435761u) return 7;
    for (uint32_t i = 0; i < N; i++) buf[i] = ~i;
    if (cuda_pool_write(p, OFF, buf, N * sizeof *buf)) return 8;
    if (cuda_pool_at(p, cuda_pool_size(p) - 8, 16) != NULL) return 9; /* outside */
    free(buf);
    cuda_ipc_event_destroy(&ev);
    cuda_pool_destroy(&p);
    uint8_t done = 'D';
    return write(wr, &done, 1) == 1 ? 0 : 10;
}
#endif

int main(void) {
#ifdef TIS_HAVE_CUDA
    int down[2], up[2];
    TT_CHECK(pipe(down) == 0 && pipe(up) == 0);
    pid_t pid = fork();
    if (pid == 0) _exit(s_child(down[0], up[1]));
    uint8_t msg[1 + 2 * CUDA_IPC_HANDLE_BYTES] = {'S'};
    char info[1024];
    if (cuda_probe(info, sizeof info) == 0) {
        TT_CHECK(write(down[1], msg, sizeof msg) == (ssize_t)sizeof msg);
        waitpid(pid, NULL, 0);
        printf("test_cuda_ipc: skipped: %s\n", info);
        return 77;
    }
    cuda_pool *p = NULL;
    cuda_ipc_event *ev = NULL;
    msg[0] = 'H';
    TT_OK(cuda_pool_create(&p, 0, 3 << 20, msg + 1));
    TT_CHECK(p && cuda_pool_size(p) == 4 << 20); /* rounded up to 2 MiB */
    TT_OK(cuda_ipc_event_create(&ev, 0, msg + 1 + CUDA_IPC_HANDLE_BYTES));
    uint32_t *buf = malloc(N * sizeof *buf);
    for (uint32_t i = 0; i < N; i++) buf[i] = i * 2654435761u;
    TT_OK(cuda_pool_write(p, OFF, buf, N * sizeof *buf));
    TT_OK(cuda_ipc_event_record(ev));
    TT_CHECK(write(down[1], msg, sizeof msg) == (ssize_t)sizeof msg);
    uint8_t done = 0;
    TT_CHECK(read(up[0], &done, 1) == 1 && done == 'D');
    int st = 0;
    waitpid(pid, &st, 0);
    TT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "child exit %d\n", WEXITSTATUS(st));
    TT_OK(cuda_pool_read(p, OFF, buf, N * sizeof *buf));
    int bad = 0;
    for (uint32_t i = 0; i < N; i++) bad += buf[i] != ~i;
    TT_CHECK(bad == 0); /* the other process's writes, seen here */
    TT_CHECK(cuda_pool_at(p, 1, (uint64_t)-1) == NULL);
    free(buf);
    cuda_ipc_event_destroy(&ev);
    cuda_pool_destroy(&p);
    return tt_done("test_cuda_ipc");
#else
    printf("test_cuda_ipc: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
