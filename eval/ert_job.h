/* ert_job: end-to-end fine-tuning of the importance head (`tis train
 * --target ert`, issue 15 item 5, docs/head.md "End-to-end fine-tuning").
 *
 * The regression head learned to predict labels (answer attention or
 * reconstruction scores); what matters is the answer the model gives from
 * the compressed cache. This job starts from such a head and lowers, on
 * generated training samples (never the held-out ones), the KL divergence
 * between the next-token distributions of the expected answer's tokens
 * with the full cache and with the cache the head compresses:
 *
 *   per sample, once: the agnostic prefill (prefix + context), the head's
 *     features of the context rows, the suffix (question, assistant header,
 *     answer prefix, then the expected answer teacher-forced) and the full
 *     cache's log-probabilities of each answer token (engine/backward.h);
 *   per step, a budget b from the list (cycling): the head's scores s, the
 *     threshold tau that keeps b of the context (per stream for a
 *     one-score head; pooled over streams for a per-head head, as the tis
 *     policy selects), and a soft eviction of every context entry:
 *         bias = log sigmoid(beta * (s - tau) / sd(s))
 *     (about 0 for what the head keeps, very negative for what it drops);
 *     the loss KL(full || biased) and its gradient with respect to every
 *     bias (engine/backward.h), through d bias / d s (tau and sd(s) held
 *     fixed) into the head's parameters (head_backward), Adam.
 * Validation: the same KL with the hard eviction the tis policy performs
 * (bias -1e4 on what the head drops), at every budget, on held-apart
 * samples; the epoch with the lowest mean is saved. Epoch 0 is the
 * starting head: the report compares the two directly. */
#ifndef TIS_ERT_JOB_H
#define TIS_ERT_JOB_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ert_config {
    const char *model_path;
    const char *init_head;            /* the head to start from (its model's) */
    const char *output;               /* the fine-tuned checkpoint */
    const char *metrics;              /* per-epoch CSV, or NULL: OUTPUT less .safetensors + _metrics.csv */
    const char *const *benchmarks;    /* [n_benchmarks] generated benchmarks to train on */
    int64_t n_benchmarks;
    int64_t context_tokens, n_samples; /* per benchmark */
    uint64_t seed;                    /* generators, split, order */
    const char *haystack;             /* NULL: the generators' default */
    int phrasing;
    const float *budgets;             /* [n_budgets] fractions of the context, cycled over steps */
    int64_t n_budgets;
    float beta;                       /* soft eviction sharpness (default 4) */
    float lr, weight_decay;           /* Adam (default 1e-4, 0) */
    int64_t epochs, batch, patience;  /* default 6, 4, 2 */
    float val_frac;                   /* default 0.25 */
    int64_t max_answer;               /* answer tokens kept per sample (default 16) */
    bool chat;                        /* through the model's template (default true) */
    const char *command;              /* recorded in the checkpoint */
} ert_config;

void ert_config_defaults(ert_config *c);

/* The soft eviction of one sample (exposed for tests): scores
 * [n_out][n_ctx] (n_out 1: one score per context token, shared by every
 * stream; else one per stream) give every context entry of kv (entry
 * ctx_begin + j of each stream is context token j) the bias
 * log sigmoid(beta (s - tau) / sd), and dsc its derivative w.r.t. the
 * score; hard (soft false): 0 above tau, -1e4 below (dsc unused, may be
 * NULL). Other entries get bias 0. */
struct kv_cache;
void ert_soft_bias(const struct kv_cache *kv, int64_t ctx_begin, int64_t n_ctx, const float *scores, int64_t n_out,
                   float tau, float sd, float beta, bool soft, float *bias, float *dsc);
/* ds[n_out][n_ctx] = d loss / d scores from d loss / d bias (dbias) and dsc
 * (summed over streams for a one-score head). */
void ert_scores_grad(const struct kv_cache *kv, int64_t ctx_begin, int64_t n_ctx, int64_t n_out, const float *dbias,
                     const float *dsc, float *ds);

/* Runs the job; progress and the per-epoch table on stderr. 0, or 1 after
 * printing the problem. */
int ert_job_run(const ert_config *c);

#endif
