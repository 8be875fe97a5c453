/* oracle: labels of how much the model really used each context token
 * (docs/design.md §5): the attention the answer tokens pay to context token j in a
 * full-context forward pass, summed over query heads and layers, normalised
 * over the context. Per-(layer, head) labels are kept too. */
#ifndef TIS_ORACLE_H
#define TIS_ORACLE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"

typedef struct oracle_labels {
    int64_t n_ctx, n_layer, n_head;
    float *total;     /* [n_ctx] sums to 1 (owned) */
    float *per_head;  /* [n_layer][n_head][n_ctx] each row sums to 1, or NULL (owned) */
    int64_t n_answer; /* answer tokens the labels come from */
} oracle_labels;

/* Runs answer[n_answer] after the prompt held in `full` (an uncompressed
 * cache whose entry i is position i, e.g. prefix + context + question) on a
 * fork of it (full is not changed) and collects the attention of the answer
 * rows to the context entries [ctx_begin, ctx_begin + n_ctx). */
int oracle_compute(forward_state *st, const kv_cache *full, int64_t ctx_begin, int64_t n_ctx,
                   const int32_t *answer, int64_t n_answer, bool per_head, oracle_labels *out);
void oracle_labels_free(oracle_labels *o);

/* Per-(layer, kv-head) labels: the per-head labels of the query heads that
 * share kv head h, summed: out[n_ctx]. Requires per_head. */
void oracle_labels_kv_head(const oracle_labels *o, int64_t layer, int64_t kv_head,
                           int64_t n_kv_head, float *out);

#endif
