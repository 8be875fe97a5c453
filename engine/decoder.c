/* decoder: batched forward -> pick -> stop rules, one step at a time. */
#include "decoder.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "tis_error.h"

struct decoder {
    forward_state *st;   /* borrowed */
    const model *m;
    int64_t max_batch;
    float *logits;       /* [max_batch][n_vocab] */
    kv_cache **kvs;      /* [max_batch] this step's caches */
    const int32_t **ids; /* [max_batch] this step's tokens */
    int64_t *nt;         /* [max_batch] */
    decoder_seq **act;   /* [max_batch] this step's sequences */
};

void answer_stop_init(answer_stop *a, const char *question) {
    memset(a, 0, sizeof *a);
    a->question = question;
}

static bool s_word_byte(char c) {
    return (unsigned char)c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char s_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Whether the word w[n] is a word of text (case-blind, whole words). */
static bool s_has_word(const char *text, const char *w, size_t n) {
    for (const char *p = text; *p;) {
        while (*p && !s_word_byte(*p)) p++;
        const char *q = p;
        while (*q && s_word_byte(*q)) q++;
        if ((size_t)(q - p) == n) {
            size_t k = 0;
            while (k < n && s_lower(p[k]) == s_lower(w[k])) k++;
            if (k == n) return true;
        }
        p = q;
    }
    return false;
}

bool answer_restates(const char *text, size_t n, const char *question) {
    static const char filler[] = "the a an is are was were";
    if (!question) return false;
    int64_t words = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && !s_word_byte(text[i])) i++;
        size_t j = i;
        while (j < n && s_word_byte(text[j])) j++;
        if (j == i) break;
        if (!s_has_word(question, text + i, j - i) && !s_has_word(filler, text + i, j - i)) return false;
        words++;
        i = j;
    }
    return words >= ANSWER_RESTATE_MIN;
}

/* The segment a boundary closes holds no answer yet: the answer goes on. */
static bool s_segment_goes_on(const answer_stop *a) {
    if (a->last == ':') return true;
    return !a->seg_long && answer_restates(a->seg, (size_t)a->seg_n, a->question);
}

/* One byte; true when it is a boundary that ends the answer. */
static bool s_stop_byte(answer_stop *a, char ch) {
    bool blank = ch == ' ' || ch == '\n';
    bool boundary = a->seg_text && (ch == '\n' || (blank && a->prev_end));
    a->prev_end = ch == '.' || ch == '!' || ch == '?';
    if (boundary) {
        if (!s_segment_goes_on(a)) return true;
        a->seg_text = a->seg_long = false;
        a->seg_n = 0;
        a->last = 0;
        return false;
    }
    if (!blank) {
        a->seg_text = true;
        a->last = ch;
    }
    if (a->seg_n < ANSWER_SEG_CAP) a->seg[a->seg_n++] = ch;
    else a->seg_long = true;
    return false;
}

bool answer_stop_feed(answer_stop *a, const char *bytes, int64_t n) {
    bool done = false;
    for (int64_t k = 0; k < n; k++) done |= s_stop_byte(a, bytes[k]);
    return done;
}

size_t answer_trim_q(char *text, size_t len, const char *question) {
    answer_stop a;
    answer_stop_init(&a, question);
    for (size_t k = 0; k < len; k++)
        if (s_stop_byte(&a, text[k])) {
            text[k] = 0;
            len = k;
            break;
        }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) text[--len] = 0;
    size_t lead = 0;
    while (lead < len && (text[lead] == '\n' || text[lead] == ' ')) lead++;
    if (lead) memmove(text, text + lead, len - lead + 1);
    return len - lead;
}

size_t answer_trim(char *text, size_t len) { return answer_trim_q(text, len, NULL); }

int decoder_seq_init(decoder_seq *q, kv_cache *kv, const int32_t *feed, int64_t n_feed, int64_t max_new) {
    memset(q, 0, sizeof *q);
    q->eog = -1;
    if (max_new < 1 || max_new > (1 << 20))
        return tis_error(TIS_EINVAL, "decoder: max_new %lld", (long long)max_new);
    if (n_feed < 1 || !feed || !kv) return tis_error(TIS_EINVAL, "decoder: a sequence needs a cache and a feed");
    if (!(q->gen = malloc((size_t)max_new * sizeof(int32_t)))) return tis_error(TIS_ENOMEM, "decoder: out of memory");
    q->kv = kv;
    q->feed = feed;
    q->n_feed = n_feed;
    q->max_new = max_new;
    q->stop_answer = q->stop_eog = true;
    answer_stop_init(&q->stop, NULL);
    return 0;
}

void decoder_seq_free(decoder_seq *q) {
    if (!q) return;
    free(q->gen);
    q->gen = NULL;
    q->n_gen = 0;
}

void decoder_seq_finish(decoder_seq *q) {
    if (q->done) return;
    q->done = true;
    q->t_done = tis_now();
}

