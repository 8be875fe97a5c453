/* test_press: observation statistics, each policy's selection on crafted
 * inputs, budget allocation (pyramid, adaptive), compaction (positions kept,
 * bytes freed, a kept-everything fork decodes identically), oracle labels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "oracle.h"
#include "press.h"
#include "quant.h"
#include "recon.h"
#include "tiny_model.h"
#include "tt.h"

enum { PRE = 3, CTX = 40, SUF = 5, TOTAL = PRE + CTX + SUF };

static bool s_kept(const kv_cache *kv, int64_t s, int32_t pos) {
    const int32_t *P = kv_cache_pos(kv, s);
    for (int64_t i = 0; i < kv->len[s]; i++)
        if (P[i] == pos) return true;
    return false;
}

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

/* What the cases on the tiny model share: the model, a prompt, its
 * observed prefill (prefix + context) and the press context over it. */
typedef struct fixture {
    model *m;
    forward_state *st;
    int32_t ids[TOTAL];
    kv_cache *kv;
    press_obs obs;
    press_ctx pc;
} fixture;

/* prefix + context prefilled observed: every probability row sums to 1;
 * the fixture's cache, observations and press context. 0: set up. */
static int s_observed_prefill(fixture *f) {
    const model *m = f->m;
    forward_state *st = f->st;
    const int32_t *ids = f->ids;
    TT_CASE("observed prefill");
    /* Prefill prefix + context observed; window = last 8 context tokens. */
    TT_OK(forward_kv_new(m, TOTAL + 8, &f->kv));
    kv_cache *kv = f->kv;
    press_obs *o = &f->obs;
    TT_OK(press_obs_init(o, m, TOTAL + 8));
    press_obs_window(o, PRE + CTX - 8);
    TT_OK(press_obs_prefill(o, st, kv, ids, PRE + CTX, NULL, 0));
    press_obs obs = *o;
    int64_t group = m->config.n_head / m->config.n_kv_head;
    /* every probability row sums to 1: totals are counts of rows x group */
    for (int64_t s = 0; s < kv->n_stream; s++) {
        double a = 0, w = 0, l = 0;
        for (int64_t j = 0; j < obs.cap; j++)
            a += obs.acc[s * obs.cap + j], w += obs.win[s * obs.cap + j], l += obs.last[s * obs.cap + j];
        TT_CHECK(fabs(a - (double)(PRE + CTX) * group) < 1e-3);
        TT_CHECK(fabs(w - 8.0 * group) < 1e-4);
        TT_CHECK(fabs(l - 1.0 * group) < 1e-5);
        /* causality: the last query sees everything, nothing beyond */
        TT_CHECK(obs.last[s * obs.cap + PRE + CTX] == 0.0f);
    }
    TT_CHECK(obs.n_win == 8);
    /* Observing a compressed cache is refused. */
    f->pc = (press_ctx){.kv = kv, .obs = o, .ctx_begin = PRE, .n_ctx = CTX, .window = 8, .n_sink = 4, .seed = 1};

    return f->kv ? 0 : -1;
}

/* streaming keeps sinks + the most recent */
static void s_streaming(fixture *f) {
    kv_cache *kv = f->kv;
    press_ctx pc = f->pc;
    TT_CASE("streaming");
    /* streaming keeps exactly sinks + the most recent; prefix always stays */
    press p;
    TT_OK(press_parse("streaming", &p));
    kv_cache *c = NULL;
    int64_t kept[64];
    TT_OK(press_compress(&c, &p, &pc, 10, 0, kept));
    if (c) {
        for (int64_t s = 0; s < c->n_stream; s++) {
            TT_CHECK(c->len[s] == PRE + 10 && kept[s] == 10);
            for (int32_t q = 0; q < PRE + CTX; q++) {
                bool want = q < PRE + 4 || q >= PRE + CTX - 6;
                TT_CHECK(s_kept(c, s, q) == want);
            }
            /* order and original positions kept */
            for (int64_t i = 1; i < c->len[s]; i++) TT_CHECK(kv_cache_pos(c, s)[i] > kv_cache_pos(c, s)[i - 1]);
        }
        /* memory really shrinks: no spare capacity, bytes follow the entries */
        TT_CHECK(kv_cache_bytes_reserved(c) == kv_cache_bytes_used(c));
        TT_CHECK(kv_cache_bytes_used(c) * (PRE + CTX) == kv_cache_bytes_used(kv) * (PRE + 10));
        TT_CHECK(c->n_past == PRE + CTX);
        /* the kept entries are the same vectors */
        int64_t s = kv_stream(c, 1, 1);
        size_t row = kv->k_row;
        TT_CHECK(memcmp((char *)kv_cache_k(c, s) + (PRE + 4) * row, (char *)kv_cache_k(kv, s) + (PRE + CTX - 6) * row,
                        row) == 0);
        kv_cache_destroy(&c);
    }

}

