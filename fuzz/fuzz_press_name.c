/* fuzz_press_name: a policy name as a request carries it (an HTTP body's
 * "policy", a SubmitRequest's) -> press_parse; an accepted press is in the
 * ranges press.h documents and, when its scores need nothing but the cache
 * and the inputs here (head, reconstruction, self-information scores), scores a small
 * cache, compacts it to a budget and to a threshold, and the result is
 * checked: every stream keeps at most its context, in order, the tail of
 * +recentN/D kept first. A union "A|B" is refused as one policy; its
 * members, parsed apart, are compacted together (press_plan_compact_union,
 * B with one score per token) and checked the same way. press_spec_parse
 * (named heads, unions: what the workers and the HTTP front read) agrees
 * with press_parse on every member, and its lenient form (no heads held:
 * the coordinator's) accepts whatever the strict one does.
 *
 * Input: [0] n_ctx = 1 + b % 96, [1] the budget k = 1 + b % n_ctx,
 * [2] the threshold b / 255, then the name up to a NUL (at most 63 bytes),
 * then bytes the scores are made of (cycled; none: all alike): head scores
 * (the first stream's also selfinfo's), reconstruction scores and
 * kvzip_heads' copy scores (each stream's first). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kv.h"
#include "quant.h"
#include "press.h"
#include "press_spec.h"
#include "tis_error.h"

enum { NL = 2, NKV = 2, NS = NL * NKV, HD = 32 };

static void s_check(bool ok) {
    if (!ok) abort();
}

/* An accepted press: its fields as press.h states them. */
static void s_check_press(const press *p, const char *name) {
    s_check(!strcmp(p->name, name));
    if (p->pool) {
        s_check(p->score != NULL && p->pool <= 63);
        s_check(p->pool_left ? p->pool >= 2 : p->pool >= 3 && p->pool % 2 == 1);
    } else {
        s_check(!p->pool_left);
    }
    s_check(p->recent >= 0 && p->recent <= 4096);
    if (p->recent) s_check(p->score != NULL && p->recent_div >= 2 && p->recent_div <= 64 && p->recent_frac == 0);
    s_check(p->cap >= 0 && p->cap <= 64);
    if (p->cap) s_check(p->alloc == PRESS_ALLOC_GLOBAL || p->needs_head);
    if (p->attn_hook) s_check(p->needs_head);
    if (p->shared) s_check(p->score != NULL && p->alloc == PRESS_ALLOC_UNIFORM && !p->cap && !press_calibratable(p));
}

/* A compaction of the n-entry context: each stream's kept count matches the
 * cache, positions rise, and a +recentN/D tail (all of it under a
 * threshold) is there; +shared keeps the same tokens in every stream. */
static void s_check_out(const press *p, const kv_cache *c, const int64_t *kept, int64_t n, int64_t tail) {
    for (int64_t s = 0; s < NS; s++) {
        s_check(kept[s] >= 0 && kept[s] <= n && c->len[s] == kept[s]);
        const int32_t *pos = kv_cache_pos(c, s);
        for (int64_t i = 1; i < c->len[s]; i++) s_check(pos[i] > pos[i - 1]);
        if (p->recent && tail > 0 && kept[s] >= tail)
            for (int64_t i = 0; i < tail; i++) s_check(pos[kept[s] - 1 - i] == n - 1 - i);
        if (p->shared && s > 0) /* +shared: the same tokens in every stream */
            s_check(kept[s] == kept[0] && !memcmp(pos, kv_cache_pos(c, 0), (size_t)kept[s] * sizeof *pos));
    }
}

