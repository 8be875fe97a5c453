/* eval: one sample through protocols x policies x budgets, sharing the prefill. */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "generate.h"
#include "head.h"
#include "oracle.h"
#include "press.h"
#include "sampler.h"
#include "tis_error.h"

/* ---- prompts ------------------------------------------------------------- */

static int s_append(int32_t **dst, int64_t *n, int64_t *cap, const int32_t *src, int64_t k) {
    if (*n + k > *cap) {
        int64_t nc = (*n + k) * 2 + 16;
        int32_t *p = realloc(*dst, (size_t)nc * sizeof(int32_t));
        if (!p) return tis_error(TIS_ENOMEM, "eval: out of memory");
        *dst = p;
        *cap = nc;
    }
    memcpy(*dst + *n, src, (size_t)k * sizeof(int32_t));
    *n += k;
    return 0;
}

static int s_encode_append(const tokenizer *tok, const char *text, bool special, int32_t **dst,
                           int64_t *n, int64_t *cap) {
    if (!text || !*text) return 0;
    int32_t *ids = NULL;
    int64_t k = 0;
    int rc = tokenizer_encode(tok, text, strlen(text), special, &ids, &k);
    if (!rc) rc = s_append(dst, n, cap, ids, k);
    free(ids);
    return rc;
}

static char *s_concat(const char *a, const char *b, const char *c) {
    size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
    char *s = malloc(la + lb + lc + 1);
    if (!s) return NULL;
    memcpy(s, a ? a : "", la);
    memcpy(s + la, b ? b : "", lb);
    memcpy(s + la + lb, c ? c : "", lc);
    s[la + lb + lc] = 0;
    return s;
}

int eval_prompt_build(const tokenizer *tok, const chat_template *ct, bool chat,
                      const bench_sample *s, eval_prompt *out) {
    memset(out, 0, sizeof *out);
    if (!s->context || !*s->context) return tis_error(TIS_EINVAL, "eval: sample %s has an empty context", s->id);
    if (!s->question) return tis_error(TIS_EINVAL, "eval: sample %s has no question", s->id);
    char *pre_text = NULL, *suf_text = NULL;
    int rc = 0;
    if (chat && ct && ct->family != CHAT_NONE) {
        /* Render with a one-byte placeholder for the context and cut there. */
        char *user = s_concat("\x01\n\n", s->question, NULL);
        chat_msg msgs[2];
        size_t nm = 0;
        if (s->prefix) msgs[nm++] = (chat_msg){"system", s->prefix};
        msgs[nm++] = (chat_msg){"user", user};
        char *text = NULL;
        rc = user ? chat_render(ct, msgs, nm, true, &text) : tis_error(TIS_ENOMEM, "eval: out of memory");
        free(user);
        if (rc) return rc;
        char *cut = strchr(text, '\x01');
        TIS_ASSERT(cut);
        *cut = 0;
        pre_text = strdup(text);
        suf_text = s_concat(cut + 1, s->answer_prefix, NULL);
        free(text);
    } else {
        pre_text = s->prefix ? s_concat(s->prefix, "\n\n", NULL) : strdup("");
        suf_text = s_concat("\n\n", s->question, "\n");
        if (suf_text && s->answer_prefix) {
            char *t = s_concat(suf_text, s->answer_prefix, NULL);
            free(suf_text);
            suf_text = t;
        }
    }
    if (!pre_text || !suf_text) {
        free(pre_text);
        free(suf_text);
        return tis_error(TIS_ENOMEM, "eval: out of memory");
    }
    int64_t cap = 0;
    if (tokenizer_add_bos(tok) && tokenizer_bos(tok) >= 0) {
        int32_t bos = tokenizer_bos(tok);
        rc = s_append(&out->ids, &out->n, &cap, &bos, 1);
    }
    if (!rc) rc = s_encode_append(tok, pre_text, true, &out->ids, &out->n, &cap);
    out->ctx_begin = out->n;
    if (!rc) rc = s_encode_append(tok, s->context, false, &out->ids, &out->n, &cap);
    out->n_ctx = out->n - out->ctx_begin;
    out->suf_begin = out->n;
    if (!rc) rc = s_encode_append(tok, suf_text, true, &out->ids, &out->n, &cap);
    free(pre_text);
    free(suf_text);
    if (!rc && out->n - out->suf_begin < 2)
        rc = tis_error(TIS_EINVAL, "eval: sample %s: the question encodes to fewer than 2 tokens", s->id);
    if (!rc && out->n_ctx < 1) rc = tis_error(TIS_EINVAL, "eval: sample %s: empty context", s->id);
    if (rc) eval_prompt_free(out);
    return rc;
}

