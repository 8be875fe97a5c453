/* test_request: the pipeline's two stages (prefill + compress, then the
 * hand-off as a flat block, then question + generation) give exactly the
 * answers, kept counts and KV bytes of `tis eval` for every policy,
 * protocol and budget, on a tiny model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "eval.h"
#include "generate.h"
#include "head.h"
#include "request.h"
#include "tiny_model.h"
#include "tt.h"

static const char *s_data =
    "{\"id\": \"a\", \"context\": \"the cat sat on the mat and then the dog ran in the park while the sun "
    "was hot and the wind was cold in the north\", \"question\": \"where is the cat?\", \"answers\": [\"mat\"]}\n"
    "{\"id\": \"b\", \"context\": \"one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen\", \"question\": \"what comes after four?\", \"answers\": \"five\"}\n";

int main(void) {
    char tiny[512], data[512], hp[512], hqp[512];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(hp, sizeof hp, "%s", tt_path("h.safetensors"));
    snprintf(hqp, sizeof hqp, "%s", tt_path("hq.safetensors"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    TT_OK(tt_write_file(data, s_data, strlen(s_data)));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    bench_set set = {0};
    TT_OK(bench_load_jsonl(data, &set));
    if (!m || set.n != 2) return tt_done("test_request");

    /* random heads for the learned policies */
    head_config hc = {.kind = HEAD_LINEAR, .d_model = m->config.d_model, .layer = 2};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *hh = NULL, *hq = NULL;
    TT_OK(head_new(&hh, &hc, 3));
    hc.query_aware = true;
    hc.rank = 4;
    TT_OK(head_new(&hq, &hc, 4));
    if (hh) TT_OK(head_save(hh, hp));
    if (hq) TT_OK(head_save(hq, hqp));

    const char *pol[] = {"full", "random", "streaming", "knorm", "h2o", "snapkv", "tova",
                         "pyramidkv", "adakv", "oracle", "tis", "tis_query"};
    double budgets[] = {0.3, 0.7};
    int64_t btok[] = {6};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = pol;
    cfg.n_policies = 12;
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
    float *logits = malloc((size_t)m->config.n_vocab * sizeof(float));
    int64_t compared = 0, outside = 0;
    for (int64_t si = 0; er && st && si < set.n; si++) {
        eval_row *rows = NULL;
        int64_t n = 0, cap = 0;
        TT_OK(eval_run_sample(er, "jsonl", &set.s[si], &rows, &n, &cap));
        for (int64_t i = 0; i < n; i++) {
            const eval_row *r = &rows[i];
            request_opts o = {.budget = r->budget, .budget_tokens = r->budget_tokens,
                              .query_aware = !strcmp(r->protocol, "query_aware"), .window = cfg.window,
                              .n_sink = cfg.n_sink, .seed = cfg.seed, .max_new = cfg.max_new,
                              .head_ctx = hh, .head_q = hq};
            TT_OK(press_parse(r->policy, &o.policy));
            request_prefilled rp;
            TT_OK(request_prefill(st, &ct, cfg.chat && tokenizer_chat_template(m->tok) != NULL,
                                  &set.s[si], &o, &rp));
            if (!rp.kv) continue;
            /* the hand-off: a flat block, rebuilt on the other side */
            size_t nb = kv_cache_block_bytes(rp.kv);
            void *blk = malloc(nb ? nb : 1);
            kv_cache_block_write(rp.kv, blk);
            int64_t *lens = malloc((size_t)rp.kv->n_stream * sizeof *lens);
            for (int64_t q = 0; q < rp.kv->n_stream; q++) lens[q] = rp.kv->len[q];
            kv_cache *dk = NULL;
            TT_OK(kv_cache_block_read(&dk, rp.kv->n_layer, rp.kv->n_kv_head, rp.kv->head_dim, lens,
                                      rp.kv->n_past, blk, nb, rp.n_rest + cfg.max_new));
            answer_out ao = {0};
            const int32_t *q = rp.rest;
            if (dk) TT_OK(generate_answers(st, m, &dk, 1, &q, &rp.n_rest, cfg.max_new, logits, &ao));
            bool same = ao.text && !strcmp(ao.text, r->answer) && ao.kv_bytes == r->kv_bytes &&
                        rp.kept_mean == r->kept_tokens && rp.full_kv_bytes == r->full_kv_bytes;
            TT_CHECK(same);
            if (o.policy.needs_head) { /* a scorer elsewhere: hidden rows out, scores in, the same block */
                const head *hd = o.policy.query_head ? hq : hh;
                request_opts oo = o;
                oo.head_ctx = oo.head_q = NULL;
                oo.head_layer = hd->cfg.layer;
                request_state *rs = NULL;
                float *rows_h = NULL, *sc = NULL;
                int64_t nc = 0, nq = 0;
                request_prefilled rp2;
                TT_OK(request_begin(st, &ct, cfg.chat && tokenizer_chat_template(m->tok) != NULL, &set.s[si], &oo,
                                    true, &rs));
                TT_CHECK(rs && request_needs_scores(rs));
                TT_OK(request_hidden(rs, &rows_h, &nc, &nq));
                TT_FAILS(request_finish(rs, NULL, &rp2), TIS_EINVAL); /* no head here, no scores given */
                sc = malloc((size_t)(nc ? nc : 1) * sizeof *sc);
                TT_OK(head_score_context(hd, rows_h, 0, nc, nc, nq, sc));
                TT_OK(request_finish(rs, sc, &rp2));
                size_t nb2 = rp2.kv ? kv_cache_block_bytes(rp2.kv) : 0;
                void *blk2 = malloc(nb2 ? nb2 : 1);
                if (rp2.kv) kv_cache_block_write(rp2.kv, blk2);
                TT_CHECK(nb2 == nb && !memcmp(blk, blk2, nb) && rp2.n_rest == rp.n_rest &&
                         !memcmp(rp2.rest, rp.rest, (size_t)rp.n_rest * sizeof(int32_t)));
                outside++;
                free(blk2);
                free(sc);
                free(rows_h);
                request_prefilled_free(&rp2);
                request_state_free(&rs);
            }
            if (!same)
                fprintf(stderr, "  %s %s %s %g: pipeline '%s' %lld B, eval '%s' %lld B\n", r->sample_id,
                        r->protocol, r->policy, r->budget, ao.text ? ao.text : "(null)",
                        (long long)ao.kv_bytes, r->answer, (long long)r->kv_bytes);
            compared++;
            free(ao.text);
            free(ao.ids);
            kv_cache_destroy(&dk);
            free(lens);
            free(blk);
            request_prefilled_free(&rp);
        }
        free(rows);
    }
    fprintf(stderr, "  %lld runs compared with eval, %lld scored outside\n", (long long)compared, (long long)outside);
    TT_CHECK(outside > 0);
    TT_CHECK(compared == 2 * ((1 + 10 * 3) + (1 + 11 * 3)));

    /* refusals */
    request_opts o = {.budget = 0.5, .window = 4, .max_new = 4};
    request_prefilled rp;
    TT_OK(press_parse("tis_query", &o.policy));
    o.head_q = hq;
    TT_FAILS(request_prefill(st, &ct, true, &set.s[0], &o, &rp), TIS_EINVAL); /* agnostic */
    TT_OK(press_parse("tis", &o.policy));
    TT_FAILS(request_prefill(st, &ct, true, &set.s[0], &o, &rp), TIS_EINVAL); /* no head */
    free(logits);
    chat_template_free(&ct);
    forward_state_destroy(&st);
    eval_runner_destroy(&er);
    head_destroy(&hh);
    head_destroy(&hq);
    bench_set_free(&set);
    model_destroy(&m);
    return tt_done("test_request");
}
