/* coord_internal: the coordinator's state, shared by its two halves and by
 * nothing else: coord.c, the actor (sockets, clients, workers, liveness,
 * status), and coord_request.c, a request's life (the stage table, the jobs
 * sent, the answers taken, the timings). */
#ifndef TIS_COORD_INTERNAL_H
#define TIS_COORD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "coord.h"
#include "wire.h"

enum { MAX_WORKERS = 64, RECENT = 1024, LAT_RING = 1024, CLIENT_LEASES = 4096, MAX_CONTEXTS = 256 };

/* A compressed context kept for later questions (Submit.keep_context): the
 * block stays in its prefill worker's arena, its lease renewed every
 * heartbeat until it is unused for context_ttl_ms (or the table is full:
 * the least recently used goes). */
typedef struct kept_ctx {
    uint64_t id;             /* 0: a free slot */
    Tis__Envelope *block;    /* the PrefillDone naming it (owned) */
    wire_peer holder;        /* the prefill worker holding it */
    uint64_t last_used;      /* tis_now_ms() */
} kept_ctx;

/* Stages whose latency `tis status` reports, over the last LAT_RING answers. */
typedef enum lat_stage {
    LAT_QUEUE, LAT_PREFILL, LAT_SCORE, LAT_HANDOFF, LAT_DECODE, LAT_TTFT, LAT_TOTAL, LAT_N
} lat_stage;

/* A request's stages; the table COORD_STAGE (below) says who runs each, the
 * message that starts it, the answer that ends it, the stage that follows
 * and where it starts again when its worker is lost. In a stage a request
 * is queued (waiting for a worker of the stage's role) or running (sent to
 * one). A question goes PREFILL -> DECODE; with a head policy and scorer
 * workers alive, PREFILL (the head's input rows out) -> SCORE (a scorer) ->
 * COMPRESS (back on the prefill worker that holds its cache) -> DECODE. An
 * eval job is one EVAL stage, a label job one LABEL stage. */
typedef enum stage { ST_FREE = 0, ST_PREFILL, ST_SCORE, ST_COMPRESS, ST_DECODE, ST_EVAL, ST_LABEL, ST_N } stage;

typedef struct worker_rec {
    wire_peer peer;
    Tis__Role role;
    uint64_t last_seen;
    int64_t credit;      /* jobs it said it can take (its last READY) */
    uint64_t jobs_done;
    uint64_t last_job;   /* dispatch counter when it was last sent a job */
} worker_rec;

typedef struct request {
    stage st;                /* ST_FREE: an unused slot */
    bool running;            /* sent to `worker` (else queued) */
    uint64_t id;             /* internal id (what workers see) */
    wire_peer client;
    uint64_t client_req;
    /* The messages it is made of (owned; each kept while a later job reads it): */
    Tis__Envelope *in;       /* the client's Submit, EvalJob or LabelJob */
    Tis__Envelope *hidden;   /* PrefillDone with the head's input rows (-> ScoreJob) */
    Tis__Envelope *scores;   /* ScoreDone (-> CompressJob) */
    Tis__Envelope *block;    /* PrefillDone with the compressed block (-> DecodeJob) */
    wire_peer prefill_peer;  /* the prefill worker holding its cache and blocks */
    uint64_t kept;           /* the lease there renewed in stages that keep_block */
    uint64_t lease;          /* the compressed block's lease there (released at the end) */
    wire_peer score_peer;    /* the scorer whose arena holds the scores, */
    uint64_t score_lease;    /* released when the block is compressed */
    int64_t attempts;
    uint64_t waiting_since;  /* tis_now_ms() when it was last queued */
    wire_peer worker;        /* the worker running it */
    bool head_policy;        /* its policy scores with the importance head */
    /* Timings (docs/pipeline.md "Timings"): tis_now() stamps taken here,
     * on one clock: a job is stamped before it is sent and an answer when
     * it has been received, so the span of a stage as the coordinator sees
     * it contains what the worker measured of it. */
    double t_submit, t_wait; /* when it came; when it was last queued */
    double queue_s;          /* time spent queued */
    double prefill_s, compress_s, scoring_s, t_decode_sent;
    uint64_t full_kv_bytes;  /* from PrefillDone, for the Reply */
} request;

typedef struct self_t {
    const coord_opts *o;
    void *ctx, *front, *back;
    worker_rec w[MAX_WORKERS];
    int n_w;
    request *rq;
    int64_t n_rq, cap_rq;
    uint64_t next_id;
    struct { wire_peer client; uint64_t req; } recent[RECENT]; /* answered: duplicates are dropped */
    int64_t n_recent;
    int64_t answered;
    /* for tis status */
    double t_start;
    double lat[LAT_N][LAT_RING];
    int64_t n_lat;
    uint64_t submitted, n_reply, n_error, n_busy, n_retried, handoff_bytes, handoffs, full_kv_bytes, n_cancelled;
    uint64_t next_probe;     /* when the workers are sent heartbeats next */
    uint64_t n_dispatched;
    uint64_t instance;       /* random per start (Status.instance) */
    struct {
        uint64_t lease, req;
        wire_peer worker, client;
    } *cl;                   /* [CLIENT_LEASES] blocks held by clients */
    int64_t n_cl;
    kept_ctx kept[MAX_CONTEXTS];
    uint64_t next_ctx;
    struct dispatch_order { double t; int64_t i; } *order; /* scratch: queued requests, oldest first */
    int64_t cap_order;
} self_t;

