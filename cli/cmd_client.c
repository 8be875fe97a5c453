/* tis client: submits requests to a running tis serve (through the public
 * C client, include/tis_client.h), prints the answers and the timings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "generate.h"
#include "tis_client.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis client [--connect ENDPOINT] (--dataset FILE.jsonl | --context TEXT --question TEXT)\n"
            "      --connect ENDPOINT   the coordinator's front end (default ipc:///tmp/tis-front)\n"
            "      --policy NAME        compression policy (default full)\n"
            "      --budget F           fraction of the context kept (default 0.25)\n"
            "      --budget_tokens N    or a token count\n"
            "      --query_aware        question prefilled before compression\n"
            "      --max_new N          answer tokens at most (default 16)\n"
            "      --concurrency N      requests in flight at most (default: all at once);\n"
            "                           a Busy answer is resubmitted after the server's hint\n"
            "      --repeat N           send the dataset N times (load tests; default 1)\n"
            "      --timings PATH.csv   one row per request: id, answer tokens, KV bytes, seconds\n"
            "      --quiet              no answers on stdout, the summary only\n"
            "      --timeout_s S        give up after S seconds (default 600)\n");
}

typedef struct slot {
    int64_t sample;
    double t_sent;
    int state; /* 0 to send, 1 in flight, 2 done */
} slot;

