/* tis generate: text from a prompt (raw or through the chat template). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "forward.h"
#include "generate.h"
#include "model.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis generate -m MODEL -p PROMPT [options]\n"
            "  -m, --model PATH     .gguf file or HF directory (default %s)\n"
            "  -p, --prompt TEXT    the prompt (or the user message with --chat)\n"
            "  -n, --n_predict N    tokens to generate at most (default 128)\n"
            "      --chat           wrap the prompt in the model's chat template\n"
            "      --system TEXT    system message for --chat (default: the template's)\n"
            "      --temp T         temperature; 0 = greedy (default 0)\n"
            "      --top_p P        nucleus sampling mass in (0, 1] (default 1)\n"
            "      --seed S         sampling seed (default 42)\n"
            "  -t, --threads N      compute threads (default: all cores)\n"
            "      --kv_type T      KV cache element type: f16 (default), f32, bf16, q8_0, q4_0;\n"
            "                       K,V: the keys' and the values' apart (f16,q8_0)\n"
            "      --ctx N          KV cache capacity in tokens (default prompt + n)\n"
            "      --device D       cpu (default) or cuda:N: weights, activations and the KV cache there\n"
            "      --quiet          no statistics on stderr\n",
            cli_default_model());
}

typedef struct stream_ctx {
    const tokenizer *tok;
} stream_ctx;

/* Streams each token's bytes as they come (a multi-byte character split over
 * tokens is completed by the next write); control tokens print nothing. */
static int s_on_token(void *user, int32_t id) {
    stream_ctx *sc = user;
    if (tokenizer_token_type(sc->tok, id) == TOK_TYPE_CONTROL) return 0;
    char buf[256];
    int64_t n = tokenizer_token_bytes(sc->tok, id, buf, sizeof buf);
    if (n > 0) fwrite(buf, 1, (size_t)(n < (int64_t)sizeof buf ? n : (int64_t)sizeof buf), stdout);
    fflush(stdout);
    return 0;
}

/* What the options ask for. */
typedef struct gen_opts {
    const char *model_path, *prompt, *system, *device;
    int64_t n_predict, seed, threads, ctx;
    float temp, top_p;
    bool chat, quiet;
} gen_opts;

/* The prompt as tokens (through the chat template with --chat), BOS first
 * when the model adds one; *ids malloc'd. 1 after printing a problem. */
static int s_prompt_ids(const model *m, const gen_opts *o, int32_t **ids, int64_t *n) {
    chat_template ct = {0};
    char *text = NULL;
    int32_t *enc = NULL;
    int64_t n_enc = 0;
    int rc = 1;
    if (o->chat) {
        chat_msg msgs[2];
        size_t nm = 0;
        if (o->system) msgs[nm++] = (chat_msg){"system", o->system};
        msgs[nm++] = (chat_msg){"user", o->prompt};
        if (chat_template_init(&ct, tokenizer_chat_template(m->tok)) || chat_render(&ct, msgs, nm, true, &text)) {
            cli_fail("chat template");
            goto done;
        }
    } else {
        text = strdup(o->prompt);
    }
    if (!text || tokenizer_encode(m->tok, text, strlen(text), true, &enc, &n_enc)) {
        cli_fail("tokenizing the prompt");
        goto done;
    }
    bool bos = tokenizer_add_bos(m->tok) && tokenizer_bos(m->tok) >= 0;
    *n = n_enc + (bos ? 1 : 0);
    if (!(*ids = malloc((size_t)(*n + 1) * sizeof(int32_t)))) {
        fprintf(stderr, "tis generate: out of memory\n");
        goto done;
    }
    if (bos) (*ids)[0] = tokenizer_bos(m->tok);
    memcpy(*ids + (bos ? 1 : 0), enc, (size_t)n_enc * sizeof(int32_t));
    rc = 0;
    if (*n == 0) {
        fprintf(stderr, "tis generate: the prompt encodes to no tokens\n");
        rc = 1;
    }
done:
    chat_template_free(&ct);
    free(enc);
    free(text);
    return rc;
}

