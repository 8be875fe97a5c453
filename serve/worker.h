/* worker: a pipeline worker process (docs/design.md §8): one actor, one zmq_poll
 * loop, a DEALER connected to the coordinator's back end. It announces
 * READY, sends heartbeats, answers every job with its result or an Error,
 * survives bad messages, and exits on Shutdown or SIGTERM (removing its
 * shared-memory arena).
 *
 *   prefill: PrefillJob -> tokenise, prefill, compress by the request's
 *            policy (request_prefill), copy the compressed cache as a flat
 *            block into its arena under a lease -> PrefillDone (BlockRef +
 *            KvLayout + the question tokens still to run).
 *   decode:  DecodeJob -> map the prefill worker's arena (once, cached),
 *            copy the block out; up to max_batch requests generate together
 *            (continuous batching: one batched forward pass per step, new
 *            requests join between steps) -> Reply each. */
#ifndef TIS_WORKER_H
#define TIS_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "devspec.h"
#include "secure.h"

typedef struct worker_opts {
    const char *role;          /* "prefill" or "decode" */
    const char *endpoint;      /* the coordinator's back end, e.g. ipc:///tmp/tis-back */
    const char *name;          /* worker id (ZeroMQ routing id, arena name) */
    const char *model_path;
    const char *head_path;     /* tis (prefill), or NULL */
    const char *head_query_path;
    const char *const *head_as; /* [n_head_as] "NAME=PATH": policy NAME is tis with that head
                                   (prefill, scorer; press_spec.h), or NULL */
    int64_t n_head_as;
    size_t arena_bytes;        /* prefill: shared-memory arena size */
    int64_t heartbeat_ms;      /* heartbeat period (default 1000) */
    uint32_t lease_ms;         /* lease of a block until its consumer renews (default 30000) */
    int64_t max_batch;         /* decode: requests generated together (default 8) */
    sec_opts sec;              /* a tcp endpoint: our key pair and the coordinator's public key */
    devspec device;            /* cpu, or cuda:N (checked by devspec_check before worker_run) */
} worker_opts;

/* Runs until Shutdown / SIGTERM (0) or a fatal setup error (< 0). */
int worker_run(const worker_opts *o);

#endif
