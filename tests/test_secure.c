/* test_secure: who may connect (serve/secure.h, docs/pipeline.md "Who may
 * connect"): key files; ipc sockets 0600 in a private directory, a shared
 * one refused; a tcp endpoint without keys refused (bind and connect, the
 * coordinator and tis serve say --insecure); with CURVE, a client or a
 * worker whose key is not on the allow-list gets nothing and the
 * coordinator serves the allowed ones on; a whole request through tis
 * serve over tcp with CURVE on both sockets. */
#include <arpa/inet.h>
#include <cJSON.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "coord.h"
#include "secure.h"
#include "tiny_model.h"
#include "tis_client.h"
#include "tis_error.h"
#include "tt.h"

/* A port the kernel says is free now (another process could take it
 * before us: unlikely on loopback in a test's second). */
static int s_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int s_mode(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int)(sb.st_mode & 0777) : -1;
}

static void s_keys(void) {
    TT_CASE("key files");
    char pub[SEC_Z85 + 1], pub2[SEC_Z85 + 1], sec[SEC_Z85 + 1], path[600];
    TT_OK(sec_keygen(tt_path("server"), pub));
    snprintf(path, sizeof path, "%s", tt_path("server.key"));
    TT_CHECK(s_mode(path) == 0600);
    TT_OK(sec_key_read(path, pub2, sec));
    TT_CHECK(!strcmp(pub, pub2) && strlen(sec) == SEC_Z85);
    char derived[SEC_Z85 + 1];
    TT_CHECK(zmq_curve_public(derived, sec) == 0 && !strcmp(derived, pub)); /* a real pair */
    TT_OK(sec_key_read(tt_path("server.pub"), pub2, NULL));
    TT_CHECK(!strcmp(pub, pub2));
    TT_FAILS(sec_key_read(tt_path("server.pub"), pub2, sec), TIS_EINVAL); /* no secret in a .pub */
    TT_FAILS(sec_keygen(tt_path("server"), NULL), TIS_EIO);               /* never overwritten */
    TT_OK(sec_keygen(tt_path("alice"), NULL));
    TT_OK(sec_keygen(tt_path("mallory"), NULL));
    /* a secret others can read is refused */
    TT_CHECK(chmod(path, 0644) == 0);
    TT_FAILS(sec_key_read(path, pub2, sec), TIS_EINVAL);
    fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
    TT_CHECK(chmod(path, 0600) == 0);
    const char *junk = "public not-a-key\n";
    TT_OK(tt_write_file(tt_path("junk.pub"), junk, strlen(junk)));
    TT_FAILS(sec_key_read(tt_path("junk.pub"), pub2, NULL), TIS_EFORMAT);
    TT_FAILS(sec_key_read(tt_path("no-such.key"), pub2, NULL), TIS_EIO);
    /* the allow-list: alice only */
    char *a = tt_read_file(tt_path("alice.pub"), NULL);
    TT_CHECK(a && tt_write_file(tt_path("allow"), a, strlen(a)) == 0);
    free(a);
}

static void s_ipc(void) {
    TT_CASE("ipc: a private directory, a 0600 socket");
    void *ctx = zmq_ctx_new();
    void *s1 = zmq_socket(ctx, ZMQ_ROUTER), *s2 = zmq_socket(ctx, ZMQ_ROUTER), *s3 = zmq_socket(ctx, ZMQ_ROUTER);
    char ep[800], dir[600], sock[700];
    snprintf(dir, sizeof dir, "%s", tt_path("priv"));
    snprintf(sock, sizeof sock, "%s/front", dir);
    snprintf(ep, sizeof ep, "ipc://%s", sock);
    TT_OK(sec_bind(s1, ep, NULL)); /* the directory is made 0700 */
    TT_CHECK(s_mode(dir) == 0700 && s_mode(sock) == 0600);
    /* a directory others may enter */
    snprintf(dir, sizeof dir, "%s", tt_path("shared"));
    TT_CHECK(mkdir(dir, 0755) == 0 && chmod(dir, 0755) == 0);
    snprintf(ep, sizeof ep, "ipc://%s/front", dir);
    TT_FAILS(sec_bind(s2, ep, NULL), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "not private") && strstr(tis_last_error(), "--insecure"));
    fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
    sec_opts ins = {.insecure = true};
    TT_OK(sec_bind(s2, ep, &ins)); /* asked for */
    TT_FAILS(sec_bind(s3, "ipc://@tis-abstract-test", NULL), TIS_EINVAL); /* no file mode */
    TT_FAILS(sec_bind(s3, "ipc:///tmp/tis-front-test-of-a-shared-dir", NULL), TIS_EINVAL); /* /tmp: 1777 */
    TT_FAILS(sec_bind(s3, "pgm://eth0;239.192.1.1:5555", NULL), TIS_EINVAL);
    zmq_close(s1);
    zmq_close(s2);
    zmq_close(s3);
    zmq_ctx_term(ctx);
}

