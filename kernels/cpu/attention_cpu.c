/* attention_cpu: the CPU backend's attention over a (possibly compacted,
 * ragged) KV cache whose keys and values are f32, f16, bf16, q8_0 or q4_0
 * (read as f32 rows: dequantised CHUNK rows at a time, or a stream at a
 * time; quantised keys through their stream's channel transform, kv_view.kscale).
 *
 * Two paths, the same arithmetic up to summation order:
 *  - decode-sized batches (T <= DECODE_T rows, nobody observing the
 *    probabilities): heads split over the thread pool; the query heads of
 *    one KV head read its stream's rows in the stored type, CHUNK rows at a
 *    time converted to f32 once for all of them, dots (vectorised: eight
 *    partial sums), softmax, weighted sum of values (eight outputs at a
 *    time in registers).
 *    This is the decode step's path: the cache is read once per head group
 *    in its own (half-size) type, no BLAS call, no allocation per call.
 *  - prefill (and any observed call: oracle labels, H2O, SnapKV): query
 *    rows in blocks of QBLOCK, scores by OpenBLAS sgemm against the stream's
 *    keys (converted once per KV head to f32 when the cache is not f32);
 *    (head, block) tiles over the thread pool, or whole KV heads when
 *    observed (an observer then sees each stream from one thread). */
#include "attention_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "pool.h"
#include "softmax.h"
#include "tis_error.h"

enum { QBLOCK = 128, DECODE_T = 16, CHUNK = 64 };

/* ---- rows of the stored type to f32 ---------------------------------------- */

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
__attribute__((target("avx2,f16c"))) static void s_h2f_f16c(const uint16_t *h, float *f, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) f[i] = quant_f16_to_f32(h[i]);
}
static bool s_has_f16c(void) {
    static _Atomic int has = -1; /* read by the pool's threads too */
    int h = atomic_load_explicit(&has, memory_order_relaxed);
    if (h < 0) {
        __builtin_cpu_init();
        unsigned a, b, c, d; /* F16C from CPUID: clang 14's __builtin_cpu_supports does not know "f16c" */
        h = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        atomic_store_explicit(&has, h, memory_order_relaxed);
    }
    return h;
}
#endif

