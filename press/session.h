/* session: what one request *is* on its way to a compressed cache, and the
 * one path every caller takes (tis eval, tis label, the prefill worker).
 *
 * A request is text: prefix (system), context (the only part a press
 * compresses), question, an optional answer prefix and, for oracle
 * labels, the expected answer. A session tokenises it (session_prompt),
 * prefills prefix + context once while observing attention (and keeping
 * the hidden states the importance head reads), and builds up to two
 * states from that prefill:
 *   agnostic     the context alone: policies score without the question
 *                (observation window = the context's last `window` tokens);
 *   query-aware  + the question except its last token, observed with the
 *                question as window.
 * The last prompt token always runs after compression, so every generated
 * token depends on the compressed cache. From a state the session gives
 * oracle labels (the answer's attention over the whole prompt), head
 * scores (in process, or set from an outside scorer), and compressed
 * caches: one scoring per (policy, protocol), one kv_cache_compact per
 * budget. Decoding is the engine's decoder (engine/decoder.h).
 *
 * Ownership: a session borrows st and ct (they outlive it) and owns its
 * prompt, caches, observations, labels and scores. */
#ifndef TIS_SESSION_H
#define TIS_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "chat.h"
#include "forward.h"
#include "head.h"
#include "press.h"

/* A request's text (all borrowed). */
typedef struct session_input {
    const char *id;            /* for messages ("req-7", a sample id) */
    const char *prefix;        /* system text, or NULL */
    const char *context;       /* non-empty */
    const char *question;
    const char *answer_prefix; /* the assistant turn starts with it, or NULL */
    const char *answer;        /* the expected answer (oracle labels), or NULL */
    bool verbatim;             /* no template and no joiners: prefix + context + question +
                                  answer_prefix as given (a raw completion prompt) */
    const chat_msg *history;   /* [n_history] earlier turns, after the system prefix and before the
                                  user turn with the context (part of the prefix: not compressed) */
    size_t n_history;
} session_input;

/* The prompt as tokens: prefix (BOS, template, system) ++ context ++ suffix
 * (question, assistant header, answer prefix). */
typedef struct session_prompt {
    int32_t *ids;         /* [n] (owned) */
    int64_t n;
    int64_t ctx_begin;    /* context = [ctx_begin, ctx_begin + n_ctx) */
    int64_t n_ctx;
    int64_t suf_begin;    /* suffix = [suf_begin, n), at least 2 tokens */
} session_prompt;

/* Tokenises a request. With chat (and a template in ct), the user turn is
 * context + "\n\n" + question; without, the parts are joined by blank
 * lines. The parts are tokenised separately so the context span is exact. */
int session_prompt_build(const tokenizer *tok, const chat_template *ct, bool chat, const session_input *in,
                         session_prompt *out);
void session_prompt_free(session_prompt *p);

/* in->answer as the tokens that follow the prompt (a leading space after an
 * answer prefix that ends in a word). */
int session_answer_ids(const tokenizer *tok, const session_input *in, int32_t **ids, int64_t *n);

typedef struct session_opts {
    bool chat;            /* through the model's chat template (ct) */
    bool agnostic;        /* keep the agnostic state */
    bool query_aware;     /* build the query-aware state (also what `full` decodes from) */
    int64_t window;       /* agnostic observation window (tokens) */
    int64_t n_sink;       /* streaming sinks */
    uint64_t seed;        /* the random press: mixed with the prompt length */
    int64_t hid_layer;    /* hidden states entering this layer are kept (head), or -1 */
    int64_t max_tokens;   /* > 0: a longer prompt is refused (TIS_ERANGE) before any prefill */
} session_opts;

typedef struct session session;

/* Builds the prompt and prefills it into the states o asks for (at least
 * one). Errors: an empty context, a question of fewer than 2 tokens, a
 * prompt that does not fit, out of memory. */
int session_new(session **out, forward_state *st, const chat_template *ct, const session_input *in,
                const session_opts *o);