/* snapkv protects its window */
static void s_snapkv_window(fixture *f) {
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("snapkv window");
    /* snapkv: the window is protected by padding; with k = window only it stays */
    TT_OK(press_parse("snapkv", &p));
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int64_t s = 0; s < c->n_stream; s++)
            for (int32_t q = PRE; q < PRE + CTX; q++) TT_CHECK(s_kept(c, s, q) == (q >= PRE + CTX - 8));
    kv_cache_destroy(&c);

}

/* h2o, tova and snapkv follow their statistics */
static void s_heavy_hitters(fixture *f) {
    kv_cache *kv = f->kv;
    press_obs obs = f->obs; /* a view: the arrays are the fixture's */
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("h2o, tova, snapkv heavy hitters");
    /* h2o / tova / snapkv follow their statistics: plant a heavy hitter */
    press_obs o2;
    TT_OK(press_obs_copy(&o2, &obs));
    int64_t s_hot = kv_stream(kv, 2, 0);
    o2.acc[s_hot * o2.cap + PRE + 5] = 1e6f;
    o2.win[s_hot * o2.cap + PRE + 11] = 1e6f;
    for (int64_t h = 0; h < kv->n_kv_head; h++) o2.last[kv_stream(kv, 1, h) * o2.cap + PRE + 17] = 1e6f;
    pc.obs = &o2;
    TT_OK(press_parse("h2o", &p));
    TT_OK(press_compress(&c, &p, &pc, 1, 0, NULL));
    if (c) TT_CHECK(s_kept(c, s_hot, PRE + 5) && c->len[s_hot] == PRE + 1);
    kv_cache_destroy(&c);
    /* h2o: half the budget to the most recent tokens, half to the heaviest
     * outside them; h2o_acc: all of it to the heaviest (here: the earliest) */
    for (int32_t j = 0; j < CTX; j++) o2.acc[s_hot * o2.cap + PRE + j] = 1000.0f + (float)(CTX - j);
    TT_OK(press_parse("h2o", &p));
    TT_CHECK(p.recent_frac == 0.5);
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(s_kept(c, s_hot, PRE + j) == (j < 4 || j >= CTX - 4));
    kv_cache_destroy(&c);
    TT_OK(press_parse("h2o_acc", &p));
    TT_CHECK(p.recent_frac == 0.0);
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(s_kept(c, s_hot, PRE + j) == (j < 8));
    kv_cache_destroy(&c);
    TT_OK(press_parse("adakv:h2o", &p));
    TT_CHECK(p.recent_frac == 0.5 && p.alloc == PRESS_ALLOC_ADAPTIVE);
    TT_OK(press_parse("snapkv", &p));
    TT_OK(press_compress(&c, &p, &pc, 8 + 5, 0, NULL)); /* window + the pooled neighbourhood */
    if (c)
        for (int32_t q = PRE + 9; q <= PRE + 13; q++) TT_CHECK(s_kept(c, s_hot, q));
    kv_cache_destroy(&c);
    TT_OK(press_parse("tova", &p));
    TT_OK(press_compress(&c, &p, &pc, 1, 0, NULL));
    if (c)
        for (int64_t h = 0; h < kv->n_kv_head; h++) TT_CHECK(s_kept(c, kv_stream(kv, 1, h), PRE + 17));
    kv_cache_destroy(&c);
    press_obs_free(&o2);
    pc.obs = &obs;

}

/* tis keeps the head's top tokens */
/* One peak at context position `at` over rising head scores hs[CTX];
 * compressed to k per stream, every stream keeps exactly [lo, hi]. */
static void s_check_span(const press_ctx *pc0, const press *p, float *hs, int at, int64_t k, int lo, int hi) {
    press_ctx pc = *pc0;
    kv_cache *c = NULL;
    for (int j = 0; j < CTX; j++) hs[j] = (float)j / 1000.0f;
    hs[at] = 1.0f;
    pc.head_scores = hs;
    TT_OK(press_compress(&c, p, &pc, k, 0, NULL));
    if (c)
        for (int64_t s = 0; s < c->n_stream; s++)
            for (int32_t j = 0; j < CTX; j++) TT_CHECK(s_kept(c, s, PRE + j) == (j >= lo && j <= hi));
    kv_cache_destroy(&c);
}

