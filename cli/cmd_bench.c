/* tis bench: prefill and decode speed, as llama-bench's pp512 / tg128. */
#include <math.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "forward.h"
#include "generate.h"
#include "kv.h"
#include "model.h"
#include "press.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis bench [-m MODEL] [-p N] [-n N] [-r REPS] [-t THREADS]\n"
            "  -m, --model PATH     .gguf file or HF directory (default %s)\n"
            "  -p, --n_prompt N     prefill test length (default 512: pp512)\n"
            "  -n, --n_gen N        decode test length (default 128: tg128)\n"
            "  -d, --depth N        the decode test starts after N tokens of context (tg128@d4096)\n"
            "  -r, --reps N         repetitions, mean +- sd reported (default 3)\n"
            "  -t, --threads N      compute threads (default: all cores)\n"
            "      --kv_type T      KV cache element type: f16 (default), f32, bf16, q8_0, q4_0;\n"
            "                       K,V: the keys' and the values' apart (f16,q8_0)\n"
            "      --device D       cpu (default) or cuda:N: weights, activations and the KV cache there\n"
            "Token ids are pseudo-random (seeded); pp runs one batched forward pass over\n"
            "N tokens into an empty cache; tg runs N single-token steps from an empty\n"
            "cache, as llama-bench does.\n"
            "\n"
            "Decode from compressed caches (the decode worker's batched step), instead:\n"
            "      --context N          prefill N tokens once, then for every budget compress to\n"
            "                           that fraction (most recent entries: speed does not depend\n"
            "                           on which) and decode -n steps for 1, 2, 4, ... requests\n"
            "                           at once, up to as many as fit in --kv_cap_mb\n"
            "      --budgets F...       fractions kept (default 1 0.25 0.1)\n"
            "      --kv_cap_mb M        KV memory for all requests together (default 256)\n"
            "      --max_batch B        requests at once at most (default 64)\n",
            cli_default_model());
}

static void s_stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

/* kv_cache_compact of a host cache, the result in be's memory. */
static int s_compact_on(const tis_backend *be, kv_cache **out, const kv_cache *src, const uint8_t *keep,
                        int64_t extra) {
    kv_cache *h = NULL;
    int rc = kv_cache_compact(&h, src, keep, extra);
    if (rc || backend_is_host(be)) {
        *out = h;
        return rc;
    }
    rc = kv_cache_to_backend(out, h, be);
    kv_cache_destroy(&h);
    return rc;
}

