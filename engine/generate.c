/* generate: the prefill + decode loop. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tis_error.h"

int generate(forward_state *st, kv_cache *kv, const model *m, sampler *smp,
             const int32_t *prompt, int64_t n_prompt, const gen_params *gp, int32_t *out,
             gen_token_fn on_token, void *user, gen_stats *stats) {
    gen_stats gs = {.n_prompt = n_prompt};
    float *logits = malloc((size_t)m->config.n_vocab * sizeof(float));
    if (!logits) return tis_error(TIS_ENOMEM, "generate: out of memory");
    double t0 = tis_now();
    int rc = forward_run(st, kv, prompt, n_prompt, logits, 1, NULL);
    gs.prefill_s = tis_now() - t0;
    double t1 = tis_now();
    for (int64_t i = 0; rc == 0 && i < gp->max_new; i++) {
        int32_t id = sampler_sample(smp, logits);
        if (out) out[i] = id;
        gs.n_new++;
        if (gp->stop_at_eog && tokenizer_is_eog(m->tok, id)) {
            gs.stopped_eog = true;
            break;
        }
        if (on_token && on_token(user, id)) break;
        if (i + 1 < gp->max_new) rc = forward_run(st, kv, &id, 1, logits, 1, NULL);
    }
    gs.decode_s = tis_now() - t1;
    free(logits);
    if (stats) *stats = gs;
    return rc;
}

bool answer_stop_feed(answer_stop *a, const char *bytes, int64_t n) {
    bool done = false;
    for (int64_t k = 0; k < n; k++) {
        char ch = bytes[k];
        bool blank = ch == ' ' || ch == '\n';
        if (a->text_seen && (ch == '\n' || (blank && a->prev_end))) done = true;
        if (!blank) a->text_seen = true;
        a->prev_end = ch == '.' || ch == '!' || ch == '?';
    }
    return done;
}

size_t answer_trim(char *text, size_t len) {
    bool seen = false;
    for (size_t k = 0; k < len; k++) {
        char ch = text[k];
        bool blank = ch == ' ' || ch == '\n';
        if (seen && (ch == '\n' || (blank && k > 0 && strchr(".!?", text[k - 1])))) {
            text[k] = 0;
            len = k;
            break;
        }
        if (!blank) seen = true;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) text[--len] = 0;
    size_t lead = 0;
    while (lead < len && (text[lead] == '\n' || text[lead] == ' ')) lead++;
    if (lead) memmove(text, text + lead, len - lead + 1);
    return len - lead;
}

int generate_answer(forward_state *st, kv_cache *kv, const model *m, const int32_t *q,
                    int64_t nq, int64_t max_new, int32_t **ids, int64_t *n, char **text) {
    *ids = NULL;
    *n = 0;
    *text = NULL;
    int64_t V = m->config.n_vocab;
    float *logits = malloc((size_t)V * sizeof(float));
    int32_t *gen = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int32_t));
    if (!logits || !gen) {
        free(logits);
        free(gen);
        return tis_error(TIS_ENOMEM, "generate: out of memory");
    }
    int rc = forward_run(st, kv, q, nq, logits, 1, NULL);
    answer_stop as = {0};
    int64_t k = 0;
    while (rc == 0 && k < max_new) {
        int32_t id = sampler_argmax(logits, V);
        if (tokenizer_is_eog(m->tok, id)) break;
        gen[k++] = id;
        char buf[64];
        int64_t nb = tokenizer_token_bytes(m->tok, id, buf, sizeof buf);
        if (answer_stop_feed(&as, buf, nb < (int64_t)sizeof buf ? nb : (int64_t)sizeof buf)) break;
        if (k < max_new) rc = forward_run(st, kv, &id, 1, logits, 1, NULL);
    }
    free(logits);
    size_t len = 0;
    if (rc == 0) rc = tokenizer_decode(m->tok, gen, k, true, text, &len);
    if (rc) {
        free(gen);
        return rc;
    }
    answer_trim(*text, len);
    *ids = gen;
    *n = k;
    return 0;
}

/* Decoding state of one sequence in a group. */
typedef struct dec_seq {
    int32_t *gen;         /* [max_new] */
    int64_t n;
    answer_stop stop;
    bool done, timed;
} dec_seq;

