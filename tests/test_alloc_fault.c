/* test_alloc_fault: allocation-failure injection (base/alloc_fault.h),
 * SQLite-style. Every allocation point of the press path (a request's
 * prefill, observation, scoring and compaction under several policies), of
 * the shared-memory arena and of the message path (pack, unpack, ZeroMQ
 * send and receive) fails in turn, once and then persistently: each run
 * returns TIS_ENOMEM with a message or the reference result, and frees
 * what it made (the ASan build's LeakSanitizer checks that). Then a real
 * prefill worker process runs job after job with its 1st, 2nd, ...
 * allocation failing: every job is answered (the reference block or an
 * Error ENOMEM), and the worker keeps serving to the end; then a decode
 * worker the same way over one block (the reference answer or an Error). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "alloc_fault.h"
#include "sbuf.h"
#include "arena.h"
#include "chat.h"
#include "forward.h"
#include "head.h"
#include "model.h"
#include "session.h"
#include "tiny_model.h"
#include "tt.h"
#include "tt_alloc.h"
#include "wire.h"
#include "wire_jobs.h"

/* ---- the press path: one request through a session ----------------------- */

typedef struct press_case {
    forward_state *st;
    const chat_template *ct;
    const head *h;
    bool outside;      /* the head scores outside: the scores come in with finish */
    session_request rq;
    uint8_t *want;   /* the reference block (owned) */
    size_t n_want;
    int64_t n_rest_want;
} press_case;

static const session_input s_in = {
    .id = "af", .context = "the cat sat on the mat and then the dog ran in the park while the sun was hot",
    .question = "where is the cat?", .answer = "on the mat"};

/* Begin + finish (scores from outside for a head run without h), the block
 * out, everything freed. *block: the compressed cache's bytes (malloc'd). */
static int s_press_run(press_case *c, uint8_t **block, size_t *n, int64_t *n_rest) {
    session *ss = NULL;
    session_result rp = {0};
    float *sc = NULL;
    int rc = session_request_begin(&ss, c->st, c->ct, &s_in, &c->rq, c->h, NULL, c->outside);
    if (!rc && session_needs_scores(ss)) {
        float *rows = NULL;
        int64_t n_ctx = 0, n_q = 0;
        rc = session_hidden(ss, &rows, &n_ctx, &n_q);
        if (!rc && !(sc = malloc((size_t)(n_ctx ? n_ctx : 1) * sizeof *sc))) rc = tis_error(TIS_ENOMEM, "oom");
        for (int64_t i = 0; !rc && i < n_ctx; i++) sc[i] = (float)((i * 5) % 7);
        free(rows); /* (a scorer would read them) */
    }
    if (!rc) rc = session_request_finish(ss, sc, 1, &rp);
    if (!rc) {
        *n = kv_cache_block_bytes(rp.kv);
        if (!(*block = malloc(*n ? *n : 1))) rc = tis_error(TIS_ENOMEM, "oom");
        else kv_cache_block_write(rp.kv, *block);
        *n_rest = rp.n_rest;
    }
    free(sc);
    session_result_free(&rp);
    session_destroy(&ss);
    return rc;
}

static int s_press_op(void *ctx) {
    press_case *c = ctx;
    uint8_t *b = NULL;
    size_t n = 0;
    int64_t n_rest = 0;
    int rc = s_press_run(c, &b, &n, &n_rest);
    if (!rc) TT_CHECK(n == c->n_want && n_rest == c->n_rest_want && !memcmp(b, c->want, n));
    free(b);
    return rc;
}

static void test_press(const model *m, const head *h) {
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), 128));
    chat_template ct = {0};
    TT_OK(chat_template_init(&ct, tokenizer_chat_template(m->tok)));
    const char *pols[] = {"snapkv", "streaming", "knorm", "pyramidkv", "adakv", "oracle", "full", "tis", "tis@scorer"};
    for (size_t i = 0; st && i < sizeof pols / sizeof pols[0]; i++) {
        bool outside = !strcmp(pols[i], "tis@scorer");
        TT_CASE("press path under allocation failures: %s", pols[i]);
        press_case c = {.st = st, .ct = &ct, .h = h, .outside = outside};
        c.rq = (session_request){.budget = 0.5, .chat = true, .window = 8, .n_sink = 4, .seed = 3, .max_new = 8,
                                 .hook_lambda = -1};
        TT_OK(press_parse(outside ? "tis" : pols[i], &c.rq.policy));
        TT_OK(s_press_run(&c, &c.want, &c.n_want, &c.n_rest_want));
        if (!c.want) continue;
        int64_t n = tt_alloc_sweep(pols[i], s_press_op, &c, 5000);
        TT_CHECK(n > 0);
        free(c.want);
    }
    chat_template_free(&ct);
    forward_state_destroy(&st);
}

