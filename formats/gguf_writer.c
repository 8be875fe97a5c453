/* gguf_writer: builds GGUF v3 files in memory and writes them atomically.
 *
 * Layout written (see gguf.h): header, key/values in insertion order, tensor
 * infos in insertion order, zero padding to the alignment, then each
 * tensor's bytes at an offset that is a multiple of the alignment (padding
 * between tensors, none after the last). The alignment is 32 unless the
 * caller adds "general.alignment" (a power of two) as a u32. */
#define _GNU_SOURCE
#include "gguf_writer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "tis_error.h"

/* A growable byte buffer holding GGUF-encoded bytes. */
typedef struct gguf_buf {
    uint8_t *p;
    size_t len, cap;
} gguf_buf;

typedef struct gguf_wkv {
    char *key;
    uint32_t type;
    gguf_buf value; /* the value as encoded on disk */
} gguf_wkv;

typedef struct gguf_wtensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];
    int type;
    uint8_t *data; /* quantised bytes [nbytes] */
    size_t nbytes;
} gguf_wtensor;

struct gguf_writer {
    gguf_wkv *kvs; /* [n_kv] of cap_kv */
    int64_t n_kv, cap_kv;
    gguf_wtensor *tensors; /* [n_tensors] of cap_tensors */
    int64_t n_tensors, cap_tensors;
    size_t alignment;
};

static int s_buf_put(gguf_buf *b, const void *data, size_t n) {
    if (n > SIZE_MAX - b->len) return tis_error(TIS_ENOMEM, "gguf_writer: buffer overflow");
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) return tis_error(TIS_ENOMEM, "gguf_writer: out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int s_buf_le(gguf_buf *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int k = 0; k < n; k++) t[k] = (uint8_t)(v >> 8 * k);
    return s_buf_put(b, t, (size_t)n);
}

static int s_buf_str(gguf_buf *b, const char *s) {
    size_t n = strlen(s);
    int rc = s_buf_le(b, n, 8);
    return rc ? rc : s_buf_put(b, s, n);
}

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = 32;
    return w;
}

void gguf_writer_destroy(gguf_writer **p) {
    if (!p || !*p) return;
    gguf_writer *w = *p;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value.p);
    }
    for (int64_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->kvs);
    free(w->tensors);
    free(w);
    *p = NULL;
}

/* Grows a table of `size`-byte items to hold one more. */
static int s_grow(void **items, int64_t n, int64_t *cap, size_t size) {
    if (n < *cap) return 0;
    int64_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, (size_t)c * size);
    if (!p) return tis_error(TIS_ENOMEM, "gguf_writer: out of memory");
    *items = p;
    *cap = c;
    return 0;
}

/* Appends a kv whose encoded value the caller fills in via *out. */
static int s_kv_new(gguf_writer *w, const char *key, uint32_t type, gguf_buf **out) {
    if (!w || !key) return tis_error(TIS_EINVAL, "gguf_writer: NULL writer or key");
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return tis_error(TIS_EINVAL, "gguf_writer: duplicate key '%s'", key);
    int rc = s_grow((void **)&w->kvs, w->n_kv, &w->cap_kv, sizeof *w->kvs);
    if (rc) return rc;
    char *k = strdup(key);
    if (!k) return tis_error(TIS_ENOMEM, "gguf_writer: out of memory");
    w->kvs[w->n_kv] = (gguf_wkv){.key = k, .type = type};
    *out = &w->kvs[w->n_kv++].value;
    return 0;
}

static int s_add_scalar(gguf_writer *w, const char *key, uint32_t type, uint64_t bits,
                        int n) {
    gguf_buf *b;
    int rc = s_kv_new(w, key, type, &b);
    return rc ? rc : s_buf_le(b, bits, n);
}

int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v) {
    if (key && strcmp(key, "general.alignment") == 0) {
        if (v == 0 || (v & (v - 1)) != 0)
            return tis_error(TIS_EINVAL, "gguf_writer: general.alignment = %u is not a power of two", v);
    }
    int rc = s_add_scalar(w, key, GGUF_U32, v, 4);
    if (!rc && strcmp(key, "general.alignment") == 0) w->alignment = v;
    return rc;
}

int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v) {
    return s_add_scalar(w, key, GGUF_I32, (uint32_t)v, 4);
}

