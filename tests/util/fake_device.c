/* fake_device: see fake_device.h. */
#include "fake_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

static fake_device_stats s_st;

fake_device_stats *fake_device_stats_get(void) { return &s_st; }

static void *s_enc(void *p) { return p ? (void *)((uintptr_t)p + FAKE_DEVICE_TAG) : NULL; }

/* The host address of a backend pointer; a pointer without the tag (host
 * memory handed where the vtable wants backend memory) is a bug. */
static void *s_dec(const void *p, const char *what) {
    if (!p) return NULL;
    if (!((uintptr_t)p & FAKE_DEVICE_TAG)) {
        fprintf(stderr, "fake_device: %s: host pointer %p passed as backend memory\n", what, p);
        abort();
    }
    return (void *)((uintptr_t)p - FAKE_DEVICE_TAG);
}
#define D(p) s_dec((p), __func__)

static void *s_alloc(void *ctx, size_t bytes) {
    void *p = backend_cpu()->alloc(NULL, bytes);
    if (p) s_st.live_allocs++;
    return s_enc(p);
}

static void s_free(void *ctx, void *p) {
    if (!p) return;
    s_st.live_allocs--;
    backend_cpu()->free(NULL, D(p));
}

static int s_matmul(void *ctx, float *y, const float *x, const tis_weight *w, int64_t T, bool acc) {
    tis_weight h = *w;
    h.data = D(w->data);
    return backend_cpu()->matmul(NULL, D(y), D(x), &h, T, acc);
}

static void s_rmsnorm(void *ctx, float *y, const float *x, const float *w, int64_t T, int64_t d, float eps) {
    backend_cpu()->rmsnorm(NULL, D(y), D(x), D(w), T, d, eps);
}

static void s_rope(void *ctx, float *x, const int32_t *pos, int64_t T, int64_t nh, const rope_params *rp) {
    backend_cpu()->rope(NULL, D(x), D(pos), T, nh, rp); /* inv_freq: a host array */
}

static void s_swiglu(void *ctx, float *g, const float *u, int64_t n) { backend_cpu()->swiglu(NULL, D(g), D(u), n); }
static void s_add(void *ctx, float *y, const float *x, int64_t n) { backend_cpu()->add(NULL, D(y), D(x), n); }
static void s_add_bias(void *ctx, float *y, const float *b, int64_t T, int64_t n) {
    backend_cpu()->add_bias(NULL, D(y), D(b), T, n);
}

static int s_attention(void *ctx, float *out, const float *q, const kv_view *kv, int64_t layer, int64_t T,
                       int64_t n_head, const attn_observer *obs) {
    kv_view h = *kv; /* off and len: host arrays */
    h.k = D(kv->k);
    h.v = D(kv->v);
    h.bias = D(kv->bias);
    return backend_cpu()->attention(NULL, D(out), D(q), &h, layer, T, n_head, obs);
}

static void s_prompt_step(void *ctx, bool prompt) { backend_cpu()->prompt_step(NULL, prompt); }

static int s_upload(void *ctx, void *dst, const void *src, size_t n) {
    s_st.uploads++;
    s_st.up_bytes += n;
    memcpy(D(dst), src, n);
    return 0;
}

static int s_download(void *ctx, void *dst, const void *src, size_t n) {
    s_st.downloads++;
    s_st.down_bytes += n;
    memcpy(dst, D(src), n);
    return 0;
}

static int s_kv_append(void *ctx, void *kc, void *vc, float *bias, int k_type, int v_type, int64_t hd, int64_t n_kv,
                       const int64_t *at, const float *kscale, const float *k, const float *v, int64_t T) {
    s_st.kv_appends++;
    return backend_cpu()->kv_append(NULL, D(kc), D(vc), D(bias), k_type, v_type, hd, n_kv, at, kscale, D(k), D(v), T);
}

/* The file's blocks copied as they are: the CPU's matmul takes every type. */
static int s_weight_prepare(void *ctx, tis_weight *dst, const tis_weight *src) {
    size_t n = src->row_bytes * (size_t)src->n_out;
    void *p = s_alloc(ctx, n);
    if (!p) return tis_error(TIS_ENOMEM, "fake_device: no memory for a %zu-byte weight", n);
    memcpy(D(p), src->data, n);
    *dst = *src;
    dst->data = p;
    s_st.weight_prepares++;
    return 0;
}

static int s_sync(void *ctx) {
    s_st.syncs++;
    return 0;
}

#define FAKE_TABLE(obs_off)                                                                                   \
    {.name = "fake_device", .alloc = s_alloc, .free = s_free, .matmul = s_matmul, .rmsnorm = s_rmsnorm,        \
     .rope = s_rope, .swiglu = s_swiglu, .add = s_add, .add_bias = s_add_bias, .attention = s_attention,       \
     .prompt_step = s_prompt_step, .upload = s_upload, .download = s_download, .kv_append = s_kv_append,      \
     .weight_prepare = s_weight_prepare, .sync = s_sync, .cannot_observe = obs_off}

static const tis_backend s_fake = FAKE_TABLE(false);
static const tis_backend s_fake_no_obs = FAKE_TABLE(true);

const tis_backend *fake_device(void) { return &s_fake; }
const tis_backend *fake_device_no_observe(void) { return &s_fake_no_obs; }
