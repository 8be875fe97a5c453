/* generate: prompt -> tokens with a model, a KV cache and a sampler. */
#ifndef TIS_GENERATE_H
#define TIS_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
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

/* Short answers (benchmarks, labels): an answer ends at a newline after
 * some text, or at a sentence end (. ! ? followed by a blank). */
typedef struct answer_stop {
    bool text_seen;  /* a non-blank byte came */
    bool prev_end;   /* the last byte ended a sentence */
} answer_stop;

/* Feeds the bytes of one generated token; true once the answer has ended. */
bool answer_stop_feed(answer_stop *a, const char *bytes, int64_t n);

/* Cuts a decoded answer after its sentence end or at the newline that ended
 * it, and trims surrounding blanks, in place; returns the new length. */
size_t answer_trim(char *text, size_t len);

/* Greedy short answer: prefills q[nq] into kv, decodes until EOG, the end
 * of the answer (answer_stop) or max_new tokens. *ids (malloc'd, [*n]) are
 * the answer's tokens, *text (malloc'd) its trimmed text. */
int generate_answer(forward_state *st, kv_cache *kv, const model *m, const int32_t *q,
                    int64_t nq, int64_t max_new, int32_t **ids, int64_t *n, char **text);

/* What one greedy short answer from a prepared cache produced. */
typedef struct answer_out {
    char *text;           /* trimmed answer (malloc'd) */
    int32_t *ids;         /* [n_gen] generated tokens (malloc'd) */
    int64_t n_gen;
    double first_s;       /* question prefill + first token */
    double rest_s;        /* the other tokens */
    int64_t kv_bytes;     /* cache bytes when decoding started */
} answer_out;

/* Prefills q[i][nq[i]] into kvs[i] for G sequences in one batched pass,
 * then decodes them greedily in lockstep until each hits EOG, the end of
 * its answer (answer_stop) or max_new tokens; logits is scratch of
 * [G][n_vocab]. With G == 1 this is one request's plain decode (its timings
 * are that request's); the tokens do not depend on G beyond float
 * summation order. The single-process evaluation and the decode worker
 * both run this. */
int generate_answers(forward_state *st, const model *m, kv_cache **kvs, int64_t G,
                     const int32_t *const *q, const int64_t *nq, int64_t max_new, float *logits,
                     answer_out *d);

#endif
