/* pipeline_local: a private tis serve for --workers N. */
#include "pipeline_local.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tis_error.h"

int pipeline_local_start(pipeline_local *pl, int64_t workers, const char *model_path, const char *head,
                         const char *head_query, int64_t arena_mb) {
    memset(pl, 0, sizeof *pl);
    pl->pid = -1;
    snprintf(pl->dir, sizeof pl->dir, "/tmp/tis-local-XXXXXX");
    if (!mkdtemp(pl->dir)) {
        pl->dir[0] = 0;
        return tis_error(TIS_EIO, "cannot make a directory for the workers' sockets");
    }
    char back[128];
    snprintf(pl->front, sizeof pl->front, "ipc://%s/front", pl->dir);
    snprintf(back, sizeof back, "ipc://%s/back", pl->dir);
    pid_t pid = fork();
    if (pid < 0) return tis_error(TIS_EIO, "cannot start the workers: fork failed");
    if (pid > 0) {
        pl->pid = pid;
        return 0;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char th[32], nw[32], mb[32];
    snprintf(th, sizeof th, "%ld", cores / workers > 1 ? cores / workers : 1L);
    snprintf(nw, sizeof nw, "%lld", (long long)workers);
    snprintf(mb, sizeof mb, "%lld", (long long)arena_mb);
    if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", th, 1);
    const char *argv[32];
    int n = 0;
    argv[n++] = "tis";
    argv[n++] = "serve";
    argv[n++] = "--front", argv[n++] = pl->front;
    argv[n++] = "--back", argv[n++] = back;
    argv[n++] = "--prefill", argv[n++] = nw;
    argv[n++] = "--decode", argv[n++] = "0";
    argv[n++] = "--max_queue", argv[n++] = "1000000";
    argv[n++] = "--arena_mb", argv[n++] = mb;
    argv[n++] = "-m", argv[n++] = model_path;
    if (head) argv[n++] = "--head", argv[n++] = head;
    if (head_query) argv[n++] = "--head_query", argv[n++] = head_query;
    argv[n] = NULL;
    execv("/proc/self/exe", (char *const *)argv);
    _exit(127);
}

int pipeline_local_alive(pipeline_local *pl) {
    if (pl->pid <= 0) return 0;
    if (waitpid(pl->pid, NULL, WNOHANG) == pl->pid) {
        pl->pid = -1;
        return 0;
    }
    return 1;
}

void pipeline_local_stop(pipeline_local *pl) {
    if (pl->pid > 0) {
        kill(pl->pid, SIGTERM);
        waitpid(pl->pid, NULL, 0);
        pl->pid = -1;
    }
    if (pl->dir[0]) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/front", pl->dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/back", pl->dir);
        unlink(p);
        rmdir(pl->dir);
        pl->dir[0] = 0;
    }
}
