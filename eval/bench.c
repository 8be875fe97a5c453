/* bench: the benchmark sets (docs/design.md §7): the grid of generated samples and
 * the haystack text they are cut from. The generators themselves are
 * bench_gen.c, the JSONL loader bench_jsonl.c, the scoring bench_score.c.
 *
 * A haystack is any text file: paragraphs end at blank lines, whitespace is
 * collapsed, and a paragraph splits into sentences at . ! ? (and closing
 * quotes) before a space, except after initials, "e.g."-style words, a
 * leading number ("1. ...") and a few abbreviations. Headings (paragraphs of
 * fewer than six words) are dropped, overlong runs without punctuation are
 * cut into pieces at spaces. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_gen.h"
#include "tis_error.h"

const char *const bench_names[] = {"passkey", "niah", "niah_multikey", "litm_kv", "litm_qa",
                                   NULL};

#define BENCH_DEFAULT_HAYSTACK "/usr/share/common-licenses/GPL-3"

enum {
    HAY_MIN_SENTENCES = 50,
    HAY_MAX_BYTES = 64 << 20, /* a bigger file: only its start is read */
    HAY_LONG = 2000,          /* a "sentence" longer than this (bytes; GPL-3 has 700) ... */
    HAY_CHUNK = 1000,         /* ... is cut at spaces into pieces of at most this */
};
static const int64_t MAX_TARGET = (int64_t)1 << 24;
static const int64_t MAX_SAMPLES = (int64_t)1 << 22;

/* Tokens of text, at least 1 for a non-empty text (a tokenizer may drop
 * bytes it has no token for; a unit must still cost something). */
int bench_count_tokens(const tokenizer *tok, const char *text, size_t len, int64_t *out) {
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = tokenizer_encode(tok, text, len, false, &ids, &n);
    free(ids);
    if (rc) return rc;
    *out = (n == 0 && len > 0) ? 1 : n;
    return 0;
}

/* ---- haystack: a text file split into sentences ------------------------- */

void bench_hay_free(bench_haystack *h) {
    free(h->text);
    free(h->s);
    memset(h, 0, sizeof *h);
}

static bool s_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0;
}
static bool s_digit(char c) { return c >= '0' && c <= '9'; }
static bool s_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static int s_hay_add(bench_haystack *h, const char *p, size_t n, bool par) {
    int64_t words = 1;
    for (size_t i = 0; i < n; i++) words += p[i] == ' ';
    if (words < 3 && n < 24) { /* headings, "0.", stray symbols */
        h->next_par |= par;
        return 0;
    }
    if (h->n == h->cap) {
        int64_t cap = h->cap ? h->cap * 2 : 512;
        bench_hay_sent *s = realloc(h->s, (size_t)cap * sizeof *s);
        if (!s) return tis_error(TIS_ENOMEM, "bench: out of memory");
        h->s = s;
        h->cap = cap;
    }
    TIS_ASSERT(h->text_n + n + 1 <= h->text_cap);
    memcpy(h->text + h->text_n, p, n);
    h->text[h->text_n + n] = 0;
    h->s[h->n++] = (bench_hay_sent){.off = h->text_n, .len = n, .tok = -1,
                                    .par = par || h->next_par};
    h->next_par = false;
    h->text_n += n + 1;
    return 0;
}

/* A sentence that never ends (no punctuation, a table) is cut at spaces, or
 * at a UTF-8 character boundary where there are none. */
static int s_hay_sentence(bench_haystack *h, const char *p, size_t n, bool par) {
    while (n > HAY_LONG) {
        size_t cut = HAY_CHUNK;
        while (cut > 0 && p[cut] != ' ') cut--;
        if (cut == 0) {
            cut = HAY_CHUNK;
            while (cut > 1 && ((uint8_t)p[cut] & 0xC0) == 0x80) cut--;
        }
        int rc = s_hay_add(h, p, cut, par);
        if (rc) return rc;
        par = false;
        p += cut;
        n -= cut;
        while (n > 0 && *p == ' ') p++, n--;
    }
    return n ? s_hay_add(h, p, n, par) : 0;
}

/* Whether the '.' after word p[ws, j) does not end the sentence. */
static bool s_not_end(const char *p, size_t start, size_t ws, size_t j) {
    static const char *abbr[] = {"Mr", "Mrs", "Ms", "Dr", "St", "vs", "No", "Inc", "Ltd",
                                 "Co", "Jr", "Sr", "Fig", "cf", NULL};
    size_t n = j - ws;
    if (n == 0) return false;
    if (n == 1 && s_alpha(p[ws])) return true;   /* initials, "a." */
    if (memchr(p + ws, '.', n)) return true;      /* "e.g.", "U.S." */
    bool digits = true;
    for (size_t i = ws; i < j; i++) digits &= s_digit(p[i]);
    if (digits && ws == start) return true;       /* "0. Definitions." */
    for (int i = 0; abbr[i]; i++)
        if (strlen(abbr[i]) == n && memcmp(abbr[i], p + ws, n) == 0) return true;
    return false;
}

