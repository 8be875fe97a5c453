/* backend_cpu: the reference backend: f32 on the host, OpenBLAS for products. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "attention_cpu.h"
#include "pool.h"
#include "qdot.h"
#include "quant.h"
#include "softmax.h"
#include "tis_error.h"

static void *s_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

static void s_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

/* ---- matrix products --------------------------------------------------------
 *
 * Decode-sized products (T <= QDOT_MAX_T rows) read the weights in their
 * file format: each activation row is quantised once (qdot), then every
 * weight row is dotted with the T rows while it is in cache (its blocks
 * unpacked once for several rows, qdot_rows_fn, where the type has it),
 * output rows split over the thread pool. Larger products (prefill) dequantise
 * up to TILE_BYTES of weight rows at a time to f32 and multiply with OpenBLAS sgemm,
 * the prompt's rows split over the thread pool (one single-threaded sgemm
 * a slice); f32 weights go to sgemm directly, split the same way. */
enum { QDOT_MAX_T = 16 };
/* Prefill's f32 tiles: as many weight rows as fit this many bytes (sgemm is
 * fastest on wide products), so most matrices are one tile. */
#define TILE_BYTES ((size_t)16 << 20)

/* Grow-only scratch of the thread that runs the forward pass. */
static _Thread_local struct {
    void *act;
    size_t act_cap;
    float *tile;
    size_t tile_cap;
} S;

static void *s_grow(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return *p;
    free(*p);
    *p = aligned_alloc(64, (need + 63) & ~(size_t)63);
    *cap = *p ? need : 0;
    if (!*p) tis_error(TIS_ENOMEM, "cpu: out of memory for %zu bytes of scratch", need);
    return *p; /* TILE_BYTES at most (+ QDOT_MAX_T activation rows) */
}

typedef struct mm_job {
    const tis_weight *w;
    float *y;
    const float *x;
    const uint8_t *act;   /* [T][act_stride] */
    size_t act_stride;
    int64_t T;
    bool acc;
    qdot_row_fn fn;
    qdot_rows_fn rows;    /* fn for several activation rows at once, or NULL */
} mm_job;

static void s_mm_rows(void *ctx, int64_t o0, int64_t o1) {
    const mm_job *j = ctx;
    const tis_weight *w = j->w;
    const uint8_t *rows = w->data;
    enum { CHUNK = 16 };
    float v[CHUNK];
    for (int64_t o = o0; o < o1; o++) {
        const void *row = rows + (size_t)o * w->row_bytes;
        for (int64_t t0 = 0; t0 < j->T; t0 += CHUNK) {
            int64_t nt = j->T - t0 < CHUNK ? j->T - t0 : CHUNK;
            const uint8_t *act = j->act ? j->act + (size_t)t0 * j->act_stride : NULL; /* NULL: f32 rows */
            const float *x = j->x + t0 * w->n_in;
            if (j->rows && nt > 1) j->rows(row, act, j->act_stride, x, nt, w->n_in, v);
            else
                for (int64_t t = 0; t < nt; t++)
                    v[t] = j->fn(row, act ? act + (size_t)t * j->act_stride : NULL, x + t * w->n_in, w->n_in);
            for (int64_t t = 0; t < nt; t++) {
                float *yo = j->y + (t0 + t) * w->n_out + o;
                *yo = j->acc ? *yo + v[t] : v[t];
            }
        }
    }
}

/* Output rows over the thread pool; small products (a tiny model, a short
 * row) stay on this thread, where waking workers would cost more. */
static void s_run(mm_job *j) {
    if (j->T * j->w->n_out * j->w->n_in < (1 << 18)) s_mm_rows(j, 0, j->w->n_out);
    else { /* about four chunks per thread, whole multiples of 16 rows */
        int64_t per = j->w->n_out / (4 * pool_threads());
        pool_for(j->w->n_out, per < 16 ? 16 : (per + 15) / 16 * 16, s_mm_rows, j);
    }
}

/* Decode products quantise each activation row to 8 bits and dot it in
 * integers (llama.cpp's arithmetic, the default), or keep it in f32 (the
 * f32 product up to summation order): backend_cpu_set_f32_act, starting
 * from $TIS_QDOT_ACT=q8|f32. */
static int s_f32_act = -1;
static bool s_prompt; /* the current step computes prompt tokens: f32 */

