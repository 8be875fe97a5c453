/* test_device_forward: the forward pass on a backend with its own memory,
 * on any machine: tests/util/fake_device.h wraps the CPU backend behind
 * pointers the host cannot dereference, so any place where forward.c,
 * kv.c or model.c touch backend memory directly (instead of through the
 * vtable's upload / download / kv_append / weight_prepare) crashes this
 * test. The results must be the plain CPU backend's, bit for bit (the same
 * CPU ops run in the same order): prefill (chunked) + greedy decode on
 * tiny GQA / MQA / Qwen2-bias / Q4_1 models with f32, f16 and bf16 caches
 * (one with an attention bias), batched decode, compaction through a host
 * copy, hooks, and the default model on a short prompt when present. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_device.h"
#include "forward.h"
#include "generate.h"
#include "kv.h"
#include "model.h"
#include "perplexity.h"
#include "quant.h"
#include "sampler.h"
#include "tiny_model.h"
#include "tt_alloc.h"
#include "tt.h"

static int32_t s_argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

/* Per-layer sums of the hidden states on_hidden saw. */
typedef struct hid_acc {
    double sum[64];
    int64_t calls;
} hid_acc;

static void s_on_hidden(void *u, int64_t layer, int64_t t0, const float *x, int64_t T) {
    hid_acc *h = u;
    h->calls++;
    for (int64_t i = 0; i < T * 64 && layer < 64; i++) h->sum[layer] += x[i]; /* d_model >= 64 here */
}

/* A run: prompt ids[n] (all logits, in chunks of max_batch), then n_dec
 * greedy steps. lg[(n + n_dec)][V], toks[n_dec]; *kv_host: a host copy of
 * the cache at the end (NULL: not wanted). */
typedef struct run_spec {
    const int32_t *ids;
    int64_t n, n_dec, max_batch;
    bool bias;     /* give the cache an attention bias */
    hid_acc *hid;  /* on_hidden during the prompt, or NULL */
} run_spec;

static void s_run(model *m, const tis_backend *be, const run_spec *rs, float *lg, int32_t *toks, kv_cache **kv_host) {
    int64_t V = m->config.n_vocab;
    forward_state *st = NULL;
    kv_cache *kv = NULL;
    TT_OK(model_to_backend(m, be));
    TT_OK(forward_state_new(&st, m, be, rs->max_batch));
    TT_OK(forward_kv_new_on(m, be, rs->n + rs->n_dec, &kv));
    if (!st || !kv) goto done;
    TT_CHECK(kv->be == (backend_is_host(be) ? NULL : be));
    if (rs->bias) TT_OK(kv_cache_enable_bias(kv));
    forward_hooks hk = {.on_hidden = s_on_hidden, .user = rs->hid};
    TT_OK(forward_run(st, kv, rs->ids, rs->n, lg, rs->n, rs->hid ? &hk : NULL));
    int32_t tok = s_argmax(lg + (rs->n - 1) * V, V);
    for (int64_t i = 0; i < rs->n_dec; i++) {
        toks[i] = tok;
        TT_OK(forward_run(st, kv, &tok, 1, lg + (rs->n + i) * V, 1, NULL));
        tok = s_argmax(lg + (rs->n + i) * V, V);
    }
    if (kv_host) TT_OK(kv_cache_to_host(kv_host, kv));
done:
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
}

/* Two host caches hold the same entries, bit for bit. */
static bool s_same_cache(const kv_cache *a, const kv_cache *b) {
    if (!a || !b || a->n_stream != b->n_stream || a->n_past != b->n_past || a->k_type != b->k_type ||
        a->v_type != b->v_type)
        return false;
    for (int64_t s = 0; s < a->n_stream; s++) {
        int64_t n = a->len[s];
        if (n != b->len[s]) return false;
        if (memcmp(kv_cache_k(a, s), kv_cache_k(b, s), (size_t)n * a->k_row) ||
            memcmp(kv_cache_v(a, s), kv_cache_v(b, s), (size_t)n * a->v_row) ||
            memcmp(kv_cache_pos(a, s), kv_cache_pos(b, s), (size_t)n * sizeof(int32_t)))
            return false;
        if ((a->bias != NULL) != (b->bias != NULL) ||
            (a->bias && memcmp(a->bias + a->off[s], b->bias + b->off[s], (size_t)n * sizeof(float))))
            return false;
    }
    return true;
}