void session_destroy(session **p);

const session_prompt *session_get_prompt(const session *s);
/* Prefill seconds of the context, and of the question (query-aware state). */
double session_prefill_s(const session *s);
double session_prefill_q_s(const session *s);

/* The tokens decode runs first from a compressed cache of that protocol:
 * query-aware: the prompt's last token; agnostic: the whole suffix. */
void session_rest(const session *s, bool qa, const int32_t **ids, int64_t *n);

/* The budget in context entries per stream: a fraction of the context
 * (press_budget_tokens) when frac > 0, else tokens capped at the context. */
int64_t session_budget(double frac, int64_t tokens, int64_t n_ctx);

/* Bytes the uncompressed cache holds once the whole prompt has run (what a
 * compressed cache is compared with). */
int64_t session_full_kv_bytes(const session *s);

/* The uncompressed cache: a fork of the query-aware state with room for
 * the last prompt token and max_new more. */
int session_full(session *s, int64_t max_new, kv_cache **out);

/* The answer the oracle labels come from, by one rule: the expected answer
 * (in->answer) unless there is none or use_model is set, else the model's
 * own answer text (model_answer, e.g. full's; may be NULL). *n == 0 when
 * there is no answer (no labels: an oracle policy cannot run). eval passes
 * full's answer; a single request has no full run (model_answer NULL), so
 * without an expected answer its oracle policy is refused. */
int session_oracle_answer(const session *s, bool use_model, const char *model_answer, int32_t **ids,
                          int64_t *n);
/* Oracle labels from ans[n_ans] after the whole prompt (kept by the
 * session for the oracle policy). */
int session_oracle(session *s, const int32_t *ans, int64_t n_ans);
bool session_has_oracle(const session *s);

/* Importance-head scores over the context, kept by the session for the
 * head policies: computed from the kept hidden states (a query-aware head
 * pools the question's rows of the query-aware state), or set from an
 * outside scorer. *secs (may be NULL): the time it took. */
int session_score_head(session *s, const head *h, double *secs);
int session_set_scores(session *s, bool query, const float *scores /* [n_out][n_ctx] */, int64_t n_out);
bool session_has_scores(const session *s, bool query);

/* Reconstruction scores (KVzip, press/recon.h) of the agnostic (qa false)
 * or query-aware state: the context repeated after a repeat request, each
 * context token's score per (layer, kv head) the largest attention it
 * receives. Computed once and kept (the kvzip policy computes them when
 * first planned); *secs (may be NULL): the time it took. */
int session_recon(session *s, bool qa, double *secs);
/* [n_layer * n_kv_head][n_ctx], or NULL before session_recon. */
const float *session_recon_scores(const session *s, bool qa);
/* [n_layer * n_kv_head] copy scores of the same pass (recon_compute's
 * `copy`: how much each stream's most copying query head attends to the
 * original of the token being repeated), or NULL before session_recon. */
const float *session_recon_copy(const session *s, bool qa);

/* What an outside scorer needs: the head's input rows, context rows then
 * question rows (the question's only when the query-aware state was
 * built): rows[(n_ctx + n_q)][d_model] (malloc'd). */
int session_hidden(const session *s, float **rows, int64_t *n_ctx, int64_t *n_q);

/* Compresses the state of protocol qa with policy pr to k context entries
 * per stream, with room for the rest tokens and max_new: *out (owned by the
 * caller). The policy's scoring is done once per (policy, protocol) and
 * shared by the budgets that follow. A "+hook" policy also gets the
 * attention hook with hook_lambda. *kept_mean: context entries kept per
 * stream (rounded mean); *secs: scoring (with the head's time, for head
 * policies) + compaction. */
int session_compact(session *s, const press *pr, bool qa, int64_t k, int64_t max_new, float hook_lambda,
                    kv_cache **out, int64_t *kept_mean, double *secs);

