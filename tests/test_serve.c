/* test_serve: `tis serve` (coordinator + one prefill and one decode worker
 * process) and `tis client` answer a small dataset from compressed KV with
 * exactly the answers `tis eval` gives in one process; every request is
 * answered once; the server stops cleanly and leaves no shared memory. */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "bench.h"
#include "eval.h"
#include "eval_rows.h"
#include "head.h"
#include "tis_client.h"
#include "tiny_model.h"
#include "tt.h"
#include "wire.h"
#include <zmq.h>

/* every context starts with its request's own words (below), so no two
 * compressed blocks are alike */
static const char *s_lines[3] = {
    "the cat sat on the mat and then the dog ran in the park while the sun was hot\", "
    "\"question\": \"where is the cat?\", \"answers\": [\"mat\"]}",
    "one two three four five six seven eight nine ten eleven twelve\", "
    "\"question\": \"what comes after four?\"}",
    "in the north the rain and the ther then the thin hen ran an errand\", "
    "\"question\": \"who ran?\"}"};
enum { N_REQ = 12 };

static int s_shm_left(int pid) {
    char pre[64];
    snprintf(pre, sizeof pre, "tis-s%d-", pid);
    int n = 0;
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) n += strncmp(e->d_name, pre, strlen(pre)) == 0;
    if (d) closedir(d);
    return n;
}

/* The stage timings of one reply are consistent: none negative, the parts
 * within the total, the TTFT between what precedes the first token and the
 * total. (The coordinator composes them from durations measured where they
 * happen and its own spans, one clock: docs/pipeline.md "Timings".) slack:
 * what rounding the figures for printing may add. */
static bool s_timing_ok(double queue, double prefill, double scoring, double handoff, double decode, double ttft,
                        double total, double slack) {
    bool ok = queue >= 0 && prefill > 0 && scoring >= 0 && handoff >= 0 && decode > 0 && ttft > 0 &&
              queue + prefill + scoring + handoff + decode <= total + slack &&
              queue + prefill + scoring + handoff <= ttft + slack && ttft <= total + slack;
    if (!ok)
        fprintf(stderr, "  inconsistent timings: queue %.9f prefill %.9f scoring %.9f handoff %.9f decode %.9f "
                        "ttft %.9f total %.9f\n", queue, prefill, scoring, handoff, decode, ttft, total);
    return ok;
}

/* The rows of a --timings CSV whose timings are consistent (s_timing_ok
 * with the slack of its 6 decimals); columns found by name. */
static int s_timings_csv_ok(const char *csv, int *rows) {
    static const char *const col[7] = {"queue_s", "prefill_s", "scoring_s", "handoff_s", "decode_s", "ttft_s",
                                       "total_s"};
    int at[7], n_col = 0, ok = 0;
    *rows = 0;
    const char *nl = csv ? strchr(csv, '\n') : NULL;
    if (!nl) return 0;
    for (int k = 0; k < 7; k++) {
        at[k] = -1;
        int c = 0;
        for (const char *f = csv; f && f < nl; f = strchr(f, ',') ? strchr(f, ',') + 1 : NULL, c++)
            if (!strncmp(f, col[k], strlen(col[k])) && (f[strlen(col[k])] == ',' || f + strlen(col[k]) == nl))
                at[k] = c;
        n_col += at[k] >= 0;
    }
    if (n_col < 7) return 0;
    for (const char *ln = nl + 1; *ln; ln = strchr(ln, '\n') ? strchr(ln, '\n') + 1 : ln + strlen(ln)) {
        double v[7] = {0};
        int c = 0;
        for (const char *f = ln; f && *f && *f != '\n'; f = strchr(f, ',') ? strchr(f, ',') + 1 : NULL, c++)
            for (int k = 0; k < 7; k++)
                if (at[k] == c) v[k] = atof(f);
        (*rows)++;
        ok += s_timing_ok(v[0], v[1], v[2], v[3], v[4], v[5], v[6], 7 * 0.5e-6);
    }
    return ok;
}

