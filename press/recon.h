/* recon: query-agnostic importance by context reconstruction (KVzip, Kim
 * et al. 2025; docs/labels.md "Reconstruction labels").
 *
 * After prefix + context are cached, the model is asked to repeat the
 * context and is fed the context itself (teacher-forced), chunk by chunk:
 * for chunk i, a fork of the cache runs
 *
 *   i == 0:  lead ++ chunk_0                     (lead: "Repeat the previous
 *                                                 context exactly." + the end
 *                                                 of the user turn and the
 *                                                 assistant header)
 *   i >  0:  cont_head ++ last 8 tokens of chunk_{i-1} ++ cont_tail ++ chunk_i
 *
 * and is then dropped, so memory stays at one cache + one chunk. The score
 * of context token j in stream (layer l, kv head h) is the largest
 * attention probability it receives from any of those reconstruction
 * queries, over the query heads that share kv head h: a value in [0, 1],
 * comparable across streams (the softmax is the model's own, over every
 * cached entry and the reconstruction tokens before the query), which is
 * what global (all streams pooled) selection and thresholds need. */
#ifndef TIS_RECON_H
#define TIS_RECON_H

#include <stdint.h>

#include "forward.h"

/* The reconstruction request as tokens (all borrowed). */
typedef struct recon_prompt {
    const int32_t *lead;      /* [n_lead] before the first chunk */
    int64_t n_lead;
    const int32_t *cont_head; /* [n_cont_head] before the previous chunk's tail */
    int64_t n_cont_head;
    const int32_t *cont_tail; /* [n_cont_tail] after it, before the chunk */
    int64_t n_cont_tail;
} recon_prompt;

enum { RECON_CHUNK = 2048, RECON_OVERLAP = 8 };

/* Scores out[n_layer * n_kv_head][n_ctx] (caller-allocated) for the
 * context entries [ctx_begin, ctx_begin + n_ctx) of `kv`, an uncompressed
 * cache (entry i is position i) that is not changed; ctx_ids[n_ctx] are
 * the context's tokens; chunk: context tokens per reconstruction pass
 * (<= 0: RECON_CHUNK). copy[n_stream] (may be NULL) receives each
 * stream's copy score: over the repeated tokens, the mean attention that
 * the stream's most copying query head puts on the original entry of the
 * token it is about to repeat (a retrieval head's signature, in [0, 1]).
 * Errors: a compressed cache, a bad span, an empty
 * lead, out of memory, the forward pass's errors. */
int recon_compute(forward_state *st, const kv_cache *kv, int64_t ctx_begin, int64_t n_ctx,
                  const int32_t *ctx_ids, const recon_prompt *rp, int64_t chunk, float *out, float *copy);

#endif
