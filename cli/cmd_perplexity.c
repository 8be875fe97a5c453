/* tis perplexity: the model's perplexity on a text file, computed as
 * llama.cpp's llama-perplexity computes it (eval/perplexity.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "forward.h"
#include "model.h"
#include "perplexity.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis perplexity [-m MODEL] -f FILE [-c CTX] [--chunks N] [-t THREADS]\n"
            "  -m, --model PATH   .gguf file or HF directory (default %s)\n"
            "  -f, --file PATH    the text\n"
            "  -c, --ctx N        tokens per chunk (default 512); the second half of each is scored\n"
            "      --chunks N     at most N chunks (default: all the text holds)\n"
            "  -t, --threads N    compute threads (default: all cores)\n"
            "      --kv_type T    KV cache element type: f16 (default), f32, bf16, q8_0, q4_0;\n"
            "                     K,V: the keys' and the values' apart (f16,q8_0)\n"
            "      --device D     cpu (default) or cuda:N\n"
            "Prints PPL = exp(mean negative log-likelihood) with its standard error, as\n"
            "llama-perplexity does on the same file and context.\n",
            cli_default_model());
}

static void s_progress(void *user, int64_t c, int64_t n, const perplexity_result *r) {
    (void)user;
    fprintf(stderr, "[perplexity] chunk %lld/%lld: PPL %.4f\n", (long long)c, (long long)n, r->ppl);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = cli_default_model(), *file = NULL, *device = "cpu";
    int64_t n_ctx = 512, chunks = 0, threads = 0;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &model_path), CLI_STR("--file", "-f", &file),
        CLI_I64("--ctx", "-c", &n_ctx, 16, 1 << 20), CLI_I64("--chunks", NULL, &chunks, 1, 1 << 30),
        CLI_I64("--threads", "-t", &threads, 1, 1024), CLI_STR("--device", NULL, &device), CLI_KV_TYPE, CLI_END,
    };
    int prc = cli_parse_opts("perplexity", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    const tis_backend *be = NULL;
    if ((prc = cli_device_backend("perplexity", device, &be))) return prc;
    if (!file) {
        fprintf(stderr, "tis perplexity: a text file is required (-f)\n\n");
        s_usage(stderr);
        return 2;
    }
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "tis perplexity: cannot open %s\n", file);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!text || got != (size_t)len) {
        free(text);
        fprintf(stderr, "tis perplexity: cannot read %s\n", file);
        return 1;
    }
    int nthreads = cli_threads(threads);
    model *m = NULL;
    forward_state *st = NULL;
    perplexity_result r;
    int rc = model_load(&m, model_path) ? cli_fail("loading the model") : 0;
    if (!rc) rc = cli_device_prepare("perplexity", m, be);
    if (!rc && forward_state_new(&st, m, be, 512)) rc = cli_fail("setting up");
    if (!rc && perplexity_run(st, text, (size_t)len, n_ctx, chunks, s_progress, NULL, &r))
        rc = cli_fail("perplexity");
    if (!rc)
        printf("%s: %lld tokens, %lld chunks of %lld, %lld scored, %s, %d threads\nFinal estimate: PPL = %.4f +/- "
               "%.5f\n", file, (long long)r.n_tokens, (long long)r.n_chunks, (long long)n_ctx, (long long)r.n_scored,
               device, nthreads, r.ppl, r.ppl_err);
    forward_state_destroy(&st);
    model_destroy(&m);
    free(text);
    return rc;
}
