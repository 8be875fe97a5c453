/* forward: Llama-family decoder layers, written against the backend vtable.
 *
 * Per layer: x += Wo . attn(rope(Wq.n(x)), rope(Wk.n(x)), Wv.n(x))
 *            x += Wdown . (silu(Wgate.n(x)) * Wup.n(x))     with n = RMSNorm.
 * Logits = Wout . n(x) for the requested last positions only. */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

struct forward_state {
    const model *m;           /* borrowed */
    const tis_backend *be;    /* borrowed */
    int64_t max_batch;
    float *x;        /* [B][d_model] residual stream */
    float *xb;       /* [B][d_model] normalised */
    float *q;        /* [B][n_head*head_dim] */
    float *k;        /* [B][n_kv_head*head_dim] */
    float *v;        /* [B][n_kv_head*head_dim] */
    float *att;      /* [B][n_head*head_dim] */
    float *gate;     /* [B][d_ff] */
    float *up;       /* [B][d_ff] */
    int32_t *pos;    /* [B] positions, host */
    float *inv_freq; /* [rope_dim/2] */
    /* Backend residency (docs/design.md §3). On a host backend all of x..up
     * above are host memory and the three below alias or stay NULL; on a
     * backend with its own memory they live there and the host reaches them
     * only through be->upload / be->download. */
    bool host;                /* backend_is_host(be) */
    const model_weights *w;   /* model_weights_on(m, be) */
    int32_t *pos_b;  /* [B] positions in the backend's memory (pos itself on a host backend) */
    float *x_h;      /* [B][d_model] host staging: embedded rows going up, hidden states coming
                        down for on_hidden (NULL on a host backend) */
    float *lg;       /* [lg_rows][n_vocab] logits in the backend's memory, grown on demand
                        (NULL on a host backend: the caller's buffer is written directly) */
    int64_t lg_rows;
    int64_t *at;     /* [n_kv_head] rows where kv_append writes */
    rope_params rp;
    int prompt;      /* forward_set_prompt: -1 by segment length, 0 generated, 1 prompt */
};

/* Frequencies with the model's scaling folded in (Llama-3.1 rule: long
 * wavelengths divided by factor, short kept, a smooth blend between). */