/* Decode throughput from compressed caches under a KV memory cap. */
static int s_bench_decode(const model *m, const tis_backend *be, int64_t n_ctx, const double *budgets, int n_budgets, int64_t cap_mb,
                          int64_t max_batch, int64_t n_gen, int64_t reps) {
    kv_cache *full = NULL, **kvs = NULL;
    forward_state *st = NULL;
    int32_t *ids = malloc((size_t)n_ctx * sizeof(int32_t));
    const int32_t **step_ids = calloc((size_t)max_batch, sizeof *step_ids);
    int64_t *n_tok = calloc((size_t)max_batch, sizeof *n_tok);
    int32_t *tok = calloc((size_t)max_batch, sizeof *tok);
    float *logits = malloc((size_t)(max_batch * m->config.n_vocab) * sizeof(float));
    uint8_t *keep = NULL;
    kvs = calloc((size_t)max_batch, sizeof *kvs);
    int rc = 0;
    if (!ids || !step_ids || !n_tok || !tok || !logits || !kvs) rc = tis_error(TIS_ENOMEM, "out of memory");
    uint64_t rng = 7654321;
    for (int64_t i = 0; !rc && i < n_ctx; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((rng >> 33) % (uint64_t)m->config.n_vocab);
    }
    double t0 = tis_now();
    if (!rc) rc = forward_kv_new_on(m, be, n_ctx, &full);
    if (!rc) rc = forward_state_new(&st, m, be, 512);
    for (int64_t p = 0; !rc && p < n_ctx; p += 512)
        rc = forward_run(st, full, ids + p, n_ctx - p < 512 ? n_ctx - p : 512, logits, 1, NULL);
    /* Compaction runs on the host (on-device compaction is not built): a
     * device cache comes down once, and each request's compacted copy goes
     * up (s_compact_on), outside the timed steps. */
    if (!rc && !backend_is_host(be)) {
        kv_cache *h = NULL;
        rc = kv_cache_to_host(&h, full);
        kv_cache_destroy(&full);
        full = h;
    }
    if (!rc && !(keep = malloc((size_t)kv_cache_entries(full)))) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (rc) goto done;
    printf("decode from compressed caches: context %lld tokens (prefilled in %.1f s), %lld steps, KV cap %lld MiB\n",
           (long long)n_ctx, tis_now() - t0, (long long)n_gen, (long long)cap_mb);
    printf("| %-6s | %12s | %8s | %5s | %12s | %14s | %10s |\n", "budget", "KV/request", "fit", "batch",
           "tokens/s", "per request/s", "x b=1 full");
    double base = 0; /* budget of the first row at batch 1 */
    for (int b = 0; b < n_budgets; b++) {
        int64_t k = press_budget_tokens(budgets[b], n_ctx);
        for (int64_t s = 0; s < full->n_stream; s++)
            for (int64_t i = 0; i < full->len[s]; i++) keep[full->off[s] + i] = i >= full->len[s] - k;
        kv_cache *one = NULL;
        if ((rc = kv_cache_compact(&one, full, keep, n_gen))) goto done;
        size_t per = kv_cache_bytes_reserved(one);
        kv_cache_destroy(&one);
        int64_t fit = (int64_t)((size_t)cap_mb * 1048576u / per), top = fit < max_batch ? fit : max_batch;
        if (top < 1) {
            printf("| %-6g | %8.2f MiB | %8lld | %5s | %12s | %14s | %10s |\n", budgets[b], (double)per / 1048576.0,
                   (long long)fit, "-", "does not fit", "", "");
            continue;
        }
        for (int64_t nb = 1;; nb = nb * 2 > top ? top : nb * 2) {
            double best = 0;
            for (int64_t r = 0; r < reps; r++) {
                for (int64_t i = 0; i < nb; i++) {
                    kv_cache_destroy(&kvs[i]);
                    if ((rc = s_compact_on(be, &kvs[i], full, keep, n_gen))) goto done;
                    tok[i] = ids[i % n_ctx];
                    step_ids[i] = &tok[i];
                    n_tok[i] = 1;
                }
                double t = tis_now();
                for (int64_t g = 0; g < n_gen; g++)
                    if ((rc = forward_run_batch(st, kvs, nb, step_ids, n_tok, logits))) goto done;
                double tps = (double)(nb * n_gen) / (tis_now() - t);
                best = tps > best ? tps : best;
            }
            if (b == 0 && nb == 1) base = best;
            printf("| %-6g | %8.2f MiB | %8lld | %5lld | %12.1f | %14.1f | %9.2fx |\n", budgets[b],
                   (double)per / 1048576.0, (long long)fit, (long long)nb, best, best / (double)nb,
                   base > 0 ? best / base : 0.0);
            fflush(stdout);
            if (nb == top) break;
        }
    }
    printf("(tokens/s: all requests together, best of %lld; KV/request: the compressed context plus room for the\n"
           " generated tokens, as the decode worker reserves it; fit: requests the cap holds)\n",
           (long long)reps);
done:
    for (int64_t i = 0; kvs && i < max_batch; i++) kv_cache_destroy(&kvs[i]);
    free(kvs);
    kv_cache_destroy(&full);
    forward_state_destroy(&st);
    free(ids);
    free(step_ids);
    free(n_tok);
    free(tok);
    free(logits);
    free(keep);
    return rc;
}

/* pp (one batched prefill of n_prompt tokens) and tg (n_gen single-token
 * steps), each from an empty cache, reps times after one untimed warm-up. */
