/* eval_rows: made-up evaluation rows, reference rows and a small dataset
 * for the report and pipeline tests. */
#include "eval_rows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "tt.h"

eval_row tt_eval_row(const char *bench, const char *proto, const char *policy, double budget,
                      int64_t budget_tokens, bool correct, int64_t kv, int64_t full_kv,
                      double tps) {
    eval_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.benchmark, sizeof r.benchmark, "%s", bench);
    snprintf(r.protocol, sizeof r.protocol, "%s", proto);
    snprintf(r.policy, sizeof r.policy, "%s", policy);
    r.budget = budget;
    r.budget_tokens = budget_tokens;
    r.context_tokens = 1000;
    r.target_tokens = 1024;
    r.depth = -1;
    r.position = -1;
    snprintf(r.sample_id, sizeof r.sample_id, "%s-1", bench);
    r.correct = correct;
    snprintf(r.answer, sizeof r.answer, "%s", correct ? "12345" : "54321");
    snprintf(r.expected, sizeof r.expected, "12345");
    r.kept_tokens = full_kv ? 1000 * kv / full_kv : 0;
    r.kv_bytes = kv;
    r.full_kv_bytes = full_kv;
    r.prefill_s = 0.5;
    r.compress_s = 0.01;
    r.decode_s = 0.25;
    r.ttft_s = 0.6;
    r.tokens_per_s = tps;
    r.n_generated = 8;
    r.peak_rss_bytes = 1 << 20;
    r.threshold = -1;
    return r;
}

int tt_eval_reference(const model *m, const char *const *policies, int64_t n_policies, double budget,
                      const char *head_path, const char *const *head_as, int64_t n_head_as, const bench_sample *s,
                      int64_t n, eval_row **rows, int64_t *n_rows) {
    double bud[] = {budget};
    eval_config cfg;
    eval_config_defaults(&cfg);
    cfg.policies = policies;
    cfg.n_policies = n_policies;
    cfg.budgets = bud;
    cfg.n_budgets = 1;
    cfg.max_new = 8;
    cfg.head_path = head_path;
    cfg.head_as = head_as;
    cfg.n_head_as = n_head_as;
    eval_runner *er = NULL;
    int64_t cap = 0;
    *rows = NULL;
    *n_rows = 0;
    int rc = eval_runner_new(&er, m, &cfg);
    for (int64_t i = 0; !rc && i < n; i++) rc = eval_run_sample(er, "x", &s[i], rows, n_rows, &cap);
    eval_runner_destroy(&er);
    return rc;
}

int tt_write_qa_dataset(const char *path, int n) {
    static const char *const lines[3] = {
        "\"context\": \"the cat sat on the mat and then the dog ran in the park while the sun was hot\", "
        "\"question\": \"where is the cat?\", \"answers\": [\"mat\"]}",
        "\"context\": \"one two three four five six seven eight nine ten eleven twelve thirteen\", "
        "\"question\": \"what comes after four?\", \"answers\": [\"five\"]}",
        "\"context\": \"in the north the rain and the ther then the thin hen ran an errand\", "
        "\"question\": \"who ran?\"}"};
    size_t cap = 64 + (size_t)(n > 0 ? n : 0) * 200, used = 0;
    char *text = malloc(cap);
    if (!text) return 1;
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        int k = snprintf(text + used, cap - used, "{\"id\": \"s%d\", %s\n", i, lines[i % 3]);
        if (k < 0 || (size_t)k >= cap - used) rc = 1; /* a line longer than its room: never cut one */
        else used += (size_t)k;
    }
    if (!rc) rc = tt_write_file(path, text, used);
    free(text);
    return rc;
}
