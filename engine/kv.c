/* kv: KV cache allocation and accounting. */
#include "kv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tis_error.h"

static size_t s_align64(size_t n) { return (n + 63) & ~(size_t)63; }

int kv_types_parse(const char *s, kv_types *out) {
    if (!s) return -1;
    const char *comma = strchr(s, ',');
    if (!comma) {
        int t = kv_dtype_parse(s);
        if (t < 0) return -1;
        *out = kv_types_of(t);
        return 0;
    }
    char k[16];
    size_t n = (size_t)(comma - s);
    if (n >= sizeof k) return -1;
    memcpy(k, s, n);
    k[n] = 0;
    int kt = kv_dtype_parse(k), vt = kv_dtype_parse(comma + 1);
    if (kt < 0 || vt < 0) return -1;
    *out = (kv_types){kt, vt};
    return 0;
}

const char *kv_types_name(kv_types t, char *buf, size_t cap) {
    if (t.k == t.v) snprintf(buf, cap, "%s", kv_dtype_name(t.k));
    else snprintf(buf, cap, "%s,%s", kv_dtype_name(t.k), kv_dtype_name(t.v));
    return buf;
}

/* The host accessors below cannot reach a backend-resident cache's rows. */
#define KV_HOST_ONLY(kv) TIS_ASSERT((kv)->be == NULL && "a backend-resident KV cache: kv_cache_to_host first")

void kv_cache_key_scales_set(kv_cache *kv, int64_t s, const float *k, int64_t n, int64_t stride,
                             int64_t rope_dim, bool interleaved) {
    if (!kv->kscale) return;
    int64_t hd = kv->head_dim;
    float *sc = kv->kscale + s * KV_KEY_XFORM(hd), *z = sc + hd, top = 0.0f;
    for (int64_t c = 0; c < hd; c++) { /* the mean of the finite values, from KV_ZERO_MIN_ROWS rows */
        double sum = 0;
        int64_t m = 0;
        for (int64_t t = 0; t < n; t++)
            if (isfinite(k[t * stride + c])) sum += k[t * stride + c], m++;
        z[c] = m >= KV_ZERO_MIN_ROWS ? (float)(sum / (double)m) : 0.0f;
        sc[c] = 0.0f;
    }
    for (int64_t t = 0; t < n; t++)
        for (int64_t c = 0; c < hd; c++) {
            float a = fabsf(k[t * stride + c] - z[c]);
            if (a > sc[c] && isfinite(a)) sc[c] = a;
        }
    /* RoPE turns each pair of channels (c, c+1 interleaved; c, c+rope_dim/2
     * in halves) by an angle that moves with the position: a pair shares
     * the largest length (x, y) reached, which no later turn exceeds */
    if (rope_dim >= 2 && rope_dim <= hd) {
        int64_t half = rope_dim / 2;
        for (int64_t i = 0; i < half; i++) {
            int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
            sc[a] = sc[b] = hypotf(sc[a], sc[b]);
        }
    }
    for (int64_t c = 0; c < hd; c++) top = fmaxf(top, sc[c]);
    for (int64_t c = 0; c < hd; c++) sc[c] = top > 0.0f ? fmaxf(sc[c], 1e-3f * top) : 1.0f;
}

void kv_cache_put(kv_cache *kv, int64_t s, int64_t i, const float *k, const float *v) {
    KV_HOST_ONLY(kv);
    char *kd = (char *)kv_cache_k(kv, s) + (size_t)i * kv->k_row;
    if (kv->kscale) {
        if (kv_cache_kscale(kv, s)[0] == 0.0f) kv_cache_key_scales_set(kv, s, k, 1, kv->head_dim, 0, false);
        quant_scaled_row(kv->k_type, k, kv_cache_kscale(kv, s), kv_cache_kzero(kv, s), kd, kv->head_dim);
    } else {
        quant_quantize_row(kv->k_type, k, kd, kv->head_dim);
    }
    quant_quantize_row(kv->v_type, v, (char *)kv_cache_v(kv, s) + (size_t)i * kv->v_row, kv->head_dim);
}

