/* perplexity: chunked NLL over a text, llama-perplexity's method. */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

/* log softmax(logits)[target] in double */
static double s_logprob(const float *logits, int64_t V, int32_t target) {
    float mx = logits[0];
    for (int64_t i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return (double)logits[target] - mx - log(sum);
}

int perplexity_run(forward_state *st, const char *text, size_t len, int64_t n_ctx, int64_t max_chunks,
                   perplexity_progress_fn progress, void *user, perplexity_result *out) {
    memset(out, 0, sizeof *out);
    const model *m = forward_model(st);
    const tokenizer *tok = m->tok;
    int64_t V = m->config.n_vocab;
    if (n_ctx < 16 || n_ctx > (1 << 20)) return tis_error(TIS_EINVAL, "perplexity: context %lld", (long long)n_ctx);
    int32_t *body = NULL, *ids = NULL, *chunk = NULL;
    int64_t nb = 0;
    float *logits = NULL;
    kv_cache *kv = NULL;
    int rc = tokenizer_encode(tok, text, len, false, &body, &nb);
    if (rc) return rc;
    bool bos = tokenizer_add_bos(tok) && tokenizer_bos(tok) >= 0;
    int64_t n = nb + bos, first = n_ctx / 2;
    ids = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    chunk = malloc((size_t)n_ctx * sizeof(int32_t));
    logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    if (!ids || !chunk || !logits) {
        rc = tis_error(TIS_ENOMEM, "perplexity: out of memory for %lld tokens", (long long)n);
        goto done;
    }
    if (bos) ids[0] = tokenizer_bos(tok);
    memcpy(ids + bos, body, (size_t)nb * sizeof(int32_t));
    out->n_tokens = n;
    if (n < 2 * n_ctx) {
        rc = tis_error(TIS_EINVAL, "perplexity: the text has %lld tokens, fewer than two chunks of %lld", (long long)n,
                       (long long)n_ctx);
        goto done;
    }
    int64_t n_chunks = n / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    rc = forward_state_kv_new(st, n_ctx, &kv); /* in the state's backend memory */
    double sum = 0, sum2 = 0;
    for (int64_t c = 0; !rc && c < n_chunks; c++) {
        memcpy(chunk, ids + c * n_ctx, (size_t)n_ctx * sizeof(int32_t));
        if (bos) chunk[0] = tokenizer_bos(tok);
        kv_cache_clear(kv);
        /* logits of rows first .. n_ctx-1: row i predicts token i+1 */
        rc = forward_run(st, kv, chunk, n_ctx, logits, n_ctx - first, NULL);
        for (int64_t i = first; !rc && i < n_ctx - 1; i++) {
            double nll = -s_logprob(logits + (i - first) * V, V, chunk[i + 1]);
            sum += nll;
            sum2 += nll * nll;
            out->n_scored++;
        }
        if (rc) break;
        out->n_chunks = c + 1;
        double mean = sum / (double)out->n_scored, var = sum2 / (double)out->n_scored - mean * mean;
        out->nll = mean;
        out->ppl = exp(mean);
        out->ppl_err = out->n_scored > 1 && var > 0 ? out->ppl * sqrt(var / (double)(out->n_scored - 1)) : 0;
        if (progress) progress(user, c + 1, n_chunks, out);
    }
done:
    free(body);
    free(ids);
    free(chunk);
    free(logits);
    kv_cache_destroy(&kv);
    return rc;
}