static void s_tcp_refused(int port) {
    TT_CASE("tcp: no keys, no bind");
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    TT_FAILS(sec_bind(s, ep, NULL), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "--insecure") && strstr(tis_last_error(), "--key"));
    TT_FAILS(sec_connect(s, ep, NULL), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "--insecure"));
    sec_opts half = {.key = tt_path("alice.key")};
    TT_FAILS(sec_connect(s, ep, &half), TIS_EINVAL); /* no server key */
    zmq_close(s);
    zmq_ctx_term(ctx);
    /* the coordinator refuses to start */
    char back[700];
    snprintf(back, sizeof back, "ipc://%s", tt_path("priv/back0"));
    coord_opts o = {.front = ep, .back = back, .max_queue = 4, .heartbeat_ms = 200, .liveness = 3,
                    .max_attempts = 1, .wait_ms = 1000, .job_timeout_ms = 1000, .lease_ms = 1000,
                    .context_ttl_ms = 1000};
    TT_CHECK(coord_run(&o) < 0 && strstr(tis_last_error(), "--insecure"));
    fprintf(stderr, "  ok, rejected: %s\n", tis_last_error());
    /* and the client API */
    tis_client *c = NULL;
    TT_CHECK(tis_client_open(ep, &c) < 0 && c == NULL && strstr(tis_client_last_error(), "--insecure"));
    /* tis serve too, with the reason */
    char cmd[1200], out[4096];
    snprintf(cmd, sizeof cmd, "serve --front %s --back %s --prefill 0 --decode 0", ep, back);
    TT_CHECK(tt_tis(cmd, out, sizeof out) != 0 && strstr(out, "--insecure"));
}

/* How many workers the coordinator at ep lists (-1: no status answer). */
static int s_workers(tis_client *c, int timeout_ms) {
    char *js = NULL;
    if (tis_client_status(c, timeout_ms, &js)) return -1;
    cJSON *o = cJSON_Parse(js);
    int n = o ? cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "workers")) : -1;
    cJSON_Delete(o);
    free(js);
    return n;
}

