/* test_worker: prefill and decode worker processes (the tis binary) driven
 * by this test acting as the coordinator over ipc://: READY, a request
 * through both stages with the KV handed over in shared memory gives
 * exactly the answer `tis eval` gives; bad messages get an Error and the
 * workers keep serving; a request waiting for a scorer's scores survives
 * an eval job on the same worker; Shutdown ends them and leaves no segment
 * behind. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "arena.h"
#include "bench.h"
#include "eval.h"
#include "eval_rows.h"
#include "head.h"
#include "tiny_model.h"
#include "tt.h"
#include "wire.h"
#include "wire_eval.h"
#include "wire_jobs.h"

/* The next message (heartbeats skipped when asked), or NULL after
 * timeout_ms in all: heartbeats keep coming, so the deadline is overall. */
static Tis__Envelope *s_next(void *r, wire_peer *peer, int timeout_ms, bool skip_heartbeats) {
    uint64_t end = tis_now_ms() + (uint64_t)timeout_ms;
    for (uint64_t now = tis_now_ms(); now < end; now = tis_now_ms()) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)(end - now)) != 1) return NULL;
        Tis__Envelope *e = NULL;
        int rc = wire_recv(r, 1, peer, &e);
        if (rc) {
            msg_free(e);
            return NULL;
        }
        if (!skip_heartbeats || e->body_case != TIS__ENVELOPE__BODY_HEARTBEAT) return e;
        msg_free(e);
    }
    return NULL;
}

/* The next message that is neither a heartbeat nor READY, within
 * timeout_ms in all, or NULL. */
static Tis__Envelope *s_next_not_ready(void *r, wire_peer *peer, int timeout_ms) {
    uint64_t end = tis_now_ms() + (uint64_t)timeout_ms;
    for (uint64_t now = tis_now_ms(); now < end; now = tis_now_ms()) {
        Tis__Envelope *x = s_next(r, peer, (int)(end - now), true);
        if (!x || x->body_case != TIS__ENVELOPE__BODY_READY) return x;
        msg_free(x);
    }
    return NULL;
}

/* A request with policy tis, routed to a scorer: the prefill worker parks
 * it (its cache kept) and answers with the head's input rows. */
static int64_t s_park(void *r, const wire_peer *prefill, uint64_t id, Tis__Submit *sub) {
    wire_peer peer;
    TT_OK(tt_send_prefill_job(r, prefill, id, sub, true));
    Tis__Envelope *e = s_next_not_ready(r, &peer, 20000);
    bool ok = e && e->body_case == TIS__ENVELOPE__BODY_PREFILL_DONE && e->request_id == id &&
              e->prefill_done->hidden && !e->prefill_done->kv;
    TT_CHECK(ok);
    int64_t n_ctx = ok ? e->prefill_done->n_ctx : 0;
    msg_free(e);
    return n_ctx;
}

/* The CompressJob for a parked request -> its block's bytes (malloc'd,
 * *len), read from the prefill worker's arena; the lease is released. */
static uint8_t *s_compress(void *r, const wire_peer *prefill, arena *pa, uint64_t id, Tis__BlockRef *scores,
                           uint32_t n, size_t *len) {
    wire_peer peer;
    *len = 0;
    Tis__CompressJob cj = TIS__COMPRESS_JOB__INIT;
    cj.scores = scores;
    cj.n = n;
    Tis__Envelope ec = TIS__ENVELOPE__INIT;
    ec.request_id = id;
    ec.body_case = TIS__ENVELOPE__BODY_COMPRESS_JOB;
    ec.compress_job = &cj;
    TT_OK(wire_send(r, prefill, &ec));
    Tis__Envelope *e = s_next_not_ready(r, &peer, 20000);
    bool ok = e && e->body_case == TIS__ENVELOPE__BODY_PREFILL_DONE && e->request_id == id && e->prefill_done->kv;
    if (e && e->body_case == TIS__ENVELOPE__BODY_ERROR) fprintf(stderr, "  compress %llu: %s\n",
                                                               (unsigned long long)id, e->error->message);
    TT_CHECK(ok);
    uint8_t *out = NULL;
    const Tis__BlockRef *kv = ok ? e->prefill_done->kv : NULL;
    const void *at = kv && pa ? arena_at(pa, kv->offset, kv->length) : NULL;
    if (at && (out = malloc(kv->length ? kv->length : 1))) {
        memcpy(out, at, kv->length);
        *len = kv->length;
    }
    if (kv) {
        Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
        rl.lease_id = kv->lease_id;
        Tis__Envelope el = TIS__ENVELOPE__INIT;
        el.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
        el.lease_release = &rl;
        TT_OK(wire_send(r, prefill, &el));
    }
    msg_free(e);
    return out;
}

