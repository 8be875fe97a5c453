/* test_head: the importance head: init, features, forward against naive
 * loops, backward against central differences (every kind x every loss),
 * losses/recall/Adam on hand-computed cases, a small training run.
 * Checkpoints (round trips, bad files): test_head_io. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <string.h>

#include "head.h"
#include "safetensors.h"
#include "tt.h"

/* d: the feature width (d_model + n_pos) */
static head *s_new_pos(head_kind kind, bool qa, int64_t d, int64_t hidden, int64_t rank,
                       int64_t n_out, int64_t n_pos, uint64_t seed) {
    head_config c = {.kind = kind, .query_aware = qa, .d_model = d - n_pos, .hidden = hidden,
                     .rank = rank, .layer = 3, .n_out = n_out, .n_pos = n_pos};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL;
    TT_OK(head_new(&h, &c, seed));
    return h;
}

static head *s_new_out(head_kind kind, bool qa, int64_t d, int64_t hidden, int64_t rank,
                       int64_t n_out, uint64_t seed) {
    return s_new_pos(kind, qa, d, hidden, rank, n_out, 0, seed);
}

static head *s_new(head_kind kind, bool qa, int64_t d, int64_t hidden, int64_t rank,
                   uint64_t seed) {
    return s_new_out(kind, qa, d, hidden, rank, 1, seed);
}

static void s_fill(float *p, int64_t n, float scale, uint64_t *st) {
    for (int64_t i = 0; i < n; i++) p[i] = scale * tt_randf(st);
}

/* ---- construction -------------------------------------------------------- */

