/* tis serve: the coordinator, with local worker processes. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "cli.h"
#include "coord.h"
#include "devspec.h"
#include "http_front.h"
#include "tis_error.h"
#include "yaml_kv.h"

enum { MAX_CHILD = 48, MAX_HEAD_AS = 8 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis serve [--config FILE.yaml] [options]\n"
            "      --config FILE        a YAML config (configs/serve.yaml shows every key);\n"
            "                           options given on the command line override it\n"
            "      --front ENDPOINT     clients connect here (default ipc:///tmp/tis-$UID/front)\n"
            "      --back ENDPOINT      workers connect here (default ipc:///tmp/tis-$UID/back)\n"
            "                           ipc: the socket is 0600 in a private directory (0700, ours;\n"
            "                           made when missing); tcp: CURVE, needs --key (or --insecure)\n"
            "      --key FILE           the coordinator's key pair (tis keygen): tcp endpoints use CURVE\n"
            "      --allow FILE         public keys of the workers and clients that may connect by tcp\n"
            "                           (one per line: cat *.pub > FILE); local workers use --key's pair\n"
            "      --insecure           allow a tcp endpoint without keys, an ipc one in a shared directory\n"
            "      --prefill N          local prefill workers to start (default 1)\n"
            "      --decode N           local decode workers to start (default 1)\n"
            "      --scorer N           local scorer workers (default 0): the importance head of\n"
            "                           tis / tis_query runs there instead of in the prefill worker\n"
            "                           (with <role>.devices in the config: workers per listed GPU)\n"
            "  -m, --model PATH         model for the workers (default %s)\n"
            "      --head PATH          importance head (tis) for the prefill workers\n"
            "      --head_query PATH    query-aware head (tis_query)\n"
            "      --head_as NAME=PATH.. more heads: policy NAME is tis with that head (NAME+lpool5,\n"
            "                           and unions: tis_si+lpool5|tis+lpool5+recent64/8 with\n"
            "                           --head_as tis_si=...; docs/pipeline.md); at most 8\n"
            "      --arena_mb N         prefill workers' shared-memory arena (default 256)\n"
            "      --decode_batch N     requests a decode worker generates together (default 8)\n"
            "      --max_queue N        waiting requests before Busy (default 64)\n"
            "      --heartbeat_ms N     (default 1000)\n"
            "      --wait_ms N          a request waiting this long with no worker of its role\n"
            "                           alive gets an Error (default 30000)\n"
            "      --job_timeout_ms N   silence allowed to a worker busy with a job (default 600000)\n"
            "      --lease_ms N         a block handed between workers lives this long unless renewed;\n"
            "                           the coordinator renews those still waiting (default 30000)\n"
            "      --kv_type T          the workers' KV cache element type: f16 (default), f32, bf16,\n"
            "                           q8_0; K,V: the keys' and the values' apart\n"
            "      --http [HOST:]PORT   also serve the OpenAI-compatible HTTP API there (HOST default\n"
            "                           127.0.0.1; another address only when given; PORT 0: any free\n"
            "                           port, printed); its other settings: the config's http: block\n"
            "      --stop_after N       exit after N answers (tests)\n"
            "Devices: the config's <role>.device (cpu, cuda:N) or <role>.devices ([0, 1]: workers\n"
            "on each listed GPU); a worker that cannot use its GPU stops tis serve (docs/pipeline.md).\n",
            cli_default_model());
}

static pid_t s_spawn(const char *role, int i, const char *dev, const char *back, const sec_opts *sec,
                     const char *model, const char *head, const char *head_q, const char *const *head_as,
                     int64_t n_head_as, const char *arena_mb, const char *hb, const char *batch, const char *lease) {
    char name[64];
    snprintf(name, sizeof name, "s%d-%s-%d", (int)getpid(), role, i);
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* workers end with their coordinator */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* SIGCHLD was blocked while the workers were started */
    const char *argv[34 + 2 * MAX_HEAD_AS];
    int n = 0;
    argv[n++] = "tis";
    argv[n++] = "worker";
    argv[n++] = "--role";
    argv[n++] = role;
    argv[n++] = "--connect";
    argv[n++] = back;
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "-m";
    argv[n++] = model;
    argv[n++] = "--arena_mb";
    argv[n++] = arena_mb;
    argv[n++] = "--heartbeat_ms";
    argv[n++] = hb;
    argv[n++] = "--max_batch";
    argv[n++] = batch;
    argv[n++] = "--lease_ms";
    argv[n++] = lease;
    argv[n++] = "--device";
    argv[n++] = dev;
    if (head) argv[n++] = "--head", argv[n++] = head;
    if (head_q) argv[n++] = "--head_query", argv[n++] = head_q;
    for (int64_t j = 0; j < n_head_as; j++) argv[n++] = "--head_as", argv[n++] = head_as[j];
    /* local workers use the coordinator's own pair (always on its allow-list) */
    if (sec->key) argv[n++] = "--key", argv[n++] = sec->key, argv[n++] = "--server_key", argv[n++] = sec->key;
    if (sec->insecure) argv[n++] = "--insecure";
    argv[n] = NULL;
    execv("/proc/self/exe", (char *const *)argv);
    _exit(127);
}

