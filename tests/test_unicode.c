/* test_unicode: NFC (engine/unicode_nfc.c) against Python's
 * unicodedata.normalize('NFC', ...) on tests/golden/nfc.tsv (made by
 * scripts/make_nfc_golden.py), the quick check's no-allocation path, the
 * table lookups, and long runs of marks. */
#include <stdlib.h>
#include <string.h>

#include "tt.h"
#include "tt_alloc.h"
#include "unicode.h"

static int s_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes hex s[0..n) into out (n / 2 bytes); -1 on a bad digit. */
static int s_unhex(const char *s, size_t n, char *out) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = s_hexval(s[i]), lo = s_hexval(s[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i / 2] = (char)(hi * 16 + lo);
    }
    return 0;
}

/* NFC of s[0..n) as a malloc'd copy (the input itself when unchanged). */
static char *s_nfc(const char *s, size_t n, size_t *out_n, int *fast) {
    char *out = NULL;
    if (unicode_nfc(s, n, &out, out_n) != 0) return NULL;
    *fast = out == NULL;
    if (!out) {
        out = malloc(n ? n : 1);
        memcpy(out, s, n);
        *out_n = n;
    }
    return out;
}

/* One line: name \t input hex \t expected hex. Returns 1 when it matches. */
static int s_check_line(const char *line, size_t len) {
    const char *t1 = memchr(line, '\t', len);
    const char *t2 = t1 ? memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - line)) : NULL;
    if (!t2) {
        fprintf(stderr, "  nfc.tsv: malformed line '%.60s'\n", line);
        return 0;
    }
    size_t hin = (size_t)(t2 - t1 - 1), hwant = len - (size_t)(t2 + 1 - line);
    char *in = malloc(hin / 2 + 1), *want = malloc(hwant / 2 + 1);
    int ok = s_unhex(t1 + 1, hin, in) == 0 && s_unhex(t2 + 1, hwant, want) == 0;
    size_t n_in = hin / 2, n_want = hwant / 2, n_got = 0, n_again = 0;
    int fast = 0, fast_again = 0;
    char *got = ok ? s_nfc(in, n_in, &n_got, &fast) : NULL;
    ok = got && n_got == n_want && memcmp(got, want, n_want) == 0;
    /* a quick-check pass means the text is already NFC */
    if (ok && fast) ok = n_in == n_want && memcmp(in, want, n_in) == 0;
    /* NFC is idempotent */
    char *again = ok ? s_nfc(want, n_want, &n_again, &fast_again) : NULL;
    if (ok) ok = again && n_again == n_want && memcmp(again, want, n_want) == 0;
    if (!ok) {
        fprintf(stderr, "  nfc mismatch for case %.*s: got", (int)(t1 - line), line);
        for (size_t i = 0; got && i < n_got && i < 40; i++) fprintf(stderr, " %02x", (uint8_t)got[i]);
        fprintf(stderr, "\n");
    }
    free(in), free(want), free(got), free(again);
    return ok;
}

