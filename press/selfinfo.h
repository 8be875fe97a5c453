/* selfinfo: query-agnostic importance by self-information (Selective
 * Context, Li et al. 2023: keep what the model could not have predicted).
 *
 * The model reads prefix + context once more, in a cache of its own, with
 * the logits of every position: context token j's self-information is
 * -ln p(x_j | x_<j), in nats. Selective Context scores lexical units
 * rather than tokens; here a unit is a word, a run of tokens each of which
 * starts with a letter or digit (or a UTF-8 byte >= 0x80) right after one
 * that ends with one, and every token of a word scores the word's sum. A
 * made-up name says most in its first piece ("Tor" 5.6 nats, "quin" 7.8,
 * "burg" 7.9, "." 0.2 in a litm_qa fact), and a word is kept or dropped
 * whole. The same scores serve every (layer, kv head) stream: the context
 * comes before the question, so both protocols share them. Cost: one more
 * prefill with the output projection at every position (measured in
 * docs/results/recon). */
#ifndef TIS_SELFINFO_H
#define TIS_SELFINFO_H

#include <stdint.h>

#include "forward.h"
#include "tokenizer.h"

/* Rows of logits per forward_run call: memory stays at SELFINFO_CHUNK x
 * n_vocab floats. */
enum { SELFINFO_CHUNK = 128 };

/* Scores out[n_ctx] for the context ids[ctx_begin, ctx_begin + n_ctx) of
 * the prompt ids[0, ctx_begin + n_ctx): each token's word's summed
 * self-information (tok: the model's tokenizer, for the words; NULL: each
 * token alone). A context that starts the prompt (ctx_begin 0) has nothing
 * to predict its first token from: it scores as the largest of the others
 * (kept first, as a sink). The pass runs on st in a cache of its own (the
 * caller's caches are not touched). Errors: a bad span, out of memory,
 * the forward pass's errors. */
int selfinfo_compute(forward_state *st, const tokenizer *tok, const int32_t *ids, int64_t ctx_begin,
                     int64_t n_ctx, float *out);

/* The word sums alone, in place: nll[n] per token -> each token's word's
 * sum (tok as above; NULL leaves nll as is). */
void selfinfo_words(const tokenizer *tok, const int32_t *ids, int64_t n, float *nll);

#endif
