/* coord: routing, ready queues, liveness, exactly-once answers. */
#include "coord.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "arena.h"
#include "generate.h"
#include "press.h"
#include "tis_error.h"
#include "wire.h"

enum { MAX_WORKERS = 64, RECENT = 1024, LAT_RING = 1024, CLIENT_LEASES = 4096 };

/* Stages whose latency `tis status` reports, over the last LAT_RING answers. */
typedef enum lat_stage {
    LAT_QUEUE, LAT_PREFILL, LAT_SCORE, LAT_HANDOFF, LAT_DECODE, LAT_TTFT, LAT_TOTAL, LAT_N
} lat_stage;
static const char *const LAT_NAME[LAT_N] = {"queue", "prefill", "scoring", "handoff", "decode", "ttft", "total"};

/* A request's stages. A head policy with scorer workers alive goes
 * PREFILL (hidden rows out) -> SCORE (a scorer) -> COMPRESS (back on the
 * prefill worker that holds its cache) -> DECODE; the others PREFILL -> DECODE. */
typedef enum stage {
    ST_FREE = 0, ST_WAIT_PREFILL, ST_PREFILL, ST_WAIT_SCORE, ST_SCORE, ST_COMPRESS, ST_WAIT_DECODE, ST_DECODE
} stage;

/* A stage in which a worker holds the request. */
static bool s_running(stage st) { return st == ST_PREFILL || st == ST_SCORE || st == ST_COMPRESS || st == ST_DECODE; }

typedef struct worker_rec {
    wire_peer peer;
    Tis__Role role;
    uint64_t last_seen;
    int64_t credit;      /* jobs it said it can take (its last READY) */
    uint64_t jobs_done;
    uint64_t last_job;   /* dispatch counter when it was last sent a job */
} worker_rec;

typedef struct request {
    stage st;
    uint64_t id;             /* internal id (what workers see) */
    wire_peer client;
    uint64_t client_req;
    uint8_t *submit;         /* packed Submit (owned) */
    size_t submit_len;
    uint8_t *done;           /* packed PrefillDone (owned) once prefilled */
    size_t done_len;
    wire_peer prefill_peer;  /* whose arena holds the block */
    uint64_t lease;
    int64_t attempts;
    uint64_t waiting_since;  /* when it last entered a WAIT stage */
    wire_peer worker;        /* the worker running it (in a running stage) */
    /* Timings (docs/pipeline.md "Timings"): tis_now() stamps taken here,
     * on one clock: a job is stamped before it is sent and an answer when
     * it has been received, so the span of a stage as the coordinator sees
     * it contains what the worker measured of it. */
    double t_submit, t_wait; /* when it came; when it last entered a WAIT stage */
    double queue_s;          /* time spent waiting for workers */
    double prefill_s, t_decode_sent;
    uint64_t full_kv_bytes;  /* from PrefillDone, for the Reply */
    bool eval;               /* a whole eval / label sample: the prefill worker replies */
    bool head_policy;        /* its policy scores with the importance head */
    uint8_t *hidden;         /* packed PrefillDone with the head's input rows (ST_*SCORE) */
    size_t hidden_len;
    uint64_t hidden_lease;   /* those rows' block in the prefill worker's arena */
    wire_peer score_peer;    /* the scorer whose arena holds the scores, */
    uint64_t score_lease;    /* released when the block is compressed */
    double scoring_s;
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
    uint64_t submitted, n_reply, n_error, n_busy, n_retried, handoff_bytes, handoffs, full_kv_bytes;
    uint64_t next_probe;     /* when the workers are sent heartbeats next */
    uint64_t n_dispatched;
    uint64_t instance;       /* random per start (Status.instance) */
    struct {
        uint64_t lease, req;
        wire_peer worker, client;
    } *cl;                   /* [CLIENT_LEASES] blocks held by clients */
    int64_t n_cl;
} self_t;

static volatile sig_atomic_t s_stop = 0;
static void s_on_term(int sig) {
    (void)sig;
    s_stop = 1;
}

