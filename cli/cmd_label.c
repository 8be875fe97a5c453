/* tis label: oracle labels and head features for a dataset, in resumable
 * safetensors shards with a manifest: the options of eval/label_job.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "label_job.h"
#include "label_pipeline.h"

enum { MAX_LIST = 64 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis label (--dataset FILE.jsonl | --benchmark NAME... | --corpus PATH...) [--n_samples N] ...\n"
            "                 --output DIR\n"
            "       tis label --refeature LABEL_DIR --layer L --output DIR\n"
            "  -m, --model PATH          model (default %s)\n"
            "      --dataset FILE.jsonl  {\"id\", \"context\", \"question\", \"answers\"?, \"prefix\"?, ...}\n"
            "      --benchmark NAME...   generated data: passkey niah niah_multikey litm_kv litm_qa\n"
            "      --corpus PATH...      plain text files / directories (recursive), cut into samples of\n"
            "                            --context_tokens tokens; files that are not UTF-8 text are skipped\n"
            "      --n_samples N         per context length (default 10); with --corpus: samples at most\n"
            "                            (default all)\n"
            "      --context_tokens N... (default 1024; --corpus: the first)\n"
            "      --depths D...         needle depths in [0,1] (default 0 .25 .5 .75 1)\n"
            "      --seed S              (default 42)\n"
            "      --phrasing 0|1        needle/question wording of passkey and niah (1: another, for held-out tests)\n"
            "      --haystack FILE       niah haystack text\n"
            "      --output DIR          shards + manifest.jsonl (resumes what DIR holds)\n"
            "      --layer L             features: residual stream entering layer L\n"
            "                            (default n_layer: after the last layer)\n"
            "      --target answer|recon|selfinfo\n"
            "                            answer: the attention the answer pays (default); recon: per\n"
            "                            (layer, kv head) reconstruction scores (KVzip), agnostic state only;\n"
            "                            selfinfo: each token's word self-information (one more pass with\n"
            "                            every position's logits), agnostic state only\n"
            "      --refeature LABEL_DIR the shards of LABEL_DIR again with the features of --layer (one\n"
            "                            forward pass per sample over its stored tokens; labels copied,\n"
            "                            not recomputed): features of several layers from one labelling\n"
            "      --per_head            keep per-(layer, head) labels too (always with recon)\n"
            "      --use_model_answer    label with the model's greedy answer even when one is given\n"
            "      --max_new N           the model's answer: tokens at most (default 32)\n"
            "      --shard_size N        samples per shard (default 32)\n"
            "      --no_chat             plain prompt, no chat template\n"
            "  -t, --threads N           compute threads\n"
            "      --kv_type T           KV cache element type: f16 (default), f32, bf16, q8_0, q4_0;\n"
            "                            K,V: the keys' and the values' apart (f16,q8_0)\n"
            "      --device D            cpu (default); cuda:N is refused for now (the presses run on the cpu)\n"
            "      --workers N           label on N pipeline workers (a private tis serve; the\n"
            "                            cores shared out); the shards are the same\n"
            "      --connect ENDPOINT    or on the prefill workers of a running tis serve\n"
            CLI_CONNECT_KEYS_USAGE,
            cli_default_model());
}

/* --workers / --connect: the samples labelled by the pipeline client. */
typedef struct pipeline_runner {
    const char *connect, *model_path;
    sec_opts sec;
    int64_t workers;
    label_remote *remote;
} pipeline_runner;

static int s_pipeline_open(void *ctx, const model *m, const label_config *cfg, const bench_sample *const *todo,
                           int64_t n) {
    pipeline_runner *p = ctx;
    if (label_remote_open(&p->remote, p->connect, &p->sec, p->workers, p->model_path, &m->config, cfg, todo, n))
        return -cli_fail("starting the workers");
    return 0;
}

static int s_pipeline_next(void *ctx, label_sample *ls, char *why, size_t why_cap) {
    pipeline_runner *p = ctx;
    int rc = label_remote_next(p->remote, ls, why, why_cap);
    return rc < 0 ? -cli_fail("labelling through the pipeline") : rc;
}

static void s_pipeline_close(void *ctx) { label_remote_close(&((pipeline_runner *)ctx)->remote); }

/* Fault injection for tests: TIS_FAULT_LABEL_EXIT_AFTER_SHARDS=N kills the
 * run once N shards are written, before their manifest lines. */
static void s_fault(void *user, int64_t shards) {
    const char *after = getenv("TIS_FAULT_LABEL_EXIT_AFTER_SHARDS");
    if (after && shards >= atoll(after)) _exit(137);
}

/* Usage problems; 2 after printing one. */
static int s_check(const label_job_config *c) {
    if (!c->outdir) {
        fprintf(stderr, "tis label: --output DIR is required\n\n");
        s_usage(stderr);
        return 2;
    }
    if (!!c->dataset + !!c->n_benchmarks + !!c->n_corpus != 1) {
        fprintf(stderr, "tis label: give --dataset, --benchmark or --corpus (one of them)\n\n");
        s_usage(stderr);
        return 2;
    }
    for (int64_t b = 0; b < c->n_benchmarks; b++) {
        bool known = false;
        for (const char *const *k = bench_names; *k; k++) known |= !strcmp(*k, c->benchmarks[b]);
        if (!known) {
            fprintf(stderr, "tis label: unknown benchmark '%s'\n", c->benchmarks[b]);
            return 2;
        }
    }
    return 0;
}

