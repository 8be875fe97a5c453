/* test_proto: every message type round-trips through msg_pack / msg_unpack;
 * eval and label jobs and their answers are bodies of their own; garbage,
 * truncated, oversized, version-mismatched (a version-1 eval job too) and
 * body-less frames are refused with the right status and never crash. */
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "tt.h"

/* Packs env, unpacks it, returns the copy (NULL on failure). */
static Tis__Envelope *s_roundtrip(Tis__Envelope *env, size_t *len_out) {
    uint8_t *buf = NULL;
    size_t len = 0;
    TT_OK(msg_pack(env, &buf, &len));
    Tis__Envelope *back = NULL;
    if (buf) TT_OK(msg_unpack(buf, len, TIS_MSG_MAX_BYTES, &back));
    if (len_out) *len_out = len;
    free(buf);
    return back;
}

/* A submit with text, generation parameters and flags, in env (the
 * caller owns the three structs). */
static void s_submit_env(Tis__Envelope *env, Tis__Submit *sub, Tis__GenParams *gp) {
    *gp = (Tis__GenParams)TIS__GEN_PARAMS__INIT;
    *sub = (Tis__Submit)TIS__SUBMIT__INIT;
    *env = (Tis__Envelope)TIS__ENVELOPE__INIT;
    gp->max_new = 32;
    gp->temperature = 0.5f;
    gp->seed = 7;
    sub->context = "a long document ... 한국어 🙂";
    sub->question = "What is the pass key?";
    sub->policy = "snapkv";
    sub->budget = 0.1;
    sub->query_aware = 1;
    sub->gen = gp;
    env->request_id = 42;
    env->seq = 3;
    env->body_case = TIS__ENVELOPE__BODY_SUBMIT;
    env->submit = sub;
}

static void s_submit(void) {
    TT_CASE("submit");
    /* a submit with text, generation parameters and flags */
    Tis__GenParams gp;
    Tis__Submit sub;
    Tis__Envelope env;
    s_submit_env(&env, &sub, &gp);
    Tis__Envelope *back = s_roundtrip(&env, NULL);
    TT_CHECK(back && back->version == TIS_PROTO_VERSION && back->request_id == 42 && back->seq == 3);
    TT_CHECK(back && back->body_case == TIS__ENVELOPE__BODY_SUBMIT && !strcmp(back->submit->context, sub.context) &&
             back->submit->budget == 0.1 && back->submit->query_aware && back->submit->gen &&
             back->submit->gen->max_new == 32 && back->submit->gen->seed == 7);
    TT_CHECK(back && !strcmp(msg_body_name(back), "submit"));
    msg_free(back);

}

static void s_prefill_done(void) {
    Tis__Envelope *back = NULL;
    TT_CASE("prefill result");
    /* a prefill result: block refs and a ragged layout */
    uint32_t lens[6] = {10, 3, 0, 7, 7, 1};
    int32_t qids[3] = {5, 6, 7};
    uint8_t handle[64];
    for (int i = 0; i < 64; i++) handle[i] = (uint8_t)i;
    Tis__BlockRef kv = TIS__BLOCK_REF__INIT;
    kv.arena = "/tis-prefill-0";
    kv.device = TIS__DEVICE__DEVICE_CUDA;
    kv.device_index = 1;
    kv.offset = 2u << 20;
    kv.length = 123456;
    kv.ipc_handle.data = handle;
    kv.ipc_handle.len = 64;
    kv.lease_id = 99;
    Tis__KvLayout lay = TIS__KV_LAYOUT__INIT;
    lay.n_layer = 3;
    lay.n_kv_head = 2;
    lay.head_dim = 64;
    lay.n_stream_len = 6;
    lay.stream_len = lens;
    lay.n_past = 1000;
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.kv = &kv;
    pd.layout = &lay;
    pd.n_question_ids = 3;
    pd.question_ids = qids;
    Tis__Envelope e2 = TIS__ENVELOPE__INIT;
    e2.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    e2.prefill_done = &pd;
    back = s_roundtrip(&e2, NULL);
    TT_CHECK(back && back->prefill_done && back->prefill_done->kv && back->prefill_done->layout);
    if (back && back->prefill_done && back->prefill_done->kv && back->prefill_done->layout) {
        const Tis__PrefillDone *q = back->prefill_done;
        TT_CHECK(q->kv->offset == (2u << 20) && q->kv->length == 123456 && q->kv->lease_id == 99 &&
                 q->kv->device == TIS__DEVICE__DEVICE_CUDA && q->kv->ipc_handle.len == 64 &&
                 memcmp(q->kv->ipc_handle.data, handle, 64) == 0);
        TT_CHECK(q->layout->n_stream_len == 6 && memcmp(q->layout->stream_len, lens, sizeof lens) == 0 &&
                 q->layout->n_past == 1000);
        TT_CHECK(q->n_question_ids == 3 && q->question_ids[2] == 7);
    }
    msg_free(back);

}

