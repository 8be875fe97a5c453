/* eval_rows: made-up evaluation rows for the report tests. */
#include "eval_rows.h"

#include <stdio.h>
#include <string.h>

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
