/* safetensors: mmap reader for one .safetensors file (untrusted input).
 *
 * Format (as formats/safetensors.h): u64 header_len (little-endian), then
 * header_len bytes of UTF-8 JSON, an object mapping tensor names to
 *   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * plus an optional "__metadata__": {str: str}; the reference writer pads
 * the JSON with trailing spaces so that the data section starts 8-aligned.
 * Then the data section; [begin, end) is relative to its start, row-major,
 * little-endian.
 *
 * Every number is checked before it is used: the header length against the
 * file, each dim for sign and integrality, the element count and byte size
 * for overflow, [begin, end) against the data section and against
 * prod(shape) * dtype size, and no two non-empty tensors may share a byte.
 * The reference reader additionally requires the tensors to tile the data
 * section exactly; gaps and trailing bytes are tolerated here (they cannot
 * cause an out-of-bounds read). Tensor data is NOT guaranteed to be aligned
 * to its dtype in files from old writers: read through memcpy or check. */
#define _GNU_SOURCE
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tis_error.h"

/* Larger than any real header (a 405B model's is ~100 KB per shard); the
 * reference implementation caps at the same 100 MB. */
#define ST_HEADER_MAX ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_DIMS 8

struct st_file {
    const char *path;        /* copy, for messages (in the block) */
    const uint8_t *map;      /* whole file, read-only mapping; owned */
    size_t map_len;
    int64_t n_tensors;
    st_tensor *tensors;      /* [n_tensors], header order (in the block) */
    int64_t *by_name;        /* [n_tensors] indices sorted by name */
    int64_t n_meta;
    const char **meta_key;   /* [n_meta] (in the block) */
    const char **meta_val;   /* [n_meta] */
};

static const struct {
    const char *name;
    size_t size;
} s_dtypes[] = {
    [ST_F32] = {"F32", 4},  [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},  [ST_I64] = {"I64", 8},   [ST_U8] = {"U8", 1},
    [ST_I8] = {"I8", 1},    [ST_F64] = {"F64", 8},   [ST_BOOL] = {"BOOL", 1},
    [ST_I16] = {"I16", 2},  [ST_U16] = {"U16", 2},   [ST_U32] = {"U32", 4},
    [ST_U64] = {"U64", 8},
};
#define ST_N_DTYPES ((int)(sizeof s_dtypes / sizeof s_dtypes[0]))

/* dtypes of the format that tis does not handle: EUNSUPPORTED, not EFORMAT. */
static const char *const s_dtypes_other[] = {
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64",
};

size_t st_dtype_size(st_dtype t) {
    return (int)t >= 0 && (int)t < ST_N_DTYPES ? s_dtypes[t].size : 0;
}

const char *st_dtype_name(st_dtype t) {
    return (int)t >= 0 && (int)t < ST_N_DTYPES ? s_dtypes[t].name : "?";
}

int st_dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(s, s_dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    for (size_t i = 0; i < sizeof s_dtypes_other / sizeof *s_dtypes_other; i++)
        if (strcmp(s, s_dtypes_other[i]) == 0) return TIS_EUNSUPPORTED;
    return TIS_EFORMAT;
}

int st_shape_nbytes(st_dtype t, int n_dims, const int64_t *shape, size_t *nbytes) {
    uint64_t n = st_dtype_size(t);
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0) return TIS_EFORMAT;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return TIS_ERANGE;
    }
    if (n > SIZE_MAX) return TIS_ERANGE;
    *nbytes = (size_t)n;
    return 0;
}

/* A JSON number that is an exact non-negative integer below 2^53 (the
 * doubles cJSON holds are exact there); -1 when negative, -2 otherwise. */