static void s_job_bodies(void) {
    Tis__Envelope *back = NULL;
    TT_CASE("eval and label jobs");
    /* an eval job and its answer, a label job and its answer: bodies of their own */
    Tis__EvalSample es = TIS__EVAL_SAMPLE__INIT;
    es.id = "s1";
    es.context = "ctx";
    es.question = "q?";
    double budgets[2] = {0.1, 0.5};
    char *pols[1] = {"snapkv"};
    Tis__EvalSpec spec = TIS__EVAL_SPEC__INIT;
    spec.n_policies = 1;
    spec.policies = pols;
    spec.n_budgets = 2;
    spec.budgets = budgets;
    spec.max_new = 8;
    Tis__EvalJob ej = TIS__EVAL_JOB__INIT;
    ej.benchmark = "passkey";
    ej.sample = &es;
    ej.spec = &spec;
    Tis__Envelope e3 = TIS__ENVELOPE__INIT;
    e3.request_id = 5;
    e3.body_case = TIS__ENVELOPE__BODY_EVAL_JOB;
    e3.eval_job = &ej;
    back = s_roundtrip(&e3, NULL);
    TT_CHECK(back && back->body_case == TIS__ENVELOPE__BODY_EVAL_JOB && !strcmp(msg_body_name(back), "eval_job"));
    if (back && back->body_case == TIS__ENVELOPE__BODY_EVAL_JOB)
        TT_CHECK(!strcmp(back->eval_job->benchmark, "passkey") && back->eval_job->sample &&
                 !strcmp(back->eval_job->sample->question, "q?") && back->eval_job->spec->n_budgets == 2 &&
                 back->eval_job->spec->budgets[1] == 0.5 && !strcmp(back->eval_job->spec->policies[0], "snapkv"));
    msg_free(back);
    Tis__EvalRow row = TIS__EVAL_ROW__INIT, *rowp[2] = {&row, &row};
    row.policy = "snapkv";
    row.kv_bytes = 4096;
    Tis__EvalDone ed = TIS__EVAL_DONE__INIT;
    ed.n_rows = 2;
    ed.rows = rowp;
    e3.body_case = TIS__ENVELOPE__BODY_EVAL_DONE;
    e3.eval_done = &ed;
    back = s_roundtrip(&e3, NULL);
    TT_CHECK(back && back->body_case == TIS__ENVELOPE__BODY_EVAL_DONE && back->eval_done->n_rows == 2 &&
             back->eval_done->rows[1]->kv_bytes == 4096 && !strcmp(msg_body_name(back), "eval_done"));
    msg_free(back);
    Tis__LabelSpec ls = TIS__LABEL_SPEC__INIT;
    ls.layer = 3;
    ls.per_head = 1;
    Tis__LabelJob lj = TIS__LABEL_JOB__INIT;
    lj.sample = &es;
    lj.spec = &ls;
    e3.body_case = TIS__ENVELOPE__BODY_LABEL_JOB;
    e3.label_job = &lj;
    back = s_roundtrip(&e3, NULL);
    TT_CHECK(back && back->body_case == TIS__ENVELOPE__BODY_LABEL_JOB && back->label_job->spec &&
             back->label_job->spec->layer == 3 && back->label_job->spec->per_head &&
             !strcmp(back->label_job->sample->id, "s1") && !strcmp(msg_body_name(back), "label_job"));
    msg_free(back);
    Tis__BlockRef kv = TIS__BLOCK_REF__INIT; /* the labels' block */
    kv.arena = "/tis-prefill-0";
    kv.length = 123456;
    kv.lease_id = 99;
    Tis__LabelDone ld = TIS__LABEL_DONE__INIT;
    ld.block = &kv;
    ld.n_tokens = 77;
    ld.skipped = "";
    e3.body_case = TIS__ENVELOPE__BODY_LABEL_DONE;
    e3.label_done = &ld;
    back = s_roundtrip(&e3, NULL);
    TT_CHECK(back && back->body_case == TIS__ENVELOPE__BODY_LABEL_DONE && back->label_done->n_tokens == 77 &&
             back->label_done->block && back->label_done->block->lease_id == 99 &&
             !strcmp(msg_body_name(back), "label_done"));
    msg_free(back);

}

