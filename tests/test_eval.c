/* test_eval: the in-process evaluation end to end on a tiny random model:
 * row counts, measured KV bytes follow the budgets, every policy at budget
 * 1.0 reproduces full, runs are deterministic, and `tis eval` writes its
 * files and names a bad dataset line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "eval.h"
#include "head.h"
#include "model.h"
#include "press.h"
#include "tiny_model.h"
#include "tis_error.h"
#include "tt.h"

static const char *s_dataset =
    "{\"id\": \"a\", \"context\": \"the cat sat on the mat and then the dog ran in the park "
    "while the sun was hot and the wind was cold in the north\", \"question\": \"where is the cat?\", "
    "\"answers\": [\"mat\"]}\n"
    "\n"
    "{\"id\": \"b\", \"context\": \"one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty\", \"question\": \"what "
    "comes after four?\", \"answers\": \"five\"}\n"
    "{\"id\": \"c\", \"context\": \"in the north the rain and the ther then the thin hen ran an "
    "errand near the inn\", \"question\": \"who ran?\"}\n";

/* A random single-score head reading `layer`, saved to path. */
static void s_save_head(const model *m, int64_t layer, uint64_t seed, const char *path) {
    head_config hc = {.kind = HEAD_MLP, .d_model = m->config.d_model, .hidden = 8, .layer = layer};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *h = NULL;
    TT_OK(head_new(&h, &hc, seed));
    if (h) TT_OK(head_save(h, path));
    head_destroy(&h);
}

/* The rows of policy `pol` in rows[n]. */
static int64_t s_rows_of(const eval_row *rows, int64_t n, const char *pol, const eval_row **out) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(rows[i].policy, pol)) out[k++] = &rows[i];
    return k;
}

/* A union "A|B": each stream keeps what the two rankings put first, in
 * turn. Two members that rank alike keep what one keeps (the rows equal
 * the member's); members of different rankings keep k a stream all the
 * same; malformed unions are refused with a message. */