/* press_spec_parse under two named heads, strict and lenient. */
static void s_check_spec(const char *name) {
    static const char *const as[] = {"hb=b.safetensors", "tis_si=s.safetensors"};
    press_spec sp, lax;
    int rc = press_spec_parse(name, as, 2, &sp);
    int rl = press_spec_parse(name, NULL, -1, &lax);
    if (rc) {
        const char *m = tis_last_error();
        s_check(m && *m);
    }
    if (rc == 0) s_check(rl == 0 && lax.n == sp.n);
    if (rc) return;
    s_check((sp.n == 1 || sp.n == 2) && !strcmp(sp.name, name));
    char first[64];
    const char *second = press_union_split(name, first, sizeof first);
    s_check((sp.n == 2) == (second != NULL));
    for (int i = 0; i < sp.n; i++) {
        const char *mn = sp.n == 1 ? name : i == 0 ? first : second;
        s_check(!strcmp(sp.m[i].name, mn));
        s_check(sp.head[i] >= PRESS_HEAD_QUERY && sp.head[i] < 2);
        s_check((sp.head[i] != PRESS_HEAD_NONE) == sp.m[i].needs_head);
        if (sp.n == 2) s_check(sp.m[i].score != NULL && !sp.m[i].attn_hook);
        press p;
        if (sp.head[i] < 0 && press_parse(mn, &p) == 0) s_check(p.score == sp.m[i].score && p.pool == sp.m[i].pool);
    }
    if (sp.n == 2) s_check(strcmp(sp.m[0].name, sp.m[1].name) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    int64_t n = 1 + data[0] % 96, k = 1 + data[1] % n;
    double tau = data[2] / 255.0;
    char name[64];
    size_t len = 0;
    const uint8_t *q = data + 3, *end = data + size;
    while (q < end && *q && len < sizeof name - 1) name[len++] = (char)*q++;
    name[len] = 0;
    if (q < end && !*q) q++;
    s_check_spec(name);
    press p, pb;
    char first[64];
    const char *second = press_union_split(name, first, sizeof first);
    if (second) { /* a union: refused as one policy, its members compacted together */
        s_check(press_parse(name, &p) == TIS_EUNSUPPORTED);
        if (press_parse(first, &p) || press_parse(second, &pb)) return 0;
        s_check_press(&p, first);
        s_check_press(&pb, second);
        if (!pb.score || pb.needs_obs || pb.needs_oracle) return 0;
    } else if (press_parse(name, &p)) {
        const char *m = tis_last_error();
        s_check(m && *m); /* a refusal says why */
        return 0;
    } else {
        s_check_press(&p, name);
    }
    if (!p.score || p.needs_obs || p.needs_oracle)
        return 0; /* scores from a prefill's observations or the answer: not made here */
    kv_cache *kv = NULL, *out = NULL;
    float *head = malloc(sizeof(float) * NS * (size_t)n), *recon = malloc(sizeof(float) * NS * (size_t)n);
    float kr[HD], vr[HD], copy[NS];
    int64_t kept[NS];
    if (!head || !recon || kv_cache_new(&kv, NL, NKV, HD, n, GGML_TYPE_F16)) goto done;
    size_t m = (size_t)(end - q);
    for (int64_t i = 0; i < NS * n; i++) {
        uint8_t b = m ? q[(size_t)i % m] : 0;
        head[i] = (float)b / 32.0f - 6.0f;     /* ln of a score, as a per-head head gives */
        recon[i] = (float)b / 255.0f;          /* an attention maximum */
    }
    for (int64_t s = 0; s < NS; s++) copy[s] = recon[s * n]; /* kvzip_heads' per-stream copy scores */
    for (int64_t s = 0; s < NS; s++) {
        for (int64_t i = 0; i < n; i++) {
            for (int64_t d = 0; d < HD; d++) {
                kr[d] = (float)((i * 7 + d * 3 + s) % 11) - 5.0f;
                vr[d] = (float)((i + d) % 5) - 2.0f;
            }
            kv_cache_put(kv, s, i, kr, vr);
            kv_cache_pos(kv, s)[i] = (int32_t)i;
        }
        kv->len[s] = n;
    }
    kv->n_past = n;
    press_ctx c = {.kv = kv, .ctx_begin = 0, .n_ctx = n, .window = 0, .n_sink = 1, .head_scores = head,
                   .head_n_out = NS, .recon = recon, .recon_copy = copy, .selfinfo = head, .seed = 7};
    press_plan *pl = NULL, *plb = NULL;
    if (press_plan_new(&pl, &p, &c)) goto done;
    if (second) {
        press_ctx cb = c;
        cb.head_n_out = 1; /* the second member's head: one score per token */
        const press none = {.score = p.score};
        if (!press_plan_new(&plb, &pb, &cb) && !press_plan_compact_union(pl, plb, k, 0, &out, kept)) {
            s_check_out(&none, out, kept, n, 0);
            kv_cache_destroy(&out);
        }
        press_plan_destroy(&plb);
        press_plan_destroy(&pl);
        goto done;
    }
    int64_t tail = !p.recent ? 0 : p.recent < k / p.recent_div ? p.recent : k / p.recent_div;
    if (press_plan_compact(pl, k, 0, &out, kept) == 0) {
        s_check_out(&p, out, kept, n, tail);
        kv_cache_destroy(&out);
    }
    if (press_plan_calibrated(pl) && press_plan_compact_threshold(pl, tau, 0, &out, kept) == 0) {
        s_check_out(&p, out, kept, n, p.recent < n ? p.recent : n);
        kv_cache_destroy(&out);
    }
    press_plan_destroy(&pl);
done:
    kv_cache_destroy(&kv);
    free(head);
    free(recon);
    return 0;
}
