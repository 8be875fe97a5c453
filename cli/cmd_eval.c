/* tis eval: benchmarks x policies x budgets in one process; CSV, JSON,
 * Markdown and plots. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "eval_pipeline.h"
#include "eval.h"
#include "generate.h"
#include "model.h"
#include "press.h"
#include "report.h"
#include "tis_error.h"

enum { MAX_LIST = 64 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis eval [options]\n"
            "  -m, --model PATH          model (default %s)\n"
            "      --baseline NAME...    policies (alias --policy; 'all' = every available one;\n"
            "                            default: full streaming snapkv oracle)\n"
            "      --benchmark NAME...   passkey niah niah_multikey litm (= litm_kv + litm_qa)\n"
            "                            litm_kv litm_qa (default passkey)\n"
            "      --dataset FILE.jsonl  your own data: {\"context\", \"question\", \"answers\", ...}\n"
            "      --cache_budgets F...  budgets as fractions of the context (default 0.1 0.25 0.5)\n"
            "      --budget_tokens N...  budgets as token counts per head\n"
            "      --n_samples N         samples per context length (default 10)\n"
            "      --context_tokens N... context lengths in tokens (default 1024)\n"
            "      --depths D...         needle depths / item positions in [0,1] (default 0 .25 .5 .75 1)\n"
            "      --seed S              data and random-policy seed (default 42)\n"
            "      --query_aware         query-aware protocol only (question prefilled before compression)\n"
            "      --protocol P          agnostic | query_aware | both (default agnostic)\n"
            "      --max_new N           answer tokens at most (default 16)\n"
            "      --window N            observation window of the agnostic protocol (default 64)\n"
            "      --phrasing 0|1        needle/question wording of passkey and niah (1: another, for held-out tests)\n"
            "      --haystack FILE       niah haystack text (default /usr/share/common-licenses/GPL-3)\n"
            "      --n_keys N            niah_multikey needles (default 4)\n"
            "      --head PATH           importance head for tis (default %s if present)\n"
            "      --head_query PATH     query-aware head for tis_query (default %s if present)\n"
            "      --attn_hook_lambda L  lambda of the +hook policies (tis+hook, tis_query+hook);\n"
            "                            default: the head's\n"
            "      --no_chat             plain prompt, no chat template\n"
            "      --batch N             decode N policy runs together (default 1: timings are one\n"
            "                            request's; larger: faster sweeps, timings describe the batch)\n"
            "      --output PATH.csv     per-sample CSV; PATH.json, PATH.md and PATH_*.png beside it\n"
            "                            (default results/eval.csv)\n"
            "      --no_plots            skip the gnuplot PNGs\n"
            "  -t, --threads N           BLAS threads (default: all cores)\n"
            "      --resume              keep the rows already in --output and run only the\n"
            "                            samples missing there (same options as the first run)\n"
            "      --export PATH.jsonl   write the benchmark's samples as a dataset (for\n"
            "                            tis client / tis eval --dataset) and exit\n"
            "      --workers N           spread the samples over N pipeline workers (a private\n"
            "                            tis serve; the cores are shared out between them)\n"
            "      --connect ENDPOINT    or over the workers of a running tis serve\n"
            "      --list                policies and benchmarks, then exit\n",
            cli_default_model(), CLI_DEFAULT_HEAD, CLI_DEFAULT_HEAD_QUERY);
}

static void s_list(void) {
    printf("policies:\n");
    for (const press_info *i = press_registry; i->name; i++)
        printf("  %-10s %s%s\n", i->name, i->available ? "" : "[not available] ", i->about);
    printf("benchmarks:\n");
    for (const char *const *b = bench_names; *b; b++) printf("  %s\n", *b);
    printf("  litm       (litm_kv + litm_qa)\n  jsonl      (--dataset FILE)\n");
}

/* Collects values up to the next option. */
static void s_fmt_time(double s, char *buf, size_t cap) {
    if (s < 0 || s > 1e7) snprintf(buf, cap, "--");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void s_progress(int64_t done, int64_t total, double elapsed, const char *what, bool tty) {
    char e[32], eta[32];
    s_fmt_time(elapsed, e, sizeof e);
    s_fmt_time(done ? elapsed / (double)done * (double)(total - done) : -1, eta, sizeof eta);
    int width = 24, fill = total ? (int)(width * done / total) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s[eval] [%s] %lld/%lld samples  %3.0f%%  elapsed %s  ETA %s  %s%s",
            tty ? "\r" : "", bar, (long long)done, (long long)total,
            total ? 100.0 * (double)done / (double)total : 100.0, e, eta, what, tty ? "   " : "\n");
    fflush(stderr);
}

