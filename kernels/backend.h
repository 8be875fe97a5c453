/* backend: the compute operations of a forward pass, behind one vtable.
 *
 * The CPU backend (kernels/cpu) is the reference: f32, OpenBLAS sgemm for
 * matrix products. A CUDA backend (kernels/cuda, later) fills the same table;
 * a NULL entry means "not supported by this backend". Buffers passed to a
 * backend's ops live in that backend's memory (host memory for cpu), and so
 * do rope's positions; rope_params.inv_freq and kv_view's off/len are host
 * arrays. */
#ifndef TIS_BACKEND_H
#define TIS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_types.h" /* the cache's element types; kv_dtype_block: keys with channel scales */

/* The KV cache as the attention op reads it: plain arrays, no engine type
 * (engine/kv.h builds one with kv_cache_view). Stream s = layer*n_kv_head + h
 * holds len[s] entries from row off[s] of k, v and bias. k, v and bias live
 * in the backend's memory; off and len are host arrays. Borrowed. */
typedef struct kv_view {
    int64_t n_layer, n_kv_head, head_dim;
    int64_t n_entries;        /* rows of k, v, bias: the streams' capacities summed */
    int k_type, v_type;       /* element types of k and of v: GGML_TYPE_F32, F16, BF16, Q8_0 or
                                 Q4_0 (whole blocks of 32 per row: head_dim a multiple of 32) */
    const void *k;            /* [n_entries] rows of head_dim elements, keys after RoPE */
    const void *v;            /* [n_entries] rows */
    const float *bias;        /* [n_entries] additive logit bias, or NULL */
    const float *kscale;      /* Q8_0 / Q4_0 keys: [n_layer*n_kv_head][KV_KEY_XFORM(head_dim)]
                                 channel scales then zero points (a key is its
                                 dequantised row times the scales plus the zero
                                 points; host memory), else NULL */
    const int64_t *off;       /* [n_layer*n_kv_head] first row of each stream */
    const int64_t *len;       /* [n_layer*n_kv_head] rows filled */
} kv_view;

/* A weight matrix as the model file holds it: n_out rows of n_in elements
 * of `type` (a ggml type id: F32, F16, BF16 or a quantised block type),
 * row_bytes apart. data is borrowed (the file's mapping, or the model's
 * own memory) and lives in the backend's memory. */
typedef struct tis_weight {
    int type;
    const void *data;  /* [n_out][row_bytes] */
    size_t row_bytes;
    int64_t n_in, n_out;
    bool f32_act;      /* keep this product's activations in f32 where a backend
                          would quantise them (the output projection: its
                          results are the logits that pick tokens) */
} tis_weight;

/* RoPE parameters of one model: inv_freq[i] for the rotated pairs. */
typedef struct rope_params {
    int64_t head_dim;
    int64_t rope_dim;        /* rotated dimensions (<= head_dim, even) */
    bool interleaved;        /* pairs (2i, 2i+1) vs halves (i, i + rope_dim/2) */
    const float *inv_freq;   /* [rope_dim/2], scaling already applied */
    float pos_scale;         /* linear scaling: position multiplier */
} rope_params;

/* Observer of attention probabilities (oracle labels, h2o, snapkv use it):
 * probs[nq][n_keys] for query rows [q0, q0+nq) of the batch, over the
 * stream's entries in cache order. NULL fn: not observed. The CPU backend
 * calls it from its pool's threads, one KV head per thread at a time, in
 * order within a KV head (forward_hooks.on_attn). */
typedef struct attn_observer {
    void (*fn)(void *user, int64_t layer, int64_t head, int64_t q0, int64_t nq,
               const float *probs, int64_t n_keys);
    void *user;
} attn_observer;

