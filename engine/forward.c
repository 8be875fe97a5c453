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
    int32_t *pos;    /* [B] */
    float *inv_freq; /* [rope_dim/2] */
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
    if (!st->x || !st->xb || !st->q || !st->k || !st->v || !st->att || !st->gate || !st->up ||
        !st->pos || !st->inv_freq) {
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
    free(st->pos);
    free(st->inv_freq);
    free(st);
    *p = NULL;
}

const model *forward_model(const forward_state *st) { return st->m; }

const rope_params *forward_rope_params(const forward_state *st) { return &st->rp; }

int forward_kv_new(const model *m, int64_t cap, kv_cache **out) {
    return kv_cache_new(out, m->config.n_layer, m->config.n_kv_head, m->config.head_dim, cap, m->kv_type);
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

static int s_chunk(forward_state *st, const fw_seg *seg, int64_t n_seg, float *logits,
                   const forward_hooks *hooks) {
    const model_config *c = &st->m->config;
    const model_weights *w = &st->m->weights;
    const tis_backend *be = st->be;
    void *bc = be->ctx;
    int64_t d = c->d_model, hd = c->head_dim, nh = c->n_head, nkv = c->n_kv_head;
    int64_t qd = nh * hd, kd = nkv * hd;
    int64_t T = 0;
    /* prompt tokens or generated ones (tis_backend.prompt_step): as the caller
     * said, else a segment of more than one token is prompt */
    bool prompt = st->prompt > 0;
    for (int64_t i = 0; st->prompt < 0 && i < n_seg; i++) prompt |= seg[i].T > 1;
    if (be->prompt_step) be->prompt_step(bc, prompt);
    for (int64_t i = 0; i < n_seg; i++) {
        for (int64_t t = 0; t < seg[i].T; t++) {
            model_embed(st->m, seg[i].ids[t], st->x + (T + t) * d);
            st->pos[T + t] = (int32_t)(seg[i].kv->n_past + t);
        }
        T += seg[i].T;
    }
    /* Hooks observe single-sequence calls (forward_run) only. */
    bool hk = hooks && n_seg == 1;
    int64_t t_base = seg[0].t_base;
    attn_relay relay = {hooks, t_base};
    attn_observer obs = {hk && hooks->on_attn ? s_attn_relay : NULL, &relay};

    for (int64_t l = 0; l < c->n_layer; l++) {
        const layer_weights *L = &w->layers[l];
        if (hk && hooks->on_hidden) hooks->on_hidden(hooks->user, l, t_base, st->x, T);
        be->rmsnorm(bc, st->xb, st->x, L->attn_norm, T, d, c->norm_eps);
        int rc = be->matmul(bc, st->q, st->xb, &L->wq, T, false);
        if (!rc) rc = be->matmul(bc, st->k, st->xb, &L->wk, T, false);
        if (!rc) rc = be->matmul(bc, st->v, st->xb, &L->wv, T, false);
        if (rc) return s_chunk_undo(st, seg, n_seg, l, rc);
        if (L->bq) {
            be->add_bias(bc, st->q, L->bq, T, qd);
            be->add_bias(bc, st->k, L->bk, T, kd);
            be->add_bias(bc, st->v, L->bv, T, kd);
        }
        be->rope(bc, st->q, st->pos, T, nh, &st->rp);
        be->rope(bc, st->k, st->pos, T, nkv, &st->rp);
        int64_t r0 = 0;
        for (int64_t i = 0; i < n_seg; i++) { /* (layer l's entries: all appended before any attention) */
            kv_cache *kv = seg[i].kv;
            int64_t Ti = seg[i].T;
            /* Append this segment's keys and values to each (layer, kv-head) stream. */
            for (int64_t h = 0; h < nkv; h++) {
                int64_t s = kv_stream(kv, l, h);
                int32_t *P = kv_cache_pos(kv, s);
                int64_t n0 = kv->len[s];
                for (int64_t t = 0; t < Ti; t++) {
                    kv_cache_put(kv, s, n0 + t, st->k + (r0 + t) * kd + h * hd, st->v + (r0 + t) * kd + h * hd);
                    P[n0 + t] = st->pos[r0 + t];
                }
                if (kv->bias) memset(kv->bias + kv->off[s] + n0, 0, (size_t)Ti * sizeof(float));
                kv->len[s] = n0 + Ti;
            }
            r0 += Ti;
        }
        r0 = 0;
        for (int64_t i = 0; i < n_seg && !rc; i++) {
            kv_view kvv = kv_cache_view(seg[i].kv);
            rc = be->attention(bc, st->att + r0 * qd, st->q + r0 * qd, &kvv, l, seg[i].T, nh, obs.fn ? &obs : NULL);
            r0 += seg[i].T;
        }
        if (!rc) rc = be->matmul(bc, st->x, st->att, &L->wo, T, true);
        if (!rc) be->rmsnorm(bc, st->xb, st->x, L->ffn_norm, T, d, c->norm_eps);
        if (!rc) rc = be->matmul(bc, st->gate, st->xb, &L->w_gate, T, false);
        if (!rc) rc = be->matmul(bc, st->up, st->xb, &L->w_up, T, false);
        if (!rc) be->swiglu(bc, st->gate, st->up, T * c->d_ff);
        if (!rc) rc = be->matmul(bc, st->x, st->gate, &L->w_down, T, true);
        if (rc) return s_chunk_undo(st, seg, n_seg, l + 1, rc);
    }
    if (hk && hooks->on_hidden) hooks->on_hidden(hooks->user, c->n_layer, t_base, st->x, T);
    /* Gather the rows that want logits, normalise, one product for all. */
    int64_t nl = 0, r0 = 0;
    for (int64_t i = 0; i < n_seg; i++) {
        seg[i].kv->n_past += seg[i].T;
        for (int64_t t = seg[i].T - seg[i].n_logits; t < seg[i].T; t++, nl++)
            be->rmsnorm(bc, st->xb + nl * d, st->x + (r0 + t) * d, w->out_norm, 1, d, c->norm_eps);
        r0 += seg[i].T;
    }
    if (nl > 0 && be->matmul(bc, logits, st->xb, &w->output, nl, false)) {
        for (int64_t i = 0; i < n_seg; i++) seg[i].kv->n_past -= seg[i].T;
        return s_chunk_undo(st, seg, n_seg, c->n_layer, TIS_ENOMEM);
    }
    return 0;
}

static int s_check(const forward_state *st, const kv_cache *kv, const int32_t *ids, int64_t T) {
    const model_config *c = &st->m->config;
    if (T <= 0) return tis_error(TIS_EINVAL, "forward: no tokens");
    if (kv->n_layer != c->n_layer || kv->n_kv_head != c->n_kv_head || kv->head_dim != c->head_dim)
        return tis_error(TIS_EINVAL, "forward: the KV cache does not fit this model");
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