static void s_tis_scores(fixture *f) {
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("tis");
    /* tis keeps the head's top tokens in every stream; no scores, an error */
    TT_OK(press_parse("tis", &p));
    TT_FAILS(press_compress(&c, &p, &pc, 2, 0, NULL), TIS_EINVAL);
    float hs[CTX];
    for (int j = 0; j < CTX; j++) hs[j] = (float)((j * 7) % CTX);
    pc.head_scores = hs; /* best: j with (7j mod 40) == 39, 38 */
    TT_OK(press_compress(&c, &p, &pc, 2, 0, NULL));
    if (c)
        for (int64_t s = 0; s < c->n_stream; s++) {
            TT_CHECK(c->len[s] == PRE + 2);
            for (int32_t j = 0; j < CTX; j++)
                TT_CHECK(s_kept(c, s, PRE + j) == ((j * 7) % CTX >= CTX - 2));
        }
    kv_cache_destroy(&c);
    /* tis+pool3: each score the maximum of its 3-neighbourhood, so one
     * peak brings both neighbours (ties go to the later position); at
     * the context's ends the window is clipped */
    TT_CASE("tis+pool");
    TT_OK(press_parse("tis+pool3", &p));
    s_check_span(&pc, &p, hs, 20, 3, 19, 21);
    s_check_span(&pc, &p, hs, 0, 2, 0, 1);
    /* +lpool3: the best score brings the two tokens before it, none after */
    TT_CASE("tis+lpool");
    TT_OK(press_parse("tis+lpool3", &p));
    TT_CHECK(p.pool == 3 && p.pool_left);
    s_check_span(&pc, &p, hs, 20, 3, 18, 20);
    s_check_span(&pc, &p, hs, 1, 2, 0, 1);
    /* +recent2: the last two context tokens first (at most half of k), then
     * the best scores before them: at k = 6 the four best of j < 38
     * (7j mod 40 = 39, 38, 37, 36: j = 17, 34, 11, 28); at k = 2 the last
     * one and the best one */
    TT_CASE("tis+recent");
    TT_OK(press_parse("tis+recent2", &p));
    for (int j = 0; j < CTX; j++) hs[j] = (float)((j * 7) % CTX);
    pc.head_scores = hs;
    int64_t kept[64];
    TT_OK(press_compress(&c, &p, &pc, 6, 0, kept));
    for (int64_t s = 0; c && s < c->n_stream; s++) {
        TT_CHECK(kept[s] == 6 && c->len[s] == PRE + 6);
        for (int32_t j = 0; j < CTX; j++)
            TT_CHECK(s_kept(c, s, PRE + j) == (j == 11 || j == 17 || j == 28 || j == 34 || j >= 38));
    }
    kv_cache_destroy(&c);
    TT_OK(press_compress(&c, &p, &pc, 2, 0, kept));
    for (int64_t s = 0; c && s < c->n_stream; s++)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(s_kept(c, s, PRE + j) == (j == 17 || j == 39));
    kv_cache_destroy(&c);
    /* +recent8/4: the tail grows with the budget up to 8 tokens, a quarter
     * of k: at k = 12 the last three and the nine best before them; /2 (the
     * default) would keep six */
    TT_CASE("tis+recentN/D");
    TT_OK(press_parse("tis+recent8/4", &p));
    TT_CHECK(p.recent == 8 && p.recent_div == 4);
    static const int32_t kept4[] = {5, 10, 11, 16, 17, 22, 28, 33, 34, 37, 38, 39},
                         kept2[] = {5, 11, 16, 17, 22, 28, 34, 35, 36, 37, 38, 39};
    for (int pass = 0; pass < 2; pass++) {
        if (pass) TT_OK(press_parse("tis+recent8", &p));
        const int32_t *want = pass ? kept2 : kept4;
        TT_OK(press_compress(&c, &p, &pc, 12, 0, kept));
        for (int64_t s = 0; c && s < c->n_stream; s++) {
            int32_t w = 0;
            for (int32_t j = 0; j < CTX; j++) {
                bool in = w < 12 && want[w] == j;
                w += in;
                TT_CHECK(s_kept(c, s, PRE + j) == in);
            }
        }
        kv_cache_destroy(&c);
    }
    pc.head_scores = NULL;

}

/* The reconstruction probabilities of one pass, kept whole (the test's
 * own reduction to check recon_compute's). */
typedef struct all_probs {
    int64_t n_head, n_keys, t0_max;
    float *p; /* [n_layer][n_head][T][n_keys] */
    int64_t T;
} all_probs;

static void s_keep_probs(void *user, int64_t layer, int64_t head, int64_t t0, int64_t nq, const float *probs,
                         int64_t n_keys) {
    all_probs *a = user;
    for (int64_t r = 0; r < nq; r++)
        for (int64_t j = 0; j < n_keys; j++)
            a->p[((layer * a->n_head + head) * a->T + t0 + r) * a->n_keys + j] = probs[r * n_keys + j];
}

