/* bench_score: normalisation and scoring of a generated answer against a
 * sample's accepted answers (contains / exact / hallucinated, docs/design.md §7).
 *
 * Both sides are compared after the same steps: digit groups written with
 * thousands commas are joined ("12,345" -> "12345"), then bench_normalize.
 * Matches respect ASCII word boundaries ("123" is not in "51234"); bytes of
 * UTF-8 characters (>= 0x80) are kept and are not word bytes, so a Korean
 * answer followed by a particle ("서울입니다") still matches. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef enum shape { SHAPE_TEXT, SHAPE_NUMBER, SHAPE_HEX } shape;

static bool s_word(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool s_digit(char c) { return c >= '0' && c <= '9'; }
static bool s_hex(char c) { return s_digit(c) || (c >= 'a' && c <= 'f'); }

char *bench_normalize(const char *text) {
    if (!text) text = "";
    char *out = malloc(strlen(text) + 1);
    if (!out) return NULL;
    size_t k = 0;
    bool gap = false;
    for (const char *p = text; *p; p++) {
        char c = *p;
        if (!((uint8_t)c >= 0x80 || s_word(c))) {
            gap = true;
            continue;
        }
        if (gap && k) out[k++] = ' ';
        gap = false;
        out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[k] = 0;
    return out;
}

/* A copy with thousands separators removed: a comma after a run of 1-3
 * digits (or after a joined group) and before exactly three digits. */
static char *s_join_groups(const char *s) {
    char *out = malloc(strlen(s) + 1);
    if (!out) return NULL;
    size_t k = 0, run = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ',' && run >= 1 && run <= 3 && s_digit(p[1]) && s_digit(p[2]) &&
            s_digit(p[3]) && !s_digit(p[4])) {
            run = 0;
            continue;
        }
        run = s_digit(*p) ? run + 1 : 0;
        out[k++] = *p;
    }
    out[k] = 0;
    return out;
}

/* Joined, then normalised (NULL when out of memory). */
static char *s_canon(const char *s) {
    char *j = s_join_groups(s ? s : "");
    char *n = j ? bench_normalize(j) : NULL;
    free(j);
    return n;
}

/* Whether needle occurs in hay with a word boundary on each side. */
static bool s_find_word(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return false;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) {
        bool left = p == hay || !(s_word(p[-1]) && s_word(needle[0]));
        bool right = !(s_word(p[n]) && s_word(needle[n - 1]));
        if (left && right) return true;
    }
    return false;
}

static shape s_shape(const char *norm) {
    size_t n = strlen(norm), digits = 0, hex = 0;
    for (size_t i = 0; i < n; i++) {
        digits += s_digit(norm[i]);
        hex += s_hex(norm[i]);
    }
    if (n > 0 && digits == n) return SHAPE_NUMBER;
    if (n >= 6 && hex == n && digits > 0) return SHAPE_HEX; /* "3fa9c0d1", not "decade" */
    return SHAPE_TEXT;
}

/* Copies at most cap-1 bytes of s[0, n), not splitting a UTF-8 character. */
static void s_copy(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dst, s, n);
    dst[n] = 0;
}

/* The first maximal digit run of s with exactly len digits (len 0: any length). */
static const char *s_digit_run(const char *s, size_t len, size_t *run_len) {
    for (const char *p = s; *p;) {
        if (!s_digit(*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (s_digit(*q)) q++;
        if (len == 0 || (size_t)(q - p) == len) {
            *run_len = (size_t)(q - p);
            return p;
        }
        p = q;
    }
    return NULL;
}

/* The first word of the normalised text of len hex digits. */
static const char *s_hex_word(const char *norm, size_t len) {
    for (const char *p = norm; *p;) {
        const char *q = p;
        while (*q && *q != ' ') q++;
        bool hex = (size_t)(q - p) == len;
        for (const char *r = p; r < q && hex; r++) hex = s_hex(*r);
        if (hex) return p;
        p = *q ? q + 1 : q;
    }
    return NULL;
}

static bool s_trim_byte(char c, bool trailing) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'' || c == '`')
        return true;
    return trailing && strchr(".,;:!?)]}*", c) != NULL;
}

