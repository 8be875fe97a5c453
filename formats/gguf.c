/* gguf: mmap-based reader for GGUF v2/v3 files, treated as untrusted input.
 *
 * Format (little-endian; see gguf.h for the value encoding):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv      x { str key; u32 vtype; value }
 *   n_tensors x { str name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type; u64 offset }
 *   zero padding to general.alignment (default 32)
 *   data section: tensor i at data_start + offset_i
 *
 * Nothing is trusted: every read goes through a cursor that checks the bytes
 * remain, every count is compared against the bytes left before anything
 * is allocated for it, every product is overflow-checked. Errors name the key
 * or tensor and the byte offset. Keys and names stay views into the file;
 * the only heap memory is the kv/tensor tables, the sorted name indexes and
 * the views of string arrays. */
#define _GNU_SOURCE
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "tis_error.h"

enum { GGUF_DEFAULT_ALIGNMENT = 32, GGUF_MAX_DIMS = 4 };

/* Smallest encodings, used to bound counts by the bytes left:
 * kv = key length + vtype + a 1-byte value; tensor info = name length +
 * n_dims + type + offset (n_dims 0). */
enum { GGUF_MIN_KV_BYTES = 8 + 4 + 1, GGUF_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8 };

/* A name and where it sits in the file's table; sorted by name. */
typedef struct gguf_name_ix {
    gguf_str name;
    int64_t i;
} gguf_name_ix;

struct gguf_file {
    const uint8_t *base; /* the bytes: the mapping, or the caller's buffer */
    size_t size;
    void *map; /* owned mapping (NULL for gguf_open_memory / empty files) */
    size_t map_size;
    uint32_t version;
    size_t alignment;
    size_t data_start; /* byte offset of the data section */
    int64_t n_kv;
    gguf_kv *kvs;          /* [n_kv], file order; STR arrays own their strs */
    gguf_name_ix *kv_ix;   /* [n_kv], sorted by key */
    int64_t n_tensors;
    gguf_tensor *tensors;  /* [n_tensors], file order */
    gguf_name_ix *t_ix;    /* [n_tensors], sorted by name */
};

/* ---- cursor -------------------------------------------------------------- */

typedef struct gguf_rd {
    const uint8_t *p;
    size_t size, pos;
    char what[192]; /* what is being read, for messages: "key 'x'", ... */
} gguf_rd;

static size_t s_left(const gguf_rd *r) { return r->size - r->pos; }

static int s_need(const gguf_rd *r, size_t n, const char *field) {
    if (n <= s_left(r)) return 0;
    return tis_error(TIS_EFORMAT,
                     "gguf: %s: truncated %s: needs %zu bytes at offset %zu, "
                     "only %zu left",
                     r->what, field, n, r->pos, s_left(r));
}

static uint64_t s_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

static int s_rd_uint(gguf_rd *r, int n, uint64_t *out, const char *field) {
    *out = 0;
    int rc = s_need(r, (size_t)n, field);
    if (rc) return rc;
    *out = s_le(r->p + r->pos, n);
    r->pos += (size_t)n;
    return 0;
}

static int s_rd_u32(gguf_rd *r, uint32_t *out, const char *field) {
    uint64_t v = 0;
    int rc = s_rd_uint(r, 4, &v, field);
    *out = (uint32_t)v;
    return rc;
}

static int s_rd_str(gguf_rd *r, gguf_str *out, const char *field) {
    uint64_t len;
    int rc = s_rd_uint(r, 8, &len, field);
    if (rc) return rc;
    if (len > s_left(r))
        return tis_error(TIS_EFORMAT,
                         "gguf: %s: %s length %llu runs past the end of the file "
                         "(offset %zu, %zu bytes left)",
                         r->what, field, (unsigned long long)len, r->pos, s_left(r));
    out->ptr = (const char *)r->p + r->pos;
    out->len = len;
    r->pos += (size_t)len;
    return 0;
}

/* ---- values -------------------------------------------------------------- */

