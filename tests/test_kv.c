/* test_kv: cache layout, ragged capacities and byte accounting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "quant.h"
#include "tis_error.h"
#include "tt.h"

/* f16 and bf16 caches: half the bytes per element, values stored rounded
 * to the type (put / rows_f32 round trip within its step), compaction and
 * the block keep the type and the bytes. */
static void s_half_types(void) {
    const int types[2] = {GGML_TYPE_F16, GGML_TYPE_BF16};
    for (int t = 0; t < 2; t++) {
        TT_CASE(types[t] == GGML_TYPE_F16 ? "f16 cache" : "bf16 cache");
        kv_cache *kv = NULL, *c = NULL, *back = NULL;
        TT_OK(kv_cache_new(&kv, 2, 2, 8, 6, types[t]));
        if (!kv) continue;
        TT_CHECK(kv->k_type == types[t] && kv->v_type == types[t] && kv->k_row == 2 * (size_t)kv->head_dim);
        TT_CHECK(kv_cache_bytes_reserved(kv) == 4 * 6 * (2 * 8 * 2 + 4));
        float k[8], v[8], got[8 * 6];
        for (int64_t s = 0; s < 4; s++) {
            for (int64_t i = 0; i < 5; i++) {
                for (int d = 0; d < 8; d++) {
                    k[d] = 0.37f * (float)(s + 1) * (float)(i - d) + 0.001f * (float)d;
                    v[d] = -1.7f * k[d] + 3.0f;
                }
                kv_cache_put(kv, s, i, k, v);
                kv_cache_pos(kv, s)[i] = (int32_t)i;
                kv_cache_rows_f32(kv, s, 0, i, 1, got);
                /* f16 keeps 11 significant bits, bf16 8: relative step 2^-11, 2^-8 */
                double rel = types[t] == GGML_TYPE_F16 ? 1.0 / 2048 : 1.0 / 256;
                for (int d = 0; d < 8; d++) TT_CHECK(fabs(got[d] - k[d]) <= rel * fabs(k[d]) + 1e-7);
                kv_cache_rows_f32(kv, s, 1, i, 1, got);
                for (int d = 0; d < 8; d++) TT_CHECK(fabs(got[d] - v[d]) <= rel * fabs(v[d]) + 1e-7);
            }
            kv->len[s] = 5;
        }
        kv->n_past = 5;
        uint8_t keep[24] = {0};
        for (int64_t s = 0; s < 4; s++) keep[kv->off[s] + 1] = keep[kv->off[s] + 3] = 1;
        TT_OK(kv_cache_compact(&c, kv, keep, 1));
        if (c) {
            TT_CHECK(c->k_type == types[t] && kv_cache_bytes_used(c) == 8 * (2 * 8 * 2 + 4));
            for (int64_t s = 0; s < 4; s++)
                TT_CHECK(memcmp((char *)kv_cache_k(c, s) + 16, (char *)kv_cache_k(kv, s) + 3 * 16, 16) == 0 &&
                         kv_cache_pos(c, s)[1] == 3);
            size_t nb = kv_cache_block_bytes(c);
            char *blk = malloc(nb);
            kv_cache_block_write(c, blk);
            int64_t lens[4] = {2, 2, 2, 2};
            TT_OK(kv_cache_block_read(&back, 2, 2, 8, kv_types_of(types[t]), lens, 5, false, blk, nb, 0));
            for (int64_t s = 0; back && s < 4; s++)
                TT_CHECK(memcmp(kv_cache_v(back, s), kv_cache_v(c, s), 2 * 16) == 0);
            kv_cache_destroy(&back);
            TT_FAILS(kv_cache_block_read(&back, 2, 2, 8, kv_types_of(GGML_TYPE_F32), lens, 5, false, blk, nb, 0), TIS_EFORMAT);
            free(blk);
        }
        kv_cache_destroy(&c);
        kv_cache_destroy(&kv);
    }
    TT_CASE("element type names");
    TT_CHECK(kv_dtype_parse("f16") == GGML_TYPE_F16 && kv_dtype_parse("bf16") == GGML_TYPE_BF16 &&
             kv_dtype_parse("f32") == GGML_TYPE_F32 && kv_dtype_parse("q8_0") == GGML_TYPE_Q8_0 &&
             kv_dtype_parse("q4_0") == GGML_TYPE_Q4_0 && kv_dtype_parse("q4_1") == -1 && kv_dtype_parse(NULL) == -1);
    TT_CHECK(!strcmp(kv_dtype_name(GGML_TYPE_F16), "f16") && !strcmp(kv_dtype_name(GGML_TYPE_Q8_0), "q8_0") &&
             !strcmp(kv_dtype_name(7), "?"));
}