/* What every step below reads: the coordinator's ROUTER, the two workers
 * (their peers and pids), the model, the prefill worker's arena name, the
 * request every stage answers and eval's row for it. */
typedef struct fixture {
    void *r; /* the coordinator's ROUTER (main's) */
    wire_peer prefill, decode;
    pid_t pp, pd;
    const model *m;
    const char *pname;    /* the prefill worker's arena name */
    bench_sample smp;     /* the request (views of literals) */
    char *answers[1];     /* smp's answers */
    const eval_row *want; /* eval's row for smp (in main's rows), or NULL */
    uint64_t real_lease;  /* a lease of the prefill worker's arena instance */
} fixture;

/* An eval job (a spec this worker has not seen) while request 20 waits:
 * answered with its one row. */
static void s_eval_between(const fixture *x, const bench_sample *smp) {
    wire_peer peer;
    const char *pol[] = {"full"};
    double bud[] = {0.5};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = pol;
    cfg.n_policies = 1;
    cfg.budgets = bud;
    cfg.n_budgets = 1;
    cfg.max_new = 4;
    Tis__EvalSpec spec;
    wire_eval_spec_view(&cfg, x->m->config.name, &spec);
    Tis__EvalSample sm;
    wire_eval_sample_view(smp, &sm);
    Tis__EvalJob ev = TIS__EVAL_JOB__INIT;
    ev.benchmark = "x";
    ev.sample = &sm;
    ev.spec = &spec;
    Tis__Envelope ee = TIS__ENVELOPE__INIT;
    ee.request_id = 21;
    ee.body_case = TIS__ENVELOPE__BODY_EVAL_JOB;
    ee.eval_job = &ev;
    TT_OK(wire_send(x->r, &x->prefill, &ee));
    Tis__Envelope *e = s_next_not_ready(x->r, &peer, 20000);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_EVAL_DONE && e->request_id == 21 && e->eval_done->n_rows == 1);
    if (e && e->body_case == TIS__ENVELOPE__BODY_EVAL_DONE && e->eval_done->n_rows == 1) {
        /* the row names the worker's cache; a row naming no cache type is refused */
        eval_row row;
        TT_OK(wire_eval_row_from(e->eval_done->rows[0], &row));
        TT_CHECK(!strcmp(row.kv_type, "f16"));
        char *kept = e->eval_done->rows[0]->kv_type; /* the unpacked string: back before msg_free */
        e->eval_done->rows[0]->kv_type = "f17";
        TT_FAILS(wire_eval_row_from(e->eval_done->rows[0], &row), TIS_EINVAL);
        TT_CHECK(strstr(tis_last_error(), "kv type 'f17'") != NULL);
        e->eval_done->rows[0]->kv_type = ""; /* a worker of an earlier version: unknown */
        TT_OK(wire_eval_row_from(e->eval_done->rows[0], &row));
        TT_CHECK(row.kv_type[0] == 0);
        e->eval_done->rows[0]->kv_type = kept;
    }
    msg_free(e);
}

/* The scores for parked request 20 (n_ctx of them), where a scorer leaves
 * them: in its own arena. The worker (still alive) compresses request 20
 * to the very block the same request (sub, parked again as 22) and scores
 * give with nothing in between. */