int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v) {
    return s_add_scalar(w, key, GGUF_U64, v, 8);
}

int gguf_writer_add_f32(gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return s_add_scalar(w, key, GGUF_F32, bits, 4);
}

int gguf_writer_add_bool(gguf_writer *w, const char *key, int v) {
    return s_add_scalar(w, key, GGUF_BOOL, v != 0, 1);
}

int gguf_writer_add_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return tis_error(TIS_EINVAL, "gguf_writer: NULL string for key '%s'", key ? key : "");
    gguf_buf *b;
    int rc = s_kv_new(w, key, GGUF_STR, &b);
    return rc ? rc : s_buf_str(b, v);
}

/* Elements are copied byte for byte: the host is little-endian like GGUF. */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                        const void *data, uint64_t n) {
    size_t es = (size_t)gguf_vtype_size(elem);
    if (es == 0)
        return tis_error(TIS_EINVAL, "gguf_writer: key '%s': %s arrays need their own call",
                         key ? key : "", gguf_vtype_name(elem));
    if (n > SIZE_MAX / es || (n > 0 && !data))
        return tis_error(TIS_EINVAL, "gguf_writer: key '%s': bad array of %llu elements",
                         key ? key : "", (unsigned long long)n);
    gguf_buf *b;
    int rc = s_kv_new(w, key, GGUF_ARR, &b);
    if (!rc) rc = s_buf_le(b, elem, 4);
    if (!rc) rc = s_buf_le(b, n, 8);
    if (!rc) rc = s_buf_put(b, data, (size_t)n * es);
    return rc;
}

int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            uint64_t n) {
    if (n > 0 && !strs)
        return tis_error(TIS_EINVAL, "gguf_writer: key '%s': NULL string array", key ? key : "");
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i])
            return tis_error(TIS_EINVAL, "gguf_writer: key '%s': string %llu is NULL",
                             key ? key : "", (unsigned long long)i);
    gguf_buf *b;
    int rc = s_kv_new(w, key, GGUF_ARR, &b);
    if (!rc) rc = s_buf_le(b, GGUF_STR, 4);
    if (!rc) rc = s_buf_le(b, n, 8);
    for (uint64_t i = 0; !rc && i < n; i++) rc = s_buf_str(b, strs[i]);
    return rc;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, const float *data) {
    if (!w || !name || !ne || !data)
        return tis_error(TIS_EINVAL, "gguf_writer: NULL argument");
    if (n_dims < 1 || n_dims > 4)
        return tis_error(TIS_EINVAL, "gguf_writer: tensor '%s': n_dims = %u, want 1..4", name,
                         n_dims);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return tis_error(TIS_EINVAL, "gguf_writer: duplicate tensor '%s'", name);
    int64_t full[4] = {1, 1, 1, 1}, nelems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || nelems > INT64_MAX / ne[d])
            return tis_error(TIS_EINVAL, "gguf_writer: tensor '%s': bad ne[%u] = %lld", name,
                             d, (long long)ne[d]);
        full[d] = ne[d];
        nelems *= ne[d];
    }
    size_t row;
    int rc = quant_row_bytes(type, full[0], &row);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", tis_last_error());
        return tis_error(rc, "gguf_writer: tensor '%s': %s", name, why);
    }
    int64_t rows = nelems / full[0];
    if ((uint64_t)rows > SIZE_MAX / row)
        return tis_error(TIS_ERANGE, "gguf_writer: tensor '%s' is too large", name);
    /* the block quantisers convert floats to ints: nan/inf would be undefined */
    if (quant_block_elems(type) > 1) {
        for (int64_t i = 0; i < nelems; i++)
            if (!isfinite(data[i]))
                return tis_error(TIS_EINVAL, "gguf_writer: tensor '%s': element %lld is not "
                                 "finite, cannot quantise to %s",
                                 name, (long long)i, quant_type_name(type));
    }
    rc = s_grow((void **)&w->tensors, w->n_tensors, &w->cap_tensors, sizeof *w->tensors);
    if (rc) return rc;
    gguf_wtensor t = {.name = strdup(name), .n_dims = n_dims, .type = type,
                      .nbytes = row * (size_t)rows};
    memcpy(t.ne, full, sizeof full);
    t.data = malloc(t.nbytes ? t.nbytes : 1);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return tis_error(TIS_ENOMEM, "gguf_writer: out of memory for tensor '%s'", name);
    }
    for (int64_t r = 0; r < rows; r++)
        quant_quantize_row(type, data + r * full[0], t.data + (size_t)r * row, full[0]);
    w->tensors[w->n_tensors++] = t;
    return 0;
}

