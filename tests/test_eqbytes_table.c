/* test_eqbytes_table: scripts/eqbytes_table.py puts a run with a smaller
 * cache type (tis eval --kv_type) beside the f16 run of the same samples:
 * each row's KV bytes as a share of the f16 `full` cache's (the CSVs'
 * kv_bytes, mean over samples), right answers, accuracy and retention
 * against f16 full; the cache type from the rows' kv_type (from the run's
 * .json for a CSV from before the column, and for a cell's rows from
 * before it beside newer ones); the policy's f16 rows by tokens after it;
 * a union's '|' escaped in its Markdown cell. Rows of two caches in a
 * cell, runs of different samples or cells, another cache as the f16 run,
 * or an f16 run without full, are refused. Skips where python3 is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "tiny_model.h"
#include "tt.h"

static const char *s_data =
    "{\"id\": \"s0\", \"context\": \"the cat sat on the mat and then the dog ran in the park while the sun was hot\", "
    "\"question\": \"where is the cat?\", \"answers\": [\"mat\"]}\n"
    "{\"id\": \"s1\", \"context\": \"one two three four five six seven eight nine ten eleven twelve thirteen\", "
    "\"question\": \"what comes after four?\", \"answers\": [\"five\"]}\n";

static const char *s_other = "{\"id\": \"z9\", \"context\": \"a b c d e f g h i j k l m n o p q r s t u v\", "
                             "\"question\": \"what follows c?\", \"answers\": [\"d\"]}\n";

/* The mean kv_bytes and the right answers of (policy, budget) rows. */
static double s_mean_bytes(const eval_row *r, int64_t n, const char *policy, double budget, int *right, int *count) {
    double sum = 0;
    *right = *count = 0;
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(r[i].policy, policy) && (budget < 0 || r[i].budget == budget)) {
            sum += (double)r[i].kv_bytes;
            *right += r[i].correct;
            (*count)++;
        }
    return *count ? sum / *count : 0;
}

static int s_table(const char *a, const char *b, char *out, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/eqbytes_table.py '%s' '%s'", tt_src("."), a, b);
    return tt_sh(cmd, out, cap);
}

/* The files of the test (tt_path's, copied: its buffer is reused). */
static char tiny[512], data[512], other[512], a_csv[512], b_csv[512], c_csv[512];
static const char *bin, *opts = "--protocol agnostic --max_new 4 --no_chat --no_plots -t 1";
static char out[1 << 16], cmd[4096];

/* The f16 run (budgets 0.3, 0.6) and the q8_0 + q4_0 run (0.5) of the same
 * samples, sample s0 marked right in both. */
