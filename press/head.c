/* head: the importance head's numerics (layout, init, features, forward,
 * backward, losses, Adam, recall); the checkpoint is in head_io.c. */
#include "head.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#include "rng.h"

const char *head_target_name(head_target t) {
    return t == HEAD_TARGET_ANSWER ? "answer" : t == HEAD_TARGET_RECON ? "recon" : t == HEAD_TARGET_SELFINFO ? "selfinfo" : "?";
}

bool head_target_parse(const char *name, head_target *t) {
    if (!name) return false;
    if (!strcmp(name, "answer")) *t = HEAD_TARGET_ANSWER;
    else if (!strcmp(name, "recon")) *t = HEAD_TARGET_RECON;
    else if (!strcmp(name, "selfinfo")) *t = HEAD_TARGET_SELFINFO;
    else return false;
    return true;
}

/* Rows per block in the mlp forward/backward, so the [rows][hidden]
 * scratch stays small (256 x 256 floats = 256 KiB) whatever n is. */
#define HEAD_CHUNK 256

/* ---- construction -------------------------------------------------------- */

static double s_unif(uint64_t *state) { return tis_rng_unit(state); }

static void s_fill_uniform(float *p, int64_t n, double bound, uint64_t *state) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)((2.0 * s_unif(state) - 1.0) * bound);
}