static bool s_user_f32(void) {
    if (s_f32_act < 0) {
        const char *v = getenv("TIS_QDOT_ACT");
        s_f32_act = v && !strcmp(v, "f32");
    }
    return s_f32_act;
}

static bool s_q8_act(void) { return !s_user_f32() && !s_prompt; }

void backend_cpu_set_f32_act(bool on) { s_f32_act = on; }
bool backend_cpu_f32_act(void) { return s_user_f32(); }

static void s_prompt_step(void *ctx, bool prompt) {
    (void)ctx;
    s_prompt = prompt;
}

static int s_matmul_q(float *y, const float *x, const tis_weight *w, int64_t T, bool acc) {
    if (!s_q8_act() || w->f32_act) {
        mm_job j = {w, y, x, NULL, 0, T, acc, qdot_f32act_fn_for(w->type, qdot_isa_best()),
                    qdot_f32act_rows_fn_for(w->type, qdot_isa_best())};
        s_run(&j);
        return 0;
    }
    size_t ab = qdot_act_bytes(w->type, w->n_in);
    uint8_t *act = ab ? s_grow(&S.act, &S.act_cap, ab * (size_t)T) : NULL;
    if (ab && !act) return TIS_ENOMEM;
    for (int64_t t = 0; t < T && ab; t++) qdot_act_quantize(w->type, x + t * w->n_in, w->n_in, act + ab * (size_t)t);
    mm_job j = {w, y, x, act, ab, T, acc, qdot_row_fn_for(w->type, qdot_isa_best()),
                qdot_rows_fn_for(w->type, qdot_isa_best())};
    s_run(&j);
    return 0;
}

/* Rows of a weight matrix to an f32 tile, over the pool. */
typedef struct deq_job {
    qdot_deq_fn fn;
    const uint8_t *rows;
    size_t row_bytes;
    float *tile;
    int64_t n_in;
} deq_job;

static void s_deq_rows(void *ctx, int64_t r0, int64_t r1) {
    const deq_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) j->fn(j->rows + (size_t)r * j->row_bytes, j->tile + r * j->n_in, j->n_in);
}

/* y[T][ld] (+)= x[T][n_in] . b[nr][n_in]^T, rows of T over the pool, each
 * slice one single-threaded sgemm (OpenBLAS held to one thread meanwhile:
 * its own threads would spin against the pool's for the same cores, and
 * the pool's work between sgemms, the dequantisation, would have one
 * core). A slice is a multiple of 16 rows, about one per thread. */
typedef struct sg_job {
    const float *x, *b;
    float *y;
    int64_t n_in, nr, ld;
    float beta;
} sg_job;

static void s_sg_rows(void *ctx, int64_t t0, int64_t t1) {
    const sg_job *j = ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)(t1 - t0), (blasint)j->nr, (blasint)j->n_in, 1.0f,
                j->x + t0 * j->n_in, (blasint)j->n_in, j->b, (blasint)j->n_in, j->beta, j->y + t0 * j->ld,
                (blasint)j->ld);
}

static void s_sgemm_rows(const sg_job *j, int64_t T) {
    int threads = pool_threads();
    int64_t per = (T + threads - 1) / threads;
    per = (per + 15) / 16 * 16;
    if (threads == 1 || T < 64) s_sg_rows((void *)j, 0, T);
    else pool_for(T, per, s_sg_rows, (void *)j);
}

