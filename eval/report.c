/* report: the grouped JSON summary and the Markdown report of an
 * evaluation (docs/design.md §7); the per-sample CSV is in report_csv.c,
 * the plots in report_plot.c.
 *
 * Every file is written to PATH.tmp and renamed into place, so a reader
 * never sees half a report. */
#define _GNU_SOURCE
#include "report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_out.h"
#include "tis_error.h"

/* Copies a fixed-size field of a row that may lack its terminator. */
static void s_field(char *dst, size_t cap, const char *src, size_t src_cap) {
    size_t n = strnlen(src, src_cap);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}
#define S_FIELD(dst, row, name) s_field(dst, sizeof dst, (row)->name, sizeof (row)->name)

/* ---- grouping ----------------------------------------------------------- */

/* A mean over the rows where the value is known (finite and >= 0). */
typedef struct s_stat {
    double sum;
    int64_t n;
} s_stat;

static void s_stat_add(s_stat *s, double v) {
    if (isfinite(v) && v >= 0) {
        s->sum += v;
        s->n++;
    }
}
static double s_stat_mean(const s_stat *s) { return s->n ? s->sum / (double)s->n : NAN; }

enum { S_BUDGET_FRAC, S_BUDGET_TOKENS, S_BUDGET_THRESH, S_BUDGET_NONE };

typedef struct s_group {
    int bench, proto, policy; /* first-appearance ranks of the names */
    int bkind;                /* S_BUDGET_* */
    double bval;              /* fraction or tokens */
    char label[32];           /* "0.1", "256 tok", "none" */
    char benchmark[32], protocol[16], policy_name[64];
    int64_t n, n_correct, n_exact, n_halluc, peak_rss;
    int64_t n_trunc, n_trunc_unknown; /* rows that ended at the answer cap / not known */
    double kv_sum, full_sum; /* over rows with both measured */
    s_stat kv, kept, ctx, ttft, tps, prefill, compress, decode;
    double full_acc, full_tps; /* of `full`, same benchmark and protocol; NAN if none */
} s_group;

/* Budget of a row: a fraction when budget >= 0, else tokens when
 * budget_tokens >= 0, else none (e.g. an uncompressed baseline). */
static void s_budget(const eval_row *r, int *kind, double *val, char *label, size_t cap) {
    if (isfinite(r->threshold) && r->threshold > 0) {
        *kind = S_BUDGET_THRESH;
        *val = r->threshold;
        snprintf(label, cap, "score >= %.4g", r->threshold);
    } else if (isfinite(r->budget) && r->budget >= 0) {
        *kind = S_BUDGET_FRAC;
        *val = r->budget;
        snprintf(label, cap, "%.4g", r->budget);
    } else if (r->budget_tokens >= 0) {
        *kind = S_BUDGET_TOKENS;
        *val = (double)r->budget_tokens;
        snprintf(label, cap, "%lld tok", (long long)r->budget_tokens);
    } else {
        *kind = S_BUDGET_NONE;
        *val = 0;
        snprintf(label, cap, "none");
    }
}

/* Rank of `name` in a first-appearance table of up to `n` names, adding it. */
static int s_rank(char (*tab)[64], int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (strcmp(tab[i], name) == 0) return i;
    snprintf(tab[*n], 64, "%s", name);
    return (*n)++;
}

static int s_group_cmp(const void *pa, const void *pb) {
    const s_group *a = pa, *b = pb;
    if (a->bench != b->bench) return a->bench < b->bench ? -1 : 1;
    if (a->proto != b->proto) return a->proto < b->proto ? -1 : 1;
    if (a->policy != b->policy) return a->policy < b->policy ? -1 : 1;
    if (a->bkind != b->bkind) return a->bkind < b->bkind ? -1 : 1;
    if (a->bval != b->bval) return a->bval < b->bval ? -1 : 1;
    return strcmp(a->label, b->label);
}

/* Groups rows by (benchmark, protocol, policy, budget label), sorted by the
 * first appearance of each name, then budget (fractions, tokens, none,
 * each ascending); fills the `full` references. *out is malloc'd. */