static bool s_same(const wire_peer *a, const wire_peer *b) {
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

static uint64_t s_now(void) { return tis_now_ms(); }

static void s_error_to_client(self_t *s, const wire_peer *client, uint64_t req, int code, const char *msg) {
    s->n_error++;
    wire_send_error(s->front, client, req, code, msg);
}

static void s_remember(self_t *s, const request *r) {
    int64_t k = s->n_recent++ % RECENT;
    s->recent[k].client = r->client;
    s->recent[k].req = r->client_req;
}

/* Frees a block at the worker holding it (a gone worker: nothing to free). */
static void s_send_release(self_t *s, const wire_peer *worker, uint64_t lease) {
    Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
    rl.lease_id = lease;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
    e.lease_release = &rl;
    wire_send(s->back, worker, &e);
}

static void s_release_lease(self_t *s, request *r) {
    if (!r->lease) return;
    s_send_release(s, &r->prefill_peer, r->lease);
    r->lease = 0;
}

static void s_release_score(self_t *s, request *r) {
    if (!r->score_lease) return;
    s_send_release(s, &r->score_peer, r->score_lease);
    r->score_lease = 0;
}

static void s_finish(self_t *s, request *r) {
    s_release_lease(s, r);
    s_release_score(s, r);
    free(r->hidden);
    s_remember(s, r);
    free(r->submit);
    free(r->done);
    memset(r, 0, sizeof *r);
    s->answered++;
}

static request *s_find(self_t *s, uint64_t id) {
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE && s->rq[i].id == id) return &s->rq[i];
    return NULL;
}

static int64_t s_queued(const self_t *s) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_rq; i++) n += s->rq[i].st != ST_FREE;
    return n;
}

static worker_rec *s_worker(self_t *s, const wire_peer *p) {
    for (int i = 0; i < s->n_w; i++)
        if (s_same(&s->w[i].peer, p)) return &s->w[i];
    if (s->n_w == MAX_WORKERS) return NULL;
    worker_rec *w = &s->w[s->n_w++];
    memset(w, 0, sizeof *w);
    w->peer = *p;
    return w;
}

/* A block handed to a client (label results): its lease stays until the
 * client's LeaseRelease, which goes to the worker holding the block (or
 * until it expires there). */
static void s_client_lease(self_t *s, uint64_t lease, const wire_peer *worker, const request *r) {
    int64_t k = s->n_cl++ % CLIENT_LEASES;
    s->cl[k].lease = lease;
    s->cl[k].worker = *worker;
    s->cl[k].client = r->client;
    s->cl[k].req = r->client_req;
}

/* A client's release names its request and the lease (lease ids are per
 * worker: the request tells whose). */
static void s_client_release(self_t *s, const wire_peer *client, uint64_t req, uint64_t lease) {
    for (int64_t k = 0; k < CLIENT_LEASES && k < s->n_cl; k++)
        if (s->cl[k].lease == lease && s->cl[k].req == req && s_same(&s->cl[k].client, client)) {
            s_send_release(s, &s->cl[k].worker, lease);
            s->cl[k].lease = 0;
            return;
        }
}

/* A reply's timings. The workers sent durations they measured themselves
 * (prefill, scoring: in PrefillDone / ScoreDone; hand-off, decode and the
 * decode worker's part of the TTFT: from accepting the job to its first
 * token, in the Reply); the coordinator adds the spans it saw. Each
 * worker's duration lies inside the coordinator's span of its stage (sent
 * before it started, received after it ended) and the spans do not
 * overlap, so by construction
 *   queue + prefill + scoring + handoff + decode <= total,
 *   queue + prefill + scoring + handoff <= ttft <= total. */
static void s_timing(const request *r, Tis__Timing *tm, double t_recv) {
    tm->queue_s = r->queue_s;
    tm->prefill_s = r->prefill_s;
    tm->scoring_s = r->scoring_s;
    tm->ttft_s = (r->t_decode_sent - r->t_submit) + tm->ttft_s; /* + the decode worker's: accept -> first token */
    tm->total_s = t_recv - r->t_submit;
}

static void s_record(self_t *s, const Tis__Timing *t) {
    int64_t k = s->n_lat++ % LAT_RING;
    s->lat[LAT_QUEUE][k] = t->queue_s;
    s->lat[LAT_PREFILL][k] = t->prefill_s;
    s->lat[LAT_SCORE][k] = t->scoring_s;
    s->lat[LAT_HANDOFF][k] = t->handoff_s;
    s->lat[LAT_DECODE][k] = t->decode_s;
    s->lat[LAT_TTFT][k] = t->ttft_s;
    s->lat[LAT_TOTAL][k] = t->total_s;
}