static void test_new(void) {
    TT_CASE("new");
    head *a = s_new(HEAD_MLP, true, 8, 5, 3, 42), *b = s_new(HEAD_MLP, true, 8, 5, 3, 42),
         *c = s_new(HEAD_MLP, true, 8, 5, 3, 43);
    if (!a || !b || !c) return;
    /* out 5 + 1, fc1 40 + 5, pq/pk 24 + 24; then mean/std 16 */
    TT_CHECK(head_n_trained(a) == 99 && a->n_params == 115);
    TT_CHECK(a->w_out == a->params && a->b_out == a->params + 5 && a->w1 == a->params + 6 &&
             a->b1 == a->params + 46 && a->pq == a->params + 51 && a->pk == a->params + 75 &&
             a->mean == a->params + 99 && a->std == a->params + 107);
    TT_CHECK(memcmp(a->params, b->params, (size_t)a->n_params * sizeof(float)) == 0);
    TT_CHECK(memcmp(a->params, c->params, (size_t)a->n_params * sizeof(float)) != 0);
    TT_CHECK(a->b_out[0] == 0 && a->b1[0] == 0 && a->b1[4] == 0);
    TT_CHECK(a->mean[7] == 0 && a->std[7] == 1 && a->attn_hook_lambda == 0.1f);
    bool in_range = true, nonzero = false;
    for (int64_t i = 0; i < 40; i++) {
        in_range &= fabsf(a->w1[i]) <= 1 / sqrtf(8.0f);
        nonzero |= a->w1[i] != 0;
    }
    TT_CHECK(in_range && nonzero);
    TT_CHECK(a->pq[0] != 0 && a->pk[23] != 0);
    head_destroy(&a);
    head_destroy(&b);
    head_destroy(&c);
    TT_CHECK(a == NULL);
    head_destroy(&a);

    head *l = s_new(HEAD_LINEAR, false, 16, 0, 0, 1);
    if (l) {
        TT_CHECK(head_n_trained(l) == 17 && l->n_params == 49 && !l->w1 && !l->pq);
        TT_CHECK(l->cfg.hidden == 0 && l->cfg.rank == 0);
        head_destroy(&l);
    }
    head *m = s_new(HEAD_MLP, true, 16, 0, 0, 1); /* defaults */
    if (m) {
        TT_CHECK(m->cfg.hidden == 256 && m->cfg.rank == 32);
        head_destroy(&m);
    }

    head_config bad[] = {
        {.kind = HEAD_LINEAR, .d_model = 0},
        {.kind = HEAD_LINEAR, .d_model = 65537},
        {.kind = HEAD_MLP, .d_model = 8, .hidden = -1},
        {.kind = HEAD_MLP, .d_model = 8, .hidden = 100000},
        {.kind = HEAD_LINEAR, .query_aware = true, .d_model = 8, .rank = 5000},
        {.kind = HEAD_LINEAR, .d_model = 8, .layer = -1},
        {.kind = (head_kind)7, .d_model = 8},
        {.kind = HEAD_LINEAR, .d_model = 8, .n_out = -1},
        {.kind = HEAD_LINEAR, .d_model = 8, .n_out = 65537},
        {.kind = HEAD_LINEAR, .d_model = 8, .target = (head_target)5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        head *h = (head *)&h;
        TT_FAILS(head_new(&h, &bad[i], 0), TIS_EINVAL);
        TT_CHECK(h == NULL);
    }
}

/* ---- features ------------------------------------------------------------ */

static void test_features(void) {
    TT_CASE("features");
    head *h = s_new(HEAD_LINEAR, false, 2, 0, 0, 1);
    if (!h) return;
    h->mean[0] = 0.1f, h->std[0] = 2.0f;
    const float x[4] = {3, 4, -1, 0};
    float f[4], q[2];
    TT_OK(head_features(h, x, NULL, 2, f));
    const double r0 = 1 / sqrt(12.5 + 1e-6), r1 = 1 / sqrt(0.5 + 1e-6);
    TT_NEAR(f[0], (3 * r0 - 0.1) / 2, 1e-6);
    TT_NEAR(f[1], 4 * r0, 1e-6);
    TT_NEAR(f[2], (-1 * r1 - 0.1) / 2, 1e-6);
    TT_NEAR(f[3], 0, 1e-6);
    head_query(h, x, 2, q);
    TT_NEAR(q[0], (f[0] + f[2]) / 2, 1e-6);
    TT_NEAR(q[1], (f[1] + f[3]) / 2, 1e-6);
    head_destroy(&h);
}

/* ---- forward against naive loops; chunked rows against single rows ------- */

/* Output o of the head at one row f[d]. */
static double s_naive_out(const head *h, const float *f, const float *q, int64_t o) {
    const head_config *c = &h->cfg;
    const int64_t d = c->d_model, d_in = c->kind == HEAD_MLP ? c->hidden : d;
    const float *w = h->w_out + o * d_in;
    double s = h->b_out[o];
    if (c->kind == HEAD_LINEAR) {
        for (int64_t k = 0; k < d; k++) s += (double)w[k] * f[k];
    } else {
        for (int64_t u = 0; u < c->hidden; u++) {
            double z = h->b1[u];
            for (int64_t k = 0; k < d; k++) z += (double)h->w1[u * d + k] * f[k];
            s += w[u] * (z > 0 ? z : 0);
        }
    }
    if (c->query_aware) {
        double dot = 0;
        for (int64_t r = 0; r < c->rank; r++) {
            double a = 0, b = 0;
            for (int64_t k = 0; k < d; k++) {
                a += (double)h->pk[r * d + k] * f[k];
                b += (double)h->pq[r * d + k] * q[k];
            }
            dot += a * b;
        }
        s += dot / sqrt((double)c->rank);
    }
    return s;
}

static double s_naive(const head *h, const float *f, const float *q) { return s_naive_out(h, f, q, 0); }

static void test_forward_naive(void) {
    TT_CASE("forward_naive");
    enum { N = 600, D = 8 }; /* N spans several HEAD_CHUNK blocks */
    head *h = s_new(HEAD_MLP, true, D, 5, 3, 9);
    if (!h) return;
    uint64_t st = 5;
    s_fill(h->b1, 5, 0.3f, &st);
    h->b_out[0] = 0.25f;
    float *f = malloc(N * D * sizeof(float)), s[N], q[D], ds[N], one;
    s_fill(f, N * D, 1.0f, &st);
    s_fill(q, D, 1.0f, &st);
    s_fill(ds, N, 1.0f, &st);
    TT_OK(head_forward(h, f, N, q, s));
    double err = 0, err1 = 0;
    for (int64_t j = 0; j < N; j++) {
        err = fmax(err, fabs(s[j] - s_naive(h, f + j * D, q)));
        TT_OK(head_forward(h, f + j * D, 1, q, &one));
        err1 = fmax(err1, fabs(s[j] - one));
    }
    TT_NEAR(err, 0, 1e-5);
    TT_NEAR(err1, 0, 1e-5);
    /* backward over N rows = the sum of N one-row backwards; and += */
    float *g = calloc((size_t)h->n_params, sizeof(float));
    float *g1 = calloc((size_t)h->n_params, sizeof(float));
    TT_OK(head_backward(h, f, N, q, ds, g));
    for (int64_t j = 0; j < N; j++) TT_OK(head_backward(h, f + j * D, 1, q, ds + j, g1));
    double gerr = 0, gmax = 0;
    for (int64_t i = 0; i < h->n_params; i++) {
        gerr = fmax(gerr, fabs(g[i] - g1[i]));
        gmax = fmax(gmax, fabs(g[i]));
    }
    TT_CHECK(gmax > 1);
    TT_NEAR(gerr / gmax, 0, 1e-5);
    TT_OK(head_backward(h, f, N, q, ds, g)); /* accumulates: now twice */
    for (int64_t i = 0; i < h->n_params; i++) gerr = fmax(gerr, fabs(g[i] - 2 * g1[i]));
    TT_NEAR(gerr / gmax, 0, 1e-5);
    TT_FAILS(head_forward(h, f, N, NULL, s), TIS_EINVAL); /* query-aware needs q */
    TT_FAILS(head_forward(h, f, -1, q, s), TIS_EINVAL);
    TT_OK(head_forward(h, f, 0, q, s));
    free(f);
    free(g);
    free(g1);
    head_destroy(&h);
}

/* ---- gradient check ------------------------------------------------------ */

static double s_loss(const head *h, const float *f, int64_t n, const float *q, const float *y,
                     head_loss lk, float *s, float *ds, int64_t n_out) {
    if (head_forward(h, f, n, q, s) != 0) return NAN;
    return head_loss_eval(lk, s, y, n_out * n, 0.3, ds);
}

/* The smallest |pre-activation| of an mlp head's hidden units over rows f[n][d]. */
static double s_min_preact(const head *h, const float *f, int64_t n) {
    const int64_t d = h->cfg.d_model;
    double m = INFINITY;
    for (int64_t j = 0; j < n; j++)
        for (int64_t u = 0; u < h->cfg.hidden; u++) {
            double z = h->b1[u];
            for (int64_t k = 0; k < d; k++) z += (double)h->w1[u * d + k] * f[j * d + k];
            m = fmin(m, fabs(z));
        }
    return m;
}

static const char *s_loss_name(head_loss lk) {
    return lk == LOSS_BCE_TOPK ? "bce_topk" : lk == LOSS_RECON_MSE ? "recon_mse" : lk == LOSS_RECON_RANK ? "recon_rank" : "listwise";
}

/* Every trained parameter's gradient against central differences, for a
 * head of n_out outputs (the loss sees all n_out * N scores at once). */
static void s_gradcheck_pos(head_kind kind, bool qa, head_loss lk, int64_t n_out, int64_t n_pos) {
    enum { N = 7, D = 8, MAX_OUT = 4 };
    TT_CASE("gradcheck %s%s, %s, %lld outputs%s", kind == HEAD_MLP ? "mlp" : "linear",
            qa ? " query-aware" : "", s_loss_name(lk), (long long)n_out, n_pos ? ", positional inputs" : "");
    head *h = s_new_pos(kind, qa, D, 5, 3, n_out, n_pos, 11 + (uint64_t)kind * 2 + qa);
    if (!h) return;
    uint64_t st = 77 + (uint64_t)lk + 5 * (uint64_t)n_out;
    /* non-trivial biases and normalisation (mean/std must get no gradient) */
    for (int64_t i = 0; i < head_n_trained(h); i++) h->params[i] += 0.3f * tt_randf(&st);
    const int64_t ns = n_out * N;
    float f[N * D], q[D], y[MAX_OUT * N], s[MAX_OUT * N], ds[MAX_OUT * N];
    /* features with every relu input at least 0.05 from the kink, so that no
       difference step (eps * |f| <= 0.0075) crosses it */
    for (int tries = 0; tries < 1000; tries++) {
        s_fill(f, N * D, 1.5f, &st);
        if (kind != HEAD_MLP || s_min_preact(h, f, N) > 0.05) break;
    }
    s_fill(q, D, 1.5f, &st);
    double ysum = 0;
    for (int64_t j = 0; j < ns; j++) ysum += y[j] = 1.1f + tt_randf(&st);
    for (int64_t j = 0; j < ns; j++) y[j] = (float)(y[j] / ysum);
    if (lk == LOSS_RECON_MSE || lk == LOSS_RECON_RANK) /* raw scores in [0, 1], some under the floor */
        for (int64_t j = 0; j < ns; j++) y[j] = j % 5 == 3 ? 1e-8f : 0.5f + 0.5f * tt_randf(&st);
    const float *qp = qa ? q : NULL;
    s_loss(h, f, N, qp, y, lk, s, ds, n_out);
    float *g = calloc((size_t)h->n_params, sizeof(float));
    TT_OK(head_backward(h, f, N, qp, ds, g));
    if (kind == HEAD_MLP) TT_CHECK(s_min_preact(h, f, N) > 0.05);
    const double eps = 5e-3;
    int bad = 0;
    double gmax = 0;
    for (int64_t i = 0; i < head_n_trained(h); i++) {
        const float p0 = h->params[i];
        h->params[i] = (float)(p0 + eps);
        const double lp = s_loss(h, f, N, qp, y, lk, s, NULL, n_out);
        h->params[i] = (float)(p0 - eps);
        const double lm = s_loss(h, f, N, qp, y, lk, s, NULL, n_out);
        h->params[i] = p0;
        const double num = (lp - lm) / (2 * eps), an = g[i], err = fabs(num - an);
        gmax = fmax(gmax, fabs(an));
        if (!(err < 1e-4 || err < 1e-2 * fmax(fabs(num), fabs(an)))) {
            if (bad++ < 5)
                fprintf(stderr, "gradcheck kind %d qa %d loss %d n_out %lld: param %lld: analytic %g, "
                        "numeric %g\n", (int)kind, (int)qa, (int)lk, (long long)n_out, (long long)i, an, num);
        }
    }
    TT_CHECK(bad == 0);
    TT_CHECK(gmax > 1e-2); /* the check compared real gradients */
    bool rest_zero = true;
    for (int64_t i = head_n_trained(h); i < h->n_params; i++) rest_zero &= g[i] == 0;
    TT_CHECK(rest_zero);
    free(g);
    head_destroy(&h);
}

static void s_gradcheck(head_kind kind, bool qa, head_loss lk, int64_t n_out) {
    s_gradcheck_pos(kind, qa, lk, n_out, 0);
}

static void test_gradcheck(void) {
    /* positional inputs: the features are 2 wider (d_model 6 + 2 = the same 8) */
    s_gradcheck_pos(HEAD_MLP, false, LOSS_RECON_MSE, 4, 2);
    s_gradcheck_pos(HEAD_LINEAR, false, LOSS_RECON_MSE, 4, 2);
    for (int kind = 0; kind < 2; kind++)
        for (int qa = 0; qa < 2; qa++) {
            for (int lk = 0; lk < 3; lk++) s_gradcheck((head_kind)kind, qa, (head_loss)lk, 1);
            /* per-head outputs: the recon loss, and listwise over all outputs (any loss's
               ds goes through the same backward) */
            s_gradcheck((head_kind)kind, qa, LOSS_RECON_MSE, 4);
            s_gradcheck((head_kind)kind, qa, LOSS_RECON_RANK, 4);
            s_gradcheck((head_kind)kind, qa, LOSS_LISTWISE, 3);
        }
}

/* Per-head forward against naive loops over several HEAD_CHUNK blocks, and
 * backward over N rows against N one-row backwards, for every kind. */
static void test_forward_multi(void) {
    enum { N = 520, D = 8, NO = 5 };
    for (int kind = 0; kind < 2; kind++)
        for (int qa = 0; qa < 2; qa++) {
            TT_CASE("forward %s%s, %d outputs", kind ? "mlp" : "linear", qa ? " query-aware" : "", NO);
            head *h = s_new_out((head_kind)kind, qa, D, 6, 3, NO, 31 + (uint64_t)(2 * kind + qa));
            if (!h) return;
            TT_CHECK(head_n_trained(h) == NO * (kind ? 6 : D) + NO + (kind ? 6 * D + 6 : 0) +
                                              (qa ? 2 * 3 * D : 0));
            uint64_t st = 8;
            s_fill(h->b_out, NO, 0.5f, &st);
            float *f = malloc(N * D * sizeof(float)), *s = malloc(NO * N * sizeof(float));
            float *ds = malloc(NO * N * sizeof(float)), q[D], one[NO], ds1[NO];
            s_fill(f, N * D, 1.0f, &st);
            s_fill(q, D, 1.0f, &st);
            s_fill(ds, NO * N, 1.0f, &st);
            const float *qp = qa ? q : NULL;
            TT_OK(head_forward(h, f, N, qp, s));
            double err = 0, err1 = 0;
            for (int64_t j = 0; j < N; j++) {
                TT_OK(head_forward(h, f + j * D, 1, qp, one));
                for (int64_t o = 0; o < NO; o++) {
                    err = fmax(err, fabs(s[o * N + j] - s_naive_out(h, f + j * D, q, o)));
                    err1 = fmax(err1, fabs(s[o * N + j] - one[o]));
                }
            }
            TT_NEAR(err, 0, 1e-5);
            TT_NEAR(err1, 0, 1e-5);
            float *g = calloc((size_t)h->n_params, sizeof(float));
            float *g1 = calloc((size_t)h->n_params, sizeof(float));
            TT_OK(head_backward(h, f, N, qp, ds, g));
            for (int64_t j = 0; j < N; j++) {
                for (int64_t o = 0; o < NO; o++) ds1[o] = ds[o * N + j];
                TT_OK(head_backward(h, f + j * D, 1, qp, ds1, g1));
            }
            double gerr = 0, gmax = 0;
            for (int64_t i = 0; i < h->n_params; i++) {
                gerr = fmax(gerr, fabs(g[i] - g1[i]));
                gmax = fmax(gmax, fabs(g[i]));
            }
            TT_CHECK(gmax > 1);
            TT_NEAR(gerr / gmax, 0, 1e-5);
            free(f);
            free(s);
            free(ds);
            free(g);
            free(g1);
            head_destroy(&h);
        }
}

/* ---- losses, recall, Adam on hand-computed cases ------------------------- */

static void test_losses(void) {
    TT_CASE("losses");
    float ds[4];
    {   /* listwise, uniform scores, one-hot label: log 2 */
        const float s[2] = {0, 0}, y[2] = {1, 0};
        TT_NEAR(head_loss_eval(LOSS_LISTWISE, s, y, 2, 0, ds), log(2.0), 1e-12);
        TT_NEAR(ds[0], -0.5, 1e-7);
        TT_NEAR(ds[1], 0.5, 1e-7);
    }
    {   /* p = (3/4, 1/4) against y = (1/2, 1/2) */
        const float s[2] = {(float)log(3.0), 0}, y[2] = {0.5f, 0.5f};
        TT_NEAR(head_loss_eval(LOSS_LISTWISE, s, y, 2, 0, ds), -0.5 * log(0.75) - 0.5 * log(0.25),
                1e-7);
        TT_NEAR(ds[0], 0.25, 1e-7);
        TT_NEAR(ds[1], -0.25, 1e-7);
    }
    {   /* stable for large logits */
        const float s[2] = {1000, 0}, y0[2] = {1, 0}, y1[2] = {0, 1};
        TT_NEAR(head_loss_eval(LOSS_LISTWISE, s, y0, 2, 0, ds), 0, 1e-12);
        TT_NEAR(head_loss_eval(LOSS_LISTWISE, s, y1, 2, 0, ds), 1000, 1e-9);
        TT_NEAR(ds[0], 1, 1e-7);
        TT_NEAR(ds[1], -1, 1e-7);
    }
    {   /* bce: k = 1 of 4; tie at y = 0.4 goes to the lower index (1) */
        const float s[4] = {0, 0, 0, 0}, y[4] = {0.1f, 0.4f, 0.4f, 0.1f};
        TT_NEAR(head_loss_eval(LOSS_BCE_TOPK, s, y, 4, 0.25, ds), log(2.0), 1e-12);
        TT_NEAR(ds[1], 0.5 * (0.5 - 1), 1e-7);
        TT_NEAR(ds[0], 0.5 / 3 * 0.5, 1e-7);
        TT_NEAR(ds[2], 0.5 / 3 * 0.5, 1e-7);
        /* frac 0 still makes one positive */
        TT_NEAR(head_loss_eval(LOSS_BCE_TOPK, s, y, 4, 0.0, ds), log(2.0), 1e-12);
        TT_NEAR(ds[1], -0.25, 1e-7);
    }
    {   /* bce: k = 1 of 2, s = (2, -1), positive is index 1 */
        const float s[2] = {2, -1}, y[2] = {0, 1};
        const double sig2 = 1 / (1 + exp(-2.0)), sigm1 = 1 / (1 + exp(1.0));
        TT_NEAR(head_loss_eval(LOSS_BCE_TOPK, s, y, 2, 0.5, ds),
                0.5 * log(1 + exp(2.0)) + 0.5 * log(1 + exp(1.0)), 1e-7);
        TT_NEAR(ds[0], 0.5 * sig2, 1e-7);
        TT_NEAR(ds[1], 0.5 * (sigm1 - 1), 1e-7);
        /* all positives (k == n): plain mean of -log sigmoid */
        TT_NEAR(head_loss_eval(LOSS_BCE_TOPK, s, y, 2, 1.0, ds),
                0.5 * log(1 + exp(-2.0)) + 0.5 * log(1 + exp(1.0)), 1e-7);
        TT_NEAR(ds[0], 0.5 * (sig2 - 1), 1e-7);
        const float big[2] = {500, -500}; /* both wrong by 500 */
        TT_NEAR(head_loss_eval(LOSS_BCE_TOPK, big, y, 2, 0.5, ds), 500, 1e-9);
    }
    {   /* recon_mse: targets ln(y), y floored at 1e-6; mean of squares, ds = 2 e / n */
        const float s[3] = {0, -1, -10}, y[3] = {1, 0.5f, 0};
        const double e1 = -1 - log(0.5), e2 = -10 - log(1e-6);
        TT_NEAR(head_loss_eval(LOSS_RECON_MSE, s, y, 3, 0, ds), (e1 * e1 + e2 * e2) / 3, 1e-9);
        TT_NEAR(ds[0], 0, 1e-7);
        TT_NEAR(ds[1], 2 * e1 / 3, 1e-6);
        TT_NEAR(ds[2], 2 * e2 / 3, 1e-5);
        const float exact[2] = {(float)log(0.25), 0}, y2[2] = {0.25f, 1};
        TT_NEAR(head_loss_eval(LOSS_RECON_MSE, exact, y2, 2, 0, ds), 0, 1e-12);
    }
    TT_NEAR(head_loss_eval(LOSS_LISTWISE, NULL, NULL, 0, 0, NULL), 0, 0);
}

/* recon losses with a weight per stream: the formula, the unweighted
 * equivalence, and ds against central differences. */
static void test_loss_weights(void) {
    TT_CASE("recon loss: stream weights");
    {   /* per-stream weights: 2 streams of 2 tokens */
        const float s[4] = {0, -1, -2, -3}, y[4] = {1, 0.5f, 0.25f, 1e-3f}, w[2] = {0.5f, 1.5f};
        float d0[4], d1[4];
        double e[4];
        for (int j = 0; j < 4; j++) e[j] = s[j] - log(y[j]);
        const double m0 = (e[0] * e[0] + e[1] * e[1]) / 2, m1 = (e[2] * e[2] + e[3] * e[3]) / 2;
        TT_NEAR(head_loss_recon(LOSS_RECON_MSE, s, y, 2, 2, w, d0), (0.5 * m0 + 1.5 * m1) / 2, 1e-9);
        TT_NEAR(d0[1], 0.5 * 2 * e[1] / 2 / 2, 1e-7);
        TT_NEAR(d0[3], 1.5 * 2 * e[3] / 2 / 2, 1e-6);
        /* no weights: head_loss_eval over the 4 values, for both recon losses */
        for (int k = 0; k < 2; k++) {
            head_loss lk = k ? LOSS_RECON_RANK : LOSS_RECON_MSE;
            TT_NEAR(head_loss_recon(lk, s, y, 2, 2, NULL, d0), head_loss_eval(lk, s, y, 4, 0, d1), 1e-12);
            for (int j = 0; j < 4; j++) TT_NEAR(d0[j], d1[j], 1e-9);
            const float ones[2] = {1, 1};
            TT_NEAR(head_loss_recon(lk, s, y, 2, 2, ones, d0), head_loss_eval(lk, s, y, 4, 0, NULL), 1e-9);
            for (int j = 0; j < 4; j++) TT_NEAR(d0[j], d1[j], 1e-7);
            /* weighted: ds against central differences */
            head_loss_recon(lk, s, y, 2, 2, w, d0);
            for (int j = 0; j < 4; j++) {
                float sp[4], sm[4];
                memcpy(sp, s, sizeof sp);
                memcpy(sm, s, sizeof sm);
                sp[j] += 1e-3f;
                sm[j] -= 1e-3f;
                double num = (head_loss_recon(lk, sp, y, 2, 2, w, NULL) - head_loss_recon(lk, sm, y, 2, 2, w, NULL)) / 2e-3;
                TT_NEAR(d0[j], num, 1e-3);
            }
        }
    }
}

static void test_recall(void) {
    TT_CASE("recall");
    enum { N = 70 };
    float y[N], s[N];
    for (int i = 0; i < N; i++) y[i] = s[i] = (float)(N - i);
    TT_NEAR(head_recall_at(s, y, N, 0.1), 1.0, 0);
    /* swap ranks 7 and 8 of s: k = ceil(0.1 * 70) = 7 (not 8): 6 of 7 */
    s[6] = (float)(N - 7), s[7] = (float)(N - 6);
    TT_NEAR(head_recall_at(s, y, N, 0.1), 6.0 / 7.0, 1e-12);
    TT_NEAR(head_recall_at(s, y, N, 8.0 / 70.0), 1.0, 0);
    /* reversed: nothing in common */
    for (int i = 0; i < N; i++) s[i] = (float)i;
    TT_NEAR(head_recall_at(s, y, N, 0.1), 0.0, 0);
    TT_NEAR(head_recall_at(s, y, N, 1.0), 1.0, 0);
    {   /* ties by lower index, NaN last */
        const float yy[6] = {1, 1, 1, 0, 0, 0}, flat[6] = {0, 0, 0, 0, 0, 0},
                    late[6] = {0, 0, 0, 1, 1, 1}, nan3[6] = {NAN, 2, 2, 2, 0, 0};
        TT_NEAR(head_recall_at(flat, yy, 6, 0.5), 1.0, 0);
        TT_NEAR(head_recall_at(late, yy, 6, 0.5), 0.0, 0);
        TT_NEAR(head_recall_at(nan3, yy, 6, 0.5), 2.0 / 3.0, 1e-12);
        TT_NEAR(head_recall_at(late, yy, 6, 0.0), 0.0, 0); /* k = 1: index 0 vs 3 */
    }
    TT_NEAR(head_recall_at(NULL, NULL, 0, 0.1), 1.0, 0);
}

static void test_adam(void) {
    TT_CASE("adam");
    float p[2] = {1, 1}, g[2] = {0.5f, -2}, m[2] = {0, 0}, v[2] = {0, 0};
    head_adam_step(p, g, m, v, 2, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f);
    /* first step: m_hat / sqrt(v_hat) = sign(g) */
    TT_NEAR(p[0], 0.9, 1e-6);
    TT_NEAR(p[1], 1.1, 1e-6);
    head_adam_step(p, g, m, v, 2, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f);
    TT_NEAR(p[0], 0.8, 1e-6);
    float w[1] = {1}, gw[1] = {0.5f}, mw[1] = {0}, vw[1] = {0};
    head_adam_step(w, gw, mw, vw, 1, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    TT_NEAR(w[0], 1 * (1 - 0.1 * 0.1) - 0.1, 1e-6); /* decoupled decay */
    float z[1] = {2}, gz[1] = {0}, mz[1] = {0}, vz[1] = {0};
    head_adam_step(z, gz, mz, vz, 1, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f);
    TT_NEAR(z[0], 2 * (1 - 0.05), 1e-6); /* decay acts without a gradient */
}

/* ---- training sanity ----------------------------------------------------- */

static void test_train(void) {
    TT_CASE("train");
    /* 16 training + 4 held-out samples of 100 rows: the label is the
     * softmax of 3 * f[:, 0], the other 15 dims are noise. */
    enum { S = 20, S_TRAIN = 16, N = 100, D = 16 };
    head *h = s_new(HEAD_MLP, false, D, 32, 0, 5);
    if (!h) return;
    uint64_t st = 123;
    float *f = malloc(S * N * D * sizeof(float)), y[S][N], s[N], ds[N];
    s_fill(f, S * N * D, 1.7f, &st);
    double ent = 0; /* the least possible loss: the labels' entropy */
    for (int k = 0; k < S; k++) {
        double z = 0;
        for (int j = 0; j < N; j++) z += y[k][j] = expf(3 * f[(k * N + j) * D]);
        for (int j = 0; j < N; j++) y[k][j] = (float)(y[k][j] / z);
        for (int j = 0; k < S_TRAIN && j < N; j++) ent -= y[k][j] * log(y[k][j]) / S_TRAIN;
    }
    const int64_t np = h->n_params, nt = head_n_trained(h);
    float *g = malloc((size_t)np * sizeof(float));
    float *m = calloc((size_t)nt, sizeof(float)), *v = calloc((size_t)nt, sizeof(float));
    double first = 0, last = 0;
    for (int t = 1; t <= 200; t++) {
        memset(g, 0, (size_t)np * sizeof(float));
        double loss = 0;
        for (int k = 0; k < S_TRAIN; k++) {
            TT_CHECK(head_forward(h, f + k * N * D, N, NULL, s) == 0);
            loss += head_loss_eval(LOSS_LISTWISE, s, y[k], N, 0, ds) / S_TRAIN;
            for (int j = 0; j < N; j++) ds[j] /= S_TRAIN;
            TT_CHECK(head_backward(h, f + k * N * D, N, NULL, ds, g) == 0);
        }
        if (t == 1) first = loss;
        last = loss;
        head_adam_step(h->params, g, m, v, nt, t, 2e-2f, 0.9f, 0.999f, 1e-8f, 0.0f);
    }
    double rec = 0;
    for (int k = S_TRAIN; k < S; k++) {
        TT_OK(head_forward(h, f + k * N * D, N, NULL, s));
        rec += head_recall_at(s, y[k], N, 0.1) / (S - S_TRAIN);
    }
    printf("train: loss %.4f -> %.4f (entropy %.4f), held-out recall@10%% %.2f\n", first, last,
           ent, rec);
    TT_CHECK(last - ent < 0.1 * (first - ent)); /* 90% of the way to the optimum */
    TT_CHECK(rec > 0.8);
    free(f);
    free(g);
    free(m);
    free(v);
    head_destroy(&h);
}

/* head_repeats against the definition, by brute force; the repetition
 * inputs of a head (n_rep 2), which need the ids. */
static void s_repeats_naive(const int32_t *ids, int64_t n, float *out) {
    const int64_t K = HEAD_REP_K;
    for (int64_t j = 0; j < 2 * n; j++) out[j] = 0;
    for (int64_t s = 0; s + K <= n; s++)
        for (int64_t t = 0; t + K <= n; t++) {
            if (t == s || memcmp(ids + s, ids + t, (size_t)K * sizeof *ids)) continue;
            for (int64_t j = s; j < s + K; j++) out[2 * j + (t > s)] = 1;
        }
}

static void test_repeats(void) {
    TT_CASE("repetition inputs");
    enum { N = 300 };
    int32_t ids[N];
    float a[2 * N], b[2 * N];
    /* a chunk of 20 said three times with other tokens between; small
       vocabularies so that chance repeats happen too */
    uint64_t st = 9;
    for (int vocab = 3; vocab <= 1000; vocab *= 10) {
        for (int i = 0; i < N; i++) ids[i] = (int32_t)((tt_randf(&st) + 1.0f) * 0.5f * (float)vocab) % vocab + 100;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 20; i++) ids[40 + 90 * c + i] = 7 + i;
        TT_OK(head_repeats(ids, N, a));
        s_repeats_naive(ids, N, b);
        TT_CHECK(memcmp(a, b, sizeof a) == 0);
    }
    /* the last vocabulary (300): the three copies and nothing else (no chance 8-gram) */
    TT_CHECK(a[2 * 40] == 0 && a[2 * 40 + 1] == 1);     /* first copy: later only */
    TT_CHECK(a[2 * 140] == 1 && a[2 * 140 + 1] == 1);   /* middle: both */
    TT_CHECK(a[2 * 239] == 1 && a[2 * 239 + 1] == 0);   /* last: earlier only */
    TT_CHECK(a[2 * 10] == 0 && a[2 * 10 + 1] == 0 && a[2 * 100] == 0);
    /* shorter than a window: none */
    TT_OK(head_repeats(ids, HEAD_REP_K - 1, a));
    for (int j = 0; j < 2 * (HEAD_REP_K - 1); j++) TT_CHECK(a[j] == 0);
    TT_OK(head_repeats(ids, 0, a));
    /* a head with them: standardised flags after the positions */
    head_config c = {.kind = HEAD_MLP, .d_model = 2, .hidden = 5, .layer = 1, .n_out = 3, .n_pos = 2, .n_rep = 2,
                     .target = HEAD_TARGET_RECON};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL;
    head_config bad = c;
    bad.n_rep = 1;
    TT_FAILS(head_new(&h, &bad, 1), TIS_EINVAL);
    bad.n_rep = 2, bad.n_pos = 0, bad.query_aware = true;
    TT_FAILS(head_new(&h, &bad, 1), TIS_EINVAL);
    TT_OK(head_new(&h, &c, 1));
    if (!h) return;
    TT_CHECK(head_feat_dim(h) == 6);
    h->mean[4] = 0.5f, h->std[4] = 0.25f, h->mean[5] = 0, h->std[5] = 2;
    float x[2 * N], f[6 * N], s1[3 * N], s2[3 * N];
    for (int i = 0; i < 2 * N; i++) x[i] = tt_randf(&st) + 0.5f;
    TT_FAILS(head_features(h, x, NULL, N, f), TIS_EINVAL);
    TT_OK(head_features(h, x, ids, N, f));
    TT_OK(head_repeats(ids, N, a));
    bool ok = true;
    for (int j = 0; j < N; j++) ok &= f[6 * j + 4] == (a[2 * j] - 0.5f) / 0.25f && f[6 * j + 5] == a[2 * j + 1] / 2;
    TT_CHECK(ok);
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    TT_OK(head_features(h, x, ids, N, f));
    TT_OK(head_forward(h, f, N, NULL, s2));
    TT_FAILS(head_score_context(h, x, NULL, 0, N, 0, 0, s1), TIS_EINVAL);
    TT_OK(head_score_context(h, x, ids, 0, N, 0, 0, s1));
    TT_CHECK(memcmp(s1, s2, sizeof s1) == 0);
    head_destroy(&h);
}

static void test_positions(void) {
    TT_CASE("positions");
    head_config c = {.kind = HEAD_MLP, .d_model = 2, .hidden = 5, .layer = 1, .n_out = 3, .n_pos = 2,
                     .target = HEAD_TARGET_RECON};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL;
    head_config bad = c;
    bad.n_pos = 1;
    TT_FAILS(head_new(&h, &bad, 1), TIS_EINVAL);
    bad.n_pos = 2, bad.query_aware = true;
    TT_FAILS(head_new(&h, &bad, 1), TIS_EINVAL);
    TT_OK(head_new(&h, &c, 1));
    if (!h) return;
    TT_CHECK(head_feat_dim(h) == 4 && h->n_params == 3 * 5 + 3 + 5 * 4 + 5 + 4 + 4);
    h->mean[2] = 1.0f, h->std[2] = 2.0f, h->mean[3] = 0.5f, h->std[3] = 4.0f;
    const float x[6] = {3, 4, -1, 0, 2, 2};
    float f[12];
    TT_OK(head_features(h, x, NULL, 3, f));
    const double r0 = 1 / sqrt(12.5 + 1e-6);
    TT_NEAR(f[0], 3 * r0, 1e-6);
    TT_NEAR(f[1], 4 * r0, 1e-6);
    for (int i = 0; i < 3; i++) { /* token i of 3: 10 i / 3 and ln(1 + i), standardised */
        TT_NEAR(f[4 * i + 2], (10.0 * i / 3 - 1.0) / 2.0, 1e-6);
        TT_NEAR(f[4 * i + 3], (log1p(i) - 0.5) / 4.0, 1e-6);
    }
    uint64_t st = 5;
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    /* scoring a context = its features through the forward */
    float s1[9], s2[9];
    const float hid[10] = {9, 9, 3, 4, -1, 0, 2, 2, 9, 9}; /* the context is rows 1..3 */
    TT_OK(head_score_context(h, hid, NULL, 1, 3, 0, 0, s1));
    TT_OK(head_forward(h, f, 3, NULL, s2));
    TT_CHECK(memcmp(s1, s2, sizeof s1) == 0);
    head_destroy(&h);
}
/* Calibration: a monotone map per output from the training outputs'
 * quantiles to the targets'. Where each stream's target is an increasing
 * function of its output, the map recovers that function between the
 * knots; every stream's order is kept; slope 1 beyond the ends; scoring a
 * context goes through it. */
static double s_target_of(int64_t o, double p) { return o == 0 ? 2 * p - 3 : o == 1 ? exp(p) : -10 + 0.1 * p * p * p; }

static void test_calibration(void) {
    TT_CASE("calibration");
    enum { NO = 3, N = 4000 };
    head *h = s_new_out(HEAD_MLP, false, 4, 6, 0, NO, 3), *one = s_new(HEAD_MLP, false, 4, 6, 0, 3);
    if (!h || !one) return;
    float *pred = malloc(NO * N * sizeof(float)), *tgt = malloc(NO * N * sizeof(float));
    uint64_t st = 7;
    for (int64_t o = 0; o < NO; o++)
        for (int64_t j = 0; j < N; j++) {
            double p = 2.0 * tt_randf(&st); /* roughly in [-2, 2] */
            pred[o * N + j] = (float)p;
            tgt[o * N + j] = (float)s_target_of(o, p);
        }
    TT_FAILS(head_calibrate(one, pred, tgt, N), TIS_EINVAL);
    TT_FAILS(head_calibrate(h, pred, tgt, 1), TIS_EINVAL);
    pred[5] = NAN;
    TT_FAILS(head_calibrate(h, pred, tgt, N), TIS_EINVAL);
    pred[5] = 0.5f;
    tgt[5] = (float)s_target_of(0, 0.5);
    TT_OK(head_calibrate(h, pred, tgt, N));
    TT_CHECK(h->n_calib == HEAD_CALIB_KNOTS && h->calib_x && h->calib_y);
    /* between the knots: the function itself, up to the knots' spacing */
    enum { M = 64 };
    float v[NO * M], w[NO * M];
    for (int64_t o = 0; o < NO; o++)
        for (int64_t j = 0; j < M; j++) v[o * M + j] = w[o * M + j] = -1.5f + 3.0f * (float)j / (M - 1);
    head_apply_calibration(h, w, M);
    double worst = 0;
    for (int64_t o = 0; o < NO; o++)
        for (int64_t j = 0; j < M; j++) {
            double want = s_target_of(o, v[o * M + j]), e = fabs(w[o * M + j] - want) / (1 + fabs(want));
            worst = e > worst ? e : worst;
            if (j) TT_CHECK(w[o * M + j] > w[o * M + j - 1]); /* order kept */
        }
    fprintf(stderr, "  calibration: worst relative error %.2e\n", worst);
    TT_CHECK(worst < 0.05);
    /* beyond the end knots: slope 1 */
    const int64_t K = h->n_calib;
    float e[NO * 2];
    for (int64_t o = 0; o < NO; o++) {
        e[o * 2] = h->calib_x[o * K] - 3.0f;
        e[o * 2 + 1] = h->calib_x[o * K + K - 1] + 2.0f;
    }
    head_apply_calibration(h, e, 2);
    for (int64_t o = 0; o < NO; o++) {
        TT_NEAR(e[o * 2], h->calib_y[o * K] - 3.0f, 1e-5);
        TT_NEAR(e[o * 2 + 1], h->calib_y[o * K + K - 1] + 2.0f, 1e-5);
    }
    /* scoring a context: the forward, then the calibration */
    float hid[5 * 4], a[NO * 5], b[NO * 5], f[5 * 4];
    for (int i = 0; i < 20; i++) hid[i] = tt_randf(&st);
    TT_OK(head_score_context(h, hid, NULL, 0, 5, 0, 0, a));
    TT_OK(head_features(h, hid, NULL, 5, f));
    TT_OK(head_forward(h, f, 5, NULL, b));
    head_apply_calibration(h, b, 5);
    TT_CHECK(memcmp(a, b, sizeof a) == 0);
    head_uncalibrate(h);
    TT_CHECK(h->n_calib == 0 && !h->calib_x);
    memcpy(b, a, sizeof a);
    head_apply_calibration(h, b, 5); /* none: nothing changes */
    TT_CHECK(memcmp(a, b, sizeof a) == 0);
    free(pred);
    free(tgt);
    head_destroy(&h);
    head_destroy(&one);
}

int main(void) {
    test_new();
    test_features();
    test_positions();
    test_repeats();
    test_loss_weights();
    test_forward_naive();
    test_gradcheck();
    test_forward_multi();
    test_losses();
    test_recall();
    test_adam();
    test_train();
    test_calibration();
    return tt_done("test_head");
}