/* kvzip_heads over the reconstruction scores sc[n_stream][CTX] */
static void s_kvzip_heads(fixture *f, const float *sc) {
    kv_cache *kv = f->kv;
    press_ctx pc = f->pc;
    pc.recon = sc;
    int64_t ns = kv->n_stream, *kept = malloc((size_t)ns * sizeof *kept);
    press p;
    kv_cache *c = NULL;
    press_plan *pl = NULL;
    float tau = 0.05f;
    TT_CASE("kvzip_heads: whole streams by copy score");
    TT_OK(press_parse("kvzip_heads", &p));
    TT_CHECK(p.needs_recon && p.alloc == PRESS_ALLOC_GLOBAL && !press_calibratable(&p) && !press_calibrated(&p, 1));
    TT_FAILS(press_compress(&c, &p, &pc, 4, 0, NULL), TIS_EINVAL); /* no copy scores */
    float *cp = malloc((size_t)ns * sizeof(float));
    for (int64_t s = 0; s < ns; s++) cp[s] = 0.01f * (float)s;
    int64_t s_top = ns / 2, s_next = 1;
    cp[s_top] = 0.9f;
    cp[s_next] = 0.8f;
    pc.recon_copy = cp;
    /* ns * k = CTX + CTX / 2: the top stream whole, the next one half (by its kvzip scores) */
    TT_OK(press_compress(&c, &p, &pc, (CTX + CTX / 2) / ns, 0, kept));
    int64_t want_tot = (CTX + CTX / 2) / ns * ns;
    for (int64_t s = 0; c && s < ns; s++)
        TT_CHECK(kept[s] == (s == s_top ? CTX : s == s_next ? want_tot - CTX : 0));
    if (c) {
        float lo = 2, hi = -1;
        for (int64_t j = 0; j < CTX; j++) {
            float v = sc[s_next * CTX + j];
            if (s_kept(c, s_next, (int32_t)(PRE + j))) lo = fminf(lo, v);
            else hi = fmaxf(hi, v);
        }
        TT_CHECK(lo >= hi);
    }
    kv_cache_destroy(&c);
    TT_OK(press_plan_new(&pl, &p, &pc));
    if (pl) TT_FAILS(press_plan_compact_threshold(pl, tau, 0, &c, kept), TIS_EINVAL);
    press_plan_destroy(&pl);
    free(cp);
    free(kept);
}

/* a per-head head predicting ln(sc) selects as kvzip does */
static void s_tis_per_head(fixture *f, const float *sc) {
    int64_t ns = f->kv->n_stream;
    press_ctx pc = f->pc;
    pc.recon = sc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("tis: a per-head head's scores");
    /* ln of the recon scores as a per-head head's output: the same selection as kvzip */
    float *lg = malloc((size_t)(ns * CTX) * sizeof(float));
    for (int64_t i = 0; i < ns * CTX; i++) lg[i] = logf(sc[i]);
    press_ctx ph = f->pc;
    ph.head_scores = lg;
    ph.head_n_out = ns;
    kv_cache *c2 = NULL;
    TT_OK(press_parse("tis", &p));
    TT_OK(press_compress(&c, &p, &ph, 4, 0, NULL));
    TT_OK(press_parse("kvzip", &p));
    TT_OK(press_compress(&c2, &p, &pc, 4, 0, NULL));
    for (int64_t s = 0; c && c2 && s < ns; s++) {
        TT_CHECK(c->len[s] == c2->len[s]);
        for (int64_t i = 0; i < c->len[s] && c->len[s] == c2->len[s]; i++)
            TT_CHECK(kv_cache_pos(c, s)[i] == kv_cache_pos(c2, s)[i]);
    }
    kv_cache_destroy(&c);
    kv_cache_destroy(&c2);
    /* +cap1 on a per-head head: every stream keeps exactly k */
    int64_t *kept = malloc((size_t)ns * sizeof *kept);
    TT_OK(press_parse("tis+cap1", &p));
    TT_OK(press_compress(&c, &p, &ph, 4, 0, kept));
    for (int64_t s = 0; c && s < ns; s++) TT_CHECK(kept[s] == 4);
    kv_cache_destroy(&c);
    ph.head_n_out = 1; /* one score per token: no pooled budget to cap */
    TT_FAILS(press_compress(&c, &p, &ph, 4, 0, NULL), TIS_EINVAL);
    ph.head_n_out = ns;
    /* +recent2 under the pooled budget: every stream keeps its last two
     * context tokens, the rest of 4 * ns goes by score over the tokens
     * before them (the tails' own scores, made the best here, win
     * nothing of it); a threshold keeps the last two and what passes it */
    TT_CASE("tis+recent: pooled budget, threshold");
    TT_OK(press_parse("tis+recent2", &p));
    for (int64_t s = 0; s < ns; s++) lg[s * CTX + CTX - 1] = 0.0f;
    TT_OK(press_compress(&c, &p, &ph, 4, 0, kept));
    int64_t tot = 0;
    for (int64_t s = 0; c && s < ns; s++) {
        tot += kept[s];
        TT_CHECK(kept[s] >= 2 && s_kept(c, s, PRE + CTX - 1) && s_kept(c, s, PRE + CTX - 2));
    }
    TT_CHECK(!c || tot == 4 * ns);
    if (c) { /* what the pooled part took: the best scores of the tokens before the tails */
        float lo = 2, hi = -1;
        for (int64_t s = 0; s < ns; s++)
            for (int32_t j = 0; j < CTX - 2; j++)
                if (s_kept(c, s, PRE + j)) lo = fminf(lo, sc[s * CTX + j]);
                else hi = fmaxf(hi, sc[s * CTX + j]);
        TT_CHECK(lo >= hi);
    }
    kv_cache_destroy(&c);
    press_plan *pl = NULL;
    const float tau = 0.05f;
    TT_OK(press_plan_new(&pl, &p, &ph));
    if (pl) TT_OK(press_plan_compact_threshold(pl, tau, 0, &c, kept));
    for (int64_t s = 0; c && s < ns; s++) {
        int64_t want = 2;
        for (int32_t j = 0; j < CTX - 2; j++) want += expf(lg[s * CTX + j]) >= tau;
        TT_CHECK(kept[s] == want && s_kept(c, s, PRE + CTX - 1) && s_kept(c, s, PRE + CTX - 2));
    }
    kv_cache_destroy(&c);
    press_plan_destroy(&pl);
    free(kept);
    ph.head_n_out = ns - 1; /* not the model's streams */
    TT_OK(press_parse("tis", &p));
    TT_FAILS(press_compress(&c, &p, &ph, 4, 0, NULL), TIS_EINVAL);
    free(lg);
}