static void s_union(const model *m, const bench_sample *smp, const eval_config *base) {
    TT_CASE("A|B: a union of two policies");
    char ha[512], hb[512], ea[600], eb[600];
    snprintf(ha, sizeof ha, "%s", tt_path("ua.safetensors"));
    snprintf(hb, sizeof hb, "%s", tt_path("ub.safetensors"));
    s_save_head(m, m->config.n_layer, 5, ha);
    s_save_head(m, m->config.n_layer, 7, hb);
    snprintf(ea, sizeof ea, "tis_a=%s", ha); /* tis's own head under another name */
    snprintf(eb, sizeof eb, "tis_b=%s", hb);
    const char *pol[] = {"full", "tis", "tis_a|tis", "tis_b|snapkv", "snapkv"};
    const char *as[] = {ea, eb};
    eval_config c = *base;
    c.policies = pol;
    c.n_policies = 5;
    c.head_path = ha;
    c.head_as = as;
    c.n_head_as = 2;
    press pr;
    const char *path = "x";
    TT_OK(eval_press_parse(&c, "tis_b|snapkv", &pr, &path));
    TT_CHECK(!path && !pr.needs_head && pr.needs_obs && !press_calibratable(&pr) && !strcmp(pr.name, "tis_b|snapkv"));
    TT_FAILS(press_parse("tis_b|snapkv", &pr), TIS_EUNSUPPORTED); /* one request, one policy */
    eval_row *rows = NULL;
    int64_t n = 0, cap = 0, per = 0;
    TT_OK(eval_rows_per_sample(&c, &per));
    eval_runner *er = NULL;
    TT_OK(eval_runner_new(&er, m, &c));
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &rows, &n, &cap));
    eval_runner_destroy(&er);
    TT_CHECK(n == per && per == 2 * (1 + 4 * 4));
    const eval_row *x[16], *y[16];
    int64_t k1 = s_rows_of(rows, n, "tis_a|tis", x), k2 = s_rows_of(rows, n, "tis", y);
    TT_CHECK(k1 == 8 && k2 == 8);
    for (int64_t i = 0; i < k1 && i < k2; i++)
        TT_CHECK(!strcmp(x[i]->answer, y[i]->answer) && x[i]->kv_bytes == y[i]->kv_bytes &&
                 x[i]->kept_tokens == y[i]->kept_tokens && x[i]->budget == y[i]->budget);
    k1 = s_rows_of(rows, n, "tis_b|snapkv", x);
    k2 = s_rows_of(rows, n, "snapkv", y);
    TT_CHECK(k1 == 8 && k2 == 8);
    for (int64_t i = 0; i < k1 && i < k2; i++)
        TT_CHECK(x[i]->kept_tokens == y[i]->kept_tokens && x[i]->kv_bytes == y[i]->kv_bytes);
    free(rows);

    TT_CASE("A|B: refused unions");
    const char *bad[][2] = {{"tis|", "two policies"},           {"|tis", "two policies"},
                            {"tis|snapkv|h2o", "two policies"}, {"full|tis", "full keeps everything"},
                            {"tis+hook|snapkv", "attention hook"}, {"tis|tis", "with itself"},
                            {"tis|nosuch", "nosuch"},           {"tis_a+pool4|tis", "+poolN"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p1[] = {"full", bad[i][0]};
        c.policies = p1;
        c.n_policies = 2;
        c.n_head_as = strstr(bad[i][0], "tis_a") ? 1 : 0; /* a NAME given is a NAME listed */
        TT_CHECK(eval_runner_new(&er, m, &c) != 0 && er == NULL);
        TT_CHECK(strstr(tis_last_error(), bad[i][1]) != NULL);
        if (!strstr(tis_last_error(), bad[i][1])) fprintf(stderr, "  %s -> %s\n", bad[i][0], tis_last_error());
    }
    const char *nohead[] = {"full", "snapkv|tis"};
    c.policies = nohead;
    c.head_path = NULL;
    c.n_head_as = 0;
    TT_FAILS(eval_runner_new(&er, m, &c), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "needs an importance head") != NULL);
    TT_CASE("--thresholds: a union, a one-output head: budget rows only");
    const char *thr[] = {"full", "tis", "tis_a|tis"}; /* one-output heads rank only; a union has no one scale */
    double tau[] = {0.1};
    c.policies = thr;
    c.n_policies = 3;
    c.head_path = ha;
    c.thresholds = tau;
    c.n_thresholds = 1;
    c.n_head_as = 1;
    TT_OK(eval_rows_per_sample(&c, &per));
    TT_CHECK(per == 2 * (1 + 4 + 4));
    TT_OK(eval_runner_new(&er, m, &c));
    rows = NULL;
    n = cap = 0;
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &rows, &n, &cap));
    eval_runner_destroy(&er);
    TT_CHECK(n == per);
    for (int64_t i = 0; i < n; i++) TT_CHECK(rows[i].threshold < 0);
    free(rows);
}

/* --head_as NAME=PATH: policy NAME is tis with another head, in the same
 * run; its rows equal a run of tis with that head alone, and tis's rows
 * stay its own head's. Malformed entries are refused with a message. */
