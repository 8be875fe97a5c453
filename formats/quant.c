/* quant: ggml type table, f16/bf16 conversion, dequantisation and reference
 * quantisers for the block layouts described in quant.h.
 *
 * Blocks are read byte by byte (little-endian, unaligned) rather than through
 * packed structs, so a block may sit at any address inside an mmap. Each
 * type has one plain loop over its blocks; the only dispatch is the switch
 * per row, so the inner loops inline the f16 conversion and vectorise. */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "tis_error.h"

/* ---- type table --------------------------------------------------------- */

typedef struct quant_type_info {
    const char *name;
    int64_t block_elems; /* 0 when this build cannot dequantise the type */
    size_t block_bytes;
} quant_type_info;

/* Indexed by ggml type id; names for every id ggml has assigned, sizes only
 * for the types handled here. Gaps (4, 5, 31..33, 36..38) are retired ids. */
static const quant_type_info s_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},
    [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 2 + 16},
    [GGML_TYPE_Q4_1] = {"Q4_1", 32, 2 + 2 + 16},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 2 + 4 + 16},
    [GGML_TYPE_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 2 + 32},
    [GGML_TYPE_Q8_1] = {"Q8_1", 0, 0},
    [GGML_TYPE_Q2_K] = {"Q2_K", 0, 0},
    [GGML_TYPE_Q3_K] = {"Q3_K", 0, 0},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 128},
    [GGML_TYPE_Q5_K] = {"Q5_K", 0, 0},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 128 + 64 + 16 + 2},
    [GGML_TYPE_Q8_K] = {"Q8_K", 0, 0},
    [16] = {"IQ2_XXS", 0, 0},
    [17] = {"IQ2_XS", 0, 0},
    [18] = {"IQ3_XXS", 0, 0},
    [19] = {"IQ1_S", 0, 0},
    [20] = {"IQ4_NL", 0, 0},
    [21] = {"IQ3_S", 0, 0},
    [22] = {"IQ2_S", 0, 0},
    [23] = {"IQ4_XS", 0, 0},
    [24] = {"I8", 0, 0},
    [25] = {"I16", 0, 0},
    [26] = {"I32", 0, 0},
    [27] = {"I64", 0, 0},
    [28] = {"F64", 0, 0},
    [29] = {"IQ1_M", 0, 0},
    [GGML_TYPE_BF16] = {"BF16", 1, 2},
    [34] = {"TQ1_0", 0, 0},
    [35] = {"TQ2_0", 0, 0},
    [39] = {"MXFP4", 0, 0},
    [40] = {"NVFP4", 0, 0},
};

const char *quant_type_name(int type) {
    if (type < 0 || type >= GGML_TYPE_COUNT) return NULL;
    return s_types[type].name;
}

bool quant_type_supported(int type) {
    return type >= 0 && type < GGML_TYPE_COUNT && s_types[type].block_elems > 0;
}

int64_t quant_block_elems(int type) {
    return quant_type_supported(type) ? s_types[type].block_elems : 0;
}

size_t quant_block_bytes(int type) {
    return quant_type_supported(type) ? s_types[type].block_bytes : 0;
}

int quant_row_bytes(int type, int64_t n, size_t *out) {
    *out = 0;
    if (!quant_type_supported(type)) {
        const char *name = quant_type_name(type);
        return tis_error(TIS_EUNSUPPORTED, "quant: type %s (id %d) is not supported",
                         name ? name : "unknown", type);
    }
    int64_t be = s_types[type].block_elems;
    if (n < 0 || n % be != 0)
        return tis_error(TIS_EFORMAT,
                         "quant: row of %lld elements is not a multiple of the %s "
                         "block (%lld)",
                         (long long)n, s_types[type].name, (long long)be);
    uint64_t nb = (uint64_t)(n / be);
    size_t bb = s_types[type].block_bytes;
    if (nb > SIZE_MAX / bb)
        return tis_error(TIS_ERANGE, "quant: row of %lld %s elements overflows size_t",
                         (long long)n, s_types[type].name);
    *out = (size_t)nb * bb;
    return 0;
}

/* ---- f16 / bf16 --------------------------------------------------------- */

static inline uint32_t s_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float s_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Exact: every half is a float. Re-biases the exponent; subnormal halves are
 * normalised by one float subtraction (exact, since both are representable).
 * Written with selects rather than branches so F16 rows vectorise. */