void eval_prompt_free(eval_prompt *p) {
    free(p->ids);
    memset(p, 0, sizeof *p);
}

int eval_prefill_context(forward_state *st, const eval_prompt *p, int64_t window, int64_t hid_layer,
                         kv_cache **kv, press_obs *obs, double *secs) {
    const model *m = forward_model(st);
    int64_t ctx_end = p->ctx_begin + p->n_ctx;
    *secs = 0;
    int rc = forward_kv_new(m, p->n, kv);
    if (!rc) rc = press_obs_init(obs, m, p->n);
    if (!rc && hid_layer >= 0) rc = press_obs_capture_hidden(obs, hid_layer, m->config.d_model);
    if (!rc) {
        press_obs_window(obs, ctx_end - (window < p->n_ctx ? window : p->n_ctx));
        double t0 = tis_now();
        rc = press_obs_prefill(obs, st, *kv, p->ids, ctx_end, NULL, 0);
        *secs = tis_now() - t0;
    }
    if (rc) {
        kv_cache_destroy(kv);
        press_obs_free(obs);
    }
    return rc;
}

/* ---- runner --------------------------------------------------------------- */

void eval_config_defaults(eval_config *c) {
    memset(c, 0, sizeof *c);
    c->max_new = 16;
    c->window = 64;
    c->n_sink = 4;
    c->seed = 42;
    c->chat = true;
    c->agnostic = true;
    c->batch = 1;
    c->attn_hook_lambda = -1.0f;
}

struct eval_runner {
    const model *m;         /* borrowed */
    eval_config cfg;        /* arrays borrowed from the caller */
    press *presses;         /* [n_policies] */
    forward_state *st;
    chat_template ct;
    head *head_ctx;         /* for tis (owned) or NULL */
    head *head_q;           /* for tis_query (owned) or NULL */
    int64_t head_layer;     /* the layer both heads read, -1 if none */
    float *logits;          /* [logits_rows][n_vocab] */
    int64_t logits_rows;    /* cfg.batch */
};