/* Box-Muller; one normal per pair of uniforms (simple, deterministic). */
static void s_fill_normal(float *p, int64_t n, double sd, uint64_t *state) {
    for (int64_t i = 0; i < n; i++) {
        double u1 = 1.0 - s_unif(state), u2 = s_unif(state); /* u1 in (0, 1] */
        p[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
}

/* Checks cfg and fills in the defaults; fields a kind does not use are 0. */
static int s_config_check(head_config *c, const head_config *in) {
    *c = *in;
    if (c->kind != HEAD_LINEAR && c->kind != HEAD_MLP)
        return tis_error(TIS_EINVAL, "head: unknown kind %d (linear 0, mlp 1)", (int)c->kind);
    if (c->d_model < 1 || c->d_model > 65536)
        return tis_error(TIS_EINVAL, "head: d_model %lld is out of range (1..65536)",
                         (long long)c->d_model);
    if (c->kind == HEAD_MLP) {
        if (c->hidden == 0) c->hidden = 256;
        if (c->hidden < 1 || c->hidden > 8192)
            return tis_error(TIS_EINVAL, "head: hidden %lld is out of range (1..8192)",
                             (long long)c->hidden);
    } else {
        c->hidden = 0;
    }
    if (c->query_aware) {
        if (c->rank == 0) c->rank = 32;
        if (c->rank < 1 || c->rank > 1024)
            return tis_error(TIS_EINVAL, "head: rank %lld is out of range (1..1024)",
                             (long long)c->rank);
    } else {
        c->rank = 0;
    }
    if (c->n_out == 0) c->n_out = 1;
    if (c->n_out < 1 || c->n_out > 65536)
        return tis_error(TIS_EINVAL, "head: n_out %lld is out of range (1..65536)", (long long)c->n_out);
    if (c->target != HEAD_TARGET_ANSWER && c->target != HEAD_TARGET_RECON && c->target != HEAD_TARGET_SELFINFO)
        return tis_error(TIS_EINVAL, "head: unknown target %d (answer 0, recon 1, selfinfo 2)", (int)c->target);
    if (c->target == HEAD_TARGET_SELFINFO && (c->n_out != 1 || c->query_aware))
        return tis_error(TIS_EINVAL, "head: a selfinfo head has one output and no question input");
    if (c->n_pos != 0 && c->n_pos != 2)
        return tis_error(TIS_EINVAL, "head: %lld positional inputs (0 or 2)", (long long)c->n_pos);
    if (c->n_pos && c->query_aware)
        return tis_error(TIS_EINVAL, "head: positional inputs are for query-agnostic heads");
    if (c->n_rep != 0 && c->n_rep != 2)
        return tis_error(TIS_EINVAL, "head: %lld repetition inputs (0 or 2)", (long long)c->n_rep);
    if (c->n_rep && c->query_aware)
        return tis_error(TIS_EINVAL, "head: repetition inputs are for query-agnostic heads");
    if (c->layer < 0 || c->layer > 65536)
        return tis_error(TIS_EINVAL, "head: layer %lld is out of range (0..65536)",
                         (long long)c->layer);
    if (!memchr(c->base_model, 0, sizeof c->base_model))
        return tis_error(TIS_EINVAL, "head: base_model is not NUL-terminated within %zu bytes",
                         sizeof c->base_model);
    return 0;
}

int head_new(head **out, const head_config *cfg, uint64_t seed) {
    *out = NULL;
    if (!cfg) return tis_error(TIS_EINVAL, "head: NULL config");
    head_config c;
    int rc = s_config_check(&c, cfg);
    if (rc) return rc;
    const int64_t d = c.d_model + c.n_pos + c.n_rep, d_in = c.kind == HEAD_MLP ? c.hidden : d, no = c.n_out;
    /* Size table, in layout order: trained params, then mean/std. Bounds
     * above keep every product far from overflow (< 2^31 floats). */
    const int64_t sizes[] = {
        no * d_in, no,                            /* w_out, b_out */
        c.hidden * d, c.hidden,                   /* w1, b1 (0 for linear) */
        c.rank * d, c.rank * d,                   /* pq, pk (0 unless query-aware) */
        d, d,                                     /* mean, std */
    };
    int64_t n_params = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) n_params += sizes[i];
    /* One block: the struct, then the params 64-byte aligned. */
    const size_t off = (sizeof(head) + 63) & ~(size_t)63;
    char *block = aligned_alloc(64, off + (((size_t)n_params * sizeof(float) + 63) & ~(size_t)63));
    if (!block)
        return tis_error(TIS_ENOMEM, "head: out of memory (%lld params)", (long long)n_params);
    head *h = (head *)block;
    memset(h, 0, sizeof *h);
    h->cfg = c;
    h->params = (float *)(block + off);
    h->n_params = n_params;
    float *p = h->params;
    h->w_out = p, p += sizes[0];
    h->b_out = p, p += sizes[1];
    h->w1 = c.kind == HEAD_MLP ? p : NULL, p += sizes[2];
    h->b1 = c.kind == HEAD_MLP ? p : NULL, p += sizes[3];
    h->pq = c.query_aware ? p : NULL, p += sizes[4];
    h->pk = c.query_aware ? p : NULL, p += sizes[5];
    h->mean = p, p += sizes[6];
    h->std = p, p += sizes[7];
    TIS_ASSERT(p == h->params + n_params);

    /* Kaiming-uniform-ish weights, zero biases, small normal projections
     * (sd 1/sqrt(d), so the bilinear term starts at O(1/sqrt(rank))). */
    uint64_t st = seed;
    s_fill_uniform(h->w_out, no * d_in, 1.0 / sqrt((double)d_in), &st);
    memset(h->b_out, 0, (size_t)no * sizeof(float));
    if (h->w1) {
        s_fill_uniform(h->w1, c.hidden * d, 1.0 / sqrt((double)d), &st);
        memset(h->b1, 0, (size_t)c.hidden * sizeof(float));
    }
    if (h->pq) {
        s_fill_normal(h->pq, c.rank * d, 1.0 / sqrt((double)d), &st);
        s_fill_normal(h->pk, c.rank * d, 1.0 / sqrt((double)d), &st);
    }
    for (int64_t i = 0; i < d; i++) h->mean[i] = 0.0f, h->std[i] = 1.0f;
    h->attn_hook_lambda = 0.1f; /* the reference default */
    *out = h;
    return 0;
}

void head_destroy(head **p) {
    if (!p || !*p) return;
    head_uncalibrate(*p);
    free(*p); /* struct and params are one block */
    *p = NULL;
}

int64_t head_n_trained(const head *h) { return h->mean - h->params; }

/* ---- features ------------------------------------------------------------ */

int64_t head_feat_dim(const head *h) { return h->cfg.d_model + h->cfg.n_pos + h->cfg.n_rep; }

/* FNV-1a over a window of ids. */
static uint64_t s_window_hash(const int32_t *w) {
    uint64_t x = 1469598103934665603ull;
    for (int k = 0; k < HEAD_REP_K; k++) {
        x ^= (uint32_t)w[k];
        x *= 1099511628211ull;
    }
    return x;
}

int head_repeats(const int32_t *ids, int64_t n, float *out) {
    memset(out, 0, (size_t)(2 * n) * sizeof(float));
    const int64_t nw = n - HEAD_REP_K + 1; /* windows, by start */
    if (nw < 2) return 0;
    /* an open-addressing table of window starts; each start finds the
       first start of an equal window, so a window's earlier copies are
       known; its later ones by the last start of the chain */
    int64_t cap = 1;
    while (cap < 2 * nw) cap <<= 1;
    int64_t *slot = malloc((size_t)cap * sizeof *slot), *first = malloc((size_t)nw * sizeof *first);
    int64_t *last = malloc((size_t)nw * sizeof *last);
    if (!slot || !first || !last) {
        free(slot);
        free(first);
        free(last);
        return tis_error(TIS_ENOMEM, "head: out of memory for the repetitions of %lld tokens", (long long)n);
    }
    for (int64_t i = 0; i < cap; i++) slot[i] = -1;
    for (int64_t s = 0; s < nw; s++) {
        uint64_t hsh = s_window_hash(ids + s);
        int64_t i = (int64_t)(hsh & (uint64_t)(cap - 1));
        while (slot[i] >= 0 && memcmp(ids + slot[i], ids + s, HEAD_REP_K * sizeof *ids)) i = (i + 1) & (cap - 1);
        if (slot[i] < 0) slot[i] = s;
        first[s] = slot[i]; /* the first start of this window */
        last[first[s]] = s; /* ... and, when the loop ends, its last */
    }
    for (int64_t s = 0; s < nw; s++) {
        bool before = first[s] < s, after = last[first[s]] > s;
        for (int64_t j = s; j < s + HEAD_REP_K; j++) {
            if (before) out[2 * j] = 1;
            if (after) out[2 * j + 1] = 1;
        }
    }
    free(slot);
    free(first);
    free(last);
    return 0;
}

int head_features(const head *h, const float *x, const int32_t *ids, int64_t n, float *f) {
    const int64_t d = h->cfg.d_model, df = head_feat_dim(h), dr = d + h->cfg.n_pos;
    float *rep = NULL;
    if (h->cfg.n_rep) {
        if (!ids) return tis_error(TIS_EINVAL, "head: a head with repetition inputs needs the context's token ids");
        if (!(rep = malloc((size_t)(2 * n + 1) * sizeof *rep)))
            return tis_error(TIS_ENOMEM, "head: out of memory for %lld tokens", (long long)n);
        int rc = head_repeats(ids, n, rep);
        if (rc) {
            free(rep);
            return rc;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *fi = f + i * df;
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += (double)xi[k] * xi[k];
        const float r = (float)(1.0 / sqrt(ss / (double)d + 1e-6));
        for (int64_t k = 0; k < d; k++) fi[k] = (xi[k] * r - h->mean[k]) / h->std[k];
        if (h->cfg.n_pos) {
            fi[d] = (float)(10.0 * (double)i / (double)n - h->mean[d]) / h->std[d];
            fi[d + 1] = (float)(log1p((double)i) - h->mean[d + 1]) / h->std[d + 1];
        }
        for (int64_t k = 0; rep && k < 2; k++) fi[dr + k] = (rep[2 * i + k] - h->mean[dr + k]) / h->std[dr + k];
    }
    free(rep);
    return 0;
}

void head_query(const head *h, const float *xq, int64_t nq, float *q) {
    const int64_t d = h->cfg.d_model;
    memset(q, 0, (size_t)d * sizeof(float));
    if (nq <= 0) return; /* no question: q = 0, the bilinear term vanishes */
    /* standardise is affine, so mean(standardise(rms(x))) =
     * standardise(mean(rms(x))): accumulate the normalised rows first. */
    for (int64_t i = 0; i < nq; i++) {
        const float *xi = xq + i * d;
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += (double)xi[k] * xi[k];
        const float r = (float)(1.0 / sqrt(ss / (double)d + 1e-6));
        for (int64_t k = 0; k < d; k++) q[k] += xi[k] * r;
    }
    for (int64_t k = 0; k < d; k++) q[k] = (q[k] / (float)nq - h->mean[k]) / h->std[k];
}

/* ---- forward / backward -------------------------------------------------- */

/* v[d] = Pk^T Pq q / sqrt(rank), so that the bilinear term is f_j . v;
 * u[rank] = Pq q is scratch (and kept: backward needs it). */
static void s_query_vec(const head *h, const float *q, float *u, float *v) {
    const int64_t d = head_feat_dim(h), r = h->cfg.rank;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)r, (int)d, 1.0f, h->pq, (int)d, q, 1, 0.0f, u,
                1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)r, (int)d, (float)(1.0 / sqrt((double)r)), h->pk,
                (int)d, u, 1, 0.0f, v, 1);
}

