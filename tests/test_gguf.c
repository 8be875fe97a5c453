/* test_gguf: GGUF writer -> reader round trip (every value type, arrays,
 * tensors of every supported type), then malformed files: every prefix of
 * a valid file, random corruption, and one crafted file per check the
 * reader makes. Runs under ASan/UBSan in CI, which turns any out-of-bounds
 * read into a failure. Last, the real model at $TIS_MODEL. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "tt.h"

/* ---- a byte builder for crafted files -------------------------------------- */

typedef struct bb {
    uint8_t p[8192];
    size_t n;
} bb;

static void bb_le(bb *b, uint64_t v, int n) {
    TIS_ASSERT(b->n + (size_t)n <= sizeof b->p);
    for (int k = 0; k < n; k++) b->p[b->n++] = (uint8_t)(v >> 8 * k);
}
static void bb_u32(bb *b, uint32_t v) { bb_le(b, v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_le(b, v, 8); }
static void bb_bytes(bb *b, const void *p, size_t n) {
    TIS_ASSERT(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t align) {
    while (b->n % align) b->p[b->n++] = 0;
}
static void bb_header(bb *b, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    bb_bytes(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_U32);
    bb_u32(b, v);
}
static void bb_tensor_info(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                           uint32_t type, uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

/* Parses exactly n bytes from a heap copy, so ASan sees any read past them. */
static int open_bytes(const void *p, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, p, n);
    gguf_file *f = NULL;
    int rc = gguf_open_memory(&f, copy, n);
    if (rc == 0) {
        /* touch every tensor byte: the bounds the reader promised */
        for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            float *y = malloc((size_t)t->ne[0] * sizeof *y);
            size_t row;
            TIS_ASSERT(quant_row_bytes(t->type, t->ne[0], &row) == 0);
            for (size_t r = 0; r * row < t->nbytes; r++)
                quant_dequantize_row(t->type, (const uint8_t *)t->data + r * row, y, t->ne[0]);
            free(y);
        }
        gguf_destroy(&f);
    }
    TIS_ASSERT(f == NULL);
    free(copy);
    return rc;
}
static int open_bb(const bb *b) { return open_bytes(b->p, b->n); }

static int has(const char *needle) { return strstr(tis_last_error(), needle) != NULL; }

/* ---- writer -> reader ------------------------------------------------------ */

static const int k_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                              GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                              GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
enum { N_TYPES = sizeof k_types / sizeof k_types[0] };

/* Tensor t<i> has shape [256, 3] (plus a 3-d one) of deterministic values. */
static void fill(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = tt_randf(&seed) * 2.0f;
}

static const char *k_strs[] = {"hello", "", "wörld", "<|im_start|>", "a b c"};

static int write_sample(const char *path, uint32_t alignment) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return TIS_ENOMEM;
    int rc = 0;
    const uint8_t u8s[] = {0, 1, 255};
    const int8_t i8s[] = {-128, 0, 127};
    const uint16_t u16s[] = {0, 65535};
    const int16_t i16s[] = {-32768, 32767};
    const uint32_t u32s[] = {7, 4000000000u};
    const int32_t i32s[] = {-5, 2147483647};
    const float f32s[] = {1.5f, -0.25f, 1e30f};
    const uint8_t bools[] = {1, 0, 1};
    const uint64_t u64s[] = {UINT64_MAX, 3};
    const int64_t i64s[] = {INT64_MIN, -1};
    const double f64s[] = {3.141592653589793, -1e300};
    if (alignment) rc = gguf_writer_add_u32(w, "general.alignment", alignment);
    if (!rc) rc = gguf_writer_add_str(w, "general.architecture", "llama");
    if (!rc) rc = gguf_writer_add_u32(w, "t.u32", 4000000000u);
    if (!rc) rc = gguf_writer_add_i32(w, "t.i32", -123);
    if (!rc) rc = gguf_writer_add_u64(w, "t.u64", UINT64_C(1) << 40);
    if (!rc) rc = gguf_writer_add_f32(w, "t.f32", 1e-5f);
    if (!rc) rc = gguf_writer_add_bool(w, "t.bool", 1);
    if (!rc) rc = gguf_writer_add_str(w, "t.empty", "");
    if (!rc) rc = gguf_writer_add_arr(w, "a.u8", GGUF_U8, u8s, 3);
    if (!rc) rc = gguf_writer_add_arr(w, "a.i8", GGUF_I8, i8s, 3);
    if (!rc) rc = gguf_writer_add_arr(w, "a.u16", GGUF_U16, u16s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.i16", GGUF_I16, i16s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.u32", GGUF_U32, u32s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.i32", GGUF_I32, i32s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.f32", GGUF_F32, f32s, 3);
    if (!rc) rc = gguf_writer_add_arr(w, "a.bool", GGUF_BOOL, bools, 3);
    if (!rc) rc = gguf_writer_add_arr(w, "a.u64", GGUF_U64, u64s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.i64", GGUF_I64, i64s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.f64", GGUF_F64, f64s, 2);
    if (!rc) rc = gguf_writer_add_arr(w, "a.empty", GGUF_U32, NULL, 0);
    if (!rc) rc = gguf_writer_add_arr_str(w, "a.str", k_strs, 5);
    if (!rc) rc = gguf_writer_add_arr_str(w, "a.str0", NULL, 0);
    float x[256 * 3];
    for (int i = 0; !rc && i < N_TYPES; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d.%s", i, quant_type_name(k_types[i]));
        fill(x, 256 * 3, 100 + (uint64_t)i);
        rc = gguf_writer_add_tensor(w, name, k_types[i], 2, (const int64_t[]){256, 3}, x);
    }
    fill(x, 64 * 3 * 2, 7);
    if (!rc) rc = gguf_writer_add_tensor(w, "cube", GGML_TYPE_Q8_0, 3,
                                         (const int64_t[]){64, 3, 2}, x);
    if (!rc) rc = gguf_writer_write(w, path);
    gguf_writer_destroy(&w);
    TT_CHECK(w == NULL);
    return rc;
}

