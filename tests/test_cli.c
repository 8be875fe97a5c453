/* test_cli: the tis binary: usage errors exit 2 with a usage text, runtime
 * errors exit 1 with a message, and the subcommands work on a tiny model. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devspec.h"
#include "tiny_model.h"
#include "tt.h"
#ifdef TIS_HAVE_CUDA
#include "cuda/cuda_probe.h"
#endif

/* CUDA devices this process sees (the probe's line or reason in buf). */
static int s_cuda_devices(char *buf, size_t cap) {
#ifdef TIS_HAVE_CUDA
    return cuda_probe(buf, cap);
#else
    snprintf(buf, cap, "built without CUDA");
    return 0;
#endif
}

/* Usage errors exit 2 with the problem named; --help is not an error. */
static void s_usage_errors(void) {
    static char out[1 << 16];
    TT_CHECK(tt_tis("", out, sizeof out) == 2 && strstr(out, "usage: tis"));
    TT_CHECK(tt_tis("frobnicate", out, sizeof out) == 2 && strstr(out, "unknown command"));
    TT_CHECK(tt_tis("--help", out, sizeof out) == 0 && strstr(out, "generate"));
    TT_CHECK(tt_tis("generate", out, sizeof out) == 2 && strstr(out, "prompt is required"));
    TT_CHECK(tt_tis("generate -p hi -n abc", out, sizeof out) == 2 && strstr(out, "bad value"));
    TT_CHECK(tt_tis("generate -p hi --temp -1", out, sizeof out) == 2);
    TT_CHECK(tt_tis("generate -p hi --top_p 1.5", out, sizeof out) == 2);
    TT_CHECK(tt_tis("generate -p hi --bogus 1", out, sizeof out) == 2 && strstr(out, "unknown option"));
    TT_CHECK(tt_tis("generate -p hi -m", out, sizeof out) == 2 && strstr(out, "'-m' needs a value"));
    /* the option table: ranges named, flags take no value, --help is not an error */
    TT_CHECK(tt_tis("worker --arena_mb 0", out, sizeof out) == 2 &&
             strstr(out, "bad value '0' for --arena_mb (an integer in [1, 1048576])"));
    TT_CHECK(tt_tis("client --budget 2 --context c --question q", out, sizeof out) == 2 &&
             strstr(out, "(a number in [1e-06, 1])"));
    TT_CHECK(tt_tis("serve --prefill 2 --bogus", out, sizeof out) == 2 && strstr(out, "unknown option '--bogus'"));
    /* a served named head: NAME=PATH, a new name, before any worker starts */
    TT_CHECK(tt_tis("serve --head_as snapkv=x.safetensors", out, sizeof out) == 2 &&
             strstr(out, "'snapkv' is already a policy"));
    TT_CHECK(tt_tis("serve --head_as tis_si", out, sizeof out) == 2 && strstr(out, "give NAME=PATH"));
    TT_CHECK(tt_tis("serve --scorer 1", out, sizeof out) == 2 && strstr(out, "scorer workers need --head"));
    TT_CHECK(tt_tis("status --help", out, sizeof out) == 0 && strstr(out, "usage: tis status"));
    TT_CHECK(tt_tis("status --json --watch", out, sizeof out) == 2 && strstr(out, "'--watch' needs a value"));
    TT_CHECK(tt_tis("bench -r 0", out, sizeof out) == 2);
    TT_CHECK(tt_tis("info", out, sizeof out) == 2);
    TT_CHECK(tt_tis("tokenize", out, sizeof out) == 2);
}

/* Runtime errors: exit 1 with a message naming the problem. */
static void s_runtime_errors(void) {
    static char out[1 << 16];
    char args[1024];
    TT_CHECK(tt_tis("info /nonexistent/model.gguf", out, sizeof out) == 1 && strstr(out, "cannot open"));
    const char *junk = tt_path("junk.gguf");
    tt_write_file(junk, "GGUF\x03\0\0\0garbage", 15);
    snprintf(args, sizeof args, "generate -m '%s' -p hi", junk);
    TT_CHECK(tt_tis(args, out, sizeof out) == 1 && strstr(out, "tis: loading the model"));
    fprintf(stderr, "  junk model -> %s", out);
    /* a client with no server there gives up after --silence_s, not --timeout_s, and says why */
    snprintf(args, sizeof args, "client --connect 'ipc://%s' --context c --question q --silence_s 1 --timeout_s 600",
             tt_path("nobody/front"));
    TT_CHECK(tt_tis(args, out, sizeof out) == 1 && strstr(out, "nothing from ipc://") &&
             strstr(out, "is tis serve running there?") && strstr(out, "1 requests unanswered after"));
    fprintf(stderr, "  client, no server -> %s", out);
}