/* z[m][hidden] = f[m][d] W1^T + b1 (pre-activation). */
static void s_fc1(const head *h, const float *f, int64_t m, float *z) {
    const int64_t d = head_feat_dim(h), hid = h->cfg.hidden;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)hid, (int)d, 1.0f, f,
                (int)d, h->w1, (int)d, 0.0f, z, (int)hid);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < hid; k++) z[i * hid + k] += h->b1[k];
}

static int s_check_args(const head *h, const float *f, int64_t n, const float *q, const char *fn) {
    if (!h || n < 0 || (n > 0 && !f))
        return tis_error(TIS_EINVAL, "head: %s: bad arguments (n %lld)", fn, (long long)n);
    if (n > INT32_MAX)
        return tis_error(TIS_ERANGE, "head: %s: %lld rows is over the BLAS limit", fn,
                         (long long)n);
    if (h->cfg.query_aware && !q)
        return tis_error(TIS_EINVAL, "head: %s: a query-aware head needs the query vector", fn);
    return 0;
}

int head_forward(const head *h, const float *f, int64_t n, const float *q, float *s) {
    int rc = s_check_args(h, f, n, q, "forward");
    if (rc || n == 0) return rc;
    const int64_t d = head_feat_dim(h), hid = h->cfg.hidden, r = h->cfg.rank, no = h->cfg.n_out;
    const size_t scratch = (size_t)(h->cfg.kind == HEAD_MLP ? HEAD_CHUNK * hid : 0) +
                           (size_t)(h->cfg.query_aware ? r + d : 0);
    float *buf = scratch ? malloc(scratch * sizeof(float)) : NULL;
    if (scratch && !buf) return tis_error(TIS_ENOMEM, "head: forward: out of memory");
    /* s[no][n] = W_out A^T (+ b), A = f (linear) or relu(fc1 f) (mlp, by blocks) */
    if (h->cfg.kind == HEAD_LINEAR) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)no, (int)n, (int)d, 1.0f,
                    h->w_out, (int)d, f, (int)d, 0.0f, s, (int)n);
    } else {
        float *z = buf; /* [HEAD_CHUNK][hidden] */
        for (int64_t i0 = 0; i0 < n; i0 += HEAD_CHUNK) {
            const int64_t m = n - i0 < HEAD_CHUNK ? n - i0 : HEAD_CHUNK;
            s_fc1(h, f + i0 * d, m, z);
            for (int64_t k = 0; k < m * hid; k++) z[k] = z[k] > 0 ? z[k] : 0.0f;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)no, (int)m, (int)hid, 1.0f,
                        h->w_out, (int)hid, z, (int)hid, 0.0f, s + i0, (int)n);
        }
    }
    for (int64_t o = 0; o < no; o++) {
        const float b = h->b_out[o];
        for (int64_t j = 0; j < n; j++) s[o * n + j] += b;
    }
    if (h->cfg.query_aware) {
        /* the bilinear term, one per token, added to every output */
        float *u = buf + (h->cfg.kind == HEAD_MLP ? HEAD_CHUNK * hid : 0), *v = u + r;
        float *t = malloc((size_t)n * sizeof(float));
        if (!t) {
            free(buf);
            return tis_error(TIS_ENOMEM, "head: forward: out of memory");
        }
        s_query_vec(h, q, u, v);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0f, f, (int)d, v, 1, 0.0f, t,
                    1);
        for (int64_t o = 0; o < no; o++)
            for (int64_t j = 0; j < n; j++) s[o * n + j] += t[j];
        free(t);
    }
    free(buf);
    return 0;
}