static inline float s_f16_to_f32(uint16_t h) {
    uint32_t o = (uint32_t)(h & 0x7fff) << 13;
    uint32_t exp = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    o += exp == 0x0f800000u ? (uint32_t)(128 - 16) << 23 : 0; /* inf / nan */
    uint32_t sub = s_f32_bits(s_bits_f32(o + (1u << 23)) - s_bits_f32(113u << 23));
    o = exp == 0 ? sub : o; /* subnormal or zero */
    return s_bits_f32(o | (uint32_t)(h & 0x8000) << 16);
}

/* Round to nearest even, overflow to inf, nan to a quiet nan (payload
 * dropped), subnormal halves produced by one float addition against a magic
 * constant, which makes the FPU do the rounding. */
static inline uint16_t s_f32_to_f16(float f) {
    uint32_t u = s_f32_bits(f);
    uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint16_t o;
    if (u >= (uint32_t)(127 + 16) << 23) { /* |f| >= 65536, inf or nan */
        o = u > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (u < 113u << 23) { /* |f| < 2^-14: half subnormal or zero */
        const uint32_t magic = (uint32_t)((127 - 15) + (23 - 10) + 1) << 23;
        o = (uint16_t)(s_f32_bits(s_bits_f32(u) + s_bits_f32(magic)) - magic);
    } else {
        uint32_t mant_odd = (u >> 13) & 1;
        u += ((uint32_t)(15 - 127) << 23) + 0xfff + mant_odd;
        o = (uint16_t)(u >> 13); /* a carry into the exponent rounds up to inf */
    }
    return (uint16_t)(o | sign >> 16);
}

float quant_f16_to_f32(uint16_t h) { return s_f16_to_f32(h); }
uint16_t quant_f32_to_f16(float f) { return s_f32_to_f16(f); }

float quant_bf16_to_f32(uint16_t h) { return s_bits_f32((uint32_t)h << 16); }

/* As ggml: nan stays a (quiet) nan, everything else rounds to nearest even. */
uint16_t quant_f32_to_bf16(float f) {
    uint32_t u = s_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline uint16_t s_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline float s_rdh(const uint8_t *p) { return s_f16_to_f32(s_rd16(p)); }
static inline void s_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ---- dequantisation ----------------------------------------------------- */

static void s_deq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = s_rdh(b);
        const int8_t *q = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) y[j] = d * (float)q[j];
    }
}

static void s_deq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = s_rdh(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 0x0f) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

static void s_deq_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        float d = s_rdh(b), m = s_rdh(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0x0f) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

static inline uint32_t s_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Q5: element j takes bit j of qh as its bit 4 (j + 16: bit j + 16). */
static void s_deq_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        float d = s_rdh(b);
        uint32_t qh = s_rd32(b + 2);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10);
            int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void s_deq_q5_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        float d = s_rdh(b), m = s_rdh(b + 2);
        uint32_t qh = s_rd32(b + 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10);
            int hi = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

/* Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes:
 * j < 4: sc = s[j] & 63, m = s[j+4] & 63; else the low 4 bits come from
 * s[j+4] (sc: low nibble, m: high nibble) and the top 2 from s[j-4] / s[j]. */
static inline void s_k4_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4);
        *m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

/* 256 = 4 groups of 64; each group reads 32 bytes of qs, sub-block 2g from
 * the low nibbles, 2g+1 from the high nibbles. */
static void s_deq_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144) {
        float d = s_rdh(b), dmin = s_rdh(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int g = 0; g < 4; g++, q += 32, y += 64) {
            uint8_t sc, m;
            s_k4_scale_min(2 * g, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            s_k4_scale_min(2 * g + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                y[l] = d1 * (float)(q[l] & 0x0f) - m1;
                y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
            }
        }
    }
}

/* Q6_K: two halves of 128; in each, element l + 32k (k = 0..3) takes its low
 * 4 bits from ql[l] / ql[l+32] (low, low, high, high nibble) and its top 2
 * bits from qh[l] >> 2k; scale index is 16-element groups in order. */
static void s_deq_q6_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = s_rdh(b + 208);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void quant_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    TIS_ASSERT(quant_type_supported(type) && n >= 0 && n % s_types[type].block_elems == 0);
    int64_t nb = n / s_types[type].block_elems;
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break; /* host is little-endian */
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = s_rdh(b + 2 * i);
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_f32(s_rd16(b + 2 * i));
        break;
    case GGML_TYPE_Q8_0: s_deq_q8_0(b, dst, nb); break;
    case GGML_TYPE_Q4_0: s_deq_q4_0(b, dst, nb); break;
    case GGML_TYPE_Q4_1: s_deq_q4_1(b, dst, nb); break;
    case GGML_TYPE_Q5_0: s_deq_q5_0(b, dst, nb); break;
    case GGML_TYPE_Q5_1: s_deq_q5_1(b, dst, nb); break;
    case GGML_TYPE_Q4_K: s_deq_q4_k(b, dst, nb); break;
    case GGML_TYPE_Q6_K: s_deq_q6_k(b, dst, nb); break;
    default: TIS_ASSERT(!"unreachable: supported type without a dequantiser");
    }
}

