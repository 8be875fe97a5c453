/* selfinfo: self-information scores (selfinfo.h). */
#include "selfinfo.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "tis_error.h"

/* A byte that belongs to a word: an ASCII letter or digit, or any byte of
 * a multi-byte UTF-8 character. */
static bool s_word_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80;
}

void selfinfo_words(const tokenizer *tok, const int32_t *ids, int64_t n, float *nll) {
    if (!tok || n <= 0) return;
    bool prev_ends_word = false;
    int64_t begin = 0;
    double sum = 0;
    for (int64_t j = 0; j <= n; j++) {
        char buf[256];
        int64_t len = j < n ? tokenizer_token_bytes(tok, ids[j], buf, sizeof buf) : 0;
        if (len > (int64_t)sizeof buf) len = sizeof buf; /* the first bytes are what counts */
        bool starts = len > 0 && s_word_byte((unsigned char)buf[0]);
        if (j == n || !(starts && prev_ends_word)) { /* token j begins a word: close the one before */
            for (int64_t i = begin; i < j; i++) nll[i] = (float)sum;
            begin = j;
            sum = 0;
        }
        if (j == n) break;
        sum += nll[j];
        prev_ends_word = len > 0 && s_word_byte((unsigned char)buf[len - 1]);
    }
}

/* -ln softmax(logits)[target], in double. */
static double s_nll(const float *logits, int64_t V, int32_t target) {
    float mx = logits[0];
    for (int64_t i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return log(sum) - ((double)logits[target] - mx);
}

int selfinfo_compute(forward_state *st, const tokenizer *tok, const int32_t *ids, int64_t ctx_begin,
                     int64_t n_ctx, float *out) {
    if (!st || !ids || !out || ctx_begin < 0 || n_ctx < 1)
        return tis_error(TIS_EINVAL, "selfinfo: bad span (begin %lld, %lld tokens)", (long long)ctx_begin,
                         (long long)n_ctx);
    const model *m = forward_model(st);
    int64_t V = m->config.n_vocab, n = ctx_begin + n_ctx;
    /* rows first .. n-2 predict tokens first+1 .. n-1: the context's, and
     * its first token's predictor when there is a prefix */
    int64_t first = ctx_begin > 0 ? ctx_begin - 1 : 0;
    kv_cache *kv = NULL;
    float *logits = malloc((size_t)SELFINFO_CHUNK * (size_t)V * sizeof(float));
    int rc = logits ? forward_state_kv_new(st, n, &kv)
                    : tis_error(TIS_ENOMEM, "selfinfo: out of memory for %d rows of logits", SELFINFO_CHUNK);
    if (!rc && first > 0) rc = forward_run(st, kv, ids, first, NULL, 0, NULL); /* the prefix before */
    for (int64_t t = first; !rc && t < n - 1; t += SELFINFO_CHUNK) {
        int64_t T = n - 1 - t < SELFINFO_CHUNK ? n - 1 - t : SELFINFO_CHUNK;
        rc = forward_run(st, kv, ids + t, T, logits, T, NULL);
        for (int64_t i = 0; !rc && i < T; i++) /* row t+i predicts token t+i+1 */
            out[t + i + 1 - ctx_begin] = (float)s_nll(logits + i * V, V, ids[t + i + 1]);
    }
    free(logits);
    kv_cache_destroy(&kv);
    if (rc) return rc;
    if (ctx_begin == 0) { /* nothing predicts the prompt's first token: a sink */
        float mx = 0;
        for (int64_t j = 1; j < n_ctx; j++) mx = out[j] > mx ? out[j] : mx;
        out[0] = mx;
    }
    selfinfo_words(tok, ids + ctx_begin, n_ctx, out);
    return 0;
}