static int s_json_count(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -2;
    double d = j->valuedouble;
    if (d < 0) return -1;
    if (!(d <= 9007199254740992.0)) return -2; /* also NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return -2;
    *out = u;
    return 0;
}

static int s_cmp_name(const void *a, const void *b, void *ctx) {
    const st_tensor *t = ctx;
    return strcmp(t[*(const int64_t *)a].name, t[*(const int64_t *)b].name);
}

/* Byte ranges, for the overlap check: sorted by begin. */
typedef struct s_range {
    size_t begin, end;
    int64_t i;
} s_range;

static int s_cmp_range(const void *a, const void *b) {
    const s_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Names in messages are clipped: a hostile header may hold a 100 MB name. */
#define NM(s) (int)(strlen(s) > 160 ? 160 : strlen(s)), (s)

/* Fills t from one header entry; the data section is data[0, data_len). */
static int s_tensor_parse(st_tensor *t, const cJSON *e, const char *path,
                          const uint8_t *data, size_t data_len, size_t *begin) {
    const char *nm = e->string;
    if (!cJSON_IsObject(e))
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': entry is not an object",
                         path, NM(nm));
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!jd || !js || !jo)
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': missing field '%s'", path,
                         NM(nm), !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!cJSON_IsString(jd))
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': dtype is not a string",
                         path, NM(nm));
    int rc = st_dtype_from_name(jd->valuestring, &t->dtype);
    if (rc == TIS_EUNSUPPORTED)
        return tis_error(rc, "safetensors: %s: tensor '%.*s': dtype %.16s is not supported", path,
                         NM(nm), jd->valuestring);
    if (rc) return tis_error(rc, "safetensors: %s: tensor '%.*s': unknown dtype '%.16s'", path,
                             NM(nm), jd->valuestring);
    if (!cJSON_IsArray(js))
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': shape is not an array",
                         path, NM(nm));
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return tis_error(TIS_EUNSUPPORTED, "safetensors: %s: tensor '%.*s': %d dims, at most %d",
                         path, NM(nm), nd, ST_MAX_DIMS);
    t->n_dims = nd;
    int k = 0;
    for (const cJSON *d = js->child; d; d = d->next, k++) {
        uint64_t v;
        rc = s_json_count(d, &v);
        if (rc == -1)
            return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': dim %d is negative",
                             path, NM(nm), k);
        if (rc)
            return tis_error(TIS_EFORMAT,
                             "safetensors: %s: tensor '%.*s': dim %d is not an integer in [0, 2^53]",
                             path, NM(nm), k);
        t->shape[k] = (int64_t)v;
    }
    if (st_shape_nbytes(t->dtype, nd, t->shape, &t->nbytes))
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': shape overflows a size",
                         path, NM(nm));
    uint64_t off[2];
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || s_json_count(jo->child, &off[0]) ||
        s_json_count(jo->child->next, &off[1]))
        return tis_error(TIS_EFORMAT,
                         "safetensors: %s: tensor '%.*s': data_offsets is not [begin, end] "
                         "with non-negative integers", path, NM(nm));
    if (off[0] > off[1])
        return tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': begin %llu > end %llu",
                         path, NM(nm), (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > data_len)
        return tis_error(TIS_EFORMAT,
                         "safetensors: %s: tensor '%.*s': end %llu is past the data section "
                         "(%zu bytes; file truncated?)",
                         path, NM(nm), (unsigned long long)off[1], data_len);
    if (off[1] - off[0] != t->nbytes)
        return tis_error(TIS_EFORMAT,
                         "safetensors: %s: tensor '%.*s': data_offsets span %llu bytes, "
                         "shape x %s needs %zu",
                         path, NM(nm), (unsigned long long)(off[1] - off[0]),
                         st_dtype_name(t->dtype), t->nbytes);
    t->data = data + off[0];
    *begin = (size_t)off[0];
    return 0;
}