static int s_cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (nearest rank). */
static double s_quantile(const double *v, int64_t n, double q) {
    int64_t k = (int64_t)(q * (double)n + 0.999999);
    return v[k < 1 ? 0 : k > n ? n - 1 : k - 1];
}

static void s_send_status(self_t *s, const wire_peer *client, uint64_t req) {
    Tis__Status st = TIS__STATUS__INIT;
    Tis__WorkerStatus ws[MAX_WORKERS], *wp[MAX_WORKERS];
    char ids[MAX_WORKERS][257];
    double now = tis_now();
    uint64_t now_ms = s_now();
    for (int i = 0; i < s->n_w; i++) {
        const worker_rec *w = &s->w[i];
        tis__worker_status__init(&ws[i]);
        size_t n = w->peer.len < 256 ? w->peer.len : 256;
        memcpy(ids[i], w->peer.id, n);
        ids[i][n] = 0;
        for (size_t c = 0; c < n; c++) /* identities are bytes; status is text */
            if ((unsigned char)ids[i][c] < 32 || (unsigned char)ids[i][c] > 126) ids[i][c] = '?';
        ws[i].id = ids[i];
        ws[i].role = w->role;
        ws[i].free_slots = w->credit;
        ws[i].jobs_done = w->jobs_done;
        ws[i].last_seen_s = (double)(now_ms - w->last_seen) / 1000.0;
        for (int64_t k = 0; k < s->n_rq; k++)
            ws[i].running += s_running(s->rq[k].st) && s_same(&s->rq[k].worker, &w->peer);
        wp[i] = &ws[i];
    }
    st.n_workers = (size_t)s->n_w;
    st.workers = wp;
    for (int64_t k = 0; k < s->n_rq; k++) {
        st.waiting_prefill += s->rq[k].st == ST_WAIT_PREFILL;
        st.prefilling += s->rq[k].st == ST_PREFILL || s->rq[k].st == ST_COMPRESS;
        st.waiting_score += s->rq[k].st == ST_WAIT_SCORE;
        st.scoring += s->rq[k].st == ST_SCORE;
        st.waiting_decode += s->rq[k].st == ST_WAIT_DECODE;
        st.decoding += s->rq[k].st == ST_DECODE;
    }
    st.uptime_s = now - s->t_start;
    st.instance = s->instance;
    uint64_t *mine = malloc((size_t)(s->n_rq ? s->n_rq : 1) * sizeof *mine);
    for (int64_t k = 0; mine && k < s->n_rq; k++)
        if (s->rq[k].st != ST_FREE && s_same(&s->rq[k].client, client)) mine[st.n_client_requests++] = s->rq[k].client_req;
    st.client_requests = mine;
    st.submitted = s->submitted;
    st.answered = s->n_reply;
    st.errors = s->n_error;
    st.busy = s->n_busy;
    st.retried = s->n_retried;
    st.handoff_bytes = s->handoff_bytes;
    st.handoffs = s->handoffs;
    st.full_kv_bytes = s->full_kv_bytes;
    Tis__StageStats ss[LAT_N], *sp[LAT_N];
    int64_t n = s->n_lat < LAT_RING ? s->n_lat : LAT_RING;
    double *v = n ? malloc((size_t)n * sizeof *v) : NULL;
    for (int k = 0; k < LAT_N; k++) {
        tis__stage_stats__init(&ss[k]);
        ss[k].stage = (char *)LAT_NAME[k];
        sp[k] = &ss[k];
        if (!v) continue;
        memcpy(v, s->lat[k], (size_t)n * sizeof *v);
        qsort(v, (size_t)n, sizeof *v, s_cmp_f64);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += v[i];
        ss[k].n = (uint32_t)n;
        ss[k].mean_s = sum / (double)n;
        ss[k].p50_s = s_quantile(v, n, 0.5);
        ss[k].p90_s = s_quantile(v, n, 0.9);
        ss[k].p99_s = s_quantile(v, n, 0.99);
        ss[k].max_s = v[n - 1];
    }
    free(v);
    st.n_stages = LAT_N;
    st.stages = sp;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = req;
    out.body_case = TIS__ENVELOPE__BODY_STATUS;
    out.status = &st;
    wire_send(s->front, client, &out);
    free(mine);
}

