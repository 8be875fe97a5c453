/* test_attention: the CPU attention kernels apart from a model: the
 * softmax's exp against libm; the decode path (heads over the pool, rows
 * read in their stored type) against the sgemm path on every KV type, also
 * with slices of heads that cut a GQA group; q8_0, q4_0 and mixed-type caches
 * against an f32 cache of their dequantised rows; prefill's (head, query
 * block) tiles over the pool against one thread, observed or not. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/pool.h"
#include "cpu/softmax.h"
#include "kv.h"
#include "quant.h"
#include "tt.h"

/* cpu_exp_neg within 2 ulp of exp on [-87.3, 0], 0 below, NaN kept;
 * cpu_softmax against a double reference for every length 1..70 (the 16-lane
 * body and the tail), with and without bias. */
static void s_check_softmax(void) {
    TT_CASE("softmax");
    double worst = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.3f * (float)i / 400000.0f;
        double want = exp((double)x), got = cpu_exp_neg(x);
        double ulp = nextafterf((float)want, INFINITY) - (float)want;
        double e = fabs(got - want) / ulp;
        if (e > worst) worst = e;
    }
    TT_CHECK(worst <= 2.0);
    if (worst > 2.0) fprintf(stderr, "  cpu_exp_neg: %.2f ulp\n", worst);
    TT_CHECK(cpu_exp_neg(0.0f) == 1.0f && cpu_exp_neg(-88.0f) == 0.0f && cpu_exp_neg(-INFINITY) == 0.0f);
    TT_CHECK(isnan(cpu_exp_neg(NAN)));

    uint64_t st = 5;
    float row[70], bias[70];
    double ref[70];
    for (int n = 1; n <= 70; n++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            for (int j = 0; j < n; j++) {
                row[j] = 12.0f * tt_randf(&st);
                bias[j] = with_bias ? 3.0f * tt_randf(&st) : 0.0f;
            }
            if (n > 3) row[n / 2] = -INFINITY; /* a masked key */
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                ref[j] = (double)(row[j] + bias[j]);
                if (ref[j] > mx) mx = ref[j];
            }
            for (int j = 0; j < n; j++) sum += (ref[j] = exp(ref[j] - mx));
            cpu_softmax(row, n, with_bias ? bias : NULL);
            double err = 0, total = 0;
            for (int j = 0; j < n; j++) {
                double e = fabs(row[j] - ref[j] / sum);
                if (e > err) err = e;
                total += row[j];
            }
            TT_CHECK(err < 1e-6 && fabs(total - 1.0) < 1e-5);
            if (n > 3) TT_CHECK(row[n / 2] == 0.0f);
        }
}

/* The attention's two CPU paths on every KV element type: decode-sized
 * batches (heads over the pool, rows read in their type) against the
 * sgemm path (taken when an observer watches), on ragged streams (a stream
 * holding only the new rows, one of length 1, long ones, GQA 3:1), with
 * and without an attention bias. Same arithmetic up to summation order. */
static void s_no_obs(void *u, int64_t layer, int64_t head, int64_t q0, int64_t nq, const float *p, int64_t nk) {}

static void s_check_attention_paths(int threads) {
    TT_CASE("attention: decode path vs sgemm path, f32 / f16 / bf16 / q8_0 / q4_0 caches, %d threads", threads);
    const int types[5] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    const int64_t lens[4] = {1, 5, 300, 1037}; /* per kv head; T <= each */
    uint64_t rng = 77;
    int keep = pool_threads();
    pool_set_threads(threads); /* 7: slices of 2 heads cut the groups of 3 */
    for (int t = 0; t < 5; t++)
        for (int64_t T = 1; T <= 16; T += 15)
            for (int bias = 0; bias < 2; bias++) {
                const int64_t hd = 64, nkv = 4, group = 3, nh = nkv * group;
                int64_t caps[8];
                for (int64_t s = 0; s < 8; s++) caps[s] = lens[s % 4] + T;
                kv_cache *kv = NULL;
                TT_OK(kv_cache_new_ragged(&kv, 2, nkv, hd, caps, types[t]));
                if (!kv) return;
                if (bias) TT_OK(kv_cache_enable_bias(kv));
                float k[64], v[64];
                for (int64_t s = 0; s < kv->n_stream; s++) {
                    kv->len[s] = s % 4 == 0 ? T : lens[s % 4] + T; /* stream 0: only the new rows */
                    for (int64_t i = 0; i < kv->len[s]; i++) {
                        for (int d = 0; d < hd; d++) k[d] = 2 * tt_randf(&rng), v[d] = tt_randf(&rng);
                        kv_cache_put(kv, s, i, k, v);
                        if (bias) kv->bias[kv->off[s] + i] = tt_randf(&rng) - (i % 5 == 1 ? 1e9f : 0.0f);
                    }
                }
                float *q = malloc((size_t)(T * nh * hd) * sizeof(float));
                float *a = malloc((size_t)(T * nh * hd) * sizeof(float)), *b = malloc((size_t)(T * nh * hd) * sizeof(float));
                for (int64_t i = 0; i < T * nh * hd; i++) q[i] = tt_randf(&rng);
                kv_view view = kv_cache_view(kv);
                attn_observer obs = {s_no_obs, NULL};
                TT_OK(backend_cpu()->attention(NULL, a, q, &view, 1, T, nh, NULL));
                TT_OK(backend_cpu()->attention(NULL, b, q, &view, 1, T, nh, &obs));
                double dmax = tt_maxdiff(a, b, T * nh * hd);
                TT_CHECK(dmax < 1e-5);
                if (dmax >= 1e-5)
                    fprintf(stderr, "  type %d T %lld bias %d: max |diff| %.2e\n", types[t], (long long)T, bias, dmax);
                free(q), free(a), free(b);
                kv_cache_destroy(&kv);
            }
    pool_set_threads(keep);
}

