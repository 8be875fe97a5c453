/* tis label: oracle labels and head features for a dataset, in resumable
 * safetensors shards with a manifest. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "label_pipeline.h"
#include "generate.h"
#include "label.h"
#include "model.h"
#include "tis_error.h"

enum { MAX_LIST = 64 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis label (--dataset FILE.jsonl | --benchmark NAME... [--n_samples N] ...) --output DIR\n"
            "  -m, --model PATH          model (default %s)\n"
            "      --dataset FILE.jsonl  {\"id\", \"context\", \"question\", \"answers\"?, \"prefix\"?, ...}\n"
            "      --benchmark NAME...   generated data: passkey niah niah_multikey litm_kv litm_qa\n"
            "      --n_samples N         per context length (default 10)\n"
            "      --context_tokens N... (default 1024)\n"
            "      --depths D...         needle depths in [0,1] (default 0 .25 .5 .75 1)\n"
            "      --seed S              (default 42)\n"
            "      --phrasing 0|1        needle/question wording of passkey and niah (1: another, for held-out tests)\n"
            "      --haystack FILE       niah haystack text\n"
            "      --output DIR          shards + manifest.jsonl (resumes what DIR holds)\n"
            "      --layer L             features: residual stream entering layer L\n"
            "                            (default n_layer: after the last layer)\n"
            "      --per_head            keep per-(layer, head) labels too\n"
            "      --use_model_answer    label with the model's greedy answer even when one is given\n"
            "      --max_new N           the model's answer: tokens at most (default 32)\n"
            "      --shard_size N        samples per shard (default 32)\n"
            "      --no_chat             plain prompt, no chat template\n"
            "  -t, --threads N           BLAS threads\n"
            "      --workers N           label on N pipeline workers (a private tis serve; the\n"
            "                            cores shared out); the shards are the same\n"
            "      --connect ENDPOINT    or on the prefill workers of a running tis serve\n",
            cli_default_model());
}

/* DIR/label_config.json pins the settings; a resumed run must match them. */
static int s_check_config(const char *dir, const char *model_name, int64_t layer, bool per_head,
                          bool model_answer, bool chat) {
    char path[1100];
    snprintf(path, sizeof path, "%s/label_config.json", dir);
    cJSON *want = cJSON_CreateObject();
    cJSON_AddStringToObject(want, "format", "tis-labels-1");
    cJSON_AddStringToObject(want, "model", model_name);
    cJSON_AddNumberToObject(want, "layer", (double)layer);
    cJSON_AddBoolToObject(want, "per_head", per_head);
    cJSON_AddBoolToObject(want, "use_model_answer", model_answer);
    cJSON_AddBoolToObject(want, "chat", chat);
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        cJSON *have = cJSON_Parse(buf);
        if (!have || !cJSON_Compare(have, want, true))
            rc = tis_error(TIS_EINVAL, "%s holds labels made with other settings (%s); use another --output",
                           dir, path);
        cJSON_Delete(have);
    } else {
        char *txt = cJSON_Print(want);
        f = txt ? fopen(path, "wb") : NULL;
        if (!f || fputs(txt, f) < 0 || fclose(f) != 0)
            rc = tis_error(TIS_EIO, "cannot write %s: %s", path, strerror(errno));
        free(txt);
    }
    cJSON_Delete(want);
    return rc;
}

/* Reads the manifest: ids already done (labelled or skipped) and the next shard number. */
static int s_load_manifest(const char *path, char ***ids, int64_t *n_ids, int64_t *next_shard) {
    *ids = NULL;
    *n_ids = 0;
    *next_shard = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : tis_error(TIS_EIO, "cannot read %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0, cap_ids = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        if (!cJSON_IsString(id)) {
            cJSON_Delete(o);
            rc = tis_error(TIS_EFORMAT, "%s:%lld: not a manifest line", path, (long long)lineno);
            break;
        }
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shard_index");
        if (cJSON_IsNumber(sh) && sh->valuedouble + 1 > (double)*next_shard) *next_shard = (int64_t)sh->valuedouble + 1;
        if (*n_ids == cap_ids) {
            cap_ids = cap_ids ? 2 * cap_ids : 64;
            char **p = realloc(*ids, (size_t)cap_ids * sizeof *p);
            if (!p) {
                cJSON_Delete(o);
                rc = tis_error(TIS_ENOMEM, "out of memory");
                break;
            }
            *ids = p;
        }
        (*ids)[(*n_ids)++] = strdup(id->valuestring);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return rc;
}

