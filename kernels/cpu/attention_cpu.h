/* attention_cpu: the CPU backend's attention (attention_cpu.c; not a public
 * header): out[T][n_head][head_dim] from queries q (same shape, after RoPE)
 * over layer `layer` of the cache view, causal over each stream's last T
 * entries, the keys' and values' element types (f32, f16, bf16, q8_0, q4_0) read
 * directly. Returns 0, TIS_ENOMEM (scratch) or TIS_EUNSUPPORTED (element type). */
#ifndef TIS_ATTENTION_CPU_H
#define TIS_ATTENTION_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* The CPU backend reads and writes every cache type (kernels/kv_types.h:
 * kv_row_bytes is 0 for any other type or shape). */
int cpu_attention(float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T, int64_t n_head,
                  const attn_observer *obs);

#endif