const char *gguf_vtype_name(int type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "str", "array", "u64", "i64", "f64"};
    return type >= 0 && type <= GGUF_F64 ? names[type] : "unknown";
}

int gguf_vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

static int s_read_scalar(gguf_rd *r, uint32_t t, gguf_value *v) {
    uint64_t raw;
    int n = gguf_vtype_size(t);
    int rc = s_rd_uint(r, n, &raw, "value");
    if (rc) return rc;
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: v->u = raw; break;
    case GGUF_BOOL: v->u = raw != 0; break;
    case GGUF_I8: v->i = (int8_t)raw; break;
    case GGUF_I16: v->i = (int16_t)raw; break;
    case GGUF_I32: v->i = (int32_t)raw; break;
    case GGUF_I64: v->i = (int64_t)raw; break;
    case GGUF_F32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, 4);
        v->f = f;
        break;
    }
    case GGUF_F64: memcpy(&v->f, &raw, 8); break;
    default: TIS_ASSERT(!"s_read_scalar: not a scalar type");
    }
    return 0;
}

static int s_read_array(gguf_rd *r, gguf_value *v) {
    uint32_t et;
    uint64_t n;
    int rc = s_rd_u32(r, &et, "array element type");
    if (!rc) rc = s_rd_uint(r, 8, &n, "array length");
    if (rc) return rc;
    if (et == GGUF_ARR)
        return tis_error(TIS_EUNSUPPORTED, "gguf: %s: nested arrays are not supported",
                         r->what);
    v->arr.type = (gguf_vtype)et;
    v->arr.n = n;
    if (et == GGUF_STR) {
        /* each string takes at least its 8-byte length: bounds the views */
        if (n > s_left(r) / 8)
            return tis_error(TIS_EFORMAT,
                             "gguf: %s: array of %llu strings cannot fit in the %zu "
                             "bytes left at offset %zu",
                             r->what, (unsigned long long)n, s_left(r), r->pos);
        if (n == 0) return 0;
        gguf_str *strs = calloc((size_t)n, sizeof *strs);
        if (!strs)
            return tis_error(TIS_ENOMEM, "gguf: %s: out of memory for %llu strings",
                             r->what, (unsigned long long)n);
        v->arr.strs = strs; /* owned by the file from here on, even on error */
        for (uint64_t k = 0; k < n; k++) {
            rc = s_rd_str(r, &strs[k], "array string");
            if (rc) return rc;
        }
        return 0;
    }
    int es = gguf_vtype_size(et);
    if (es == 0)
        return tis_error(TIS_EFORMAT, "gguf: %s: unknown array element type %u",
                         r->what, et);
    if (n > s_left(r) / (size_t)es)
        return tis_error(TIS_EFORMAT,
                         "gguf: %s: array of %llu %s runs past the end of the file "
                         "(offset %zu, %zu bytes left)",
                         r->what, (unsigned long long)n, gguf_vtype_name((int)et),
                         r->pos, s_left(r));
    v->arr.data = r->p + r->pos;
    r->pos += (size_t)n * (size_t)es;
    return 0;
}

static int s_read_value(gguf_rd *r, uint32_t t, gguf_value *v) {
    if (t == GGUF_STR) return s_rd_str(r, &v->str, "string value");
    if (t == GGUF_ARR) return s_read_array(r, v);
    if (gguf_vtype_size(t) == 0)
        return tis_error(TIS_EFORMAT, "gguf: %s: unknown value type %u", r->what, t);
    return s_read_scalar(r, t, v);
}

/* ---- name indexes -------------------------------------------------------- */