/* Splits one paragraph (whitespace already collapsed) into sentences: a
 * sentence ends at . ! or ? (and closing quotes/brackets) before a space. */
static int s_hay_paragraph(bench_haystack *h, const char *p, size_t n) {
    size_t start = 0, ws = 0, words = 1;
    for (size_t j = 0; j < n; j++) words += p[j] == ' ';
    if (words < 6) { /* a heading ("6. Conveying Non-Source Forms.") */
        h->next_par = true;
        return 0;
    }
    bool par = true;
    for (size_t j = 0; j < n; j++) {
        if (p[j] == ' ') ws = j + 1;
        if (p[j] != '.' && p[j] != '!' && p[j] != '?') continue;
        size_t k = j + 1;
        while (k < n && strchr("\"')]", p[k])) k++;
        if (k < n && p[k] != ' ') continue;
        if (p[j] == '.' && s_not_end(p, start, ws, j)) continue;
        int rc = s_hay_sentence(h, p + start, k - start, par);
        if (rc) return rc;
        par = false;
        start = ws = k + 1;
        j = k;
    }
    return start < n ? s_hay_sentence(h, p + start, n - start, par) : 0;
}

static int s_hay_parse(bench_haystack *h, const char *buf, size_t len) {
    h->text_cap = 2 * len + 2;
    h->text = malloc(h->text_cap);
    char *para = malloc(len + 1);
    if (!h->text || !para) {
        free(para);
        return tis_error(TIS_ENOMEM, "bench: out of memory");
    }
    size_t pn = 0, pos = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* BOM */
    int rc = 0;
    while (pos < len && !rc) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        bool blank = true;
        for (size_t i = pos; i < end; i++) blank &= s_space(buf[i]);
        if (blank) { /* a blank line ends the paragraph */
            if (pn) rc = s_hay_paragraph(h, para, pn);
            pn = 0;
        } else {
            bool gap = pn > 0;
            for (size_t i = pos; i < end; i++) {
                if (s_space(buf[i])) {
                    gap = pn > 0;
                    continue;
                }
                if (gap) para[pn++] = ' ';
                gap = false;
                para[pn++] = buf[i];
            }
        }
        pos = end + 1;
    }
    if (!rc && pn) rc = s_hay_paragraph(h, para, pn);
    free(para);
    return rc;
}