/* ---- the arena ----------------------------------------------------------- */

static int s_arena_op(void *ctx) {
    const char *name = ctx;
    arena *a = NULL, *peer = NULL;
    uint64_t off[3] = {0}, lease[3] = {0};
    int rc = arena_create(&a, name, 1 << 16);
    for (int i = 0; !rc && i < 3; i++) rc = arena_alloc(a, 1000 + 64 * (size_t)i, 60000, &off[i], &lease[i]);
    if (!rc) rc = arena_open(&peer, arena_name(a));
    if (!rc) {
        memset(arena_at(a, off[1], 1064), 7, 1064);
        const uint8_t *p = arena_at(peer, off[1], 1064);
        TT_CHECK(p && p[0] == 7 && p[1063] == 7);
        TT_CHECK(arena_lease_renew(a, lease[0], 1000) == 0);
        arena_lease_release(a, lease[1]);
        TT_CHECK(arena_blocks(a) == 2);
        TT_CHECK(arena_expire(a, tis_now_ms() + 2000) == 1); /* lease 0 ends before lease 2 */
        rc = arena_alloc(a, 2000, 1000, &off[1], &lease[1]); /* reuses the freed space */
    }
    arena_destroy(&peer);
    arena_destroy(&a);
    return rc;
}

static void test_arena(void) {
    TT_CASE("arena under allocation failures");
    char name[64];
    snprintf(name, sizeof name, "taf-%d", (int)getpid());
    TT_OK(s_arena_op(name));
    TT_CHECK(tt_alloc_sweep("arena", s_arena_op, name, 1000) > 0);
    TT_CHECK(tt_shm_find(name, NULL, 0) == 0); /* no segment left by a failed run */
}

/* sbuf: a failed append sets oom, keeps what came before and stops the
 * appends after it; a good run builds the text whole. */
static void test_sbuf(void) {
    TT_CASE("sbuf under allocation failures");
    sbuf b = {0};
    sbuf_str(&b, "ab");
    sbuf_printf(&b, "%d-%s", 42, "x");
    sbuf_add(&b, "yz", 1);
    TT_CHECK(!b.oom && b.n == 7 && !strcmp(b.p, "ab42-xy"));
    sbuf_reset(&b);
    TT_CHECK(b.n == 0 && b.p && b.p[0] == 0);
    sbuf_free(&b);
    TT_CHECK(!b.p && !b.n && !b.cap);
    sbuf_str(&b, "kept");
    char big[600];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    alloc_fault_arm(1, false);
    sbuf_str(&b, big); /* past the first 256 bytes: grows, and that fails */
    alloc_fault_disarm();
    TT_CHECK(b.oom && b.n == 4 && !strcmp(b.p, "kept"));
    sbuf_printf(&b, "%s", "more"); /* ignored after a failure */
    TT_CHECK(b.n == 4 && !strcmp(b.p, "kept"));
    sbuf_free(&b);
}

/* ---- the message path ---------------------------------------------------- */

typedef struct msg_case {
    void *a, *b;       /* an inproc PAIR */
    uint8_t *want;     /* the reference frame (owned) */
    size_t n_want;
} msg_case;

/* A PrefillDone with every kind of field, filled in *env from locals of
 * the caller (lens[6], q[3]). */
static void s_msg_build(Tis__Envelope *env, Tis__PrefillDone *d, Tis__BlockRef *br, Tis__KvLayout *lay,
                        uint32_t *lens, int32_t *q) {
    *br = (Tis__BlockRef)TIS__BLOCK_REF__INIT;
    br->arena = "/tis-x";
    br->offset = 4096;
    br->length = 1234;
    br->lease_id = 9;
    *lay = (Tis__KvLayout)TIS__KV_LAYOUT__INIT;
    lay->n_layer = 3;
    lay->n_kv_head = 2;
    lay->head_dim = 16;
    lay->n_stream_len = 6;
    lay->stream_len = lens;
    *d = (Tis__PrefillDone)TIS__PREFILL_DONE__INIT;
    d->kv = br;
    d->layout = lay;
    d->n_question_ids = 3;
    d->question_ids = q;
    *env = (Tis__Envelope)TIS__ENVELOPE__INIT;
    env->request_id = 77;
    env->body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    env->prefill_done = d;
}

