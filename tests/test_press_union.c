/* test_press_union: press_plan_compact_union on the tiny model's observed
 * prefill (tests/util/press_fixture): each stream keeps the mean of the
 * two plans' budgets, the longer tail first, then what the two rankings
 * put first rank by rank; checked against the test's own rankings of the
 * scores, with one-output and per-head scores, rankings apart and rankings
 * that mostly agree, and bad pairs refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "press.h"
#include "press_fixture.h"
#include "press_spec.h"
#include "tis_error.h"
#include "tt.h"

/* The positions of sc[CTX] best first (distinct scores). */
static void s_order(const float *sc, int32_t *ord) {
    for (int32_t j = 0; j < CTX; j++) ord[j] = j;
    for (int32_t i = 0; i < CTX; i++)
        for (int32_t j = i + 1; j < CTX; j++)
            if (sc[ord[j]] > sc[ord[i]]) {
                int32_t t = ord[i];
                ord[i] = ord[j];
                ord[j] = t;
            }
}

/* Stream s of c against the rule: the last `tail` first, then both
 * rankings rank by rank (a's before b's) until `want` are kept. */
static void s_check_stream(const kv_cache *c, int64_t s, const float *sa, const float *sb, int64_t want,
                           int64_t tail) {
    int32_t oa[CTX], ob[CTX];
    s_order(sa, oa);
    s_order(sb, ob);
    bool in[CTX];
    int64_t n_in = 0;
    for (int32_t j = 0; j < CTX; j++) in[j] = j >= CTX - tail, n_in += in[j];
    for (int32_t r = 0; r < CTX; r++) {
        if (n_in < want && !in[oa[r]]) in[oa[r]] = true, n_in++;
        if (n_in < want && !in[ob[r]]) in[ob[r]] = true, n_in++;
    }
    int64_t kept = 0, wrong = 0;
    for (int32_t j = 0; j < CTX; j++) {
        bool k = pf_kept(c, s, PRE + j);
        kept += k;
        wrong += k != in[j];
    }
    TT_CHECK(kept == want && wrong == 0);
    for (int32_t j = 0; j < PRE; j++) TT_CHECK(pf_kept(c, s, j)); /* the prefix stays */
}