static int s_group_rows(const eval_row *rows, int64_t n, s_group **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    s_group *g = calloc(n > 0 ? (size_t)n : 1, sizeof *g);
    /* names: at most n distinct of each kind */
    char (*names)[64] = calloc(n > 0 ? (size_t)n * 3 : 3, sizeof *names);
    if (!g || !names) {
        free(g);
        free(names);
        return tis_error(TIS_ENOMEM, "report: out of memory grouping %lld rows", (long long)n);
    }
    char (*bench_tab)[64] = names, (*proto_tab)[64] = names + n, (*pol_tab)[64] = names + 2 * n;
    int n_bench = 0, n_proto = 0, n_pol = 0;
    int64_t ng = 0;
    for (int64_t i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        s_group key = {0};
        S_FIELD(key.benchmark, r, benchmark);
        S_FIELD(key.protocol, r, protocol);
        S_FIELD(key.policy_name, r, policy);
        key.bench = s_rank(bench_tab, &n_bench, key.benchmark);
        key.proto = s_rank(proto_tab, &n_proto, key.protocol);
        key.policy = s_rank(pol_tab, &n_pol, key.policy_name);
        s_budget(r, &key.bkind, &key.bval, key.label, sizeof key.label);
        int64_t j = 0;
        while (j < ng && (g[j].bench != key.bench || g[j].proto != key.proto ||
                          g[j].policy != key.policy || g[j].bkind != key.bkind ||
                          strcmp(g[j].label, key.label) != 0))
            j++;
        if (j == ng) g[ng++] = key;
        s_group *x = &g[j];
        x->n++;
        x->n_correct += r->correct;
        x->n_exact += r->exact;
        x->n_halluc += r->hallucinated;
        x->n_trunc += r->truncated > 0;
        x->n_trunc_unknown += r->truncated < 0;
        if (r->kv_bytes > 0 && r->full_kv_bytes > 0) {
            x->kv_sum += (double)r->kv_bytes;
            x->full_sum += (double)r->full_kv_bytes;
        }
        s_stat_add(&x->kv, (double)r->kv_bytes);
        s_stat_add(&x->kept, (double)r->kept_tokens);
        s_stat_add(&x->ctx, (double)r->context_tokens);
        s_stat_add(&x->ttft, r->ttft_s);
        if (r->tokens_per_s > 0) s_stat_add(&x->tps, r->tokens_per_s);
        s_stat_add(&x->prefill, r->prefill_s);
        s_stat_add(&x->compress, r->compress_s);
        s_stat_add(&x->decode, r->decode_s);
        if (r->peak_rss_bytes > x->peak_rss) x->peak_rss = r->peak_rss_bytes;
    }
    free(names);
    /* `full` pooled over its budgets, per benchmark and protocol */
    for (int64_t j = 0; j < ng; j++) {
        int64_t fn = 0, fc = 0;
        s_stat ftps = {0};
        for (int64_t k = 0; k < ng; k++) {
            if (g[k].bench != g[j].bench || g[k].proto != g[j].proto ||
                strcmp(g[k].policy_name, "full") != 0)
                continue;
            fn += g[k].n;
            fc += g[k].n_correct;
            ftps.sum += g[k].tps.sum;
            ftps.n += g[k].tps.n;
        }
        g[j].full_acc = fn ? (double)fc / (double)fn : NAN;
        g[j].full_tps = s_stat_mean(&ftps);
    }
    qsort(g, (size_t)ng, sizeof *g, s_group_cmp);
    *out = g;
    *n_out = ng;
    return 0;
}

static double s_ratio(double a, double b) { return (isfinite(a) && b > 0) ? a / b : NAN; }

/* Derived numbers of a group, the one place they are computed. */
typedef struct s_stats {
    double acc, exact, halluc, retention, compression, kv_reduction, kv_mib, tps_vs_full;
} s_stats;

static s_stats s_group_stats(const s_group *g) {
    s_stats s;
    double n = (double)g->n;
    s.acc = g->n_correct / n;
    s.exact = g->n_exact / n;
    s.halluc = g->n_halluc / n;
    s.retention = s_ratio(s.acc, g->full_acc);
    s.compression = s_ratio(g->full_sum, g->kv_sum);
    s.kv_reduction = g->full_sum > 0 ? 1.0 - g->kv_sum / g->full_sum : NAN;
    s.kv_mib = s_stat_mean(&g->kv) / (1024.0 * 1024.0);
    s.tps_vs_full = s_ratio(s_stat_mean(&g->tps), g->full_tps);
    return s;
}

