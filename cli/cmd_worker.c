/* tis worker: one pipeline worker process (normally started by tis serve). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tis_error.h"
#include "worker.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis worker --role prefill|scorer|decode --connect ENDPOINT --name ID [options]\n"
            "  -m, --model PATH      model (default %s)\n"
            "      --head PATH       importance head for tis (prefill, scorer)\n"
            "      --head_query PATH query-aware head for tis_query (prefill, scorer)\n"
            "      --arena_mb N      prefill, scorer: shared-memory arena size (default 256)\n"
            "      --heartbeat_ms N  (default 1000)\n"
            "      --lease_ms N      block lease until renewed (default 30000)\n"
            "      --max_batch N     decode: requests generated together (default 8)\n"
            "  -t, --threads N       BLAS threads\n",
            cli_default_model());
}

int cmd_worker(int argc, char **argv) {
    worker_opts o = {.model_path = cli_default_model(), .arena_bytes = (size_t)256 << 20,
                     .heartbeat_ms = 1000, .lease_ms = 30000};
    int64_t arena_mb = 256, hb = 1000, lease = 30000, threads = 0, max_batch = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tis worker: option '%s' needs a value (or is unknown)\n\n", a);
            s_usage(stderr);
            return 2;
        }
        bool ok = true;
        if (!strcmp(a, "--role")) o.role = v;
        else if (!strcmp(a, "--connect")) o.endpoint = v;
        else if (!strcmp(a, "--name")) o.name = v;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o.model_path = v;
        else if (!strcmp(a, "--head")) o.head_path = v;
        else if (!strcmp(a, "--head_query")) o.head_query_path = v;
        else if (!strcmp(a, "--arena_mb")) ok = cli_parse_i64(v, 1, 1 << 20, &arena_mb);
        else if (!strcmp(a, "--heartbeat_ms")) ok = cli_parse_i64(v, 10, 600000, &hb);
        else if (!strcmp(a, "--max_batch")) ok = cli_parse_i64(v, 1, 256, &max_batch);
        else if (!strcmp(a, "--lease_ms")) ok = cli_parse_i64(v, 10, 86400000, &lease);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_i64(v, 1, 1024, &threads);
        else {
            fprintf(stderr, "tis worker: unknown option '%s'\n\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tis worker: bad value '%s' for %s\n\n", v, a);
            s_usage(stderr);
            return 2;
        }
        i++;
    }
    if (!o.role || !o.endpoint || !o.name) {
        fprintf(stderr, "tis worker: --role, --connect and --name are required\n\n");
        s_usage(stderr);
        return 2;
    }
    if (strcmp(o.role, "prefill") && strcmp(o.role, "scorer") && strcmp(o.role, "decode")) {
        fprintf(stderr, "tis worker: --role is prefill, scorer or decode\n");
        return 2;
    }
    cli_threads(threads);
    o.arena_bytes = (size_t)arena_mb << 20;
    o.heartbeat_ms = hb;
    o.lease_ms = (uint32_t)lease;
    o.max_batch = max_batch;
    if (worker_run(&o)) return cli_fail("worker");
    return 0;
}
