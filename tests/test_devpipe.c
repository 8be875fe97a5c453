/* test_devpipe: the CUDA workers' path through real worker processes on a
 * machine without a GPU, shared memory standing in for device memory
 * (TIS_DEVMEM=host, serve/devmem_host.c). The same questions through tis
 * serve with cpu workers, then with a prefill and a decode worker on
 * "cuda:0" (the block in the prefill worker's pool, the decode worker's pool
 * cache), a cuda prefill worker and a cpu decode worker (the device block
 * fetched through the coordinator), and two prefill workers from
 * `devices: [0, 1]` with a decode worker on cuda:1: the same answers each
 * time, the pool opened once per producer whatever the number of requests,
 * nothing left in /dev/shm. What this cannot show: anything CUDA does
 * (tests/test_cuda_ipc.c and scripts/gpu_pipeline_check.sh, on a GPU). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"
#include "tt.h"

enum { N_Q = 5 };

/* The lines of out holding a tab ("id<TAB>answer": tis client's answers), in order. */
static void s_answers(const char *out, char *ans, size_t cap) {
    ans[0] = 0;
    for (const char *l = out; *l;) {
        size_t n = strcspn(l, "\n");
        if (memchr(l, '\t', n) && strlen(ans) + n + 2 < cap) strncat(ans, l, n), strcat(ans, "\n");
        l += n + (l[n] == '\n');
    }
}

static int s_count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* The stand-in pools in /dev/shm (tis-devhost*): as many after each run as
 * before the first (a crashed earlier run's are not this run's). */
static int s_pools_before;
static int s_pools_left(void) {
    int n = 0;
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, "tis-devhost", 11);
    if (d) closedir(d);
    return n;
}

/* One run: tis serve with `yaml` (NULL: cpu workers), the questions through
 * tis client one at a time; ans gets the answers, log the serve's stderr. */
static void s_run(const char *name, const char *yaml, const char *tiny, const char *data, char *ans, size_t cap,
                  char **log_text) {
    tt_case("%s", name);
    const char *bin = getenv("TIS_BIN");
    char front[600], back[600], cfg[512], log[512], args[3000];
    snprintf(front, sizeof front, "ipc://%s", tt_path("front.sock"));
    snprintf(back, sizeof back, "ipc://%s", tt_path("back.sock"));
    snprintf(cfg, sizeof cfg, "%s", tt_path("serve.yaml"));
    snprintf(log, sizeof log, "%s", tt_path("serve.log"));
    const char *y = yaml ? yaml : "prefill:\n  device: cpu\n";
    TT_OK(tt_write_file(cfg, y, strlen(y)));
    char stop[16];
    snprintf(stop, sizeof stop, "%d", N_Q);
    const char *sa[] = {bin, "serve", "--config", cfg, "-m", tiny, "--front", front, "--back", back,
                        "--arena_mb", "8", "--heartbeat_ms", "200", "--stop_after", stop, NULL};
    const char *env[] = {"TIS_DEVMEM=host", NULL};
    pid_t srv = tt_spawn(sa, log, env);
    static char out[1 << 16];
    snprintf(args, sizeof args,
             "client --connect '%s' --dataset '%s' --policy snapkv --budget 0.5 --max_new 6 --concurrency 1 "
             "--timeout_s 20", front, data);
    int rc = tt_tis(args, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s: client rc %d: %s\n", name, rc, out);
    s_answers(out, ans, cap);
    TT_CHECK(s_count(ans, "\n") == N_Q);
    int src = tt_wait(srv, 60);
    TT_CHECK(src == 0); /* stops after N_Q answers, cleanly */
    *log_text = tt_read_file(log, NULL);
    TT_CHECK(*log_text != NULL);
    if ((rc || src) && *log_text) fprintf(stderr, "%s: serve exit %d, its log:\n%s\n", name, src, *log_text);
    TT_CHECK(s_pools_left() == s_pools_before);
}

int main(void) {
    if (!getenv("TIS_BIN")) {
        fprintf(stderr, "test_devpipe: TIS_BIN is not set (run through ctest)\n");
        return 1;
    }
    char tiny[512], data[512]; /* (tt_path's buffers are reused) */
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("q.jsonl"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    static const char *ctx[N_Q] = {"the cat sat on the mat and the dog ran in the park", "one two three four five six",
                                   "the rain in the north and the sun in the south", "a b c d e f g h i j k l m n o",
                                   "the hen ran an errand then the thin hen sat"};
    char lines[4096] = "";
    for (int i = 0; i < N_Q; i++) {
        char l[256];
        snprintf(l, sizeof l, "{\"id\": \"q%d\", \"context\": \"%s\", \"question\": \"what is %d?\"}\n", i, ctx[i], i);
        strcat(lines, l);
    }
    TT_OK(tt_write_file(data, lines, strlen(lines)));
    static char ref[8192], got[8192];
    s_pools_before = s_pools_left();
    char *log = NULL;

    s_run("cpu workers", NULL, tiny, data, ref, sizeof ref, &log);
    TT_CHECK(!strstr(log, "device pool"));
    free(log);

    s_run("prefill and decode on cuda:0", "prefill:\n  device: cuda:0\ndecode:\n  device: cuda:0\n", tiny, data, got,
          sizeof got, &log);
    TT_CHECK(strcmp(got, ref) == 0); /* the block went through the pool intact */
    TT_CHECK(strstr(log, "compressed blocks in a device pool") && strstr(log, "TIS_DEVMEM=host"));
    TT_CHECK(s_count(log, "opened the device pool") == 1); /* once for all the requests */
    if (strcmp(got, ref)) fprintf(stderr, "answers:\n%s\nexpected:\n%s\n", got, ref);
    free(log);

    s_run("cuda prefill, cpu decode", "prefill:\n  device: cuda:0\ndecode:\n  device: cpu\n", tiny, data, got,
          sizeof got, &log);
    TT_CHECK(strcmp(got, ref) == 0); /* fetched out of the pool through the coordinator */
    TT_CHECK(strstr(log, "device blocks come through the coordinator") && !strstr(log, "opened the device pool"));
    free(log);

    s_run("devices [0, 1], decode on cuda:1",
          "prefill:\n  workers: 1\n  devices: [0, 1]\ndecode:\n  device: cuda:1\n", tiny, data, got, sizeof got,
          &log);
    TT_CHECK(strcmp(got, ref) == 0);
    TT_CHECK(s_count(log, "compressed blocks in a device pool") == 2); /* a prefill worker per listed device */
    int opens = s_count(log, "opened the device pool");
    TT_CHECK(opens >= 1 && opens <= 2); /* once per producer that got a request */
    free(log);
    return tt_done("test_devpipe");
}