/* kvzip: reconstruction scores, global selection, thresholds */
/* kvzip's reconstruction scores sc[ns][CTX] and copy scores against the
 * test's own reduction of one pass's probabilities; chunks; bad input. */
static void s_kvzip_recon(fixture *f, float *sc) {
    const model *m = f->m;
    kv_cache *kv = f->kv;
    int64_t ns = kv->n_stream, H = m->config.n_head, group = H / m->config.n_kv_head;
    TT_CASE("kvzip: reconstruction scores");
    int32_t lead[3] = {7, 8, 9}, head[2] = {10, 11}, tail[1] = {12};
    recon_prompt rp = {lead, 3, head, 2, tail, 1};
    float *sc4 = malloc((size_t)(ns * CTX) * sizeof(float));
    int64_t n_past = kv->n_past;
    float *copy = malloc((size_t)ns * sizeof(float));
    TT_OK(recon_compute(f->st, kv, PRE, CTX, f->ids + PRE, &rp, 0, sc, copy));
    TT_CHECK(kv->n_past == n_past); /* the cache is not touched */
    /* one chunk: the reference reduction over every probability of the same pass */
    kv_cache *fork = NULL;
    int32_t ids[3 + CTX];
    memcpy(ids, lead, sizeof lead);
    memcpy(ids + 3, f->ids + PRE, CTX * sizeof(int32_t));
    all_probs ap = {H, n_past + 3 + CTX, 0, NULL, 3 + CTX};
    ap.p = calloc((size_t)(m->config.n_layer * H * ap.T * ap.n_keys), sizeof(float));
    TT_OK(kv_cache_compact(&fork, kv, NULL, 3 + CTX));
    forward_hooks hk = {.on_attn = s_keep_probs, .user = &ap};
    TT_OK(forward_run(f->st, fork, ids, 3 + CTX, NULL, 0, &hk));
    double worst = 0;
    for (int64_t s = 0; s < ns; s++)
        for (int64_t j = 0; j < CTX; j++) {
            float want = 0;
            int64_t l = s / m->config.n_kv_head, g0 = (s % m->config.n_kv_head) * group;
            for (int64_t h = g0; h < g0 + group; h++)
                for (int64_t t = 0; t < ap.T; t++) {
                    float v = ap.p[((l * H + h) * ap.T + t) * ap.n_keys + PRE + j];
                    want = v > want ? v : want;
                }
            worst = fmax(worst, fabs((double)want - sc[s * CTX + j]));
            TT_CHECK(sc[s * CTX + j] >= 0 && sc[s * CTX + j] <= 1);
        }
    TT_CHECK(worst < 1e-6);
    /* copy scores: row t of the pass (lead of 3, then the context) predicts
     * context token t - 2; the stream's most copying query head, averaged */
    worst = 0;
    for (int64_t s = 0; s < ns; s++) {
        double want = 0;
        int64_t l = s / m->config.n_kv_head, g0 = (s % m->config.n_kv_head) * group;
        for (int64_t h = g0; h < g0 + group; h++) {
            double sum = 0;
            for (int64_t t = 2; t < 2 + CTX; t++) sum += ap.p[((l * H + h) * ap.T + t) * ap.n_keys + PRE + t - 2];
            want = fmax(want, sum / CTX);
        }
        worst = fmax(worst, fabs(want - copy[s]));
        TT_CHECK(copy[s] >= 0 && copy[s] <= 1);
    }
    TT_CHECK(worst < 1e-6);
    kv_cache_destroy(&fork);
    free(ap.p);
    /* in chunks the copy scores cover the same tokens once each: close to
     * the one-pass ones (the request before each chunk differs) */
    float *copy4 = malloc((size_t)ns * sizeof(float));
    TT_OK(recon_compute(f->st, kv, PRE, CTX, f->ids + PRE, &rp, 16, sc4, copy4));
    for (int64_t s = 0; s < ns; s++) TT_CHECK(copy4[s] >= 0 && copy4[s] <= 1);
    free(copy4);
    free(copy);
    /* chunks of 16: every context token is reconstructed in some pass */
    TT_OK(recon_compute(f->st, kv, PRE, CTX, f->ids + PRE, &rp, 16, sc4, NULL));
    bool any_diff = false;
    for (int64_t i = 0; i < ns * CTX; i++) {
        TT_CHECK(sc4[i] > 0 && sc4[i] <= 1);
        any_diff |= sc4[i] != sc[i];
    }
    TT_CHECK(any_diff);
    TT_FAILS(recon_compute(f->st, kv, PRE, n_past, f->ids + PRE, &rp, 0, sc4, NULL), TIS_EINVAL);
    recon_prompt empty = {NULL, 0, NULL, 0, NULL, 0};
    TT_FAILS(recon_compute(f->st, kv, PRE, CTX, f->ids + PRE, &empty, 0, sc4, NULL), TIS_EINVAL);
    free(sc4);
}