/* Prefill + decode on the CPU and on the fake device: same logits, tokens, cache. */
static void s_check_same(model *m, const char *label, const run_spec *rs) {
    TT_CASE("%s", label);
    int64_t V = m->config.n_vocab, rows = rs->n + rs->n_dec;
    float *a = malloc((size_t)(rows * V) * sizeof(float)), *b = malloc((size_t)(rows * V) * sizeof(float));
    int32_t ta[64] = {0}, tb[64] = {0};
    kv_cache *ka = NULL, *kb = NULL;
    hid_acc ha = {{0}, 0}, hb = {{0}, 0};
    run_spec ra = *rs, rb = *rs;
    ra.hid = rs->hid ? &ha : NULL;
    rb.hid = rs->hid ? &hb : NULL;
    s_run(m, backend_cpu(), &ra, a, ta, &ka);
    fake_device_stats *fs = fake_device_stats_get();
    TT_OK(model_to_backend(m, fake_device())); /* the weights stay; what the run takes must come back */
    int64_t live0 = fs->live_allocs;
    s_run(m, fake_device(), &rb, b, tb, &kb);
    TT_CHECK(memcmp(a, b, (size_t)(rows * V) * sizeof(float)) == 0);
    TT_CHECK(memcmp(ta, tb, sizeof ta) == 0);
    TT_CHECK(s_same_cache(ka, kb));
    if (rs->hid) {
        TT_CHECK(ha.calls == hb.calls && ha.calls > 0);
        TT_CHECK(memcmp(ha.sum, hb.sum, sizeof ha.sum) == 0);
    }
    TT_CHECK(fs->live_allocs == live0); /* state and cache gave back all they took */
    fprintf(stderr, "  %s: %lld rows of logits equal, greedy %d %d %d ..., cache equal\n", label, (long long)rows,
            tb[0], tb[1], tb[2]);
    kv_cache_destroy(&ka);
    kv_cache_destroy(&kb);
    free(a);
    free(b);
}

/* One decode step moves the embedded row and its position up and the
 * logits down: nothing else crosses. */
static void s_check_traffic(model *m) {
    TT_CASE("one decode step's traffic");
    const tis_backend *fd = fake_device();
    forward_state *st = NULL;
    kv_cache *kv = NULL;
    int64_t V = m->config.n_vocab, d = m->config.d_model;
    float *lg = malloc((size_t)V * sizeof(float));
    int32_t ids[3] = {5, 6, 7};
    TT_OK(model_to_backend(m, fd));
    TT_OK(forward_state_new(&st, m, fd, 8));
    TT_OK(forward_kv_new_on(m, fd, 8, &kv));
    if (st && kv) {
        TT_OK(forward_run(st, kv, ids, 2, lg, 1, NULL));
        fake_device_stats before = *fake_device_stats_get();
        TT_OK(forward_run(st, kv, ids + 2, 1, lg, 1, NULL));
        fake_device_stats *now = fake_device_stats_get();
        TT_CHECK(now->uploads - before.uploads == 2);
        TT_CHECK(now->up_bytes - before.up_bytes == (size_t)d * sizeof(float) + sizeof(int32_t));
        TT_CHECK(now->downloads - before.downloads == 1);
        TT_CHECK(now->down_bytes - before.down_bytes == (size_t)V * sizeof(float));
        TT_CHECK(now->kv_appends - before.kv_appends == m->config.n_layer);
    }
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    free(lg);
}

/* forward_run_batch over device caches, one of them compacted on the host
 * and sent back: the CPU's answers. */