int generate_answers(forward_state *st, const model *m, kv_cache **kvs, int64_t G,
                     const int32_t *const *q, const int64_t *nq, int64_t max_new, float *logits,
                     answer_out *d) {
    const tokenizer *tok = m->tok;
    int64_t V = m->config.n_vocab;
    memset(d, 0, (size_t)G * sizeof *d);
    dec_seq *sq = calloc((size_t)G, sizeof *sq);
    kv_cache **act = malloc((size_t)G * sizeof *act);
    int64_t *idx = malloc((size_t)G * sizeof *idx), *one = malloc((size_t)G * sizeof *one);
    const int32_t **ids = malloc((size_t)G * sizeof *ids);
    int32_t *next = malloc((size_t)G * sizeof *next);
    int rc = 0;
    if (!sq || !act || !idx || !one || !ids || !next || max_new < 1) {
        rc = max_new < 1 ? tis_error(TIS_EINVAL, "generate: max_new %lld", (long long)max_new)
                         : tis_error(TIS_ENOMEM, "generate: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < G && !rc; i++)
        if (!(sq[i].gen = malloc((size_t)max_new * sizeof(int32_t))))
            rc = tis_error(TIS_ENOMEM, "generate: out of memory");
    if (rc) goto out;
    double t0 = tis_now();
    rc = forward_run_batch(st, kvs, G, q, nq, logits);
    if (rc) goto out;
    for (int64_t i = 0; i < G; i++) d[i].kv_bytes = (int64_t)kv_cache_bytes_used(kvs[i]);
    /* Row i of logits belongs to sequence idx[i] of the active set. */
    int64_t n_act = G;
    for (int64_t i = 0; i < G; i++) idx[i] = i;
    bool first = true;
    double t_first = 0;
    while (n_act > 0) {
        int64_t n_next = 0;
        for (int64_t a = 0; a < n_act; a++) {
            int64_t i = idx[a];
            dec_seq *x = &sq[i];
            int32_t id = sampler_argmax(logits + a * V, V);
            if (tokenizer_is_eog(tok, id)) {
                x->done = true;
                continue;
            }
            x->gen[x->n++] = id;
            char buf[64];
            int64_t nb = tokenizer_token_bytes(tok, id, buf, sizeof buf);
            if (answer_stop_feed(&x->stop, buf, nb < (int64_t)sizeof buf ? nb : (int64_t)sizeof buf))
                x->done = true;
            if (x->n >= max_new) x->done = true;
            if (!x->done) {
                act[n_next] = kvs[i];
                next[n_next] = id;
                idx[n_next] = i;
                n_next++;
            }
        }
        double now = tis_now();
        if (first) {
            t_first = now;
            for (int64_t i = 0; i < G; i++) d[i].first_s = now - t0;
            first = false;
        }
        for (int64_t i = 0; i < G; i++)
            if (sq[i].done && !sq[i].timed) {
                d[i].rest_s = now - t_first;
                sq[i].timed = true;
            }
        n_act = n_next;
        if (!n_next) break;
        for (int64_t a = 0; a < n_next; a++) {
            ids[a] = &next[a];
            one[a] = 1;
        }
        rc = forward_run_batch(st, act, n_next, ids, one, logits);
        if (rc) goto out;
    }
    for (int64_t i = 0; i < G && !rc; i++) {
        size_t len;
        d[i].n_gen = sq[i].n;
        rc = tokenizer_decode(tok, sq[i].gen, sq[i].n, true, &d[i].text, &len);
        if (rc == 0) answer_trim(d[i].text, len);
        d[i].ids = sq[i].gen; /* ownership moves to the caller */
        sq[i].gen = NULL;
    }
out:
    for (int64_t i = 0; sq && i < G; i++) free(sq[i].gen);
    free(sq);
    free(act);
    free(idx);
    free(one);
    free(ids);
    free(next);
    if (rc)
        for (int64_t i = 0; i < G; i++) {
            free(d[i].text);
            free(d[i].ids);
            d[i].text = NULL;
            d[i].ids = NULL;
        }
    return rc;
}