int eval_runner_new(eval_runner **out, const model *m, const eval_config *cfg) {
    *out = NULL;
    if (cfg->n_policies <= 0) return tis_error(TIS_EINVAL, "eval: no policy given");
    if (cfg->n_budgets + cfg->n_budget_tokens <= 0) return tis_error(TIS_EINVAL, "eval: no budget given");
    if (!cfg->agnostic && !cfg->query_aware) return tis_error(TIS_EINVAL, "eval: no protocol");
    if (cfg->max_new < 1 || cfg->max_new > 4096) return tis_error(TIS_EINVAL, "eval: max_new %lld", (long long)cfg->max_new);
    if (cfg->batch < 1 || cfg->batch > 1024) return tis_error(TIS_EINVAL, "eval: batch %lld", (long long)cfg->batch);
    if (cfg->window < 0 || cfg->n_sink < 0) return tis_error(TIS_EINVAL, "eval: negative window or sinks");
    for (int64_t i = 0; i < cfg->n_budgets; i++)
        if (!(cfg->budgets[i] > 0 && cfg->budgets[i] <= 1))
            return tis_error(TIS_EINVAL, "eval: budget %g is not a fraction in (0, 1]", cfg->budgets[i]);
    for (int64_t i = 0; i < cfg->n_budget_tokens; i++)
        if (cfg->budget_tokens[i] < 1)
            return tis_error(TIS_EINVAL, "eval: budget of %lld tokens", (long long)cfg->budget_tokens[i]);
    eval_runner *r = calloc(1, sizeof *r);
    if (!r) return tis_error(TIS_ENOMEM, "eval: out of memory");
    r->m = m;
    r->cfg = *cfg;
    r->presses = calloc((size_t)cfg->n_policies, sizeof *r->presses);
    r->logits_rows = cfg->batch;
    r->logits = malloc((size_t)(cfg->batch * m->config.n_vocab) * sizeof(float));
    int rc = 0;
    if (!r->presses || !r->logits) rc = tis_error(TIS_ENOMEM, "eval: out of memory");
    for (int64_t i = 0; !rc && i < cfg->n_policies; i++) rc = press_parse(cfg->policies[i], &r->presses[i]);
    bool need_ctx = false, need_q = false;
    for (int64_t i = 0; !rc && i < cfg->n_policies; i++) {
        need_ctx |= r->presses[i].needs_head && !r->presses[i].query_head;
        need_q |= r->presses[i].query_head;
    }
    r->head_layer = -1;
    const model_config *mc = &m->config;
    if (!rc && need_ctx) {
        if (!cfg->head_path) rc = tis_error(TIS_EINVAL, "eval: policy tis needs an importance head (--head; train one with tis train)");
        else if (!(rc = head_load(&r->head_ctx, cfg->head_path)))
            rc = head_check_model(r->head_ctx, mc->name, mc->d_model, mc->n_layer);
        if (!rc && r->head_ctx->cfg.query_aware)
            rc = tis_error(TIS_EINVAL, "eval: %s is a query-aware head: give it to tis_query (--head_query)", cfg->head_path);
        if (!rc) r->head_layer = r->head_ctx->cfg.layer;
    }
    if (!rc && need_q) {
        if (!cfg->head_query_path) rc = tis_error(TIS_EINVAL, "eval: policy tis_query needs a query-aware head (--head_query)");
        else if (!(rc = head_load(&r->head_q, cfg->head_query_path)))
            rc = head_check_model(r->head_q, mc->name, mc->d_model, mc->n_layer);
        if (!rc && !r->head_q->cfg.query_aware)
            rc = tis_error(TIS_EINVAL, "eval: %s is not query-aware: train it with tis train --query_aware", cfg->head_query_path);
        if (!rc && r->head_layer >= 0 && r->head_q->cfg.layer != r->head_layer)
            rc = tis_error(TIS_EINVAL, "eval: the tis and tis_query heads read different layers (%lld, %lld)",
                           (long long)r->head_layer, (long long)r->head_q->cfg.layer);
        if (!rc) r->head_layer = r->head_q->cfg.layer;
    }
    if (!rc) rc = forward_state_new(&r->st, m, backend_cpu(), 512);
    if (!rc && cfg->chat) rc = chat_template_init(&r->ct, tokenizer_chat_template(m->tok));
    if (rc) {
        eval_runner_destroy(&r);
        return rc;
    }
    *out = r;
    return 0;
}

void eval_runner_destroy(eval_runner **p) {
    if (!p || !*p) return;
    eval_runner *r = *p;
    forward_state_destroy(&r->st);
    head_destroy(&r->head_ctx);
    head_destroy(&r->head_q);
    chat_template_free(&r->ct);
    free(r->presses);
    free(r->logits);
    free(r);
    *p = NULL;
}

typedef answer_out decode_out;

/* One decode group of the runner: its scratch logits hold cfg.batch rows. */
static int s_decode_group(eval_runner *r, kv_cache **kvs, int64_t G, const int32_t *const *q,
                          const int64_t *nq, decode_out *d) {
    if (G > r->logits_rows) return tis_error(TIS_EINVAL, "eval: group of %lld > batch", (long long)G);
    return generate_answers(r->st, r->m, kvs, G, q, nq, r->cfg.max_new, r->logits, d);
}

