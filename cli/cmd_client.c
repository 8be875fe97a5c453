/* tis client: submits requests to a running tis serve (through the public
 * C client, include/tis_client.h), prints the answers and the timings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "eval_job.h"
#include "generate.h"
#include "secure.h"
#include "tis_client.h"
#include "tis_error.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis client [--connect ENDPOINT] (--dataset FILE.jsonl | --context TEXT --question TEXT)\n"
            "      --connect ENDPOINT   the coordinator's front end (default ipc:///tmp/tis-$UID/front)\n"
            CLI_CONNECT_KEYS_USAGE
            "      --policy NAME        compression policy (default full); a head the server runs with\n"
            "                           --head_as NAME=PATH, or a union A|B of two (quote it)\n"
            "      --budget F           fraction of the context kept (default 0.25)\n"
            "      --budget_tokens N    or a token count\n"
            "      --threshold T        or an adaptive budget: every head keeps the tokens scoring >= T\n"
            "                           (kvzip, or tis with a per-head head)\n"
            "      --query_aware        question prefilled before compression\n"
            "      --max_new N          answer tokens at most (default 16)\n"
            "      --concurrency N      requests in flight at most (default: all at once);\n"
            "                           a Busy answer is resubmitted after the server's hint\n"
            "      --repeat N           send the dataset N times (load tests; default 1)\n"
            "      --timings PATH.csv   one row per request: id, answer tokens, KV bytes, seconds\n"
            "      --quiet              no answers on stdout, the summary only\n"
            "      --timeout_s S        give up after S seconds (default 600)\n"
            "      --silence_s S        give up sooner when nothing at all (not even a status reply, asked\n"
            "                           every 2 s) has come from the server for S seconds (default 30)\n");
}

/* What the options ask for. */
typedef struct client_opts {
    const char *ep, *dataset, *context, *question, *policy, *timings;
    float budget, threshold;
    int64_t btok, max_new, timeout_s, silence_s, conc, repeat;
    bool qa, quiet, insecure;
    tis_client_keys keys;   /* tcp: --key, --server_key */
} client_opts;

typedef struct slot {
    int64_t sample;
    double t_sent;
    int state; /* 0 to send, 1 in flight, 2 done */
} slot;

/* One run: n requests (the set, repeat times) through one client. */
typedef struct client_run {
    const client_opts *o;
    const bench_set *set;
    tis_client *c;
    FILE *tf;                     /* --timings, or NULL */
    slot *sl;                     /* [n] */
    int64_t n, next, in_flight;
    int64_t n_done, n_err, n_busy, tokens;
    double wait_until, sum_ttft, sum_total;
} client_run;

/* Fills the window: requests not yet sent (or sent back by Busy). */
static int s_send(client_run *r) {
    const client_opts *o = r->o;
    for (int64_t i = r->next; i < r->n && r->in_flight < o->conc && tis_now() >= r->wait_until; i++) {
        if (r->sl[i].state != 0) continue;
        const bench_sample *b = &r->set->s[r->sl[i].sample];
        tis_request rq = {.context = b->context, .question = b->question, .prefix = b->prefix,
                          .answer_prefix = b->answer_prefix, .policy = o->policy,
                          .budget = o->btok ? 0 : o->budget, .budget_tokens = (uint32_t)o->btok, .threshold = o->threshold,
                          .query_aware = o->qa, .max_new = (uint32_t)o->max_new};
        r->sl[i].t_sent = tis_now(); /* before the send: client_s covers the coordinator's total */
        if (tis_client_submit(r->c, (uint64_t)i + 1, &rq)) return cli_fail("sending");
        r->sl[i].state = 1;
        r->in_flight++;
    }
    while (r->next < r->n && r->sl[r->next].state != 0) r->next++;
    return 0;
}

/* A result: a Busy goes back to the window; a reply or an error is printed
 * and counted, and is a line of --timings. */
