/* label: one sample's oracle labels and features; shards written and read. */
#include "label.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "eval.h"
#include "session.h"
#include "selfinfo.h"
#include "oracle.h"
#include "safetensors.h"
#include "clock.h"
#include "quant.h"
#include "tis_error.h"

uint16_t label_f16(float x) {
    if (x > 65504.0f) x = 65504.0f;
    if (x < -65504.0f) x = -65504.0f;
    return quant_f32_to_f16(x); /* no _Float16: some clang targets lack it */
}

float label_f32(uint16_t u) { return quant_f16_to_f32(u); }

/* Keeps the rows of one layer's residual stream that the head needs. */
typedef struct feat_hook {
    int64_t layer, d, base;           /* base: position of the call's row 0 */
    int64_t ctx_begin, n_ctx, suf_begin;
    uint16_t *ctx, *query;
} feat_hook;

static void s_on_hidden(void *user, int64_t layer, int64_t t0, const float *x, int64_t T) {
    feat_hook *h = user;
    if (layer != h->layer) return;
    for (int64_t r = 0; r < T; r++) {
        int64_t pos = h->base + t0 + r;
        uint16_t *dst = NULL;
        if (pos >= h->ctx_begin && pos < h->ctx_begin + h->n_ctx) dst = h->ctx + (pos - h->ctx_begin) * h->d;
        else if (pos >= h->suf_begin) dst = h->query + (pos - h->suf_begin) * h->d;
        if (dst)
            for (int64_t i = 0; i < h->d; i++) dst[i] = label_f16(x[r * h->d + i]);
    }
}

/* The model's greedy short answer after feed (one token) from kv: its
 * tokens as generated and its trimmed text. */
static int s_model_answer(forward_state *st, kv_cache *kv, const int32_t *feed, int64_t max_new, int32_t **ids,
                          int64_t *n, char **text) {
    *ids = NULL;
    *n = 0;
    *text = NULL;
    decoder *d = NULL;
    decoder_answer a;
    int rc = decoder_new(&d, st, 1);
    if (!rc) rc = decoder_answer_run(d, kv, feed, 1, max_new, NULL, &a); /* as the labels were made */
    if (!rc) { /* ownership moves to the caller */
        *ids = a.ids;
        *n = a.n;
        *text = a.text;
    }
    decoder_destroy(&d);
    return rc;
}

/* The layer whose hidden states are kept must exist (n_layer: after the last). */
static int s_check_layer(const label_config *cfg, const model_config *c) {
    if (cfg->layer < 0 || cfg->layer > c->n_layer)
        return tis_error(TIS_EINVAL, "label: layer %lld outside 0..%lld", (long long)cfg->layer,
                         (long long)c->n_layer);
    return 0;
}

int label_run(forward_state *st, const chat_template *ct, const label_config *cfg,
              const bench_sample *s, label_sample *out) {
    memset(out, 0, sizeof *out);
    const model *m = forward_model(st);
    const model_config *c = &m->config;
    if (s_check_layer(cfg, c)) return TIS_EINVAL;
    session_input in;
    eval_session_input(s, &in);
    session_prompt p;
    int rc = session_prompt_build(m->tok, ct, cfg->chat, &in, &p);
    if (rc) return rc;
    kv_cache *kv = NULL, *fork = NULL;
    oracle_labels orc = {0};
    int64_t n_q = p.n - p.suf_begin, d = c->d_model;
    snprintf(out->id, sizeof out->id, "%s", s->id);
    out->ids = p.ids; /* ownership moves to out */
    out->n_tokens = p.n;
    out->ctx_begin = p.ctx_begin;
    out->n_ctx = p.n_ctx;
    out->suf_begin = p.suf_begin;
    p.ids = NULL;
    out->features = malloc((size_t)(p.n_ctx * d) * sizeof(uint16_t));
    out->query_features = malloc((size_t)(n_q * d) * sizeof(uint16_t));
    if (!out->features || !out->query_features) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory for %lld x %lld features", (long long)p.n_ctx,
                       (long long)d);
        goto done;
    }
    bool given = s->n_answers > 0 && !cfg->use_model_answer;
    if (given) {
        rc = session_answer_ids(m->tok, &in, &out->answer_ids, &out->n_answer);
        if (rc) goto done;
        out->answer = strdup(s->answers[0]);
    }
    int64_t extra = (given ? out->n_answer : cfg->max_new) + 2;
    rc = forward_kv_new(m, p.n + extra, &kv);
    if (rc) goto done;
    feat_hook fh = {cfg->layer, d, 0, p.ctx_begin, p.n_ctx, p.suf_begin, out->features, out->query_features};
    forward_hooks hooks = {.on_hidden = s_on_hidden, .user = &fh};
    /* All but the last token, then the last one: the model's own answer
     * starts from a fork taken between the two. */
    rc = forward_run(st, kv, out->ids, p.n - 1, NULL, 0, &hooks);
    if (rc) goto done;
    if (!given) {
        char *text = NULL;
        rc = kv_cache_compact(&fork, kv, NULL, cfg->max_new + 2);
        if (!rc) rc = s_model_answer(st, fork, out->ids + p.n - 1, cfg->max_new, &out->answer_ids,
                                     &out->n_answer, &text);
        kv_cache_destroy(&fork);
        out->answer = text;
        out->answer_from_model = true;
        if (rc) goto done;
    }
    if (out->n_answer <= 0) {
        rc = tis_error(TIS_EINVAL, "label: sample %s: the %s answer is empty", s->id,
                       given ? "given" : "model's");
        goto done;
    }
    fh.base = p.n - 1;
    rc = forward_run(st, kv, out->ids + p.n - 1, 1, NULL, 0, &hooks);
    if (rc) goto done;
    rc = oracle_compute(st, kv, p.ctx_begin, p.n_ctx, out->answer_ids, out->n_answer, cfg->per_head, &orc);
    if (rc) goto done;
    out->labels = orc.total;
    out->labels_per_head = orc.per_head;
    orc.total = orc.per_head = NULL;
