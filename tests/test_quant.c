/* test_quant: type table, f16/bf16 conversion, quantise -> dequantise error
 * bounds per type, and dequantisation against gguf-py's golden results
 * (tests/golden/quant_blocks.bin, made by scripts/make_quant_fixture.py). */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant.h"
#include "tt.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- f16 ------------------------------------------------------------------ */

/* The value of a half by the textbook formula, in double. */
static double f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16(void) {
    TT_CASE("f16");
    TT_CHECK(quant_f16_to_f32(0x3c00) == 1.0f);
    TT_CHECK(quant_f16_to_f32(0xc000) == -2.0f);
    TT_CHECK(quant_f16_to_f32(0x7bff) == 65504.0f);
    TT_CHECK(quant_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    TT_CHECK(quant_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    TT_CHECK(quant_f16_to_f32(0x0400) == ldexpf(1.0f, -14)); /* smallest normal */
    TT_CHECK(isinf(quant_f16_to_f32(0x7c00)) && quant_f16_to_f32(0x7c00) > 0);
    TT_CHECK(isinf(quant_f16_to_f32(0xfc00)) && quant_f16_to_f32(0xfc00) < 0);
    TT_CHECK(isnan(quant_f16_to_f32(0x7e00)) && isnan(quant_f16_to_f32(0xfc01)));
    TT_CHECK(f32_bits(quant_f16_to_f32(0x8000)) == 0x80000000u); /* -0 */

    /* every half converts exactly, and converts back to itself */
    int bad_value = 0, bad_back = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        double r = f16_ref((uint16_t)h);
        if (isnan(r) ? !isnan(f) : (double)f != r || !signbit(f) != !signbit(r)) bad_value++;
        uint16_t back = quant_f32_to_f16(f);
        if (isnan(r) ? ((back & 0x7c00) != 0x7c00 || (back & 0x3ff) == 0) : back != h)
            bad_back++;
    }
    TT_CHECK(bad_value == 0);
    TT_CHECK(bad_back == 0);

    /* rounding: nearest, ties to even, overflow to inf, underflow to 0 */
    TT_CHECK(quant_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00);     /* tie -> even */
    TT_CHECK(quant_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02); /* tie -> even */
    TT_CHECK(quant_f32_to_f16(65519.0f) == 0x7bff);
    TT_CHECK(quant_f32_to_f16(65520.0f) == 0x7c00);
    TT_CHECK(quant_f32_to_f16(-1e10f) == 0xfc00);
    TT_CHECK(quant_f32_to_f16(INFINITY) == 0x7c00);
    TT_CHECK(quant_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);      /* tie -> 0 */
    TT_CHECK(quant_f32_to_f16(ldexpf(3.0f, -26)) == 0x0001);      /* 0.75 ulp */
    TT_CHECK(quant_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002);      /* 1.5 ulp: tie -> even */
    TT_CHECK(quant_f32_to_f16(-ldexpf(1.0f, -30)) == 0x8000);
    TT_CHECK(quant_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);   /* rounds up to normal */
    uint16_t qn = quant_f32_to_f16(NAN);
    TT_CHECK((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);

    /* random floats: the result is the nearest half, ties to even */
    uint64_t rs = 42;
    int bad_round = 0;
    for (int k = 0; k < 200000; k++) {
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        /* exponents around the half range: 2^-27 .. 2^17 */
        uint32_t u = (uint32_t)(rs >> 32);
        u = (u & 0x807fffffu) | (uint32_t)(100 + (rs & 31) + ((rs >> 5) & 15)) << 23;
        float x = bits_f32(u);
        uint16_t h = quant_f32_to_f16(x);
        double ax = fabs((double)x);
        if (ax >= 65520.0) {
            if ((h & 0x7fff) != 0x7c00) bad_round++;
            continue;
        }
        double e0 = fabs(fabs(f16_ref(h)) - ax);
        uint16_t mag = h & 0x7fff;
        double eup = fabs(f16_ref((uint16_t)(mag + 1)) - ax);
        double edn = mag ? fabs(f16_ref((uint16_t)(mag - 1)) - ax) : INFINITY;
        if ((h >> 15) != (u >> 31) && mag != 0) bad_round++;
        if (e0 > eup || e0 > edn) bad_round++;
        if ((e0 == eup || e0 == edn) && (mag & 1)) bad_round++;
    }
    TT_CHECK(bad_round == 0);
}

static void test_bf16(void) {
    TT_CASE("bf16");
    TT_CHECK(quant_bf16_to_f32(0x3f80) == 1.0f);
    TT_CHECK(quant_bf16_to_f32(0x0001) == bits_f32(0x00010000u)); /* subnormal */
    TT_CHECK(quant_f32_to_bf16(1.0f) == 0x3f80);
    TT_CHECK(quant_f32_to_bf16(bits_f32(0x3f808000u)) == 0x3f80); /* tie -> even */
    TT_CHECK(quant_f32_to_bf16(bits_f32(0x3f818000u)) == 0x3f82); /* tie -> even */
    TT_CHECK(quant_f32_to_bf16(bits_f32(0x3f808001u)) == 0x3f81);
    TT_CHECK(quant_f32_to_bf16(bits_f32(0x00008000u)) == 0x0000); /* subnormal tie */
    TT_CHECK(quant_f32_to_bf16(INFINITY) == 0x7f80);
    TT_CHECK(quant_f32_to_bf16(-INFINITY) == 0xff80);
    TT_CHECK(quant_f32_to_bf16(bits_f32(0x7f7fffffu)) == 0x7f80); /* FLT_MAX -> inf */
    uint16_t n = quant_f32_to_bf16(bits_f32(0x7f800001u));      /* nan keeps nan */
    TT_CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    TT_CHECK(isnan(quant_bf16_to_f32(n)));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_bf16_to_f32((uint16_t)h);
        if (!isnan(f) && quant_f32_to_bf16(f) != h) bad++;
    }
    TT_CHECK(bad == 0);
}

/* ---- type table ----------------------------------------------------------- */

static void test_types(void) {
    TT_CASE("types");
    TT_CHECK(strcmp(quant_type_name(GGML_TYPE_Q4_1), "Q4_1") == 0);
    TT_CHECK(strcmp(quant_type_name(GGML_TYPE_Q2_K), "Q2_K") == 0);
    TT_CHECK(quant_type_name(4) == NULL); /* retired id */
    TT_CHECK(quant_type_name(-1) == NULL && quant_type_name(GGML_TYPE_COUNT) == NULL);
    TT_CHECK(quant_type_supported(GGML_TYPE_Q6_K) && !quant_type_supported(GGML_TYPE_Q2_K));
    TT_CHECK(quant_block_elems(GGML_TYPE_Q8_0) == 32 && quant_block_bytes(GGML_TYPE_Q8_0) == 34);
    TT_CHECK(quant_block_elems(GGML_TYPE_Q4_K) == 256 && quant_block_bytes(GGML_TYPE_Q4_K) == 144);
    TT_CHECK(quant_block_bytes(GGML_TYPE_Q6_K) == 210 && quant_block_bytes(GGML_TYPE_Q5_1) == 24);
    TT_CHECK(quant_block_bytes(GGML_TYPE_Q2_K) == 0 && quant_block_elems(99) == 0);
    size_t n;
    TT_OK(quant_row_bytes(GGML_TYPE_Q4_1, 576, &n));
    TT_CHECK(n == 18 * 20);
    TT_OK(quant_row_bytes(GGML_TYPE_F16, 0, &n));
    TT_CHECK(n == 0);
    TT_FAILS(quant_row_bytes(GGML_TYPE_Q4_0, 33, &n), TIS_EFORMAT);
    TT_FAILS(quant_row_bytes(GGML_TYPE_F32, -4, &n), TIS_EFORMAT);
    TT_FAILS(quant_row_bytes(GGML_TYPE_Q2_K, 256, &n), TIS_EUNSUPPORTED);
    TT_FAILS(quant_row_bytes(77, 256, &n), TIS_EUNSUPPORTED);
    TT_FAILS(quant_row_bytes(GGML_TYPE_F32, INT64_C(1) << 62, &n), TIS_ERANGE);
    TT_FAILS(quant_row_bytes(GGML_TYPE_F32, INT64_MAX, &n), TIS_ERANGE);
}

/* ---- round trip ----------------------------------------------------------- */

enum { RT_N = 4096 };

/* Largest error allowed for block `blk` (elements x[0..be)), derived from
 * how each format spends its bits; the f16 scales add ~2^-11 relative. */
static double rt_bound(int type, const float *x, int64_t be) {
    double amax = 0, mn = x[0], mx = x[0];
    for (int64_t j = 0; j < be; j++) {
        amax = fmax(amax, fabs(x[j]));
        mn = fmin(mn, x[j]);
        mx = fmax(mx, x[j]);
    }
    double range = mx - mn, f16 = ldexp(1.0, -10);
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return amax * ldexp(1.0, -11) + ldexp(1.0, -25);
    case GGML_TYPE_BF16: return amax * ldexp(1.0, -8);
    case GGML_TYPE_Q8_0: return amax / 254 + amax * f16;
    /* symmetric 4/5-bit: the side opposite the extreme clamps one step short */
    case GGML_TYPE_Q4_0: return amax / 8 + amax * f16;
    case GGML_TYPE_Q5_0: return amax / 16 + amax * f16;
    case GGML_TYPE_Q4_1: return range / 30 + (range + fabs(mn)) * f16;
    case GGML_TYPE_Q5_1: return range / 62 + (range + fabs(mn)) * f16;
    /* K quants: half a step of the sub-block scale, which is rounded up to a
     * multiple of the super-block scale (range / 63 or amax / 127). */
    case GGML_TYPE_Q4_K: return (mx - fmin(mn, 0.0)) / 30 * 1.05 + amax * f16;
    case GGML_TYPE_Q6_K: return amax / 62 * 1.02 + amax * f16;
    default: return 0;
    }
}

