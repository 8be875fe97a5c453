/* test_restart: the coordinator is killed (-9) in the middle of a job and a
 * new one starts on the same endpoints. The workers (separate processes)
 * join the new one from their heartbeats; `tis eval --connect` and
 * `tis client` see the new instance and send what was in flight again:
 * every sample / request is answered exactly once, with the answers of an
 * uninterrupted run. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval_rows.h"
#include "report.h"
#include "tiny_model.h"
#include "tt.h"

enum { N_SAMPLES = 10 };

static const char *s_bin;
static char s_front[600], s_back[600], s_tiny[512];

static pid_t s_coordinator(const char *log) {
    const char *a[] = {s_bin, "serve", "--front", s_front, "--back", s_back, "--prefill", "0", "--decode", "0",
                       "--heartbeat_ms", "200", NULL};
    return tt_spawn(a, log, NULL);
}

static char *s_slurp(const char *path) {
    size_t n = 0;
    char *t = tt_read_file(path, &n);
    return t ? t : strdup("");
}

int main(void) {
    s_bin = tt_bin("test_restart");
    char data[512], a_csv[512], c_csv[512], log_c1[512], log_c2[512], log_c3[512], log_w[512], log_d[512],
        log_e[512], log_cl[512], cmd[4096];
    snprintf(s_tiny, sizeof s_tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(a_csv, sizeof a_csv, "%s", tt_path("a.csv"));
    snprintf(c_csv, sizeof c_csv, "%s", tt_path("c.csv"));
    snprintf(log_c1, sizeof log_c1, "%s", tt_path("coord1.log"));
    snprintf(log_c2, sizeof log_c2, "%s", tt_path("coord2.log"));
    snprintf(log_c3, sizeof log_c3, "%s", tt_path("coord3.log"));
    snprintf(log_w, sizeof log_w, "%s", tt_path("prefill.log"));
    snprintf(log_d, sizeof log_d, "%s", tt_path("decode.log"));
    snprintf(log_e, sizeof log_e, "%s", tt_path("eval.log"));
    snprintf(log_cl, sizeof log_cl, "%s", tt_path("client.log"));
    snprintf(s_front, sizeof s_front, "ipc://%s", tt_path("front.sock"));
    snprintf(s_back, sizeof s_back, "ipc://%s", tt_path("back.sock"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(s_tiny, &sp));
    TT_OK(tt_write_qa_dataset(data, N_SAMPLES));
    const char *common = "--baseline full snapkv tova --cache_budgets 0.5 --max_new 6 --no_chat --no_plots";
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --output '%s' 2>/dev/null", s_bin, s_tiny, data,
             common, a_csv);
    TT_CHECK(system(cmd) == 0);

    /* coordinator 1, and workers of their own (every job takes 250 ms more) */
    setenv("TIS_FAULT_SLEEP", "w-:250*", 1);
    pid_t c1 = s_coordinator(log_c1);
    char name_p[64], name_d[64];
    snprintf(name_p, sizeof name_p, "w-prefill-%d", (int)getpid());
    snprintf(name_d, sizeof name_d, "w-decode-%d", (int)getpid());
    const char *wp[] = {s_bin, "worker", "--role", "prefill", "--connect", s_back, "--name", name_p, "-m", s_tiny,
                        "--arena_mb", "4", "--heartbeat_ms", "200", NULL};
    const char *wd[] = {s_bin, "worker", "--role", "decode", "--connect", s_back, "--name", name_d, "-m", s_tiny,
                        "--heartbeat_ms", "200", NULL};
    pid_t pw = tt_spawn(wp, log_w, NULL), pd = tt_spawn(wd, log_d, NULL);

    /* tis eval --connect; the coordinator dies after about 1 s of it */
    snprintf(cmd, sizeof cmd, "%s", "");
    char out_arg[600];
    snprintf(out_arg, sizeof out_arg, "%s", c_csv);
    const char *ev[] = {s_bin, "eval", "-m", s_tiny, "--dataset", data, "--baseline", "full", "snapkv", "tova",
                        "--cache_budgets", "0.5", "--max_new", "6", "--no_chat", "--no_plots", "--connect", s_front,
                        "--output", out_arg, NULL};
    pid_t pe = tt_spawn(ev, log_e, NULL);
    usleep(1200000);
    kill(c1, SIGKILL);
    waitpid(c1, NULL, 0);
    usleep(300000);
    pid_t c2 = s_coordinator(log_c2);
    int rc = tt_wait(pe, 60);
    char *elog = s_slurp(log_e);
    TT_CHECK(rc == 0);
    TT_CHECK(strstr(elog, "the coordinator lost") != NULL);
    if (rc != 0 || !strstr(elog, "the coordinator lost")) fprintf(stderr, "--- eval ---\n%s\n", elog);
    free(elog);
    eval_row *a = NULL, *c = NULL;
    int64_t na = 0, nc = 0;
    TT_OK(report_read_csv(a_csv, &a, &na));
    TT_OK(report_read_csv(c_csv, &c, &nc));
    TT_CHECK(na == nc && na == N_SAMPLES * 3);
    for (int64_t i = 0; i < na && na == nc; i++)
        TT_CHECK(!strcmp(a[i].sample_id, c[i].sample_id) && !strcmp(a[i].policy, c[i].policy) &&
                 !strcmp(a[i].answer, c[i].answer) && a[i].kv_bytes == c[i].kv_bytes);
    free(a);
    free(c);
    char *c2log = s_slurp(log_c2);
    TT_CHECK(strstr(c2log, "joined from its heartbeat") != NULL);
    free(c2log);

    /* tis client through the prefill and decode workers, same story */
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' --baseline snapkv --cache_budgets 0.5 "
             "--max_new 6 --no_plots --output '%s' 2>/dev/null", s_bin, s_tiny, data, a_csv);
    TT_CHECK(system(cmd) == 0);
    const char *cl[] = {s_bin, "client", "--connect", s_front, "--dataset", data, "--policy", "snapkv", "--budget",
                        "0.5", "--max_new", "6", "--concurrency", "3", "--timeout_s", "60", NULL};
    pid_t pc = tt_spawn(cl, log_cl, NULL);
    usleep(900000);
    kill(c2, SIGKILL);
    waitpid(c2, NULL, 0);
    usleep(300000);
    pid_t c3 = s_coordinator(log_c3);
    rc = tt_wait(pc, 60);
    char *cllog = s_slurp(log_cl);
    TT_CHECK(rc == 0 && strstr(cllog, "they were sent again"));
    /* every id answered once, with the in-process answer (a request goes
     * through the model's chat template, as eval does by default) */
    TT_OK(report_read_csv(a_csv, &a, &na));
    int answered = 0;
    for (int64_t i = 0; i < na; i++) {
        char line[512];
        snprintf(line, sizeof line, "%s\t%s\n", a[i].sample_id, a[i].answer);
        const char *hit = strstr(cllog, line);
        answered += hit && !strstr(hit + 1, line);
    }
    free(a);
    TT_CHECK(answered == N_SAMPLES);
    if (rc != 0 || answered != N_SAMPLES) fprintf(stderr, "--- client ---\n%s\n", cllog);
    free(cllog);

    kill(pw, SIGTERM);
    kill(pd, SIGTERM);
    kill(c3, SIGTERM);
    TT_CHECK(tt_wait(pw, 10) == 0);
    TT_CHECK(tt_wait(pd, 10) == 0);
    tt_wait(c3, 10);
    return tt_done("test_restart");
}
