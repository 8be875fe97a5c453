/* tis worker: one pipeline worker process (normally started by tis serve). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "devspec.h"
#include "tis_error.h"
#include "worker.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis worker --role prefill|scorer|decode --connect ENDPOINT --name ID [options]\n"
            "  -m, --model PATH      model (default %s)\n"
            "      --head PATH       importance head for tis (prefill, scorer)\n"
            "      --head_query PATH query-aware head for tis_query (prefill, scorer)\n"
            "      --head_as NAME=PATH more heads (prefill, scorer): policy NAME is tis with that head;\n"
            "                        unions A|B of two policies (at most 8)\n"
            "      --arena_mb N      prefill, scorer: shared-memory arena size (default 256)\n"
            "      --heartbeat_ms N  (default 1000)\n"
            "      --lease_ms N      block lease until renewed (default 30000)\n"
            "      --max_batch N     decode: requests generated together (default 8)\n"
            "      --device D        cpu (default) or cuda:N: where its blocks live (docs/pipeline.md);\n"
            "                        a GPU it cannot use ends it with status 3 and the reason\n"
            "  -t, --threads N       compute threads\n"
            "      --key FILE        tcp: our key pair (tis keygen; its .pub on the coordinator's --allow)\n"
            "      --server_key FILE tcp: the coordinator's public key\n"
            "      --insecure        tcp without keys (the coordinator must allow it too)\n",
            cli_default_model());
}

int cmd_worker(int argc, char **argv) {
    worker_opts o = {.model_path = cli_default_model(), .arena_bytes = (size_t)256 << 20,
                     .heartbeat_ms = 1000, .lease_ms = 30000};
    int64_t arena_mb = 256, hb = 1000, lease = 30000, threads = 0, max_batch = 8;
    const char *device = "cpu", *head_as[8];
    const cli_opt opts[] = {
        CLI_STR("--role", NULL, &o.role),
        CLI_STR("--connect", NULL, &o.endpoint),
        CLI_STR("--name", NULL, &o.name),
        CLI_STR("--model", "-m", &o.model_path),
        CLI_STR("--head", NULL, &o.head_path),
        CLI_STR("--head_query", NULL, &o.head_query_path),
        CLI_STRS("--head_as", NULL, head_as, &o.n_head_as, 8),
        CLI_STR("--device", NULL, &device),
        CLI_I64("--arena_mb", NULL, &arena_mb, 1, 1 << 20),
        CLI_I64("--heartbeat_ms", NULL, &hb, 10, 600000),
        CLI_I64("--max_batch", NULL, &max_batch, 1, 256),
        CLI_I64("--lease_ms", NULL, &lease, 10, 86400000),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_CONNECT_KEYS(&o.sec.key, &o.sec.server_key, &o.sec.insecure),
        CLI_END,
    };
    int prc = cli_parse_opts("worker", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    o.head_as = head_as;
    if (!o.role || !o.endpoint || !o.name) {
        fprintf(stderr, "tis worker: --role, --connect and --name are required\n\n");
        s_usage(stderr);
        return 2;
    }
    if (strcmp(o.role, "prefill") && strcmp(o.role, "scorer") && strcmp(o.role, "decode")) {
        fprintf(stderr, "tis worker: --role is prefill, scorer or decode\n");
        return 2;
    }
    if (devspec_parse(device, &o.device)) {
        fprintf(stderr, "tis worker: %s\n", tis_last_error());
        return 2;
    }
    if (devspec_check(&o.device, o.name)) { /* the probe's reason; tis serve stops on this status */
        fprintf(stderr, "tis worker %s: %s\n", o.name, tis_last_error());
        return DEVSPEC_EXIT_DEVICE;
    }
    cli_threads(threads);
    o.arena_bytes = (size_t)arena_mb << 20;
    o.heartbeat_ms = hb;
    o.lease_ms = (uint32_t)lease;
    o.max_batch = max_batch;
    if (worker_run(&o)) return cli_fail("worker");
    return 0;
}