static int s_matmul(void *ctx, float *y, const float *x, const tis_weight *w, int64_t T, bool accumulate) {
    int64_t n_in = w->n_in, n_out = w->n_out;
    /* generated-token steps always dot rows in place, whatever the batch: a
     * sequence's numbers then do not depend on how many others share its
     * step (each row's dot is computed alone, the same way); prompts of
     * more than QDOT_MAX_T rows go to sgemm */
    if ((T <= QDOT_MAX_T || !s_prompt) && qdot_type_supported(w->type)) return s_matmul_q(y, x, w, T, accumulate);
    int blas = pool_threads() > 1 ? openblas_get_num_threads() : 1;
    if (blas > 1) openblas_set_num_threads(1);
    int rc = 0;
    if (w->type == GGML_TYPE_F32 && w->row_bytes == (size_t)n_in * sizeof(float)) {
        sg_job sj = {x, w->data, y, n_in, n_out, n_out, accumulate ? 1.0f : 0.0f};
        s_sgemm_rows(&sj, T);
    } else {
        int64_t tile_rows = (int64_t)(TILE_BYTES / ((size_t)n_in * sizeof(float)));
        if (tile_rows < 16) tile_rows = 16;
        if (tile_rows > n_out) tile_rows = n_out;
        float *tile = s_grow((void **)&S.tile, &S.tile_cap, (size_t)tile_rows * (size_t)n_in * sizeof(float));
        const uint8_t *rows = w->data;
        qdot_deq_fn deq = qdot_deq_fn_for(w->type, qdot_isa_best());
        for (int64_t o0 = 0; tile && o0 < n_out; o0 += tile_rows) {
            int64_t nr = n_out - o0 < tile_rows ? n_out - o0 : tile_rows;
            deq_job dj = {deq, rows + (size_t)o0 * w->row_bytes, w->row_bytes, tile, n_in};
            pool_for(nr, 64, s_deq_rows, &dj);
            sg_job sj = {x, tile, y + o0, n_in, nr, n_out, accumulate ? 1.0f : 0.0f};
            s_sgemm_rows(&sj, T);
        }
        if (!tile) rc = TIS_ENOMEM;
    }
    if (blas > 1) openblas_set_num_threads(blas);
    return rc;
}

static void s_rmsnorm(void *ctx, float *y, const float *x, const float *w, int64_t T,
                      int64_t d, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * d;
        float *yt = y + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)xt[i] * xt[i];
        float r = 1.0f / sqrtf((float)(ss / (double)d) + eps);
        for (int64_t i = 0; i < d; i++) yt[i] = xt[i] * r * w[i];
    }
}

