/* quant: ggml tensor types (block layouts) and dequantisation to f32.
 *
 * Block layouts (little-endian, as written by llama.cpp / gguf-py):
 *   F32, F16, BF16         plain elements
 *   Q8_0  (32): f16 d; int8 qs[32]                    x = d*q
 *   Q4_0  (32): f16 d; u8 qs[16]                      x = d*(nib-8)
 *   Q4_1  (32): f16 d, m; u8 qs[16]                   x = d*nib + m
 *   Q5_0  (32): f16 d; u8 qh[4]; u8 qs[16]            x = d*(q5-16)
 *   Q5_1  (32): f16 d, m; u8 qh[4]; u8 qs[16]         x = d*q5 + m
 *   Q4_K (256): f16 d, dmin; u8 scales[12]; u8 qs[128]
 *   Q6_K (256): u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 * In the 32-blocks, element j < 16 takes the low nibble of qs[j], element
 * j + 16 the high nibble; Q5 adds bit j of qh (as u32) as bit 4. */
#ifndef TIS_QUANT_H
#define TIS_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are the on-disk ggml type ids. */
typedef enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 41, /* ids at or above this are unknown */
} ggml_type;

/* Name ("Q4_1"), or NULL for an id this build does not know at all. */
const char *quant_type_name(int type);

/* True when quant_dequantize_row handles the type. */
bool quant_type_supported(int type);

/* Elements per block (1 for plain types) and bytes per block; 0 for an
 * unknown or unsupported type. */
int64_t quant_block_elems(int type);
size_t quant_block_bytes(int type);

/* Bytes of a row of n elements: 0 on success, TIS_EFORMAT if n is not a
 * multiple of the block, TIS_EUNSUPPORTED for the type, TIS_ERANGE on
 * overflow. */
int quant_row_bytes(int type, int64_t n, size_t *out);

/* dst[0..n) = dequantised src. n must be a multiple of the block size and
 * the type supported (checked by the caller via quant_row_bytes). */
void quant_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* IEEE half and bfloat16 <-> f32. */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

/* Reference quantisers (round-to-nearest), for tests and model writers:
 * the inverse of quant_dequantize_row up to the type's precision. Supported
 * for F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K. */
void quant_quantize_row(int type, const float *src, void *dst, int64_t n);

/* Q8_0 or Q4_0 rows with a per-channel scale and zero point (the KV
 * cache's keys, engine/kv.h): quant_scaled_row stores
 * type((src - zero) / scale) for one row of n elements (a multiple of 32;
 * every scale > 0; zero NULL: 0); quant_scaled_rows_f32 reads `rows` such
 * rows back, dst = dequantised * scale + zero. */
void quant_scaled_row(int type, const float *src, const float *scale, const float *zero, void *dst, int64_t n);
void quant_scaled_rows_f32(int type, const void *src, const float *scale, const float *zero, float *dst,
                           int64_t rows, int64_t n);

#endif
