/* eval: one sample through protocols x policies x budgets, sharing the prefill. */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "clock.h"
#include "decoder.h"
#include "head.h"
#include "oracle.h"
#include "press.h"
#include "press_spec.h"
#include "session.h"
#include "tis_error.h"

void eval_session_input(const bench_sample *s, session_input *in) {
    *in = (session_input){.id = s->id, .prefix = s->prefix, .context = s->context, .question = s->question,
                          .answer_prefix = s->answer_prefix, .answer = s->n_answers > 0 ? s->answers[0] : NULL};
}

int eval_sample_max_new(const eval_config *cfg, const tokenizer *tok, const bench_sample *s, int64_t *out) {
    *out = cfg->max_new;
    if (cfg->max_new > 0) return 0;
    int64_t longest = 0;
    for (int64_t i = 0; i < s->n_answers; i++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        int rc = tokenizer_encode(tok, s->answers[i], strlen(s->answers[i]), false, &ids, &n);
        free(ids);
        if (rc) return rc;
        if (n > longest) longest = n;
    }
    *out = longest + EVAL_ANSWER_ROOM < 4096 ? longest + EVAL_ANSWER_ROOM : 4096;
    return 0;
}

/* ---- runner --------------------------------------------------------------- */

void eval_config_defaults(eval_config *c) {
    memset(c, 0, sizeof *c);
    c->max_new = 0; /* from the task: eval_sample_max_new */
    c->window = 64;
    c->n_sink = 4;
    c->seed = 42;
    c->chat = true;
    c->agnostic = true;
    c->batch = 1;
    c->attn_hook_lambda = -1.0f;
}

/* ---- --head_as ----------------------------------------------------------- */

int eval_check_head_as(const eval_config *cfg) {
    int rc = press_head_as_check(cfg->head_as, cfg->n_head_as, "--head_as");
    for (int64_t i = 0; !rc && i < cfg->n_head_as; i++) {
        const char *e = cfg->head_as[i];
        int64_t n = press_head_as_name_len(e);
        bool listed = false;
        for (int64_t k = 0; k < cfg->n_policies && !listed; k++) { /* NAME, NAME+pool..., or in a union */
            char base[64], first[64];
            const char *second = press_union_split(cfg->policies[k], first, sizeof first);
            press_split_name(second ? first : cfg->policies[k], base, sizeof base);
            listed = (size_t)n == strlen(base) && !strncmp(base, e, (size_t)n);
            if (second && !listed) {
                press_split_name(second, base, sizeof base);
                listed = (size_t)n == strlen(base) && !strncmp(base, e, (size_t)n);
            }
        }
        if (!listed) rc = tis_error(TIS_EINVAL, "--head_as %s: add %.*s to --baseline to run it", e, (int)n, e);
    }
    return rc;
}

/* Member i's head file under cfg: a --head_as entry's path, cfg's head
 * for tis / tis_query, NULL for a member without a head. */
static const char *s_member_path(const eval_config *cfg, const press_spec *sp, int i) {
    int h = sp->head[i];
    if (h >= 0) return cfg->head_as[h] + press_head_as_name_len(cfg->head_as[h]) + 1;
    return h == PRESS_HEAD_CTX ? cfg->head_path : h == PRESS_HEAD_QUERY ? cfg->head_query_path : NULL;
}

int eval_union_parse(const eval_config *cfg, const char *name, press *a, press *b, const char **path_a,
                     const char **path_b) {
    press_spec sp;
    int rc = press_spec_parse(name, cfg->head_as, cfg->n_head_as, &sp);
    if (rc) return rc;
    if (sp.n != 2) return tis_error(TIS_EINVAL, "eval: '%s' is not a union of two policies (A|B)", name);
    const char **mp[2] = {path_a, path_b};
    for (int i = 0; i < 2; i++) {
        const char *path = s_member_path(cfg, &sp, i);
        if (sp.m[i].needs_head && !path)
            return tis_error(TIS_EINVAL, "eval: '%s': %s needs an importance head (%s)", name, sp.m[i].name,
                             sp.m[i].query_head ? "--head_query" : "--head, or --head_as");
        if (mp[i]) *mp[i] = path;
    }
    *a = sp.m[0];
    *b = sp.m[1];
    return 0;
}