static size_t s_pad(size_t off, size_t align) { return (align - off % align) % align; }

/* Header, kvs and tensor infos in one buffer; offsets laid out here. */
static int s_encode_meta(const gguf_writer *w, gguf_buf *b) {
    int rc = s_buf_put(b, "GGUF", 4);
    if (!rc) rc = s_buf_le(b, 3, 4);
    if (!rc) rc = s_buf_le(b, (uint64_t)w->n_tensors, 8);
    if (!rc) rc = s_buf_le(b, (uint64_t)w->n_kv, 8);
    for (int64_t i = 0; !rc && i < w->n_kv; i++) {
        rc = s_buf_str(b, w->kvs[i].key);
        if (!rc) rc = s_buf_le(b, w->kvs[i].type, 4);
        if (!rc) rc = s_buf_put(b, w->kvs[i].value.p, w->kvs[i].value.len);
    }
    uint64_t off = 0;
    for (int64_t i = 0; !rc && i < w->n_tensors; i++) {
        const gguf_wtensor *t = &w->tensors[i];
        rc = s_buf_str(b, t->name);
        if (!rc) rc = s_buf_le(b, t->n_dims, 4);
        for (uint32_t d = 0; !rc && d < t->n_dims; d++) rc = s_buf_le(b, (uint64_t)t->ne[d], 8);
        if (!rc) rc = s_buf_le(b, (uint32_t)t->type, 4);
        if (!rc) rc = s_buf_le(b, off, 8);
        off += t->nbytes + s_pad(t->nbytes, w->alignment);
    }
    return rc;
}

static int s_write_all(FILE *fp, const void *p, size_t n, const char *tmp) {
    if (n && fwrite(p, 1, n, fp) != n)
        return tis_error(TIS_EIO, "gguf_writer: %s: write failed: %s", tmp, strerror(errno));
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path) {
    if (!w || !path) return tis_error(TIS_EINVAL, "gguf_writer: NULL writer or path");
    static const uint8_t zeros[256]; /* alignment padding, <= 256 per write */
    gguf_buf meta = {0};
    int rc = s_encode_meta(w, &meta);
    if (rc) {
        free(meta.p);
        return rc;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(meta.p);
        return tis_error(TIS_ENOMEM, "gguf_writer: out of memory");
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = tis_error(TIS_EIO, "gguf_writer: %s: cannot create temp file: %s", tmp,
                       strerror(errno));
        free(tmp);
        free(meta.p);
        return rc;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes it 0600; a model file is for everyone */
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        rc = tis_error(TIS_EIO, "gguf_writer: %s: fdopen: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    rc = s_write_all(fp, meta.p, meta.len, tmp);
    for (size_t pad = s_pad(meta.len, w->alignment); !rc && pad > 0;) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        rc = s_write_all(fp, zeros, n, tmp);
        pad -= n;
    }
    for (int64_t i = 0; !rc && i < w->n_tensors; i++) {
        const gguf_wtensor *t = &w->tensors[i];
        rc = s_write_all(fp, t->data, t->nbytes, tmp);
        size_t pad = i + 1 < w->n_tensors ? s_pad(t->nbytes, w->alignment) : 0;
        while (!rc && pad > 0) {
            size_t n = pad < sizeof zeros ? pad : sizeof zeros;
            rc = s_write_all(fp, zeros, n, tmp);
            pad -= n;
        }
    }
    if (!rc && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
        rc = tis_error(TIS_EIO, "gguf_writer: %s: flush failed: %s", tmp, strerror(errno));
    if (fclose(fp) != 0 && !rc)
        rc = tis_error(TIS_EIO, "gguf_writer: %s: close failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = tis_error(TIS_EIO, "gguf_writer: cannot rename %s to %s: %s", tmp, path,
                       strerror(errno));
    if (!rc) {
        free(tmp);
        free(meta.p);
        return 0;
    }
fail:
    unlink(tmp);
    free(tmp);
    free(meta.p);
    return rc;
}