done:
    oracle_labels_free(&orc);
    kv_cache_destroy(&kv);
    session_prompt_free(&p);
    if (rc) label_sample_free(out);
    return rc;
}

/* The agnostic state's labels (recon, selfinfo): a session with prefix +
 * context only, its hidden rows as features, then the target's scores. */
static int s_run_agnostic(forward_state *st, const chat_template *ct, const label_config *cfg,
                          const bench_sample *s, label_sample *out) {
    memset(out, 0, sizeof *out);
    const model *m = forward_model(st);
    const model_config *c = &m->config;
    if (s_check_layer(cfg, c)) return TIS_EINVAL;
    const bool recon = cfg->target == HEAD_TARGET_RECON;
    double t0 = tis_now();
    session_input in;
    eval_session_input(s, &in);
    in.answer = NULL; /* nothing is answered */
    session_opts so = {.chat = cfg->chat, .agnostic = true, .query_aware = false, .window = 64, .n_sink = 4,
                       .hid_layer = cfg->layer};
    session *ss = NULL;
    float *rows = NULL, *si = NULL;
    int64_t n_ctx = 0, n_q = 0, d = c->d_model, S = c->n_layer * c->n_kv_head;
    int rc = session_new(&ss, st, ct, &in, &so);
    if (!rc) rc = session_hidden(ss, &rows, &n_ctx, &n_q);
    const session_prompt *p = rc ? NULL : session_get_prompt(ss);
    const float *rs = NULL;
    if (!rc && recon) {
        rc = session_recon(ss, false, NULL);
        rs = rc ? NULL : session_recon_scores(ss, false);
        if (!rc && !rs) rc = tis_error(TIS_EINVAL, "label: sample %s: no reconstruction scores", s->id);
    } else if (!rc) {
        if (!(si = malloc((size_t)n_ctx * sizeof(float) + 1))) rc = tis_error(TIS_ENOMEM, "label: out of memory");
        else rc = selfinfo_compute(st, m->tok, p->ids, p->ctx_begin, p->n_ctx, si);
    }
    if (rc) goto done;
    snprintf(out->id, sizeof out->id, "%s", s->id);
    out->n_tokens = p->n;
    out->ctx_begin = p->ctx_begin;
    out->n_ctx = p->n_ctx;
    out->suf_begin = p->suf_begin;
    out->no_query = true;
    out->ids = malloc((size_t)p->n * sizeof(int32_t));
    out->features = malloc((size_t)(n_ctx * d) * sizeof(uint16_t) + 1);
    out->query_features = malloc(1);
    out->labels = malloc((size_t)n_ctx * sizeof(float) + 1);
    out->labels_per_head = recon ? malloc((size_t)(S * n_ctx) * sizeof(float) + 1) : NULL;
    out->answer_ids = malloc(1);
    out->answer = strdup("");
    if (!out->ids || !out->features || !out->query_features || !out->labels || (recon && !out->labels_per_head) ||
        !out->answer_ids || !out->answer) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory for sample %s", s->id);
        goto done;
    }
    memcpy(out->ids, p->ids, (size_t)p->n * sizeof(int32_t));
    for (int64_t i = 0; i < n_ctx * d; i++) out->features[i] = label_f16(rows[i]);
    /* recon: the per-token mean over streams; selfinfo: the word's nats;
     * either normalised to sum 1 */
    if (recon) {
        memcpy(out->labels_per_head, rs, (size_t)(S * n_ctx) * sizeof(float));
        for (int64_t j = 0; j < n_ctx; j++) {
            double sum = 0;
            for (int64_t k = 0; k < S; k++) sum += rs[k * n_ctx + j];
            out->labels[j] = (float)(sum / (double)S);
        }
    } else {
        for (int64_t j = 0; j < n_ctx; j++) out->labels[j] = si[j] > 0 ? si[j] : 0.0f;
    }
    double total = 0;
    for (int64_t j = 0; j < n_ctx; j++) total += out->labels[j];
    for (int64_t j = 0; j < n_ctx; j++)
        out->labels[j] = total > 0 ? (float)(out->labels[j] / total) : 1.0f / (float)n_ctx;
    out->seconds = tis_now() - t0;