static void s_head_as(const model *m, const bench_sample *smp, const eval_config *base) {
    TT_CASE("--head_as: several heads in one run");
    char ha[512], hb[512], hc[512], entry[600], other[600];
    snprintf(ha, sizeof ha, "%s", tt_path("ha.safetensors"));
    snprintf(hb, sizeof hb, "%s", tt_path("hb.safetensors"));
    snprintf(hc, sizeof hc, "%s", tt_path("hc.safetensors"));
    s_save_head(m, m->config.n_layer, 5, ha);
    s_save_head(m, m->config.n_layer, 7, hb);
    s_save_head(m, 1, 9, hc); /* another layer */
    snprintf(entry, sizeof entry, "tis_b=%s", hb);
    const char *both[] = {"full", "tis", "tis_b"}, *one[] = {"full", "tis"};
    const char *as[] = {entry};
    eval_config c = *base;
    c.n_budget_tokens = 0;
    c.policies = both;
    c.n_policies = 3;
    c.head_path = ha;
    c.head_as = as;
    c.n_head_as = 1;
    int64_t per = 0;
    TT_OK(eval_rows_per_sample(&c, &per));
    TT_CHECK(per == 2 * (1 + 2 * 3));
    eval_row *r3 = NULL, *ra = NULL, *rb = NULL;
    int64_t n3 = 0, na = 0, nb = 0, cap = 0;
    eval_runner *er = NULL;
    TT_OK(eval_runner_new(&er, m, &c));
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &r3, &n3, &cap));
    eval_runner_destroy(&er);
    eval_config c1 = c;
    c1.policies = one;
    c1.n_policies = 2;
    c1.head_as = NULL;
    c1.n_head_as = 0;
    cap = 0;
    TT_OK(eval_runner_new(&er, m, &c1));
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &ra, &na, &cap));
    eval_runner_destroy(&er);
    c1.head_path = hb;
    cap = 0;
    TT_OK(eval_runner_new(&er, m, &c1));
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &rb, &nb, &cap));
    eval_runner_destroy(&er);
    TT_CHECK(n3 == per && na == 2 * (1 + 3) && nb == na);
    const eval_row *x[16], *y[16];
    int64_t k1 = s_rows_of(r3, n3, "tis", x), k2 = s_rows_of(ra, na, "tis", y);
    TT_CHECK(k1 == 6 && k2 == 6);
    for (int64_t i = 0; i < k1 && i < k2; i++)
        TT_CHECK(!strcmp(x[i]->answer, y[i]->answer) && x[i]->kv_bytes == y[i]->kv_bytes &&
                 x[i]->budget == y[i]->budget);
    k1 = s_rows_of(r3, n3, "tis_b", x);
    k2 = s_rows_of(rb, nb, "tis", y);
    TT_CHECK(k1 == 6 && k2 == 6);
    int64_t differ = 0;
    for (int64_t i = 0; i < k1 && i < k2; i++) {
        TT_CHECK(!strcmp(x[i]->answer, y[i]->answer) && x[i]->kv_bytes == y[i]->kv_bytes &&
                 x[i]->budget == y[i]->budget && !strcmp(x[i]->protocol, y[i]->protocol));
        const eval_row *z[16];
        s_rows_of(r3, n3, "tis", z);
        differ += strcmp(x[i]->answer, z[i]->answer) != 0;
    }
    fprintf(stderr, "  tis_b answers differing from tis's: %lld of %lld\n", (long long)differ, (long long)k1);
    free(r3);
    free(ra);
    free(rb);

    TT_CASE("--head_as: NAME+pool is tis with that head, pooled");
    const char *pooled[] = {"full", "tis_b+pool3"};
    c.policies = pooled;
    c.n_policies = 2;
    press pp;
    const char *pp_path = NULL;
    TT_OK(eval_press_parse(&c, "tis_b+pool3", &pp, &pp_path));
    TT_CHECK(pp.needs_head && pp.pool == 3 && pp_path && !strcmp(pp_path, hb) && !strcmp(pp.name, "tis_b+pool3"));
    TT_FAILS(eval_press_parse(&c, "tis_b+pool4", &pp, &pp_path), TIS_EINVAL);
    TT_OK(eval_runner_new(&er, m, &c)); /* tis_b is listed through tis_b+pool3 */
    r3 = NULL;
    n3 = cap = 0;
    if (er) TT_OK(eval_run_sample(er, "jsonl", smp, &r3, &n3, &cap));
    eval_runner_destroy(&er);
    TT_CHECK(s_rows_of(r3, n3, "tis_b+pool3", x) == 6);
    free(r3);
    r3 = NULL;
    c.policies = both;
    c.n_policies = 3;

    TT_CASE("--head_as: refused entries");
    const char *bad[][2] = {{"tis_b", "give NAME=PATH"},        {"=x.safetensors", "1 to 31"},
                            {"Tis=x", "a-z, 0-9"},      {"snapkv=x", "already a policy"},
                            {"full=x", "already a policy"}, {"tis_b=", "no head path"},
                            {"tis_z=x", "add tis_z to --baseline"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *e1[] = {bad[i][0]};
        c.head_as = e1;
        c.n_head_as = 1;
        TT_FAILS(eval_runner_new(&er, m, &c), TIS_EINVAL);
        TT_CHECK(strstr(tis_last_error(), bad[i][1]) != NULL);
        if (!strstr(tis_last_error(), bad[i][1])) fprintf(stderr, "  %s -> %s\n", bad[i][0], tis_last_error());
    }
    const char *twice[] = {entry, entry};
    c.head_as = twice;
    c.n_head_as = 2;
    TT_FAILS(eval_runner_new(&er, m, &c), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "given twice") != NULL);
    snprintf(other, sizeof other, "tis_b=%s", hc);
    const char *layer[] = {other};
    c.head_as = layer;
    c.n_head_as = 1;
    TT_FAILS(eval_runner_new(&er, m, &c), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "different layers") != NULL);
    snprintf(other, sizeof other, "tis_b=%s", tt_path("nosuch.safetensors"));
    TT_CHECK(eval_runner_new(&er, m, &c) != 0 && er == NULL);
}