/* The gradient is laid out as params: the same offsets as the views. */
#define GRAD_OF(field) (grad + (h->field - h->params))

int head_backward(const head *h, const float *f, int64_t n, const float *q, const float *ds,
                  float *grad) {
    int rc = s_check_args(h, f, n, q, "backward");
    if (rc || n == 0) return rc;
    if (!ds || !grad) return tis_error(TIS_EINVAL, "head: backward: NULL ds or grad");
    const int64_t d = head_feat_dim(h), hid = h->cfg.hidden, r = h->cfg.rank, no = h->cfg.n_out;
    const bool mlp = h->cfg.kind == HEAD_MLP, qa = h->cfg.query_aware;
    /* The query term sees the sum over outputs, dsum[j] = sum_o ds[o][j],
     * through g[d] = F^T dsum (sum_j dsum_j f_j . v = g . v). */
    const size_t scratch = (size_t)(mlp ? 2 * HEAD_CHUNK * hid : 0) +
                           (size_t)(qa ? n + d + 2 * r : 0);
    float *buf = scratch ? malloc(scratch * sizeof(float)) : NULL;
    if (scratch && !buf) return tis_error(TIS_ENOMEM, "head: backward: out of memory");
    float *p = buf;
    float *z = mlp ? p : NULL;                   /* [HEAD_CHUNK][hidden] pre-activation */
    float *dz = mlp ? p + HEAD_CHUNK * hid : NULL; /* [HEAD_CHUNK][hidden] */
    p += mlp ? 2 * HEAD_CHUNK * hid : 0;
    float *dsum = qa ? p : NULL, *g = qa ? p + n : NULL; /* [n], [d] */
    p += qa ? n + d : 0;
    float *u = qa ? p : NULL, *w = qa ? p + r : NULL; /* [rank] Pq q, [rank] Pk g */

    float *gb = GRAD_OF(b_out);
    for (int64_t o = 0; o < no; o++) {
        double db = 0;
        for (int64_t j = 0; j < n; j++) db += ds[o * n + j];
        gb[o] += (float)db;
    }
    if (!mlp) {
        /* dW[no][d] += dS[no][n] F[n][d] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)no, (int)d, (int)n, 1.0f, ds,
                    (int)n, f, (int)d, 1.0f, GRAD_OF(w_out), (int)d);
    } else {
        float *gw2 = GRAD_OF(w_out), *gw1 = GRAD_OF(w1), *gb1 = GRAD_OF(b1);
        for (int64_t i0 = 0; i0 < n; i0 += HEAD_CHUNK) {
            const int64_t m = n - i0 < HEAD_CHUNK ? n - i0 : HEAD_CHUNK;
            const float *fi = f + i0 * d, *dsi = ds + i0; /* dsi: [no][m], row stride n */
            s_fc1(h, fi, m, z);
            for (int64_t k = 0; k < m * hid; k++) z[k] = z[k] > 0 ? z[k] : 0.0f; /* activation a */
            /* dA[m][hid] = dS_blk^T W2, masked by relu' (a > 0 iff z > 0) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)hid, (int)no, 1.0f,
                        dsi, (int)n, h->w_out, (int)hid, 0.0f, dz, (int)hid);
            for (int64_t i = 0; i < m; i++) {
                const float *zi = z + i * hid;
                float *dzi = dz + i * hid;
                for (int64_t k = 0; k < hid; k++) {
                    dzi[k] = zi[k] > 0 ? dzi[k] : 0.0f;
                    gb1[k] += dzi[k];
                }
            }
            /* dW2[no][hid] += dS_blk A; dW1 += dZ^T F */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)no, (int)hid, (int)m, 1.0f,
                        dsi, (int)n, z, (int)hid, 1.0f, gw2, (int)hid);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)hid, (int)d, (int)m, 1.0f,
                        dz, (int)hid, fi, (int)d, 1.0f, gw1, (int)d);
        }
    }
    if (qa) {
        /* term = (Pk g) . (Pq q) / sqrt(r): dPk = u g^T / sqrt(r),
         * dPq = (Pk g) q^T / sqrt(r). */
        for (int64_t j = 0; j < n; j++) dsum[j] = 0;
        for (int64_t o = 0; o < no; o++)
            for (int64_t j = 0; j < n; j++) dsum[j] += ds[o * n + j];
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0f, f, (int)d, dsum, 1, 0.0f, g,
                    1);
        const float sc = (float)(1.0 / sqrt((double)r));
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)r, (int)d, 1.0f, h->pq, (int)d, q, 1, 0.0f,
                    u, 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)r, (int)d, 1.0f, h->pk, (int)d, g, 1, 0.0f,
                    w, 1);
        cblas_sger(CblasRowMajor, (int)r, (int)d, sc, u, 1, g, 1, GRAD_OF(pk), (int)d);
        cblas_sger(CblasRowMajor, (int)r, (int)d, sc, w, 1, q, 1, GRAD_OF(pq), (int)d);
    }
    free(buf);
    return 0;
}