/* The rows' KV cache types in buf[cap]: "q8_0,q4_0" when every row has the
 * same, else each with its row count in first-appearance order ("f16 (40
 * rows), q8_0 (40 rows)"); rows from before the column count as "not
 * recorded". */
static const char *s_kv_summary(const eval_row *rows, int64_t n, char *buf, size_t cap) {
    enum { S_MAX_TYPES = 8 };
    const char *name[S_MAX_TYPES];
    int64_t count[S_MAX_TYPES], other = 0;
    int nt = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *t = rows[i].kv_type[0] ? rows[i].kv_type : "not recorded";
        int k = 0;
        while (k < nt && strncmp(name[k], t, sizeof rows[i].kv_type) != 0) k++;
        if (k == nt && nt == S_MAX_TYPES) {
            other++;
            continue;
        }
        if (k == nt) {
            name[nt] = t;
            count[nt++] = 0;
        }
        count[k]++;
    }
    buf[0] = 0;
    if (nt == 1 && !other) {
        snprintf(buf, cap, "%.*s", (int)sizeof rows[0].kv_type, name[0]);
        return buf;
    }
    size_t len = 0;
    for (int k = 0; k < nt && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%.*s (%lld rows)", k ? ", " : "",
                                (int)sizeof rows[0].kv_type, name[k], (long long)count[k]);
    if (other && len < cap) snprintf(buf + len, cap - len, ", %lld rows of other types", (long long)other);
    return buf;
}

/* ---- JSON ----------------------------------------------------------- */

static void s_jnum(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *s_json(const s_group *g, int64_t ng, int64_t n_rows, const report_meta *meta, const char *kv) {
    cJSON *root = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(root, "meta");
    cJSON *arr = cJSON_AddArrayToObject(root, "groups");
    if (!m || !arr) goto fail;
    cJSON_AddStringToObject(m, "command", meta->command ? meta->command : "");
    cJSON_AddStringToObject(m, "model", meta->model ? meta->model : "");
    cJSON_AddStringToObject(m, "title", meta->title ? meta->title : "");
    if (meta->seed < (1ull << 53)) {
        cJSON_AddNumberToObject(m, "seed", (double)meta->seed);
    } else { /* a JSON number would lose digits */
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)meta->seed);
        cJSON_AddStringToObject(m, "seed", seed);
    }
    cJSON_AddNumberToObject(m, "threads", meta->threads);
    s_jnum(m, "wall_s", meta->wall_s);
    cJSON_AddNumberToObject(m, "n_rows", (double)n_rows);
    cJSON_AddStringToObject(m, "kv_type", kv);
    if (meta->n_changes > 0) { /* last in meta: scripts/add_policy.py rewrites it there */
        cJSON *ch = cJSON_AddArrayToObject(m, "changes");
        for (int64_t i = 0; ch && i < meta->n_changes; i++)
            if (!cJSON_AddItemToArray(ch, cJSON_CreateString(meta->changes[i]))) goto fail;
        if (!ch) goto fail;
    }
    for (int64_t i = 0; i < ng; i++) {
        const s_group *x = &g[i];
        s_stats s = s_group_stats(x);
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            goto fail;
        }
        cJSON_AddStringToObject(o, "benchmark", x->benchmark);
        cJSON_AddStringToObject(o, "protocol", x->protocol);
        cJSON_AddStringToObject(o, "policy", x->policy_name);
        s_jnum(o, "budget", x->bkind == S_BUDGET_FRAC ? x->bval : NAN);
        s_jnum(o, "budget_tokens", x->bkind == S_BUDGET_TOKENS ? x->bval : NAN);
        s_jnum(o, "threshold", x->bkind == S_BUDGET_THRESH ? x->bval : NAN);
        cJSON_AddStringToObject(o, "budget_label", x->label);
        cJSON_AddNumberToObject(o, "n", (double)x->n);
        s_jnum(o, "accuracy", s.acc);
        s_jnum(o, "exact_match", s.exact);
        s_jnum(o, "hallucination_rate", s.halluc);
        s_jnum(o, "truncated", x->n_trunc_unknown == x->n ? NAN : (double)x->n_trunc);
        cJSON_AddNumberToObject(o, "truncated_unknown", (double)x->n_trunc_unknown);
        s_jnum(o, "retention", s.retention);
        s_jnum(o, "full_accuracy", x->full_acc);
        s_jnum(o, "compression_ratio", s.compression);
        s_jnum(o, "kv_reduction", s.kv_reduction);
        s_jnum(o, "kv_mib", s.kv_mib);
        s_jnum(o, "kept_tokens_mean", s_stat_mean(&x->kept));
        s_jnum(o, "context_tokens_mean", s_stat_mean(&x->ctx));
        s_jnum(o, "ttft_s_mean", s_stat_mean(&x->ttft));
        s_jnum(o, "tokens_per_s_mean", s_stat_mean(&x->tps));
        s_jnum(o, "throughput_vs_full", s.tps_vs_full);
        s_jnum(o, "prefill_s_mean", s_stat_mean(&x->prefill));
        s_jnum(o, "compress_s_mean", s_stat_mean(&x->compress));
        s_jnum(o, "decode_s_mean", s_stat_mean(&x->decode));
        cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)x->peak_rss);
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* ---- Markdown ------------------------------------------------------- */

