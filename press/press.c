/* press: observation during prefill, score functions, the policy registry
 * and policy names. Allocation, plans and compaction: press_plan.c. */
#include "press.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#include "rng.h"

/* ---- observation during prefill ---------------------------------------- */

int press_obs_init(press_obs *o, const model *m, int64_t cap) {
    memset(o, 0, sizeof *o);
    const model_config *c = &m->config;
    if (cap <= 0) return tis_error(TIS_EINVAL, "press: observation capacity %lld", (long long)cap);
    size_t n = (size_t)(c->n_layer * c->n_kv_head) * (size_t)cap;
    o->acc = calloc(n, sizeof(float));
    o->win = calloc(n, sizeof(float));
    o->last = calloc(n, sizeof(float));
    if (!o->acc || !o->win || !o->last) {
        press_obs_free(o);
        return tis_error(TIS_ENOMEM, "press: out of memory for attention statistics");
    }
    o->n_layer = c->n_layer;
    o->n_kv_head = c->n_kv_head;
    o->n_head = c->n_head;
    o->cap = cap;
    o->win_begin = INT64_MAX;
    o->last_pos = -1;
    return 0;
}

void press_obs_free(press_obs *o) {
    free(o->hid);
    free(o->acc);
    free(o->win);
    free(o->last);
    memset(o, 0, sizeof *o);
}

int press_obs_copy(press_obs *dst, const press_obs *src) {
    memset(dst, 0, sizeof *dst);
    size_t n = (size_t)(src->n_layer * src->n_kv_head) * (size_t)src->cap * sizeof(float);
    *dst = *src;
    dst->hid = NULL;
    dst->acc = malloc(n);
    dst->win = malloc(n);
    dst->last = malloc(n);
    if (!dst->acc || !dst->win || !dst->last) {
        press_obs_free(dst);
        return tis_error(TIS_ENOMEM, "press: out of memory for attention statistics");
    }
    if (src->hid) {
        size_t hn = (size_t)(src->cap * src->d_model) * sizeof(float);
        dst->hid = malloc(hn);
        if (!dst->hid) {
            press_obs_free(dst);
            return tis_error(TIS_ENOMEM, "press: out of memory for hidden states");
        }
        memcpy(dst->hid, src->hid, hn);
    }
    memcpy(dst->acc, src->acc, n);
    memcpy(dst->win, src->win, n);
    memcpy(dst->last, src->last, n);
    return 0;
}

int press_obs_capture_hidden(press_obs *o, int64_t layer, int64_t d_model) {
    free(o->hid);
    o->hid = calloc((size_t)(o->cap * d_model), sizeof(float));
    if (!o->hid) return tis_error(TIS_ENOMEM, "press: out of memory for hidden states");
    o->hid_layer = layer;
    o->d_model = d_model;
    return 0;
}

static void s_obs_hidden(void *user, int64_t layer, int64_t t0, const float *x, int64_t T) {
    press_obs *o = user;
    if (layer != o->hid_layer) return;
    TIS_ASSERT(o->base + t0 + T <= o->cap);
    memcpy(o->hid + (o->base + t0) * o->d_model, x, (size_t)(T * o->d_model) * sizeof(float));
}

void press_obs_window(press_obs *o, int64_t win_begin) {
    memset(o->win, 0, (size_t)(o->n_layer * o->n_kv_head) * (size_t)o->cap * sizeof(float));
    o->win_begin = win_begin;
    o->n_win = 0;
}

static void s_obs_attn(void *user, int64_t layer, int64_t head, int64_t t0, int64_t nq,
                       const float *probs, int64_t n_keys) {
    press_obs *o = user;
    int64_t group = o->n_head / o->n_kv_head;
    int64_t s = layer * o->n_kv_head + head / group;
    float *acc = o->acc + s * o->cap, *win = o->win + s * o->cap, *last = o->last + s * o->cap;
    TIS_ASSERT(n_keys <= o->cap);
    for (int64_t r = 0; r < nq; r++) {
        const float *row = probs + r * n_keys;
        int64_t q = o->base + t0 + r;
        for (int64_t j = 0; j < n_keys; j++) acc[j] += row[j];
        if (q >= o->win_begin) {
            for (int64_t j = 0; j < n_keys; j++) win[j] += row[j];
            if (layer == 0 && head == 0) o->n_win++;
        }
        if (q == o->last_pos)
            for (int64_t j = 0; j < n_keys; j++) last[j] += row[j];
    }
}

