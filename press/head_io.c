/* head_io: the importance head's checkpoint (save, load, model check).
 *
 * Format: safetensors (formats/safetensors.h), all tensors F32, names and
 * metadata as listed in head.h. Loading trusts nothing: every metadata
 * number is parsed strictly and range-checked, every tensor must be present
 * (or absent) as the metadata says, with dtype F32 and the exact shape, and
 * every value finite (std > 0, lambda in [0, 0.5]). importance_embedding.*
 * tensors are a reference component tis does not use: ignored. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head.h"
#include "safetensors.h"
#include "tis_error.h"

#define HEAD_FORMAT "tis-head-1"
#define HEAD_FEATURE_NORM "rmsnorm+standardise"
#define HEAD_LAMBDA_MAX 0.5f /* the reference keeps lambda within [0, 0.5] */

/* The tensors of a head, in one table for save and load. `p` is where the
 * data lives (NULL: this head has no such tensor); shape [rows][cols], or
 * [rows] when cols is 0. */
typedef struct s_entry {
    const char *name;
    float *p;
    int64_t rows, cols;
} s_entry;

enum { S_N_ENTRIES = 9 };

/* The calibration's knots (optional; head.h): [n_out][K] each. */
#define S_CALIB_X "importance_head.calib_pred"
#define S_CALIB_Y "importance_head.calib_target"
enum { S_CALIB_MAX = 4096 };

static void s_entries(head *h, s_entry e[S_N_ENTRIES]) {
    const head_config *c = &h->cfg;
    const int64_t d = c->d_model + c->n_pos + c->n_rep, d_in = c->kind == HEAD_MLP ? c->hidden : d;
    int i = 0;
    e[i++] = (s_entry){"importance_head.out_proj.weight", h->w_out, c->n_out, d_in};
    e[i++] = (s_entry){"importance_head.out_proj.bias", h->b_out, c->n_out, 0};
    e[i++] = (s_entry){"importance_head.fc1.weight", h->w1, c->hidden, d};
    e[i++] = (s_entry){"importance_head.fc1.bias", h->b1, c->hidden, 0};
    e[i++] = (s_entry){"importance_head.query_proj.weight", h->pq, c->rank, d};
    e[i++] = (s_entry){"importance_head.key_proj.weight", h->pk, c->rank, d};
    e[i++] = (s_entry){"importance_head.feature_mean", h->mean, d, 0};
    e[i++] = (s_entry){"importance_head.feature_std", h->std, d, 0};
    e[i++] = (s_entry){"attn_hook_lambda", &h->attn_hook_lambda, 1, 0};
    TIS_ASSERT(i == S_N_ENTRIES);
}

/* ---- save ---------------------------------------------------------------- */

