/* forward: the transformer forward pass (batched prefill and incremental
 * decode are the same call) over a model, a backend and a KV cache. */
#ifndef TIS_FORWARD_H
#define TIS_FORWARD_H

#include <stdint.h>

#include "backend.h"
#include "kv.h"
#include "model.h"

/* Observers for what later stages need from a pass (oracle labels, presses,
 * importance-head features). Positions t are relative to the start of the
 * forward_run call. Any field may be NULL. */
typedef struct forward_hooks {
    /* Attention probabilities of query rows [t0, t0+nq) for query head
     * `head`: probs[nq][n_keys] over the stream's entries in cache order.
     * Called from the backend's threads: calls for different KV heads of
     * a layer may run at once; those of one KV head come from one thread,
     * in order (its query heads in turn, their rows in turn), so state kept
     * per KV head (or per query head) needs no lock. */
    void (*on_attn)(void *user, int64_t layer, int64_t head, int64_t t0, int64_t nq,
                    const float *probs, int64_t n_keys);
    /* Residual stream entering layer `layer` (layer == n_layer: after the last
     * layer, before the final norm) for rows [t0, t0+T): x[T][d_model]. */
    void (*on_hidden)(void *user, int64_t layer, int64_t t0, const float *x, int64_t T);
    void *user;
    /* > 0 and < n_layer: the pass stops once the residual stream entering
     * layer stop_layer is reported (features of an early layer cost that
     * layer's share of a pass). No logits then (n_logits must be 0), and
     * the cache holds layers < stop_layer only: use it for more calls with
     * the same stop_layer and for nothing else. 0: every layer. */
    int64_t stop_layer;
} forward_hooks;

typedef struct forward_state forward_state;

/* Scratch for batches of up to max_batch tokens (longer inputs are run in
 * chunks of max_batch).
 *
 * Residency: on a backend with its own memory (!backend_is_host(be), e.g.
 * cuda) the pass runs entirely there: the model must have been prepared
 * for it (model_to_backend; TIS_EINVAL otherwise), caches must live there
 * too (forward_kv_new_on), the step's embedded rows and positions go up,
 * and only the requested logits (and, when on_hidden is set, the hidden
 * states) come down. on_attn is refused (TIS_EUNSUPPORTED) by a backend
 * that cannot observe attention (tis_backend.cannot_observe). */
int forward_state_new(forward_state **out, const model *m, const tis_backend *be,
                      int64_t max_batch);
void forward_state_destroy(forward_state **p);

/* The model the state runs (borrowed). */
const model *forward_model(const forward_state *st);
/* The model's RoPE parameters as this state applies them (scaling folded
 * in; borrowed, valid while st lives). */
const rope_params *forward_rope_params(const forward_state *st);

/* A cache sized for this model with room for `cap` tokens per stream. */
int forward_kv_new(const model *m, int64_t cap, kv_cache **out);
/* The same in backend be's memory (a host cache for a host backend): what
 * a forward_state on be runs against. */
int forward_kv_new_on(const model *m, const tis_backend *be, int64_t cap, kv_cache **out);
/* The same for st's model in st's backend memory. */
int forward_state_kv_new(const forward_state *st, int64_t cap, kv_cache **out);

/* Runs tokens ids[T] at positions kv->n_past, kv->n_past+1, ... appending
 * their keys and values to kv. Writes the logits of the last n_logits
 * positions to logits[n_logits][n_vocab] (n_logits in 0..T). Errors: a
 * token id out of range, not enough room in the cache, TIS_ENOMEM for the
 * backend's scratch (the cache then holds the chunks of max_batch tokens
 * that completed, and is consistent). */
int forward_run(forward_state *st, kv_cache *kv, const int32_t *ids, int64_t T,
                float *logits, int64_t n_logits, const forward_hooks *hooks);

/* Several sequences in one pass (continuous batching): sequence i runs
 * ids[i][n_tok[i]] against its own cache kvs[i] (all distinct). Matrix
 * products are shared, so weights are read once per chunk of max_batch
 * rows; attention runs per sequence. Writes the logits of each sequence's
 * last token to logits[n_seq][n_vocab]. Same results as forward_run on each
 * sequence alone, up to floating-point summation order. No hooks. */
int forward_run_batch(forward_state *st, kv_cache *const *kvs, int64_t n_seq,
                      const int32_t *const *ids, const int64_t *n_tok, float *logits);

/* What the next passes compute, for the backend's arithmetic
 * (tis_backend.prompt_step): 1 prompt tokens (exact), 0 generated tokens
 * (fast), -1 (the default) decide by the step: a segment of more than one
 * token is prompt. The decoder says it per step: a sequence feeding its
 * prompt makes the step a prompt step, even for a one-token prompt tail. */
void forward_set_prompt(forward_state *st, int prompt);

#endif
