/* worker_internal: what the worker's role files share (serve/worker.c: the
 * actor, its loop, heartbeats, fault injection; worker_prefill.c: prefill,
 * compress, eval, label jobs and serving fetches; worker_scorer.c: score
 * jobs; worker_decode.c: the continuous batch and blocks from other hosts).
 * Not a public header: only serve/worker*.c include it. */
#ifndef TIS_WORKER_INTERNAL_H
#define TIS_WORKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "chat.h"
#include "decoder.h"
#include "devpool.h"
#include "eval.h"
#include "fetch.h"
#include "forward.h"
#include "head.h"
#include "model.h"
#include "press_spec.h"
#include "session.h"
#include "tis.pb-c.h"
#include "worker.h"

/* One request in the decode worker's continuous batch. */
typedef struct dseq {
    uint64_t request_id;
    kv_cache *kv;                /* owned */
    int32_t *q;                  /* [seq.n_feed] question tokens, the decoder's feed (owned) */
    decoder_seq seq;             /* generated tokens, stop state, timings */
    sampler *smp;                /* GenParams.temperature > 0: sampled (owned), else greedy */
    double t0, handoff_s;        /* accepted at t0; the block copy took handoff_s */
    bool stream;                 /* TokenChunk messages as tokens come */
    bool until_eog;              /* no short-answer stop, the text untrimmed */
    char *qtext;                 /* the request's question (owned): the stop rule's restatement check */
    int64_t n_sent;              /* tokens looked at (streamed, scanned for stops) so far */
    size_t text_sent;            /* stream: bytes of the answer's text sent so far */
    char **stop;                 /* [n_stop] stop strings (owned) */
    size_t n_stop;
    bool stopped;                /* a stop string ended it: the answer is text[0..cut) */
    size_t cut;
    int64_t prompt_tokens;       /* the block's sequence + the question run first */
} dseq;

/* A prefill request waiting for its scores from a scorer worker. */
typedef struct parked {
    uint64_t request_id;
    session *rs;              /* owned */
    uint64_t hidden_lease;    /* its hidden rows in our arena */
    uint64_t since_ms;
    int64_t n_ctx;
} parked;

enum { MAX_PARKED = 64 };

typedef struct self_t {
    const worker_opts *o;
    bool prefill, decode, scorer;
    parked park[MAX_PARKED];  /* prefill: requests scored elsewhere */
    int n_park;
    bool ready_owed;          /* a READY whose send failed: sent on the next turn */
    void *ctx, *sock;
    model *m;
    forward_state *st;
    const tis_backend *be;       /* st's backend: the CPU's, or a cuda decode worker's device (borrowed) */
    chat_template ct;
    head *h_ctx, *h_q;
    head **h_named;              /* [o->n_head_as] the --head_as heads (prefill, scorer) */
    arena *own;                  /* prefill: where compressed blocks go */
    arena_peers peers;           /* prefill, scorer, decode: peers' arenas, mapped once */
    devpool *dpool;              /* prefill on cuda:N: where compressed blocks go (devpool.h) */
    uint8_t *stage;              /* prefill on cuda:N: [FETCH_CHUNK] a fetched chunk out of dpool */
    devpool_peers dpeers;        /* decode: producers' device pools, opened once (ops NULL on cpu) */
    decoder *dec;                /* decode: the continuous batch's steps */
    decoder_seq **seqp;          /* decode: [max_batch] the step's sequences */
    uint64_t seq;
    int64_t jobs;
    struct dseq *act;            /* decode: sequences being generated [max_batch] */
    int64_t n_act;
    struct dseq *pend;           /* decode: accepted jobs waiting for a slot */
    int64_t n_pend, cap_pend;
    fetch_job *fx;               /* decode: blocks coming from another host [max_batch] */
    int64_t n_fx;
    /* prefill: eval jobs (tis eval --workers); the runner borrows its spec */
    eval_runner *er;
    Tis__EvalSpec *er_spec;
    uint8_t *er_packed;
    size_t er_len;
} self_t;

/* worker.c: the actor's messages and shared helpers. */
int worker_send(self_t *s, Tis__Envelope *env);
int worker_ready_again(self_t *s);   /* READY now, or on the next turn when the send fails */
void worker_error(self_t *s, uint64_t request_id, int code, const char *what); /* an Error with tis_last_error() */
Tis__Role worker_role(const self_t *s);
/* A handle to [off, off + len) of our arena under `lease` (borrows s's strings). */
Tis__BlockRef worker_blockref(const self_t *s, uint64_t off, uint64_t len, uint64_t lease);
arena *worker_peer(self_t *s, const Tis__BlockRef *br);
void worker_fault_alloc(const self_t *s, bool ending);
/* Renews / releases a lease of our arena or of our device pool. */
int worker_lease_renew(self_t *s, uint64_t lease, uint32_t ttl_ms);
void worker_lease_release(self_t *s, uint64_t lease);
/* A request's policy under this worker's heads (press_spec_parse with
 * --head_as): the spec and each member's head (hd[i] NULL for a member
 * that reads none). A head the worker was not given: TIS_EINVAL naming
 * the option that gives it. */
int worker_policy(const self_t *s, const char *name, press_spec *sp, const head *hd[2]);

/* worker_prefill.c */
int worker_prefill(self_t *s, const Tis__Envelope *env);
int worker_compress(self_t *s, const Tis__Envelope *env);
int worker_eval(self_t *s, const Tis__Envelope *env);
int worker_label(self_t *s, const Tis__Envelope *env);
void worker_fetch_serve(self_t *s, const Tis__Envelope *env);

/* worker_scorer.c */
int worker_score(self_t *s, const Tis__Envelope *env);

/* worker_decode.c */
void worker_dseq_free(dseq *d);
int worker_decode_accept(self_t *s, const Tis__Envelope *env);
int worker_decode_step(self_t *s);
int worker_decode_cancel(self_t *s, uint64_t request_id);
void worker_fetch_chunk(self_t *s, const Tis__Envelope *env);
void worker_fetch_expire(self_t *s, uint64_t timeout_ms);

#endif