enum { N_OWNED = 16 }; /* strings read from a config: model, front, back, head, head_query, http.listen,
                          http.kv_policy, security.key, security.allow, then <role>.device and
                          <role>.devices for prefill, decode, scorer, then prefill.head_as */
enum { OWNED_HEAD_AS = 15 };
enum { DEV_PRE, DEV_DEC, DEV_SC }; /* dev[k]: <role>.device, dev[3 + k]: <role>.devices */

/* The http: block of a config: the HTTP front's settings. */
static int s_config_http(yaml_kv *kv, const char *path, http_opts *h, const char **listen) {
    int64_t body_kb = h->max_body / 1024;
    const char *budget = NULL, *qa = NULL;
    int rc;
    if ((rc = yaml_kv_str(kv, "http.listen", listen)) || (rc = yaml_kv_i64(kv, "http.max_body_kb", 1, 1 << 20, &body_kb)) ||
        (rc = yaml_kv_i64(kv, "http.max_connections", 1, 100000, &h->max_connections)) ||
        (rc = yaml_kv_i64(kv, "http.max_tokens", 1, HTTP_MAX_TOKENS, &h->defaults.max_tokens)) ||
        (rc = yaml_kv_str(kv, "http.kv_policy", &h->defaults.kv_policy)) ||
        (rc = yaml_kv_str(kv, "http.kv_budget", &budget)) ||
        (rc = yaml_kv_i64(kv, "http.kv_budget_tokens", 0, 1 << 24, &h->defaults.kv_budget_tokens)) ||
        (rc = yaml_kv_str(kv, "http.query_aware", &qa)))
        return rc;
    h->max_body = body_kb * 1024;
    if (budget) {
        char *end = NULL;
        double b = strtod(budget, &end);
        if (end == budget || *end || !(b > 0 && b <= 1))
            return tis_error(TIS_EINVAL, "%s: http.kv_budget '%s' is not a fraction in (0, 1]", path, budget);
        h->defaults.kv_budget = b;
    }
    if (qa && strcmp(qa, "true") && strcmp(qa, "false"))
        return tis_error(TIS_EINVAL, "%s: http.query_aware '%s' is not true or false", path, qa);
    if (qa) h->defaults.query_aware = !strcmp(qa, "true");
    return 0;
}

