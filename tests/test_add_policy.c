/* test_add_policy: scripts/add_policy.py adds policies' rows to a
 * finished `tis eval` run: the result holds the rows a run with every
 * policy gives (same samples, answers, kept tokens, KV bytes), each
 * sample's rows together; --rename renames; --drop removes a policy's
 * rows; adding a policy twice, or dropping one that is not there, is an
 * error. Skips where python3 is missing. */
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
    "\"question\": \"what comes after four?\", \"answers\": [\"five\"]}\n"
    "{\"id\": \"s2\", \"context\": \"in the north the rain and the ther then the thin hen ran an errand\", "
    "\"question\": \"who ran?\"}\n";

static const eval_row *s_find(const eval_row *rows, int64_t n, const eval_row *like) {
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(rows[i].sample_id, like->sample_id) && !strcmp(rows[i].policy, like->policy) &&
            !strcmp(rows[i].protocol, like->protocol) && rows[i].budget == like->budget)
            return &rows[i];
    return NULL;
}

static const char *g_bin;
static char g_tiny[512], g_data[512], g_a[512], g_b[512];
static const char *const g_opts = "--cache_budgets 0.3 0.6 --protocol both --max_new 6 --no_chat --no_plots";

/* Policies added to a run match a run that had them from the start, each
 * sample's rows together; the same policy twice is refused. *a: the rows. */
static void s_added_match(eval_row **a_out, int64_t *na_out) {
    static char out[1 << 16];
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming %s --output '%s'", g_bin,
             g_tiny, g_data, g_opts, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming snapkv knorm %s --output '%s'",
             g_bin, g_tiny, g_data, g_opts, g_b);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);

    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --policy snapkv,knorm '%s'",
             tt_src("."), g_bin, g_a);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    eval_row *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    TT_OK(report_read_csv(g_a, &a, &na));
    TT_OK(report_read_csv(g_b, &b, &nb));
    TT_CHECK(na == nb && nb > 0);
    int bad = 0;
    for (int64_t i = 0; i < nb; i++) {
        const eval_row *x = s_find(a, na, &b[i]);
        if (!x || strcmp(x->answer, b[i].answer) || x->kept_tokens != b[i].kept_tokens ||
            x->kv_bytes != b[i].kv_bytes || x->correct != b[i].correct)
            bad++;
    }
    TT_CHECK(bad == 0);
    int splits = 0; /* each sample's rows together */
    for (int64_t i = 1; i < na; i++)
        if (strcmp(a[i].sample_id, a[i - 1].sample_id)) /* a block starts: its id was not seen before */
            for (int64_t j = 0; j < i; j++) splits += !strcmp(a[j].sample_id, a[i].sample_id);
    TT_CHECK(splits == 0);
    char json_path[600];
    snprintf(json_path, sizeof json_path, "%.*s.json", (int)(strlen(g_a) - 4), g_a);
    char *js = tt_read_file(json_path, NULL);
    TT_CHECK(js && strstr(js, "rows of policies snapkv, knorm added by") && strstr(js, "--baseline full streaming"));
    free(js);

    /* the same policy again: an error, the rows stay */
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc != 0 && strstr(out, "already has rows of snapkv"));
    /* a run that has not finished (no summary yet): said so, nothing written */
    snprintf(cmd, sizeof cmd, "cd '%s' && cp '%s' '%s.part.csv' && python3 scripts/add_policy.py --tis '%s' "
             "--policy h2o '%s.part.csv'", tt_src("."), g_a, g_a, g_bin, g_a);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc != 0 && strstr(out, "has not finished") && !strstr(out, "Traceback"));
    free(b);
    *a_out = a;
    *na_out = na;
}