/* Entry i of stream s of a cache of 64-element rows in blocks of 32 read
 * back within `steps` steps of max |x| / levels of its block (keys: of the
 * key less the stream's zero points divided by its channel scales, the
 * step scaled back per channel) of key k and value v. */
static bool s_row_close(const kv_cache *kv, int64_t s, int64_t i, const float *k, const float *v, double levels,
                        double steps) {
    const float *ks = kv_cache_kscale(kv, s), *kz = kv_cache_kzero(kv, s);
    float got[64];
    bool close = true;
    for (int which = 0; which < 2; which++) {
        const float *x = which ? v : k;
        kv_cache_rows_f32(kv, s, which, i, 1, got);
        for (int b = 0; b < 2; b++) {
            float amax = 0;
            for (int d = 32 * b; d < 32 * b + 32; d++)
                amax = fmaxf(amax, fabsf(which ? x[d] : (x[d] - kz[d]) / ks[d]));
            for (int d = 32 * b; d < 32 * b + 32; d++) {
                double tol = amax / levels * steps * (which ? 1 : ks[d]) + 1e-6 * (1 + fabsf(x[d]));
                close &= fabs(got[d] - x[d]) <= tol;
            }
        }
    }
    return close;
}

/* A q8_0 cache: rows of 64 elements in two blocks (2 x 34 bytes, 0.53x
 * f16's), each element within half a step (the block's max |x| / 127,
 * with the scale rounded to f16) of what was put: a value's block is of
 * the value, a key's of the key divided by its stream's channel scales
 * (set by the stream's first put), and the step is scaled back per
 * channel; compaction and the block keep the bytes and the scales; a
 * head_dim that is not a multiple of 32 refused. */
