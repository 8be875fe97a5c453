/* head: the importance head (docs/design.md §5, §11): a small network that maps the
 * hidden state of one layer at a context token to an importance logit,
 * optionally query-aware; forward, backward, Adam, losses, checkpoint.
 *
 * Features: f = standardise(rmsnorm(h)), h the residual stream of layer
 * `layer` (no norm weight; standardise = (x - mean) / std per dimension, with
 * mean/std measured on the training features and stored in the checkpoint).
 * A head with positional inputs (n_pos 2) appends, before standardising,
 * the token's place in the context: 10 j / n and ln(1 + j), j its index
 * among the context's n tokens (docs/head.md "What the head lacks"); its
 * feature width is d_model + 2 (head_feat_dim), the width of fc1 / a
 * linear out_proj / query_proj / key_proj and of feature_mean / std.
 * A head with repetition inputs (n_rep 2) appends after them two flags
 * computed from the context's token ids (head_repeats): whether the
 * text around token j occurs at an earlier / a later place in the
 * context. The second looks ahead (the features are otherwise causal): a
 * copy layer's reconstruction attention splits over repeated text and
 * goes to its later copy (docs/head.md "Repeated text").
 *
 *   linear:  s_j = w . f_j + b
 *   mlp:     s_j = w2 . relu(W1 f_j + b1) + b2
 *   query-aware (either kind) adds a low-rank bilinear term with the
 *   question's pooled feature q (mean of the question rows' features):
 *            s_j += (Pk f_j) . (Pq q) / sqrt(rank)
 *
 * Per-head heads (n_out > 1): the same trunk (linear: none; mlp: relu(W1 f_j
 * + b1)) feeds n_out output units, s_{o,j} = w_o . a_j + b_o, one per
 * (layer, kv head) stream; the query-aware term (if any) is shared by all
 * outputs. Scores are laid out stream-major: s[o * n + j].
 *
 * Checkpoint (safetensors), tensor names as the reference checkpoint's:
 *   importance_head.out_proj.weight [n_out][d_in]   (d_in = d_model, or hidden for mlp)
 *   importance_head.out_proj.bias   [n_out]
 *   importance_head.fc1.weight      [hidden][d_model]   (mlp)
 *   importance_head.fc1.bias        [hidden]            (mlp)
 *   importance_head.query_proj.weight [rank][d_model]   (query-aware)
 *   importance_head.key_proj.weight   [rank][d_model]   (query-aware)
 *   importance_head.feature_mean    [d_model]
 *   importance_head.feature_std     [d_model]
 *   attn_hook_lambda                [1]
 *   importance_head.calib_pred      [n_out][K]  (optional, both or neither: the
 *   importance_head.calib_target    [n_out][K]   calibration's knots, K >= 2)
 * metadata: format "tis-head-1", kind (linear|mlp), query_aware (0|1),
 * base_model, d_model, layer, hidden, rank, feature_norm
 * ("rmsnorm+standardise"), label_hash, train_command, n_out, target
 * ("answer" | "recon"), positions (0 | 2). A checkpoint without n_out /
 * target / positions (written before they existed) loads as n_out 1,
 * target answer, positions 0. importance_embedding.*
 * tensors (a reference component tis does not use) are ignored on load. */
#ifndef TIS_HEAD_H
#define TIS_HEAD_H

#include <stdbool.h>
#include <stdint.h>

typedef enum head_kind { HEAD_LINEAR = 0, HEAD_MLP = 1 } head_kind;

/* What the head was trained to predict: the answer-attention oracle labels
 * (a ranking within the context: listwise / bce_topk), reconstruction
 * scores (press/recon.h: the outputs predict ln(score)), or the word
 * self-information (press/selfinfo.h; one output, a ranking as for answer
 * labels: Selective Context's score without its second pass). */
typedef enum head_target { HEAD_TARGET_ANSWER = 0, HEAD_TARGET_RECON = 1, HEAD_TARGET_SELFINFO = 2 } head_target;

/* "answer", "recon", "selfinfo" ("?" for another value). */
const char *head_target_name(head_target t);
/* The target named `name` into *t; false (and *t untouched) for any other name. */
bool head_target_parse(const char *name, head_target *t);

