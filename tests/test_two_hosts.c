/* test_two_hosts: workers on two hosts (docs/pipeline.md "Workers on
 * another host"), made on this machine: two network namespaces joined by a
 * veth pair (addresses only inside them), the coordinator and a prefill
 * worker in one, a decode worker in the other with its own /dev/shm (a
 * mount namespace), so it can neither reach the first's loopback nor map
 * its arena: the blocks come over the network (BlockFetch / BlockChunk,
 * through the coordinator), CURVE on every tcp socket. Every answer must be
 * the one eval gives in one process. Skipped (77, with the reason) where
 * namespaces cannot be made (not root, no ip / unshare, a container that
 * forbids them). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "eval.h"
#include "eval_rows.h"
#include "model.h"
#include "secure.h"
#include "tiny_model.h"
#include "tis_client.h"
#include "tis_error.h"
#include "tt.h"

enum { N_REQ = 6 };

static char s_ns[2][32], s_veth[2][16], s_ip[256]; /* s_ip: the ip binary (tt_spawn takes a path) */

static void s_cleanup(void) {
    char cmd[128], out[256];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null", s_ns[k]);
        if (s_ns[k][0]) tt_sh(cmd, out, sizeof out);
    }
}

/* The two namespaces and the link: 0, or 77 with the reason printed. */
static int s_netns(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_two_hosts: skipped: making network namespaces needs root\n");
        return 77;
    }
    char out[512];
    if (tt_sh("command -v unshare >/dev/null && command -v mount >/dev/null && command -v ip", out, sizeof out) != 0) {
        fprintf(stderr, "test_two_hosts: skipped: needs ip (iproute2), unshare and mount\n");
        return 77;
    }
    snprintf(s_ip, sizeof s_ip, "%.*s", (int)strcspn(out, "\n"), out);
    int id = (int)getpid();
    snprintf(s_ns[0], sizeof s_ns[0], "tis2h-a-%d", id);
    snprintf(s_ns[1], sizeof s_ns[1], "tis2h-b-%d", id);
    snprintf(s_veth[0], sizeof s_veth[0], "t2a%d", id % 1000000);
    snprintf(s_veth[1], sizeof s_veth[1], "t2b%d", id % 1000000);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ip netns add %s", s_ns[0]);
    if (tt_sh(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "test_two_hosts: skipped: cannot make a network namespace here: %s", out);
        s_ns[0][0] = 0;
        return 77;
    }
    snprintf(cmd, sizeof cmd,
             "set -e; ip netns add %s; ip link add %s type veth peer name %s; "
             "ip link set %s netns %s; ip link set %s netns %s; "
             "ip -n %s addr add 10.231.0.1/24 dev %s; ip -n %s link set %s up; ip -n %s link set lo up; "
             "ip -n %s addr add 10.231.0.2/24 dev %s; ip -n %s link set %s up; ip -n %s link set lo up; "
             "ip netns exec %s unshare -m sh -c 'mount -t tmpfs tmpfs /dev/shm'",
             s_ns[1], s_veth[0], s_veth[1], s_veth[0], s_ns[0], s_veth[1], s_ns[1], s_ns[0], s_veth[0], s_ns[0],
             s_veth[0], s_ns[0], s_ns[1], s_veth[1], s_ns[1], s_veth[1], s_ns[1], s_ns[1]);
    if (tt_sh(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "test_two_hosts: skipped: cannot link the namespaces (or make a mount namespace): %s", out);
        s_cleanup();
        return 77;
    }
    return 0;
}

/* Runs the requests from inside namespace ns (a child that joins it):
 * writes "answer\n" per request, in order, to path. 0 when every one came. */
static int s_client_in(const char *ns, const char *ep, const tis_client_keys *keys, const bench_set *set,
                       const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        char nsp[128];
        snprintf(nsp, sizeof nsp, "/var/run/netns/%s", ns);
        int fd = open(nsp, O_RDONLY);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(3);
        close(fd);
        tis_client *c = NULL;
        if (tis_client_open_keys(ep, keys, &c)) _exit(4);
        for (int i = 0; i < N_REQ; i++) {
            tis_request rq = {.context = set->s[i].context, .question = set->s[i].question, .policy = "snapkv",
                              .budget = 0.5, .max_new = 8};
            if (tis_client_submit(c, (uint64_t)i + 1, &rq)) _exit(5);
        }
        char *ans[N_REQ] = {0};
        double handoff = 0;
        uint64_t bytes = 0;
        for (int got = 0, t = 0; got < N_REQ && t < 1200; t++) {
            tis_result res;
            int r = tis_client_next(c, 100, &res);
            if (r < 0) _exit(6);
            if (r == 0) continue;
            if (res.kind == TIS_RESULT_REPLY && res.id >= 1 && res.id <= N_REQ && !ans[res.id - 1]) {
                ans[res.id - 1] = strdup(res.answer);
                handoff += res.handoff_s;
                bytes += res.kv_bytes;
                got++;
            } else if (res.kind == TIS_RESULT_ERROR) {
                fprintf(stderr, "  request %llu: error %s\n", (unsigned long long)res.id, res.error);
                _exit(7);
            }
            tis_result_free(&res);
        }
        FILE *f = fopen(path, "w");
        for (int i = 0; f && i < N_REQ; i++) fprintf(f, "%s\n", ans[i] ? ans[i] : "<none>");
        if (f) fclose(f);
        fprintf(stderr, "  %d requests, %llu KV bytes handed over in %.1f ms all told\n", N_REQ,
                (unsigned long long)bytes, handoff * 1e3);
        tis_client_close(c);
        _exit(0);
    }
    return tt_wait(pid, 120);
}