static void s_check_batch_compact(model *m) {
    TT_CASE("batch + compaction through a host copy");
    const tis_backend *be[2] = {backend_cpu(), fake_device()};
    int64_t V = m->config.n_vocab;
    float *lg[2];
    int32_t ids0[9] = {3, 14, 15, 92, 65, 35, 89, 79, 32}, ids1[4] = {27, 18, 28, 18};
    for (int b = 0; b < 2; b++) {
        lg[b] = calloc((size_t)(2 * V), sizeof(float));
        forward_state *st = NULL;
        kv_cache *k0 = NULL, *k1 = NULL, *h = NULL, *c = NULL, *c_be = NULL;
        TT_OK(model_to_backend(m, be[b]));
        TT_OK(forward_state_new(&st, m, be[b], 8));
        TT_OK(forward_kv_new_on(m, be[b], 12, &k0));
        TT_OK(forward_kv_new_on(m, be[b], 12, &k1));
        if (!st || !k0 || !k1) return;
        TT_OK(forward_run(st, k0, ids0, 9, lg[b], 1, NULL));
        TT_OK(forward_run(st, k1, ids1, 4, lg[b], 1, NULL));
        /* keep every entry but the second and fourth of each stream */
        TT_OK(kv_cache_to_host(&h, k0));
        uint8_t keep[4096];
        for (int64_t s = 0; h && s < h->n_stream; s++)
            for (int64_t i = 0; i < h->len[s]; i++) keep[h->off[s] + i] = i != 1 && i != 3;
        if (h) TT_OK(kv_cache_compact(&c, h, keep, 2));
        if (c) TT_OK(kv_cache_to_backend(&c_be, c, be[b]));
        if (c_be) {
            TT_CHECK(c_be->be == (b ? be[b] : NULL));
            kv_cache *kvs[2] = {c_be, k1};
            int32_t t0 = 44, t1 = 45;
            const int32_t *step[2] = {&t0, &t1};
            int64_t nt[2] = {1, 1};
            TT_OK(forward_run_batch(st, kvs, 2, step, nt, lg[b]));
        }
        if (b == 1 && k0) {
            kv_cache *x = NULL;
            TT_FAILS(kv_cache_compact(&x, k0, NULL, 0), TIS_EUNSUPPORTED);
            TT_FAILS(kv_cache_to_backend(&x, k0, be[b]), TIS_EUNSUPPORTED);
        }
        kv_cache_destroy(&h), kv_cache_destroy(&c), kv_cache_destroy(&c_be);
        kv_cache_destroy(&k0), kv_cache_destroy(&k1);
        forward_state_destroy(&st);
    }
    TT_CHECK(memcmp(lg[0], lg[1], (size_t)(2 * V) * sizeof(float)) == 0);
    free(lg[0]);
    free(lg[1]);
}

static void s_no_obs(void *u, int64_t layer, int64_t head, int64_t q0, int64_t nq, const float *p, int64_t nk) {}

/* What must be refused, refused, with nothing changed. */
static void s_check_refusals(model *m) {
    TT_CASE("refusals");
    const tis_backend *fd = fake_device(), *no = fake_device_no_observe();
    forward_state *st = NULL;
    kv_cache *host = NULL, *dev = NULL;
    float *lg = malloc((size_t)m->config.n_vocab * sizeof(float));
    int32_t ids[2] = {1, 2};
    TT_OK(model_to_backend(m, fd));
    TT_FAILS(forward_state_new(&st, m, no, 8), TIS_EINVAL); /* weights prepared for another backend */
    TT_OK(model_to_backend(m, no));
    TT_OK(forward_state_new(&st, m, no, 8));
    TT_OK(forward_kv_new(m, 4, &host));
    TT_OK(forward_kv_new_on(m, no, 4, &dev));
    if (st && host && dev) {
        TT_FAILS(forward_run(st, host, ids, 2, lg, 1, NULL), TIS_EINVAL); /* a host cache on a device */
        forward_hooks hk = {.on_attn = s_no_obs};
        TT_FAILS(forward_run(st, dev, ids, 2, lg, 1, &hk), TIS_EUNSUPPORTED);
        TT_CHECK(dev->n_past == 0 && kv_cache_entries(dev) == 0);
        TT_OK(forward_run(st, dev, ids, 2, lg, 1, NULL));
        forward_state *cs = NULL;
        TT_OK(forward_state_new(&cs, m, backend_cpu(), 8));
        if (cs) TT_FAILS(forward_run(cs, dev, ids, 1, lg, 1, NULL), TIS_EINVAL); /* a device cache on the cpu */
        forward_state_destroy(&cs);
    }
    forward_state_destroy(&st);
    kv_cache_destroy(&host);
    kv_cache_destroy(&dev);
    free(lg);
}

/* The fake's memory really is out of the host's reach: a direct read
 * kills the process, and so does a host accessor on a device cache. */
static void s_check_faults(model *m) {
    TT_CASE("backend memory faults on host access");
    const tis_backend *fd = fake_device();
    for (int what = 0; what < 2; what++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", 1);
            if (null >= 0) dup2(null, 2);
            if (what == 0) {
                volatile float *p = fd->alloc(fd->ctx, 64);
                float x = p[3];
                _exit(x == 12345.0f ? 3 : 0);
            }
            kv_cache *kv = NULL;
            if (forward_kv_new_on(m, fd, 4, &kv)) _exit(4);
            float row[256] = {0};
            kv_cache_put(kv, 0, 0, row, row);
            _exit(0);
        }
        int status = 0;
        TT_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        /* killed by a signal, or (ASan's SEGV handler) exited with its error code: not survived */
        bool died = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                            WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4);
        TT_CHECK(died);
        fprintf(stderr, "  %s: %s %d\n", what ? "kv_cache_put on a device cache" : "a direct read",
                WIFSIGNALED(status) ? "killed by signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
}