/* kvzip's global selection over the scores sc, and thresholds. */
static void s_kvzip_select(fixture *f, const float *sc) {
    press_ctx pc = f->pc;
    int64_t ns = f->kv->n_stream;
    TT_CASE("kvzip: global selection and thresholds");
    press p;
    kv_cache *c = NULL;
    TT_OK(press_parse("kvzip", &p));
    TT_FAILS(press_compress(&c, &p, &pc, 4, 0, NULL), TIS_EINVAL); /* no scores */
    pc.recon = sc;
    int64_t *kept = malloc((size_t)ns * sizeof *kept), tot = 0;
    TT_OK(press_compress(&c, &p, &pc, 4, 0, kept));
    for (int64_t s = 0; c && s < ns; s++) {
        tot += kept[s];
        TT_CHECK(c->len[s] == PRE + kept[s]);
        /* what a stream keeps beats what any stream drops */
    }
    TT_CHECK(tot == 4 * ns);
    float lo_kept = 2, hi_dropped = -1;
    for (int64_t s = 0; c && s < ns; s++)
        for (int64_t j = 0; j < CTX; j++) {
            float v = sc[s * CTX + j];
            if (s_kept(c, s, (int32_t)(PRE + j))) lo_kept = fminf(lo_kept, v);
            else hi_dropped = fmaxf(hi_dropped, v);
        }
    TT_CHECK(lo_kept >= hi_dropped);
    kv_cache_destroy(&c);
    press_plan *pl = NULL;
    TT_OK(press_plan_new(&pl, &p, &pc));
    TT_CHECK(pl && press_plan_calibrated(pl));
    float tau = 0.05f;
    if (pl) TT_OK(press_plan_compact_threshold(pl, tau, 2, &c, kept));
    for (int64_t s = 0; c && s < ns; s++) {
        int64_t want = 0;
        for (int64_t j = 0; j < CTX; j++) {
            want += sc[s * CTX + j] >= tau;
            TT_CHECK(s_kept(c, s, (int32_t)(PRE + j)) == (sc[s * CTX + j] >= tau));
        }
        TT_CHECK(kept[s] == want && c->cap[s] == PRE + want + 2);
    }
    kv_cache_destroy(&c);
    if (pl) TT_FAILS(press_plan_compact_threshold(pl, 1.5, 0, &c, kept), TIS_EINVAL);
    press_plan_destroy(&pl);
    /* a threshold needs calibrated scores */
    TT_OK(press_parse("snapkv", &p));
    TT_OK(press_plan_new(&pl, &p, &pc));
    TT_CHECK(pl && !press_plan_calibrated(pl));
    if (pl) TT_FAILS(press_plan_compact_threshold(pl, tau, 0, &c, kept), TIS_EINVAL);
    press_plan_destroy(&pl);

    free(kept);
}

