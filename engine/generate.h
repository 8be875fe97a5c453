/* generate: prompt -> tokens with a sampler (tis generate), on the decoder. */
#ifndef TIS_GENERATE_H
#define TIS_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "decoder.h"
#include "forward.h"
#include "sampler.h"

typedef struct gen_params {
    int64_t max_new;   /* tokens to generate at most */
    bool stop_at_eog;  /* stop at the tokenizer's end-of-generation tokens */
} gen_params;

typedef struct gen_stats {
    int64_t n_prompt, n_new;
    double prefill_s;  /* prompt forward pass + picking the first token (time to first token) */
    double decode_s;   /* the remaining steps */
    bool stopped_eog;
} gen_stats;

/* Called with each new token; a non-zero return stops generation. */
typedef int (*gen_token_fn)(void *user, int32_t id);

/* Prefills prompt[n_prompt] into kv (appending at kv->n_past) and samples up
 * to max_new tokens into out[max_new] (may be NULL); an end-of-generation
 * token that stops it is the last of out and counted in n_new (it is not
 * passed to on_token). */
int generate(forward_state *st, kv_cache *kv, const model *m, sampler *smp,
             const int32_t *prompt, int64_t n_prompt, const gen_params *gp, int32_t *out,
             gen_token_fn on_token, void *user, gen_stats *stats);

#endif