static void s_rope_freqs(const model_config *c, float *inv_freq) {
    int64_t half = c->rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -(double)(2 * i) / (double)c->rope_dim);
        if (c->rope_scaling_type == ROPE_SCALING_LLAMA3) {
            double lo_wl = (double)c->rope_orig_ctx / c->rope_low_freq_factor;
            double hi_wl = (double)c->rope_orig_ctx / c->rope_high_freq_factor;
            double wl = 2 * M_PI / f;
            if (wl > lo_wl) {
                f /= c->rope_factor;
            } else if (wl >= hi_wl) {
                double sm = ((double)c->rope_orig_ctx / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1 - sm) * f / c->rope_factor + sm * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}

int forward_state_new(forward_state **out, const model *m, const tis_backend *be,
                      int64_t max_batch) {
    *out = NULL;
    if (max_batch <= 0 || max_batch > (1 << 20))
        return tis_error(TIS_EINVAL, "forward: bad batch size %lld", (long long)max_batch);
    const model_config *c = &m->config;
    forward_state *st = calloc(1, sizeof *st);
    if (!st) return tis_error(TIS_ENOMEM, "forward: out of memory");
    st->m = m;
    st->be = be;
    st->w = model_weights_on(m, be);
    if (!st->w) {
        free(st);
        return tis_error(TIS_EINVAL, "forward: the model's weights are not in %s memory (model_to_backend first)",
                         be->name);
    }
    if (!backend_is_host(be) && (!be->download || !be->kv_append)) {
        free(st);
        return tis_error(TIS_EUNSUPPORTED, "forward: backend %s has its own memory but no download/kv_append",
                         be->name);
    }
    st->max_batch = max_batch;
    st->prompt = -1;
    size_t B = (size_t)max_batch;
    size_t qd = (size_t)(c->n_head * c->head_dim), kd = (size_t)(c->n_kv_head * c->head_dim);
    st->x = be->alloc(be->ctx, B * (size_t)c->d_model * sizeof(float));
    st->xb = be->alloc(be->ctx, B * (size_t)c->d_model * sizeof(float));
    st->q = be->alloc(be->ctx, B * qd * sizeof(float));
    st->k = be->alloc(be->ctx, B * kd * sizeof(float));
    st->v = be->alloc(be->ctx, B * kd * sizeof(float));
    st->att = be->alloc(be->ctx, B * qd * sizeof(float));
    st->gate = be->alloc(be->ctx, B * (size_t)c->d_ff * sizeof(float));
    st->up = be->alloc(be->ctx, B * (size_t)c->d_ff * sizeof(float));
    st->pos = malloc(B * sizeof(int32_t));
    st->inv_freq = malloc((size_t)(c->rope_dim / 2 + 1) * sizeof(float));
    st->host = backend_is_host(be);
    st->pos_b = st->host ? st->pos : be->alloc(be->ctx, B * sizeof(int32_t));
    st->x_h = st->host ? NULL : malloc(B * (size_t)c->d_model * sizeof(float));
    st->at = malloc((size_t)c->n_kv_head * sizeof(int64_t));
    if (!st->x || !st->xb || !st->q || !st->k || !st->v || !st->att || !st->gate || !st->up ||
        !st->pos || !st->inv_freq || !st->pos_b || (!st->host && !st->x_h) || !st->at) {
        forward_state_destroy(&st);
        return tis_error(TIS_ENOMEM, "forward: cannot allocate scratch for batch %lld",
                         (long long)max_batch);
    }
    s_rope_freqs(c, st->inv_freq);
    st->rp = (rope_params){
        .head_dim = c->head_dim,
        .rope_dim = c->rope_dim,
        .interleaved = c->rope_interleaved,
        .inv_freq = st->inv_freq,
        .pos_scale = c->rope_scaling_type == ROPE_SCALING_LINEAR ? 1.0f / c->rope_factor : 1.0f,
    };
    *out = st;
    return 0;
}

void forward_state_destroy(forward_state **p) {
    if (!p || !*p) return;
    forward_state *st = *p;
    const tis_backend *be = st->be;
    float *bufs[] = {st->x, st->xb, st->q, st->k, st->v, st->att, st->gate, st->up};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(be->ctx, bufs[i]);
    if (!st->host && st->pos_b) be->free(be->ctx, st->pos_b);
    if (st->lg) be->free(be->ctx, st->lg);
    free(st->x_h);
    free(st->at);
    free(st->pos);
    free(st->inv_freq);
    free(st);
    *p = NULL;
}

const model *forward_model(const forward_state *st) { return st->m; }

const rope_params *forward_rope_params(const forward_state *st) { return &st->rp; }

int forward_kv_new(const model *m, int64_t cap, kv_cache **out) {
    return forward_kv_new_on(m, NULL, cap, out);
}

int forward_kv_new_on(const model *m, const tis_backend *be, int64_t cap, kv_cache **out) {
    *out = NULL;
    const model_config *c = &m->config;
    if (cap < 0 || cap > ((int64_t)1 << 32)) return tis_error(TIS_EINVAL, "kv: bad capacity %lld", (long long)cap);
    int64_t ns = c->n_layer * c->n_kv_head;
    int64_t *caps = malloc((size_t)(ns > 0 ? ns : 1) * sizeof *caps);
    if (!caps) return tis_error(TIS_ENOMEM, "kv: out of memory");
    for (int64_t s = 0; s < ns; s++) caps[s] = cap;
    int rc = kv_cache_new_ragged_on(out, c->n_layer, c->n_kv_head, c->head_dim, caps, m->kv_type, be);
    free(caps);
    return rc;
}

int forward_state_kv_new(const forward_state *st, int64_t cap, kv_cache **out) {
    return forward_kv_new_on(st->m, st->be, cap, out);
}

/* Re-bases the backend's chunk-relative query rows onto the call's. */
typedef struct attn_relay {
    const forward_hooks *hooks;
    int64_t t_base;
} attn_relay;

static void s_attn_relay(void *user, int64_t layer, int64_t head, int64_t q0, int64_t nq,
                         const float *probs, int64_t n_keys) {
    const attn_relay *r = user;
    r->hooks->on_attn(r->hooks->user, layer, head, r->t_base + q0, nq, probs, n_keys);
}

/* A run of one sequence's tokens inside a chunk. */
typedef struct fw_seg {
    kv_cache *kv;
    const int32_t *ids;  /* [T] */
    int64_t T;
    int64_t t_base;      /* index of ids[0] in its forward_run call (for hooks) */
    int64_t n_logits;    /* logits wanted for the seg's last n_logits rows */
} fw_seg;

/* One chunk: segments of (distinct) sequences, sum of T <= max_batch rows.
 * Matrix products run over all rows at once (weights read once for the
 * chunk); attention runs per segment against its own cache. The logits of
 * every segment's last rows go, in segment order, to logits[][n_vocab]. */
/* A failed matmul or attention (out of memory for scratch): the entries
 * this chunk appended to layers [0, n_layers) are taken back, so each cache
 * holds exactly the chunks that completed. Returns rc. */
static int s_chunk_undo(const forward_state *st, const fw_seg *seg, int64_t n_seg, int64_t n_layers, int rc) {
    int64_t nkv = st->m->config.n_kv_head;
    for (int64_t i = 0; i < n_seg; i++)
        for (int64_t l = 0; l < n_layers; l++)
            for (int64_t h = 0; h < nkv; h++) seg[i].kv->len[kv_stream(seg[i].kv, l, h)] -= seg[i].T;
    return rc;
}

/* The chunk's tokens embedded into x and their positions into pos. The
 * lookup runs on the host (model_embed over the file's table); on a
 * backend with its own memory the T embedded rows and positions are then
 * uploaded: the step's input, not a round trip. */
static int s_embed(forward_state *st, const fw_seg *seg, int64_t n_seg, int64_t T) {
    int64_t d = st->m->config.d_model, r = 0;
    float *xe = st->host ? st->x : st->x_h;
    for (int64_t i = 0; i < n_seg; i++)
        for (int64_t t = 0; t < seg[i].T; t++, r++) {
            model_embed(st->m, seg[i].ids[t], xe + r * d);
            st->pos[r] = (int32_t)(seg[i].kv->n_past + t);
        }
    if (st->host) return 0;
    const tis_backend *be = st->be;
    int rc = be->upload(be->ctx, st->x, st->x_h, (size_t)(T * d) * sizeof(float));
    if (!rc) rc = be->upload(be->ctx, st->pos_b, st->pos, (size_t)T * sizeof(int32_t));
    return rc;
}

/* on_hidden with x[T][d_model] on the host (downloaded first on a backend
 * with its own memory). */
static int s_hidden(forward_state *st, const forward_hooks *hooks, int64_t layer, int64_t t_base, int64_t T) {
    if (st->host) {
        hooks->on_hidden(hooks->user, layer, t_base, st->x, T);
        return 0;
    }
    const tis_backend *be = st->be;
    int rc = be->download(be->ctx, st->x_h, st->x, (size_t)(T * st->m->config.d_model) * sizeof(float));
    if (!rc) hooks->on_hidden(hooks->user, layer, t_base, st->x_h, T);
    return rc;
}

/* Appends one segment's keys and values (rows r0.. of st->k, st->v) to
 * each (layer, kv-head) stream of its cache: positions and lengths on the
 * host, rows through the backend's kv_append (the host stores them itself
 * for a host backend without one). */
static int s_append(forward_state *st, kv_cache *kv, int64_t l, int64_t r0, int64_t Ti) {
    const tis_backend *be = st->be;
    int64_t hd = kv->head_dim, nkv = kv->n_kv_head, kd = nkv * hd;
    for (int64_t h = 0; h < nkv; h++) st->at[h] = kv->off[kv_stream(kv, l, h)] + kv->len[kv_stream(kv, l, h)];
    if (kv->kscale) { /* quantised keys: an empty stream takes its channel transform from these rows */
        if (!backend_is_host(be))
            return tis_error(TIS_EUNSUPPORTED, "forward: quantised keys on backend %s (their scales are set on the host)",
                             be->name);
        for (int64_t h = 0; h < nkv; h++)
            if (kv->len[kv_stream(kv, l, h)] == 0)
                kv_cache_key_scales_set(kv, kv_stream(kv, l, h), st->k + r0 * kd + h * hd, Ti, kd, st->rp.rope_dim,
                                        st->rp.interleaved);
    }
    if (be->kv_append) {
        int rc = be->kv_append(be->ctx, kv->k, kv->v, kv->bias, kv->k_type, kv->v_type, hd, nkv, st->at,
                               kv->kscale ? kv_cache_kscale(kv, kv_stream(kv, l, 0)) : NULL, st->k + r0 * kd,
                               st->v + r0 * kd, Ti);
        if (rc) return rc;
    }
    for (int64_t h = 0; h < nkv; h++) {
        int64_t s = kv_stream(kv, l, h), n0 = kv->len[s];
        int32_t *P = kv_cache_pos(kv, s);
        for (int64_t t = 0; t < Ti; t++) {
            if (!be->kv_append)
                kv_cache_put(kv, s, n0 + t, st->k + (r0 + t) * kd + h * hd, st->v + (r0 + t) * kd + h * hd);
            P[n0 + t] = st->pos[r0 + t];
        }
        if (!be->kv_append && kv->bias) memset(kv->bias + kv->off[s] + n0, 0, (size_t)Ti * sizeof(float));
        kv->len[s] = n0 + Ti;
    }
    return 0;
}

/* Layer l's entries of every segment, all appended before any attention.
 * On failure the segments appended at this layer are taken back. */
static int s_append_all(forward_state *st, const fw_seg *seg, int64_t n_seg, int64_t l) {
    int64_t r0 = 0;
    for (int64_t i = 0; i < n_seg; i++) {
        int rc = s_append(st, seg[i].kv, l, r0, seg[i].T);
        if (rc) {
            for (int64_t j = 0; j < i; j++)
                for (int64_t h = 0; h < st->m->config.n_kv_head; h++) seg[j].kv->len[kv_stream(seg[j].kv, l, h)] -= seg[j].T;
            return rc;
        }
        r0 += seg[i].T;
    }
    return 0;
}

/* Room for `rows` logits rows in the backend's memory (a backend with its own). */
static int s_logits_room(forward_state *st, int64_t rows) {
    if (st->host || rows <= st->lg_rows) return 0;
    const tis_backend *be = st->be;
    if (st->lg) be->free(be->ctx, st->lg);
    st->lg_rows = 0;
    st->lg = be->alloc(be->ctx, (size_t)(rows * st->m->config.n_vocab) * sizeof(float));
    if (!st->lg) return tis_error(TIS_ENOMEM, "forward: no %s memory for %lld logits rows", be->name, (long long)rows);
    st->lg_rows = rows;
    return 0;
}

/* Normalises the rows that want logits (gathered into xb), one product for
 * all, into the caller's host buffer (downloaded once on a backend with its
 * own memory). */
static int s_logits(forward_state *st, const fw_seg *seg, int64_t n_seg, float *logits) {
    const model_config *c = &st->m->config;
    const tis_backend *be = st->be;
    int64_t d = c->d_model, nl = 0, r0 = 0;
    for (int64_t i = 0; i < n_seg; i++) {
        for (int64_t t = seg[i].T - seg[i].n_logits; t < seg[i].T; t++, nl++)
            be->rmsnorm(be->ctx, st->xb + nl * d, st->x + (r0 + t) * d, st->w->out_norm, 1, d, c->norm_eps);
        r0 += seg[i].T;
    }
    if (nl == 0) return be->sync ? be->sync(be->ctx) : 0;
    float *lg = st->host ? logits : st->lg;
    if (be->matmul(be->ctx, lg, st->xb, &st->w->output, nl, false)) return TIS_ENOMEM;
    if (st->host) return 0;
    return be->download(be->ctx, logits, lg, (size_t)(nl * c->n_vocab) * sizeof(float));
}

/* One layer over the chunk's T rows; l's entries appended to every cache.
 * 0, or an error with *appended telling whether layer l's entries are in. */
static int s_layer(forward_state *st, const fw_seg *seg, int64_t n_seg, int64_t l, int64_t T,
                   const attn_observer *obs, bool *appended) {
    const model_config *c = &st->m->config;
    const layer_weights *L = &st->w->layers[l];
    const tis_backend *be = st->be;
    void *bc = be->ctx;
    int64_t d = c->d_model, nh = c->n_head, qd = nh * c->head_dim, kd = c->n_kv_head * c->head_dim;
    *appended = false;
    be->rmsnorm(bc, st->xb, st->x, L->attn_norm, T, d, c->norm_eps);
    int rc = be->matmul(bc, st->q, st->xb, &L->wq, T, false);
    if (!rc) rc = be->matmul(bc, st->k, st->xb, &L->wk, T, false);
    if (!rc) rc = be->matmul(bc, st->v, st->xb, &L->wv, T, false);
    if (rc) return rc;
    if (L->bq) {
        be->add_bias(bc, st->q, L->bq, T, qd);
        be->add_bias(bc, st->k, L->bk, T, kd);
        be->add_bias(bc, st->v, L->bv, T, kd);
    }
    be->rope(bc, st->q, st->pos_b, T, nh, &st->rp);
    be->rope(bc, st->k, st->pos_b, T, c->n_kv_head, &st->rp);
    if ((rc = s_append_all(st, seg, n_seg, l))) return rc;
    *appended = true;
    int64_t r0 = 0;
    for (int64_t i = 0; i < n_seg && !rc; i++) {
        kv_view kvv = kv_cache_view(seg[i].kv);
        rc = be->attention(bc, st->att + r0 * qd, st->q + r0 * qd, &kvv, l, seg[i].T, nh, obs);
        r0 += seg[i].T;
    }
    if (!rc) rc = be->matmul(bc, st->x, st->att, &L->wo, T, true);
    if (!rc) be->rmsnorm(bc, st->xb, st->x, L->ffn_norm, T, d, c->norm_eps);
    if (!rc) rc = be->matmul(bc, st->gate, st->xb, &L->w_gate, T, false);
    if (!rc) rc = be->matmul(bc, st->up, st->xb, &L->w_up, T, false);
    if (!rc) be->swiglu(bc, st->gate, st->up, T * c->d_ff);
    if (!rc) rc = be->matmul(bc, st->x, st->gate, &L->w_down, T, true);
    return rc;
}

static int s_chunk(forward_state *st, const fw_seg *seg, int64_t n_seg, float *logits,
                   const forward_hooks *hooks) {
    const model_config *c = &st->m->config;
    const tis_backend *be = st->be;
    int64_t T = 0, nl = 0;
    /* prompt tokens or generated ones (tis_backend.prompt_step): as the caller
     * said, else a segment of more than one token is prompt */
    bool prompt = st->prompt > 0;
    for (int64_t i = 0; st->prompt < 0 && i < n_seg; i++) prompt |= seg[i].T > 1;
    if (be->prompt_step) be->prompt_step(be->ctx, prompt);
    for (int64_t i = 0; i < n_seg; i++) T += seg[i].T, nl += seg[i].n_logits;
    int rc = s_logits_room(st, nl);
    if (!rc) rc = s_embed(st, seg, n_seg, T);
    if (rc) return rc;
    /* Hooks observe single-sequence calls (forward_run) only. */
    bool hk = hooks && n_seg == 1;
    int64_t t_base = seg[0].t_base;
    attn_relay relay = {hooks, t_base};
    attn_observer obs = {hk && hooks->on_attn ? s_attn_relay : NULL, &relay};

    /* forward_hooks.stop_layer: the layers below it only */
    int64_t n_run = hk && hooks->stop_layer > 0 && hooks->stop_layer < c->n_layer ? hooks->stop_layer : c->n_layer;
    for (int64_t l = 0; l < n_run; l++) {
        if (hk && hooks->on_hidden && (rc = s_hidden(st, hooks, l, t_base, T))) return s_chunk_undo(st, seg, n_seg, l, rc);
        bool appended;
        rc = s_layer(st, seg, n_seg, l, T, obs.fn ? &obs : NULL, &appended);
        if (rc) return s_chunk_undo(st, seg, n_seg, appended ? l + 1 : l, rc);
    }
    if (n_run < c->n_layer) {
        if (hooks->on_hidden && (rc = s_hidden(st, hooks, n_run, t_base, T)))
            return s_chunk_undo(st, seg, n_seg, n_run, rc);
        if (be->sync && (rc = be->sync(be->ctx))) return s_chunk_undo(st, seg, n_seg, n_run, rc);
        seg[0].kv->n_past += seg[0].T;
        return 0;
    }
    if (hk && hooks->on_hidden && (rc = s_hidden(st, hooks, c->n_layer, t_base, T)))
        return s_chunk_undo(st, seg, n_seg, c->n_layer, rc);
    if ((rc = s_logits(st, seg, n_seg, logits))) return s_chunk_undo(st, seg, n_seg, c->n_layer, rc);
    for (int64_t i = 0; i < n_seg; i++) seg[i].kv->n_past += seg[i].T;
    return 0;
}

static int s_check(const forward_state *st, const kv_cache *kv, const int32_t *ids, int64_t T) {
    const model_config *c = &st->m->config;
    if (T <= 0) return tis_error(TIS_EINVAL, "forward: no tokens");
    if (kv->n_layer != c->n_layer || kv->n_kv_head != c->n_kv_head || kv->head_dim != c->head_dim)
        return tis_error(TIS_EINVAL, "forward: the KV cache does not fit this model");
    if (kv->be != (st->host ? NULL : st->be))
        return tis_error(TIS_EINVAL, "forward: the KV cache lives in %s memory, the backend %s computes in %s",
                         kv->be ? kv->be->name : "host", st->be->name, st->host ? "host memory" : "its own");
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->n_vocab)
            return tis_error(TIS_EINVAL, "forward: token id %d at %lld is outside the vocabulary (%lld)",
                             ids[t], (long long)t, (long long)c->n_vocab);
    if (kv_cache_room(kv) < T)
        return tis_error(TIS_ERANGE, "forward: the KV cache has room for %lld more tokens, %lld given",
                         (long long)kv_cache_room(kv), (long long)T);
    if (kv->n_past + T > INT32_MAX) return tis_error(TIS_ERANGE, "forward: position overflow");
    return 0;
}