/* The bodies of the jobs the coordinator sends (one at a time, on the stack). */
typedef union job_bodies {
    Tis__PrefillJob prefill;
    Tis__ScoreJob score;
    Tis__CompressJob compress;
    Tis__DecodeJob decode;
} job_bodies;

/* Fills *out with r's job for its stage (pointing into r's messages). */
typedef void (*job_fn)(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b);
/* Takes the answer that ends r's stage (from the worker running it; the
 * handler may keep *e, setting it to NULL): the next stage, or ST_FREE
 * once the client has its answer (or an error). */
typedef stage (*done_fn)(self_t *s, request *r, const wire_peer *from, Tis__Envelope **e, double t_recv);

typedef struct stage_def {
    Tis__Role role;                /* the workers that run it */
    bool on_holder;                /* runs on the prefill worker holding the cache: sent there at once */
    bool needs_holder;             /* needs that worker's cache: lost with it, the request starts again at PREFILL */
    bool keep_block;               /* its input block at the holder is renewed every heartbeat */
    job_fn job;                    /* the next message to send: the job that starts it */
    Tis__Envelope__BodyCase done;  /* the answer that ends it */
    done_fn on_done;
    stage on_fail;                 /* where it starts again when its job cannot be delivered or its worker is
                                      lost (tried max_attempts times: an Error to the client) */
} stage_def;

extern const stage_def COORD_STAGE[ST_N];

static inline bool coord_same(const wire_peer *a, const wire_peer *b) {
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

/* Whether a worker runs r now. */
static inline bool coord_runs(const request *r, const wire_peer *worker) {
    return r->st != ST_FREE && r->running && coord_same(&r->worker, worker);
}

/* Takes ownership of *e. */
static inline Tis__Envelope *coord_take(Tis__Envelope **e) {
    Tis__Envelope *x = *e;
    *e = NULL;
    return x;
}

/* coord.c */
void coord_error_to_client(self_t *s, const wire_peer *client, uint64_t req, int code, const char *msg);
void coord_release(self_t *s, const wire_peer *worker, uint64_t lease);
worker_rec *coord_worker(self_t *s, const wire_peer *p, bool create);
bool coord_role_alive(const self_t *s, Tis__Role role);

/* coord_request.c */
/* r enters stage st at time t: queued for a worker of its role; a stage
 * that runs on the holder of the cache is sent there at once. */
void coord_request_enter(self_t *s, request *r, stage st, double t);
/* Sends r's job to w; false when w cannot be reached. */
bool coord_request_start(self_t *s, worker_rec *w, request *r);
/* r's worker is lost or could not be reached (why): r starts again at its
 * stage's on_fail, or at PREFILL when the cache it needs is what was lost;
 * after max_attempts tries the client gets an Error. False: it failed. */
bool coord_request_restart(self_t *s, request *r, bool cache_lost, const char *why);
/* The request is answered (or failed): its blocks freed, its slot too. */
void coord_request_finish(self_t *s, request *r);
/* An answer from a worker (it may keep *e). */
void coord_request_answer(self_t *s, worker_rec *w, const wire_peer *from, Tis__Envelope **e, double t_recv);
/* An Error from a worker. */
void coord_request_error(self_t *s, const wire_peer *from, const Tis__Envelope *e);
/* A client's Cancel of its request req (nothing when it is answered already). */
void coord_request_cancel(self_t *s, const wire_peer *client, uint64_t req);

/* coord_context.c: compressed contexts kept for later questions */
/* r's block becomes a kept context (its lease is no longer r's): its id, or 0 (none kept). */
uint64_t coord_context_keep(self_t *s, request *r);
/* A request naming a kept context starts from a copy of its block: 0, or
 * TIS_ENOTFOUND / TIS_ENOMEM (message set). */
int coord_context_use(self_t *s, request *r, uint64_t id);
/* Every heartbeat: renew the kept leases, release those idle past the TTL. */
void coord_context_renew(self_t *s);
/* The worker holding them is gone (lost: nothing to release), or all of them at the end. */
void coord_context_drop(self_t *s, const wire_peer *holder);
uint32_t coord_context_count(const self_t *s);
/* An Error from a worker about a kept context's renewal (its block is gone
 * there): the context is forgotten. False: the Error is about a request. */
bool coord_context_lost(self_t *s, const wire_peer *from, uint64_t request_id);

#endif