int head_save(const head *h, const char *path) {
    if (!h || !path) return tis_error(TIS_EINVAL, "head: save: NULL head or path");
    const head_config *c = &h->cfg;
    s_entry e[S_N_ENTRIES];
    s_entries((head *)h, e); /* only read */
    st_writer *w = st_writer_new();
    if (!w) return TIS_ENOMEM;
    int rc = 0;
    for (int i = 0; i < S_N_ENTRIES && !rc; i++) {
        if (!e[i].p) continue;
        const int64_t shape[2] = {e[i].rows, e[i].cols};
        rc = st_writer_add(w, e[i].name, ST_F32, e[i].cols ? 2 : 1, shape, e[i].p);
    }
    char num[7][32];
    snprintf(num[0], sizeof num[0], "%lld", (long long)c->d_model);
    snprintf(num[1], sizeof num[1], "%lld", (long long)c->layer);
    snprintf(num[2], sizeof num[2], "%lld", (long long)c->hidden);
    snprintf(num[3], sizeof num[3], "%lld", (long long)c->rank);
    snprintf(num[4], sizeof num[4], "%lld", (long long)c->n_out);
    snprintf(num[5], sizeof num[5], "%lld", (long long)c->n_pos);
    snprintf(num[6], sizeof num[6], "%lld", (long long)c->n_rep);
    /* Fixed-size strings in the struct: copy with a bound so that an
     * unterminated one cannot be read past its end. */
    char base[sizeof c->base_model], hash[sizeof h->label_hash], cmd[sizeof h->train_command];
    snprintf(base, sizeof base, "%.*s", (int)sizeof c->base_model - 1, c->base_model);
    snprintf(hash, sizeof hash, "%.*s", (int)sizeof h->label_hash - 1, h->label_hash);
    snprintf(cmd, sizeof cmd, "%.*s", (int)sizeof h->train_command - 1, h->train_command);
    const char *meta[][2] = {
        {"format", HEAD_FORMAT},
        {"kind", c->kind == HEAD_MLP ? "mlp" : "linear"},
        {"query_aware", c->query_aware ? "1" : "0"},
        {"base_model", base},
        {"d_model", num[0]},
        {"layer", num[1]},
        {"hidden", num[2]},
        {"rank", num[3]},
        {"feature_norm", HEAD_FEATURE_NORM},
        {"label_hash", hash},
        {"train_command", cmd},
        {"n_out", num[4]},
        {"target", head_target_name(c->target)},
        {"positions", num[5]},
        {"repeats", num[6]},
    };
    if (h->n_calib > 0 && !rc) {
        const int64_t shape[2] = {c->n_out, h->n_calib};
        rc = st_writer_add(w, S_CALIB_X, ST_F32, 2, shape, h->calib_x);
        if (!rc) rc = st_writer_add(w, S_CALIB_Y, ST_F32, 2, shape, h->calib_y);
    }
    for (size_t i = 0; i < sizeof meta / sizeof *meta && !rc; i++)
        rc = st_writer_add_metadata(w, meta[i][0], meta[i][1]);
    if (!rc) rc = st_writer_write(w, path);
    st_writer_destroy(&w);
    return rc;
}

/* ---- load ---------------------------------------------------------------- */

/* A required metadata string. */
static int s_meta(const st_file *f, const char *key, const char **out) {
    *out = st_metadata(f, key);
    if (!*out)
        return tis_error(TIS_EFORMAT, "head: %s: metadata '%s' is missing", st_file_path(f), key);
    return 0;
}

