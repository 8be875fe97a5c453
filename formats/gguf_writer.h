/* gguf_writer: builds GGUF v3 files (test models, `tis gen-model`). */
#ifndef TIS_GGUF_WRITER_H
#define TIS_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void); /* NULL on out of memory */
void gguf_writer_destroy(gguf_writer **p);

/* Metadata; keys and strings are copied. All return 0 or a negative status. */
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer *w, const char *key, int v);
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array of `elem` type: n packed elements at data (copied). */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                        const void *data, uint64_t n);
int gguf_writer_add_arr_str(gguf_writer *w, const char *key,
                            const char *const *strs, uint64_t n);

/* Tensor from f32 values, stored as `type` (quantised with
 * quant_quantize_row; ne[0] must be a multiple of the block). Copied. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type,
                           uint32_t n_dims, const int64_t *ne, const float *data);

/* Writes the file atomically (temp file + rename). */
int gguf_writer_write(gguf_writer *w, const char *path);

#endif
