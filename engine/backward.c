/* backward: the suffix's forward pass with saved activations, and its
 * backward down to the cache entries' attention bias (backward.h).
 *
 * Forward, per layer (what forward.c computes, with the activations kept):
 *   xn1 = rmsnorm(x_in) ; q, k, v = W.xn1 (+ b) ; q, k = rope(q, k)
 *   P = softmax(q.K^T/sqrt(hd) + bias, causal over the suffix) ; att = P.V
 *   x_mid = x_in + Wo.att ; xn2 = rmsnorm(x_mid)
 *   x_out = x_mid + Wdown.(silu(Wgate.xn2) * Wup.xn2)
 * Backward, from d loss / d logits = softmax(logits) - ref for KL(ref||model),
 * each step the transpose of the one above; d loss / d bias[e] is the sum
 * over the suffix's queries of d loss / d logit(e). */
#include "backward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "quant.h"
#include "tis_error.h"

enum { TILE_ELEMS = 1 << 20 }; /* dequantised weight tile of the backward products: 4 MiB */

/* Activations of one layer, [T][...] rows. */
typedef struct layer_acts {
    float *x_in, *xn1, *r1, *q, *k, *v, *att, *x_mid, *xn2, *r2, *g, *u;
} layer_acts;

struct suffix_grad {
    const model *m;
    forward_state *fs;    /* owned: gives the model's RoPE parameters */
    const tis_backend *be;
    int64_t max_T;
    layer_acts *la;       /* [n_layer] */
    float *mem;           /* every layer_acts array */
    float *x, *xf, *rf;   /* [T][d] residual, [T][d] final residual, [T] its rms */
    float *h;             /* [T][d_ff] silu(g) * u */
    float *dx, *dxn, *dh, *dg, *du, *datt, *dq, *dk, *dv; /* backward scratch */
    float *tile;          /* [TILE_ELEMS] */
    int32_t *pos, *npos;  /* [T] positions, negated positions */
    /* grown per call */
    float *P;             /* attention probabilities of every (layer, head) */
    size_t P_cap;
    float *kall, *vall, *ds; /* a stream's keys / values (+ the suffix's), d scores */
    size_t kall_cap, vall_cap, ds_cap;
    float *logits, *xnf;  /* [n_rows][n_vocab], [n_rows][d] */
    size_t lg_cap, xnf_cap;
};

static float *s_f(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

static int s_grow(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    float *q = realloc(*p, n * sizeof(float));
    if (!q) return tis_error(TIS_ENOMEM, "backward: out of memory (%zu floats)", n);
    *p = q;
    *cap = n;
    return 0;
}

int suffix_grad_new(suffix_grad **out, const model *m, int64_t max_T) {
    *out = NULL;
    if (max_T <= 0 || max_T > 4096) return tis_error(TIS_EINVAL, "backward: bad suffix length %lld", (long long)max_T);
    const model_config *c = &m->config;
    suffix_grad *g = calloc(1, sizeof *g);
    if (!g) return tis_error(TIS_ENOMEM, "backward: out of memory");
    g->m = m;
    g->be = backend_cpu();
    g->max_T = max_T;
    int rc = forward_state_new(&g->fs, m, g->be, 1);
    if (rc) {
        free(g);
        return rc;
    }
    size_t T = (size_t)max_T, d = (size_t)c->d_model, qd = (size_t)(c->n_head * c->head_dim),
           kd = (size_t)(c->n_kv_head * c->head_dim), ff = (size_t)c->d_ff;
    size_t per = T * (4 * d + 2 + 2 * qd + 2 * kd + 2 * ff);
    g->la = calloc((size_t)c->n_layer, sizeof *g->la);
    g->mem = s_f(per * (size_t)c->n_layer);
    g->x = s_f(T * d), g->xf = s_f(T * d), g->rf = s_f(T), g->h = s_f(T * ff);
    g->dx = s_f(T * d), g->dxn = s_f(T * d), g->dh = s_f(T * ff), g->dg = s_f(T * ff), g->du = s_f(T * ff);
    g->datt = s_f(T * qd), g->dq = s_f(T * qd), g->dk = s_f(T * kd), g->dv = s_f(T * kd);
    g->tile = s_f(TILE_ELEMS > d && TILE_ELEMS > ff ? TILE_ELEMS : (d > ff ? d : ff));
    g->pos = malloc(T * sizeof *g->pos), g->npos = malloc(T * sizeof *g->npos);
    if (!g->la || !g->mem || !g->x || !g->xf || !g->rf || !g->h || !g->dx || !g->dxn || !g->dh || !g->dg ||
        !g->du || !g->datt || !g->dq || !g->dk || !g->dv || !g->tile || !g->pos || !g->npos) {
        suffix_grad_destroy(&g);
        return tis_error(TIS_ENOMEM, "backward: out of memory for a suffix of %lld tokens", (long long)max_T);
    }
    float *p = g->mem;
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer_acts *a = &g->la[l];
        a->x_in = p, p += T * d;
        a->xn1 = p, p += T * d;
        a->r1 = p, p += T;
        a->q = p, p += T * qd;
        a->k = p, p += T * kd;
        a->v = p, p += T * kd;
        a->att = p, p += T * qd;
        a->x_mid = p, p += T * d;
        a->xn2 = p, p += T * d;
        a->r2 = p, p += T;
        a->g = p, p += T * ff;
        a->u = p, p += T * ff;
    }
    *out = g;
    return 0;
}