static bool s_done(char **ids, int64_t n, const char *id) {
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id)) return true;
    return false;
}

/* Manifest lines go after their shard is in place, in one write + fsync. */
static int s_append(const char *path, const char *text) {
    FILE *f = fopen(path, "ab");
    if (!f) return tis_error(TIS_EIO, "cannot open %s: %s", path, strerror(errno));
    bool ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = false;
    return ok ? 0 : tis_error(TIS_EIO, "cannot write %s: %s", path, strerror(errno));
}

static char *s_cat(char *a, const char *b) {
    size_t la = a ? strlen(a) : 0, lb = strlen(b);
    char *s = realloc(a, la + lb + 1);
    if (!s) return NULL;
    memcpy(s + la, b, lb + 1);
    return s;
}

int cmd_label(int argc, char **argv) {
    const char *model_path = cli_default_model(), *dataset = NULL, *outdir = NULL, *haystack = NULL;
    const char *benches[MAX_LIST];
    int64_t n_bench = 0;
    double depths[MAX_LIST];
    int64_t ctx_lens[MAX_LIST], n_depths = 0, n_ctx = 0;
    int64_t phrasing = 0;
    int64_t n_samples = 10, seed = 42, threads = 0, layer = -1, max_new = 32, shard_size = 32;
    bool per_head = false, model_answer = false;
    int64_t n_workers = 0;
    const char *connect = NULL;
    label_remote *remote = NULL;
    const bench_sample **todo_s = NULL;
    bool no_chat = false;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &model_path),
        CLI_STR("--dataset", NULL, &dataset),
        CLI_STRS("--benchmark", NULL, benches, &n_bench, MAX_LIST),
        CLI_I64("--n_samples", NULL, &n_samples, 1, 1 << 24),
        CLI_I64S("--context_tokens", NULL, ctx_lens, &n_ctx, MAX_LIST, 16, 1 << 20),
        CLI_F32S("--depths", NULL, depths, &n_depths, MAX_LIST, 0.0f, 1.0f),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_I64("--phrasing", NULL, &phrasing, 0, 1),
        CLI_STR("--haystack", NULL, &haystack),
        CLI_STR("--output", NULL, &outdir),
        CLI_I64("--layer", NULL, &layer, 0, 4096),
        CLI_FLAG("--per_head", NULL, &per_head),
        CLI_FLAG("--use_model_answer", NULL, &model_answer),
        CLI_I64("--max_new", NULL, &max_new, 1, 4096),
        CLI_I64("--shard_size", NULL, &shard_size, 1, 1 << 20),
        CLI_FLAG("--no_chat", NULL, &no_chat),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_I64("--workers", NULL, &n_workers, 1, 16),
        CLI_STR("--connect", NULL, &connect),
        CLI_END,
    };
    int prc = cli_parse_opts("label", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    bool chat = !no_chat;
    if (!outdir) {
        fprintf(stderr, "tis label: --output DIR is required\n\n");
        s_usage(stderr);
        return 2;
    }
    if (!!dataset == !!n_bench) {
        fprintf(stderr, "tis label: give --dataset or --benchmark (one of them)\n\n");
        s_usage(stderr);
        return 2;
    }
    for (int b = 0; b < n_bench; b++) {
        bool known = false;
        for (const char *const *k = bench_names; *k; k++) known |= !strcmp(*k, benches[b]);
        if (!known) {
            fprintf(stderr, "tis label: unknown benchmark '%s'\n", benches[b]);
            return 2;
        }
    }
    if (!n_ctx) ctx_lens[n_ctx++] = 1024;
    cli_threads(threads);

    model *m = NULL;
    if (model_load(&m, model_path)) return cli_fail("loading the model");
    int rc = 1;
    bench_set *sets = calloc((size_t)(n_bench ? n_bench : 1), sizeof *sets);
    int n_sets = 0;
    char **done_ids = NULL, *pending_lines = NULL;
    int64_t n_done = 0, next_shard = 0, n_pending = 0;
    label_sample *pending = calloc((size_t)shard_size, sizeof *pending);
    forward_state *st = NULL;
    chat_template ct = {0};
    char manifest[1100];
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", outdir);
    if (layer < 0) layer = m->config.n_layer;
    if (layer > m->config.n_layer) {
        fprintf(stderr, "tis label: --layer %lld: the model has %lld layers\n", (long long)layer,
                (long long)m->config.n_layer);
        rc = 2;
        goto done;
    }
    label_config cfg = {.layer = layer, .per_head = per_head, .use_model_answer = model_answer,
                        .max_new = max_new, .chat = chat && tokenizer_chat_template(m->tok) != NULL};
    if (!sets || !pending) {
        fprintf(stderr, "tis label: out of memory\n");
        goto done;
    }
    if (cli_mkdirs(outdir) != 0) {
        fprintf(stderr, "tis label: cannot create %s: %s\n", outdir, strerror(errno));
        goto done;
    }
    if (s_check_config(outdir, m->config.name, layer, per_head, model_answer, cfg.chat) ||
        s_load_manifest(manifest, &done_ids, &n_done, &next_shard)) {
        cli_fail("output directory");
        goto done;
    }
    if (dataset) {
        if (bench_load_jsonl(dataset, &sets[0])) {
            cli_fail("loading the dataset");
            goto done;
        }
        n_sets = 1;
    }
    for (int b = 0; b < n_bench; b++) {
        bench_spec spec = {.name = benches[b], .n_samples = n_samples, .context_tokens = ctx_lens,
                           .n_context = n_ctx, .depths = n_depths ? depths : NULL, .n_depths = n_depths,
                           .seed = (uint64_t)seed, .haystack = haystack, .phrasing = (int)phrasing};
        if (bench_generate(&spec, m->tok, &sets[n_sets])) {
            cli_fail("generating the benchmark");
            goto done;
        }
        n_sets++;
    }
    if (forward_state_new(&st, m, backend_cpu(), 512) ||
        (cfg.chat && chat_template_init(&ct, tokenizer_chat_template(m->tok)))) {
        cli_fail("setting up");
        goto done;
    }
    int64_t total = 0, todo = 0;
    for (int s = 0; s < n_sets; s++)
        for (int64_t i = 0; i < sets[s].n; i++) {
            total++;
            todo += !s_done(done_ids, n_done, sets[s].s[i].id);
        }
    fprintf(stderr, "[label] %s | %lld samples, %lld already in %s | layer %lld%s | shards of %lld",
            m->config.name, (long long)total, (long long)(total - todo), outdir, (long long)layer,
            per_head ? " | per-head labels" : "", (long long)shard_size);
    if (connect) fprintf(stderr, " | workers of %s", connect);
    else if (n_workers) fprintf(stderr, " | %lld workers", (long long)n_workers);
    fprintf(stderr, "\n");
    if (n_workers || connect) { /* the samples to do, in order, to the workers */
        if (!(todo_s = malloc((size_t)(todo ? todo : 1) * sizeof *todo_s))) {
            fprintf(stderr, "tis label: out of memory\n");
            goto done;
        }
        int64_t k = 0;
        for (int s = 0; s < n_sets; s++)
            for (int64_t i = 0; i < sets[s].n; i++)
                if (!s_done(done_ids, n_done, sets[s].s[i].id)) todo_s[k++] = &sets[s].s[i];
        if (label_remote_open(&remote, connect, n_workers, model_path, &m->config, &cfg, todo_s, todo)) {
            cli_fail("starting the workers");
            goto done;
        }
    }
    const char *crash = getenv("TIS_FAULT_LABEL_EXIT_AFTER_SHARDS"); /* fault injection for tests */
    int64_t shards_written = 0, labelled = 0;
    double t0 = tis_now();
    for (int s = 0; s < n_sets; s++) {
        for (int64_t i = 0; i < sets[s].n; i++) {
            const bench_sample *smp = &sets[s].s[i];
            if (s_done(done_ids, n_done, smp->id)) continue;
            label_sample *ls = &pending[n_pending];
            cJSON *line = cJSON_CreateObject();
            cJSON_AddStringToObject(line, "id", smp->id);
            cJSON_AddStringToObject(line, "benchmark", sets[s].name);
            char why[512] = "";
            int lrc = 0;
            if (remote) {
                lrc = label_remote_next(remote, ls, why, sizeof why);
                if (lrc < 0) {
                    cJSON_Delete(line);
                    cli_fail("labelling through the pipeline");
                    goto done;
                }
            } else if (label_run(st, cfg.chat ? &ct : NULL, &cfg, smp, ls)) {
                lrc = 1;
                snprintf(why, sizeof why, "%s", tis_last_error());
            }
            if (lrc) {
                fprintf(stderr, "\ntis label: sample %s skipped: %s\n", smp->id, why);
                cJSON_AddStringToObject(line, "skipped", why);
            } else {
                char shard[64];
                snprintf(shard, sizeof shard, "shard-%05lld.safetensors", (long long)next_shard);
                cJSON_AddStringToObject(line, "shard", shard);
                cJSON_AddNumberToObject(line, "shard_index", (double)next_shard);
                cJSON_AddNumberToObject(line, "index", (double)n_pending);
                cJSON_AddNumberToObject(line, "n_tokens", (double)ls->n_tokens);
                cJSON_AddNumberToObject(line, "n_ctx", (double)ls->n_ctx);
                cJSON_AddStringToObject(line, "answer", ls->answer ? ls->answer : "");
                cJSON_AddStringToObject(line, "answer_source", ls->answer_from_model ? "model" : "given");
                n_pending++;
            }
            char *txt = cJSON_PrintUnformatted(line);
            cJSON_Delete(line);
            pending_lines = txt ? s_cat(s_cat(pending_lines, txt), "\n") : NULL;
            free(txt);
            if (!pending_lines) {
                fprintf(stderr, "tis label: out of memory\n");
                goto done;
            }
            labelled++;
            bool last = labelled == todo;
            if (n_pending == shard_size || (last && n_pending > 0)) {
                char path[1200];
                snprintf(path, sizeof path, "%s/shard-%05lld.safetensors", outdir, (long long)next_shard);
                if (label_shard_write(path, m, &cfg, pending, n_pending)) {
                    cli_fail("writing a shard");
                    goto done;
                }
                shards_written++;
                if (crash && shards_written >= atoll(crash)) _exit(137); /* before the manifest: the worst moment */
                for (int64_t k = 0; k < n_pending; k++) label_sample_free(&pending[k]);
                n_pending = 0;
                next_shard++;
            }
            if (n_pending == 0 && pending_lines) {
                if (s_append(manifest, pending_lines)) {
                    cli_fail("writing the manifest");
                    goto done;
                }
                free(pending_lines);
                pending_lines = NULL;
            }
            double el = tis_now() - t0, rate = (double)labelled / (el > 0 ? el : 1e-9);
            fprintf(stderr, "\r[label] %lld/%lld  %.2f samples/s  ETA %.0fs   ", (long long)labelled,
                    (long long)todo, rate, (double)(todo - labelled) / (rate > 0 ? rate : 1e-9));
        }
    }
    fprintf(stderr, "\n[label] done: %lld labelled in %.1f s, %lld shards in %s\n", (long long)labelled,
            tis_now() - t0, (long long)next_shard, outdir);
    rc = 0;
done:
    label_remote_close(&remote);
    free(todo_s);
    for (int64_t k = 0; pending && k < shard_size; k++) label_sample_free(&pending[k]);
    free(pending);
    free(pending_lines);
    for (int64_t k = 0; k < n_done; k++) free(done_ids[k]);
    free(done_ids);
    for (int s = 0; s < n_sets; s++) bench_set_free(&sets[s]);
    free(sets);
    chat_template_free(&ct);
    forward_state_destroy(&st);
    model_destroy(&m);
    return rc;
}
