/* test_ert: end-to-end fine-tuning of the head (eval/ert_job.h).
 *
 * 1. The chain from the head's scores to the loss: the soft eviction's
 *    bias (ert_soft_bias), the suffix's KL and its gradient
 *    (engine/backward.h), back to the scores (ert_scores_grad), against
 *    central finite differences of the scores, for a one-score head and a
 *    per-head head (tolerance as test_backward's: 0.2 % of the largest
 *    gradient + 2e-5).
 * 2. The hard eviction: prefix entries and kept ones 0, dropped -1e4.
 * 3. `tis train --target ert` on the default model: a short run writes the
 *    checkpoint and a metrics row per epoch (epoch 0 = the starting head);
 *    a query-aware starting head and missing options are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "backward.h"
#include "ert_job.h"
#include "forward.h"
#include "quant.h"
#include "tiny_model.h"
#include "tis_error.h"
#include "tt.h"

enum { N_PROMPT = 23, CTX0 = 3, N_CTX = 20, T_SUF = 6, N_ROWS = 3 };

typedef struct chain {
    suffix_grad *g;
    kv_cache *kv;
    int32_t suf[T_SUF];
    int64_t rows[N_ROWS];
    float *ref, *bias, *dsc, *dbias;
    int64_t n_out;
    float tau, sd, beta;
} chain;

static double s_loss(chain *c, const float *scores, float *ds) {
    ert_soft_bias(c->kv, CTX0, N_CTX, scores, c->n_out, c->tau, c->sd, c->beta, true, c->bias, c->dsc);
    size_t ne = (size_t)(c->kv->off[c->kv->n_stream - 1] + c->kv->cap[c->kv->n_stream - 1]);
    memset(c->dbias, 0, ne * sizeof *c->dbias);
    double loss = 0;
    TT_OK(suffix_kl_grad(c->g, c->kv, c->bias, c->suf, T_SUF, c->rows, N_ROWS, c->ref, &loss, c->dbias));
    if (ds) ert_scores_grad(c->kv, CTX0, N_CTX, c->n_out, c->dbias, c->dsc, ds);
    return loss;
}

static void s_chain_case(const model *m, chain *c, int64_t n_out, uint64_t *rng) {
    TT_CASE("chain, %lld outputs", (long long)n_out);
    c->n_out = n_out;
    int64_t n = n_out * N_CTX;
    float *sc = malloc((size_t)n * sizeof *sc), *ds = malloc((size_t)n * sizeof *ds);
    for (int64_t i = 0; i < n; i++) sc[i] = 2.0f * tt_randf(rng);
    s_loss(c, sc, ds);
    double gmax = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ds[i]));
    const float eps = 1e-2f;
    for (int64_t i = 0; i < n; i += 1 + (n > 40 ? 3 : 0)) {
        float s0 = sc[i];
        sc[i] = s0 + eps;
        double lp = s_loss(c, sc, NULL);
        sc[i] = s0 - eps;
        double lm = s_loss(c, sc, NULL);
        sc[i] = s0;
        worst = fmax(worst, fabs((lp - lm) / (2.0 * eps) - ds[i]));
    }
    fprintf(stderr, "  %lld outputs: max |analytic - finite difference| %.2e, max |grad| %.2e\n", (long long)n_out,
            worst, gmax);
    TT_CHECK(gmax > 1e-4);
    TT_CHECK(worst <= 2e-3 * gmax + 2e-5);
    /* 2. hard: 0 / -1e4 by the threshold, prefix untouched */
    ert_soft_bias(c->kv, CTX0, N_CTX, sc, n_out, c->tau, c->sd, c->beta, false, c->bias, NULL);
    bool ok = true;
    for (int64_t s = 0; s < c->kv->n_stream; s++)
        for (int64_t i = 0; i < c->kv->len[s]; i++) {
            float b = c->bias[c->kv->off[s] + i];
            if (i < CTX0) ok &= b == 0.0f;
            else {
                float v = sc[(n_out > 1 ? s * N_CTX : 0) + i - CTX0];
                ok &= b == (v > c->tau ? 0.0f : -1e4f);
            }
        }
    TT_CHECK(ok);
    free(sc), free(ds);
    (void)m;
}