int eval_press_parse(const eval_config *cfg, const char *name, press *out, const char **head_path) {
    press_spec sp;
    int rc = press_spec_parse(name, cfg->head_as, cfg->n_head_as, &sp);
    if (rc) return rc;
    press_spec_row(&sp, out);
    if (head_path) *head_path = sp.n == 1 ? s_member_path(cfg, &sp, 0) : NULL; /* a union: its members' */
    return 0;
}

/* ---- runner --------------------------------------------------------------- */

struct eval_runner {
    const model *m;         /* borrowed */
    eval_config cfg;        /* arrays borrowed from the caller */
    press *presses;         /* [n_policies] (a union's: its row's, eval_press_parse) */
    press *presses_a;       /* [n_policies] a union's members: presses_a[i] | second[i] */
    press *second;          /* [n_policies] */
    bool *is_union;         /* [n_policies] */
    head **own;             /* [2 * n_policies] the context heads loaded, one per head file (owned) */
    const char **own_path;  /* [2 * n_policies] own[i]'s file (borrowed from cfg) */
    const head **pol_head;  /* [2 * n_policies] the context head policy i compresses with (one of
                               own), or NULL; [n_policies + i]: union i's second member's */
    forward_state *st;
    chat_template ct;
    head *head_q;           /* for tis_query (owned) or NULL */
    int64_t head_layer;     /* the layer every head reads, -1 if none */
    decoder *dec;           /* batches of cfg.batch policy runs */
};

/* Loads the query-agnostic head of a learned policy and checks it fits. */
static int s_load_ctx_head(const eval_config *cfg, const model_config *mc, const char *pol, const char *path,
                           head **out) {
    if (!path) return tis_error(TIS_EINVAL, "eval: policy %s needs an importance head (--head; train one with tis train)", pol);
    int rc = head_load(out, path);
    if (!rc) rc = head_check_model(*out, mc->name, mc->d_model, mc->n_layer, mc->n_kv_head);
    if (!rc && (*out)->cfg.query_aware)
        rc = tis_error(TIS_EINVAL, "eval: %s is a query-aware head: give it to tis_query (--head_query)", path);
    return rc;
}

/* Every head reads one layer: the session keeps one layer's hidden states. */
static int s_same_layer(eval_runner *r, const head *h, const char *pol) {
    if (r->head_layer >= 0 && h->cfg.layer != r->head_layer)
        return tis_error(TIS_EINVAL, "eval: the heads read different layers (%s: %lld, another: %lld); "
                         "compare heads of one layer in a run", pol, (long long)h->cfg.layer, (long long)r->head_layer);
    r->head_layer = h->cfg.layer;
    return 0;
}

static int s_check_config(const eval_config *cfg) {
    if (cfg->n_policies <= 0) return tis_error(TIS_EINVAL, "eval: no policy given");
    if (cfg->n_budgets + cfg->n_budget_tokens <= 0) return tis_error(TIS_EINVAL, "eval: no budget given");
    if (!cfg->agnostic && !cfg->query_aware) return tis_error(TIS_EINVAL, "eval: no protocol");
    if (cfg->max_new < 0 || cfg->max_new > 4096) return tis_error(TIS_EINVAL, "eval: max_new %lld", (long long)cfg->max_new);
    if (cfg->batch < 1 || cfg->batch > 1024) return tis_error(TIS_EINVAL, "eval: batch %lld", (long long)cfg->batch);
    if (cfg->window < 0 || cfg->n_sink < 0) return tis_error(TIS_EINVAL, "eval: negative window or sinks");
    for (int64_t i = 0; i < cfg->n_budgets; i++)
        if (!(cfg->budgets[i] > 0 && cfg->budgets[i] <= 1))
            return tis_error(TIS_EINVAL, "eval: budget %g is not a fraction in (0, 1]", cfg->budgets[i]);
    for (int64_t i = 0; i < cfg->n_budget_tokens; i++)
        if (cfg->budget_tokens[i] < 1)
            return tis_error(TIS_EINVAL, "eval: budget of %lld tokens", (long long)cfg->budget_tokens[i]);
    for (int64_t i = 0; i < cfg->n_thresholds; i++)
        if (!(cfg->thresholds[i] > 0 && cfg->thresholds[i] <= 1))
            return tis_error(TIS_EINVAL, "eval: threshold %g is not in (0, 1]", cfg->thresholds[i]);
    return eval_check_head_as(cfg);
}