/* Streams the continuation of the prompt to stdout, statistics to stderr. */
static int s_generate(const model *m, const tis_backend *be, const gen_opts *o, const int32_t *ids, int64_t n_prompt,
                      int nthreads) {
    int64_t cap = o->ctx ? o->ctx : n_prompt + o->n_predict;
    if (cap < n_prompt + o->n_predict) {
        fprintf(stderr, "tis generate: --ctx %lld is less than prompt (%lld) + n (%lld)\n", (long long)cap,
                (long long)n_prompt, (long long)o->n_predict);
        return 1;
    }
    kv_cache *kv = NULL;
    forward_state *st = NULL;
    sampler smp = {0};
    int rc = 1;
    gen_params gp = {.max_new = o->n_predict, .stop_at_eog = true};
    gen_stats gs;
    stream_ctx sc = {m->tok};
    if (forward_kv_new_on(m, be, cap, &kv) || forward_state_new(&st, m, be, 512) ||
        sampler_init(&smp, m->config.n_vocab, o->temp, o->top_p, (uint64_t)o->seed)) {
        cli_fail("setting up");
    } else if (generate(st, kv, m, &smp, ids, n_prompt, &gp, NULL, s_on_token, &sc, &gs)) {
        cli_fail("generating");
    } else {
        printf("\n");
        fflush(stdout); /* the text before the statistics, where both go to one file */
        char kvn[32];
        if (!o->quiet)
            fprintf(stderr,
                    "[tis] %s | %lld prompt tokens: %.1f tok/s | %lld generated: %.1f tok/s | "
                    "%s | threads %d | KV %.2f MiB %s, activations %s%s\n",
                    m->config.name, (long long)gs.n_prompt, gs.n_prompt / (gs.prefill_s + 1e-12),
                    (long long)gs.n_new, gs.n_new > 1 ? (gs.n_new - 1) / (gs.decode_s + 1e-12) : 0.0, o->device,
                    nthreads, (double)kv_cache_bytes_used(kv) / 1048576.0, kv_types_name((kv_types){kv->k_type, kv->v_type}, kvn, sizeof kvn),
                    backend_is_host(be) && !backend_cpu_f32_act() ? "q8" : "f32",
                    gs.stopped_eog ? " | stopped at EOG" : "");
        rc = 0;
    }
    sampler_free(&smp);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.model_path = cli_default_model(), .n_predict = 128, .seed = 42, .top_p = 1.0f, .device = "cpu"};
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &o.model_path),
        CLI_STR("--prompt", "-p", &o.prompt),
        CLI_STR("--system", NULL, &o.system),
        CLI_STR("--device", NULL, &o.device),
        CLI_I64("--n_predict", "-n", &o.n_predict, 0, 1 << 20),
        CLI_F32("--temp", NULL, &o.temp, 0.0f, 100.0f),
        CLI_F32("--top_p", NULL, &o.top_p, 1e-6f, 1.0f),
        CLI_I64("--seed", NULL, &o.seed, 0, INT64_MAX),
        CLI_I64("--threads", "-t", &o.threads, 1, 1024),
        CLI_I64("--ctx", NULL, &o.ctx, 1, 1 << 24),
        CLI_FLAG("--chat", NULL, &o.chat),
        CLI_FLAG("--quiet", NULL, &o.quiet),
        CLI_KV_TYPE,
        CLI_END,
    };
    int prc = cli_parse_opts("generate", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!o.prompt) {
        fprintf(stderr, "tis generate: a prompt is required (-p)\n\n");
        s_usage(stderr);
        return 2;
    }
    const tis_backend *be = NULL;
    int drc = cli_device_backend("generate", o.device, &be);
    if (drc) return drc;
    int nthreads = cli_threads(o.threads);
    model *m = NULL;
    if (model_load(&m, o.model_path)) return cli_fail("loading the model");
    int32_t *ids = NULL;
    int64_t n_prompt = 0;
    int rc = cli_device_prepare("generate", m, be);
    if (!rc) rc = s_prompt_ids(m, &o, &ids, &n_prompt);
    if (!rc) rc = s_generate(m, be, &o, ids, n_prompt, nthreads);
    free(ids);
    model_destroy(&m);
    return rc;
}
