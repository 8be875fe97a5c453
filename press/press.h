/* press: KV-cache compression policies (docs/design.md §4).
 *
 * A press is one score function over the context entries of one
 * (layer, kv-head) stream, higher = keep. One shared routine turns scores
 * into a compressed cache: it protects tokens by score padding (the
 * observation window where a policy asks for it), picks the top-k of each
 * stream under a budget allocation (uniform, pyramid over layers, or
 * head-adaptive within a layer), and compacts the cache into a new ragged
 * one whose memory follows the kept counts. Entries outside the context
 * (prefix, question) are never evicted. Original positions are kept. */
#ifndef TIS_PRESS_H
#define TIS_PRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "kv.h"
#include "oracle.h"

/* Attention statistics gathered while prefilling into an uncompressed cache
 * (entry index == position), per (layer, kv-head) stream over the cached
 * positions; the query heads sharing a kv head are summed. */
typedef struct press_obs {
    int64_t n_layer, n_kv_head, n_head, cap;
    float *acc;        /* [n_stream][cap] attention received from every query (h2o) */
    float *win;        /* [n_stream][cap] attention from the window queries (snapkv) */
    float *last;       /* [n_stream][cap] attention of the last query (tova) */
    int64_t win_begin; /* queries at positions >= win_begin form the window */
    int64_t n_win;     /* window queries seen */
    int64_t last_pos;  /* position of the query `last` holds (-1: none yet) */
    int64_t base;      /* position of row 0 of the forward_run in progress */
    float *hid;        /* [cap][d_model] residual stream entering layer hid_layer at
                          every position (for the importance head), or NULL */
    int64_t hid_layer, d_model;
} press_obs;

int press_obs_init(press_obs *o, const model *m, int64_t cap);
void press_obs_free(press_obs *o);
/* A deep copy (to continue prefilling one sample two ways). */
int press_obs_copy(press_obs *dst, const press_obs *src);
/* Also keep the hidden states entering `layer` (n_layer: after the last). */
int press_obs_capture_hidden(press_obs *o, int64_t layer, int64_t d_model);
/* Starts a new observation window at position win_begin (clears win). */
void press_obs_window(press_obs *o, int64_t win_begin);
/* forward_run of ids[T] into kv (uncompressed, entry == position) while
 * observing: acc and win accumulate, last becomes the row of the final
 * token. */
int press_obs_prefill(press_obs *o, forward_state *st, kv_cache *kv, const int32_t *ids,
                      int64_t T, float *logits, int64_t n_logits);

/* Everything a score function may read. The cache is the uncompressed one
 * the scores are for: its entries [ctx_begin, ctx_begin + n_ctx) of every
 * stream are the context. */
typedef struct press_ctx {
    const kv_cache *kv;
    const press_obs *obs;          /* may be NULL for policies that need none */
    const oracle_labels *oracle;   /* may be NULL */
    int64_t ctx_begin, n_ctx;
    int64_t window;                /* context tail protected by window policies (agnostic
                                      protocol: the window queries are the context's own
                                      last tokens); 0 in the query-aware protocol */
    int64_t n_sink;                /* streaming: first context tokens kept */
    const float *head_scores;      /* importance-head scores (tis, tis_query), or NULL:
                                      [n_ctx] when head_n_out is 1 (every stream alike),
                                      [n_stream][n_ctx] when it is n_stream (a per-head head,
                                      ln of a reconstruction score: exp'd to kvzip's scale) */
    int64_t head_n_out;            /* 1 or n_stream (0 means 1) */
    const float *recon;            /* [n_stream][n_ctx] reconstruction scores (kvzip,
                                      press/recon.h), or NULL */
    const float *recon_copy;       /* [n_stream] reconstruction copy scores (kvzip_heads), or NULL */
    const float *selfinfo;         /* [n_ctx] self-information of each token's word (selfinfo,
                                      press/selfinfo.h; every stream alike), or NULL */
    uint64_t seed;                 /* random: per sample */
} press_ctx;

typedef int (*press_score_fn)(const press_ctx *c, int64_t layer, int64_t kv_head,
                              float *scores /* [n_ctx] */);

