/* test_press: observation statistics, each policy's selection on crafted
 * inputs (streaming, snapkv, h2o / tova, the learned head's scores and
 * spans, knorm, random, adakv), compaction (positions kept, bytes freed, a
 * kept-everything fork decodes identically), oracle labels; on the tiny
 * model's observed prefill (tests/util/press_fixture). Names and
 * allocations: test_press_parse; reconstruction and kvzip: test_press_kvzip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "oracle.h"
#include "press.h"
#include "press_fixture.h"
#include "quant.h"
#include "tt.h"

/* every probability row of the observed prefill sums to 1 */
static void s_observed(press_fixture *f) {
    TT_CASE("observed prefill");
    const kv_cache *kv = f->kv;
    const press_obs obs = f->obs;
    int64_t group = f->m->config.n_head / f->m->config.n_kv_head;
    /* totals are counts of rows x group */
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
}

/* streaming keeps sinks + the most recent */
static void s_streaming(press_fixture *f) {
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
                TT_CHECK(pf_kept(c, s, q) == want);
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
static void s_snapkv_window(press_fixture *f) {
    press_ctx pc = f->pc;
    press p;
    kv_cache *c = NULL;
    TT_CASE("snapkv window");
    /* snapkv: the window is protected by padding; with k = window only it stays */
    TT_OK(press_parse("snapkv", &p));
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int64_t s = 0; s < c->n_stream; s++)
            for (int32_t q = PRE; q < PRE + CTX; q++) TT_CHECK(pf_kept(c, s, q) == (q >= PRE + CTX - 8));
    kv_cache_destroy(&c);

}

/* h2o, tova and snapkv follow their statistics */
static void s_heavy_hitters(press_fixture *f) {
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
    if (c) TT_CHECK(pf_kept(c, s_hot, PRE + 5) && c->len[s_hot] == PRE + 1);
    kv_cache_destroy(&c);
    /* h2o: half the budget to the most recent tokens, half to the heaviest
     * outside them; h2o_acc: all of it to the heaviest (here: the earliest) */
    for (int32_t j = 0; j < CTX; j++) o2.acc[s_hot * o2.cap + PRE + j] = 1000.0f + (float)(CTX - j);
    TT_OK(press_parse("h2o", &p));
    TT_CHECK(p.recent_frac == 0.5);
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(pf_kept(c, s_hot, PRE + j) == (j < 4 || j >= CTX - 4));
    kv_cache_destroy(&c);
    TT_OK(press_parse("h2o_acc", &p));
    TT_CHECK(p.recent_frac == 0.0);
    TT_OK(press_compress(&c, &p, &pc, 8, 0, NULL));
    if (c)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(pf_kept(c, s_hot, PRE + j) == (j < 8));
    kv_cache_destroy(&c);
    TT_OK(press_parse("adakv:h2o", &p));
    TT_CHECK(p.recent_frac == 0.5 && p.alloc == PRESS_ALLOC_ADAPTIVE);
    TT_OK(press_parse("snapkv", &p));
    TT_OK(press_compress(&c, &p, &pc, 8 + 5, 0, NULL)); /* window + the pooled neighbourhood */
    if (c)
        for (int32_t q = PRE + 9; q <= PRE + 13; q++) TT_CHECK(pf_kept(c, s_hot, q));
    kv_cache_destroy(&c);
    TT_OK(press_parse("tova", &p));
    TT_OK(press_compress(&c, &p, &pc, 1, 0, NULL));
    if (c)
        for (int64_t h = 0; h < kv->n_kv_head; h++) TT_CHECK(pf_kept(c, kv_stream(kv, 1, h), PRE + 17));
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
            for (int32_t j = 0; j < CTX; j++) TT_CHECK(pf_kept(c, s, PRE + j) == (j >= lo && j <= hi));
    kv_cache_destroy(&c);
}

static void s_tis_scores(press_fixture *f) {
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
                TT_CHECK(pf_kept(c, s, PRE + j) == ((j * 7) % CTX >= CTX - 2));
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
            TT_CHECK(pf_kept(c, s, PRE + j) == (j == 11 || j == 17 || j == 28 || j == 34 || j >= 38));
    }
    kv_cache_destroy(&c);
    TT_OK(press_compress(&c, &p, &pc, 2, 0, kept));
    for (int64_t s = 0; c && s < c->n_stream; s++)
        for (int32_t j = 0; j < CTX; j++) TT_CHECK(pf_kept(c, s, PRE + j) == (j == 17 || j == 39));
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
                TT_CHECK(pf_kept(c, s, PRE + j) == in);
            }
        }
        kv_cache_destroy(&c);
    }
    pc.head_scores = NULL;

}

/* knorm keeps the lowest-norm key */
static void s_knorm(press_fixture *f) {
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
        TT_CHECK(pf_kept(c, s, (int32_t)(PRE + best)));
    }
    kv_cache_destroy(&c);

}

/* random is seeded */
static void s_random(press_fixture *f) {
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
static void s_adakv(press_fixture *f) {
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
static void s_full_and_positions(press_fixture *f) {
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
static void s_oracle(press_fixture *f) {
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
                TT_CHECK(pf_kept(c, s, (int32_t)(PRE + arg)));
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
    press_fixture f;
    if (press_fixture_new(&f, "press.gguf") == 0) {
        s_observed(&f);
        s_streaming(&f);
        s_snapkv_window(&f);
        s_heavy_hitters(&f);
        s_tis_scores(&f);
        s_knorm(&f);
        s_random(&f);
        s_adakv(&f);
        s_full_and_positions(&f);
        s_oracle(&f);
    }
    press_fixture_free(&f);
    return tt_done("test_press");
}