typedef struct tis_backend {
    const char *name;
    void *ctx;
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    /* y[T][n_out] = x[T][n_in] . w[n_out][n_in]^T (+ y when accumulate),
     * n_in and n_out from w. matmul and attention return 0, or TIS_ENOMEM
     * when their scratch cannot be had (the output is then undefined). */
    int (*matmul)(void *ctx, float *y, const float *x, const tis_weight *w, int64_t T,
                   bool accumulate);
    /* y[T][d] = x / rms(x) * w */
    void (*rmsnorm)(void *ctx, float *y, const float *x, const float *w, int64_t T,
                    int64_t d, float eps);
    /* x[T][n_heads][head_dim] rotated in place at positions pos[T] (pos in
     * the backend's memory) */
    void (*rope)(void *ctx, float *x, const int32_t *pos, int64_t T, int64_t n_heads,
                 const rope_params *rp);
    /* g[T][n] = silu(g) * u */
    void (*swiglu)(void *ctx, float *g, const float *u, int64_t n);
    /* y[n] += x[n] */
    void (*add)(void *ctx, float *y, const float *x, int64_t n);
    /* y[T][n] += b[n] */
    void (*add_bias)(void *ctx, float *y, const float *b, int64_t T, int64_t n);
    /* Causal grouped-query attention of T new queries q[T][n_head][head_dim]
     * over the layer's streams in kv, whose last T entries are the new
     * tokens (older entries are all visible; new ones causally), with
     * kv->bias (when present) added to each entry's scaled logit. Writes
     * out[T][n_head][head_dim]. */
    int (*attention)(void *ctx, float *out, const float *q, const kv_view *kv,
                      int64_t layer, int64_t T, int64_t n_head,
                      const attn_observer *obs);
    /* Optional (NULL: ignored): whether the products until the next call
     * compute prompt tokens (exact: f32 activations) or generated ones (the
     * backend's fast arithmetic). A prompt's rows decide the first token
     * and fill the cache every later token reads; a generated token's step
     * is the one decode repeats, where 8-bit activations pay. */
    void (*prompt_step)(void *ctx, bool prompt);

    /* ---- residency (docs/design.md §3) ----
     * A backend computing in host memory (cpu) leaves upload and download
     * NULL: its alloc returns host memory that host code may read and
     * write. A backend with its own memory (cuda) sets them, and the engine
     * then reaches that memory only through these ops: backend_is_host(). */
    /* Copies bytes from host src to backend dst / from backend src to host
     * dst. 0, or TIS_EIO with a message (dst is then undefined). */
    int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Appends T entries to each of the n_kv_head streams of one layer of a
     * cache held in this backend's memory: for kv head h, row t of
     * k[T][n_kv_head*head_dim] and v[T][...] (f32, backend memory), columns
     * [h*head_dim, (h+1)*head_dim), is stored as row at[h] + t of the
     * cache's keys kc in k_type and values vc in v_type (GGML_TYPE_F32, F16,
     * BF16, or Q8_0 / Q4_0 on the cpu backend; kv_view's layout), and bias[at[h] + t] = 0 when bias is not NULL.
     * at is a host array [n_kv_head] (the streams' off + len). Q8_0 / Q4_0
     * keys have the zero points taken off and are divided by the scales
     * (kscale: host [n_kv_head][KV_KEY_XFORM(head_dim)], the layer's
     * streams' channel transforms, set; NULL for other key types) before
     * they are rounded. 0, or TIS_EINVAL for a type it cannot store. NULL: host
     * caches only (the engine stores rows itself). */
    int (*kv_append)(void *ctx, void *kc, void *vc, float *bias, int k_type, int v_type, int64_t head_dim, int64_t n_kv_head,
                     const int64_t *at, const float *kscale, const float *k, const float *v, int64_t T);
    /* A copy of the host weight src (the model file's type and mapping) in
     * this backend's memory, in a type its matmul multiplies (the file's
     * type, or f32 dequantised): *dst, whose data comes from alloc (release
     * it with free). 0, TIS_ENOMEM, or TIS_EUNSUPPORTED for a type it cannot
     * take. NULL: matmul reads host weights in place (no copy). */
    int (*weight_prepare)(void *ctx, tis_weight *dst, const tis_weight *src);
    /* Waits for the work queued so far; 0 or the error the device reported.
     * NULL: ops complete before they return. */
    int (*sync)(void *ctx);
    /* attention cannot report probabilities: an attn_observer is refused
     * (the engine says so before it runs anything; see forward_run). */
    bool cannot_observe;
} tis_backend;

/* Whether the backend computes in host memory (no upload/download ops). */
static inline bool backend_is_host(const tis_backend *be) { return be->upload == NULL; }

/* The CPU reference backend (a static table; never destroyed). */
const tis_backend *backend_cpu(void);
/* Its decode-sized products (<= 16 rows) of generated tokens quantise
 * activations to 8 bits per block and multiply in integers (the default:
 * llama.cpp's arithmetic, about twice as fast), or, set here (or by
 * $TIS_QDOT_ACT=f32), keep them in f32: the f32 product up to summation
 * order, what the golden tests hold against transformers. Prompt steps
 * (prompt_step) and products whose tis_weight says f32_act keep f32.
 * Process-wide; set it before a forward pass, not during one. */
void backend_cpu_set_f32_act(bool on);
bool backend_cpu_f32_act(void);

#endif
