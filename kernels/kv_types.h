/* kv_types: the element types a KV cache can hold, in one table read by the
 * engine (engine/kv.c: allocation, blocks, names) and by the CPU kernels that
 * store and read them (kernels/cpu). The CUDA backend holds a subset of its
 * own (f32, f16, bf16) and refuses the others. Type ids are ggml's. */
#ifndef TIS_KV_TYPES_H
#define TIS_KV_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True for the element types a cache can hold: F32, F16, BF16, Q8_0, Q4_0. */
bool kv_dtype_ok(int dtype);
/* True for the block-quantised ones (Q8_0, Q4_0): a row is whole blocks of
 * 32 elements (head_dim a multiple of 32), and keys of such a type carry a
 * channel transform per stream (engine/kv.h, kv_view.kscale). */
bool kv_dtype_block(int dtype);
/* Floats of one stream's key channel transform: head_dim scales, then
 * head_dim zero points. A key k is stored as its type of (k - zero) / scale
 * and read back as dequantised * scale + zero. */
#define KV_KEY_XFORM(head_dim) (2 * (head_dim))
/* Bytes of one row of head_dim elements of dtype, or 0 when dtype cannot
 * hold such a row (not a cache type, or a block type with head_dim not a
 * multiple of 32). */
size_t kv_row_bytes(int dtype, int64_t head_dim);
/* "f16", "f32", "bf16", "q8_0", "q4_0" (or "?"); kv_dtype_parse is its
 * inverse (-1: none). */
const char *kv_dtype_name(int dtype);
int kv_dtype_parse(const char *name);

#endif