/* Counts entries and string bytes; validates the metadata object. */
static int s_header_scan(const cJSON *root, const char *path, int64_t *n_t, int64_t *n_m,
                         size_t *str_bytes, const cJSON **meta) {
    *n_t = *n_m = 0;
    *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") != 0) {
            (*n_t)++;
            *str_bytes += strlen(e->string) + 1;
            continue;
        }
        if (*meta)
            return tis_error(TIS_EFORMAT, "safetensors: %s: '__metadata__' appears twice", path);
        *meta = e;
        if (cJSON_IsNull(e)) continue;
        if (!cJSON_IsObject(e))
            return tis_error(TIS_EFORMAT, "safetensors: %s: '__metadata__' is not an object", path);
        for (const cJSON *m = e->child; m; m = m->next) {
            if (!cJSON_IsString(m))
                return tis_error(TIS_EFORMAT, "safetensors: %s: metadata '%.*s' is not a string",
                                 path, NM(m->string));
            (*n_m)++;
            *str_bytes += strlen(m->string) + strlen(m->valuestring) + 2;
        }
    }
    return 0;
}

static char *s_strcpy(char **pool, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = *pool;
    memcpy(d, s, n);
    *pool += n;
    return d;
}

/* Parses the header JSON into f's tensor table (f->map is set). */
static int s_header_parse(st_file **out, const char *path, const uint8_t *map, size_t len,
                          uint64_t hlen) {
    const char *hdr = (const char *)map + 8;
    if (memchr(hdr, 0, hlen))
        return tis_error(TIS_EFORMAT, "safetensors: %s: header contains a NUL byte", path);
    /* cJSON wants the terminating NUL inside the length to reject trailing
     * junk, and the mapping has none: parse a copy. */
    char *txt = malloc((size_t)hlen + 1);
    if (!txt) return tis_error(TIS_ENOMEM, "safetensors: %s: out of memory for the header", path);
    memcpy(txt, hdr, hlen);
    txt[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(txt, hlen + 1, &end, 1);
    ptrdiff_t at = end ? end - txt : -1;
    free(txt);
    if (!root)
        return tis_error(TIS_EFORMAT,
                         "safetensors: %s: header is not valid JSON (error near byte %td of %llu)",
                         path, at, (unsigned long long)hlen);
    int rc = 0;
    st_file *f = NULL;
    s_range *ranges = NULL;
    if (!cJSON_IsObject(root)) {
        rc = tis_error(TIS_EFORMAT, "safetensors: %s: header is not a JSON object", path);
        goto done;
    }
    int64_t n_t, n_m;
    size_t str_bytes = strlen(path) + 1;
    const cJSON *meta;
    if ((rc = s_header_scan(root, path, &n_t, &n_m, &str_bytes, &meta))) goto done;

    /* One block: struct, tensors, by_name, metadata pointers, strings. */
    size_t sz = sizeof *f + (size_t)n_t * (sizeof(st_tensor) + sizeof(int64_t)) +
                (size_t)n_m * 2 * sizeof(char *) + str_bytes;
    f = calloc(1, sz);
    ranges = malloc(((size_t)n_t + 1) * sizeof *ranges);
    if (!f || !ranges) {
        rc = tis_error(TIS_ENOMEM, "safetensors: %s: out of memory for %lld tensors", path,
                       (long long)n_t);
        goto done;
    }
    f->tensors = (st_tensor *)(f + 1);
    f->by_name = (int64_t *)(f->tensors + n_t);
    f->meta_key = (const char **)(f->by_name + n_t);
    f->meta_val = f->meta_key + n_m;
    char *pool = (char *)(f->meta_val + n_m);
    f->path = s_strcpy(&pool, path);
    f->map = map;
    f->map_len = len;
    const uint8_t *data = map + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        st_tensor *t = &f->tensors[f->n_tensors];
        if ((rc = s_tensor_parse(t, e, path, data, data_len, &ranges[f->n_tensors].begin)))
            goto done;
        t->name = s_strcpy(&pool, e->string);
        ranges[f->n_tensors].end = ranges[f->n_tensors].begin + t->nbytes;
        ranges[f->n_tensors].i = f->n_tensors;
        f->by_name[f->n_tensors] = f->n_tensors;
        f->n_tensors++;
    }
    if (meta)
        for (const cJSON *m = meta->child; m; m = m->next, f->n_meta++) {
            f->meta_key[f->n_meta] = s_strcpy(&pool, m->string);
            f->meta_val[f->n_meta] = s_strcpy(&pool, m->valuestring);
        }
    qsort_r(f->by_name, (size_t)n_t, sizeof(int64_t), s_cmp_name, f->tensors);
    for (int64_t i = 1; i < n_t; i++) {
        const char *a = f->tensors[f->by_name[i - 1]].name, *b = f->tensors[f->by_name[i]].name;
        if (strcmp(a, b) == 0) {
            rc = tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s' appears twice", path,
                           NM(a));
            goto done;
        }
    }
    /* Empty tensors own no bytes; every other pair must be disjoint. */
    int64_t n_r = 0;
    for (int64_t i = 0; i < n_t; i++)
        if (ranges[i].end > ranges[i].begin) ranges[n_r++] = ranges[i];
    qsort(ranges, (size_t)n_r, sizeof *ranges, s_cmp_range);
    for (int64_t i = 1; i < n_r; i++)
        if (ranges[i].begin < ranges[i - 1].end) {
            rc = tis_error(TIS_EFORMAT, "safetensors: %s: tensors '%.*s' and '%.*s' overlap", path,
                           NM(f->tensors[ranges[i - 1].i].name), NM(f->tensors[ranges[i].i].name));
            goto done;
        }
