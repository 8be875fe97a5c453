/* tis eval: benchmarks x policies x budgets in one process or over
 * pipeline workers; CSV, JSON, Markdown and plots: the options of
 * eval/eval_job.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eval_job.h"
#include "eval_pipeline.h"
#include "press.h"
#include "tis_error.h"

enum { MAX_LIST = 64 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis eval [options]\n"
            "  -m, --model PATH          model (default %s)\n"
            "      --baseline NAME...    policies (alias --policy; 'all' = every available one;\n"
            "                            default: full streaming snapkv oracle)\n"
            "                            A|B: a union, each stream keeps both rankings' best\n"
            "      --benchmark NAME...   passkey niah niah_multikey litm (= litm_kv + litm_qa)\n"
            "                            litm_kv litm_qa (default passkey)\n"
            "      --dataset FILE.jsonl  your own data: {\"context\", \"question\", \"answers\", ...}\n"
            "      --cache_budgets F...  budgets as fractions of the context (default 0.1 0.25 0.5)\n"
            "      --budget_tokens N...  budgets as token counts per head\n"
            "      --thresholds T...     adaptive budgets: keep what scores >= T (kvzip, tis with a\n"
            "                            per-head head); the report gives the achieved compression\n"
            "      --n_samples N         samples per context length (default 10)\n"
            "      --context_tokens N... context lengths in tokens (default 1024)\n"
            "      --depths D...         needle depths / item positions in [0,1] (default 0 .25 .5 .75 1)\n"
            "      --seed S              data and random-policy seed (default 42)\n"
            "      --query_aware         query-aware protocol only (question prefilled before compression)\n"
            "      --protocol P          agnostic | query_aware | both (default agnostic)\n"
            "      --max_new N           answer tokens at most (default: per sample, the longest\n"
            "                            expected answer's tokens + 32, room for a restated question)\n"
            "      --window N            observation window of the agnostic protocol (default 64)\n"
            "      --phrasing 0|1        needle/question wording of passkey and niah (1: another, for held-out tests)\n"
            "      --haystack FILE       niah haystack text (default /usr/share/common-licenses/GPL-3)\n"
            "      --n_keys N            niah_multikey needles (default 4)\n"
            "      --head PATH           importance head for tis (default: the model's, configs/heads/MODEL.tis.safetensors,\n"
            "                            e.g. %s, when present)\n"
            "      --head_as NAME=PATH.. more heads in the same run: policy NAME is tis with the head\n"
            "                            at PATH (list NAME in --baseline; one prefill per sample for\n"
            "                            all; every head reads one layer), e.g. tis_pos=h.safetensors\n"
            "      --head_query PATH     query-aware head for tis_query (default %s if present)\n"
            "      --attn_hook_lambda L  lambda of the +hook policies (tis+hook, tis_query+hook);\n"
            "                            default: the head's\n"
            "      --no_chat             plain prompt, no chat template\n"
            "      --batch N             decode N policy runs together (default 1: timings are one\n"
            "                            request's; larger: faster sweeps, timings describe the batch)\n"
            "      --output PATH.csv     per-sample CSV; PATH.json, PATH.md and PATH_*.png beside it\n"
            "                            (default results/eval.csv)\n"
            "      --no_plots            skip the gnuplot PNGs\n"
            "  -t, --threads N           compute threads (default: all cores)\n"
            "      --kv_type T           KV cache element type: f16 (default), f32, bf16, q8_0, q4_0;\n"
            "                            K,V: the keys' and the values' apart (f16,q8_0)\n"
            "      --device D            cpu (default); cuda:N is refused for now (the presses run on the cpu)\n"
            "      --resume              keep the rows already in --output and run only the\n"
            "                            samples missing there (same options as the first run)\n"
            "      --export PATH.jsonl   write the benchmark's samples as a dataset (for\n"
            "                            tis client / tis eval --dataset) and exit\n"
            "      --workers N           spread the samples over N pipeline workers (a private\n"
            "                            tis serve; the cores are shared out between them)\n"
            "      --connect ENDPOINT    or over the workers of a running tis serve\n"
            CLI_CONNECT_KEYS_USAGE
            "      --list                policies and benchmarks, then exit\n",
            cli_default_model(), CLI_DEFAULT_HEAD, CLI_DEFAULT_HEAD_QUERY);
}

static void s_list(void) {
    printf("policies:\n");
    for (const press_info *i = press_registry; i->name; i++)
        printf("  %-10s %s%s\n", i->name, i->available ? "" : "[not available] ", i->about);
    printf("policy suffixes, in this order (docs/eval.md):\n"
           "  +pool[N]   scores max-pooled over N neighbours (+lpool[N]: the N-1 before a score come with it)\n"
           "  +recentN[/D] the context's last N tokens of every stream first (at most k/D of the\n"
           "             per-stream budget k; D 2 when not given)\n"
           "  +capN      a pooled budget: no stream above N times its share\n"
           "  +shared    (instead of +capN) one score for every stream, a uniform budget: a token\n"
           "             is kept in every stream or in none\n"
           "  +hook      learned policies: the attention hook at decode\n"
           "a union of two policies (quote it in a shell):\n"
           "  A|B        each stream keeps the mean of the two budgets, both rankings' best\n"
           "             rank by rank (tis_si+lpool5|tis+lpool5+recent64/8 with --head_as tis_si=...)\n");
    printf("benchmarks:\n");
    for (const char *const *b = bench_names; *b; b++) printf("  %s\n", *b);
    printf("  litm       (litm_kv + litm_qa)\n  jsonl      (--dataset FILE)\n");
}

/* What the options fill: the job's config, and the lists and values it
 * takes in another form. */