int decoder_new(decoder **out, forward_state *st, int64_t max_batch) {
    *out = NULL;
    if (max_batch < 1 || max_batch > 4096) return tis_error(TIS_EINVAL, "decoder: batch %lld", (long long)max_batch);
    decoder *d = calloc(1, sizeof *d);
    if (!d) return tis_error(TIS_ENOMEM, "decoder: out of memory");
    d->st = st;
    d->m = forward_model(st);
    d->max_batch = max_batch;
    size_t B = (size_t)max_batch;
    d->logits = malloc(B * (size_t)d->m->config.n_vocab * sizeof(float));
    d->kvs = malloc(B * sizeof *d->kvs);
    d->ids = malloc(B * sizeof *d->ids);
    d->nt = malloc(B * sizeof *d->nt);
    d->act = malloc(B * sizeof *d->act);
    if (!d->logits || !d->kvs || !d->ids || !d->nt || !d->act) {
        decoder_destroy(&d);
        return tis_error(TIS_ENOMEM, "decoder: out of memory for a batch of %lld", (long long)max_batch);
    }
    *out = d;
    return 0;
}

void decoder_destroy(decoder **p) {
    if (!p || !*p) return;
    decoder *d = *p;
    free(d->logits);
    free(d->kvs);
    free(d->ids);
    free(d->nt);
    free(d->act);
    free(d);
    *p = NULL;
}

int64_t decoder_max_batch(const decoder *d) { return d->max_batch; }

/* Applies the stop rules to token id just picked for q; true when q ends. */
static bool s_take(const tokenizer *tok, decoder_seq *q, int32_t id) {
    if (q->stop_eog && tokenizer_is_eog(tok, id)) {
        q->eog = id;
        return true;
    }
    q->gen[q->n_gen++] = id;
    if (q->stop_answer) {
        char buf[64];
        int64_t nb = tokenizer_token_bytes(tok, id, buf, sizeof buf);
        if (answer_stop_feed(&q->stop, buf, nb < (int64_t)sizeof buf ? nb : (int64_t)sizeof buf)) return true;
    }
    q->capped = q->n_gen >= q->max_new;
    return q->capped;
}

int64_t decoder_step(decoder *d, decoder_seq *const *seqs, int64_t n) {
    int64_t G = 0;
    for (int64_t i = 0; i < n && G < d->max_batch; i++) {
        decoder_seq *q = seqs[i];
        if (q->done) continue;
        d->act[G] = q;
        d->kvs[G] = q->kv;
        d->ids[G] = q->fed ? &q->gen[q->n_gen - 1] : q->feed;
        d->nt[G] = q->fed ? 1 : q->n_feed;
        G++;
    }
    if (G == 0) return 0;
    bool prompt = false;
    for (int64_t a = 0; a < G; a++) prompt |= !d->act[a]->fed;
    forward_set_prompt(d->st, prompt);
    int rc = forward_run_batch(d->st, d->kvs, G, d->ids, d->nt, d->logits);
    forward_set_prompt(d->st, -1);
    if (rc) return rc;
    int64_t V = d->m->config.n_vocab;
    const tokenizer *tok = d->m->tok;
    for (int64_t a = 0; a < G; a++) {
        decoder_seq *q = d->act[a];
        if (!q->fed) q->kv_bytes = (int64_t)kv_cache_bytes_used(q->kv);
        const float *row = d->logits + a * V;
        q->done = s_take(tok, q, q->smp ? sampler_sample(q->smp, row) : sampler_argmax(row, V));
    }
    double now = tis_now(); /* one time for the step: its sequences share the pass */
    for (int64_t a = 0; a < G; a++) {
        decoder_seq *q = d->act[a];
        if (!q->fed) {
            q->fed = true;
            q->t_fed = now;
        }
        if (q->done) q->t_done = now;
    }
    return G;
}

int decoder_run(decoder *d, decoder_seq *const *seqs, int64_t n) {
    if (n > d->max_batch)
        return tis_error(TIS_EINVAL, "decoder: %lld sequences, batch of %lld", (long long)n, (long long)d->max_batch);
    for (;;) {
        int64_t k = decoder_step(d, seqs, n);
        if (k < 0) return (int)k;
        if (k == 0) return 0;
    }
}

int decoder_seq_text(const decoder *d, const decoder_seq *q, bool trim, char **text) {
    size_t len = 0;
    int rc = tokenizer_decode(d->m->tok, q->gen, q->n_gen, true, text, &len);
    if (!rc && trim) answer_trim_q(*text, len, q->stop.question);
    return rc;
}

int decoder_answer_run(decoder *d, kv_cache *kv, const int32_t *feed, int64_t n_feed, int64_t max_new,
                       const char *question, decoder_answer *out) {
    memset(out, 0, sizeof *out);
    decoder_seq q;
    int rc = decoder_seq_init(&q, kv, feed, n_feed, max_new);
    if (!rc) answer_stop_init(&q.stop, question);
    decoder_seq *one = &q;
    double t0 = tis_now();
    if (!rc) rc = decoder_run(d, &one, 1);
    if (!rc) rc = decoder_seq_text(d, &q, true, &out->text);
    if (!rc) {
        out->secs = tis_now() - t0;
        out->kv_bytes = q.kv_bytes;
        out->ids = q.gen; /* ownership moves to out */
        out->n = q.n_gen;
        q.gen = NULL;
    }
    decoder_seq_free(&q);
    if (rc) decoder_answer_free(out);
    return rc;
}

void decoder_answer_free(decoder_answer *a) {
    if (!a) return;
    free(a->text);
    free(a->ids);
    memset(a, 0, sizeof *a);
}