typedef enum press_alloc {
    PRESS_ALLOC_UNIFORM = 0,  /* k per stream */
    PRESS_ALLOC_PYRAMID = 1,  /* more in lower layers, fewer in upper (PyramidKV) */
    PRESS_ALLOC_ADAPTIVE = 2, /* per layer, pooled top-(k*n_kv_head) over heads (AdaKV) */
    PRESS_ALLOC_GLOBAL = 3,   /* every stream pooled: top-(k*n_stream) over all layers and heads
                                 (KVzip); for scores on one scale across streams: kvzip, a
                                 per-head head (its tis policy switches to this) */
} press_alloc;

/* Whether a scorer's scores are on one absolute scale in every stream
 * and for every input (so that a threshold means the same everywhere). */
typedef enum press_calib {
    PRESS_CALIB_NONE,     /* ranks only */
    PRESS_CALIB_ALWAYS,   /* attention probability (kvzip) */
    PRESS_CALIB_PER_HEAD, /* a learned policy, when its head has one output per stream */
} press_calib;

typedef struct press {
    char name[64];             /* as on the CLI, e.g. "snapkv", "adakv:h2o" (63 characters at most;
                                  a union "A|B" of eval's too) */
    press_score_fn score;      /* NULL for "full" */
    press_alloc alloc;
    bool protect_window;       /* pad the context tail (observation window) */
    bool needs_obs, needs_oracle;
    bool needs_recon;          /* kvzip: reconstruction scores (press_ctx.recon) */
    bool needs_selfinfo;       /* selfinfo: self-information scores (press_ctx.selfinfo) */
    bool needs_head;           /* tis, tis_query: scores from an importance head */
    bool query_head;           /* tis_query: the head takes the question (query-aware protocol) */
    bool attn_hook;            /* "+hook": add lambda * s_j to kept token j's attention logit */
    double recent_frac;        /* h2o: this fraction of each stream's budget goes to the most
                                  recent context tokens, the rest to the best scores */
    int32_t pool;              /* "+pool[N]": each score becomes the maximum over the N
                                  (odd, 3..63; 5 when not given) neighbours centred on it in
                                  its stream, so that a kept token brings its span (0: off) */
    bool pool_left;            /* "+lpool[N]" (N 2..63, 5 when not given): the maximum over the
                                  token and the N-1 after it instead, so that a kept token
                                  brings the N-1 before it (a value brings its key) */
    int32_t recent;            /* "+recentN[/D]" (N 1..4096): the last min(N, k/D) context tokens
                                  of every stream are kept first, inside the per-stream
                                  budget k (all N under a threshold); the allocation shares
                                  the rest over the other tokens (0: off) */
    int32_t recent_div;        /* D of "+recentN/D" (2..64; 2 when not given): the tail grows
                                  with the budget up to N */
    int32_t cap;               /* "+capN" (1..64): under pooled allocation (PRESS_ALLOC_GLOBAL)
                                  no stream keeps more than N times the per-stream budget k;
                                  what it would win goes on down the ranking (0: off) */
    bool shared;               /* "+shared": one score for every stream, the mean over streams
                                  of each stream's standardised scores ((s - mean) / sd over
                                  its context), with a uniform budget: a token is kept in
                                  every stream or in none (a value with its key everywhere) */
    press_calib calib;
} press;

typedef struct press_info {
    const char *name;
    bool available;
    const char *about;
} press_info;

/* The registry, NULL-name terminated: every policy tis knows. */
extern const press_info press_registry[];

/* Parses a policy name: a registry name, or "adakv" / "adakv:INNER"
 * (head-adaptive allocation over INNER's scores, default snapkv); a
 * learned policy may end in "+hook" (tis+hook: the attention hook at decode);
 * a scoring policy other than the already pooled snapkv / pyramidkv may
 * add "+pool" or "+poolN" before it (kvzip+pool, tis+pool7+hook: press.pool),
 * or "+lpool" / "+lpoolN" (the span to the left of a score: press.pool_left);
 * any scoring policy may add "+recentN" or "+recentN/D" after that (the
 * context's last min(N, k/D) tokens in every stream first, D 2 when not
 * given: press.recent, press.recent_div; tis+recent32, tis+recent64/8);
 * a policy with a budget pooled over every stream (kvzip, kvzip_heads, a
 * learned one) may add "+capN" after that (kvzip+cap2, tis+pool5+cap3+hook:
 * press.cap; budget runs only: a capped policy is never calibrated), or
 * instead "+shared" (tis+lpool5+shared: press.shared, one score for every
 * stream, uniform budgets; never calibrated; not pyramidkv or adakv, whose
 * allocation is the point).
 * Unknown or unavailable names: TIS_ENOTFOUND / TIS_EUNSUPPORTED; a
 * union "A|B" (press_union_split) is not one policy: TIS_EUNSUPPORTED. */