static void check_sample(const gguf_file *f, size_t alignment) {
    TT_CHECK(gguf_version(f) == 3);
    TT_CHECK(gguf_alignment(f) == alignment);
    TT_CHECK(gguf_kv_count(f) == 21 + (alignment != 32));
    TT_CHECK(gguf_tensor_count(f) == N_TYPES + 1);
    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f32 = 0;
    bool b = false;
    gguf_str s = {0};
    TT_OK(gguf_get_u32(f, "t.u32", &u32));
    TT_CHECK(u32 == 4000000000u);
    TT_OK(gguf_get_i64(f, "t.i32", &i64));
    TT_CHECK(i64 == -123);
    TT_OK(gguf_get_i64(f, "t.u64", &i64));
    TT_CHECK(i64 == INT64_C(1) << 40);
    TT_OK(gguf_get_f32(f, "t.f32", &f32));
    TT_CHECK(f32 == 1e-5f);
    TT_OK(gguf_get_bool(f, "t.bool", &b));
    TT_CHECK(b);
    TT_OK(gguf_get_str(f, "general.architecture", &s));
    TT_CHECK(gguf_str_eq(s, "llama") && !gguf_str_eq(s, "llam") && !gguf_str_eq(s, "llamas"));
    TT_OK(gguf_get_str(f, "t.empty", &s));
    TT_CHECK(s.len == 0 && gguf_str_eq(s, ""));
    /* conversions that do not fit, wrong types, absent keys */
    TT_FAILS(gguf_get_u32(f, "t.u64", &u32), TIS_EFORMAT);
    TT_FAILS(gguf_get_u32(f, "t.i32", &u32), TIS_EFORMAT);
    TT_FAILS(gguf_get_u32(f, "t.f32", &u32), TIS_EFORMAT);
    TT_FAILS(gguf_get_f32(f, "t.u32", &f32), TIS_EFORMAT);
    TT_FAILS(gguf_get_bool(f, "t.u32", &b), TIS_EFORMAT);
    TT_FAILS(gguf_get_str(f, "a.str", &s), TIS_EFORMAT);
    TT_FAILS(gguf_get_u32(f, "no.such.key", &u32), TIS_ENOTFOUND);
    TT_CHECK(has("no.such.key"));
    TT_CHECK(gguf_kv_find(f, "no.such.key") == NULL && gguf_kv_find(f, "t.u3") == NULL);

    const gguf_value *v = NULL;
    TT_FAILS(gguf_get_arr(f, "a.u8", GGUF_I8, &v), TIS_EFORMAT);
    TT_FAILS(gguf_get_arr(f, "t.u32", GGUF_U32, &v), TIS_EFORMAT);
    static const struct { const char *key; gguf_vtype t; uint64_t n; size_t es; } arrs[] = {
        {"a.u8", GGUF_U8, 3, 1},   {"a.i8", GGUF_I8, 3, 1},   {"a.u16", GGUF_U16, 2, 2},
        {"a.i16", GGUF_I16, 2, 2}, {"a.u32", GGUF_U32, 2, 4}, {"a.i32", GGUF_I32, 2, 4},
        {"a.f32", GGUF_F32, 3, 4}, {"a.bool", GGUF_BOOL, 3, 1}, {"a.u64", GGUF_U64, 2, 8},
        {"a.i64", GGUF_I64, 2, 8}, {"a.f64", GGUF_F64, 2, 8}, {"a.empty", GGUF_U32, 0, 4},
    };
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        TT_OK(gguf_get_arr(f, arrs[k].key, arrs[k].t, &v));
        TT_CHECK(v && v->type == GGUF_ARR && v->arr.type == arrs[k].t && v->arr.n == arrs[k].n);
    }
    /* spot-check packed elements, read unaligned the way a caller must */
    int64_t i64v;
    double f64v;
    TT_OK(gguf_get_arr(f, "a.i64", GGUF_I64, &v));
    memcpy(&i64v, v->arr.data, 8);
    TT_CHECK(i64v == INT64_MIN);
    TT_OK(gguf_get_arr(f, "a.f64", GGUF_F64, &v));
    memcpy(&f64v, v->arr.data + 8, 8);
    TT_CHECK(f64v == -1e300);
    TT_OK(gguf_get_arr(f, "a.u8", GGUF_U8, &v));
    TT_CHECK(v->arr.data[2] == 255);
    TT_OK(gguf_get_arr(f, "a.str", GGUF_STR, &v));
    TT_CHECK(v->arr.n == 5 && v->arr.strs != NULL);
    for (int k = 0; v->arr.strs && k < 5; k++) TT_CHECK(gguf_str_eq(v->arr.strs[k], k_strs[k]));
    TT_OK(gguf_get_arr(f, "a.str0", GGUF_STR, &v));
    TT_CHECK(v->arr.n == 0);

    /* kvs come back in file order */
    const gguf_kv *kv = gguf_kv_at(f, alignment != 32 ? 1 : 0);
    TT_CHECK(kv && gguf_str_eq(kv->key, "general.architecture"));
    TT_CHECK(gguf_kv_at(f, -1) == NULL && gguf_kv_at(f, gguf_kv_count(f)) == NULL);
    TT_CHECK(strcmp(gguf_vtype_name(GGUF_ARR), "array") == 0);
    TT_CHECK(strcmp(gguf_vtype_name(99), "unknown") == 0);

    /* tensors: shape, type, alignment, and the data dequantises to exactly
     * what quantise -> dequantise of the same input gives */
    float x[256 * 3], want[256 * 3], got[256 * 3];
    uint8_t q[256 * 3 * 4];
    for (int i = 0; i < N_TYPES; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[32];
        snprintf(name, sizeof name, "t%d.%s", i, quant_type_name(k_types[i]));
        TT_CHECK(t && gguf_str_eq(t->name, name));
        TT_CHECK(gguf_tensor_find(f, name) == t);
        if (!t) continue;
        TT_CHECK(t->type == k_types[i] && t->n_dims == 2);
        TT_CHECK(t->ne[0] == 256 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 1);
        TT_CHECK(gguf_tensor_nelems(t) == 768);
        TT_CHECK(t->offset % alignment == 0);
        TT_CHECK(t->nbytes == 3 * quant_block_bytes(k_types[i]) * (256 / quant_block_elems(k_types[i])));
        fill(x, 768, 100 + (uint64_t)i);
        size_t row;
        quant_row_bytes(t->type, 256, &row);
        for (int r = 0; r < 3; r++) {
            quant_quantize_row(t->type, x + 256 * r, q, 256);
            quant_dequantize_row(t->type, q, want + 256 * r, 256);
            quant_dequantize_row(t->type, (const uint8_t *)t->data + row * (size_t)r,
                                 got + 256 * r, 256);
        }
        TT_CHECK(memcmp(want, got, sizeof got) == 0);
    }
    const gguf_tensor *cube = gguf_tensor_find(f, "cube");
    TT_CHECK(cube && cube->n_dims == 3 && cube->ne[2] == 2 && gguf_tensor_nelems(cube) == 384);
    TT_CHECK(gguf_tensor_find(f, "cub") == NULL && gguf_tensor_find(f, "") == NULL);
}