/* The run every case below reads: the tiny model, its dataset, the
 * configuration and the rows of its three samples. */
typedef struct fixture {
    const model *m;
    const bench_set *set;
    const eval_config *cfg;
    const eval_row *rows;
    int64_t n, per_sample;
} fixture;

/* Every row's context, kept tokens and measured KV bytes follow its budget. */
static void s_rows(const fixture *x) {
    const model *m = x->m;
    const eval_row *rows = x->rows;
    int64_t n = x->n;
    const bench_set set = *x->set;
    chat_template ct = {0};
    TT_OK(chat_template_init(&ct, tokenizer_chat_template(m->tok)));
    int64_t per_entry = 2 * m->config.head_dim * 2 + 4; /* f16 keys and values (the default), int32 position */
    int64_t n_stream = m->config.n_layer * m->config.n_kv_head;
    for (int64_t i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        const bench_sample *s = NULL;
        for (int64_t j = 0; j < set.n; j++)
            if (!strcmp(set.s[j].id, r->sample_id)) s = &set.s[j];
        TT_CHECK(s != NULL);
        if (!s) continue;
        session_input in;
        eval_session_input(s, &in);
        session_prompt p;
        TT_OK(session_prompt_build(m->tok, &ct, true, &in, &p));
        TT_CHECK(r->context_tokens == p.n_ctx);
        /* the full cache at decode start: the whole prompt in every stream */
        TT_CHECK(r->full_kv_bytes == p.n * n_stream * per_entry);
        bool full = !strcmp(r->policy, "full");
        int64_t k = full ? p.n_ctx
                         : r->budget_tokens > 0 ? (r->budget_tokens < p.n_ctx ? r->budget_tokens : p.n_ctx)
                                                : press_budget_tokens(r->budget, p.n_ctx);
        /* measured bytes = (everything but the context + kept) per stream, on average */
        TT_CHECK(r->kept_tokens == k);
        if (r->kept_tokens != k)
            fprintf(stderr, "  %s %s %s b=%g/%lld: kept %lld, want %lld of %lld\n", r->sample_id, r->protocol,
                    r->policy, r->budget, (long long)r->budget_tokens, (long long)r->kept_tokens,
                    (long long)k, (long long)p.n_ctx);
        TT_CHECK(r->kv_bytes == (p.n - p.n_ctx + k) * n_stream * per_entry);
        if (k < p.n_ctx) TT_CHECK(r->kv_bytes < r->full_kv_bytes);
        TT_CHECK(r->n_generated >= 0 && r->n_generated <= 6);
        TT_CHECK(r->ttft_s > 0 && r->prefill_s > 0);
        session_prompt_free(&p);
    }
    chat_template_free(&ct);

}