static void roundtrip(int type, const float *x, const char *what) {
    size_t bytes;
    TT_OK(quant_row_bytes(type, RT_N, &bytes));
    uint8_t *q = malloc(bytes);
    float *y = malloc(RT_N * sizeof *y);
    quant_quantize_row(type, x, q, RT_N);
    quant_dequantize_row(type, q, y, RT_N);
    int64_t be = quant_block_elems(type) == 1 ? 32 : quant_block_elems(type);
    int bad = 0;
    double worst = 0;
    for (int64_t b = 0; b < RT_N / be; b++) {
        double bound = rt_bound(type, x + b * be, be);
        for (int64_t j = b * be; j < (b + 1) * be; j++) {
            double e = fabs((double)y[j] - x[j]);
            if (!(e <= bound)) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s %s: x[%lld] = %g -> %g, error %g > bound %g\n",
                            quant_type_name(type), what, (long long)j, x[j], y[j], e, bound);
            }
            if (bound > 0) worst = fmax(worst, e / bound);
        }
    }
    TT_CHECK(bad == 0);
    printf("  %-5s %-9s worst error / bound = %.3f\n", quant_type_name(type), what, worst);
    free(q);
    free(y);
}

static void test_roundtrip(void) {
    TT_CASE("roundtrip");
    static const int types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                                GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    float *x = malloc(RT_N * sizeof *x);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint64_t s = 1234 + t;
        /* uniform, with per-block changes of scale and offset */
        for (int i = 0; i < RT_N; i++) {
            float scale = 0.01f + (float)((i / 256) % 7);
            float off = (i / 512) % 3 == 1 ? 0.5f * scale : 0.0f;
            x[i] = scale * tt_randf(&s) + off;
        }
        roundtrip(types[t], x, "uniform");
        /* heavy tails: weights with a few large outliers */
        for (int i = 0; i < RT_N; i++) {
            float u = tt_randf(&s);
            x[i] = u * u * u * (i % 97 == 0 ? 20.0f : 1.0f);
        }
        roundtrip(types[t], x, "outliers");
        /* degenerate blocks: zeros, a constant, all negative, one spike */
        for (int i = 0; i < RT_N; i++) {
            int blk = (i / 256) % 4;
            x[i] = blk == 0 ? 0.0f : blk == 1 ? 0.3f : blk == 2 ? -1.0f - tt_randf(&s) * 0.5f
                                                                 : (i % 256 == 17 ? 5.0f : 0.0f);
        }
        roundtrip(types[t], x, "flat");
        /* zeros come back as exact zeros in every type */
        size_t bytes;
        quant_row_bytes(types[t], 256, &bytes);
        uint8_t *q = malloc(bytes);
        float y[256];
        memset(x, 0, 256 * sizeof *x);
        quant_quantize_row(types[t], x, q, 256);
        quant_dequantize_row(types[t], q, y, 256);
        int nz = 0;
        for (int i = 0; i < 256; i++) nz += y[i] != 0.0f;
        TT_CHECK(nz == 0);
        free(q);
    }
    free(x);
}