done:
    cJSON_Delete(root);
    free(ranges);
    if (rc) {
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int st_open(st_file **out, const char *path) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tis_error(TIS_EIO, "safetensors: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tis_error(TIS_EIO, "safetensors: cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return tis_error(TIS_EIO, "safetensors: %s: %s", path,
                         S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return tis_error(TIS_EFORMAT,
                         "safetensors: %s: %zu bytes, too short for the 8-byte header length",
                         path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return tis_error(TIS_EIO, "safetensors: cannot map %s: %s", path, strerror(errno));
    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    int rc;
    if (hlen > ST_HEADER_MAX)
        rc = tis_error(TIS_EFORMAT, "safetensors: %s: header length %llu is over the %llu cap "
                       "(not a safetensors file?)", path, (unsigned long long)hlen,
                       (unsigned long long)ST_HEADER_MAX);
    else if (hlen > len - 8)
        rc = tis_error(TIS_EFORMAT,
                       "safetensors: %s: header length %llu is past the end of the file "
                       "(%zu bytes; truncated?)", path, (unsigned long long)hlen, len);
    else if (hlen < 2)
        rc = tis_error(TIS_EFORMAT, "safetensors: %s: header length %llu is too short for JSON",
                       path, (unsigned long long)hlen);
    else
        rc = s_header_parse(out, path, p, len, hlen);
    if (rc) munmap(map, len);
    return rc;
}

void st_destroy(st_file **p) {
    if (!p || !*p) return;
    munmap((void *)(*p)->map, (*p)->map_len);
    free(*p);
    *p = NULL;
}

const char *st_file_path(const st_file *f) { return f ? f->path : NULL; }

int64_t st_tensor_count(const st_file *f) { return f ? f->n_tensors : 0; }

const st_tensor *st_tensor_at(const st_file *f, int64_t i) {
    return f && i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const st_tensor *st_tensor_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int64_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

int64_t st_metadata_count(const st_file *f) { return f ? f->n_meta : 0; }

void st_metadata_at(const st_file *f, int64_t i, const char **key, const char **value) {
    bool ok = f && i >= 0 && i < f->n_meta;
    if (key) *key = ok ? f->meta_key[i] : NULL;
    if (value) *value = ok ? f->meta_val[i] : NULL;
}

/* ---- model directory: model.safetensors, or shards listed by the index ---- */

struct st_model {
    int64_t n_files;
    st_file **files;          /* [n_files], owned */
    int64_t n;
    const st_tensor **list;   /* [n] shard order, then header order; views into files */
    const st_tensor **sorted; /* [n] by name */
};

static int s_cmp_tensor_ptr(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* The file a tensor pointer of m belongs to (for messages). */
static const char *s_model_file_of(const st_model *m, const st_tensor *t) {
    for (int64_t k = 0; k < m->n_files; k++) {
        const st_file *f = m->files[k];
        if (t >= f->tensors && t < f->tensors + f->n_tensors) return f->path;
    }
    return "?";
}

/* Builds the tensor lists once every file is open; rejects a name that
 * appears in two shards. */
static int s_model_index(st_model *m) {
    for (int64_t k = 0; k < m->n_files; k++) m->n += m->files[k]->n_tensors;
    m->list = malloc(((size_t)m->n + 1) * 2 * sizeof *m->list);
    if (!m->list) return tis_error(TIS_ENOMEM, "safetensors: out of memory for %lld tensors",
                                   (long long)m->n);
    m->sorted = m->list + m->n;
    int64_t j = 0;
    for (int64_t k = 0; k < m->n_files; k++)
        for (int64_t i = 0; i < m->files[k]->n_tensors; i++) m->list[j++] = &m->files[k]->tensors[i];
    memcpy(m->sorted, m->list, (size_t)m->n * sizeof *m->list);
    qsort(m->sorted, (size_t)m->n, sizeof *m->sorted, s_cmp_tensor_ptr);
    for (int64_t i = 1; i < m->n; i++)
        if (strcmp(m->sorted[i - 1]->name, m->sorted[i]->name) == 0)
            return tis_error(TIS_EFORMAT, "safetensors: tensor '%.*s' is in both %s and %s",
                             NM(m->sorted[i]->name), s_model_file_of(m, m->sorted[i - 1]),
                             s_model_file_of(m, m->sorted[i]));
    return 0;
}

static int s_model_add_file(st_model *m, const char *path) {
    st_file **fs = realloc(m->files, ((size_t)m->n_files + 1) * sizeof *fs);
    if (!fs) return tis_error(TIS_ENOMEM, "safetensors: out of memory");
    m->files = fs;
    int rc = st_open(&m->files[m->n_files], path);
    if (rc == 0) m->n_files++;
    return rc;
}

/* Reads a small text file whole (NUL-terminated), at most `cap` bytes. */
static int s_read_text(const char *path, size_t cap, char **out, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return tis_error(TIS_EIO, "safetensors: cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, got;
    int rc = 0;
    do {
        char *b = realloc(buf, n + 65536 + 1);
        if (!b) {
            rc = tis_error(TIS_ENOMEM, "safetensors: out of memory reading %s", path);
            break;
        }
        buf = b;
        got = fread(buf + n, 1, 65536, fp);
        n += got;
        if (n > cap) rc = tis_error(TIS_EFORMAT, "safetensors: %s is over %zu bytes", path, cap);
    } while (!rc && got == 65536);
    if (!rc && ferror(fp)) rc = tis_error(TIS_EIO, "safetensors: cannot read %s", path);
    fclose(fp);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* The index of shard file name `s` in names[0, n), or -1. */
static int64_t s_name_find(const char *const *names, int64_t n, const char *s) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

/* Opens every shard of {"weight_map": {tensor: file}} and checks that each
 * listed tensor is in the file the index names. Shard names are plain file
 * names in `dir`: an untrusted index must not reach outside it. */
static int s_model_open_index(st_model *m, const char *dir, const char *ipath) {
    char *txt = NULL, *path = NULL;
    size_t len = 0;
    int rc = s_read_text(ipath, ST_HEADER_MAX, &txt, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLengthOpts(txt, len + 1, NULL, 1); /* + the NUL */
    const char **names = NULL;
    int64_t n_names = 0;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root || !cJSON_IsObject(root)) {
        rc = tis_error(TIS_EFORMAT, "safetensors: %s is not a JSON object", ipath);
        goto done;
    }
    if (!cJSON_IsObject(wm) || !wm->child) {
        rc = tis_error(TIS_EFORMAT, "safetensors: %s: 'weight_map' is missing, not an object, "
                       "or empty", ipath);
        goto done;
    }
    names = malloc((size_t)cJSON_GetArraySize(wm) * sizeof *names);
    if (!names) {
        rc = tis_error(TIS_ENOMEM, "safetensors: out of memory reading %s", ipath);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!s || !s[0] || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            rc = tis_error(TIS_EFORMAT, "safetensors: %s: tensor '%.*s': shard %s", ipath,
                           NM(e->string), s ? "is not a plain file name" : "is not a string");
            goto done;
        }
        if (s_name_find(names, n_names, s) < 0) names[n_names++] = s;
    }
    for (int64_t k = 0; k < n_names; k++) {
        free(path);
        if (asprintf(&path, "%s/%s", dir, names[k]) < 0) {
            path = NULL;
            rc = tis_error(TIS_ENOMEM, "safetensors: out of memory");
            goto done;
        }
        if ((rc = s_model_add_file(m, path))) {
            char msg[1024];
            const char *inner = tis_last_error();
            if (!strncmp(inner, "safetensors: ", 13)) inner += 13;
            snprintf(msg, sizeof msg, "%s", inner);
            rc = tis_error(rc, "safetensors: %s: shard '%.*s': %s", ipath, NM(names[k]), msg);
            goto done;
        }
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        int64_t k = s_name_find(names, n_names, e->valuestring);
        if (!st_tensor_find(m->files[k], e->string)) {
            rc = tis_error(TIS_EFORMAT, "safetensors: %s lists tensor '%.*s' in %s, which lacks it",
                           ipath, NM(e->string), m->files[k]->path);
            goto done;
        }
    }
done:
    free(path);
    free(names);
    cJSON_Delete(root);
    free(txt);
    return rc;
}

int st_model_open(st_model **out, const char *dir) {
    *out = NULL;
    st_model *m = calloc(1, sizeof *m);
    if (!m) return tis_error(TIS_ENOMEM, "safetensors: out of memory");
    char *single = NULL, *index = NULL;
    struct stat sb;
    int rc;
    if (stat(dir, &sb) != 0) {
        rc = tis_error(TIS_EIO, "safetensors: cannot open %s: %s", dir, strerror(errno));
    } else if (S_ISREG(sb.st_mode)) { /* a .safetensors file given directly */
        rc = s_model_add_file(m, dir);
    } else if (asprintf(&single, "%s/model.safetensors", dir) < 0 ||
               asprintf(&index, "%s/model.safetensors.index.json", dir) < 0) {
        rc = tis_error(TIS_ENOMEM, "safetensors: out of memory");
    } else if (access(single, F_OK) == 0) { /* as transformers: the single file first */
        rc = s_model_add_file(m, single);
    } else if (access(index, F_OK) == 0) {
        rc = s_model_open_index(m, dir, index);
    } else {
        rc = tis_error(TIS_ENOTFOUND,
                       "safetensors: %s has neither model.safetensors nor "
                       "model.safetensors.index.json", dir);
    }
    if (!rc) rc = s_model_index(m);
    free(single);
    free(index);
    if (rc) {
        st_model_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void st_model_destroy(st_model **p) {
    if (!p || !*p) return;
    for (int64_t k = 0; k < (*p)->n_files; k++) st_destroy(&(*p)->files[k]);
    free((*p)->files);
    free((*p)->list);
    free(*p);
    *p = NULL;
}

const st_tensor *st_model_find(const st_model *m, const char *name) {
    if (!m || !name) return NULL;
    st_tensor key = {.name = name};
    const st_tensor *kp = &key;
    const st_tensor **hit = bsearch(&kp, m->sorted, (size_t)m->n, sizeof *m->sorted,
                                    s_cmp_tensor_ptr);
    return hit ? *hit : NULL;
}

int64_t st_model_tensor_count(const st_model *m) { return m ? m->n : 0; }

const st_tensor *st_model_tensor_at(const st_model *m, int64_t i) {
    return m && i >= 0 && i < m->n ? m->list[i] : NULL;
}