/* Every policy at budget 1.0 (query-aware: the same computation) is full. */
static void s_full_at_one(const fixture *x) {
    const eval_row *rows = x->rows;
    int64_t n = x->n;
    TT_CASE("budget 1.0 is full");
    for (int64_t i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        if (r->budget != 1.0 || strcmp(r->protocol, "query_aware")) continue;
        const eval_row *f = NULL;
        for (int64_t j = 0; j < n; j++)
            if (!strcmp(rows[j].policy, "full") && !strcmp(rows[j].sample_id, r->sample_id) &&
                !strcmp(rows[j].protocol, "query_aware"))
                f = &rows[j];
        TT_CHECK(f && !strcmp(f->answer, r->answer));
        if (f && strcmp(f->answer, r->answer))
            fprintf(stderr, "  %s %s at 1.0: '%s' vs full '%s'\n", r->sample_id, r->policy, r->answer, f->answer);
    }

}

/* The same sample again, alone and in batches of 7: the same rows. */
static void s_deterministic(const fixture *x, eval_runner *er) {
    const model *m = x->m;
    const bench_set set = *x->set;
    const eval_config cfg = *x->cfg;
    const eval_row *rows = x->rows;
    int64_t per_sample = x->per_sample;
    TT_CASE("deterministic");
    /* the same sample again: the same answers */
    eval_row *again = NULL;
    int64_t n2 = 0, cap2 = 0;
    TT_OK(eval_run_sample(er, "jsonl", &set.s[1], &again, &n2, &cap2));
    TT_CHECK(n2 == per_sample);
    for (int64_t i = 0; i < n2 && i < per_sample; i++)
        TT_CHECK(!strcmp(again[i].answer, rows[per_sample + i].answer) &&
                 again[i].kv_bytes == rows[per_sample + i].kv_bytes);
    free(again);
    TT_CASE("batched decoding");
    /* batched decoding of the policy runs: the same answers and bytes */
    eval_config cb = cfg;
    cb.batch = 7;
    eval_runner *eb = NULL;
    TT_OK(eval_runner_new(&eb, m, &cb));
    again = NULL;
    n2 = cap2 = 0;
    if (eb) TT_OK(eval_run_sample(eb, "jsonl", &set.s[1], &again, &n2, &cap2));
    TT_CHECK(n2 == per_sample);
    for (int64_t i = 0; i < n2 && i < per_sample; i++)
        TT_CHECK(!strcmp(again[i].answer, rows[per_sample + i].answer) &&
                 again[i].kv_bytes == rows[per_sample + i].kv_bytes &&
                 again[i].kept_tokens == rows[per_sample + i].kept_tokens);
    free(again);
    eval_runner_destroy(&eb);

}

/* Truncated: the run used its whole cap (6) with no end of generation or stop. */
static void s_truncated(const fixture *x) {
    const eval_row *rows = x->rows;
    int64_t n = x->n;
    TT_CASE("truncated");
    int64_t n_trunc = 0;
    for (int64_t i = 0; i < n; i++) {
        TT_CHECK(rows[i].truncated == 0 || rows[i].truncated == 1);
        if (rows[i].truncated) TT_CHECK(rows[i].n_generated == 6);
        if (rows[i].n_generated < 6) TT_CHECK(!rows[i].truncated);
        n_trunc += rows[i].truncated;
    }
    TT_CHECK(n_trunc > 0); /* the random model rambles up to the cap */

}

/* max_new 0: the longest answer's tokens + EVAL_ANSWER_ROOM, per sample; an
 * explicit cap wins; batched rows are the rows run one by one. */