done:
    free(rows);
    free(si);
    session_destroy(&ss);
    if (rc) label_sample_free(out);
    return rc;
}

int label_run_recon(forward_state *st, const chat_template *ct, const label_config *cfg,
                    const bench_sample *s, label_sample *out) {
    label_config c = *cfg;
    c.target = HEAD_TARGET_RECON;
    return s_run_agnostic(st, ct, &c, s, out);
}

int label_run_selfinfo(forward_state *st, const chat_template *ct, const label_config *cfg,
                       const bench_sample *s, label_sample *out) {
    label_config c = *cfg;
    c.target = HEAD_TARGET_SELFINFO;
    return s_run_agnostic(st, ct, &c, s, out);
}

void label_sample_free(label_sample *ls) {
    if (!ls) return;
    free(ls->ids);
    free(ls->labels);
    free(ls->labels_per_head);
    free(ls->features);
    free(ls->query_features);
    free(ls->answer_ids);
    free(ls->answer);
    memset(ls, 0, sizeof *ls);
}

/* Concatenates a ragged field: fills offsets[n+1] (in rows) and returns the
 * flat copy (row_bytes per row). */
static void *s_flat(const label_sample *ls, int64_t n, size_t field_off, int64_t (*rows)(const label_sample *),
                    size_t row_bytes, int64_t *offsets) {
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) offsets[i + 1] = offsets[i] + rows(&ls[i]);
    char *flat = malloc((size_t)offsets[n] * row_bytes + 1);
    if (!flat) return NULL;
    for (int64_t i = 0; i < n; i++) {
        const void *src = *(void *const *)((const char *)&ls[i] + field_off);
        if (src) memcpy(flat + (size_t)offsets[i] * row_bytes, src, (size_t)rows(&ls[i]) * row_bytes);
    }
    return flat;
}

static int64_t s_rows_tokens(const label_sample *l) { return l->n_tokens; }
static int64_t s_rows_ctx(const label_sample *l) { return l->n_ctx; }
static int64_t s_rows_query(const label_sample *l) { return l->no_query ? 0 : l->n_tokens - l->suf_begin; }
static int64_t s_rows_answer(const label_sample *l) { return l->n_answer; }