static int s_push_row(eval_row **rows, int64_t *n, int64_t *cap, const eval_row *row) {
    if (*n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 64;
        eval_row *p = realloc(*rows, (size_t)nc * sizeof *p);
        if (!p) return tis_error(TIS_ENOMEM, "eval: out of memory");
        *rows = p;
        *cap = nc;
    }
    (*rows)[(*n)++] = *row;
    return 0;
}

static void s_fill_row(eval_row *row, const char *benchmark, const bench_sample *s,
                       const eval_prompt *p, const char *policy, const char *protocol,
                       double budget, int64_t budget_tokens, const decode_out *d) {
    memset(row, 0, sizeof *row);
    snprintf(row->benchmark, sizeof row->benchmark, "%s", benchmark);
    snprintf(row->policy, sizeof row->policy, "%s", policy);
    snprintf(row->protocol, sizeof row->protocol, "%s", protocol);
    row->budget = budget;
    row->budget_tokens = budget_tokens;
    row->context_tokens = p->n_ctx;
    row->target_tokens = s->target_tokens;
    row->depth = s->depth;
    row->position = s->position;
    snprintf(row->sample_id, sizeof row->sample_id, "%s", s->id);
    bench_score sc;
    bench_score_answer(s, d->text ? d->text : "", &sc);
    row->correct = sc.contains;
    row->exact = sc.exact;
    row->hallucinated = sc.hallucinated;
    snprintf(row->answer, sizeof row->answer, "%s", d->text ? d->text : "");
    snprintf(row->expected, sizeof row->expected, "%s", s->n_answers ? s->answers[0] : "");
    row->kv_bytes = d->kv_bytes;
    row->n_generated = d->n_gen;
    row->decode_s = d->first_s + d->rest_s;
    row->tokens_per_s = d->n_gen > 1 && d->rest_s > 0 ? (double)(d->n_gen - 1) / d->rest_s : 0;
    row->peak_rss_bytes = report_peak_rss();
}

int eval_answer_ids(const tokenizer *tok, const bench_sample *s, int32_t **ids, int64_t *n) {
    const char *ap = s->answer_prefix;
    size_t la = ap ? strlen(ap) : 0;
    bool space = la > 0 && ap[la - 1] != ' ' && ap[la - 1] != '"' && ap[la - 1] != '\n';
    char *t = s_concat(space ? " " : "", s->answers[0], NULL);
    if (!t) return tis_error(TIS_ENOMEM, "eval: out of memory");
    int rc = tokenizer_encode(tok, t, strlen(t), false, ids, n);
    free(t);
    return rc;
}

/* Importance in [0, 1] as the percentile of each context token's head score
 * (scale-free: listwise-trained logits have no fixed level). */
static float *s_percentiles(const float *sc, int64_t n) {
    float *pct = malloc((size_t)n * sizeof(float));
    if (!pct) return NULL;
    for (int64_t j = 0; j < n; j++) { /* O(n^2): a few ms at 4k tokens, once per sample */
        int64_t below = 0;
        for (int64_t i = 0; i < n; i++) below += sc[i] < sc[j];
        pct[j] = n > 1 ? (float)below / (float)(n - 1) : 1.0f;
    }
    return pct;
}

/* The attention hook: kept context entry j gets lambda * s_j on its logit. */
static int s_apply_hook(kv_cache *kv, const float *pct, int64_t ctx_begin, int64_t n_ctx, float lambda) {
    int rc = kv_cache_enable_bias(kv);
    if (rc) return rc;
    for (int64_t s = 0; s < kv->n_stream; s++) {
        const int32_t *P = kv_cache_pos(kv, s);
        float *B = kv->bias + kv->off[s];
        for (int64_t i = 0; i < kv->len[s]; i++) {
            int64_t c = (int64_t)P[i] - ctx_begin;
            B[i] = c >= 0 && c < n_ctx ? lambda * pct[c] : 0.0f;
        }
    }
    return 0;
}