/* A required metadata integer in [lo, hi], plain decimal digits. */
static int s_meta_int(const st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *s;
    int rc = s_meta(f, key, &s);
    if (rc) return rc;
    const char *q = s[0] == '-' ? s + 1 : s;
    bool ok = q[0] >= '0' && q[0] <= '9' && strlen(q) <= 18;
    for (const char *p = q; ok && *p; p++) ok = *p >= '0' && *p <= '9';
    long long v = ok ? strtoll(s, NULL, 10) : 0;
    if (!ok || v < lo || v > hi)
        return tis_error(TIS_EFORMAT, "head: %s: metadata '%s' is '%.40s', not an integer in "
                         "%lld..%lld", st_file_path(f), key, s, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

/* An optional metadata string copied into dst[n] ("" when absent). */
static int s_meta_copy(const st_file *f, const char *key, char *dst, size_t n) {
    const char *s = st_metadata(f, key);
    if (!s) s = "";
    size_t len = strlen(s);
    if (len >= n)
        return tis_error(TIS_EFORMAT, "head: %s: metadata '%s' is %zu bytes (at most %zu)",
                         st_file_path(f), key, len, n - 1);
    memcpy(dst, s, len + 1);
    return 0;
}

/* The config from the metadata. */
static int s_load_config(const st_file *f, head_config *c) {
    const char *path = st_file_path(f), *s;
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = s_meta(f, "format", &s))) return rc;
    if (strcmp(s, HEAD_FORMAT) != 0)
        return tis_error(TIS_EFORMAT, "head: %s: format is '%.40s', expected '%s' (not a tis "
                         "head checkpoint?)", path, s, HEAD_FORMAT);
    if ((rc = s_meta(f, "kind", &s))) return rc;
    if (strcmp(s, "linear") == 0)
        c->kind = HEAD_LINEAR;
    else if (strcmp(s, "mlp") == 0)
        c->kind = HEAD_MLP;
    else
        return tis_error(TIS_EFORMAT, "head: %s: unknown kind '%.40s' (linear or mlp)", path, s);
    if ((rc = s_meta(f, "query_aware", &s))) return rc;
    if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
        return tis_error(TIS_EFORMAT, "head: %s: query_aware is '%.40s', not 0 or 1", path, s);
    c->query_aware = s[0] == '1';
    if ((rc = s_meta(f, "feature_norm", &s))) return rc;
    if (strcmp(s, HEAD_FEATURE_NORM) != 0)
        return tis_error(TIS_EFORMAT, "head: %s: feature_norm is '%.40s'; tis computes '%s'",
                         path, s, HEAD_FEATURE_NORM);
    if ((rc = s_meta(f, "base_model", &s))) return rc;
    if ((rc = s_meta_copy(f, "base_model", c->base_model, sizeof c->base_model))) return rc;
    /* Ranges as head_new's; hidden/rank of a kind that does not use them
     * are only required to be numbers. */
    if ((rc = s_meta_int(f, "d_model", 1, 65536, &c->d_model))) return rc;
    if ((rc = s_meta_int(f, "layer", 0, 65536, &c->layer))) return rc;
    if ((rc = s_meta_int(f, "hidden", c->kind == HEAD_MLP ? 1 : 0,
                         c->kind == HEAD_MLP ? 8192 : INT32_MAX, &c->hidden)))
        return rc;
    if ((rc = s_meta_int(f, "rank", c->query_aware ? 1 : 0, c->query_aware ? 1024 : INT32_MAX,
                         &c->rank)))
        return rc;
    /* n_out and target came later: absent means a single-score answer head */
    c->n_out = 1;
    if (st_metadata(f, "n_out") && (rc = s_meta_int(f, "n_out", 1, 65536, &c->n_out))) return rc;
    c->n_pos = 0; /* came later still */
    if (st_metadata(f, "positions") && (rc = s_meta_int(f, "positions", 0, 2, &c->n_pos))) return rc;
    if (c->n_pos == 1) return tis_error(TIS_EFORMAT, "head: %s: positions is 1 (0 or 2)", path);
    if (c->n_pos && c->query_aware)
        return tis_error(TIS_EFORMAT, "head: %s: positional inputs in a query-aware head", path);
    c->n_rep = 0; /* and later again */
    if (st_metadata(f, "repeats") && (rc = s_meta_int(f, "repeats", 0, 2, &c->n_rep))) return rc;
    if (c->n_rep == 1) return tis_error(TIS_EFORMAT, "head: %s: repeats is 1 (0 or 2)", path);
    if (c->n_rep && c->query_aware)
        return tis_error(TIS_EFORMAT, "head: %s: repetition inputs in a query-aware head", path);
    s = st_metadata(f, "target");
    c->target = HEAD_TARGET_ANSWER; /* a head written before the key */
    if (s && !head_target_parse(s, &c->target))
        return tis_error(TIS_EFORMAT, "head: %s: target is '%.40s' (answer, recon or selfinfo)", path, s);
    return 0;
}

