/* model: weights from GGUF or safetensors, used in place from the file's mapping. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "kv.h"
#include "quant.h"
#include "safetensors.h"
#include "qdot.h"
#include "tis_error.h"

/* A tensor as either source presents it: shape outermost-first, raw data. */
typedef struct src_tensor {
    int n_dims;
    int64_t shape[4]; /* shape[n_dims-1] contiguous */
    int type;         /* ggml_type */
    const void *data;
    size_t nbytes;
} src_tensor;

typedef struct loader {
    const gguf_file *g;
    const st_model *st;
    model *m;
    size_t used;   /* floats of the arena handed out */
    size_t mat_bytes; /* bytes of the matrices viewed */
} loader;

static int s_st_to_ggml(st_dtype d) {
    switch (d) {
    case ST_F32: return GGML_TYPE_F32;
    case ST_F16: return GGML_TYPE_F16;
    case ST_BF16: return GGML_TYPE_BF16;
    default: return -1;
    }
}

/* Finds a tensor; 0, TIS_ENOTFOUND (no message) or an error. */
static int s_find(const loader *ld, const char *name, src_tensor *t) {
    memset(t, 0, sizeof *t);
    if (ld->g) {
        const gguf_tensor *gt = gguf_tensor_find(ld->g, name);
        if (!gt) return TIS_ENOTFOUND;
        t->n_dims = (int)gt->n_dims;
        for (uint32_t i = 0; i < gt->n_dims; i++) t->shape[gt->n_dims - 1 - i] = gt->ne[i];
        t->type = gt->type;
        t->data = gt->data;
        t->nbytes = gt->nbytes;
        return 0;
    }
    const st_tensor *st = st_model_find(ld->st, name);
    if (!st) return TIS_ENOTFOUND;
    if (st->n_dims > 4) return tis_error(TIS_EFORMAT, "tensor '%s' has %d dims", name, st->n_dims);
    t->type = s_st_to_ggml(st->dtype);
    if (t->type < 0)
        return tis_error(TIS_EUNSUPPORTED, "tensor '%s': dtype %s is not supported (F32/F16/BF16)",
                         name, st_dtype_name(st->dtype));
    t->n_dims = st->n_dims;
    for (int i = 0; i < st->n_dims; i++) t->shape[i] = st->shape[i];
    t->data = st->data;
    t->nbytes = st->nbytes;
    return 0;
}

/* Finds tensor `name` of shape [rows][cols] (rows = 0: a vector of cols)
 * and checks it: *t, *row_bytes. 1 when optional and absent. */
static int s_check(loader *ld, const char *name, int64_t rows, int64_t cols, bool optional, src_tensor *t,
                   size_t *row_bytes) {
    int rc = s_find(ld, name, t);
    if (rc == TIS_ENOTFOUND) {
        if (optional) return 1;
        return tis_error(TIS_EFORMAT, "%s: tensor '%s' is missing", ld->m->path, name);
    }
    if (rc) return rc;
    bool ok = rows == 0 ? (t->n_dims == 1 && t->shape[0] == cols)
                        : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok)
        return tis_error(TIS_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                         ld->m->path, name, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 1),
                         t->n_dims, (long long)(rows ? rows : cols), (long long)(rows ? cols : 1));
    const char *tn = quant_type_name(t->type) ? quant_type_name(t->type) : "?";
    if ((rc = quant_row_bytes(t->type, cols, row_bytes)) != 0)
        return tis_error(rc, "%s: tensor '%s' (%s): %s", ld->m->path, name, tn, tis_last_error());
    if (!quant_type_supported(t->type))
        return tis_error(TIS_EUNSUPPORTED, "%s: tensor '%s' has unsupported type %s", ld->m->path, name, tn);
    if (*row_bytes * (size_t)(rows ? rows : 1) > t->nbytes)
        return tis_error(TIS_EFORMAT, "%s: tensor '%s' data is shorter than its shape", ld->m->path, name);
    return 0;
}

/* A vector, dequantised into the arena (or only counted, arena NULL). */
static int s_take_vec(loader *ld, const char *name, int64_t n, bool optional, const float **out) {
    *out = NULL;
    src_tensor t;
    size_t rb;
    int rc = s_check(ld, name, 0, n, optional, &t, &rb);
    if (rc) return rc < 0 ? rc : 0;
    if (ld->m->arena) {
        float *dst = ld->m->arena + ld->used;
        quant_dequantize_row(t.type, t.data, dst, n);
        *out = dst;
    }
    ld->used += ((size_t)n + 15) & ~(size_t)15; /* 64-byte aligned views */
    return 0;
}

