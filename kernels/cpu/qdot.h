/* qdot: dot products of quantised weight rows with activations, the inner
 * loop of decode (weights used in place, in their file format).
 *
 * An activation row x[n] is quantised once per matmul input (qdot_act_*) to
 * 8-bit blocks that match the weight type's block size:
 *   32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): qdot_q8 {d, s = d*sum(q), q[32]}
 *   256-blocks (Q4_K, Q6_K):                 qdot_q8k {d, bsums[16], q[256]}
 *   F32, F16, BF16 rows take x as f32 (no quantisation).
 * A weight row's dot with it is then integer multiply-adds per block, one
 * float scale per block (the way llama.cpp's CPU path computes it).
 *
 * Every type has a plain-C reference (qdot_ref_row); SIMD versions (AVX2 +
 * FMA + F16C, AVX-512 VNNI) are chosen at run time by CPU features
 * (qdot_isa) and tested against the reference. Weight rows may sit at any
 * address (blocks inside an mmap). */
#ifndef TIS_QDOT_H
#define TIS_QDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qdot_q8 {
    float d;        /* scale: x ~ d * q */
    float s;        /* d * sum(q): the block's sum, for types with an offset */
    int8_t q[32];
} qdot_q8;

typedef struct qdot_q8k {
    float d;
    int16_t bsums[16]; /* sums of q over each 16 elements */
    int8_t q[256];
} qdot_q8k;

typedef enum qdot_isa { QDOT_REF = 0, QDOT_AVX2 = 1, QDOT_AVX512 = 2 } qdot_isa;

/* The best instruction set this CPU has (AVX2 needs FMA and F16C; AVX-512
 * needs F, BW, VL and VNNI); TIS_QDOT_ISA=ref|avx2|avx512 caps it. */
qdot_isa qdot_isa_best(void);
const char *qdot_isa_name(qdot_isa isa);

/* True when weight rows of this ggml type have a dot product here. */
bool qdot_type_supported(int type);
/* Bytes of the quantised activation for n elements of a row of `type`
 * (0 for types that take f32). n must be a multiple of the type's block. */
size_t qdot_act_bytes(int type, int64_t n);
/* Quantises x[n] for rows of `type` into act (qdot_act_bytes of it); a
 * no-op for f32-taking types. */
void qdot_act_quantize(int type, const float *x, int64_t n, void *act);

/* The dot product of one weight row (n elements of `type`) with an
 * activation prepared by qdot_act_quantize from x (x is read by the
 * f32-taking types, act by the others). */
typedef float (*qdot_row_fn)(const void *wrow, const void *act, const float *x, int64_t n);
/* The function for (type, isa); a type without a SIMD version at that isa
 * gets the best lower one (at worst the reference). */
qdot_row_fn qdot_row_fn_for(int type, qdot_isa isa);

/* The same products with the activation kept in f32 (act unused): the
 * weights are dequantised block by block in registers, so the result is
 * the f32 product up to summation order. Every type: a reference that
 * dequantises the row, SIMD versions for the common 32-block types. */
qdot_row_fn qdot_f32act_fn_for(int type, qdot_isa isa);

/* The dots of one weight row with T activation rows at once (a decode step
 * of T sequences): y[t] = fn(wrow, act + t * act_stride, x + t * n, n),
 * bitwise, for the fn that qdot_row_fn_for (qdot_f32act_fn_for) gives at
 * the same isa, so a sequence's numbers do not depend on how many share its
 * step; the weight blocks are unpacked once for several rows. NULL where a
 * type has no such function at that isa (then call the row function T
 * times). */
typedef void (*qdot_rows_fn)(const void *wrow, const void *act, size_t act_stride, const float *x, int64_t T,
                             int64_t n, float *y);
qdot_rows_fn qdot_rows_fn_for(int type, qdot_isa isa);
qdot_rows_fn qdot_f32act_rows_fn_for(int type, qdot_isa isa);

/* A row of n elements of a type dequantised to f32 (prefill's tiles): SIMD
 * for the common types where the CPU has it, else quant_dequantize_row. */
typedef void (*qdot_deq_fn)(const void *row, float *y, int64_t n);
qdot_deq_fn qdot_deq_fn_for(int type, qdot_isa isa);

/* y[o] = dot(row o of w, x) for o in [0, n_out): w holds n_out rows of
 * row_bytes; act/x as above. */
void qdot_matvec(qdot_row_fn fn, float *y, const void *w, size_t row_bytes, int64_t n_out, const void *act,
                 const float *x, int64_t n);

#endif