int press_obs_prefill(press_obs *o, forward_state *st, kv_cache *kv, const int32_t *ids,
                      int64_t T, float *logits, int64_t n_logits) {
    for (int64_t s = 0; s < kv->n_stream; s++)
        if (kv->len[s] != kv->n_past)
            return tis_error(TIS_EINVAL, "press: observing needs an uncompressed cache");
    if (kv->n_past + T > o->cap)
        return tis_error(TIS_ERANGE, "press: %lld tokens exceed the observation capacity %lld",
                         (long long)(kv->n_past + T), (long long)o->cap);
    memset(o->last, 0, (size_t)(o->n_layer * o->n_kv_head) * (size_t)o->cap * sizeof(float));
    o->base = kv->n_past;
    o->last_pos = kv->n_past + T - 1;
    forward_hooks hooks = {.on_attn = s_obs_attn, .on_hidden = o->hid ? s_obs_hidden : NULL, .user = o};
    return forward_run(st, kv, ids, T, logits, n_logits, &hooks);
}

/* ---- score functions ---------------------------------------------------- */

static uint64_t s_mix(uint64_t x) { return tis_mix64(x + TIS_GOLDEN64); }

static int s_random(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    uint64_t base = s_mix(c->seed ^ s_mix((uint64_t)(layer * 4096 + h)));
    for (int64_t j = 0; j < c->n_ctx; j++)
        sc[j] = (float)(s_mix(base + (uint64_t)j) >> 40) / (float)(1 << 24);
    return 0;
}

/* Sinks first (earliest highest), then by recency. */
static int s_streaming(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    for (int64_t j = 0; j < c->n_ctx; j++)
        sc[j] = j < c->n_sink ? (float)(2 * c->n_ctx - j) : (float)j;
    return 0;
}

/* Low key norm = important (Devoto et al. 2024). */
static int s_knorm(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    const kv_cache *kv = c->kv;
    float *K = malloc((size_t)kv->head_dim * sizeof(float));
    if (!K) return tis_error(TIS_ENOMEM, "knorm: out of memory");
    for (int64_t j = 0; j < c->n_ctx; j++) {
        kv_cache_rows_f32(kv, kv_stream(kv, layer, h), 0, c->ctx_begin + j, 1, K);
        double n2 = 0;
        for (int64_t d = 0; d < kv->head_dim; d++) n2 += (double)K[d] * K[d];
        sc[j] = -(float)sqrt(n2);
    }
    free(K);
    return 0;
}

static int s_need_obs(const press_ctx *c, const char *who) {
    if (!c->obs) return tis_error(TIS_EINVAL, "press %s: no attention statistics", who);
    return 0;
}

/* Heavy hitters: attention received over the whole prefill. h2o (Zhang et
 * al. 2023) spends half of each budget on the most recent tokens and half
 * on these scores (press.recent_frac); h2o_acc spends all of it on the
 * scores (the accumulated-attention press alone). */
static int s_h2o(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    int rc = s_need_obs(c, "h2o");
    if (rc) return rc;
    const float *a = c->obs->acc + (layer * c->obs->n_kv_head + h) * c->obs->cap + c->ctx_begin;
    memcpy(sc, a, (size_t)c->n_ctx * sizeof(float));
    return 0;
}

/* SnapKV: the observation window's attention, max-pooled over 5 neighbours
 * so that a kept token brings its immediate context. */
enum { SNAP_POOL = 5 };
static int s_snapkv(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    int rc = s_need_obs(c, "snapkv");
    if (rc) return rc;
    if (c->obs->n_win <= 0) return tis_error(TIS_EINVAL, "press snapkv: empty observation window");
    const float *w = c->obs->win + (layer * c->obs->n_kv_head + h) * c->obs->cap + c->ctx_begin;
    int64_t r = SNAP_POOL / 2;
    for (int64_t j = 0; j < c->n_ctx; j++) {
        float m = w[j];
        for (int64_t i = j - r; i <= j + r; i++)
            if (i >= 0 && i < c->n_ctx && w[i] > m) m = w[i];
        sc[j] = m;
    }
    return 0;
}