/* A matrix, viewed in place in its type. */
static int s_take_mat(loader *ld, const char *name, int64_t rows, int64_t cols, tis_weight *out) {
    memset(out, 0, sizeof *out);
    src_tensor t;
    size_t rb;
    int rc = s_check(ld, name, rows, cols, false, &t, &rb);
    if (rc) return rc;
    if (!qdot_type_supported(t.type))
        return tis_error(TIS_EUNSUPPORTED, "%s: matrix '%s' of type %s cannot be multiplied here", ld->m->path, name,
                         quant_type_name(t.type));
    *out = (tis_weight){.type = t.type, .data = t.data, .row_bytes = rb, .n_in = cols, .n_out = rows};
    ld->mat_bytes += rb * (size_t)rows;
    return 0;
}

/* Tensor names per format: GGUF (llama.cpp) and HF. */
typedef struct names {
    const char *embd, *norm, *output;
    const char *attn_norm, *q, *k, *v, *bq, *bk, *bv, *o, *ffn_norm, *gate, *up, *down;
} names;

static const names s_gguf_names = {
    "token_embd.weight", "output_norm.weight", "output.weight",
    "blk.%lld.attn_norm.weight", "blk.%lld.attn_q.weight", "blk.%lld.attn_k.weight",
    "blk.%lld.attn_v.weight", "blk.%lld.attn_q.bias", "blk.%lld.attn_k.bias",
    "blk.%lld.attn_v.bias", "blk.%lld.attn_output.weight", "blk.%lld.ffn_norm.weight",
    "blk.%lld.ffn_gate.weight", "blk.%lld.ffn_up.weight", "blk.%lld.ffn_down.weight"};

static const names s_hf_names = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
    "model.layers.%lld.input_layernorm.weight", "model.layers.%lld.self_attn.q_proj.weight",
    "model.layers.%lld.self_attn.k_proj.weight", "model.layers.%lld.self_attn.v_proj.weight",
    "model.layers.%lld.self_attn.q_proj.bias", "model.layers.%lld.self_attn.k_proj.bias",
    "model.layers.%lld.self_attn.v_proj.bias", "model.layers.%lld.self_attn.o_proj.weight",
    "model.layers.%lld.post_attention_layernorm.weight", "model.layers.%lld.mlp.gate_proj.weight",
    "model.layers.%lld.mlp.up_proj.weight", "model.layers.%lld.mlp.down_proj.weight"};

/* One pass over every weight: counts (arena NULL) or fills. */
static int s_walk(loader *ld, const names *nm) {
    model *m = ld->m;
    const model_config *c = &m->config;
    int64_t d = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv_head * c->head_dim;
    model_weights *w = &m->weights;
    int rc;
    ld->used = ld->mat_bytes = 0;
    if ((rc = s_take_mat(ld, nm->embd, c->n_vocab, d, &w->tok_embd))) return rc;
    if ((rc = s_take_vec(ld, nm->norm, d, false, &w->out_norm))) return rc;
    if (!c->tied_embeddings) {
        if ((rc = s_take_mat(ld, nm->output, c->n_vocab, d, &w->output))) return rc;
    } else {
        w->output = w->tok_embd;
    }
    w->output.f32_act = true; /* the logits: see tis_weight.f32_act */
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer_weights *L = &w->layers[l];
        char nb[160];
#define VEC(fmt, n, opt, dst)                                            \
    do {                                                                 \
        snprintf(nb, sizeof nb, fmt, (long long)l);                      \
        if ((rc = s_take_vec(ld, nb, n, opt, &(dst)))) return rc;        \
    } while (0)
#define MAT(fmt, rows, cols, dst)                                        \
    do {                                                                 \
        snprintf(nb, sizeof nb, fmt, (long long)l);                      \
        if ((rc = s_take_mat(ld, nb, rows, cols, &(dst)))) return rc;    \
    } while (0)
        VEC(nm->attn_norm, d, false, L->attn_norm);
        MAT(nm->q, qd, d, L->wq);
        MAT(nm->k, kd, d, L->wk);
        MAT(nm->v, kd, d, L->wv);
        VEC(nm->bq, qd, !c->qkv_bias, L->bq);
        VEC(nm->bk, kd, !c->qkv_bias, L->bk);
        VEC(nm->bv, kd, !c->qkv_bias, L->bv);
        MAT(nm->o, d, qd, L->wo);
        VEC(nm->ffn_norm, d, false, L->ffn_norm);
        MAT(nm->gate, c->d_ff, d, L->w_gate);
        MAT(nm->up, c->d_ff, d, L->w_up);
        MAT(nm->down, d, c->d_ff, L->w_down);
#undef VEC
#undef MAT
    }
    return 0;
}