/* A client message. */
static void s_front(self_t *s) {
    wire_peer client;
    Tis__Envelope *e = NULL;
    int rc = wire_recv(s->front, 1, &client, &e);
    if (rc) {
        if (client.len) s_error_to_client(s, &client, e ? e->request_id : 0, rc, tis_last_error());
        msg_free(e);
        return;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_LEASE_RELEASE) {
        s_client_release(s, &client, e->request_id, e->lease_release->lease_id);
        msg_free(e);
        return;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_STATUS_REQUEST) {
        s_send_status(s, &client, e->request_id);
        msg_free(e);
        return;
    }
    if (e->body_case != TIS__ENVELOPE__BODY_SUBMIT) {
        s_error_to_client(s, &client, e->request_id, TIS_EINVAL, "the front end takes Submit messages");
        msg_free(e);
        return;
    }
    const Tis__Submit *q = e->submit;
    for (int64_t i = 0; i < s->n_rq; i++) /* in flight: answered once, when done */
        if (s->rq[i].st != ST_FREE && s->rq[i].client_req == e->request_id && s_same(&s->rq[i].client, &client)) {
            msg_free(e);
            return;
        }
    for (int64_t i = 0; i < s->n_recent && i < RECENT; i++)
        if (s->recent[i].req == e->request_id && s_same(&s->recent[i].client, &client)) {
            msg_free(e);
            return;
        }
    bool eval = q->eval != NULL || q->label != NULL;
    bool ok = q->eval    ? q->eval->sample && q->eval->spec
              : q->label ? q->label->sample && q->label->spec
                         : q->context && *q->context && q->question && *q->question;
    if (!ok) {
        s_error_to_client(s, &client, e->request_id, TIS_EINVAL, "a request needs a context and a question");
        msg_free(e);
        return;
    }
    if (s_queued(s) >= s->o->max_queue) {
        Tis__Busy b = TIS__BUSY__INIT;
        b.queue_len = (uint32_t)s_queued(s);
        b.retry_after_ms = 200;
        s->n_busy++;
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = e->request_id;
        out.body_case = TIS__ENVELOPE__BODY_BUSY;
        out.busy = &b;
        wire_send(s->front, &client, &out);
        msg_free(e);
        return;
    }
    request *r = NULL;
    for (int64_t i = 0; i < s->n_rq && !r; i++)
        if (s->rq[i].st == ST_FREE) r = &s->rq[i];
    if (!r) {
        if (s->n_rq == s->cap_rq) {
            int64_t nc = s->cap_rq ? 2 * s->cap_rq : 64;
            request *p = realloc(s->rq, (size_t)nc * sizeof *p);
            if (!p) {
                s_error_to_client(s, &client, e->request_id, TIS_ENOMEM, "coordinator out of memory");
                msg_free(e);
                return;
            }
            s->rq = p;
            s->cap_rq = nc;
        }
        r = &s->rq[s->n_rq++];
    }
    memset(r, 0, sizeof *r);
    r->submit_len = tis__submit__get_packed_size(q);
    r->submit = malloc(r->submit_len ? r->submit_len : 1);
    if (!r->submit) {
        s_error_to_client(s, &client, e->request_id, TIS_ENOMEM, "coordinator out of memory");
        msg_free(e);
        return;
    }
    tis__submit__pack(q, r->submit);
    r->st = ST_WAIT_PREFILL;
    r->waiting_since = s_now();
    r->id = ++s->next_id;
    r->client = client;
    r->client_req = e->request_id;
    r->eval = eval;
    press pr;
    r->head_policy = !eval && q->policy && press_parse(q->policy, &pr) == 0 && pr.needs_head;
    r->t_submit = r->t_wait = tis_now();
    s->submitted++;
    msg_free(e);
}

/* Sends the request's job to w; false when w cannot be reached. The
 * request's own messages (packed by us) are unpacked once for the job. */
