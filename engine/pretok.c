/* pretok: hand-written equivalents of the pre-tokeniser regexes.
 *
 * Each matcher walks the characters of one fragment and, at every position,
 * tries the regex alternatives in order exactly as a backtracking engine
 * would (leftmost alternative that matches wins, quantifiers greedy). A
 * fragment end behaves as the end of the string, because HF tokenizers and
 * llama.cpp run the regex on each fragment separately. */
#include "pretok.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "tis_error.h"
#include "unicode.h"

/* The text decoded once: n characters, code point, class, byte offset. */
typedef struct chars {
    size_t n;
    uint32_t *cp;   /* [n] code point or UNICODE_INVALID */
    uint8_t *fl;    /* [n] UCAT_* flags */
    size_t *off;    /* [n + 1] byte offset of each character; off[n] = len */
} chars;

typedef struct emitter {
    pretok_emit_fn fn;
    void *ud;
    const chars *c;
} emitter;

static int s_emit(const emitter *e, size_t i, size_t k) { /* characters [i, k) */
    return e->fn(e->ud, e->c->off[i], e->c->off[k] - e->c->off[i]);
}

static bool s_is_l(const chars *c, size_t i) { return c->fl[i] & UCAT_LETTER; }
static bool s_is_n(const chars *c, size_t i) { return c->fl[i] & UCAT_NUMBER; }
static bool s_is_s(const chars *c, size_t i) { return c->fl[i] & UCAT_SPACE; }
/* [^\s\p{L}\p{N}] */
static bool s_is_other(const chars *c, size_t i) { return c->fl[i] == 0; }
static bool s_is_crlf(const chars *c, size_t i) { return c->cp[i] == '\r' || c->cp[i] == '\n'; }

static uint32_t s_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

/* Length (in characters) of 's|'t|'re|'ve|'m|'ll|'d at i, or 0. */
static size_t s_contraction(const chars *c, size_t i, size_t e, bool icase) {
    if (c->cp[i] != '\'' || i + 1 >= e) return 0;
    uint32_t a = icase ? s_lower(c->cp[i + 1]) : c->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= e) return 0;
    uint32_t b = icase ? s_lower(c->cp[i + 2]) : c->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a whitespace character i: the whole run when it ends the
 * fragment or is one character, else all but its last character (which
 * then prefixes the next word, as " word"). */
static size_t s_space_run_end(const chars *c, size_t i, size_t e) {
    size_t k = i;
    while (k < e && s_is_s(c, k)) k++;
    if (k == e || k - i == 1) return k;
    return k - 1;
}

/* GPT-2:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int s_split_gpt2(const emitter *em, size_t b, size_t e) {
    const chars *c = em->c;
    size_t i = b;
    while (i < e) {
        size_t k = i + s_contraction(c, i, e, false);
        if (k == i) {
            /* an optional leading space belongs to the run that follows it */
            size_t j = (c->cp[i] == ' ' && i + 1 < e && !s_is_s(c, i + 1)) ? i + 1 : i;
            if (s_is_l(c, j)) {
                for (k = j; k < e && s_is_l(c, k); k++) {}
            } else if (s_is_n(c, j)) {
                for (k = j; k < e && s_is_n(c, k); k++) {}
            } else if (s_is_other(c, j)) {
                for (k = j; k < e && s_is_other(c, k); k++) {}
            } else {
                k = s_space_run_end(c, i, e);
            }
        }
        int rc = s_emit(em, i, k);
        if (rc) return rc;
        i = k;
    }
    return 0;
}

