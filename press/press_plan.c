/* press_plan: budget allocation, top-k selection, plans (one scoring, many
 * budgets), compaction, unions of two plans, thresholds. The score
 * functions and policy names are in press.c. */
#include "press.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

/* ---- allocation and selection ------------------------------------------- */

typedef struct ranked {
    float s;
    int32_t i;
    int32_t h;
} ranked;

/* Descending score; ties to the later position (recency), then lower head. */
static int s_cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    if (x->i != y->i) return x->i > y->i ? -1 : 1;
    return x->h < y->h ? -1 : x->h > y->h;
}

/* PyramidKV (Cai et al. 2024): budgets fall linearly with depth from
 * 2k - k/beta to k/beta (beta = 20); what a layer cannot hold (more than
 * n_ctx) goes to the layers below it that can, so the total stays L*k. */
static void s_pyramid(int64_t L, int64_t k, int64_t n_ctx, int64_t *bl) {
    const double beta = 20.0;
    double lo = (double)k / beta, hi = 2.0 * (double)k - lo;
    int64_t total = 0;
    for (int64_t l = 0; l < L; l++) {
        double b = L > 1 ? hi - (hi - lo) * (double)l / (double)(L - 1) : (double)k;
        bl[l] = (int64_t)llround(b);
        if (bl[l] < 1) bl[l] = 1;
        if (bl[l] > n_ctx) bl[l] = n_ctx;
        total += bl[l];
    }
    int64_t want = L * k;
    /* Round-off and clipping: hand out (or take back) one token at a time,
     * lower layers first when adding, upper layers first when taking. */
    bool moved = true;
    while (total != want && moved) {
        moved = false;
        for (int64_t l = 0; l < L && total != want; l++) {
            int64_t idx = total < want ? l : L - 1 - l;
            if (total < want && bl[idx] < n_ctx) bl[idx]++, total++, moved = true;
            else if (total > want && bl[idx] > 1) bl[idx]--, total--, moved = true;
        }
    }
}