void kv_cache_rows_f32(const kv_cache *kv, int64_t s, int which, int64_t i0, int64_t n, float *dst) {
    KV_HOST_ONLY(kv);
    int type = which ? kv->v_type : kv->k_type;
    const char *src = which ? (const char *)kv_cache_v(kv, s) + (size_t)i0 * kv->v_row
                            : (const char *)kv_cache_k(kv, s) + (size_t)i0 * kv->k_row;
    int64_t m = n * kv->head_dim;
    if (type == GGML_TYPE_F32) {
        memcpy(dst, src, (size_t)m * sizeof(float));
        return;
    }
    if (kv_dtype_block(type)) { /* whole rows: whole blocks */
        if (!which && kv->kscale)
            quant_scaled_rows_f32(type, src, kv_cache_kscale(kv, s), kv_cache_kzero(kv, s), dst, n, kv->head_dim);
        else quant_dequantize_row(type, src, dst, m);
        return;
    }
    const uint16_t *h = (const uint16_t *)src;
    if (type == GGML_TYPE_F16)
        for (int64_t j = 0; j < m; j++) dst[j] = quant_f16_to_f32(h[j]);
    else
        for (int64_t j = 0; j < m; j++) dst[j] = quant_bf16_to_f32(h[j]);
}

int kv_cache_new_ragged_on(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                           const int64_t *caps, kv_types types, const tis_backend *be) {
    *out = NULL;
    if (be && backend_is_host(be)) be = NULL;
    if (!kv_dtype_ok(types.k) || !kv_dtype_ok(types.v))
        return tis_error(TIS_EINVAL, "kv: element types %d, %d: keys and values are f32, f16, bf16, q8_0 or q4_0", types.k,
                         types.v);
    if (n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0 || n_layer > 4096 ||
        n_kv_head > 4096 || head_dim > 4096)
        return tis_error(TIS_EINVAL, "kv: bad shape %lld x %lld x %lld", (long long)n_layer,
                         (long long)n_kv_head, (long long)head_dim);
    size_t k_row = kv_row_bytes(types.k, head_dim), v_row = kv_row_bytes(types.v, head_dim);
    if (!k_row || !v_row)
        return tis_error(TIS_EINVAL, "kv: a %s cache needs a head_dim that is a multiple of 32 (this model's: %lld)",
                         kv_dtype_name(k_row ? types.v : types.k), (long long)head_dim);
    int64_t ns = n_layer * n_kv_head;
    int64_t total = 0;
    for (int64_t s = 0; s < ns; s++) {
        if (caps[s] < 0 || caps[s] > ((int64_t)1 << 32))
            return tis_error(TIS_EINVAL, "kv: bad capacity %lld", (long long)caps[s]);
        total += caps[s];
    }
    /* One host allocation, carved: k, v (on the host only), pos, off, cap,
     * len, and the key scales of quantised keys. */
    size_t k_bytes = (size_t)total * k_row, v_bytes = (size_t)total * v_row;
    if (total > 0 && (k_bytes / (size_t)total != k_row || v_bytes / (size_t)total != v_row))
        return tis_error(TIS_ERANGE, "kv: size overflow");
    size_t sizes[7] = {be ? 0 : k_bytes, be ? 0 : v_bytes, (size_t)total * sizeof(int32_t),
                       (size_t)ns * sizeof(int64_t), (size_t)ns * sizeof(int64_t),
                       (size_t)ns * sizeof(int64_t),
                       kv_dtype_block(types.k) ? (size_t)ns * (size_t)KV_KEY_XFORM(head_dim) * sizeof(float) : 0};
    size_t bytes = 0;
    for (int i = 0; i < 7; i++) bytes += s_align64(sizes[i]);
    kv_cache *kv = calloc(1, sizeof *kv);
    void *mem = bytes ? aligned_alloc(64, bytes) : NULL;
    void *dev = be ? be->alloc(be->ctx, s_align64(k_bytes) + s_align64(v_bytes)) : NULL;
    if (!kv || (bytes && !mem) || (be && !dev)) {
        free(kv);
        free(mem);
        if (dev) be->free(be->ctx, dev);
        return tis_error(TIS_ENOMEM, "kv: cannot allocate %zu bytes%s", be ? k_bytes + v_bytes : bytes,
                         be ? " of backend memory" : "");
    }
    char *p = mem;
    kv->k = be ? dev : (void *)p;                        p += s_align64(sizes[0]);
    kv->v = be ? (char *)dev + s_align64(k_bytes) : p;   p += s_align64(sizes[1]);
    kv->pos = (int32_t *)p;  p += s_align64(sizes[2]);
    kv->off = (int64_t *)p;  p += s_align64(sizes[3]);
    kv->cap = (int64_t *)p;  p += s_align64(sizes[4]);
    kv->len = (int64_t *)p;  p += s_align64(sizes[5]);
    kv->kscale = sizes[6] ? memset(p, 0, sizes[6]) : NULL;
    kv->n_layer = n_layer;
    kv->n_kv_head = n_kv_head;
    kv->head_dim = head_dim;
    kv->n_stream = ns;
    kv->k_type = types.k;
    kv->v_type = types.v;
    kv->k_row = k_row;
    kv->v_row = v_row;
    kv->mem = mem;
    kv->mem_bytes = bytes;
    kv->be = be;
    kv->dev = dev;
    int64_t o = 0;
    for (int64_t s = 0; s < ns; s++) {
        kv->off[s] = o;
        kv->cap[s] = caps[s];
        kv->len[s] = 0;
        o += caps[s];
    }
    kv->n_past = 0;
    *out = kv;
    return 0;
}

