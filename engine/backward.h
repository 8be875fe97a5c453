/* backward: how a teacher-forced suffix's next-token distributions change
 * with the attention-logit bias of the cache entries it reads: the
 * gradient that end-to-end training of the importance head needs (issue
 * 15 item 5, docs/head.md "End-to-end fine-tuning").
 *
 * Setting. kv holds a prefilled context whose entries are fixed: their
 * keys and values do not depend on the bias, which only changes what the
 * tokens after it read. The suffix ids[T] (question, answer) runs at
 * positions kv->n_past + t; in layer l, query head h reads every entry of
 * its stream s = l*n_kv_head + h/(n_head/n_kv_head) with logit
 * q.k/sqrt(head_dim) + bias[off[s] + i], and the suffix's own tokens
 * causally (no bias). A soft eviction sets bias to a large negative value
 * on what it drops; a hard one removes the entry: the two agree in the
 * limit (tests/test_backward.c).
 *
 * Arithmetic (llm.c style: one f32 forward that keeps every activation the
 * backward needs, then the backward from the logits down): products
 * forward by the CPU backend with f32 activations (the matrices in their
 * file type), products backward (dx = dy . W) on dequantised row tiles
 * with sgemm, attention by sgemm per head over the stream's entries in
 * f32. kv is only read. Single-threaded apart from BLAS; one suffix_grad
 * per thread. */
#ifndef TIS_BACKWARD_H
#define TIS_BACKWARD_H

#include <stdint.h>

#include "kv.h"
#include "model.h"

typedef struct suffix_grad suffix_grad;

/* Scratch for suffixes of up to max_T tokens of model m (borrowed: it
 * must outlive the object and stay on the host). */
int suffix_grad_new(suffix_grad **out, const model *m, int64_t max_T);
void suffix_grad_destroy(suffix_grad **p);

/* logp[n_rows][n_vocab]: log-probabilities of the token after suffix row
 * rows[i] (0 <= rows[i] < T), the cache's entries biased by bias (laid out
 * like kv->bias: bias[kv->off[s] + i]; NULL: no bias; kv->bias itself is
 * ignored). */
int suffix_logprobs(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, int64_t T,
                    const int64_t *rows, int64_t n_rows, float *logp);

/* *loss = sum over rows of KL(ref || model), ref_logp[n_rows][n_vocab]
 * being reference log-probabilities (the full cache's: suffix_logprobs
 * with no bias), and dbias[e] += d loss / d bias[e] for every filled entry
 * e of kv (dbias laid out like bias; other entries untouched). */
int suffix_kl_grad(suffix_grad *g, const kv_cache *kv, const float *bias, const int32_t *ids, int64_t T,
                   const int64_t *rows, int64_t n_rows, const float *ref_logp, double *loss, float *dbias);

#endif