static int s_str_cmp(gguf_str a, gguf_str b) {
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int s_ix_cmp(const void *a, const void *b) {
    return s_str_cmp(((const gguf_name_ix *)a)->name, ((const gguf_name_ix *)b)->name);
}

/* Sorts the index and rejects a repeated name. */
static int s_ix_sort(gguf_name_ix *ix, int64_t n, const char *kind) {
    if (n > 1) qsort(ix, (size_t)n, sizeof *ix, s_ix_cmp);
    for (int64_t k = 1; k < n; k++) {
        if (s_str_cmp(ix[k - 1].name, ix[k].name) == 0) {
            int len = ix[k].name.len > 128 ? 128 : (int)ix[k].name.len;
            return tis_error(TIS_EFORMAT, "gguf: duplicate %s '%.*s' (entries #%lld and #%lld)",
                             kind, len, ix[k].name.ptr, (long long)ix[k - 1].i,
                             (long long)ix[k].i);
        }
    }
    return 0;
}

static int64_t s_ix_find(const gguf_name_ix *ix, int64_t n, const char *s) {
    if (!s) return -1;
    gguf_str key = {s, strlen(s)};
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = s_str_cmp(ix[mid].name, key);
        if (c == 0) return ix[mid].i;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ---- parsing ------------------------------------------------------------- */

/* Names in messages: at most 128 bytes of a view. */
#define S_NAME(s) (int)((s).len > 128 ? 128 : (s).len), (s).ptr

static int s_parse_header(gguf_file *f, gguf_rd *r, uint64_t *n_tensors, uint64_t *n_kv) {
    snprintf(r->what, sizeof r->what, "header");
    uint32_t magic;
    int rc = s_rd_u32(r, &magic, "magic");
    if (rc) return rc;
    if (magic != 0x46554747u) /* "GGUF" read as little-endian u32 */
        return tis_error(TIS_EFORMAT, "gguf: bad magic 0x%08x (not a GGUF file)", magic);
    rc = s_rd_u32(r, &f->version, "version");
    if (rc) return rc;
    if (f->version == 0x02000000u || f->version == 0x03000000u)
        return tis_error(TIS_EUNSUPPORTED, "gguf: big-endian GGUF files are not supported");
    if (f->version != 2 && f->version != 3)
        return tis_error(TIS_EUNSUPPORTED, "gguf: version %u is not supported (2 or 3)",
                         f->version);
    rc = s_rd_uint(r, 8, n_tensors, "tensor count");
    if (!rc) rc = s_rd_uint(r, 8, n_kv, "kv count");
    return rc;
}

static int s_parse_kvs(gguf_file *f, gguf_rd *r, uint64_t n_kv) {
    if (n_kv > s_left(r) / GGUF_MIN_KV_BYTES)
        return tis_error(TIS_EFORMAT,
                         "gguf: header claims %llu key/value pairs, more than the "
                         "%zu bytes after the header can hold",
                         (unsigned long long)n_kv, s_left(r));
    f->kvs = calloc((size_t)n_kv + 1, sizeof *f->kvs);
    f->kv_ix = calloc((size_t)n_kv + 1, sizeof *f->kv_ix);
    if (!f->kvs || !f->kv_ix)
        return tis_error(TIS_ENOMEM, "gguf: out of memory for %llu key/value pairs",
                         (unsigned long long)n_kv);
    for (uint64_t k = 0; k < n_kv; k++) {
        gguf_kv *kv = &f->kvs[k];
        snprintf(r->what, sizeof r->what, "key #%llu", (unsigned long long)k);
        int rc = s_rd_str(r, &kv->key, "key");
        if (rc) return rc;
        snprintf(r->what, sizeof r->what, "key '%.*s'", S_NAME(kv->key));
        uint32_t t;
        rc = s_rd_u32(r, &t, "value type");
        if (rc) return rc;
        kv->value.type = (gguf_vtype)t;
        f->n_kv = (int64_t)k + 1; /* from here the entry is freed by destroy */
        rc = s_read_value(r, t, &kv->value);
        if (rc) return rc;
        f->kv_ix[k] = (gguf_name_ix){kv->key, (int64_t)k};
    }
    return s_ix_sort(f->kv_ix, f->n_kv, "key");
}

static int s_parse_alignment(gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_kv_find(f, "general.alignment");
    if (!kv) return 0;
    if (kv->value.type != GGUF_U32)
        return tis_error(TIS_EFORMAT, "gguf: general.alignment has type %s, expected u32",
                         gguf_vtype_name(kv->value.type));
    uint64_t a = kv->value.u;
    if (a == 0 || (a & (a - 1)) != 0)
        return tis_error(TIS_EFORMAT,
                         "gguf: general.alignment = %llu is not a power of two",
                         (unsigned long long)a);
    f->alignment = (size_t)a;
    return 0;
}

/* One tensor info: shape and type checked, byte size computed with overflow
 * checks; the data bounds are checked once the data section is known. */
static int s_parse_tensor_info(gguf_rd *r, gguf_tensor *t, uint64_t k) {
    snprintf(r->what, sizeof r->what, "tensor #%llu", (unsigned long long)k);
    int rc = s_rd_str(r, &t->name, "tensor name");
    if (rc) return rc;
    snprintf(r->what, sizeof r->what, "tensor '%.*s'", S_NAME(t->name));
    rc = s_rd_u32(r, &t->n_dims, "n_dims");
    if (rc) return rc;
    if (t->n_dims > GGUF_MAX_DIMS)
        return tis_error(TIS_EFORMAT, "gguf: %s: n_dims = %u, at most %d supported",
                         r->what, t->n_dims, GGUF_MAX_DIMS);
    int64_t nelems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        rc = s_rd_uint(r, 8, &ne, "shape");
        if (rc) return rc;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return tis_error(TIS_EFORMAT, "gguf: %s: ne[%u] = %lld is not positive",
                             r->what, d, (long long)(int64_t)ne);
        t->ne[d] = (int64_t)ne;
        if (nelems > INT64_MAX / t->ne[d])
            return tis_error(TIS_ERANGE, "gguf: %s: element count overflows int64 at ne[%u]",
                             r->what, d);
        nelems *= t->ne[d];
    }
    uint32_t type;
    rc = s_rd_u32(r, &type, "type");
    if (!rc) rc = s_rd_uint(r, 8, &t->offset, "offset");
    if (rc) return rc;
    const char *tname = type < GGML_TYPE_COUNT ? quant_type_name((int)type) : NULL;
    if (!tname)
        return tis_error(TIS_EFORMAT, "gguf: %s: unknown ggml type id %u", r->what, type);
    t->type = (int)type;
    if (!quant_type_supported((int)type))
        return tis_error(TIS_EUNSUPPORTED, "gguf: %s: ggml type %s (id %u) is not supported",
                         r->what, tname, type);
    size_t row;
    rc = quant_row_bytes((int)type, t->ne[0], &row);
    if (rc == TIS_EFORMAT)
        return tis_error(rc, "gguf: %s: ne[0] = %lld is not a multiple of the %s block (%lld)",
                         r->what, (long long)t->ne[0], tname,
                         (long long)quant_block_elems((int)type));
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", tis_last_error());
        return tis_error(rc, "gguf: %s: %s", r->what, why);
    }
    uint64_t rows = (uint64_t)(nelems / t->ne[0]);
    if (row != 0 && rows > SIZE_MAX / row)
        return tis_error(TIS_ERANGE, "gguf: %s: byte size overflows size_t", r->what);
    t->nbytes = row * (size_t)rows;
    return 0;
}