static void s_rope(void *ctx, float *x, const int32_t *pos, int64_t T, int64_t n_heads,
                   const rope_params *rp) {
    int64_t hd = rp->head_dim, half = rp->rope_dim / 2;
    for (int64_t t = 0; t < T; t++) {
        float p = (float)pos[t] * rp->pos_scale;
        for (int64_t i = 0; i < half; i++) {
            /* double for the angle: positions up to 1e5+ times frequencies */
            double ang = (double)p * rp->inv_freq[i];
            float c = (float)cos(ang), s = (float)sin(ang);
            for (int64_t h = 0; h < n_heads; h++) {
                float *v = x + (t * n_heads + h) * hd;
                int64_t a = rp->interleaved ? 2 * i : i;
                int64_t b = rp->interleaved ? 2 * i + 1 : i + half;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

typedef struct swiglu_job {
    float *g;
    const float *u;
} swiglu_job;

static void s_swiglu_range(void *ctx, int64_t i0, int64_t i1) {
    const swiglu_job *j = ctx;
    float *g = j->g;
    const float *u = j->u;
    for (int64_t i = i0; i < i1; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* A prompt's rows over the pool (elementwise: the same numbers either
 * way); a decode step's few rows inline. */
static void s_swiglu(void *ctx, float *g, const float *u, int64_t n) {
    swiglu_job j = {g, u};
    if (n < (1 << 16)) s_swiglu_range(&j, 0, n);
    else pool_for(n, 1 << 14, s_swiglu_range, &j);
}

static void s_add(void *ctx, float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void s_add_bias(void *ctx, float *y, const float *b, int64_t T, int64_t n) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

/* 16 lanes in GCC's vector extension: AVX-512 registers where the CPU
 * has them, two or four narrower ones where not; the same arithmetic on
 * every target. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
enum { LANES = 16 };

#define EXP_LIM (-87.33654f) /* exp(EXP_LIM) = 2^-126, the smallest normal float */

/* mask ? a : b, lane by lane */
#define BITS_SELECT(mask, a, b) ((v16f)(((v16i)(a) & (mask)) | ((v16i)(b) & ~(mask))))

/* in place (pointers, not vector values, cross the call: the same ABI
 * with or without AVX-512) */
static inline void s_exp_neg16(v16f *xp) {
    v16f x = *xp;
    const v16f lim = {EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM,
                      EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM, EXP_LIM};
    v16i low = x < lim;
    v16f xc = BITS_SELECT(low, lim, x);
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22) */
    v16f n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v16f r = xc - n * 0.693359375f + n * 2.12194440e-4f; /* ln2 in two parts (Cephes) */
    v16f z = r * r;
    v16f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16f y = p * (v16f)e;
    *xp = (v16f)((v16i)y & ~low); /* below the limit: 0 (NaN compares false: stays NaN) */
}

float cpu_exp_neg(float x) {
    v16f v = {x};
    s_exp_neg16(&v);
    return v[0];
}

void cpu_softmax(float *row, int64_t n, const float *bias) {
    if (bias)
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
    float tail[LANES];
    v16f v, m;
    for (int l = 0; l < LANES; l++) m[l] = row[0];
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        memcpy(&v, row + j, sizeof v);
        m = BITS_SELECT(v > m, v, m);
    }
    float mx = m[0];
    for (int l = 1; l < LANES; l++) mx = m[l] > mx ? m[l] : mx;
    for (int64_t k = j; k < n; k++) mx = row[k] > mx ? row[k] : mx;
    v16f acc = {0};
    for (j = 0; j + LANES <= n; j += LANES) {
        memcpy(&v, row + j, sizeof v);
        v -= mx;
        s_exp_neg16(&v);
        memcpy(row + j, &v, sizeof v);
        acc += v;
    }
    if (j < n) { /* the last n % 16, padded with lanes that give 0 */
        int64_t left = n - j;
        for (int l = 0; l < LANES; l++) tail[l] = l < left ? row[j + l] - mx : -INFINITY;
        memcpy(&v, tail, sizeof v);
        s_exp_neg16(&v);
        for (int64_t l = 0; l < left; l++) row[j + l] = v[l];
        acc += v;
    }
    double sum = 0;
    for (int l = 0; l < LANES; l++) sum += acc[l];
    float inv = (float)(1.0 / sum);
    for (j = 0; j < n; j++) row[j] *= inv;
}

static int s_attention(void *ctx, float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T,
                       int64_t n_head, const attn_observer *obs) {
    (void)ctx;
    return cpu_attention(out, q, kv, layer, T, n_head, obs);
}

static int s_kv_append(void *ctx, void *kc, void *vc, float *bias, int k_type, int v_type, int64_t hd, int64_t n_kv,
                       const int64_t *at, const float *kscale, const float *k, const float *v, int64_t T) {
    (void)ctx;
    size_t kr = kv_row_bytes(k_type, hd), vr = kv_row_bytes(v_type, hd);
    if (!kr || !vr)
        return tis_error(TIS_EINVAL, "cpu: a KV cache of element type %d (f32, f16, bf16, q8_0 or q4_0 with "
                                     "head_dim a multiple of 32)", kr ? v_type : k_type);
    if (kv_dtype_block(k_type) != (kscale != NULL))
        return tis_error(TIS_EINVAL, "cpu: q8_0 / q4_0 keys come with their channel scales, other keys without");
    for (int64_t h = 0; kscale && h < n_kv; h++)
        if (!(kscale[h * KV_KEY_XFORM(hd)] > 0.0f))
            return tis_error(TIS_EINVAL, "cpu: quantised keys' channel scales not set");
    int64_t kd = n_kv * hd;
    for (int64_t h = 0; h < n_kv; h++) {
        for (int64_t t = 0; t < T; t++) {
            size_t r = (size_t)(at[h] + t);
            if (kscale) {
                const float *sc = kscale + h * KV_KEY_XFORM(hd);
                quant_scaled_row(k_type, k + t * kd + h * hd, sc, sc + hd, (char *)kc + r * kr, hd);
            }
            else quant_quantize_row(k_type, k + t * kd + h * hd, (char *)kc + r * kr, hd);
            quant_quantize_row(v_type, v + t * kd + h * hd, (char *)vc + r * vr, hd);
        }
        if (bias) memset(bias + at[h], 0, (size_t)T * sizeof(float));
    }
    return 0;
}

static const tis_backend s_cpu = {
    .name = "cpu",
    .ctx = NULL,
    .alloc = s_alloc,
    .free = s_free,
    .matmul = s_matmul,
    .rmsnorm = s_rmsnorm,
    .rope = s_rope,
    .swiglu = s_swiglu,
    .add = s_add,
    .add_bias = s_add_bias,
    .attention = s_attention,
    .prompt_step = s_prompt_step,
    .kv_append = s_kv_append, /* the rest of the residency ops: NULL, host memory */
};

const tis_backend *backend_cpu(void) { return &s_cpu; }
