/* qdot_impl: what qdot.c and the SIMD files share (not a public header). */
#ifndef TIS_QDOT_IMPL_H
#define TIS_QDOT_IMPL_H

#include <stdint.h>

#include "qdot.h"

/* Software prefetch of the row dots: weight rows stream from memory once per
 * token, and on one core the hardware prefetcher alone leaves the dots at
 * 4-7 GB/s; fetching QDOT_PF bytes ahead in the loop gives 7-10 GB/s
 * (145 MB Q8_0 / Q5_0 matrices, 1 thread, this project's Xeon; 1-4 KiB
 * all help, 2 KiB was best). Prefetches never fault past the end. */
#define QDOT_PF 2048
#define QDOT_PREFETCH(p) __builtin_prefetch((const char *)(p) + QDOT_PF, 0, 3)

/* The reference dot of a type, or NULL. */
qdot_row_fn qdot_ref_fn(int type);
/* The SIMD dots of a type at exactly that level, or NULL (qdot_simd.c). */
qdot_row_fn qdot_avx2_fn(int type);
qdot_row_fn qdot_avx512_fn(int type);
qdot_rows_fn qdot_avx2_rows_fn(int type);   /* their T-row twins (32-block types) */
qdot_rows_fn qdot_avx512_rows_fn(int type);
qdot_row_fn qdot_k_avx2_fn(int type);   /* Q4_K, Q6_K (qdot_simd_k.c) */
qdot_row_fn qdot_k_avx512_fn(int type);
qdot_rows_fn qdot_k_avx2_rows_fn(int type); /* their T-row twins (both ISAs) */
qdot_deq_fn qdot_deq_k_avx2_fn(int type); /* Q4_K, Q6_K rows to f32 */
qdot_row_fn qdot_f32act_more_avx2_fn(int type); /* Q5_x, K-types, BF16 (qdot_avx2_more.c) */
qdot_deq_fn qdot_deq_q5_avx2_fn(int type);       /* Q5_x, BF16 */
qdot_row_fn qdot_f32act_avx2_fn(int type);
qdot_row_fn qdot_f32act_avx512_fn(int type);
qdot_rows_fn qdot_f32act_avx2_rows_fn(int type); /* Q8_0 (the logits of both default models) */
qdot_rows_fn qdot_f32act_avx512_rows_fn(int type);
qdot_row_fn qdot_f32act_k_avx512_fn(int type);
qdot_row_fn qdot_f32act_q5_avx512_fn(int type);
qdot_deq_fn qdot_deq_q5_avx512_fn(int type);
qdot_deq_fn qdot_deq_avx512_fn(int type);
qdot_deq_fn qdot_deq_avx2_fn(int type);

#endif
