/* eval_job: benchmarks x policies x budgets over a sample set (tis eval). */
#define _GNU_SOURCE /* asprintf */
#include "eval_job.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "press.h"
#include "tis_error.h"

static int s_fail(const char *what) {
    fprintf(stderr, "tis: %s: %s\n", what, tis_last_error());
    return 1;
}

/* ---- files -------------------------------------------------------------- */

char *eval_job_csv_sibling(const char *path, const char *ext) {
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".csv")) n -= 4;
    char *s = malloc(n + strlen(ext) + 1);
    if (!s) return NULL;
    memcpy(s, path, n);
    strcpy(s + n, ext);
    return s;
}

char *eval_job_slurp(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tis_error(TIS_EIO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    bool big = buf && n == max && fgetc(f) != EOF;
    fclose(f);
    if (!buf || big) {
        free(buf);
        tis_error(big ? TIS_EFORMAT : TIS_ENOMEM, "%s: %s", path, big ? "too large" : "out of memory");
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

int eval_job_mkdirs(const char *dir) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(buf, 0755); /* like mkdir -p; the stat below judges */
        *p = '/';
    }
    mkdir(buf, 0755);
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

int eval_job_mkdirs_for(const char *file) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", file) >= (int)sizeof buf) return -1;
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return 0;
    *slash = 0;
    return eval_job_mkdirs(buf);
}

/* ---- the samples -------------------------------------------------------- */

int eval_job_samples(const char *dataset, const char *const *benchmarks, int64_t n_benchmarks,
                     const bench_spec *spec, const tokenizer *tok, bench_set **sets, int *n_sets) {
    *n_sets = 0;
    *sets = calloc((size_t)(2 * n_benchmarks + 1), sizeof **sets); /* litm is two */
    if (!*sets) {
        fprintf(stderr, "tis: out of memory\n");
        return 1;
    }
    if (dataset) {
        if (bench_load_jsonl(dataset, &(*sets)[0])) return s_fail("loading the dataset");
        *n_sets = 1;
    }
    for (int64_t b = 0; b < n_benchmarks; b++) {
        bool litm = !strcmp(benchmarks[b], "litm");
        for (int k = 0; k < (litm ? 2 : 1); k++) {
            bench_spec one = *spec;
            one.name = litm ? (k ? "litm_qa" : "litm_kv") : benchmarks[b];
            if (bench_generate(&one, tok, &(*sets)[*n_sets])) return s_fail("generating the benchmark");
            ++*n_sets;
        }
    }
    return 0;
}

void eval_job_samples_free(bench_set **sets, int n_sets) {
    for (int s = 0; *sets && s < n_sets; s++) bench_set_free(&(*sets)[s]);
    free(*sets);
    *sets = NULL;
}

/* ---- the report --------------------------------------------------------- */

int eval_job_report(const char *who, const char *csv, const eval_row *rows, int64_t n, const report_meta *meta,
                    bool plots, double t0) {
    char *json = eval_job_csv_sibling(csv, ".json"), *md = eval_job_csv_sibling(csv, ".md");
    char *prefix = eval_job_csv_sibling(csv, "");
    char **paths = NULL;
    int64_t n_plots = 0;
    int rc = 1;
    if (!json || !md || !prefix) {
        fprintf(stderr, "tis %s: out of memory\n", who);
        goto done;
    }
    if (plots) {
        int plrc = report_plots(prefix, rows, n, &paths, &n_plots);
        if (plrc == TIS_EUNSUPPORTED) fprintf(stderr, "tis %s: no plots: %s\n", who, tis_last_error());
        else if (plrc) fprintf(stderr, "tis %s: plots failed: %s\n", who, tis_last_error());
    }
    report_meta mt = *meta;
    if (!mt.title) mt.title = prefix;
    if (t0 >= 0) mt.wall_s = tis_now() - t0;
    if (report_write_summary(json, md, rows, n, &mt, (const char *const *)paths, n_plots)) {
        s_fail("writing the summary");
        goto done;
    }
    fprintf(stderr, "[%s] wrote %s, %s, %s (%lld rows, %lld plots)", who, csv, json, md, (long long)n,
            (long long)n_plots);
    if (t0 >= 0) fprintf(stderr, " in %.1f s", tis_now() - t0);
    fprintf(stderr, "\n");
    rc = 0;
done:
    for (int64_t i = 0; i < n_plots; i++) free(paths[i]);
    free(paths);
    free(json);
    free(md);
    free(prefix);
    return rc;
}

/* ---- checks ------------------------------------------------------------- */

int eval_job_check(const eval_job_config *c) {
    if (c->dataset && c->n_benchmarks) return tis_error(TIS_EINVAL, "give --dataset or --benchmark, not both");
    for (int64_t b = 0; b < c->n_benchmarks; b++) {
        bool known = !strcmp(c->benchmarks[b], "litm");
        for (const char *const *k = bench_names; *k; k++) known |= !strcmp(*k, c->benchmarks[b]);
        if (!known) return tis_error(TIS_EINVAL, "unknown benchmark '%s' (tis eval --list)", c->benchmarks[b]);
    }
    const eval_config *e = &c->eval;
    int rc = eval_check_head_as(e);
    if (rc) return rc;
    for (int64_t i = 0; i < e->n_policies; i++) {
        press pr;
        const char *head_path = NULL;
        if ((rc = eval_press_parse(e, e->policies[i], &pr, &head_path))) return rc;
        if (pr.needs_head && !head_path)
            return tis_error(TIS_EINVAL,
                             "policy %s needs an importance head (%s PATH; make one with tis label + tis train%s)",
                             e->policies[i], pr.query_head ? "--head_query" : "--head",
                             pr.query_head ? " --query_aware" : "");
    }
    return 0;
}

/* ---- progress ----------------------------------------------------------- */

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

/* ---- --resume ----------------------------------------------------------- */

/* The ids of the samples whose rows are all in the CSV, sorted. */
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

/* Every row's policy is one of names[n_names]; else the CSV was written
 * with other options. */
static int s_known_policies(const char *path, const eval_row *rows, int64_t n, const char *const *names,
                            int64_t n_names) {
    for (int64_t i = 0; i < n; i++) {
        bool known = false;
        for (int64_t k = 0; k < n_names && !known; k++) known = !strcmp(rows[i].policy, names[k]);
        if (!known)
            return tis_error(TIS_EINVAL,
                             "%s: sample %s has rows of policy '%s', which these options do not run: resume "
                             "with the options of the run that wrote it", path, rows[i].sample_id, rows[i].policy);
    }
    return 0;
}

/* Every row that records its cache ran with `want` (kv_types_name); rows
 * from before the kv_type column ("") cannot say and are kept. */
static int s_same_cache(const char *path, const eval_row *rows, int64_t n, const char *want) {
    for (int64_t i = 0; i < n; i++)
        if (rows[i].kv_type[0] && strcmp(rows[i].kv_type, want) != 0)
            return tis_error(TIS_EINVAL,
                             "%s: sample %s ran with a %s KV cache and this run's is %s: resume with "
                             "--kv_type %s, or write another --output", path, rows[i].sample_id, rows[i].kv_type,
                             want, rows[i].kv_type);
    return 0;
}

/* keep[i] for the rows of every sample that has all `per` of its rows. */
static int s_mark_complete(const char *path, const eval_row *rows, int64_t n, int64_t per, bool *keep,
                           bool *partial) {
    id_at *ix = malloc((size_t)n * sizeof *ix);
    if (!ix) return tis_error(TIS_ENOMEM, "out of memory");
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
    return rc;
}

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
    int rc = s_known_policies(path, rows, n, names, n_names);
    if (rc) return rc;
    bool *keep = calloc((size_t)n, sizeof *keep);
    if (!keep || !(d->id = malloc((size_t)n * sizeof *d->id))) {
        free(keep);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    if ((rc = s_mark_complete(path, rows, n, per, keep, partial))) {
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

/* ---- the job ------------------------------------------------------------ */

typedef struct evaluator {
    const eval_job_config *c;
    const model *m;
    eval_config cfg;       /* c->eval, chat resolved */
    bench_set *sets;       /* [n_sets] */
    int n_sets;
    eval_row *rows;        /* [n_rows] (room for cap_rows) */
    int64_t n_rows, cap_rows;
    done_ids done;         /* --resume: samples whose rows are kept (ids point into rows) */
    eval_runner *er;       /* the in-process runner, when no other is given */
    char **changes;        /* --resume: the report's history (report_meta.changes) */
    int64_t n_changes;
} evaluator;

/* The in-process runner: every sample through eval_run_sample. */
static int s_local_run(void *ctx, const eval_job_batch *b, eval_row **rows, int64_t *n_rows, int64_t *cap_rows) {
    eval_runner *er = ctx;
    int64_t total = 0, done = 0;
    for (int s = 0; s < b->n_sets; s++) total += b->sets[s].n;
    double t0 = tis_now();
    for (int s = 0; s < b->n_sets; s++) {
        for (int64_t i = 0; i < b->sets[s].n; i++) {
            const bench_sample *smp = &b->sets[s].s[i];
            int64_t first = *n_rows;
            if (eval_run_sample(er, b->sets[s].name, smp, rows, n_rows, cap_rows)) {
                if (b->tty) fprintf(stderr, "\n");
                fprintf(stderr, "tis eval: sample %s: %s\n", smp->id, tis_last_error());
                return -1;
            }
            done++;
            char what[160] = "";
            for (int64_t k = first; k < *n_rows; k++)
                if (!strcmp((*rows)[k].policy, "full")) {
                    snprintf(what, sizeof what, "%s: full %s", smp->id, (*rows)[k].correct ? "ok" : "miss");
                    break;
                }
            b->progress(done, total, tis_now() - t0, what, b->tty);
            /* Partial results survive an interrupted run. */
            if (report_append_csv(b->output, *rows + first, *n_rows - first)) return -s_fail("writing the CSV");
        }
    }
    return 0;
}

/* --resume: the history the summary keeps (report_meta.changes): the
 * changes the old summary (PATH.json) listed, then this resumption, which
 * names the command that made the kept rows when it was another one. */
static int s_history(evaluator *E, int64_t kept) {
    char *path = eval_job_csv_sibling(E->c->output, ".json");
    bool have = path && access(path, R_OK) == 0;
    char *txt = have ? eval_job_slurp(path, (size_t)1 << 26) : NULL;
    cJSON *root = txt ? cJSON_Parse(txt) : NULL, *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(meta, "changes"), *it;
    const char *old = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "command"));
    const cJSON *wall = cJSON_GetObjectItemCaseSensitive(meta, "wall_s");
    free(txt);
    if (have && !meta)
        fprintf(stderr, "[eval] --resume: %s is not a tis eval summary; its history is not carried\n", path);
    int64_t n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    int rc = (E->changes = calloc((size_t)n + 1, sizeof *E->changes)) ? 0 : tis_error(TIS_ENOMEM, "out of memory");
    const cJSON *arr = cJSON_IsArray(ch) ? ch : NULL;
    cJSON_ArrayForEach(it, arr) {
        const char *v = cJSON_GetStringValue(it);
        if (!rc && v && !(E->changes[E->n_changes++] = strdup(v))) rc = tis_error(TIS_ENOMEM, "out of memory");
    }
    char day[16] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(day, sizeof day, "%Y-%m-%d", &tm);
    char *note = NULL, took[48] = "";
    if (cJSON_IsNumber(wall)) snprintf(took, sizeof took, ", in %.0f s", wall->valuedouble);
    int w = rc ? -1
            : old && strcmp(old, E->c->command)
                ? asprintf(&note, "%s: resumed (--resume): the rows of %lld samples kept, made by `%s`%s", day,
                           (long long)kept, old, took)
                : asprintf(&note, "%s: resumed (--resume): the rows of %lld samples kept, from an earlier run%s%s",
                           day, (long long)kept, old ? " of the same command" : " (no summary of it)", took);
    if (!rc && w < 0) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (!rc) E->changes[E->n_changes++] = note;
    cJSON_Delete(root);
    free(path);
    return rc;
}

/* --resume: the complete samples already in the CSV are kept and dropped
 * from the sets. */
static int s_resume(evaluator *E) {
    const char *output = E->c->output;
    int64_t cut = 0, per = 0;
    bool partial = false;
    if (report_trim_csv(output, &cut) || report_read_csv(output, &E->rows, &E->n_rows) ||
        eval_rows_per_sample(&E->cfg, &per))
        return s_fail("--resume: reading the rows already there");
    if (cut)
        fprintf(stderr, "[eval] --resume: dropped an unfinished last line (%lld bytes) of %s\n", (long long)cut,
                output);
    char cache[24];
    if (s_same_cache(output, E->rows, E->n_rows, kv_types_name(E->m->kv_type, cache, sizeof cache)))
        return s_fail("--resume");
    const char **names = malloc((size_t)(E->cfg.n_policies + 1) * sizeof *names);
    if (!names) return s_fail("--resume");
    int64_t n_names = 0;
    names[n_names++] = "full";
    for (int64_t k = 0; k < E->cfg.n_policies; k++) {
        press pr;
        if (!eval_press_parse(&E->cfg, E->cfg.policies[k], &pr, NULL) && pr.score) names[n_names++] = E->cfg.policies[k];
    }
    int rc = s_keep_complete(output, E->rows, &E->n_rows, per, names, n_names, &E->done, &partial);
    free(names);
    if (rc) return s_fail("--resume");
    E->cap_rows = E->n_rows;
    int64_t gone = 0;
    for (int s = 0; s < E->n_sets; s++) gone += bench_set_drop(&E->sets[s], s_done, &E->done);
    fprintf(stderr, "[eval] --resume: %lld rows of %lld samples already in %s", (long long)E->n_rows,
            (long long)gone, output);
    if (partial) fprintf(stderr, "; the last sample, cut short, runs again");
    fprintf(stderr, "\n");
    return gone > 0 && s_history(E, gone) ? s_fail("--resume") : 0;
}

/* --export: the samples as a dataset. */
static int s_export(const evaluator *E) {
    const char *path = E->c->export_path;
    int rc = eval_job_mkdirs_for(path) ? tis_error(TIS_EIO, "cannot create the directory of %s", path) : 0;
    for (int k = 0; !rc && k < E->n_sets; k++) rc = bench_write_jsonl(path, &E->sets[k], k > 0);
    if (rc) return s_fail("exporting the samples");
    int64_t n = 0;
    for (int k = 0; k < E->n_sets; k++) n += E->sets[k].n;
    fprintf(stderr, "[eval] wrote %lld samples to %s\n", (long long)n, path);
    return 0;
}

static const char *s_protocol(const eval_config *cfg) {
    return cfg->agnostic && cfg->query_aware ? "both" : cfg->query_aware ? "query_aware" : "agnostic";
}

/* The samples through the runner, into the CSV; then the report. */
static int s_run(evaluator *E, const eval_job_runner *r) {
    const eval_job_config *c = E->c;
    if (report_write_csv(c->output, E->rows, E->n_rows)) return s_fail("writing the CSV");
    int64_t total = 0;
    for (int s = 0; s < E->n_sets; s++) total += E->sets[s].n;
    fprintf(stderr,
            "[eval] %s | %lld samples | %lld policies | %lld budgets | protocol %s | batch %lld | threads %d%s\n",
            E->m->config.name, (long long)total, (long long)E->cfg.n_policies,
            (long long)(E->cfg.n_budgets + E->cfg.n_budget_tokens), s_protocol(&E->cfg), (long long)E->cfg.batch,
            c->threads, r->about ? r->about : "");
    bool tty = isatty(2);
    double t0 = tis_now();
    eval_job_batch b = {.m = E->m, .model_path = c->model_path, .cfg = &E->cfg, .sets = E->sets,
                        .n_sets = E->n_sets, .output = c->output, .tty = tty, .progress = s_progress};
    if (r->run(r->ctx, &b, &E->rows, &E->n_rows, &E->cap_rows)) return 1;
    /* rows were appended as they finished: once more, in sample order */
    if (r->appends_unordered && report_write_csv(c->output, E->rows, E->n_rows)) return s_fail("writing the CSV");
    if (tty) fprintf(stderr, "\n");
    report_meta meta = {.command = c->command, .model = c->model_path, .seed = E->cfg.seed, .threads = c->threads,
                        .changes = (const char *const *)E->changes, .n_changes = E->n_changes};
    return eval_job_report("eval", c->output, E->rows, E->n_rows, &meta, c->plots, t0);
}

/* Everything after the model is loaded. */
static int s_evaluate(evaluator *E) {
    const eval_job_config *c = E->c;
    static const char *const s_default_bench[] = {"passkey"};
    bool none = !c->dataset && !c->n_benchmarks;
    if (eval_job_samples(c->dataset, none ? s_default_bench : c->benchmarks, none ? 1 : c->n_benchmarks, &c->spec,
                         E->m->tok, &E->sets, &E->n_sets))
        return 1;
    if (c->export_path) return s_export(E);
    E->cfg = c->eval;
    E->cfg.chat = E->cfg.chat && tokenizer_chat_template(E->m->tok) != NULL;
    eval_job_runner in_process = {.run = s_local_run};
    if (!c->runner) {
        if (eval_runner_new(&E->er, E->m, &E->cfg)) return s_fail("setting up the evaluation");
        in_process.ctx = E->er;
    }
    if (eval_job_mkdirs_for(c->output)) {
        fprintf(stderr, "tis eval: cannot create the directory of %s\n", c->output);
        return 1;
    }
    if (c->resume && access(c->output, R_OK) == 0) { /* the rows of the samples already run stay */
        int rc = s_resume(E);
        if (rc) return rc;
    }
    return s_run(E, c->runner ? c->runner : &in_process);
}

int eval_job_run(const eval_job_config *c) {
    model *m = NULL;
    if (model_load(&m, c->model_path)) return s_fail("loading the model");
    evaluator E = {.c = c, .m = m};
    int rc = s_evaluate(&E);
    eval_runner_destroy(&E.er);
    eval_job_samples_free(&E.sets, E.n_sets);
    free(E.rows);
    free(E.done.id);
    for (int64_t i = 0; i < E.n_changes; i++) free(E.changes[i]);
    free(E.changes);
    model_destroy(&m);
    return rc;
}