int label_shard_write(const char *path, const model *m, const label_config *cfg,
                      const label_sample *ls, int64_t n) {
    const model_config *c = &m->config;
    const bool recon = cfg->target == HEAD_TARGET_RECON, per_head = cfg->per_head || recon;
    const int64_t H = recon ? c->n_kv_head : c->n_head;
    int64_t d = c->d_model, LH = c->n_layer * H;
    if (n <= 0) return tis_error(TIS_EINVAL, "label: empty shard");
    if (per_head)
        for (int64_t i = 0; i < n; i++)
            if (!ls[i].labels_per_head) return tis_error(TIS_EINVAL, "label: sample %s has no per-head labels", ls[i].id);
    int64_t *off_tok = malloc((size_t)(n + 1) * 8), *off_ctx = malloc((size_t)(n + 1) * 8);
    int64_t *off_q = malloc((size_t)(n + 1) * 8), *off_ans = malloc((size_t)(n + 1) * 8);
    int64_t *off_ph = malloc((size_t)(n + 1) * 8), *spans = malloc((size_t)(n * 4) * 8);
    void *tok = NULL, *lab = NULL, *feat = NULL, *qf = NULL, *ans = NULL, *ph = NULL;
    st_writer *w = st_writer_new();
    cJSON *ids = cJSON_CreateArray(), *answers = cJSON_CreateArray(), *src = cJSON_CreateArray();
    char *ids_s = NULL, *ans_s = NULL, *src_s = NULL;
    int rc = 0;
    if (!off_tok || !off_ctx || !off_q || !off_ans || !off_ph || !spans || !w || !ids || !answers || !src) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory");
        goto done;
    }
    tok = s_flat(ls, n, offsetof(label_sample, ids), s_rows_tokens, sizeof(int32_t), off_tok);
    lab = s_flat(ls, n, offsetof(label_sample, labels), s_rows_ctx, sizeof(float), off_ctx);
    feat = s_flat(ls, n, offsetof(label_sample, features), s_rows_ctx, (size_t)d * 2, off_ctx);
    qf = s_flat(ls, n, offsetof(label_sample, query_features), s_rows_query, (size_t)d * 2, off_q);
    ans = s_flat(ls, n, offsetof(label_sample, answer_ids), s_rows_answer, sizeof(int32_t), off_ans);
    if (per_head)
        ph = s_flat(ls, n, offsetof(label_sample, labels_per_head), s_rows_ctx, (size_t)LH * sizeof(float), off_ph);
    if (!tok || !lab || !feat || !qf || !ans || (per_head && !ph)) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory for the shard");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        spans[i * 4 + 0] = ls[i].ctx_begin;
        spans[i * 4 + 1] = ls[i].n_ctx;
        spans[i * 4 + 2] = ls[i].suf_begin;
        spans[i * 4 + 3] = ls[i].n_tokens;
        cJSON_AddItemToArray(ids, cJSON_CreateString(ls[i].id));
        cJSON_AddItemToArray(answers, cJSON_CreateString(ls[i].answer ? ls[i].answer : ""));
        cJSON_AddItemToArray(src, cJSON_CreateString(ls[i].answer_from_model ? "model" : "given"));
    }
    int64_t sh_spans[2] = {n, 4}, sh_off[1] = {n + 1};
    int64_t sh_tok[1] = {off_tok[n]}, sh_lab[1] = {off_ctx[n]}, sh_feat[2] = {off_ctx[n], d};
    int64_t sh_q[2] = {off_q[n], d}, sh_ans[1] = {off_ans[n]}, sh_ph[1] = {off_ctx[n] * LH};
    if ((rc = st_writer_add(w, "sample_spans", ST_I64, 2, sh_spans, spans)) ||
        (rc = st_writer_add(w, "token_ids", ST_I32, 1, sh_tok, tok)) ||
        (rc = st_writer_add(w, "token_offsets", ST_I64, 1, sh_off, off_tok)) ||
        (rc = st_writer_add(w, "labels", ST_F32, 1, sh_lab, lab)) ||
        (rc = st_writer_add(w, "ctx_offsets", ST_I64, 1, sh_off, off_ctx)) ||
        (rc = st_writer_add(w, "features", ST_F16, 2, sh_feat, feat)) ||
        (rc = st_writer_add(w, "query_features", ST_F16, 2, sh_q, qf)) ||
        (rc = st_writer_add(w, "query_offsets", ST_I64, 1, sh_off, off_q)) ||
        (rc = st_writer_add(w, "answer_ids", ST_I32, 1, sh_ans, ans)) ||
        (rc = st_writer_add(w, "answer_offsets", ST_I64, 1, sh_off, off_ans)) ||
        (per_head && (rc = st_writer_add(w, "labels_per_head", ST_F32, 1, sh_ph, ph))))
        goto done;
    ids_s = cJSON_PrintUnformatted(ids);
    ans_s = cJSON_PrintUnformatted(answers);
    src_s = cJSON_PrintUnformatted(src);
    char num[6][32];
    snprintf(num[0], sizeof num[0], "%lld", (long long)d);
    snprintf(num[1], sizeof num[1], "%lld", (long long)c->n_layer);
    snprintf(num[2], sizeof num[2], "%lld", (long long)c->n_head);
    snprintf(num[3], sizeof num[3], "%lld", (long long)cfg->layer);
    snprintf(num[4], sizeof num[4], "%lld", (long long)n);
    snprintf(num[5], sizeof num[5], "%lld", (long long)H);
    if (!ids_s || !ans_s || !src_s) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory");
        goto done;
    }
    if ((rc = st_writer_add_metadata(w, "format", "tis-labels-1")) ||
        (rc = st_writer_add_metadata(w, "model", c->name)) ||
        (rc = st_writer_add_metadata(w, "d_model", num[0])) ||
        (rc = st_writer_add_metadata(w, "n_layer", num[1])) ||
        (rc = st_writer_add_metadata(w, "n_head", num[2])) ||
        (rc = st_writer_add_metadata(w, "layer", num[3])) ||
        (rc = st_writer_add_metadata(w, "n_samples", num[4])) ||
        (rc = st_writer_add_metadata(w, "per_head", per_head ? "1" : "0")) ||
        (rc = st_writer_add_metadata(w, "target", head_target_name(cfg->target))) ||
        (rc = st_writer_add_metadata(w, "label_heads", num[5])) ||
        (rc = st_writer_add_metadata(w, "feature", "residual stream entering `layer` (n_layer: after the last layer), f16, not normalised")) ||
        (rc = st_writer_add_metadata(w, "sample_ids", ids_s)) ||
        (rc = st_writer_add_metadata(w, "answers", ans_s)) ||
        (rc = st_writer_add_metadata(w, "answer_sources", src_s)))
        goto done;
    rc = st_writer_write(w, path);