/* TOVA: the last query's attention, averaged over every head of the layer. */
static int s_tova(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    int rc = s_need_obs(c, "tova");
    if (rc) return rc;
    memset(sc, 0, (size_t)c->n_ctx * sizeof(float));
    for (int64_t g = 0; g < c->obs->n_kv_head; g++) {
        const float *l = c->obs->last + (layer * c->obs->n_kv_head + g) * c->obs->cap + c->ctx_begin;
        for (int64_t j = 0; j < c->n_ctx; j++) sc[j] += l[j];
    }
    return 0;
}

static int s_oracle(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    if (!c->oracle || c->oracle->n_ctx != c->n_ctx)
        return tis_error(TIS_EINVAL, "press oracle: no oracle labels for this context");
    memcpy(sc, c->oracle->total, (size_t)c->n_ctx * sizeof(float));
    return 0;
}

/* Learned importance: the head's scores, computed by the caller from the
 * hidden states: one row for every stream, or a per-head head's row of
 * this stream, ln(recon score) predicted, brought back to kvzip's scale. */
static int s_head(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    if (!c->head_scores) return tis_error(TIS_EINVAL, "press tis: no importance-head scores");
    if (c->head_n_out <= 1) {
        memcpy(sc, c->head_scores, (size_t)c->n_ctx * sizeof(float));
        return 0;
    }
    int64_t s = kv_stream(c->kv, layer, h);
    if (c->head_n_out != c->kv->n_stream)
        return tis_error(TIS_EINVAL, "press tis: the head scores %lld streams, the cache has %lld",
                         (long long)c->head_n_out, (long long)c->kv->n_stream);
    const float *row = c->head_scores + s * c->n_ctx;
    for (int64_t j = 0; j < c->n_ctx; j++) sc[j] = expf(row[j]);
    return 0;
}

/* KVzip: the reconstruction scores of this stream (press/recon.h). */
static int s_kvzip(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    if (!c->recon) return tis_error(TIS_EINVAL, "press kvzip: no reconstruction scores");
    memcpy(sc, c->recon + kv_stream(c->kv, layer, h) * c->n_ctx, (size_t)c->n_ctx * sizeof(float));
    return 0;
}

/* Retrieval streams whole: the streams ranked by their reconstruction copy
 * score (recon.h), each taken whole before the next under the pooled
 * budget; within the stream that gets only part of its context, kvzip's
 * token scores decide. (A rank offset of 2 per stream over scores in
 * [0, 1] orders the streams.) */
static int s_kvzip_heads(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    if (!c->recon || !c->recon_copy)
        return tis_error(TIS_EINVAL, "press kvzip_heads: no reconstruction scores");
    int64_t s = kv_stream(c->kv, layer, h), ns = c->kv->n_stream, rank = 0;
    for (int64_t t = 0; t < ns; t++)
        rank += c->recon_copy[t] > c->recon_copy[s] || (c->recon_copy[t] == c->recon_copy[s] && t < s);
    float off = 2.0f * (float)(ns - rank);
    const float *r = c->recon + s * c->n_ctx;
    for (int64_t j = 0; j < c->n_ctx; j++) sc[j] = off + r[j];
    return 0;
}

/* Selective Context: the self-information of the token's word, alike in
 * every stream (press/selfinfo.h). */
static int s_selfinfo(const press_ctx *c, int64_t layer, int64_t h, float *sc) {
    (void)layer;
    (void)h;
    if (!c->selfinfo) return tis_error(TIS_EINVAL, "press selfinfo: no self-information scores");
    memcpy(sc, c->selfinfo, (size_t)c->n_ctx * sizeof(float));
    return 0;
}

