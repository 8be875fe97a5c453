/* tis: one binary, subcommands. */
#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "tis_error.h"
#include "pool.h"

bool cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_f32(const char *s, float lo, float hi, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

const char *cli_default_model(void) {
    const char *env = getenv("TIS_MODEL");
    if (env && *env) return env;
    return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

void cli_default_head(const char *model_path, const char *kind, char *out, size_t cap) {
    const char *base = strrchr(model_path, '/');
    base = base && base[1] ? base + 1 : model_path;
    char slug[256];
    size_t n = strlen(base);
    if (n >= sizeof slug) n = sizeof slug - 1;
    for (size_t i = 0; i < n; i++) slug[i] = (char)tolower((unsigned char)base[i]);
    slug[n] = 0;
    char *dot = strrchr(slug, '.');
    if (dot && !strcmp(dot, ".gguf")) *dot = 0, dot = strrchr(slug, '.');
    /* a quantisation suffix: .q4_1, .q4_k_m, .f16, .bf16 */
    if (dot && (dot[1] == 'q' || dot[1] == 'f' || (dot[1] == 'b' && dot[2] == 'f')) && strpbrk(dot, "0123456789"))
        *dot = 0;
    snprintf(out, cap, "configs/heads/%s.%s.safetensors", slug, kind);
}

int cli_threads(int64_t n) {
    if (n > 0) {
        openblas_set_num_threads((int)n); /* prefill's sgemm */
        pool_set_threads((int)n);         /* decode's quantised products */
    }
    return openblas_get_num_threads();
}

int cli_fail(const char *what) {
    fprintf(stderr, "tis: %s: %s\n", what, tis_last_error());
    return 1;
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis <command> [options]\n"
            "\n"
            "commands:\n"
            "  generate  -m MODEL -p PROMPT [-n N] [--chat] [--system TEXT] [--temp T]\n"
            "            [--top_p P] [--seed S] [--threads N]   generate text\n"
            "  tokenize  [-m MODEL] TEXT        token ids and pieces\n"
            "  info      MODEL                  architecture, sizes, tensor types\n"
            "  bench     [-m MODEL] [-r REPS] [--threads N]   prefill (pp512) and decode (tg128) speed;\n"
            "            --context N: batched decode from compressed caches under a KV cap\n"
            "  perplexity -f FILE [-m MODEL] [-c CTX]   perplexity on a text, as llama-perplexity\n"
            "  selfinfo  -f FILE [-m MODEL]     each token's self-information (the selfinfo press's scores)\n"
            "  eval      [--baseline P...] [--benchmark B...] [--cache_budgets F...] ...\n"
            "            benchmarks x KV-compression policies x budgets: CSV, JSON, report, plots\n"
            "  report    --csv A.csv [B.csv...] --output OUT.csv [--title T] [--no_plots]\n"
            "            JSON, report and plots again from eval CSVs (merged)\n"
            "  label     (--dataset F | --benchmark B...) --output DIR [--layer L] [--per_head]\n"
            "            oracle labels + head features in resumable safetensors shards\n"
            "  train     --labels DIR... --output HEAD.safetensors [--head linear|mlp] [--query_aware]\n"
            "            fit the importance head (C, Adam), early stopping, metrics CSV + PNG\n"
            "  worker    --role prefill|scorer|decode --connect ENDPOINT --name ID\n"
            "            one pipeline worker (prefill + compress, score, or decode from a compressed block)\n"
            "  serve     [--config FILE.yaml] [--prefill N] [--scorer N] [--decode N]   coordinator + workers\n"
            "  client    [--connect EP] (--dataset F | --context T --question Q) [--policy P] [--budget F]\n"
            "  status    [--connect EP] [--json]   workers, queues, stage latencies of a running serve\n"
            "  keygen    PREFIX                 a CURVE key pair for tcp endpoints: PREFIX.key (0600), PREFIX.pub\n"
            "  gen-model --config smollm2-135m|llama3-8b|mistral-7b --out PATH   random weights, real shapes\n"
            "\n"
            "MODEL is a .gguf file or a HF directory (config.json, *.safetensors,\n"
            "tokenizer.json); default %s.\n"
            "Run 'tis <command> --help' for a command's options.\n",
            cli_default_model());
}

/* Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) does not recognise newer Xeons
 * and falls back to its Prescott (SSE3) kernels: 3x slower prefill here.
 * When that happened and the CPU has AVX2/AVX-512, name the right kernel
 * family and restart once (OpenBLAS reads OPENBLAS_CORETYPE at load time).
 * A user's own OPENBLAS_CORETYPE is never overridden. */
static void s_blas_coretype(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("TIS_KEEP_BLAS_CORE")) return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on with the slow kernels */
}

int main(int argc, char **argv) {
    s_blas_coretype(argv);
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        s_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "label")) return cmd_label(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "worker")) return cmd_worker(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "client")) return cmd_client(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen-model")) return cmd_gen_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "perplexity")) return cmd_perplexity(argc - 1, argv + 1);
    if (!strcmp(cmd, "selfinfo")) return cmd_selfinfo(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cmd_keygen(argc - 1, argv + 1);
    fprintf(stderr, "tis: unknown command '%s'\n\n", cmd);
    s_usage(stderr);
    return 2;
}
