/* label_job: what `tis label` does once its options are parsed: the
 * samples (a JSONL dataset or generated benchmarks), the output directory
 * (DIR/label_config.json pins the settings; DIR/manifest.jsonl names the
 * samples done, which a rerun skips), every sample labelled in order and
 * written in shards of shard_size (label_shard_write: each shard in place
 * before its manifest lines, appended in one write + fsync), progress on
 * stderr.
 *
 * Where the samples are labelled is the caller's choice (label_job_runner):
 * in this process (label_run) by default, or anything that gives the same
 * labels in the same order — the pipeline client of tis label --workers /
 * --connect, which lives above this layer and is handed in by the CLI. */
#ifndef TIS_LABEL_JOB_H
#define TIS_LABEL_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "label.h"
#include "model.h"
#include "tokenizer.h"

/* Labels samples in the order given. Each entry prints its own problem to
 * stderr before returning < 0. */
typedef struct label_job_runner {
    /* Starts on todo[0..n) (borrowed until close) for model m (loaded by
     * the job) under cfg (layer and chat resolved against m). */
    int (*open)(void *ctx, const model *m, const label_config *cfg, const bench_sample *const *todo, int64_t n);
    /* The next sample's label: 0 (*ls filled, the caller's to free), 1
     * (skipped: why says so, e.g. no usable answer), < 0 (stop). */
    int (*next)(void *ctx, label_sample *ls, char *why, size_t why_cap);
    void (*close)(void *ctx);      /* after open, whatever happened; may be NULL */
    void *ctx;
    const char *about;             /* appended to the start line (" | 4 workers"), or NULL */
} label_job_runner;

typedef struct label_job_config {
    const char *model_path;
    const char *dataset;           /* a JSONL dataset, or NULL: the corpus or the benchmarks */
    const char *const *corpus;     /* [n_corpus] text files / directories (label_corpus_samples) */
    int64_t n_corpus;
    int64_t corpus_tokens;         /* tokens per corpus sample */
    int64_t corpus_max;            /* corpus samples at most (<= 0: all) */
    const char *const *benchmarks; /* [n_benchmarks] names of bench_names */
    int64_t n_benchmarks;
    bench_spec spec;               /* the generators' grid (name unused) */
    const char *outdir;            /* shards, manifest.jsonl, label_config.json */
    label_config label;            /* layer < 0: the model's n_layer; chat is dropped when the
                                      model has no chat template */
    int64_t shard_size;            /* samples per shard */
    const label_job_runner *runner; /* NULL: in this process */
    /* Called after each shard is in place and before its manifest lines
     * (tests kill the run there); may be NULL. */
    void (*on_shard)(void *user, int64_t shards_written);
    void *on_shard_user;
} label_job_config;

/* Reads DIR/manifest.jsonl (path): the ids already done, labelled or
 * skipped (*ids[*n_ids], each and the array malloc'd: the caller frees them,
 * after an error too), and the next shard number (1 + the largest
 * shard_index). A missing file is an empty manifest; a line that is not
 * an object with a string id, or a shard_index that is not an integer in
 * [0, 1e9): TIS_EFORMAT naming the line. */
int label_manifest_read(const char *path, char ***ids, int64_t *n_ids, int64_t *next_shard);

/* Plain text as samples: every regular file of paths (a file, or a
 * directory walked recursively, names sorted at each level; links to
 * directories are not followed), in that order, tokenised and cut into
 * pieces of ctx_tokens tokens (a last piece of at least half that is kept),
 * each decoded back to text as a sample's context, with a fixed neutral
 * question; at most max samples (<= 0: all). A file that is not UTF-8 text
 * (NUL bytes, invalid sequences, over 1 % control bytes) is skipped with a
 * line on stderr; only its first 8 MiB are read. Ids:
 * "corpus:<fnv32 of the path>:<its last 48 bytes>#<piece>". set is filled
 * (name "corpus"); TIS_ENOTFOUND when no piece was made. */
int label_corpus_samples(const char *const *paths, int64_t n_paths, const tokenizer *tok, int64_t ctx_tokens,
                         int64_t max, bench_set *set);

/* Runs the job. Returns 0; 1 after printing the problem to stderr (a file
 * or directory that cannot be read or written, labels made with other
 * settings in outdir, the runner failing); 2 after printing it when the
 * model cannot take the settings (a layer it does not have). A sample that
 * cannot be labelled is skipped and named in the manifest. */
int label_job_run(const label_job_config *c);

/* tis label --refeature SRC: every shard of SRC rewritten into outdir with
 * the features of `layer` (< 0: the model's n_layer), label_shard_refeature;
 * label_config.json carried over with the new layer, manifest.jsonl copied.
 * Resumable: a shard already in outdir is kept. 0, or 1/2 after printing
 * the problem. */
int label_refeature_run(const char *model_path, const char *src_dir, const char *outdir, int64_t layer);

#endif