static bool s_send_job(self_t *s, worker_rec *w, request *r) {
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = r->id;
    Tis__Submit *q = tis__submit__unpack(NULL, r->submit_len, r->submit);
    Tis__PrefillDone *d = r->st == ST_WAIT_SCORE    ? tis__prefill_done__unpack(NULL, r->hidden_len, r->hidden)
                          : r->st == ST_WAIT_DECODE ? tis__prefill_done__unpack(NULL, r->done_len, r->done)
                                                    : NULL;
    if (!q || (r->st != ST_WAIT_PREFILL && !d)) { /* cannot happen: we packed them */
        if (d) tis__prefill_done__free_unpacked(d, NULL);
        if (q) tis__submit__free_unpacked(q, NULL);
        return true;
    }
    Tis__PrefillJob pj = TIS__PREFILL_JOB__INIT;
    Tis__ScoreJob sj = TIS__SCORE_JOB__INIT;
    Tis__DecodeJob dj = TIS__DECODE_JOB__INIT;
    stage next;
    if (r->st == ST_WAIT_PREFILL) {
        pj.request = q;
        pj.attempt = (uint32_t)r->attempts;
        bool scorer = false;
        for (int k = 0; k < s->n_w; k++) scorer |= s->w[k].role == TIS__ROLE__ROLE_SCORER;
        pj.outside_scores = r->head_policy && scorer;
        out.body_case = TIS__ENVELOPE__BODY_PREFILL_JOB;
        out.prefill_job = &pj;
        next = ST_PREFILL;
    } else if (r->st == ST_WAIT_SCORE) {
        sj.hidden = d->hidden;
        sj.n_rows = d->n_ctx;
        sj.n_query = d->n_query;
        sj.d_model = d->d_model;
        sj.policy = q->policy;
        out.body_case = TIS__ENVELOPE__BODY_SCORE_JOB;
        out.score_job = &sj;
        next = ST_SCORE;
    } else {
        dj.kv = d->kv;
        dj.layout = d->layout;
        dj.n_question_ids = d->n_question_ids;
        dj.question_ids = d->question_ids;
        dj.gen = q->gen;
        out.body_case = TIS__ENVELOPE__BODY_DECODE_JOB;
        out.decode_job = &dj;
        next = ST_DECODE;
    }
    double t_sent = tis_now(); /* before the send: the worker cannot start earlier */
    int rc = wire_send(s->back, &w->peer, &out);
    if (d) tis__prefill_done__free_unpacked(d, NULL);
    tis__submit__free_unpacked(q, NULL);
    if (!rc) r->st = next;
    if (rc) return false;
    r->queue_s += t_sent - r->t_wait;
    if (r->st == ST_DECODE) r->t_decode_sent = t_sent;
    w->credit--;
    w->last_job = ++s->n_dispatched;
    r->worker = w->peer;
    return true;
}

static void s_drop_worker(self_t *s, int i, const char *why) {
    worker_rec *w = &s->w[i];
    int64_t n_retry = 0, n_fail = 0;
    for (int64_t k = 0; k < s->n_rq; k++) {
        request *r = &s->rq[k];
        /* what it was running; and requests waiting for scores whose cache
         * it held (they start again from the prefill) */
        bool ran = s_running(r->st) && s_same(&r->worker, &w->peer);
        bool held = (r->st == ST_WAIT_SCORE || r->st == ST_SCORE) && s_same(&r->prefill_peer, &w->peer);
        if (!ran && !held) continue;
        r->attempts++;
        if (r->attempts >= s->o->max_attempts) {
            char msg[256];
            snprintf(msg, sizeof msg, "the worker running this request %s (after %lld attempts)", why,
                     (long long)r->attempts);
            s_error_to_client(s, &r->client, r->client_req, TIS_EIO, msg);
            s_finish(s, r);
            n_fail++;
        } else {
            r->st = r->st == ST_DECODE ? ST_WAIT_DECODE
                    : r->st == ST_SCORE && !held ? ST_WAIT_SCORE
                                                 : ST_WAIT_PREFILL;
            if (r->st == ST_WAIT_PREFILL) {
                free(r->hidden);
                r->hidden = NULL;
                s_release_score(s, r);
            }
            r->waiting_since = s_now();
            r->t_wait = tis_now();
            s->n_retried++;
            n_retry++;
        }
    }
    fprintf(stderr, "[coordinator] worker %.*s %s; %s\n", (int)w->peer.len, (const char *)w->peer.id, why,
            n_retry ? "its request is retried" : n_fail ? "its request fails" : "it held no request");
    s->w[i] = s->w[--s->n_w];
}