static void s_union(press_fixture *f) {
    int64_t ns = f->kv->n_stream;
    float *a = malloc((size_t)(ns * CTX) * sizeof *a), *b = malloc((size_t)(ns * CTX) * sizeof *b);
    uint64_t rng = 5;
    for (int64_t i = 0; i < ns * CTX; i++) a[i] = tt_randf(&rng), b[i] = tt_randf(&rng);
    press_ctx pa = f->pc, pb = f->pc;
    pa.head_scores = a;
    pa.head_n_out = 1;
    pb.head_scores = b;
    pb.head_n_out = 1;
    press p, q;
    press_plan *la = NULL, *lb = NULL;
    kv_cache *c = NULL;
    int64_t *kept = malloc((size_t)ns * sizeof *kept);

    TT_CASE("union: one-output scores, the tail of one member");
    TT_OK(press_parse("tis", &p));
    TT_OK(press_parse("tis+recent3", &q));
    TT_OK(press_plan_new(&la, &p, &pa));
    TT_OK(press_plan_new(&lb, &q, &pb));
    const int64_t ks[] = {1, 4, 9, CTX};
    for (size_t i = 0; la && lb && i < sizeof ks / sizeof ks[0]; i++) {
        int64_t k = ks[i], tail = k / 2 < 3 ? k / 2 : 3;
        TT_OK(press_plan_compact_union(la, lb, k, 2, &c, kept));
        for (int64_t s = 0; c && s < ns; s++) {
            TT_CHECK(kept[s] == k && c->cap[s] >= c->len[s] + 2);
            s_check_stream(c, s, a, b, k, tail); /* one score per token: every stream alike */
        }
        kv_cache_destroy(&c);
    }
    press_plan_destroy(&la);
    press_plan_destroy(&lb);

    TT_CASE("union: rankings that mostly agree go deeper together");
    float *b2 = malloc((size_t)(ns * CTX) * sizeof *b2);
    for (int64_t i = 0; i < ns * CTX; i++) b2[i] = a[i] + (i % 3 == 0 ? 0.5f * tt_randf(&rng) : 0.0f);
    pb.head_scores = b2;
    TT_OK(press_parse("tis", &q));
    TT_OK(press_plan_new(&la, &p, &pa));
    TT_OK(press_plan_new(&lb, &q, &pb));
    for (size_t i = 0; la && lb && i < sizeof ks / sizeof ks[0]; i++) {
        TT_OK(press_plan_compact_union(la, lb, ks[i], 0, &c, kept));
        for (int64_t s = 0; c && s < ns; s++) s_check_stream(c, s, a, b2, ks[i], 0);
        kv_cache_destroy(&c);
    }
    press_plan_destroy(&la);
    press_plan_destroy(&lb);
    pb.head_scores = b;
    free(b2);

    TT_CASE("union: a per-head member's pooled budgets, averaged");
    pb.head_n_out = ns; /* b scores every stream apart: a pooled budget */
    TT_OK(press_parse("tis", &q));
    TT_OK(press_plan_new(&la, &p, &pa));
    TT_OK(press_plan_new(&lb, &q, &pb));
    const int64_t k = 6;
    int64_t *kb = malloc((size_t)ns * sizeof *kb);
    TT_OK(press_compress(&c, &q, &pb, k, 0, kb)); /* b's own budgets */
    kv_cache_destroy(&c);
    int64_t spread = 0;
    for (int64_t s = 1; s < ns; s++) spread += kb[s] != kb[0];
    TT_CHECK(spread > 0); /* the pooled budgets differ between streams */
    if (la && lb) TT_OK(press_plan_compact_union(la, lb, k, 0, &c, kept));
    for (int64_t s = 0; c && s < ns; s++) {
        int64_t want = (k + kb[s] + 1) / 2;
        if (want > CTX) want = CTX;
        TT_CHECK(kept[s] == want);
        s_check_stream(c, s, a, b + s * CTX, want, 0);
    }
    kv_cache_destroy(&c);

    TT_CASE("union: refused pairs");
    if (la && lb) TT_FAILS(press_plan_compact_union(la, lb, 0, 0, &c, kept), TIS_EINVAL);
    press_plan *lf = NULL, *lo = NULL;
    press full;
    TT_OK(press_parse("full", &full));
    TT_OK(press_plan_new(&lf, &full, &pa));
    if (la && lf) TT_FAILS(press_plan_compact_union(la, lf, 4, 0, &c, kept), TIS_EINVAL);
    press_ctx po = pa; /* another context span: not the same cache's plan */
    po.n_ctx = CTX - 1;
    TT_OK(press_plan_new(&lo, &p, &po));
    if (la && lo) TT_FAILS(press_plan_compact_union(la, lo, 4, 0, &c, kept), TIS_EINVAL);
    TT_CHECK(c == NULL);
    char first[8];
    TT_CHECK(press_union_split("snapkv", first, sizeof first) == NULL);
    const char *second = press_union_split("tis+lpool5|snapkv", first, sizeof first);
    TT_CHECK(second && !strcmp(second, "snapkv") && !strcmp(first, "tis+lpo")); /* truncated to fit */
    TT_FAILS(press_parse("tis|snapkv", &p), TIS_EUNSUPPORTED);
    TT_CHECK(strstr(tis_last_error(), "union") != NULL);
    press_plan_destroy(&lf);
    press_plan_destroy(&lo);
    press_plan_destroy(&la);
    press_plan_destroy(&lb);
    free(kb);
    free(kept);
    free(a);
    free(b);
}