void suffix_grad_destroy(suffix_grad **pp) {
    if (!pp || !*pp) return;
    suffix_grad *g = *pp;
    forward_state_destroy(&g->fs);
    float *bufs[] = {g->mem, g->x, g->xf, g->rf, g->h, g->dx, g->dxn, g->dh, g->dg, g->du, g->datt, g->dq,
                     g->dk, g->dv, g->tile, g->P, g->kall, g->vall, g->ds, g->logits, g->xnf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(g->la);
    free(g->pos);
    free(g->npos);
    free(g);
    *pp = NULL;
}

/* y[T][d] = rmsnorm(x) * w, r[t] = 1 / rms(x[t]) kept for the backward. */
static void s_rmsnorm(float *y, float *r, const float *x, const float *w, int64_t T, int64_t d, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)xt[i] * xt[i];
        float rt = (float)(1.0 / sqrt(ss / (double)d + eps));
        r[t] = rt;
        for (int64_t i = 0; i < d; i++) y[t * d + i] = xt[i] * rt * w[i];
    }
}

/* dx[T][d] += d/dx of rmsnorm(x) * w given dy (r from the forward):
 * dx_i = r w_i dy_i - x_i r^3 / d * sum_j dy_j w_j x_j. */
static void s_rmsnorm_back(float *dx, const float *dy, const float *x, const float *r, const float *w, int64_t T,
                           int64_t d) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * d, *dyt = dy + t * d;
        double dot = 0;
        for (int64_t i = 0; i < d; i++) dot += (double)dyt[i] * w[i] * xt[i];
        float rt = r[t], c = (float)((double)rt * rt * rt * dot / (double)d);
        for (int64_t i = 0; i < d; i++) dx[t * d + i] += rt * w[i] * dyt[i] - c * xt[i];
    }
}

/* dx[T][n_in] (+)= dy[T][n_out] . W, W in its file type: f32 matrices
 * directly, others dequantised a tile of rows at a time. */
static void s_matmul_t(suffix_grad *g, float *dx, const float *dy, const tis_weight *w, int64_t T, bool acc) {
    int64_t n_in = w->n_in, n_out = w->n_out;
    if (!acc) memset(dx, 0, (size_t)(T * n_in) * sizeof *dx);
    if (w->type == GGML_TYPE_F32 && w->row_bytes % sizeof(float) == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)n_in, (int)n_out, 1.0f, dy, (int)n_out,
                    w->data, (int)(w->row_bytes / sizeof(float)), 1.0f, dx, (int)n_in);
        return;
    }
    int64_t B = TILE_ELEMS / n_in;
    if (B < 1) B = 1;
    for (int64_t o0 = 0; o0 < n_out; o0 += B) {
        int64_t nb = n_out - o0 < B ? n_out - o0 : B;
        for (int64_t o = 0; o < nb; o++)
            quant_dequantize_row(w->type, (const char *)w->data + (size_t)(o0 + o) * w->row_bytes,
                                 g->tile + o * n_in, n_in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)n_in, (int)nb, 1.0f, dy + o0,
                    (int)n_out, g->tile, (int)n_in, 1.0f, dx, (int)n_in);
    }
}

