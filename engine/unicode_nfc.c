/* unicode_nfc: Unicode normalisation form C (UAX #15) over UTF-8.
 *
 * NFC = full canonical decomposition (recursive, Hangul algorithmic), then
 * canonical ordering (a stable sort of each run of non-starters by
 * combining class), then canonical composition (each character joins the
 * last starter when nothing between blocks it and the pair has a primary
 * composite; composition exclusions have none).
 *
 * Only the parts of a text that need it are rewritten. The quick check
 * (UAX #15 §9) walks the text: a character with NFC_QC=Yes and combining
 * class 0 is a boundary (nothing before it can reorder or compose with
 * what follows it); the first character with NFC_QC No/Maybe, or a
 * combining class lower than its predecessor's, starts a chunk at the last
 * boundary before it. That chunk, up to the next boundary, is normalised
 * through a code point buffer; the text between chunks is copied as is.
 * All ASCII text and nearly all text passes the check whole and costs one
 * read (8 ASCII bytes per step), without allocating.
 *
 * Invalid UTF-8 bytes travel through the code point buffer as
 * UNORM_INV + byte (above U+10FFFF, so no table has them): combining class
 * 0, no decomposition, no composite. They come out as the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#include "unicode.h"

/* Hangul syllable arithmetic (Unicode §3.12). */
enum {
    H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
    H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28,
    H_NCOUNT = H_VCOUNT * H_TCOUNT, H_SCOUNT = H_LCOUNT * H_NCOUNT,
};
#define UNORM_INV 0x110000u
/* UTF-8 lead bytes below 0xCC start U+0000..U+02FF; the generator checks
 * that none of those has a combining class or an NFC_QC other than Yes. */
#define UNORM_FIRST_LEAD 0xCC