/* press_spec_parse: one policy, named heads, unions, and what is refused. */
static void s_spec(void) {
    TT_CASE("press_spec: named heads and unions");
    const char *as[] = {"tis_si=a.safetensors", "hb=b.safetensors"};
    press_spec sp;
    TT_OK(press_spec_parse("snapkv", as, 2, &sp));
    TT_CHECK(sp.n == 1 && sp.head[0] == PRESS_HEAD_NONE && !press_spec_needs_head(&sp));
    TT_OK(press_spec_parse("tis+lpool5+recent64/8", as, 2, &sp));
    TT_CHECK(sp.n == 1 && sp.head[0] == PRESS_HEAD_CTX && sp.m[0].pool_left && sp.m[0].recent == 64);
    TT_OK(press_spec_parse("hb+lpool3", as, 2, &sp)); /* a named head: tis's press, renamed */
    TT_CHECK(sp.n == 1 && sp.head[0] == 1 && sp.m[0].needs_head && !strcmp(sp.m[0].name, "hb+lpool3"));
    TT_OK(press_spec_parse("tis_si+lpool5|tis+lpool5+recent64/8", as, 2, &sp));
    TT_CHECK(sp.n == 2 && sp.head[0] == 0 && sp.head[1] == PRESS_HEAD_CTX && press_spec_needs_head(&sp) &&
             !strcmp(sp.m[0].name, "tis_si+lpool5") && !strcmp(sp.m[1].name, "tis+lpool5+recent64/8"));
    TT_OK(press_spec_parse("snapkv|tis_query", as, 2, &sp));
    TT_CHECK(sp.head[0] == PRESS_HEAD_NONE && sp.head[1] == PRESS_HEAD_QUERY);
    press row;
    press_spec_row(&sp, &row); /* the row's press: what either needs, no head, no threshold */
    TT_CHECK(!strcmp(row.name, "snapkv|tis_query") && row.query_head && !row.needs_head &&
             row.calib == PRESS_CALIB_NONE);
    /* a head not given is no policy; the lenient parse (no heads held) takes any head name */
    TT_FAILS(press_spec_parse("tis_x|snapkv", as, 2, &sp), TIS_ENOTFOUND);
    TT_CHECK(strstr(tis_last_error(), "--head_as tis_x=PATH") != NULL); /* says how to name one */
    TT_OK(press_spec_parse("tis_x+lpool5|snapkv", NULL, -1, &sp));
    TT_CHECK(sp.head[0] == PRESS_HEAD_NAMED && sp.m[0].needs_head);
    TT_FAILS(press_spec_parse("Bad+lpool5", NULL, -1, &sp), TIS_ENOTFOUND); /* not a head name either */
    const char *bad[] = {"", "a|b|c", "snapkv|", "|snapkv", "full|snapkv", "tis+hook|snapkv", "snapkv|snapkv",
                         "tis_si+lpool5|tis+lpool5+recent64/8|h2o",
                         "kvzip+lpool5+recent64/8|tis+lpool5+recent64/8+cap2+x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) TT_CHECK(press_spec_parse(bad[i], as, 2, &sp) != 0);
    TT_FAILS(press_spec_parse(NULL, as, 2, &sp), TIS_EINVAL);
    /* the entries themselves */
    const char *e_ok[] = {"tis_si=x", "h2=y"}, *e_dup[] = {"hb=x", "hb=y"}, *e_pol[] = {"snapkv=x"},
               *e_bad[] = {"Hb=x"}, *e_noeq[] = {"hb"}, *e_nopath[] = {"hb="};
    TT_OK(press_head_as_check(e_ok, 2, "--head_as"));
    TT_FAILS(press_head_as_check(e_dup, 2, "--head_as"), TIS_EINVAL);
    TT_FAILS(press_head_as_check(e_pol, 1, "--head_as"), TIS_EINVAL);
    TT_FAILS(press_head_as_check(e_bad, 1, "--head_as"), TIS_EINVAL);
    TT_FAILS(press_head_as_check(e_noeq, 1, "--head_as"), TIS_EINVAL);
    TT_FAILS(press_head_as_check(e_nopath, 1, "--head_as"), TIS_EINVAL);
    TT_CHECK(press_head_as_find(e_ok, 2, "h2") == 1 && press_head_as_find(e_ok, 2, "h") == -1);
}

int main(void) {
    s_spec();
    press_fixture f;
    if (press_fixture_new(&f, "press_union.gguf") == 0) s_union(&f);
    press_fixture_free(&f);
    return tt_done("test_press_union");
}
