/* test_press_parse: policy names and their suffixes (press_parse: what each
 * name sets, what is refused and why), budgets in tokens, and the budget
 * allocations across streams (pyramid, adaptive, pooled, capped). No model:
 * the selections themselves are test_press's and test_press_kvzip's. */
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "press.h"
#include "quant.h"
#include "tis_error.h"
#include "tt.h"

static void test_parse(void) {
    TT_CASE("parse");
    press p;
    TT_OK(press_parse("snapkv", &p));
    TT_CHECK(p.score && p.protect_window && p.needs_obs && p.alloc == PRESS_ALLOC_UNIFORM);
    TT_OK(press_parse("full", &p));
    TT_CHECK(p.score == NULL);
    TT_OK(press_parse("adakv", &p));
    TT_CHECK(p.alloc == PRESS_ALLOC_ADAPTIVE && p.needs_obs);
    TT_OK(press_parse("adakv:knorm", &p));
    TT_CHECK(p.alloc == PRESS_ALLOC_ADAPTIVE && !p.needs_obs);
    TT_OK(press_parse("pyramidkv", &p));
    TT_CHECK(p.alloc == PRESS_ALLOC_PYRAMID);
    TT_FAILS(press_parse("nosuch", &p), TIS_ENOTFOUND);
    TT_FAILS(press_parse("adakv:nosuch", &p), TIS_ENOTFOUND);
    TT_FAILS(press_parse("adakv:pyramidkv", &p), TIS_ENOTFOUND);
    TT_OK(press_parse("tis", &p));
    TT_CHECK(p.needs_head && !p.query_head && p.alloc == PRESS_ALLOC_UNIFORM);
    TT_OK(press_parse("tis_query", &p));
    TT_CHECK(p.needs_head && p.query_head);
    TT_OK(press_parse("adakv:tis", &p));
    TT_CHECK(p.needs_head && p.alloc == PRESS_ALLOC_ADAPTIVE);
    TT_OK(press_parse("tis+hook", &p));
    TT_CHECK(p.needs_head && p.attn_hook && !strcmp(p.name, "tis+hook"));
    TT_OK(press_parse("tis_query+hook", &p));
    TT_CHECK(p.query_head && p.attn_hook);
    TT_FAILS(press_parse("snapkv+hook", &p), TIS_EINVAL);
    TT_OK(press_parse("kvzip", &p));
    TT_CHECK(p.needs_recon && !p.needs_obs && p.alloc == PRESS_ALLOC_GLOBAL && !p.protect_window);
    TT_OK(press_parse("adakv:kvzip", &p));
    TT_CHECK(p.needs_recon && p.alloc == PRESS_ALLOC_ADAPTIVE);
    TT_FAILS(press_parse("kvzip+hook", &p), TIS_EINVAL);
}

