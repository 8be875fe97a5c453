/* test_safetensors: writer -> reader round trip, model directories (single
 * file and shards), a fixture written by the reference Python package, and
 * malformed files (each must fail with a message, never crash). */
#define _GNU_SOURCE
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"
#include "tt.h"

/* st_open's status, with a check that nothing is handed out on failure. */
static int s_open_rc(const char *path) {
    st_file *f = (st_file *)&f; /* must be reset to NULL */
    int rc = st_open(&f, path);
    if (rc != 0 && f != NULL) return 999;
    st_destroy(&f);
    return rc;
}

static int s_model_rc(const char *dir) {
    st_model *m = (st_model *)&m;
    int rc = st_model_open(&m, dir);
    if (rc != 0 && m != NULL) return 999;
    st_model_destroy(&m);
    return rc;
}

/* A file: u64 header length `hlen`, the JSON text, `data_len` zero bytes. */
static const char *s_craft_len(const char *name, uint64_t hlen, const char *json, size_t data_len) {
    size_t n = strlen(json);
    uint8_t *buf = calloc(1, 8 + n + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, json, n);
    const char *p = tt_path(name);
    if (tt_write_file(p, buf, 8 + n + data_len)) fprintf(stderr, "cannot write %s\n", p);
    free(buf);
    return p;
}

static const char *s_craft(const char *name, const char *json, size_t data_len) {
    return s_craft_len(name, strlen(json), json, data_len);
}