/* Copies tensor `e` from f into the head, checking dtype, shape, values. */
static int s_load_tensor(const st_file *f, const s_entry *e) {
    const char *path = st_file_path(f);
    const st_tensor *t = st_tensor_find(f, e->name);
    if (!t) return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' is missing", path, e->name);
    if (t->dtype != ST_F32)
        return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' is %s, expected F32", path, e->name,
                         st_dtype_name(t->dtype));
    const int want_dims = e->cols ? 2 : 1;
    /* a 0-dim scalar lambda (as a PyTorch scalar parameter saves) is fine */
    const bool scalar = t->n_dims == 0 && !strcmp(e->name, "attn_hook_lambda");
    if (!scalar && (t->n_dims != want_dims || t->shape[0] != e->rows ||
                    (e->cols && t->shape[1] != e->cols))) {
        char got[128] = "", want[64];
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (e->cols)
            snprintf(want, sizeof want, "%lld, %lld", (long long)e->rows, (long long)e->cols);
        else
            snprintf(want, sizeof want, "%lld", (long long)e->rows);
        return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' has shape [%s], expected [%s]",
                         path, e->name, got, want);
    }
    const int64_t n = e->rows * (e->cols ? e->cols : 1);
    TIS_ASSERT(t->nbytes == (size_t)n * sizeof(float)); /* the reader checked it */
    memcpy(e->p, t->data, t->nbytes); /* data may be unaligned */
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(e->p[i]))
            return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' has a non-finite value at %lld",
                             path, e->name, (long long)i);
    return 0;
}

/* One calibration tensor: F32 [n_out][K], finite, each row strictly
 * increasing (the map must keep every order). *k: its K. */
static int s_calib_tensor(const st_file *f, const char *name, int64_t n_out, int64_t *k, float **out) {
    const char *path = st_file_path(f);
    const st_tensor *t = st_tensor_find(f, name);
    *out = NULL;
    if (t->dtype != ST_F32 || t->n_dims != 2 || t->shape[0] != n_out || t->shape[1] < 2 || t->shape[1] > S_CALIB_MAX)
        return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' is not F32 [%lld][K] with K in 2..%d", path, name,
                         (long long)n_out, S_CALIB_MAX);
    if (*k && t->shape[1] != *k)
        return tis_error(TIS_EFORMAT, "head: %s: the calibration tensors have %lld and %lld knots", path,
                         (long long)*k, (long long)t->shape[1]);
    *k = t->shape[1];
    float *v = malloc(t->nbytes);
    if (!v) return tis_error(TIS_ENOMEM, "head: out of memory for the calibration");
    memcpy(v, t->data, t->nbytes); /* data may be unaligned */
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t i = 0; i < *k; i++) {
            float a = v[o * *k + i];
            if (!isfinite(a) || (i > 0 && !(a > v[o * *k + i - 1]))) {
                free(v);
                return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' row %lld is not finite and strictly "
                                 "increasing (at knot %lld)", path, name, (long long)o, (long long)i);
            }
        }
    *out = v;
    return 0;
}

/* The calibration, when the file has one: both tensors or neither, and
 * only in a per-head head. */
static int s_load_calib(const st_file *f, head *h) {
    const char *path = st_file_path(f);
    bool hx = st_tensor_find(f, S_CALIB_X) != NULL, hy = st_tensor_find(f, S_CALIB_Y) != NULL;
    if (!hx && !hy) return 0;
    if (hx != hy)
        return tis_error(TIS_EFORMAT, "head: %s: tensor '%s' without '%s'", path, hx ? S_CALIB_X : S_CALIB_Y,
                         hx ? S_CALIB_Y : S_CALIB_X);
    if (h->cfg.n_out <= 1)
        return tis_error(TIS_EFORMAT, "head: %s: a calibration in a single-score head", path);
    int64_t k = 0;
    int rc = s_calib_tensor(f, S_CALIB_X, h->cfg.n_out, &k, &h->calib_x);
    if (!rc) rc = s_calib_tensor(f, S_CALIB_Y, h->cfg.n_out, &k, &h->calib_y);
    if (rc) {
        head_uncalibrate(h);
        return rc;
    }
    h->n_calib = k;
    return 0;
}