static void s_compress_parked(const fixture *x, Tis__Submit *sub, int64_t n_ctx) {
    char an[64];
    snprintf(an, sizeof an, "tw-scores-%d", (int)getpid());
    arena *sa = NULL, *pa = NULL;
    TT_OK(arena_create(&sa, an, 1 << 16));
    char seg[128] = "";
    tt_shm_find(x->pname, seg, sizeof seg);
    TT_OK(arena_open(&pa, seg));
    uint64_t off = 0, lease = 0;
    size_t nb = (size_t)n_ctx * sizeof(float);
    if (sa) TT_OK(arena_alloc(sa, nb, 60000, &off, &lease));
    float *sc = sa ? arena_at(sa, off, nb) : NULL;
    TT_CHECK(sc != NULL);
    if (sc) {
        for (int64_t i = 0; i < n_ctx; i++) sc[i] = (float)((i * 7) % 11) - 0.25f * (float)i;
        Tis__BlockRef sbr = TIS__BLOCK_REF__INIT;
        sbr.arena = (char *)arena_name(sa);
        sbr.offset = off;
        sbr.length = nb;
        sbr.lease_id = lease;
        size_t la = 0, lb = 0;
        uint8_t *a = s_compress(x->r, &x->prefill, pa, 20, &sbr, (uint32_t)n_ctx, &la);
        bool alive = waitpid(x->pp, NULL, WNOHANG) == 0;
        TT_CHECK(alive);
        /* the reference: the same request parked and compressed, nothing between */
        uint8_t *b = NULL;
        if (alive && s_park(x->r, &x->prefill, 22, sub) == n_ctx)
            b = s_compress(x->r, &x->prefill, pa, 22, &sbr, (uint32_t)n_ctx, &lb);
        TT_CHECK(a && b && la > 0 && la == lb && memcmp(a, b, la) == 0);
        free(a);
        free(b);
    }
    arena_destroy(&pa);
    arena_destroy(&sa);
}

/* A request routed to a scorer parks in the prefill worker; an eval job
 * with a new spec comes in between; then the CompressJob: the worker (still
 * alive) compresses the parked request by the scores to the very block the
 * same request and scores give with no eval job in between. (The eval job
 * used to free every parked request and leave it listed: the CompressJob
 * then crashed the worker.) */
static void s_parked_survives_eval(const fixture *x) {
    bench_sample smp = {.context = "one two three four five six seven eight nine ten eleven twelve and more",
                        .question = "what comes after four?"};
    snprintf(smp.id, sizeof smp.id, "s20");
    char *answers[1] = {"five"};
    smp.answers = answers;
    smp.n_answers = 1;
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = 8;
    gp.seed = 42;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = (char *)smp.context;
    sub.question = (char *)smp.question;
    sub.policy = "tis";
    sub.budget = 0.5;
    sub.gen = &gp;
    int64_t n_ctx = s_park(x->r, &x->prefill, 20, &sub);
    TT_CHECK(n_ctx > 4);
    if (n_ctx <= 4) return;

    TT_CASE("an eval job while a request waits for scores");
    s_eval_between(x, &smp);
    s_compress_parked(x, &sub, n_ctx);
}

/* Binds the ROUTER at ep and starts the prefill worker (with a random head:
 * it needs its layer to keep the hidden rows of a request scored outside)
 * and the decode worker; both announce READY (in either order). */
