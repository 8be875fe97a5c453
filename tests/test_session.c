/* test_session: one request through the session (prefill + compress, the
 * hand-off as a flat block, then the decoder as the decode worker runs it)
 * gives exactly the answers, kept counts and KV bytes of `tis eval`, which
 * runs every policy, protocol and budget from one session, on a tiny
 * model; the same with scores from an outside scorer; the decoder's
 * continuous batching (sequences joining and leaving) gives each sequence
 * the tokens it gets alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "eval.h"
#include "decoder.h"
#include "head.h"
#include "press_spec.h"
#include "session.h"
#include "tiny_model.h"
#include "tt.h"

static const char *s_data =
    "{\"id\": \"a\", \"context\": \"the cat sat on the mat and then the dog ran in the park while the sun "
    "was hot and the wind was cold in the north\", \"question\": \"where is the cat?\", \"answers\": [\"mat\"]}\n"
    "{\"id\": \"b\", \"context\": \"one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen\", \"question\": \"what comes after four?\", \"answers\": \"five\"}\n";

/* Continuous batching: sequences that join a running batch at different
 * steps (and leave when done) get the tokens they get alone. */
static void s_continuous(forward_state *st, const model *m, const chat_template *ct, const bench_set *set) {
    enum { N = 4 };
    kv_cache *kv_alone[N] = {0}, *kv_batch[N] = {0};
    decoder_seq alone[N], batch[N];
    const int32_t *feed[N];
    int64_t n_feed[N];
    session *ss[N] = {0};
    decoder *d1 = NULL, *d3 = NULL;
    TT_OK(decoder_new(&d1, st, 1));
    TT_OK(decoder_new(&d3, st, 3)); /* fewer slots than sequences: one waits */
    session_opts so = {.chat = true, .query_aware = true, .window = 4, .n_sink = 4, .seed = 1, .hid_layer = -1};
    for (int i = 0; i < N; i++) {
        session_input in;
        eval_session_input(&set->s[i % set->n], &in);
        if (i >= 2) in.question = i == 2 ? "and the dog?" : "say something long about the park";
        TT_OK(session_new(&ss[i], st, ct, &in, &so));
        if (!ss[i]) return;
        session_rest(ss[i], true, &feed[i], &n_feed[i]);
        TT_OK(session_full(ss[i], 12, &kv_alone[i]));
        TT_OK(session_full(ss[i], 12, &kv_batch[i]));
        TT_OK(decoder_seq_init(&alone[i], kv_alone[i], feed[i], n_feed[i], 12));
        TT_OK(decoder_seq_init(&batch[i], kv_batch[i], feed[i], n_feed[i], 12));
        batch[i].stop_answer = alone[i].stop_answer = i % 2 == 0; /* two stop rules side by side */
        decoder_seq *one = &alone[i];
        TT_OK(decoder_run(d1, &one, 1));
    }
    /* join at steps 0, 0, 1 and 3; the fourth waits for a slot as well */
    decoder_seq *live[N];
    int64_t n_live = 0, steps = 0;
    int joined = 0;
    while (steps < 64) {
        while (joined < N && ((joined < 2) || (joined == 2 && steps >= 1) || (joined == 3 && steps >= 3)))
            live[n_live++] = &batch[joined++];
        int64_t k = decoder_step(d3, live, n_live);
        TT_CHECK(k >= 0 && k <= 3);
        steps++;
        int64_t kept = 0; /* finished sequences leave */
        for (int64_t i = 0; i < n_live; i++)
            if (!live[i]->done) live[kept++] = live[i];
        n_live = kept;
        if (joined == N && n_live == 0) break;
    }
    for (int i = 0; i < N; i++) {
        bool same = batch[i].done && batch[i].n_gen == alone[i].n_gen &&
                    !memcmp(batch[i].gen, alone[i].gen, (size_t)alone[i].n_gen * sizeof(int32_t)) &&
                    batch[i].kv_bytes == alone[i].kv_bytes;
        TT_CHECK(same);
        fprintf(stderr, "  continuous seq %d: %lld tokens alone, %lld batched, %s\n", i, (long long)alone[i].n_gen,
                (long long)batch[i].n_gen, same ? "same" : "DIFFERENT");
        decoder_seq_free(&alone[i]);
        decoder_seq_free(&batch[i]);
        kv_cache_destroy(&kv_alone[i]);
        kv_cache_destroy(&kv_batch[i]);
        session_destroy(&ss[i]);
    }
    /* a bad feed is refused, a step over no live sequence does nothing */
    decoder_seq bad;
    TT_FAILS(decoder_seq_init(&bad, kv_alone[0], NULL, 0, 4), TIS_EINVAL);
    TT_CHECK(decoder_step(d3, live, 0) == 0);
    decoder_destroy(&d1);
    decoder_destroy(&d3);
    (void)m;
}