/* The settings of a YAML config (before the flags, which override it). */
static int s_config(const char *path, coord_opts *o, const char **model, const char **head, const char **head_q,
                    const char **head_as_list,
                    int64_t *n_pre, int64_t *n_dec, int64_t *n_sc, int64_t *mb, int64_t *dbatch, http_opts *h,
                    const char **listen, const char **dev, char **owned) {
    yaml_kv kv;
    int rc = yaml_kv_load(&kv, path);
    if (rc) return rc;
    if ((rc = s_config_http(&kv, path, h, listen))) {
        yaml_kv_free(&kv);
        return rc;
    }
    const char *insecure = NULL;
    if ((rc = yaml_kv_str(&kv, "model", model)) || (rc = yaml_kv_str(&kv, "front", &o->front)) ||
        (rc = yaml_kv_str(&kv, "back", &o->back)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.max_queue", 1, 1 << 20, &o->max_queue)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.heartbeat_ms", 10, 600000, &o->heartbeat_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.liveness", 1, 1000, &o->liveness)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.job_timeout_ms", 100, 86400000, &o->job_timeout_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.lease_ms", 50, 86400000, &o->lease_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.max_attempts", 1, 100, &o->max_attempts)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.wait_ms", 1, 86400000, &o->wait_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.context_ttl_ms", 1000, 86400000, &o->context_ttl_ms)) ||
        (rc = yaml_kv_i64(&kv, "prefill.workers", 0, MAX_CHILD / 2, n_pre)) ||
        (rc = yaml_kv_str(&kv, "prefill.device", &dev[DEV_PRE])) ||
        (rc = yaml_kv_str(&kv, "prefill.devices", &dev[3 + DEV_PRE])) ||
        (rc = yaml_kv_i64(&kv, "prefill.arena_mb", 1, 1 << 20, mb)) ||
        (rc = yaml_kv_str(&kv, "prefill.head", head)) || (rc = yaml_kv_str(&kv, "prefill.head_query", head_q)) ||
        (rc = yaml_kv_str(&kv, "prefill.head_as", head_as_list)) ||
        (rc = yaml_kv_i64(&kv, "scorer.workers", 0, MAX_CHILD / 4, n_sc)) ||
        (rc = yaml_kv_str(&kv, "scorer.device", &dev[DEV_SC])) ||
        (rc = yaml_kv_str(&kv, "scorer.devices", &dev[3 + DEV_SC])) ||
        (rc = yaml_kv_i64(&kv, "decode.workers", 0, MAX_CHILD / 2, n_dec)) ||
        (rc = yaml_kv_str(&kv, "decode.device", &dev[DEV_DEC])) ||
        (rc = yaml_kv_str(&kv, "decode.devices", &dev[3 + DEV_DEC])) ||
        (rc = yaml_kv_i64(&kv, "decode.max_batch", 1, 256, dbatch)) ||
        (rc = yaml_kv_str(&kv, "security.key", &o->sec.key)) ||
        (rc = yaml_kv_str(&kv, "security.allow", &o->sec.allow)) ||
        (rc = yaml_kv_str(&kv, "security.insecure", &insecure)) || (rc = yaml_kv_unused(&kv))) {
        yaml_kv_free(&kv);
        return rc;
    }
    if (insecure && strcmp(insecure, "true") && strcmp(insecure, "false"))
        rc = tis_error(TIS_EINVAL, "%s: security.insecure '%s' is not true or false", path, insecure);
    if (insecure) o->sec.insecure = !strcmp(insecure, "true");
    /* the strings live in kv: keep copies for the run (owned[], freed by the caller) */
    const char **sv[N_OWNED] = {model, &o->front, &o->back, head, head_q, listen, &h->defaults.kv_policy,
                                &o->sec.key, &o->sec.allow, &dev[0], &dev[1], &dev[2], &dev[3], &dev[4], &dev[5],
                                head_as_list};
    for (size_t k = 0; k < sizeof sv / sizeof *sv && !rc; k++)
        if (*sv[k] && *sv[k] != owned[k]) { /* (a second --config replaces the first's) */
            char *c = strdup(*sv[k]);
            if (!c) rc = tis_error(TIS_ENOMEM, "out of memory");
            free(owned[k]);
            *sv[k] = owned[k] = c;
        }
    yaml_kv_free(&kv);
    return rc;
}

/* The model's name as /v1/models shows it: its file (or directory) name
 * without .gguf. */
static void s_model_id(const char *path, char *out, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *b = path;
    for (size_t k = 0; k < n; k++)
        if (path[k] == '/') b = path + k + 1;
    size_t len = (size_t)(path + n - b);
    if (len > 5 && !strncmp(b + len - 5, ".gguf", 5)) len -= 5;
    snprintf(out, cap, "%.*s", (int)len, b);
}

/* The HTTP front, when asked for: 0 (*hf NULL when not), or an error. */
static int s_http_start(http_front **hf, http_opts *h, const char *listen, const char *front, const char *model,
                        char *model_id, size_t cap) {
    *hf = NULL;
    if (!listen || !*listen) return 0;
    s_model_id(model, model_id, cap);
    h->listen = listen;
    h->front = front;
    h->defaults.model_id = model_id;
    uint32_t addr;
    int port, loopback = 1;
    int rc = http_parse_listen(listen, &addr, &port, &loopback);
    if (!rc) rc = http_front_start(hf, h);
    if (rc) return rc;
    struct in_addr a = {.s_addr = addr};
    char host[32];
    snprintf(host, sizeof host, "%s", inet_ntoa(a));
    fprintf(stderr, "[http] listening on http://%s:%d (model %s)%s\n", host, http_front_port(*hf), model_id,
            loopback ? "" : " -- not a loopback address: anyone who reaches it can use it (no authentication)");
    return 0;
}