/* the span suffixes: +pool[N], +lpool[N] */
static void test_parse_spans(void) {
    TT_CASE("parse: +pool, +lpool");
    press p;
    /* +pool[N]: any scorer but full and the already pooled snapkv family */
    TT_OK(press_parse("kvzip+pool", &p));
    TT_CHECK(p.needs_recon && p.pool == 5 && !strcmp(p.name, "kvzip+pool"));
    TT_OK(press_parse("tis+pool9+hook", &p));
    TT_CHECK(p.needs_head && p.attn_hook && p.pool == 9 && !strcmp(p.name, "tis+pool9+hook"));
    TT_OK(press_parse("adakv:h2o+pool3", &p));
    TT_CHECK(p.alloc == PRESS_ALLOC_ADAPTIVE && p.pool == 3);
    TT_OK(press_parse("tis", &p));
    TT_CHECK(p.pool == 0);
    TT_FAILS(press_parse("snapkv+pool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("adakv+pool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("full+pool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool4", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool1", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool0", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool65", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+poolx", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool99999999999", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+hook+pool", &p), TIS_EINVAL); /* +hook comes last */
    TT_FAILS(press_parse("nosuch+pool", &p), TIS_ENOTFOUND);
    TT_FAILS(press_parse("tis+pool+pool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+hook+hook", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool3+", &p), TIS_EINVAL);
    /* +lpool[N]: the span left of a score, N from 2 (even too) */
    TT_OK(press_parse("kvzip+lpool", &p));
    TT_CHECK(p.pool == 5 && p.pool_left && !strcmp(p.name, "kvzip+lpool"));
    TT_OK(press_parse("tis+lpool4+cap2+hook", &p));
    TT_CHECK(p.pool == 4 && p.pool_left && p.cap == 2 && p.attn_hook);
    TT_OK(press_parse("tis+pool5", &p));
    TT_CHECK(!p.pool_left);
    TT_FAILS(press_parse("tis+lpool1", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+lpool0", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+lpool64", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+lpool3+pool3", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+pool3+lpool3", &p), TIS_EINVAL);
    TT_FAILS(press_parse("snapkv+lpool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("full+lpool", &p), TIS_EINVAL);
}

/* the budget suffixes: +capN, +recentN[/D] */
static void test_parse_cap_recent(void) {
    TT_CASE("parse: +cap, +recent");
    press p;
    /* +capN: pooled allocation only, after +pool, before +hook */
    TT_OK(press_parse("kvzip+cap2", &p));
    TT_CHECK(p.cap == 2 && p.pool == 0 && p.alloc == PRESS_ALLOC_GLOBAL && !strcmp(p.name, "kvzip+cap2"));
    TT_OK(press_parse("tis+pool9+cap3+hook", &p));
    TT_CHECK(p.cap == 3 && p.pool == 9 && p.attn_hook);
    TT_CHECK(!press_calibratable(&p) && !press_calibrated(&p, 48)); /* budgets only */
    TT_FAILS(press_parse("tis+cap", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+cap0", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+cap65", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+cap2x", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+cap2+pool", &p), TIS_EINVAL); /* +pool first */
    TT_FAILS(press_parse("tis+cap2+cap2", &p), TIS_EINVAL);
    TT_FAILS(press_parse("snapkv+cap2", &p), TIS_EINVAL);  /* uniform allocation */
    TT_FAILS(press_parse("adakv:h2o+cap2", &p), TIS_EINVAL);
    TT_FAILS(press_parse("full+cap2", &p), TIS_EINVAL);
    /* +shared: instead of +capN, before +hook; one uniform budget */
    TT_OK(press_parse("tis+lpool5+recent64/8+shared", &p));
    TT_CHECK(p.shared && p.pool == 5 && p.pool_left && p.recent == 64 && p.recent_div == 8 && !p.attn_hook &&
             p.alloc == PRESS_ALLOC_UNIFORM);
    TT_OK(press_parse("tis+shared+hook", &p));
    TT_CHECK(p.shared && p.attn_hook);
    TT_OK(press_parse("kvzip+shared", &p));
    TT_CHECK(p.shared && p.alloc == PRESS_ALLOC_UNIFORM && !press_calibratable(&p));
    TT_OK(press_parse("snapkv+shared", &p));
    TT_CHECK(p.shared && p.protect_window);
    TT_FAILS(press_parse("tis+shared+cap2", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+cap2+shared", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+shared+pool", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+sharedx", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+shared+shared", &p), TIS_EINVAL);
    TT_FAILS(press_parse("pyramidkv+shared", &p), TIS_EINVAL);
    TT_FAILS(press_parse("adakv+shared", &p), TIS_EINVAL);
    TT_FAILS(press_parse("full+shared", &p), TIS_EINVAL);
    /* names up to 63 bytes: every suffix at once fits */
    TT_OK(press_parse("tis+lpool5+recent64/8+shared+hook", &p));
    TT_CHECK(p.shared && p.attn_hook && p.recent == 64 && !strcmp(p.name, "tis+lpool5+recent64/8+shared+hook"));
    TT_FAILS(press_parse("tis+lpool5+recent64/8+shared+hook+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &p), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "63 characters") != NULL);
    /* +recentN: any scoring policy, after +pool, before +cap */
    TT_OK(press_parse("tis+recent32", &p));
    TT_CHECK(p.recent == 32 && p.pool == 0 && !strcmp(p.name, "tis+recent32"));
    TT_OK(press_parse("tis+lpool5+recent16+cap2+hook", &p));
    TT_CHECK(p.recent == 16 && p.pool == 5 && p.pool_left && p.cap == 2 && p.attn_hook);
    TT_OK(press_parse("snapkv+recent8", &p));
    TT_CHECK(p.recent == 8 && press_calibratable(&p) == false);
    TT_OK(press_parse("kvzip+recent4096", &p));
    TT_CHECK(p.recent == 4096 && press_calibrated(&p, 1)); /* thresholds keep their meaning */
    TT_FAILS(press_parse("tis+recent", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent0", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent4097", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent8+lpool3", &p), TIS_EINVAL); /* +lpool first */
    TT_FAILS(press_parse("tis+cap2+recent8", &p), TIS_EINVAL);   /* +cap after */
    TT_FAILS(press_parse("full+recent8", &p), TIS_EINVAL);
    TT_FAILS(press_parse("h2o+recent8", &p), TIS_EINVAL); /* half its budget is recent already */
    TT_OK(press_parse("tis+recent16", &p));
    TT_CHECK(p.recent == 16 && p.recent_div == 2); /* min(N, k/2) */
    TT_OK(press_parse("tis+lpool5+recent64/8+cap2+hook", &p));
    TT_CHECK(p.recent == 64 && p.recent_div == 8 && p.pool == 5 && p.cap == 2 && p.attn_hook);
    TT_OK(press_parse("kvzip+recent4096/64", &p));
    TT_CHECK(p.recent == 4096 && p.recent_div == 64);
    TT_FAILS(press_parse("tis+recent64/1", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent64/65", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent64/", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent/8", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent64/8/2", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+recent64/x", &p), TIS_EINVAL);
    TT_FAILS(press_parse("tis+lpool5/2", &p), TIS_EINVAL); /* only the tail takes a divisor */
    TT_FAILS(press_parse("tis+recent64/0", &p), TIS_EINVAL);
}

/* the split of a name, and which scores are on one scale */
static void test_parse_names(void) {
    TT_CASE("parse: names, scales");
    press p;
    /* the one split of a name into base and suffixes */
    char base[32];
    TT_CHECK(!strcmp(press_split_name("tis_b+pool9+hook", base, sizeof base), "+pool9+hook") &&
             !strcmp(base, "tis_b"));
    TT_CHECK(!strcmp(press_split_name("adakv:h2o", base, sizeof base), "") && !strcmp(base, "adakv:h2o"));
    /* which scores are on one scale (thresholds) */
    TT_OK(press_parse("kvzip+pool", &p));
    TT_CHECK(press_calibratable(&p) && press_calibrated(&p, 1));
    TT_OK(press_parse("tis", &p));
    TT_CHECK(press_calibratable(&p) && !press_calibrated(&p, 1) && press_calibrated(&p, 48));
    TT_OK(press_parse("snapkv", &p));
    TT_CHECK(!press_calibratable(&p) && !press_calibrated(&p, 48));
    TT_OK(press_parse("full", &p));
    TT_CHECK(!p.score && !press_calibratable(&p) && !strcmp(p.name, "full"));
    TT_CHECK(press_budget_tokens(0.1, 40) == 4 && press_budget_tokens(0.001, 40) == 1 &&
             press_budget_tokens(1.0, 40) == 40);
}

static void test_allocation(void) {
    TT_CASE("allocation: pyramid");
    kv_cache *kv;
    TT_OK(kv_cache_new(&kv, 6, 4, 8, 1, GGML_TYPE_F32));
    float *scores = calloc(6 * 4 * 50, sizeof(float));
    int64_t b[24];
    press p;
    TT_OK(press_parse("pyramidkv", &p));
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    int64_t tot = 0;
    for (int s = 0; s < 24; s++) tot += b[s];
    TT_CHECK(tot == 24 * 10);
    TT_CHECK(b[0] > b[23] && b[0] == b[3]);
    for (int l = 1; l < 6; l++) TT_CHECK(b[l * 4] <= b[(l - 1) * 4]);
    TT_CASE("allocation: pyramid clipping");
    /* clipping at the context length moves budget to other layers, total kept */
    TT_OK(press_allocate(&p, kv, scores, 50, 40, b));
    tot = 0;
    for (int s = 0; s < 24; s++) {
        tot += b[s];
        TT_CHECK(b[s] <= 50);
    }
    TT_CHECK(tot == 24 * 40);
    TT_CASE("allocation: adaptive");
    /* adaptive: head 0 of every layer has all the mass: it gets most of the
     * layer's budget, every head keeps its floor, the layer total is H*k */
    TT_OK(press_parse("adakv:h2o", &p));
    for (int l = 0; l < 6; l++)
        for (int h = 0; h < 4; h++)
            for (int j = 0; j < 50; j++)
                scores[((l * 4) + h) * 50 + j] = h == 0 ? 1.0f + (float)j : (j == 0 ? 1.0f : 0.0f);
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    for (int l = 0; l < 6; l++) {
        int64_t lt = 0;
        for (int h = 0; h < 4; h++) {
            lt += b[l * 4 + h];
            TT_CHECK(b[l * 4 + h] >= 2);
        }
        TT_CHECK(lt == 40);
        TT_CHECK(b[l * 4] > b[l * 4 + 1]);
    }
    TT_CASE("allocation: global");
    /* 24 streams x 50: stream s's scores are s + j/100, so the best
     * 24 * 10 = 240 are the whole of streams 19..23 (250) but for the 10
     * lowest of stream 19 */
    for (int s = 0; s < 24; s++)
        for (int j = 0; j < 50; j++) scores[s * 50 + j] = (float)s + (float)j / 100.0f;
    TT_OK(press_parse("kvzip", &p));
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    for (int s = 0; s < 24; s++) TT_CHECK(b[s] == (s < 19 ? 0 : s == 19 ? 40 : 50));
    TT_CASE("allocation: global +cap2");
    /* no stream above 2 * 10: streams 13..23 win 20 each (220), and
     * stream 12 the last 20 */
    TT_OK(press_parse("kvzip+cap2", &p));
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    for (int s = 0; s < 24; s++) TT_CHECK(b[s] == (s < 12 ? 0 : 20));
    TT_OK(press_parse("kvzip+cap1", &p)); /* cap 1: uniform */
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    for (int s = 0; s < 24; s++) TT_CHECK(b[s] == 10);
    TT_OK(press_parse("kvzip+cap9", &p)); /* 90 > n_ctx: as uncapped */
    TT_OK(press_allocate(&p, kv, scores, 50, 10, b));
    for (int s = 0; s < 24; s++) TT_CHECK(b[s] == (s < 19 ? 0 : s == 19 ? 40 : 50));
    free(scores);
    kv_cache_destroy(&kv);
}

int main(void) {
    test_parse();
    test_parse_spans();
    test_parse_cap_recent();
    test_parse_names();
    test_allocation();
    return tt_done("test_press_parse");
}