/* ---- losses and metrics -------------------------------------------------- */

/* k = ceil(frac * n) in [1, n] (n >= 1); the 1e-9 keeps 0.1 * 70 at 7. */
static int64_t s_topk_count(double frac, int64_t n) {
    if (!(frac > 0)) return 1;
    if (frac >= 1) return n;
    double k = ceil(frac * (double)n - 1e-9);
    return k < 1 ? 1 : k > (double)n ? n : (int64_t)k;
}

typedef struct s_rank {
    float key;
    int64_t idx;
} s_rank;

/* Descending key, ties (and NaN, ranked last) by lower index. */
static int s_rank_cmp(const void *pa, const void *pb) {
    const s_rank *a = pa, *b = pb;
    if (a->key > b->key) return -1;
    if (a->key < b->key) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Sets mark[i] |= bit for the top k of x[n] (ties by lower index); r is
 * [n] scratch. */
static void s_mark_topk(const float *x, int64_t n, int64_t k, s_rank *r, unsigned char *mark,
                        unsigned char bit) {
    for (int64_t i = 0; i < n; i++) r[i] = (s_rank){isnan(x[i]) ? -INFINITY : x[i], i};
    qsort(r, (size_t)n, sizeof *r, s_rank_cmp);
    for (int64_t i = 0; i < k; i++) mark[r[i].idx] |= bit;
}

/* recon_rank's second term: the listwise cross-entropy of the scores s[n]
 * pooled over every (stream, token) against the labels normalised to sum
 * 1 (the level of each score and the pooled order a global selection
 * keeps from); its derivative is added into ds (may be NULL). 0 when the
 * labels sum to 0; NAN when out of memory. */
static double s_pooled_listwise(const float *s, const float *y, int64_t n, float *ds) {
    double sy = 0;
    for (int64_t j = 0; j < n; j++) sy += y[j];
    if (!(sy > 0)) return 0;
    float *yn = malloc((size_t)n * sizeof *yn), *d2 = ds ? malloc((size_t)n * sizeof *d2) : NULL;
    if (!yn || (ds && !d2)) {
        free(yn);
        free(d2);
        tis_error(TIS_ENOMEM, "head: loss: out of memory (%lld values)", (long long)n);
        return NAN;
    }
    for (int64_t j = 0; j < n; j++) yn[j] = (float)(y[j] / sy);
    double loss = head_loss_eval(LOSS_LISTWISE, s, yn, n, 0, d2);
    for (int64_t j = 0; ds && j < n; j++) ds[j] += d2[j];
    free(yn);
    free(d2);
    return loss;
}

double head_loss_eval(head_loss kind, const float *s, const float *y, int64_t n, double topk_frac,
                      float *ds) {
    if (n <= 0) return 0.0;
    if (kind == LOSS_LISTWISE) {
        /* -sum_j y_j log softmax(s)_j = Y lse(s) - sum_j y_j s_j, Y = sum y;
         * d/ds_j = Y p_j - y_j (= p_j - y_j for labels summing to 1). */
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        double z = 0, sy = 0, sys = 0;
        for (int64_t j = 0; j < n; j++) {
            z += exp(s[j] - mx);
            sy += y[j];
            sys += (double)y[j] * s[j];
        }
        const double lse = mx + log(z);
        if (ds)
            for (int64_t j = 0; j < n; j++) ds[j] = (float)(sy * exp(s[j] - lse) - y[j]);
        return sy * lse - sys;
    }
    if (kind == LOSS_RECON_RANK) { /* recon_mse + the pooled listwise term (in this order: ds) */
        double loss = head_loss_eval(LOSS_RECON_MSE, s, y, n, topk_frac, ds);
        return loss + s_pooled_listwise(s, y, n, ds);
    }
    if (kind == LOSS_RECON_MSE) {
        double loss = 0;
        for (int64_t j = 0; j < n; j++) {
            const double t = log(y[j] > HEAD_RECON_FLOOR ? (double)y[j] : HEAD_RECON_FLOOR);
            const double e = s[j] - t;
            loss += e * e;
            if (ds) ds[j] = (float)(2.0 * e / (double)n);
        }
        return loss / (double)n;
    }
    TIS_ASSERT(kind == LOSS_BCE_TOPK);
    const int64_t k = s_topk_count(topk_frac, n);
    s_rank *r = malloc((size_t)n * sizeof *r);
    unsigned char *pos = calloc((size_t)n, 1);
    if (!r || !pos) {
        free(r);
        free(pos);
        tis_error(TIS_ENOMEM, "head: loss: out of memory (%lld tokens)", (long long)n);
        return NAN;
    }
    s_mark_topk(y, n, k, r, pos, 1);
    /* Both classes weigh 1/2 in total (all on the positives when n == k),
     * so the loss is a weighted mean over the n tokens. */
    const double wp = k == n ? 1.0 / (double)k : 0.5 / (double)k;
    const double wn = k == n ? 0.0 : 0.5 / (double)(n - k);
    double loss = 0;
    for (int64_t j = 0; j < n; j++) {
        const double x = s[j], t = pos[j] ? 1.0 : 0.0, w = pos[j] ? wp : wn;
        /* log(1 + e^x) - t x, stable for either sign of x */
        loss += w * ((x > 0 ? x : 0.0) - x * t + log1p(exp(-fabs(x))));
        if (ds) {
            const double sig = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
            ds[j] = (float)(w * (sig - t));
        }
    }
    free(r);
    free(pos);
    return loss;
}

double head_loss_recon(head_loss kind, const float *s, const float *y, int64_t n_out, int64_t n,
                       const float *w, float *ds) {
    TIS_ASSERT(kind == LOSS_RECON_MSE || kind == LOSS_RECON_RANK);
    if (!w || n_out <= 0) return head_loss_eval(kind, s, y, n_out * n, 0, ds);
    double loss = 0;
    for (int64_t o = 0; o < n_out; o++) {
        /* stream o's mean squared error, its ds = 2 e / n */
        loss += w[o] * head_loss_eval(LOSS_RECON_MSE, s + o * n, y + o * n, n, 0, ds ? ds + o * n : NULL);
        for (int64_t j = 0; ds && j < n; j++) ds[o * n + j] *= w[o] / (float)n_out;
    }
    loss /= (double)n_out;
    if (kind == LOSS_RECON_RANK) loss += s_pooled_listwise(s, y, n_out * n, ds);
    return loss;
}

void head_adam_step(float *params, const float *grad, float *m, float *v, int64_t n, int64_t t,
                    float lr, float beta1, float beta2, float eps, float weight_decay) {
    TIS_ASSERT(t >= 1);
    const double c1 = 1.0 - pow(beta1, (double)t), c2 = 1.0 - pow(beta2, (double)t);
    const float step = (float)(lr / c1), decay = 1.0f - lr * weight_decay;
    const float inv_sqrt_c2 = (float)(1.0 / sqrt(c2));
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        /* decoupled weight decay (AdamW), then the bias-corrected step */
        params[i] = params[i] * decay - step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + eps);
    }
}

