/* generate: prompt -> tokens with a model, a KV cache and a sampler. */
#ifndef TIS_GENERATE_H
#define TIS_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"

typedef struct gen_params {
    int64_t max_new;   /* tokens to generate at most */
    bool stop_at_eog;  /* stop at the tokenizer's end-of-generation tokens */
} gen_params;

typedef struct gen_stats {
    int64_t n_prompt, n_new;
    double prefill_s;  /* prompt forward pass (time to first token, minus sampling) */
    double decode_s;   /* the remaining steps */
    bool stopped_eog;
} gen_stats;

/* Called with each new token; a non-zero return stops generation. */
typedef int (*gen_token_fn)(void *user, int32_t id);

/* Prefills prompt[n_prompt] into kv (appending at kv->n_past) and samples up
 * to max_new tokens into out[max_new] (may be NULL). */
int generate(forward_state *st, kv_cache *kv, const model *m, sampler *smp,
             const int32_t *prompt, int64_t n_prompt, const gen_params *gp, int32_t *out,
             gen_token_fn on_token, void *user, gen_stats *stats);

/* Monotonic seconds. */
double tis_now(void);

#endif