static const char s_na[] = "\u2013"; /* en dash: not applicable */

/* Formats v with fmt (one double), or "–" when unknown. */
static const char *s_fmt(char *buf, size_t cap, const char *fmt, double v) {
    if (!isfinite(v)) return s_na;
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* A table cell: '|' escaped, line breaks as spaces. */
static void s_md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
}

static void s_md_table_row(FILE *f, const s_group *x) {
    s_stats s = s_group_stats(x);
    double mib = s.kv_mib;
    char b[9][32];
    fputs("| ", f);
    s_md_cell(f, x->policy_name);
    fputs(" | ", f);
    fputs(x->bkind == S_BUDGET_NONE ? s_na : x->label, f);
    if (x->n_trunc_unknown == x->n) snprintf(b[8], 32, "%s", s_na);
    else if (x->n_trunc_unknown) snprintf(b[8], 32, "%lld (+%lld ?)", (long long)x->n_trunc, (long long)x->n_trunc_unknown);
    else snprintf(b[8], 32, "%lld", (long long)x->n_trunc);
    fprintf(f, " | %lld | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", (long long)x->n,
            s_fmt(b[0], 32, "%.3f", s.acc), s_fmt(b[1], 32, "%.3f", s.exact),
            s_fmt(b[2], 32, "%.1f%%", 100.0 * s.retention),
            s_fmt(b[3], 32, s.compression >= 100 ? "%.0fx" : "%.1fx", s.compression),
            s_fmt(b[4], 32, mib < 1 ? "%.3f" : mib < 100 ? "%.2f" : "%.1f", mib),
            s_fmt(b[5], 32, "%.3f", s_stat_mean(&x->ttft)),
            s_fmt(b[6], 32, "%.1f", s_stat_mean(&x->tps)), s_fmt(b[7], 32, "%.3f", s.halluc), b[8]);
}

/* A fence longer than any run of backticks in the text. */
static int s_fence_len(const char *s) {
    int best = 0, run = 0;
    for (; *s; s++) {
        run = *s == '`' ? run + 1 : 0;
        if (run > best) best = run;
    }
    return best < 3 ? 3 : best + 1;
}