static void s_kvzip(fixture *f) {
    float *sc = malloc((size_t)(f->kv->n_stream * CTX) * sizeof(float));
    s_kvzip_recon(f, sc);
    s_kvzip_select(f, sc);
    s_kvzip_heads(f, sc);
    s_tis_per_head(f, sc);
    free(sc);
}

/* knorm keeps the lowest-norm key */
static void s_knorm(fixture *f) {
    kv_cache *kv = f->kv;
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("knorm");
    /* knorm keeps the lowest-norm key */
    TT_OK(press_parse("knorm", &p));
    TT_OK(press_compress(&c, &p, &pc, 1, 0, NULL));
    if (c) {
        int64_t s = 0, best = -1;
        double bn = 1e30;
        for (int64_t j = 0; j < CTX; j++) {
            double n2 = 0;
            float x[256];
            TT_CHECK(kv->head_dim <= 256);
            kv_cache_rows_f32(kv, s, 0, PRE + j, 1, x);
            for (int64_t d = 0; d < kv->head_dim; d++) n2 += (double)x[d] * x[d];
            if (n2 < bn) bn = n2, best = j;
        }
        TT_CHECK(s_kept(c, s, (int32_t)(PRE + best)));
    }
    kv_cache_destroy(&c);

}

/* random is seeded */
static void s_random(fixture *f) {
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("random");
    /* random: same seed same choice, another seed another */
    TT_OK(press_parse("random", &p));
    kv_cache *c2 = NULL;
    TT_OK(press_compress(&c, &p, &pc, 10, 0, NULL));
    TT_OK(press_compress(&c2, &p, &pc, 10, 0, NULL));
    if (c && c2) TT_CHECK(memcmp(c->pos, c2->pos, (size_t)(c->off[c->n_stream - 1] + c->cap[c->n_stream - 1]) * 4) == 0);
    kv_cache_destroy(&c2);
    pc.seed = 2;
    TT_OK(press_compress(&c2, &p, &pc, 10, 0, NULL));
    if (c && c2) TT_CHECK(memcmp(c->pos, c2->pos, (size_t)(c->off[c->n_stream - 1] + c->cap[c->n_stream - 1]) * 4) != 0);
    kv_cache_destroy(&c);
    kv_cache_destroy(&c2);

}

/* adakv keeps the total per layer */
static void s_adakv(fixture *f) {
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    int64_t kept[64];
    TT_CASE("adakv:h2o");
    /* adakv over h2o keeps the total per layer */
    TT_OK(press_parse("adakv:h2o", &p));
    TT_OK(press_compress(&c, &p, &pc, 6, 0, kept));
    if (c)
        for (int64_t l = 0; l < c->n_layer; l++) {
            int64_t t = 0;
            for (int64_t h = 0; h < c->n_kv_head; h++) t += kept[l * c->n_kv_head + h];
            TT_CHECK(t == 6 * c->n_kv_head);
        }
    kv_cache_destroy(&c);

}

/* full decodes like the original; a compressed cache at the original positions */
static void s_full_and_positions(fixture *f) {
    const model *m = f->m;
    forward_state *st = f->st;
    kv_cache *kv = f->kv;
    press_obs obs = f->obs; /* a view: the arrays are the fixture's */
    const int32_t *ids = f->ids;
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("full decodes like the original");
    /* full (and any policy keeping everything) decodes exactly like the original */
    int64_t V = m->config.n_vocab;
    float *la = malloc((size_t)(V * 2) * sizeof(float)), *lb = la + V;
    TT_OK(press_parse("full", &p));
    TT_OK(press_compress(&c, &p, &pc, 1, SUF, NULL));
    kv_cache *orig = NULL;
    TT_OK(kv_cache_compact(&orig, kv, NULL, SUF));
    if (c && orig) {
        TT_OK(forward_run(st, c, ids + PRE + CTX, SUF, la, 1, NULL));
        TT_OK(forward_run(st, orig, ids + PRE + CTX, SUF, lb, 1, NULL));
        TT_CHECK(memcmp(la, lb, (size_t)V * 4) == 0);
    }
    kv_cache_destroy(&c);
    TT_CASE("compressed cache positions");
    /* a compressed cache decodes at the original positions: its logits
     * differ from full but the positions continue at n_past */
    TT_OK(press_parse("streaming", &p));
    TT_OK(press_compress(&c, &p, &pc, 10, SUF, NULL));
    if (c) {
        TT_OK(forward_run(st, c, ids + PRE + CTX, SUF, la, 1, NULL));
        TT_CHECK(kv_cache_pos(c, 0)[c->len[0] - 1] == TOTAL - 1 && c->n_past == TOTAL);
        TT_CHECK(memcmp(la, lb, (size_t)V * 4) != 0);
        TT_FAILS(press_obs_prefill(&obs, st, c, ids, 1, NULL, 0), TIS_EINVAL);
    }
    kv_cache_destroy(&c);

    free(la);
    kv_cache_destroy(&orig);
}