static bool s_shape_is(const st_tensor *t, int n, const int64_t *shape) {
    if (!t || t->n_dims != n) return false;
    for (int i = 0; i < n; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* ---- round trip ---------------------------------------------------------- */

static void test_roundtrip(void) {
    TT_CASE("roundtrip");
    /* One tensor of every dtype, with distinct bytes; plus a 0-dim scalar,
     * an empty [0] and an empty [3, 0]. */
    static const st_dtype all[] = {ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64, ST_U8, ST_I8,
                                   ST_F64, ST_BOOL, ST_I16, ST_U16, ST_U32, ST_U64};
    const int n_all = (int)(sizeof all / sizeof *all);
    uint8_t bytes[13][2 * 3 * 8];
    st_writer *w = st_writer_new();
    TT_CHECK(w != NULL);
    char name[32];
    for (int i = 0; i < n_all; i++) {
        for (size_t k = 0; k < sizeof bytes[i]; k++) bytes[i][k] = (uint8_t)(i * 31 + k * 7 + 1);
        if (all[i] == ST_BOOL)
            for (size_t k = 0; k < sizeof bytes[i]; k++) bytes[i][k] &= 1;
        int64_t shape[2] = {2, 3};
        snprintf(name, sizeof name, "t.%s", st_dtype_name(all[i]));
        TT_OK(st_writer_add(w, name, all[i], 2, shape, bytes[i]));
    }
    float scalar = 42.5f;
    int64_t zero[2] = {0, 0}, three_zero[2] = {3, 0};
    TT_OK(st_writer_add(w, "scalar", ST_F32, 0, NULL, &scalar));
    TT_OK(st_writer_add(w, "empty", ST_F32, 1, zero, NULL));
    TT_OK(st_writer_add(w, "empty2", ST_BF16, 2, three_zero, NULL));
    TT_OK(st_writer_add_metadata(w, "format", "pt"));
    TT_OK(st_writer_add_metadata(w, "odd", "q\"b\\n\nt\tu\xc3\xa9"));

    /* the writer rejects bad input */
    int64_t neg[1] = {-1}, big[3] = {1 << 30, 1 << 30, 1 << 30};
    TT_FAILS(st_writer_add(w, "scalar", ST_F32, 0, NULL, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "__metadata__", ST_F32, 0, NULL, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "", ST_F32, 0, NULL, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "x", (st_dtype)99, 0, NULL, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "x", ST_F32, 9, big, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "x", ST_F32, 1, neg, &scalar), TIS_EINVAL);
    TT_FAILS(st_writer_add(w, "x", ST_F32, 3, big, &scalar), TIS_ERANGE);
    TT_FAILS(st_writer_add(w, "x", ST_F32, 0, NULL, NULL), TIS_EINVAL);
    TT_FAILS(st_writer_add_metadata(w, "format", "again"), TIS_EINVAL);
    TT_FAILS(st_writer_write(w, "/nonexistent-dir/x.safetensors"), TIS_EIO);

    const char *path = tt_path("rt.safetensors");
    TT_OK(tt_write_file(path, "old contents", 12)); /* replaced atomically */
    TT_OK(st_writer_write(w, path));
    st_writer_destroy(&w);
    TT_CHECK(w == NULL);
    st_writer_destroy(&w); /* NULL is fine */

    /* header length a multiple of 8, padded with spaces */
    size_t flen;
    uint8_t *raw = (uint8_t *)tt_read_file(path, &flen);
    TT_CHECK(raw && flen > 8);
    uint64_t hlen = 0;
    for (int i = 7; raw && i >= 0; i--) hlen = hlen << 8 | raw[i];
    TT_CHECK(hlen % 8 == 0 && hlen < flen);
    TT_CHECK(raw && raw[8] == '{');
    free(raw);

    st_file *f = NULL;
    TT_OK(st_open(&f, path));
    if (!f) return;
    TT_CHECK(st_tensor_count(f) == n_all + 3);
    for (int i = 0; i < n_all; i++) {
        snprintf(name, sizeof name, "t.%s", st_dtype_name(all[i]));
        const st_tensor *t = st_tensor_find(f, name);
        int64_t shape[2] = {2, 3};
        TT_CHECK(t && t->dtype == all[i] && s_shape_is(t, 2, shape));
        TT_CHECK(t && t->nbytes == 6 * st_dtype_size(all[i]));
        TT_CHECK(t && memcmp(t->data, bytes[i], t->nbytes) == 0);
        /* the writer orders by dtype size so each tensor is aligned */
        TT_CHECK(t && (uintptr_t)t->data % st_dtype_size(all[i]) == 0);
    }
    const st_tensor *t = st_tensor_find(f, "scalar");
    float got;
    TT_CHECK(t && t->n_dims == 0 && t->nbytes == 4);
    if (t) memcpy(&got, t->data, 4);
    TT_CHECK(t && got == 42.5f);
    t = st_tensor_find(f, "empty");
    TT_CHECK(t && t->n_dims == 1 && t->shape[0] == 0 && t->nbytes == 0);
    t = st_tensor_find(f, "empty2");
    TT_CHECK(t && s_shape_is(t, 2, three_zero) && t->nbytes == 0 && t->dtype == ST_BF16);
    TT_CHECK(st_tensor_find(f, "nope") == NULL);
    TT_CHECK(st_tensor_find(f, "") == NULL);
    TT_CHECK(st_tensor_at(f, -1) == NULL && st_tensor_at(f, st_tensor_count(f)) == NULL);
    for (int64_t i = 0; i < st_tensor_count(f); i++)
        TT_CHECK(st_tensor_find(f, st_tensor_at(f, i)->name) == st_tensor_at(f, i));

    TT_CHECK(st_metadata_count(f) == 2);
    TT_CHECK(st_metadata(f, "format") && strcmp(st_metadata(f, "format"), "pt") == 0);
    TT_CHECK(st_metadata(f, "odd") &&
             strcmp(st_metadata(f, "odd"), "q\"b\\n\nt\tu\xc3\xa9") == 0);
    TT_CHECK(st_metadata(f, "absent") == NULL);
    const char *k, *v;
    st_metadata_at(f, 0, &k, &v);
    TT_CHECK(k && v && strcmp(k, "format") == 0 && strcmp(v, "pt") == 0);
    st_metadata_at(f, 2, &k, &v);
    TT_CHECK(k == NULL && v == NULL);
    st_destroy(&f);
    TT_CHECK(f == NULL);

    /* no tensors, no metadata */
    w = st_writer_new();
    TT_OK(st_writer_write(w, tt_path("empty.safetensors")));
    st_writer_destroy(&w);
    TT_OK(st_open(&f, tt_path("empty.safetensors")));
    TT_CHECK(st_tensor_count(f) == 0 && st_metadata_count(f) == 0);
    st_destroy(&f);

    TT_CHECK(st_dtype_size(ST_BF16) == 2 && st_dtype_size(ST_U64) == 8);
    TT_CHECK(st_dtype_size((st_dtype)-1) == 0 && strcmp(st_dtype_name((st_dtype)77), "?") == 0);
    st_dtype d;
    TT_CHECK(st_dtype_from_name("BF16", &d) == 0 && d == ST_BF16);
    TT_CHECK(st_dtype_from_name("F8_E4M3", &d) == TIS_EUNSUPPORTED);
    TT_CHECK(st_dtype_from_name("f32", &d) == TIS_EFORMAT);
}

/* ---- fixture written by the Python `safetensors` package ---------------- */

static void test_fixture(void) {
    TT_CASE("fixture");
    st_file *f = NULL;
    TT_OK(st_open(&f, tt_src("tests/golden/st_fixture.safetensors")));
    if (!f) return;
    TT_CHECK(st_tensor_count(f) == 10);
    TT_CHECK(st_metadata_count(f) == 3);
    TT_CHECK(st_metadata(f, "tis_fixture") && !strcmp(st_metadata(f, "tis_fixture"), "v1"));
    TT_CHECK(st_metadata(f, "note") &&
             !strcmp(st_metadata(f, "note"), "quote \" backslash \\ \xc3\xa9"));

    const st_tensor *t = st_tensor_find(f, "f32");
    static const int64_t s23[2] = {2, 3}, s234[3] = {2, 3, 4}, s22[2] = {2, 2};
    float fv[24];
    TT_CHECK(t && t->dtype == ST_F32 && s_shape_is(t, 2, s23) && t->nbytes == 24);
    if (t) {
        memcpy(fv, t->data, 24);
        TT_CHECK(fv[0] == 0.0f && fv[1] == 1.0f && fv[2] == -2.5f && fv[3] == 3.25f &&
                 fv[4] == 1e-3f && fv[5] == -1e9f);
    }
    uint16_t hv[4];
    t = st_tensor_find(f, "f16");
    TT_CHECK(t && t->dtype == ST_F16 && t->n_dims == 1 && t->shape[0] == 4);
    if (t) {
        memcpy(hv, t->data, 8);
        TT_CHECK(hv[0] == 0x3800 && hv[1] == 0xBC00 && hv[2] == 0x7BFF && hv[3] == 0x0400);
    }
    t = st_tensor_find(f, "bf16");
    TT_CHECK(t && t->dtype == ST_BF16 && t->n_dims == 1 && t->shape[0] == 3);
    if (t) {
        memcpy(hv, t->data, 6);
        TT_CHECK(hv[0] == 0x3F80 && hv[1] == 0xC000 && hv[2] == 0x4049);
    }
    int32_t iv[4];
    t = st_tensor_find(f, "i32");
    TT_CHECK(t && t->dtype == ST_I32 && s_shape_is(t, 2, s22));
    if (t) {
        memcpy(iv, t->data, 16);
        TT_CHECK(iv[0] == 1 && iv[1] == -2 && iv[2] == INT32_MAX && iv[3] == INT32_MIN);
    }
    int64_t lv[2];
    t = st_tensor_find(f, "i64");
    TT_CHECK(t && t->dtype == ST_I64 && t->shape[0] == 2);
    if (t) {
        memcpy(lv, t->data, 16);
        TT_CHECK(lv[0] == (int64_t)1 << 40 && lv[1] == -5);
    }
    t = st_tensor_find(f, "u8");
    TT_CHECK(t && t->dtype == ST_U8 && t->nbytes == 3 &&
             !memcmp(t->data, "\x00\x80\xff", 3));
    t = st_tensor_find(f, "bool");
    TT_CHECK(t && t->dtype == ST_BOOL && t->nbytes == 3 && !memcmp(t->data, "\1\0\1", 3));
    t = st_tensor_find(f, "f64_scalar");
    double dv = 0;
    TT_CHECK(t && t->dtype == ST_F64 && t->n_dims == 0 && t->nbytes == 8);
    if (t) memcpy(&dv, t->data, 8);
    TT_CHECK(dv == 2.5);
    t = st_tensor_find(f, "empty");
    TT_CHECK(t && t->n_dims == 1 && t->shape[0] == 0 && t->nbytes == 0);
    t = st_tensor_find(f, "model.layers.0.w");
    TT_CHECK(t && s_shape_is(t, 3, s234) && t->nbytes == 96);
    if (t) {
        memcpy(fv, t->data, 96);
        bool ok = true;
        for (int i = 0; i < 24; i++) ok = ok && fv[i] == (float)i / 8;
        TT_CHECK(ok);
    }
    st_destroy(&f);
}

/* ---- model directories -------------------------------------------------- */

static void s_write_shard(const char *path, const char *const *names, int n, float base) {
    st_writer *w = st_writer_new();
    for (int i = 0; i < n; i++) {
        float v[4] = {base + (float)i, 1, 2, 3};
        int64_t shape[2] = {2, 2};
        TT_OK(st_writer_add(w, names[i], ST_F32, 2, shape, v));
    }
    TT_OK(st_writer_write(w, path));
    st_writer_destroy(&w);
}

static const char *s_dir(const char *name) {
    const char *d = tt_path(name);
    mkdir(d, 0755);
    return d;
}

/* A directory with two shards and an index whose weight_map is `wm`. */
static const char *s_sharded(const char *dirname, const char *wm) {
    const char *d = s_dir(dirname);
    char p[600];
    static const char *const a[] = {"embed", "layers.0.wq", "layers.0.wk"};
    static const char *const b[] = {"layers.1.wq", "layers.1.wk", "norm"};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
    s_write_shard(p, a, 3, 10);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    s_write_shard(p, b, 3, 20);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    TT_OK(tt_write_file(p, wm, strlen(wm)));
    return d;
}

#define S1 "\"model-00001-of-00002.safetensors\""
#define S2 "\"model-00002-of-00002.safetensors\""

static void test_model(void) {
    TT_CASE("model");
    static const char *const one[] = {"a", "b"};
    const char *d = s_dir("single");
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    s_write_shard(p, one, 2, 0);
    st_model *m = NULL;
    TT_OK(st_model_open(&m, d));
    TT_CHECK(st_model_tensor_count(m) == 2 && st_model_find(m, "b") &&
             st_model_find(m, "c") == NULL);
    st_model_destroy(&m);
    TT_OK(st_model_open(&m, p)); /* the file itself */
    TT_CHECK(st_model_tensor_count(m) == 2);
    st_model_destroy(&m);
    TT_CHECK(m == NULL);

    d = s_sharded("sharded", "{\"metadata\": {\"total_size\": 96}, \"weight_map\": {"
                             "\"embed\": " S1 ", \"layers.0.wq\": " S1 ", \"layers.0.wk\": " S1
                             ", \"layers.1.wq\": " S2 ", \"layers.1.wk\": " S2
                             ", \"norm\": " S2 "}}");
    TT_OK(st_model_open(&m, d));
    TT_CHECK(st_model_tensor_count(m) == 6);
    static const char *const names[] = {"embed", "layers.0.wq", "layers.0.wk",
                                        "layers.1.wq", "layers.1.wk", "norm"};
    for (int i = 0; i < 6; i++) {
        const st_tensor *t = st_model_find(m, names[i]);
        float v0 = 0;
        TT_CHECK(t && strcmp(t->name, names[i]) == 0 && t->nbytes == 16);
        if (t) memcpy(&v0, t->data, 4);
        TT_CHECK(v0 == (i < 3 ? 10.0f + (float)i : 20.0f + (float)(i - 3)));
        TT_CHECK(st_model_tensor_at(m, i) != NULL);
    }
    TT_CHECK(st_model_find(m, "missing") == NULL && st_model_tensor_at(m, 6) == NULL);
    st_model_destroy(&m);

    /* broken directories and indexes */
    TT_FAILS(s_model_rc(s_dir("emptydir")), TIS_ENOTFOUND);
    TT_FAILS(s_model_rc(tt_path("no-such-dir")), TIS_EIO);
    TT_FAILS(s_model_rc(s_sharded("bad1", "{\"weight_map\": {\"embed\": " S1
                                          ", \"x\": \"model-00009-of-00009.safetensors\"}}")),
             TIS_EIO);
    TT_FAILS(s_model_rc(s_sharded("bad2", "{\"weight_map\": {\"embed\": " S1
                                          ", \"norm\": " S1 "}}")),
             TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad3", "{\"metadata\": {}}")), TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad4", "{\"weight_map\": {\"embed\": 3}}")), TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad5", "{\"weight_map\": {\"embed\": \"../x\"}}")),
             TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad6", "{\"weight_map\": {\"embed\": ")), TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad7", "[]")), TIS_EFORMAT);
    TT_FAILS(s_model_rc(s_sharded("bad8", "{\"weight_map\": {}}")), TIS_EFORMAT);
    /* a tensor in two shards */
    d = s_sharded("dup", "{\"weight_map\": {\"embed\": " S1 ", \"norm\": " S2 "}}");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    static const char *const clash[] = {"norm", "embed"};
    s_write_shard(p, clash, 2, 0);
    TT_FAILS(s_model_rc(d), TIS_EFORMAT);
    /* a corrupt shard: the message names the index and the shard */
    d = s_sharded("corrupt", "{\"weight_map\": {\"embed\": " S1 ", \"norm\": " S2 "}}");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    TT_OK(tt_write_file(p, "\x08\0\0\0\0\0\0\0{\"a\":1} ", 16));
    TT_FAILS(s_model_rc(d), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "index.json") && strstr(tis_last_error(), "00002"));
}