int kv_cache_new_ragged(kv_cache **out, int64_t n_layer, int64_t n_kv_head,
                        int64_t head_dim, const int64_t *caps, int dtype) {
    return kv_cache_new_ragged_on(out, n_layer, n_kv_head, head_dim, caps, kv_types_of(dtype), NULL);
}

int kv_cache_new(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                 int64_t cap, int dtype) {
    *out = NULL;
    if (n_layer <= 0 || n_kv_head <= 0 || n_layer > 4096 || n_kv_head > 4096)
        return tis_error(TIS_EINVAL, "kv: bad shape %lld x %lld", (long long)n_layer,
                         (long long)n_kv_head);
    int64_t ns = n_layer * n_kv_head;
    int64_t *caps = malloc((size_t)ns * sizeof *caps);
    if (!caps) return tis_error(TIS_ENOMEM, "kv: out of memory");
    for (int64_t s = 0; s < ns; s++) caps[s] = cap;
    int rc = kv_cache_new_ragged(out, n_layer, n_kv_head, head_dim, caps, dtype);
    free(caps);
    return rc;
}

void kv_cache_destroy(kv_cache **p) {
    if (!p || !*p) return;
    kv_cache *kv = *p;
    if (kv->be) {
        if (kv->bias) kv->be->free(kv->be->ctx, kv->bias);
        if (kv->dev) kv->be->free(kv->be->ctx, kv->dev);
    } else {
        free(kv->bias);
    }
    free(kv->mem);
    free(kv);
    *p = NULL;
}

static int64_t s_rows(const kv_cache *kv) {
    return kv->n_stream ? kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1] : 0;
}

int kv_cache_enable_bias(kv_cache *kv) {
    if (kv->bias) return 0;
    size_t n = (size_t)(s_rows(kv) ? s_rows(kv) : 1);
    if (!kv->be) {
        kv->bias = calloc(n, sizeof(float));
        return kv->bias ? 0 : tis_error(TIS_ENOMEM, "kv: out of memory for the attention bias");
    }
    float *zero = calloc(n, sizeof(float));
    float *b = kv->be->alloc(kv->be->ctx, n * sizeof(float));
    int rc = zero && b ? kv->be->upload(kv->be->ctx, b, zero, n * sizeof(float))
                       : tis_error(TIS_ENOMEM, "kv: out of memory for the attention bias");
    free(zero);
    if (rc && b) kv->be->free(kv->be->ctx, b);
    if (!rc) kv->bias = b;
    return rc;
}

void kv_cache_clear(kv_cache *kv) {
    for (int64_t s = 0; s < kv->n_stream; s++) kv->len[s] = 0;
    if (kv->kscale) memset(kv->kscale, 0, kv_cache_scale_bytes(kv));
    kv->n_past = 0;
}

int64_t kv_cache_room(const kv_cache *kv) {
    int64_t room = INT64_MAX;
    for (int64_t s = 0; s < kv->n_stream; s++) {
        int64_t r = kv->cap[s] - kv->len[s];
        if (r < room) room = r;
    }
    return kv->n_stream ? room : 0;
}