static int s_bench_speed(const model *m, const tis_backend *be, int64_t n_prompt, int64_t n_gen, int64_t depth, int64_t reps,
                         int nthreads) {
    int64_t cap = n_prompt > depth + n_gen ? n_prompt : depth + n_gen;
    kv_cache *kv = NULL;
    forward_state *st = NULL;
    int32_t *ids = malloc((size_t)(cap ? cap : 1) * sizeof(int32_t));
    float *logits = malloc((size_t)m->config.n_vocab * sizeof(float));
    double *pp = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
    int rc = 1;
    if (!ids || !logits || !pp || !tg) {
        fprintf(stderr, "tis bench: out of memory\n");
        goto done;
    }
    if (forward_kv_new_on(m, be, cap ? cap : 1, &kv) ||
        forward_state_new(&st, m, be, n_prompt > 512 ? n_prompt : 512)) {
        cli_fail("setting up");
        goto done;
    }
    uint64_t rng = 1234567;
    for (int64_t i = 0; i < cap; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((rng >> 33) % (uint64_t)m->config.n_vocab);
    }
    char kvn[32];
    printf("model: %s (%s, %.1f M params, weights %.0f MiB in place) | backend %s (OpenBLAS %s) | threads %d | "
           "%ld cores online | KV %s, decode activations %s\n",
           m->config.name, m->format, (double)m->n_params / 1e6, (double)m->weights_bytes / 1048576.0, be->name,
           openblas_get_corename(), nthreads, sysconf(_SC_NPROCESSORS_ONLN), kv_types_name(m->kv_type, kvn, sizeof kvn),
           backend_is_host(be) && !backend_cpu_f32_act() ? "q8" : "f32");
    /* One untimed warm-up of each test: page in the weights, size caches. */
    for (int r = -1; r < (int)reps; r++) {
        if (n_prompt > 0) {
            kv_cache_clear(kv);
            double t0 = tis_now();
            if (forward_run(st, kv, ids, n_prompt, logits, 1, NULL)) {
                cli_fail("prefill");
                goto done;
            }
            if (r >= 0) pp[r] = (double)n_prompt / (tis_now() - t0);
        }
        if (n_gen > 0) {
            kv_cache_clear(kv);
            if (depth > 0 && forward_run(st, kv, ids, depth, NULL, 0, NULL)) { /* the context, untimed */
                cli_fail("prefill of the depth");
                goto done;
            }
            double t0 = tis_now();
            for (int64_t i = 0; i < n_gen; i++)
                if (forward_run(st, kv, ids + depth + i, 1, logits, 1, NULL)) {
                    cli_fail("decode");
                    goto done;
                }
            if (r >= 0) tg[r] = (double)n_gen / (tis_now() - t0);
        }
    }
    printf("| %-8s | %12s | %-20s |\n", "test", "tokens/s", "mean +- sd");
    double mean, sd;
    if (n_prompt > 0) {
        s_stats(pp, (int)reps, &mean, &sd);
        printf("| pp%-6lld | %12.1f | %8.1f +- %-8.1f |\n", (long long)n_prompt, mean, mean, sd);
    }
    if (n_gen > 0) {
        s_stats(tg, (int)reps, &mean, &sd);
        char name[48];
        if (depth > 0) snprintf(name, sizeof name, "tg%lld@d%lld", (long long)n_gen, (long long)depth);
        else snprintf(name, sizeof name, "tg%lld", (long long)n_gen);
        printf("| %-8s | %12.1f | %8.1f +- %-8.1f |\n", name, mean, mean, sd);
    }
    rc = 0;
done:
    free(pp);
    free(tg);
    free(ids);
    free(logits);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = cli_default_model(), *device = "cpu";
    int64_t n_prompt = 512, n_gen = 128, reps = 3, threads = 0, n_ctx = 0, cap_mb = 256, max_batch = 64, depth = 0;
    double budgets[16];
    int64_t n_budgets = 0;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &model_path),
        CLI_STR("--device", NULL, &device),
        CLI_I64("--n_prompt", "-p", &n_prompt, 0, 1 << 20),
        CLI_I64("--n_gen", "-n", &n_gen, 0, 1 << 20),
        CLI_I64("--depth", "-d", &depth, 0, 1 << 20),
        CLI_I64("--reps", "-r", &reps, 1, 1000),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_I64("--context", NULL, &n_ctx, 1, 1 << 20),
        CLI_F32S("--budgets", NULL, budgets, &n_budgets, 16, 1e-6f, 1.0f),
        CLI_I64("--kv_cap_mb", NULL, &cap_mb, 1, 1 << 24),
        CLI_I64("--max_batch", NULL, &max_batch, 1, 4096),
        CLI_KV_TYPE,
        CLI_END,
    };
    int prc = cli_parse_opts("bench", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!n_budgets) {
        budgets[n_budgets++] = 1.0;
        budgets[n_budgets++] = 0.25;
        budgets[n_budgets++] = 0.1;
    }
    const tis_backend *be = NULL;
    int rc = cli_device_backend("bench", device, &be);
    if (rc) return rc;
    int nthreads = cli_threads(threads);
    model *m = NULL;
    if (model_load(&m, model_path)) return cli_fail("loading the model");
    if ((rc = cli_device_prepare("bench", m, be))) {
        model_destroy(&m);
        return rc;
    }
    if (n_ctx > 0) {
        printf("model: %s | backend %s (OpenBLAS %s) | threads %d\n", m->config.name, be->name,
               openblas_get_corename(), nthreads);
        int brc = s_bench_decode(m, be, n_ctx, budgets, n_budgets, cap_mb, max_batch, n_gen > 0 ? n_gen : 1, reps);
        rc = brc ? cli_fail("decode benchmark") : 0;
    } else {
        rc = s_bench_speed(m, be, n_prompt, n_gen, depth, reps, nthreads);
    }
    model_destroy(&m);
    return rc;
}