/* A worker message. */
static void s_back(self_t *s) {
    wire_peer peer;
    Tis__Envelope *e = NULL;
    int rc = wire_recv(s->back, 1, &peer, &e);
    double t_recv = tis_now(); /* after the receipt: the worker's figures end before it */
    worker_rec *w = peer.len ? s_worker(s, &peer) : NULL;
    if (w) w->last_seen = s_now();
    if (rc) {
        if (peer.len) wire_send_error(s->back, &peer, e ? e->request_id : 0, rc, tis_last_error());
        msg_free(e);
        return;
    }
    if (!w) {
        msg_free(e);
        return;
    }
    request *r = e->request_id ? s_find(s, e->request_id) : NULL;
    switch (e->body_case) {
    case TIS__ENVELOPE__BODY_READY:
        w->role = e->ready->role;
        w->credit = e->ready->capacity;
        break;
    case TIS__ENVELOPE__BODY_PREFILL_DONE:
        if (r && r->st == ST_PREFILL && !e->prefill_done->kv && e->prefill_done->hidden) {
            /* the head's input rows: to a scorer; the cache stays on this worker */
            r->hidden_len = tis__prefill_done__get_packed_size(e->prefill_done);
            r->hidden = malloc(r->hidden_len ? r->hidden_len : 1);
            if (r->hidden) {
                tis__prefill_done__pack(e->prefill_done, r->hidden);
                r->prefill_peer = peer;
                r->hidden_lease = e->prefill_done->hidden->lease_id;
                r->st = ST_WAIT_SCORE;
                r->waiting_since = s_now();
                r->t_wait = t_recv;
                r->prefill_s = e->prefill_done->prefill_s;
            } else {
                s_error_to_client(s, &r->client, r->client_req, TIS_ENOMEM, "coordinator out of memory");
                s_finish(s, r);
            }
        } else if (r && (r->st == ST_PREFILL || r->st == ST_COMPRESS) && e->prefill_done->kv) {
            double before = r->st == ST_COMPRESS ? r->prefill_s : 0;
            s_release_score(s, r);
            r->done_len = tis__prefill_done__get_packed_size(e->prefill_done);
            r->done = malloc(r->done_len ? r->done_len : 1);
            if (r->done) {
                tis__prefill_done__pack(e->prefill_done, r->done);
                r->prefill_peer = peer;
                r->lease = e->prefill_done->kv->lease_id;
                r->st = ST_WAIT_DECODE;
                r->waiting_since = s_now();
                r->t_wait = t_recv;
                r->prefill_s = before + e->prefill_done->prefill_s;
                r->full_kv_bytes = e->prefill_done->full_kv_bytes;
                s->handoff_bytes += e->prefill_done->kv->length;
                s->handoffs++;
                s->full_kv_bytes += e->prefill_done->full_kv_bytes;
                w->jobs_done++;
            } else {
                s_error_to_client(s, &r->client, r->client_req, TIS_ENOMEM, "coordinator out of memory");
                s_finish(s, r);
            }
        }
        break;
    case TIS__ENVELOPE__BODY_SCORE_DONE:
        if (r && r->st == ST_SCORE && e->score_done->scores) {
            w->jobs_done++;
            r->score_peer = peer;
            r->score_lease = e->score_done->scores->lease_id;
            r->scoring_s = e->score_done->scoring_s;
            Tis__CompressJob cj = TIS__COMPRESS_JOB__INIT;
            cj.scores = e->score_done->scores;
            cj.n = e->score_done->n;
            Tis__Envelope out = TIS__ENVELOPE__INIT;
            out.request_id = r->id;
            out.body_case = TIS__ENVELOPE__BODY_COMPRESS_JOB;
            out.compress_job = &cj;
            if (wire_send(s->back, &r->prefill_peer, &out) == 0) {
                r->st = ST_COMPRESS;
                r->worker = r->prefill_peer;
                free(r->hidden);
                r->hidden = NULL;
            } else { /* the worker holding its cache is gone: from the prefill again */
                s_release_score(s, r);
                free(r->hidden);
                r->hidden = NULL;
                r->st = ST_WAIT_PREFILL;
                r->attempts++;
                r->waiting_since = s_now();
                r->t_wait = t_recv;
            }
        }
        break;
    case TIS__ENVELOPE__BODY_REPLY:
        if (r && r->eval && r->st == ST_PREFILL) { /* an eval sample's rows, a label block */
            w->jobs_done++;
            if (e->reply->label && e->reply->label->block && e->reply->label->block->lease_id)
                s_client_lease(s, e->reply->label->block->lease_id, &peer, r);
            s->n_reply++;
            Tis__Envelope out = TIS__ENVELOPE__INIT;
            out.request_id = r->client_req;
            out.body_case = TIS__ENVELOPE__BODY_REPLY;
            out.reply = e->reply;
            wire_send(s->front, &r->client, &out);
            s_finish(s, r);
        } else if (r && r->st == ST_DECODE) {
            Tis__Timing own = TIS__TIMING__INIT, *tm = e->reply->timing ? e->reply->timing : &own;
            s_timing(r, tm, t_recv);
            e->reply->timing = tm;
            e->reply->full_kv_bytes = r->full_kv_bytes;
            s_record(s, tm);
            w->jobs_done++;
            s->n_reply++;
            Tis__Envelope out = TIS__ENVELOPE__INIT;
            out.request_id = r->client_req;
            out.body_case = TIS__ENVELOPE__BODY_REPLY;
            out.reply = e->reply;
            wire_send(s->front, &r->client, &out);
            if (tm == &own) e->reply->timing = NULL;
            s_finish(s, r);
        }
        break;
    case TIS__ENVELOPE__BODY_ERROR:
        /* a job that failed on a worker fails anywhere: answer now */
        if (r) {
            s_error_to_client(s, &r->client, r->client_req, e->error->code,
                              e->error->message ? e->error->message : "worker error");
            s_finish(s, r);
        }
        break;
    case TIS__ENVELOPE__BODY_HEARTBEAT:
        /* a worker this coordinator has not heard READY from (it restarted,
         * the worker did not): registered from what its heartbeat says */
        if (w->role == TIS__ROLE__ROLE_UNSPECIFIED && e->heartbeat->role != TIS__ROLE__ROLE_UNSPECIFIED) {
            w->role = e->heartbeat->role;
            w->credit = e->heartbeat->capacity;
            fprintf(stderr, "[coordinator] worker %.*s joined from its heartbeat\n", (int)peer.len,
                    (const char *)peer.id);
        }
        break;
    default:
        break; /* others: liveness only */
    }
    msg_free(e);
}