static void s_answer_cap(const fixture *x) {
    const model *m = x->m;
    const bench_set set = *x->set;
    const eval_config cfg = *x->cfg;
    int64_t per_sample = x->per_sample, n_trunc = 0;
    TT_CASE("the answer cap from the task");
    eval_config cz = cfg;
    cz.max_new = 0;
    int64_t cap_a = 0, cap_c = 0, cap_x = 0, n_mat = 0;
    int32_t *mat = NULL;
    TT_OK(tokenizer_encode(m->tok, "mat", 3, false, &mat, &n_mat));
    free(mat);
    TT_OK(eval_sample_max_new(&cz, m->tok, &set.s[0], &cap_a));
    TT_OK(eval_sample_max_new(&cz, m->tok, &set.s[2], &cap_c)); /* no answers */
    TT_OK(eval_sample_max_new(&cfg, m->tok, &set.s[0], &cap_x));
    TT_CHECK(n_mat > 0 && cap_a == n_mat + EVAL_ANSWER_ROOM && cap_c == EVAL_ANSWER_ROOM && cap_x == 6);
    eval_row *z1 = NULL, *z7 = NULL;
    int64_t nz1 = 0, nz7 = 0, cz1 = 0, cz7 = 0;
    eval_runner *ez = NULL;
    TT_OK(eval_runner_new(&ez, m, &cz));
    if (ez) TT_OK(eval_run_sample(ez, "jsonl", &set.s[0], &z1, &nz1, &cz1));
    eval_runner_destroy(&ez);
    cz.batch = 7;
    TT_OK(eval_runner_new(&ez, m, &cz));
    if (ez) TT_OK(eval_run_sample(ez, "jsonl", &set.s[0], &z7, &nz7, &cz7));
    eval_runner_destroy(&ez);
    TT_CHECK(nz1 == per_sample && nz7 == per_sample);
    for (int64_t i = 0; i < nz1 && i < nz7; i++) {
        TT_CHECK(z1[i].n_generated <= cap_a && z1[i].truncated == (z1[i].n_generated == cap_a));
        TT_CHECK(!strcmp(z1[i].answer, z7[i].answer) && z1[i].n_generated == z7[i].n_generated &&
                 z1[i].truncated == z7[i].truncated);
        n_trunc += z1[i].truncated;
    }
    TT_CHECK(n_trunc > 0);
    free(z1);
    free(z7);

}

/* Bad configurations are refused with a message. */
static void s_bad_configs(const model *m, const eval_config *base) {
    const eval_config cfg = *base;
    TT_CASE("bad configurations");
    eval_runner *bad = NULL;
    const char *unk[] = {"nosuch"};
    eval_config c2 = cfg;
    c2.policies = unk;
    c2.n_policies = 1;
    TT_FAILS(eval_runner_new(&bad, m, &c2), TIS_ENOTFOUND);
    double bb[] = {1.5};
    c2 = cfg;
    c2.budgets = bb;
    c2.n_budgets = 1;
    TT_FAILS(eval_runner_new(&bad, m, &c2), TIS_EINVAL);

}

/* Learned policies with (random) heads: tis in both protocols, tis_query
 * only query-aware; the hook with lambda 0 changes nothing; a head for
 * another model is refused. */
static void s_learned(const model *m, const bench_set *set_p, const eval_config *base) {
    const bench_set set = *set_p;
    const eval_config cfg = *base;
    TT_CASE("learned policies");
    head_config hc = {.kind = HEAD_MLP, .d_model = m->config.d_model, .hidden = 8,
                      .layer = m->config.n_layer};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *hh = NULL, *hq = NULL;
    TT_OK(head_new(&hh, &hc, 5));
    hc.query_aware = true;
    hc.rank = 4;
    hc.layer = m->config.n_layer; /* both heads must read the same layer */
    TT_OK(head_new(&hq, &hc, 6));
    const char *hp = tt_path("h.safetensors"), *hqp = tt_path("hq.safetensors");
    if (hh) TT_OK(head_save(hh, hp));
    if (hq) TT_OK(head_save(hq, hqp));
    head_destroy(&hh);
    head_destroy(&hq);
    const char *lp[] = {"full", "tis", "tis+hook", "tis_query", "tis_query+hook", "adakv:tis"};
    eval_config cl = cfg;
    cl.policies = lp;
    cl.n_policies = 6;
    cl.n_budget_tokens = 0;
    cl.head_path = hp;
    cl.head_query_path = hqp;
    cl.attn_hook_lambda = 0.0f;
    eval_runner *el = NULL;
    TT_OK(eval_runner_new(&el, m, &cl));
    eval_row *lr = NULL;
    int64_t nl = 0, cl_cap = 0;
    if (el) TT_OK(eval_run_sample(el, "jsonl", &set.s[0], &lr, &nl, &cl_cap));
    /* agnostic: full + 3 x tis-like x 3 budgets; query-aware: + tis_query x 2 */
    TT_CHECK(nl == (1 + 3 * 3) + (1 + 5 * 3));
    for (int64_t i = 0; i < nl; i++) {
        if (!strcmp(lr[i].protocol, "agnostic")) TT_CHECK(strncmp(lr[i].policy, "tis_query", 9) != 0);
        if (!strstr(lr[i].policy, "+hook")) continue;
        size_t bl = strlen(lr[i].policy) - 5;
        for (int64_t j = 0; j < nl; j++)
            if (strlen(lr[j].policy) == bl && !strncmp(lr[j].policy, lr[i].policy, bl) &&
                lr[j].budget == lr[i].budget && !strcmp(lr[j].protocol, lr[i].protocol))
                TT_CHECK(!strcmp(lr[j].answer, lr[i].answer));
    }
    free(lr);
    eval_runner_destroy(&el);
    TT_CASE("a head for another model");
    /* a head for another model is refused */
    hc.query_aware = false;
    snprintf(hc.base_model, sizeof hc.base_model, "some other model");
    TT_OK(head_new(&hh, &hc, 5));
    if (hh) TT_OK(head_save(hh, hp));
    head_destroy(&hh);
    cl.policies = lp + 1;
    cl.n_policies = 1;
    TT_FAILS(eval_runner_new(&el, m, &cl), TIS_EINVAL);
}

