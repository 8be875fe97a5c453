/* train_job: what `tis train` does once its options are parsed: the
 * labelled samples of `tis label` directories read back (label_dir_read),
 * split by sample into training and validation, the importance head fitted
 * (press/head.h: forward, backward, Adam) with early stopping on the
 * validation loss, the best epoch's weights saved, per-epoch metrics to a
 * CSV and a gnuplot curve beside it.
 *
 * Features are RMS-normalised by the head, then standardised with the mean
 * and standard deviation of the training samples' rows (kept in the
 * checkpoint). The same config and labels give the same bytes.
 *
 * Recon labels (target recon): per_head trains n_layer * n_kv_head outputs
 * with recon_mse against ln(score), output biases starting at each stream's
 * mean target over the training samples; metrics add, besides the
 * per-stream recalls (averaged over streams), the global recall@10 %: of
 * the top 10 % of all (stream, token) scores pooled, the share the head's
 * pooled top 10 % finds (what a global allocation keeps). */
#ifndef TIS_TRAIN_JOB_H
#define TIS_TRAIN_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "head.h"

/* How a per-head recon head weighs its streams' squared errors: all alike,
 * or by 1 / sd (1 / variance) of the stream's training targets, normalised
 * to mean 1, so that a stream whose targets vary little (a copy layer,
 * where nearly every token is attended ~1) is fitted as closely, relative
 * to its spread, as the others. */
typedef enum head_stream_weights { STREAM_WEIGHTS_NONE, STREAM_WEIGHTS_INV_SD, STREAM_WEIGHTS_INV_VAR } head_stream_weights;

typedef struct train_job_config {
    const char *const *label_dirs; /* [n_label_dirs] directories tis label wrote (same model, layer) */
    int64_t n_label_dirs;
    const char *const *val_dirs;   /* [n_val_dirs] validation on these samples (same model, layer,
                                      target) instead of a share of label_dirs' (val_frac unused):
                                      heads trained on different sets compare on the same held-out
                                      samples. 0: split label_dirs by val_frac */
    int64_t n_val_dirs;
    const char *output;            /* the checkpoint (safetensors) */
    const char *metrics;           /* per-epoch CSV; NULL: OUTPUT less .safetensors + "_metrics.csv".
                                      The curve is the CSV's path with .png for its extension. */
    head_kind kind;
    bool query_aware;              /* the question's pooled feature too (for tis_query) */
    int64_t hidden;                /* mlp width */
    int64_t rank;                  /* bilinear rank of the query term */
    head_loss loss;                /* answer target (and recon single): listwise / bce_topk; a
                                      per-head recon head always trains with recon_mse */
    head_target target;            /* the labels' kind: answer (default) or recon (tis label --target
                                      recon); must be what the directories hold */
    bool per_head;                 /* recon: one output per (layer, kv head) stream (n_out = the
                                      labels' n_streams), else one score per token (labels: the
                                      streams' mean) */
    int64_t stream_begin, stream_end; /* per-head recon: train the outputs of streams [begin, end)
                                      only (at least 2; 0, 0: every stream). Such a head covers
                                      part of the model (n_out = end - begin, which
                                      head_check_model refuses for a tis policy): it measures
                                      what one layer's features predict for a group of streams
                                      (the per-layer head study, docs/head.md) */
    bool positions;                /* positional inputs (head_config.n_pos 2): the token's place in
                                      the context beside its hidden state; not with query_aware */
    bool repeats;                  /* repetition inputs (head_config.n_rep 2, head_repeats): needs
                                      the labels' token ids */
    head_stream_weights stream_weights; /* per-head recon: the weight of each stream's squared
                                      errors (train_job.c s_stream_weights) */
    int64_t label_lpool;           /* 0, or 2..63: each target becomes the maximum over its token and
                                      the label_lpool - 1 after it (per-head recon: every stream;
                                      training and validation alike), so the head learns the span press's
                                      +lpoolN applies to a score: a kept value brings its key */
    bool calibrate;                /* per-head recon: fit head.h's calibration on the training
                                      samples (docs/head.md "Calibration": off by default, it did
                                      not raise held-out accuracy) */
    float topk;                    /* bce_topk: the positives are each sample's top topk */
    int64_t epochs;                /* at most */
    int64_t batch;                 /* samples per Adam step */
    int64_t patience;              /* epochs without a better validation loss before stopping */
    float lr, weight_decay;        /* Adam; decoupled decay */
    float val_frac;                /* validation share, by sample (at least 1 when > 0) */
    int64_t seed;                  /* split, order and initial weights */
    const char *command;           /* recorded in the checkpoint (train_command), or NULL */
} train_job_config;

/* tis train's defaults: linear, hidden 256, rank 32, listwise, topk 0.1,
 * 20 epochs, batch 4, patience 3, lr 1e-3, no decay, val_frac 0.2, seed 42.
 * label_dirs and output are left NULL. */
void train_job_defaults(train_job_config *c);

/* Runs the job; progress and the result go to stderr. Returns 0, or 1
 * after printing the problem to stderr (labels unreadable or fewer than 2
 * samples, a file that cannot be written). */
int train_job_run(const train_job_config *c);

#endif