static void s_dispatch(self_t *s) {
    for (int64_t i = 0; i < s->n_rq; i++) {
        request *r = &s->rq[i];
        if (r->st != ST_WAIT_PREFILL && r->st != ST_WAIT_SCORE && r->st != ST_WAIT_DECODE) continue;
        if (r->attempts >= s->o->max_attempts) { /* restarted from the prefill too often */
            s_error_to_client(s, &r->client, r->client_req, TIS_EIO, "a worker holding this request was lost too often");
            s_finish(s, r);
            continue;
        }
        Tis__Role want = r->st == ST_WAIT_PREFILL ? TIS__ROLE__ROLE_PREFILL
                         : r->st == ST_WAIT_SCORE ? TIS__ROLE__ROLE_SCORER
                                                  : TIS__ROLE__ROLE_DECODE;
        bool any = false;
        for (int k = 0; k < s->n_w; k++) any |= s->w[k].role == want;
        if (!any && s_now() - r->waiting_since > (uint64_t)s->o->wait_ms) {
            s_error_to_client(s, &r->client, r->client_req, TIS_EIO,
                              want == TIS__ROLE__ROLE_PREFILL   ? "no prefill worker is alive"
                              : want == TIS__ROLE__ROLE_SCORER ? "no scorer worker is alive"
                                                               : "no decode worker is alive");
            s_finish(s, r);
            continue;
        }
        /* The least loaded worker of the role: the most free slots; among
         * equals, the one that was sent a job longest ago (round robin). */
        for (;;) {
            int best = -1;
            for (int k = 0; k < s->n_w; k++) {
                const worker_rec *c = &s->w[k];
                if (c->role != want || c->credit <= 0) continue;
                if (best < 0 || c->credit > s->w[best].credit ||
                    (c->credit == s->w[best].credit && c->last_job < s->w[best].last_job))
                    best = k;
            }
            if (best < 0) break;
            if (s_send_job(s, &s->w[best], r)) break;
            s_drop_worker(s, best, "could not be reached");
        }
    }
}

/* Blocks waiting for their consumer (a decode slot, a scorer) are kept
 * alive: every heartbeat their leases are renewed at the prefill worker
 * holding them. A renewal that fails (the block expired: the worker hung or
 * restarted) comes back as an Error for the request, answered to the client. */