static void test_roundtrip(void) {
    TT_CASE("roundtrip");
    const char *path = tt_path("sample.gguf");
    TT_OK(write_sample(path, 0));
    gguf_file *f = NULL;
    TT_OK(gguf_open(&f, path));
    if (f) check_sample(f, 32);
    gguf_destroy(&f);
    gguf_destroy(&f); /* NULL is fine */
    TT_CHECK(f == NULL);

    const char *path64 = tt_path("sample64.gguf");
    TT_OK(write_sample(path64, 64));
    TT_OK(gguf_open(&f, path64));
    if (f) check_sample(f, 64);
    gguf_destroy(&f);
}

static void test_writer_errors(void) {
    TT_CASE("writer_errors");
    gguf_writer *w = gguf_writer_new();
    float x[64] = {0};
    TT_OK(gguf_writer_add_u32(w, "k", 1));
    TT_FAILS(gguf_writer_add_str(w, "k", "again"), TIS_EINVAL);
    TT_FAILS(gguf_writer_add_u32(w, "general.alignment", 48), TIS_EINVAL);
    TT_FAILS(gguf_writer_add_arr(w, "nested", GGUF_ARR, x, 1), TIS_EINVAL);
    TT_OK(gguf_writer_add_tensor(w, "a", GGML_TYPE_Q8_0, 1, (const int64_t[]){32}, x));
    TT_FAILS(gguf_writer_add_tensor(w, "a", GGML_TYPE_Q8_0, 1, (const int64_t[]){32}, x), TIS_EINVAL);
    TT_FAILS(gguf_writer_add_tensor(w, "b", GGML_TYPE_Q8_0, 1, (const int64_t[]){33}, x), TIS_EFORMAT);
    TT_FAILS(gguf_writer_add_tensor(w, "b", GGML_TYPE_Q2_K, 1, (const int64_t[]){256}, x), TIS_EUNSUPPORTED);
    TT_FAILS(gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 5, (const int64_t[]){1, 1, 1, 1, 1}, x), TIS_EINVAL);
    TT_FAILS(gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, (const int64_t[]){8, 0}, x), TIS_EINVAL);
    x[3] = NAN;
    TT_FAILS(gguf_writer_add_tensor(w, "b", GGML_TYPE_Q4_0, 1, (const int64_t[]){32}, x), TIS_EINVAL);
    TT_OK(gguf_writer_add_tensor(w, "b", GGML_TYPE_F16, 1, (const int64_t[]){32}, x));
    TT_FAILS(gguf_writer_write(w, "/nonexistent-dir/x.gguf"), TIS_EIO);
    TT_CHECK(has("/nonexistent-dir/x.gguf"));
    gguf_writer_destroy(&w);
    gguf_writer_destroy(&w);
}

