/* press_fixture: see press_fixture.h. */
#include "press_fixture.h"

#include <string.h>

#include "backend.h"
#include "tiny_model.h"
#include "tt.h"

int press_fixture_new(press_fixture *f, const char *gguf_name) {
    memset(f, 0, sizeof *f);
    TT_CASE("tiny model, observed prefill");
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    const char *path = tt_path(gguf_name);
    int rc;
    TT_OK(rc = tiny_model_make(path, &sp, &f->m));
    if (rc) return rc;
    TT_OK(rc = forward_state_new(&f->st, f->m, backend_cpu(), 16));
    if (rc) return rc;
    uint64_t rng = 7;
    for (int i = 0; i < TOTAL; i++)
        f->ids[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(f->m->config.n_vocab - 1));
    TT_OK(rc = forward_kv_new(f->m, TOTAL + 8, &f->kv));
    if (rc) return rc;
    TT_OK(rc = press_obs_init(&f->obs, f->m, TOTAL + 8));
    if (rc) return rc;
    press_obs_window(&f->obs, PRE + CTX - 8);
    TT_OK(rc = press_obs_prefill(&f->obs, f->st, f->kv, f->ids, PRE + CTX, NULL, 0));
    if (rc) return rc;
    f->pc = (press_ctx){.kv = f->kv, .obs = &f->obs, .ctx_begin = PRE, .n_ctx = CTX, .window = 8, .n_sink = 4,
                        .seed = 1};
    return 0;
}

void press_fixture_free(press_fixture *f) {
    press_obs_free(&f->obs);
    kv_cache_destroy(&f->kv);
    forward_state_destroy(&f->st);
    model_destroy(&f->m);
}

bool pf_kept(const kv_cache *kv, int64_t s, int32_t pos) {
    const int32_t *P = kv_cache_pos(kv, s);
    for (int64_t i = 0; i < kv->len[s]; i++)
        if (P[i] == pos) return true;
    return false;
}
