/* eval_rows: made-up evaluation rows for the report tests, the reference
 * rows of an in-process run for the pipeline tests, and the small QA
 * dataset those tests evaluate. */
#ifndef TIS_TT_EVAL_ROWS_H
#define TIS_TT_EVAL_ROWS_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"
#include "model.h"
#include "report.h"

/* A row with the fields the tests look at; the rest plausible. */
eval_row tt_eval_row(const char *bench, const char *proto, const char *policy, double budget,
                     int64_t budget_tokens, bool correct, int64_t kv, int64_t full_kv, double tps);

/* The rows the in-process runner gives for samples [0, n) of s with the
 * policies (the runner adds no `full` unless named), one fraction budget,
 * answers of at most 8 tokens, the head at head_path (NULL: none) and the
 * named heads head_as[n_head_as] ("NAME=PATH", eval's --head_as): what a
 * run through the workers must give. *rows is malloc'd (the caller frees);
 * 0, or the error of eval_runner_new / eval_run_sample. */
int tt_eval_reference(const model *m, const char *const *policies, int64_t n_policies, double budget,
                      const char *head_path, const char *const *head_as, int64_t n_head_as, const bench_sample *s,
                      int64_t n, eval_row **rows, int64_t *n_rows);

/* Writes a JSONL dataset of n samples "s0".."s<n-1>" to path, cycling
 * over three short contexts (two answered, one without answers). 0 or the
 * write's error. */
int tt_write_qa_dataset(const char *path, int n);

#endif