/* The subcommands on a tiny model; sampling is deterministic by seed. */
static void s_subcommands(const char *tiny) {
    static char out[1 << 16];
    char args[1024];
    snprintf(args, sizeof args, "info '%s'", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "architecture    llama") &&
             strstr(out, "layers          2"));
    { /* where eval looks for its heads: the file name lowered, the quantisation suffix cut */
        char want[1200];
        const char *base = strrchr(tiny, '/');
        snprintf(want, sizeof want, "default head    configs/heads/%s", base ? base + 1 : tiny);
        char *dot = strstr(want, ".gguf");
        if (dot) snprintf(dot, sizeof want - (size_t)(dot - want), ".tis.safetensors (tis;");
        for (char *c = want + 30; *c; c++) *c = (char)tolower((unsigned char)*c);
        TT_CHECK(strstr(out, want) != NULL);
        if (!strstr(out, want)) fprintf(stderr, "  want '%s' in:\n%s", want, out);
    }
    snprintf(args, sizeof args, "tokenize -m '%s' --ids 'the then'", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0);
    fprintf(stderr, "  tokenize -> %s", out);
    snprintf(args, sizeof args, "generate -m '%s' -p 'the' -n 8 --quiet", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0);
    /* sampling is deterministic by seed */
    char first[4096];
    snprintf(args, sizeof args, "generate -m '%s' -p 'the' -n 12 --temp 0.9 --seed 5 --quiet", tiny);
    TT_CHECK(tt_tis(args, first, sizeof first) == 0);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strcmp(out, first) == 0);
    snprintf(args, sizeof args, "generate -m '%s' -p 'hello' --chat -n 4 --quiet", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "bench -m '%s' -p 16 -n 4 -r 1", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "pp16") && strstr(out, "tg4"));
    fprintf(stderr, "%s", out);
}

/* --device: cpu runs; not a device is a usage error; a GPU this build or
 * machine cannot use is refused with the reason, before the model loads. */
static void s_device(const char *tiny) {
    static char out[1 << 16];
    char args[1024];
    snprintf(args, sizeof args, "generate -m '%s' -p 'hello' -n 2 --device cpu", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "| cpu |"));
    snprintf(args, sizeof args, "generate -m '%s' -p 'hello' --device gpu", tiny);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "device 'gpu': cpu, cuda or cuda:N"));
    TT_CHECK(tt_tis("eval --device gpu", out, sizeof out) == 2 && strstr(out, "tis eval: --device: device 'gpu'"));
    TT_CHECK(tt_tis("label --device cuda:x", out, sizeof out) == 2 && strstr(out, "tis label: --device: device"));
    char probe[1024] = "";
    int n_gpu = devspec_have_cuda() ? s_cuda_devices(probe, sizeof probe) : 0;
    const char *dev_cmds[5] = {"generate -m '%s' -p 'hello' -n 2 --device cuda:0",
                               "bench -m '%s' -p 4 -n 1 -r 1 --device cuda:63",
                               "eval -m '%s' --benchmark passkey --n_samples 1 --device cuda:63",
                               "label -m '%s' --benchmark passkey --n_samples 1 --device cuda:0",
                               "perplexity -m '%s' -f /dev/null --device cuda:0"};
    for (int b = 0; b < 5; b++) {
        snprintf(args, sizeof args, dev_cmds[b], tiny);
        if (n_gpu > (strstr(dev_cmds[b], "cuda:63") ? 63 : 0)) continue; /* that device exists here */
        int rc = tt_tis(args, out, sizeof out);
        fprintf(stderr, "  %s -> %d: %s", args, rc, out);
        if (!devspec_have_cuda())
            TT_CHECK(rc == 1 && strstr(out, "tis was built without CUDA"));
        else if (n_gpu == 0)
            TT_CHECK(rc == 1 && strstr(out, "--device: cuda:") && strstr(out, strtok(probe, "\n")));
        else
            TT_CHECK(rc == 1 && strstr(out, "CUDA device"));
    }
}

