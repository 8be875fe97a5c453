/* tis report: the JSON summary, Markdown report and plots of one or more
 * eval CSVs (merged), without re-running anything. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_job.h"
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

/* The model named by the eval JSON beside a CSV (A.json for A.csv) when
 * that JSON describes the same number of rows; NULL otherwise (malloc'd). */
static char *s_model_of(const char *csv, int64_t n_rows) {
    char *json_path = eval_job_csv_sibling(csv, ".json");
    if (!json_path || !strcmp(json_path, csv)) {
        free(json_path);
        return NULL;
    }
    char *model_name = NULL, *text = NULL;
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
        if (m && *m && cJSON_IsNumber(n) && n->valuedouble == (double)n_rows) model_name = strdup(m);
        cJSON_Delete(root);
    }
    free(text);
    fclose(f);
    return model_name;
}

/* The rows of every CSV, in the order given, into *rows; *model_name: the model
 * every input's eval JSON names, or NULL when they differ or one has none.
 * 1 after printing a problem. */
static int s_merge(const char *const *csvs, int64_t n_csv, eval_row **rows, int64_t *n_rows, char **model_name) {
    bool same_model = true;
    for (int64_t k = 0; k < n_csv; k++) {
        eval_row *part = NULL;
        int64_t n_part = 0;
        if (report_read_csv(csvs[k], &part, &n_part)) return cli_fail("reading the CSV");
        eval_row *all = NULL;
        if (n_part > 0 && (uint64_t)(*n_rows + n_part) <= SIZE_MAX / sizeof *all)
            all = realloc(*rows, (size_t)(*n_rows + n_part) * sizeof *all);
        if (n_part > 0 && !all) {
            free(part);
            fprintf(stderr, "tis report: out of memory for %lld rows\n", (long long)(*n_rows + n_part));
            return 1;
        }
        if (n_part > 0) {
            memcpy(all + *n_rows, part, (size_t)n_part * sizeof *part);
            *rows = all;
            *n_rows += n_part;
        }
        free(part);
        /* the model, when every input's eval JSON names the same one */
        char *m = same_model ? s_model_of(csvs[k], n_part) : NULL;
        if (!m || (*model_name && strcmp(m, *model_name) != 0)) same_model = false;
        if (!*model_name) *model_name = m;
        else free(m);
        fprintf(stderr, "[report] %s: %lld rows\n", csvs[k], (long long)n_part);
    }
    if (!same_model) {
        free(*model_name);
        *model_name = NULL;
    }
    return 0;
}

/* The merged CSV and its report. */
static int s_write(int argc, char **argv, const char *output, const char *title, bool plots, const eval_row *rows,
                   int64_t n_rows, const char *model_name) {
    if (eval_job_mkdirs_for(output)) {
        fprintf(stderr, "tis report: cannot create the directory of %s\n", output);
        return 1;
    }
    if (report_write_csv(output, rows, n_rows)) return cli_fail("writing the CSV");
    char *cmdline = cli_cmdline(argc, argv);
    if (!cmdline) {
        fprintf(stderr, "tis report: out of memory\n");
        return 1;
    }
    report_meta meta = {.command = cmdline, .model = model_name ? model_name : "(from CSV)", .title = title};
    int rc = eval_job_report("report", output, rows, n_rows, &meta, plots, -1);
    free(cmdline);
    return rc;
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
    int rc = cli_parse_opts("report", argc, argv, opts, s_usage);
    if (rc == 0 && (!n_csv || !output || !*output)) {
        fprintf(stderr, "tis report: %s is required\n\n", n_csv ? "--output" : "--csv");
        s_usage(stderr);
        rc = 2;
    }
    if (rc) {
        free(csvs);
        return rc == CLI_HELP ? 0 : rc;
    }
    eval_row *rows = NULL;
    int64_t n_rows = 0;
    char *model_name = NULL;
    rc = s_merge(csvs, n_csv, &rows, &n_rows, &model_name);
    if (!rc) rc = s_write(argc, argv, output, title, !no_plots, rows, n_rows, model_name);
    free(rows);
    free(model_name);
    free(csvs);
    return rc;
}
