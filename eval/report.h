/* report: result rows of an evaluation and the files made from them:
 * per-sample CSV, JSON summary, Markdown report, PNG plots (gnuplot). */
#ifndef TIS_REPORT_H
#define TIS_REPORT_H

#include <stdbool.h>
#include <stdint.h>

/* One (sample, policy, budget, protocol) run: docs/design.md §7 columns. */
typedef struct eval_row {
    char benchmark[32];
    char policy[64];           /* a union "A|B" takes up to 63 characters */
    char protocol[16];       /* "agnostic" or "query_aware" */
    double budget;           /* fraction of context kept; -1 when given in tokens */
    int64_t budget_tokens;   /* absolute budget, -1 when a fraction */
    int64_t context_tokens;  /* real context length in tokens */
    int64_t target_tokens;   /* length asked of the generator (-1: dataset) */
    double depth;            /* -1 n/a */
    int64_t position;        /* -1 n/a */
    char sample_id[96];
    bool correct;            /* answer appears (normalised) */
    bool exact;              /* strict exact match of the extracted answer */
    bool hallucinated;
    char answer[256];        /* generated text, truncated */
    char expected[128];      /* first accepted answer */
    int64_t kept_tokens;     /* context entries kept, mean over (layer, kv-head) streams */
    int64_t kv_bytes;        /* bytes of the cache decode started from (measured) */
    int64_t full_kv_bytes;   /* same cache without compression (measured) */
    double prefill_s;        /* context prefill (shared by the policies of a sample) */
    double compress_s;       /* scoring + compaction */
    double decode_s;         /* question prefill + generation */
    double ttft_s;           /* prefill + compress + question prefill + first token */
    double tokens_per_s;     /* generated tokens / generation time after the first */
    int64_t n_generated;
    int64_t peak_rss_bytes;  /* process peak RSS when the row was written */
    double threshold;        /* adaptive budget: entries scoring >= threshold kept (budget and
                                budget_tokens -1 then); -1 for a fixed budget */
    int truncated;           /* 1: the generation ended at its cap (max_new), not at end of
                                generation or the stop rule, so the answer may be cut short;
                                0: it ended by itself; -1: unknown (a CSV from before the
                                column) */
    char kv_type[24];        /* the KV cache's element types the row ran with (kv_types_name:
                                "f16", "q8_0,q4_0"); "" unknown (a CSV from before the column) */
} eval_row;

/* What the report says about how it was made. */
typedef struct report_meta {
    const char *command;     /* the exact command line */
    const char *model;       /* model path */
    const char *title;       /* e.g. the output name */
    uint64_t seed;
    int threads;
    double wall_s;              /* this run's; a resumed run's kept rows took more */
    const char *const *changes; /* [n_changes] how the rows came to be since the command
                                   (resumed runs, rows added or renamed), oldest first: a
                                   "changes" array in the JSON, "Changed since:" in the Markdown */
    int64_t n_changes;
} report_meta;

/* Per-sample CSV with a header row (strings quoted as RFC 4180). */
int report_write_csv(const char *path, const eval_row *rows, int64_t n);

/* Appends rows to a CSV report_write_csv started, in one write: a long run
 * writes each sample's rows once instead of rewriting the file. On a failed
 * write the file is cut back to its old length. */
int report_append_csv(const char *path, const eval_row *rows, int64_t n);

/* Cuts a CSV back to the end of its last complete line (what an append
 * interrupted by a kill leaves); *cut receives the bytes dropped. */
int report_trim_csv(const char *path, int64_t *cut);

/* Reads a CSV written by report_write_csv: the header must name the 28
 * columns in order (or the first 25, 26 or 27: a CSV of an earlier version,
 * whose later columns read as unknown); numbers are parsed strictly; strings longer than their
 * eval_row field are cut on a UTF-8 character boundary. *rows is malloc'd
 * (NULL when *n is 0; the caller frees). TIS_EFORMAT with "FILE:LINE:
 * problem" on malformed input (LINE: where the record or field starts),
 * TIS_EIO when the file cannot be read; *rows = NULL, *n = 0 then. */
int report_read_csv(const char *path, eval_row **rows, int64_t *n);

/* Groups rows by (benchmark, protocol, policy, budget) and writes the JSON
 * summary and the Markdown report: accuracy, exact-match rate, retention vs
 * `full` (same benchmark and protocol), measured compression ratio
 * (sum full_kv_bytes / sum kv_bytes), KV MiB, TTFT, decode tokens/s,
 * throughput vs full, hallucination rate, n. md_path may be NULL. Plots
 * named in `plots` (may be NULL) are linked from the Markdown. */
int report_write_summary(const char *json_path, const char *md_path, const eval_row *rows,
                         int64_t n, const report_meta *meta, const char *const *plots,
                         int64_t n_plots);

/* Writes PNG plots with gnuplot next to `prefix`:
 * PREFIX_<bench>_<protocol>_accuracy.png (accuracy vs fraction budget, one
 * line per policy, full dashed), PREFIX_<bench>_<protocol>_accuracy_tokens.png
 * for token budgets, and for rows of benchmark "niah" (with depth and
 * target_tokens) one heatmap per protocol and budget label,
 * PREFIX_niah_<protocol>_heatmap_<budget>.png (<budget> e.g. 0.1 or
 * 128tok): a panel per policy (first-appearance order, `full` first in
 * every file), x = context length, y = depth, colour = accuracy on one
 * [0,1] scale with the numbers in the cells. `full` gets no file for its
 * own budget label unless it is the protocol's only policy. Name parts are
 * cut down to [A-Za-z0-9._-] (_2, _3... should two names still clash).
 * Returns the paths written (malloc'd array of malloc'd strings) in
 * *paths / *n_paths. TIS_EUNSUPPORTED when gnuplot is not installed (the
 * caller warns and goes on). */
int report_plots(const char *prefix, const eval_row *rows, int64_t n, char ***paths,
                 int64_t *n_paths);

/* Process peak resident set size in bytes (VmHWM), 0 if unknown. */
int64_t report_peak_rss(void);

#endif