int64_t kv_cache_entries(const kv_cache *kv) {
    int64_t n = 0;
    for (int64_t s = 0; s < kv->n_stream; s++) n += kv->len[s];
    return n;
}

size_t kv_cache_entry_bytes(const kv_cache *kv) {
    return kv->k_row + kv->v_row + sizeof(int32_t);
}

size_t kv_cache_scale_bytes(const kv_cache *kv) {
    return kv->kscale ? (size_t)(kv->n_stream * KV_KEY_XFORM(kv->head_dim)) * sizeof(float) : 0;
}

size_t kv_cache_bytes_used(const kv_cache *kv) {
    return (size_t)kv_cache_entries(kv) * kv_cache_entry_bytes(kv) + kv_cache_scale_bytes(kv);
}

size_t kv_cache_bytes_reserved(const kv_cache *kv) {
    int64_t n = 0;
    for (int64_t s = 0; s < kv->n_stream; s++) n += kv->cap[s];
    return (size_t)n * kv_cache_entry_bytes(kv) + kv_cache_scale_bytes(kv);
}

int kv_cache_compact(kv_cache **out, const kv_cache *src, const uint8_t *keep, int64_t extra) {
    *out = NULL;
    if (src->be)
        return tis_error(TIS_EUNSUPPORTED, "kv: compaction reads host caches; this one lives in %s memory "
                                           "(kv_cache_to_host first: compaction on the device is not built)",
                         src->be->name);
    if (extra < 0) return tis_error(TIS_EINVAL, "kv: negative extra capacity");
    int64_t ns = src->n_stream, hd = src->head_dim;
    int64_t *caps = calloc((size_t)ns, sizeof *caps);
    if (!caps) return tis_error(TIS_ENOMEM, "kv: out of memory");
    for (int64_t s = 0; s < ns; s++) {
        int64_t n = 0;
        for (int64_t i = 0; i < src->len[s]; i++) n += keep ? keep[src->off[s] + i] != 0 : 1;
        caps[s] = n + extra;
    }
    kv_cache *kv = NULL;
    int rc = kv_cache_new_ragged_on(&kv, src->n_layer, src->n_kv_head, hd, caps,
                                    (kv_types){src->k_type, src->v_type}, NULL);
    free(caps);
    if (!rc && src->bias) rc = kv_cache_enable_bias(kv);
    if (rc) {
        kv_cache_destroy(&kv);
        return rc;
    }
    size_t kr = src->k_row, vr = src->v_row;
    for (int64_t s = 0; s < ns; s++) {
        const char *K = kv_cache_k(src, s), *V = kv_cache_v(src, s);
        const int32_t *P = kv_cache_pos(src, s);
        char *K2 = kv_cache_k(kv, s), *V2 = kv_cache_v(kv, s);
        int32_t *P2 = kv_cache_pos(kv, s);
        int64_t n = 0;
        for (int64_t i = 0; i < src->len[s]; i++) {
            if (keep && !keep[src->off[s] + i]) continue;
            memcpy(K2 + (size_t)n * kr, K + (size_t)i * kr, kr);
            memcpy(V2 + (size_t)n * vr, V + (size_t)i * vr, vr);
            P2[n] = P[i];
            if (src->bias) kv->bias[kv->off[s] + n] = src->bias[src->off[s] + i];
            n++;
        }
        kv->len[s] = n;
    }
    if (src->kscale) memcpy(kv->kscale, src->kscale, kv_cache_scale_bytes(src));
    kv->n_past = src->n_past;
    *out = kv;
    return 0;
}

size_t kv_cache_block_bytes(const kv_cache *kv) {
    return kv_cache_bytes_used(kv) + (kv->bias ? (size_t)kv_cache_entries(kv) * sizeof(float) : 0);
}