/* Floats of probabilities every (layer, head) keeps for a suffix of T. */
static size_t s_p_floats(const kv_cache *kv, int64_t n_head, int64_t T) {
    int64_t grp = n_head / kv->n_kv_head;
    size_t n = 0;
    for (int64_t s = 0; s < kv->n_stream; s++) n += (size_t)grp * (size_t)T * (size_t)(kv->len[s] + T);
    return n;
}

/* kall / vall = stream s's entries then the suffix's keys / values of kv head h. */
static void s_stream_kv(suffix_grad *g, const kv_cache *kv, int64_t s, int64_t h, const layer_acts *a, int64_t T) {
    int64_t n = kv->len[s], hd = kv->head_dim, kd = kv->n_kv_head * hd;
    if (n > 0) {
        kv_cache_rows_f32(kv, s, 0, 0, n, g->kall);
        kv_cache_rows_f32(kv, s, 1, 0, n, g->vall);
    }
    for (int64_t u = 0; u < T; u++) {
        memcpy(g->kall + (n + u) * hd, a->k + u * kd + h * hd, (size_t)hd * sizeof(float));
        memcpy(g->vall + (n + u) * hd, a->v + u * kd + h * hd, (size_t)hd * sizeof(float));
    }
}

/* One layer's attention forward: P (kept) and att. *pofs walks g->P. */
static void s_attn_fwd(suffix_grad *g, const kv_cache *kv, const float *bias, int64_t l, layer_acts *a, int64_t T,
                       size_t *pofs) {
    const model_config *c = &g->m->config;
    int64_t hd = c->head_dim, nh = c->n_head, grp = nh / c->n_kv_head, qd = nh * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t kh = 0; kh < c->n_kv_head; kh++) {
        int64_t s = kv_stream(kv, l, kh), n = kv->len[s], L = n + T;
        s_stream_kv(g, kv, s, kh, a, T);
        const float *b = bias ? bias + kv->off[s] : NULL;
        for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
            float *P = g->P + *pofs;
            *pofs += (size_t)(T * L);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)L, (int)hd, scale, a->q + h * hd,
                        (int)qd, g->kall, (int)hd, 0.0f, P, (int)L);
            for (int64_t t = 0; t < T; t++) {
                float *row = P + t * L;
                int64_t vis = n + t + 1;
                if (b)
                    for (int64_t j = 0; j < n; j++) row[j] += b[j];
                float mx = row[0];
                for (int64_t j = 1; j < vis; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0;
                for (int64_t j = 0; j < vis; j++) sum += row[j] = expf(row[j] - mx);
                float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < vis; j++) row[j] *= inv;
                for (int64_t j = vis; j < L; j++) row[j] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)L, 1.0f, P, (int)L,
                        g->vall, (int)hd, 0.0f, a->att + h * hd, (int)qd);
        }
    }
}

/* The suffix's forward: every layer's activations, then the rows' logits in
 * g->logits. */
