/* eval: runs benchmark samples through compression policies and budgets in
 * one process (DESIGN §4, §7).
 *
 * Per sample: the prefix + context is prefilled once, observed (attention
 * statistics for the presses); the query-aware protocol continues that
 * cache with the question. The uncompressed run (`full`) gives the
 * reference answer; oracle labels come from the answer's attention in the
 * full-context pass. Then every policy x budget compresses a fork of the
 * shared cache, prefills what is left of the prompt, and decodes greedily.
 * Nothing is prefilled twice per budget. */
#ifndef TIS_EVAL_H
#define TIS_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"
#include "chat.h"
#include "model.h"
#include "press.h"
#include "report.h"

/* A sample's prompt as tokens: prefix (BOS, template, system) ++ context ++
 * suffix (question, assistant header, answer prefix). */
typedef struct eval_prompt {
    int32_t *ids;         /* [n] (owned) */
    int64_t n;
    int64_t ctx_begin;    /* context = [ctx_begin, ctx_begin + n_ctx) */
    int64_t n_ctx;
    int64_t suf_begin;    /* suffix = [suf_begin, n) */
} eval_prompt;

/* Tokenises a sample. With chat (and a template in ct), the user turn is
 * context + "\n\n" + question; without, the parts are joined by blank
 * lines. The parts are tokenised separately so the context span is exact. */
int eval_prompt_build(const tokenizer *tok, const chat_template *ct, bool chat,
                      const bench_sample *s, eval_prompt *out);
void eval_prompt_free(eval_prompt *p);

/* The first step of every sample and request: prefix + context prefilled
 * into a fresh uncompressed cache sized for the whole prompt (*kv), with
 * attention statistics in *obs (the agnostic window: the context's last
 * `window` tokens) and, when hid_layer >= 0, the hidden states entering
 * that layer. *secs: the prefill's wall time. On error *kv and *obs are
 * released. */
int eval_prefill_context(forward_state *st, const eval_prompt *p, int64_t window, int64_t hid_layer,
                         kv_cache **kv, press_obs *obs, double *secs);

/* The sample's first accepted answer as tokens that follow its prompt (a
 * leading space after an answer prefix that ends in a word). */
int eval_answer_ids(const tokenizer *tok, const bench_sample *s, int32_t **ids, int64_t *n);

typedef struct eval_config {
    const char *const *policies;   /* [n_policies] names for press_parse (full included) */
    int64_t n_policies;
    const double *budgets;         /* [n_budgets] fractions in (0, 1] */
    int64_t n_budgets;
    const int64_t *budget_tokens;  /* [n_budget_tokens] absolute budgets */
    int64_t n_budget_tokens;
    bool agnostic, query_aware;    /* protocols to run (at least one) */
    int64_t max_new;               /* tokens generated at most (stops at EOG or newline) */
    int64_t window;                /* observation window of the agnostic protocol */
    int64_t n_sink;                /* streaming sinks */
    uint64_t seed;
    bool chat;                     /* through the model's chat template */
    bool use_model_answer;         /* oracle from full's answer even when ground truth exists */
    const char *head_path;         /* importance head for `tis` (safetensors), or NULL */
    const char *head_query_path;   /* query-aware head for `tis_query`, or NULL */
    float attn_hook_lambda;        /* "+hook" policies: lambda; < 0: the checkpoint's */
    int64_t batch;                 /* policy runs decoded together (1: one at a time, so the
                                      timings are a single request's; more: faster sweeps,
                                      timings then describe the batch) */
} eval_config;

/* Defaults: max_new 16, window 64, n_sink 4, seed 42, chat, agnostic, batch 1,
 * attn_hook_lambda -1 (from the checkpoint). */
void eval_config_defaults(eval_config *c);

typedef struct eval_runner eval_runner;

/* Validates the policy names and budgets (clear errors) and sets up scratch. */
int eval_runner_new(eval_runner **out, const model *m, const eval_config *cfg);
void eval_runner_destroy(eval_runner **p);

/* Runs one sample through every protocol x policy x budget; appends the
 * rows to *rows (grown with realloc; *n_rows / *cap_rows updated). */
int eval_run_sample(eval_runner *r, const char *benchmark, const bench_sample *s,
                    eval_row **rows, int64_t *n_rows, int64_t *cap_rows);

/* The rows eval_run_sample gives every sample under cfg (so that a resumed
 * run can tell a sample whose rows were all written from one cut short). */
int eval_rows_per_sample(const eval_config *cfg, int64_t *n);

#endif