/* The CLI: files written, the command recorded as a shell reads it; a bad
 * dataset line named; unknown names refused. */
static void s_cli(const char *tiny, const char *data) {
    static char out[1 << 16];
    TT_CASE("the CLI");
    char args[2048];
    const char *csv = tt_path("res/out.csv");
    snprintf(args, sizeof args,
             "eval -m '%s' --dataset '%s' --baseline full streaming adakv:knorm 'streaming|knorm' --cache_budgets 0.5 "
             "--protocol both --max_new 4 --output '%s' --no_plots -t 1",
             tiny, data, csv);
    int rc = tt_tis(args, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    size_t len = 0;
    char *txt = tt_read_file(csv, &len);
    TT_CHECK(txt && strstr(txt, "benchmark,policy,protocol") && strstr(txt, "adakv:knorm"));
    TT_CHECK(txt && strstr(txt, ",peak_rss_bytes,threshold,truncated,kv_type\n") && strstr(txt, ",f16\n"));
    int lines = 0;
    for (const char *q = txt; q && (q = strstr(q, "\njsonl,")); q++) lines++; /* rows */
    lines++; /* header */
    TT_CHECK(lines == 1 + 3 * 2 * 4); /* header + samples x protocols x (full, 3 policies x 1 budget) */
    if (lines != 1 + 3 * 2 * 4) fprintf(stderr, "%s\n", txt ? txt : "(none)");
    free(txt);
    txt = tt_read_file(tt_path("res/out.json"), &len);
    /* the command as a shell reads it back: the union's '|' quoted */
    TT_CHECK(txt && strstr(txt, "\"groups\"") && strstr(txt, " adakv:knorm 'streaming|knorm' --cache_budgets"));
    free(txt);
    txt = tt_read_file(tt_path("res/out.md"), &len);
    TT_CHECK(txt && strstr(txt, "streaming"));
    free(txt);

    const char *badf = tt_path("bad.jsonl");
    const char *bad_text = "{\"context\": \"x y z\", \"question\": \"q?\"}\n{\"context\": 5}\n";
    TT_OK(tt_write_file(badf, bad_text, strlen(bad_text)));
    snprintf(args, sizeof args, "eval -m '%s' --dataset '%s' --output '%s'", tiny, badf, tt_path("x.csv"));
    TT_CHECK(tt_tis(args, out, sizeof out) == 1 && strstr(out, "bad.jsonl:2"));
    fprintf(stderr, "  bad line -> %s", out);
    snprintf(args, sizeof args, "eval -m '%s' --baseline nosuch", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "unknown policy"));
    snprintf(args, sizeof args, "eval -m '%s' --baseline tis", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "needs an importance head"));
    snprintf(args, sizeof args, "eval -m '%s' --baseline tis_b --head_as tis_b", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "give NAME=PATH"));
    snprintf(args, sizeof args, "eval -m '%s' --benchmark nosuch", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "unknown benchmark"));
    /* a q8_0 cache: every path (observed prefill, scoring, compaction, batched decode) on a model
     * whose head_dim (32) holds whole blocks; the tiny model's 16 is refused, saying why */
    char tiny32[512];
    snprintf(tiny32, sizeof tiny32, "%s", tt_path("tiny_hd32.gguf"));
    tiny_spec sp = tiny_spec_default();
    sp.d_model = 128;
    TT_OK(tiny_model_write(tiny32, &sp));
    snprintf(args, sizeof args,
             "eval -m '%s' --dataset '%s' --baseline full streaming knorm h2o snapkv oracle --cache_budgets 0.5 "
             "--protocol both --max_new 4 --kv_type q8_0 --batch 4 --output '%s' --no_plots -t 1",
             tiny32, data, tt_path("res/q8.csv"));
    rc = tt_tis(args, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    txt = tt_read_file(tt_path("res/q8.csv"), &len);
    lines = 0;
    for (const char *q = txt; q && (q = strstr(q, "\njsonl,")); q++) lines++;
    TT_CHECK(lines == 3 * 2 * 6);
    free(txt);
    snprintf(args, sizeof args, "eval -m '%s' --dataset '%s' --kv_type q8_0 --output '%s' --no_plots", tiny, data,
             tt_path("res/q8b.csv"));
    TT_CHECK(tt_tis(args, out, sizeof out) != 0 && strstr(out, "multiple of 32"));
    TT_CHECK(tt_tis("eval --cache_budgets 0 ", out, sizeof out) == 2);
    TT_CHECK(tt_tis("eval --list", out, sizeof out) == 0 && strstr(out, "pyramidkv") && strstr(out, "niah") &&
             strstr(out, "+recentN"));
}