const press_info press_registry[] = {
    {"full", true, "no compression (the reference)"},
    {"random", true, "uniformly random tokens (seeded)"},
    {"streaming", true, "attention sinks + most recent tokens (StreamingLLM)"},
    {"knorm", true, "lowest key L2 norm"},
    {"h2o", true, "H2O: half the budget to the heaviest hitters (attention received during prefill), half to the most recent tokens"},
    {"h2o_acc", true, "attention received during prefill alone (H2O's heavy hitters without its recent half)"},
    {"snapkv", true, "observation-window attention, max-pooled"},
    {"tova", true, "last query's attention, mean over the layer's heads"},
    {"pyramidkv", true, "snapkv scores, budgets shrinking with depth"},
    {"adakv", true, "head-adaptive budgets over any scorer (adakv:INNER, default snapkv)"},
    {"oracle", true, "top-k by oracle labels (answer-to-context attention)"},
    {"tis", true, "learned importance head on the context's hidden states (--head)"},
    {"tis_query", true, "query-aware learned head (--head_query; query-aware protocol only)"},
    {"kvzip", true, "context reconstruction (KVzip): the most attention a token receives while the model "
                    "repeats the context; about 2x prefill; budgets pooled over every head and layer"},
    {"kvzip_heads", true, "whole streams in the order of their reconstruction copy score (retrieval heads "
                          "first), kvzip's token scores in the last one; budgets pooled over every stream"},
    {"selfinfo", true, "self-information (Selective Context): the words the model could not predict, "
                       "-ln p(token | before) summed over the word; one more prefill with every position's logits"},
    {NULL, false, NULL},
};

/* What a scorer needs and how its scores read: the one place that says it. */
typedef struct score_entry {
    const char *name;
    press_score_fn fn;
    bool window, obs, oracle;
    bool head, recon;    /* scores from an importance head / the reconstruction pass */
    bool selfinfo;       /* scores from the self-information pass */
    bool pooled;         /* max-pooled over neighbours already (snapkv's pooling): no +pool */
    press_calib calib;   /* whether the scores are on one absolute scale */
} score_entry;

static const score_entry s_scores[] = {
    {"random", s_random, false, false, false, false, false, false, false, PRESS_CALIB_NONE},
    {"streaming", s_streaming, false, false, false, false, false, false, false, PRESS_CALIB_NONE},
    {"knorm", s_knorm, false, false, false, false, false, false, false, PRESS_CALIB_NONE},
    {"h2o", s_h2o, false, true, false, false, false, false, false, PRESS_CALIB_NONE},
    {"h2o_acc", s_h2o, false, true, false, false, false, false, false, PRESS_CALIB_NONE},
    {"snapkv", s_snapkv, true, true, false, false, false, false, true, PRESS_CALIB_NONE},
    {"tova", s_tova, false, true, false, false, false, false, false, PRESS_CALIB_NONE},
    {"pyramidkv", s_snapkv, true, true, false, false, false, false, true, PRESS_CALIB_NONE},
    {"oracle", s_oracle, false, false, true, false, false, false, false, PRESS_CALIB_NONE},
    {"tis", s_head, false, false, false, true, false, false, false, PRESS_CALIB_PER_HEAD},
    {"tis_query", s_head, false, false, false, true, false, false, false, PRESS_CALIB_PER_HEAD},
    {"kvzip", s_kvzip, false, false, false, false, true, false, false, PRESS_CALIB_ALWAYS},
    /* stream ranks plus token scores: not one scale */
    {"kvzip_heads", s_kvzip_heads, false, false, false, false, true, false, false, PRESS_CALIB_NONE},
    {"selfinfo", s_selfinfo, false, false, false, false, false, true, false, PRESS_CALIB_NONE},
    {NULL, NULL, false, false, false, false, false, false, false, PRESS_CALIB_NONE},
};

