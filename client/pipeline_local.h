/* pipeline_local: a private `tis serve` (coordinator + N prefill workers,
 * no decode workers) for batch jobs run with --workers N, on ipc endpoints
 * in a fresh directory; the cores are shared out between the workers. */
#ifndef TIS_PIPELINE_LOCAL_H
#define TIS_PIPELINE_LOCAL_H

#include <stdint.h>
#include <sys/types.h>

typedef struct pipeline_local {
    pid_t pid;
    char dir[64];
    char front[128];
} pipeline_local;

int pipeline_local_start(pipeline_local *pl, int64_t workers, const char *model_path, const char *head,
                         const char *head_query, int64_t arena_mb);
/* 1 while it runs, 0 when it exited (its messages are on stderr). */
int pipeline_local_alive(pipeline_local *pl);
void pipeline_local_stop(pipeline_local *pl);

#endif