/* A quantised cache attends as an f32 cache holding its dequantised rows
 * (both paths: what the kernels read, keys times their channel scales, is
 * what kv_cache_rows_f32 gives). */
static void s_check_attention_quant(kv_types types) {
    char nm[32];
    TT_CASE("attention: a %s cache = an f32 cache of its dequantised rows", kv_types_name(types, nm, sizeof nm));
    const int64_t hd = 64, nkv = 2, group = 2, nh = nkv * group, L = 200;
    uint64_t rng = 5;
    kv_cache *q8 = NULL, *f = NULL;
    int64_t caps[2] = {L, L};
    TT_OK(kv_cache_new_ragged_on(&q8, 1, nkv, hd, caps, types, NULL));
    TT_OK(kv_cache_new(&f, 1, nkv, hd, L, GGML_TYPE_F32));
    if (!q8 || !f) return;
    float k[64], v[64], kd[64], vd[64];
    for (int64_t s = 0; s < nkv; s++) {
        for (int64_t i = 0; i < L; i++) {
            for (int d = 0; d < hd; d++) k[d] = 3 * tt_randf(&rng), v[d] = tt_randf(&rng) - 0.5f;
            kv_cache_put(q8, s, i, k, v);
            kv_cache_rows_f32(q8, s, 0, i, 1, kd);
            kv_cache_rows_f32(q8, s, 1, i, 1, vd);
            kv_cache_put(f, s, i, kd, vd);
        }
        q8->len[s] = f->len[s] = L;
    }
    for (int64_t T = 1; T <= 40; T += 39) { /* the decode path, then the sgemm one */
        float *q = malloc((size_t)(T * nh * hd) * sizeof(float));
        float *a = malloc((size_t)(T * nh * hd) * sizeof(float)), *b = malloc((size_t)(T * nh * hd) * sizeof(float));
        for (int64_t i = 0; i < T * nh * hd; i++) q[i] = tt_randf(&rng);
        kv_view vq = kv_cache_view(q8), vf = kv_cache_view(f);
        TT_OK(backend_cpu()->attention(NULL, a, q, &vq, 0, T, nh, NULL));
        TT_OK(backend_cpu()->attention(NULL, b, q, &vf, 0, T, nh, NULL));
        TT_CHECK(tt_maxdiff(a, b, T * nh * hd) < 1e-5);
        free(q), free(a), free(b);
    }
    kv_cache_destroy(&q8);
    kv_cache_destroy(&f);
}

/* Prefill attention over the thread pool: (head, block) tiles unobserved,
 * whole KV heads observed. Two threads give what one gives (up to the
 * summation order of a threaded sgemm), the observer sees every row of
 * every head once, each stream's calls in the serial order (its query
 * heads in turn, their blocks in turn) and the same probabilities. */
typedef struct obs_log {
    int64_t T, nh, group, max_keys, n_calls[16], last[16]; /* per stream: calls, last head * T + q0 */
    bool in_order;
    float *p; /* [nh][T][max_keys] */
} obs_log;

static void s_log_obs(void *u, int64_t layer, int64_t head, int64_t q0, int64_t nq, const float *p, int64_t nk) {
    obs_log *o = u;
    int64_t g = head / o->group, key = head * o->T + q0;
    if (key <= o->last[g]) o->in_order = false;
    o->last[g] = key;
    o->n_calls[g]++;
    for (int64_t r = 0; r < nq; r++) memcpy(o->p + (head * o->T + q0 + r) * o->max_keys, p + r * nk, (size_t)nk * sizeof(float));
    (void)layer;
}