static void s_runs(void) {
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming --cache_budgets 0.3 0.6 %s "
             "--output '%s'", bin, tiny, data, opts, a_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming --cache_budgets 0.5 "
             "--kv_type q8_0,q4_0 %s --output '%s'", bin, tiny, data, opts, b_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    /* a random model answers nothing: sample s0 is marked right in both runs, so that the
     * accuracies and retentions are not all zero */
    snprintf(cmd, sizeof cmd, "python3 -c 'import csv, sys\n"
             "for p in sys.argv[1:]:\n"
             "    rows = list(csv.DictReader(open(p)))\n"
             "    for r in rows: r[\"correct\"] = \"1\" if r[\"sample_id\"] == \"s0\" else r[\"correct\"]\n"
             "    w = csv.DictWriter(open(p, \"w\", newline=\"\"), fieldnames=list(rows[0]))\n"
             "    w.writeheader(); w.writerows(rows)' '%s' '%s'", a_csv, b_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
}

/* The table: the smaller cache's rows against f16 full's bytes, the f16
 * rows by tokens once, the header. */
static void s_check_table(void) {
    int rc = s_table(a_csv, b_csv, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    eval_row *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    TT_OK(report_read_csv(a_csv, &a, &na));
    TT_OK(report_read_csv(b_csv, &b, &nb));
    int r16, n16, r, n;
    double full16 = s_mean_bytes(a, na, "full", -1, &r16, &n16);
    TT_CHECK(full16 > 0 && n16 == 2 && r16 == 1);
    /* the smaller cache's rows: bytes against f16 full's, with the type from the rows */
    char want[256];
    double sb = s_mean_bytes(b, nb, "streaming", 0.5, &r, &n);
    TT_CHECK(n == 2 && sb > 0 && sb < full16);
    snprintf(want, sizeof want, "| streaming | q8_0,q4_0 | 0.5 | %.1f %% | %d/%d |", 100 * sb / full16, r, n);
    TT_CHECK(strstr(out, want) != NULL);
    double fb = s_mean_bytes(b, nb, "full", -1, &r, &n);
    char ret[32] = "-"; /* retention: accuracy over f16 full's, "-" where that is 0 */
    if (r16) snprintf(ret, sizeof ret, "%.0f %%", 100.0 * ((double)r / n) / ((double)r16 / n16));
    snprintf(want, sizeof want, "| full | q8_0,q4_0 | full | %.1f %% | %d/%d | %.2f | %s |", 100 * fb / full16, r, n,
             (double)r / n, ret);
    TT_CHECK(strstr(out, want) != NULL && fb < full16);
    /* then the policy's f16 rows by tokens, once */
    double s3 = s_mean_bytes(a, na, "streaming", 0.3, &r, &n);
    snprintf(want, sizeof want, "| streaming | f16 (by tokens) | 0.3 | %.1f %% | %d/%d |", 100 * s3 / full16, r, n);
    const char *at = strstr(out, want);
    TT_CHECK(at != NULL && strstr(at + 1, want) == NULL);
    TT_CHECK(strstr(out, "| streaming | f16 (by tokens) | 0.6 |") != NULL);
    char want2[256]; /* two small runs of one policy: its f16 rows still once */
    snprintf(want2, sizeof want2, "%s", want);
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/eqbytes_table.py '%s' '%s' '%s'", tt_src("."), a_csv, b_csv,
             b_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    at = strstr(out, want2);
    TT_CHECK(at != NULL && strstr(at + 1, want2) == NULL);
    /* the header: f16 full's accuracy, the base of every retention */
    snprintf(want, sizeof want, "f16 full %.2f (%d/%d)", (double)r16 / n16, r16, n16);
    TT_CHECK(strstr(out, want) != NULL);
    free(a);
    free(b);
}

/* Rows from before the kv_type column, alone or beside newer ones; a
 * union's name escaped. */
static void s_older_rows(void) {
    /* a CSV from before the kv_type column: the type from its .json */
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import csv, sys; r = list(csv.reader(open(sys.argv[1], newline=\"\", encoding=\"latin-1\")));"
             " assert r[0][-1] == \"kv_type\";"
             " csv.writer(open(sys.argv[1], \"w\", newline=\"\", encoding=\"latin-1\"),"
             " lineterminator=\"\\n\").writerows(x[:-1] for x in r)' '%s'", b_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_CHECK(s_table(a_csv, b_csv, out, sizeof out) == 0 && strstr(out, "| full | q8_0,q4_0 | full |"));

    /* a cell that gained rows after the kv_type column: the older rows' empty type is the
     * .json's (f16 here), so the cell is one cache; a union's '|' is escaped in its cell */
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import csv, sys\n"
             "rows = list(csv.DictReader(open(sys.argv[1])))\n"
             "for r in rows: r[\"kv_type\"] = \"\" if r[\"policy\"] == \"full\" else r[\"kv_type\"]\n"
             "w = csv.DictWriter(open(sys.argv[1], \"w\", newline=\"\"), fieldnames=list(rows[0]))\n"
             "w.writeheader(); w.writerows(rows)\n"
             "rows = list(csv.DictReader(open(sys.argv[2])))\n"
             "for r in rows: r[\"policy\"] = \"streaming|knorm\" if r[\"policy\"] == \"streaming\" else r[\"policy\"]\n"
             "w = csv.DictWriter(open(sys.argv[2], \"w\", newline=\"\"), fieldnames=list(rows[0]))\n"
             "w.writeheader(); w.writerows(rows)' '%s' '%s'", a_csv, b_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    int rc = s_table(a_csv, b_csv, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "| streaming\\|knorm | q8_0,q4_0 | 0.5 |"));
    if (rc) fprintf(stderr, "%s\n", out);
}

/* Refused: other samples, another cache as the f16 cell, an f16 run
 * without full, no arguments, rows of two caches in one cell. */
static void s_refused(void) {
    /* refused: other samples; another cache as the f16 cell; an f16 run without full; no arguments */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming --cache_budgets 0.5 "
             "--kv_type q8_0 %s --output '%s'", bin, tiny, other, opts, c_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_CHECK(s_table(a_csv, c_csv, out, sizeof out) != 0 && strstr(out, "samples the f16 cell does not have"));
    /* the smaller cache's run as the base: its shares would not be of f16's bytes */
    TT_CHECK(s_table(b_csv, a_csv, out, sizeof out) != 0 && strstr(out, "not an f16 cell (q8_0,q4_0)"));
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline streaming --cache_budgets 0.5 %s "
             "--output '%s'", bin, tiny, data, opts, c_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_CHECK(s_table(c_csv, b_csv, out, sizeof out) != 0 && strstr(out, "no full rows"));
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/eqbytes_table.py '%s'", tt_src("."), a_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) != 0 && strstr(out, "Usage"));
    /* rows of two caches in one cell: refused */
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import csv, sys\n"
             "rows = list(csv.DictReader(open(sys.argv[1])))\n"
             "rows[-1][\"kv_type\"] = \"q8_0\"\n"
             "w = csv.DictWriter(open(sys.argv[1], \"w\", newline=\"\"), fieldnames=list(rows[0]))\n"
             "w.writeheader(); w.writerows(rows)' '%s'", a_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_CHECK(s_table(a_csv, b_csv, out, sizeof out) != 0 && strstr(out, "rows of more than one cache (f16, q8_0)"));
}

int main(void) {
    bin = tt_bin("test_eqbytes_table");
    if (tt_sh("python3 -c 'import csv, json, shlex'", out, sizeof out) != 0) {
        fprintf(stderr, "test_eqbytes_table: no python3, skipped\n");
        return 77;
    }
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny_hd32.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(other, sizeof other, "%s", tt_path("other.jsonl"));
    snprintf(a_csv, sizeof a_csv, "%s", tt_path("f16.csv"));
    snprintf(b_csv, sizeof b_csv, "%s", tt_path("q8q4.csv"));
    snprintf(c_csv, sizeof c_csv, "%s", tt_path("other.csv"));
    tiny_spec sp = tiny_spec_default();
    sp.d_model = 128; /* head_dim 32: whole q8_0 / q4_0 blocks */
    TT_OK(tiny_model_write(tiny, &sp));
    TT_OK(tt_write_file(data, s_data, strlen(s_data)));
    TT_OK(tt_write_file(other, s_other, strlen(s_other)));
    s_runs();
    s_check_table();
    s_older_rows();
    s_refused();
    return tt_done("test_eqbytes_table");
}