static int s_parse_tensors(gguf_file *f, gguf_rd *r, uint64_t n_tensors) {
    if (n_tensors > s_left(r) / GGUF_MIN_TENSOR_BYTES)
        return tis_error(TIS_EFORMAT,
                         "gguf: header claims %llu tensors, more than the %zu bytes "
                         "after the metadata can describe",
                         (unsigned long long)n_tensors, s_left(r));
    f->tensors = calloc((size_t)n_tensors + 1, sizeof *f->tensors);
    f->t_ix = calloc((size_t)n_tensors + 1, sizeof *f->t_ix);
    if (!f->tensors || !f->t_ix)
        return tis_error(TIS_ENOMEM, "gguf: out of memory for %llu tensors",
                         (unsigned long long)n_tensors);
    for (uint64_t k = 0; k < n_tensors; k++) {
        int rc = s_parse_tensor_info(r, &f->tensors[k], k);
        if (rc) return rc;
        f->t_ix[k] = (gguf_name_ix){f->tensors[k].name, (int64_t)k};
    }
    f->n_tensors = (int64_t)n_tensors;
    int rc = s_ix_sort(f->t_ix, f->n_tensors, "tensor name");
    if (rc) return rc;

    /* data section: after the infos, padded to the alignment */
    size_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    f->data_start = r->pos + pad; /* pos <= size, alignment <= 2^31: no overflow */
    if (n_tensors > 0 && f->data_start > f->size)
        return tis_error(TIS_EFORMAT,
                         "gguf: data section would start at %zu, past the end of the "
                         "file (%zu bytes)",
                         f->data_start, f->size);
    size_t avail = n_tensors > 0 ? f->size - f->data_start : 0;
    for (int64_t k = 0; k < f->n_tensors; k++) {
        gguf_tensor *t = &f->tensors[k];
        if (t->offset % f->alignment != 0)
            return tis_error(TIS_EFORMAT,
                             "gguf: tensor '%.*s': offset %llu is not a multiple of the "
                             "alignment %zu",
                             S_NAME(t->name), (unsigned long long)t->offset, f->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return tis_error(TIS_EFORMAT,
                             "gguf: tensor '%.*s': data [%llu, +%zu) runs past the end of "
                             "the data section (%zu bytes)",
                             S_NAME(t->name), (unsigned long long)t->offset, t->nbytes, avail);
        t->data = f->base + f->data_start + t->offset;
    }
    return 0;
}

static int s_parse(gguf_file *f) {
    gguf_rd r = {.p = f->base, .size = f->size, .pos = 0};
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = s_parse_header(f, &r, &n_tensors, &n_kv);
    if (!rc) rc = s_parse_kvs(f, &r, n_kv);
    if (!rc) rc = s_parse_alignment(f);
    if (!rc) rc = s_parse_tensors(f, &r, n_tensors);
    return rc;
}

/* ---- open / destroy ------------------------------------------------------ */

int gguf_open_memory(gguf_file **out, const void *data, size_t size) {
    static const uint8_t empty[1];
    *out = NULL;
    if (!data && size > 0) return tis_error(TIS_EINVAL, "gguf: NULL buffer of %zu bytes", size);
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return tis_error(TIS_ENOMEM, "gguf: out of memory");
    f->base = data && size > 0 ? data : empty;
    f->size = size;
    int rc = s_parse(f);
    if (rc) {
        gguf_destroy(&f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Re-issues the current message as "gguf: <path>: <rest>". */
static int s_with_path(int rc, const char *path) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tis_last_error());
    const char *rest = strncmp(msg, "gguf: ", 6) == 0 ? msg + 6 : msg;
    return tis_error(rc, "gguf: %s: %s", path, rest);
}

int gguf_open(gguf_file **out, const char *path) {
    *out = NULL;
    if (!path) return tis_error(TIS_EINVAL, "gguf: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tis_error(TIS_EIO, "gguf: %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tis_error(TIS_EIO, "gguf: %s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tis_error(TIS_EIO, "gguf: %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return tis_error(TIS_ERANGE, "gguf: %s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return tis_error(TIS_EIO, "gguf: %s: cannot mmap %zu bytes: %s", path, size,
                             strerror(e));
        }
    }
    close(fd); /* the mapping stays valid */
    gguf_file *f;
    int rc = gguf_open_memory(&f, map, size);
    if (rc) {
        if (map) munmap(map, size);
        return s_with_path(rc, path);
    }
    f->map = map;
    f->map_size = size;
    *out = f;
    return 0;
}

void gguf_destroy(gguf_file **p) {
    if (!p || !*p) return;
    gguf_file *f = *p;
    for (int64_t k = 0; k < f->n_kv; k++) {
        gguf_value *v = &f->kvs[k].value;
        if (v->type == GGUF_ARR && v->arr.type == GGUF_STR) free((void *)v->arr.strs);
    }
    free(f->kvs);
    free(f->kv_ix);
    free(f->tensors);
    free(f->t_ix);
    if (f->map) munmap(f->map, f->map_size);
    free(f);
    *p = NULL;
}

/* ---- accessors ----------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
int64_t gguf_kv_count(const gguf_file *f) { return f->n_kv; }
int64_t gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_kv *gguf_kv_find(const gguf_file *f, const char *key) {
    int64_t i = s_ix_find(f->kv_ix, f->n_kv, key);
    return i < 0 ? NULL : &f->kvs[i];
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name) {
    int64_t i = s_ix_find(f->t_ix, f->n_tensors, name);
    return i < 0 ? NULL : &f->tensors[i];
}

int64_t gguf_tensor_nelems(const gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* checked at open */
}

bool gguf_str_eq(gguf_str a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

/* ---- typed getters ------------------------------------------------------- */

static int s_find(const gguf_file *f, const char *key, const gguf_kv **kv) {
    *kv = gguf_kv_find(f, key);
    if (!*kv) return tis_error(TIS_ENOTFOUND, "gguf: key '%s' not found", key ? key : "(null)");
    return 0;
}

static int s_type_error(const char *key, gguf_vtype have, const char *want) {
    return tis_error(TIS_EFORMAT, "gguf: key '%s' has type %s, expected %s", key,
                     gguf_vtype_name(have), want);
}

/* Integer value as (negative?, magnitude-or-value) for range checks. */
static int s_get_int(const gguf_file *f, const char *key, const char *want, int64_t lo,
                     uint64_t hi, uint64_t *u, int64_t *i) {
    const gguf_kv *kv;
    int rc = s_find(f, key, &kv);
    if (rc) return rc;
    const gguf_value *v = &kv->value;
    switch (v->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        if (v->u > hi)
            return tis_error(TIS_EFORMAT, "gguf: key '%s' = %llu does not fit %s", key,
                             (unsigned long long)v->u, want);
        *u = v->u;
        *i = (int64_t)v->u; /* hi <= INT64_MAX whenever *i is used */
        return 0;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        if (v->i < lo || (v->i >= 0 && (uint64_t)v->i > hi))
            return tis_error(TIS_EFORMAT, "gguf: key '%s' = %lld does not fit %s", key,
                             (long long)v->i, want);
        *u = (uint64_t)v->i;
        *i = v->i;
        return 0;
    default: return s_type_error(key, v->type, want);
    }
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    uint64_t u = 0;
    int64_t i = 0;
    int rc = s_get_int(f, key, "u32", 0, UINT32_MAX, &u, &i);
    if (!rc) *out = (uint32_t)u;
    return rc;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    uint64_t u = 0;
    int64_t i = 0;
    int rc = s_get_int(f, key, "i64", INT64_MIN, INT64_MAX, &u, &i);
    if (!rc) *out = i;
    return rc;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv;
    int rc = s_find(f, key, &kv);
    if (rc) return rc;
    if (kv->value.type != GGUF_F32 && kv->value.type != GGUF_F64)
        return s_type_error(key, kv->value.type, "f32 or f64");
    *out = (float)kv->value.f;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv;
    int rc = s_find(f, key, &kv);
    if (rc) return rc;
    if (kv->value.type != GGUF_BOOL) return s_type_error(key, kv->value.type, "bool");
    *out = kv->value.u != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv;
    int rc = s_find(f, key, &kv);
    if (rc) return rc;
    if (kv->value.type != GGUF_STR) return s_type_error(key, kv->value.type, "str");
    *out = kv->value.str;
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype elem,
                 const gguf_value **out) {
    const gguf_kv *kv;
    int rc = s_find(f, key, &kv);
    if (rc) return rc;
    if (kv->value.type != GGUF_ARR) return s_type_error(key, kv->value.type, "array");
    if (kv->value.arr.type != elem)
        return tis_error(TIS_EFORMAT, "gguf: key '%s' is an array of %s, expected %s", key,
                         gguf_vtype_name(kv->value.arr.type), gguf_vtype_name(elem));
    *out = &kv->value;
    return 0;
}