/* n elements of `dtype` at src -> dst (f32). */
static void s_to_f32(int dtype, const void *src, float *dst, int64_t n) {
    if (dtype == GGML_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (dtype == GGML_TYPE_F16) {
#if defined(__x86_64__)
        if (s_has_f16c()) {
            s_h2f_f16c(src, dst, n);
            return;
        }
#endif
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = quant_f16_to_f32(h[i]);
    } else if (kv_dtype_block(dtype)) { /* whole rows: whole blocks of 32 */
        quant_dequantize_row(dtype, src, dst, n);
    } else { /* bf16: the high half of an f32 */
        const uint16_t *h = src;
        uint32_t *u = (uint32_t *)dst;
        for (int64_t i = 0; i < n; i++) u[i] = (uint32_t)h[i] << 16;
    }
}

/* n key rows of stream s at src -> dst (f32): Q8_0 / Q4_0 keys times the stream's
 * channel scales plus its zero points (kv_view.kscale). The zero points add
 * q . zero to every logit of a query, which its softmax would cancel; they
 * are added back all the same, so that the keys read are the keys stored. */
static void s_keys_f32(const kv_view *kv, int64_t s, const void *src, float *dst, int64_t n) {
    if (kv->kscale && kv_dtype_block(kv->k_type)) {
        const float *sc = kv->kscale + s * KV_KEY_XFORM(kv->head_dim);
        quant_scaled_rows_f32(kv->k_type, src, sc, sc + kv->head_dim, dst, n, kv->head_dim);
    } else {
        s_to_f32(kv->k_type, src, dst, n * kv->head_dim);
    }
}

/* ---- decode-sized batches: heads over the pool ------------------------------ */

typedef struct att_job {
    float *out;
    const float *q;
    const kv_view *kv;
    int64_t layer, T, n_head, group, hd, max_len, grain;
    float scale;
    float *scratch; /* per slice: [T][max_len] scores + [CHUNK][hd] rows */
} att_job;

/* q . k over n elements in eight interleaved partial sums (a fixed order,
 * so the compiler can keep them in one vector: a plain `d += q[e] * k[e]`
 * is a chain of n dependent scalar adds, which made this dot most of a
 * long-context decode step). */
static inline float s_dot(const float *q, const float *k, int64_t n) {
    float a[8] = {0};
    int64_t e = 0;
    for (; e + 8 <= n; e += 8)
        for (int l = 0; l < 8; l++) a[l] += q[e + l] * k[e + l];
    float d = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    for (; e < n; e++) d += q[e] * k[e];
    return d;
}

/* Query heads h0 .. h0+nh-1, which share one KV head (its stream): each
 * chunk of keys and of values is converted to f32 once for all of them
 * (GQA: Qwen2.5-0.5B has 7 query heads a KV head). sc holds nh * T rows of
 * max_len scores. */
static void s_group(const att_job *j, int64_t h0, int64_t nh, float *sc, float *rows) {
    const kv_view *kv = j->kv;
    int64_t hd = j->hd, T = j->T, s = j->layer * kv->n_kv_head + h0 / j->group;
    int64_t L = kv->len[s], n_old = L - T;
    size_t k_row = kv_row_bytes(kv->k_type, hd), v_row = kv_row_bytes(kv->v_type, hd);
    const char *K = (const char *)kv->k + (size_t)kv->off[s] * k_row;
    const char *V = (const char *)kv->v + (size_t)kv->off[s] * v_row;
    const float *bias = kv->bias ? kv->bias + kv->off[s] : NULL;
    for (int64_t c0 = 0; c0 < L; c0 += CHUNK) {
        int64_t nc = L - c0 < CHUNK ? L - c0 : CHUNK;
        const float *kf = rows;
        if (kv->k_type == GGML_TYPE_F32) kf = (const float *)(K + (size_t)c0 * k_row);
        else s_keys_f32(kv, s, K + (size_t)c0 * k_row, rows, nc);
        for (int64_t g = 0; g < nh; g++)
            for (int64_t r = 0; r < T; r++) {
                const float *qr = j->q + (r * j->n_head + h0 + g) * hd;
                float *srow = sc + (g * T + r) * L + c0;
                for (int64_t i = 0; i < nc; i++) srow[i] = s_dot(qr, kf + i * hd, hd) * j->scale;
            }
    }
    for (int64_t g = 0; g < nh; g++)
        for (int64_t r = 0; r < T; r++) {
            float *srow = sc + (g * T + r) * L;
            int64_t vis = n_old + r + 1; /* causal */
            cpu_softmax(srow, vis, bias);
            for (int64_t i = vis; i < L; i++) srow[i] = 0.0f;
            memset(j->out + (r * j->n_head + h0 + g) * hd, 0, (size_t)hd * sizeof(float));
        }
    for (int64_t c0 = 0; c0 < L; c0 += CHUNK) {
        int64_t nc = L - c0 < CHUNK ? L - c0 : CHUNK;
        const float *vf = rows;
        if (kv->v_type == GGML_TYPE_F32) vf = (const float *)(V + (size_t)c0 * v_row);
        else s_to_f32(kv->v_type, V + (size_t)c0 * v_row, rows, nc * hd);
        for (int64_t g = 0; g < nh; g++)
            for (int64_t r = 0; r < T; r++) {
                float *o = j->out + (r * j->n_head + h0 + g) * hd;
                const float *p = sc + (g * T + r) * L + c0;
                /* eight output elements at a time held in registers over the
                 * chunk's rows (each element still sums its rows in order) */
                int64_t e0 = 0;
                for (; e0 + 8 <= hd; e0 += 8) {
                    float a[8];
                    memcpy(a, o + e0, sizeof a);
                    for (int64_t i = 0; i < nc; i++)
                        for (int l = 0; l < 8; l++) a[l] += p[i] * vf[i * hd + e0 + l];
                    memcpy(o + e0, a, sizeof a);
                }
                for (; e0 < hd; e0++)
                    for (int64_t i = 0; i < nc; i++) o[e0] += p[i] * vf[i * hd + e0];
            }
    }
}

/* A slice's heads [h0, h1), a KV head's run of them at a time. */
static void s_heads(void *ctx, int64_t h0, int64_t h1) {
    const att_job *j = ctx;
    size_t per = (size_t)(j->grain * j->T * j->max_len + CHUNK * j->hd);
    float *sc = j->scratch + (size_t)(h0 / j->grain) * per;
    for (int64_t h = h0; h < h1;) {
        int64_t end = (h / j->group + 1) * j->group;
        if (end > h1) end = h1;
        s_group(j, h, end - h, sc, sc + j->grain * j->T * j->max_len);
        h = end;
    }
}

/* Grow-only per-thread scratch buffers. */
typedef struct scratch_buf {
    float *p;
    size_t cap; /* floats */
} scratch_buf;

static float *s_grow_scratch(scratch_buf *b, size_t floats) {
    if (floats <= b->cap) return b->p;
    free(b->p);
    b->p = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
    b->cap = b->p ? floats : 0;
    return b->p;
}

/* The forward thread's (decode) and each thread's tiles (prefill). */
static _Thread_local scratch_buf S;

static float *s_scratch(size_t floats) { return s_grow_scratch(&S, floats); }

static int s_decode(float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T, int64_t n_head,
                    int64_t max_len) {
    /* a short cache is less work than waking the pool's threads (the same
     * rule as the matmuls'): one slice, here */
    bool small = T * n_head * max_len * kv->head_dim < (1 << 18);
    int64_t threads = small ? 1 : pool_threads(), grain = (n_head + threads - 1) / threads;
    int64_t slices = (n_head + grain - 1) / grain;
    size_t per = (size_t)(grain * T * max_len + CHUNK * kv->head_dim);
    float *scratch = s_scratch((size_t)slices * per);
    if (!scratch)
        return tis_error(TIS_ENOMEM, "attention: out of memory for the scratch of %lld keys", (long long)max_len);
    att_job j = {out, q, kv, layer, T, n_head, n_head / kv->n_kv_head, kv->head_dim, max_len, grain,
                 1.0f / sqrtf((float)kv->head_dim), scratch};
    if (small) s_heads(&j, 0, n_head);
    else pool_for(n_head, grain, s_heads, &j);
    return 0;
}

/* ---- prefill (and observed) attention: sgemm per query block -------------- */

/* The pool's threads each run whole (head, query block) tiles with a
 * single-threaded sgemm: OpenBLAS is held to one thread for the call (its
 * own threads would fight the pool's for the cores, and the softmax between
 * the two sgemms would run on one core). Unobserved: every (head, block) of
 * a KV head's query heads is a job. Observed: a job is a whole KV head (its
 * query heads in order, their blocks in order), so an observer sees one
 * stream's calls from one thread, in the serial order (with fewer KV heads
 * than threads, observed calls run on this thread and OpenBLAS threads
 * each sgemm, as before the pool took over). */
typedef struct pf_job {
    float *out;
    const float *q;
    const kv_view *kv;
    const attn_observer *obs;
    int64_t layer, T, n_head, group, hd, qb, n_qb;
    size_t ml;
    float scale;
    int64_t s;            /* unobserved: the stream of this round */
    const float *K, *V;   /* unobserved: its keys and values in f32 */
} pf_job;

/* Grow-only per-thread scratch for the converted keys and values of a
 * stream, apart from S (which the tiles use). */
static _Thread_local scratch_buf C;

static float *s_conv_scratch(size_t floats) { return s_grow_scratch(&C, floats); }

/* Keys and values of stream s in f32: in place when stored f32, else
 * converted into this thread's C scratch (NULL: out of memory). */
static bool s_stream_f32(const pf_job *j, int64_t s, const float **K, const float **V) {
    const kv_view *kv = j->kv;
    const void *Kp = (const char *)kv->k + (size_t)kv->off[s] * kv_row_bytes(kv->k_type, j->hd);
    const void *Vp = (const char *)kv->v + (size_t)kv->off[s] * kv_row_bytes(kv->v_type, j->hd);
    if (kv->k_type == GGML_TYPE_F32 && kv->v_type == GGML_TYPE_F32) {
        *K = Kp;
        *V = Vp;
        return true;
    }
    float *f = s_conv_scratch(2 * j->ml * (size_t)j->hd);
    if (!f) return false;
    int64_t L = kv->len[s];
    s_keys_f32(kv, s, Kp, f, L);
    s_to_f32(kv->v_type, Vp, f + j->ml * (size_t)j->hd, L * j->hd);
    *K = f;
    *V = f + j->ml * (size_t)j->hd;
    return true;
}

/* Query block [q0, q0 + nq) of head h against stream s's f32 keys and
 * values, in this thread's S scratch (false: out of memory). */
static bool s_tile(const pf_job *j, int64_t h, int64_t s, const float *K, const float *V, int64_t q0) {
    const kv_view *kv = j->kv;
    int64_t hd = j->hd, n_head = j->n_head, T = j->T;
    int64_t nq = T - q0 < j->qb ? T - q0 : j->qb;
    float *sc = s_scratch((size_t)j->qb * j->ml + 2 * (size_t)j->qb * (size_t)hd);
    if (!sc) return false;
    float *qh = sc + (size_t)j->qb * j->ml, *oh = qh + (size_t)j->qb * (size_t)hd;
    int64_t L = kv->len[s], n_old = L - T;
    /* Only keys visible to the block's last row take part. */
    int64_t nk = n_old + q0 + nq;
    for (int64_t r = 0; r < nq; r++)
        memcpy(qh + r * hd, j->q + ((q0 + r) * n_head + h) * hd, (size_t)hd * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk, (blasint)hd, j->scale, qh,
                (blasint)hd, K, (blasint)hd, 0.0f, sc, (blasint)nk);
    const float *bias = kv->bias ? kv->bias + kv->off[s] : NULL;
    for (int64_t r = 0; r < nq; r++) {
        float *row = sc + r * nk;
        int64_t vis = n_old + q0 + r + 1; /* causal */
        cpu_softmax(row, vis, bias);
        for (int64_t c = vis; c < nk; c++) row[c] = 0.0f;
    }
    if (j->obs && j->obs->fn) j->obs->fn(j->obs->user, j->layer, h, q0, nq, sc, nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nq, (blasint)hd, (blasint)nk, 1.0f, sc,
                (blasint)nk, V, (blasint)hd, 0.0f, oh, (blasint)hd);
    for (int64_t r = 0; r < nq; r++)
        memcpy(j->out + ((q0 + r) * n_head + h) * hd, oh + r * hd, (size_t)hd * sizeof(float));
    return true;
}

static _Atomic int s_pf_oom; /* a tile or stream found no scratch */

/* Unobserved: tiles i0..i1 of stream j->s (head-major, then block). */
static void s_pf_tiles(void *ctx, int64_t i0, int64_t i1) {
    const pf_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        int64_t h = j->s % j->kv->n_kv_head * j->group + i / j->n_qb;
        if (!s_tile(j, h, j->s, j->K, j->V, (i % j->n_qb) * j->qb)) atomic_store(&s_pf_oom, 1);
    }
}

