/* eval_job: what `tis eval` does once its options are parsed: the sample
 * set (generated benchmarks or a JSONL dataset; --export writes it and
 * stops), --resume (the complete samples already in the CSV are kept and
 * not run again), the run over every sample with a progress line, each
 * sample's rows appended to the CSV as it ends, and the report at the end
 * (CSV.json, CSV.md, CSV_*.png).
 *
 * Where the samples run is the caller's choice (eval_job_runner): in this
 * process (eval/eval.h: eval_runner_new + eval_run_sample) by default, or
 * anything that gives the same rows — the pipeline client of tis eval
 * --workers / --connect, which lives above this layer and is handed in by
 * the CLI.
 *
 * Also here: the pieces tis label and tis report share with it (the sample
 * set, the report, directories). */
#ifndef TIS_EVAL_JOB_H
#define TIS_EVAL_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "eval.h"
#include "model.h"
#include "report.h"

/* Progress after each sample: done of total, seconds since the start, a
 * word on the sample ("ID: full ok"); tty: redraw one line. */
typedef void (*eval_job_progress_fn)(int64_t done, int64_t total, double elapsed_s, const char *what, bool tty);

/* One run over the samples, as the job hands it to a runner (all borrowed). */
typedef struct eval_job_batch {
    const model *m;                /* loaded by the job */
    const char *model_path;        /* its file, for runners that load it elsewhere */
    const eval_config *cfg;        /* chat resolved against the model's template */
    const bench_set *sets;         /* [n_sets] the samples to run (resumed ones dropped) */
    int n_sets;
    const char *output;            /* the CSV, started with the rows kept: append each sample's
                                      rows as it ends (report_append_csv) */
    bool tty;                      /* stderr is a terminal */
    eval_job_progress_fn progress; /* call after each sample */
} eval_job_batch;

typedef struct eval_job_runner {
    /* Runs every sample of b. On entry *rows holds the rows kept from
     * before (--resume; malloc'd, room for *cap_rows, may be NULL); on
     * success it holds those followed by every sample's rows in sample
     * order (grown or replaced: the job frees what is there at the end).
     * On failure it prints the problem to stderr (a newline first when
     * b->tty, ending the progress line) and returns < 0. */
    int (*run)(void *ctx, const eval_job_batch *b, eval_row **rows, int64_t *n_rows, int64_t *cap_rows);
    void *ctx;
    const char *about;             /* appended to the start line (" | 4 workers"), or NULL */
    bool appends_unordered;        /* rows reach the CSV in the order samples finish: the job
                                      rewrites it in sample order at the end */
} eval_job_runner;

typedef struct eval_job_config {
    const char *model_path;
    const char *dataset;           /* a JSONL dataset, or NULL: the benchmarks */
    const char *const *benchmarks; /* [n_benchmarks] names of bench_names, or "litm" (= litm_kv +
                                      litm_qa); none and no dataset: passkey */
    int64_t n_benchmarks;
    bench_spec spec;               /* the generators' grid (name unused) */
    eval_config eval;              /* policies (full included), budgets, protocols, heads...;
                                      chat is dropped when the model has no chat template */
    const char *output;            /* PATH.csv; PATH.json, PATH.md and PATH_*.png beside it */
    bool resume;                   /* keep the complete samples already in output; run the rest */
    bool plots;                    /* gnuplot PNGs (none, with a warning, without gnuplot) */
    const char *export_path;       /* non-NULL: write the samples there as JSONL, and stop */
    const char *command;           /* the command line, for the report */
    int threads;                   /* BLAS threads in force, for the start line and the report */
    const eval_job_runner *runner; /* NULL: in this process */
} eval_job_config;

/* What can be checked before anything is loaded: not both a dataset and
 * benchmarks, the benchmark names, the policy names (press_parse) and the
 * heads the learned policies need. TIS_EINVAL with the message. */
int eval_job_check(const eval_job_config *c);

/* Runs the job; the start line, progress and the files written go to
 * stderr. Returns 0, or 1 after printing the problem to stderr (the model,
 * the dataset, a file that cannot be written, --resume on a CSV written
 * with other options: then the CSV is left as it was, a sample failing). */
int eval_job_run(const eval_job_config *c);

/* ---- shared with tis label and tis report ------------------------------ */

/* The samples: the JSONL dataset when given, else each benchmark generated
 * by spec over tok ("litm": litm_kv then litm_qa). *sets: [*n_sets],
 * malloc'd; release with eval_job_samples_free. Returns 0, or 1 after
 * printing the problem ("tis: loading the dataset: ..."). */
int eval_job_samples(const char *dataset, const char *const *benchmarks, int64_t n_benchmarks,
                     const bench_spec *spec, const tokenizer *tok, bench_set **sets, int *n_sets);
void eval_job_samples_free(bench_set **sets, int n_sets);

/* The report of rows that are in the CSV at csv: CSV.json and CSV.md
 * (report_write_summary), with plots CSV_*.png (gnuplot missing or failing
 * is a warning). meta->title NULL: csv less .csv. t0 >= 0: the run's start
 * (tis_now()): meta's wall_s is measured from it and the last line says
 * the time. who ("eval", "report") names the command in the messages.
 * Returns 0, or 1 after printing the problem. */
int eval_job_report(const char *who, const char *csv, const eval_row *rows, int64_t n, const report_meta *meta,
                    bool plots, double t0);

/* PATH.csv -> PATH<ext> (malloc'd; ext appended when PATH has no .csv). */
char *eval_job_csv_sibling(const char *path, const char *ext);
/* mkdir -p of a directory / of the directory that holds a file; 0 when it
 * is there after. */
int eval_job_mkdirs(const char *dir);
int eval_job_mkdirs_for(const char *file);
/* A whole file of at most max bytes into a NUL-terminated malloc'd buffer;
 * NULL with the error set when it cannot be read or is larger. */
char *eval_job_slurp(const char *path, size_t max);

#endif
