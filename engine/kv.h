/* kv: the KV cache, the object tis compresses.
 *
 * Layout (docs/design.md §3): one stream per (layer, kv_head). Stream s = l*n_kv_head + h
 * holds up to cap[s] entries at k + off[s]*head_dim, v + off[s]*head_dim,
 * pos + off[s]; len[s] of them are filled. Keys are stored after RoPE,
 * with the original position of each entry in pos, so a compacted (ragged)
 * cache keeps attending correctly and generation continues at n_past. A
 * fresh cache has the same cap for every stream; compaction (press/) builds
 * a new cache whose caps follow the kept counts, so memory really shrinks.
 *
 * Element types (ggml type ids, kv_types: keys' and values' apart): F16
 * (the default, forward_kv_new), F32, BF16, Q8_0 (blocks of 32: an f16
 * scale and 32 int8, 34 bytes for 32 elements: 0.53x the f16 bytes) or
 * Q4_0 (an f16 scale and 32 4-bit values, 18 bytes: 0.28x; both want a
 * head_dim that is a multiple of 32); positions are int32 and the
 * attention bias f32 whatever the types.
 *
 * Q8_0 and Q4_0 keys carry a per-channel transform (kscale, KIVI's finding:
 * a model's keys have a few channels far larger than the rest, mostly by an
 * offset that stays from token to token, and a block's step, set by its
 * largest element, wipes out the small ones). Each stream has head_dim f32
 * scales and head_dim f32 zero points (KV_KEY_XFORM floats); a key is
 * stored as its type of (k - zero) / scale and read back as
 * dequant * scale + zero, so every reader sees keys. A stream's transform is
 * set by the first write into it while it is empty
 * (kv_cache_key_scales_set: each channel's mean over the rows written, and
 * the largest |k - mean|, a RoPE pair's channels together) and kept while
 * it holds entries; it travels with the cache (compaction, blocks, copies). A key row (one entry's key,
 * head_dim elements) is k_row bytes, a value row v_row. The forward pass writes through
 * the backend's kv_append, other host writers through kv_cache_put;
 * readers that want floats go through kv_cache_rows_f32; the attention
 * kernels read the stored types directly (kv_view.k_type, v_type). */
#ifndef TIS_KV_H
#define TIS_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "kv_types.h" /* kv_dtype_ok, kv_row_bytes, kv_dtype_name / parse */

typedef struct kv_cache {
    int64_t n_layer, n_kv_head, head_dim;
    int64_t n_stream;   /* n_layer * n_kv_head */
    int k_type, v_type; /* GGML_TYPE_F16 / F32 / BF16 / Q8_0 / Q4_0: the types of k and of v */
    size_t k_row, v_row; /* bytes of one entry's key / value row: head_dim elements of its type */
    void *k;            /* [sum cap] rows of k_row bytes, keys after RoPE */
    void *v;            /* [sum cap] rows of v_row bytes */
    int32_t *pos;       /* [sum cap] original positions */
    int64_t *off;       /* [n_stream] first entry of each stream */
    int64_t *cap;       /* [n_stream] entries reserved */
    int64_t *len;       /* [n_stream] entries filled */
    int64_t n_past;     /* next position: the uncompressed sequence length */
    float *kscale;      /* [n_stream][KV_KEY_XFORM(head_dim)] key channel scales, then
                           zero points (Q8_0 / Q4_0 keys; else NULL), host memory;
                           a first scale of 0: not set yet */
    float *bias;        /* [sum cap] additive attention-logit bias per entry (the
                           importance head's attention hook), or NULL: none.
                           Own allocation; new entries get 0. */
    void *mem;          /* the one allocation everything above lives in (a
                           backend-resident cache: all but k, v and bias) */
    size_t mem_bytes;
    const tis_backend *be; /* NULL: a host cache. Else k, v and bias live in
                           this backend's memory (borrowed: it outlives the
                           cache), from one be->alloc (dev) and bias's own;
                           pos, off, cap, len and n_past stay on the host. */
    void *dev;
} kv_cache;