void kv_cache_block_write(const kv_cache *kv, void *dst) {
    KV_HOST_ONLY(kv);
    char *p = dst;
    for (int64_t s = 0; s < kv->n_stream; s++) {
        size_t n = (size_t)kv->len[s];
        if (kv->kscale) { /* scales, then zero points */
            memcpy(p, kv_cache_kscale(kv, s), (size_t)KV_KEY_XFORM(kv->head_dim) * sizeof(float));
            p += (size_t)KV_KEY_XFORM(kv->head_dim) * sizeof(float);
        }
        memcpy(p, kv_cache_k(kv, s), n * kv->k_row);
        p += n * kv->k_row;
        memcpy(p, kv_cache_v(kv, s), n * kv->v_row);
        p += n * kv->v_row;
        memcpy(p, kv_cache_pos(kv, s), n * sizeof(int32_t));
        p += n * sizeof(int32_t);
        if (kv->bias) {
            memcpy(p, kv->bias + kv->off[s], n * sizeof(float));
            p += n * sizeof(float);
        }
    }
}

int kv_cache_block_read(kv_cache **out, int64_t n_layer, int64_t n_kv_head, int64_t head_dim,
                        kv_types types, const int64_t *stream_len, int64_t n_past, bool bias,
                        const void *block, size_t block_len, int64_t extra) {
    *out = NULL;
    if (!kv_dtype_ok(types.k) || !kv_dtype_ok(types.v))
        return tis_error(TIS_EUNSUPPORTED,
                         "kv: a block of element types %d, %d (f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30 are read)",
                         types.k, types.v);
    if (n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0 || n_layer > 4096 || n_kv_head > 4096 ||
        head_dim > 4096 || extra < 0 || n_past < 0 || n_past > INT32_MAX || !kv_row_bytes(types.k, head_dim) ||
        !kv_row_bytes(types.v, head_dim))
        return tis_error(TIS_EFORMAT, "kv: bad block layout %lld x %lld x %lld of %s, %s", (long long)n_layer,
                         (long long)n_kv_head, (long long)head_dim, kv_dtype_name(types.k), kv_dtype_name(types.v));
    int64_t ns = n_layer * n_kv_head;
    size_t kr = kv_row_bytes(types.k, head_dim), vr = kv_row_bytes(types.v, head_dim);
    size_t per = kr + vr + sizeof(int32_t) + (bias ? sizeof(float) : 0);
    size_t scales = kv_dtype_block(types.k) ? (size_t)KV_KEY_XFORM(head_dim) * sizeof(float) : 0,
           need = (size_t)ns * scales;
    for (int64_t s = 0; s < ns; s++) {
        if (stream_len[s] < 0 || stream_len[s] > n_past)
            return tis_error(TIS_EFORMAT, "kv: stream %lld claims %lld entries (n_past %lld)", (long long)s,
                             (long long)stream_len[s], (long long)n_past);
        need += (size_t)stream_len[s] * per; /* no overflow: each term < 2^31 * 2^15 */
    }
    if (need != block_len)
        return tis_error(TIS_EFORMAT, "kv: the layout needs %zu bytes, the block has %zu", need, block_len);
    int64_t *caps = malloc((size_t)ns * sizeof *caps);
    if (!caps) return tis_error(TIS_ENOMEM, "kv: out of memory");
    for (int64_t s = 0; s < ns; s++) caps[s] = stream_len[s] + extra;
    kv_cache *kv = NULL;
    int rc = kv_cache_new_ragged_on(&kv, n_layer, n_kv_head, head_dim, caps, types, NULL);
    free(caps);
    if (!rc && bias) rc = kv_cache_enable_bias(kv);
    if (rc) {
        kv_cache_destroy(&kv);
        return rc;
    }
    const char *p = block;
    for (int64_t s = 0; s < ns; s++) {
        size_t n = (size_t)stream_len[s];
        if (scales) {
            float *sc = kv->kscale + s * KV_KEY_XFORM(head_dim);
            memcpy(sc, p, scales);
            p += scales;
            /* scales set (all finite and > 0) for a stream with entries, unset
             * (0) allowed for an empty one; zero points finite */
            bool ok = true;
            for (int64_t c = 0; c < head_dim && ok; c++)
                ok = isfinite(sc[c]) && (n ? sc[c] > 0.0f : sc[c] >= 0.0f) && isfinite(sc[head_dim + c]);
            if (!ok) {
                kv_cache_destroy(&kv);
                return tis_error(TIS_EFORMAT,
                                 "kv: stream %lld's key scales are not finite and positive, or its zero points "
                                 "not finite", (long long)s);
            }
        }
        memcpy(kv_cache_k(kv, s), p, n * kr);
        p += n * kr;
        memcpy(kv_cache_v(kv, s), p, n * vr);
        p += n * vr;
        memcpy(kv_cache_pos(kv, s), p, n * sizeof(int32_t));
        p += n * sizeof(int32_t);
        if (bias) {
            memcpy(kv->bias + kv->off[s], p, n * sizeof(float));
            p += n * sizeof(float);
        }
        kv->len[s] = (int64_t)n;
        for (size_t i = 0; i < n; i++)
            if (kv_cache_pos(kv, s)[i] < 0 || kv_cache_pos(kv, s)[i] >= n_past) {
                kv_cache_destroy(&kv);
                return tis_error(TIS_EFORMAT, "kv: stream %lld holds position outside 0..%lld", (long long)s,
                                 (long long)n_past - 1);
            }
    }
    kv->n_past = n_past;
    *out = kv;
    return 0;
}