/* The head of policy pr (named pol; its head file path) into
 * r->pol_head[slot] (a context head: one loaded per head file) or
 * r->head_q (the query head, once). */
static int s_policy_head(eval_runner *r, int64_t slot, const char *pol, const press *pr, const char *path) {
    const eval_config *cfg = &r->cfg;
    const model_config *mc = &r->m->config;
    int rc = 0;
    if (pr->needs_head && !pr->query_head) {
        for (int64_t j = 0; j < 2 * cfg->n_policies && !r->pol_head[slot]; j++) /* tis and tis+hook: one head */
            if (r->own[j] && path && !strcmp(path, r->own_path[j])) r->pol_head[slot] = r->own[j];
        if (!r->pol_head[slot]) {
            rc = s_load_ctx_head(cfg, mc, pol, path, &r->own[slot]);
            if (!rc) rc = s_same_layer(r, r->own[slot], pol);
            r->own_path[slot] = path;
            r->pol_head[slot] = r->own[slot];
        }
        if (!rc && pr->attn_hook && r->pol_head[slot]->cfg.n_out > 1)
            rc = tis_error(TIS_EINVAL, "eval: %s: the attention hook takes a single-score head; %s has one "
                           "score per (layer, kv head)", pol, path);
    } else if (pr->query_head && !r->head_q) {
        if (!path) return tis_error(TIS_EINVAL, "eval: policy tis_query needs a query-aware head (--head_query)");
        rc = head_load(&r->head_q, path);
        if (!rc) rc = head_check_model(r->head_q, mc->name, mc->d_model, mc->n_layer, mc->n_kv_head);
        if (!rc && !r->head_q->cfg.query_aware)
            rc = tis_error(TIS_EINVAL, "eval: %s is not query-aware: train it with tis train --query_aware", path);
        if (!rc) rc = s_same_layer(r, r->head_q, pol);
    }
    return rc;
}

/* The heads: one per query-agnostic learned policy (a union's members'
 * too), the query head once. */
static int s_load_heads(eval_runner *r) {
    const eval_config *cfg = &r->cfg;
    int64_t np = cfg->n_policies;
    int rc = 0;
    for (int64_t i = 0; !rc && i < np; i++) {
        const char *path = NULL, *path_b = NULL;
        rc = eval_press_parse(cfg, cfg->policies[i], &r->presses[i], &path);
        r->is_union[i] = !rc && strchr(cfg->policies[i], '|');
        if (!rc && r->is_union[i]) {
            rc = eval_union_parse(cfg, cfg->policies[i], &r->presses_a[i], &r->second[i], &path, &path_b);
            if (!rc) rc = s_policy_head(r, i, r->presses_a[i].name, &r->presses_a[i], path);
            if (!rc) rc = s_policy_head(r, np + i, r->second[i].name, &r->second[i], path_b);
        } else if (!rc) {
            rc = s_policy_head(r, i, cfg->policies[i], &r->presses[i], path);
            /* a head of one score per token ranks only: budget rows, no threshold */
            if (!rc && r->pol_head[i] && r->pol_head[i]->cfg.n_out <= 1) r->presses[i].calib = PRESS_CALIB_NONE;
        }
    }
    return rc;
}

