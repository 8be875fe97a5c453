/* tis client: submits requests to a running tis serve and prints the answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"
#include "cli.h"
#include "generate.h"
#include "tis_error.h"
#include "wire.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis client [--connect ENDPOINT] (--dataset FILE.jsonl | --context TEXT --question TEXT)\n"
            "      --connect ENDPOINT   the coordinator's front end (default ipc:///tmp/tis-front)\n"
            "      --policy NAME        compression policy (default full)\n"
            "      --budget F           fraction of the context kept (default 0.25)\n"
            "      --budget_tokens N    or a token count\n"
            "      --query_aware        question prefilled before compression\n"
            "      --max_new N          answer tokens at most (default 16)\n"
            "      --timeout_s S        give up after S seconds (default 600)\n");
}

int cmd_client(int argc, char **argv) {
    const char *ep = "ipc:///tmp/tis-front", *dataset = NULL, *context = NULL, *question = NULL;
    const char *policy = "full";
    float budget = 0.25f;
    int64_t btok = 0, max_new = 16, timeout_s = 600;
    bool qa = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--query_aware")) { qa = true; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tis client: option '%s' needs a value (or is unknown)\n\n", a);
            s_usage(stderr);
            return 2;
        }
        bool ok = true;
        if (!strcmp(a, "--connect")) ep = v;
        else if (!strcmp(a, "--dataset")) dataset = v;
        else if (!strcmp(a, "--context")) context = v;
        else if (!strcmp(a, "--question")) question = v;
        else if (!strcmp(a, "--policy")) policy = v;
        else if (!strcmp(a, "--budget")) ok = cli_parse_f32(v, 1e-6f, 1.0f, &budget);
        else if (!strcmp(a, "--budget_tokens")) ok = cli_parse_i64(v, 1, 1 << 24, &btok);
        else if (!strcmp(a, "--max_new")) ok = cli_parse_i64(v, 1, 4096, &max_new);
        else if (!strcmp(a, "--timeout_s")) ok = cli_parse_i64(v, 1, 86400, &timeout_s);
        else {
            fprintf(stderr, "tis client: unknown option '%s'\n\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tis client: bad value '%s' for %s\n\n", v, a);
            s_usage(stderr);
            return 2;
        }
        i++;
    }
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
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    int rc = 1;
    bool *done = calloc((size_t)set.n, sizeof *done);
    if (!done || zmq_connect(sock, ep) != 0) {
        fprintf(stderr, "tis client: cannot connect to %s\n", ep);
        goto out;
    }
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = (uint32_t)max_new;
    gp.seed = 42;
    for (int64_t i = 0; i < set.n; i++) {
        Tis__Submit sub = TIS__SUBMIT__INIT;
        sub.context = set.s[i].context;
        sub.question = set.s[i].question;
        sub.prefix = set.s[i].prefix ? set.s[i].prefix : "";
        sub.answer_prefix = set.s[i].answer_prefix ? set.s[i].answer_prefix : "";
        sub.policy = (char *)policy;
        sub.budget = btok ? 0 : budget;
        sub.budget_tokens = (uint32_t)btok;
        sub.query_aware = qa;
        sub.gen = &gp;
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = (uint64_t)i + 1;
        e.body_case = TIS__ENVELOPE__BODY_SUBMIT;
        e.submit = &sub;
        if (wire_send(sock, NULL, &e)) {
            cli_fail("sending");
            goto out;
        }
    }
    int64_t n_done = 0, n_err = 0;
    double t_end = tis_now() + (double)timeout_s;
    while (n_done < set.n && tis_now() < t_end) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 1000) <= 0) continue;
        Tis__Envelope *e = NULL;
        if (wire_recv(sock, 0, NULL, &e)) {
            fprintf(stderr, "tis client: bad message from the server: %s\n", tis_last_error());
            msg_free(e);
            continue;
        }
        int64_t i = (int64_t)e->request_id - 1;
        if (i < 0 || i >= set.n || done[i]) {
            msg_free(e);
            continue;
        }
        if (e->body_case == TIS__ENVELOPE__BODY_REPLY) {
            const Tis__Reply *r = e->reply;
            printf("%s\t%s\n", set.s[i].id, r->answer);
            if (r->timing)
                fprintf(stderr, "[client] %s: %zu tokens, KV %.2f MiB, hand-off %.1f ms, decode %.3f s\n",
                        set.s[i].id, r->n_ids, (double)r->kv_bytes / 1048576.0, r->timing->handoff_s * 1e3,
                        r->timing->decode_s);
            done[i] = true;
            n_done++;
        } else if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
            fprintf(stderr, "[client] %s: error: %s\n", set.s[i].id, e->error->message);
            done[i] = true;
            n_done++;
            n_err++;
        } else if (e->body_case == TIS__ENVELOPE__BODY_BUSY) {
            fprintf(stderr, "[client] %s: server busy; not resent (use fewer requests at once)\n", set.s[i].id);
            done[i] = true;
            n_done++;
            n_err++;
        }
        msg_free(e);
    }
    if (n_done < set.n) fprintf(stderr, "tis client: %lld requests unanswered after %lld s\n",
                                (long long)(set.n - n_done), (long long)timeout_s);
    rc = n_done == set.n && n_err == 0 ? 0 : 1;
out:
    free(done);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    if (dataset) bench_set_free(&set);
    return rc;
}