/* ---- malformed files ---------------------------------------------------- */

static void test_malformed(void) {
    TT_CASE("malformed");
    /* a valid file to begin with */
    TT_OK(s_open_rc(s_craft("ok.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                                     "\"data_offsets\":[0,8]}}", 8)));
    TT_FAILS(s_open_rc(tt_path("missing.st")), TIS_EIO);
    TT_FAILS(s_open_rc(tt_tmpdir()), TIS_EIO);
    TT_OK(tt_write_file(tt_path("zero.st"), "", 0));
    TT_FAILS(s_open_rc(tt_path("zero.st")), TIS_EFORMAT);
    TT_OK(tt_write_file(tt_path("short.st"), "\x02\0\0", 3));
    TT_FAILS(s_open_rc(tt_path("short.st")), TIS_EFORMAT);

    /* header length: past the file, absurd, 2^64 - 1, zero */
    TT_FAILS(s_open_rc(s_craft_len("h1.st", 1000, "{}", 0)), TIS_EFORMAT);
    TT_FAILS(s_open_rc(s_craft_len("h2.st", (uint64_t)1 << 40, "{}", 0)), TIS_EFORMAT);
    TT_FAILS(s_open_rc(s_craft_len("h3.st", UINT64_MAX, "{}", 0)), TIS_EFORMAT);
    TT_FAILS(s_open_rc(s_craft_len("h4.st", 0, "", 0)), TIS_EFORMAT);
    TT_FAILS(s_open_rc(s_craft_len("h5.st", 3, "{}", 0)), TIS_EFORMAT); /* truncated */
    TT_FAILS(s_open_rc(s_craft_len("h6.st", 1, "{}", 0)), TIS_EFORMAT); /* cut JSON */

#define BAD(name, json, data, code) TT_FAILS(s_open_rc(s_craft(name, json, data)), code)
#define E(dt, shape, off) "{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" off "}"
    BAD("j1", "{\"a\":", 0, TIS_EFORMAT);                                      /* invalid JSON */
    BAD("j2", "[1, 2]", 0, TIS_EFORMAT);                                       /* not an object */
    BAD("j3", "{} x", 0, TIS_EFORMAT);                                         /* trailing junk */
    TT_OK(tt_write_file(tt_path("j5"), "\x04\0\0\0\0\0\0\0{}\0 ", 12));
    TT_FAILS(s_open_rc(tt_path("j5")), TIS_EFORMAT); /* NUL in the header */
    BAD("e1", "{\"a\":5}", 0, TIS_EFORMAT);                                    /* not an object */
    BAD("e2", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, TIS_EFORMAT); /* no dtype */
    BAD("e3", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, TIS_EFORMAT);
    BAD("e4", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, TIS_EFORMAT);
    BAD("d1", "{\"a\":" E("\"F33\"", "[1]", "[0,4]") "}", 4, TIS_EFORMAT);   /* unknown dtype */
    BAD("d2", "{\"a\":" E("\"F8_E4M3\"", "[1]", "[0,1]") "}", 1, TIS_EUNSUPPORTED);
    BAD("d3", "{\"a\":" E("4", "[1]", "[0,4]") "}", 4, TIS_EFORMAT);          /* not a string */
    BAD("s1", "{\"a\":" E("\"F32\"", "[-1]", "[0,4]") "}", 4, TIS_EFORMAT);  /* negative dim */
    BAD("s2", "{\"a\":" E("\"F32\"", "[1.5]", "[0,4]") "}", 4, TIS_EFORMAT); /* fractional */
    BAD("s3", "{\"a\":" E("\"F32\"", "[\"1\"]", "[0,4]") "}", 4, TIS_EFORMAT);
    BAD("s4", "{\"a\":" E("\"F32\"", "{}", "[0,4]") "}", 4, TIS_EFORMAT);
    BAD("s5", "{\"a\":" E("\"F32\"", "[4294967296,4294967296,4294967296]", "[0,4]") "}", 4,
        TIS_EFORMAT); /* product overflows */
    BAD("s6", "{\"a\":" E("\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1, TIS_EUNSUPPORTED);
    BAD("s7", "{\"a\":" E("\"F32\"", "[1e300]", "[0,4]") "}", 4, TIS_EFORMAT);
    BAD("o1", "{\"a\":" E("\"F32\"", "[2]", "[0,4]") "}", 8, TIS_EFORMAT);   /* size mismatch */
    BAD("o2", "{\"a\":" E("\"F32\"", "[2]", "[0,8]") "}", 4, TIS_EFORMAT);   /* end past data */
    BAD("o3", "{\"a\":" E("\"F32\"", "[0]", "[8,4]") "}", 8, TIS_EFORMAT);   /* begin > end */
    BAD("o4", "{\"a\":" E("\"F32\"", "[1]", "[0]") "}", 4, TIS_EFORMAT);
    BAD("o5", "{\"a\":" E("\"F32\"", "[1]", "[0,4,8]") "}", 8, TIS_EFORMAT);
    BAD("o6", "{\"a\":" E("\"F32\"", "[1]", "[-4,0]") "}", 4, TIS_EFORMAT);
    BAD("o7", "{\"a\":" E("\"F32\"", "[1]", "[18446744073709551612,18446744073709551616]") "}",
        4, TIS_EFORMAT);
    BAD("o8", "{\"a\":" E("\"F32\"", "[2]", "[0,8]") ",\"b\":" E("\"F32\"", "[2]", "[4,12]") "}",
        12, TIS_EFORMAT); /* overlap */
    BAD("o9", "{\"a\":" E("\"F32\"", "[1]", "[0,4]") ",\"b\":" E("\"I32\"", "[1]", "[0,4]") "}",
        4, TIS_EFORMAT); /* aliasing */
    BAD("n1", "{\"a\":" E("\"F32\"", "[1]", "[0,4]") ",\"a\":" E("\"F32\"", "[1]", "[4,8]") "}",
        8, TIS_EFORMAT); /* duplicate name */
    BAD("m1", "{\"__metadata__\":{\"k\":1}}", 0, TIS_EFORMAT);
    BAD("m2", "{\"__metadata__\":[\"k\"]}", 0, TIS_EFORMAT);
    BAD("m3", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, TIS_EFORMAT);
    BAD("m4", "{\"__metadata__\":{\"k\":null}}", 0, TIS_EFORMAT);
#undef BAD
    /* allowed: empty tensors anywhere, gaps, null metadata, extra fields */
    TT_OK(s_open_rc(s_craft("ok2", "{\"__metadata__\":null,\"a\":" E("\"F32\"", "[0]", "[4,4]")
                                   ",\"b\":" E("\"F32\"", "[1]", "[0,4]")
                                   ",\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":"
                                   "[6,7],\"x\":1}}", 8)));
#undef E
}

/* Every proper prefix of a valid file fails cleanly; flipped bytes either
 * fail or open to tensors that lie inside the file. */
static void test_truncate_and_mutate(void) {
    TT_CASE("truncate_and_mutate");
    st_writer *w = st_writer_new();
    float v[3] = {1, 2, 3};
    int64_t s3 = 3, s1 = 1;
    TT_OK(st_writer_add(w, "w", ST_F32, 1, &s3, v));
    TT_OK(st_writer_add(w, "b", ST_U8, 1, &s1, "z"));
    TT_OK(st_writer_add_metadata(w, "k", "v"));
    const char *path = tt_path("small.st");
    TT_OK(st_writer_write(w, path));
    st_writer_destroy(&w);
    size_t n;
    uint8_t *buf = (uint8_t *)tt_read_file(path, &n);
    TT_CHECK(buf != NULL);
    if (!buf) return;
    TT_OK(s_open_rc(path));
    const char *cut = tt_path("cut.st");
    int n_bad = 0;
    for (size_t len = 0; len < n; len++) {
        tt_write_file(cut, buf, len);
        int rc = s_open_rc(cut);
        if (rc != TIS_EFORMAT || !tis_last_error()[0]) {
            n_bad++;
            fprintf(stderr, "prefix of %zu/%zu bytes: rc %d\n", len, n, rc);
        }
    }
    TT_CHECK(n_bad == 0);
    printf("truncation: %zu prefixes rejected\n", n);

    static const uint8_t flips[] = {0x00, 0xff, '"', '{', '}', '[', ',', '9', '-', ' ', '1'};
    int n_ok = 0, n_fail = 0;
    n_bad = 0;
    for (size_t pos = 0; pos < n; pos++)
        for (size_t k = 0; k < sizeof flips; k++) {
            uint8_t save = buf[pos];
            buf[pos] = flips[k];
            tt_write_file(cut, buf, n);
            buf[pos] = save;
            st_file *f = NULL;
            int rc = st_open(&f, cut);
            if (rc) {
                n_fail++;
                if (f || !tis_last_error()[0]) n_bad++;
                continue;
            }
            n_ok++;
            /* touch every byte the reader claims: ASan / SIGSEGV otherwise */
            unsigned sum = 0;
            for (int64_t i = 0; i < st_tensor_count(f); i++) {
                const st_tensor *t = st_tensor_at(f, i);
                size_t want;
                if (st_shape_nbytes(t->dtype, t->n_dims, t->shape, &want) || want != t->nbytes)
                    n_bad++;
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
            }
            (void)sum;
            st_destroy(&f);
        }
    TT_CHECK(n_bad == 0);
    TT_CHECK(n_fail > 0 && n_ok > 0);
    printf("mutation: %d opened, %d rejected\n", n_ok, n_fail);
    free(buf);
}

int main(void) {
    test_roundtrip();
    test_fixture();
    test_model();
    test_malformed();
    test_truncate_and_mutate();
    return tt_done("test_safetensors");
}
