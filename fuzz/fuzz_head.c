/* fuzz_head: an importance-head checkpoint (untrusted safetensors) ->
 * head_load, then the head scores a few context rows (with a query for a
 * query-aware head), as a prefill worker does. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("head.safetensors", data, size);
    head *h = NULL;
    if (!path || head_load(&h, path)) return 0;
    int64_t d = h->cfg.d_model, n = 4;
    float *x = d > 0 && d <= 1 << 16 ? calloc((size_t)(n * d), sizeof *x) : NULL, *s = calloc((size_t)(n * h->cfg.n_out), sizeof *s);
    if (x && s) {
        for (int64_t i = 0; i < n * d; i++) x[i] = (float)((i * 7) % 5) - 2.0f;
        head_score_context(h, x, NULL, 0, 3, 3, 1, s);
    }
    free(x);
    free(s);
    head_destroy(&h);
    return 0;
}