/* --rename, then --drop, on the rows of s_added_match (a[na]). */
static void s_rename_drop(const eval_row *a, int64_t na) {
    static char out[1 << 16];
    char cmd[4096], json_path[600];
    snprintf(json_path, sizeof json_path, "%.*s.json", (int)(strlen(g_a) - 4), g_a);
    char *js = NULL;
    int rc;
    /* rename */
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --rename streaming=recent '%s'",
             tt_src("."), g_bin, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    eval_row *c = NULL;
    int64_t nc = 0, renamed = 0, streaming = 0;
    TT_OK(report_read_csv(g_a, &c, &nc));
    for (int64_t i = 0; i < nc; i++) {
        renamed += !strcmp(c[i].policy, "recent");
        streaming += !strcmp(c[i].policy, "streaming");
    }
    for (int64_t i = 0; i < na; i++) streaming -= !strcmp(a[i].policy, "streaming");
    TT_CHECK(nc == na && streaming == -renamed && renamed > 0);
    /* drop: the policy's rows go, the others stay as they were; twice: an error */
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --drop recent '%s'", tt_src("."),
             g_bin, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    eval_row *d = NULL;
    int64_t nd = 0, left = 0;
    TT_OK(report_read_csv(g_a, &d, &nd));
    for (int64_t i = 0; i < nd; i++) left += !strcmp(d[i].policy, "recent");
    TT_CHECK(nd == nc - renamed && left == 0);
    for (int64_t i = 0, j = 0; i < nc && j < nd; i++) {
        if (!strcmp(c[i].policy, "recent")) continue;
        TT_CHECK(!strcmp(c[i].policy, d[j].policy) && !strcmp(c[i].answer, d[j].answer) &&
                 c[i].kv_bytes == d[j].kv_bytes);
        j++;
    }
    js = tt_read_file(json_path, NULL);
    TT_CHECK(js && strstr(js, "rows of policy recent removed"));
    free(js);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc != 0 && strstr(out, "has no rows of recent"));
    free(d);

    free(c);
}

/* A CSV of an earlier version (no kv_type column). */
static void s_earlier_version(void) {
    static char out[1 << 16];
    char cmd[4096];
    int rc;
    /* a CSV of an earlier version (no kv_type column): the added rows name
     * their cache, the old ones stay unknown */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full streaming %s --output '%s'", g_bin,
             g_tiny, g_data, g_opts, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import csv, sys; r = list(csv.reader(open(sys.argv[1], newline=\"\", encoding=\"latin-1\")));"
             " assert r[0][-1] == \"kv_type\";"
             " csv.writer(open(sys.argv[1], \"w\", newline=\"\", encoding=\"latin-1\"),"
             " lineterminator=\"\\n\").writerows(x[:-1] for x in r)' '%s'", g_a);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --policy snapkv '%s'",
             tt_src("."), g_bin, g_a);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    eval_row *e = NULL;
    int64_t ne = 0, known = 0, unknown = 0, snap = 0;
    TT_OK(report_read_csv(g_a, &e, &ne));
    for (int64_t i = 0; i < ne; i++) {
        bool added = !strcmp(e[i].policy, "snapkv");
        snap += added;
        known += added && !strcmp(e[i].kv_type, "f16");
        unknown += !added && !e[i].kv_type[0];
    }
    TT_CHECK(snap > 0 && known == snap && unknown == ne - snap);
    free(e);

}

/* --no_thresholds. */
static void s_no_thresholds(void) {
    static char out[1 << 16];
    char cmd[4096];
    int rc;
    eval_row *e = NULL;
    int64_t ne = 0;
    /* --no_thresholds: the rerun leaves the recorded --thresholds out
     * (budget rows only); without it the recorded command runs as it was */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline full kvzip --thresholds 0.05 %s --output '%s'",
             g_bin, g_tiny, g_data, g_opts, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --policy snapkv --no_thresholds '%s'",
             tt_src("."), g_bin, g_a);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "--baseline snapkv") && !strstr(out, "--thresholds"));
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 scripts/add_policy.py --tis '%s' --policy knorm '%s'", tt_src("."),
             g_bin, g_a);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "--thresholds 0.05"));
    TT_OK(report_read_csv(g_a, &e, &ne));
    int64_t kz_tau = 0, snap_rows = 0;
    for (int64_t i = 0; i < ne; i++) {
        kz_tau += !strcmp(e[i].policy, "kvzip") && e[i].threshold >= 0;
        snap_rows += !strcmp(e[i].policy, "snapkv");
    }
    TT_CHECK(kz_tau > 0 && snap_rows > 0); /* the recorded rows stay, thresholds and all */
    free(e);
}

int main(void) {
    g_bin = tt_bin("test_add_policy");
    static char out[1 << 16];
    if (tt_sh("python3 -c 'import csv, json'", out, sizeof out) != 0) {
        fprintf(stderr, "test_add_policy: no python3, skipped\n");
        return 77;
    }
    snprintf(g_tiny, sizeof g_tiny, "%s", tt_path("tiny.gguf"));
    snprintf(g_data, sizeof g_data, "%s", tt_path("data.jsonl"));
    snprintf(g_a, sizeof g_a, "%s", tt_path("a.csv"));
    snprintf(g_b, sizeof g_b, "%s", tt_path("b.csv"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(g_tiny, &sp));
    TT_OK(tt_write_file(g_data, s_data, strlen(s_data)));
    eval_row *a = NULL;
    int64_t na = 0;
    s_added_match(&a, &na);
    if (a) s_rename_drop(a, na);
    s_earlier_version();
    s_no_thresholds();
    free(a);
    return tt_done("test_add_policy");
}