static void s_curve_coord(int port) {
    TT_CASE("tcp: CURVE, an allow-list, an unknown key");
    char ep[64], back[700];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf(back, sizeof back, "ipc://%s", tt_path("priv/back1"));
    char srv_key[600], allow[600];
    snprintf(srv_key, sizeof srv_key, "%s", tt_path("server.key"));
    snprintf(allow, sizeof allow, "%s", tt_path("allow"));
    pid_t pid = fork();
    if (pid == 0) {
        coord_opts o = {.front = ep, .back = back, .max_queue = 4, .heartbeat_ms = 200, .liveness = 3,
                        .max_attempts = 1, .wait_ms = 1000, .job_timeout_ms = 1000, .lease_ms = 1000,
                        .context_ttl_ms = 1000, .sec = {.key = srv_key, .allow = allow}};
        _exit(coord_run(&o) ? 1 : 0);
    }
    char alice[600], mallory[600], srv_pub[600];
    snprintf(alice, sizeof alice, "%s", tt_path("alice.key"));
    snprintf(mallory, sizeof mallory, "%s", tt_path("mallory.key"));
    snprintf(srv_pub, sizeof srv_pub, "%s", tt_path("server.pub"));
    tis_client_keys ka = {.key_file = alice, .server_key_file = srv_pub};
    tis_client_keys km = {.key_file = mallory, .server_key_file = srv_pub};
    tis_client_keys kn = {.insecure = 1};
    tis_client *a = NULL, *m = NULL, *n = NULL;
    TT_OK(tis_client_open_keys(ep, &ka, &a));
    TT_CHECK(a && s_workers(a, 5000) == 0); /* allowed: answered */
    TT_OK(tis_client_open_keys(ep, &km, &m));
    TT_CHECK(m && s_workers(m, 1500) == -1); /* not on the list: no answer, the reason */
    TT_CHECK(strstr(tis_client_last_error(), "refused us") && strstr(tis_client_last_error(), "not allowed"));
    fprintf(stderr, "  ok, unknown key: %s\n", tis_client_last_error());
    TT_OK(tis_client_open_keys(ep, &kn, &n));
    TT_CHECK(n && s_workers(n, 1500) == -1); /* no CURVE at all: no answer */
    fprintf(stderr, "  ok, no key: %s\n", tis_client_last_error());
    /* a request of the unknown key is refused too, not left hanging */
    tis_request rq = {.context = "a b c", .question = "d?", .budget = 1};
    tis_result res;
    int sr = m ? tis_client_submit(m, 7, &rq) : -1;
    if (sr == 0) sr = tis_client_next(m, 1500, &res);
    TT_CHECK(sr < 0 && strstr(tis_client_last_error(), "refused us"));
    /* the coordinator lives on and serves the allowed client */
    TT_CHECK(a && s_workers(a, 5000) == 0);
    int st = -1;
    TT_CHECK(waitpid(pid, &st, WNOHANG) == 0);
    tis_client_close(a);
    tis_client_close(m);
    tis_client_close(n);
    kill(pid, SIGTERM);
    TT_CHECK(tt_wait(pid, 10) == 0);
}

/* tis serve with both sockets on tcp under CURVE: local workers come in with
 * the coordinator's pair, an outside worker with an unknown key does not,
 * a client on the list gets its answer (the same as over ipc). */