static void s_start(fixture *x, const char *bin, const char *ep, const char *tiny) {
    TT_CASE("prefill and decode workers start");
    char hp[512], dname[64];
    snprintf(hp, sizeof hp, "%s", tt_path("head.safetensors"));
    snprintf(dname, sizeof dname, "tw-decode-%d", (int)getpid());
    head_config hc = {.kind = HEAD_LINEAR, .d_model = x->m->config.d_model, .layer = 2};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", x->m->config.name);
    head *hh = NULL;
    TT_OK(head_new(&hh, &hc, 3));
    if (hh) TT_OK(head_save(hh, hp));
    head_destroy(&hh);

    int one = 1, linger = 0;
    zmq_setsockopt(x->r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(x->r, ZMQ_LINGER, &linger, sizeof linger);
    TT_CHECK(zmq_bind(x->r, ep) == 0);
    const char *ap[] = {bin, "worker", "--role", "prefill", "--connect", ep, "--name", x->pname, "-m", tiny,
                        "--arena_mb", "8", "--heartbeat_ms", "200", "--head", hp, NULL};
    const char *ad[] = {bin, "worker", "--role", "decode", "--connect", ep, "--name", dname, "-m", tiny,
                        "--arena_mb", "8", "--heartbeat_ms", "200", NULL};
    x->pp = tt_spawn(ap, NULL, NULL);
    x->pd = tt_spawn(ad, NULL, NULL);

    wire_peer peer;
    for (int k = 0; k < 2; k++) {
        Tis__Envelope *e = s_next(x->r, &peer, 10000, true);
        TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_READY);
        if (e && e->body_case == TIS__ENVELOPE__BODY_READY) {
            if (e->ready->role == TIS__ROLE__ROLE_PREFILL) {
                x->prefill = peer;
                TT_CHECK(e->ready->arena && !strncmp(e->ready->arena, "/tis-tw-prefill-", 16));
            } else {
                x->decode = peer;
            }
        }
        msg_free(e);
    }
    TT_CHECK(x->prefill.len > 0 && x->decode.len > 0);
    char shm[128];
    TT_CHECK(tt_shm_find(x->pname, shm, sizeof shm) == 1);
}

/* The request through eval, for the reference answer: x->smp, and
 * x->want in *rows (malloc'd; the caller frees). */
static void s_reference(fixture *x, eval_row **rows) {
    TT_CASE("the reference answer from eval");
    x->smp = (bench_sample){
        .context = "the cat sat on the mat and then the dog ran in the park while the sun was hot",
        .question = "where is the cat?"};
    snprintf(x->smp.id, sizeof x->smp.id, "req-7");
    x->answers[0] = "mat";
    x->smp.answers = x->answers;
    x->smp.n_answers = 1;
    const char *pol[] = {"snapkv"};
    int64_t n_rows = 0;
    TT_OK(tt_eval_reference(x->m, pol, 1, 0.5, NULL, NULL, 0, &x->smp, 1, rows, &n_rows));
    x->want = n_rows == 1 ? &(*rows)[0] : NULL; /* snapkv at 0.5, agnostic */
    if (!x->want) fprintf(stderr, "  eval gave %lld rows\n", (long long)n_rows);
    TT_CHECK(x->want && !strcmp(x->want->policy, "snapkv"));
}

/* Garbage and a decode job to the prefill worker: an Error each, and it
 * keeps serving. */
static void s_bad_messages(const fixture *x) {
    TT_CASE("bad messages to the prefill worker");
    wire_peer peer;
    TT_CHECK(zmq_send(x->r, x->prefill.id, x->prefill.len, ZMQ_SNDMORE) >= 0 && zmq_send(x->r, "junk", 4, 0) == 4);
    Tis__Envelope *e = s_next(x->r, &peer, 10000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_ERROR);
    msg_free(e);
    /* a decode job sent to the prefill worker: an Error */
    TT_OK(tt_send_decode_job(x->r, &x->prefill, 3, NULL, NULL, 0, NULL, NULL));
    e = s_next(x->r, &peer, 10000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_ERROR && e->request_id == 3);
    msg_free(e);
    /* (it re-announces READY after a job, failed or not) */
    e = s_next(x->r, &peer, 10000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_READY);
    msg_free(e);
}