/* The local workers, for the SIGCHLD handler: a worker that exits because
 * it cannot use its device (DEVSPEC_EXIT_DEVICE, its reason on stderr)
 * stops tis serve with that said, rather than leaving a role without
 * workers (nothing restarts a worker here). */
static struct {
    pid_t pid[MAX_CHILD];
    int role[MAX_CHILD];               /* DEV_PRE, DEV_DEC, DEV_SC */
    int index[MAX_CHILD];              /* its number among its role's workers (its name's) */
    devspec dev[MAX_CHILD];
    volatile sig_atomic_t status[MAX_CHILD], done[MAX_CHILD];
    volatile sig_atomic_t stop;        /* coord_opts.stop */
    int n;
} s_kids;

static void s_on_child(int sig) {
    (void)sig;
    int saved = errno;
    for (int k = 0; k < s_kids.n; k++) {
        int st = 0;
        if (s_kids.done[k] || waitpid(s_kids.pid[k], &st, WNOHANG) != s_kids.pid[k]) continue;
        s_kids.status[k] = st;
        s_kids.done[k] = 1;
        if (WIFEXITED(st) && WEXITSTATUS(st) == DEVSPEC_EXIT_DEVICE) s_kids.stop = 1;
    }
    errno = saved;
}

/* After the coordinator: the workers stopped (Shutdown, then SIGTERM) and
 * the arenas of those that died without cleaning up removed. */
static void s_reap(int64_t n_pre, int64_t n_sc) {
    for (int k = 0; k < s_kids.n && s_kids.stop; k++) /* a device failed: some never heard the Shutdown */
        if (!s_kids.done[k]) kill(s_kids.pid[k], SIGTERM);
    for (int k = 0; k < s_kids.n; k++) {
        int st;
        for (int t = 0; t < 50 && !s_kids.done[k] && waitpid(s_kids.pid[k], &st, WNOHANG) == 0; t++) usleep(100000);
        if (!s_kids.done[k] && waitpid(s_kids.pid[k], &st, WNOHANG) == 0) {
            kill(s_kids.pid[k], SIGTERM);
            waitpid(s_kids.pid[k], &st, 0);
        }
    }
    for (int64_t i = 0; i < n_pre || i < n_sc; i++) {
        char name[96];
        snprintf(name, sizeof name, "s%d-prefill-%d", (int)getpid(), (int)i);
        if (i < n_pre) arena_unlink_stale(name); /* none when the worker removed its own */
        snprintf(name, sizeof name, "s%d-scorer-%d", (int)getpid(), (int)i);
        if (i < n_sc) arena_unlink_stale(name);
    }
}

/* The workers that could not use their device, named; returns 1. */
static int s_device_failed(void) {
    static const char *const roles[3] = {"prefill", "decode", "scorer"};
    for (int k = 0; k < s_kids.n; k++) {
        int st = s_kids.status[k];
        if (!s_kids.done[k] || !WIFEXITED(st) || WEXITSTATUS(st) != DEVSPEC_EXIT_DEVICE) continue;
        char d[16];
        fprintf(stderr, "tis serve: %s worker %d on %s cannot use its device (its reason is above): stopped; "
                "fix %s.device / %s.devices in the config (cpu runs anywhere)\n", roles[s_kids.role[k]],
                s_kids.index[k], devspec_str(&s_kids.dev[k], d, sizeof d), roles[s_kids.role[k]],
                roles[s_kids.role[k]]);
    }
    return 1;
}

/* prefill.head_as: one "NAME=PATH" or a list [A=P, B=Q], split in place
 * (list is ours) into out[*n]. 0, or 1 with the reason on stderr. */
static int s_head_as_list(char *list, const char **out, int64_t *n, int64_t cap) {
    if (!list) return 0;
    size_t len = strlen(list);
    if (len >= 2 && list[0] == '[' && list[len - 1] == ']') list[len - 1] = 0, list++;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        for (size_t e = strlen(t); e > 0 && t[e - 1] == ' ';) t[--e] = 0;
        if (!*t) continue;
        if (*n >= cap) {
            fprintf(stderr, "tis serve: prefill.head_as: at most %lld heads\n", (long long)cap);
            return 1;
        }
        out[(*n)++] = t;
    }
    return 0;
}

