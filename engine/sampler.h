/* sampler: next-token choice from logits: greedy, or temperature + top-p
 * with a seeded generator (same seed, same tokens). */
#ifndef TIS_SAMPLER_H
#define TIS_SAMPLER_H

#include <stdint.h>

typedef struct sampler {
    int64_t n_vocab;
    float temp;        /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 = no nucleus cut */
    uint64_t rng;      /* xorshift64* state */
    float *probs;      /* [n_vocab] scratch (owned) */
    int32_t *idx;      /* [n_vocab] scratch (owned) */
} sampler;

int sampler_init(sampler *s, int64_t n_vocab, float temp, float top_p, uint64_t seed);
void sampler_free(sampler *s);
int32_t sampler_sample(sampler *s, const float *logits);
/* Index of the largest logit (first on ties). */
int32_t sampler_argmax(const float *logits, int64_t n);

#endif