static int s_forward(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, int64_t T,
                     const int64_t *rows, int64_t n_rows) {
    const model *m = g->m;
    const model_config *c = &m->config;
    const model_weights *w = &m->weights;
    const tis_backend *be = g->be;
    void *bc = be->ctx;
    int64_t d = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv_head * c->head_dim, ff = c->d_ff;
    const rope_params *rp = forward_rope_params(g->fs);
    size_t need = s_p_floats(kv, c->n_head, T), kvn = 0;
    for (int64_t s = 0; s < kv->n_stream; s++)
        if ((size_t)(kv->len[s] + T) > kvn) kvn = (size_t)(kv->len[s] + T);
    int rc = s_grow(&g->P, &g->P_cap, need);
    if (!rc) rc = s_grow(&g->ds, &g->ds_cap, (size_t)T * kvn);
    if (!rc) rc = s_grow(&g->kall, &g->kall_cap, kvn * (size_t)c->head_dim);
    if (!rc) rc = s_grow(&g->vall, &g->vall_cap, kvn * (size_t)c->head_dim);
    if (!rc) rc = s_grow(&g->logits, &g->lg_cap, (size_t)n_rows * (size_t)c->n_vocab);
    if (!rc) rc = s_grow(&g->xnf, &g->xnf_cap, (size_t)n_rows * (size_t)d);
    if (rc) return rc;
    for (int64_t t = 0; t < T; t++) {
        model_embed(m, ids[t], g->x + t * d);
        g->pos[t] = (int32_t)(kv->n_past + t);
        g->npos[t] = -g->pos[t];
    }
    if (be->prompt_step) be->prompt_step(bc, true); /* f32 activations in every product */
    size_t pofs = 0;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const layer_weights *L = &w->layers[l];
        layer_acts *a = &g->la[l];
        memcpy(a->x_in, g->x, (size_t)(T * d) * sizeof(float));
        s_rmsnorm(a->xn1, a->r1, g->x, L->attn_norm, T, d, c->norm_eps);
        rc = be->matmul(bc, a->q, a->xn1, &L->wq, T, false);
        if (!rc) rc = be->matmul(bc, a->k, a->xn1, &L->wk, T, false);
        if (!rc) rc = be->matmul(bc, a->v, a->xn1, &L->wv, T, false);
        if (rc) return rc;
        if (L->bq) {
            be->add_bias(bc, a->q, L->bq, T, qd);
            be->add_bias(bc, a->k, L->bk, T, kd);
            be->add_bias(bc, a->v, L->bv, T, kd);
        }
        be->rope(bc, a->q, g->pos, T, c->n_head, rp);
        be->rope(bc, a->k, g->pos, T, c->n_kv_head, rp);
        s_attn_fwd(g, kv, bias, l, a, T, &pofs);
        rc = be->matmul(bc, g->x, a->att, &L->wo, T, true);
        if (rc) return rc;
        memcpy(a->x_mid, g->x, (size_t)(T * d) * sizeof(float));
        s_rmsnorm(a->xn2, a->r2, g->x, L->ffn_norm, T, d, c->norm_eps);
        rc = be->matmul(bc, a->g, a->xn2, &L->w_gate, T, false);
        if (!rc) rc = be->matmul(bc, a->u, a->xn2, &L->w_up, T, false);
        if (rc) return rc;
        memcpy(g->h, a->g, (size_t)(T * ff) * sizeof(float));
        be->swiglu(bc, g->h, a->u, T * ff);
        rc = be->matmul(bc, g->x, g->h, &L->w_down, T, true);
        if (rc) return rc;
    }
    memcpy(g->xf, g->x, (size_t)(T * d) * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++)
        s_rmsnorm(g->xnf + r * d, g->rf + r, g->xf + rows[r] * d, w->out_norm, 1, d, c->norm_eps);
    return be->matmul(bc, g->logits, g->xnf, &w->output, n_rows, false);
}

static int s_check(const suffix_grad *g, const kv_cache *kv, const int32_t *ids, int64_t T, const int64_t *rows,
                   int64_t n_rows) {
    const model_config *c = &g->m->config;
    if (!kv || !ids || !rows) return tis_error(TIS_EINVAL, "backward: missing argument");
    if (T < 1 || T > g->max_T)
        return tis_error(TIS_EINVAL, "backward: suffix of %lld tokens (1..%lld)", (long long)T, (long long)g->max_T);
    if (kv->n_layer != c->n_layer || kv->n_kv_head != c->n_kv_head || kv->head_dim != c->head_dim)
        return tis_error(TIS_EINVAL, "backward: the cache is not this model's");
    if (kv->n_past + T > INT32_MAX) return tis_error(TIS_EINVAL, "backward: positions past 2^31");
    if (n_rows < 1 || n_rows > T) return tis_error(TIS_EINVAL, "backward: %lld rows of %lld", (long long)n_rows, (long long)T);
    for (int64_t r = 0; r < n_rows; r++)
        if (rows[r] < 0 || rows[r] >= T) return tis_error(TIS_EINVAL, "backward: row %lld outside the suffix", (long long)rows[r]);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->n_vocab) return tis_error(TIS_EINVAL, "backward: token id %d out of range", ids[t]);
    return 0;
}