/* The heads: scorers need one; --head_as entries well formed. 0, or 1 with
 * the reason on stderr. */
static int s_check_heads(int64_t n_sc, bool head, const char *const *head_as, int64_t n_head_as) {
    if (n_sc > 0 && !head && !n_head_as) {
        fprintf(stderr, "tis serve: scorer workers need --head, --head_query or --head_as (or prefill.head in the "
                        "config)\n");
        return 1;
    }
    if (cli_check_head_as(head_as, n_head_as)) {
        fprintf(stderr, "tis serve: %s\n", tis_last_error());
        return 1;
    }
    return 0;
}

static int s_serve(int argc, char **argv, char **owned) {
    char def_front[96], def_back[96];
    coord_opts o = {.front = sec_default_endpoint(def_front, sizeof def_front, "front"),
                    .back = sec_default_endpoint(def_back, sizeof def_back, "back"), .max_queue = 64,
                    .heartbeat_ms = 1000, .liveness = 3, .max_attempts = 2, .wait_ms = 30000,
                    .job_timeout_ms = 600000, .lease_ms = 30000,
                    .context_ttl_ms = 600000};
    const char *model = cli_default_model(), *head = NULL, *head_q = NULL, *head_as[MAX_HEAD_AS], *head_as_list = NULL;
    int64_t n_head_as = 0;
    int64_t n_pre = 1, n_dec = 1, n_sc = 0, mb = 256, dbatch = 8;
    http_opts h = {.max_body = 1 << 20, .max_connections = 256,
                   .defaults = {.kv_policy = "full", .kv_budget = 1.0, .query_aware = true, .max_tokens = 256}};
    const char *listen = NULL, *dev[6] = {0}; /* <role>.device, then <role>.devices (DEV_*) */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config") && s_config(argv[i + 1], &o, &model, &head, &head_q, &head_as_list, &n_pre,
                                                     &n_dec, &n_sc, &mb, &dbatch, &h, &listen, dev, owned)) {
            fprintf(stderr, "tis serve: %s\n", tis_last_error());
            return 2;
        }
    /* the config's named heads first; --head_as adds to them */
    if (head_as_list && s_head_as_list(owned[OWNED_HEAD_AS], head_as, &n_head_as, MAX_HEAD_AS)) return 2;
    const char *config_path = NULL; /* read above */
    const cli_opt opts[] = {
        CLI_STR("--config", NULL, &config_path),
        CLI_STR("--front", NULL, &o.front),
        CLI_STR("--back", NULL, &o.back),
        CLI_STR("--model", "-m", &model),
        CLI_STR("--head", NULL, &head),
        CLI_STR("--head_query", NULL, &head_q),
        CLI_STRS("--head_as", NULL, head_as, &n_head_as, MAX_HEAD_AS),
        CLI_I64("--prefill", NULL, &n_pre, 0, MAX_CHILD / 2),
        CLI_I64("--decode", NULL, &n_dec, 0, MAX_CHILD / 2),
        CLI_I64("--scorer", NULL, &n_sc, 0, MAX_CHILD / 4),
        CLI_I64("--arena_mb", NULL, &mb, 1, 1 << 20),
        CLI_I64("--decode_batch", NULL, &dbatch, 1, 256),
        CLI_I64("--max_queue", NULL, &o.max_queue, 1, 1 << 20),
        CLI_I64("--heartbeat_ms", NULL, &o.heartbeat_ms, 10, 600000),
        CLI_I64("--wait_ms", NULL, &o.wait_ms, 1, 86400000),
        CLI_I64("--job_timeout_ms", NULL, &o.job_timeout_ms, 100, 86400000),
        CLI_I64("--lease_ms", NULL, &o.lease_ms, 50, 86400000),
        CLI_I64("--stop_after", NULL, &o.stop_after, 1, INT64_MAX),
        CLI_KV_TYPE,
        CLI_STR("--http", NULL, &listen),
        CLI_STR("--key", NULL, &o.sec.key),
        CLI_STR("--allow", NULL, &o.sec.allow),
        CLI_FLAG("--insecure", NULL, &o.sec.insecure),
        CLI_END,
    };
    int prc = cli_parse_opts("serve", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!*o.front) o.front = def_front; /* "" in a config: the defaults */
    if (!*o.back) o.back = def_back;
    if (o.sec.key && !*o.sec.key) o.sec.key = NULL;
    if (o.sec.allow && !*o.sec.allow) o.sec.allow = NULL;
    char arena_mb[32], dbatch_s[32];
    snprintf(arena_mb, sizeof arena_mb, "%lld", (long long)mb);
    snprintf(dbatch_s, sizeof dbatch_s, "%lld", (long long)dbatch);
    if (s_check_heads(n_sc, head || head_q, head_as, n_head_as)) return 2;
    h.defaults.head_as = head_as; /* the HTTP front reads policies with the served heads */
    h.defaults.n_head_as = n_head_as;
    static const char *const roles[3] = {"prefill", "decode", "scorer"};
    int64_t n_role[3] = {n_pre, n_dec, n_sc}, n_all = 0;
    devspec ds[3][MAX_CHILD];
    for (int k = 0; k < 3; k++) { /* <role>.device(s): a worker per listed GPU (devspec.h) */
        if (devspec_expand(roles[k], n_role[k], dev[k], dev[3 + k], ds[k], MAX_CHILD, &n_role[k])) {
            fprintf(stderr, "tis serve: %s\n", tis_last_error());
            return 2;
        }
        n_all += n_role[k];
    }
    if (n_all > MAX_CHILD) {
        fprintf(stderr, "tis serve: %lld worker processes (%d at most)\n", (long long)n_all, MAX_CHILD);
        return 2;
    }
    char hb[32], lease[32];
    snprintf(hb, sizeof hb, "%lld", (long long)o.heartbeat_ms);
    snprintf(lease, sizeof lease, "%lld", (long long)o.lease_ms);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* no exit is missed between a fork and its record */
    struct sigaction sa = {0};
    sa.sa_handler = s_on_child;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < n_role[k]; i++) {
            char d[16];
            s_kids.role[s_kids.n] = k;
            s_kids.index[s_kids.n] = (int)i;
            s_kids.dev[s_kids.n] = ds[k][i];
            s_kids.pid[s_kids.n++] =
                s_spawn(roles[k], (int)i, devspec_str(&ds[k][i], d, sizeof d), o.back, &o.sec, model,
                        k == DEV_DEC ? NULL : head, k == DEV_DEC ? NULL : head_q, head_as, k == DEV_DEC ? 0 : n_head_as,
                        k == DEV_SC ? "16" : arena_mb, hb, dbatch_s, lease);
        }
    sigprocmask(SIG_SETMASK, &old, NULL);
    n_pre = n_role[DEV_PRE], n_dec = n_role[DEV_DEC], n_sc = n_role[DEV_SC];
    fprintf(stderr, "[serve] front %s | back %s | %lld prefill + %lld scorer + %lld decode workers\n", o.front,
            o.back, (long long)n_pre, (long long)n_sc, (long long)n_dec);
    for (int k = 0; k < s_kids.n; k++) /* the GPU workers, one line each */
        if (s_kids.dev[k].cuda)
            fprintf(stderr, "[serve] %s worker %d on cuda:%d (pid %d)\n", roles[s_kids.role[k]], s_kids.index[k],
                    s_kids.dev[k].index, (int)s_kids.pid[k]);
    o.stop = &s_kids.stop;
    /* after the forks: the front's threads are this process's alone */
    http_front *hf = NULL;
    char model_id[256];
    h.n_role[0] = n_pre, h.n_role[1] = n_sc, h.n_role[2] = n_dec;
    h.keys = (tis_client_keys){.key_file = o.sec.key, .server_key_file = o.sec.key, .insecure = o.sec.insecure};
    int rc = s_http_start(&hf, &h, listen, o.front, model, model_id, sizeof model_id);
    if (rc) cli_fail("http");
    else if ((rc = coord_run(&o))) cli_fail("coordinator");
    http_front_stop(&hf);
    s_reap(n_pre, n_sc);
    if (!rc && s_kids.stop) rc = s_device_failed();
    return rc ? 1 : 0;
}

int cmd_serve(int argc, char **argv) {
    char *owned[N_OWNED] = {0}; /* strings read from a config */
    int rc = s_serve(argc, argv, owned);
    for (int k = 0; k < N_OWNED; k++) free(owned[k]);
    return rc;
}