/* ---- malformed files ------------------------------------------------------- */

/* Every strict prefix of a valid file must fail with EFORMAT (the writer
 * leaves no padding after the last tensor, so no prefix is complete). */
static void test_prefixes(void) {
    TT_CASE("prefixes");
    size_t len = 0;
    char *buf = tt_read_file(tt_path("sample.gguf"), &len);
    TT_CHECK(buf && len > 1000);
    if (!buf) return;
    TT_OK(open_bytes(buf, len));
    int wrong = 0;
    for (size_t n = 0; n < len; n++) {
        int rc = open_bytes(buf, n);
        if (rc != TIS_EFORMAT && wrong++ < 5)
            fprintf(stderr, "  prefix %zu/%zu: rc %d: %s\n", n, len, rc, tis_last_error());
    }
    TT_CHECK(wrong == 0);
    printf("  %zu prefixes rejected\n", len);
    free(buf);
}

/* Random byte changes: anything may come back except a crash, a read out of
 * bounds (ASan), or success with inconsistent tensors (open_bytes reads every
 * tensor byte). */
static void test_corruption(void) {
    TT_CASE("corruption");
    size_t len = 0;
    char *buf = tt_read_file(tt_path("sample.gguf"), &len);
    if (!buf) return;
    uint8_t *m = malloc(len);
    uint64_t s = 99;
    int opened = 0, failed = 0, odd = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, buf, len);
        int n_flips = 1 + it % 4;
        for (int k = 0; k < n_flips; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            /* mostly the metadata, where the structure is */
            size_t at = (size_t)(s >> 11) % (it % 2 ? 1200 : len);
            uint8_t v = (uint8_t)(s >> 3);
            m[at] = k % 2 ? v : (uint8_t)(m[at] ^ (1u << (s >> 60 & 7)));
        }
        int rc = open_bytes(m, len);
        if (rc == 0) opened++;
        else if (rc == TIS_EFORMAT || rc == TIS_EUNSUPPORTED || rc == TIS_ERANGE) failed++;
        else odd++;
    }
    TT_CHECK(odd == 0);
    TT_CHECK(failed > 0);
    printf("  corruption: %d opened, %d rejected, %d other\n", opened, failed, odd);
    free(m);
    free(buf);
}

