/* test_cuda_forward: the whole forward pass on cuda:0 (weights prepared
 * once, activations and the KV cache on the device) against the CPU
 * reference: tiny random models (llama GQA f32 and Q4_1, qwen2 with QKV
 * bias; always, as the default model cannot travel to the device machine)
 * and, where the default model is present, the golden prompts
 * (tests/golden/greedy.json: the chat prompt and its two extra runs, 32
 * new tokens each). The device runs the CPU's greedy sequence (teacher
 * forcing), so every step's logits compare.
 *
 * Tolerance. The CPU runs exact (f32 activations in every product); the
 * device multiplies the same dequantised weights (bit-identical: both use
 * formats/quant.c) with cuBLAS SGEMM in FP32 math (no TF32) and f32
 * kernels, so the two differ by summation order only, as the CPU and
 * transformers do in test_golden (measured there 2.5e-5, allowed 1e-3 on
 * logits of magnitude 10-30). With an f32 cache we allow the same 1e-3;
 * with the default f16 cache each side rounds its own (slightly different)
 * keys and values to f16, and a value on a rounding boundary moves by one
 * f16 ulp (2^-11 relative): 1e-2. The argmax must agree wherever the CPU's
 * top-1/top-2 margin exceeds twice the tolerance: on the golden prompts
 * (smallest margin 0.082) that is every row, i.e. equal greedy tokens.
 *
 * Skips (77) without a CUDA build or without a GPU (the probe's reason).
 * Status: passed on an H200 (2026-11-30), with the tiny models only (the
 * default model could not travel to that machine). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "tiny_model.h"
#include "tt.h"

#ifdef TIS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#include "cuda/cuda_probe.h"

static int32_t *s_ids(const cJSON *a, int64_t *n) {
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(a, (int)i)->valuedouble;
    return v;
}

static int32_t s_argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

/* Prompt (all rows' logits) then max_new steps on be: lg[n + max_new][V].
 * The steps feed toks[max_new]: the run's own greedy choices when `own`
 * (written there), else the given ones (teacher forcing: the device runs
 * the CPU's sequence, so every step's logits compare). */
static void s_run(model *m, const tis_backend *be, const int32_t *prompt, int64_t n, int64_t max_new, float *lg,
                  int32_t *toks, bool own) {
    int64_t V = m->config.n_vocab;
    forward_state *st = NULL;
    kv_cache *kv = NULL;
    TT_OK(model_to_backend(m, be));
    TT_OK(forward_state_new(&st, m, be, 512));
    TT_OK(forward_kv_new_on(m, be, n + max_new, &kv));
    if (st && kv) {
        TT_OK(forward_run(st, kv, prompt, n, lg, n, NULL));
        for (int64_t i = 0; i < max_new; i++) {
            if (own) toks[i] = s_argmax(lg + (n - 1 + i) * V, V);
            TT_OK(forward_run(st, kv, &toks[i], 1, lg + (n + i) * V, 1, NULL));
        }
    }
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
}

/* The CPU's greedy run against the device's on the same tokens: every
 * logit within tol; the device's argmax the CPU's at every row whose
 * top-1/top-2 margin on the CPU exceeds 2 tol (with the golden prompts:
 * every row, so the greedy sequences are equal). */
static void s_compare(model *m, const tis_backend *gpu, const int32_t *prompt, int64_t n, int64_t max_new,
                      double tol) {
    int64_t V = m->config.n_vocab;
    size_t rows = (size_t)(n + max_new);
    float *a = malloc(rows * (size_t)V * sizeof(float)), *b = malloc(rows * (size_t)V * sizeof(float));
    int32_t *toks = calloc((size_t)max_new, sizeof *toks);
    s_run(m, backend_cpu(), prompt, n, max_new, a, toks, true);
    s_run(m, gpu, prompt, n, max_new, b, toks, false);
    double worst = 0;
    int64_t decided = 0, same = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *x = a + r * (size_t)V, *y = b + r * (size_t)V;
        int32_t top = s_argmax(x, V);
        float second = -INFINITY;
        for (int64_t i = 0; i < V; i++) {
            worst = fmax(worst, fabs((double)x[i] - y[i]));
            if (i != top && x[i] > second) second = x[i];
        }
        if (x[top] - second > 2 * tol) decided++, same += s_argmax(y, V) == top;
    }
    fprintf(stderr, "  %lld prompt + %lld steps, kv %s: worst |cpu - cuda| logit %.2e (tolerance %.0e); argmax "
                    "equal at %lld of the %lld rows with a margin over %.0e (%lld rows in all)\n",
            (long long)n, (long long)max_new, kv_dtype_name(m->kv_type.k), worst, tol, (long long)same,
            (long long)decided, 2 * tol, (long long)rows);
    TT_CHECK(worst <= tol);
    TT_CHECK(same == decided);
    free(a), free(b), free(toks);
}