static void s_tiny(const char *label, tiny_spec sp, int kv_type, bool bias) {
    model *m = NULL;
    const char *path = tt_path("tiny.gguf");
    TT_OK(tiny_model_write(path, &sp));
    TT_OK(model_load(&m, path));
    if (!m) return;
    m->kv_type = kv_types_of(kv_type);
    int32_t ids[21];
    uint64_t rng = 7;
    for (int i = 0; i < 21; i++) ids[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(m->config.n_vocab - 1));
    hid_acc dummy;
    run_spec rs = {.ids = ids, .n = 21, .n_dec = 6, .max_batch = 8, .bias = bias, .hid = &dummy};
    char name[160];
    snprintf(name, sizeof name, "%s, kv %s%s", label, kv_dtype_name(kv_type), bias ? " + bias" : "");
    s_check_same(m, name, &rs);
    model_destroy(&m);
}

/* Allocation failures anywhere in preparing the weights, making the state
 * and the cache, and running a step: TIS_ENOMEM with nothing of the
 * fake device's memory left behind, or the reference's logits. */
typedef struct oom_ctx {
    model *m;
    const float *ref; /* [V] logits of the last step */
    float *lg;
} oom_ctx;

static int s_oom_op(void *u) {
    oom_ctx *c = u;
    const tis_backend *fd = fake_device();
    int64_t live0 = fake_device_stats_get()->live_allocs;
    forward_state *st = NULL;
    kv_cache *kv = NULL;
    int32_t ids[4] = {9, 8, 7, 6};
    int rc = model_to_backend(c->m, fd);
    if (!rc) rc = forward_state_new(&st, c->m, fd, 2);
    if (!rc) rc = forward_kv_new_on(c->m, fd, 4, &kv);
    if (!rc) rc = kv_cache_enable_bias(kv);
    if (!rc) rc = forward_run(st, kv, ids, 3, c->lg, 1, NULL);
    if (!rc) rc = forward_run(st, kv, ids + 3, 1, c->lg, 1, NULL);
    if (!rc) TT_CHECK(memcmp(c->lg, c->ref, (size_t)c->m->config.n_vocab * sizeof(float)) == 0);
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    model_release_backend(c->m);
    if (fake_device_stats_get()->live_allocs != live0)
        fprintf(stderr, "  leak of %lld after: %s\n", (long long)(fake_device_stats_get()->live_allocs - live0),
                rc ? tis_last_error() : "(no error)");
    TT_CHECK(fake_device_stats_get()->live_allocs == live0);
    return rc;
}

static void s_check_oom(model *m) {
    TT_CASE("allocation failures on the device path");
    model_release_backend(m); /* each run prepares the weights itself */
    int64_t V = m->config.n_vocab;
    float *ref = malloc((size_t)V * sizeof(float)), *lg = malloc((size_t)V * sizeof(float));
    forward_state *st = NULL;
    kv_cache *kv = NULL;
    int32_t ids[4] = {9, 8, 7, 6};
    TT_OK(forward_state_new(&st, m, backend_cpu(), 2));
    TT_OK(forward_kv_new(m, 4, &kv));
    if (st && kv) {
        TT_OK(kv_cache_enable_bias(kv));
        TT_OK(forward_run(st, kv, ids, 3, ref, 1, NULL));
        TT_OK(forward_run(st, kv, ids + 3, 1, ref, 1, NULL));
    }
    forward_state_destroy(&st);
    kv_cache_destroy(&kv);
    oom_ctx c = {m, ref, lg};
    int64_t points = tt_alloc_sweep("device forward", s_oom_op, &c, 0);
    fprintf(stderr, "  %lld allocation points swept\n", (long long)points);
    free(ref);
    free(lg);
}

/* perplexity_run (its cache made through forward_state_kv_new) on the
 * device: the CPU's numbers. */