static void s_serve_curve(const char *bin) {
    TT_CASE("tis serve over tcp with CURVE");
    char tiny[600];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    char front[64], back[64], srv_key[600], allow[600], srv_pub[600], alice[600], mallory[600], log[600];
    snprintf(front, sizeof front, "tcp://127.0.0.1:%d", s_free_port());
    snprintf(back, sizeof back, "tcp://127.0.0.1:%d", s_free_port());
    snprintf(srv_key, sizeof srv_key, "%s", tt_path("server.key"));
    snprintf(srv_pub, sizeof srv_pub, "%s", tt_path("server.pub"));
    snprintf(allow, sizeof allow, "%s", tt_path("allow"));
    snprintf(alice, sizeof alice, "%s", tt_path("alice.key"));
    snprintf(mallory, sizeof mallory, "%s", tt_path("mallory.key"));
    snprintf(log, sizeof log, "%s", tt_path("serve.log"));
    const char *av[] = {bin, "serve", "--front", front, "--back", back, "--key", srv_key, "--allow", allow,
                        "-m", tiny, "--prefill", "1", "--decode", "1", "--heartbeat_ms", "200", "--arena_mb", "8",
                        NULL};
    pid_t srv = tt_spawn(av, log, NULL);
    const char *wv[] = {bin, "worker", "--role", "decode", "--connect", back, "--name", "intruder", "-m", tiny,
                        "--key", mallory, "--server_key", srv_pub, "--heartbeat_ms", "200", NULL};
    pid_t intruder = tt_spawn(wv, NULL, NULL);
    tis_client_keys ka = {.key_file = alice, .server_key_file = srv_pub};
    tis_client *c = NULL;
    TT_OK(tis_client_open_keys(front, &ka, &c));
    int nw = -1;
    for (int t = 0; t < 100 && nw < 2; t++) {
        nw = c ? s_workers(c, 2000) : -1;
        if (nw < 2) usleep(100000);
    }
    usleep(600000); /* time for the intruder to have tried (heartbeats every 200 ms) */
    TT_CHECK(c && s_workers(c, 2000) == 2); /* the two local ones, not the intruder */
    tis_request rq = {.context = "the red fox sat here and the owl ran there", .question = "who sat?",
                      .policy = "snapkv", .budget = 0.5, .max_new = 6, .until_eog = true};
    tis_result res = {0};
    int got = 0;
    if (c) TT_OK(tis_client_submit(c, 1, &rq));
    for (int t = 0; c && t < 600 && got == 0; t++) got = tis_client_next(c, 100, &res);
    TT_CHECK(got == 1 && res.kind == TIS_RESULT_REPLY && res.answer);
    char answer[256] = "";
    int32_t ids[64];
    size_t n_ids = 0;
    if (got == 1 && res.answer) snprintf(answer, sizeof answer, "%s", res.answer);
    if (got == 1 && res.n_ids <= 64) memcpy(ids, res.ids, (n_ids = res.n_ids) * sizeof *ids);
    TT_CHECK(n_ids > 0 && res.kv_bytes > 0);
    if (got == 1) tis_result_free(&res);
    tis_client_close(c);
    kill(intruder, SIGTERM);
    tt_wait(intruder, 10);
    kill(srv, SIGTERM);
    TT_CHECK(tt_wait(srv, 20) == 0);
    char *lg = tt_read_file(log, NULL);
    TT_CHECK(lg && strstr(lg, "refused a CURVE peer") && strstr(lg, "not on the allow-list"));
    free(lg);

    /* the same request over ipc: the same answer */
    char ifront[700], iback[700], ilog[600];
    snprintf(ifront, sizeof ifront, "ipc://%s", tt_path("run/front"));
    snprintf(iback, sizeof iback, "ipc://%s", tt_path("run/back"));
    snprintf(ilog, sizeof ilog, "%s", tt_path("serve-ipc.log"));
    const char *iv[] = {bin, "serve", "--front", ifront, "--back", iback, "-m", tiny, "--prefill", "1", "--decode",
                        "1", "--heartbeat_ms", "200", "--arena_mb", "8", NULL};
    srv = tt_spawn(iv, ilog, NULL);
    c = NULL;
    for (int t = 0; t < 100 && !c; t++)
        if (tis_client_open(ifront, &c)) usleep(100000);
    got = 0;
    if (c) TT_OK(tis_client_submit(c, 1, &rq));
    for (int t = 0; c && t < 600 && got == 0; t++) got = tis_client_next(c, 100, &res);
    TT_CHECK(got == 1 && res.kind == TIS_RESULT_REPLY && res.answer && !strcmp(res.answer, answer));
    TT_CHECK(got == 1 && res.n_ids == n_ids && !memcmp(res.ids, ids, n_ids * sizeof *ids));
    fprintf(stderr, "  answer over tcp+CURVE '%s' (%zu tokens), over ipc '%s' (%zu tokens)\n", answer, n_ids,
            got == 1 && res.answer ? res.answer : "", got == 1 ? res.n_ids : 0);
    if (got == 1) tis_result_free(&res);
    tis_client_close(c);
    kill(srv, SIGTERM);
    TT_CHECK(tt_wait(srv, 20) == 0);
}

int main(void) {
    if (!zmq_has("curve")) {
        fprintf(stderr, "test_secure: this libzmq has no CURVE\n");
        return 77;
    }
    s_keys();
    s_ipc();
    s_tcp_refused(s_free_port());
    s_curve_coord(s_free_port());
    const char *bin = getenv("TIS_BIN");
    if (bin) s_serve_curve(bin);
    else fprintf(stderr, "test_secure: TIS_BIN is not set: the tis serve case is skipped\n");
    return tt_done("test_secure");
}
