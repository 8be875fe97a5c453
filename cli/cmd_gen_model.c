/* tis gen-model: a random-weight model at a real model's shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_job.h"
#include "gen_model.h"
#include "generate.h"
#include "quant.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis gen-model --config NAME --out PATH [options]\n"
            "      --config NAME       shapes of:");
    for (const char *const *n = gen_model_names; *n; n++) fprintf(f, " %s", *n);
    fprintf(f, "\n"
               "      --out PATH          a .gguf file, or a directory (PATH/model.gguf)\n"
               "      --arch llama        the architecture (llama family only)\n"
               "      --layers N          fewer (or more) layers than the config\n"
               "      --type T            matrices as bf16 (default), f16, f32, q8_0 or q4_1\n"
               "      --seed S            weight seed (default 1)\n"
               "Weights are uniform noise scaled so activations stay O(1); the tokenizer is a\n"
               "synthetic byte-level BPE of the model's vocabulary size. For speed and memory\n"
               "measurements at real shapes; what such a model says is noise.\n");
}

static void s_progress(int64_t done, int64_t total) {
    fprintf(stderr, "\r[gen-model] %lld/%lld tensors", (long long)done, (long long)total);
    fflush(stderr);
}

int cmd_gen_model(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *type = "bf16";
    int64_t layers = 0, seed = 1;
    const char *arch = "llama";
    const cli_opt opts[] = {
        CLI_STR("--config", NULL, &config),
        CLI_STR("--out", NULL, &out),
        CLI_STR("--type", NULL, &type),
        CLI_STR("--arch", NULL, &arch),
        CLI_I64("--layers", NULL, &layers, 1, 1024),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_END,
    };
    int prc = cli_parse_opts("gen-model", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (strcmp(arch, "llama")) {
        fprintf(stderr, "tis gen-model: bad value '%s' for --arch (llama only)\n\n", arch);
        s_usage(stderr);
        return 2;
    }
    if (!config || !out) {
        fprintf(stderr, "tis gen-model: --config and --out are required\n\n");
        s_usage(stderr);
        return 2;
    }
    gen_model_spec sp;
    if (gen_model_preset(config, &sp)) {
        fprintf(stderr, "tis gen-model: %s\n\n", tis_last_error());
        s_usage(stderr);
        return 2;
    }
    static const struct { const char *name; int type; } types[] = {
        {"bf16", GGML_TYPE_BF16}, {"f16", GGML_TYPE_F16}, {"f32", GGML_TYPE_F32},
        {"q8_0", GGML_TYPE_Q8_0}, {"q4_1", GGML_TYPE_Q4_1}};
    int t = -1;
    for (size_t k = 0; k < sizeof types / sizeof *types; k++)
        if (!strcmp(type, types[k].name)) t = types[k].type;
    if (t < 0) {
        fprintf(stderr, "tis gen-model: --type %s: bf16, f16, f32, q8_0 or q4_1\n", type);
        return 2;
    }
    sp.wtype = t;
    sp.seed = (uint64_t)seed;
    if (layers) sp.n_layer = layers;
    char path[4096];
    size_t ol = strlen(out);
    if (ol > 5 && !strcmp(out + ol - 5, ".gguf")) {
        snprintf(path, sizeof path, "%s", out);
        if (eval_job_mkdirs_for(path)) return cli_fail("creating the output directory");
    } else {
        if (eval_job_mkdirs(out)) return cli_fail("creating the output directory");
        snprintf(path, sizeof path, "%s/model.gguf", out);
    }
    fprintf(stderr, "[gen-model] %s: d_model %lld, %lld layers, %lld/%lld heads, d_ff %lld, vocab %lld, %s: %.2f B params\n",
            config, (long long)sp.d_model, (long long)sp.n_layer, (long long)sp.n_head, (long long)sp.n_kv_head,
            (long long)sp.d_ff, (long long)sp.n_vocab, type, (double)gen_model_params(&sp) / 1e9);
    double t0 = tis_now();
    if (gen_model_write(path, &sp, s_progress)) {
        fprintf(stderr, "\n");
        return cli_fail("writing the model");
    }
    fprintf(stderr, "\n[gen-model] wrote %s in %.1f s\n", path, tis_now() - t0);
    return 0;
}