int eval_runner_new(eval_runner **out, const model *m, const eval_config *cfg) {
    *out = NULL;
    int rc = s_check_config(cfg);
    if (rc) return rc;
    eval_runner *r = calloc(1, sizeof *r);
    if (!r) return tis_error(TIS_ENOMEM, "eval: out of memory");
    r->m = m;
    r->cfg = *cfg;
    r->head_layer = -1;
    size_t np = (size_t)cfg->n_policies;
    r->presses = calloc(np, sizeof *r->presses);
    r->presses_a = calloc(np, sizeof *r->presses_a);
    r->second = calloc(np, sizeof *r->second);
    r->is_union = calloc(np, sizeof *r->is_union);
    r->pol_head = calloc(2 * np, sizeof *r->pol_head);
    r->own = calloc(2 * np, sizeof *r->own);
    r->own_path = calloc(2 * np, sizeof *r->own_path);
    if (!r->presses || !r->presses_a || !r->second || !r->is_union || !r->pol_head || !r->own || !r->own_path)
        rc = tis_error(TIS_ENOMEM, "eval: out of memory");
    if (!rc) rc = s_load_heads(r);
    if (!rc) rc = forward_state_new(&r->st, m, backend_cpu(), 512);
    if (!rc) rc = decoder_new(&r->dec, r->st, cfg->batch);
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
    decoder_destroy(&r->dec);
    forward_state_destroy(&r->st);
    for (int64_t i = 0; r->own && i < 2 * r->cfg.n_policies; i++) head_destroy(&r->own[i]);
    free(r->own);
    free(r->own_path);
    free(r->pol_head);
    head_destroy(&r->head_q);
    chat_template_free(&r->ct);
    free(r->presses);
    free(r->presses_a);
    free(r->second);
    free(r->is_union);
    free(r);
    *p = NULL;
}

/* What one greedy short answer from a prepared cache produced. */
typedef struct decode_out {
    char *text;           /* trimmed answer (malloc'd) */
    int32_t *ids;         /* [n_gen] generated tokens (malloc'd) */
    int64_t n_gen;
    double first_s;       /* feed + first token */
    double rest_s;        /* the other tokens */
    int64_t kv_bytes;     /* cache bytes when decoding started */
    bool capped;          /* it ended at the cap (eval_row.truncated) */
} decode_out;

static void s_decode_out_free(decode_out *d) {
    free(d->text);
    free(d->ids);
    memset(d, 0, sizeof *d);
}

/* Decodes G caches in lockstep on the runner's decoder (G <= cfg.batch):
 * kvs[i] runs q[i][nq[i]] first; each under the sample's cap max_new and
 * its stop rule (the question's), so a run's answer does not depend on its
 * group. With G == 1 the timings are one request's; more, they describe
 * the batch. */
static int s_decode_group(eval_runner *r, const bench_sample *s, int64_t max_new, kv_cache **kvs, int64_t G,
                          const int32_t *const *q, const int64_t *nq, decode_out *d) {
    memset(d, 0, (size_t)G * sizeof *d);
    decoder_seq *seq = calloc((size_t)G, sizeof *seq);
    decoder_seq **ptr = calloc((size_t)G, sizeof *ptr);
    int rc = seq && ptr ? 0 : tis_error(TIS_ENOMEM, "eval: out of memory");
    for (int64_t i = 0; !rc && i < G; i++) {
        rc = decoder_seq_init(&seq[i], kvs[i], q[i], nq[i], max_new);
        answer_stop_init(&seq[i].stop, s->question);
        ptr[i] = &seq[i];
    }
    double t0 = tis_now();
    if (!rc) rc = decoder_run(r->dec, ptr, G);
    for (int64_t i = 0; !rc && i < G; i++) {
        rc = decoder_seq_text(r->dec, &seq[i], true, &d[i].text);
        d[i].first_s = seq[i].t_fed - t0;
        d[i].rest_s = seq[i].t_done - seq[i].t_fed;
        d[i].kv_bytes = seq[i].kv_bytes;
        d[i].n_gen = seq[i].n_gen;
        d[i].capped = seq[i].capped;
        d[i].ids = seq[i].gen; /* ownership moves to d */
        seq[i].gen = NULL;
    }
    for (int64_t i = 0; seq && i < G; i++) decoder_seq_free(&seq[i]);
    if (rc)
        for (int64_t i = 0; i < G; i++) s_decode_out_free(&d[i]);
    free(seq);
    free(ptr);
    return rc;
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
                       const session_prompt *p, const char *policy, const char *protocol,
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
    row->truncated = d->capped;
    row->decode_s = d->first_s + d->rest_s;
    row->tokens_per_s = d->n_gen > 1 && d->rest_s > 0 ? (double)(d->n_gen - 1) / d->rest_s : 0;
    row->peak_rss_bytes = report_peak_rss();
}