int press_allocate(const press *p, const kv_cache *kv, const float *scores, int64_t n_ctx,
                   int64_t k, int64_t *budgets) {
    int64_t L = kv->n_layer, H = kv->n_kv_head;
    if (k > n_ctx) k = n_ctx;
    if (p->alloc == PRESS_ALLOC_UNIFORM) {
        for (int64_t s = 0; s < L * H; s++) budgets[s] = k;
    } else if (p->alloc == PRESS_ALLOC_PYRAMID) {
        int64_t *bl = malloc((size_t)L * sizeof *bl);
        if (!bl) return tis_error(TIS_ENOMEM, "press: out of memory");
        s_pyramid(L, k, n_ctx, bl);
        for (int64_t l = 0; l < L; l++)
            for (int64_t h = 0; h < H; h++) budgets[l * H + h] = bl[l];
        free(bl);
    } else if (p->alloc == PRESS_ALLOC_GLOBAL) {
        /* KVzip: the best k * n_stream scores over every stream; a stream
         * gets what its scores win (possibly nothing of the context). */
        int64_t ns = L * H, want = k * ns;
        ranked *pool = malloc((size_t)(ns * n_ctx) * sizeof *pool);
        if (!pool)
            return tis_error(TIS_ENOMEM, "press: out of memory for %lld x %lld scores", (long long)ns,
                             (long long)n_ctx);
        for (int64_t s = 0; s < ns; s++) {
            budgets[s] = 0;
            for (int64_t j = 0; j < n_ctx; j++) pool[s * n_ctx + j] = (ranked){scores[s * n_ctx + j], (int32_t)j, (int32_t)s};
        }
        qsort(pool, (size_t)(ns * n_ctx), sizeof *pool, s_cmp_ranked);
        /* +capN: a stream that has won N * k stops winning; the budget goes
         * on down the ranking (N >= 1, so N * k * ns >= want is reached) */
        int64_t cap = p->cap > 0 ? (int64_t)p->cap * k : n_ctx;
        if (cap > n_ctx) cap = n_ctx;
        for (int64_t r = 0, got = 0; r < ns * n_ctx && got < want; r++)
            if (budgets[pool[r].h] < cap) budgets[pool[r].h]++, got++;
        free(pool);
    } else {
        /* AdaKV (Feng et al. 2024): each head keeps a floor of alpha*k of
         * its own best; the rest of the layer's H*k goes to the highest
         * scores over all its heads, after normalising each head's scores
         * to a distribution so that heads compare. */
        const double alpha = 0.2;
        int64_t floor_k = (int64_t)(alpha * (double)k);
        ranked *pool = malloc((size_t)(H * n_ctx) * sizeof *pool);
        ranked *one = malloc((size_t)n_ctx * sizeof *one);
        if (!pool || !one) {
            free(pool);
            free(one);
            return tis_error(TIS_ENOMEM, "press: out of memory for %lld x %lld scores", (long long)H,
                             (long long)n_ctx);
        }
        for (int64_t l = 0; l < L; l++) {
            int64_t np = 0;
            for (int64_t h = 0; h < H; h++) {
                const float *sc = scores + (l * H + h) * n_ctx;
                float mn = INFINITY;
                double sum = 0;
                for (int64_t j = 0; j < n_ctx; j++) mn = sc[j] < mn && sc[j] > -1e29f ? sc[j] : mn;
                for (int64_t j = 0; j < n_ctx; j++) sum += sc[j] < 1e29f ? sc[j] - mn : 0;
                float inv = sum > 0 ? (float)(1.0 / sum) : 1.0f;
                for (int64_t j = 0; j < n_ctx; j++)
                    one[j] = (ranked){sc[j] >= 1e29f ? sc[j] : (sc[j] - mn) * inv, (int32_t)j, (int32_t)h};
                qsort(one, (size_t)n_ctx, sizeof *one, s_cmp_ranked);
                for (int64_t r = floor_k; r < n_ctx; r++) pool[np++] = one[r];
                budgets[l * H + h] = floor_k;
            }
            qsort(pool, (size_t)np, sizeof *pool, s_cmp_ranked);
            int64_t rest = H * k - H * floor_k;
            for (int64_t r = 0; r < rest && r < np; r++) budgets[l * H + pool[r].h]++;
        }
        free(pool);
        free(one);
    }
    return 0;
}

struct press_plan {
    press p;              /* copy (a per-head head's tis allocates globally) */
    bool calibrated;      /* scores on one scale in every stream (thresholds) */
    const kv_cache *kv;   /* borrowed: the uncompressed cache scored */
    int64_t ctx_begin, n_ctx;
    float *scores;        /* [n_stream][n_ctx] after padding */
    int32_t *order;       /* [n_stream][n_ctx] context indices, best first */
};

/* sc[j] = max(sc[j - before .. j + after]) within [0, n), in place; tmp
 * holds n floats. A van Herk / Gil-Werman pass would be O(n) for any
 * width; widths <= 63 keep the plain one cheap next to the sort that
 * follows. */
static void s_max_pool(float *sc, int64_t n, int64_t before, int64_t after, float *tmp) {
    memcpy(tmp, sc, (size_t)n * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        int64_t a = j - before < 0 ? 0 : j - before, b = j + after >= n ? n - 1 : j + after;
        float m = tmp[a];
        for (int64_t i = a + 1; i <= b; i++)
            if (tmp[i] > m) m = tmp[i];
        sc[j] = m;
    }
}

/* +shared: sc[0][j] = the mean over the ns streams of (sc[s][j] - mu_s) /
 * sd_s, mu_s and sd_s over stream s's finite scores (> -1e29: a NaN was
 * made -1e30); such a score counts as its stream's lowest, and a constant
 * stream as 0 everywhere. Only stream 0 is written: the caller copies it. */