static void test_header(void) {
    TT_CASE("header");
    bb b;
    bb_header(&b, 0, 0);
    TT_OK(open_bb(&b));
    b.p[0] = 'X';
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("magic"));
    bb_header(&b, 0, 0);
    b.p[4] = 1;
    TT_FAILS(open_bb(&b), TIS_EUNSUPPORTED);
    TT_CHECK(has("version 1"));
    b.p[4] = 4;
    TT_FAILS(open_bb(&b), TIS_EUNSUPPORTED);
    b.p[4] = 0, b.p[7] = 3;
    TT_FAILS(open_bb(&b), TIS_EUNSUPPORTED);
    TT_CHECK(has("big-endian"));
    bb_header(&b, 0, 0);
    b.p[4] = 2; /* v2 has the same layout */
    TT_OK(open_bb(&b));
    TT_FAILS(open_bytes(b.p, 0), TIS_EFORMAT);
    TT_FAILS(open_bytes(b.p, 3), TIS_EFORMAT);

    /* lying counts: far more entries than bytes; one more than present */
    bb_header(&b, 0, UINT64_MAX);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    bb_header(&b, 0, UINT64_C(1) << 40);
    bb_kv_u32(&b, "a", 1);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("1099511627776"));
    bb_header(&b, 0, 2);
    bb_kv_u32(&b, "a", 1);
    bb_kv_u32(&b, "b", 2);
    TT_OK(open_bb(&b));
    bb_header(&b, 0, 3);
    bb_kv_u32(&b, "a", 1);
    bb_kv_u32(&b, "b", 2);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    bb_header(&b, UINT64_MAX, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("tensors"));
    bb_header(&b, 2, 0);
    bb_tensor_info(&b, "one", 1, (const uint64_t[]){4}, GGML_TYPE_F32, 0);
    bb_pad(&b, 32);
    bb_u64(&b, 0), bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
}

