/* test_report_cli: `tis report` merges eval CSVs into one CSV + JSON +
 * Markdown (+ plots); usage errors exit 2, a malformed CSV exits 1 naming
 * FILE:LINE. Runs the binary from $TIS_BIN; no model needed. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report.h"
#include "tt.h"

/* Runs `tis ARGS` (shell-quoted by the caller); returns the exit code and
 * the combined output in out (cap bytes). */
static bool s_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* n rows of one policy over budgets 0.1 / 0.5; every other one correct. */
static eval_row *s_rows(const char *policy, int n) {
    eval_row *r = calloc((size_t)n, sizeof *r);
    for (int i = 0; r && i < n; i++) {
        snprintf(r[i].benchmark, sizeof r[i].benchmark, "passkey");
        snprintf(r[i].policy, sizeof r[i].policy, "%s", policy);
        snprintf(r[i].protocol, sizeof r[i].protocol, "agnostic");
        r[i].budget = strcmp(policy, "full") ? (i % 2 ? 0.5 : 0.1) : 1;
        r[i].budget_tokens = -1;
        r[i].context_tokens = 1000;
        r[i].target_tokens = 1024;
        r[i].depth = 0.25 * (i % 5);
        r[i].position = -1;
        snprintf(r[i].sample_id, sizeof r[i].sample_id, "%s-%d", policy, i / 2);
        r[i].correct = i % 4 < 2;
        snprintf(r[i].answer, sizeof r[i].answer, "says \"%d\",\nthen", i);
        snprintf(r[i].expected, sizeof r[i].expected, "%d", i);
        r[i].kv_bytes = 1000 * (i % 2 ? 5 : 1);
        r[i].full_kv_bytes = 10000;
        r[i].ttft_s = 0.5;
        r[i].tokens_per_s = 30;
        r[i].n_generated = 4;
    }
    return r;
}

/* `tis report CSV_ARGS` must name `model` in its Markdown, seed 0,
 * threads 0, wall time 0. */
static void s_check_model(const char *csv_args, const char *model) {
    static char out[1 << 16];
    char args[2048], want[256], again[512];
    snprintf(again, sizeof again, "%s", tt_path("again.csv"));
    snprintf(args, sizeof args, "report %s --output '%s' --no_plots", csv_args, again);
    TT_CHECK(tt_tis(args, out, sizeof out) == 0);
    char *text = tt_read_file(tt_path("again.md"), NULL);
    snprintf(want, sizeof want, "- model: `%s`\n- seed: 0, threads: 0\n- wall time: 0.0 s", model);
    TT_CHECK(text && strstr(text, want));
    free(text);
}