/* logits row -> log-probabilities (double sums). */
static void s_log_softmax(const float *z, float *lp, int64_t n) {
    float mx = z[0];
    for (int64_t i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)z[i] - mx);
    float lse = (float)(mx + log(sum));
    for (int64_t i = 0; i < n; i++) lp[i] = z[i] - lse;
}

int suffix_logprobs(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, int64_t T,
                    const int64_t *rows, int64_t n_rows, float *logp) {
    int rc = s_check(g, kv, ids, T, rows, n_rows);
    if (!rc) rc = s_forward(g, kv, bias, ids, T, rows, n_rows);
    if (rc) return rc;
    int64_t V = g->m->config.n_vocab;
    for (int64_t r = 0; r < n_rows; r++) s_log_softmax(g->logits + r * V, logp + r * V, V);
    return 0;
}

/* One layer's attention backward: datt -> dq, dk, dv of the suffix and
 * dbias of the entries. *pofs walks g->P backwards (pofs = end of layer l). */
static void s_attn_back(suffix_grad *g, const kv_cache *kv, int64_t l, const layer_acts *a, int64_t T,
                        size_t p_begin, float *dbias) {
    const model_config *c = &g->m->config;
    int64_t hd = c->head_dim, nh = c->n_head, grp = nh / c->n_kv_head, qd = nh * hd, kd = c->n_kv_head * hd;
    float scale = 1.0f / sqrtf((float)hd);
    memset(g->dq, 0, (size_t)(T * qd) * sizeof(float));
    memset(g->dk, 0, (size_t)(T * kd) * sizeof(float));
    memset(g->dv, 0, (size_t)(T * kd) * sizeof(float));
    size_t pofs = p_begin;
    for (int64_t kh = 0; kh < c->n_kv_head; kh++) {
        int64_t s = kv_stream(kv, l, kh), n = kv->len[s], L = n + T;
        s_stream_kv(g, kv, s, kh, a, T);
        float *db = dbias ? dbias + kv->off[s] : NULL;
        for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
            const float *P = g->P + pofs;
            pofs += (size_t)(T * L);
            float *ds = g->ds;
            /* dP = datt_h . V^T, then dS = P * (dP - sum_j P dP) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)L, (int)hd, 1.0f, g->datt + h * hd,
                        (int)qd, g->vall, (int)hd, 0.0f, ds, (int)L);
            for (int64_t t = 0; t < T; t++) {
                const float *pr = P + t * L;
                float *dr = ds + t * L;
                double dot = 0;
                for (int64_t j = 0; j < L; j++) dot += (double)pr[j] * dr[j];
                for (int64_t j = 0; j < L; j++) dr[j] = pr[j] * (dr[j] - (float)dot);
                if (db)
                    for (int64_t j = 0; j < n; j++) db[j] += dr[j];
            }
            /* dq_h += scale dS . K ; dk (suffix) += scale dS[:, n:]^T . q_h ; dv (suffix) += P[:, n:]^T . datt_h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)L, scale, ds, (int)L,
                        g->kall, (int)hd, 1.0f, g->dq + h * hd, (int)qd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, scale, ds + n, (int)L,
                        a->q + h * hd, (int)qd, 1.0f, g->dk + kh * hd, (int)kd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, P + n, (int)L,
                        g->datt + h * hd, (int)qd, 1.0f, g->dv + kh * hd, (int)kd);
        }
    }
}

/* d loss / d x of the final rows into g->dx (zero elsewhere). */
static void s_head_back(suffix_grad *g, const int64_t *rows, int64_t n_rows, int64_t T) {
    const model_config *c = &g->m->config;
    const model_weights *w = &g->m->weights;
    int64_t d = c->d_model;
    float *dxn = g->xnf; /* the forward's normalised rows are not needed any more */
    s_matmul_t(g, dxn, g->logits, &w->output, n_rows, false);
    memset(g->dx, 0, (size_t)(T * d) * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++)
        s_rmsnorm_back(g->dx + rows[r] * d, dxn + r * d, g->xf + rows[r] * d, g->rf + r, w->out_norm, 1, d);
}

int suffix_kl_grad(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, int64_t T,
                   const int64_t *rows, int64_t n_rows, const float *ref_logp, double *loss, float *dbias) {
    int rc = s_check(g, kv, ids, T, rows, n_rows);
    if (!rc && !ref_logp) rc = tis_error(TIS_EINVAL, "backward: no reference distribution");
    if (!rc) rc = s_forward(g, kv, bias, ids, T, rows, n_rows);
    if (rc) return rc;
    const model_config *c = &g->m->config;
    const model_weights *w = &g->m->weights;
    int64_t V = c->n_vocab, d = c->d_model, ff = c->d_ff;
    /* loss and d loss / d logits = softmax(z) - ref, in g->logits */
    double kl = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        float *z = g->logits + r * V;
        const float *ref = ref_logp + r * V;
        s_log_softmax(z, z, V);
        for (int64_t i = 0; i < V; i++) {
            double pr = exp((double)ref[i]);
            kl += pr * ((double)ref[i] - z[i]);
            z[i] = (float)(exp((double)z[i]) - pr);
        }
    }
    *loss = kl;
    s_head_back(g, rows, n_rows, T);
    size_t p_end = s_p_floats(kv, c->n_head, T);
    int64_t grp = c->n_head / c->n_kv_head;
    for (int64_t l = c->n_layer - 1; l >= 0; l--) {
        const layer_weights *L = &w->layers[l];
        const layer_acts *a = &g->la[l];
        /* FFN: x_out = x_mid + Wdown . (silu(g) * u) */
        s_matmul_t(g, g->dh, g->dx, &L->w_down, T, false);
        for (int64_t i = 0; i < T * ff; i++) {
            float gi = a->g[i], sg = 1.0f / (1.0f + expf(-gi));
            g->dg[i] = g->dh[i] * a->u[i] * sg * (1.0f + gi * (1.0f - sg));
            g->du[i] = g->dh[i] * gi * sg;
        }
        s_matmul_t(g, g->dxn, g->dg, &L->w_gate, T, false);
        s_matmul_t(g, g->dxn, g->du, &L->w_up, T, true);
        s_rmsnorm_back(g->dx, g->dxn, a->x_mid, a->r2, L->ffn_norm, T, d);
        /* attention: x_mid = x_in + Wo . att */
        s_matmul_t(g, g->datt, g->dx, &L->wo, T, false);
        size_t p_layer = 0;
        for (int64_t kh = 0; kh < c->n_kv_head; kh++)
            p_layer += (size_t)grp * (size_t)T * (size_t)(kv->len[kv_stream(kv, l, kh)] + T);
        p_end -= p_layer;
        s_attn_back(g, kv, l, a, T, p_end, dbias);
        const rope_params *rp = forward_rope_params(g->fs);
        g->be->rope(g->be->ctx, g->dq, g->npos, T, c->n_head, rp); /* the rotation's transpose */
        g->be->rope(g->be->ctx, g->dk, g->npos, T, c->n_kv_head, rp);
        s_matmul_t(g, g->dxn, g->dq, &L->wq, T, false);
        s_matmul_t(g, g->dxn, g->dk, &L->wk, T, true);
        s_matmul_t(g, g->dxn, g->dv, &L->wv, T, true);
        s_rmsnorm_back(g->dx, g->dxn, a->x_in, a->r1, L->attn_norm, T, d);
    }
    return 0;
}