static void test_values(void) {
    TT_CASE("values");
    bb b;
    /* every scalar type, read back through the getters */
    bb_header(&b, 0, 11);
    bb_str(&b, "u8"), bb_u32(&b, GGUF_U8), bb_le(&b, 200, 1);
    bb_str(&b, "i8"), bb_u32(&b, GGUF_I8), bb_le(&b, 0xff, 1);
    bb_str(&b, "u16"), bb_u32(&b, GGUF_U16), bb_le(&b, 60000, 2);
    bb_str(&b, "i16"), bb_u32(&b, GGUF_I16), bb_le(&b, 0x8000, 2);
    bb_str(&b, "i32"), bb_u32(&b, GGUF_I32), bb_u32(&b, 0xfffffffe);
    bb_str(&b, "i64"), bb_u32(&b, GGUF_I64), bb_u64(&b, (uint64_t)-5000000000);
    bb_str(&b, "u64"), bb_u32(&b, GGUF_U64), bb_u64(&b, UINT64_MAX);
    double d = 2.5;
    uint64_t dbits;
    memcpy(&dbits, &d, 8);
    bb_str(&b, "f64"), bb_u32(&b, GGUF_F64), bb_u64(&b, dbits);
    bb_str(&b, "bool"), bb_u32(&b, GGUF_BOOL), bb_le(&b, 0, 1);
    bb_str(&b, "str"), bb_u32(&b, GGUF_STR), bb_str(&b, "x\001y");
    bb_str(&b, ""), bb_u32(&b, GGUF_U8), bb_le(&b, 1, 1); /* an empty key is legal */
    uint8_t *copy = malloc(b.n);
    memcpy(copy, b.p, b.n);
    gguf_file *f = NULL;
    TT_OK(gguf_open_memory(&f, copy, b.n));
    if (f) {
        uint32_t u = 0;
        int64_t i = 0;
        float x = 0;
        bool bo = true;
        gguf_str s;
        TT_OK(gguf_get_u32(f, "u8", &u));
        TT_CHECK(u == 200);
        TT_OK(gguf_get_u32(f, "u16", &u));
        TT_CHECK(u == 60000);
        TT_OK(gguf_get_i64(f, "i8", &i));
        TT_CHECK(i == -1);
        TT_OK(gguf_get_i64(f, "i16", &i));
        TT_CHECK(i == -32768);
        TT_OK(gguf_get_i64(f, "i32", &i));
        TT_CHECK(i == -2);
        TT_OK(gguf_get_i64(f, "i64", &i));
        TT_CHECK(i == -5000000000);
        TT_FAILS(gguf_get_u32(f, "i8", &u), TIS_EFORMAT);
        TT_FAILS(gguf_get_u32(f, "i64", &u), TIS_EFORMAT);
        TT_FAILS(gguf_get_i64(f, "u64", &i), TIS_EFORMAT);
        TT_OK(gguf_get_f32(f, "f64", &x));
        TT_CHECK(x == 2.5f);
        TT_OK(gguf_get_bool(f, "bool", &bo));
        TT_CHECK(!bo);
        TT_OK(gguf_get_str(f, "str", &s));
        TT_CHECK(s.len == 3 && s.ptr[1] == 1);
        TT_CHECK(gguf_kv_find(f, "") == gguf_kv_at(f, 10));
        TT_CHECK(gguf_kv_at(f, 0)->value.type == GGUF_U8);
    }
    gguf_destroy(&f);
    free(copy);

    /* strings and arrays whose lengths lie */
    bb_header(&b, 0, 1);
    bb_u64(&b, UINT64_MAX), bb_bytes(&b, "key and more bytes", 18);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("key #0"));
    bb_header(&b, 0, 1);
    bb_str(&b, "s"), bb_u32(&b, GGUF_STR), bb_u64(&b, 6), bb_bytes(&b, "short", 5);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("'s'"));
    bb_header(&b, 0, 1);
    bb_str(&b, "arr"), bb_u32(&b, GGUF_ARR), bb_u32(&b, GGUF_U8), bb_u64(&b, 1000), bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("'arr'"));
    bb_header(&b, 0, 1); /* n * 8 wraps around 2^64 to 8 */
    bb_str(&b, "arr"), bb_u32(&b, GGUF_ARR), bb_u32(&b, GGUF_U64), bb_u64(&b, (UINT64_C(1) << 61) + 1),
        bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    bb_header(&b, 0, 1);
    bb_str(&b, "toks"), bb_u32(&b, GGUF_ARR), bb_u32(&b, GGUF_STR), bb_u64(&b, UINT64_MAX / 2);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("'toks'"));
    bb_header(&b, 0, 1); /* plausible count, third string runs off the end */
    bb_str(&b, "toks"), bb_u32(&b, GGUF_ARR), bb_u32(&b, GGUF_STR), bb_u64(&b, 3);
    bb_str(&b, "a"), bb_str(&b, "b"), bb_u64(&b, 100), bb_bytes(&b, "cc", 2);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    bb_header(&b, 0, 1);
    bb_str(&b, "nest"), bb_u32(&b, GGUF_ARR), bb_u32(&b, GGUF_ARR), bb_u64(&b, 1);
    bb_u32(&b, GGUF_U8), bb_u64(&b, 1), bb_le(&b, 7, 1);
    TT_FAILS(open_bb(&b), TIS_EUNSUPPORTED);
    TT_CHECK(has("'nest'") && has("nested"));
    bb_header(&b, 0, 1);
    bb_str(&b, "odd"), bb_u32(&b, 13), bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("'odd'") && has("13"));
    bb_header(&b, 0, 1);
    bb_str(&b, "odd"), bb_u32(&b, GGUF_ARR), bb_u32(&b, 77), bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("77"));
    bb_header(&b, 0, 2);
    bb_kv_u32(&b, "dup", 1);
    bb_kv_u32(&b, "dup", 2);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("duplicate") && has("'dup'"));

    /* alignment */
    static const uint32_t bad_align[] = {0, 48, 3, 0x80000001u};
    for (int k = 0; k < 4; k++) {
        bb_header(&b, 0, 1);
        bb_kv_u32(&b, "general.alignment", bad_align[k]);
        TT_FAILS(open_bb(&b), TIS_EFORMAT);
        TT_CHECK(has("general.alignment"));
    }
    bb_header(&b, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, GGUF_U64), bb_u64(&b, 32);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
}

/* A file with one tensor info and `data` bytes of (zero) tensor data. */
static int open_tensor(uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                       size_t data) {
    static bb b;
    bb_header(&b, 1, 0);
    bb_tensor_info(&b, "blk.0.w", n_dims, ne, type, offset);
    bb_pad(&b, 32);
    TIS_ASSERT(b.n + data <= sizeof b.p);
    memset(b.p + b.n, 0, data);
    b.n += data;
    return open_bb(&b);
}

