/* wire_jobs: the jobs a coordinator sends a worker, built on the stack and
 * sent in one call, for the tests that drive workers by hand (test_worker,
 * test_alloc_fault). The messages point into the caller's structs: nothing
 * is copied or kept after the send. */
#ifndef TIS_TT_WIRE_JOBS_H
#define TIS_TT_WIRE_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* A PrefillJob `id` for the request sub (outside_scores: the worker parks
 * it for a scorer). 0, or wire_send's error. */
int tt_send_prefill_job(void *sock, const wire_peer *peer, uint64_t id, Tis__Submit *sub, bool outside_scores);

/* A DecodeJob `id` for block kv of layout, the question's n_qids ids and
 * generation gp (what a PrefillDone names). 0, or wire_send's error. */
int tt_send_decode_job(void *sock, const wire_peer *peer, uint64_t id, Tis__BlockRef *kv, Tis__KvLayout *layout,
                       size_t n_qids, int32_t *qids, Tis__GenParams *gp);

#endif