/* ---- reference quantisers ----------------------------------------------- */

/* Q8_0 / Q4_0 / Q5_0 follow ggml's reference rounding so files we write
 * look like llama.cpp's: symmetric, scale from the largest magnitude. */
static void s_quant_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        s_wr16(b, s_f32_to_f16(d));
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* Scale from the signed extreme so that value maps exactly to code 0 (-8 /
 * -16) and the other side gets the extra positive code. */
static float s_signed_max(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void s_quant_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 18) {
        float d = s_signed_max(x, 32) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        s_wr16(b, s_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            int lo = (int)fminf(15.0f, x[j] * id + 8.5f);
            int hi = (int)fminf(15.0f, x[j + 16] * id + 8.5f);
            b[2 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

static void s_quant_q5_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 22) {
        float d = s_signed_max(x, 32) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        s_wr16(b, s_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (int)fminf(31.0f, x[j] * id + 16.5f);
            int hi = (int)fminf(31.0f, x[j + 16] * id + 16.5f);
            b[6 + j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) b[2 + k] = (uint8_t)(qh >> 8 * k);
    }
}

/* Q4_1 / Q5_1: affine, x = d*q + min with q in [0, levels]. */
static void s_quant_affine(const float *x, uint8_t *b, int64_t nb, int levels) {
    size_t bytes = levels == 15 ? 20 : 24;
    for (int64_t i = 0; i < nb; i++, x += 32, b += bytes) {
        float min = x[0], max = x[0];
        for (int j = 1; j < 32; j++) {
            min = fminf(min, x[j]);
            max = fmaxf(max, x[j]);
        }
        float d = (max - min) / (float)levels, id = d != 0.0f ? 1.0f / d : 0.0f;
        s_wr16(b, s_f32_to_f16(d));
        s_wr16(b + 2, s_f32_to_f16(min));
        uint8_t *qs = b + (levels == 15 ? 4 : 8);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (int)fminf((float)levels, (x[j] - min) * id + 0.5f);
            int hi = (int)fminf((float)levels, (x[j + 16] - min) * id + 0.5f);
            qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        if (levels == 31)
            for (int k = 0; k < 4; k++) b[4 + k] = (uint8_t)(qh >> 8 * k);
    }
}

/* The smallest half >= v (v >= 0, finite, below the half range): the
 * super-block scales must not round down, or the top sub-block clamps. */
static uint16_t s_f16_ceil(float v) {
    uint16_t h = s_f32_to_f16(v);
    if (s_f16_to_f32(h) < v) h++;
    return h;
}

static int s_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q4_K, simply: each 32-element sub-block gets min m_j = max(0, -min x) and
 * scale s_j = (max x + m_j) / 15 (>= 0 since m_j >= -max x); the 6-bit codes are those divided by the
 * f16 super-scales dmin = max m_j / 63, then d = max s_j / 63 (s_j with the
 * min as stored), all rounded up so each sub-block's range stays covered;
 * then each x rounds to the nearest of the 16 levels the dequantiser makes. */
static void s_quant_q4_k(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += 144) {
        float sub_s[8], sub_m[8], mmax = 0.0f;
        for (int j = 0; j < 8; j++) {
            float mn = 0.0f, mx = x[32 * j]; /* the min is never above 0 */
            for (int l = 0; l < 32; l++) {
                mn = fminf(mn, x[32 * j + l]);
                mx = fmaxf(mx, x[32 * j + l]);
            }
            sub_m[j] = -mn;
            sub_s[j] = (mx - mn) / 15.0f;
            mmax = fmaxf(mmax, sub_m[j]);
        }
        uint16_t mh = s_f16_ceil(mmax / 63.0f);
        float dmin = s_f16_to_f32(mh);
        uint8_t sc[8], m[8];
        float need[8], nmax = 0.0f;
        for (int j = 0; j < 8; j++) {
            m[j] = (uint8_t)(dmin > 0.0f ? s_clampi((int)ceilf(sub_m[j] / dmin), 0, 63) : 0);
            /* the scale must reach max x + the min actually stored */
            need[j] = (sub_s[j] * 15.0f - sub_m[j] + dmin * (float)m[j]) / 15.0f;
            nmax = fmaxf(nmax, need[j]);
        }
        uint16_t dh = s_f16_ceil(nmax / 63.0f);
        float d = s_f16_to_f32(dh);
        for (int j = 0; j < 8; j++)
            sc[j] = (uint8_t)(d > 0.0f ? s_clampi((int)ceilf(need[j] / d), 0, 63) : 0);
        s_wr16(b, dh);
        s_wr16(b + 2, mh);
        uint8_t *s = b + 4;
        for (int j = 0; j < 4; j++) {
            s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
            s[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
            s[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
        }
        uint8_t *q = b + 16;
        for (int g = 0; g < 4; g++, q += 32) {
            int j0 = 2 * g, j1 = 2 * g + 1;
            float es0 = d * (float)sc[j0], em0 = dmin * (float)m[j0];
            float es1 = d * (float)sc[j1], em1 = dmin * (float)m[j1];
            float ie0 = es0 > 0.0f ? 1.0f / es0 : 0.0f, ie1 = es1 > 0.0f ? 1.0f / es1 : 0.0f;
            for (int l = 0; l < 32; l++) {
                int lo = s_clampi((int)lrintf((x[32 * j0 + l] + em0) * ie0), 0, 15);
                int hi = s_clampi((int)lrintf((x[32 * j1 + l] + em1) * ie1), 0, 15);
                q[l] = (uint8_t)(lo | hi << 4);
            }
        }
    }
}

/* Q6_K, simply: each 16-element group gets scale amax/31 (codes -31..31),
 * stored as an int8 multiple (rounded up) of d = max scale / 127. */
static void s_quant_q6_k(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += 210) {
        float sub[16], smax = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            sub[j] = amax / 31.0f;
            smax = fmaxf(smax, sub[j]);
        }
        uint16_t dh = s_f16_ceil(smax / 127.0f);
        float d = s_f16_to_f32(dh);
        int8_t sc[16];
        int8_t qv[256];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d > 0.0f ? s_clampi((int)ceilf(sub[j] / d), 0, 127) : 0);
            float es = d * (float)sc[j], ie = es > 0.0f ? 1.0f / es : 0.0f;
            for (int l = 0; l < 16; l++)
                qv[16 * j + l] = (int8_t)s_clampi((int)lrintf(x[16 * j + l] * ie), -32, 31);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *v = qv + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = v[l] + 32, q2 = v[l + 32] + 32, q3 = v[l + 64] + 32, q4 = v[l + 96] + 32;
                ql[l] = (uint8_t)((q1 & 0x0f) | (q3 & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | (q4 & 0x0f) << 4);
                qh[l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
        memcpy(b + 192, sc, 16);
        s_wr16(b + 208, dh);
    }
}

void quant_quantize_row(int type, const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    TIS_ASSERT(quant_type_supported(type) && n >= 0 && n % s_types[type].block_elems == 0);
    int64_t nb = n / s_types[type].block_elems;
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) s_wr16(b + 2 * i, s_f32_to_f16(src[i]));
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) s_wr16(b + 2 * i, quant_f32_to_bf16(src[i]));
        break;
    case GGML_TYPE_Q8_0: s_quant_q8_0(src, b, nb); break;
    case GGML_TYPE_Q4_0: s_quant_q4_0(src, b, nb); break;
    case GGML_TYPE_Q4_1: s_quant_affine(src, b, nb, 15); break;
    case GGML_TYPE_Q5_0: s_quant_q5_0(src, b, nb); break;
    case GGML_TYPE_Q5_1: s_quant_affine(src, b, nb, 31); break;
    case GGML_TYPE_Q4_K: s_quant_q4_k(src, b, nb); break;
    case GGML_TYPE_Q6_K: s_quant_q6_k(src, b, nb); break;
    default: TIS_ASSERT(!"unreachable: supported type without a quantiser");
    }
}

void quant_scaled_row(int type, const float *src, const float *scale, const float *zero, void *dst, int64_t n) {
    TIS_ASSERT((type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0) && n % 32 == 0);
    size_t bb = (size_t)s_types[type].block_bytes;
    float x[32];
    for (int64_t b = 0; b < n / 32; b++) {
        for (int i = 0; i < 32; i++)
            x[i] = (src[b * 32 + i] - (zero ? zero[b * 32 + i] : 0.0f)) / scale[b * 32 + i];
        quant_quantize_row(type, x, (uint8_t *)dst + (size_t)b * bb, 32);
    }
}

void quant_scaled_rows_f32(int type, const void *src, const float *scale, const float *zero, float *dst,
                           int64_t rows, int64_t n) {
    quant_dequantize_row(type, src, dst, rows * n);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) dst[r * n + i] = dst[r * n + i] * scale[i] + (zero ? zero[i] : 0.0f);
}