static void s_receive(client_run *r, const tis_result *res) {
    int64_t i = (int64_t)res->id - 1;
    if (i < 0 || i >= r->n || r->sl[i].state != 1) return;
    const char *id = r->set->s[r->sl[i].sample].id;
    r->in_flight--;
    if (res->kind == TIS_RESULT_BUSY) { /* not queued: send again after the hint */
        r->sl[i].state = 0;
        if (i < r->next) r->next = i;
        r->wait_until = tis_now() + (res->retry_after_ms ? res->retry_after_ms : 100) / 1000.0;
        r->n_busy++;
        return;
    }
    r->sl[i].state = 2;
    r->n_done++;
    double client_s = tis_now() - r->sl[i].t_sent;
    if (res->kind == TIS_RESULT_REPLY) {
        if (!r->o->quiet) printf("%s\t%s\n", id, res->answer);
        r->tokens += (int64_t)res->n_ids;
        r->sum_ttft += res->ttft_s;
        r->sum_total += res->total_s;
        if (!r->o->quiet)
            fprintf(stderr,
                    "[client] %s: %zu tokens, KV %.2f MiB, queue %.3f s, prefill %.3f s, hand-off %.2f ms, "
                    "decode %.3f s, total %.3f s\n",
                    id, res->n_ids, (double)res->kv_bytes / 1048576.0, res->queue_s, res->prefill_s,
                    res->handoff_s * 1e3, res->decode_s, res->total_s);
    } else {
        fprintf(stderr, "[client] %s: error: %s\n", id, res->error ? res->error : "?");
        r->n_err++;
    }
    if (r->tf)
        fprintf(r->tf, "%s,%s,%zu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n", id,
                res->kind == TIS_RESULT_REPLY ? "ok" : "error", res->n_ids, (unsigned long long)res->kv_bytes,
                (unsigned long long)res->full_kv_bytes, res->queue_s, res->prefill_s, res->scoring_s,
                res->handoff_s, res->decode_s, res->ttft_s, res->total_s, client_s);
}

/* Sends and collects until every request is answered or the time is up;
 * then the summary. 0 when all were answered without an error. */
static int s_run(client_run *r) {
    const client_opts *o = r->o;
    double t0 = tis_now(), t_end = t0 + (double)o->timeout_s;
    bool warned = false;
    while (r->n_done < r->n && tis_now() < t_end) {
        if (s_send(r)) return 1;
        tis_result res;
        int got = tis_client_next(r->c, 100, &res);
        if (got < 0) {
            fprintf(stderr, "tis client: bad message from the server: %s\n", tis_client_last_error());
        } else if (got == 0) {
            double quiet = tis_client_silence_s(r->c);
            if (quiet > (double)o->silence_s) { /* nobody there (or it died): stop, don't wait out --timeout_s */
                fprintf(stderr,
                        "tis client: nothing from %s for %lld s, not even a status reply: is tis serve running "
                        "there? (--silence_s waits longer)\n",
                        o->ep, (long long)o->silence_s);
                break;
            }
            if (!warned && quiet > 10.0 && o->silence_s > 20) { /* not even a status reply: say so once */
                fprintf(stderr, "[client] nothing from %s for 10 s (is tis serve running there? still waiting)\n",
                        o->ep);
                warned = true;
            }
        } else {
            s_receive(r, &res);
            tis_result_free(&res);
        }
    }
    double wall = tis_now() - t0;
    int64_t n_ok = r->n_done - r->n_err;
    fprintf(stderr,
            "[client] %lld/%lld answered (%lld errors, %lld busy resends) in %.2f s: %.2f requests/s, "
            "%.1f answer tokens/s, mean TTFT %.3f s, mean latency %.3f s\n",
            (long long)r->n_done, (long long)r->n, (long long)r->n_err, (long long)r->n_busy, wall,
            (double)r->n_done / wall, (double)r->tokens / wall, n_ok ? r->sum_ttft / (double)n_ok : 0.0,
            n_ok ? r->sum_total / (double)n_ok : 0.0);
    if (tis_client_duplicates(r->c))
        fprintf(stderr, "[client] %llu duplicate results dropped (a request answered twice by the server)\n",
                (unsigned long long)tis_client_duplicates(r->c));
    if (tis_client_resent(r->c))
        fprintf(stderr, "[client] the coordinator lost %llu requests (a restart?): they were sent again\n",
                (unsigned long long)tis_client_resent(r->c));
    if (r->n_done < r->n)
        fprintf(stderr, "tis client: %lld requests unanswered after %.0f s\n", (long long)(r->n - r->n_done), wall);
    return r->n_done == r->n && r->n_err == 0 ? 0 : 1;
}

