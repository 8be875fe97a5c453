/* eval: runs benchmark samples through compression policies and budgets in
 * one process, on the session (press/session.h) and the decoder (docs/design.md §6, §7).
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
#include "session.h"

/* A sample as the session's input (borrows the sample's strings). */
void eval_session_input(const bench_sample *s, session_input *in);

typedef struct eval_config {
    const char *const *policies;   /* [n_policies] names for press_parse (full included) */
    int64_t n_policies;
    const double *budgets;         /* [n_budgets] fractions in (0, 1] */
    int64_t n_budgets;
    const int64_t *budget_tokens;  /* [n_budget_tokens] absolute budgets */
    int64_t n_budget_tokens;
    bool agnostic, query_aware;    /* protocols to run (at least one) */
    int64_t max_new;               /* tokens generated at most (an answer also ends at EOG or the
                                      stop rule, engine/decoder.h); 0: from the task, per sample
                                      (eval_sample_max_new) */
    int64_t window;                /* observation window of the agnostic protocol */
    int64_t n_sink;                /* streaming sinks */
    uint64_t seed;
    bool chat;                     /* through the model's chat template */
    bool use_model_answer;         /* oracle from full's answer even when ground truth exists */
    const char *head_path;         /* importance head for `tis` (safetensors), or NULL */
    const char *head_query_path;   /* query-aware head for `tis_query`, or NULL */
    const char *const *head_as;    /* [n_head_as] "NAME=PATH": policy NAME is `tis` with the head
                                      at PATH, so several heads compare on one prefill per sample
                                      (each must read the layer the others read); or NULL */
    int64_t n_head_as;
    float attn_hook_lambda;        /* "+hook" policies: lambda; < 0: the checkpoint's */
    int64_t batch;                 /* policy runs decoded together (1: one at a time, so the
                                      timings are a single request's; more: faster sweeps,
                                      timings then describe the batch) */
    const double *thresholds;      /* [n_thresholds] adaptive budgets in (0, 1]: each stream keeps
                                      the context entries scoring at least tau; run for the
                                      policies with calibrated scores (kvzip, adakv:kvzip, tis
                                      with a per-head head), after their fixed budgets */
    int64_t n_thresholds;
} eval_config;

/* Room for a restated question before the answer, in tokens: the default
 * answer cap is the longest accepted answer's tokens + this (a model that
 * answers "The launch code of the Tamarind mission is 44249-ED" needs the
 * words before the value). */
enum { EVAL_ANSWER_ROOM = 32 };

/* The answer cap of sample s: cfg->max_new when given (> 0), else the
 * tokens of its longest accepted answer (tok, no BOS) + EVAL_ANSWER_ROOM
 * (just the room when it has none), at most 4096. Same for generated
 * benchmarks and datasets; every run of the sample (each policy, budget,
 * protocol, whatever it is batched with) decodes under it. */
int eval_sample_max_new(const eval_config *cfg, const tokenizer *tok, const bench_sample *s, int64_t *out);

/* Policy `name` under cfg: a --head_as NAME is the `tis` press renamed
 * NAME, *head_path its head; any other name is press_parse's, *head_path
 * cfg's head for tis / tis_query (NULL for the rest). head_path may be
 * NULL. TIS_EINVAL for a malformed --head_as entry (eval_check_head_as).
 * A union "A|B" (press_plan_compact_union: each stream keeps what the two
 * rankings put first, in turn) parses to a press named A|B that stands for
 * its row: what either member needs (oracle labels, reconstruction,
 * self-information; query-aware when one is), never calibrated, no head
 * (*head_path NULL: eval_union_parse gives the members' heads). */
int eval_press_parse(const eval_config *cfg, const char *name, press *out, const char **head_path);

/* The two members of union `name` ("A|B", at most 63 characters, each
 * member a policy of eval_press_parse's, not a union, not full, no +hook,
 * not the same twice) into *a and *b, their heads' paths (NULL for a
 * policy without a head; either pointer may be NULL). A learned member
 * without a head: TIS_EINVAL. */
int eval_union_parse(const eval_config *cfg, const char *name, press *a, press *b, const char **path_a,
                     const char **path_b);

/* The --head_as entries: NAME=PATH each, NAME of 1-31 characters from
 * [a-z0-9_], not a policy tis already knows, not given twice, and among
 * cfg->policies; PATH not empty. Clear errors (TIS_EINVAL). */
int eval_check_head_as(const eval_config *cfg);

/* Defaults: max_new 0 (from the task), window 64, n_sink 4, seed 42, chat, agnostic, batch 1,
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
