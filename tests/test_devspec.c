/* test_devspec: serve.yaml's device / devices per role expanded into worker
 * processes (counts, order, every refusal with its message), tis worker
 * --device, and tis serve stopping with the reason when a worker cannot use
 * its device (TIS_FAULT_DEVICE stands in for a missing GPU: no GPU needed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devspec.h"
#include "tiny_model.h"
#include "tis_error.h"
#include "tt.h"

static void s_parse(void) {
    tt_case("parse");
    devspec d;
    char b[16];
    TT_OK(devspec_parse("cpu", &d));
    TT_CHECK(!d.cuda && !strcmp(devspec_str(&d, b, sizeof b), "cpu"));
    TT_OK(devspec_parse("cuda", &d));
    TT_CHECK(d.cuda && d.index == 0);
    TT_OK(devspec_parse("cuda:7", &d));
    TT_CHECK(d.cuda && d.index == 7 && !strcmp(devspec_str(&d, b, sizeof b), "cuda:7"));
    static const char *const bad[] = {"", "gpu", "cuda:", "cuda:-1", "cuda:64", "cuda:1x", "cuda: 1", "CPU",
                                      "cuda:+1", "cuda:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        TT_FAILS(devspec_parse(bad[i], &d), TIS_EINVAL);
        TT_CHECK(strstr(tis_last_error(), "cpu, cuda or cuda:N") != NULL);
    }
    TT_FAILS(devspec_parse(NULL, &d), TIS_EINVAL);
}

static void s_expand(void) {
    tt_case("expand");
    devspec out[16];
    int64_t n = -1;
    TT_OK(devspec_expand("prefill", 3, NULL, NULL, out, 16, &n)); /* no device: cpu */
    TT_CHECK(n == 3 && !out[0].cuda && !out[2].cuda);
    TT_OK(devspec_expand("decode", 0, "cpu", NULL, out, 16, &n));
    TT_CHECK(n == 0);
    TT_OK(devspec_expand("decode", 2, "cpu", NULL, out, 16, &n));
    TT_CHECK(n == 2 && !out[1].cuda);
    /* one refusal per rule, each naming the role */
    TT_FAILS(devspec_expand("prefill", 1, "cuda:0", "[0,1]", out, 16, &n), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "prefill: give device or devices, not both") != NULL);
    TT_FAILS(devspec_expand("decode", 1, NULL, "[]", out, 16, &n), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "decode.devices is empty") != NULL);
    TT_FAILS(devspec_expand("decode", 1, NULL, "[1,1]", out, 16, &n), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "lists GPU 1 twice") != NULL);
    TT_FAILS(devspec_expand("decode", 1, NULL, "[0,x]", out, 16, &n), TIS_EINVAL);
    TT_FAILS(devspec_expand("decode", 1, NULL, "0,1", out, 16, &n), TIS_EINVAL);
    TT_FAILS(devspec_expand("decode", 1, NULL, "[0,-1]", out, 16, &n), TIS_EINVAL);
    TT_FAILS(devspec_expand("scorer", 0, NULL, "[0,1]", out, 16, &n), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "scorer.devices lists 2 GPUs but scorer.workers is 0") != NULL);
    TT_FAILS(devspec_expand("prefill", 1, "tpu", NULL, out, 16, &n), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "prefill.device: device 'tpu'") != NULL);
    if (!devspec_have_cuda()) { /* CPU build: a GPU anywhere in the config is refused at load */
        TT_FAILS(devspec_expand("decode", 1, "cuda:0", NULL, out, 16, &n), TIS_EUNSUPPORTED);
        TT_CHECK(strstr(tis_last_error(), "tis was built without CUDA") != NULL);
        TT_FAILS(devspec_expand("prefill", 2, NULL, "[0,1]", out, 16, &n), TIS_EUNSUPPORTED);
        TT_CHECK(strstr(tis_last_error(), "tis was built without CUDA") != NULL);
        return;
    }
    /* CUDA build: workers counts workers per listed GPU, in list order */
    TT_OK(devspec_expand("prefill", 2, NULL, "[1,0]", out, 16, &n));
    TT_CHECK(n == 4 && out[0].cuda && out[0].index == 1 && out[1].index == 1 && out[2].index == 0 &&
             out[3].index == 0);
    TT_OK(devspec_expand("decode", 3, "cuda:2", NULL, out, 16, &n));
    TT_CHECK(n == 3 && out[2].cuda && out[2].index == 2);
    TT_OK(devspec_expand("decode", 1, "cuda", NULL, out, 16, &n));
    TT_CHECK(n == 1 && out[0].cuda && out[0].index == 0);
    TT_FAILS(devspec_expand("decode", 9, NULL, "[0,1]", out, 16, &n), TIS_ERANGE); /* 18 > 16 */
}