static int s_share(float *sc, int64_t ns, int64_t n) {
    double *sum = calloc((size_t)n, sizeof *sum);
    if (!sum) return tis_error(TIS_ENOMEM, "press: out of memory");
    for (int64_t s = 0; s < ns; s++) {
        const float *x = sc + s * n;
        double mu = 0, m2 = 0, lo = 0;
        int64_t cnt = 0;
        for (int64_t j = 0; j < n; j++)
            if (x[j] > -1e29f) {
                double d = x[j] - mu;
                cnt++;
                mu += d / (double)cnt;
                m2 += d * (x[j] - mu);
            }
        double sd = cnt > 1 ? sqrt(m2 / (double)cnt) : 0;
        bool first = true;
        for (int64_t j = 0; j < n; j++)
            if (x[j] > -1e29f) {
                double z = sd > 0 ? (x[j] - mu) / sd : 0;
                if (first || z < lo) lo = z, first = false;
            }
        for (int64_t j = 0; j < n; j++)
            sum[j] += x[j] > -1e29f ? (sd > 0 ? (x[j] - mu) / sd : 0) : lo;
    }
    for (int64_t j = 0; j < n; j++) sc[j] = (float)(sum[j] / (double)ns);
    free(sum);
    return 0;
}

int press_plan_new(press_plan **out, const press *p, const press_ctx *c) {
    *out = NULL;
    const kv_cache *kv = c->kv;
    int64_t ns = kv->n_stream, n = c->n_ctx;
    if (n <= 0 || c->ctx_begin < 0) return tis_error(TIS_EINVAL, "press: empty context");
    for (int64_t s = 0; s < ns; s++) {
        if (kv->len[s] != kv->n_past || c->ctx_begin + n > kv->len[s])
            return tis_error(TIS_EINVAL, "press: the cache must be uncompressed and hold the context");
    }
    if (p->needs_obs && !c->obs) return tis_error(TIS_EINVAL, "press %s: no attention statistics", p->name);
    if (p->needs_oracle && !c->oracle) return tis_error(TIS_EINVAL, "press %s: no oracle labels", p->name);
    if (p->needs_head && !c->head_scores) return tis_error(TIS_EINVAL, "press %s: no importance-head scores", p->name);
    if (p->needs_recon && !c->recon) return tis_error(TIS_EINVAL, "press %s: no reconstruction scores", p->name);
    if (p->needs_selfinfo && !c->selfinfo)
        return tis_error(TIS_EINVAL, "press %s: no self-information scores", p->name);
    press_plan *pl = calloc(1, sizeof *pl);
    ranked *rk = malloc((size_t)n * sizeof *rk);
    float *tmp = p->pool > 1 ? malloc((size_t)n * sizeof *tmp) : NULL;
    int rc = 0;
    if (pl) {
        pl->scores = malloc((size_t)(ns * n) * sizeof(float));
        pl->order = malloc((size_t)(ns * n) * sizeof(int32_t));
    }
    if (!pl || !rk || !pl->scores || !pl->order || (p->pool > 1 && !tmp)) {
        rc = tis_error(TIS_ENOMEM, "press: out of memory");
        goto fail;
    }
    pl->p = *p;
    pl->calibrated = press_calibrated(p, c->head_n_out);
    if (p->needs_head && c->head_n_out > 1 && p->alloc == PRESS_ALLOC_UNIFORM && !p->shared)
        pl->p.alloc = PRESS_ALLOC_GLOBAL;
    if (p->cap && pl->p.alloc != PRESS_ALLOC_GLOBAL) {
        rc = tis_error(TIS_EINVAL, "press %s: +capN needs a budget pooled over every stream; this head has "
                       "one output (a per-head head pools)", p->name);
        goto fail;
    }
    pl->kv = kv;
    pl->ctx_begin = c->ctx_begin;
    pl->n_ctx = n;
    for (int64_t l = 0; l < kv->n_layer && rc == 0; l++)
        for (int64_t h = 0; h < kv->n_kv_head && rc == 0; h++) {
            float *sc = pl->scores + (l * kv->n_kv_head + h) * n;
            if (p->score) rc = p->score(c, l, h, sc);
            else for (int64_t j = 0; j < n; j++) sc[j] = 1.0f;
            for (int64_t j = 0; j < n; j++)
                if (!isfinite(sc[j])) sc[j] = -1e30f; /* a NaN never wins */
        }
    if (rc) goto fail;
    if (p->shared && (rc = s_share(pl->scores, ns, n))) goto fail;
    for (int64_t s = 0; s < ns; s++) {
        float *sc = pl->scores + s * n;
        if (p->shared && s > 0) { /* every stream the same: one ranking */
            memcpy(sc, pl->scores, (size_t)n * sizeof(float));
            memcpy(pl->order + s * n, pl->order, (size_t)n * sizeof(int32_t));
            continue;
        }
        if (p->pool > 1) /* +lpoolN: a token takes the best of the N-1 after it */
            s_max_pool(sc, n, p->pool_left ? 0 : p->pool / 2, p->pool_left ? p->pool - 1 : p->pool / 2, tmp);
        if (p->protect_window)
            for (int64_t j = n - c->window < 0 ? 0 : n - c->window; j < n; j++) sc[j] = 1e30f;
        for (int64_t j = 0; j < n; j++) rk[j] = (ranked){sc[j], (int32_t)j, 0};
        qsort(rk, (size_t)n, sizeof *rk, s_cmp_ranked);
        for (int64_t j = 0; j < n; j++) pl->order[s * n + j] = rk[j].i;
    }
    if (rc) goto fail;
    free(rk);
    free(tmp);
    *out = pl;
    return 0;
fail:
    free(rk);
    free(tmp);
    press_plan_destroy(&pl);
    return rc;
}