static int s_load(head **out, const st_file *f) {
    const char *path = st_file_path(f);
    head_config c;
    int rc = s_load_config(f, &c);
    if (rc) return rc;
    head *h = NULL;
    if ((rc = head_new(&h, &c, 0))) return rc; /* c is in range: only ENOMEM */
    s_entry e[S_N_ENTRIES];
    s_entries(h, e);
    for (int i = 0; i < S_N_ENTRIES && !rc; i++)
        if (e[i].p) rc = s_load_tensor(f, &e[i]);
    /* Every tensor in the file must be one this head has. */
    for (int64_t i = 0; i < st_tensor_count(f) && !rc; i++) {
        const char *name = st_tensor_at(f, i)->name;
        if (strncmp(name, "importance_embedding.", 21) == 0 || !strcmp(name, S_CALIB_X) || !strcmp(name, S_CALIB_Y))
            continue; /* (the calibration: s_load_calib) */
        int j = 0;
        while (j < S_N_ENTRIES && strcmp(name, e[j].name) != 0) j++;
        if (j == S_N_ENTRIES)
            rc = tis_error(TIS_EFORMAT, "head: %s: unknown tensor '%s'", path, name);
        else if (!e[j].p)
            rc = tis_error(TIS_EFORMAT, "head: %s: tensor '%s' does not belong in a %s%s head",
                           path, name, c.kind == HEAD_MLP ? "mlp" : "linear",
                           c.query_aware ? " query-aware" : "");
    }
    for (int64_t k = 0; k < c.d_model + c.n_pos + c.n_rep && !rc; k++)
        if (!(h->std[k] > 0))
            rc = tis_error(TIS_EFORMAT, "head: %s: feature_std[%lld] = %g is not positive", path,
                           (long long)k, (double)h->std[k]);
    if (!rc && !(h->attn_hook_lambda >= 0 && h->attn_hook_lambda <= HEAD_LAMBDA_MAX))
        rc = tis_error(TIS_EFORMAT, "head: %s: attn_hook_lambda %g is outside [0, %g]", path,
                       (double)h->attn_hook_lambda, (double)HEAD_LAMBDA_MAX);
    if (!rc) rc = s_load_calib(f, h);
    if (!rc) rc = s_meta_copy(f, "label_hash", h->label_hash, sizeof h->label_hash);
    if (!rc) rc = s_meta_copy(f, "train_command", h->train_command, sizeof h->train_command);
    if (rc) {
        head_destroy(&h);
        return rc;
    }
    *out = h;
    return 0;
}

int head_load(head **out, const char *path) {
    *out = NULL;
    if (!path) return tis_error(TIS_EINVAL, "head: load: NULL path");
    st_file *f = NULL;
    int rc = st_open(&f, path);
    if (rc) return rc;
    rc = s_load(out, f);
    st_destroy(&f);
    return rc;
}

/* layer == n_layer is valid: the residual stream after the last layer (as
 * label.h counts layers; the reference probes final-layer states). */
int head_check_model(const head *h, const char *model_name, int64_t d_model, int64_t n_layer,
                     int64_t n_kv_head) {
    if (!h || !model_name) return tis_error(TIS_EINVAL, "head: check: NULL head or model name");
    const head_config *c = &h->cfg;
    if (strncmp(c->base_model, model_name, sizeof c->base_model) != 0 || c->d_model != d_model ||
        c->layer > n_layer)
        return tis_error(TIS_EINVAL,
                         "head was trained for '%.*s' (d_model %lld, layer %lld); this model is "
                         "'%s' (d_model %lld, %lld layers)",
                         (int)sizeof c->base_model - 1, c->base_model, (long long)c->d_model,
                         (long long)c->layer, model_name, (long long)d_model, (long long)n_layer);
    if (c->n_out != 1 && c->n_out != n_layer * n_kv_head)
        return tis_error(TIS_EINVAL,
                         "head has %lld outputs per token; this model has %lld layers x %lld kv heads "
                         "= %lld streams (a per-head head needs one output per stream)",
                         (long long)c->n_out, (long long)n_layer, (long long)n_kv_head,
                         (long long)(n_layer * n_kv_head));
    return 0;
}