typedef struct head_config {
    head_kind kind;
    bool query_aware;
    int64_t d_model;
    int64_t hidden;        /* mlp width (ignored for linear) */
    int64_t rank;          /* bilinear rank when query_aware (default 32) */
    int64_t layer;         /* the base model layer the features come from */
    char base_model[128];  /* the base model's name (model_config.name) */
    int64_t n_out;         /* scores per token: 1 (one importance per token, the same in every
                              stream), or n_layer * n_kv_head (one per (layer, kv head) stream,
                              stream s = layer * n_kv_head + kv_head): a per-head head, trained on
                              reconstruction labels, whose outputs predict ln(recon score)
                              (press/recon.h), so that exp(output) is on the scale of kvzip's
                              scores. 0 in a config means 1; at most 65536. */
    head_target target;    /* recorded in the checkpoint; the numerics do not depend on it */
    int64_t n_pos;         /* positional inputs appended to the features: 0, or 2 (10 j/n and
                              ln(1 + j)); not with query_aware */
    int64_t n_rep;         /* repetition inputs after them: 0, or 2 (head_repeats); not with
                              query_aware */
} head_config;

/* Parameters live in one flat array so Adam and gradient checks see one
 * vector; the named pointers are views into it. */
typedef struct head {
    head_config cfg;
    float *params;         /* [n_params] (owned) */
    int64_t n_params;
    float *w_out;          /* [n_out][d_in] */
    float *b_out;          /* [n_out] */
    float *w1, *b1;        /* [hidden][d_model], [hidden] (mlp) */
    float *pq, *pk;        /* [rank][d_model] each (query-aware) */
    float *mean, *std;     /* [d_model] feature normalisation (not trained) */
    float attn_hook_lambda;
    char label_hash[80];
    char train_command[1024];
    float *calib_x, *calib_y; /* [n_out][n_calib] each, or NULL (owned): a per-head head's
                                 calibration (head_calibrate) */
    int64_t n_calib;          /* knots per output, 0 when none */
} head;

/* A head with seeded small random weights, mean 0 / std 1. */
int head_new(head **out, const head_config *cfg, uint64_t seed);
void head_destroy(head **p);

/* Number of trained parameters (everything but mean/std): the prefix of
 * params that Adam updates. */
int64_t head_n_trained(const head *h);

/* The feature width: d_model + n_pos + n_rep. */
int64_t head_feat_dim(const head *h);

/* The span of tokens head_repeats compares. */
#define HEAD_REP_K 8
/* out[n][2]: for each token j of ids[n], 1 when one of the HEAD_REP_K-token
 * windows that contain j occurs (the same ids) at an earlier start [0] /
 * a later start [1] in ids, else 0; a context shorter than HEAD_REP_K has
 * none. O(n) expected (hashing), exact (windows are compared). TIS_ENOMEM. */
int head_repeats(const int32_t *ids, int64_t n, float *out);

/* f[n][head_feat_dim] = standardise(rmsnorm(x[n][d_model]) (+ positions)
 * (+ repetitions)) with the head's mean/std. x is a context's rows 0..n-1
 * in order (a head with positional inputs takes row i as the context's
 * token i of n); ids[n] the context's token ids, needed (and only read)
 * when the head has repetition inputs. TIS_EINVAL without them, TIS_ENOMEM. */
int head_features(const head *h, const float *x, const int32_t *ids, int64_t n, float *f);

/* The query vector: mean over rows of head_features(xq[nq][d]) -> q[d]. */
void head_query(const head *h, const float *xq, int64_t nq, float *q);

/* Scores s[n_out][n] (stream-major) for normalised features f[n][d]; q[d]
 * (query-aware only, else NULL). Scratch is allocated inside. */
int head_forward(const head *h, const float *f, int64_t n, const float *q, float *s);

/* Scores of the context rows [ctx_begin, ctx_begin + n_ctx) of hidden
 * states hid[][d_model] (rows by position, as captured in a prefill): raw
 * features normalised, the query vector pooled from the rows
 * [q_begin, q_begin + n_q) when the head is query-aware. out[n_out][n_ctx],
 * through the calibration when the head has one. ctx_ids[n_ctx]: the
 * context's token ids (a head with repetition inputs needs them; else
 * NULL will do). */
int head_score_context(const head *h, const float *hid, const int32_t *ctx_ids, int64_t ctx_begin,
                       int64_t n_ctx, int64_t q_begin, int64_t n_q, float *out);