/* One protocol x policy x budget run of a sample. */
typedef struct variant {
    const press *pr;
    bool qa;
    double frac;          /* -1 for a token budget */
    int64_t btok;         /* -1 for a fraction */
    int64_t k;            /* context entries per stream */
    int64_t kept_mean;
    double compress_s;
    kv_cache *kv;         /* compressed cache (owned while the group runs) */
    decode_out d;
    bool skipped;         /* oracle without labels: recorded as a miss */
} variant;

/* The runs of one sample, in row order: protocol x policy x budget (`full`
 * once per protocol; tis_query only in the query-aware protocol). With
 * out NULL, only counts them. */
static int64_t s_variants(const eval_config *cfg, const press *presses, int64_t n_ctx, variant *out) {
    int64_t nb = cfg->n_budgets + cfg->n_budget_tokens, n = 0;
    for (int pi = 0; pi < 2; pi++) {
        bool qa = pi == 1;
        if (qa ? !cfg->query_aware : !cfg->agnostic) continue;
        for (int64_t i = 0; i < cfg->n_policies; i++) {
            const press *pr = &presses[i];
            if (pr->query_head && !qa) continue; /* the question is unknown before compression */
            for (int64_t b = 0; b < (pr->score ? nb : 1); b++, n++) {
                if (!out) continue;
                variant *v = &out[n];
                v->pr = pr;
                v->qa = qa;
                v->frac = 1.0;
                v->btok = -1;
                v->k = n_ctx;
                if (pr->score && b < cfg->n_budgets) {
                    v->frac = cfg->budgets[b];
                    v->k = press_budget_tokens(v->frac, n_ctx);
                } else if (pr->score) {
                    v->btok = cfg->budget_tokens[b - cfg->n_budgets];
                    v->frac = -1;
                    v->k = v->btok < n_ctx ? v->btok : n_ctx;
                }
                v->kept_mean = n_ctx;
            }
        }
    }
    return n;
}

int eval_rows_per_sample(const eval_config *cfg, int64_t *n) {
    *n = 0;
    if (!cfg || cfg->n_policies <= 0 || !cfg->policies)
        return tis_error(TIS_EINVAL, "eval: no policies");
    press *presses = calloc((size_t)cfg->n_policies, sizeof *presses);
    if (!presses) return tis_error(TIS_ENOMEM, "eval: out of memory");
    int rc = 0;
    for (int64_t i = 0; !rc && i < cfg->n_policies; i++) rc = press_parse(cfg->policies[i], &presses[i]);
    if (!rc) *n = s_variants(cfg, presses, 1, NULL);
    free(presses);
    return rc;
}

/* Debug aid (TIS_DEBUG_PRESS=1): how much of the answer's span in the
 * context a compressed cache kept, per layer, on stderr. */
static void s_debug_keep(eval_runner *r, const bench_sample *s, const eval_prompt *p,
                         const variant *v, const kv_cache *kv) {
    const char *at = strstr(s->context, s->answers[0]);
    if (!at) return;
    int32_t *ids = NULL;
    int64_t a0 = 0, a1 = 0;
    char *pre = strndup(s->context, (size_t)(at - s->context));
    char *thru = strndup(s->context, (size_t)(at - s->context) + strlen(s->answers[0]));
    if (pre && !tokenizer_encode(r->m->tok, pre, strlen(pre), false, &ids, &a0)) free(ids);
    if (thru && !tokenizer_encode(r->m->tok, thru, strlen(thru), false, &ids, &a1)) free(ids);
    free(pre);
    free(thru);
    fprintf(stderr, "[keep] %s %s %s k=%lld span [%lld,%lld):", s->id, v->qa ? "qa" : "ag", v->pr->name,
            (long long)v->k, (long long)a0, (long long)a1);
    for (int64_t l = 0; l < kv->n_layer; l++) {
        int64_t hit = 0, tot = 0;
        for (int64_t h = 0; h < kv->n_kv_head; h++) {
            int64_t st = kv_stream(kv, l, h);
            for (int64_t i = 0; i < kv->len[st]; i++) {
                int64_t c = kv_cache_pos(kv, st)[i] - p->ctx_begin;
                hit += c >= a0 && c < a1;
            }
            tot += a1 - a0;
        }
        fprintf(stderr, " %.0f", tot ? 100.0 * (double)hit / (double)tot : 0.0);
    }
    fprintf(stderr, "\n");
}

