/* label: oracle labels for whole datasets (docs/design.md §5, §10): the shards `tis
 * label` writes (label_shard_write) and `tis train` reads (label_dir_read).
 *
 * Per sample: one full-context forward pass over prefix + context +
 * question, with the hidden states of one layer kept for the context and
 * question rows (the importance head's features); the answer (ground truth,
 * or the model's own greedy answer) run after it gives the oracle labels.
 *
 * Shard format (safetensors, ragged arrays as flat tensors + offsets):
 *   sample_spans  I64 [n][4]   ctx_begin, n_ctx, suf_begin, n_tokens
 *   token_ids     I32 [sum n_tokens]         token_offsets  I64 [n+1]
 *   labels        F32 [sum n_ctx]            ctx_offsets    I64 [n+1]
 *   features      F16 [sum n_ctx][d_model]  (rows follow ctx_offsets)
 *   query_features F16 [sum n_q][d_model]   query_offsets  I64 [n+1]
 *   answer_ids    I32 [sum n_answer]         answer_offsets I64 [n+1]
 *   labels_per_head F32 [sum n_layer*H*n_ctx]  (with per_head; sample i holds
 *                 [n_layer][H][n_ctx] from n_layer*H*ctx_offsets[i]; H = label_heads)
 * metadata: format "tis-labels-1", model, d_model, n_layer, n_head, layer,
 * per_head, target ("answer" | "recon" | "selfinfo"), label_heads (H: n_head for answer
 * labels, n_kv_head for recon), sample ids / answers / answer sources as
 * JSON arrays. A shard without target / label_heads (written before them)
 * is an answer shard with H = n_head.
 *
 * Reconstruction labels (target recon, label_run_recon): the agnostic state
 * only (prefix + context; the question never runs, so query_features has 0
 * rows per sample and there is no answer); labels_per_head holds the raw
 * reconstruction scores (press/recon.h, in [0, 1]) of every (layer, kv head)
 * stream, always; labels is their per-token mean over streams normalised
 * to sum 1 (so that a single-score head can train on it too).
 *
 * Self-information labels (target selfinfo, label_run_selfinfo): the same
 * agnostic state and features; labels is each context token's word
 * self-information (press/selfinfo.h: Σ -ln p over the word's tokens, the
 * selfinfo press's score) normalised to sum 1; no per-head labels.
 *
 * A manifest (manifest.jsonl, one line per sample) names each sample's
 * shard and index; shards are written atomically before their lines. */
#ifndef TIS_LABEL_H
#define TIS_LABEL_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"
#include "chat.h"
#include "forward.h"
#include "head.h"

typedef struct label_config {
    int64_t layer;          /* features: residual stream entering this layer
                               (n_layer: after the last layer, before the final norm) */
    bool per_head;          /* keep per-(layer, head) labels too */
    bool use_model_answer;  /* label with the model's own answer even when one is given */
    int64_t max_new;        /* the model's answer: tokens at most */
    bool chat;              /* through the model's chat template */
    head_target target;     /* answer attention (label_run), reconstruction (label_run_recon;
                               per_head is then implied) or self-information (label_run_selfinfo) */
} label_config;

typedef struct label_sample {
    char id[96];
    int32_t *ids;           /* [n_tokens] the whole prompt (owned, as all below) */
    int64_t n_tokens, ctx_begin, n_ctx, suf_begin;
    float *labels;          /* [n_ctx], sums to 1 */
    float *labels_per_head; /* [n_layer][H][n_ctx] or NULL (H: n_head, or n_kv_head for recon) */
    uint16_t *features;     /* f16 [n_ctx][d_model] */
    uint16_t *query_features; /* f16 [n_q][d_model]: n_q = n_tokens - suf_begin, or 0 for recon */
    bool no_query;          /* recon: the question's rows were never computed (n_q = 0) */
    double seconds;         /* labelling time (prefill + labels) */
    int32_t *answer_ids;    /* [n_answer] */
    int64_t n_answer;
    char *answer;           /* text */
    bool answer_from_model;
} label_sample;

/* Labels one sample. Errors: a prompt the tokenizer cannot split, an answer
 * that encodes to nothing (the sample has no usable answer). */
int label_run(forward_state *st, const chat_template *ct, const label_config *cfg,
              const bench_sample *s, label_sample *out);