static void s_q8_0(void) {
    TT_CASE("q8_0 cache");
    kv_cache *kv = NULL, *c = NULL, *back = NULL;
    TT_FAILS(kv_cache_new(&kv, 2, 2, 48, 4, GGML_TYPE_Q8_0), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "multiple of 32"));
    TT_CHECK(kv_row_bytes(GGML_TYPE_Q8_0, 64) == 68 && kv_row_bytes(GGML_TYPE_Q8_0, 48) == 0 &&
             kv_row_bytes(GGML_TYPE_F16, 48) == 96 && kv_row_bytes(GGML_TYPE_Q4_0, 64) == 36 && kv_row_bytes(GGML_TYPE_Q4_1, 64) == 0);
    TT_OK(kv_cache_new(&kv, 2, 2, 64, 6, GGML_TYPE_Q8_0));
    if (!kv) return;
    TT_CHECK(kv->k_row == 68 && kv->v_row == 68 && kv_cache_entry_bytes(kv) == 2 * 68 + 4);
    float k[64], v[64];
    bool close = true;
    for (int64_t s = 0; s < 4; s++) {
        for (int64_t i = 0; i < 5; i++) {
            for (int d = 0; d < 64; d++) {
                k[d] = 0.37f * (float)(s + 1) * (float)(i - d % 9) + 0.013f * (float)d;
                v[d] = -1.7f * k[d] + 3.0f * (float)(d >= 32); /* two blocks of different ranges */
            }
            kv_cache_put(kv, s, i, k, v);
            kv_cache_pos(kv, s)[i] = (int32_t)i;
            TT_CHECK(kv_cache_kscale(kv, s) && kv_cache_kscale(kv, s)[0] > 0.0f);
            /* half a step of amax / 127, the f16 scale's relative error 2^-11 on up to 127 steps */
            close &= s_row_close(kv, s, i, k, v, 127.0, 0.5 + 127.0 / 2048);
        }
        kv->len[s] = 5;
    }
    TT_CHECK(close);
    kv->n_past = 5;
    uint8_t keep[24] = {0};
    for (int64_t s = 0; s < 4; s++) keep[kv->off[s] + 1] = keep[kv->off[s] + 3] = 1;
    TT_OK(kv_cache_compact(&c, kv, keep, 1));
    if (c) {
        /* 8 entries and the 4 streams' 64 key scales and 64 zero points */
        TT_CHECK(KV_KEY_XFORM(64) == 128 && kv_cache_scale_bytes(c) == 4 * 128 * 4);
        TT_CHECK(c->k_type == GGML_TYPE_Q8_0 && kv_cache_bytes_used(c) == 8 * (2 * 68 + 4) + 4 * 128 * 4);
        for (int64_t s = 0; s < 4; s++)
            TT_CHECK(memcmp((char *)kv_cache_k(c, s) + 68, (char *)kv_cache_k(kv, s) + 3 * 68, 68) == 0 &&
                     kv_cache_pos(c, s)[1] == 3 &&
                     memcmp(kv_cache_kscale(c, s), kv_cache_kscale(kv, s), 128 * sizeof(float)) == 0);
        size_t nb = kv_cache_block_bytes(c);
        char *blk = malloc(nb);
        kv_cache_block_write(c, blk);
        int64_t lens[4] = {2, 2, 2, 2};
        TT_OK(kv_cache_block_read(&back, 2, 2, 64, kv_types_of(GGML_TYPE_Q8_0), lens, 5, false, blk, nb, 0));
        float kb[2 * 64], kc[2 * 64];
        for (int64_t s = 0; back && s < 4; s++) {
            TT_CHECK(memcmp(kv_cache_v(back, s), kv_cache_v(c, s), 2 * 68) == 0);
            kv_cache_rows_f32(back, s, 0, 0, 2, kb);
            kv_cache_rows_f32(c, s, 0, 0, 2, kc);
            TT_CHECK(memcmp(kb, kc, sizeof kb) == 0); /* the keys, scales and all */
        }
        kv_cache_destroy(&back);
        /* key scales that are not finite and positive, zero points that
         * are not finite: refused (a negative zero point is fine) */
        float bad[5] = {-1.0f, 0.0f, NAN, INFINITY, NAN};
        size_t at[5] = {5, 5, 5, 64 + 7, 64 + 7}; /* stream 0's sixth scale, eighth zero point */
        for (int b = 0; b < 5; b++) {
            char *blk2 = malloc(nb);
            memcpy(blk2, blk, nb);
            memcpy(blk2 + at[b] * sizeof(float), &bad[b], sizeof(float));
            TT_FAILS(kv_cache_block_read(&back, 2, 2, 64, kv_types_of(GGML_TYPE_Q8_0), lens, 5, false, blk2, nb, 0),
                     TIS_EFORMAT);
            TT_CHECK(!back && strstr(tis_last_error(), "key scales"));
            free(blk2);
        }
        float neg = -3.0f;
        memcpy(blk + (64 + 7) * sizeof(float), &neg, sizeof neg);
        TT_OK(kv_cache_block_read(&back, 2, 2, 64, kv_types_of(GGML_TYPE_Q8_0), lens, 5, false, blk, nb, 0));
        TT_CHECK(back && kv_cache_kzero(back, 0)[7] == -3.0f);
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 64, kv_types_of(GGML_TYPE_F16), lens, 5, false, blk, nb, 0), TIS_EFORMAT);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 48, kv_types_of(GGML_TYPE_Q8_0), lens, 5, false, blk, nb, 0), TIS_EFORMAT);
        free(blk);
    }
    kv_cache_destroy(&c);
    kv_cache_destroy(&kv);
}