/* --resume: the ids of the samples whose rows are all in the CSV, sorted. */
typedef struct done_ids {
    const char **id;
    int64_t n;
} done_ids;

typedef struct id_at {
    const char *id;
    int64_t i;
} id_at;

static int s_cmp_id_at(const void *a, const void *b) {
    const id_at *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int s_cmp_id(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Keeps the rows of the samples that have all `per` of theirs, in file
 * order; d gets their ids. Each sample's rows are appended in one write, so
 * only the sample written last can be cut short (by a kill): it is dropped
 * and *partial set, so that it runs again. Any other count, or a policy
 * these options do not run, means the CSV was written with other options:
 * an error naming the first such sample, and nothing is dropped. */
static int s_keep_complete(const char *path, eval_row *rows, int64_t *n_rows, int64_t per,
                           const char *const *names, int64_t n_names, done_ids *d, bool *partial) {
    int64_t n = *n_rows;
    *partial = false;
    d->id = NULL;
    d->n = 0;
    if (n == 0) return 0;
    for (int64_t i = 0; i < n; i++) {
        bool known = false;
        for (int64_t k = 0; k < n_names && !known; k++) known = !strcmp(rows[i].policy, names[k]);
        if (!known)
            return tis_error(TIS_EINVAL,
                             "%s: sample %s has rows of policy '%s', which these options do not run: resume "
                             "with the options of the run that wrote it", path, rows[i].sample_id, rows[i].policy);
    }
    id_at *ix = malloc((size_t)n * sizeof *ix);
    bool *keep = calloc((size_t)n, sizeof *keep);
    d->id = malloc((size_t)n * sizeof *d->id);
    if (!ix || !keep || !d->id) {
        free(ix);
        free(keep);
        free(d->id);
        d->id = NULL;
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) ix[i] = (id_at){rows[i].sample_id, i};
    qsort(ix, (size_t)n, sizeof *ix, s_cmp_id_at);
    const char *last = rows[n - 1].sample_id;
    int rc = 0;
    for (int64_t a = 0, b; a < n && !rc; a = b) {
        for (b = a + 1; b < n && !strcmp(ix[a].id, ix[b].id); b++) {}
        if (b - a == per) {
            for (int64_t k = a; k < b; k++) keep[ix[k].i] = true;
        } else if (b - a < per && !strcmp(ix[a].id, last)) {
            *partial = true;
        } else {
            rc = tis_error(TIS_EINVAL,
                           "%s: sample %s has %lld rows where these options give %lld: resume with the "
                           "options of the run that wrote it", path, ix[a].id, (long long)(b - a), (long long)per);
        }
    }
    free(ix);
    if (rc) {
        free(keep);
        free(d->id);
        d->id = NULL;
        return rc;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (keep[i]) rows[m++] = rows[i];
    *n_rows = m;
    for (int64_t i = 0; i < m; i++) /* a sample's rows are together: one id each */
        if (i == 0 || strcmp(rows[i].sample_id, rows[i - 1].sample_id)) d->id[d->n++] = rows[i].sample_id;
    qsort(d->id, (size_t)d->n, sizeof *d->id, s_cmp_id);
    free(keep);
    return 0;
}

static bool s_done(const bench_sample *s, void *user) {
    const done_ids *d = user;
    const char *id = s->id;
    return d->n && bsearch(&id, d->id, (size_t)d->n, sizeof *d->id, s_cmp_id) != NULL;
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = cli_default_model(), *dataset = NULL, *output = "results/eval.csv";
    const char *haystack = NULL, *protocol = "agnostic";
    const char *head_path = access(CLI_DEFAULT_HEAD, R_OK) == 0 ? CLI_DEFAULT_HEAD : NULL;
    const char *head_q_path = access(CLI_DEFAULT_HEAD_QUERY, R_OK) == 0 ? CLI_DEFAULT_HEAD_QUERY : NULL;
    const char *policies[MAX_LIST], *benches[MAX_LIST];
    int64_t n_pol = 0, n_bench = 0;
    double budgets[MAX_LIST], depths[MAX_LIST];
    int64_t btoks[MAX_LIST], ctx_lens[MAX_LIST];
    int64_t n_budgets = 0, n_btok = 0, n_depths = 0, n_ctx = 0;
    float hook_lambda = -1.0f;
    int64_t n_workers = 0;
    const char *connect = NULL, *export_path = NULL;
    bool resume = false;
    int64_t phrasing = 0;
    int64_t n_samples = 10, seed = 42, threads = 0, max_new = 16, window = 64, n_keys = 4, batch = 1;

    bool list = false, query_aware = false, no_chat = false, no_plots = false;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &model_path),
        CLI_STRS("--baseline", NULL, policies, &n_pol, MAX_LIST),
        CLI_STRS("--policy", NULL, policies, &n_pol, MAX_LIST),
        CLI_STRS("--benchmark", NULL, benches, &n_bench, MAX_LIST),
        CLI_STR("--dataset", NULL, &dataset),
        CLI_F32S("--cache_budgets", NULL, budgets, &n_budgets, MAX_LIST, 1e-6f, 1.0f),
        CLI_I64S("--budget_tokens", NULL, btoks, &n_btok, MAX_LIST, 1, 1 << 24),
        CLI_I64("--n_samples", NULL, &n_samples, 1, 1 << 20),
        CLI_I64S("--context_tokens", NULL, ctx_lens, &n_ctx, MAX_LIST, 16, 1 << 20),
        CLI_F32S("--depths", NULL, depths, &n_depths, MAX_LIST, 0.0f, 1.0f),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_FLAG("--query_aware", NULL, &query_aware),
        CLI_STR("--protocol", NULL, &protocol),
        CLI_I64("--max_new", NULL, &max_new, 1, 4096),
        CLI_I64("--window", NULL, &window, 0, 1 << 20),
        CLI_I64("--phrasing", NULL, &phrasing, 0, 1),
        CLI_STR("--haystack", NULL, &haystack),
        CLI_I64("--n_keys", NULL, &n_keys, 2, 64),
        CLI_STR("--head", NULL, &head_path),
        CLI_STR("--head_query", NULL, &head_q_path),
        CLI_F32("--attn_hook_lambda", NULL, &hook_lambda, 0.0f, 10.0f),
        CLI_FLAG("--no_chat", NULL, &no_chat),
        CLI_I64("--batch", NULL, &batch, 1, 1024),
        CLI_STR("--output", NULL, &output),
        CLI_FLAG("--no_plots", NULL, &no_plots),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_FLAG("--resume", NULL, &resume),
        CLI_STR("--export", NULL, &export_path),
        CLI_I64("--workers", NULL, &n_workers, 1, 16),
        CLI_STR("--connect", NULL, &connect),
        CLI_FLAG("--list", NULL, &list),
        CLI_END,
    };
    int prc = cli_parse_opts("eval", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (list) {
        s_list();
        return 0;
    }
    if (query_aware) protocol = "query_aware";
    if (strcmp(protocol, "agnostic") && strcmp(protocol, "query_aware") && strcmp(protocol, "both")) {
        fprintf(stderr, "tis eval: bad value '%s' for --protocol (agnostic, query_aware or both)\n\n", protocol);
        s_usage(stderr);
        return 2;
    }
    bool chat = !no_chat, plots = !no_plots, all = false;
    int64_t named = 0; /* 'all' is expanded once the heads are known */
    for (int64_t k = 0; k < n_pol; k++) {
        if (!strcmp(policies[k], "all")) all = true;
        else policies[named++] = policies[k];
    }
    n_pol = named;
    if (all) /* every available policy; the learned ones when their head is there */
        for (const press_info *p = press_registry; p->name && n_pol < MAX_LIST; p++) {
            if (!p->available) continue;
            if (!strcmp(p->name, "tis") && !head_path) continue;
            if (!strcmp(p->name, "tis_query") && !head_q_path) continue;
            policies[n_pol++] = p->name;
        }
    if (!n_pol) {
        policies[n_pol++] = "full";
        policies[n_pol++] = "streaming";
        policies[n_pol++] = "snapkv";
        policies[n_pol++] = "oracle";
    }
    if (!n_budgets && !n_btok) {
        budgets[n_budgets++] = 0.1;
        budgets[n_budgets++] = 0.25;
        budgets[n_budgets++] = 0.5;
    }
    if (dataset && n_bench) {
        fprintf(stderr, "tis eval: give --dataset or --benchmark, not both\n");
        return 2;
    }
    /* Expand litm into its two tasks; check names before loading anything. */
    const char *tasks[2 * MAX_LIST]; /* litm is two */
    int n_tasks = 0;
    if (!dataset && !n_bench) benches[n_bench++] = "passkey";
    for (int b = 0; !dataset && b < n_bench; b++) {
        if (!strcmp(benches[b], "litm")) {
            tasks[n_tasks++] = "litm_kv", tasks[n_tasks++] = "litm_qa";
            continue;
        }
        bool known = false;
        for (const char *const *k = bench_names; *k; k++) known |= !strcmp(*k, benches[b]);
        if (!known) {
            fprintf(stderr, "tis eval: unknown benchmark '%s' (tis eval --list)\n", benches[b]);
            return 2;
        }
        tasks[n_tasks++] = benches[b];
    }
    for (int i = 0; i < n_pol; i++) {
        press pr;
        if (press_parse(policies[i], &pr)) {
            fprintf(stderr, "tis eval: %s\n", tis_last_error());
            return 2;
        }
        if (pr.needs_head && !(pr.query_head ? head_q_path : head_path)) {
            fprintf(stderr, "tis eval: policy %s needs an importance head (%s PATH; make one with tis label + "
                            "tis train%s)\n", policies[i], pr.query_head ? "--head_query" : "--head",
                    pr.query_head ? " --query_aware" : "");
            return 2;
        }
    }
    if (!n_ctx) ctx_lens[n_ctx++] = 1024;

    int nthreads = cli_threads(threads);
    model *m = NULL;
    if (model_load(&m, model_path)) return cli_fail("loading the model");
    int rc = 1;
    bench_set *sets = calloc((size_t)(n_tasks ? n_tasks : 1), sizeof *sets);
    int n_sets = 0;
    eval_row *rows = NULL;
    done_ids done_set = {0};
    int64_t n_rows = 0, cap_rows = 0;
    eval_runner *er = NULL;
    char *json_path = cli_csv_sibling(output, ".json"), *md_path = cli_csv_sibling(output, ".md");
    char *plot_prefix = cli_csv_sibling(output, "");
    char **plot_paths = NULL;
    int64_t n_plots = 0;
    char cmdline[4096] = "tis";
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmdline);
        bool quote = strpbrk(argv[i], " \t\"'$") != NULL;
        snprintf(cmdline + l, sizeof cmdline - l, quote ? " '%s'" : " %s", argv[i]);
    }
    if (!sets || !json_path || !md_path || !plot_prefix) {
        fprintf(stderr, "tis eval: out of memory\n");
        goto done;
    }
    if (dataset) {
        if (bench_load_jsonl(dataset, &sets[0])) {
            cli_fail("loading the dataset");
            goto done;
        }
        n_sets = 1;
    }
    for (int t = 0; t < n_tasks; t++) {
        bench_spec spec = {.name = tasks[t], .n_samples = n_samples, .context_tokens = ctx_lens,
                           .n_context = n_ctx, .depths = n_depths ? depths : NULL,
                           .n_depths = n_depths, .seed = (uint64_t)seed, .haystack = haystack, .phrasing = (int)phrasing,
                           .n_keys = n_keys};
        if (bench_generate(&spec, m->tok, &sets[n_sets])) {
            cli_fail("generating the benchmark");
            goto done;
        }
        n_sets++;
    }
    if (export_path) {
        int erc = cli_mkdirs_for(export_path);
        for (int k = 0; !erc && k < n_sets; k++) erc = bench_write_jsonl(export_path, &sets[k], k > 0);
        if (erc) {
            cli_fail("exporting the samples");
            goto done;
        }
        int64_t ns = 0;
        for (int k = 0; k < n_sets; k++) ns += sets[k].n;
        fprintf(stderr, "[eval] wrote %lld samples to %s\n", (long long)ns, export_path);
        rc = 0;
        goto done;
    }
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = policies;
    cfg.n_policies = n_pol;
    cfg.budgets = budgets;
    cfg.n_budgets = n_budgets;
    cfg.budget_tokens = btoks;
    cfg.n_budget_tokens = n_btok;
    cfg.agnostic = strcmp(protocol, "query_aware") != 0;
    cfg.query_aware = strcmp(protocol, "agnostic") != 0;
    cfg.max_new = max_new;
    cfg.window = window;
    cfg.batch = batch;
    cfg.head_path = head_path;
    cfg.attn_hook_lambda = hook_lambda;
    cfg.head_query_path = head_q_path;
    cfg.seed = (uint64_t)seed;
    cfg.chat = chat && tokenizer_chat_template(m->tok) != NULL;
    if (!(n_workers || connect) && eval_runner_new(&er, m, &cfg)) {
        cli_fail("setting up the evaluation");
        goto done;
    }
    if (cli_mkdirs_for(output)) {
        fprintf(stderr, "tis eval: cannot create the directory of %s\n", output);
        goto done;
    }
    if (resume && access(output, R_OK) == 0) { /* the rows of the samples already run stay */
        int64_t cut = 0, per = 0;
        bool partial = false;
        if (report_trim_csv(output, &cut) || report_read_csv(output, &rows, &n_rows) ||
            eval_rows_per_sample(&cfg, &per)) {
            cli_fail("--resume: reading the rows already there");
            goto done;
        }
        if (cut)
            fprintf(stderr, "[eval] --resume: dropped an unfinished last line (%lld bytes) of %s\n", (long long)cut,
                    output);
        const char *names[MAX_LIST + 1] = {"full"};
        int64_t n_names = 1;
        for (int64_t k = 0; k < n_pol; k++) {
            press pr;
            if (!press_parse(policies[k], &pr) && pr.score) names[n_names++] = policies[k];
        }
        if (s_keep_complete(output, rows, &n_rows, per, names, n_names, &done_set, &partial)) {
            cli_fail("--resume");
            goto done;
        }
        cap_rows = n_rows;
        int64_t gone = 0;
        for (int s = 0; s < n_sets; s++) gone += bench_set_drop(&sets[s], s_done, &done_set);
        fprintf(stderr, "[eval] --resume: %lld rows of %lld samples already in %s", (long long)n_rows,
                (long long)gone, output);
        if (partial) fprintf(stderr, "; the last sample, cut short, runs again");
        fprintf(stderr, "\n");
    }
    /* The CSV starts with the rows kept; each sample's rows are appended as it ends. */
    if (report_write_csv(output, rows, n_rows)) {
        cli_fail("writing the CSV");
        goto done;
    }
    int64_t total = 0, done_n = 0;
    for (int s = 0; s < n_sets; s++) total += sets[s].n;
    fprintf(stderr, "[eval] %s | %lld samples | %lld policies | %lld budgets | protocol %s | batch %lld | threads %d",
            m->config.name, (long long)total, (long long)n_pol, (long long)(n_budgets + n_btok), protocol,
            (long long)batch, nthreads);
    if (connect) fprintf(stderr, " | workers of %s", connect);
    else if (n_workers) fprintf(stderr, " | %lld workers", (long long)n_workers);
    fprintf(stderr, "\n");
    bool tty = isatty(2);
    double t0 = tis_now();
    if (n_workers || connect) {
        eval_pipeline_opts po = {.connect = connect, .workers = n_workers, .model_path = model_path,
                                 .model_name = m->config.name, .output = output, .tty = tty};
        eval_row *got = NULL;
        int64_t n_got = 0;
        po.keep = rows;
        po.n_keep = n_rows;
        if (eval_pipeline_run(&po, &cfg, sets, n_sets, &got, &n_got, s_progress)) {
            if (tty) fprintf(stderr, "\n");
            cli_fail("evaluating through the pipeline");
            goto done;
        }
        free(rows);
        rows = got;
        n_rows = n_got;
        cap_rows = n_got;
        /* rows were appended as workers finished them: once more, in sample order */
        if (report_write_csv(output, rows, n_rows)) {
            cli_fail("writing the CSV");
            goto done;
        }
    }
    for (int s = 0; !(n_workers || connect) && s < n_sets; s++) {
        for (int64_t i = 0; i < sets[s].n; i++) {
            const bench_sample *smp = &sets[s].s[i];
            int64_t first = n_rows;
            if (eval_run_sample(er, sets[s].name, smp, &rows, &n_rows, &cap_rows)) {
                if (tty) fprintf(stderr, "\n");
                fprintf(stderr, "tis eval: sample %s: %s\n", smp->id, tis_last_error());
                goto done;
            }
            done_n++;
            char what[160] = "";
            for (int64_t k = first; k < n_rows; k++)
                if (!strcmp(rows[k].policy, "full")) {
                    snprintf(what, sizeof what, "%s: full %s", smp->id, rows[k].correct ? "ok" : "miss");
                    break;
                }
            s_progress(done_n, total, tis_now() - t0, what, tty);
            /* Partial results survive an interrupted run. */
            if (report_append_csv(output, rows + first, n_rows - first)) {
                cli_fail("writing the CSV");
                goto done;
            }
        }
    }
    if (tty) fprintf(stderr, "\n");
    if (plots) {
        int plrc = report_plots(plot_prefix, rows, n_rows, &plot_paths, &n_plots);
        if (plrc == TIS_EUNSUPPORTED) fprintf(stderr, "tis eval: no plots: %s\n", tis_last_error());
        else if (plrc) fprintf(stderr, "tis eval: plots failed: %s\n", tis_last_error());
    }
    report_meta meta = {.command = cmdline, .model = model_path, .title = plot_prefix,
                        .seed = (uint64_t)seed, .threads = nthreads, .wall_s = tis_now() - t0};
    if (report_write_summary(json_path, md_path, rows, n_rows, &meta, (const char *const *)plot_paths,
                             n_plots)) {
        cli_fail("writing the summary");
        goto done;
    }
    fprintf(stderr, "[eval] wrote %s, %s, %s (%lld rows, %lld plots) in %.1f s\n", output, json_path,
            md_path, (long long)n_rows, (long long)n_plots, tis_now() - t0);
    rc = 0;
done:
    for (int64_t i = 0; i < n_plots; i++) free(plot_paths[i]);
    free(plot_paths);
    eval_runner_destroy(&er);
    for (int s = 0; s < n_sets; s++) bench_set_free(&sets[s]);
    free(sets);
    free(rows);
    free(done_set.id);
    free(json_path);
    free(md_path);
    free(plot_prefix);
    model_destroy(&m);
    return rc;
}