int main(void) {
    static char out[1 << 16];
    char args[4096], a_csv[512], b_csv[512], dir[512], merged[600], md[600], json[600];
    snprintf(a_csv, sizeof a_csv, "%s", tt_path("a.csv"));
    snprintf(b_csv, sizeof b_csv, "%s", tt_path("b.csv"));
    snprintf(dir, sizeof dir, "%s", tt_path("out/sub"));
    snprintf(merged, sizeof merged, "%s/merged.csv", dir);
    snprintf(md, sizeof md, "%s/merged.md", dir);
    snprintf(json, sizeof json, "%s/merged.json", dir);
    enum { NA = 6, NB = 10 };
    TT_CASE("inputs");
    eval_row *ra = s_rows("full", NA), *rb = s_rows("snapkv", NB);
    TT_CHECK(ra && rb);
    if (!ra || !rb) return tt_done("test_report_cli");
    TT_OK(report_write_csv(a_csv, ra, NA));
    TT_OK(report_write_csv(b_csv, rb, NB));

    /* usage errors: exit 2 with the usage text */
    TT_CASE("usage errors");
    TT_CHECK(tt_tis("report", out, sizeof out) == 2 && strstr(out, "usage: tis report"));
    TT_CHECK(tt_tis("report --help", out, sizeof out) == 0 && strstr(out, "--output"));
    TT_CHECK(tt_tis("--help", out, sizeof out) == 0 && strstr(out, "report "));
    snprintf(args, sizeof args, "report --csv '%s'", a_csv);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "--output is required"));
    TT_CHECK(tt_tis("report --output x.csv", out, sizeof out) == 2 &&
             strstr(out, "--csv is required"));
    TT_CHECK(tt_tis("report --csv --output x.csv", out, sizeof out) == 2 &&
             strstr(out, "'--csv' needs values"));
    snprintf(args, sizeof args, "report --csv '%s' --output", a_csv);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "needs a value"));
    snprintf(args, sizeof args, "report --csv '%s' --output x.csv --bogus", a_csv);
    TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "unknown option"));

    /* merge: the rows of both, in order; JSON and Markdown beside */
    TT_CASE("merge");
    snprintf(args, sizeof args, "report --csv '%s' '%s' --output '%s' --title 'Two runs'", a_csv,
             b_csv, merged);
    int rc = tt_tis(args, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s", out);
    eval_row *rows = NULL;
    int64_t n = 0;
    TT_OK(report_read_csv(merged, &rows, &n));
    TT_CHECK(n == NA + NB);
    if (n == NA + NB) {
        TT_CHECK(strcmp(rows[0].policy, "full") == 0 && strcmp(rows[NA].policy, "snapkv") == 0);
        TT_CHECK(strcmp(rows[NA + 3].answer, rb[3].answer) == 0);
        TT_CHECK(strcmp(rows[NA - 1].sample_id, ra[NA - 1].sample_id) == 0);
    }
    free(rows);
    char *text = tt_read_file(md, NULL);
    TT_CHECK(text != NULL);
    if (text) {
        TT_CHECK(strncmp(text, "# Two runs\n", 11) == 0);
        TT_CHECK(strstr(text, "tis report --csv ") != NULL);
        TT_CHECK(strstr(text, "- model: `(from CSV)`") != NULL);
        TT_CHECK(strstr(text, "## passkey (agnostic)") != NULL);
        /* full: 6 rows, 4 correct; snapkv 0.1: 5 rows, 10x */
        TT_CHECK(strstr(text, "| full | 1 | 6 | 0.667 |") != NULL);
        TT_CHECK(strstr(text, "| snapkv | 0.1 | 5 | ") && strstr(text, "| 10.0x |"));
        bool png = s_exists(tt_path("out/sub/merged_passkey_agnostic_accuracy.png"));
        TT_CHECK(png || strstr(out, "no plots"));
        TT_CHECK(!png || strstr(text, "merged_passkey_agnostic_accuracy.png"));
    }
    free(text);
    text = tt_read_file(json, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
    cJSON *nr = cJSON_GetObjectItemCaseSensitive(meta, "n_rows");
    TT_CHECK(cJSON_IsNumber(nr) && nr->valuedouble == NA + NB);
    cJSON_Delete(root);
    free(text);

    /* The model comes from the eval JSON beside an input (a.json for a.csv)
     * when that JSON describes as many rows and every input agrees. */
    TT_CASE("model from the eval JSON");
    char a_json[512], a_args[1200], ab_args[1200];
    snprintf(a_json, sizeof a_json, "%s", tt_path("a.json"));
    snprintf(a_args, sizeof a_args, "--csv '%s'", a_csv);
    snprintf(ab_args, sizeof ab_args, "--csv '%s' --csv '%s'", a_csv, b_csv);
    const char *j6 = "{\"meta\": {\"model\": \"models/m.gguf\", \"n_rows\": 6}, \"groups\": []}";
    const char *j5 = "{\"meta\": {\"model\": \"models/m.gguf\", \"n_rows\": 5}}";
    TT_CHECK(tt_write_file(a_json, j6, strlen(j6)) == 0);
    s_check_model(a_args, "models/m.gguf");
    s_check_model(ab_args, "(from CSV)"); /* b.csv has no JSON */
    TT_CHECK(tt_write_file(a_json, j5, strlen(j5)) == 0);
    s_check_model(a_args, "(from CSV)"); /* a.json is of another run */

    /* a malformed CSV: exit 1 naming FILE:LINE; nothing written */
    TT_CASE("malformed CSV");
    char bad[512], bad_out[512];
    snprintf(bad, sizeof bad, "%s", tt_path("bad.csv"));
    snprintf(bad_out, sizeof bad_out, "%s", tt_path("bad_out.csv"));
    text = tt_read_file(b_csv, NULL);
    TT_CHECK(text != NULL);
    if (text) {
        char *p = strstr(text, ",snapkv,agnostic,0.5,"); /* the second data row: line 4 */
        TT_CHECK(p != NULL);
        if (p) memcpy(p + 17, "0.x", 3);
        TT_CHECK(tt_write_file(bad, text, strlen(text)) == 0);
        free(text);
    }
    snprintf(args, sizeof args, "report --csv '%s' '%s' --output '%s'", a_csv, bad, bad_out);
    char want[600];
    snprintf(want, sizeof want, "%s:4: bad number '0.x' in column budget", bad);
    TT_CHECK(tt_tis(args, out, sizeof out) == 1 && strstr(out, want));
    fprintf(stderr, "  bad CSV -> %s", out);
    TT_CHECK(!s_exists(bad_out));
    snprintf(args, sizeof args, "report --csv '%s' --output '%s'", tt_path("none.csv"), bad_out);
    TT_CHECK(tt_tis(args, out, sizeof out) == 1 && strstr(out, "cannot read"));
    free(ra);
    free(rb);
    return tt_done("test_report_cli");
}