/* Why keys have channel scales: keys whose channel 5 is 200x the others,
 * as Qwen2's are (here a RoPE pair 4, 5: its scale the pair's length). With plain
 * Q8_0 blocks the small channels of the outlier's block fall under one
 * step; with the scales each keeps its own precision. The scales are set
 * by the first write into an empty stream (forward's append, or put) and
 * cleared with the cache. */
static void s_key_scales(void) {
    TT_CASE("q8_0 key channel scales");
    kv_cache *kv = NULL;
    TT_OK(kv_cache_new(&kv, 1, 1, 64, 16, GGML_TYPE_Q8_0));
    if (!kv) return;
    float rows[16][64], got[64], plain[64];
    uint8_t q[68];
    for (int t = 0; t < 16; t++)
        for (int d = 0; d < 64; d++)
            rows[t][d] = d == 5 ? 10.0f + (float)t : 0.05f * sinf(0.7f * (float)(t * 64 + d));
    /* from the first 8 rows with interleaved pairs, as an append of 8 would:
     * channel 5 is 10..17, its zero point the mean 13.5 and its scale the
     * largest distance from it, 3.5 (with channel 4's, under 0.1, as a pair) */
    kv_cache_key_scales_set(kv, 0, rows[0], 8, 64, 64, true);
    const float *ks = kv_cache_kscale(kv, 0), *kz = kv_cache_kzero(kv, 0);
    TT_CHECK(kz[5] == 13.5f && fabsf(kz[0]) < 0.05f && kz == ks + 64);
    TT_CHECK(ks[4] == ks[5] && ks[5] >= 3.5f && ks[5] < 3.502f && ks[0] < 0.142f && ks[0] == ks[1] &&
             ks[6] < 0.142f && ks[37] < 0.142f && ks[37] == ks[36]);
    kv_cache_key_scales_set(kv, 0, rows[0], 8, 64, 64, false); /* halves: (5, 37) */
    TT_CHECK(ks[37] == ks[5] && ks[5] >= 3.5f && ks[4] < 0.142f);
    kv_cache_key_scales_set(kv, 0, rows[0], 8, 64, 0, false); /* no pairs */
    TT_CHECK(ks[5] == 3.5f && ks[4] <= 0.1f && ks[37] <= 0.1f);
    kv_cache_key_scales_set(kv, 0, rows[0], 8, 64, 64, true);
    double err_scaled = 0, err_plain = 0;
    for (int t = 0; t < 16; t++) { /* rows 8..15 exceed the scales: still stored, within their block's step */
        kv_cache_put(kv, 0, t, rows[t], rows[t]);
        kv_cache_rows_f32(kv, 0, 0, t, 1, got);
        quant_quantize_row(GGML_TYPE_Q8_0, rows[t], q, 64);
        quant_dequantize_row(GGML_TYPE_Q8_0, q, plain, 64);
        for (int d = 0; d < 32; d++) {
            if (d == 4 || d == 5) continue;
            err_scaled = fmax(err_scaled, fabs(got[d] - rows[t][d]));
            err_plain = fmax(err_plain, fabs(plain[d] - rows[t][d]));
        }
        TT_CHECK(fabsf(got[5] - rows[t][5]) < 25.0f / 127);
        /* rows 0..7: channel 5 within half a step of its own range (3.5 / 127 a
         * step, where without its zero point a step would be 17 / 127) */
        if (t < 8) TT_CHECK(fabsf(got[5] - rows[t][5]) <= 0.51f * 3.502f / 127);
    }
    fprintf(stderr, "  small channels' worst error: plain q8_0 %.2e, with channel scales %.2e\n", err_plain, err_scaled);
    TT_CHECK(err_plain > 0.03 && err_scaled < err_plain / 20);
    kv->len[0] = 16;
    kv_cache_clear(kv);
    TT_CHECK(kv_cache_kscale(kv, 0)[5] == 0.0f);
    float zero[64] = {0};
    kv_cache_put(kv, 0, 0, zero, zero); /* a stream of zeros: scales of 1 */
    TT_CHECK(kv_cache_kscale(kv, 0)[5] == 1.0f);
    /* one row (a put, or an append of fewer than KV_ZERO_MIN_ROWS): no zero
     * points, the row's |k| the scales */
    kv_cache_clear(kv);
    kv_cache_put(kv, 0, 0, rows[3], rows[3]);
    TT_CHECK(kv_cache_kscale(kv, 0)[5] == 13.0f && kv_cache_kzero(kv, 0)[5] == 0.0f);
    kv_cache_clear(kv);
    kv_cache_key_scales_set(kv, 0, rows[0], KV_ZERO_MIN_ROWS - 1, 64, 0, false);
    TT_CHECK(kv_cache_kscale(kv, 0)[5] == 16.0f && kv_cache_kzero(kv, 0)[5] == 0.0f);
    kv_cache_destroy(&kv);
    TT_OK(kv_cache_new(&kv, 1, 1, 64, 4, GGML_TYPE_F16));
    TT_CHECK(kv && !kv->kscale && !kv_cache_kscale(kv, 0));
    kv_cache_destroy(&kv);
}

