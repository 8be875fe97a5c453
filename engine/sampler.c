/* sampler: greedy / temperature / top-p sampling. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "tis_error.h"

int sampler_init(sampler *s, int64_t n_vocab, float temp, float top_p, uint64_t seed) {
    s->n_vocab = n_vocab;
    s->temp = temp;
    s->top_p = top_p;
    s->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
    s->probs = NULL;
    s->idx = NULL;
    if (n_vocab <= 0) return tis_error(TIS_EINVAL, "sampler: empty vocabulary");
    if (!(top_p > 0 && top_p <= 1)) return tis_error(TIS_EINVAL, "sampler: top_p %g not in (0, 1]", (double)top_p);
    if (!(temp >= 0) || temp > 100) return tis_error(TIS_EINVAL, "sampler: temperature %g out of range", (double)temp);
    s->probs = malloc((size_t)n_vocab * sizeof(float));
    s->idx = malloc((size_t)n_vocab * sizeof(int32_t));
    if (!s->probs || !s->idx) {
        sampler_free(s);
        return tis_error(TIS_ENOMEM, "sampler: out of memory");
    }
    return 0;
}

void sampler_free(sampler *s) {
    free(s->probs);
    free(s->idx);
    s->probs = NULL;
    s->idx = NULL;
}

int32_t sampler_argmax(const float *logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

static double s_uniform(uint64_t *st) { /* [0, 1) */
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return (double)((*st * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static const float *s_cmp_probs;
static int s_cmp_desc(const void *a, const void *b) {
    float pa = s_cmp_probs[*(const int32_t *)a], pb = s_cmp_probs[*(const int32_t *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t sampler_sample(sampler *s, const float *logits) {
    int64_t n = s->n_vocab;
    if (s->temp <= 0) return sampler_argmax(logits, n);
    float mx = logits[sampler_argmax(logits, n)];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        s->probs[i] = expf((logits[i] - mx) / s->temp);
        sum += s->probs[i];
    }
    for (int64_t i = 0; i < n; i++) s->probs[i] = (float)(s->probs[i] / sum);
    double r = s_uniform(&s->rng);
    if (s->top_p >= 1.0f) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) {
            acc += s->probs[i];
            if (r < acc) return (int32_t)i;
        }
        return (int32_t)(n - 1);
    }
    /* Nucleus: only candidates that can be in the top-p set are sorted. A
     * member at rank k has p_k > (1-p)/(n-k+1) >= (1-p)/n, since the tokens
     * from rank k on carry more than 1-p of the mass. */
    float floor_p = (1.0f - s->top_p) / (float)n;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (s->probs[i] >= floor_p) s->idx[m++] = (int32_t)i;
    s_cmp_probs = s->probs;
    qsort(s->idx, (size_t)m, sizeof(int32_t), s_cmp_desc);
    double cum = 0;
    int64_t k = 0;
    while (k < m) {
        cum += s->probs[s->idx[k++]];
        if (cum >= s->top_p) break;
    }
    double acc = 0, target = r * cum;
    for (int64_t i = 0; i < k; i++) {
        acc += s->probs[s->idx[i]];
        if (target < acc) return s->idx[i];
    }
    return s->idx[k - 1];
}
