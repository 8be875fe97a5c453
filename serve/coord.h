/* coord: the coordinator (docs/design.md §8): a ROUTER front end for clients and a
 * ROUTER back end for workers, one zmq_poll loop. Workers announce READY
 * per role and are handed only what they can take; a client's Submit goes
 * to a prefill worker (PrefillJob), its PrefillDone to a decode worker
 * (DecodeJob with the block's handle), the Reply back to the client, and
 * the block's lease is released; an EvalJob or LabelJob goes to a prefill
 * worker and its EvalDone or LabelDone back to the client. Every request id
 * is answered exactly once: with its answer, or with an Error (a worker's
 * failure, a dead worker after the retry cap, a malformed request); a full
 * queue answers Busy. Workers that stop sending heartbeats are dropped and
 * their requests retried. */
#ifndef TIS_COORD_H
#define TIS_COORD_H

#include <signal.h>
#include <stdint.h>

#include "secure.h"

typedef struct coord_opts {
    const char *front;        /* client endpoint, e.g. ipc:///tmp/tis-front */
    const char *back;         /* worker endpoint */
    int64_t max_queue;        /* requests waiting for a worker before Busy (default 64) */
    int64_t heartbeat_ms;     /* expected worker heartbeat period (default 1000) */
    int64_t liveness;         /* missed periods before an idle worker is dead (default 3) */
    int64_t job_timeout_ms;   /* silence allowed to a worker holding a job (default 600000);
                                 a worker whose process is gone is noticed at the next heartbeat */
    int64_t max_attempts;     /* tries per request before an Error (default 2) */
    int64_t wait_ms;          /* a request waiting this long for a worker of its stage's
                                 role, with none alive, is answered with an Error (default 30000) */
    int64_t lease_ms;         /* the workers' block lease: renewed every heartbeat for the blocks
                                 of requests still waiting for their consumer (default 30000) */
    int64_t context_ttl_ms;   /* a compressed context kept for later questions (Submit.keep_context)
                                 and unused this long is released (default 600000) */
    int64_t stop_after;       /* for tests: exit after this many answers (0: never) */
    const volatile sig_atomic_t *stop; /* when set to nonzero (by a signal handler: tis serve's when a worker
                                 cannot use its device), the coordinator stops as on SIGTERM; NULL: none */
    sec_opts sec;             /* who may connect (secure.h): the coordinator's key pair and the
                                 allow-list for tcp endpoints; insecure for tcp without keys */
} coord_opts;

/* Runs until SIGTERM / SIGINT (or stop_after answers): 0, or < 0 on a setup error. */
int coord_run(const coord_opts *o);

#endif