/* A q4_0 cache: rows of 64 elements in two blocks of 18 bytes; keys with
 * channel scales as q8_0's, each element within a step (max |x| / 8: the
 * block's far side is clamped one step short) plus the f16 scale's
 * rounding of what was put; compaction and the block keep keys and scales. */
static void s_q4_0(void) {
    TT_CASE("q4_0 cache");
    kv_cache *kv = NULL, *c = NULL, *back = NULL;
    TT_OK(kv_cache_new(&kv, 1, 2, 64, 4, GGML_TYPE_Q4_0));
    if (!kv) return;
    TT_CHECK(kv->k_row == 36 && kv->v_row == 36 && kv->kscale && kv_cache_entry_bytes(kv) == 2 * 36 + 4);
    uint64_t rng = 3;
    float k[64], v[64];
    bool close = true;
    for (int64_t s = 0; s < 2; s++) {
        for (int64_t i = 0; i < 4; i++) {
            for (int d = 0; d < 64; d++) {
                k[d] = (tt_randf(&rng) - 0.5f) * (d == 9 ? 40.0f : 1.0f);
                v[d] = tt_randf(&rng) - 0.5f;
            }
            kv_cache_put(kv, s, i, k, v);
            kv_cache_pos(kv, s)[i] = (int32_t)i;
            close &= s_row_close(kv, s, i, k, v, 8.0, 1.0 + 8.0 / 2048);
        }
        kv->len[s] = 4;
    }
    TT_CHECK(close);
    kv->n_past = 4;
    uint8_t keep[8] = {0, 1, 0, 1, 1, 1, 0, 0};
    TT_OK(kv_cache_compact(&c, kv, keep, 0));
    if (c) {
        size_t nb = kv_cache_block_bytes(c);
        TT_CHECK(nb == 4 * (2 * 36 + 4) + 2 * 128 * 4);
        char *blk = malloc(nb);
        kv_cache_block_write(c, blk);
        int64_t lens[2] = {2, 2};
        TT_OK(kv_cache_block_read(&back, 1, 2, 64, kv_types_of(GGML_TYPE_Q4_0), lens, 4, false, blk, nb, 0));
        float a[2 * 64], b[2 * 64], o[2 * 64];
        for (int64_t s = 0; back && s < 2; s++) {
            kv_cache_rows_f32(back, s, 0, 0, 2, a);
            kv_cache_rows_f32(c, s, 0, 0, 2, b);
            kv_cache_rows_f32(kv, s, 0, s ? 0 : 1, 1, o);      /* stream 0 kept 1 and 3, stream 1 0 and 1 */
            kv_cache_rows_f32(kv, s, 0, s ? 1 : 3, 1, o + 64);
            TT_CHECK(!memcmp(a, b, sizeof a) && !memcmp(a, o, sizeof a));
        }
        kv_cache_destroy(&back);
        free(blk);
    }
    kv_cache_destroy(&c);
    kv_cache_destroy(&kv);
}