static void s_every_body(void) {
    Tis__Envelope ref = TIS__ENVELOPE__INIT; /* where each body's slot sits */
    Tis__Envelope *back = NULL;
    TT_CASE("every body round-trips");
    /* every other body survives a round trip with its case */
    Tis__PrefillJob pj = TIS__PREFILL_JOB__INIT;
    Tis__ScoreJob sj = TIS__SCORE_JOB__INIT;
    Tis__ScoreDone sd = TIS__SCORE_DONE__INIT;
    Tis__DecodeJob dj = TIS__DECODE_JOB__INIT;
    Tis__TokenChunk tc = TIS__TOKEN_CHUNK__INIT;
    Tis__Reply rp = TIS__REPLY__INIT;
    Tis__Error er = TIS__ERROR__INIT;
    Tis__LeaseRenew lr = TIS__LEASE_RENEW__INIT;
    Tis__LeaseRelease ll = TIS__LEASE_RELEASE__INIT;
    Tis__Ready rd = TIS__READY__INIT;
    Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
    Tis__Shutdown sh = TIS__SHUTDOWN__INIT;
    Tis__Busy bz = TIS__BUSY__INIT;
    Tis__StatusRequest sq = TIS__STATUS_REQUEST__INIT;
    Tis__Status su = TIS__STATUS__INIT;
    Tis__CompressJob cj = TIS__COMPRESS_JOB__INIT;
    Tis__Cancel cn = TIS__CANCEL__INIT;
    cn.reason = "client gone";
    er.code = -4;
    er.message = "bad request";
    rd.role = TIS__ROLE__ROLE_DECODE;
    rd.worker_id = "decode-1";
    rd.capacity = 8;
    lr.lease_id = 5;
    lr.ttl_ms = 2000;
    struct { Tis__Envelope__BodyCase c; void **slot; void *msg; const char *name; } cases[] = {
        {TIS__ENVELOPE__BODY_PREFILL_JOB, (void **)&ref.prefill_job, &pj, "prefill_job"},
        {TIS__ENVELOPE__BODY_SCORE_JOB, (void **)&ref.score_job, &sj, "score_job"},
        {TIS__ENVELOPE__BODY_SCORE_DONE, (void **)&ref.score_done, &sd, "score_done"},
        {TIS__ENVELOPE__BODY_DECODE_JOB, (void **)&ref.decode_job, &dj, "decode_job"},
        {TIS__ENVELOPE__BODY_TOKENS, (void **)&ref.tokens, &tc, "tokens"},
        {TIS__ENVELOPE__BODY_REPLY, (void **)&ref.reply, &rp, "reply"},
        {TIS__ENVELOPE__BODY_ERROR, (void **)&ref.error, &er, "error"},
        {TIS__ENVELOPE__BODY_LEASE_RENEW, (void **)&ref.lease_renew, &lr, "lease_renew"},
        {TIS__ENVELOPE__BODY_LEASE_RELEASE, (void **)&ref.lease_release, &ll, "lease_release"},
        {TIS__ENVELOPE__BODY_READY, (void **)&ref.ready, &rd, "ready"},
        {TIS__ENVELOPE__BODY_HEARTBEAT, (void **)&ref.heartbeat, &hb, "heartbeat"},
        {TIS__ENVELOPE__BODY_SHUTDOWN, (void **)&ref.shutdown, &sh, "shutdown"},
        {TIS__ENVELOPE__BODY_BUSY, (void **)&ref.busy, &bz, "busy"},
        {TIS__ENVELOPE__BODY_STATUS_REQUEST, (void **)&ref.status_request, &sq, "status_request"},
        {TIS__ENVELOPE__BODY_STATUS, (void **)&ref.status, &su, "status"},
        {TIS__ENVELOPE__BODY_COMPRESS_JOB, (void **)&ref.compress_job, &cj, "compress_job"},
        {TIS__ENVELOPE__BODY_CANCEL, (void **)&ref.cancel, &cn, "cancel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = 1000 + i;
        e.body_case = cases[i].c;
        *(void **)((char *)&e + ((char *)cases[i].slot - (char *)&ref)) = cases[i].msg;
        back = s_roundtrip(&e, NULL);
        TT_CHECK(back && back->body_case == cases[i].c && back->request_id == 1000 + i &&
                 !strcmp(msg_body_name(back), cases[i].name));
        if (back && cases[i].c == TIS__ENVELOPE__BODY_ERROR)
            TT_CHECK(back->error->code == -4 && !strcmp(back->error->message, "bad request"));
        if (back && cases[i].c == TIS__ENVELOPE__BODY_CANCEL)
            TT_CHECK(!strcmp(back->cancel->reason, "client gone"));
        if (back && cases[i].c == TIS__ENVELOPE__BODY_READY)
            TT_CHECK(back->ready->role == TIS__ROLE__ROLE_DECODE && back->ready->capacity == 8);
        msg_free(back);
    }

}

static void s_refused_frames(void) {
    Tis__GenParams gp;
    Tis__Submit sub;
    Tis__Envelope env;
    s_submit_env(&env, &sub, &gp);
    TT_CASE("refused frames");
    /* refused frames */
    Tis__Envelope none = TIS__ENVELOPE__INIT;
    uint8_t *buf = NULL;
    size_t len = 0;
    TT_FAILS(msg_pack(&none, &buf, &len), TIS_EINVAL);
    Tis__Envelope *out = NULL;
    TT_OK(msg_pack(&env, &buf, &len)); /* a valid frame to cut */
    if (buf) {
        /* every truncation: an error or a valid shorter message, never a crash */
        for (size_t cut = 0; cut < len; cut++) {
            int rc = msg_unpack(buf, cut, TIS_MSG_MAX_BYTES, &out);
            TT_CHECK(rc != 0 || out != NULL);
            msg_free(out);
            out = NULL;
        }
        TT_FAILS(msg_unpack(buf, len, len - 1, &out), TIS_ERANGE);
        TT_CHECK(out == NULL);
    }
    free(buf);
    /* garbage */
    uint8_t junk[256];
    uint64_t st = 0x1234;
    int refused = 0;
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)(st % 255);
        for (size_t i = 0; i < n; i++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            junk[i] = (uint8_t)st;
        }
        int rc = msg_unpack(junk, n, TIS_MSG_MAX_BYTES, &out);
        refused += rc != 0;
        msg_free(out);
        out = NULL;
    }
    TT_CHECK(refused > 1900);
}

