/* eval_pipeline: tis eval's samples spread over pipeline prefill workers
 * (--workers N starts a private tis serve; --connect EP uses a running
 * one). Each sample is one eval job, run by eval_run_sample on a worker;
 * the rows come back in sample order, so the report is the in-process
 * one (timings aside). The rows' truncated flag is n_generated == the
 * sample's cap (the wire carries no flag): a stop rule that ends the answer
 * on its very last allowed token also counts, unlike in process. */
#ifndef TIS_EVAL_PIPELINE_H
#define TIS_EVAL_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"
#include "eval.h"
#include "report.h"
#include "secure.h"

typedef struct eval_pipeline_opts {
    const char *connect;      /* a running coordinator's front end, or NULL */
    sec_opts sec;             /* how to connect to a tcp one (serve/secure.h) */
    int64_t workers;          /* else: start a private serve with this many prefill workers */
    const char *model_path;   /* for the private workers */
    const char *model_name;   /* the client's model; workers with another refuse */
    const tokenizer *tok;     /* its tokenizer: each sample's answer cap when cfg->max_new is 0
                                 (eval_sample_max_new), sent with the job */
    const char *output;       /* the CSV (started by the caller): each sample's rows are
                                 appended as it finishes */
    const eval_row *keep;     /* rows from before (--resume): first in the result */
    int64_t n_keep;
    bool tty;
} eval_pipeline_opts;

/* Runs every sample of sets[0..n_sets); *rows gets them in sample order.
 * progress(done, total, elapsed, what) is called per finished sample. */
int eval_pipeline_run(const eval_pipeline_opts *o, const eval_config *cfg, const bench_set *sets, int n_sets,
                      eval_row **rows, int64_t *n_rows,
                      void (*progress)(int64_t done, int64_t total, double elapsed, const char *what, bool tty));

#endif
