/* softmax: the CPU attention's row softmax, written so that the compiler
 * vectorises it (-O3 -march=native: 8 or 16 lanes): libm's expf is a call
 * per element and a serial double sum is a chain of dependent adds, which
 * made the softmax a third of a 2k-token prefill. */
#ifndef TIS_CPU_SOFTMAX_H
#define TIS_CPU_SOFTMAX_H

#include <stdint.h>

/* exp(x) for the softmax's x = score - max <= 0: x = n ln2 + r with
 * |r| <= ln2/2, exp(r) by the Cephes degree-6 polynomial, 2^n from the
 * exponent bits. Within 2 ulp of expf on [-87.3, 0]; 0 below (where expf
 * is below the smallest normal float anyway); NaN stays NaN. */
float cpu_exp_neg(float x);

/* row[0..n) (+ bias[0..n) when bias is not NULL) -> softmax in place, the
 * sum accumulated in 16 float lanes and added up in double. n >= 1. */
void cpu_softmax(float *row, int64_t n, const float *bias);

#endif