/* Keys f16, values q8_0: rows of 128 and 68 bytes, each read back in its
 * own type; compaction and the block keep both; the types' names. */
static void s_mixed(void) {
    TT_CASE("keys f16, values q8_0");
    kv_types t = {0, 0};
    char nm[32];
    TT_CHECK(kv_types_parse("f16,q8_0", &t) == 0 && t.k == GGML_TYPE_F16 && t.v == GGML_TYPE_Q8_0);
    TT_CHECK(!strcmp(kv_types_name(t, nm, sizeof nm), "f16,q8_0") &&
             !strcmp(kv_types_name(kv_types_of(GGML_TYPE_BF16), nm, sizeof nm), "bf16"));
    TT_CHECK(kv_types_parse("q8_0", &t) == 0 && t.k == GGML_TYPE_Q8_0 && t.v == GGML_TYPE_Q8_0);
    TT_CHECK(kv_types_parse("f16,", &t) == -1 && kv_types_parse(",f16", &t) == -1 &&
             kv_types_parse("f16,q8_0,f32", &t) == -1 && kv_types_parse("f16,q4_1", &t) == -1);
    kv_cache *kv = NULL, *c = NULL, *back = NULL;
    int64_t caps[4] = {3, 3, 3, 3};
    TT_FAILS(kv_cache_new_ragged_on(&kv, 2, 2, 16, caps, (kv_types){GGML_TYPE_F16, GGML_TYPE_Q8_0}, NULL),
             TIS_EINVAL);
    TT_OK(kv_cache_new_ragged_on(&kv, 2, 2, 64, caps, (kv_types){GGML_TYPE_F16, GGML_TYPE_Q8_0}, NULL));
    if (!kv) return;
    TT_CHECK(kv->k_row == 128 && kv->v_row == 68 && kv_cache_entry_bytes(kv) == 128 + 68 + 4);
    float k[64], v[64], gk[64], gv[64];
    bool ok = true;
    for (int64_t s = 0; s < 4; s++) {
        for (int64_t i = 0; i < 3; i++) {
            for (int d = 0; d < 64; d++) k[d] = 0.25f * (float)(d - 7 * i + s), v[d] = -k[d];
            kv_cache_put(kv, s, i, k, v);
            kv_cache_pos(kv, s)[i] = (int32_t)i;
            kv_cache_rows_f32(kv, s, 0, i, 1, gk);
            kv_cache_rows_f32(kv, s, 1, i, 1, gv);
            for (int d = 0; d < 64; d++) /* f16 holds these exactly; q8_0 within a step of max |v| / 127 */
                ok &= gk[d] == k[d] && fabsf(gv[d] - v[d]) <= 16.0f / 127;
        }
        kv->len[s] = 3;
    }
    TT_CHECK(ok);
    kv->n_past = 3;
    uint8_t keep[12] = {0};
    for (int64_t s = 0; s < 4; s++) keep[kv->off[s] + 2] = 1;
    TT_OK(kv_cache_compact(&c, kv, keep, 0));
    if (c) {
        TT_CHECK(c->k_type == GGML_TYPE_F16 && c->v_type == GGML_TYPE_Q8_0 && kv_cache_bytes_used(c) == 4 * 200);
        for (int64_t s = 0; s < 4; s++)
            TT_CHECK(!memcmp(kv_cache_k(c, s), (char *)kv_cache_k(kv, s) + 2 * 128, 128) &&
                     !memcmp(kv_cache_v(c, s), (char *)kv_cache_v(kv, s) + 2 * 68, 68));
        size_t nb = kv_cache_block_bytes(c);
        char *blk = malloc(nb);
        kv_cache_block_write(c, blk);
        int64_t lens[4] = {1, 1, 1, 1};
        TT_OK(kv_cache_block_read(&back, 2, 2, 64, (kv_types){GGML_TYPE_F16, GGML_TYPE_Q8_0}, lens, 3, false, blk, nb,
                                  0));
        for (int64_t s = 0; back && s < 4; s++)
            TT_CHECK(!memcmp(kv_cache_v(back, s), kv_cache_v(c, s), 68) && !memcmp(kv_cache_k(back, s), kv_cache_k(c, s), 128));
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 64, kv_types_of(GGML_TYPE_F16), lens, 3, false, blk, nb, 0),
                 TIS_EFORMAT);
        free(blk);
    }
    kv_cache_destroy(&c);
    kv_cache_destroy(&kv);
}

