/* request: one request answered from compressed KV, split into the two
 * stages the pipeline runs in separate processes (DESIGN §6): prefill +
 * compress (prefill worker), then question + generation (decode worker,
 * generate_answers). They are the same computations `tis eval` makes for
 * that policy and budget, so the pipeline gives the tokens eval gives (a
 * test holds them to it). */
#ifndef TIS_REQUEST_H
#define TIS_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"
#include "chat.h"
#include "forward.h"
#include "head.h"
#include "press.h"

typedef struct request_opts {
    press policy;             /* from press_parse */
    double budget;            /* fraction of the context; <= 0: use budget_tokens */
    int64_t budget_tokens;
    bool query_aware;         /* question prefilled before compression */
    int64_t window;           /* agnostic observation window (eval default 64) */
    int64_t n_sink;           /* streaming sinks (4) */
    uint64_t seed;            /* as eval's --seed (random policy) */
    int64_t max_new;          /* room left for generation */
    const head *head_ctx;     /* tis (borrowed), or NULL */
    const head *head_q;       /* tis_query (borrowed), or NULL */
    int64_t head_layer;       /* scores from a scorer: the layer its head reads (-1: none) */
} request_opts;

typedef struct request_prefilled {
    kv_cache *kv;             /* compressed cache (owned), with room for rest + max_new */
    int32_t *rest;            /* [n_rest] tokens the decode stage runs first (owned) */
    int64_t n_rest;
    int64_t n_ctx, kept_mean; /* context tokens, kept per stream on average */
    int64_t full_kv_bytes;    /* what the uncompressed cache would hold at decode start */
    double prefill_s, compress_s;
} request_prefilled;

int request_prefill(forward_state *st, const chat_template *ct, bool chat, const bench_sample *s,
                    const request_opts *o, request_prefilled *out);
void request_prefilled_free(request_prefilled *p);

/* request_prefill in two halves, for a scorer in another process: begin
 * prefills (and labels, for oracle) and keeps the cache; with
 * outside_scores a head policy keeps the hidden states of o->head_layer
 * instead of scoring them; request_hidden copies the head's input rows
 * (context rows, then question rows: [n_ctx + n_q][d_model]); finish
 * compresses by the given scores (NULL: the policy's own, or the head's
 * from o) into the same result request_prefill gives. */
typedef struct request_state request_state;
int request_begin(forward_state *st, const chat_template *ct, bool chat, const bench_sample *s,
                  const request_opts *o, bool outside_scores, request_state **out);
bool request_needs_scores(const request_state *r);
int request_hidden(const request_state *r, float **rows, int64_t *n_ctx, int64_t *n_q);
int request_finish(request_state *r, const float *scores, request_prefilled *out);
void request_state_free(request_state **p);

#endif