/* An unknown policy: an Error naming it, then READY again. */
static void s_unknown_policy(const fixture *x) {
    TT_CASE("an unknown policy");
    wire_peer peer;
    Tis__Submit bs = TIS__SUBMIT__INIT;
    bs.context = "some context words here";
    bs.question = "what?";
    bs.policy = "nosuch";
    bs.budget = 0.5;
    TT_OK(tt_send_prefill_job(x->r, &x->prefill, 4, &bs, false));
    Tis__Envelope *e = s_next(x->r, &peer, 10000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_ERROR && e->request_id == 4 &&
             strstr(e->error->message, "nosuch"));
    msg_free(e);
    e = s_next(x->r, &peer, 10000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_READY);
    msg_free(e);
}

/* The decode stage of request 7: the block d names, decoded by the decode
 * worker, answers what eval answers with the same KV bytes. */
static void s_decode(const fixture *x, const Tis__PrefillDone *d, Tis__GenParams *gp) {
    wire_peer peer;
    TT_OK(tt_send_decode_job(x->r, &x->decode, 7, d->kv, d->layout, d->n_question_ids, d->question_ids, gp));
    Tis__Envelope *rep = NULL;
    for (int k = 0; k < 4 && !rep; k++) { /* skip the prefill worker's READY */
        Tis__Envelope *e = s_next(x->r, &peer, 20000, true);
        if (e && e->body_case == TIS__ENVELOPE__BODY_REPLY) rep = e;
        else msg_free(e);
    }
    TT_CHECK(rep && rep->request_id == 7);
    if (rep && x->want) {
        fprintf(stderr, "  pipeline '%s' (%llu KV bytes) vs eval '%s' (%lld)\n", rep->reply->answer,
                (unsigned long long)rep->reply->kv_bytes, x->want->answer, (long long)x->want->kv_bytes);
        TT_CHECK(!strcmp(rep->reply->answer, x->want->answer));
        TT_CHECK(rep->reply->kv_bytes == (uint64_t)x->want->kv_bytes);
    }
    msg_free(rep);
}

/* The request: prefill + compress -> block in shared memory -> decode;
 * the block is eval's cache before the question; released after. */
static void s_request(fixture *x) {
    TT_CASE("a request through prefill and decode");
    wire_peer peer;
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = 8;
    gp.seed = 42;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = x->smp.context;
    sub.question = x->smp.question;
    sub.policy = "snapkv";
    sub.budget = 0.5;
    sub.gen = &gp;
    TT_OK(tt_send_prefill_job(x->r, &x->prefill, 7, &sub, false));
    Tis__Envelope *e = s_next(x->r, &peer, 20000, true);
    TT_CHECK(e && e->body_case == TIS__ENVELOPE__BODY_PREFILL_DONE && e->request_id == 7);
    if (e && e->body_case == TIS__ENVELOPE__BODY_PREFILL_DONE) {
        Tis__PrefillDone *d = e->prefill_done;
        TT_CHECK(d->kv && d->layout); /* a worker that breaks the protocol fails here, not in a crash */
        if (!d->kv || !d->layout) {
            msg_free(e);
            return;
        }
        x->real_lease = d->kv->lease_id;
        /* the block is the compressed cache before the question: eval's bytes at
         * decode start minus the question's entries */
        TT_CHECK(d->layout->dtype == 1); /* f16, the default cache type */
        uint64_t per = (uint64_t)d->layout->n_stream_len * (2 * d->layout->head_dim * 2 + 4);
        TT_CHECK(x->want && d->kv->length == (uint64_t)x->want->kv_bytes - d->n_question_ids * per);
        s_decode(x, d, &gp);
        /* the consumer is done: release the block */
        Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
        rl.lease_id = d->kv->lease_id;
        Tis__Envelope el = TIS__ENVELOPE__INIT;
        el.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
        el.lease_release = &rl;
        TT_OK(wire_send(x->r, &x->prefill, &el));
    }
    msg_free(e);
}

/* The first Error among the next 4 messages (READY and the like skipped),
 * or NULL. */