static void s_chain(void) {
    tiny_spec sp = tiny_spec_default();
    sp.seed = 17;
    model *m = NULL;
    TT_OK(tiny_model_make(tt_path("tiny.gguf"), &sp, &m));
    if (!m) return;
    m->kv_type = kv_types_of(GGML_TYPE_F32);
    int64_t V = m->config.n_vocab;
    uint64_t rng = 3;
    int32_t ids[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) ids[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    chain c = {.tau = 0.1f, .sd = 1.0f, .beta = 2.0f, .rows = {3, 4, 5}};
    for (int i = 0; i < T_SUF; i++) c.suf[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(V - 1));
    kv_cache *kv = NULL;
    forward_state *st = NULL;
    float *lg = malloc((size_t)V * sizeof *lg);
    TT_OK(forward_kv_new(m, N_PROMPT, &kv));
    TT_OK(forward_state_new(&st, m, backend_cpu(), 64));
    TT_OK(forward_run(st, kv, ids, N_PROMPT, lg, 1, NULL));
    TT_OK(kv_cache_compact(&c.kv, kv, NULL, T_SUF));
    TT_OK(suffix_grad_new(&c.g, m, 16));
    size_t ne = (size_t)(c.kv->off[c.kv->n_stream - 1] + c.kv->cap[c.kv->n_stream - 1]);
    c.ref = malloc((size_t)(N_ROWS * V) * sizeof *c.ref);
    c.bias = calloc(ne, sizeof *c.bias), c.dsc = calloc(ne, sizeof *c.dsc), c.dbias = calloc(ne, sizeof *c.dbias);
    TT_OK(suffix_logprobs(c.g, c.kv, NULL, c.suf, T_SUF, c.rows, N_ROWS, c.ref));
    s_chain_case(m, &c, 1, &rng);
    s_chain_case(m, &c, c.kv->n_stream, &rng);
    free(c.ref), free(c.bias), free(c.dsc), free(c.dbias), free(lg);
    suffix_grad_destroy(&c.g);
    kv_cache_destroy(&c.kv);
    kv_cache_destroy(&kv);
    forward_state_destroy(&st);
    model_destroy(&m);
}

static void s_cli(void) {
    TT_CASE("tis train --target ert");
    const char *bin = getenv("TIS_BIN"), *mpath = getenv("TIS_MODEL"), *src = getenv("TIS_SOURCE_DIR");
    if (!bin || !mpath || !src) {
        fprintf(stderr, "  (TIS_BIN / TIS_MODEL / TIS_SOURCE_DIR not set: the CLI case is skipped)\n");
        return;
    }
    char out[512], csv[600], cmd[4096];
    snprintf(out, sizeof out, "%s", tt_path("ert.safetensors"));
    snprintf(csv, sizeof csv, "%s", tt_path("ert_metrics.csv"));
    snprintf(cmd, sizeof cmd,
             "'%s' train --target ert -m '%s' --init '%s/configs/heads/smollm2-135m-instruct.tis.safetensors' "
             "--benchmark passkey --context_tokens 160 --n_samples 3 --epochs 1 --max_answer 4 --output '%s' "
             "2>/dev/null",
             bin, mpath, src, out);
    TT_CHECK(system(cmd) == 0);
    FILE *f = fopen(csv, "r");
    TT_CHECK(f != NULL);
    int lines = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) lines += line[0] != '\n';
    if (f) fclose(f);
    TT_CHECK(lines == 3); /* header, epoch 0, epoch 1 */
    FILE *h = fopen(out, "rb");
    TT_CHECK(h != NULL);
    if (h) fclose(h);
    snprintf(cmd, sizeof cmd,
             "'%s' train --target ert -m '%s' --init '%s/configs/heads/smollm2-135m-instruct.tis_query.safetensors' "
             "--benchmark passkey --context_tokens 160 --n_samples 3 --output '%s' 2>/dev/null",
             bin, mpath, src, out);
    int rc = system(cmd);
    TT_CHECK(rc != -1 && WEXITSTATUS(rc) == 1);
    snprintf(cmd, sizeof cmd, "'%s' train --target ert -m '%s' --output '%s' 2>/dev/null", bin, mpath, out);
    rc = system(cmd);
    TT_CHECK(rc != -1 && WEXITSTATUS(rc) == 2);
}

int main(void) {
    backend_cpu_set_f32_act(true);
    s_chain();
    s_cli();
    return tt_done("test_ert");
}