/* tis worker --device and the check every worker runs at start. */
static void s_worker(void) {
    tt_case("worker");
    static char out[1 << 14];
    devspec cpu = {0}, gpu = {.cuda = true, .index = 63};
    TT_OK(devspec_check(&cpu, "w"));
    TT_FAILS(devspec_check(&gpu, "w"), TIS_EUNSUPPORTED); /* no machine has 64 GPUs (nor this build any) */
    TT_CHECK(strstr(tis_last_error(), "cuda:63") != NULL);
    setenv("TIS_FAULT_DEVICE", "pre", 1);
    TT_FAILS(devspec_check(&cpu, "s1-prefill-0"), TIS_EUNSUPPORTED);
    TT_OK(devspec_check(&cpu, "s1-decode-0"));
    unsetenv("TIS_FAULT_DEVICE");
    TT_CHECK(tt_tis("worker --role decode --connect ipc:///nonexistent/x --name w --device gpu0", out,
                    sizeof out) == 2 &&
             strstr(out, "device 'gpu0'"));
    /* a GPU it cannot use: status 3 and the probe's reason, before the model loads */
    int rc = tt_tis("worker --role decode --connect ipc:///nonexistent/x --name w -m /nonexistent "
                    "--device cuda:63", out, sizeof out);
    TT_CHECK(rc == DEVSPEC_EXIT_DEVICE && strstr(out, "tis worker w: cuda:63: ") &&
             strstr(out, devspec_have_cuda() ? "" : "tis was built without CUDA"));
    if (rc != DEVSPEC_EXIT_DEVICE) fprintf(stderr, "worker rc %d: %s\n", rc, out);
}

/* tis serve: a worker that cannot use its device stops it, with the role,
 * the device and the reason, instead of serving without the role. */
static void s_serve(void) {
    tt_case("serve");
    static char out[1 << 16];
    char args[2048];
    const char *tiny = tt_path("tiny.gguf");
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    setenv("TIS_FAULT_DEVICE", "decode", 1);
    snprintf(args, sizeof args,
             "serve -m '%s' --prefill 1 --decode 1 --front 'ipc://%s' --back 'ipc://%s' --heartbeat_ms 100", tiny,
             tt_path("front"), tt_path("back"));
    int rc = tt_tis(args, out, sizeof out);
    unsetenv("TIS_FAULT_DEVICE");
    TT_CHECK(rc == 1 && strstr(out, "unusable: TIS_FAULT_DEVICE=decode") &&
             strstr(out, "tis serve: decode worker 0 on cpu cannot use its device") &&
             strstr(out, "fix decode.device / decode.devices"));
    if (rc != 1) fprintf(stderr, "serve rc %d: %s\n", rc, out);
    /* a config with a GPU: refused at load without CUDA (exit 2, nothing
     * started); in a CUDA build on a machine without a GPU, the workers'
     * real probe fails and tis serve stops with its reason */
    char yml[512];
    snprintf(yml, sizeof yml, "%s", tt_path("gpu.yaml"));
    const char *y = "decode:\n  workers: 2\n  devices: [0, 1]\n";
    TT_OK(tt_write_file(yml, y, strlen(y)));
    snprintf(args, sizeof args, "serve -m '%s' --config '%s' --front 'ipc://%s' --back 'ipc://%s'", tiny, yml,
             tt_path("front"), tt_path("back"));
    devspec gpu0 = {.cuda = true, .index = 0};
    if (!devspec_have_cuda()) {
        TT_CHECK(tt_tis(args, out, sizeof out) == 2 && strstr(out, "tis was built without CUDA"));
    } else if (devspec_check(&gpu0, "probe")) {
        rc = tt_tis(args, out, sizeof out);
        /* the workers on cuda:0 and cuda:1 start together: whichever reports first stops tis serve */
        bool said = (strstr(out, "cuda:0: no CUDA device") || strstr(out, "cuda:1: no CUDA device")) &&
                    strstr(out, "tis serve: decode worker ") && strstr(out, "cannot use its device");
        TT_CHECK(rc == 1 && said);
        if (rc != 1 || !said) fprintf(stderr, "serve on a missing GPU: rc %d: %s\n", rc, out);
    }
}

int main(void) {
    s_parse();
    s_expand();
    s_worker();
    s_serve();
    return tt_done("test_devspec");
}