static int s_load_weights(model *m, const gguf_file *g, const st_model *st) {
    loader ld = {.g = g, .st = st, .m = m};
    const names *nm = g ? &s_gguf_names : &s_hf_names;
    m->weights.layers = calloc((size_t)m->config.n_layer, sizeof(layer_weights));
    if (!m->weights.layers) return tis_error(TIS_ENOMEM, "model: out of memory");
    if (!g) {
        /* HF: tied when lm_head is absent, whatever the config said. */
        src_tensor t;
        if (s_find(&ld, nm->output, &t) == TIS_ENOTFOUND) m->config.tied_embeddings = true;
    }
    int rc = s_walk(&ld, nm); /* count */
    if (rc) return rc;
    m->arena_bytes = ld.used * sizeof(float);
    m->arena = aligned_alloc(64, m->arena_bytes ? m->arena_bytes : 64);
    if (!m->arena)
        return tis_error(TIS_ENOMEM, "model: cannot allocate %.1f MiB for weights",
                         (double)m->arena_bytes / 1048576.0);
    if ((rc = s_walk(&ld, nm))) return rc;
    m->weights_bytes = ld.mat_bytes + m->arena_bytes;
    const model_config *c = &m->config;
    int64_t d = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv_head * c->head_dim;
    m->n_params = c->n_vocab * d * (c->tied_embeddings ? 1 : 2) + d +
                  c->n_layer * (2 * d + qd * d * 2 + kd * d * 2 + 3 * d * c->d_ff);
    return 0;
}

int model_load(model **out, const char *path) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return tis_error(TIS_EIO, "model: cannot open '%s'", path);
    model *m = calloc(1, sizeof *m);
    if (!m) return tis_error(TIS_ENOMEM, "model: out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    int rc = 0;
    const char *kvt = getenv("TIS_KV_TYPE");
    m->kv_type = kv_types_of(GGML_TYPE_F16);
    if (kvt && *kvt && kv_types_parse(kvt, &m->kv_type)) {
        rc = tis_error(TIS_EINVAL, "TIS_KV_TYPE='%s': the KV cache holds f16, f32, bf16, q8_0 or q4_0 (keys and values, "
                                   "or KEYS,VALUES)", kvt);
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(m->format, sizeof m->format, "safetensors");
        char p[1100];
        st_model *st = NULL;
        snprintf(p, sizeof p, "%s/config.json", path);
        if ((rc = config_from_hf_json(&m->config, p))) goto fail;
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if ((rc = tokenizer_from_json(&m->tok, p))) goto fail;
        if ((rc = st_model_open(&st, path))) goto fail;
        m->st = st; /* the matrices are views into its mapping */
        rc = s_load_weights(m, NULL, st);
        if (rc) goto fail;
    } else {
        snprintf(m->format, sizeof m->format, "gguf");
        gguf_file *g = NULL;
        if ((rc = gguf_open(&g, path))) goto fail;
        rc = config_from_gguf(&m->config, g);
        if (!rc) rc = tokenizer_from_gguf(&m->tok, g);
        if (!rc && tokenizer_n_vocab(m->tok) > m->config.n_vocab)
            rc = tis_error(TIS_EFORMAT, "%s: tokenizer has %lld tokens, model vocab %lld", path,
                           (long long)tokenizer_n_vocab(m->tok), (long long)m->config.n_vocab);
        m->g = g; /* the matrices are views into its mapping */
        if (!rc) rc = s_load_weights(m, g, NULL);
        if (rc) goto fail;
    }
    *out = m;
    return 0;
fail:
    model_destroy(&m);
    return rc;
}

/* ---- backend copies of the weights ---- */

static void s_release_mat(const tis_backend *be, tis_weight *w) {
    if (w->data) be->free(be->ctx, (void *)w->data);
    w->data = NULL;
}

static void s_release_vec(const tis_backend *be, const float **v) {
    if (*v) be->free(be->ctx, (void *)*v);
    *v = NULL;
}