static int s_msg_op(void *ctx) {
    msg_case *c = ctx;
    uint32_t lens[6] = {1, 2, 3, 4, 5, 6};
    int32_t q[3] = {10, 20, 30};
    Tis__Envelope env;
    Tis__PrefillDone d;
    Tis__BlockRef br;
    Tis__KvLayout lay;
    s_msg_build(&env, &d, &br, &lay, lens, q);
    uint8_t *buf = NULL, *again = NULL;
    size_t n = 0, n2 = 0;
    Tis__Envelope *got = NULL, *got2 = NULL;
    int rc = msg_pack(&env, &buf, &n);
    if (!rc) rc = msg_unpack(buf, n, TIS_MSG_MAX_BYTES, &got);
    if (!rc) rc = msg_pack(got, &again, &n2);
    if (!rc) TT_CHECK(n2 == c->n_want && !memcmp(again, c->want, n2));
    if (!rc) rc = wire_send(c->a, NULL, &env);
    if (!rc) {
        rc = wire_recv(c->b, 0, NULL, &got2);
        if (!rc) TT_CHECK(got2->prefill_done->n_question_ids == 3 && got2->prefill_done->layout->stream_len[5] == 6);
    }
    msg_free(got2);
    msg_free(got);
    free(again);
    free(buf);
    return rc;
}

static void test_msg(void) {
    TT_CASE("message path under allocation failures");
    msg_case c = {0};
    void *zc = zmq_ctx_new();
    c.a = zmq_socket(zc, ZMQ_PAIR);
    c.b = zmq_socket(zc, ZMQ_PAIR);
    TT_CHECK(zmq_bind(c.b, "inproc://taf") == 0 && zmq_connect(c.a, "inproc://taf") == 0);
    uint32_t lens[6] = {1, 2, 3, 4, 5, 6};
    int32_t q[3] = {10, 20, 30};
    Tis__Envelope env;
    Tis__PrefillDone d;
    Tis__BlockRef br;
    Tis__KvLayout lay;
    s_msg_build(&env, &d, &br, &lay, lens, q);
    TT_OK(msg_pack(&env, &c.want, &c.n_want));
    TT_OK(s_msg_op(&c));
    TT_CHECK(tt_alloc_sweep("message", s_msg_op, &c, 1000) > 0);
    free(c.want);
    int linger = 0;
    zmq_setsockopt(c.a, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c.b, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(c.a);
    zmq_close(c.b);
    zmq_ctx_term(zc);
}

/* ---- a prefill worker under allocation failures -------------------------- */

/* The next message that is not a heartbeat within timeout_ms, or NULL. */
static Tis__Envelope *s_next(void *r, int timeout_ms) {
    uint64_t end = tis_now_ms() + (uint64_t)timeout_ms;
    for (uint64_t now = tis_now_ms(); now < end; now = tis_now_ms()) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)(end - now)) != 1) return NULL;
        Tis__Envelope *e = NULL;
        wire_peer peer;
        if (wire_recv(r, 1, &peer, &e)) {
            msg_free(e);
            continue;
        }
        if (e->body_case != TIS__ENVELOPE__BODY_HEARTBEAT) return e;
        msg_free(e);
    }
    return NULL;
}

/* The last "alloc fault: job J: A allocations, F failed" line of the log:
 * J (0 when none), *a, *f. */
static int64_t s_log_last(const char *log, int64_t *a, int64_t *f) {
    FILE *fp = fopen(log, "r");
    char line[512];
    long long j = 0, x = 0, y = 0, jj, xx, yy;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "alloc fault: job %lld: %lld allocations, %lld failed", &jj, &xx, &yy) == 3) {
            j = jj;
            x = xx;
            y = yy;
        }
    if (fp) fclose(fp);
    *a = x;
    *f = y;
    return j;
}

/* The answer to job `id` (a PrefillDone or a Reply, the kind given), then
 * READY: 1 that answer (*out, unless out is NULL), 0 an Error ENOMEM, -1
 * anything else or silence. */
static int s_answer(void *r, uint64_t id, Tis__Envelope__BodyCase kind, Tis__Envelope **out) {
    Tis__Envelope *e = s_next(r, 20000);
    int got = -1;
    if (e && e->request_id == id && e->body_case == kind) {
        got = 1;
    } else if (e && e->request_id == id && e->body_case == TIS__ENVELOPE__BODY_ERROR && e->error->code == TIS_ENOMEM) {
        got = 0;
    } else {
        fprintf(stderr, "  job %llu: %s %s\n", (unsigned long long)id, e ? msg_body_name(e) : "no answer",
                e && e->body_case == TIS__ENVELOPE__BODY_ERROR ? e->error->message : "");
    }
    if (got == 1 && out) *out = e;
    else msg_free(e);
    e = s_next(r, 20000); /* READY again */
    if (!e || e->body_case != TIS__ENVELOPE__BODY_READY) {
        fprintf(stderr, "  job %llu: %s instead of READY\n", (unsigned long long)id, e ? msg_body_name(e) : "nothing");
        got = -1;
    }
    msg_free(e);
    return got;
}