typedef struct eval_opts {
    eval_job_config c;
    const char *policies[MAX_LIST], *benches[MAX_LIST], *head_as[MAX_LIST], *protocol, *connect;
    sec_opts sec; /* --connect to tcp: --key, --server_key, --insecure */
    double budgets[MAX_LIST], depths[MAX_LIST], thresholds[MAX_LIST];
    int64_t btoks[MAX_LIST], ctx_lens[MAX_LIST];
    int64_t n_pol, n_head_as, n_bench, n_budgets, n_btok, n_depths, n_ctx, n_thr;
    int64_t seed, phrasing, threads, workers;
    bool list, query_aware, no_chat, no_plots;
    const char *device;
} eval_opts;

static int s_parse(int argc, char **argv, eval_opts *o) {
    eval_job_config *c = &o->c;
    eval_config *e = &c->eval;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &c->model_path),
        CLI_STR("--device", NULL, &o->device),
        CLI_STRS("--baseline", NULL, o->policies, &o->n_pol, MAX_LIST),
        CLI_STRS("--policy", NULL, o->policies, &o->n_pol, MAX_LIST),
        CLI_STRS("--benchmark", NULL, o->benches, &o->n_bench, MAX_LIST),
        CLI_STR("--dataset", NULL, &c->dataset),
        CLI_F32S("--cache_budgets", NULL, o->budgets, &o->n_budgets, MAX_LIST, 1e-6f, 1.0f),
        CLI_I64S("--budget_tokens", NULL, o->btoks, &o->n_btok, MAX_LIST, 1, 1 << 24),
        CLI_F32S("--thresholds", NULL, o->thresholds, &o->n_thr, MAX_LIST, 1e-9f, 1.0f),
        CLI_I64("--n_samples", NULL, &c->spec.n_samples, 1, 1 << 20),
        CLI_I64S("--context_tokens", NULL, o->ctx_lens, &o->n_ctx, MAX_LIST, 16, 1 << 20),
        CLI_F32S("--depths", NULL, o->depths, &o->n_depths, MAX_LIST, 0.0f, 1.0f),
        CLI_I64("--seed", NULL, &o->seed, 0, INT64_MAX),
        CLI_FLAG("--query_aware", NULL, &o->query_aware),
        CLI_STR("--protocol", NULL, &o->protocol),
        CLI_I64("--max_new", NULL, &e->max_new, 1, 4096),
        CLI_I64("--window", NULL, &e->window, 0, 1 << 20),
        CLI_I64("--phrasing", NULL, &o->phrasing, 0, 1),
        CLI_STR("--haystack", NULL, &c->spec.haystack),
        CLI_I64("--n_keys", NULL, &c->spec.n_keys, 2, 64),
        CLI_STR("--head", NULL, &e->head_path),
        CLI_STRS("--head_as", NULL, o->head_as, &o->n_head_as, MAX_LIST),
        CLI_STR("--head_query", NULL, &e->head_query_path),
        CLI_F32("--attn_hook_lambda", NULL, &e->attn_hook_lambda, 0.0f, 10.0f),
        CLI_FLAG("--no_chat", NULL, &o->no_chat),
        CLI_I64("--batch", NULL, &e->batch, 1, 1024),
        CLI_STR("--output", NULL, &c->output),
        CLI_FLAG("--no_plots", NULL, &o->no_plots),
        CLI_I64("--threads", "-t", &o->threads, 1, 1024),
        CLI_FLAG("--resume", NULL, &c->resume),
        CLI_STR("--export", NULL, &c->export_path),
        CLI_I64("--workers", NULL, &o->workers, 1, 16),
        CLI_STR("--connect", NULL, &o->connect),
        CLI_CONNECT_KEYS(&o->sec.key, &o->sec.server_key, &o->sec.insecure),
        CLI_FLAG("--list", NULL, &o->list),
        CLI_KV_TYPE,
        CLI_END,
    };
    return cli_parse_opts("eval", argc, argv, opts, s_usage);
}