int cmd_client(int argc, char **argv) {
    const char *ep = "ipc:///tmp/tis-front", *dataset = NULL, *context = NULL, *question = NULL;
    const char *policy = "full", *timings = NULL;
    float budget = 0.25f;
    int64_t btok = 0, max_new = 16, timeout_s = 600, conc = 0, repeat = 1;
    bool qa = false, quiet = false;
    const cli_opt opts[] = {
        CLI_STR("--connect", NULL, &ep),
        CLI_STR("--dataset", NULL, &dataset),
        CLI_STR("--context", NULL, &context),
        CLI_STR("--question", NULL, &question),
        CLI_STR("--policy", NULL, &policy),
        CLI_STR("--timings", NULL, &timings),
        CLI_F32("--budget", NULL, &budget, 1e-6f, 1.0f),
        CLI_I64("--budget_tokens", NULL, &btok, 1, 1 << 24),
        CLI_I64("--max_new", NULL, &max_new, 1, 4096),
        CLI_I64("--concurrency", NULL, &conc, 1, 1 << 20),
        CLI_I64("--repeat", NULL, &repeat, 1, 1 << 20),
        CLI_I64("--timeout_s", NULL, &timeout_s, 1, 86400),
        CLI_FLAG("--query_aware", NULL, &qa),
        CLI_FLAG("--quiet", NULL, &quiet),
        CLI_END,
    };
    int prc = cli_parse_opts("client", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!dataset && !(context && question)) {
        fprintf(stderr, "tis client: give --dataset, or --context and --question\n\n");
        s_usage(stderr);
        return 2;
    }
    bench_set set = {0};
    bench_sample one = {0};
    if (dataset) {
        if (bench_load_jsonl(dataset, &set)) return cli_fail("loading the dataset");
    } else {
        snprintf(one.id, sizeof one.id, "1");
        one.context = (char *)context;
        one.question = (char *)question;
        set.s = &one;
        set.n = 1;
    }
    int64_t n = set.n * repeat;
    if (conc <= 0) conc = n;
    int rc = 1;
    tis_client *c = NULL;
    FILE *tf = NULL;
    slot *sl = calloc((size_t)n, sizeof *sl);
    if (!sl) {
        fprintf(stderr, "tis client: out of memory\n");
        goto out;
    }
    if (tis_client_open(ep, &c)) {
        cli_fail("connecting");
        goto out;
    }
    if (timings) {
        if (cli_mkdirs_for(timings) || !(tf = fopen(timings, "w"))) {
            fprintf(stderr, "tis client: cannot write '%s'\n", timings);
            goto out;
        }
        fprintf(tf, "id,status,answer_tokens,kv_bytes,full_kv_bytes,queue_s,prefill_s,scoring_s,handoff_s,decode_s,"
                    "ttft_s,total_s,client_s\n");
    }
    for (int64_t i = 0; i < n; i++) sl[i].sample = i % set.n;
    int64_t n_done = 0, n_err = 0, n_busy = 0, in_flight = 0, next = 0, tokens = 0;
    double t0 = tis_now(), t_end = t0 + (double)timeout_s, wait_until = 0, sum_ttft = 0, sum_total = 0;
    bool warned = false;
    while (n_done < n && tis_now() < t_end) {
        /* fill the window: requests not yet sent (or sent back by Busy) */
        for (int64_t i = next; i < n && in_flight < conc && tis_now() >= wait_until; i++) {
            if (sl[i].state != 0) continue;
            const bench_sample *b = &set.s[sl[i].sample];
            tis_request rq = {.context = b->context, .question = b->question, .prefix = b->prefix,
                              .answer_prefix = b->answer_prefix, .policy = policy,
                              .budget = btok ? 0 : budget, .budget_tokens = (uint32_t)btok,
                              .query_aware = qa, .max_new = (uint32_t)max_new};
            if (tis_client_submit(c, (uint64_t)i + 1, &rq)) {
                cli_fail("sending");
                goto out;
            }
            sl[i].state = 1;
            sl[i].t_sent = tis_now();
            in_flight++;
        }
        while (next < n && sl[next].state != 0) next++;
        tis_result r;
        int got = tis_client_next(c, 100, &r);
        if (got < 0) {
            fprintf(stderr, "tis client: bad message from the server: %s\n", tis_client_last_error());
            continue;
        }
        if (got == 0) {
            if (!warned && tis_client_silence_s(c) > 10.0) { /* not even a status reply: say so once */
                fprintf(stderr, "[client] nothing from %s for 10 s (is tis serve running there? still waiting)\n",
                        ep);
                warned = true;
            }
            continue;
        }
        int64_t i = (int64_t)r.id - 1;
        if (i < 0 || i >= n || sl[i].state != 1) {
            tis_result_free(&r);
            continue;
        }
        const char *id = set.s[sl[i].sample].id;
        in_flight--;
        if (r.kind == TIS_RESULT_BUSY) { /* not queued: send again after the hint */
            sl[i].state = 0;
            if (i < next) next = i;
            wait_until = tis_now() + (r.retry_after_ms ? r.retry_after_ms : 100) / 1000.0;
            n_busy++;
            tis_result_free(&r);
            continue;
        }
        sl[i].state = 2;
        n_done++;
        double client_s = tis_now() - sl[i].t_sent;
        if (r.kind == TIS_RESULT_REPLY) {
            if (!quiet) printf("%s\t%s\n", id, r.answer);
            tokens += (int64_t)r.n_ids;
            sum_ttft += r.ttft_s;
            sum_total += r.total_s;
            if (!quiet)
                fprintf(stderr,
                        "[client] %s: %zu tokens, KV %.2f MiB, queue %.3f s, prefill %.3f s, hand-off %.2f ms, "
                        "decode %.3f s, total %.3f s\n",
                        id, r.n_ids, (double)r.kv_bytes / 1048576.0, r.queue_s, r.prefill_s, r.handoff_s * 1e3,
                        r.decode_s, r.total_s);
        } else {
            fprintf(stderr, "[client] %s: error: %s\n", id, r.error ? r.error : "?");
            n_err++;
        }
        if (tf)
            fprintf(tf, "%s,%s,%zu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n", id,
                    r.kind == TIS_RESULT_REPLY ? "ok" : "error", r.n_ids, (unsigned long long)r.kv_bytes,
                    (unsigned long long)r.full_kv_bytes, r.queue_s, r.prefill_s, r.scoring_s, r.handoff_s,
                    r.decode_s, r.ttft_s, r.total_s, client_s);
        tis_result_free(&r);
    }
    double wall = tis_now() - t0;
    int64_t n_ok = n_done - n_err;
    fprintf(stderr,
            "[client] %lld/%lld answered (%lld errors, %lld busy resends) in %.2f s: %.2f requests/s, "
            "%.1f answer tokens/s, mean TTFT %.3f s, mean latency %.3f s\n",
            (long long)n_done, (long long)n, (long long)n_err, (long long)n_busy, wall, (double)n_done / wall,
            (double)tokens / wall, n_ok ? sum_ttft / (double)n_ok : 0.0, n_ok ? sum_total / (double)n_ok : 0.0);
    if (tis_client_resent(c))
        fprintf(stderr, "[client] the coordinator lost %llu requests (a restart?): they were sent again\n",
                (unsigned long long)tis_client_resent(c));
    if (n_done < n)
        fprintf(stderr, "tis client: %lld requests unanswered after %lld s\n", (long long)(n - n_done),
                (long long)timeout_s);
    rc = n_done == n && n_err == 0 ? 0 : 1;
out:
    if (tf && fclose(tf)) {
        fprintf(stderr, "tis client: writing '%s' failed\n", timings);
        rc = 1;
    }
    free(sl);
    tis_client_close(c);
    if (dataset) bench_set_free(&set);
    return rc;
}