static void test_tensors(void) {
    TT_CASE("tensors");
    const uint64_t ne8x2[] = {8, 2};
    TT_OK(open_tensor(2, ne8x2, GGML_TYPE_F32, 0, 64));
    TT_OK(open_tensor(0, NULL, GGML_TYPE_F32, 0, 4)); /* a scalar */
    TT_FAILS(open_tensor(2, ne8x2, GGML_TYPE_F32, 0, 63), TIS_EFORMAT);
    TT_CHECK(has("'blk.0.w'") && has("past the end"));
    TT_FAILS(open_tensor(2, ne8x2, GGML_TYPE_F32, 32, 64), TIS_EFORMAT);
    TT_FAILS(open_tensor(2, ne8x2, GGML_TYPE_F32, 16, 128), TIS_EFORMAT);
    TT_CHECK(has("alignment"));
    TT_FAILS(open_tensor(2, ne8x2, GGML_TYPE_F32, UINT64_MAX - 31, 64), TIS_EFORMAT);
    TT_FAILS(open_tensor(2, ne8x2, GGML_TYPE_F32, UINT64_C(1) << 62, 64), TIS_EFORMAT);
    TT_FAILS(open_tensor(5, (const uint64_t[]){1, 1, 1, 1, 1}, GGML_TYPE_F32, 0, 4), TIS_EFORMAT);
    TT_CHECK(has("n_dims"));
    bb b;
    bb_header(&b, 1, 0);
    bb_str(&b, "w"), bb_u32(&b, 0xffffffffu), bb_u64(&b, 8), bb_u32(&b, 0), bb_u64(&b, 0);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_FAILS(open_tensor(2, (const uint64_t[]){8, 0}, GGML_TYPE_F32, 0, 64), TIS_EFORMAT);
    TT_CHECK(has("ne[1]"));
    TT_FAILS(open_tensor(2, (const uint64_t[]){UINT64_MAX, 1}, GGML_TYPE_F32, 0, 64), TIS_EFORMAT);
    TT_FAILS(open_tensor(2, (const uint64_t[]){UINT64_C(1) << 32, UINT64_C(1) << 32},
                         GGML_TYPE_F32, 0, 64), TIS_ERANGE);
    TT_FAILS(open_tensor(4, (const uint64_t[]){1u << 20, 1u << 20, 1u << 20, 8}, GGML_TYPE_F32, 0, 64),
             TIS_ERANGE);
    TT_FAILS(open_tensor(1, (const uint64_t[]){UINT64_C(1) << 62}, GGML_TYPE_F32, 0, 64),
             TIS_ERANGE); /* 2^62 elements fit int64, 2^64 bytes do not fit size_t */
    TT_FAILS(open_tensor(2, (const uint64_t[]){32, UINT64_C(1) << 58}, GGML_TYPE_Q8_0, 0, 64),
             TIS_ERANGE);
    TT_FAILS(open_tensor(2, (const uint64_t[]){32, UINT64_C(1) << 40}, GGML_TYPE_Q8_0, 0, 64),
             TIS_EFORMAT); /* fits size_t, not the file */
    TT_FAILS(open_tensor(2, ne8x2, 99, 0, 64), TIS_EFORMAT);
    TT_CHECK(has("99") && has("'blk.0.w'"));
    TT_FAILS(open_tensor(2, ne8x2, 4, 0, 64), TIS_EFORMAT); /* retired id */
    TT_FAILS(open_tensor(2, ne8x2, 0xffffffffu, 0, 64), TIS_EFORMAT);
    TT_FAILS(open_tensor(2, (const uint64_t[]){256, 1}, GGML_TYPE_Q2_K, 0, 84), TIS_EUNSUPPORTED);
    TT_CHECK(has("Q2_K"));
    TT_FAILS(open_tensor(2, (const uint64_t[]){33, 1}, GGML_TYPE_Q4_0, 0, 64), TIS_EFORMAT);
    TT_CHECK(has("multiple"));
    TT_OK(open_tensor(2, (const uint64_t[]){64, 1}, GGML_TYPE_Q4_0, 0, 36));

    /* a tensor name past the end; duplicate names */
    bb_header(&b, 1, 0);
    bb_u64(&b, 1000), bb_bytes(&b, "name and some more bytes", 24);
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("tensor #0"));
    bb_header(&b, 2, 0);
    bb_tensor_info(&b, "w", 1, (const uint64_t[]){8}, GGML_TYPE_F32, 0);
    bb_tensor_info(&b, "w", 1, (const uint64_t[]){8}, GGML_TYPE_F32, 32);
    bb_pad(&b, 32);
    memset(b.p + b.n, 0, 64);
    b.n += 64;
    TT_FAILS(open_bb(&b), TIS_EFORMAT);
    TT_CHECK(has("duplicate") && has("'w'"));
    b.p[24 + 8] = 'v'; /* rename the first: now fine */
    TT_OK(open_bb(&b));
    /* alignment from the file decides the data start and offsets */
    bb_header(&b, 1, 1);
    bb_kv_u32(&b, "general.alignment", 256);
    bb_tensor_info(&b, "w", 1, (const uint64_t[]){8}, GGML_TYPE_F32, 0);
    bb_pad(&b, 32);
    memset(b.p + b.n, 0, 32);
    b.n += 32;
    TT_FAILS(open_bb(&b), TIS_EFORMAT); /* data would start at 256 */
    while (b.n < 256 + 32) b.p[b.n++] = 0;
    TT_OK(open_bb(&b));
}