static void s_release_backend(model *m) {
    const tis_backend *be = m->be;
    model_weights *w = &m->be_weights;
    if (!be) return;
    for (int64_t l = 0; w->layers && l < m->config.n_layer; l++) {
        layer_weights *L = &w->layers[l];
        tis_weight *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) s_release_mat(be, mats[i]);
        const float **vecs[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) s_release_vec(be, vecs[i]);
    }
    s_release_mat(be, &w->output);
    s_release_vec(be, &w->out_norm);
    free(w->layers);
    memset(w, 0, sizeof *w);
    m->be = NULL;
}

/* dst = src (n floats, host) in be's memory; NULL src gives NULL. */
static int s_up_vec(const tis_backend *be, const float **dst, const float *src, int64_t n) {
    *dst = NULL;
    if (!src) return 0;
    float *d = be->alloc(be->ctx, (size_t)n * sizeof(float));
    if (!d) return tis_error(TIS_ENOMEM, "model: no %s memory for a vector of %lld", be->name, (long long)n);
    *dst = d;
    return be->upload(be->ctx, d, src, (size_t)n * sizeof(float));
}

static int s_prep_mat(const tis_backend *be, tis_weight *dst, const tis_weight *src) {
    memset(dst, 0, sizeof *dst);
    int rc = be->weight_prepare(be->ctx, dst, src);
    dst->f32_act = src->f32_act;
    return rc;
}

static int s_prepare_layers(model *m, const tis_backend *be) {
    const model_config *c = &m->config;
    int64_t d = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv_head * c->head_dim;
    int rc = 0;
    for (int64_t l = 0; !rc && l < c->n_layer; l++) {
        const layer_weights *H = &m->weights.layers[l];
        layer_weights *L = &m->be_weights.layers[l];
        rc = s_up_vec(be, &L->attn_norm, H->attn_norm, d);
        if (!rc) rc = s_up_vec(be, &L->ffn_norm, H->ffn_norm, d);
        if (!rc) rc = s_up_vec(be, &L->bq, H->bq, qd);
        if (!rc) rc = s_up_vec(be, &L->bk, H->bk, kd);
        if (!rc) rc = s_up_vec(be, &L->bv, H->bv, kd);
        if (!rc) rc = s_prep_mat(be, &L->wq, &H->wq);
        if (!rc) rc = s_prep_mat(be, &L->wk, &H->wk);
        if (!rc) rc = s_prep_mat(be, &L->wv, &H->wv);
        if (!rc) rc = s_prep_mat(be, &L->wo, &H->wo);
        if (!rc) rc = s_prep_mat(be, &L->w_gate, &H->w_gate);
        if (!rc) rc = s_prep_mat(be, &L->w_up, &H->w_up);
        if (!rc) rc = s_prep_mat(be, &L->w_down, &H->w_down);
    }
    return rc;
}

int model_to_backend(model *m, const tis_backend *be) {
    if (backend_is_host(be) || m->be == be) return 0;
    if (!be->weight_prepare || !be->download)
        return tis_error(TIS_EUNSUPPORTED, "model: backend %s has its own memory but no weight_prepare/download",
                         be->name);
    s_release_backend(m);
    m->be = be;
    m->be_weights.layers = calloc((size_t)m->config.n_layer, sizeof(layer_weights));
    int rc = m->be_weights.layers ? 0 : tis_error(TIS_ENOMEM, "model: out of memory");
    if (!rc) rc = s_prepare_layers(m, be);
    if (!rc) rc = s_up_vec(be, &m->be_weights.out_norm, m->weights.out_norm, m->config.d_model);
    if (!rc) rc = s_prep_mat(be, &m->be_weights.output, &m->weights.output);
    /* the embedding lookup reads the host's table: no copy (model.h) */
    if (rc) s_release_backend(m);
    return rc;
}

void model_release_backend(model *m) { s_release_backend(m); }

const model_weights *model_weights_on(const model *m, const tis_backend *be) {
    if (backend_is_host(be)) return &m->weights;
    return m->be == be ? &m->be_weights : NULL;
}

void model_destroy(model **p) {
    if (!p || !*p) return;
    model *m = *p;
    s_release_backend(m);
    tokenizer_destroy(&m->tok);
    free(m->weights.layers);
    free(m->arena);
    gguf_destroy(&m->g);
    st_model_destroy(&m->st);
    free(m);
    *p = NULL;
}

void model_embed(const model *m, int32_t id, float *x) {
    const tis_weight *e = &m->weights.tok_embd;
    TIS_ASSERT(id >= 0 && id < e->n_out); /* forward checks ids before */
    quant_dequantize_row(e->type, (const uint8_t *)e->data + (size_t)id * e->row_bytes, x, e->n_in);
}