int cmd_label(int argc, char **argv) {
    label_job_config c = {.model_path = cli_default_model(), .spec = {.n_samples = 0}, /* 0: not given */
                          .label = {.layer = -1, .max_new = 32}, .shard_size = 32};
    const char *benches[MAX_LIST], *corpus[MAX_LIST], *target = "answer";
    int64_t n_corpus = 0;
    double depths[MAX_LIST];
    int64_t ctx_lens[MAX_LIST], n_depths = 0, n_ctx = 0, phrasing = 0, seed = 42, threads = 0;
    bool no_chat = false;
    const char *device = "cpu", *refeature = NULL;
    pipeline_runner pr = {.model_path = c.model_path};
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &c.model_path),
        CLI_STR("--device", NULL, &device),
        CLI_STR("--dataset", NULL, &c.dataset),
        CLI_STRS("--benchmark", NULL, benches, &c.n_benchmarks, MAX_LIST),
        CLI_STRS("--corpus", NULL, corpus, &n_corpus, MAX_LIST),
        CLI_STR("--target", NULL, &target),
        CLI_STR("--refeature", NULL, &refeature),
        CLI_I64("--n_samples", NULL, &c.spec.n_samples, 1, 1 << 24),
        CLI_I64S("--context_tokens", NULL, ctx_lens, &n_ctx, MAX_LIST, 16, 1 << 20),
        CLI_F32S("--depths", NULL, depths, &n_depths, MAX_LIST, 0.0f, 1.0f),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_I64("--phrasing", NULL, &phrasing, 0, 1),
        CLI_STR("--haystack", NULL, &c.spec.haystack),
        CLI_STR("--output", NULL, &c.outdir),
        CLI_I64("--layer", NULL, &c.label.layer, 0, 4096),
        CLI_FLAG("--per_head", NULL, &c.label.per_head),
        CLI_FLAG("--use_model_answer", NULL, &c.label.use_model_answer),
        CLI_I64("--max_new", NULL, &c.label.max_new, 1, 4096),
        CLI_I64("--shard_size", NULL, &c.shard_size, 1, 1 << 20),
        CLI_FLAG("--no_chat", NULL, &no_chat),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_I64("--workers", NULL, &pr.workers, 1, 16),
        CLI_STR("--connect", NULL, &pr.connect),
        CLI_CONNECT_KEYS(&pr.sec.key, &pr.sec.server_key, &pr.sec.insecure),
        CLI_KV_TYPE,
        CLI_END,
    };
    int prc = cli_parse_opts("label", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if ((prc = cli_device_cpu_only("label", device, CLI_DEVICE_PRESS_WHY))) return prc;
    if (refeature) {
        if (!c.outdir || c.dataset || c.n_benchmarks || n_corpus || pr.workers || pr.connect) {
            fprintf(stderr, "tis label: --refeature takes --output and --layer (and -m, -t), no samples or workers\n\n");
            s_usage(stderr);
            return 2;
        }
        cli_threads(threads);
        return label_refeature_run(c.model_path, refeature, c.outdir, c.label.layer);
    }
    c.benchmarks = benches;
    c.corpus = corpus;
    c.n_corpus = n_corpus;
    if ((prc = s_check(&c))) return prc;
    if (!head_target_parse(target, &c.label.target)) {
        fprintf(stderr, "tis label: bad value '%s' for --target (answer, recon or selfinfo)\n\n", target);
        s_usage(stderr);
        return 2;
    }
    if (!n_ctx) ctx_lens[n_ctx++] = 1024;
    c.corpus_tokens = ctx_lens[0];
    c.corpus_max = c.spec.n_samples; /* 0 (not given): every piece */
    if (!c.spec.n_samples) c.spec.n_samples = 10;
    c.spec = (bench_spec){.n_samples = c.spec.n_samples, .context_tokens = ctx_lens, .n_context = n_ctx,
                          .depths = n_depths ? depths : NULL, .n_depths = n_depths, .seed = (uint64_t)seed,
                          .haystack = c.spec.haystack, .phrasing = (int)phrasing};
    c.label.chat = !no_chat;
    cli_threads(threads);
    char about[512];
    if (pr.connect) snprintf(about, sizeof about, " | workers of %s", pr.connect);
    else snprintf(about, sizeof about, " | %lld workers", (long long)pr.workers);
    pr.model_path = c.model_path;
    label_job_runner pipeline = {.open = s_pipeline_open, .next = s_pipeline_next, .close = s_pipeline_close,
                                 .ctx = &pr, .about = about};
    if (pr.workers || pr.connect) c.runner = &pipeline;
    if (getenv("TIS_FAULT_LABEL_EXIT_AFTER_SHARDS")) c.on_shard = s_fault;
    return label_job_run(&c);
}
