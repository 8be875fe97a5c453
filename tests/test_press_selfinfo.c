/* test_press_selfinfo: the self-information scores (selfinfo_compute
 * against the test's own -ln softmax over one uncompressed forward pass
 * with every position's logits, across chunk boundaries and with and
 * without a prefix), the word sums on known text, the selfinfo press's
 * top-k on the tiny model (tests/util/press_fixture), and `tis selfinfo`'s
 * lines. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "press.h"
#include "press_fixture.h"
#include "selfinfo.h"
#include "tt.h"

/* -ln p(ids[t + 1] | ids[0..t]) for every t < n - 1, from one forward_run
 * with all n rows of logits: ref[t + 1]. */
static int s_reference(const press_fixture *f, const int32_t *ids, int64_t n, double *ref) {
    int64_t V = f->m->config.n_vocab;
    float *lg = malloc((size_t)(n * V) * sizeof(float));
    kv_cache *kv = NULL;
    int rc = lg ? forward_kv_new(f->m, n, &kv) : -1;
    if (!rc) rc = forward_run(f->st, kv, ids, n, lg, n, NULL);
    for (int64_t t = 0; !rc && t + 1 < n; t++) {
        const float *l = lg + t * V;
        double mx = l[0], sum = 0;
        for (int64_t v = 1; v < V; v++) mx = fmax(mx, l[v]);
        for (int64_t v = 0; v < V; v++) sum += exp(l[v] - mx);
        ref[t + 1] = mx + log(sum) - l[ids[t + 1]];
    }
    kv_cache_destroy(&kv);
    free(lg);
    return rc;
}

static void s_scores(press_fixture *f) {
    enum { N = 2 * SELFINFO_CHUNK + 37 }; /* three chunks, the last one short */
    int32_t *ids = malloc(N * sizeof(int32_t));
    double *ref = malloc(N * sizeof(double));
    float *out = malloc(N * sizeof(float));
    uint64_t rng = 11;
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((tt_randf(&rng) + 1.0f) * 0.5f * (float)(f->m->config.n_vocab - 1));
    TT_OK(s_reference(f, ids, N, ref));
    static const int64_t begins[] = {5, 1, SELFINFO_CHUNK + 1, 0};
    for (int b = 0; b < 4; b++) {
        int64_t cb = begins[b], nc = N - cb;
        TT_CASE(cb ? "scores: the test's own -ln softmax, after a prefix" : "scores: no prefix, the first a sink");
        TT_OK(selfinfo_compute(f->st, NULL, ids, cb, nc, out));
        double worst = 0, mx = 0;
        for (int64_t j = cb ? 0 : 1; j < nc; j++) {
            worst = fmax(worst, fabs(out[j] - ref[cb + j]) / (1 + fabs(ref[cb + j])));
            mx = fmax(mx, out[j]);
        }
        TT_CHECK(worst < 1e-4); /* f32 logits, the same kernels in other row batches */
        if (worst >= 1e-4) fprintf(stderr, "  begin %lld: worst relative error %g\n", (long long)cb, worst);
        if (!cb) TT_CHECK(out[0] == (float)mx);
    }
    TT_CASE("scores: bad spans");
    TT_FAILS(selfinfo_compute(f->st, NULL, ids, -1, 4, out), TIS_EINVAL);
    TT_FAILS(selfinfo_compute(f->st, NULL, ids, 0, 0, out), TIS_EINVAL);
    TT_FAILS(selfinfo_compute(NULL, NULL, ids, 0, 4, out), TIS_EINVAL);
    free(ids);
    free(ref);
    free(out);
}

/* Word sums on text whose tokens are its bytes (no merge of the tiny
 * vocabulary applies): a word is letters and digits and the bytes of
 * multi-byte characters, together. */
static void s_words(press_fixture *f) {
    TT_CASE("words: each token scores its word's sum");
    const char *text = "ab cd.x\xc3\xa9y 7";
    int32_t *ids = NULL;
    int64_t n = 0;
    TT_OK(tokenizer_encode(f->m->tok, text, strlen(text), false, &ids, &n));
    TT_CHECK(n == (int64_t)strlen(text));
    if (n != (int64_t)strlen(text)) {
        free(ids);
        return;
    }
    /* a b _ c d . x C3 A9 y _ 7 -> words [a b] [_] [c d] [.] [x C3 A9 y] [_] [7] */
    float nll[12];
    for (int i = 0; i < 12; i++) nll[i] = (float)(1 << i);
    selfinfo_words(f->m->tok, ids, n, nll);
    static const float want[12] = {3, 3, 4, 24, 24, 32, 960, 960, 960, 960, 1024, 2048};
    for (int i = 0; i < 12; i++) TT_CHECK(nll[i] == want[i]);
    float same[12];
    for (int i = 0; i < 12; i++) same[i] = (float)i;
    selfinfo_words(NULL, ids, n, same); /* no tokenizer: tokens alone */
    for (int i = 0; i < 12; i++) TT_CHECK(same[i] == (float)i);
    free(ids);
}

