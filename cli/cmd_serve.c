/* tis serve: the coordinator, with local worker processes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "coord.h"
#include "tis_error.h"
#include "yaml_kv.h"

enum { MAX_CHILD = 48 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis serve [--config FILE.yaml] [options]\n"
            "      --config FILE        a YAML config (configs/serve.yaml shows every key);\n"
            "                           options given on the command line override it\n"
            "      --front ENDPOINT     clients connect here (default ipc:///tmp/tis-front)\n"
            "      --back ENDPOINT      workers connect here (default ipc:///tmp/tis-back)\n"
            "      --prefill N          local prefill workers to start (default 1)\n"
            "      --decode N           local decode workers to start (default 1)\n"
            "      --scorer N           local scorer workers (default 0): the importance head of\n"
            "                           tis / tis_query runs there instead of in the prefill worker\n"
            "  -m, --model PATH         model for the workers (default %s)\n"
            "      --head PATH          importance head (tis) for the prefill workers\n"
            "      --head_query PATH    query-aware head (tis_query)\n"
            "      --arena_mb N         prefill workers' shared-memory arena (default 256)\n"
            "      --decode_batch N     requests a decode worker generates together (default 8)\n"
            "      --max_queue N        waiting requests before Busy (default 64)\n"
            "      --heartbeat_ms N     (default 1000)\n"
            "      --wait_ms N          a request waiting this long with no worker of its role\n"
            "                           alive gets an Error (default 30000)\n"
            "      --job_timeout_ms N   silence allowed to a worker busy with a job (default 600000)\n"
            "      --lease_ms N         a block handed between workers lives this long unless renewed;\n"
            "                           the coordinator renews those still waiting (default 30000)\n"
            "      --stop_after N       exit after N answers (tests)\n"
            "Not yet: CUDA workers (see docs/STATUS.md).\n",
            cli_default_model());
}

static pid_t s_spawn(const char *role, int i, const char *back, const char *model, const char *head,
                     const char *head_q, const char *arena_mb, const char *hb, const char *batch, const char *lease) {
    char name[64];
    snprintf(name, sizeof name, "s%d-%s-%d", (int)getpid(), role, i);
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* workers end with their coordinator */
    const char *argv[24];
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
    if (head) argv[n++] = "--head", argv[n++] = head;
    if (head_q) argv[n++] = "--head_query", argv[n++] = head_q;
    argv[n] = NULL;
    execv("/proc/self/exe", (char *const *)argv);
    _exit(127);
}

/* The settings of a YAML config (before the flags, which override it). */
static int s_config(const char *path, coord_opts *o, const char **model, const char **head, const char **head_q,
                    int64_t *n_pre, int64_t *n_dec, int64_t *n_sc, int64_t *mb, int64_t *dbatch, char **owned) {
    yaml_kv kv;
    int rc = yaml_kv_load(&kv, path);
    if (rc) return rc;
    const char *dev[3] = {"cpu", "cpu", "cpu"};
    if ((rc = yaml_kv_str(&kv, "model", model)) || (rc = yaml_kv_str(&kv, "front", &o->front)) ||
        (rc = yaml_kv_str(&kv, "back", &o->back)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.max_queue", 1, 1 << 20, &o->max_queue)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.heartbeat_ms", 10, 600000, &o->heartbeat_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.liveness", 1, 1000, &o->liveness)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.job_timeout_ms", 100, 86400000, &o->job_timeout_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.lease_ms", 50, 86400000, &o->lease_ms)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.max_attempts", 1, 100, &o->max_attempts)) ||
        (rc = yaml_kv_i64(&kv, "coordinator.wait_ms", 1, 86400000, &o->wait_ms)) ||
        (rc = yaml_kv_i64(&kv, "prefill.workers", 0, MAX_CHILD / 2, n_pre)) ||
        (rc = yaml_kv_str(&kv, "prefill.device", &dev[0])) ||
        (rc = yaml_kv_i64(&kv, "prefill.arena_mb", 1, 1 << 20, mb)) ||
        (rc = yaml_kv_str(&kv, "prefill.head", head)) || (rc = yaml_kv_str(&kv, "prefill.head_query", head_q)) ||
        (rc = yaml_kv_i64(&kv, "scorer.workers", 0, MAX_CHILD / 4, n_sc)) ||
        (rc = yaml_kv_str(&kv, "scorer.device", &dev[2])) ||
        (rc = yaml_kv_i64(&kv, "decode.workers", 0, MAX_CHILD / 2, n_dec)) ||
        (rc = yaml_kv_str(&kv, "decode.device", &dev[1])) ||
        (rc = yaml_kv_i64(&kv, "decode.max_batch", 1, 256, dbatch)) || (rc = yaml_kv_unused(&kv))) {
        yaml_kv_free(&kv);
        return rc;
    }
    static const char *const role[3] = {"prefill", "decode", "scorer"};
    for (int k = 0; k < 3 && !rc; k++)
        if (strcmp(dev[k], "cpu"))
            rc = tis_error(TIS_EUNSUPPORTED,
                           "%s: %s.device '%s': only cpu workers exist so far (CUDA workers are not built yet)",
                           path, role[k], dev[k]);
    /* the strings live in kv: keep copies for the run (owned[], freed by the caller) */
    const char **sv[] = {model, &o->front, &o->back, head, head_q};
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