static const unorm_prop *s_prop(uint32_t cp) {
    if (cp < 0x300) return NULL;
    size_t lo = 0, hi = unorm_n_props; /* first range with .hi >= cp */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (unorm_props[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < unorm_n_props && unorm_props[lo].lo <= cp ? &unorm_props[lo] : NULL;
}

int unicode_ccc(uint32_t cp) {
    const unorm_prop *p = s_prop(cp);
    return p ? p->ccc : 0;
}

size_t unicode_decompose(uint32_t cp, uint32_t out[UNORM_DECOMP_MAX]) {
    out[0] = cp;
    if (cp - H_SBASE < (uint32_t)H_SCOUNT) {
        uint32_t s = cp - H_SBASE, t = s % H_TCOUNT;
        out[0] = H_LBASE + s / H_NCOUNT;
        out[1] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT;
        if (!t) return 2;
        out[2] = H_TBASE + t;
        return 3;
    }
    if (cp < 0xC0 || cp >= UNORM_INV) return 1; /* U+00C0 is the first with one */
    size_t lo = 0, hi = unorm_n_decomps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (unorm_decomps[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == unorm_n_decomps || unorm_decomps[lo].cp != cp) return 1;
    const unorm_decomp *d = &unorm_decomps[lo];
    memcpy(out, unorm_decomp_pool + d->off, d->len * sizeof *out);
    return d->len;
}

uint32_t unicode_compose(uint32_t a, uint32_t b) {
    if (a - H_LBASE < (uint32_t)H_LCOUNT && b - H_VBASE < (uint32_t)H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a - H_SBASE < (uint32_t)H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b - H_TBASE - 1 < (uint32_t)H_TCOUNT - 1)
        return a + (b - H_TBASE);
    size_t lo = 0, hi = unorm_n_comps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const unorm_comp *c = &unorm_comps[mid];
        if (c->first < a || (c->first == a && c->second < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < unorm_n_comps && unorm_comps[lo].first == a && unorm_comps[lo].second == b)
        return unorm_comps[lo].composite;
    return UNICODE_INVALID;
}

/* Offset of the last boundary at or before the first character of u[0..n)
 * that fails the quick check, or n when every character passes. */
static size_t s_quick_check(const uint8_t *u, size_t n) {
    size_t boundary = 0, i = 0;
    int last_ccc = 0;
    while (i < n) {
        if (i + 8 <= n) { /* 8 ASCII bytes at once */
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                boundary = i + 7, last_ccc = 0, i += 8;
                continue;
            }
        }
        if (u[i] < UNORM_FIRST_LEAD) { /* U+0000..U+02FF, or an invalid byte */
            if ((u[i] & 0xC0) != 0x80) boundary = i; /* not mid-character */
            last_ccc = 0, i++;
            continue;
        }
        uint32_t cp;
        size_t l = unicode_utf8_decode((const char *)u + i, n - i, &cp);
        const unorm_prop *p = cp == UNICODE_INVALID ? NULL : s_prop(cp);
        if (!p) {
            boundary = i, last_ccc = 0, i += l;
            continue;
        }
        if (p->qc != UNORM_QC_YES || (p->ccc && last_ccc > p->ccc)) return boundary;
        last_ccc = p->ccc, i += l; /* NFC_QC=Yes with a class: no boundary */
    }
    return n;
}

/* Start of the first boundary after the character at u[pos] (or n). */
static size_t s_next_boundary(const uint8_t *u, size_t n, size_t pos) {
    uint32_t cp;
    size_t i = pos + unicode_utf8_decode((const char *)u + pos, n - pos, &cp);
    while (i < n) {
        if (u[i] < UNORM_FIRST_LEAD) return i;
        size_t l = unicode_utf8_decode((const char *)u + i, n - i, &cp);
        const unorm_prop *p = cp == UNICODE_INVALID ? NULL : s_prop(cp);
        if (!p || (p->qc == UNORM_QC_YES && p->ccc == 0)) return i;
        i += l;
    }
    return n;
}

typedef struct nfc_work {
    char *out;           /* the normalised text so far */
    size_t n, cap;
    uint32_t *cp;        /* [cp_cap] one chunk's code points */
    uint8_t *ccc;        /* [cp_cap] their combining classes */
    uint32_t *tmp;       /* [cp_cap] sorting scratch */
    size_t cp_cap;
} nfc_work;

static int s_out_reserve(nfc_work *w, size_t more) {
    if (w->cap - w->n >= more) return 0;
    size_t cap = w->cap;
    while (cap - w->n < more) {
        if (cap > SIZE_MAX / 2) return tis_error(TIS_ENOMEM, "unicode_nfc: text too long");
        cap *= 2;
    }
    char *p = realloc(w->out, cap);
    if (!p) return tis_error(TIS_ENOMEM, "unicode_nfc: out of memory for %zu bytes", cap);
    w->out = p, w->cap = cap;
    return 0;
}

static int s_cp_reserve(nfc_work *w, size_t need) {
    if (need <= w->cp_cap) return 0;
    size_t cap = w->cp_cap ? w->cp_cap : 64;
    while (cap < need) cap *= 2;
    if (cap > SIZE_MAX / sizeof(uint32_t)) return tis_error(TIS_ENOMEM, "unicode_nfc: chunk too long");
    uint32_t *cp = realloc(w->cp, cap * sizeof *cp);
    if (cp) w->cp = cp;
    uint8_t *cc = realloc(w->ccc, cap);
    if (cc) w->ccc = cc;
    free(w->tmp);
    w->tmp = malloc(cap * sizeof *w->tmp);
    if (!cp || !cc || !w->tmp)
        return tis_error(TIS_ENOMEM, "unicode_nfc: out of memory for %zu code points", cap);
    w->cp_cap = cap;
    return 0;
}

/* Stable sort of cp/ccc[lo..hi) (a run of non-starters) by class: insertion
 * for short runs, counting sort for long ones (O(n), so an adversarial run
 * of a million marks costs no more than it must). */
static void s_sort_run(nfc_work *w, size_t lo, size_t hi) {
    uint32_t *cp = w->cp;
    uint8_t *cc = w->ccc;
    if (hi - lo <= 32) {
        for (size_t i = lo + 1; i < hi; i++) {
            uint32_t c = cp[i];
            uint8_t k = cc[i];
            size_t j = i;
            for (; j > lo && cc[j - 1] > k; j--) cp[j] = cp[j - 1], cc[j] = cc[j - 1];
            cp[j] = c, cc[j] = k;
        }
        return;
    }
    size_t start[257] = {0};
    for (size_t i = lo; i < hi; i++) start[cc[i] + 1]++;
    for (int k = 1; k <= 256; k++) start[k] += start[k - 1];
    for (size_t i = lo; i < hi; i++) w->tmp[start[cc[i]]++] = cp[i];
    memcpy(cp + lo, w->tmp, (hi - lo) * sizeof *cp);
    for (size_t i = lo; i < hi; i++) cc[i] = (uint8_t)unicode_ccc(cp[i]);
}

/* Normalises the chunk u[pos..end) onto w->out. */
static int s_chunk(nfc_work *w, const uint8_t *u, size_t pos, size_t end) {
    size_t k = 0;
    int rc = s_cp_reserve(w, (end - pos) * UNORM_DECOMP_MAX);
    if (rc) return rc;
    for (size_t i = pos; i < end;) { /* decompose */
        uint32_t cp;
        size_t l = unicode_utf8_decode((const char *)u + i, end - i, &cp);
        if (cp == UNICODE_INVALID) cp = UNORM_INV + u[i];
        size_t d = unicode_decompose(cp, w->cp + k);
        for (size_t j = k; j < k + d; j++) w->ccc[j] = (uint8_t)unicode_ccc(w->cp[j]);
        k += d, i += l;
    }
    for (size_t i = 0; i < k;) { /* order each run of non-starters */
        if (!w->ccc[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < k && w->ccc[j]) j++;
        s_sort_run(w, i, j);
        i = j;
    }
    /* compose: last = class of the last character kept after the starter,
     * 0 when that is the starter itself, 256 when there is no starter yet */
    size_t starter = 0, n = k ? 1 : 0;
    int last = k && w->ccc[0] ? 256 : 0;
    for (size_t i = 1; i < k; i++) {
        uint32_t c = w->cp[i];
        int cc = w->ccc[i];
        if (last < cc || last == 0) {
            uint32_t comp = unicode_compose(w->cp[starter], c);
            if (comp != UNICODE_INVALID) {
                w->cp[starter] = comp;
                continue;
            }
        }
        if (cc == 0) starter = n;
        last = cc;
        w->cp[n] = c, w->ccc[n] = (uint8_t)cc, n++;
    }
    if ((rc = s_out_reserve(w, n * 4))) return rc;
    for (size_t i = 0; i < n; i++) {
        if (w->cp[i] >= UNORM_INV) w->out[w->n++] = (char)(w->cp[i] - UNORM_INV);
        else w->n += unicode_utf8_encode(w->cp[i], w->out + w->n);
    }
    return 0;
}

int unicode_nfc(const char *s, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    const uint8_t *u = (const uint8_t *)s;
    size_t ok = s_quick_check(u, n);
    if (ok == n) return 0;
    nfc_work w = {.cap = n + n / 8 + 16};
    if (w.cap < n) return tis_error(TIS_ENOMEM, "unicode_nfc: text too long");
    w.out = malloc(w.cap);
    int rc = w.out ? 0 : tis_error(TIS_ENOMEM, "unicode_nfc: out of memory for %zu bytes", w.cap);
    for (size_t pos = 0; !rc && pos < n;) {
        if ((rc = s_out_reserve(&w, ok))) break;
        memcpy(w.out + w.n, s + pos, ok); /* passes the quick check */
        w.n += ok, pos += ok;
        if (pos == n) break;
        size_t end = s_next_boundary(u, n, pos);
        if ((rc = s_chunk(&w, u, pos, end))) break;
        pos = end;
        ok = s_quick_check(u + pos, n - pos);
    }
    free(w.cp), free(w.ccc), free(w.tmp);
    if (rc) {
        free(w.out);
        return rc;
    }
    *out = w.out;
    *out_n = w.n;
    return 0;
}