/* The element types of a cache's keys and of its values. */
typedef struct kv_types {
    int k, v;
} kv_types;
static inline kv_types kv_types_of(int t) { return (kv_types){t, t}; }
/* "T" (keys and values) or "K,V" (keys' type, values'), each a
 * kv_dtype_parse name: 0, or -1 (*out untouched). */
int kv_types_parse(const char *s, kv_types *out);
/* "f16", or "f16,q8_0" when the values' type differs, in buf[cap]. */
const char *kv_types_name(kv_types t, char *buf, size_t cap);

/* A cache with `cap` entries in every stream, keys and values of dtype. */
int kv_cache_new(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                 int64_t cap, int dtype);
/* A cache with per-stream capacities caps[n_layer*n_kv_head]. */
int kv_cache_new_ragged(kv_cache **out, int64_t n_layer, int64_t n_kv_head,
                        int64_t head_dim, const int64_t *caps, int dtype);
void kv_cache_destroy(kv_cache **p);

/* Backend residency. A cache made for a backend that computes in its own
 * memory (!backend_is_host(be)) keeps k, v and bias there; be NULL or a
 * host backend gives a host cache. The forward pass appends to either
 * through the backend's kv_append. Everything below that reads or writes
 * k, v or bias on the host (kv_cache_put, kv_cache_rows_f32,
 * kv_cache_compact, kv_cache_block_write, the presses' scoring) refuses
 * a backend-resident cache (an error, or an assertion where it returns
 * nothing): copy it to the host with kv_cache_to_host first. Scoring and
 * compaction on the device are not built. */
int kv_cache_new_ragged_on(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                           const int64_t *caps, kv_types types, const tis_backend *be);
/* A host copy of src (same capacities, entries, positions, bias, n_past). */
int kv_cache_to_host(kv_cache **out, const kv_cache *src);
/* A copy of src in be's memory (a host copy when be is NULL or a host backend). */
int kv_cache_to_backend(kv_cache **out, const kv_cache *src, const tis_backend *be);

/* Gives the cache a zeroed per-entry attention bias (idempotent); in the
 * backend's memory for a backend-resident cache. */
int kv_cache_enable_bias(kv_cache *kv);

/* The cache as the backends' attention reads it (borrows kv's arrays). */
kv_view kv_cache_view(const kv_cache *kv);

/* Forgets all entries (keeps the memory). */
void kv_cache_clear(kv_cache *kv);

static inline int64_t kv_stream(const kv_cache *kv, int64_t layer, int64_t kv_head) {
    return layer * kv->n_kv_head + kv_head;
}
/* The first key / value row of stream s, in the cache's key / value type. */
static inline void *kv_cache_k(const kv_cache *kv, int64_t s) {
    return (char *)kv->k + (size_t)kv->off[s] * kv->k_row;
}
static inline void *kv_cache_v(const kv_cache *kv, int64_t s) {
    return (char *)kv->v + (size_t)kv->off[s] * kv->v_row;
}
static inline int32_t *kv_cache_pos(const kv_cache *kv, int64_t s) {
    return kv->pos + kv->off[s];
}

/* Stores key k[head_dim] and value v[head_dim] as entry i of stream s
 * (converted to the cache's types; i < cap[s]; len is the caller's). A
 * stream with quantised keys whose scales are not set takes them from k. */
void kv_cache_put(kv_cache *kv, int64_t s, int64_t i, const float *k, const float *v);
/* Keys (which = 0) or values (1) i0 .. i0+n-1 of stream s as f32 in
 * dst[n][head_dim]. */
void kv_cache_rows_f32(const kv_cache *kv, int64_t s, int which, int64_t i0, int64_t n, float *dst);

/* Fewest rows whose mean becomes a channel's zero point (fewer: 0). */
#define KV_ZERO_MIN_ROWS 8