static int s_serve(int argc, char **argv, char **owned) {
    coord_opts o = {.front = "ipc:///tmp/tis-front", .back = "ipc:///tmp/tis-back", .max_queue = 64,
                    .heartbeat_ms = 1000, .liveness = 3, .max_attempts = 2, .wait_ms = 30000,
                    .job_timeout_ms = 600000, .lease_ms = 30000};
    const char *model = cli_default_model(), *head = NULL, *head_q = NULL;
    int64_t n_pre = 1, n_dec = 1, n_sc = 0, mb = 256, dbatch = 8;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config") &&
            s_config(argv[i + 1], &o, &model, &head, &head_q, &n_pre, &n_dec, &n_sc, &mb, &dbatch, owned)) {
            fprintf(stderr, "tis serve: %s\n", tis_last_error());
            return 2;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tis serve: option '%s' needs a value (or is unknown)\n\n", a);
            s_usage(stderr);
            return 2;
        }
        bool ok = true;
        if (!strcmp(a, "--config")) ; /* read above */
        else if (!strcmp(a, "--front")) o.front = v;
        else if (!strcmp(a, "--back")) o.back = v;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--head")) head = v;
        else if (!strcmp(a, "--head_query")) head_q = v;
        else if (!strcmp(a, "--prefill")) ok = cli_parse_i64(v, 0, MAX_CHILD / 2, &n_pre);
        else if (!strcmp(a, "--decode")) ok = cli_parse_i64(v, 0, MAX_CHILD / 2, &n_dec);
        else if (!strcmp(a, "--scorer")) ok = cli_parse_i64(v, 0, MAX_CHILD / 4, &n_sc);
        else if (!strcmp(a, "--arena_mb")) ok = cli_parse_i64(v, 1, 1 << 20, &mb);
        else if (!strcmp(a, "--decode_batch")) ok = cli_parse_i64(v, 1, 256, &dbatch);
        else if (!strcmp(a, "--max_queue")) ok = cli_parse_i64(v, 1, 1 << 20, &o.max_queue);
        else if (!strcmp(a, "--heartbeat_ms")) ok = cli_parse_i64(v, 10, 600000, &o.heartbeat_ms);
        else if (!strcmp(a, "--wait_ms")) ok = cli_parse_i64(v, 1, 86400000, &o.wait_ms);
        else if (!strcmp(a, "--job_timeout_ms")) ok = cli_parse_i64(v, 100, 86400000, &o.job_timeout_ms);
        else if (!strcmp(a, "--lease_ms")) ok = cli_parse_i64(v, 50, 86400000, &o.lease_ms);
        else if (!strcmp(a, "--stop_after")) ok = cli_parse_i64(v, 1, INT64_MAX, &o.stop_after);
        else {
            fprintf(stderr, "tis serve: unknown option '%s'\n\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tis serve: bad value '%s' for %s\n\n", v, a);
            s_usage(stderr);
            return 2;
        }
        i++;
    }
    char arena_mb[32], dbatch_s[32];
    snprintf(arena_mb, sizeof arena_mb, "%lld", (long long)mb);
    snprintf(dbatch_s, sizeof dbatch_s, "%lld", (long long)dbatch);
    if (n_sc > 0 && !head && !head_q) {
        fprintf(stderr, "tis serve: scorer workers need --head and/or --head_query (or prefill.head in the config)\n");
        return 2;
    }
    char hb[32], lease[32];
    snprintf(hb, sizeof hb, "%lld", (long long)o.heartbeat_ms);
    snprintf(lease, sizeof lease, "%lld", (long long)o.lease_ms);
    pid_t kids[MAX_CHILD];
    int n_kids = 0;
    for (int64_t i = 0; i < n_pre; i++)
        kids[n_kids++] = s_spawn("prefill", (int)i, o.back, model, head, head_q, arena_mb, hb, dbatch_s, lease);
    for (int64_t i = 0; i < n_dec; i++)
        kids[n_kids++] = s_spawn("decode", (int)i, o.back, model, NULL, NULL, arena_mb, hb, dbatch_s, lease);
    for (int64_t i = 0; i < n_sc; i++)
        kids[n_kids++] = s_spawn("scorer", (int)i, o.back, model, head, head_q, "16", hb, dbatch_s, lease);
    fprintf(stderr, "[serve] front %s | back %s | %lld prefill + %lld scorer + %lld decode workers\n", o.front,
            o.back, (long long)n_pre, (long long)n_sc, (long long)n_dec);
    int rc = coord_run(&o);
    if (rc) cli_fail("coordinator");
    /* coord_run sent Shutdown to the workers it knew; wait, then make sure,
     * and remove the arenas of prefill workers that died without cleaning up. */
    for (int k = 0; k < n_kids; k++) {
        int st;
        for (int t = 0; t < 50 && waitpid(kids[k], &st, WNOHANG) == 0; t++) usleep(100000);
        if (waitpid(kids[k], &st, WNOHANG) == 0) {
            kill(kids[k], SIGTERM);
            waitpid(kids[k], &st, 0);
        }
    }
    for (int64_t i = 0; i < n_pre || i < n_sc; i++) {
        char shm[96];
        snprintf(shm, sizeof shm, "/tis-s%d-prefill-%d", (int)getpid(), (int)i);
        if (i < n_pre) shm_unlink(shm); /* ENOENT when the worker removed it itself */
        snprintf(shm, sizeof shm, "/tis-s%d-scorer-%d", (int)getpid(), (int)i);
        if (i < n_sc) shm_unlink(shm);
    }
    return rc ? 1 : 0;
}

int cmd_serve(int argc, char **argv) {
    char *owned[5] = {0}; /* strings read from a config */
    int rc = s_serve(argc, argv, owned);
    for (int k = 0; k < 5; k++) free(owned[k]);
    return rc;
}
