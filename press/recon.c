/* recon: reconstruction scores (KVzip) from chunked teacher-forced repeats. */
#include "recon.h"

#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

typedef struct recon_acc {
    int64_t ctx_begin, n_ctx, group, n_kv_head, n_head;
    float *out;   /* [n_stream][n_ctx] */
    double *copy; /* [n_layer][n_head] attention on the token being repeated, summed, or NULL */
    int64_t c0;   /* the pass's first context token */
    int64_t n_pre;/* request tokens before it in the pass */
    int64_t len;  /* context tokens in the pass */
} recon_acc;

/* Entry j of the (uncompressed) fork is position j, so the context is the
 * contiguous key range [ctx_begin, ctx_begin + n_ctx) of every row. */
static void s_on_attn(void *user, int64_t layer, int64_t head, int64_t t0, int64_t nq,
                      const float *probs, int64_t n_keys) {
    const recon_acc *a = user;
    float *dst = a->out + (layer * a->n_kv_head + head / a->group) * a->n_ctx;
    int64_t n = n_keys - a->ctx_begin < a->n_ctx ? n_keys - a->ctx_begin : a->n_ctx;
    for (int64_t r = 0; r < nq; r++) {
        const float *row = probs + r * n_keys + a->ctx_begin;
        for (int64_t c = 0; c < n; c++) dst[c] = row[c] > dst[c] ? row[c] : dst[c];
    }
    if (!a->copy) return;
    /* Row i of the pass predicts context token m = c0 + i - n_pre + 1: a
     * head that copies looks at that token's original entry. */
    double sum = 0;
    for (int64_t r = 0; r < nq; r++) {
        int64_t m = a->c0 + (t0 + r) - a->n_pre + 1;
        if (m >= a->c0 && m < a->c0 + a->len && a->ctx_begin + m < n_keys) sum += probs[r * n_keys + a->ctx_begin + m];
    }
    a->copy[layer * a->n_head + head] += sum; /* one thread per kv head: no lock */
}

static void s_cat(int32_t *dst, int64_t *n, const int32_t *src, int64_t k) {
    if (k > 0) memcpy(dst + *n, src, (size_t)k * sizeof(int32_t));
    *n += k;
}

int recon_compute(forward_state *st, const kv_cache *kv, int64_t ctx_begin, int64_t n_ctx,
                  const int32_t *ctx_ids, const recon_prompt *rp, int64_t chunk, float *out, float *copy) {
    if (chunk <= 0) chunk = RECON_CHUNK;
    if (!rp || rp->n_lead < 1) return tis_error(TIS_EINVAL, "recon: empty reconstruction prompt");
    if (ctx_begin < 0 || n_ctx < 1 || ctx_begin + n_ctx > kv->n_past)
        return tis_error(TIS_EINVAL, "recon: context span [%lld, %lld) outside the %lld cached tokens",
                         (long long)ctx_begin, (long long)(ctx_begin + n_ctx), (long long)kv->n_past);
    for (int64_t s = 0; s < kv->n_stream; s++)
        if (kv->len[s] != kv->n_past)
            return tis_error(TIS_EINVAL, "recon: scoring needs an uncompressed cache");
    const model_config *mc = &forward_model(st)->config;
    recon_acc acc = {ctx_begin, n_ctx, mc->n_head / mc->n_kv_head, mc->n_kv_head, mc->n_head, out, NULL, 0, 0, 0};
    memset(out, 0, (size_t)(kv->n_stream * n_ctx) * sizeof(float));
    if (copy && !(acc.copy = calloc((size_t)(mc->n_layer * mc->n_head), sizeof(double))))
        return tis_error(TIS_ENOMEM, "recon: out of memory");
    int64_t n_pre = rp->n_lead > rp->n_cont_head + RECON_OVERLAP + rp->n_cont_tail
                        ? rp->n_lead : rp->n_cont_head + RECON_OVERLAP + rp->n_cont_tail;
    int32_t *ids = malloc((size_t)(n_pre + chunk) * sizeof(int32_t));
    if (!ids) {
        free(acc.copy);
        return tis_error(TIS_ENOMEM, "recon: out of memory");
    }
    forward_hooks hooks = {.on_attn = s_on_attn, .user = &acc};
    int rc = 0;
    for (int64_t c0 = 0; !rc && c0 < n_ctx; c0 += chunk) {
        int64_t len = n_ctx - c0 < chunk ? n_ctx - c0 : chunk, n = 0;
        if (c0 == 0) {
            s_cat(ids, &n, rp->lead, rp->n_lead);
        } else {
            int64_t tail = c0 < RECON_OVERLAP ? c0 : RECON_OVERLAP;
            s_cat(ids, &n, rp->cont_head, rp->n_cont_head);
            s_cat(ids, &n, ctx_ids + c0 - tail, tail);
            s_cat(ids, &n, rp->cont_tail, rp->n_cont_tail);
        }
        acc.c0 = c0;
        acc.n_pre = n;
        acc.len = len;
        s_cat(ids, &n, ctx_ids + c0, len);
        kv_cache *fork = NULL;
        rc = kv_cache_compact(&fork, kv, NULL, n);
        if (!rc) rc = forward_run(st, fork, ids, n, NULL, 0, &hooks);
        kv_cache_destroy(&fork);
    }
    free(ids);
    /* a stream's copy score: the mean over the repeated tokens of the
     * attention on the token being repeated, of its query head that
     * copies most */
    if (!rc && copy)
        for (int64_t l = 0; l < mc->n_layer; l++)
            for (int64_t h = 0; h < mc->n_kv_head; h++) {
                double best = 0;
                for (int64_t g = 0; g < acc.group; g++) {
                    double v = acc.copy[l * mc->n_head + h * acc.group + g] / (double)n_ctx;
                    best = v > best ? v : best;
                }
                copy[l * mc->n_kv_head + h] = (float)best;
            }
    free(acc.copy);
    return rc;
}