int main(void) {
    char tiny[512], data[512]; /* tt_path's buffers rotate: keep our own copies */
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    TT_OK(tt_write_file(data, s_dataset, strlen(s_dataset)));

    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    bench_set set = {0};
    TT_OK(bench_load_jsonl(data, &set));
    TT_CHECK(set.n == 3);
    if (!m || set.n != 3) return tt_done("test_eval");

    const char *pol[] = {"full", "random", "streaming", "knorm", "h2o", "snapkv",
                         "tova", "pyramidkv", "adakv", "oracle"};
    int64_t n_pol = 10;
    double budgets[] = {0.25, 0.5, 1.0};
    int64_t btok[] = {8};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = pol;
    cfg.n_policies = n_pol;
    cfg.budgets = budgets;
    cfg.n_budgets = 3;
    cfg.budget_tokens = btok;
    cfg.n_budget_tokens = 1;
    cfg.query_aware = true;
    cfg.max_new = 6;
    cfg.window = 4;
    eval_runner *er = NULL;
    TT_OK(eval_runner_new(&er, m, &cfg));
    eval_row *rows = NULL;
    int64_t n = 0, cap = 0;
    for (int64_t i = 0; er && i < set.n; i++) TT_OK(eval_run_sample(er, "jsonl", &set.s[i], &rows, &n, &cap));
    int64_t per_sample = 2 * (1 + (n_pol - 1) * 4);
    TT_CHECK(n == 3 * per_sample);
    fixture x = {m, &set, &cfg, rows, n, per_sample};
    s_rows(&x);
    s_full_at_one(&x);
    if (er) s_deterministic(&x, er);
    s_truncated(&x);
    free(rows);
    s_answer_cap(&x);
    s_bad_configs(m, &cfg);
    eval_runner_destroy(&er);
    s_learned(m, &set, &cfg);
    s_head_as(m, &set.s[0], &cfg);
    s_union(m, &set.s[0], &cfg);
    bench_set_free(&set);
    model_destroy(&m);
    s_cli(tiny, data);
    return tt_done("test_eval");
}