static void test_paths(void) {
    TT_CASE("paths");
    gguf_file *f = (gguf_file *)&f; /* must come back NULL */
    TT_FAILS(gguf_open(&f, "/nonexistent/model.gguf"), TIS_EIO);
    TT_CHECK(f == NULL && has("/nonexistent/model.gguf"));
    TT_FAILS(gguf_open(&f, tt_tmpdir()), TIS_EIO);
    TT_CHECK(has(tt_tmpdir()));
    const char *empty = tt_path("empty.gguf");
    TT_CHECK(tt_write_file(empty, "", 0) == 0);
    TT_FAILS(gguf_open(&f, empty), TIS_EFORMAT);
    TT_CHECK(has(empty));
    size_t len = 0;
    char *buf = tt_read_file(tt_path("sample.gguf"), &len);
    const char *cut = tt_path("cut.gguf");
    TT_CHECK(buf && tt_write_file(cut, buf, len / 2) == 0);
    TT_FAILS(gguf_open(&f, cut), TIS_EFORMAT);
    TT_CHECK(has(cut));
    free(buf);
    TT_FAILS(gguf_open_memory(&f, NULL, 10), TIS_EINVAL);
}

/* ---- the real model -------------------------------------------------------- */

static void test_model(void) {
    TT_CASE("model");
    if (!getenv("TIS_MODEL")) {
        printf("  note: TIS_MODEL is unset, skipping the real-model checks\n");
        return;
    }
    const char *path = tt_model();
    TT_CHECK(path != NULL); /* set but missing is a failure */
    if (!path) return;
    gguf_file *f = NULL;
    TT_OK(gguf_open(&f, path));
    if (!f) return;
    TT_CHECK(gguf_version(f) == 3);
    TT_CHECK(gguf_tensor_count(f) == 272);
    TT_CHECK(gguf_kv_count(f) == 33);
    gguf_str s = {0};
    TT_OK(gguf_get_str(f, "general.architecture", &s));
    TT_CHECK(gguf_str_eq(s, "llama"));
    uint32_t u = 0;
    TT_OK(gguf_get_u32(f, "llama.block_count", &u));
    TT_CHECK(u == 30);
    const gguf_tensor *t = gguf_tensor_find(f, "token_embd.weight");
    TT_CHECK(t && t->type == GGML_TYPE_Q8_0 && t->n_dims == 2 && t->ne[0] == 576 &&
             t->ne[1] == 49152);
    const gguf_value *v = NULL;
    TT_OK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STR, &v));
    TT_CHECK(v && v->arr.n == 49152);
    /* every tensor is a supported type and dequantises to finite values */
    int64_t nonfinite = 0, total = 0;
    float *y = malloc(8192 * sizeof *y);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *ti = gguf_tensor_at(f, i);
        size_t row;
        TT_OK(quant_row_bytes(ti->type, ti->ne[0], &row));
        if (ti->ne[0] > 8192) continue;
        int64_t rows = gguf_tensor_nelems(ti) / ti->ne[0];
        for (int64_t r = 0; r < rows; r += 97) { /* a sample of rows */
            quant_dequantize_row(ti->type, (const uint8_t *)ti->data + (size_t)r * row, y,
                                 ti->ne[0]);
            for (int64_t j = 0; j < ti->ne[0]; j++) nonfinite += !isfinite(y[j]);
            total += ti->ne[0];
        }
    }
    free(y);
    TT_CHECK(nonfinite == 0 && total > 1000000);
    printf("  model: %lld tensors, %lld sampled weights finite\n",
           (long long)gguf_tensor_count(f), (long long)total);
    gguf_destroy(&f);
}

int main(void) {
    test_roundtrip();
    test_writer_errors();
    test_prefixes();
    test_corruption();
    test_header();
    test_values();
    test_tensors();
    test_paths();
    test_model();
    return tt_done("test_gguf");
}
