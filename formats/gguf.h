/* gguf: reader for GGUF v2/v3 model files (untrusted input).
 *
 * Format (little-endian):
 *   u32 magic "GGUF"; u32 version (2 or 3); u64 n_tensors; u64 n_kv;
 *   n_kv x { str key; u32 type; value }
 *   n_tensors x { str name; u32 n_dims (<= 4); u64 ne[n_dims]; u32 ggml_type;
 *                 u64 offset }
 *   padding to `general.alignment` (u32, default 32); tensor data, each
 *   tensor at data_start + offset (offset a multiple of the alignment).
 *   str = u64 len; bytes (no NUL). value types: 0 u8, 1 i8, 2 u16, 3 i16,
 *   4 u32, 5 i32, 6 f32, 7 bool, 8 str, 9 array { u32 type; u64 n; items },
 *   10 u64, 11 i64, 12 f64.
 * Every count, length and offset is checked against the bytes present
 * before use; errors name the key or tensor and the problem. */
#ifndef TIS_GGUF_H
#define TIS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4,
    GGUF_I32 = 5, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STR = 8, GGUF_ARR = 9,
    GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
} gguf_vtype;

/* A string view into the mapped file: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    gguf_vtype type;
    union {
        uint64_t u;   /* U8, U16, U32, U64, BOOL */
        int64_t i;    /* I8, I16, I32, I64 */
        double f;     /* F32, F64 */
        gguf_str str; /* STR */
        struct {
            gguf_vtype type;       /* element type (never ARR: nesting rejected) */
            uint64_t n;            /* element count */
            const uint8_t *data;   /* numeric elements, packed, unaligned */
            const gguf_str *strs;  /* STR elements: n views (owned by file) */
        } arr;
    };
} gguf_value;

typedef struct gguf_kv {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];     /* ne[0] is the contiguous (innermost) dimension; unused = 1 */
    int type;          /* ggml_type */
    uint64_t offset;   /* from the data section start */
    size_t nbytes;     /* checked: fits inside the file */
    const void *data;  /* into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and parses a file. On error returns a negative status, *out = NULL,
 * and tis_last_error() names the problem (with the path). */
int gguf_open(gguf_file **out, const char *path);
/* Parses a caller-owned buffer that must outlive the gguf_file. */
int gguf_open_memory(gguf_file **out, const void *data, size_t size);
void gguf_destroy(gguf_file **p);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
int64_t gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
const gguf_kv *gguf_kv_find(const gguf_file *f, const char *key); /* NULL if absent */

/* Typed getters: 0 on success, TIS_ENOTFOUND if absent, TIS_EFORMAT if the
 * stored type does not convert (integers convert between widths when the
 * value fits; floats accept F32/F64). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Array of `elem` type (GGUF_STR arrays: use value.arr.strs). */
int gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype elem,
                 const gguf_value **out);

int64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name);

/* Element count of a tensor (product of ne, checked at open). */
int64_t gguf_tensor_nelems(const gguf_tensor *t);

/* Human-readable name of a value type ("u32", "array", ...). */
const char *gguf_vtype_name(int type);

/* Bytes of one value of a numeric type; 0 for STR, ARR and unknown ids. */
int gguf_vtype_size(uint32_t type);

/* True when the NUL-terminated `s` equals the view. */
bool gguf_str_eq(gguf_str a, const char *s);

#endif