void forward_set_prompt(forward_state *st, int prompt) { st->prompt = prompt < 0 ? -1 : prompt > 0; }

int forward_run(forward_state *st, kv_cache *kv, const int32_t *ids, int64_t T,
                float *logits, int64_t n_logits, const forward_hooks *hooks) {
    const model_config *c = &st->m->config;
    int rc = s_check(st, kv, ids, T);
    if (rc) return rc;
    if (n_logits < 0 || n_logits > T)
        return tis_error(TIS_EINVAL, "forward: %lld logits rows for %lld tokens",
                         (long long)n_logits, (long long)T);
    if (hooks && hooks->stop_layer != 0 && (hooks->stop_layer < 0 || n_logits > 0))
        return tis_error(TIS_EINVAL, "forward: stop_layer %lld with %lld logits rows (a pass that stops early "
                         "gives no logits)", (long long)hooks->stop_layer, (long long)n_logits);
    if (hooks && hooks->on_attn && st->be->cannot_observe)
        return tis_error(TIS_EUNSUPPORTED, "forward: the %s backend cannot observe attention probabilities "
                                           "(on_attn): run what needs them on the cpu backend", st->be->name);
    for (int64_t t0 = 0; t0 < T; t0 += st->max_batch) {
        int64_t n = T - t0 < st->max_batch ? T - t0 : st->max_batch;
        /* Logit rows that fall in this chunk (they are the call's last rows). */
        int64_t first_logit = T - n_logits;
        int64_t nl = 0;
        float *lg = NULL;
        if (t0 + n > first_logit) {
            int64_t from = first_logit > t0 ? first_logit : t0;
            nl = t0 + n - from;
            lg = logits + (from - first_logit) * c->n_vocab;
        }
        fw_seg sg = {kv, ids + t0, n, t0, nl};
        rc = s_chunk(st, &sg, 1, lg, hooks);
        if (rc) return rc;
    }
    return 0;
}

