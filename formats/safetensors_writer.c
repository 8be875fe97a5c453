/* safetensors_writer: writes a .safetensors file (format in safetensors.h).
 *
 * As the reference writer: tensors ordered by dtype size (largest first),
 * then name, so that every tensor is aligned to its dtype when the data
 * section is; the JSON header is padded with spaces to a multiple of 8
 * bytes, so the data section starts 8-aligned; "__metadata__" comes first.
 * The file appears atomically: written to a temp file in the same
 * directory, fsync'd, then renamed over `path`. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "tis_error.h"

typedef struct st_wtensor {
    char *name;       /* owned */
    st_dtype dtype;
    int n_dims;
    int64_t shape[8];
    size_t nbytes;
    void *data;       /* owned copy, [nbytes] (NULL when 0) */
} st_wtensor;

struct st_writer {
    int64_t n, cap;
    st_wtensor *t;    /* [cap] */
    int64_t n_meta, cap_meta;
    struct { char *key, *value; } *meta; /* [cap_meta], strings owned */
};

st_writer *st_writer_new(void) {
    st_writer *w = calloc(1, sizeof *w);
    if (!w) tis_error(TIS_ENOMEM, "safetensors: out of memory");
    return w;
}

void st_writer_destroy(st_writer **p) {
    if (!p || !*p) return;
    st_writer *w = *p;
    for (int64_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (int64_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
    *p = NULL;
}

/* Grows an array of `elem`-byte items to hold one more; 0 or ENOMEM. */
static int s_grow(void **arr, int64_t n, int64_t *cap, size_t elem) {
    if (n < *cap) return 0;
    int64_t c = *cap ? 2 * *cap : 16;
    void *a = realloc(*arr, (size_t)c * elem);
    if (!a) return tis_error(TIS_ENOMEM, "safetensors: out of memory");
    *arr = a;
    *cap = c;
    return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                  const int64_t *shape, const void *data) {
    if (!w || !name || !name[0] || !strcmp(name, "__metadata__"))
        return tis_error(TIS_EINVAL, "safetensors: writer: bad tensor name '%s'",
                         name ? name : "(null)");
    if (st_dtype_size(dtype) == 0)
        return tis_error(TIS_EINVAL, "safetensors: writer: tensor '%s': bad dtype %d", name,
                         (int)dtype);
    if (n_dims < 0 || n_dims > 8 || (n_dims > 0 && !shape))
        return tis_error(TIS_EINVAL, "safetensors: writer: tensor '%s': %d dims (0..8)", name,
                         n_dims);
    size_t nbytes;
    int rc = st_shape_nbytes(dtype, n_dims, shape, &nbytes);
    if (rc == TIS_EFORMAT)
        return tis_error(TIS_EINVAL, "safetensors: writer: tensor '%s': negative dim", name);
    if (rc) return tis_error(rc, "safetensors: writer: tensor '%s': size overflows", name);
    if (nbytes && !data)
        return tis_error(TIS_EINVAL, "safetensors: writer: tensor '%s': no data", name);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return tis_error(TIS_EINVAL, "safetensors: writer: tensor '%s' added twice", name);
    if ((rc = s_grow((void **)&w->t, w->n, &w->cap, sizeof *w->t))) return rc;
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = nbytes ? malloc(nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        free(t->name);
        free(t->data);
        return tis_error(TIS_ENOMEM, "safetensors: writer: tensor '%s': out of memory (%zu B)",
                         name, nbytes);
    }
    if (nbytes) memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return 0;
}

int st_writer_add_metadata(st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return tis_error(TIS_EINVAL, "safetensors: writer: NULL metadata key or value");
    for (int64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return tis_error(TIS_EINVAL, "safetensors: writer: metadata '%s' added twice", key);
    int rc = s_grow((void **)&w->meta, w->n_meta, &w->cap_meta, sizeof *w->meta);
    if (rc) return rc;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return tis_error(TIS_ENOMEM, "safetensors: out of memory");
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return 0;
}

/* A growing text buffer for the header. */
typedef struct s_buf {
    char *p;
    size_t n, cap;
    bool oom;
} s_buf;

static void s_put(s_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 1024;
        while (c < b->n + n + 1) c *= 2;
        char *p = realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void s_puts(s_buf *b, const char *s) { s_put(b, s, strlen(s)); }

static void s_putu(s_buf *b, uint64_t v) {
    char tmp[24];
    s_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A JSON string: quotes, backslash and control characters escaped; other
 * bytes (UTF-8) pass through. */
static void s_put_str(s_buf *b, const char *s) {
    s_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            s_put(b, esc, 2);
        } else if (c < 0x20) {
            s_put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
        } else {
            s_put(b, (const char *)&c, 1);
        }
    }
    s_puts(b, "\"");
}

static int s_cmp_write_order(const void *a, const void *b, void *ctx) {
    const st_wtensor *t = ctx;
    const st_wtensor *x = &t[*(const int64_t *)a], *y = &t[*(const int64_t *)b];
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The header JSON, padded with spaces to a multiple of 8 bytes. */
static int s_header_build(const st_writer *w, const int64_t *order, s_buf *b) {
    s_puts(b, "{");
    bool first = true;
    if (w->n_meta) {
        s_puts(b, "\"__metadata__\":{");
        for (int64_t i = 0; i < w->n_meta; i++) {
            if (i) s_puts(b, ",");
            s_put_str(b, w->meta[i].key);
            s_puts(b, ":");
            s_put_str(b, w->meta[i].value);
        }
        s_puts(b, "}");
        first = false;
    }
    uint64_t off = 0;
    for (int64_t j = 0; j < w->n; j++) {
        const st_wtensor *t = &w->t[order[j]];
        if (!first) s_puts(b, ",");
        first = false;
        s_put_str(b, t->name);
        s_puts(b, ":{\"dtype\":\"");
        s_puts(b, st_dtype_name(t->dtype));
        s_puts(b, "\",\"shape\":[");
        for (int i = 0; i < t->n_dims; i++) {
            if (i) s_puts(b, ",");
            s_putu(b, (uint64_t)t->shape[i]);
        }
        s_puts(b, "],\"data_offsets\":[");
        s_putu(b, off);
        s_puts(b, ",");
        if (__builtin_add_overflow(off, (uint64_t)t->nbytes, &off))
            return tis_error(TIS_ERANGE, "safetensors: writer: total size overflows");
        s_putu(b, off);
        s_puts(b, "]}");
    }
    s_puts(b, "}");
    while (b->n % 8) s_puts(b, " ");
    if (b->oom) return tis_error(TIS_ENOMEM, "safetensors: writer: out of memory for the header");
    return 0;
}

/* fwrite that keeps the first error. */
static void s_fwrite(FILE *fp, const void *p, size_t n, bool *ok) {
    if (*ok && n && fwrite(p, 1, n, fp) != n) *ok = false;
}

int st_writer_write(st_writer *w, const char *path) {
    if (!w || !path) return tis_error(TIS_EINVAL, "safetensors: writer: NULL argument");
    int64_t *order = malloc(((size_t)w->n + 1) * sizeof *order);
    s_buf hdr = {0};
    char *tmp = NULL;
    int rc = 0, fd = -1;
    bool created = false;
    if (!order || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
        tmp = NULL;
        rc = tis_error(TIS_ENOMEM, "safetensors: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < w->n; i++) order[i] = i;
    qsort_r(order, (size_t)w->n, sizeof *order, s_cmp_write_order, w->t);
    if ((rc = s_header_build(w, order, &hdr))) goto done;
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = tis_error(TIS_EIO, "safetensors: cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    created = true;
    if (fchmod(fd, 0644) != 0) { /* mkstemp makes 0600; checkpoints are shared */
        rc = tis_error(TIS_EIO, "safetensors: cannot chmod %s: %s", tmp, strerror(errno));
        goto done;
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        rc = tis_error(TIS_EIO, "safetensors: cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1; /* owned by fp now */
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hdr.n >> (8 * i));
    bool ok = true;
    s_fwrite(fp, len8, 8, &ok);
    s_fwrite(fp, hdr.p, hdr.n, &ok);
    for (int64_t j = 0; j < w->n; j++) s_fwrite(fp, w->t[order[j]].data, w->t[order[j]].nbytes, &ok);
    if (ok && fflush(fp) != 0) ok = false;
    if (ok && fsync(fileno(fp)) != 0) ok = false;
    int e = errno;
    if (fclose(fp) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        rc = tis_error(TIS_EIO, "safetensors: cannot write %s: %s", tmp, strerror(e));
        goto done;
    }
    if (rename(tmp, path) != 0)
        rc = tis_error(TIS_EIO, "safetensors: cannot rename %s to %s: %s", tmp, path,
                       strerror(errno));
done:
    if (fd >= 0) close(fd);
    if (rc && created) unlink(tmp);
    free(tmp);
    free(hdr.p);
    free(order);
    return rc;
}