/* oracle labels and the oracle press */
static void s_oracle(fixture *f) {
    const model *m = f->m;
    forward_state *st = f->st;
    kv_cache *kv = f->kv;
    const int32_t *ids = f->ids;
    press_ctx pc = f->pc;
    int64_t group = m->config.n_head / m->config.n_kv_head;
    press p;
    kv_cache *c = NULL;
    TT_CASE("oracle");
    /* oracle labels: a distribution over the context; oracle keeps its top */
    oracle_labels ol;
    TT_OK(forward_run(st, kv, ids + PRE + CTX, SUF, NULL, 0, NULL));
    int32_t ans[3] = {5, 9, 11};
    TT_OK(oracle_compute(st, kv, PRE, CTX, ans, 3, true, &ol));
    TT_CHECK(kv->n_past == TOTAL); /* unchanged */
    if (ol.total) {
        double sum = 0;
        int64_t arg = 0;
        for (int64_t j = 0; j < CTX; j++) {
            TT_CHECK(ol.total[j] >= 0);
            sum += ol.total[j];
            if (ol.total[j] > ol.total[arg]) arg = j;
        }
        TT_CHECK(fabs(sum - 1.0) < 1e-4);
        for (int64_t r = 0; r < ol.n_layer * ol.n_head; r++) {
            double rs = 0;
            for (int64_t j = 0; j < CTX; j++) rs += ol.per_head[r * CTX + j];
            TT_CHECK(fabs(rs - 1.0) < 1e-4);
        }
        float *kvh = malloc(CTX * sizeof(float));
        oracle_labels_kv_head(&ol, 1, 1, m->config.n_kv_head, kvh);
        double ks = 0;
        for (int64_t j = 0; j < CTX; j++) ks += kvh[j];
        TT_CHECK(fabs(ks - (double)group) < 1e-3);
        free(kvh);
        /* the oracle press needs a full cache of just the prompt span it scores */
        press_ctx po = pc;
        po.kv = kv;
        po.oracle = &ol;
        TT_OK(press_parse("oracle", &p));
        TT_OK(press_compress(&c, &p, &po, 1, 0, NULL));
        if (c)
            for (int64_t s = 0; s < c->n_stream; s++) {
                TT_CHECK(s_kept(c, s, (int32_t)(PRE + arg)));
                TT_CHECK(c->len[s] == PRE + 1 + SUF); /* prefix + 1 + question */
            }
        kv_cache_destroy(&c);
        po.oracle = NULL;
        TT_FAILS(press_compress(&c, &p, &po, 1, 0, NULL), TIS_EINVAL);
    }
    oracle_labels_free(&ol);
    TT_FAILS(oracle_compute(st, kv, PRE, TOTAL, ans, 3, false, &ol), TIS_EINVAL);
    TT_CHECK(ol.total == NULL);

}

int main(void) {
    test_parse();
    test_allocation();

    TT_CASE("tiny model");
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    const char *path = tt_path("press.gguf");
    TT_OK(tiny_model_write(path, &sp));
    fixture f = {0};
    TT_OK(model_load(&f.m, path));
    if (!f.m) return tt_done("test_press");
    TT_OK(forward_state_new(&f.st, f.m, backend_cpu(), 16)); /* small batch: chunked prefill */
    uint64_t rng = 7;
    for (int i = 0; i < TOTAL; i++)
        f.ids[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(f.m->config.n_vocab - 1));

    if (s_observed_prefill(&f) == 0) {
        s_streaming(&f);
        s_snapkv_window(&f);
        s_heavy_hitters(&f);
        s_tis_scores(&f);
        s_kvzip(&f);
        s_knorm(&f);
        s_random(&f);
        s_adakv(&f);
        s_full_and_positions(&f);
        s_oracle(&f);
    }
    press_obs_free(&f.obs);
    kv_cache_destroy(&f.kv);
    forward_state_destroy(&f.st);
    model_destroy(&f.m);
    return tt_done("test_press");
}