/* Sets stream s's key channel transform (quantised keys; else a no-op)
 * from the n key rows at k, stride floats apart: each channel's zero point
 * is its mean over the rows (0 from fewer than KV_ZERO_MIN_ROWS finite
 * ones: a mean of one row would leave no scale), its scale the largest
 * |k - zero| (a RoPE
 * pair's channels, rope_dim > 0: the pair's largest length, as a turn of
 * the pair at a later position moves its value around the mean;
 * interleaved pairs (2i, 2i+1), else (i, i + rope_dim/2)), floored at 1e-3
 * of the stream's largest (1 for a stream of zeros). A later key beyond
 * the scale is not clipped: each block of 32 has its own step. Only while
 * the stream is empty: its entries were stored with the old transform.
 * The forward pass calls it with the model's RoPE for the first rows
 * appended to an empty stream; kv_cache_put, with none set, from its row
 * without pairs (no zero points). */
void kv_cache_key_scales_set(kv_cache *kv, int64_t s, const float *k, int64_t n, int64_t stride,
                             int64_t rope_dim, bool interleaved);
/* Stream s's key scales for quantised keys (head_dim floats, its zero
 * points after them: kv_cache_kzero), or NULL. */
static inline const float *kv_cache_kscale(const kv_cache *kv, int64_t s) {
    return kv->kscale ? kv->kscale + s * KV_KEY_XFORM(kv->head_dim) : NULL;
}
static inline const float *kv_cache_kzero(const kv_cache *kv, int64_t s) {
    return kv->kscale ? kv->kscale + s * KV_KEY_XFORM(kv->head_dim) + kv->head_dim : NULL;
}

/* Smallest free room over all streams: how many tokens can still be
 * appended to every stream. */
int64_t kv_cache_room(const kv_cache *kv);

/* Bytes of the filled entries (keys, values, positions) and of quantised keys'
 * channel scales: what a compressed cache really costs.
 * kv_cache_bytes_reserved counts the capacity. */
size_t kv_cache_bytes_used(const kv_cache *kv);
/* Bytes of one entry: its key, value and position. */
size_t kv_cache_entry_bytes(const kv_cache *kv);
size_t kv_cache_bytes_reserved(const kv_cache *kv);
/* Bytes of the key channel transforms (quantised keys: n_stream *
 * KV_KEY_XFORM(head_dim) f32; else 0). */
size_t kv_cache_scale_bytes(const kv_cache *kv);

/* Total filled entries over all streams. */
int64_t kv_cache_entries(const kv_cache *kv);

/* A new cache holding the entries of src whose keep flag is set (keep is
 * laid out like src's entries: keep[src->off[s] + i] for entry i of stream
 * s), in their original order with their original positions, plus `extra`
 * free entries in every stream for what comes next (question, answer).
 * Stream capacities follow the kept counts, so the memory really shrinks.
 * keep == NULL keeps everything (a fork). n_past is carried over. */
int kv_cache_compact(kv_cache **out, const kv_cache *src, const uint8_t *keep, int64_t extra);

/* A cache as one flat block (what crosses between processes): for each
 * stream in order, len[s] key rows (k_row bytes each), then len[s] value rows (v_row), then
 * len[s] positions i32, then (a cache with an attention bias, the
 * importance head's hook) len[s] biases f32; quantised keys: head_dim key scales
 * f32 first. The stream lengths, n_past,
 * the two types and the bias flag travel beside it (proto KvLayout).
 * kv_cache_block_bytes is its size. */
size_t kv_cache_block_bytes(const kv_cache *kv);
void kv_cache_block_write(const kv_cache *kv, void *dst);
/* Rebuilds a cache from a block with `extra` free entries per stream.
 * Every count is checked against block_len before it is read. */
int kv_cache_block_read(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                        kv_types types, const int64_t *stream_len, int64_t n_past, bool bias,
                        const void *block, size_t block_len, int64_t extra);

#endif