int forward_run_batch(forward_state *st, kv_cache *const *kvs, int64_t n_seq,
                      const int32_t *const *ids, const int64_t *n_tok, float *logits) {
    const model_config *c = &st->m->config;
    if (n_seq <= 0) return tis_error(TIS_EINVAL, "forward: empty batch");
    for (int64_t i = 0; i < n_seq; i++) {
        int rc = s_check(st, kvs[i], ids[i], n_tok[i]);
        if (rc) return rc;
        for (int64_t j = 0; j < i; j++)
            if (kvs[j] == kvs[i])
                return tis_error(TIS_EINVAL, "forward: sequences %lld and %lld share a cache",
                                 (long long)j, (long long)i);
    }
    fw_seg *seg = malloc((size_t)st->max_batch * sizeof *seg);
    if (!seg) return tis_error(TIS_ENOMEM, "forward: out of memory");
    int64_t i = 0, done = 0; /* sequence i, its tokens already run */
    while (i < n_seq) {
        int64_t rows = 0, ns = 0, first_logit_seq = -1;
        while (i < n_seq && rows < st->max_batch) {
            int64_t take = n_tok[i] - done;
            if (take > st->max_batch - rows) take = st->max_batch - rows;
            bool last = done + take == n_tok[i];
            seg[ns++] = (fw_seg){kvs[i], ids[i] + done, take, done, last ? 1 : 0};
            if (last && first_logit_seq < 0) first_logit_seq = i;
            rows += take;
            if (last) {
                i++;
                done = 0;
            } else {
                done += take;
            }
        }
        /* Sequences finishing in this chunk are consecutive: their rows are too. */
        int rc = s_chunk(st, seg, ns, first_logit_seq >= 0 ? logits + first_logit_seq * c->n_vocab : NULL, NULL);
        if (rc) {
            free(seg);
            return rc;
        }
    }
    free(seg);
    return 0;
}