static void s_check_perplexity(model *m) {
    TT_CASE("perplexity on the device");
    const char *text = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. "
                       "All that glitters is not gold; still waters run deep, and so on, and so forth.";
    perplexity_result r[2];
    memset(r, 0, sizeof r);
    const tis_backend *be[2] = {backend_cpu(), fake_device()};
    for (int b = 0; b < 2; b++) {
        forward_state *st = NULL;
        TT_OK(model_to_backend(m, be[b]));
        TT_OK(forward_state_new(&st, m, be[b], 16));
        if (st) TT_OK(perplexity_run(st, text, strlen(text), 32, 0, NULL, NULL, &r[b]));
        forward_state_destroy(&st);
    }
    TT_CHECK(r[0].n_scored > 0 && r[0].n_scored == r[1].n_scored && r[0].ppl == r[1].ppl);
    fprintf(stderr, "  %lld tokens scored, PPL %.4f on both\n", (long long)r[1].n_scored, r[1].ppl);
}

/* generate() (the decoder, the sampler) on the device: the CPU's tokens,
 * greedy and sampled. */
static void s_check_generate(model *m, const int32_t *prompt, int64_t n) {
    TT_CASE("generate() on the device");
    int32_t out[2][2][12];
    memset(out, 0, sizeof out);
    const tis_backend *be[2] = {backend_cpu(), fake_device()};
    for (int b = 0; b < 2; b++)
        for (int hot = 0; hot < 2; hot++) {
            forward_state *st = NULL;
            kv_cache *kv = NULL;
            sampler smp;
            gen_stats gs;
            gen_params gp = {.max_new = 12, .stop_at_eog = false};
            TT_OK(model_to_backend(m, be[b]));
            TT_OK(forward_state_new(&st, m, be[b], 4));
            TT_OK(forward_kv_new_on(m, be[b], n + 12, &kv));
            TT_OK(sampler_init(&smp, m->config.n_vocab, hot ? 0.8f : 0.0f, 0.95f, 5));
            if (st && kv) TT_OK(generate(st, kv, m, &smp, prompt, n, &gp, out[b][hot], NULL, NULL, &gs));
            sampler_free(&smp);
            forward_state_destroy(&st);
            kv_cache_destroy(&kv);
        }
    TT_CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
}

/* The default model on a short prompt, default arithmetic (q8 decode
 * activations, f16 cache). */
static void s_real_model(void) {
    const char *path = tt_model();
    if (!path) {
        fprintf(stderr, "  (the default model is missing: its part is skipped)\n");
        return;
    }
    model *m = NULL;
    TT_OK(model_load(&m, path));
    if (!m) return;
    const char *text = "The capital of France is";
    int32_t *enc = NULL, ids[64];
    int64_t n_enc = 0, n = 0;
    TT_OK(tokenizer_encode(m->tok, text, strlen(text), false, &enc, &n_enc));
    if (tokenizer_add_bos(m->tok) && tokenizer_bos(m->tok) >= 0) ids[n++] = tokenizer_bos(m->tok);
    for (int64_t i = 0; i < n_enc && n < 64; i++) ids[n++] = enc[i];
    free(enc);
    run_spec rs = {.ids = ids, .n = n, .n_dec = 8, .max_batch = 4, .bias = false, .hid = NULL};
    s_check_same(m, "default model, 'The capital of France is' + 8", &rs);
    s_check_generate(m, ids, n);
    model_destroy(&m);
}

int main(void) {
    tiny_spec sp = tiny_spec_default();
    model *m = NULL;
    TT_OK(tiny_model_write(tt_path("tiny.gguf"), &sp));
    TT_OK(model_load(&m, tt_path("tiny.gguf")));
    if (m) {
        s_check_faults(m);
        s_check_refusals(m);
        s_check_traffic(m);
        s_check_batch_compact(m);
        int32_t p[5] = {40, 41, 42, 43, 44};
        s_check_generate(m, p, 5);
        s_check_oom(m);
        s_check_perplexity(m);
        model_destroy(&m);
    }
    s_tiny("llama GQA 4:2, f32 weights", sp, GGML_TYPE_F32, false);
    s_tiny("llama GQA 4:2, f32 weights", sp, GGML_TYPE_F16, true);
    sp.n_kv_head = 1;
    sp.tied = 0;
    s_tiny("llama MQA 4:1, untied", sp, GGML_TYPE_BF16, false);
    sp = tiny_spec_default();
    sp.arch = "qwen2";
    sp.n_kv_head = 4;
    s_tiny("qwen2 (QKV bias)", sp, GGML_TYPE_F16, false);
    sp = tiny_spec_default();
    sp.wtype = GGML_TYPE_Q4_1;
    s_tiny("llama, Q4_1 weights", sp, GGML_TYPE_F16, false);
    s_real_model();
    TT_CHECK(fake_device_stats_get()->live_allocs == 0); /* models gave back their prepared weights */
    return tt_done("test_device_forward");
}