/* Llama-3 (digits_max 3) and Qwen2 (digits_max 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static int s_split_llama3(const emitter *em, size_t b, size_t e, size_t digits_max) {
    const chars *c = em->c;
    size_t i = b;
    while (i < e) {
        size_t k = i + s_contraction(c, i, e, true);
        if (k > i) {
            /* contraction */
        } else if (s_is_l(c, i) ||
                   (!s_is_crlf(c, i) && !s_is_n(c, i) && i + 1 < e && s_is_l(c, i + 1))) {
            for (k = i + 1; k < e && s_is_l(c, k); k++) {}
        } else if (s_is_n(c, i)) {
            for (k = i + 1; k < e && k - i < digits_max && s_is_n(c, k); k++) {}
        } else if (s_is_other(c, i) ||
                   (c->cp[i] == ' ' && i + 1 < e && s_is_other(c, i + 1))) {
            for (k = i + 1; k < e && s_is_other(c, k); k++) {}
            while (k < e && s_is_crlf(c, k)) k++;
        } else {
            /* whitespace: \s*[\r\n]+ ends at the run's last CR/LF, if any */
            size_t run = i, last_crlf = e;
            for (; run < e && s_is_s(c, run); run++)
                if (s_is_crlf(c, run)) last_crlf = run;
            k = last_crlf < e ? last_crlf + 1 : s_space_run_end(c, i, e);
        }
        int rc = s_emit(em, i, k);
        if (rc) return rc;
        i = k;
    }
    return 0;
}

/* SmolLM (llama.cpp "smollm", HF Digits(individual_digits) + ByteLevel):
 * every \p{N} character is a piece of its own; GPT-2 splits the rest. */
static int s_split_smollm(const emitter *em, size_t b, size_t e) {
    const chars *c = em->c;
    size_t i = b;
    while (i < e) {
        size_t k = i;
        while (k < e && !s_is_n(c, k)) k++;
        int rc = k > i ? s_split_gpt2(em, i, k) : 0;
        if (rc) return rc;
        if (k < e && (rc = s_emit(em, k, k + 1))) return rc;
        i = k + 1;
    }
    return 0;
}

int pretok_split(tok_pre pre, const char *text, size_t len, pretok_emit_fn emit,
                 void *ud) {
    if (len == 0) return 0;
    if (!text || !emit) return tis_error(TIS_EINVAL, "pretok: NULL text or callback");
    chars c = {0};
    c.cp = malloc(len * sizeof *c.cp);
    c.fl = malloc(len);
    c.off = malloc((len + 1) * sizeof *c.off);
    int rc = 0;
    if (!c.cp || !c.fl || !c.off) {
        rc = tis_error(TIS_ENOMEM, "pretok: out of memory for %zu bytes of text", len);
        goto done;
    }
    for (size_t p = 0; p < len; c.n++) {
        uint32_t cp;
        size_t l = unicode_utf8_decode(text + p, len - p, &cp);
        c.cp[c.n] = cp;
        c.fl[c.n] = (uint8_t)unicode_cpt_flags(cp);
        c.off[c.n] = p;
        p += l;
    }
    c.off[c.n] = len;
    emitter em = {.fn = emit, .ud = ud, .c = &c};
    switch (pre) {
    case TOK_PRE_GPT2: rc = s_split_gpt2(&em, 0, c.n); break;
    case TOK_PRE_SMOLLM: rc = s_split_smollm(&em, 0, c.n); break;
    case TOK_PRE_LLAMA3: rc = s_split_llama3(&em, 0, c.n, 3); break;
    case TOK_PRE_QWEN2: rc = s_split_llama3(&em, 0, c.n, 1); break;
    default: rc = tis_error(TIS_EINVAL, "pretok: unknown pre-tokeniser %d", (int)pre);
    }
done:
    free(c.cp);
    free(c.fl);
    free(c.off);
    return rc;
}

const char *pretok_name(tok_pre pre) {
    switch (pre) {
    case TOK_PRE_GPT2: return "gpt2";
    case TOK_PRE_SMOLLM: return "smollm";
    case TOK_PRE_LLAMA3: return "llama-bpe";
    case TOK_PRE_QWEN2: return "qwen2";
    }
    return "?";
}