/* The press keeps every stream's top-k by the scores, the same in each. */
static void s_press(press_fixture *f) {
    TT_CASE("press: top-k by self-information, alike in every stream");
    press p;
    TT_OK(press_parse("selfinfo", &p));
    TT_CHECK(p.needs_selfinfo && !p.needs_obs && !p.needs_recon && p.alloc == PRESS_ALLOC_UNIFORM);
    kv_cache *c = NULL;
    TT_FAILS(press_compress(&c, &p, &f->pc, 10, 0, NULL), TIS_EINVAL); /* no scores */
    float sc[CTX];
    for (int j = 0; j < CTX; j++) sc[j] = (float)((j * 17) % CTX); /* a permutation of 0..CTX-1 */
    press_ctx pc = f->pc;
    pc.selfinfo = sc;
    TT_OK(press_compress(&c, &p, &pc, 10, 0, NULL));
    for (int64_t s = 0; c && s < c->n_stream; s++) {
        int bad = 0;
        for (int j = 0; j < CTX; j++) bad += pf_kept(c, s, PRE + j) != (sc[j] >= CTX - 10);
        TT_CHECK(bad == 0 && c->len[s] == PRE + 10);
    }
    kv_cache_destroy(&c);
}

/* tis selfinfo: a line per token, its -ln p and its word's sum, as
 * selfinfo_compute gives them after the BOS the model adds (if any). */
static void s_cli(press_fixture *f) {
    const char *bin = getenv("TIS_BIN");
    if (!bin) return; /* run through ctest */
    TT_CASE("tis selfinfo");
    const char *text = "the cat sat on the mat, then 42 dogs ran in.";
    const char *path = tt_path("text.txt");
    TT_OK(tt_write_file(path, text, strlen(text)));
    static char out[1 << 16];
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' selfinfo -m '%s' -f '%s' -t 1", bin, tt_path("tiny.gguf"), path);
    int rc = tt_sh(cmd, out, sizeof out);
    const char *header = "position\tid\tbytes\tnll\tword\n";
    TT_CHECK(rc == 0 && !strncmp(out, header, strlen(header)));
    if (rc || strncmp(out, header, strlen(header))) fprintf(stderr, "%.2000s\n", out);
    int32_t *body = NULL, ids[128];
    int64_t n = 0;
    TT_OK(tokenizer_encode(f->m->tok, text, strlen(text), false, &body, &n));
    bool bos = tokenizer_add_bos(f->m->tok) && tokenizer_bos(f->m->tok) >= 0;
    TT_CHECK(n > 8 && n < 100);
    if (rc || n <= 8 || n >= 100) {
        free(body);
        return;
    }
    ids[0] = tokenizer_bos(f->m->tok);
    memcpy(ids + bos, body, (size_t)n * sizeof(int32_t));
    float nll[128], word[128];
    TT_OK(selfinfo_compute(f->st, NULL, ids, bos, n, nll));
    memcpy(word, nll, sizeof nll);
    selfinfo_words(f->m->tok, body, n, word);
    const char *q = strchr(out, '\n') + 1;
    int64_t lines = 0, bad = 0;
    for (; *q; q = strchr(q, '\n') ? strchr(q, '\n') + 1 : q + strlen(q), lines++) {
        long long pos;
        int id;
        if (sscanf(q, "%lld\t%d\t", &pos, &id) != 2 || pos != lines || lines >= n || id != body[lines]) {
            bad++;
            break;
        }
        char line[512];
        const char *e = strchr(q, '\n');
        snprintf(line, sizeof line, "%.*s", e ? (int)(e - q) : 0, q);
        char *t = strrchr(line, '\t'), *t2 = t; /* ...\tNLL\tWORD */
        while (t2 && t2 > line && t2[-1] != '\t') t2--;
        double a = t2 ? strtod(t2, NULL) : NAN, b = t ? strtod(t + 1, NULL) : NAN;
        bad += !e || !(fabs(a - nll[lines]) <= 1e-4 * (1 + fabs(nll[lines]))) ||
               !(fabs(b - word[lines]) <= 1e-4 * (1 + fabs(word[lines])));
    }
    TT_CHECK(bad == 0 && lines == n);
    if (bad || lines != n) fprintf(stderr, "  line %lld of %lld tokens:\n%.2000s\n", (long long)lines, (long long)n, out);
    snprintf(cmd, sizeof cmd, "'%s' selfinfo -m '%s' -f '%s'", bin, tt_path("tiny.gguf"), tt_path("none.txt"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "none.txt"));
    snprintf(cmd, sizeof cmd, "'%s' selfinfo -m '%s'", bin, tt_path("tiny.gguf"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "a text file is required"));
    free(body);
}

int main(void) {
    press_fixture f;
    if (press_fixture_new(&f, "tiny.gguf") == 0) {
        s_scores(&f);
        s_words(&f);
        s_press(&f);
        s_cli(&f);
    }
    press_fixture_free(&f);
    return tt_done("test_press_selfinfo");
}
