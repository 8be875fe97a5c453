/* unicode: UTF-8 decoding, the character classes the pre-tokenisers need
 * (\p{L}, \p{N}, White_Space) and GPT-2's byte <-> code point mapping. */
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

#endif
