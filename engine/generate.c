/* generate: one sampled sequence on the decoder, token by token. */
#include "generate.h"

#include <string.h>

#include "tis_error.h"

int generate(forward_state *st, kv_cache *kv, const model *m, sampler *smp,
             const int32_t *prompt, int64_t n_prompt, const gen_params *gp, int32_t *out,
             gen_token_fn on_token, void *user, gen_stats *stats) {
    gen_stats gs = {.n_prompt = n_prompt};
    if (stats) *stats = gs;
    if (gp->max_new < 1) return 0;
    decoder *d = NULL;
    decoder_seq q;
    int rc = decoder_new(&d, st, 1);
    if (!rc) rc = decoder_seq_init(&q, kv, prompt, n_prompt, gp->max_new);
    if (rc) {
        decoder_destroy(&d);
        return rc;
    }
    q.smp = smp;
    q.stop_answer = false;
    q.stop_eog = gp->stop_at_eog;
    decoder_seq *one = &q;
    double t0 = tis_now();
    int64_t told = 0; /* tokens passed to on_token */
    while (!q.done) {
        int64_t k = decoder_step(d, &one, 1);
        if (k < 0) {
            rc = (int)k;
            break;
        }
        for (; told < q.n_gen; told++)
            if (on_token && on_token(user, q.gen[told])) decoder_seq_finish(&q);
    }
    (void)m;
    gs.n_new = q.n_gen;
    if (q.eog >= 0) {
        gs.stopped_eog = true;
        if (out) out[gs.n_new] = q.eog;
        gs.n_new++;
    }
    if (out) memcpy(out, q.gen, (size_t)q.n_gen * sizeof(int32_t));
    if (q.fed) {
        gs.prefill_s = q.t_fed - t0;
        gs.decode_s = (q.done ? q.t_done : tis_now()) - q.t_fed;
    }
    decoder_seq_free(&q);
    decoder_destroy(&d);
    if (stats) *stats = gs;
    return rc;
}