int eval_run_sample(eval_runner *r, const char *benchmark, const bench_sample *s,
                    eval_row **rows, int64_t *n_rows, int64_t *cap_rows) {
    const eval_config *cfg = &r->cfg;
    eval_prompt p;
    int rc = eval_prompt_build(r->m->tok, &r->ct, cfg->chat, s, &p);
    if (rc) return rc;
    int64_t n_suf = p.n - p.suf_begin, ctx_end = p.ctx_begin + p.n_ctx;
    kv_cache *ctx_kv = NULL, *qa_kv = NULL, *prompt_kv = NULL, *work = NULL;
    press_obs obs = {0}, obs_q = {0};
    oracle_labels orc = {0};
    decode_out full = {0};
    int32_t *ans = NULL;
    int64_t n_ans = 0, n_var = 0;
    variant *var = NULL;
    kv_cache **gkv = NULL;
    const int32_t **gq = NULL;
    int64_t *gn = NULL, *kept = NULL;
    decode_out *gd = NULL;
    press_plan *plan = NULL;
    const press *plan_pr = NULL;
    bool plan_qa = false;
    double plan_s = 0, head_s = 0;
    float *tis_sc = NULL, *tisq_sc = NULL, *tis_pct = NULL, *tisq_pct = NULL;
    bool want_oracle = false;
    for (int64_t i = 0; i < cfg->n_policies; i++) want_oracle |= r->presses[i].needs_oracle;

    /* 1. prefix + context, observed; the agnostic window is the context's tail. */
    int64_t win = cfg->window < p.n_ctx ? cfg->window : p.n_ctx;
    double prefill_s = 0;
    rc = eval_prefill_context(r->st, &p, win, r->head_layer, &ctx_kv, &obs, &prefill_s);
    if (rc) goto done;

    /* 2. + the question without its last token, observed with the question as
     *    window (query-aware protocol); the last token is run after compression
     *    so that every generated token depends on the compressed cache. */
    rc = kv_cache_compact(&qa_kv, ctx_kv, NULL, n_suf);
    if (!rc) rc = press_obs_copy(&obs_q, &obs);
    if (rc) goto done;
    press_obs_window(&obs_q, ctx_end);
    double t0 = tis_now();
    rc = press_obs_prefill(&obs_q, r->st, qa_kv, p.ids + p.suf_begin, n_suf - 1, NULL, 0);
    double prefill_q_s = tis_now() - t0;
    if (rc) goto done;

    /* 3. full, alone: the reference answer (the same computation in both
     *    protocols) and the reference timings. */
    rc = kv_cache_compact(&work, qa_kv, NULL, 1 + cfg->max_new);
    if (!rc) {
        const int32_t *q1 = p.ids + p.n - 1;
        int64_t n1 = 1;
        rc = s_decode_group(r, &work, 1, &q1, &n1, &full);
    }
    kv_cache_destroy(&work);
    if (rc) goto done;
    int64_t full_bytes = full.kv_bytes;

    /* 4. oracle labels from the answer's attention in the full-context pass. */
    if (want_oracle) {
        if (s->n_answers > 0 && !cfg->use_model_answer) {
            rc = eval_answer_ids(r->m->tok, s, &ans, &n_ans);
            if (rc) goto done;
        } else if (full.text && *full.text) {
            rc = tokenizer_encode(r->m->tok, full.text, strlen(full.text), false, &ans, &n_ans);
            if (rc) goto done;
        }
        if (n_ans > 0) {
            rc = kv_cache_compact(&prompt_kv, qa_kv, NULL, 1 + n_ans);
            if (!rc) rc = forward_run(r->st, prompt_kv, p.ids + p.n - 1, 1, NULL, 0, NULL);
            if (!rc) rc = oracle_compute(r->st, prompt_kv, p.ctx_begin, p.n_ctx, ans, n_ans, false, &orc);
            kv_cache_destroy(&prompt_kv);
            if (rc) goto done;
        }
    }

    /* 4b. importance-head scores: tis from the context's own hidden states,
     *     tis_query also from the question's (query-aware protocol). */
    if (r->head_layer >= 0) {
        double th = tis_now();
        if (r->head_ctx) {
            tis_sc = malloc((size_t)p.n_ctx * sizeof(float));
            rc = tis_sc ? head_score_context(r->head_ctx, obs.hid, p.ctx_begin, p.n_ctx, 0, 0, tis_sc)
                        : tis_error(TIS_ENOMEM, "eval: out of memory for head scores");
        }
        if (!rc && r->head_q) {
            tisq_sc = malloc((size_t)p.n_ctx * sizeof(float));
            rc = tisq_sc ? head_score_context(r->head_q, obs_q.hid, p.ctx_begin, p.n_ctx, p.suf_begin, n_suf - 1,
                                              tisq_sc)
                         : tis_error(TIS_ENOMEM, "eval: out of memory for head scores");
        }
        head_s = tis_now() - th;
        if (rc) goto done;
    }

    /* 5. every protocol x policy x budget, in groups of cfg->batch. */
    int64_t nb = cfg->n_budgets + cfg->n_budget_tokens;
    var = calloc((size_t)(2 * cfg->n_policies * nb + 2), sizeof *var);
    gkv = malloc((size_t)cfg->batch * sizeof *gkv);
    gq = malloc((size_t)cfg->batch * sizeof *gq);
    gn = malloc((size_t)cfg->batch * sizeof *gn);
    gd = malloc((size_t)cfg->batch * sizeof *gd);
    kept = malloc((size_t)ctx_kv->n_stream * sizeof *kept);
    if (!var || !gkv || !gq || !gn || !gd || !kept) {
        rc = tis_error(TIS_ENOMEM, "eval: out of memory");
        goto done;
    }
    n_var = s_variants(cfg, r->presses, p.n_ctx, var);
    for (int64_t g0 = 0; g0 < n_var; g0 += cfg->batch) {
        int64_t g1 = g0 + cfg->batch < n_var ? g0 + cfg->batch : n_var, G = 0;
        for (int64_t vi = g0; vi < g1; vi++) {
            variant *v = &var[vi];
            if (!v->pr->score) continue; /* full: the reference run above */
            if (v->pr->needs_oracle && !orc.total) {
                v->skipped = true;
                continue;
            }
            press_ctx pc = {
                .kv = v->qa ? qa_kv : ctx_kv, .obs = v->qa ? &obs_q : &obs,
                .oracle = orc.total ? &orc : NULL, .ctx_begin = p.ctx_begin, .n_ctx = p.n_ctx,
                .window = v->qa ? 0 : win, .n_sink = cfg->n_sink,
                .head_scores = v->pr->query_head ? tisq_sc : tis_sc,
                .seed = cfg->seed ^ (uint64_t)p.n * 0x9e3779b97f4a7c15ull,
            };
            /* One scoring per (protocol, policy), shared by its budgets; each
             * row is charged the scoring plus its own compaction, what one
             * request would pay. */
            if (!plan || plan_pr != v->pr || plan_qa != v->qa) {
                press_plan_destroy(&plan);
                double tp = tis_now();
                rc = press_plan_new(&plan, v->pr, &pc);
                plan_s = tis_now() - tp + (v->pr->needs_head ? head_s : 0);
                plan_pr = v->pr;
                plan_qa = v->qa;
                if (rc) goto done;
            }
            double tc = tis_now();
            rc = press_plan_compact(plan, v->k, (v->qa ? 1 : n_suf) + cfg->max_new, &v->kv, kept);
            if (!rc && v->pr->attn_hook) {
                const head *hd = v->pr->query_head ? r->head_q : r->head_ctx;
                float **pct = v->pr->query_head ? &tisq_pct : &tis_pct;
                if (!*pct) *pct = s_percentiles(v->pr->query_head ? tisq_sc : tis_sc, p.n_ctx);
                float lambda = cfg->attn_hook_lambda >= 0 ? cfg->attn_hook_lambda : hd->attn_hook_lambda;
                rc = *pct ? s_apply_hook(v->kv, *pct, p.ctx_begin, p.n_ctx, lambda)
                          : tis_error(TIS_ENOMEM, "eval: out of memory");
            }
            v->compress_s = plan_s + (tis_now() - tc);
            if (rc) goto done;
            if (getenv("TIS_DEBUG_PRESS") && s->n_answers > 0) s_debug_keep(r, s, &p, v, v->kv);
            int64_t sum = 0;
            for (int64_t q = 0; q < ctx_kv->n_stream; q++) sum += kept[q];
            v->kept_mean = (sum + ctx_kv->n_stream / 2) / ctx_kv->n_stream;
            gkv[G] = v->kv;
            gq[G] = v->qa ? p.ids + p.n - 1 : p.ids + p.suf_begin;
            gn[G] = v->qa ? 1 : n_suf;
            G++;
        }
        if (G > 0) {
            rc = s_decode_group(r, gkv, G, gq, gn, gd);
            if (rc) goto done;
        }
        G = 0;
        for (int64_t vi = g0; vi < g1; vi++) {
            variant *v = &var[vi];
            if (v->kv) {
                v->d = gd[G++];
                kv_cache_destroy(&v->kv);
            }
        }
    }

    /* 6. rows, in protocol x policy x budget order. */
    const char *protocols[2] = {"agnostic", "query_aware"};
    for (int64_t vi = 0; vi < n_var; vi++) {
        variant *v = &var[vi];
        decode_out d = v->d;
        if (!v->pr->score) {
            d = full;
            if (!v->qa) d.first_s += prefill_q_s; /* the agnostic run prefills the whole question */
        }
        double shared_s = prefill_s + (v->qa ? prefill_q_s : 0);
        eval_row row;
        s_fill_row(&row, benchmark, s, &p, v->pr->score ? v->pr->name : "full", protocols[v->qa],
                   v->frac, v->btok, &d);
        row.kept_tokens = v->kept_mean;
        row.full_kv_bytes = full_bytes;
        row.prefill_s = shared_s;
        row.compress_s = v->compress_s;
        row.ttft_s = shared_s + v->compress_s + d.first_s;
        if (v->skipped) snprintf(row.answer, sizeof row.answer, "(no oracle labels: no answer)");
        rc = s_push_row(rows, n_rows, cap_rows, &row);
        if (rc) goto done;
    }
done:
    for (int64_t vi = 0; var && vi < n_var; vi++) {
        kv_cache_destroy(&var[vi].kv);
        free(var[vi].d.text);
        free(var[vi].d.ids);
    }
    press_plan_destroy(&plan);
    free(tis_sc);
    free(tisq_sc);
    free(tis_pct);
    free(tisq_pct);
    free(var);
    free(gkv);
    free(gq);
    free(gn);
    free(gd);
    free(kept);
    free(full.text);
    free(full.ids);
    free(ans);
    oracle_labels_free(&orc);
    press_obs_free(&obs);
    press_obs_free(&obs_q);
    kv_cache_destroy(&ctx_kv);
    kv_cache_destroy(&qa_kv);
    kv_cache_destroy(&prompt_kv);
    kv_cache_destroy(&work);
    eval_prompt_free(&p);
    return rc;
}
