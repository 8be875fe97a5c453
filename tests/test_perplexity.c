/* test_perplexity: tis perplexity agrees with llama.cpp's llama-perplexity
 * on the default model and a text every Debian machine has (fixture in
 * tests/golden/perplexity.json, within its tolerance); refusals. Skipped
 * when the model is missing or the text is not the fixture's. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "perplexity.h"
#include "tt.h"

int main(void) {
    const char *path = tt_model();
    char *js = tt_read_file(tt_src("tests/golden/perplexity.json"), NULL);
    cJSON *fx = js ? cJSON_Parse(js) : NULL;
    TT_CHECK(fx != NULL);
    if (!path || !fx) return tt_done("test_perplexity");
    const char *text_path = cJSON_GetObjectItem(fx, "text")->valuestring;
    const char *want_sha = cJSON_GetObjectItem(fx, "text_sha256")->valuestring;
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", text_path);
    if (tt_sh(cmd, out, sizeof out) != 0 || strncmp(out, want_sha, 64) != 0) {
        fprintf(stderr, "skip: %s is missing or not the fixture's text\n", text_path);
        return 77;
    }
    size_t len = 0;
    char *text = tt_read_file(text_path, &len);
    model *m = NULL;
    forward_state *st = NULL;
    TT_OK(model_load(&m, path));
    if (m) TT_OK(forward_state_new(&st, m, backend_cpu(), 512));
    if (!st || !text) return tt_done("test_perplexity");

    TT_CASE("agrees with llama-perplexity");
    int64_t n_ctx = cJSON_GetObjectItem(fx, "n_ctx")->valueint, chunks = cJSON_GetObjectItem(fx, "chunks")->valueint;
    double ref = cJSON_GetObjectItem(fx, "ppl")->valuedouble, tol = cJSON_GetObjectItem(fx, "tolerance_rel")->valuedouble;
    perplexity_result r;
    TT_OK(perplexity_run(st, text, len, n_ctx, chunks, NULL, NULL, &r));
    fprintf(stderr, "  tis PPL %.4f +/- %.4f, llama.cpp %.4f: %+.2f %%\n", r.ppl, r.ppl_err, ref,
            100.0 * (r.ppl - ref) / ref);
    TT_CHECK(r.n_chunks == chunks && r.n_scored == chunks * (n_ctx - 1 - n_ctx / 2));
    TT_NEAR(r.ppl, ref, tol * ref);

    TT_CASE("the same again, and the running result of a shorter run");
    perplexity_result r2;
    TT_OK(perplexity_run(st, text, len, n_ctx, chunks, NULL, NULL, &r2));
    TT_CHECK(r2.ppl == r.ppl);
    TT_OK(perplexity_run(st, text, len, n_ctx, 1, NULL, NULL, &r2));
    TT_CHECK(r2.n_chunks == 1 && r2.ppl > 1 && isfinite(r2.ppl));

    TT_CASE("refusals");
    TT_FAILS(perplexity_run(st, "too short", 9, 512, 0, NULL, NULL, &r2), TIS_EINVAL);
    TT_FAILS(perplexity_run(st, text, len, 8, 0, NULL, NULL, &r2), TIS_EINVAL);
    TT_FAILS(perplexity_run(st, text, len, (int64_t)len, 0, NULL, NULL, &r2), TIS_EINVAL); /* not two chunks */
    forward_state_destroy(&st);
    model_destroy(&m);
    free(text);
    cJSON_Delete(fx);
    free(js);
    return tt_done("test_perplexity");
}