/* The first non-empty line, trimmed of spaces, quotes (also curly ones) and
 * trailing punctuation. */
static void s_first_line(const char *gen, char *dst, size_t cap) {
    const char *p = gen;
    for (;;) {
        while (*p && s_trim_byte(*p, false)) p++;
        /* U+201C/U+201D/U+2018/U+2019 */
        if ((uint8_t)p[0] == 0xE2 && (uint8_t)p[1] == 0x80 && (uint8_t)p[2] >= 0x98 &&
            (uint8_t)p[2] <= 0x9D) {
            p += 3;
            continue;
        }
        break;
    }
    const char *e = p;
    while (*e && *e != '\n') e++;
    for (;;) {
        if (e > p && s_trim_byte(e[-1], true)) {
            e--;
        } else if (e - p >= 3 && (uint8_t)e[-3] == 0xE2 && (uint8_t)e[-2] == 0x80 &&
                   (uint8_t)e[-1] >= 0x98 && (uint8_t)e[-1] <= 0x9D) {
            e -= 3;
        } else {
            break;
        }
    }
    s_copy(dst, cap, p, (size_t)(e - p));
}

/* The answer extracted from the generation for an answer of this shape. */
static void s_extract(const char *gen_joined, const char *gen_norm, shape sh, size_t len,
                      char *dst, size_t cap) {
    const char *p = NULL;
    size_t n = 0;
    dst[0] = 0;
    if (sh == SHAPE_NUMBER) {
        if ((p = s_digit_run(gen_joined, 0, &n))) s_copy(dst, cap, p, n);
    } else if (sh == SHAPE_HEX) {
        if ((p = s_hex_word(gen_norm, len))) s_copy(dst, cap, p, len);
    } else {
        s_first_line(gen_joined, dst, cap);
    }
}

void bench_score_answer(const bench_sample *s, const char *generated, bench_score *out) {
    memset(out, 0, sizeof *out);
    if (!generated) generated = "";
    char *gj = s_join_groups(generated);
    char *gn = gj ? bench_normalize(gj) : NULL;
    if (!gj || !gn) { /* out of memory: scores as wrong */
        free(gj);
        return;
    }
    bool shaped = false, chosen = false;
    s_first_line(gj, out->extracted, sizeof out->extracted);
    for (int64_t i = 0; s && i < s->n_answers; i++) {
        char *na = s_canon(s->answers[i]);
        if (!na || !na[0]) {
            free(na);
            continue;
        }
        shape sh = s_shape(na);
        size_t len = strlen(na);
        char ex[sizeof out->extracted];
        s_extract(gj, gn, sh, len, ex, sizeof ex);
        char *ne = s_canon(ex);
        bool exact = ne && strcmp(ne, na) == 0;
        free(ne);
        if (!chosen && (exact || i == 0)) { /* report the matching extraction */
            memcpy(out->extracted, ex, sizeof ex);
            chosen = exact;
        }
        out->exact |= exact;
        out->contains |= s_find_word(gn, na);
        size_t n = 0;
        if (sh == SHAPE_NUMBER) shaped |= s_digit_run(gj, len, &n) != NULL;
        if (sh == SHAPE_HEX) shaped |= s_hex_word(gn, len) != NULL;
        free(na);
    }
    if (s && s->n_answers > 0 && !out->contains) {
        bool dis = false;
        for (int64_t i = 0; i < s->n_distractors && !dis; i++) {
            char *nd = s_canon(s->distractors[i]);
            dis = nd && s_find_word(gn, nd);
            free(nd);
        }
        out->hallucinated = shaped || dis;
    }
    if (!s || s->n_answers == 0) out->exact = out->contains = false;
    free(gj);
    free(gn);
}
