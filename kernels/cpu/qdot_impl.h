/* qdot_impl: what qdot.c and the SIMD files share (not a public header). */
#ifndef TIS_QDOT_IMPL_H
#define TIS_QDOT_IMPL_H

#include <stdint.h>

#include "qdot.h"

/* The reference dot of a type, or NULL. */
qdot_row_fn qdot_ref_fn(int type);
/* The SIMD dots of a type at exactly that level, or NULL (qdot_simd.c). */
qdot_row_fn qdot_avx2_fn(int type);
qdot_row_fn qdot_avx512_fn(int type);
qdot_row_fn qdot_k_avx2_fn(int type);   /* Q4_K, Q6_K (qdot_simd_k.c) */
qdot_row_fn qdot_k_avx512_fn(int type);
qdot_row_fn qdot_f32act_avx2_fn(int type);
qdot_row_fn qdot_f32act_avx512_fn(int type);
qdot_row_fn qdot_f32act_k_avx512_fn(int type);
qdot_row_fn qdot_f32act_q5_avx512_fn(int type);
qdot_deq_fn qdot_deq_q5_avx512_fn(int type);
qdot_deq_fn qdot_deq_avx512_fn(int type);
qdot_deq_fn qdot_deq_avx2_fn(int type);
/* Q4_K's six-bit scale and min of sub-block j from its 12 packed bytes. */
void qdot_k4_scale_min(int j, const uint8_t *s, int *sc, int *m);

#endif