static const score_entry *s_score_find(const char *name) {
    for (const score_entry *e = s_scores; e->name; e++)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

static int s_parse(const char *name, press *out, const score_entry **entry);

const char *press_split_name(const char *name, char *base, size_t base_size) {
    const char *plus = strchr(name, '+');
    size_t n = plus ? (size_t)(plus - name) : strlen(name);
    snprintf(base, base_size, "%.*s", (int)n, name);
    return name + n;
}

const char *press_union_split(const char *name, char *first, size_t first_size) {
    const char *bar = strchr(name, '|');
    if (!bar) return NULL;
    snprintf(first, first_size, "%.*s", (int)(bar - name), name);
    return bar + 1;
}

/* The digits at *q up to a '+', a '/' or the end, *q moved past them: their
 * count, -1 when there are none or they are malformed. */
static int32_t s_digits(const char **q) {
    int32_t n = 0;
    bool any = false, bad = false;
    for (; **q && **q != '+' && **q != '/'; (*q)++, any = true)
        if (**q < '0' || **q > '9' || n > 1000) bad = true;
        else n = n * 10 + (**q - '0');
    return any && !bad ? n : -1;
}

/* A suffix "+WORD" or "+WORDN" at *suf: advances past it; *v: its count
 * (dflt when none is given, -1 when malformed). False when suf does not
 * start with it. */
static bool s_suffix_count(const char **suf, const char *word, int32_t dflt, int32_t *v) {
    size_t w = strlen(word);
    if ((*suf)[0] != '+' || strncmp(*suf + 1, word, w)) return false;
    const char *q = *suf + 1 + w;
    *v = *q == 0 || *q == '+' ? dflt : s_digits(&q);
    *suf = q;
    return true;
}

/* The suffixes after a policy's base name, in this order, each optional:
 * "+pool[N]" or "+lpool[N]" (*left), "+recentN[/D]", "+capN" or "+shared",
 * "+hook". *pool:
 * 0 when absent, 5 for a bare "+pool" / "+lpool"; *recent, *cap: 0 when
 * absent; *div: 2 when not given; each -1 for a malformed or zero count.
 * False for anything else. */
static bool s_parse_suffix(const char *suf, int32_t *pool, bool *left, int32_t *recent, int32_t *div, int32_t *cap,
                           bool *shared, bool *hook) {
    *pool = *recent = *cap = 0;
    *div = 2;
    *hook = *shared = false;
    *left = s_suffix_count(&suf, "lpool", 5, pool);
    if ((*left || s_suffix_count(&suf, "pool", 5, pool)) && *pool == 0) *pool = -1;
    if (!strncmp(suf, "+recent", 7)) {
        suf += 7;
        *recent = s_digits(&suf);
        if (*suf == '/') suf++, *div = s_digits(&suf);
        if (*recent == 0) *recent = -1;
    }
    if (s_suffix_count(&suf, "cap", -1, cap)) {
        if (*cap == 0) *cap = -1;
    } else if (!strncmp(suf, "+shared", 7) && (suf[7] == 0 || suf[7] == '+')) {
        *shared = true;
        suf += 7;
    }
    if (!strcmp(suf, "+hook")) *hook = true, suf += 5;
    return *suf == 0;
}

int press_parse(const char *name, press *out) {
    memset(out, 0, sizeof *out);
    if (!name) return tis_error(TIS_EINVAL, "press: bad policy name");
    if (strchr(name, '|'))
        return tis_error(TIS_EUNSUPPORTED, "press: '%s' is a union of two policies (A|B): tis eval runs it, "
                         "one policy a request", name);
    if (strlen(name) >= sizeof out->name)
        return tis_error(TIS_EINVAL, "press: bad policy name (%zu characters at most)", sizeof out->name - 1);
    char base[64];
    const char *suf = press_split_name(name, base, sizeof base);
    int32_t pool, recent, div, cap;
    bool hook, left, shared;
    if (!s_parse_suffix(suf, &pool, &left, &recent, &div, &cap, &shared, &hook))
        return tis_error(TIS_EINVAL, "press: '%s': a policy takes at most +poolN or +lpoolN, then +recentN[/D], "
                         "then +capN or +shared, then +hook", name);
    if (!left && (pool < 0 || (pool > 0 && (pool < 3 || pool > 63 || pool % 2 == 0))))
        return tis_error(TIS_EINVAL, "press: '%s': +poolN takes an odd N from 3 to 63 (+pool: 5)", name);
    if (left && (pool < 2 || pool > 63))
        return tis_error(TIS_EINVAL, "press: '%s': +lpoolN takes an N from 2 to 63 (+lpool: 5)", name);
    if (recent < 0 || recent > 4096)
        return tis_error(TIS_EINVAL, "press: '%s': +recentN takes an N from 1 to 4096", name);
    if (div < 2 || div > 64)
        return tis_error(TIS_EINVAL, "press: '%s': +recentN/D takes a D from 2 to 64 (the tail is at most k/D)", name);
    if (cap < 0 || cap > 64)
        return tis_error(TIS_EINVAL, "press: '%s': +capN takes an N from 1 to 64", name);
    const score_entry *e = NULL;
    int rc = s_parse(base, out, &e);
    if (rc) return rc;
    if (hook && !out->needs_head)
        return tis_error(TIS_EINVAL, "press: '+hook' applies to the learned policies (tis, tis_query), not %s", base);
    if (pool) {
        if (!e)
            return tis_error(TIS_EINVAL, "press: '%s': full keeps everything; there is nothing to pool", name);
        if (e->pooled)
            return tis_error(TIS_EINVAL, "press: '%s': %s's scores are max-pooled already", name, base);
        out->pool = pool;
        out->pool_left = left;
    }
    if (recent) {
        if (!e) return tis_error(TIS_EINVAL, "press: '%s': full keeps everything; there is no recent share", name);
        if (out->recent_frac > 0)
            return tis_error(TIS_EINVAL, "press: '%s': %s gives half its budget to recent tokens already", name, base);
        out->recent = recent;
        out->recent_div = div;
    }
    if (cap) {
        /* pooled allocation: kvzip's, or a learned policy's (a per-head head
         * switches tis to it at plan time, press_plan_new checks) */
        if (!e || !(out->alloc == PRESS_ALLOC_GLOBAL || out->needs_head))
            return tis_error(TIS_EINVAL, "press: '%s': +capN bounds a stream's share of a budget pooled over "
                             "every stream (kvzip, kvzip_heads, tis with a per-head head), not %s's", name, base);
        out->cap = cap;
    }
    if (shared) {
        if (!e) return tis_error(TIS_EINVAL, "press: '%s': full keeps everything; there is nothing to share", name);
        if (out->alloc == PRESS_ALLOC_PYRAMID || out->alloc == PRESS_ALLOC_ADAPTIVE)
            return tis_error(TIS_EINVAL, "press: '%s': +shared gives every stream the same budget; %s's "
                             "allocation across streams is the policy", name, base);
        out->shared = true;
        out->alloc = PRESS_ALLOC_UNIFORM;
    }
    out->attn_hook = hook;
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

/* H2O's split of the budget: heavy hitters and recent tokens, half each. */
static double s_recent_frac(const char *score_name) { return !strcmp(score_name, "h2o") ? 0.5 : 0.0; }

/* The press of score entry e under allocation `alloc`. */
static press s_press_of(const score_entry *e, press_alloc alloc) {
    return (press){.score = e->fn, .alloc = alloc, .protect_window = e->window, .needs_obs = e->obs,
                   .needs_oracle = e->oracle, .needs_head = e->head, .needs_recon = e->recon,
                   .needs_selfinfo = e->selfinfo,
                   .query_head = !strcmp(e->name, "tis_query"), .recent_frac = s_recent_frac(e->name),
                   .calib = e->calib};
}

/* A base name (no suffix); *entry: its scorer (NULL for full). press_parse
 * names the press (the full name, suffixes included). */
static int s_parse(const char *name, press *out, const score_entry **entry) {
    memset(out, 0, sizeof *out);
    *entry = NULL;
    const char *inner = NULL;
    if (!strcmp(name, "adakv")) inner = "snapkv";
    else if (!strncmp(name, "adakv:", 6)) inner = name + 6;
    if (inner) {
        const score_entry *e = s_score_find(inner);
        if (!e || !strcmp(inner, "pyramidkv"))
            return tis_error(TIS_ENOTFOUND, "press: adakv cannot wrap '%s'", inner);
        *out = s_press_of(e, PRESS_ALLOC_ADAPTIVE);
        *entry = e;
        return 0;
    }
    for (const press_info *i = press_registry; i->name; i++) {
        if (strcmp(i->name, name)) continue;
        if (!i->available)
            return tis_error(TIS_EUNSUPPORTED, "press: policy '%s' is not available: %s", name, i->about);
        if (!strcmp(name, "full")) return 0;
        const score_entry *e = s_score_find(name);
        TIS_ASSERT(e);
        *out = s_press_of(e, !strcmp(name, "pyramidkv")                            ? PRESS_ALLOC_PYRAMID
                             : !strcmp(name, "kvzip") || !strcmp(name, "kvzip_heads") ? PRESS_ALLOC_GLOBAL
                                                                                      : PRESS_ALLOC_UNIFORM);
        *entry = e;
        return 0;
    }
    return tis_error(TIS_ENOTFOUND, "press: unknown policy '%s' (see tis eval --list)", name);
}

int64_t press_budget_tokens(double fraction, int64_t n_ctx) {
    int64_t k = (int64_t)llround(fraction * (double)n_ctx);
    if (k < 1) k = 1;
    return k > n_ctx ? n_ctx : k;
}
