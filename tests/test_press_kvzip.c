/* test_press_kvzip: the reconstruction scores (recon_compute against the
 * test's own reduction of every probability), kvzip's pooled selection and
 * thresholds, kvzip_heads' whole streams, and a per-head head's pooled
 * selection, on the tiny model's observed prefill (tests/util/press_fixture). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "press.h"
#include "press_fixture.h"
#include "recon.h"
#include "tt.h"

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
static void s_kvzip_heads(press_fixture *f, const float *sc) {
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
            if (pf_kept(c, s_next, (int32_t)(PRE + j))) lo = fminf(lo, v);
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

/* The test's own +shared score: the mean over streams of each stream's
 * (x - mean) / sd, x the head's scores on kvzip's scale (exp of its
 * output; a NaN its stream's lowest), then the lpool span. */
static void s_shared_ref(const float *lg, int64_t ns, int32_t lpool, double *z) {
    double x[CTX];
    for (int64_t j = 0; j < CTX; j++) z[j] = 0;
    for (int64_t s = 0; s < ns; s++) {
        for (int64_t j = 0; j < CTX; j++) x[j] = exp((double)lg[s * CTX + j]);
        double mu = 0, v = 0, lo = 1e300;
        int64_t cnt = 0;
        for (int64_t j = 0; j < CTX; j++) if (!isnan(x[j])) mu += x[j], cnt++;
        mu /= (double)cnt;
        for (int64_t j = 0; j < CTX; j++) if (!isnan(x[j])) v += (x[j] - mu) * (x[j] - mu);
        double sd = sqrt(v / (double)cnt);
        for (int64_t j = 0; j < CTX; j++) if (!isnan(x[j])) lo = fmin(lo, (x[j] - mu) / sd);
        for (int64_t j = 0; j < CTX; j++) z[j] += (isnan(x[j]) ? lo : (x[j] - mu) / sd) / (double)ns;
    }
    if (lpool > 1) {
        double *t = malloc(CTX * sizeof *t);
        memcpy(t, z, CTX * sizeof *t);
        for (int64_t j = 0; j < CTX; j++)
            for (int64_t i = j; i < j + lpool && i < CTX; i++) z[j] = fmax(z[j], t[i]);
        free(t);
    }
}

/* +shared: one score, the same k tokens in every stream, the test's own
 * mean of standardised scores; never calibrated */
static void s_shared(press_fixture *f, float *lg, int64_t ns) {
    TT_CASE("tis+shared: one ranking for every stream");
    press_ctx ph = f->pc;
    ph.head_scores = lg;
    ph.head_n_out = ns;
    int64_t *kept = malloc((size_t)ns * sizeof *kept);
    double *z = malloc(CTX * sizeof *z);
    float saved = lg[1 * CTX + 3];
    lg[1 * CTX + 3] = NAN; /* its stream's lowest */
    float *lg0 = malloc(CTX * sizeof *lg0);
    memcpy(lg0, lg, CTX * sizeof *lg0);
    for (int64_t j = 0; j < CTX; j++) lg[j] += logf(100.0f); /* stream 0 a hundred times the others: standardised away */
    const char *names[] = {"tis+shared", "tis+lpool3+shared"};
    for (int v = 0; v < 2; v++) {
        press p;
        kv_cache *c = NULL;
        press_plan *pl = NULL;
        TT_OK(press_parse(names[v], &p));
        TT_CHECK(p.shared && p.alloc == PRESS_ALLOC_UNIFORM && !press_calibratable(&p) && !press_calibrated(&p, ns));
        s_shared_ref(lg, ns, v ? 3 : 0, z);
        const int64_t k = 5;
        TT_OK(press_compress(&c, &p, &ph, k, 0, kept));
        double lo = 1e300, hi = -1e300;
        for (int64_t j = 0; c && j < CTX; j++) {
            bool in = pf_kept(c, 0, (int32_t)(PRE + j));
            for (int64_t s = 1; s < ns; s++) TT_CHECK(pf_kept(c, s, (int32_t)(PRE + j)) == in);
            if (in) lo = fmin(lo, z[j]);
            else hi = fmax(hi, z[j]);
        }
        for (int64_t s = 0; c && s < ns; s++) TT_CHECK(kept[s] == k);
        TT_CHECK(!c || lo >= hi - 1e-5); /* ties: a span shares its best score */
        kv_cache_destroy(&c);
        TT_OK(press_plan_new(&pl, &p, &ph));
        if (pl) TT_FAILS(press_plan_compact_threshold(pl, 0.05f, 0, &c, kept), TIS_EINVAL);
        press_plan_destroy(&pl);
    }
    lg[1 * CTX + 3] = saved;
    memcpy(lg, lg0, CTX * sizeof *lg0);
    free(lg0);
    free(z);
    free(kept);
}

/* a per-head head predicting ln(sc) selects as kvzip does */
static void s_tis_per_head(press_fixture *f, const float *sc) {
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
        TT_CHECK(kept[s] >= 2 && pf_kept(c, s, PRE + CTX - 1) && pf_kept(c, s, PRE + CTX - 2));
    }
    TT_CHECK(!c || tot == 4 * ns);
    if (c) { /* what the pooled part took: the best scores of the tokens before the tails */
        float lo = 2, hi = -1;
        for (int64_t s = 0; s < ns; s++)
            for (int32_t j = 0; j < CTX - 2; j++)
                if (pf_kept(c, s, PRE + j)) lo = fminf(lo, sc[s * CTX + j]);
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
        TT_CHECK(kept[s] == want && pf_kept(c, s, PRE + CTX - 1) && pf_kept(c, s, PRE + CTX - 2));
    }
    kv_cache_destroy(&c);
    press_plan_destroy(&pl);
    free(kept);
    s_shared(f, lg, ns);
    ph.head_n_out = ns - 1; /* not the model's streams */
    TT_OK(press_parse("tis", &p));
    TT_FAILS(press_compress(&c, &p, &ph, 4, 0, NULL), TIS_EINVAL);
    free(lg);
}

/* kvzip: reconstruction scores, global selection, thresholds */
/* kvzip's reconstruction scores sc[ns][CTX] and copy scores against the
 * test's own reduction of one pass's probabilities; chunks; bad input. */
static void s_kvzip_recon(press_fixture *f, float *sc) {
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
static void s_kvzip_select(press_fixture *f, const float *sc) {
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
            if (pf_kept(c, s, (int32_t)(PRE + j))) lo_kept = fminf(lo_kept, v);
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
            TT_CHECK(pf_kept(c, s, (int32_t)(PRE + j)) == (sc[s * CTX + j] >= tau));
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

static void s_kvzip(press_fixture *f) {
    float *sc = malloc((size_t)(f->kv->n_stream * CTX) * sizeof(float));
    s_kvzip_recon(f, sc);
    s_kvzip_select(f, sc);
    s_kvzip_heads(f, sc);
    s_tis_per_head(f, sc);
    free(sc);
}

int main(void) {
    press_fixture f;
    if (press_fixture_new(&f, "press_kvzip.gguf") == 0) s_kvzip(&f);
    press_fixture_free(&f);
    return tt_done("test_press_kvzip");
}