int main(void) {
    const char *bin = tt_bin("test_serve");
    char tiny[512], data[512], front[600], back[600], cmd[3000];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(front, sizeof front, "ipc://%s", tt_path("front.sock"));
    snprintf(back, sizeof back, "ipc://%s", tt_path("back.sock"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    char text[8192];
    size_t used = 0;
    for (int i = 0; i < N_REQ; i++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "{\"id\": \"r%02d\", \"context\": \"%s %s %s %s %s\n", i,
                                 (const char *[]){"red", "blue", "green", "gold"}[i % 4],
                                 (const char *[]){"fox", "owl", "hen"}[i / 4], i % 2 ? "ran" : "sat",
                                 i % 3 ? "here" : "there", s_lines[i % 3]);
    TT_OK(tt_write_file(data, text, used));
    char log[600];
    snprintf(log, sizeof log, "%s", tt_path("serve.log"));

    TT_CASE("reference");
    /* the reference: eval in one process */
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    bench_set set = {0};
    TT_OK(bench_load_jsonl(data, &set));
    /* a random head for the tis policy (scored in the prefill worker, or by scorer workers), with
       repetition inputs: the context's token ids travel to the scorers (ScoreJob.ctx_ids) */
    char hp[512], timings[512];
    snprintf(hp, sizeof hp, "%s", tt_path("head.safetensors"));
    snprintf(timings, sizeof timings, "%s", tt_path("timings.csv"));
    head_config hc = {.kind = HEAD_LINEAR, .d_model = m->config.d_model, .layer = 2, .n_rep = 2};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
    head *hh = NULL;
    TT_OK(head_new(&hh, &hc, 3));
    if (hh) hh->w_out[hc.d_model + 1] = 4.0f; /* a text repeated later weighs */
    if (hh) TT_OK(head_save(hh, hp));
    head_destroy(&hh);
    /* a second head, named hb (--head_as), for a union of two learned rankings */
    char hbp[512], hb_as[600];
    snprintf(hbp, sizeof hbp, "%s", tt_path("head_b.safetensors"));
    snprintf(hb_as, sizeof hb_as, "hb=%s", hbp);
    hc.n_rep = 0;
    TT_OK(head_new(&hh, &hc, 5));
    if (hh) TT_OK(head_save(hh, hbp));
    head_destroy(&hh);
    const char *pol[] = {"snapkv", "tis", "hb+lpool3|tis"}, *head_as[] = {hb_as};
    eval_row *rows = NULL;
    int64_t n_rows = 0;
    TT_OK(tt_eval_reference(m, pol, 3, 0.5, hp, head_as, 1, set.s, set.n, &rows, &n_rows));
    TT_CHECK(n_rows == 3 * N_REQ);

    TT_CASE("runs with faults");
    /* 0: one worker per role; 1 and 2: two per role, one of them killed
     * (like kill -9) when its first job arrives: the request is retried on
     * the other, every request still answered once, no segment left.
     * 3 and 4: policy tis with scorer workers (the head runs there; the
     * prefill worker compresses when the scores come), one and two of them,
     * the first killed at its first job in 4; in 3 the policy is a union
     * of two heads' rankings, both run by the scorer. */
    const char *faults[6] = {NULL, "decode-0:1", "prefill-0:1", NULL, "scorer-0:1", NULL};
    for (int run = 0; run < 6; run++) {
    const char *nw = run == 1 || run == 2 ? "2" : "1", *nsc = run == 3 ? "1" : run == 4 ? "2" : "0";
    const char *policy = run == 3 ? "hb+lpool3|tis" : run >= 3 ? "tis" : "snapkv";
    /* run 0: the first prefill job is silent for 4 heartbeat periods (a long
     * prefill): a busy worker is not taken for dead.
     * run 4: scorer-1's first job is slow, so scorer-0 surely gets one.
     * run 5: blocks live 1 s unless renewed; the decode worker's first job
     * stalls it 4 s while the prefill worker keeps allocating (one block
     * per 100 ms): the waiting blocks must be renewed, or their memory is
     * handed to later requests and the answers go wrong */
    char fault_env[64];
    snprintf(fault_env, sizeof fault_env, "TIS_FAULT_EXIT=%s", faults[run] ? faults[run] : "");
    const char *sleep_env = run == 4   ? "TIS_FAULT_SLEEP=scorer-1:1500"
                            : run == 5 ? "TIS_FAULT_SLEEP=decode-0:4000,prefill-0:100*"
                            : !faults[run] ? "TIS_FAULT_SLEEP=prefill-0:2000"
                                           : NULL;
    const char *env[3] = {NULL};
    int n_env = 0;
    if (faults[run]) env[n_env++] = fault_env;
    if (sleep_env) env[n_env++] = sleep_env;
    const char *sa[] = {bin, "serve", "--front", front, "--back", back, "--prefill", nw, "--decode", nw,
                        "--scorer", nsc, "--head", hp, "--head_as", hb_as, "-m", tiny, "--arena_mb", "8",
                        "--heartbeat_ms", run == 5 ? "100" : "500", "--lease_ms", run == 5 ? "1000" : "30000",
                        "--stop_after", run == 0 ? "13" : "12", NULL};
    pid_t srv = tt_spawn(sa, log, env);
    if (run == 0) { /* bad requests straight to the front end: an Error each, the server goes on */
        void *zc = zmq_ctx_new(), *d = zmq_socket(zc, ZMQ_DEALER);
        int lg0 = 0;
        zmq_setsockopt(d, ZMQ_LINGER, &lg0, sizeof lg0);
        TT_CHECK(zmq_connect(d, front) == 0);
        Tis__Submit bad = TIS__SUBMIT__INIT;
        bad.question = "words";
        Tis__Envelope eb = TIS__ENVELOPE__INIT;
        eb.request_id = 900;
        eb.body_case = TIS__ENVELOPE__BODY_SUBMIT;
        eb.submit = &bad; /* no context */
        TT_OK(wire_send(d, NULL, &eb));
        TT_CHECK(zmq_send(d, "garbage!", 8, 0) == 8);
        /* a version-1 client's eval job (inside Submit): refused by its version */
        static const uint8_t v1_eval[] = {0x08, 0x01, 0x10, 0x85, 0x07, 0x52, 0x05, 0x6a, 0x03, 0x0a, 0x01, 'x'};
        TT_CHECK(zmq_send(d, v1_eval, sizeof v1_eval, 0) == (int)sizeof v1_eval);
        int errors = 0, v1_refused = 0;
        for (int k = 0; k < 3; k++) {
            zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 5000) != 1) break;
            Tis__Envelope *x = NULL;
            if (wire_recv(d, 0, NULL, &x) == 0 && x->body_case == TIS__ENVELOPE__BODY_ERROR) {
                errors++;
                v1_refused += x->request_id == 901 && x->error->code == TIS_EUNSUPPORTED &&
                              strstr(x->error->message, "protocol version 1") != NULL;
            }
            msg_free(x);
        }
        TT_CHECK(errors == 3 && v1_refused == 1);
        zmq_close(d);
        zmq_ctx_term(zc);

        /* the public client: one request, then the status shows it */
        tis_client *c = NULL;
        TT_OK(tis_client_open(front, &c));
        tis_request rq = {.context = set.s[0].context, .question = set.s[0].question, .policy = "snapkv",
                          .budget = 0.5, .max_new = 8};
        TT_CHECK(tis_client_submit(c, 0, &rq) != 0); /* id 0 is refused */
        TT_OK(tis_client_submit(c, 7, &rq));
        tis_result res = {0};
        int gotr = 0;
        for (int t = 0; t < 600 && gotr == 0; t++) gotr = tis_client_next(c, 100, &res);
        TT_CHECK(gotr == 1 && res.id == 7 && res.kind == TIS_RESULT_REPLY);
        if (gotr == 1 && res.kind == TIS_RESULT_REPLY) {
            TT_CHECK(!strcmp(res.answer, rows[0].answer));
            TT_CHECK(res.kv_bytes > 0 && res.full_kv_bytes > res.kv_bytes / 2);
            TT_CHECK(s_timing_ok(res.queue_s, res.prefill_s, res.scoring_s, res.handoff_s, res.decode_s, res.ttft_s,
                                 res.total_s, 0));
        }
        tis_result_free(&res);
        char *js = NULL;
        TT_OK(tis_client_status(c, 5000, &js));
        cJSON *o = js ? cJSON_Parse(js) : NULL;
        TT_CHECK(o != NULL);
        if (o) {
            const cJSON *rqs = cJSON_GetObjectItem(o, "requests"), *h = cJSON_GetObjectItem(o, "handoff"), *x;
            TT_CHECK(cJSON_GetObjectItem(rqs, "submitted")->valuedouble == 1);
            TT_CHECK(cJSON_GetObjectItem(rqs, "answered")->valuedouble == 1);
            TT_CHECK(cJSON_GetObjectItem(rqs, "errors")->valuedouble == 3); /* the three bad messages */
            TT_CHECK(cJSON_GetObjectItem(h, "count")->valuedouble == 1);
            TT_CHECK(cJSON_GetObjectItem(h, "bytes")->valuedouble > 0);
            int np = 0, nd = 0, nlat = 0;
            cJSON_ArrayForEach(x, cJSON_GetObjectItem(o, "workers")) {
                const char *role = cJSON_GetObjectItem(x, "role")->valuestring;
                np += !strcmp(role, "prefill");
                nd += !strcmp(role, "decode");
            }
            TT_CHECK(np == 1 && nd == 1);
            cJSON_ArrayForEach(x, cJSON_GetObjectItem(o, "latency")) nlat += cJSON_GetObjectItem(x, "n")->valuedouble == 1;
            TT_CHECK(nlat == 7);
        }
        cJSON_Delete(o);
        free(js);
        tis_client_close(c);
    }
    /* every worker registered first, so that each one gets a job (the
     * dispatch gives equal free slots to the first, then to the other) */
    int want = 2 * atoi(nw) + atoi(nsc), have = 0;
    tis_client *sc = NULL;
    TT_OK(tis_client_open(front, &sc));
    for (int t = 0; t < 100 && have < want; t++) {
        char *js = NULL;
        if (tis_client_status(sc, 2000, &js) == 0) {
            cJSON *o = cJSON_Parse(js), *x;
            have = 0;
            cJSON_ArrayForEach(x, cJSON_GetObjectItem(o, "workers")) have++;
            cJSON_Delete(o);
        }
        free(js);
        if (have < want) usleep(100000);
    }
    tis_client_close(sc);
    TT_CHECK(have == want);
    snprintf(cmd, sizeof cmd,
             "'%s' client --connect '%s' --dataset '%s' --policy '%s' --budget 0.5 --max_new 8 --timeout_s 60 "
             "--timings '%s'",
             bin, front, data, policy, timings);
    FILE *p = popen(cmd, "r");
    char line[1024];
    int got = 0;
    while (p && fgets(line, sizeof line, p)) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        char *ans = tab + 1;
        ans[strcspn(ans, "\n")] = 0;
        for (int64_t i = 0; i < n_rows; i++)
            if (!strcmp(rows[i].sample_id, line) && !strcmp(rows[i].policy, policy)) {
                TT_CHECK(!strcmp(rows[i].answer, ans));

                got++;
            }
    }
    int crc = p ? pclose(p) : -1;

    TT_CHECK(WIFEXITED(crc) && WEXITSTATUS(crc) == 0);
    TT_CHECK(got == N_REQ);
    /* the scoring column: > 0 exactly when a scorer worker ran the head */
    size_t tl = 0;
    char *tcsv = tt_read_file(timings, &tl);
    int scored = 0, rowsn = 0;
    for (char *ln = tcsv ? strchr(tcsv, '\n') : NULL; ln && ln[1]; ln = strchr(ln + 1, '\n')) {
        char *f = ln + 1;
        for (int c = 0; c < 7 && f; c++) f = strchr(f, ',') ? strchr(f, ',') + 1 : NULL;
        rowsn++;
        scored += f && atof(f) > 0;
    }
    int trows = 0, tok = s_timings_csv_ok(tcsv, &trows);
    free(tcsv);
    TT_CHECK(rowsn == N_REQ && scored == (run == 3 || run == 4 ? N_REQ : 0));
    TT_CHECK(trows == N_REQ && tok == N_REQ); /* with retries, scorers and stalls too */
    int st = tt_wait(srv, 10);
    if (st == -1) TT_CHECK(!"the server did not stop after its answers");
    TT_CHECK(st == 0);
    usleep(300000);
    TT_CHECK(s_shm_left((int)srv) == 0);
    size_t ll = 0;
    char *lg = tt_read_file(log, &ll);
    bool retried = lg && strstr(lg, "; its request is retried"); /* dead: silent, or unreachable */
    TT_CHECK(retried == (faults[run] != NULL));
    if (retried != (faults[run] != NULL)) fprintf(stderr, "--- serve log ---\n%s\n---\n", lg ? lg : "(none)");
    fprintf(stderr, "  run %d (%s): %d answers, %s\n", run, faults[run] ? faults[run] : "no fault", got,
            retried ? "a dead worker's request was retried" : "no retry");
    free(lg);
    }
    free(rows);
    bench_set_free(&set);
    model_destroy(&m);
    return tt_done("test_serve");
}