/* Observed: KV heads g0..g1 of the layer, each whole and in order. */
static void s_pf_streams(void *ctx, int64_t g0, int64_t g1) {
    const pf_job *j = ctx;
    for (int64_t g = g0; g < g1; g++) {
        int64_t s = j->layer * j->kv->n_kv_head + g;
        const float *K, *V;
        bool ok = s_stream_f32(j, s, &K, &V);
        for (int64_t h = g * j->group; ok && h < (g + 1) * j->group; h++)
            for (int64_t b = 0; ok && b < j->n_qb; b++) ok = s_tile(j, h, s, K, V, b * j->qb);
        if (!ok) atomic_store(&s_pf_oom, 1);
    }
}

static int s_prefill(float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T, int64_t n_head,
                     int64_t max_len, const attn_observer *obs) {
    int64_t hd = kv->head_dim, qb = T < QBLOCK ? T : QBLOCK;
    pf_job j = {out, q, kv, obs, layer, T, n_head, n_head / kv->n_kv_head, hd, qb, (T + qb - 1) / qb,
                (size_t)(max_len ? max_len : 1), 1.0f / sqrtf((float)hd), -1, NULL, NULL};
    for (int64_t s = layer * kv->n_kv_head; s < (layer + 1) * kv->n_kv_head; s++) TIS_ASSERT(kv->len[s] >= T);
    /* a short pass is less work than waking the pool (the decode path's
     * rule); observed with fewer KV heads than threads, whole KV heads
     * would leave threads idle: one thread here, OpenBLAS's own in sgemm */
    bool small = T * n_head * max_len * hd < (1 << 18);
    int threads = small ? 1 : pool_threads();
    if (obs && obs->fn && kv->n_kv_head < threads) threads = 1;
    int blas = threads > 1 ? openblas_get_num_threads() : 1;
    if (blas > 1) openblas_set_num_threads(1);
    atomic_store(&s_pf_oom, 0);
    if (obs && obs->fn) {
        if (threads > 1) pool_for(kv->n_kv_head, 1, s_pf_streams, &j);
        else s_pf_streams(&j, 0, kv->n_kv_head);
    } else {
        for (int64_t g = 0; g < kv->n_kv_head && !atomic_load(&s_pf_oom); g++) {
            j.s = layer * kv->n_kv_head + g;
            if (!s_stream_f32(&j, j.s, &j.K, &j.V)) {
                atomic_store(&s_pf_oom, 1);
                break;
            }
            if (threads > 1) pool_for(j.group * j.n_qb, 1, s_pf_tiles, &j);
            else s_pf_tiles(&j, 0, j.group * j.n_qb);
        }
    }
    if (blas > 1) openblas_set_num_threads(blas);
    if (atomic_load(&s_pf_oom))
        return tis_error(TIS_ENOMEM, "attention: out of memory for the scratch of %lld keys", (long long)max_len);
    return 0;
}

int cpu_attention(float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T, int64_t n_head,
                  const attn_observer *obs) {
    for (int w = 0; w < 2; w++) {
        int t = w ? kv->v_type : kv->k_type;
        if (!kv_row_bytes(t, kv->head_dim))
            return tis_error(TIS_EUNSUPPORTED, "attention: KV element type %d with head_dim %lld", t,
                             (long long)kv->head_dim);
    }
    int64_t max_len = 0;
    for (int64_t h = 0; h < kv->n_kv_head; h++) {
        int64_t l = kv->len[layer * kv->n_kv_head + h];
        if (l > max_len) max_len = l;
    }
    if (T <= DECODE_T && !(obs && obs->fn)) return s_decode(out, q, kv, layer, T, n_head, max_len);
    return s_prefill(out, q, kv, layer, T, n_head, max_len, obs);
}
