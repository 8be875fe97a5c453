/* safetensors: reader for HF safetensors checkpoints (untrusted input).
 *
 * Format: u64 header_len (LE); header_len bytes of JSON:
 *   { "NAME": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [..],
 *              "data_offsets": [begin, end]}, ..., "__metadata__": {str: str} }
 *   then the data section; offsets are relative to its start.
 * A model directory holds model.safetensors, or shards listed by
 * model.safetensors.index.json ({"weight_map": {name: file}}). */
#ifndef TIS_SAFETENSORS_H
#define TIS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_dtype {
    ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2, ST_I32 = 3, ST_I64 = 4, ST_U8 = 5,
    ST_I8 = 6, ST_F64 = 7, ST_BOOL = 8, ST_I16 = 9, ST_U16 = 10, ST_U32 = 11,
    ST_U64 = 12,
} st_dtype;

typedef struct st_tensor {
    const char *name;   /* NUL-terminated, owned by the file object */
    st_dtype dtype;
    int n_dims;         /* 0..8 */
    int64_t shape[8];   /* shape[0] outermost (row-major, as in PyTorch) */
    size_t nbytes;      /* checked: = prod(shape) * dtype size, inside file */
    const void *data;   /* into the mapping */
} st_tensor;

typedef struct st_file st_file;

int st_open(st_file **out, const char *path);
void st_destroy(st_file **p);
int64_t st_tensor_count(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, int64_t i);
const st_tensor *st_tensor_find(const st_file *f, const char *name);
/* __metadata__ value for key, or NULL. */
const char *st_metadata(const st_file *f, const char *key);
int64_t st_metadata_count(const st_file *f);
/* i-th metadata key/value. */
void st_metadata_at(const st_file *f, int64_t i, const char **key, const char **value);
size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);
/* "F32" -> ST_F32: 0; a format dtype tis lacks ("F8_E4M3", ...):
 * TIS_EUNSUPPORTED; anything else: TIS_EFORMAT (no message set). */
int st_dtype_from_name(const char *s, st_dtype *out);
/* prod(shape) * dtype size: 0; a negative dim: TIS_EFORMAT; overflow:
 * TIS_ERANGE (no message set). */
int st_shape_nbytes(st_dtype t, int n_dims, const int64_t *shape, size_t *nbytes);
/* The path st_open was given (for messages). */
const char *st_file_path(const st_file *f);

/* A model directory: one file or an index of shards; tensors looked up
 * across shards. */
typedef struct st_model st_model;
int st_model_open(st_model **out, const char *dir);
void st_model_destroy(st_model **p);
const st_tensor *st_model_find(const st_model *m, const char *name);
int64_t st_model_tensor_count(const st_model *m);
const st_tensor *st_model_tensor_at(const st_model *m, int64_t i);

/* Writer (test models, head checkpoints, label shards): tensors copied,
 * metadata str->str; written atomically (temp file + rename). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_destroy(st_writer **p);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                  const int64_t *shape, const void *data);
int st_writer_add_metadata(st_writer *w, const char *key, const char *value);
int st_writer_write(st_writer *w, const char *path);

#endif