static void s_run_pool_attention(kv_view *view, const float *q, int64_t T, int64_t nh, int threads, float *out,
                                 obs_log *o) {
    pool_set_threads(threads);
    attn_observer obs = {s_log_obs, o};
    if (o) {
        memset(o->p, 0, (size_t)(nh * T * o->max_keys) * sizeof(float));
        for (int g = 0; g < 16; g++) o->n_calls[g] = 0, o->last[g] = -1;
        o->in_order = true;
    }
    TT_OK(backend_cpu()->attention(NULL, out, q, view, 1, T, nh, o ? &obs : NULL));
}

static void s_check_prefill_pool(void) {
    TT_CASE("prefill attention over the pool: 2 threads = 1 thread, observers in order");
    const int64_t hd = 64, nkv = 4, group = 3, nh = nkv * group, T = 300; /* three query blocks */
    const int64_t lens[4] = {0, 7, 500, 1100};
    int keep = pool_threads();
    uint64_t rng = 99;
    for (int t = 0; t < 2; t++) {
        int type = t ? GGML_TYPE_F16 : GGML_TYPE_F32;
        int64_t caps[8];
        for (int64_t s = 0; s < 8; s++) caps[s] = lens[s % 4] + T;
        kv_cache *kv = NULL;
        TT_OK(kv_cache_new_ragged(&kv, 2, nkv, hd, caps, type));
        if (!kv) return;
        float k[64], v[64];
        for (int64_t s = 0; s < kv->n_stream; s++) {
            kv->len[s] = caps[s];
            for (int64_t i = 0; i < kv->len[s]; i++) {
                for (int d = 0; d < hd; d++) k[d] = 2 * tt_randf(&rng), v[d] = tt_randf(&rng);
                kv_cache_put(kv, s, i, k, v);
            }
        }
        size_t n = (size_t)(T * nh * hd);
        float *q = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        float *c = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float));
        obs_log o1 = {.T = T, .nh = nh, .group = group, .max_keys = lens[3] + T}, o2 = o1;
        o1.p = malloc((size_t)(nh * T * o1.max_keys) * sizeof(float));
        o2.p = malloc((size_t)(nh * T * o2.max_keys) * sizeof(float));
        for (size_t i = 0; i < n; i++) q[i] = tt_randf(&rng);
        kv_view view = kv_cache_view(kv);
        s_run_pool_attention(&view, q, T, nh, 1, a, NULL);
        s_run_pool_attention(&view, q, T, nh, 2, b, NULL);
        s_run_pool_attention(&view, q, T, nh, 1, c, &o1);
        s_run_pool_attention(&view, q, T, nh, 2, d, &o2);
        TT_CHECK(tt_maxdiff(a, b, (int64_t)n) < 1e-6 && tt_maxdiff(a, c, (int64_t)n) < 1e-6 &&
                 tt_maxdiff(a, d, (int64_t)n) < 1e-6);
        TT_CHECK(o1.in_order && o2.in_order);
        for (int64_t g = 0; g < nkv; g++) TT_CHECK(o1.n_calls[g] == group * 3 && o2.n_calls[g] == group * 3);
        TT_CHECK(tt_maxdiff(o1.p, o2.p, nh * T * o1.max_keys) < 1e-6);
        /* more threads than KV heads: tiles unobserved, one thread observed */
        s_run_pool_attention(&view, q, T, nh, 8, b, NULL);
        s_run_pool_attention(&view, q, T, nh, 8, d, &o2);
        TT_CHECK(tt_maxdiff(a, b, (int64_t)n) < 1e-6 && tt_maxdiff(a, d, (int64_t)n) < 1e-6 && o2.in_order);
        TT_CHECK(tt_maxdiff(o1.p, o2.p, nh * T * o1.max_keys) < 1e-6);
        free(q), free(a), free(b), free(c), free(d), free(o1.p), free(o2.p);
        kv_cache_destroy(&kv);
    }
    pool_set_threads(keep);
}

int main(void) {
    s_check_softmax();
    s_check_attention_paths(2);
    s_check_attention_paths(7);
    s_check_attention_quant(kv_types_of(GGML_TYPE_Q8_0));
    s_check_attention_quant((kv_types){GGML_TYPE_F16, GGML_TYPE_Q8_0});
    s_check_attention_quant((kv_types){GGML_TYPE_Q8_0, GGML_TYPE_BF16});
    s_check_attention_quant(kv_types_of(GGML_TYPE_Q4_0));
    s_check_attention_quant((kv_types){GGML_TYPE_Q8_0, GGML_TYPE_Q4_0});
    s_check_prefill_pool();
    return tt_done("test_attention");
}