/* What the cases share. */
typedef struct fixture {
    model *m;
    forward_state *st;
    chat_template *ct;
    decoder *dec;
    head *hh, *hq;
    head *hb;             /* the named head "hb" (cfg->head_as) */
    const eval_config *cfg;
} fixture;

/* The same request with its heads run elsewhere (the scorer route):
 * hidden rows out, scores in (a union's: each member's head's rows in
 * member order); the block must be the in-process one, byte for byte. */
static void s_outside_scorer(const fixture *f, const session_input *in, const session_request *o,
                             const head *const hd[2], const session_result *rp, const void *blk, size_t nb) {
    session *ss = NULL;
    float *rows_h = NULL, *sc = NULL;
    int64_t nc = 0, nq = 0;
    session_result rp2 = {0};
    TT_OK(session_request_begin(&ss, f->st, f->ct, in, o, hd[0], hd[1], true));
    TT_CHECK(ss && session_needs_scores(ss));
    if (ss) TT_OK(session_hidden(ss, &rows_h, &nc, &nq));
    if (ss) TT_FAILS(session_request_finish(ss, NULL, 1, &rp2), TIS_EINVAL); /* no scores given */
    int64_t n_out[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        if (hd[i]) n_out[i] = hd[i]->cfg.n_out > 1 ? hd[i]->cfg.n_out : 1;
    sc = malloc((size_t)(nc ? nc * (n_out[0] + n_out[1]) : 1) * sizeof *sc);
    for (int i = 0; i < 2; i++)
        if (hd[i]) TT_OK(head_score_context(hd[i], rows_h, NULL, 0, nc, nc, nq, sc + (i ? n_out[0] * nc : 0)));
    if (ss && hd[1]) TT_FAILS(session_request_finish(ss, sc, n_out[0], &rp2), TIS_EINVAL); /* one head's rows */
    if (ss) TT_OK(session_request_finish(ss, sc, n_out[0] + n_out[1], &rp2));
    session_destroy(&ss);
    size_t nb2 = rp2.kv ? kv_cache_block_bytes(rp2.kv) : 0;
    void *blk2 = malloc(nb2 ? nb2 : 1);
    if (rp2.kv) kv_cache_block_write(rp2.kv, blk2);
    TT_CHECK(nb2 == nb && !memcmp(blk, blk2, nb) && rp2.n_rest == rp->n_rest &&
             !memcmp(rp2.rest, rp->rest, (size_t)rp->n_rest * sizeof(int32_t)));
    free(blk2);
    free(sc);
    free(rows_h);
    session_result_free(&rp2);
}

/* One eval row replayed as a served request: the session's block through
 * the hand-off, decoded, must give eval's answer and bytes. */
static void s_row(const fixture *f, const bench_sample *sample, const eval_row *r, int64_t *compared,
                  int64_t *outside) {
    session_request o = {.budget = r->budget, .budget_tokens = r->budget_tokens,
                         .query_aware = !strcmp(r->protocol, "query_aware"),
                         .chat = f->cfg->chat && tokenizer_chat_template(f->m->tok) != NULL,
                         .window = f->cfg->window, .n_sink = f->cfg->n_sink, .seed = f->cfg->seed,
                         .max_new = f->cfg->max_new, .hook_lambda = -1};
    press_spec sp; /* one policy, or a union (a named head's member too) */
    TT_OK(press_spec_parse(r->policy, f->cfg->head_as, f->cfg->n_head_as, &sp));
    o.policy = sp.m[0];
    if (sp.n == 2) o.policy_b = sp.m[1];
    const head *hd[2] = {NULL, NULL};
    for (int i = 0; i < sp.n; i++)
        if (sp.m[i].needs_head) hd[i] = sp.head[i] == 0 ? f->hb : sp.m[i].query_head ? f->hq : f->hh;
    session_input in;
    eval_session_input(sample, &in);
    session *ss = NULL;
    session_result rp = {0};
    TT_OK(session_request_begin(&ss, f->st, f->ct, &in, &o, hd[0], hd[1], false));
    if (ss) TT_CHECK(!session_needs_scores(ss));
    if (ss) TT_OK(session_request_finish(ss, NULL, 1, &rp));
    session_destroy(&ss);
    if (!rp.kv) return;
    /* the hand-off: a flat block, rebuilt on the other side */
    size_t nb = kv_cache_block_bytes(rp.kv);
    void *blk = malloc(nb ? nb : 1);
    kv_cache_block_write(rp.kv, blk);
    int64_t *lens = malloc((size_t)rp.kv->n_stream * sizeof *lens);
    for (int64_t q = 0; q < rp.kv->n_stream; q++) lens[q] = rp.kv->len[q];
    kv_cache *dk = NULL;
    TT_OK(kv_cache_block_read(&dk, rp.kv->n_layer, rp.kv->n_kv_head, rp.kv->head_dim, (kv_types){rp.kv->k_type, rp.kv->v_type}, lens,
                              rp.kv->n_past, rp.kv->bias != NULL, blk, nb, rp.n_rest + f->cfg->max_new));
    decoder_seq dq = {0};
    char *text = NULL;
    if (dk) {
        decoder_seq *one = &dq;
        TT_OK(decoder_seq_init(&dq, dk, rp.rest, rp.n_rest, f->cfg->max_new));
        TT_OK(decoder_run(f->dec, &one, 1));
        TT_OK(decoder_seq_text(f->dec, &dq, true, &text));
    }
    bool same = text && !strcmp(text, r->answer) && dq.kv_bytes == r->kv_bytes &&
                rp.kept_mean == r->kept_tokens && rp.full_kv_bytes == r->full_kv_bytes;
    TT_CHECK(same);
    if (press_spec_needs_head(&sp)) { /* a scorer elsewhere: hidden rows out, scores in, the same block */
        o.hook_lambda = hd[0] ? hd[0]->attn_hook_lambda : -1;
        s_outside_scorer(f, &in, &o, hd, &rp, blk, nb);
        (*outside)++;
    }
    if (!same)
        fprintf(stderr, "  %s %s %s %g: pipeline '%s' %lld B, eval '%s' %lld B\n", r->sample_id,
                r->protocol, r->policy, r->budget, text ? text : "(null)",
                (long long)dq.kv_bytes, r->answer, (long long)r->kv_bytes);
    (*compared)++;
    free(text);
    decoder_seq_free(&dq);
    kv_cache_destroy(&dk);
    free(lens);
    free(blk);
    session_result_free(&rp);
}

/* An adaptive budget (threshold): a served request keeps what eval's
 * threshold compaction keeps; out-of-range and uncalibrated refused. */
static void s_threshold_case(forward_state *st, const chat_template *ct, const session_input *in) {
    TT_CASE("an adaptive budget (threshold): served = eval's threshold compaction");
    session_request ot = {.threshold = 0.1, .window = 4, .n_sink = 4, .max_new = 4, .chat = true,
                          .hook_lambda = -1};
    TT_OK(press_parse("kvzip", &ot.policy));
    session *s1 = NULL, *s2 = NULL;
    session_result r1 = {0};
    TT_OK(session_request_begin(&s1, st, ct, in, &ot, NULL, NULL, false));
    if (s1) TT_OK(session_request_finish(s1, NULL, 1, &r1));
    session_opts so = {.chat = true, .agnostic = true, .window = 4, .n_sink = 4, .hid_layer = -1};
    kv_cache *kv2 = NULL;
    int64_t kept2 = 0;
    double secs = 0;
    TT_OK(session_new(&s2, st, ct, in, &so));
    if (s2) TT_OK(session_compact_threshold(s2, &ot.policy, false, 0.1, 4, 0.0f, &kv2, &kept2, &secs));
    if (r1.kv && kv2) {
        bool same = r1.kv->n_stream == kv2->n_stream && r1.kept_mean == kept2;
        for (int64_t q = 0; same && q < kv2->n_stream; q++) same = r1.kv->len[q] == kv2->len[q];
        fprintf(stderr, "  kvzip >= 0.1: kept %lld of %lld per stream on average\n", (long long)kept2,
                (long long)r1.n_ctx);
        TT_CHECK(same);
        TT_CHECK(kept2 > 0 && kept2 < r1.n_ctx);
    }
    session_result_free(&r1);
    kv_cache_destroy(&kv2);
    session_destroy(&s1);
    session_destroy(&s2);
    ot.threshold = 1.5; /* out of (0, 1] */
    TT_FAILS(session_request_begin(&s1, st, ct, in, &ot, NULL, NULL, false), TIS_EINVAL);
    ot.threshold = 0.02; /* scores on no common scale: refused when compressing */
    TT_OK(press_parse("snapkv", &ot.policy));
    TT_OK(session_request_begin(&s1, st, ct, in, &ot, NULL, NULL, false));
    if (s1) TT_FAILS(session_request_finish(s1, NULL, 1, &r1), TIS_EINVAL);
    session_destroy(&s1);
}

/* What session_request_begin refuses: tis_query agnostic, tis without a
 * head or with a query head, no budget, oracle without an answer. */
static void s_refusals(forward_state *st, const chat_template *ct, const session_input *in, const head *hq) {
    TT_CASE("refusals");
    session_request o = {.budget = 0.5, .window = 4, .max_new = 4, .chat = true};
    session_input in0 = *in;
    session *ss = NULL;
    TT_OK(press_parse("tis_query", &o.policy));
    TT_FAILS(session_request_begin(&ss, st, ct, &in0, &o, hq, NULL, false), TIS_EINVAL); /* agnostic */
    TT_OK(press_parse("tis", &o.policy));
    TT_FAILS(session_request_begin(&ss, st, ct, &in0, &o, NULL, NULL, false), TIS_EINVAL); /* no head */
    TT_FAILS(session_request_begin(&ss, st, ct, &in0, &o, hq, NULL, false), TIS_EINVAL); /* a query head for tis */
    o.budget = 0;
    TT_OK(press_parse("snapkv", &o.policy));
    TT_FAILS(session_request_begin(&ss, st, ct, &in0, &o, NULL, NULL, false), TIS_EINVAL); /* no budget */
    o.budget = 0.5;
    TT_OK(press_parse("oracle", &o.policy));
    in0.answer = NULL;
    TT_FAILS(session_request_begin(&ss, st, ct, &in0, &o, NULL, NULL, false), TIS_EINVAL); /* no answer */
    TT_CHECK(ss == NULL);
}

/* A per-head head: in process = through a scorer; pooled selection; a
 * scorer's rows that are neither 1 nor the model's streams refused. */
static void s_per_head(const fixture *fx, forward_state *st, const chat_template *ct, const session_input *in) {
    TT_CASE("a per-head head: in process = through a scorer; pooled selection");
    const model *m = fx->m;
    session_input in0 = *in;
    in0.answer = NULL;
    head_config pc = {.kind = HEAD_MLP, .hidden = 8, .d_model = m->config.d_model, .layer = 2,
                      .n_out = m->config.n_layer * m->config.n_kv_head, .target = HEAD_TARGET_RECON};
    snprintf(pc.base_model, sizeof pc.base_model, "%s", m->config.name);
    head *hp1 = NULL;
    TT_OK(head_new(&hp1, &pc, 9));
    session_request o1 = {.budget = 0.3, .window = 4, .n_sink = 4, .max_new = 4, .chat = true, .hook_lambda = -1};
    TT_OK(press_parse("tis", &o1.policy));
    session *s1 = NULL;
    session_result r1 = {0};
    TT_OK(session_request_begin(&s1, st, ct, &in0, &o1, hp1, NULL, false));
    if (s1) TT_OK(session_request_finish(s1, NULL, 1, &r1));
    session_destroy(&s1);
    if (r1.kv) {
        /* pooled: the streams keep different numbers, the mean is the budget */
        int64_t lo = INT64_MAX, hi = 0;
        for (int64_t q = 0; q < r1.kv->n_stream; q++) {
            int64_t k = r1.kv->len[q];
            lo = k < lo ? k : lo;
            hi = k > hi ? k : hi;
        }
        TT_CHECK(hi > lo);
        size_t nb = kv_cache_block_bytes(r1.kv);
        void *blk = malloc(nb ? nb : 1);
        kv_cache_block_write(r1.kv, blk);
        s_outside_scorer(fx, &in0, &o1, (const head *const[2]){hp1, NULL}, &r1, blk, nb);
        free(blk);
    }
    session_result_free(&r1);
    /* a scorer's rows that are neither 1 nor the model's streams */
    TT_OK(session_request_begin(&s1, st, ct, &in0, &o1, hp1, NULL, true));
    float junk[4096] = {0};
    if (s1) TT_FAILS(session_request_finish(s1, junk, 2, &r1), TIS_EINVAL);
    session_destroy(&s1);
    head_destroy(&hp1);
}

int main(void) {
    char tiny[512], data[512], hp[512], hqp[512], hbp[512], hb_as[600];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(hp, sizeof hp, "%s", tt_path("h.safetensors"));
    snprintf(hqp, sizeof hqp, "%s", tt_path("hq.safetensors"));
    snprintf(hbp, sizeof hbp, "%s", tt_path("hb.safetensors"));
    snprintf(hb_as, sizeof hb_as, "hb=%s", hbp);
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    TT_OK(tt_write_file(data, s_data, strlen(s_data)));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    bench_set set = {0};
    TT_OK(bench_load_jsonl(data, &set));
    if (!m || set.n != 2) return tt_done("test_session");

    TT_CASE("session request = eval, through the block");
    /* random heads for the learned policies */
    head_config hc = {.kind = HEAD_LINEAR, .d_model = m->config.d_model, .layer = 2};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *hh = NULL, *hq = NULL, *hb = NULL;
    TT_OK(head_new(&hh, &hc, 3));
    TT_OK(head_new(&hb, &hc, 5)); /* a second context head, named hb, for the unions */
    if (hb) TT_OK(head_save(hb, hbp));
    hc.query_aware = true;
    hc.rank = 4;
    TT_OK(head_new(&hq, &hc, 4));
    if (hh) TT_OK(head_save(hh, hp));
    if (hq) TT_OK(head_save(hq, hqp));

    const char *pol[] = {"full", "random", "streaming", "knorm", "h2o", "snapkv", "tova",
                         "pyramidkv", "adakv", "oracle", "tis", "tis_query", "tis+hook", "kvzip",
                         "tis+lpool3|snapkv", "hb+lpool3|tis+recent4", "hb|tis_query"};
    const char *head_as[] = {hb_as};
    double budgets[] = {0.3, 0.7};
    int64_t btok[] = {6};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = pol;
    cfg.n_policies = 17;
    cfg.head_as = head_as;
    cfg.n_head_as = 1;
    cfg.budgets = budgets;
    cfg.n_budgets = 2;
    cfg.budget_tokens = btok;
    cfg.n_budget_tokens = 1;
    cfg.query_aware = true;
    cfg.max_new = 6;
    cfg.window = 4;
    cfg.head_path = hp;
    cfg.head_query_path = hqp;
    eval_runner *er = NULL;
    TT_OK(eval_runner_new(&er, m, &cfg));
    forward_state *st = NULL;
    TT_OK(forward_state_new(&st, m, backend_cpu(), 512));
    chat_template ct = {0};
    TT_OK(chat_template_init(&ct, tokenizer_chat_template(m->tok)));
    decoder *dec = NULL;
    TT_OK(decoder_new(&dec, st, 1));
    fixture fx = {m, st, &ct, dec, hh, hq, hb, &cfg};
    int64_t compared = 0, outside = 0;
    for (int64_t si = 0; er && st && si < set.n; si++) {
        eval_row *rows = NULL;
        int64_t n = 0, cap = 0;
        TT_OK(eval_run_sample(er, "jsonl", &set.s[si], &rows, &n, &cap));
        for (int64_t i = 0; i < n; i++) {
            s_row(&fx, &set.s[si], &rows[i], &compared, &outside);
        }
        free(rows);
    }
    fprintf(stderr, "  %lld runs compared with eval, %lld scored outside\n", (long long)compared, (long long)outside);
    TT_CHECK(outside > 0);
    /* agnostic: 12 policies + the 2 agnostic unions; query-aware: 13 + 3 */
    TT_CHECK(compared == 2 * ((1 + 14 * 3) + (1 + 16 * 3)));

    session_input in0;
    eval_session_input(&set.s[0], &in0);
    s_refusals(st, &ct, &in0, hq);
    in0.answer = NULL;
    s_threshold_case(st, &ct, &in0);
    s_per_head(&fx, st, &ct, &in0);
    TT_CASE("continuous batching = alone");
    s_continuous(st, m, &ct, &set);
    decoder_destroy(&dec);
    chat_template_free(&ct);
    forward_state_destroy(&st);
    eval_runner_destroy(&er);
    head_destroy(&hh);
    head_destroy(&hq);
    head_destroy(&hb);
    bench_set_free(&set);
    model_destroy(&m);
    return tt_done("test_session");
}