static void test_golden(void) {
    TT_CASE("golden");
    size_t len = 0;
    char *txt = tt_read_file(tt_src("tests/golden/nfc.tsv"), &len);
    TT_CHECK(txt != NULL);
    if (!txt) return;
    int n_cases = 0, n_bad = 0, version_ok = 0;
    for (char *line = txt; line < txt + len;) {
        char *nl = memchr(line, '\n', (size_t)(txt + len - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(txt + len - line);
        if (l > 10 && memcmp(line, "# unicode ", 10) == 0) {
            version_ok = l - 10 == strlen(unorm_unicode_version) &&
                         memcmp(line + 10, unorm_unicode_version, l - 10) == 0;
            if (!version_ok)
                fprintf(stderr, "  nfc.tsv is for Unicode %.*s, the tables for %s: regenerate "
                        "both with one Python\n", (int)(l - 10), line + 10, unorm_unicode_version);
        } else if (l && line[0] != '#') {
            n_cases++;
            n_bad += !s_check_line(line, l);
        }
        line += l + 1;
    }
    printf("nfc golden: %d cases, %d mismatches (Unicode %s)\n", n_cases, n_bad,
           unorm_unicode_version);
    TT_CHECK(version_ok);
    TT_CHECK(n_cases >= 400);
    TT_CHECK(n_bad == 0);
    free(txt);
}

/* Text the quick check passes comes back as "use the input": no copy. */
static void test_fast_path(void) {
    TT_CASE("fast_path");
    static const char *const already[] = {
        "", "plain ASCII, with digits 0123 and \t\r\n controls",
        "caf\xc3\xa9 \xc3\x85ngstr\xc3\xb6m",                 /* precomposed Latin */
        "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",               /* precomposed Hangul */
        "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd", /* CJK, emoji */
        "a\xcc\xa3\xcc\x81x",          /* U+0323 (220) then U+0301 (230): in order, but */
        "\xff\xfe invalid \x80 bytes", /* invalid bytes pass */
    };
    for (size_t i = 0; i < sizeof already / sizeof already[0]; i++) {
        char *out = (char *)1;
        size_t n = 99;
        TT_OK(unicode_nfc(already[i], strlen(already[i]), &out, &n));
        /* U+0323 is NFC_QC=Maybe (a composition's second member): slow path */
        if (i == 5) TT_CHECK(out != NULL && n == 6 && memcmp(out, "\xe1\xba\xa1\xcc\x81x", 6) == 0);
        else TT_CHECK(out == NULL && n == 0);
        if (i == 5) free(out);
    }
    /* 1 MB of ASCII with one decomposed character at the end */
    size_t big_n = 1 << 20;
    char *big = malloc(big_n + 3);
    for (size_t i = 0; i < big_n; i++) big[i] = (char)('a' + i % 26);
    char *out = NULL;
    size_t n = 0;
    TT_OK(unicode_nfc(big, big_n, &out, &n));
    TT_CHECK(out == NULL);
    memcpy(big + big_n, "\xcc\x81", 2); /* U+0301 after the last letter */
    /* the last letter is 'a' + (2^20 - 1) % 26 = 'v': v + U+0301 has no
     * composite, so the slow path gives the same bytes */
    TT_OK(unicode_nfc(big, big_n + 2, &out, &n));
    TT_CHECK(out && n == big_n + 2 && memcmp(out, big, big_n + 2) == 0);
    free(out);
    big[big_n - 1] = 'e';
    TT_OK(unicode_nfc(big, big_n + 2, &out, &n));
    TT_CHECK(out && n == big_n + 1 && memcmp(out + big_n - 1, "\xc3\xa9", 2) == 0);
    free(out);
    free(big);
}

static void test_lookups(void) {
    TT_CASE("lookups");
    TT_CHECK(unicode_ccc('a') == 0 && unicode_ccc(0x301) == 230 && unicode_ccc(0x323) == 220);
    TT_CHECK(unicode_ccc(0x05B0) == 10 && unicode_ccc(UNICODE_INVALID) == 0);
    TT_CHECK(unicode_compose('A', 0x30A) == 0xC5);
    TT_CHECK(unicode_compose(0x1100, 0x1161) == 0xAC00);   /* L + V */
    TT_CHECK(unicode_compose(0xAC00, 0x11A8) == 0xAC01);   /* LV + T */
    TT_CHECK(unicode_compose(0xAC01, 0x11A8) == UNICODE_INVALID); /* LVT + T */
    TT_CHECK(unicode_compose(0xAC00, 0x11A7) == UNICODE_INVALID); /* not a T */
    TT_CHECK(unicode_compose(0x915, 0x93C) == UNICODE_INVALID);   /* U+0958 is excluded */
    TT_CHECK(unicode_compose('b', 0x301) == UNICODE_INVALID);
    uint32_t d[UNORM_DECOMP_MAX];
    TT_CHECK(unicode_decompose('a', d) == 1 && d[0] == 'a');
    TT_CHECK(unicode_decompose(0xD7A3, d) == 3 && d[0] == 0x1112 && d[1] == 0x1175 &&
             d[2] == 0x11C2);
    TT_CHECK(unicode_decompose(0x1EAD, d) == 3 && d[0] == 'a' && d[1] == 0x323 && d[2] == 0x302);
    TT_CHECK(unicode_decompose(0x212B, d) == 2 && d[0] == 'A' && d[1] == 0x30A);
    TT_CHECK(unicode_decompose(0x10FFFF, d) == 1);
}

/* A long run of marks in reverse class order sorts (stably) in linear
 * time; a long run with nothing to compose stays. */
static void test_long_runs(void) {
    TT_CASE("long_runs");
    size_t marks = 200000, n = 1 + marks * 2;
    char *s = malloc(n);
    s[0] = 'x';
    for (size_t i = 0; i < marks; i++) /* U+0301 (230), U+0316 (220), alternating */
        memcpy(s + 1 + 2 * i, i % 2 ? "\xcc\x96" : "\xcc\x81", 2);
    char *out = NULL;
    size_t on = 0;
    TT_OK(unicode_nfc(s, n, &out, &on));
    TT_CHECK(out && on == n && out[0] == 'x');
    for (size_t i = 0; out && i < marks; i++)
        if (memcmp(out + 1 + 2 * i, i < marks / 2 ? "\xcc\x96" : "\xcc\x81", 2) != 0) {
            TT_CHECK(!"marks not sorted by class");
            break;
        }
    free(out);
    free(s);
}

/* Every allocation of a rewrite failing in turn: TIS_ENOMEM with a
 * message, nothing leaked (ASan), or the right result. */
static int s_nfc_op(void *ctx) {
    (void)ctx;
    /* several chunks, a mark run past the first buffer size, an exclusion */
    char in[600];
    size_t n = 0;
    memcpy(in + n, "cafe\xcc\x81 x", 8), n += 8;
    for (int i = 0; i < 100; i++) memcpy(in + n, i % 2 ? "\xcc\x96" : "\xcc\x81", 2), n += 2;
    memcpy(in + n, " \xe0\xa5\x98", 4), n += 4; /* U+0958 -> U+0915 U+093C */
    char *out = NULL;
    size_t on = 0;
    int rc = unicode_nfc(in, n, &out, &on);
    if (rc) return rc;
    int ok = out && on == n + 2 && memcmp(out, "caf\xc3\xa9 x\xcc\x96", 9) == 0 &&
             memcmp(out + on - 7, " \xe0\xa4\x95\xe0\xa4\xbc", 7) == 0;
    free(out);
    return ok ? 0 : TIS_EFORMAT;
}

static void test_alloc_failures(void) {
    TT_CASE("alloc_failures");
    int64_t points = tt_alloc_sweep("unicode_nfc", s_nfc_op, NULL, 0);
    if (points < 0) printf("note: allocation-failure injection is not linked; skipped\n");
    else TT_CHECK(points >= 4); /* out, cp, ccc, tmp (and their growth) */
}

int main(void) {
    test_golden();
    test_fast_path();
    test_lookups();
    test_long_runs();
    test_alloc_failures();
    return tt_done("test_unicode");
}
