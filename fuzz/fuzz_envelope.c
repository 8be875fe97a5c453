/* fuzz_envelope: a frame from the wire (untrusted) -> msg_unpack (size,
 * parse, version, body checks), then what a worker or the coordinator
 * makes of the body: eval jobs and rows (wire_eval), label jobs and results
 * (wire_label, the frame's own bytes as the block). With TIS_FUZZ_SEEDS=DIR
 * it writes one packed Envelope of each kind there and exits (the seeds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"
#include "msg.h"
#include "wire_eval.h"
#include "wire_label.h"

static volatile uint64_t s_sink;

static model_config s_mc(void) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 4;
    c.n_head = 4;
    c.n_kv_head = 2;
    c.d_model = 64;
    c.head_dim = 16;
    c.d_ff = 96;
    c.n_vocab = 300;
    snprintf(c.name, sizeof c.name, "fuzz");
    return c;
}

static void s_body(const Tis__Envelope *e, const uint8_t *data, size_t size) {
    model_config mc = s_mc();
    switch (e->body_case) {
    case TIS__ENVELOPE__BODY_EVAL_JOB: {
        const Tis__EvalJob *j = e->eval_job;
        eval_config cfg;
        bench_sample s;
        if (j->spec && wire_eval_spec_from(j->spec, &cfg) == 0) s_sink += (uint64_t)cfg.n_policies;
        if (j->sample && wire_eval_sample_from(j->sample, &s) == 0) s_sink += strlen(s.context);
        break;
    }
    case TIS__ENVELOPE__BODY_EVAL_DONE:
        for (size_t i = 0; i < e->eval_done->n_rows; i++) {
            eval_row r;
            if (wire_eval_row_from(e->eval_done->rows[i], &r) == 0) s_sink += strlen(r.policy);
        }
        break;
    case TIS__ENVELOPE__BODY_LABEL_JOB: {
        label_config lc;
        if (e->label_job->spec && wire_label_spec_from(e->label_job->spec, &mc, &lc) == 0) s_sink += (uint64_t)lc.layer;
        break;
    }
    case TIS__ENVELOPE__BODY_LABEL_DONE: {
        label_sample ls;
        if (wire_label_block_read(e->label_done, &mc, data, size, "x", &ls) == 0) s_sink += (uint64_t)ls.n_tokens;
        label_sample_free(&ls);
        break;
    }
    default:
        s_sink += (uint64_t)strlen(msg_body_name(e));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tis__Envelope *e = NULL;
    int rc = msg_unpack(data, size, TIS_MSG_MAX_BYTES, &e);
    if (rc == 0) {
        s_body(e, data, size);
        uint8_t *again = NULL; /* what parsed packs again */
        size_t n = 0;
        if (msg_pack(e, &again, &n) == 0) free(again);
    }
    msg_free(e);
    return 0;
}

/* ---- seeds ---------------------------------------------------------------- */

static void s_write(const char *dir, const char *name, Tis__Envelope *e) {
    uint8_t *buf = NULL;
    size_t n = 0;
    if (msg_pack(e, &buf, &n)) return;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(buf, 1, n, f);
        fclose(f);
    }
    free(buf);
}

static void s_seeds(const char *dir) {
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = 16;
    gp.seed = 42;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = "the cat sat on the mat";
    sub.question = "where is the cat?";
    sub.policy = "snapkv";
    sub.budget = 0.5;
    sub.gen = &gp;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = 7;
    e.body_case = TIS__ENVELOPE__BODY_SUBMIT;
    e.submit = &sub;
    s_write(dir, "submit", &e);
    Tis__PrefillJob pj = TIS__PREFILL_JOB__INIT;
    pj.request = &sub;
    e.body_case = TIS__ENVELOPE__BODY_PREFILL_JOB;
    e.prefill_job = &pj;
    s_write(dir, "prefill_job", &e);
    uint32_t lens[8] = {3, 3, 3, 3, 3, 3, 3, 3};
    int32_t q[2] = {5, 6};
    Tis__BlockRef br = TIS__BLOCK_REF__INIT;
    br.arena = "/tis-prefill-0";
    br.offset = 4096;
    br.length = 1536;
    br.lease_id = 3;
    Tis__KvLayout lay = TIS__KV_LAYOUT__INIT;
    lay.n_layer = 4;
    lay.n_kv_head = 2;
    lay.head_dim = 16;
    lay.n_stream_len = 8;
    lay.stream_len = lens;
    lay.n_past = 12;
    Tis__PrefillDone pd = TIS__PREFILL_DONE__INIT;
    pd.kv = &br;
    pd.layout = &lay;
    pd.n_question_ids = 2;
    pd.question_ids = q;
    e.body_case = TIS__ENVELOPE__BODY_PREFILL_DONE;
    e.prefill_done = &pd;
    s_write(dir, "prefill_done", &e);
    Tis__DecodeJob dj = TIS__DECODE_JOB__INIT;
    dj.kv = &br;
    dj.layout = &lay;
    dj.n_question_ids = 2;
    dj.question_ids = q;
    dj.gen = &gp;
    e.body_case = TIS__ENVELOPE__BODY_DECODE_JOB;
    e.decode_job = &dj;
    s_write(dir, "decode_job", &e);
    Tis__Error er = TIS__ERROR__INIT;
    er.code = -3;
    er.message = "out of memory";
    e.body_case = TIS__ENVELOPE__BODY_ERROR;
    e.error = &er;
    s_write(dir, "error", &e);
    /* an eval job: spec + sample, as tis eval --workers sends them */
    const char *pol[] = {"snapkv", "tis"};
    double bud[] = {0.1, 0.5};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = pol;
    cfg.n_policies = 2;
    cfg.budgets = bud;
    cfg.n_budgets = 2;
    Tis__EvalSpec spec;
    wire_eval_spec_view(&cfg, "fuzz", &spec);
    char *answers[1] = {"mat"};
    bench_sample smp = {.context = "the cat sat on the mat", .question = "where?", .answers = answers,
                        .n_answers = 1, .depth = 0.5, .target_tokens = 64};
    snprintf(smp.id, sizeof smp.id, "s0");
    Tis__EvalSample sm;
    wire_eval_sample_view(&smp, &sm);
    Tis__EvalJob ej = TIS__EVAL_JOB__INIT;
    ej.benchmark = "passkey";
    ej.spec = &spec;
    ej.sample = &sm;
    e.body_case = TIS__ENVELOPE__BODY_EVAL_JOB;
    e.eval_job = &ej;
    s_write(dir, "eval_job", &e);
    Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
    hb.time_ms = 1000;
    hb.capacity = 8;
    e.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    s_write(dir, "heartbeat", &e);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("TIS_FUZZ_SEEDS");
    if (dir && *dir) {
        s_seeds(dir);
        exit(0);
    }
    return 0;
}