/* tis serve --config: the committed config reads; a bad one is a usage
 * error naming the file, the line and the key. */
static void s_serve_config(void) {
    static char out[1 << 16];
    char args[1024];
    const char *src = getenv("TIS_SOURCE_DIR");
    if (src) {
        snprintf(args, sizeof args, "serve --config '%s/configs/serve.yaml' --help", src);
        TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "usage: tis serve"));
    }
    static const struct { const char *yaml, *msg; } bad[] = {
        {"prefill:\n  workers: 2\n  devcie: cpu\n", ":3: unknown key 'prefill.devcie'"},
        {"prefill:\n  workers: [1, 2]\n", ":2: prefill.workers: '[1,2]' is not an integer"},
        {"prefill:\n  devices: [[0], 1]\n", ":2: a list is only the value of a key, of plain values"},
        {"prefill:\n  devices:\n    - a: 1\n", "'prefill.devices': a list of plain values only"},
        {"prefill:\n  device: cuda:0\n  devices: [0, 1]\n", "prefill: give device or devices, not both"},
        {"decode:\n  device: gpu\n", "decode.device: device 'gpu': cpu, cuda or cuda:N"},
        {"decode:\n  devices: [0, x]\n", "decode.devices: 'x' is not a GPU number"},
        {"prefill:\n  workers: 1x\n", ":2: prefill.workers: '1x' is not an integer"},
        {"front: a\nfront: b\n", "'front' is given twice (first on line 1)"},
        {"front: 'a\nback: b\n", "YAML error"},
        {"- a\n- b\n", "a list is only the value of a key"},
        /* named heads: read (as a list or one entry), then checked before any worker starts */
        {"prefill:\n  head_as: [tis_si=a.safetensors, snapkv=b.safetensors]\n", "'snapkv' is already a policy"},
        {"prefill:\n  head_as: tis_si\n", "give NAME=PATH"},
        {"prefill:\n  head_as: [a=x, b=x, c=x, d=x, e=x, f=x, g=x, h=x, i=x]\n", "at most 8 heads"},
    };
    char yml[512];
    snprintf(yml, sizeof yml, "%s", tt_path("bad.yaml"));
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        TT_OK(tt_write_file(yml, bad[k].yaml, strlen(bad[k].yaml)));
        snprintf(args, sizeof args, "serve --config '%s'", yml);
        int rc = tt_tis(args, out, sizeof out);
        TT_CHECK(rc == 2 && strstr(out, bad[k].msg));
        if (rc != 2 || !strstr(out, bad[k].msg)) fprintf(stderr, "config %zu: rc %d: %s\n", k, rc, out);
    }
    TT_CHECK(tt_tis("serve --config /nonexistent.yaml", out, sizeof out) == 2 && strstr(out, "cannot open config"));
}

/* tis gen-model: a loadable model at a real model's shapes (one layer here). */
static void s_gen_model(void) {
    static char out[1 << 16];
    char args[1024];
    char gm[512];
    snprintf(gm, sizeof gm, "%s", tt_path("gen"));
    snprintf(args, sizeof args, "gen-model --config smollm2-135m --layers 1 --type q8_0 --out '%s'", gm);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "wrote"));
    snprintf(args, sizeof args, "info '%s/model.gguf'", gm);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0 && strstr(out, "49152") && strstr(out, "576") &&
             strstr(out, "gen smollm2-135m"));
    snprintf(args, sizeof args, "generate -m '%s/model.gguf' -p 'the cat sat' -n 4 --quiet", gm);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0);
    TT_CHECK(tt_tis("gen-model --config gpt-5 --out /tmp/x", out, sizeof out) == 2 && strstr(out, "unknown config"));
    TT_CHECK(tt_tis("gen-model --config mistral-7b --type q3 --out /tmp/x", out, sizeof out) == 2);
    TT_CHECK(tt_tis("gen-model --config mistral-7b --arch gpt2 --out /tmp/x", out, sizeof out) == 2 &&
             strstr(out, "llama only"));
    TT_CHECK(tt_tis("status --connect ipc:///nonexistent/dir/x --timeout_ms 200", out, sizeof out) == 1);
}

int main(void) {
    static char tiny[512]; /* tt_path's buffers are reused */
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    s_usage_errors();
    s_runtime_errors();
    s_subcommands(tiny);
    s_device(tiny);
    s_serve_config();
    s_gen_model();
    return tt_done("test_cli");
}