int press_parse(const char *name, press *out);
/* A union of two policies, "A|B" (tis eval's; tis_si+lpool5|tis: each
 * stream keeps what the two rankings put first, press_plan_compact_union):
 * A into first[first_size] (truncated to fit) and a pointer to B in name;
 * NULL when name has no '|'. */
const char *press_union_split(const char *name, char *first, size_t first_size);
/* Splits a policy name at its first '+': the base name into
 * base[base_size] (truncated to fit), and returns its suffixes ("" or
 * "+pool9+hook"), a pointer into name. The one rule for what a suffix is:
 * press_parse and eval's --head_as names follow it. */
const char *press_split_name(const char *name, char *base, size_t base_size);

/* Context entries kept per stream for a fraction of n_ctx (at least 1). */
int64_t press_budget_tokens(double fraction, int64_t n_ctx);

/* Scores every stream and compacts c->kv into *out with k_per_stream context
 * entries per stream on average (exactly k in every stream under uniform
 * allocation; capped at n_ctx) plus `extra` free entries per stream.
 * kept[n_stream] (may be NULL) receives the context entries kept. */
int press_compress(kv_cache **out, const press *p, const press_ctx *c, int64_t k_per_stream,
                   int64_t extra, int64_t *kept);

/* The same in two steps, so that several budgets share one scoring: a plan
 * scores and ranks every stream once (it borrows c->kv, which must outlive
 * it); each compaction then only selects and copies. */
typedef struct press_plan press_plan;
int press_plan_new(press_plan **out, const press *p, const press_ctx *c);
int press_plan_compact(const press_plan *pl, int64_t k_per_stream, int64_t extra, kv_cache **out,
                       int64_t *kept);
void press_plan_destroy(press_plan **p);
/* The union of two plans of the same cache ("A|B"): every stream keeps
 * the mean of the two plans' budgets for it at k (each plan's own
 * allocation, rounded up), first the context's last max(tail_a, tail_b)
 * tokens (+recentN/D, h2o's recent share), then both rankings' top r, r
 * as deep as the budget allows (rank by rank, a's before b's at the last
 * one); what both rank high is kept once, so the overlap lets both go
 * deeper. Budget runs only (a union has no one scale for a threshold). */
int press_plan_compact_union(const press_plan *a, const press_plan *b, int64_t k_per_stream, int64_t extra,
                             kv_cache **out, int64_t *kept);
/* True when p's scores are on one absolute scale in every stream
 * (attention probability: kvzip; a learned policy with a per-head head,
 * head_n_out > 1), so that a threshold means the same in every stream and
 * for every input; never with +capN. The one rule: plans and eval's threshold runs ask it. */
bool press_calibrated(const press *p, int64_t head_n_out);
/* Whether p's scores can be calibrated at all (kvzip; a learned policy,
 * given a per-head head): what a caller that does not know the head asks. */
bool press_calibratable(const press *p);
/* True when the plan's scores are on one absolute scale (attention
 * probability: kvzip, a per-head head), so that a threshold means the
 * same in every stream and for every input. */
bool press_plan_calibrated(const press_plan *pl);
/* Adaptive budget: keeps, in every stream, the context entries whose score
 * is at least tau (so the budget follows the input; a stream may keep
 * none of its context). Calibrated plans only (TIS_EINVAL otherwise). */
int press_plan_compact_threshold(const press_plan *pl, double tau, int64_t extra, kv_cache **out,
                                 int64_t *kept);

/* The per-stream budgets press_compress uses (exposed for tests):
 * budgets[n_stream] from scores[n_stream][n_ctx]. */
int press_allocate(const press *p, const kv_cache *kv, const float *scores, int64_t n_ctx,
                   int64_t k, int64_t *budgets); /* 0, or TIS_ENOMEM */

#endif
