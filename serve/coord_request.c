/* coord_request: a request's life in the coordinator: the stage table,
 * the jobs it sends, the answers it takes, the timings of the reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_internal.h"
#include "tis_error.h"

static void s_remember(self_t *s, const request *r) {
    int64_t k = s->n_recent++ % RECENT;
    s->recent[k].client = r->client;
    s->recent[k].req = r->client_req;
}

static void s_release_score(self_t *s, request *r) {
    if (!r->score_lease) return;
    coord_release(s, &r->score_peer, r->score_lease);
    r->score_lease = 0;
}

/* Forgets what a restart from the prefill makes again. */
static void s_forget_prefill(self_t *s, request *r) {
    s_release_score(s, r);
    msg_free(r->hidden);
    msg_free(r->scores);
    r->hidden = r->scores = NULL;
    r->kept = 0;
}

/* The request is answered (or failed): its blocks freed, its slot too. */
void coord_request_finish(self_t *s, request *r) {
    if (r->lease) coord_release(s, &r->prefill_peer, r->lease);
    s_forget_prefill(s, r);
    msg_free(r->block);
    msg_free(r->in);
    s_remember(s, r);
    memset(r, 0, sizeof *r);
    s->answered++;
}

static request *s_find(self_t *s, uint64_t id) {
    for (int64_t i = 0; i < s->n_rq; i++)
        if (s->rq[i].st != ST_FREE && s->rq[i].id == id) return &s->rq[i];
    return NULL;
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
    tm->compress_s = r->compress_s;
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

/* ---- the stages: their jobs and answers ------------------------------------ */

static void s_job_prefill(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b) {
    tis__prefill_job__init(&b->prefill);
    b->prefill.request = r->in->submit;
    b->prefill.attempt = (uint32_t)r->attempts;
    b->prefill.outside_scores = r->head_policy && coord_role_alive(s, TIS__ROLE__ROLE_SCORER);
    out->body_case = TIS__ENVELOPE__BODY_PREFILL_JOB;
    out->prefill_job = &b->prefill;
}

static void s_job_score(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b) {
    const Tis__PrefillDone *d = r->hidden->prefill_done;
    tis__score_job__init(&b->score);
    b->score.hidden = d->hidden;
    b->score.n_rows = d->n_ctx;
    b->score.n_query = d->n_query;
    b->score.d_model = d->d_model;
    b->score.n_ctx_ids = d->n_ctx_ids;
    b->score.ctx_ids = d->ctx_ids;
    b->score.policy = r->in->submit->policy;
    out->body_case = TIS__ENVELOPE__BODY_SCORE_JOB;
    out->score_job = &b->score;
}

static void s_job_compress(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b) {
    tis__compress_job__init(&b->compress);
    b->compress.scores = r->scores->score_done->scores;
    b->compress.n = r->scores->score_done->n;
    out->body_case = TIS__ENVELOPE__BODY_COMPRESS_JOB;
    out->compress_job = &b->compress;
}

static void s_job_decode(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b) {
    const Tis__PrefillDone *d = r->block->prefill_done;
    tis__decode_job__init(&b->decode);
    b->decode.kv = d->kv;
    b->decode.layout = d->layout;
    b->decode.n_question_ids = d->n_question_ids;
    b->decode.question_ids = d->question_ids;
    b->decode.gen = r->in->submit->gen;
    b->decode.stream = r->in->submit->stream;
    b->decode.question_text = r->in->submit->question; /* (protobuf-c's default "" when absent) */
    if (r->in->submit->context_id) { /* a kept context: the worker tokenizes the new question */
        b->decode.n_question_ids = 0;
        b->decode.question = r->in->submit;
    }
    out->body_case = TIS__ENVELOPE__BODY_DECODE_JOB;
    out->decode_job = &b->decode;
}

/* Eval and label jobs go to a prefill worker as the client sent them. */
static void s_job_as_sent(const self_t *s, const request *r, Tis__Envelope *out, job_bodies *b) {
    out->body_case = r->in->body_case;
    if (r->in->body_case == TIS__ENVELOPE__BODY_EVAL_JOB) out->eval_job = r->in->eval_job;
    else out->label_job = r->in->label_job;
}

static stage s_fail(self_t *s, request *r, int code, const char *msg) {
    coord_error_to_client(s, &r->client, r->client_req, code, msg);
    return ST_FREE;
}

/* PrefillDone: the head's input rows (a scorer scores next), or the
 * compressed block (decode next). */
static stage s_on_prefilled(self_t *s, request *r, const wire_peer *from, Tis__Envelope **e, double t_recv) {
    const Tis__PrefillDone *d = (*e)->prefill_done;
    if (!d->kv && !(d->hidden && r->st == ST_PREFILL))
        return s_fail(s, r, TIS_EIO, "a prefill worker answered without the block");
    r->prefill_peer = *from;
    if (!d->kv) {
        r->kept = d->hidden->lease_id;
        r->prefill_s = d->prefill_s;
        r->hidden = coord_take(e);
        return ST_SCORE;
    }
    r->prefill_s = (r->st == ST_COMPRESS ? r->prefill_s : 0) + d->prefill_s;
    r->compress_s = d->compress_s;
    s_forget_prefill(s, r); /* the scores are used */
    r->lease = r->kept = d->kv->lease_id;
    r->full_kv_bytes = d->full_kv_bytes;
    s->handoff_bytes += d->kv->length;
    s->handoffs++;
    s->full_kv_bytes += d->full_kv_bytes;
    r->block = coord_take(e);
    return ST_DECODE;
}

/* ScoreDone: the prefill worker holding the cache compresses by them. */
static stage s_on_scored(self_t *s, request *r, const wire_peer *from, Tis__Envelope **e, double t_recv) {
    const Tis__ScoreDone *d = (*e)->score_done;
    if (!d->scores) return s_fail(s, r, TIS_EIO, "a scorer answered without the scores");
    r->score_peer = *from;
    r->score_lease = d->scores->lease_id;
    r->scoring_s = d->scoring_s;
    r->scores = coord_take(e);
    return ST_COMPRESS;
}

/* The answer goes to the client under its own request id. */
static void s_answer(self_t *s, request *r, Tis__Envelope *e) {
    e->request_id = r->client_req;
    e->seq = 0;
    wire_send(s->front, &r->client, e);
    s->n_reply++;
}

/* Reply (decode): the timings completed, then to the client. */
static stage s_on_reply(self_t *s, request *r, const wire_peer *from, Tis__Envelope **e, double t_recv) {
    Tis__Reply *rp = (*e)->reply;
    Tis__Timing own = TIS__TIMING__INIT, *tm = rp->timing ? rp->timing : &own;
    s_timing(r, tm, t_recv);
    rp->timing = tm;
    rp->full_kv_bytes = r->full_kv_bytes;
    if (r->in->submit->keep_context) rp->context_id = coord_context_keep(s, r);
    s_record(s, tm);
    s_answer(s, r, *e);
    if (tm == &own) rp->timing = NULL;
    return ST_FREE;
}

/* EvalDone, LabelDone: to the client; a label block stays in the worker's
 * arena until the client releases it. */
static stage s_on_job_done(self_t *s, request *r, const wire_peer *from, Tis__Envelope **e, double t_recv) {
    const Tis__LabelDone *ld = (*e)->body_case == TIS__ENVELOPE__BODY_LABEL_DONE ? (*e)->label_done : NULL;
    if (ld && ld->block && ld->block->lease_id) s_client_lease(s, ld->block->lease_id, from, r);
    s_answer(s, r, *e);
    return ST_FREE;
}

/* The stages, as a table:
 *
 *   stage     run by   its job (sent)  ends with    then             when its worker is lost
 *   PREFILL   prefill  PrefillJob      PrefillDone  SCORE or DECODE  PREFILL again
 *   SCORE     scorer   ScoreJob        ScoreDone    COMPRESS         SCORE again (PREFILL: the cache is lost)
 *   COMPRESS  holder   CompressJob     PrefillDone  DECODE           PREFILL
 *   DECODE    decode   DecodeJob       Reply        answered         DECODE again
 *   EVAL      prefill  EvalJob         EvalDone     answered         EVAL again
 *   LABEL     prefill  LabelJob        LabelDone    answered         LABEL again
 *
 * ("holder": the prefill worker holding the request's cache.) An Error from
 * the worker running a stage, or holding its block, fails the request at
 * any stage: a job that failed fails anywhere. */
const stage_def COORD_STAGE[ST_N] = {
    [ST_PREFILL] = {.role = TIS__ROLE__ROLE_PREFILL, .job = s_job_prefill,
                    .done = TIS__ENVELOPE__BODY_PREFILL_DONE, .on_done = s_on_prefilled, .on_fail = ST_PREFILL},
    [ST_SCORE] = {.role = TIS__ROLE__ROLE_SCORER, .needs_holder = true, .keep_block = true,
                  .job = s_job_score, .done = TIS__ENVELOPE__BODY_SCORE_DONE, .on_done = s_on_scored,
                  .on_fail = ST_SCORE},
    [ST_COMPRESS] = {.role = TIS__ROLE__ROLE_PREFILL, .on_holder = true, .needs_holder = true,
                     .job = s_job_compress, .done = TIS__ENVELOPE__BODY_PREFILL_DONE, .on_done = s_on_prefilled,
                     .on_fail = ST_PREFILL},
    [ST_DECODE] = {.role = TIS__ROLE__ROLE_DECODE, .keep_block = true, .job = s_job_decode,
                   .done = TIS__ENVELOPE__BODY_REPLY, .on_done = s_on_reply, .on_fail = ST_DECODE},
    [ST_EVAL] = {.role = TIS__ROLE__ROLE_PREFILL, .job = s_job_as_sent,
                 .done = TIS__ENVELOPE__BODY_EVAL_DONE, .on_done = s_on_job_done, .on_fail = ST_EVAL},
    [ST_LABEL] = {.role = TIS__ROLE__ROLE_PREFILL, .job = s_job_as_sent,
                  .done = TIS__ENVELOPE__BODY_LABEL_DONE, .on_done = s_on_job_done, .on_fail = ST_LABEL},
};

/* ---- moving requests through the stages ------------------------------------ */

/* Sends r's job to w; false when w cannot be reached. */
bool coord_request_start(self_t *s, worker_rec *w, request *r) {
    const stage_def *sd = &COORD_STAGE[r->st];
    job_bodies b;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = r->id;
    sd->job(s, r, &out, &b);
    double t_sent = tis_now(); /* before the send: the worker cannot start earlier */
    if (wire_send(s->back, &w->peer, &out)) return false;
    r->running = true;
    r->worker = w->peer;
    r->queue_s += t_sent - r->t_wait;
    if (r->st == ST_DECODE) r->t_decode_sent = t_sent;
    if (!sd->on_holder) { /* a job on the holder is the rest of one it took */
        w->credit--;
        w->last_job = ++s->n_dispatched;
    }
    return true;
}

/* r's worker is lost or could not be reached (why): r starts again at its
 * stage's on_fail, or at PREFILL when the cache it needs is what was lost;
 * after max_attempts tries the client gets an Error. False: it failed. */
bool coord_request_restart(self_t *s, request *r, bool cache_lost, const char *why) {
    if (++r->attempts >= s->o->max_attempts) {
        char msg[256];
        snprintf(msg, sizeof msg, "the worker running this request %s (after %lld attempts)", why,
                 (long long)r->attempts);
        coord_error_to_client(s, &r->client, r->client_req, TIS_EIO, msg);
        coord_request_finish(s, r);
        return false;
    }
    stage to = cache_lost ? ST_PREFILL : COORD_STAGE[r->st].on_fail;
    if (to == ST_PREFILL) s_forget_prefill(s, r);
    s->n_retried++;
    coord_request_enter(s, r, to, tis_now());
    return true;
}

/* r enters stage st at time t: queued for a worker of its role; a stage
 * that runs on the holder of the cache is sent there at once. */
void coord_request_enter(self_t *s, request *r, stage st, double t) {
    r->st = st;
    r->running = false;
    r->waiting_since = tis_now_ms();
    r->t_wait = t;
    if (!COORD_STAGE[st].on_holder) return;
    worker_rec *w = coord_worker(s, &r->prefill_peer, false);
    if (!w || !coord_request_start(s, w, r)) coord_request_restart(s, r, true, "could not be reached");
}

/* An answer nobody waits for (late, from a worker given up on, or for a
 * request already answered): the block it names is freed at once. */
static void s_drop_answer(self_t *s, const wire_peer *from, const Tis__Envelope *e) {
    const Tis__BlockRef *b = NULL;
    if (e->body_case == TIS__ENVELOPE__BODY_PREFILL_DONE)
        b = e->prefill_done->kv ? e->prefill_done->kv : e->prefill_done->hidden;
    else if (e->body_case == TIS__ENVELOPE__BODY_SCORE_DONE)
        b = e->score_done->scores;
    else if (e->body_case == TIS__ENVELOPE__BODY_LABEL_DONE)
        b = e->label_done->block;
    if (b && b->lease_id) coord_release(s, from, b->lease_id);
}

/* An answer from a worker: it ends the stage of the request it names when
 * it is the answer that stage waits for, from the worker running it. */
/* A block's bytes for a decode worker on another host (fetch.h): its
 * BlockFetch goes to the prefill worker holding the request's block (only
 * for that block: its lease), the BlockChunk back to the decode worker
 * running the request. Anything else is dropped (the fetch times out). */
static void s_relay_block(self_t *s, request *r, const wire_peer *from, Tis__Envelope *e) {
    if (!r || r->st != ST_DECODE || !r->running || !r->block || !r->block->prefill_done->kv) return;
    const Tis__BlockRef *mine = r->block->prefill_done->kv;
    if (e->body_case == TIS__ENVELOPE__BODY_BLOCK_FETCH && coord_runs(r, from) && e->block_fetch->block &&
        e->block_fetch->block->lease_id == mine->lease_id)
        wire_send(s->back, &r->prefill_peer, e);
    else if (e->body_case == TIS__ENVELOPE__BODY_BLOCK_CHUNK && coord_same(&r->prefill_peer, from))
        wire_send(s->back, &r->worker, e);
}

void coord_request_answer(self_t *s, worker_rec *w, const wire_peer *from, Tis__Envelope **e, double t_recv) {
    request *r = (*e)->request_id ? s_find(s, (*e)->request_id) : NULL;
    if ((*e)->body_case == TIS__ENVELOPE__BODY_BLOCK_FETCH || (*e)->body_case == TIS__ENVELOPE__BODY_BLOCK_CHUNK) {
        s_relay_block(s, r, from, *e);
        return;
    }
    if ((*e)->body_case == TIS__ENVELOPE__BODY_TOKENS) { /* a streamed request's tokens: on to its client */
        if (r && r->st == ST_DECODE && coord_runs(r, from)) {
            (*e)->request_id = r->client_req;
            (*e)->seq = 0;
            wire_send(s->front, &r->client, *e);
        }
        return;
    }
    if (!r || !coord_runs(r, from) || (*e)->body_case != COORD_STAGE[r->st].done) {
        s_drop_answer(s, from, *e);
        return;
    }
    w->jobs_done++;
    stage next = COORD_STAGE[r->st].on_done(s, r, from, e, t_recv);
    if (next == ST_FREE) coord_request_finish(s, r);
    else coord_request_enter(s, r, next, t_recv);
}

/* A client's Cancel: its request is dropped wherever it is, unanswered; a
 * decode worker generating it is told to stop (a prefill worker finishes
 * its job, whose late answer is dropped and its block freed). */
void coord_request_cancel(self_t *s, const wire_peer *client, uint64_t req) {
    for (int64_t i = 0; i < s->n_rq; i++) {
        request *r = &s->rq[i];
        if (r->st == ST_FREE || r->client_req != req || !coord_same(&r->client, client)) continue;
        if (r->running && r->st == ST_DECODE) {
            Tis__Cancel c = TIS__CANCEL__INIT;
            c.reason = "the client cancelled";
            Tis__Envelope out = TIS__ENVELOPE__INIT;
            out.request_id = r->id;
            out.body_case = TIS__ENVELOPE__BODY_CANCEL;
            out.cancel = &c;
            wire_send(s->back, &r->worker, &out);
        }
        s->n_cancelled++;
        coord_request_finish(s, r);
        return;
    }
}

/* An Error from a worker fails the request it names, when it comes from
 * the worker running it or from the one holding its blocks (a renewal that
 * found a block gone): a job that failed fails anywhere. */
void coord_request_error(self_t *s, const wire_peer *from, const Tis__Envelope *e) {
    if (coord_context_lost(s, from, e->request_id)) return;
    request *r = e->request_id ? s_find(s, e->request_id) : NULL;
    if (!r || !(coord_runs(r, from) || (r->prefill_peer.len && coord_same(&r->prefill_peer, from)))) return;
    if (!coord_runs(r, from) && e->error->code == TIS_ENOTFOUND) {
        /* its block is gone from the worker holding it (a renewal failed: that
         * worker restarted under its name): prefill again, attempts allowing */
        coord_request_restart(s, r, true, "lost its block");
        return;
    }
    coord_error_to_client(s, &r->client, r->client_req, e->error->code,
                          e->error->message ? e->error->message : "worker error");
    coord_request_finish(s, r);
}