/* One PrefillJob (id) -> its answer: 1 the reference block (*len: its
 * length; the lease released, or the message kept in *keep when keep is
 * not NULL), 0 an Error ENOMEM, -1 anything else or silence. Then READY. */
static int s_job(void *r, const wire_peer *w, uint64_t id, size_t *len, Tis__Envelope **keep) {
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = 4;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = (char *)s_in.context;
    sub.question = (char *)s_in.question;
    sub.policy = "snapkv";
    sub.budget = 0.5;
    sub.gen = &gp;
    if (tt_send_prefill_job(r, w, id, &sub, false)) return -1;
    Tis__Envelope *e = NULL;
    int got = s_answer(r, id, TIS__ENVELOPE__BODY_PREFILL_DONE, &e);
    if (got == 1 && !e->prefill_done->kv) got = -1;
    if (got == 1) {
        *len = e->prefill_done->kv->length;
        Tis__LeaseRelease rl = TIS__LEASE_RELEASE__INIT;
        rl.lease_id = e->prefill_done->kv->lease_id;
        Tis__Envelope el = TIS__ENVELOPE__INIT;
        el.body_case = TIS__ENVELOPE__BODY_LEASE_RELEASE;
        el.lease_release = &rl;
        if (!keep) wire_send(r, w, &el);
    }
    if (got == 1 && keep) *keep = e;
    else msg_free(e);
    return got;
}

/* One DecodeJob (id) of the block of a PrefillDone -> 1 a Reply (*answer:
 * its text, malloc'd), 0 an Error ENOMEM, -1 anything else. Then READY. */
static int s_decode(void *r, const wire_peer *w, uint64_t id, const Tis__PrefillDone *d, char **answer) {
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = 4;
    if (tt_send_decode_job(r, w, id, d->kv, d->layout, d->n_question_ids, d->question_ids, &gp)) return -1;
    Tis__Envelope *e = NULL;
    int got = s_answer(r, id, TIS__ENVELOPE__BODY_REPLY, &e);
    if (got == 1) *answer = strdup(e->reply->answer ? e->reply->answer : "");
    msg_free(e);
    return got;
}

/* The jobs of a worker whose k-th allocation of job k+1 fails, k = 1, 2,
 * ... until its log says a job ran clean: every job must be answered (the
 * reference or an Error ENOMEM). job(id) -> 1, 0, -1 as s_job. */
typedef int (*job_fn)(void *ctx, uint64_t id);
static void s_sweep_worker(const char *what, const char *log, job_fn job, void *ctx) {
    int64_t answered = 0, errors = 0, bad = 0, points = 0;
    for (uint64_t id = 2; id < 20000 && !bad; id++) {
        int got = job(ctx, id);
        answered += got == 1;
        errors += got == 0;
        bad += got < 0;
        int64_t a = 0, f = 0;
        int64_t j = s_log_last(log, &a, &f); /* the job before this one */
        if (j && f == 0) { /* its k-th allocation was past its last: all visited */
            points = a;
            break;
        }
    }
    fprintf(stderr, "  %s worker: %lld allocation points, %lld jobs answered, %lld Error ENOMEM, %lld bad\n", what,
            (long long)points, (long long)answered, (long long)errors, (long long)bad);
    TT_CHECK(bad == 0 && points > 0 && errors > 0);
}

/* A worker's READY (after it started), or false after 20 s. */
static bool s_ready(void *r, wire_peer *w) {
    Tis__Envelope *e = NULL;
    for (uint64_t end = tis_now_ms() + 20000; !e && tis_now_ms() < end;) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 500) == 1 && wire_recv(r, 1, w, &e) == 0 && e->body_case != TIS__ENVELOPE__BODY_READY) {
            msg_free(e);
            e = NULL;
        }
    }
    msg_free(e);
    return e != NULL;
}

typedef struct worker_case {
    void *r;
    wire_peer prefill, decode;
    size_t want_len;                /* the reference block's length */
    const Tis__PrefillDone *block;  /* a block kept for the decode jobs */
    const char *want_answer;        /* the reference answer */
} worker_case;

static int s_prefill_job(void *ctx, uint64_t id) {
    worker_case *c = ctx;
    size_t len = 0;
    int got = s_job(c->r, &c->prefill, id, &len, NULL);
    return got == 1 && len != c->want_len ? -1 : got;
}

