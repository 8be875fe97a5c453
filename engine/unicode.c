/* unicode: UTF-8 decoding, character classes, GPT-2 byte mapping. */
#include "unicode.h"

size_t unicode_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    uint8_t c = u[0];
    *cp = UNICODE_INVALID;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 1; /* continuation byte or 0xF8..0xFF */
    }
    if (len > n) return 1;
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (u[i] & 0x3F);
    }
    /* Overlong forms and surrogates would not round-trip as code points. */
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return len;
}

size_t unicode_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t unicode_cpt_flags(uint32_t cp) {
    if (cp < 0x80) { /* fast path: most text is ASCII */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UCAT_LETTER;
        if (cp >= '0' && cp <= '9') return UCAT_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return UCAT_SPACE;
        return 0;
    }
    size_t lo = 0, hi = ucat_n_ranges; /* first range with .hi >= cp */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ucat_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < ucat_n_ranges && ucat_ranges[lo].lo <= cp) return ucat_ranges[lo].flags;
    return 0;
}

/* The 68 bytes GPT-2 remaps: 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD. */
uint32_t unicode_byte_to_cpt(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 256u + 33u + 34u;
    return b;
}

int unicode_cpt_to_byte(uint32_t cp) {
    if (cp < 256) {
        if (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return -1;
        return (int)cp;
    }
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 33 + 34) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 33 + 34) return 0xAD;
    return -1;
}