static void s_renew(self_t *s) {
    for (int64_t k = 0; k < s->n_rq; k++) {
        request *r = &s->rq[k];
        uint64_t lease = (r->st == ST_WAIT_DECODE || r->st == ST_DECODE) ? r->lease
                         : (r->st == ST_WAIT_SCORE || r->st == ST_SCORE) ? r->hidden_lease
                                                                          : 0;
        if (!lease) continue;
        Tis__LeaseRenew lr = TIS__LEASE_RENEW__INIT;
        lr.lease_id = lease;
        lr.ttl_ms = (uint32_t)s->o->lease_ms;
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = r->id;
        e.body_case = TIS__ENVELOPE__BODY_LEASE_RENEW;
        e.lease_renew = &lr;
        wire_send(s->back, &r->prefill_peer, &e); /* a gone worker: its requests restart anyway */
    }
}

/* Liveness. Every heartbeat period the coordinator sends each worker a
 * heartbeat: with ZMQ_ROUTER_MANDATORY a worker whose process is gone (its
 * connection closed) cannot be reached, and is dropped at once. A worker
 * that is reachable but silent is dead after `liveness` periods when idle;
 * one holding a job is single-threaded and silent while it computes (a 4k
 * prefill takes seconds), so it gets job_timeout_ms. */
static void s_liveness(self_t *s) {
    uint64_t now = s_now();
    bool probe = now >= s->next_probe;
    if (probe) {
        s->next_probe = now + (uint64_t)s->o->heartbeat_ms;
        s_renew(s);
    }
    Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
    hb.time_ms = now;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    for (int k = 0; k < s->n_w; k++) {
        bool busy = false;
        for (int64_t i = 0; i < s->n_rq && !busy; i++)
            busy = s_running(s->rq[i].st) && s_same(&s->rq[i].worker, &s->w[k].peer);
        uint64_t limit = busy ? (uint64_t)s->o->job_timeout_ms : (uint64_t)(s->o->heartbeat_ms * s->o->liveness);
        const char *why = NULL;
        if (probe && wire_send(s->back, &s->w[k].peer, &e)) why = "disconnected";
        else if (now - s->w[k].last_seen > limit) why = busy ? "held a job past the job timeout" : "stopped answering";
        if (why) {
            s_drop_worker(s, k, why);
            k--;
        }
    }
}

int coord_run(const coord_opts *o) {
    self_t *s = calloc(1, sizeof *s);
    if (!s) return tis_error(TIS_ENOMEM, "coordinator: out of memory");
    s->o = o;
    s->t_start = tis_now();
    if (!(s->cl = calloc(CLIENT_LEASES, sizeof *s->cl))) {
        free(s);
        return tis_error(TIS_ENOMEM, "coordinator: out of memory");
    }
    {
        uint64_t x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(tis_now() * 1e9);
        x ^= x >> 31;
        s->instance = x ? x : 1;
    }
    s->ctx = zmq_ctx_new();
    s->front = zmq_socket(s->ctx, ZMQ_ROUTER);
    s->back = zmq_socket(s->ctx, ZMQ_ROUTER);
    int one = 1, linger = 0, rc = 0;
    zmq_setsockopt(s->front, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->back, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->front, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->back, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s->front, o->front) || zmq_bind(s->back, o->back))
        rc = tis_error(TIS_EIO, "coordinator: cannot bind %s / %s: %s", o->front, o->back,
                       zmq_strerror(zmq_errno()));
    struct sigaction sa = {0};
    sa.sa_handler = s_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!rc && !s_stop && !(o->stop_after > 0 && s->answered >= o->stop_after)) {
        zmq_pollitem_t it[2] = {{s->front, 0, ZMQ_POLLIN, 0}, {s->back, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, 2, (long)o->heartbeat_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = tis_error(TIS_EIO, "coordinator: poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) s_back(s);
        if (it[0].revents & ZMQ_POLLIN) s_front(s);
        s_liveness(s);
        s_dispatch(s);
    }
    /* Stop the workers; anything still in flight is answered with an error. */
    Tis__Shutdown sh = TIS__SHUTDOWN__INIT;
    sh.reason = "coordinator stopping";
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.body_case = TIS__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &sh;
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE) {
            s_error_to_client(s, &s->rq[i].client, s->rq[i].client_req, TIS_EIO, "the coordinator is stopping");
            s_finish(s, &s->rq[i]);
        }
    for (int k = 0; k < s->n_w; k++) wire_send(s->back, &s->w[k].peer, &e);
    free(s->rq);
    free(s->cl);
    zmq_close(s->front);
    zmq_close(s->back);
    zmq_ctx_term(s->ctx);
    free(s);
    return rc;
}