static void s_other_versions(void) {
    Tis__Envelope *out = NULL;
    TT_CASE("other versions");
    /* another version: refused, but the request id is readable to answer it */
    Tis__Heartbeat h2 = TIS__HEARTBEAT__INIT;
    Tis__Envelope ev = TIS__ENVELOPE__INIT;
    ev.version = 7;
    ev.request_id = 77;
    ev.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    ev.heartbeat = &h2;
    size_t n2 = tis__envelope__get_packed_size(&ev);
    uint8_t *b2 = malloc(n2);
    tis__envelope__pack(&ev, b2);
    TT_FAILS(msg_unpack(b2, n2, TIS_MSG_MAX_BYTES, &out), TIS_EUNSUPPORTED);
    TT_CHECK(out && out->request_id == 77);
    msg_free(out);
    free(b2);
    /* a version-1 eval job (inside Submit, field 13; bytes as a version-1
     * build wrote them): refused by its version, the message naming both */
    TT_CHECK(TIS_PROTO_VERSION == 3);
    static const uint8_t v1_eval[] = {0x08, 0x01,             /* version 1 */
                                      0x10, 0x09,             /* request_id 9 */
                                      0x52, 0x05,             /* submit (10), 5 bytes: */
                                      0x6a, 0x03,             /*   eval (13), 3 bytes: */
                                      0x0a, 0x01, 'x'};       /*     benchmark "x" */
    out = NULL;
    TT_FAILS(msg_unpack(v1_eval, sizeof v1_eval, TIS_MSG_MAX_BYTES, &out), TIS_EUNSUPPORTED);
    TT_CHECK(strstr(tis_last_error(), "version 1") && strstr(tis_last_error(), "speaks 3"));
    TT_CHECK(out && out->request_id == 9 && out->version == 1);
    msg_free(out);
    /* a body-less envelope from someone else */
    Tis__Envelope eb = TIS__ENVELOPE__INIT;
    eb.version = TIS_PROTO_VERSION;
    n2 = tis__envelope__get_packed_size(&eb);
    b2 = malloc(n2 + 1);
    tis__envelope__pack(&eb, b2);
    out = NULL;
    TT_FAILS(msg_unpack(b2, n2, TIS_MSG_MAX_BYTES, &out), TIS_EFORMAT);
    TT_CHECK(out == NULL);
    free(b2);
}

int main(void) {
    s_submit();
    s_prefill_done();
    s_job_bodies();
    s_every_body();
    s_refused_frames();
    s_other_versions();
    return tt_done("test_proto");
}