static int s_decode_job(void *ctx, uint64_t id) {
    worker_case *c = ctx;
    char *a = NULL;
    int got = s_decode(c->r, &c->decode, id, c->block, &a);
    if (got == 1 && strcmp(a, c->want_answer)) {
        fprintf(stderr, "  job %llu: '%s', not '%s'\n", (unsigned long long)id, a, c->want_answer);
        got = -1;
    }
    free(a);
    return got;
}

static void test_worker(const char *bin, const char *tiny) {
    TT_CASE("a prefill worker under allocation failures");
    char ep[600], pname[64], dname[64], plog[600], dlog[600];
    snprintf(ep, sizeof ep, "ipc://%s", tt_path("back.sock"));
    snprintf(pname, sizeof pname, "taf-prefill-%d", (int)getpid());
    snprintf(dname, sizeof dname, "taf-decode-%d", (int)getpid());
    snprintf(plog, sizeof plog, "%s", tt_path("prefill.log"));
    snprintf(dlog, sizeof dlog, "%s", tt_path("decode.log"));
    worker_case c = {0};
    void *ctx = zmq_ctx_new();
    c.r = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    zmq_setsockopt(c.r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(c.r, ZMQ_LINGER, &linger, sizeof linger);
    TT_CHECK(zmq_bind(c.r, ep) == 0);
    /* job 1 of each runs clean: the reference */
    const char *pv[] = {bin, "worker", "--role", "prefill", "--connect", ep, "--name", pname, "-m", tiny,
                        "--arena_mb", "4", "--heartbeat_ms", "200", "--lease_ms", "600000", NULL};
    const char *pe[] = {"TIS_FAULT_ALLOC=taf-prefill:2", NULL};
    pid_t pp = tt_spawn(pv, plog, pe);
    TT_CHECK(s_ready(c.r, &c.prefill));
    Tis__Envelope *kept = NULL;
    TT_CHECK(s_job(c.r, &c.prefill, 1, &c.want_len, &kept) == 1 && c.want_len > 0);
    if (kept) s_sweep_worker("prefill", plog, s_prefill_job, &c);
    size_t len = 0;
    TT_CHECK(s_job(c.r, &c.prefill, 30000, &len, NULL) == 1 && len == c.want_len); /* still serving */

    TT_CASE("a decode worker under allocation failures");
    const char *dv[] = {bin, "worker", "--role", "decode", "--connect", ep, "--name", dname, "-m", tiny,
                        "--heartbeat_ms", "200", NULL};
    const char *de[] = {"TIS_FAULT_ALLOC=taf-decode:2", NULL};
    pid_t pd = tt_spawn(dv, dlog, de);
    TT_CHECK(s_ready(c.r, &c.decode));
    char *want = NULL;
    c.block = kept ? kept->prefill_done : NULL;
    if (c.block) TT_CHECK(s_decode(c.r, &c.decode, 1, c.block, &want) == 1);
    if (want) {
        c.want_answer = want;
        s_sweep_worker("decode", dlog, s_decode_job, &c);
        TT_CHECK(s_decode_job(&c, 30000) == 1); /* still serving */
    }
    free(want);
    msg_free(kept);

    Tis__Shutdown sh = TIS__SHUTDOWN__INIT;
    Tis__Envelope es = TIS__ENVELOPE__INIT;
    es.body_case = TIS__ENVELOPE__BODY_SHUTDOWN;
    es.shutdown = &sh;
    TT_OK(wire_send(c.r, &c.prefill, &es));
    TT_OK(wire_send(c.r, &c.decode, &es));
    TT_CHECK(tt_wait(pp, 30) == 0);
    TT_CHECK(tt_wait(pd, 30) == 0);
    zmq_close(c.r);
    zmq_ctx_term(ctx);
}

int main(void) {
    if (!alloc_fault_available()) {
        fprintf(stderr, "test_alloc_fault: built without TIS_ALLOC_FAULT: skipped\n");
        return 77;
    }
    char tiny[512];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    if (!m) return tt_done("test_alloc_fault");
    head_config hc = {.kind = HEAD_LINEAR, .d_model = m->config.d_model, .layer = 1};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *h = NULL;
    TT_OK(head_new(&h, &hc, 3));
    if (h) test_press(m, h);
    head_destroy(&h);
    test_arena();
    test_sbuf();
    test_msg();
    const char *bin = getenv("TIS_BIN");
    if (bin) test_worker(bin, tiny);
    else fprintf(stderr, "test_alloc_fault: TIS_BIN is not set: the worker case is skipped\n");
    model_destroy(&m);
    return tt_done("test_alloc_fault");
}
