/* unicode: UTF-8 decoding, the character classes the pre-tokenisers need
 * (\p{L}, \p{N}, White_Space), GPT-2's byte <-> code point mapping, and
 * Unicode normalisation form C (NFC, UAX #15) for tokenizers that ask
 * for it (Qwen2's tokenizer.json). */
#ifndef TIS_UNICODE_H
#define TIS_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Character class flags (a code point may have none). */
enum { UCAT_LETTER = 1, UCAT_NUMBER = 2, UCAT_SPACE = 4 };

/* Returned by unicode_utf8_decode for a byte that starts no valid sequence. */
#define UNICODE_INVALID 0xFFFFFFFFu

typedef struct ucat_range {
    uint32_t lo, hi; /* inclusive code point range */
    uint32_t flags;  /* UCAT_* */
} ucat_range;

/* Generated into unicode_tables.c by scripts/gen_unicode_tables.py. */
extern const ucat_range ucat_ranges[];
extern const size_t ucat_n_ranges;

/* Decodes the character at s[0..n) (n >= 1) into *cp and returns its byte
 * length. Overlong forms, surrogates, values past U+10FFFF and truncated
 * sequences give length 1 and *cp = UNICODE_INVALID, so a caller can walk
 * any byte string one unit at a time. */
size_t unicode_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Writes cp (<= 0x10FFFF) as UTF-8 into out; returns 1..4. */
size_t unicode_utf8_encode(uint32_t cp, char out[4]);

/* UCAT_* flags of a code point (0 for UNICODE_INVALID). */
uint32_t unicode_cpt_flags(uint32_t cp);

/* GPT-2 bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order, so every byte is a visible
 * character in the vocabulary ("Ġ" = U+0120 is the space byte). */
uint32_t unicode_byte_to_cpt(uint8_t b);
/* The inverse; -1 for code points outside the mapping. */
int unicode_cpt_to_byte(uint32_t cp);

/* ---- NFC ---------------------------------------------------------------
 * Tables generated into unicode_nfc_tables.c by
 * scripts/gen_unicode_tables.py --nfc (Unicode version: unorm_unicode_version). */
enum { UNORM_QC_YES = 0, UNORM_QC_MAYBE = 1, UNORM_QC_NO = 2 }; /* NFC_QC */
#define UNORM_DECOMP_MAX 4 /* longest full canonical decomposition */

typedef struct unorm_prop {
    uint32_t lo, hi;     /* inclusive code point range */
    uint8_t ccc;         /* canonical combining class */
    uint8_t qc;          /* UNORM_QC_* */
} unorm_prop;
typedef struct unorm_decomp {
    uint32_t cp;
    uint16_t off;        /* into unorm_decomp_pool */
    uint8_t len;         /* 1..UNORM_DECOMP_MAX */
} unorm_decomp;
typedef struct unorm_comp {
    uint32_t first, second, composite;
} unorm_comp;

extern const char unorm_unicode_version[];
extern const unorm_prop unorm_props[];  /* sorted, disjoint */
extern const size_t unorm_n_props;
extern const unorm_decomp unorm_decomps[]; /* sorted by cp */
extern const size_t unorm_n_decomps;
extern const uint32_t unorm_decomp_pool[];
extern const unorm_comp unorm_comps[];  /* sorted by (first, second) */
extern const size_t unorm_n_comps;

/* Canonical combining class of cp (0 for UNICODE_INVALID). */
int unicode_ccc(uint32_t cp);
/* Primary composite of (a, b), Hangul included, or UNICODE_INVALID. */
uint32_t unicode_compose(uint32_t a, uint32_t b);
/* Full canonical decomposition of cp into out (Hangul included); returns
 * its length, 1 (out[0] = cp) when it has none. */
size_t unicode_decompose(uint32_t cp, uint32_t out[UNORM_DECOMP_MAX]);

/* NFC of the UTF-8 text s[0..n): canonical decomposition, canonical
 * ordering, canonical composition. When s is already NFC as far as the
 * quick check can tell (every character NFC_QC=Yes, combining classes in
 * order: all ASCII text, nearly all text) returns 0 with *out = NULL and
 * allocates nothing: use s as it is. Otherwise *out is a malloc'd copy
 * (caller frees; not NUL-terminated) of *out_n bytes. Bytes that are not
 * valid UTF-8 pass through unchanged and block reordering and composition
 * across them, like a starter that composes with nothing. Returns
 * TIS_ENOMEM (with a message) when memory runs out. */
int unicode_nfc(const char *s, size_t n, char **out, size_t *out_n);

#endif