double head_recall_at(const float *s, const float *y, int64_t n, double frac) {
    if (n <= 0) return 1.0; /* nothing to find */
    const int64_t k = s_topk_count(frac, n);
    s_rank *r = malloc((size_t)n * sizeof *r);
    unsigned char *mark = calloc((size_t)n, 1);
    if (!r || !mark) {
        free(r);
        free(mark);
        tis_error(TIS_ENOMEM, "head: recall: out of memory (%lld tokens)", (long long)n);
        return NAN;
    }
    s_mark_topk(y, n, k, r, mark, 1);
    s_mark_topk(s, n, k, r, mark, 2);
    int64_t hit = 0;
    for (int64_t i = 0; i < n; i++) hit += mark[i] == 3;
    free(r);
    free(mark);
    return (double)hit / (double)k;
}

/* ---- calibration ----------------------------------------------------------- */

static int s_cmp_f32(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The value at probability p of sorted v[n], linear between order statistics. */
static float s_quantile(const float *v, int64_t n, double p) {
    double at = p * (double)(n - 1);
    int64_t lo = (int64_t)floor(at);
    if (lo >= n - 1) return v[n - 1];
    double fr = at - (double)lo;
    return (float)((1.0 - fr) * v[lo] + fr * v[lo + 1]);
}

/* Strictly increasing from the first knot on (a step of 1e-6 relative where
 * it was flat), so that the map keeps every order. */
static void s_strictly_increasing(float *v, int64_t k) {
    for (int64_t i = 1; i < k; i++)
        if (!(v[i] > v[i - 1])) v[i] = v[i - 1] + 1e-6f * (1.0f + fabsf(v[i - 1]));
}

void head_uncalibrate(head *h) {
    free(h->calib_x);
    free(h->calib_y);
    h->calib_x = h->calib_y = NULL;
    h->n_calib = 0;
}

int head_calibrate(head *h, float *pred, float *target, int64_t n) {
    const int64_t no = h->cfg.n_out, K = HEAD_CALIB_KNOTS;
    if (no <= 1) return tis_error(TIS_EINVAL, "head: calibration is for a per-head head (n_out > 1)");
    if (n < 2) return tis_error(TIS_EINVAL, "head: calibration needs at least 2 tokens, %lld given", (long long)n);
    for (int64_t i = 0; i < no * n; i++)
        if (!isfinite(pred[i]) || !isfinite(target[i]))
            return tis_error(TIS_EINVAL, "head: calibration: a non-finite value at %lld", (long long)i);
    float *x = malloc((size_t)(no * K) * sizeof *x), *y = malloc((size_t)(no * K) * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return tis_error(TIS_ENOMEM, "head: out of memory for the calibration");
    }
    for (int64_t o = 0; o < no; o++) {
        float *p = pred + o * n, *t = target + o * n;
        qsort(p, (size_t)n, sizeof *p, s_cmp_f32);
        qsort(t, (size_t)n, sizeof *t, s_cmp_f32);
        for (int64_t k = 0; k < K; k++) {
            double u = 1.0 - (double)k / (double)(K - 1), prob = 1.0 - u * u;
            x[o * K + k] = s_quantile(p, n, prob);
            y[o * K + k] = s_quantile(t, n, prob);
        }
        s_strictly_increasing(x + o * K, K);
        s_strictly_increasing(y + o * K, K);
    }
    head_uncalibrate(h);
    h->calib_x = x;
    h->calib_y = y;
    h->n_calib = K;
    return 0;
}

void head_apply_calibration(const head *h, float *s, int64_t n) {
    const int64_t K = h->n_calib;
    if (!K || !h->calib_x) return;
    for (int64_t o = 0; o < h->cfg.n_out; o++) {
        const float *x = h->calib_x + o * K, *y = h->calib_y + o * K;
        float *r = s + o * n;
        for (int64_t j = 0; j < n; j++) {
            float v = r[j];
            if (v <= x[0]) {
                r[j] = y[0] + (v - x[0]);
            } else if (v >= x[K - 1]) {
                r[j] = y[K - 1] + (v - x[K - 1]);
            } else { /* x[lo] < v < x[hi] */
                int64_t lo = 0, hi = K - 1;
                while (hi - lo > 1) {
                    int64_t mid = (lo + hi) / 2;
                    if (x[mid] <= v) lo = mid;
                    else hi = mid;
                }
                r[j] = y[lo] + (v - x[lo]) * (y[hi] - y[lo]) / (x[hi] - x[lo]);
            }
        }
    }
}

/* ---- scoring a context ---------------------------------------------------- */

int head_score_context(const head *h, const float *hid, const int32_t *ctx_ids, int64_t ctx_begin,
                       int64_t n_ctx, int64_t q_begin, int64_t n_q, float *out) {
    if (!h || !hid || !out || n_ctx < 0 || ctx_begin < 0)
        return tis_error(TIS_EINVAL, "head: score_context: bad arguments");
    const int64_t d = h->cfg.d_model, df = head_feat_dim(h);
    if (h->cfg.query_aware && n_q < 1) return tis_error(TIS_EINVAL, "head: a query-aware head needs question rows");
    float *f = malloc((size_t)(n_ctx * df + 1) * sizeof(float)), *q = malloc((size_t)df * sizeof(float));
    if (!f || !q) {
        free(f);
        free(q);
        return tis_error(TIS_ENOMEM, "head: out of memory for %lld x %lld features", (long long)n_ctx,
                         (long long)d);
    }
    if (h->cfg.query_aware) head_query(h, hid + q_begin * d, n_q, q);
    int rc = head_features(h, hid + ctx_begin * d, ctx_ids, n_ctx, f);
    if (!rc) rc = head_forward(h, f, n_ctx, h->cfg.query_aware ? q : NULL, out);
    if (!rc) head_apply_calibration(h, out, n_ctx);
    free(f);
    free(q);
    return rc;
}