/* Calibration of a per-head head (docs/head.md "Calibration"). Trained
 * by squared error on ln(score), the outputs regress toward each stream's
 * mean: their within-stream order is right more often than their level
 * across streams, and a selection pooled over streams at a small budget
 * (the top 1 % of every stream's tokens together) goes to the wrong
 * streams. The calibration is a map per output, monotone and strictly
 * increasing (so each stream's order is kept), that sends the quantiles of
 * the output's predictions on the training tokens to the quantiles of its
 * targets there: piecewise linear through n_calib knots (x_k, y_k) at the
 * probabilities 1 - (1 - k / (n_calib - 1))^2 (dense in the upper tail,
 * where small budgets select), slope 1 beyond the end knots.
 *
 * head_calibrate: pred and target are [n_out][n] (stream-major: the
 * outputs and ln targets of the same n training tokens; both are sorted in
 * place, per row); sets HEAD_CALIB_KNOTS knots. TIS_EINVAL for a
 * single-score head, n < 2 or a non-finite value. */
enum { HEAD_CALIB_KNOTS = 128 };
int head_calibrate(head *h, float *pred, float *target, int64_t n);
/* Drops the calibration (the outputs are then used as they are). */
void head_uncalibrate(head *h);
/* s[n_out][n] through the calibration, in place (nothing without one). */
void head_apply_calibration(const head *h, float *s, int64_t n);

/* Accumulates into grad[n_params] the gradient of sum_{o,j} ds[o*n+j] *
 * s_{o,j} for the same inputs (backprop of a loss whose derivative w.r.t. s
 * is ds[n_out][n]). */
int head_backward(const head *h, const float *f, int64_t n, const float *q, const float *ds,
                  float *grad);

typedef enum head_loss { LOSS_LISTWISE = 0, LOSS_BCE_TOPK = 1, LOSS_RECON_MSE = 2, LOSS_RECON_RANK = 3 } head_loss;

/* Loss of scores s[n] against oracle labels y[n] (summing to 1) and its
 * derivative ds[n]:
 *   listwise: cross-entropy between y and softmax(s);
 *   bce_topk: binary cross-entropy with logits, targets 1 for the top
 *             `topk_frac` of y (at least one), positives weighted so both
 *             classes count equally; mean over the n tokens;
 *   recon_mse: y are raw reconstruction scores in [0, 1] (any number of
 *             streams laid end to end: n = n_out * n_ctx), the target
 *             t = ln(max(y, HEAD_RECON_FLOOR)); mean over the n values of
 *             (s - t)^2 (docs/head.md says why this loss). */
#define HEAD_RECON_FLOOR 1e-6
double head_loss_eval(head_loss kind, const float *s, const float *y, int64_t n, double topk_frac,
                      float *ds);

/* recon_mse / recon_rank over n_out streams of n tokens (s, y, ds
 * [n_out][n]) with a weight per stream on the squared errors: the mean over
 * streams of w[o] times stream o's mean squared error (recon_rank: plus
 * the listwise term over every score pooled, unweighted). w NULL: every
 * weight 1, the same as head_loss_eval over the n_out * n values. */
double head_loss_recon(head_loss kind, const float *s, const float *y, int64_t n_out, int64_t n,
                       const float *w, float *ds);

/* Adam (Kingma & Ba), bias-corrected; m, v [n] zero-initialised by the
 * caller; t counts steps from 1. */
void head_adam_step(float *params, const float *grad, float *m, float *v, int64_t n, int64_t t,
                    float lr, float beta1, float beta2, float eps, float weight_decay);

/* Recall@k: of the top ceil(frac*n) tokens by y, the fraction that are in
 * the top ceil(frac*n) by s. */
double head_recall_at(const float *s, const float *y, int64_t n, double frac);

/* Checkpoint. Loading checks every tensor's presence, dtype and shape
 * against the metadata (clear errors: missing tensor, wrong shape, unknown
 * kind, bad numbers). */
int head_save(const head *h, const char *path);
int head_load(head **out, const char *path);

/* Loading for use with a model: also checks base model name, d_model,
 * the layer exists and n_out is 1 or the model's n_layer * n_kv_head
 * (TIS_EINVAL naming both sides otherwise). */
int head_check_model(const head *h, const char *model_name, int64_t d_model, int64_t n_layer,
                     int64_t n_kv_head);

#endif