void press_plan_destroy(press_plan **p) {
    if (!p || !*p) return;
    free((*p)->scores);
    free((*p)->order);
    free(*p);
    *p = NULL;
}

/* kvzip_heads's scores carry a stream rank: no absolute scale; +capN
 * bounds a share of a budget, and a threshold has no budget to share. */
bool press_calibratable(const press *p) { return p->calib != PRESS_CALIB_NONE && !p->cap && !p->shared; }

bool press_calibrated(const press *p, int64_t head_n_out) {
    return press_calibratable(p) && (p->calib == PRESS_CALIB_ALWAYS || head_n_out > 1);
}

bool press_plan_calibrated(const press_plan *pl) { return pl->calibrated; }

/* A keep mask over kv's entries (kv_cache_compact's): every stream's
 * prefix and question set, its n context entries from ctx_begin clear,
 * for the caller to choose. NULL when out of memory. */
static uint8_t *s_keep_new(const kv_cache *kv, int64_t ctx_begin, int64_t n) {
    int64_t ns = kv->n_stream;
    int64_t total_entries = kv->off[ns - 1] + kv->cap[ns - 1]; /* streams are laid out in order */
    uint8_t *keep = calloc((size_t)(total_entries ? total_entries : 1), 1);
    for (int64_t s = 0; s < ns && keep; s++) {
        uint8_t *ks = keep + kv->off[s];
        for (int64_t i = 0; i < kv->len[s]; i++) ks[i] = 1; /* prefix and question stay */
        for (int64_t j = 0; j < n; j++) ks[ctx_begin + j] = 0;
    }
    return keep;
}

/* Selects budgets[s] context entries of every stream (at most n): its
 * last tails[s] (<= budgets[s]) first, then the best of the plan's order
 * before them, and compacts. */
