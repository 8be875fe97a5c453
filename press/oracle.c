/* oracle: answer-to-context attention of a full-context pass. */
#include "oracle.h"

#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

typedef struct oracle_acc {
    const kv_cache *kv;   /* the fork being run (positions of its entries) */
    int64_t ctx_begin, n_ctx, n_head;
    float *per_head;      /* [n_layer][n_head][n_ctx] */
} oracle_acc;

static void s_on_attn(void *user, int64_t layer, int64_t head, int64_t t0, int64_t nq,
                      const float *probs, int64_t n_keys) {
    oracle_acc *a = user;
    const kv_cache *kv = a->kv;
    int64_t group = a->n_head / kv->n_kv_head;
    const int32_t *pos = kv_cache_pos(kv, kv_stream(kv, layer, head / group));
    float *dst = a->per_head + (layer * a->n_head + head) * a->n_ctx;
    for (int64_t r = 0; r < nq; r++) {
        const float *row = probs + r * n_keys;
        for (int64_t j = 0; j < n_keys; j++) {
            int64_t c = (int64_t)pos[j] - a->ctx_begin;
            if (c >= 0 && c < a->n_ctx) dst[c] += row[j];
        }
    }
    (void)t0;
}

static void s_normalise(float *x, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    if (sum <= 0) return;
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

int oracle_compute(forward_state *st, const kv_cache *full, int64_t ctx_begin, int64_t n_ctx,
                   const int32_t *answer, int64_t n_answer, bool per_head, oracle_labels *out) {
    memset(out, 0, sizeof *out);
    if (n_answer <= 0) return tis_error(TIS_EINVAL, "oracle: empty answer");
    if (ctx_begin < 0 || n_ctx <= 0 || ctx_begin + n_ctx > full->n_past)
        return tis_error(TIS_EINVAL, "oracle: context span [%lld, %lld) outside the %lld cached tokens",
                         (long long)ctx_begin, (long long)(ctx_begin + n_ctx),
                         (long long)full->n_past);
    int64_t L = full->n_layer;
    kv_cache *fork;
    int rc = kv_cache_compact(&fork, full, NULL, n_answer);
    if (rc) return rc;
    int64_t H = forward_model(st)->config.n_head;
    oracle_acc acc = {fork, ctx_begin, n_ctx, H, calloc((size_t)(L * H * n_ctx), sizeof(float))};
    out->total = calloc((size_t)n_ctx, sizeof(float));
    if (!acc.per_head || !out->total) {
        kv_cache_destroy(&fork);
        free(acc.per_head);
        free(out->total);
        out->total = NULL;
        return tis_error(TIS_ENOMEM, "oracle: out of memory for %lld x %lld labels",
                         (long long)(L * H), (long long)n_ctx);
    }
    forward_hooks hooks = {.on_attn = s_on_attn, .user = &acc};
    rc = forward_run(st, fork, answer, n_answer, NULL, 0, &hooks);
    kv_cache_destroy(&fork);
    if (rc) {
        free(acc.per_head);
        free(out->total);
        out->total = NULL;
        return rc;
    }
    for (int64_t lh = 0; lh < L * H; lh++) {
        const float *row = acc.per_head + lh * n_ctx;
        for (int64_t c = 0; c < n_ctx; c++) out->total[c] += row[c];
    }
    s_normalise(out->total, n_ctx);
    if (per_head) {
        for (int64_t lh = 0; lh < L * H; lh++) s_normalise(acc.per_head + lh * n_ctx, n_ctx);
        out->per_head = acc.per_head;
    } else {
        free(acc.per_head);
    }
    out->n_ctx = n_ctx;
    out->n_layer = L;
    out->n_head = H;
    out->n_answer = n_answer;
    return 0;
}

void oracle_labels_free(oracle_labels *o) {
    if (!o) return;
    free(o->total);
    free(o->per_head);
    memset(o, 0, sizeof *o);
}

void oracle_labels_kv_head(const oracle_labels *o, int64_t layer, int64_t kv_head,
                           int64_t n_kv_head, float *out) {
    TIS_ASSERT(o->per_head);
    int64_t group = o->n_head / n_kv_head;
    memset(out, 0, (size_t)o->n_ctx * sizeof(float));
    for (int64_t g = 0; g < group; g++) {
        const float *row = o->per_head + (layer * o->n_head + kv_head * group + g) * o->n_ctx;
        for (int64_t c = 0; c < o->n_ctx; c++) out[c] += row[c];
    }
}