/* The policies asked for: 'all' is every available one (the learned ones
 * when their head is there); none: full streaming snapkv oracle. */
static void s_policies(eval_opts *o) {
    const eval_config *e = &o->c.eval;
    bool all = false;
    int64_t named = 0;
    for (int64_t k = 0; k < o->n_pol; k++) {
        if (!strcmp(o->policies[k], "all")) all = true;
        else o->policies[named++] = o->policies[k];
    }
    o->n_pol = named;
    for (const press_info *p = press_registry; all && p->name && o->n_pol < MAX_LIST; p++) {
        if (!p->available) continue;
        if (!strcmp(p->name, "tis") && !e->head_path) continue;
        if (!strcmp(p->name, "tis_query") && !e->head_query_path) continue;
        o->policies[o->n_pol++] = p->name;
    }
    static const char *const defaults[] = {"full", "streaming", "snapkv", "oracle"};
    if (o->n_pol == 0)
        for (int k = 0; k < 4; k++) o->policies[o->n_pol++] = defaults[k];
}

/* The job's config from the options; 2 after printing a usage problem. */
static int s_fill(eval_opts *o) {
    if (o->query_aware) o->protocol = "query_aware";
    if (strcmp(o->protocol, "agnostic") && strcmp(o->protocol, "query_aware") && strcmp(o->protocol, "both")) {
        fprintf(stderr, "tis eval: bad value '%s' for --protocol (agnostic, query_aware or both)\n\n", o->protocol);
        s_usage(stderr);
        return 2;
    }
    s_policies(o);
    if (!o->n_budgets && !o->n_btok) {
        o->budgets[o->n_budgets++] = 0.1;
        o->budgets[o->n_budgets++] = 0.25;
        o->budgets[o->n_budgets++] = 0.5;
    }
    if (!o->n_ctx) o->ctx_lens[o->n_ctx++] = 1024;
    eval_job_config *c = &o->c;
    eval_config *e = &c->eval;
    c->benchmarks = o->benches;
    c->n_benchmarks = o->n_bench;
    c->spec.context_tokens = o->ctx_lens;
    c->spec.n_context = o->n_ctx;
    c->spec.depths = o->n_depths ? o->depths : NULL;
    c->spec.n_depths = o->n_depths;
    c->spec.seed = e->seed = (uint64_t)o->seed;
    c->spec.phrasing = (int)o->phrasing;
    c->plots = !o->no_plots;
    e->policies = o->policies;
    e->n_policies = o->n_pol;
    e->head_as = o->head_as;
    e->n_head_as = o->n_head_as;
    e->budgets = o->budgets;
    e->n_budgets = o->n_budgets;
    e->budget_tokens = o->btoks;
    e->n_budget_tokens = o->n_btok;
    e->thresholds = o->thresholds;
    e->n_thresholds = o->n_thr;
    e->agnostic = strcmp(o->protocol, "query_aware") != 0;
    e->query_aware = strcmp(o->protocol, "agnostic") != 0;
    e->chat = !o->no_chat;
    return 0;
}

