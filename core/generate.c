/* generate: the prefill + decode loop. */
#include "generate.h"

#include <stdlib.h>
#include <time.h>

#include "tis_error.h"

double tis_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int generate(forward_state *st, kv_cache *kv, const model *m, sampler *smp,
             const int32_t *prompt, int64_t n_prompt, const gen_params *gp, int32_t *out,
             gen_token_fn on_token, void *user, gen_stats *stats) {
    gen_stats gs = {.n_prompt = n_prompt};
    float *logits = malloc((size_t)m->config.n_vocab * sizeof(float));
    if (!logits) return tis_error(TIS_ENOMEM, "generate: out of memory");
    double t0 = tis_now();
    int rc = forward_run(st, kv, prompt, n_prompt, logits, 1, NULL);
    gs.prefill_s = tis_now() - t0;
    double t1 = tis_now();
    for (int64_t i = 0; rc == 0 && i < gp->max_new; i++) {
        int32_t id = sampler_sample(smp, logits);
        if (out) out[i] = id;
        gs.n_new++;
        if (gp->stop_at_eog && tokenizer_is_eog(m->tok, id)) {
            gs.stopped_eog = true;
            break;
        }
        if (on_token && on_token(user, id)) break;
        if (i + 1 < gp->max_new) rc = forward_run(st, kv, &id, 1, logits, 1, NULL);
    }
    gs.decode_s = tis_now() - t1;
    free(logits);
    if (stats) *stats = gs;
    return rc;
}