int main(void) {
    TT_CASE("uniform cache");
    kv_cache *kv = NULL;
    TT_OK(kv_cache_new(&kv, 3, 2, 8, 10, GGML_TYPE_F32));
    TT_CHECK(kv && kv->n_stream == 6);
    TT_CHECK(kv_cache_room(kv) == 10);
    TT_CHECK(kv_cache_entries(kv) == 0 && kv_cache_bytes_used(kv) == 0);
    TT_CHECK(kv_cache_bytes_reserved(kv) == 6 * 10 * (2 * 8 * 4 + 4));
    /* streams are disjoint and in order */
    for (int64_t s = 1; s < kv->n_stream; s++)
        TT_CHECK((float *)kv_cache_k(kv, s) == (float *)kv_cache_k(kv, s - 1) + 10 * 8);
    TT_CHECK(kv_stream(kv, 2, 1) == 5);
    kv->len[3] = 4;
    TT_CHECK(kv_cache_room(kv) == 6);
    TT_CHECK(kv_cache_bytes_used(kv) == 4 * (2 * 8 * 4 + 4));
    kv_cache_clear(kv);
    TT_CHECK(kv_cache_entries(kv) == 0 && kv->n_past == 0);
    kv_cache_destroy(&kv);
    TT_CHECK(kv == NULL);
    kv_cache_destroy(&kv); /* NULL is fine */

    /* Ragged: capacities follow a budget per stream, memory with them. */
    TT_CASE("ragged cache");
    int64_t caps[4] = {5, 0, 2, 9};
    TT_OK(kv_cache_new_ragged(&kv, 2, 2, 4, caps, GGML_TYPE_F32));
    TT_CHECK(kv_cache_room(kv) == 0);
    TT_CHECK(kv_cache_bytes_reserved(kv) == 16 * (2 * 4 * 4 + 4));
    TT_CHECK((float *)kv_cache_k(kv, 3) == (float *)kv->k + 7 * 4);
    TT_CHECK(kv_cache_pos(kv, 2) == kv->pos + 5);
    kv_cache_destroy(&kv);

    TT_CASE("bad sizes");
    int64_t bad[2] = {3, -1};
    TT_FAILS(kv_cache_new_ragged(&kv, 1, 2, 4, bad, GGML_TYPE_F32), TIS_EINVAL);
    TT_FAILS(kv_cache_new(&kv, 0, 2, 4, 8, GGML_TYPE_F32), TIS_EINVAL);
    TT_FAILS(kv_cache_new(&kv, 1, 2, 4, 8, GGML_TYPE_Q8_0), TIS_EINVAL); /* not an element type */
    TT_CHECK(kv == NULL);
    /* block export / import: same entries; lying layouts refused */
    TT_CASE("block write and read");
    int64_t caps2[4] = {6, 6, 6, 6};
    TT_OK(kv_cache_new_ragged(&kv, 2, 2, 4, caps2, GGML_TYPE_F32));
    if (kv) {
        int64_t lens[4] = {3, 0, 5, 1};
        for (int64_t s2 = 0; s2 < 4; s2++) {
            kv->len[s2] = lens[s2];
            for (int64_t i = 0; i < lens[s2]; i++) {
                kv_cache_pos(kv, s2)[i] = (int32_t)(i * 2 + s2);
                for (int64_t d = 0; d < 4; d++) {
                    ((float *)kv_cache_k(kv, s2))[i * 4 + d] = (float)(s2 * 100 + i * 10 + d);
                    ((float *)kv_cache_v(kv, s2))[i * 4 + d] = -(float)(s2 * 100 + i * 10 + d);
                }
            }
        }
        kv->n_past = 20;
        size_t nb = kv_cache_block_bytes(kv);
        TT_CHECK(nb == 9 * (2 * 4 * 4 + 4));
        char *blk = malloc(nb);
        kv_cache_block_write(kv, blk);
        kv_cache *back = NULL;
        TT_OK(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, false, blk, nb, 2));
        if (back) {
            TT_CHECK(back->n_past == 20 && kv_cache_room(back) == 2);
            for (int64_t s2 = 0; s2 < 4; s2++) {
                TT_CHECK(back->len[s2] == lens[s2]);
                TT_CHECK(memcmp(kv_cache_k(back, s2), kv_cache_k(kv, s2), (size_t)lens[s2] * 16) == 0);
                TT_CHECK(memcmp(kv_cache_v(back, s2), kv_cache_v(kv, s2), (size_t)lens[s2] * 16) == 0);
                TT_CHECK(memcmp(kv_cache_pos(back, s2), kv_cache_pos(kv, s2), (size_t)lens[s2] * 4) == 0);
            }
        }
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, false, blk, nb - 1, 0), TIS_EFORMAT);
        int64_t lie[4] = {3, 0, 5, 2};
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lie, 20, false, blk, nb, 0), TIS_EFORMAT);
        int64_t neg[4] = {3, -1, 5, 2};
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), neg, 20, false, blk, nb, 0), TIS_EFORMAT);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 5, false, blk, nb, 0), TIS_EFORMAT); /* positions >= n_past */
        TT_FAILS(kv_cache_block_read(&back, 0, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, false, blk, nb, 0), TIS_EFORMAT);
        TT_CHECK(back == NULL);
        /* with an attention bias: it travels in the block; a flag that
         * disagrees with the block's size is refused */
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, true, blk, nb, 0), TIS_EFORMAT);
        TT_OK(kv_cache_enable_bias(kv));
        for (int64_t s2 = 0; s2 < 4; s2++)
            for (int64_t i = 0; i < lens[s2]; i++) kv->bias[kv->off[s2] + i] = 0.25f * (float)(s2 + i);
        size_t nbb = kv_cache_block_bytes(kv);
        TT_CHECK(nbb == 9 * (2 * 4 * 4 + 4 + 4));
        char *blkb = malloc(nbb);
        kv_cache_block_write(kv, blkb);
        TT_OK(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, true, blkb, nbb, 1));
        for (int64_t s2 = 0; back && s2 < 4; s2++) {
            TT_CHECK(memcmp(back->bias + back->off[s2], kv->bias + kv->off[s2], (size_t)lens[s2] * 4) == 0);
            TT_CHECK(memcmp(kv_cache_pos(back, s2), kv_cache_pos(kv, s2), (size_t)lens[s2] * 4) == 0);
        }
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F32), lens, 20, false, blkb, nbb, 0), TIS_EFORMAT);
        /* a block of an element type no cache holds is refused, clearly */
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_Q4_1), lens, 20, false, blk, nb, 0),
                 TIS_EUNSUPPORTED);
        /* the same bytes read as f16 do not fit the layout */
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, kv_types_of(GGML_TYPE_F16), lens, 20, false, blk, nb, 0), TIS_EFORMAT);
        free(blkb);
        free(blk);
    }
    kv_cache_destroy(&kv);
    s_half_types();
    s_q8_0();
    s_key_scales();
    s_q4_0();
    s_mixed();
    return tt_done("test_kv");
}