kv_view kv_cache_view(const kv_cache *kv) {
    /* streams are laid out in order: the last one ends the arrays */
    int64_t rows = s_rows(kv);
    return (kv_view){.n_layer = kv->n_layer, .n_kv_head = kv->n_kv_head, .head_dim = kv->head_dim,
                     .n_entries = rows, .k_type = kv->k_type, .v_type = kv->v_type, .k = kv->k, .v = kv->v, .bias = kv->bias, .kscale = kv->kscale, .off = kv->off,
                     .len = kv->len};
}

/* A copy of src's layout and host arrays in a new cache of be's (NULL:
 * the host), k, v and bias still to be filled. */
static int s_twin(kv_cache **out, const kv_cache *src, const tis_backend *be) {
    int rc = kv_cache_new_ragged_on(out, src->n_layer, src->n_kv_head, src->head_dim, src->cap,
                                    (kv_types){src->k_type, src->v_type}, be);
    if (!rc && src->bias) rc = kv_cache_enable_bias(*out);
    if (rc) {
        kv_cache_destroy(out);
        return rc;
    }
    kv_cache *kv = *out;
    memcpy(kv->pos, src->pos, (size_t)s_rows(src) * sizeof(int32_t));
    memcpy(kv->len, src->len, (size_t)src->n_stream * sizeof(int64_t));
    if (src->kscale) memcpy(kv->kscale, src->kscale, kv_cache_scale_bytes(src));
    kv->n_past = src->n_past;
    return 0;
}

/* Copies k, v and bias (all rows, filled or not: two or three transfers)
 * from src to dst, same layout, across host and backend memory. */
static int s_copy_rows(kv_cache *dst, const kv_cache *src) {
    size_t kb = (size_t)s_rows(src) * src->k_row, vb = (size_t)s_rows(src) * src->v_row;
    size_t bb = (size_t)s_rows(src) * sizeof(float);
    const tis_backend *be = dst->be ? dst->be : src->be;
    if (!be || backend_is_host(be)) {
        memcpy(dst->k, src->k, kb);
        memcpy(dst->v, src->v, vb);
        if (src->bias) memcpy(dst->bias, src->bias, bb);
        return 0;
    }
    int (*cp)(void *, void *, const void *, size_t) = dst->be ? be->upload : be->download;
    int rc = cp(be->ctx, dst->k, src->k, kb);
    if (!rc) rc = cp(be->ctx, dst->v, src->v, vb);
    if (!rc && src->bias) rc = cp(be->ctx, dst->bias, src->bias, bb);
    return rc;
}

int kv_cache_to_backend(kv_cache **out, const kv_cache *src, const tis_backend *be) {
    *out = NULL;
    if (src->be && be && !backend_is_host(be))
        return tis_error(TIS_EUNSUPPORTED, "kv: a cache in %s memory is not copied to %s memory directly "
                                           "(kv_cache_to_host first)", src->be->name, be->name);
    int rc = s_twin(out, src, be);
    if (!rc) rc = s_copy_rows(*out, src);
    if (rc) kv_cache_destroy(out);
    return rc;
}

int kv_cache_to_host(kv_cache **out, const kv_cache *src) { return kv_cache_to_backend(out, src, NULL); }