/* The same with an adaptive budget: every stream keeps the context entries
 * whose score is at least tau (press_plan_compact_threshold: kvzip, or tis
 * with a per-head head; other policies are refused). *kept_mean is the
 * achieved mean per stream. */
int session_compact_threshold(session *s, const press *pr, bool qa, double tau, int64_t max_new,
                              float hook_lambda, kv_cache **out, int64_t *kept_mean, double *secs);

/* The union of two policies' selections ("A|B", press_plan_compact_union)
 * in the state of protocol qa, to k context entries per stream: a and b
 * as from press_parse, each learned one with its head (ha, hb; NULL for
 * others), their scorings made once per (name, protocol) and kept for the
 * budgets after it (the heads score the context in turn: the session's
 * head scores are hb's after it). No attention hook. *kept_mean, *secs as
 * session_compact (secs: both scorings + compaction). */
int session_compact_union(session *s, const char *name, const press *a, const head *ha, const press *b,
                          const head *hb, bool qa, int64_t k, int64_t max_new, kv_cache **out, int64_t *kept_mean,
                          double *secs);

/* ---- one request (the pipeline's unit): one policy, one budget ---------- */

typedef struct session_request {
    press policy;            /* from press_parse (press_spec_parse's m[0]) */
    press policy_b;          /* a union's second member (policy | policy_b: press_spec_parse's
                                m[1]; each stream keeps what the two rankings put first, as
                                session_compact_union), or zeroed (score NULL): one policy */
    double budget;           /* fraction of the context; <= 0: budget_tokens */
    int64_t budget_tokens;
    double threshold;        /* > 0: an adaptive budget instead: every stream keeps the context
                                entries scoring >= threshold (session_compact_threshold; calibrated
                                policies only: kvzip, tis with a per-head head) */
    bool query_aware;        /* the question is prefilled before compression */
    bool chat;
    int64_t window;          /* agnostic observation window (64 in eval) */
    int64_t n_sink;          /* streaming sinks (4) */
    uint64_t seed;           /* the random press, as eval's --seed */
    int64_t max_new;         /* room left in the cache for generation */
    float hook_lambda;       /* "+hook" policies; < 0: the head's own */
    int64_t max_tokens;      /* > 0: prompt tokens allowed (session_opts.max_tokens) */
} session_request;

/* The compressed cache of one request and what decode runs first. */
typedef struct session_result {
    kv_cache *kv;             /* compressed (owned), room for n_rest + max_new */
    int32_t *rest;            /* [n_rest] tokens decode runs first (owned) */
    int64_t n_rest;
    int64_t n_ctx, kept_mean; /* context tokens, kept per stream on average */
    int64_t full_kv_bytes;    /* session_full_kv_bytes */
    double prefill_s, compress_s;
} session_result;
void session_result_free(session_result *r);

/* Prefills a request for its policy (the query-aware state when the
 * protocol is query-aware or the policy is `full`, else the agnostic one)
 * and makes its oracle labels when the policy needs them (from
 * in->answer; none: an error). A learned policy (or union member) reads
 * its head: h for rq->policy, h_b for rq->policy_b (NULL for a member
 * without one; a union's heads must read one layer). In process the heads
 * score here (a union's when it compacts); with outside set they only
 * say which layer's hidden states to keep (session_hidden) and how many
 * score rows each gives, and session_request_finish takes the scores from
 * an outside scorer. */
int session_request_begin(session **out, forward_state *st, const chat_template *ct, const session_input *in,
                          const session_request *rq, const head *h, const head *h_b, bool outside);
/* True when the request waits for scores from outside. */
bool session_needs_scores(const session *s);
/* Compresses to the request's budget into *out. scores: from the outside
 * scorer, [n_out][n_ctx] with n_out the heads' rows in member order (a
 * head's 1, or a per-head head's n_stream; a union's first member's rows
 * then its second's), or NULL in process. */
int session_request_finish(session *s, const float *scores, int64_t n_out, session_result *out);

#endif
