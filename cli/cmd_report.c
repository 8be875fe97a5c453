/* tis report: the JSON summary, Markdown report and plots of one or more
 * eval CSVs (merged), without re-running anything. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "report.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis report --csv A.csv [B.csv ...] --output OUT.csv [options]\n"
            "  re-makes the report of `tis eval` CSVs: their rows, merged in the order given,\n"
            "  go to OUT.csv, with OUT.json, OUT.md and OUT_*.png beside it\n"
            "      --csv FILE...     per-sample CSVs written by tis eval\n"
            "      --output PATH.csv the merged CSV\n"
            "      --title T         report title (default: PATH without .csv)\n"
            "      --no_plots        skip the gnuplot PNGs\n");
}

/* PATH with a trailing .csv replaced by ext (malloc'd). */
/* "tis report ARGS" with arguments single-quoted where a shell needs it
 * (malloc'd). */
static char *s_cmdline(int argc, char **argv) {
    size_t cap = 8;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "tis");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool quote = !*a || strpbrk(a, " \t\n\"'$`\\;&|<>()*?[]{}~#!") != NULL;
        *p++ = ' ';
        if (quote) *p++ = '\'';
        for (; *a; a++) {
            if (quote && *a == '\'') { /* ' -> '\'' */
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *a;
            }
        }
        if (quote) *p++ = '\'';
    }
    *p = 0;
    return s;
}

/* The model named by the eval JSON beside a CSV (A.json for A.csv) when
 * that JSON describes the same number of rows; NULL otherwise (malloc'd). */
static char *s_model_of(const char *csv, int64_t n_rows) {
    char *json_path = cli_csv_sibling(csv, ".json");
    if (!json_path || !strcmp(json_path, csv)) {
        free(json_path);
        return NULL;
    }
    char *model = NULL, *text = NULL;
    FILE *f = fopen(json_path, "rb");
    free(json_path);
    if (!f) return NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size > 0 && size < (64l << 20) && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)size + 1)) && fread(text, 1, (size_t)size, f) == (size_t)size) {
        text[size] = 0;
        cJSON *root = cJSON_Parse(text);
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
        cJSON *n = cJSON_GetObjectItemCaseSensitive(meta, "n_rows");
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "model"));
        if (m && *m && cJSON_IsNumber(n) && n->valuedouble == (double)n_rows) model = strdup(m);
        cJSON_Delete(root);
    }
    free(text);
    fclose(f);
    return model;
}

int cmd_report(int argc, char **argv) {
    const char *output = NULL, *title = NULL;
    /* the CSVs, in the order given (--csv may be repeated) */
    const char **csvs = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *csvs);
    int64_t n_csv = 0;
    if (!csvs) {
        fprintf(stderr, "tis report: out of memory\n");
        return 1;
    }
    bool no_plots = false;
    const cli_opt opts[] = {
        CLI_STRS("--csv", NULL, csvs, &n_csv, argc),
        CLI_STR("--output", NULL, &output),
        CLI_STR("--title", NULL, &title),
        CLI_FLAG("--no_plots", NULL, &no_plots),
        CLI_END,
    };
    int prc = cli_parse_opts("report", argc, argv, opts, s_usage);
    if (prc) {
        free(csvs);
        return prc == CLI_HELP ? 0 : prc;
    }
    bool plots = !no_plots;
    if (!n_csv || !output || !*output) {
        fprintf(stderr, "tis report: %s is required\n\n", n_csv ? "--output" : "--csv");
        s_usage(stderr);
        free(csvs);
        return 2;
    }

    int rc = 1;
    eval_row *rows = NULL;
    int64_t n_rows = 0;
    char *json_path = cli_csv_sibling(output, ".json"), *md_path = cli_csv_sibling(output, ".md");
    char *plot_prefix = cli_csv_sibling(output, ""), *cmdline = s_cmdline(argc, argv);
    char *model = NULL;
    char **plot_paths = NULL;
    int64_t n_plots = 0;
    bool same_model = true;
    if (!json_path || !md_path || !plot_prefix || !cmdline) {
        fprintf(stderr, "tis report: out of memory\n");
        goto done;
    }
    for (int k = 0; k < n_csv; k++) {
        const char *csv = csvs[k];
        eval_row *part = NULL;
        int64_t n_part = 0;
        if (report_read_csv(csv, &part, &n_part)) {
            cli_fail("reading the CSV");
            goto done;
        }
        eval_row *all = NULL;
        if (n_part > 0 && (uint64_t)(n_rows + n_part) <= SIZE_MAX / sizeof *rows)
            all = realloc(rows, (size_t)(n_rows + n_part) * sizeof *rows);
        if (n_part > 0 && !all) {
            free(part);
            fprintf(stderr, "tis report: out of memory for %lld rows\n",
                    (long long)(n_rows + n_part));
            goto done;
        }
        if (n_part > 0) {
            memcpy(all + n_rows, part, (size_t)n_part * sizeof *part);
            rows = all;
            n_rows += n_part;
        }
        free(part);
        /* the model, when every input's eval JSON names the same one */
        char *m = same_model ? s_model_of(csv, n_part) : NULL;
        if (!m || (model && strcmp(m, model) != 0)) same_model = false;
        if (!model) model = m;
        else free(m);
        fprintf(stderr, "[report] %s: %lld rows\n", csv, (long long)n_part);
    }
    if (cli_mkdirs_for(output)) {
        fprintf(stderr, "tis report: cannot create the directory of %s\n", output);
        goto done;
    }
    if (report_write_csv(output, rows, n_rows)) {
        cli_fail("writing the CSV");
        goto done;
    }
    if (plots) {
        int plrc = report_plots(plot_prefix, rows, n_rows, &plot_paths, &n_plots);
        if (plrc == TIS_EUNSUPPORTED)
            fprintf(stderr, "tis report: no plots: %s\n", tis_last_error());
        else if (plrc)
            fprintf(stderr, "tis report: plots failed: %s\n", tis_last_error());
    }
    report_meta meta = {.command = cmdline,
                        .model = same_model && model ? model : "(from CSV)",
                        .title = title ? title : plot_prefix,
                        .seed = 0,
                        .threads = 0,
                        .wall_s = 0};
    if (report_write_summary(json_path, md_path, rows, n_rows, &meta,
                             (const char *const *)plot_paths, n_plots)) {
        cli_fail("writing the summary");
        goto done;
    }
    fprintf(stderr, "[report] wrote %s, %s, %s (%lld rows, %lld plots)\n", output, json_path,
            md_path, (long long)n_rows, (long long)n_plots);
    rc = 0;
done:
    for (int64_t i = 0; i < n_plots; i++) free(plot_paths[i]);
    free(plot_paths);
    free(rows);
    free(model);
    free(json_path);
    free(md_path);
    free(plot_prefix);
    free(cmdline);
    free(csvs);
    return rc;
}