/* One protocol x policy x budget run of a sample. */
typedef struct variant {
    const press *pr;
    bool qa;
    double frac;          /* -1 for a token budget or a threshold */
    int64_t btok;         /* -1 for a fraction or a threshold */
    double tau;           /* threshold, or -1 */
    int64_t k;            /* context entries per stream */
    int64_t kept_mean;
    double compress_s;
    kv_cache *kv;         /* compressed cache (owned while the group runs) */
    decode_out d;
    bool skipped;         /* oracle without labels: recorded as a miss */
} variant;

/* Policies whose scores can be on one scale in every stream
 * (press_calibratable) also run the thresholds: kvzip, and tis with a
 * per-head head (a one-output head's policy is made uncalibrated when its
 * head is loaded: budget rows only). Not tis_query: its head is
 * single-score. */
static bool s_thresholded(const press *pr) { return !pr->query_head && press_calibratable(pr); }

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
            int64_t nv = !pr->score ? 1 : nb + (s_thresholded(pr) ? cfg->n_thresholds : 0);
            for (int64_t b = 0; b < nv; b++, n++) {
                if (!out) continue;
                variant *v = &out[n];
                v->pr = pr;
                v->qa = qa;
                v->frac = 1.0;
                v->btok = -1;
                v->tau = -1;
                v->k = n_ctx;
                if (pr->score && b >= nb) {
                    v->tau = cfg->thresholds[b - nb];
                    v->frac = -1;
                } else if (pr->score && b < cfg->n_budgets) {
                    v->frac = cfg->budgets[b];
                    v->k = session_budget(v->frac, 0, n_ctx);
                } else if (pr->score) {
                    v->btok = cfg->budget_tokens[b - cfg->n_budgets];
                    v->frac = -1;
                    v->k = session_budget(-1, v->btok, n_ctx);
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
    for (int64_t i = 0; !rc && i < cfg->n_policies; i++) {
        const char *path = NULL;
        press *pr = &presses[i];
        rc = eval_press_parse(cfg, cfg->policies[i], pr, &path);
        if (!rc && cfg->n_thresholds > 0 && pr->needs_head && !pr->query_head && press_calibratable(pr)) {
            head *h = NULL; /* as the runner: a one-output head has no threshold rows */
            rc = path ? head_load(&h, path) : tis_error(TIS_EINVAL, "eval: %s needs an importance head", pr->name);
            if (!rc && h->cfg.n_out <= 1) pr->calib = PRESS_CALIB_NONE;
            head_destroy(&h);
        }
    }
    if (!rc) *n = s_variants(cfg, presses, 1, NULL);
    free(presses);
    return rc;
}

/* Debug aid (TIS_DEBUG_PRESS=1): how much of the answer's span in the
 * context a compressed cache kept, per layer, on stderr. */
static void s_debug_keep(eval_runner *r, const bench_sample *s, const session_prompt *p,
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


/* One sample on its way through the runner. */
typedef struct sample_run {
    eval_runner *r;
    const bench_sample *s;
    session *ss;
    const session_prompt *p;
    int64_t max_new;      /* the sample's answer cap (eval_sample_max_new) */
    decode_out full;      /* the uncompressed reference run */
    variant *var;         /* [n_var] in row order */
    int64_t n_var;
    kv_cache **gkv;       /* [cfg.batch] one decode group */
    const int32_t **gq;
    int64_t *gn;
    decode_out *gd;
    const head *scored;   /* the context head whose scores the session holds, or NULL */
} sample_run;

/* full, alone (the reference answer and timings, the same computation in
 * both protocols), then what the policies need: oracle labels from the
 * answer's attention over the whole prompt, the query head's scores (a
 * context head scores when its first policy runs: s_run_group). */
static int s_reference(sample_run *x) {
    eval_runner *r = x->r;
    const eval_config *cfg = &r->cfg;
    kv_cache *work = NULL;
    const int32_t *q1 = NULL;
    int64_t n1 = 0;
    session_rest(x->ss, true, &q1, &n1);
    int rc = session_full(x->ss, x->max_new, &work);
    if (!rc) rc = s_decode_group(r, x->s, x->max_new, &work, 1, &q1, &n1, &x->full);
    kv_cache_destroy(&work);
    bool want_oracle = false;
    for (int64_t i = 0; i < cfg->n_policies; i++) want_oracle |= r->presses[i].needs_oracle;
    if (!rc && want_oracle) {
        int32_t *ans = NULL;
        int64_t n_ans = 0;
        rc = session_oracle_answer(x->ss, cfg->use_model_answer, x->full.text, &ans, &n_ans);
        if (!rc && n_ans > 0) rc = session_oracle(x->ss, ans, n_ans);
        free(ans);
    }
    if (!rc && r->head_q) rc = session_score_head(x->ss, r->head_q, NULL);
    return rc;
}

/* Compresses variants [g0, g1) and decodes them as one group. */
static int s_run_group(sample_run *x, int64_t g0, int64_t g1) {
    eval_runner *r = x->r;
    const eval_config *cfg = &r->cfg;
    int64_t G = 0;
    for (int64_t vi = g0; vi < g1; vi++) {
        variant *v = &x->var[vi];
        if (!v->pr->score) continue; /* full: the reference run */
        if (v->pr->needs_oracle && !session_has_oracle(x->ss)) {
            v->skipped = true;
            continue;
        }
        int64_t pi = v->pr - r->presses, np = cfg->n_policies;
        if (r->is_union[pi]) { /* the members' heads score the context in turn */
            const press *a = &r->presses_a[pi], *b = &r->second[pi];
            const head *ha = a->query_head ? r->head_q : r->pol_head[pi];
            const head *hb = b->query_head ? r->head_q : r->pol_head[np + pi];
            int rc = session_compact_union(x->ss, v->pr->name, a, ha, b, hb, v->qa, v->k, x->max_new, &v->kv,
                                           &v->kept_mean, &v->compress_s);
            x->scored = NULL; /* the session's context scores are a member's now */
            if (rc) return rc;
            x->gkv[G] = v->kv;
            session_rest(x->ss, v->qa, &x->gq[G], &x->gn[G]);
            G++;
            continue;
        }
        const head *hd = v->pr->query_head ? r->head_q : r->pol_head[pi];
        if (hd && !v->pr->query_head && hd != x->scored) { /* this policy's head scores the context */
            int rc = session_score_head(x->ss, hd, NULL);
            if (rc) return rc;
            x->scored = hd;
        }
        float lambda = cfg->attn_hook_lambda >= 0 ? cfg->attn_hook_lambda : hd ? hd->attn_hook_lambda : 0.0f;
        int rc = v->tau >= 0 ? session_compact_threshold(x->ss, v->pr, v->qa, v->tau, x->max_new, lambda, &v->kv,
                                                         &v->kept_mean, &v->compress_s)
                             : session_compact(x->ss, v->pr, v->qa, v->k, x->max_new, lambda, &v->kv,
                                               &v->kept_mean, &v->compress_s);
        if (rc) return rc;
        if (getenv("TIS_DEBUG_PRESS") && x->s->n_answers > 0) s_debug_keep(r, x->s, x->p, v, v->kv);
        if (getenv("TIS_DEBUG_PRESS") && v->pr->score && !strcmp(v->pr->name, "kvzip_heads")) {
            const float *cp = session_recon_copy(x->ss, v->qa);
            fprintf(stderr, "[copy] %s:", x->s->id);
            for (int64_t st = 0; cp && st < v->kv->n_stream; st++) fprintf(stderr, " %.3f", cp[st]);
            fprintf(stderr, "\n");
        }
        x->gkv[G] = v->kv;
        session_rest(x->ss, v->qa, &x->gq[G], &x->gn[G]);
        G++;
    }
    if (G > 0) {
        int rc = s_decode_group(r, x->s, x->max_new, x->gkv, G, x->gq, x->gn, x->gd);
        if (rc) return rc;
    }
    G = 0;
    for (int64_t vi = g0; vi < g1; vi++) {
        variant *v = &x->var[vi];
        if (v->kv) {
            v->d = x->gd[G++];
            kv_cache_destroy(&v->kv);
        }
    }
    return 0;
}

/* The sample's rows, in protocol x policy x budget order. */
static int s_rows(sample_run *x, const char *benchmark, eval_row **rows, int64_t *n_rows, int64_t *cap_rows) {
    static const char *protocols[2] = {"agnostic", "query_aware"};
    double prefill_s = session_prefill_s(x->ss), prefill_q_s = session_prefill_q_s(x->ss);
    int64_t full_bytes = session_full_kv_bytes(x->ss);
    for (int64_t vi = 0; vi < x->n_var; vi++) {
        variant *v = &x->var[vi];
        decode_out d = v->d;
        if (!v->pr->score) {
            d = x->full;
            if (!v->qa) d.first_s += prefill_q_s; /* the agnostic run prefills the whole question */
        }
        double shared_s = prefill_s + (v->qa ? prefill_q_s : 0);
        eval_row row;
        s_fill_row(&row, benchmark, x->s, x->p, v->pr->score ? v->pr->name : "full", protocols[v->qa], v->frac,
                   v->btok, &d);
        row.kept_tokens = v->kept_mean;
        row.threshold = v->tau;
        row.full_kv_bytes = full_bytes;
        row.prefill_s = shared_s;
        row.compress_s = v->compress_s;
        row.ttft_s = shared_s + v->compress_s + d.first_s;
        kv_types_name(x->r->m->kv_type, row.kv_type, sizeof row.kv_type);
        if (v->skipped) snprintf(row.answer, sizeof row.answer, "(no oracle labels: no answer)");
        int rc = s_push_row(rows, n_rows, cap_rows, &row);
        if (rc) return rc;
    }
    return 0;
}

int eval_run_sample(eval_runner *r, const char *benchmark, const bench_sample *s,
                    eval_row **rows, int64_t *n_rows, int64_t *cap_rows) {
    const eval_config *cfg = &r->cfg;
    sample_run x = {.r = r, .s = s};
    int rc = eval_sample_max_new(cfg, r->m->tok, s, &x.max_new);
    if (rc) return rc;
    session_input in;
    eval_session_input(s, &in);
    /* Both states: the query-aware one is also where `full` decodes from. */
    session_opts so = {.chat = cfg->chat, .agnostic = cfg->agnostic, .query_aware = true, .window = cfg->window,
                       .n_sink = cfg->n_sink, .seed = cfg->seed, .hid_layer = r->head_layer};
    rc = session_new(&x.ss, r->st, &r->ct, &in, &so);
    if (rc) return rc;
    x.p = session_get_prompt(x.ss);
    rc = s_reference(&x);
    if (rc) goto done;
    int64_t nb = cfg->n_budgets + cfg->n_budget_tokens;
    x.var = calloc((size_t)(2 * cfg->n_policies * (nb + cfg->n_thresholds) + 2), sizeof *x.var);
    x.gkv = malloc((size_t)cfg->batch * sizeof *x.gkv);
    x.gq = malloc((size_t)cfg->batch * sizeof *x.gq);
    x.gn = malloc((size_t)cfg->batch * sizeof *x.gn);
    x.gd = malloc((size_t)cfg->batch * sizeof *x.gd);
    if (!x.var || !x.gkv || !x.gq || !x.gn || !x.gd) {
        rc = tis_error(TIS_ENOMEM, "eval: out of memory");
        goto done;
    }
    x.n_var = s_variants(cfg, r->presses, x.p->n_ctx, x.var);
    for (int64_t g0 = 0; !rc && g0 < x.n_var; g0 += cfg->batch)
        rc = s_run_group(&x, g0, g0 + cfg->batch < x.n_var ? g0 + cfg->batch : x.n_var);
    if (!rc) rc = s_rows(&x, benchmark, rows, n_rows, cap_rows);
done:
    for (int64_t vi = 0; x.var && vi < x.n_var; vi++) {
        kv_cache_destroy(&x.var[vi].kv);
        s_decode_out_free(&x.var[vi].d);
    }
    s_decode_out_free(&x.full);
    free(x.var);
    free(x.gkv);
    free(x.gq);
    free(x.gn);
    free(x.gd);
    session_destroy(&x.ss);
    return rc;
}