done:
    free(off_tok);
    free(off_ctx);
    free(off_q);
    free(off_ans);
    free(off_ph);
    free(spans);
    free(tok);
    free(lab);
    free(feat);
    free(qf);
    free(ans);
    free(ph);
    free(ids_s);
    free(ans_s);
    free(src_s);
    cJSON_Delete(ids);
    cJSON_Delete(answers);
    cJSON_Delete(src);
    st_writer_destroy(&w);
    return rc;
}

/* ---- reading shards back ------------------------------------------------ */

void label_records_init(label_records *r) {
    memset(r, 0, sizeof *r);
    r->hash = 0xcbf29ce484222325ull; /* FNV-1a offset basis */
}

void label_records_free(label_records *r) {
    for (int64_t i = 0; i < r->n; i++) {
        free(r->s[i].labels);
        free(r->s[i].features);
        free(r->s[i].query_features);
        free(r->s[i].labels_per_head);
        free(r->s[i].ctx_ids);
    }
    free(r->s);
    label_records_init(r);
}

void label_records_pool_left(label_records *r, int64_t span) {
    for (int64_t i = 0; i < r->n; i++) {
        label_record *x = &r->s[i];
        if (!x->labels_per_head) continue;
        for (int64_t o = 0; o < r->n_streams; o++) {
            float *y = x->labels_per_head + o * x->n_ctx;
            /* ascending j reads only scores not yet rewritten */
            for (int64_t j = 0; j < x->n_ctx; j++)
                for (int64_t k = 1; k < span && j + k < x->n_ctx; k++)
                    if (y[j + k] > y[j]) y[j] = y[j + k];
        }
    }
}

static uint64_t s_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static const st_tensor *s_need(const st_file *f, const char *name, st_dtype dt, int dims) {
    const st_tensor *t = st_tensor_find(f, name);
    if (!t || t->dtype != dt || t->n_dims != dims) {
        tis_error(TIS_EFORMAT, "%s: tensor %s missing or not %s with %d dims", st_file_path(f), name,
                  st_dtype_name(dt), dims);
        return NULL;
    }
    return t;
}

/* The shard's model, layer, width, target and streams: the first shard's,
 * or the same. */
static int s_shard_origin(const st_file *f, const char *path, label_records *r) {
    const char *fmt = st_metadata(f, "format"), *mdl = st_metadata(f, "model");
    const char *dm = st_metadata(f, "d_model"), *ly = st_metadata(f, "layer");
    const char *tg = st_metadata(f, "target"), *nl = st_metadata(f, "n_layer");
    const char *lh = st_metadata(f, "label_heads");
    if (!fmt || strcmp(fmt, "tis-labels-1") || !mdl || !dm || !ly || atoll(dm) <= 0)
        return tis_error(TIS_EFORMAT, "%s is not a tis label shard", path);
    head_target target = HEAD_TARGET_ANSWER; /* a shard written before the key */
    if (tg && !head_target_parse(tg, &target))
        return tis_error(TIS_EFORMAT, "%s: target '%.40s' (answer, recon or selfinfo)", path, tg);
    int64_t d = atoll(dm), layer = atoll(ly), streams = 0;
    if (target == HEAD_TARGET_RECON) {
        int64_t L = nl ? atoll(nl) : 0, H = lh ? atoll(lh) : 0;
        if (L < 1 || L > 4096 || H < 1 || H > 4096)
            return tis_error(TIS_EFORMAT, "%s: a recon shard needs n_layer and label_heads in 1..4096", path);
        streams = L * H;
    }
    if (r->d_model == 0) {
        r->d_model = d;
        r->layer = layer;
        r->target = target;
        r->n_streams = streams;
        snprintf(r->model, sizeof r->model, "%s", mdl);
    } else if (d != r->d_model || layer != r->layer || strcmp(mdl, r->model)) {
        return tis_error(TIS_EINVAL, "%s was labelled for %s layer %lld, the others for %s layer %lld", path, mdl,
                         (long long)layer, r->model, (long long)r->layer);
    } else if (target != r->target || streams != r->n_streams) {
        return tis_error(TIS_EINVAL, "%s holds %s labels (%lld streams), the others %s labels (%lld streams)", path,
                         head_target_name(target), (long long)streams, head_target_name(r->target),
                         (long long)r->n_streams);
    }
    return 0;
}