static void s_golden(model *m, const tis_backend *gpu, const cJSON *j, int64_t max_new, double tol) {
    const cJSON *r;
    int64_t n;
    int32_t *p = s_ids(cJSON_GetObjectItem(j, "prompt_ids"), &n);
    s_compare(m, gpu, p, n, max_new, tol);
    free(p);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "extra_runs")) {
        p = s_ids(cJSON_GetObjectItem(r, "prompt_ids"), &n);
        s_compare(m, gpu, p, n, max_new, tol);
        free(p);
    }
}

/* Tiny random models (tests/util/tiny_model.h): what runs where the default
 * model cannot be had (the device machine: it does not travel there). */
static void s_tiny(const tis_backend *gpu) {
    tiny_spec specs[3] = {tiny_spec_default(), tiny_spec_default(), tiny_spec_default()};
    specs[1].wtype = GGML_TYPE_Q4_1;
    specs[2].arch = "qwen2";
    specs[2].n_kv_head = 4;
    const char *names[3] = {"tiny llama GQA 4:2 f32", "tiny llama Q4_1", "tiny qwen2 (QKV bias)"};
    for (int k = 0; k < 3; k++) {
        TT_CASE("%s", names[k]);
        model *m = NULL;
        TT_OK(tiny_model_write(tt_path("tiny.gguf"), &specs[k]));
        TT_OK(model_load(&m, tt_path("tiny.gguf")));
        if (!m) continue;
        int32_t p[40];
        uint64_t rng = 17 + (uint64_t)k;
        for (int i = 0; i < 40; i++) p[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(m->config.n_vocab - 1));
        m->kv_type = kv_types_of(GGML_TYPE_F32);
        s_compare(m, gpu, p, 40, 24, 1e-3);
        m->kv_type = kv_types_of(GGML_TYPE_F16);
        s_compare(m, gpu, p, 40, 24, 1e-2);
        model_destroy(&m);
    }
}
#endif

int main(void) {
#ifdef TIS_HAVE_CUDA
    char info[1024];
    if (cuda_probe(info, sizeof info) == 0) {
        printf("test_cuda_forward: skipped: %s\n", info);
        return 77;
    }
    printf("%s", info);
    const tis_backend *gpu = backend_cuda(0);
    TT_CHECK(gpu != NULL);
    if (!gpu) return tt_done("test_cuda_forward");
    backend_cpu_set_f32_act(true);
    s_tiny(gpu);
    const char *path = tt_model();
    if (!path) {
        printf("test_cuda_forward: the default model is missing: the golden prompts are not run, tiny models only\n");
        return tt_done("test_cuda_forward");
    }
    model *m = NULL;
    TT_OK(model_load(&m, path));
    size_t len = 0;
    char *txt = tt_read_file(tt_src("tests/golden/greedy.json"), &len);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    TT_CHECK(j != NULL);
    if (m && j) {
        int64_t max_new = (int64_t)cJSON_GetObjectItem(j, "max_new_tokens")->valuedouble;
        const int kinds[2] = {GGML_TYPE_F32, GGML_TYPE_F16};
        const double tols[2] = {1e-3, 1e-2};
        for (int k = 0; k < 2; k++) {
            TT_CASE("golden prompts, kv %s", kv_dtype_name(kinds[k]));
            m->kv_type = kv_types_of(kinds[k]);
            s_golden(m, gpu, j, max_new, tols[k]);
        }
    }
    cJSON_Delete(j);
    free(txt);
    model_destroy(&m);
    return tt_done("test_cuda_forward");
#else
    printf("test_cuda_forward: skipped: built without CUDA (TIS_CUDA=OFF)\n");
    return 77;
#endif
}