int bench_hay_load(bench_haystack *h, const char *path) {
    memset(h, 0, sizeof *h);
    h->path = path;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tis_error(TIS_EIO, "bench: cannot open haystack file '%s': %s", path,
                         strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    bool oom = !buf;
    while (!oom && n < (size_t)HAY_MAX_BYTES) {
        if (n == cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                oom = true;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t want = cap - n;
        if (want > (size_t)HAY_MAX_BYTES - n) want = (size_t)HAY_MAX_BYTES - n;
        size_t got = fread(buf + n, 1, want, f);
        n += got;
        if (got < want) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (oom || bad) {
        free(buf);
        return oom ? tis_error(TIS_ENOMEM, "bench: out of memory reading '%s'", path)
                   : tis_error(TIS_EIO, "bench: cannot read haystack file '%s'", path);
    }
    int rc = s_hay_parse(h, buf, n);
    free(buf);
    if (!rc && h->n < HAY_MIN_SENTENCES)
        rc = tis_error(TIS_EFORMAT,
                       "bench: haystack file '%s' has %lld sentences; at least %d are needed",
                       path, (long long)h->n, HAY_MIN_SENTENCES);
    if (rc) bench_hay_free(h);
    return rc;
}

/* Token estimate of sentence i with the separator it is written after. */
int bench_hay_tok(bench_haystack *h, const tokenizer *tok, int64_t i, int64_t *out) {
    if (h->s[i].tok < 0) {
        const bench_hay_sent *s = &h->s[i];
        char *buf = malloc(s->len + 3);
        if (!buf) return tis_error(TIS_ENOMEM, "bench: out of memory");
        size_t sep = s->par ? 2 : 1;
        memcpy(buf, "\n\n", sep);
        if (!s->par) buf[0] = ' ';
        memcpy(buf + sep, bench_hay_text(h, i), s->len);
        int rc = bench_count_tokens(tok, buf, s->len + sep, &h->s[i].tok);
        free(buf);
        if (rc) return rc;
    }
    *out = h->s[i].tok;
    return 0;
}

/* ---- the grid ----------------------------------------------------------- */

static void s_sample_free(bench_sample *s) {
    free(s->prefix);
    free(s->context);
    free(s->question);
    free(s->answer_prefix);
    for (int64_t j = 0; j < s->n_answers; j++) free(s->answers[j]);
    free(s->answers);
    for (int64_t j = 0; j < s->n_distractors; j++) free(s->distractors[j]);
    free(s->distractors);
    free(s->meta);
    memset(s, 0, sizeof *s);
}

void bench_set_free(bench_set *set) {
    if (!set) return;
    for (int64_t i = 0; i < set->n && set->s; i++) s_sample_free(&set->s[i]);
    free(set->s);
    memset(set, 0, sizeof *set);
}

int64_t bench_set_drop(bench_set *set, bool (*drop)(const bench_sample *s, void *user), void *user) {
    int64_t kept = 0, dropped = 0;
    for (int64_t i = 0; i < set->n; i++) {
        if (drop(&set->s[i], user)) {
            s_sample_free(&set->s[i]);
            dropped++;
        } else {
            set->s[kept++] = set->s[i];
        }
    }
    set->n = kept;
    return dropped;
}

static int s_check_spec(const bench_spec *spec, const tokenizer *tok, int *kind) {
    if (!spec || !spec->name || !tok)
        return tis_error(TIS_EINVAL, "bench: no spec, name or tokenizer");
    *kind = -1;
    for (int i = 0; bench_names[i]; i++)
        if (strcmp(spec->name, bench_names[i]) == 0) *kind = i;
    if (*kind < 0)
        return tis_error(TIS_EINVAL,
                         "bench: unknown benchmark '%s' (known: passkey, niah, niah_multikey, "
                         "litm_kv, litm_qa)", spec->name);
    if (spec->n_samples < 1 || spec->n_samples > MAX_SAMPLES)
        return tis_error(TIS_EINVAL, "bench: n_samples %lld is out of range",
                         (long long)spec->n_samples);
    if (!spec->context_tokens || spec->n_context < 1 ||
        spec->n_context > MAX_SAMPLES / spec->n_samples)
        return tis_error(TIS_EINVAL, "bench: no context lengths, or too many samples");
    for (int64_t i = 0; i < spec->n_context; i++)
        if (spec->context_tokens[i] < 1 || spec->context_tokens[i] > MAX_TARGET)
            return tis_error(TIS_EINVAL, "bench: context length %lld is out of range (1..%lld)",
                             (long long)spec->context_tokens[i], (long long)MAX_TARGET);
    if (spec->depths) {
        if (spec->n_depths < 1)
            return tis_error(TIS_EINVAL, "bench: depths given but n_depths < 1");
        for (int64_t i = 0; i < spec->n_depths; i++)
            if (!(spec->depths[i] >= 0.0 && spec->depths[i] <= 1.0))
                return tis_error(TIS_EINVAL, "bench: depth %g is not in [0, 1]", spec->depths[i]);
    }
    if (*kind == BENCH_MULTIKEY && spec->n_keys > BENCH_MAX_NEEDLES)
        return tis_error(TIS_EINVAL, "bench: niah_multikey takes at most %d keys (asked %lld)",
                         BENCH_MAX_NEEDLES, (long long)spec->n_keys);
    return 0;
}

int bench_generate(const bench_spec *spec, const tokenizer *tok, bench_set *out) {
    static const double default_depths[] = {0.0, 0.25, 0.5, 0.75, 1.0};
    if (!out) return tis_error(TIS_EINVAL, "bench: no output set");
    memset(out, 0, sizeof *out);
    int kind = 0;
    int rc = s_check_spec(spec, tok, &kind);
    if (rc) return rc;
    const double *depths = spec->depths ? spec->depths : default_depths;
    int64_t n_depths = spec->depths ? spec->n_depths
                                    : (int64_t)(sizeof default_depths / sizeof default_depths[0]);
    bench_haystack hay = {0};
    bool need_hay = kind == BENCH_NIAH || kind == BENCH_MULTIKEY || kind == BENCH_LITM_QA;
    if (need_hay &&
        (rc = bench_hay_load(&hay, spec->haystack ? spec->haystack : BENCH_DEFAULT_HAYSTACK)))
        return rc;
    int64_t total = spec->n_context * spec->n_samples;
    snprintf(out->name, sizeof out->name, "%s", spec->name);
    out->s = calloc((size_t)total, sizeof *out->s);
    if (!out->s) rc = tis_error(TIS_ENOMEM, "bench: out of memory");
    for (int64_t c = 0; c < spec->n_context && !rc; c++) {
        for (int64_t i = 0; i < spec->n_samples && !rc; i++) {
            bench_sample *s = &out->s[out->n++];
            rc = bench_gen_sample(spec, kind, tok, need_hay ? &hay : NULL,
                                  spec->context_tokens[c], i, depths[i % n_depths], s);
        }
    }
    bench_hay_free(&hay);
    if (rc) bench_set_free(out);
    return rc;
}