/* Sample i of a shard, as f32 rows: [off[i], off[i+1]) of labels and
 * features, [qoff[i], qoff[i+1]) of the question's features; PH (recon:
 * the per-stream scores, n_streams rows per context token) or NULL. */
static int s_record(label_records *r, const float *Y, const float *PH, const uint16_t *F, const uint16_t *Q,
                    const int64_t *off, const int64_t *qoff, int64_t i) {
    if (r->n == r->cap) {
        int64_t nc = r->cap ? 2 * r->cap : 64;
        label_record *s = realloc(r->s, (size_t)nc * sizeof *s);
        if (!s) return tis_error(TIS_ENOMEM, "out of memory");
        r->s = s;
        r->cap = nc;
    }
    int64_t d = r->d_model, n = off[i + 1] - off[i], nq = qoff[i + 1] - qoff[i], S = PH ? r->n_streams : 0;
    label_record t = {.n_ctx = n, .n_q = nq};
    t.labels = malloc((size_t)(n ? n : 1) * sizeof(float));
    t.features = malloc((size_t)((n ? n : 1) * d) * sizeof(float));
    t.query_features = malloc((size_t)((nq ? nq : 1) * d) * sizeof(float));
    t.labels_per_head = PH ? malloc((size_t)((n ? n : 1) * S) * sizeof(float)) : NULL;
    if (!t.labels || !t.features || !t.query_features || (PH && !t.labels_per_head)) {
        free(t.labels);
        free(t.features);
        free(t.query_features);
        free(t.labels_per_head);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    memcpy(t.labels, Y + off[i], (size_t)n * sizeof(float));
    if (PH) memcpy(t.labels_per_head, PH + off[i] * S, (size_t)(n * S) * sizeof(float));
    for (int64_t j = 0; j < n * d; j++) t.features[j] = label_f32(F[off[i] * d + j]);
    for (int64_t j = 0; j < nq * d; j++) t.query_features[j] = label_f32(Q[qoff[i] * d + j]);
    r->s[r->n++] = t;
    return 0;
}

/* The context ids of the shard's samples [first, r->n) from its
 * token_ids / token_offsets / sample_spans, when the three are there and
 * agree with the records (else the records keep ctx_ids NULL). */
static int s_record_ids(const st_file *f, label_records *r, int64_t first, int64_t ns) {
    const st_tensor *sp = st_tensor_find(f, "sample_spans"), *ti = st_tensor_find(f, "token_ids");
    const st_tensor *to = st_tensor_find(f, "token_offsets");
    if (!sp || !ti || !to || sp->dtype != ST_I64 || sp->n_dims != 2 || ti->dtype != ST_I32 || ti->n_dims != 1 ||
        to->dtype != ST_I64 || to->n_dims != 1 || sp->shape[0] != ns || sp->shape[1] != 4 || to->shape[0] != ns + 1) return 0;
    const int64_t *span = sp->data, *toff = to->data;
    const int32_t *ids = ti->data;
    for (int64_t i = 0; i < ns; i++) {
        int64_t cb = span[4 * i], nc = span[4 * i + 1], lo = toff[i], hi = toff[i + 1];
        label_record *x = &r->s[first + i];
        /* in this order, so that no difference overflows (a fuzzed file) */
        if (nc != x->n_ctx || nc < 0 || cb < 0 || lo < 0 || hi < lo || hi > ti->shape[0] || cb > hi - lo ||
            nc > hi - lo - cb)
            continue;
        if (!(x->ctx_ids = malloc((size_t)(nc ? nc : 1) * sizeof *x->ctx_ids))) return tis_error(TIS_ENOMEM, "out of memory");
        memcpy(x->ctx_ids, ids + toff[i] + cb, (size_t)nc * sizeof *x->ctx_ids);
    }
    return 0;
}

int label_shard_read(const char *path, label_records *r) {
    st_file *f;
    int rc = st_open(&f, path);
    if (rc) return rc;
    if ((rc = s_shard_origin(f, path, r))) {
        st_destroy(&f);
        return rc;
    }
    int64_t d = r->d_model;
    const st_tensor *lab = s_need(f, "labels", ST_F32, 1), *co = s_need(f, "ctx_offsets", ST_I64, 1);
    const st_tensor *ft = s_need(f, "features", ST_F16, 2), *qf = s_need(f, "query_features", ST_F16, 2);
    const st_tensor *qo = s_need(f, "query_offsets", ST_I64, 1);
    const st_tensor *ph = r->n_streams ? s_need(f, "labels_per_head", ST_F32, 1) : NULL;
    if (!lab || !co || !ft || !qf || !qo || (r->n_streams && !ph)) {
        st_destroy(&f);
        return TIS_EFORMAT;
    }
    int64_t ns = co->shape[0] - 1;
    const int64_t *off = co->data, *qoff = qo->data;
    if (ns < 1 || qo->shape[0] != ns + 1 || ft->shape[1] != d || qf->shape[1] != d || off[0] != 0 ||
        off[ns] != lab->shape[0] || off[ns] != ft->shape[0] || qoff[0] != 0 || qoff[ns] != qf->shape[0] ||
        (ph && ph->shape[0] != off[ns] * r->n_streams)) {
        st_destroy(&f);
        return tis_error(TIS_EFORMAT, "%s: offsets do not match the tensors", path);
    }
    for (int64_t i = 0; i < ns; i++)
        if (off[i + 1] < off[i] || qoff[i + 1] < qoff[i]) {
            st_destroy(&f);
            return tis_error(TIS_EFORMAT, "%s: offsets decrease at sample %lld", path, (long long)i);
        }
    const char *ids = st_metadata(f, "sample_ids");
    if (ids) r->hash = s_fnv(r->hash, ids, strlen(ids));
    r->hash = s_fnv(r->hash, lab->data, (size_t)off[ns] * 4);
    if (ph) r->hash = s_fnv(r->hash, ph->data, (size_t)(off[ns] * r->n_streams) * 4);
    int64_t first = r->n;
    for (int64_t i = 0; i < ns && !rc; i++)
        rc = s_record(r, lab->data, ph ? ph->data : NULL, ft->data, qf->data, off, qoff, i);
    if (!rc) rc = s_record_ids(f, r, first, ns);
    st_destroy(&f);
    return rc;
}

static int s_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool s_is_shard_name(const char *name) {
    size_t l = strlen(name);
    return !strncmp(name, "shard-", 6) && l >= 12 && !strcmp(name + l - 12, ".safetensors");
}

int label_dir_shards(const char *dir, char ***names_out, int64_t *n_out) {
    *names_out = NULL;
    *n_out = 0;
    DIR *dp = opendir(dir);
    if (!dp) return tis_error(TIS_EIO, "cannot open %s: %s", dir, strerror(errno));
    char **names = NULL;
    int64_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(dp));) {
        if (!s_is_shard_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) {
                rc = tis_error(TIS_ENOMEM, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) rc = tis_error(TIS_ENOMEM, "out of memory");
        else n++;
    }
    closedir(dp);
    if (!rc && n == 0) rc = tis_error(TIS_ENOTFOUND, "no shard-*.safetensors in %s (run tis label first)", dir);
    if (!rc) qsort(names, (size_t)n, sizeof *names, s_cmp_str);
    if (rc) {
        for (int64_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return rc;
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

int label_dir_read(const char *dir, label_records *r) {
    char **names = NULL;
    int64_t n = 0;
    int rc = label_dir_shards(dir, &names, &n);
    for (int64_t i = 0; i < n && !rc; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = label_shard_read(path, r);
    }
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* ---- the same labels, the features of another layer ---------------------- */

int label_shard_refeature(forward_state *st, const char *src, const char *dst, int64_t layer) {
    const model *m = forward_model(st);
    const model_config *c = &m->config;
    if (layer < 0 || layer > c->n_layer)
        return tis_error(TIS_EINVAL, "label: layer %lld outside 0..%lld", (long long)layer, (long long)c->n_layer);
    st_file *f;
    int rc = st_open(&f, src);
    if (rc) return rc;
    const char *fmt = st_metadata(f, "format"), *mdl = st_metadata(f, "model"), *dm = st_metadata(f, "d_model");
    const st_tensor *sp = s_need(f, "sample_spans", ST_I64, 2), *ti = s_need(f, "token_ids", ST_I32, 1);
    const st_tensor *to = s_need(f, "token_offsets", ST_I64, 1), *co = s_need(f, "ctx_offsets", ST_I64, 1);
    const st_tensor *qo = s_need(f, "query_offsets", ST_I64, 1), *ft = s_need(f, "features", ST_F16, 2);
    const st_tensor *qf = s_need(f, "query_features", ST_F16, 2);
    int64_t d = c->d_model, ns = 0;
    uint16_t *nf = NULL, *nq = NULL;
    kv_cache *kv = NULL;
    st_writer *w = NULL;
    if (!fmt || strcmp(fmt, "tis-labels-1") || !mdl || !dm) {
        rc = tis_error(TIS_EFORMAT, "%s: not a tis-labels-1 shard (format, model or d_model missing)", src);
        goto done;
    }
    if (!sp || !ti || !to || !co || !qo || !ft || !qf) {
        rc = TIS_EFORMAT;
        goto done;
    }
    if (strcmp(mdl, c->name) || atoll(dm) != d) {
        rc = tis_error(TIS_EINVAL, "%s was labelled for %s (d_model %s), not %s (d_model %lld)", src, mdl, dm,
                       c->name, (long long)d);
        goto done;
    }
    ns = co->shape[0] - 1;
    const int64_t *span = sp->data, *toff = to->data, *off = co->data, *qoff = qo->data;
    const int32_t *ids = ti->data;
    bool ok = ns >= 1 && sp->shape[0] == ns && sp->shape[1] == 4 && to->shape[0] == ns + 1 &&
              qo->shape[0] == ns + 1 && ft->shape[1] == d && qf->shape[1] == d && off[0] == 0 && qoff[0] == 0 &&
              toff[0] == 0 && off[ns] == ft->shape[0] && qoff[ns] == qf->shape[0] && toff[ns] == ti->shape[0];
    for (int64_t i = 0; ok && i < ns; i++) {
        int64_t cb = span[4 * i], nc = span[4 * i + 1], sb = span[4 * i + 2], nt = span[4 * i + 3];
        int64_t nqi = qoff[i + 1] - qoff[i];
        ok = off[i + 1] - off[i] == nc && toff[i + 1] - toff[i] == nt && nc >= 0 && cb >= 0 && cb + nc <= sb &&
             sb <= nt && (nqi == 0 || nqi == nt - sb) && qoff[i + 1] >= qoff[i];
    }
    if (!ok) {
        rc = tis_error(TIS_EFORMAT, "%s: sample spans and offsets do not match the tensors", src);
        goto done;
    }
    for (int64_t i = 0; i < ti->shape[0]; i++)
        if (ids[i] < 0 || ids[i] >= c->n_vocab) {
            rc = tis_error(TIS_EFORMAT, "%s: token id %d at %lld outside the vocabulary (%lld)", src, ids[i],
                           (long long)i, (long long)c->n_vocab);
            goto done;
        }
    nf = malloc((size_t)(off[ns] * d) * sizeof(uint16_t) + 2);
    nq = malloc((size_t)(qoff[ns] * d) * sizeof(uint16_t) + 2);
    if (!nf || !nq) {
        rc = tis_error(TIS_ENOMEM, "label: out of memory for the features of %s", src);
        goto done;
    }
    for (int64_t i = 0; i < ns && !rc; i++) {
        int64_t cb = span[4 * i], nc = span[4 * i + 1], sb = span[4 * i + 2], nt = span[4 * i + 3];
        bool q = qoff[i + 1] > qoff[i];
        int64_t n_run = q ? nt : cb + nc; /* a question that never ran (recon) is not run now either */
        if (n_run < 1) continue;
        feat_hook fh = {layer, d, 0, cb, nc, q ? sb : INT64_MAX, nf + off[i] * d, nq + qoff[i] * d};
        forward_hooks hooks = {.on_hidden = s_on_hidden, .user = &fh, .stop_layer = layer}; /* no layer above */
        rc = forward_kv_new(m, n_run, &kv);
        if (!rc) rc = forward_run(st, kv, ids + toff[i], n_run, NULL, 0, &hooks);
        kv_cache_destroy(&kv);
    }
    if (rc) goto done;
    w = st_writer_new();
    if (!w) {
        rc = tis_error(TIS_ENOMEM, "out of memory");
        goto done;
    }
    for (int64_t k = 0; k < st_tensor_count(f) && !rc; k++) {
        const st_tensor *t = st_tensor_at(f, k);
        const void *data = t == ft ? (const void *)nf : t == qf ? (const void *)nq : t->data;
        rc = st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, data);
    }
    char lay[32];
    snprintf(lay, sizeof lay, "%lld", (long long)layer);
    for (int64_t k = 0; k < st_metadata_count(f) && !rc; k++) {
        const char *key, *val;
        st_metadata_at(f, k, &key, &val);
        rc = st_writer_add_metadata(w, key, strcmp(key, "layer") ? val : lay);
    }
    if (!rc) rc = st_writer_write(w, dst);
done:
    st_writer_destroy(&w);
    free(nf);
    free(nq);
    st_destroy(&f);
    return rc;
}