/* Reconstruction labels of one sample (cfg->target recon): a session with
 * the agnostic state only, session_recon on it. The question is only part
 * of the prompt's layout (it is never run). */
int label_run_recon(forward_state *st, const chat_template *ct, const label_config *cfg,
                    const bench_sample *s, label_sample *out);
/* Self-information labels of one sample (cfg->target selfinfo): the same
 * agnostic state, then selfinfo_compute on the prompt (one more pass with
 * every position's logits, in a cache of its own). */
int label_run_selfinfo(forward_state *st, const chat_template *ct, const label_config *cfg,
                       const bench_sample *s, label_sample *out);
void label_sample_free(label_sample *ls);

/* Writes samples [n] as one shard (atomically). */
int label_shard_write(const char *path, const model *m, const label_config *cfg,
                      const label_sample *ls, int64_t n);

/* The shard src rewritten as dst with the features of another layer (the
 * residual stream entering `layer`, n_layer: after the last): one forward
 * pass over each sample's stored prompt tokens (up to the end of the
 * context when the question never ran, as for recon labels); every other
 * tensor and metadata entry is copied, `layer` set. The labels do not
 * depend on the features' layer, so they are kept, not recomputed: a
 * per-layer head trains on one labelling pass. TIS_EFORMAT: not a shard,
 * spans / offsets that do not fit; TIS_EINVAL: labelled for another model
 * or a layer the model lacks. */
int label_shard_refeature(forward_state *st, const char *src, const char *dst, int64_t layer);

/* ---- reading shards back (tis train) ---------------------------------- */

/* One sample of a shard, as f32. */
typedef struct label_record {
    int64_t n_ctx;          /* context tokens */
    float *labels;          /* [n_ctx] oracle labels (owned, as the arrays below) */
    float *features;        /* [n_ctx][d_model] hidden states, not normalised; a
                               caller may take it (and set it NULL) */
    float *query_features;  /* [n_q][d_model] the question's rows (likewise) */
    int64_t n_q;
    float *labels_per_head; /* [n_streams][n_ctx] raw recon scores (recon shards), else NULL */
    int32_t *ctx_ids;       /* [n_ctx] the context's token ids (a head's repetition inputs), or
                               NULL when the shard's token_ids / sample_spans do not give them */
} label_record;

/* The samples of one or more label directories, all labelled for the same
 * model, layer and width. */
typedef struct label_records {
    label_record *s;        /* [n] (owned) */
    int64_t n, cap;
    int64_t d_model, layer; /* of the first shard read (0, 0 before) */
    char model[128];
    uint64_t hash;          /* FNV-1a 64 over each shard's sample ids and labels, in
                               reading order: the label set's fingerprint */
    head_target target;     /* of the first shard read; the others must agree */
    int64_t n_streams;      /* recon: n_layer * label_heads (each record's labels_per_head
                               rows); 0 for answer shards */
} label_records;

void label_records_init(label_records *r);
void label_records_free(label_records *r);

/* Appends one shard's samples. TIS_EFORMAT: not a tis-labels-1 shard, a
 * tensor missing or of another dtype / rank, offsets that do not fit the
 * tensors; TIS_EINVAL: labelled for another model, layer, d_model, target
 * or stream count than the shards read before; I/O errors from st_open. On error r keeps the
 * samples read before. */
int label_shard_read(const char *path, label_records *r);

/* Appends every DIR/shard-*.safetensors in name order. TIS_ENOTFOUND when
 * there is none, TIS_EIO when DIR cannot be listed. */
int label_dir_read(const char *dir, label_records *r);

/* Every record's per-stream recon scores pooled to the left over span
 * tokens: labels_per_head[o][j] becomes the maximum of [o][j .. j + span
 * - 1] (within the record), the span press's +lpoolN gives a score (tis
 * train --label_lpool). Records without per-stream scores are left as
 * they are; span < 2 changes nothing. */
void label_records_pool_left(label_records *r, int64_t span);

/* The names of DIR's shard-*.safetensors, sorted (*names[*n], each and the
 * array malloc'd: the caller frees them). Errors as label_dir_read's. */
int label_dir_shards(const char *dir, char ***names, int64_t *n);

/* IEEE half <-> f32 (round to nearest even; beyond +-65504 saturates, so a
 * feature never becomes infinite). Features are f16 so that numpy reads
 * them (safetensors.numpy has no bf16). */
uint16_t label_f16(float x);
float label_f32(uint16_t h);

#endif