static int s_compact(const press_plan *pl, const int64_t *budgets, const int64_t *tails, int64_t extra,
                     kv_cache **out, int64_t *kept) {
    const kv_cache *kv = pl->kv;
    int64_t ns = kv->n_stream, n = pl->n_ctx;
    uint8_t *keep = s_keep_new(kv, pl->ctx_begin, n);
    if (!keep) return tis_error(TIS_ENOMEM, "press: out of memory");
    for (int64_t s = 0; s < ns; s++) {
        uint8_t *ks = keep + kv->off[s];
        int64_t b = budgets[s] < n ? budgets[s] : n;
        const int32_t *ord = pl->order + s * n;
        int64_t recent = tails[s] < b ? tails[s] : b;
        int64_t got = recent;
        for (int64_t j = n - recent; j < n; j++) ks[pl->ctx_begin + j] = 1;
        for (int64_t r = 0; r < n && got < b; r++)
            if (ord[r] < n - recent) ks[pl->ctx_begin + ord[r]] = 1, got++;
        if (kept) kept[s] = b;
    }
    int rc = kv_cache_compact(out, kv, keep, extra);
    free(keep);
    return rc;
}

/* The per-stream budgets (budgets[ns]) and tails (tails[ns]) of plan pl
 * at k context entries per stream. */
static int s_plan_budgets(const press_plan *pl, int64_t k_per_stream, int64_t *budgets, int64_t *tails) {
    int64_t ns = pl->kv->n_stream, n = pl->n_ctx;
    if (!pl->p.score) k_per_stream = n; /* full */
    /* +recentN/D: the tail first (min(N, k/D)), the allocation shares
     * the rest over the tokens before it (masked out of the scores where
     * the allocation reads them: pooled and AdaKV's) */
    int64_t tail = 0;
    if (pl->p.recent > 0) {
        int64_t cap = k_per_stream / pl->p.recent_div;
        tail = pl->p.recent < cap ? pl->p.recent : cap;
    }
    if (tail > n) tail = n;
    const float *sc = pl->scores;
    float *masked = NULL;
    if (tail > 0 && (pl->p.alloc == PRESS_ALLOC_GLOBAL || pl->p.alloc == PRESS_ALLOC_ADAPTIVE)) {
        if (!(masked = malloc((size_t)(ns * n) * sizeof *masked))) return tis_error(TIS_ENOMEM, "press: out of memory");
        memcpy(masked, pl->scores, (size_t)(ns * n) * sizeof *masked);
        for (int64_t s = 0; s < ns; s++)
            for (int64_t j = n - tail; j < n; j++) masked[s * n + j] = -1e30f;
        sc = masked;
    }
    int rc = press_allocate(&pl->p, pl->kv, sc, n, k_per_stream - tail, budgets);
    /* the tail of every stream: +recentN/D's, or h2o's recent share of its budget */
    for (int64_t s = 0; s < ns && !rc; s++) {
        budgets[s] += tail;
        int64_t b = budgets[s] < n ? budgets[s] : n;
        tails[s] = pl->p.recent_frac > 0 ? (int64_t)(pl->p.recent_frac * (double)b) : tail;
    }
    free(masked);
    return rc;
}

int press_plan_compact(const press_plan *pl, int64_t k_per_stream, int64_t extra, kv_cache **out,
                       int64_t *kept) {
    *out = NULL;
    int64_t ns = pl->kv->n_stream;
    if (k_per_stream < 1) return tis_error(TIS_EINVAL, "press: budget of %lld tokens", (long long)k_per_stream);
    int64_t *budgets = malloc((size_t)(2 * ns) * sizeof *budgets), *tails = budgets + ns;
    if (!budgets) return tis_error(TIS_ENOMEM, "press: out of memory");
    int rc = s_plan_budgets(pl, k_per_stream, budgets, tails);
    if (!rc) rc = s_compact(pl, budgets, tails, extra, out, kept);
    free(budgets);
    return rc;
}

