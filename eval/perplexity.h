/* perplexity: the model's perplexity on a text, computed as llama.cpp's
 * llama-perplexity computes it, so the two engines compare directly.
 *
 * The text is tokenised (with BOS when the model adds one) and cut into
 * n_ctx-token chunks (the tail that does not fill one is dropped); each
 * chunk runs from an empty cache with its first token replaced by BOS
 * (models that add one), and the negative log-likelihood is summed over
 * the tokens of its second half: logits at positions n_ctx/2 .. n_ctx-2
 * predicting tokens n_ctx/2+1 .. n_ctx-1. PPL = exp(mean NLL). */
#ifndef TIS_PERPLEXITY_H
#define TIS_PERPLEXITY_H

#include <stdint.h>

#include "forward.h"

typedef struct perplexity_result {
    int64_t n_tokens;   /* of the whole text */
    int64_t n_chunks;   /* evaluated */
    int64_t n_scored;   /* tokens whose NLL was summed */
    double nll;         /* mean negative log-likelihood (nats) */
    double ppl;         /* exp(nll) */
    double ppl_err;     /* standard error of ppl (delta method, as llama.cpp reports it) */
} perplexity_result;

/* Called after each chunk with the running result; may be NULL. */
typedef void (*perplexity_progress_fn)(void *user, int64_t chunk, int64_t n_chunks, const perplexity_result *so_far);

/* Perplexity of text[len] with chunks of n_ctx (>= 16) tokens, at most
 * max_chunks (<= 0: all). Errors: a text shorter than two chunks (as
 * llama-perplexity), out of memory, the forward pass's. */
int perplexity_run(forward_state *st, const char *text, size_t len, int64_t n_ctx, int64_t max_chunks,
                   perplexity_progress_fn progress, void *user, perplexity_result *out);

#endif