/* --workers / --connect: the samples through the pipeline client. */
typedef struct pipeline_runner {
    const char *connect;
    sec_opts sec;
    int64_t workers;
} pipeline_runner;

static int s_pipeline_run(void *ctx, const eval_job_batch *b, eval_row **rows, int64_t *n_rows, int64_t *cap_rows) {
    const pipeline_runner *p = ctx;
    eval_pipeline_opts po = {.connect = p->connect, .sec = p->sec, .workers = p->workers, .model_path = b->model_path,
                             .model_name = b->m->config.name, .tok = b->m->tok, .output = b->output, .keep = *rows,
                             .n_keep = *n_rows, .tty = b->tty};
    eval_row *got = NULL;
    int64_t n_got = 0;
    if (eval_pipeline_run(&po, b->cfg, b->sets, b->n_sets, &got, &n_got, b->progress)) {
        if (b->tty) fprintf(stderr, "\n");
        return -cli_fail("evaluating through the pipeline");
    }
    free(*rows);
    *rows = got;
    *n_rows = *cap_rows = n_got;
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o = {.protocol = "agnostic", .seed = 42, .device = "cpu"};
    eval_config_defaults(&o.c.eval);
    o.c.model_path = cli_default_model();
    o.c.output = "results/eval.csv";
    o.c.spec = (bench_spec){.n_samples = 10, .n_keys = 4};
    int prc = s_parse(argc, argv, &o);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if ((prc = cli_device_cpu_only("eval", o.device, CLI_DEVICE_PRESS_WHY))) return prc;
    /* the model's own default heads, when committed and no --head / --head_query */
    static char def_head[512], def_head_q[512];
    cli_default_head(o.c.model_path, "tis", def_head, sizeof def_head);
    cli_default_head(o.c.model_path, "tis_query", def_head_q, sizeof def_head_q);
    if (!o.c.eval.head_path && access(def_head, R_OK) == 0) o.c.eval.head_path = def_head;
    if (!o.c.eval.head_query_path && access(def_head_q, R_OK) == 0) o.c.eval.head_query_path = def_head_q;
    if (o.list) {
        s_list();
        return 0;
    }
    if ((prc = s_fill(&o))) return prc;
    if (eval_job_check(&o.c)) {
        fprintf(stderr, "tis eval: %s\n", tis_last_error());
        return 2;
    }
    o.c.threads = cli_threads(o.threads);
    char *cmdline = cli_cmdline(argc, argv); /* whole, however long (the summary records it) */
    if (!cmdline) return cli_fail("recording the command");
    o.c.command = cmdline;
    char about[512];
    pipeline_runner pr = {.connect = o.connect, .sec = o.sec, .workers = o.workers};
    eval_job_runner pipeline = {.run = s_pipeline_run, .ctx = &pr, .about = about, .appends_unordered = true};
    if (o.connect) snprintf(about, sizeof about, " | workers of %s", o.connect);
    else snprintf(about, sizeof about, " | %lld workers", (long long)o.workers);
    if (o.workers || o.connect) o.c.runner = &pipeline;
    int rc = eval_job_run(&o.c);
    free(cmdline);
    return rc;
}