/* What the steps below share: the binary, the model, the dataset and the
 * answers eval gives to it in one process, the keys and the coordinator's
 * log. */
typedef struct fixture {
    const char *bin;
    char tiny[600], data[600];
    bench_set set;
    model *m;
    eval_row *rows; /* [set.n] eval's rows (malloc'd) */
    char srv_key[620], srv_pub[620], wk_key[620], cl_key[620], allow[600], slog[600];
} fixture;

static const char *s_front = "tcp://10.231.0.1:5701", *s_back = "tcp://10.231.0.1:5702";

/* The tiny model and N_REQ requests about it (x->tiny, x->data, x->set). */
static void s_write_inputs(fixture *x) {
    snprintf(x->tiny, sizeof x->tiny, "%s", tt_path("tiny.gguf"));
    snprintf(x->data, sizeof x->data, "%s", tt_path("data.jsonl"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(x->tiny, &sp));
    char text[4096];
    size_t used = 0;
    for (int i = 0; i < N_REQ; i++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "{\"id\": \"r%d\", \"context\": \"the %s %s %s by the %s and then the dog ran "
                                 "in the park while the sun was hot\", \"question\": \"who %s?\"}\n",
                                 i, (const char *[]){"red", "blue", "green"}[i % 3],
                                 (const char *[]){"fox", "owl"}[i % 2], i % 2 ? "ran" : "sat",
                                 (const char *[]){"river", "hill", "gate"}[i % 3], i % 2 ? "ran" : "sat");
    TT_OK(tt_write_file(x->data, text, used));
    TT_OK(bench_load_jsonl(x->data, &x->set));
}

/* The answers in one process (x->m, x->rows). */
static void s_reference(fixture *x) {
    TT_CASE("reference");
    TT_OK(model_load(&x->m, x->tiny));
    const char *pol[] = {"snapkv"};
    int64_t n_rows = 0;
    TT_OK(tt_eval_reference(x->m, pol, 1, 0.5, NULL, NULL, 0, x->set.s, x->set.n, &x->rows, &n_rows));
    TT_CHECK(n_rows == N_REQ && x->set.n == N_REQ);
}

/* CURVE keys for the coordinator, the worker and the client; the
 * coordinator allows the worker's and the client's. */
static void s_keys(fixture *x) {
    char srv[600], wk[600], cl[600];
    snprintf(srv, sizeof srv, "%s", tt_path("server"));
    snprintf(wk, sizeof wk, "%s", tt_path("worker"));
    snprintf(cl, sizeof cl, "%s", tt_path("client"));
    TT_OK(sec_keygen(srv, NULL));
    TT_OK(sec_keygen(wk, NULL));
    TT_OK(sec_keygen(cl, NULL));
    char cmd[4096], out[512];
    snprintf(x->allow, sizeof x->allow, "%s", tt_path("allow"));
    snprintf(cmd, sizeof cmd, "cat '%s.pub' '%s.pub' > '%s'", wk, cl, x->allow);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(x->srv_pub, sizeof x->srv_pub, "%s.pub", srv);
    snprintf(x->wk_key, sizeof x->wk_key, "%s.key", wk);
    snprintf(x->cl_key, sizeof x->cl_key, "%s.key", cl);
    snprintf(x->srv_key, sizeof x->srv_key, "%s.key", srv);
    snprintf(x->slog, sizeof x->slog, "%s", tt_path("serve.log"));
}

/* Host A: the coordinator and a prefill worker (no decode worker), its
 * output to x->slog. */
static pid_t s_spawn_serve(const fixture *x) {
    const char *sa[] = {s_ip, "netns", "exec", s_ns[0], x->bin, "serve", "--front", s_front, "--back", s_back,
                        "--key", x->srv_key, "--allow", x->allow, "-m", x->tiny, "--prefill", "1", "--decode", "0",
                        "--arena_mb", "8", "--heartbeat_ms", "200", NULL};
    return tt_spawn(sa, x->slog, NULL);
}

/* How many of the answers in file path (one a line, in order) are eval's,
 * up to the first that differs. */
static int s_same_answers(const fixture *x, const char *path) {
    char *got = tt_read_file(path, NULL);
    int same = 0;
    for (char *line = got, *nl; line && (nl = strchr(line, '\n')) && same < N_REQ; line = nl + 1) {
        *nl = 0;
        bool eq = !strcmp(line, x->rows[same].answer);
        if (!eq) fprintf(stderr, "  request %d: '%s', in one process '%s'\n", same + 1, line, x->rows[same].answer);
        same += eq;
        if (!eq) break;
    }
    free(got);
    return same;
}

/* The coordinator and a prefill worker on host A, a decode worker and the
 * client on host B: every answer is eval's, the blocks came over the
 * network, and no CURVE peer was refused. */
static void s_two_hosts(fixture *x) {
    TT_CASE("two hosts, CURVE, blocks over the network");
    s_keys(x);
    char dlog[600], answers[600];
    snprintf(dlog, sizeof dlog, "%s", tt_path("decode.log"));
    snprintf(answers, sizeof answers, "%s", tt_path("answers.txt"));
    pid_t ps = s_spawn_serve(x);
    /* host B: a decode worker, its own /dev/shm */
    const char *da[] = {s_ip, "netns", "exec", s_ns[1], "unshare", "-m", "sh", "-c",
                        "mount -t tmpfs tmpfs /dev/shm && exec \"$0\" \"$@\"", x->bin, "worker", "--role", "decode",
                        "--connect", s_back, "--name", "two-hosts-decode", "-m", x->tiny, "--key", x->wk_key,
                        "--server_key", x->srv_pub, "--heartbeat_ms", "200", NULL};
    pid_t pd = tt_spawn(da, dlog, NULL);
    /* the client: on host B too */
    tis_client_keys keys = {.key_file = x->cl_key, .server_key_file = x->srv_pub};
    TT_CHECK(s_client_in(s_ns[1], s_front, &keys, &x->set, answers) == 0);
    int same = s_same_answers(x, answers);
    TT_CHECK(same == N_REQ);
    fprintf(stderr, "  %d of %d answers as in one process\n", same, N_REQ);
    kill(pd, SIGTERM);
    kill(ps, SIGTERM);
    TT_CHECK(tt_wait(ps, 20) == 0);
    tt_wait(pd, 20);
    char *dl = tt_read_file(dlog, NULL);
    TT_CHECK(dl && strstr(dl, "come over the network")); /* the fetch path, not shared memory */
    free(dl);
    char *sl = tt_read_file(x->slog, NULL);
    TT_CHECK(sl && !strstr(sl, "refused a CURVE peer"));
    free(sl);
}

/* An unknown decode worker on host B is not let in: the coordinator
 * lists one worker (the prefill), its log names the refused peer. */
static void s_rogue(const fixture *x) {
    TT_CASE("an unknown worker key on the other host");
    char rogue[600], rogue_key[620], rlog[600];
    snprintf(rogue, sizeof rogue, "%s", tt_path("rogue"));
    TT_OK(sec_keygen(rogue, NULL));
    snprintf(rogue_key, sizeof rogue_key, "%s.key", rogue);
    pid_t ps = s_spawn_serve(x);
    const char *ra[] = {s_ip, "netns", "exec", s_ns[1], x->bin, "worker", "--role", "decode", "--connect", s_back,
                        "--name", "rogue", "-m", x->tiny, "--key", rogue_key, "--server_key", x->srv_pub,
                        "--heartbeat_ms", "200", NULL};
    snprintf(rlog, sizeof rlog, "%s", tt_path("rogue.log"));
    pid_t pd = tt_spawn(ra, rlog, NULL);
    bool refused = false; /* the rogue worker loads its model, then tries: up to 60 s on a loaded machine */
    for (int t = 0; t < 600 && !refused; t++) {
        usleep(100000);
        char *sl = tt_read_file(x->slog, NULL);
        refused = sl && strstr(sl, "refused a CURVE peer") && strstr(sl, "10.231.0.2");
        free(sl);
    }
    TT_CHECK(refused);
    kill(pd, SIGTERM);
    kill(ps, SIGTERM);
    tt_wait(pd, 20);
    TT_CHECK(tt_wait(ps, 20) == 0);
}

int main(void) {
    fixture x = {.bin = tt_bin("test_two_hosts")};
    int sk = s_netns();
    if (sk) return sk;
    s_write_inputs(&x);
    s_reference(&x);
    s_two_hosts(&x);
    s_rogue(&x);
    free(x.rows);
    bench_set_free(&x.set);
    model_destroy(&x.m);
    s_cleanup();
    return tt_done("test_two_hosts");
}