int press_plan_compact_union(const press_plan *a, const press_plan *b, int64_t k_per_stream, int64_t extra,
                             kv_cache **out, int64_t *kept) {
    *out = NULL;
    if (k_per_stream < 1) return tis_error(TIS_EINVAL, "press: budget of %lld tokens", (long long)k_per_stream);
    if (a->kv != b->kv || a->ctx_begin != b->ctx_begin || a->n_ctx != b->n_ctx)
        return tis_error(TIS_EINVAL, "press: a union of %s and %s: the plans score different caches", a->p.name,
                         b->p.name);
    if (!a->p.score || !b->p.score)
        return tis_error(TIS_EINVAL, "press: a union takes two compressing policies, not full");
    const kv_cache *kv = a->kv;
    int64_t ns = kv->n_stream, n = a->n_ctx;
    int64_t *bud = malloc((size_t)(4 * ns) * sizeof *bud), *tl = bud + 2 * ns;
    uint8_t *keep = s_keep_new(kv, a->ctx_begin, n);
    int rc = bud && keep ? 0 : tis_error(TIS_ENOMEM, "press: out of memory");
    if (!rc) rc = s_plan_budgets(a, k_per_stream, bud, tl);
    if (!rc) rc = s_plan_budgets(b, k_per_stream, bud + ns, tl + ns);
    for (int64_t s = 0; s < ns && !rc; s++) {
        uint8_t *kc = keep + kv->off[s] + a->ctx_begin;
        int64_t want = (bud[s] + bud[ns + s] + 1) / 2; /* the mean of the two budgets */
        if (want > n) want = n;
        int64_t tail = tl[s] > tl[ns + s] ? tl[s] : tl[ns + s];
        if (tail > want) tail = want;
        int64_t got = tail;
        for (int64_t j = n - tail; j < n; j++) kc[j] = 1;
        const int32_t *oa = a->order + s * n, *ob = b->order + s * n;
        for (int64_t r = 0; r < n && got < want; r++) { /* both rankings one rank deeper, a's first */
            if (!kc[oa[r]]) kc[oa[r]] = 1, got++;
            if (got < want && !kc[ob[r]]) kc[ob[r]] = 1, got++;
        }
        if (kept) kept[s] = want;
    }
    if (!rc) rc = kv_cache_compact(out, kv, keep, extra);
    free(keep);
    free(bud);
    return rc;
}

int press_plan_compact_threshold(const press_plan *pl, double tau, int64_t extra, kv_cache **out,
                                 int64_t *kept) {
    *out = NULL;
    if (!pl->calibrated)
        return tis_error(TIS_EINVAL, "press %s: a threshold needs scores on one scale in every stream "
                         "(kvzip, or tis with a per-head head)", pl->p.name);
    if (!(tau >= 0 && tau <= 1)) return tis_error(TIS_EINVAL, "press: threshold %g outside [0, 1]", tau);
    int64_t ns = pl->kv->n_stream, n = pl->n_ctx;
    int64_t *budgets = malloc((size_t)(2 * ns) * sizeof *budgets), *tails = budgets + ns;
    if (!budgets) return tis_error(TIS_ENOMEM, "press: out of memory");
    int64_t tail = pl->p.recent < n ? pl->p.recent : n; /* +recentN/D: the whole tail */
    for (int64_t s = 0; s < ns; s++) {
        budgets[s] = tails[s] = tail;
        for (int64_t j = 0; j < n - tail; j++) budgets[s] += pl->scores[s * n + j] >= (float)tau;
    }
    int rc = s_compact(pl, budgets, tails, extra, out, kept);
    free(budgets);
    return rc;
}

int press_compress(kv_cache **out, const press *p, const press_ctx *c, int64_t k_per_stream,
                   int64_t extra, int64_t *kept) {
    *out = NULL;
    if (k_per_stream < 1) return tis_error(TIS_EINVAL, "press: budget of %lld tokens", (long long)k_per_stream);
    press_plan *pl;
    int rc = press_plan_new(&pl, p, c);
    if (rc) return rc;
    rc = press_plan_compact(pl, k_per_stream, extra, out, kept);
    press_plan_destroy(&pl);
    return rc;
}
