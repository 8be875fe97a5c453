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
#include "model.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis bench [-m MODEL] [-p N] [-n N] [-r REPS] [-t THREADS]\n"
            "  -m, --model PATH     .gguf file or HF directory (default %s)\n"
            "  -p, --n_prompt N     prefill test length (default 512: pp512)\n"
            "  -n, --n_gen N        decode test length (default 128: tg128)\n"
            "  -r, --reps N         repetitions, mean +- sd reported (default 3)\n"
            "  -t, --threads N      BLAS threads (default: all cores)\n"
            "Token ids are pseudo-random (seeded); pp runs one batched forward pass over\n"
            "N tokens into an empty cache; tg runs N single-token steps from an empty\n"
            "cache, as llama-bench does.\n",
            cli_default_model());
}

static void s_stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = cli_default_model();
    int64_t n_prompt = 512, n_gen = 128, reps = 3, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "tis bench: option '%s' needs a value (or is unknown)\n\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--n_prompt")) ok = cli_parse_i64(v, 0, 1 << 20, &n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n_gen")) ok = cli_parse_i64(v, 0, 1 << 20, &n_gen);
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) ok = cli_parse_i64(v, 1, 1000, &reps);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_i64(v, 1, 1024, &threads);
        else {
            fprintf(stderr, "tis bench: unknown option '%s'\n\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tis bench: bad value '%s' for %s\n\n", v, a);
            s_usage(stderr);
            return 2;
        }
        i++;
    }
    int nthreads = cli_threads(threads);
    model *m = NULL;
    if (model_load(&m, model_path)) return cli_fail("loading the model");
    int64_t cap = n_prompt > n_gen ? n_prompt : n_gen;
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
    if (forward_kv_new(m, cap ? cap : 1, &kv) ||
        forward_state_new(&st, m, backend_cpu(), n_prompt > 0 ? n_prompt : 1)) {
        cli_fail("setting up");
        goto done;
    }
    uint64_t rng = 1234567;
    for (int64_t i = 0; i < cap; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((rng >> 33) % (uint64_t)m->config.n_vocab);
    }
    printf("model: %s (%s, %.1f M params, weights f32 %.0f MiB) | backend cpu (OpenBLAS %s) | threads %d | %ld cores online\n",
           m->config.name, m->format, (double)m->n_params / 1e6,
           (double)m->arena_bytes / 1048576.0, openblas_get_corename(), nthreads, sysconf(_SC_NPROCESSORS_ONLN));
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
            double t0 = tis_now();
            for (int64_t i = 0; i < n_gen; i++)
                if (forward_run(st, kv, ids + i, 1, logits, 1, NULL)) {
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
        printf("| tg%-6lld | %12.1f | %8.1f +- %-8.1f |\n", (long long)n_gen, mean, mean, sd);
    }
    rc = 0;
done:
    free(pp);
    free(tg);
    free(ids);
    free(logits);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    model_destroy(&m);
    return rc;
}