static Tis__Envelope *s_next_error(void *r) {
    wire_peer peer;
    Tis__Envelope *e = NULL;
    for (int k = 0; k < 4; k++) {
        e = s_next(r, &peer, 10000, true);
        if (!e || e->body_case == TIS__ENVELOPE__BODY_ERROR) break;
        msg_free(e);
        e = NULL;
    }
    return e;
}

/* Decode jobs naming bytes outside the arena, then a KV element type no
 * cache holds: an Error each, not a crash. */
static void s_bad_decode_jobs(const fixture *x) {
    TT_CASE("a decode job outside the arena");
    uint32_t lens[6] = {1, 1, 1, 1, 1, 1};
    int32_t qid[1] = {5};
    Tis__BlockRef bad = TIS__BLOCK_REF__INIT;
    char arena_nm[96];
    tt_shm_find(x->pname, arena_nm, sizeof arena_nm);
    bad.arena = arena_nm;
    bad.offset = (uint64_t)1 << 40;
    bad.length = 100;
    bad.lease_id = x->real_lease; /* of the arena's instance: the range is what is wrong */
    Tis__KvLayout bl = TIS__KV_LAYOUT__INIT;
    bl.n_layer = 3;
    bl.n_kv_head = 2;
    bl.head_dim = 16;
    bl.n_stream_len = 6;
    bl.stream_len = lens;
    bl.n_past = 1;
    TT_OK(tt_send_decode_job(x->r, &x->decode, 9, &bad, &bl, 1, qid, NULL));
    Tis__Envelope *e = s_next_error(x->r);
    TT_CHECK(e && e->request_id == 9);
    if (e) fprintf(stderr, "  out-of-range block -> %s\n", e->error->message);
    msg_free(e);

    TT_CASE("a decode job with a KV element type no cache holds");
    bl.dtype = 3; /* GGML_TYPE_Q4_1 */
    TT_OK(tt_send_decode_job(x->r, &x->decode, 10, &bad, &bl, 1, qid, NULL));
    e = s_next_error(x->r);
    TT_CHECK(e && e->request_id == 10 && strstr(e->error->message, "dtype 3"));
    if (e) fprintf(stderr, "  dtype 3 block -> %s\n", e->error->message);
    msg_free(e);
}

/* Shutdown: both exit 0, the arena is gone. */
static void s_shutdown(const fixture *x) {
    TT_CASE("shutdown");
    Tis__Shutdown sh = TIS__SHUTDOWN__INIT;
    Tis__Envelope es = TIS__ENVELOPE__INIT;
    es.body_case = TIS__ENVELOPE__BODY_SHUTDOWN;
    es.shutdown = &sh;
    TT_OK(wire_send(x->r, &x->prefill, &es));
    TT_OK(wire_send(x->r, &x->decode, &es));
    TT_CHECK(tt_wait(x->pp, 30) == 0);
    TT_CHECK(tt_wait(x->pd, 30) == 0);
    TT_CHECK(tt_shm_find(x->pname, NULL, 0) == 0);
}

int main(void) {
    const char *bin = tt_bin("test_worker");
    char tiny[512], ep[600], pname[64];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(ep, sizeof ep, "ipc://%s", tt_path("back.sock"));
    snprintf(pname, sizeof pname, "tw-prefill-%d", (int)getpid());
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    if (!m) return tt_done("test_worker");

    void *ctx = zmq_ctx_new();
    fixture x = {.r = zmq_socket(ctx, ZMQ_ROUTER), .m = m, .pname = pname};
    eval_row *rows = NULL;
    s_start(&x, bin, ep, tiny);
    s_reference(&x, &rows);
    s_bad_messages(&x);
    s_unknown_policy(&x);
    s_request(&x);
    s_bad_decode_jobs(&x);
    s_parked_survives_eval(&x);
    s_shutdown(&x);
    free(rows);
    model_destroy(&m);
    zmq_close(x.r);
    zmq_ctx_term(ctx);
    return tt_done("test_worker");
}
