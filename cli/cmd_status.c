/* tis status: what a running tis serve is doing. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "secure.h"
#include "tis_client.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis status [--connect ENDPOINT] [--json] [--watch S]\n"
            "      --connect ENDPOINT   the coordinator's front end (default ipc:///tmp/tis-$UID/front)\n"
            CLI_CONNECT_KEYS_USAGE
            "      --json               the raw status object\n"
            "      --watch S            print again every S seconds (until interrupted)\n"
            "      --timeout_ms N       wait this long for the answer (default 3000)\n");
}

static double s_num(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : 0.0;
}

static const char *s_str(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : "";
}

static void s_print(const char *json) {
    cJSON *o = cJSON_Parse(json);
    if (!o) {
        puts(json);
        return;
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "queues"),
                *r = cJSON_GetObjectItemCaseSensitive(o, "requests"),
                *h = cJSON_GetObjectItemCaseSensitive(o, "handoff"), *x;
    printf("coordinator up %.0f s | requests: %.0f submitted, %.0f answered, %.0f errors, %.0f busy, %.0f retried\n",
           s_num(o, "uptime_s"), s_num(r, "submitted"), s_num(r, "answered"), s_num(r, "errors"), s_num(r, "busy"),
           s_num(r, "retried"));
    printf("queues: %.0f waiting for prefill, %.0f prefilling, %.0f waiting for a scorer, %.0f scoring, "
           "%.0f waiting for decode, %.0f decoding\n",
           s_num(q, "waiting_prefill"), s_num(q, "prefilling"), s_num(q, "waiting_score"), s_num(q, "scoring"),
           s_num(q, "waiting_decode"), s_num(q, "decoding"));
    double hb = s_num(h, "bytes"), hn = s_num(h, "count"), fb = s_num(h, "full_kv_bytes");
    printf("hand-off: %.0f blocks, %.2f MiB (%.2f MiB a block; full caches would be %.2f MiB: %.1fx)\n", hn,
           hb / 1048576.0, hn > 0 ? hb / hn / 1048576.0 : 0.0, fb / 1048576.0, hb > 0 ? fb / hb : 0.0);
    printf("\n%-28s %-8s %6s %8s %10s %10s\n", "worker", "role", "free", "running", "jobs done", "last seen");
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, "workers"))
        printf("%-28s %-8s %6.0f %8.0f %10.0f %9.1fs\n", s_str(x, "id"), s_str(x, "role"), s_num(x, "free_slots"),
               s_num(x, "running"), s_num(x, "jobs_done"), s_num(x, "last_seen_s"));
    printf("\n%-8s %6s %10s %10s %10s %10s %10s   (ms, last requests)\n", "stage", "n", "mean", "p50", "p90", "p99",
           "max");
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, "latency"))
        printf("%-8s %6.0f %10.2f %10.2f %10.2f %10.2f %10.2f\n", s_str(x, "stage"), s_num(x, "n"),
               1e3 * s_num(x, "mean_s"), 1e3 * s_num(x, "p50_s"), 1e3 * s_num(x, "p90_s"), 1e3 * s_num(x, "p99_s"),
               1e3 * s_num(x, "max_s"));
    cJSON_Delete(o);
}

int cmd_status(int argc, char **argv) {
    char def[96];
    const char *ep = sec_default_endpoint(def, sizeof def, "front");
    tis_client_keys keys = {0};
    bool insecure = false;
    bool json = false;
    int64_t watch = 0, timeout_ms = 3000;
    const cli_opt opts[] = {
        CLI_STR("--connect", NULL, &ep),
        CLI_FLAG("--json", NULL, &json),
        CLI_I64("--watch", NULL, &watch, 1, 86400),
        CLI_I64("--timeout_ms", NULL, &timeout_ms, 1, 600000),
        CLI_CONNECT_KEYS(&keys.key_file, &keys.server_key_file, &insecure),
        CLI_END,
    };
    int prc = cli_parse_opts("status", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    tis_client *c = NULL;
    keys.insecure = insecure;
    if (tis_client_open_keys(ep, &keys, &c)) return cli_fail("connecting");
    int rc = 0;
    for (;;) {
        char *txt = NULL;
        if (tis_client_status(c, (int)timeout_ms, &txt)) {
            rc = cli_fail("status");
            break;
        }
        if (json) puts(txt);
        else s_print(txt);
        free(txt);
        fflush(stdout);
        if (!watch) break;
        printf("\n");
        sleep((unsigned)watch);
    }
    tis_client_close(c);
    return rc;
}