static void s_md(FILE *f, const s_group *g, int64_t ng, int64_t n_rows, const report_meta *meta, const char *kv,
                 const char *const *plots, int64_t n_plots) {
    const char *cmd = meta->command ? meta->command : "";
    int fence = s_fence_len(cmd);
    fprintf(f, "# %s\n\n", meta->title && meta->title[0] ? meta->title : "tis evaluation");
    for (int i = 0; i < fence; i++) fputc('`', f);
    fprintf(f, "\n%s\n", cmd);
    for (int i = 0; i < fence; i++) fputc('`', f);
    fputs("\n\n", f);
    if (meta->n_changes > 0) { /* as scripts/add_policy.py writes it */
        fputs("Changed since:\n\n", f);
        for (int64_t i = 0; i < meta->n_changes; i++) fprintf(f, "- %s\n", meta->changes[i]);
        fputs("\n", f);
    }
    fprintf(f, "- model: `%s`\n", meta->model ? meta->model : "");
    fprintf(f, "- seed: %llu, threads: %d\n", (unsigned long long)meta->seed, meta->threads);
    fprintf(f, "- wall time: %.1f s, %lld rows\n", meta->wall_s, (long long)n_rows);
    fprintf(f, "- KV cache: %s\n\n", n_rows ? kv : "no rows");
    fputs("Accuracy: the expected answer appears in the output; exact: strict match of the "
          "extracted answer. Retention: accuracy / accuracy of `full` (same benchmark and "
          "protocol). Compression: total full KV bytes / total kept KV bytes, both measured. "
          "TTFT and decode tok/s are means over samples. Truncated: answers that ended at the "
          "answer cap (--max_new) rather than by themselves, so may be cut short (\u2013: not "
          "recorded, a CSV from before the column).\n",
          f);
    for (int64_t i = 0; i < ng; i++) {
        const s_group *x = &g[i];
        if (i == 0 || x->bench != g[i - 1].bench || x->proto != g[i - 1].proto) {
            fputs("\n## ", f);
            s_md_cell(f, x->benchmark);
            fputs(" (", f);
            s_md_cell(f, x->protocol);
            fputs(")\n\n| policy | budget | n | accuracy | exact | retention | compression "
                  "(measured) | KV MiB | TTFT s | decode tok/s | halluc. | truncated |\n"
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
                  f);
        }
        s_md_table_row(f, x);
    }
    if (n_plots > 0 && plots) {
        fputs("\n## Plots\n\n", f);
        for (int64_t i = 0; i < n_plots; i++) {
            if (!plots[i]) continue;
            const char *slash = strrchr(plots[i], '/');
            const char *base = slash ? slash + 1 : plots[i];
            size_t len = strlen(base);
            bool png = len > 4 && strcmp(base + len - 4, ".png") == 0;
            bool odd = strpbrk(base, " ()<>") != NULL; /* needs <...> in a link */
            fprintf(f, "%s[%s](%s%s%s)\n\n", png ? "!" : "- ", base, odd ? "<" : "", base,
                    odd ? ">" : "");
        }
    }
}

int report_write_summary(const char *json_path, const char *md_path, const eval_row *rows,
                         int64_t n, const report_meta *meta, const char *const *plots,
                         int64_t n_plots) {
    if (!json_path || n < 0 || (n > 0 && !rows) || n_plots < 0)
        return tis_error(TIS_EINVAL, "report: bad arguments to report_write_summary");
    static const report_meta no_meta = {0};
    if (!meta) meta = &no_meta;
    s_group *g;
    int64_t ng;
    int rc = s_group_rows(rows, n, &g, &ng);
    if (rc) return rc;

    char kv[256];
    s_kv_summary(rows, n, kv, sizeof kv);
    cJSON *root = s_json(g, ng, n, meta, kv);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        free(g);
        return tis_error(TIS_ENOMEM, "report: out of memory building %s", json_path);
    }
    report_out o;
    rc = report_out_open(&o, json_path);
    if (rc == 0) {
        fputs(text, o.f);
        fputc('\n', o.f);
        rc = report_out_close(&o, 0);
    }
    free(text);
    if (rc == 0 && md_path) {
        rc = report_out_open(&o, md_path);
        if (rc == 0) {
            s_md(o.f, g, ng, n, meta, kv, plots, n_plots);
            rc = report_out_close(&o, 0);
        }
    }
    free(g);
    return rc;
}

/* ---- peak RSS ------------------------------------------------------- */

int64_t report_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            if (sscanf(line + 6, "%lld", &kb) != 1) kb = -1;
            break;
        }
    fclose(f);
    return kb > 0 ? (int64_t)kb * 1024 : 0;
}