/* Connects, opens --timings, runs, closes. */
static int s_client(const client_opts *o, const bench_set *set) {
    client_run r = {.o = o, .set = set, .n = set->n * o->repeat};
    int rc = 1;
    if (!(r.sl = calloc((size_t)r.n, sizeof *r.sl))) {
        fprintf(stderr, "tis client: out of memory\n");
        goto out;
    }
    for (int64_t i = 0; i < r.n; i++) r.sl[i].sample = i % set->n;
    tis_client_keys keys = o->keys;
    keys.insecure = o->insecure;
    if (tis_client_open_keys(o->ep, &keys, &r.c)) {
        cli_fail("connecting");
        goto out;
    }
    if (o->timings) {
        if (eval_job_mkdirs_for(o->timings) || !(r.tf = fopen(o->timings, "w"))) {
            fprintf(stderr, "tis client: cannot write '%s'\n", o->timings);
            goto out;
        }
        fprintf(r.tf, "id,status,answer_tokens,kv_bytes,full_kv_bytes,queue_s,prefill_s,scoring_s,handoff_s,"
                      "decode_s,ttft_s,total_s,client_s\n");
    }
    rc = s_run(&r);
out:
    if (r.tf && fclose(r.tf)) {
        fprintf(stderr, "tis client: writing '%s' failed\n", o->timings);
        rc = 1;
    }
    free(r.sl);
    tis_client_close(r.c);
    return rc;
}

int cmd_client(int argc, char **argv) {
    char def[96];
    client_opts o = {.ep = sec_default_endpoint(def, sizeof def, "front"), .policy = "full", .budget = 0.25f, .max_new = 16,
                     .timeout_s = 600, .silence_s = 30, .repeat = 1};
    const cli_opt opts[] = {
        CLI_STR("--connect", NULL, &o.ep),
        CLI_STR("--dataset", NULL, &o.dataset),
        CLI_STR("--context", NULL, &o.context),
        CLI_STR("--question", NULL, &o.question),
        CLI_STR("--policy", NULL, &o.policy),
        CLI_STR("--timings", NULL, &o.timings),
        CLI_F32("--budget", NULL, &o.budget, 1e-6f, 1.0f),
        CLI_I64("--budget_tokens", NULL, &o.btok, 1, 1 << 24),
        CLI_F32("--threshold", NULL, &o.threshold, 1e-9f, 1.0f),
        CLI_I64("--max_new", NULL, &o.max_new, 1, 4096),
        CLI_I64("--concurrency", NULL, &o.conc, 1, 1 << 20),
        CLI_I64("--repeat", NULL, &o.repeat, 1, 1 << 20),
        CLI_I64("--timeout_s", NULL, &o.timeout_s, 1, 86400),
        CLI_I64("--silence_s", NULL, &o.silence_s, 1, 86400),
        CLI_FLAG("--query_aware", NULL, &o.qa),
        CLI_FLAG("--quiet", NULL, &o.quiet),
        CLI_CONNECT_KEYS(&o.keys.key_file, &o.keys.server_key_file, &o.insecure),
        CLI_END,
    };
    int prc = cli_parse_opts("client", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!o.dataset && !(o.context && o.question)) {
        fprintf(stderr, "tis client: give --dataset, or --context and --question\n\n");
        s_usage(stderr);
        return 2;
    }
    bench_set set = {0};
    bench_sample one = {0};
    if (o.dataset) {
        if (bench_load_jsonl(o.dataset, &set)) return cli_fail("loading the dataset");
    } else {
        snprintf(one.id, sizeof one.id, "1");
        one.context = (char *)o.context;
        one.question = (char *)o.question;
        set.s = &one;
        set.n = 1;
    }
    if (o.conc <= 0) o.conc = set.n * o.repeat;
    int rc = s_client(&o, &set);
    if (o.dataset) bench_set_free(&set);
    return rc;
}