/* ---- golden: gguf-py ------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Layout: see scripts/make_quant_fixture.py ("TISQFX01", u32 count, then per
 * record u32 type, u32 n_elems, u32 n_bytes, raw bytes, f32 expected[]).
 *
 * Compared bit for bit. That holds even where the compiler fuses d*q + m
 * into an FMA (gcc's default -ffp-contract=fast with -march=native) while
 * numpy rounds the product and the sum separately: the products are exact in
 * f32 (an 11-bit f16 scale times a 6-bit code, or for Q4_K a 17-bit d*sc
 * times a 4-bit code), so rounding them changes nothing. */
static void test_golden(void) {
    TT_CASE("golden");
    size_t len = 0;
    uint8_t *buf = (uint8_t *)tt_read_file(tt_src("tests/golden/quant_blocks.bin"), &len);
    TT_CHECK(buf != NULL);
    if (!buf) return;
    TT_CHECK(len >= 12 && memcmp(buf, "TISQFX01", 8) == 0);
    if (len < 12 || memcmp(buf, "TISQFX01", 8) != 0) {
        free(buf);
        return;
    }
    uint32_t n_rec = rd32(buf + 8);
    size_t pos = 12;
    int seen = 0;
    for (uint32_t r = 0; r < n_rec; r++) {
        TT_CHECK(len - pos >= 12);
        if (len - pos < 12) break;
        int type = (int)rd32(buf + pos);
        uint32_t n = rd32(buf + pos + 4), nbytes = rd32(buf + pos + 8);
        pos += 12;
        size_t need;
        bool ok = len - pos >= nbytes && (len - pos - nbytes) / 4 >= n &&
                  quant_row_bytes(type, n, &need) == 0 && need == nbytes;
        TT_CHECK(ok);
        if (!ok) break;
        const uint8_t *raw = buf + pos;
        float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
        memcpy(want, buf + pos + nbytes, (size_t)n * 4);
        pos += nbytes + (size_t)n * 4;
        quant_dequantize_row(type, raw, got, n);
        int bad = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (f32_bits(got[i]) != f32_bits(want[i]) && bad++ < 3)
                fprintf(stderr, "  golden %s [%u]: got %.9g, gguf-py %.9g\n",
                        quant_type_name(type), i, got[i], want[i]);
        }
        TT_CHECK(bad == 0);
        printf("  golden %-5s %5u values, %d differ from gguf-py\n", quant_type_name(type), n,
               bad);
        seen++;
        free(want);
        free(got);
    }
    TT_CHECK(seen == 10); /* every supported type */
    free(buf);
}

int main(void) {
    test_f16();
    test_bf16();
    test_types();
    test_roundtrip();
    test_golden();
    return tt_done("test_quant");
}
