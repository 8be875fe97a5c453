/* session: prompt -> observed prefill -> labels / head scores -> compressed caches. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "oracle.h"
#include "recon.h"
#include "selfinfo.h"
#include "rng.h"
#include "tis_error.h"

/* ---- prompts ------------------------------------------------------------- */

static int s_append(int32_t **dst, int64_t *n, int64_t *cap, const int32_t *src, int64_t k) {
    if (*n + k > *cap) {
        int64_t nc = (*n + k) * 2 + 16;
        int32_t *p = realloc(*dst, (size_t)nc * sizeof(int32_t));
        if (!p) return tis_error(TIS_ENOMEM, "session: out of memory");
        *dst = p;
        *cap = nc;
    }
    memcpy(*dst + *n, src, (size_t)k * sizeof(int32_t));
    *n += k;
    return 0;
}

static int s_encode_append(const tokenizer *tok, const char *text, bool special, int32_t **dst, int64_t *n,
                           int64_t *cap) {
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

/* The text before and after the context: *pre, *suf (malloc'd). */
static int s_frame(const chat_template *ct, bool chat, const session_input *in, char **pre, char **suf) {
    *pre = *suf = NULL;
    if (in->verbatim) {
        *pre = strdup(in->prefix ? in->prefix : "");
        *suf = s_concat(in->question, in->answer_prefix, NULL);
    } else if (chat && ct && ct->family != CHAT_NONE) {
        /* Render with a one-byte placeholder for the context and cut there;
         * an empty question leaves the user's turn the context alone. */
        char *user = s_concat("\x01", in->question && *in->question ? "\n\n" : "", in->question);
        chat_msg *msgs = malloc((in->n_history + 2) * sizeof *msgs);
        size_t nm = 0;
        if (msgs && in->prefix) msgs[nm++] = (chat_msg){"system", in->prefix};
        for (size_t i = 0; msgs && i < in->n_history; i++) msgs[nm++] = in->history[i];
        if (msgs) msgs[nm++] = (chat_msg){"user", user};
        char *text = NULL;
        int rc = user && msgs ? chat_render(ct, msgs, nm, true, &text) : tis_error(TIS_ENOMEM, "session: out of memory");
        free(user);
        free(msgs);
        if (rc) return rc;
        char *cut = strchr(text, '\x01');
        TIS_ASSERT(cut);
        *cut = 0;
        *pre = strdup(text);
        *suf = s_concat(cut + 1, in->answer_prefix, NULL);
        free(text);
    } else {
        *pre = in->prefix ? s_concat(in->prefix, "\n\n", NULL) : strdup("");
        for (size_t i = 0; *pre && i < in->n_history; i++) { /* earlier turns, one paragraph each */
            char *t = s_concat(*pre, in->history[i].content, "\n\n");
            free(*pre);
            *pre = t;
        }
        *suf = s_concat("\n\n", in->question, "\n");
        if (*suf && in->answer_prefix) {
            char *t = s_concat(*suf, in->answer_prefix, NULL);
            free(*suf);
            *suf = t;
        }
    }
    if (*pre && *suf) return 0;
    free(*pre);
    free(*suf);
    *pre = *suf = NULL;
    return tis_error(TIS_ENOMEM, "session: out of memory");
}

int session_prompt_build(const tokenizer *tok, const chat_template *ct, bool chat, const session_input *in,
                         session_prompt *out) {
    memset(out, 0, sizeof *out);
    const char *id = in->id ? in->id : "(request)";
    if (!in->context || !*in->context) return tis_error(TIS_EINVAL, "session: %s has an empty context", id);
    if (!in->question) return tis_error(TIS_EINVAL, "session: %s has no question", id);
    char *pre_text = NULL, *suf_text = NULL;
    int rc = s_frame(ct, chat, in, &pre_text, &suf_text);
    if (rc) return rc;
    int64_t cap = 0;
    if (tokenizer_add_bos(tok) && tokenizer_bos(tok) >= 0) {
        int32_t bos = tokenizer_bos(tok);
        rc = s_append(&out->ids, &out->n, &cap, &bos, 1);
    }
    if (!rc) rc = s_encode_append(tok, pre_text, true, &out->ids, &out->n, &cap);
    out->ctx_begin = out->n;
    if (!rc) rc = s_encode_append(tok, in->context, false, &out->ids, &out->n, &cap);
    out->n_ctx = out->n - out->ctx_begin;
    out->suf_begin = out->n;
    if (!rc) rc = s_encode_append(tok, suf_text, true, &out->ids, &out->n, &cap);
    free(pre_text);
    free(suf_text);
    if (!rc && out->n - out->suf_begin < 2)
        rc = tis_error(TIS_EINVAL, "session: %s: the question encodes to fewer than 2 tokens", id);
    if (!rc && out->n_ctx < 1) rc = tis_error(TIS_EINVAL, "session: %s: empty context", id);
    if (rc) session_prompt_free(out);
    return rc;
}

void session_prompt_free(session_prompt *p) {
    free(p->ids);
    memset(p, 0, sizeof *p);
}

static int s_answer_ids(const tokenizer *tok, const char *answer_prefix, const char *answer, int32_t **ids,
                        int64_t *n) {
    size_t la = answer_prefix ? strlen(answer_prefix) : 0;
    char last = la ? answer_prefix[la - 1] : 0;
    bool space = la > 0 && last != ' ' && last != '"' && last != '\n';
    char *t = s_concat(space ? " " : "", answer, NULL);
    if (!t) return tis_error(TIS_ENOMEM, "session: out of memory");
    int rc = tokenizer_encode(tok, t, strlen(t), false, ids, n);
    free(t);
    return rc;
}

int session_answer_ids(const tokenizer *tok, const session_input *in, int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    if (!in->answer) return tis_error(TIS_EINVAL, "session: no expected answer");
    return s_answer_ids(tok, in->answer_prefix, in->answer, ids, n);
}

/* ---- the session ---------------------------------------------------------- */

/* One state: a cache prefilled from the shared prefill, and its observations. */
typedef struct state {
    kv_cache *kv;
    press_obs obs;
    bool ready;
} state;

struct session {
    forward_state *st;        /* borrowed */
    const chat_template *ct;  /* borrowed (may be NULL) */
    bool verbatim;            /* the input's framing (the reconstruction request follows it) */
    const model *m;
    session_opts o;
    char *answer, *answer_prefix; /* copies of the input's */
    session_prompt p;
    int64_t n_suf, win;
    state ag, qa;             /* agnostic, query-aware */
    double prefill_s, prefill_q_s;
    oracle_labels orc;
    float *scores[2];         /* [n_out][n_ctx] head scores: [0] context head, [1] query head */
    int64_t n_out[2];         /* their rows: 1, or n_stream for a per-head head */
    float *recon[2];          /* [n_stream][n_ctx] reconstruction scores of the agnostic [0] and
                                 query-aware [1] states (kvzip), then [n_stream] copy scores
                                 (kvzip_heads), or NULL */
    double recon_s[2];
    float *selfinfo;          /* [n_ctx] self-information scores (selfinfo; both states: the
                                 context comes before the question), or NULL */
    double selfinfo_s;
    double score_s[2];
    float *pct[2];            /* their percentiles (the attention hook) */
    press_plan *plan;         /* the last policy's scoring, shared by its budgets */
    char plan_name[64];
    bool plan_qa;
    double plan_s;
    press_plan *uplan[2];     /* a union's two scorings (session_compact_union), kept the same way */
    char uplan_name[2 * sizeof(((press *)0)->name) + 2]; /* the union's name, A|B */
    bool uplan_qa;
    double uplan_s;
    /* a single request (session_request_begin) */
    session_request rq;
    const head *h[2];         /* borrowed: the policy's (a union's members') heads, or NULL */
    bool outside;             /* their scores come from outside (session_request_finish) */
    bool got_scores;          /* ... and have come */
    bool qa_path;
};

static void s_uplan_drop(session *s) {
    press_plan_destroy(&s->uplan[0]);
    press_plan_destroy(&s->uplan[1]);
    s->uplan_name[0] = 0;
}

static void s_state_free(state *x) {
    kv_cache_destroy(&x->kv);
    press_obs_free(&x->obs);
    x->ready = false;
}

void session_destroy(session **pp) {
    if (!pp || !*pp) return;
    session *s = *pp;
    press_plan_destroy(&s->plan);
    s_uplan_drop(s);
    s_state_free(&s->ag);
    s_state_free(&s->qa);
    oracle_labels_free(&s->orc);
    for (int i = 0; i < 2; i++) {
        free(s->scores[i]);
        free(s->pct[i]);
        free(s->recon[i]);
    }
    free(s->selfinfo);
    session_prompt_free(&s->p);
    free(s->answer);
    free(s->answer_prefix);
    free(s);
    *pp = NULL;
}

/* prefix + context into a fresh cache sized for the whole prompt, observed
 * with the context's tail as window; hidden states kept when asked. */
static int s_prefill_context(session *s, state *x) {
    const model *m = s->m;
    int64_t ctx_end = s->p.ctx_begin + s->p.n_ctx;
    int rc = forward_kv_new(m, s->p.n, &x->kv);
    if (!rc) rc = press_obs_init(&x->obs, m, s->p.n);
    if (!rc && s->o.hid_layer >= 0) rc = press_obs_capture_hidden(&x->obs, s->o.hid_layer, m->config.d_model);
    if (rc) return rc;
    press_obs_window(&x->obs, ctx_end - s->win);
    double t0 = tis_now();
    rc = press_obs_prefill(&x->obs, s->st, x->kv, s->p.ids, ctx_end, NULL, 0);
    s->prefill_s = tis_now() - t0;
    x->ready = rc == 0;
    return rc;
}

/* The query-aware state from the agnostic one: a fork (both kept) or the
 * same cache continued (agnostic state not wanted). */
static int s_prefill_question(session *s) {
    state *ag = &s->ag, *qa = &s->qa;
    int rc = 0;
    if (s->o.agnostic) {
        rc = kv_cache_compact(&qa->kv, ag->kv, NULL, s->n_suf);
        if (!rc) rc = press_obs_copy(&qa->obs, &ag->obs);
    } else {
        *qa = *ag;
        memset(ag, 0, sizeof *ag);
    }
    if (rc) return rc;
    press_obs_window(&qa->obs, s->p.ctx_begin + s->p.n_ctx);
    double t0 = tis_now();
    rc = press_obs_prefill(&qa->obs, s->st, qa->kv, s->p.ids + s->p.suf_begin, s->n_suf - 1, NULL, 0);
    s->prefill_q_s = tis_now() - t0;
    qa->ready = rc == 0;
    return rc;
}

int session_new(session **out, forward_state *st, const chat_template *ct, const session_input *in,
                const session_opts *o) {
    *out = NULL;
    if (!o->agnostic && !o->query_aware) return tis_error(TIS_EINVAL, "session: no protocol");
    if (o->window < 0 || o->n_sink < 0) return tis_error(TIS_EINVAL, "session: negative window or sinks");
    session *s = calloc(1, sizeof *s);
    if (!s) return tis_error(TIS_ENOMEM, "session: out of memory");
    s->st = st;
    s->ct = ct;
    s->verbatim = in->verbatim;
    s->m = forward_model(st);
    s->o = *o;
    int rc = 0;
    if ((in->answer && !(s->answer = strdup(in->answer))) ||
        (in->answer_prefix && !(s->answer_prefix = strdup(in->answer_prefix))))
        rc = tis_error(TIS_ENOMEM, "session: out of memory");
    if (!rc) rc = session_prompt_build(s->m->tok, ct, o->chat, in, &s->p);
    if (!rc && o->max_tokens > 0 && s->p.n > o->max_tokens)
        rc = tis_error(TIS_ERANGE, "session: %s: a prompt of %lld tokens is over the %lld this request may use "
                       "(the model's context less the tokens to generate)",
                       in->id ? in->id : "(request)", (long long)s->p.n, (long long)o->max_tokens);
    if (!rc) {
        s->n_suf = s->p.n - s->p.suf_begin;
        s->win = o->window < s->p.n_ctx ? o->window : s->p.n_ctx;
        rc = s_prefill_context(s, &s->ag);
    }
    if (!rc && o->query_aware) rc = s_prefill_question(s);
    if (rc) {
        session_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

const session_prompt *session_get_prompt(const session *s) { return &s->p; }
double session_prefill_s(const session *s) { return s->prefill_s; }
double session_prefill_q_s(const session *s) { return s->prefill_q_s; }

void session_rest(const session *s, bool qa, const int32_t **ids, int64_t *n) {
    *n = qa ? 1 : s->n_suf;
    *ids = s->p.ids + s->p.n - *n;
}

int64_t session_budget(double frac, int64_t tokens, int64_t n_ctx) {
    if (frac > 0) return press_budget_tokens(frac, n_ctx);
    return tokens < n_ctx ? tokens : n_ctx;
}

int64_t session_full_kv_bytes(const session *s) {
    const kv_cache *kv = s->qa.ready ? s->qa.kv : s->ag.kv;
    return s->p.n * kv->n_stream * (int64_t)kv_cache_entry_bytes(kv) + (int64_t)kv_cache_scale_bytes(kv);
}

int session_full(session *s, int64_t max_new, kv_cache **out) {
    *out = NULL;
    if (!s->qa.ready) return tis_error(TIS_EINVAL, "session: the uncompressed run needs the query-aware state");
    return kv_cache_compact(out, s->qa.kv, NULL, 1 + max_new);
}

/* ---- labels and scores ------------------------------------------------------- */

int session_oracle_answer(const session *s, bool use_model, const char *model_answer, int32_t **ids,
                          int64_t *n) {
    *ids = NULL;
    *n = 0;
    if (s->answer && !use_model) return s_answer_ids(s->m->tok, s->answer_prefix, s->answer, ids, n);
    if (model_answer && *model_answer)
        return tokenizer_encode(s->m->tok, model_answer, strlen(model_answer), false, ids, n);
    return 0;
}

int session_oracle(session *s, const int32_t *ans, int64_t n_ans) {
    if (n_ans < 1) return tis_error(TIS_EINVAL, "session: oracle labels need an answer of at least one token");
    press_plan_destroy(&s->plan);
    s_uplan_drop(s);
    oracle_labels_free(&s->orc);
    kv_cache *fork = NULL;
    int rc = 0;
    const session_prompt *p = &s->p;
    if (s->qa.ready) { /* context + question but its last token: the last, then the answer */
        rc = kv_cache_compact(&fork, s->qa.kv, NULL, 1 + n_ans);
    } else {           /* agnostic state only: the question first, unobserved */
        rc = kv_cache_compact(&fork, s->ag.kv, NULL, s->n_suf + n_ans);
        if (!rc) rc = forward_run(s->st, fork, p->ids + p->suf_begin, s->n_suf - 1, NULL, 0, NULL);
    }
    if (!rc) rc = forward_run(s->st, fork, p->ids + p->n - 1, 1, NULL, 0, NULL);
    if (!rc) rc = oracle_compute(s->st, fork, p->ctx_begin, p->n_ctx, ans, n_ans, false, &s->orc);
    kv_cache_destroy(&fork);
    return rc;
}

bool session_has_oracle(const session *s) { return s->orc.total != NULL; }

int session_score_head(session *s, const head *h, double *secs) {
    bool q = h->cfg.query_aware;
    const state *x = q ? &s->qa : (s->ag.ready ? &s->ag : &s->qa);
    const session_prompt *p = &s->p;
    if (q && !s->qa.ready) return tis_error(TIS_EINVAL, "session: a query-aware head needs the query-aware state");
    if (!x->obs.hid || x->obs.hid_layer != h->cfg.layer)
        return tis_error(TIS_EINVAL, "session: no hidden states of layer %lld were kept", (long long)h->cfg.layer);
    double t0 = tis_now();
    int64_t n_out = h->cfg.n_out > 1 ? h->cfg.n_out : 1;
    float *sc = malloc((size_t)(n_out * p->n_ctx) * sizeof(float));
    if (!sc) return tis_error(TIS_ENOMEM, "session: out of memory for head scores");
    int rc = head_score_context(h, x->obs.hid, p->ids + p->ctx_begin, p->ctx_begin, p->n_ctx, q ? p->suf_begin : 0,
                                q ? s->n_suf - 1 : 0, sc);
    if (rc) {
        free(sc);
        return rc;
    }
    press_plan_destroy(&s->plan); /* a plan borrows the scores it was made with */
    free(s->scores[q]);
    s->scores[q] = sc;
    s->n_out[q] = n_out;
    s->score_s[q] = tis_now() - t0;
    if (secs) *secs = s->score_s[q];
    return 0;
}

int session_set_scores(session *s, bool query, const float *scores, int64_t n_out) {
    int64_t ns = s->m->config.n_layer * s->m->config.n_kv_head;
    if (n_out != 1 && n_out != ns)
        return tis_error(TIS_EINVAL, "session: %lld score rows per token (1 or the model's %lld streams)",
                         (long long)n_out, (long long)ns);
    float *sc = malloc((size_t)(n_out * s->p.n_ctx) * sizeof(float));
    if (!sc) return tis_error(TIS_ENOMEM, "session: out of memory for head scores");
    memcpy(sc, scores, (size_t)(n_out * s->p.n_ctx) * sizeof(float));
    press_plan_destroy(&s->plan);
    free(s->scores[query]);
    s->scores[query] = sc;
    s->n_out[query] = n_out;
    s->score_s[query] = 0;
    return 0;
}

/* The reconstruction request in the input's framing: the text after the
 * context for question q (the chat template's end of the user turn and
 * assistant header included), as tokens. */
static int s_recon_suffix(const session *s, const char *q, char **text) {
    session_input in = {.context = "x", .question = q, .verbatim = s->verbatim};
    char *pre = NULL;
    int rc = s_frame(s->ct, s->o.chat, &in, &pre, text);
    free(pre);
    return rc;
}

static int s_encode(const session *s, const char *text, int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    return text && *text ? tokenizer_encode(s->m->tok, text, strlen(text), true, ids, n) : 0;
}

int session_recon(session *s, bool qa, double *secs) {
    state *x = qa ? &s->qa : &s->ag;
    if (!x->ready) return tis_error(TIS_EINVAL, "session: the %s state was not built", qa ? "query-aware" : "agnostic");
    if (s->recon[qa]) {
        if (secs) *secs = s->recon_s[qa];
        return 0;
    }
    double t0 = tis_now();
    const char *lead_q = s->verbatim ? "\n\nRepeat the previous context exactly.\n" : "Repeat the previous context exactly.";
    const char *cont_q = s->verbatim ? "\n\nRepeat the part of the previous context exactly, starting with\x02\n"
                                     : "Repeat the part of the previous context exactly, starting with\x02";
    char *lead = NULL, *cont = NULL;
    int32_t *ids[3] = {NULL, NULL, NULL};
    int64_t n[3] = {0, 0, 0};
    int rc = s_recon_suffix(s, lead_q, &lead);
    if (!rc) rc = s_recon_suffix(s, cont_q, &cont);
    char *cut = cont ? strchr(cont, '\x02') : NULL;
    if (!rc && !cut) rc = tis_error(TIS_EINVAL, "session: the chat template lost the reconstruction request");
    if (!rc) {
        *cut = 0;
        rc = s_encode(s, lead, &ids[0], &n[0]);
    }
    if (!rc) rc = s_encode(s, cont, &ids[1], &n[1]);
    if (!rc) rc = s_encode(s, cut + 1, &ids[2], &n[2]);
    float *out = NULL;
    const session_prompt *p = &s->p;
    if (!rc && !(out = malloc((size_t)(x->kv->n_stream * (p->n_ctx + 1)) * sizeof(float))))
        rc = tis_error(TIS_ENOMEM, "session: out of memory for reconstruction scores");
    recon_prompt rp = {ids[0], n[0], ids[1], n[1], ids[2], n[2]};
    if (!rc) rc = recon_compute(s->st, x->kv, p->ctx_begin, p->n_ctx, p->ids + p->ctx_begin, &rp, 0, out,
                                    out + x->kv->n_stream * p->n_ctx);
    free(lead);
    free(cont);
    for (int i = 0; i < 3; i++) free(ids[i]);
    if (rc) {
        free(out);
        return rc;
    }
    press_plan_destroy(&s->plan);
    s->recon[qa] = out;
    s->recon_s[qa] = tis_now() - t0;
    if (secs) *secs = s->recon_s[qa];
    return 0;
}

/* Self-information scores of the context (press/selfinfo.h), computed once
 * for both states; *secs: the pass's time. */
static int s_selfinfo(session *s, double *secs) {
    if (!s->selfinfo) {
        double t0 = tis_now();
        const session_prompt *p = &s->p;
        float *out = malloc((size_t)(p->n_ctx > 0 ? p->n_ctx : 1) * sizeof(float));
        if (!out) return tis_error(TIS_ENOMEM, "session: out of memory for self-information scores");
        int rc = selfinfo_compute(s->st, s->m->tok, p->ids, p->ctx_begin, p->n_ctx, out);
        if (rc) {
            free(out);
            return rc;
        }
        s->selfinfo = out;
        s->selfinfo_s = tis_now() - t0;
    }
    *secs = s->selfinfo_s;
    return 0;
}

const float *session_recon_scores(const session *s, bool qa) { return s->recon[qa]; }

const float *session_recon_copy(const session *s, bool qa) {
    const state *x = qa ? &s->qa : &s->ag;
    return s->recon[qa] && x->kv ? s->recon[qa] + x->kv->n_stream * s->p.n_ctx : NULL;
}

bool session_has_scores(const session *s, bool query) { return s->scores[query] != NULL; }

int session_hidden(const session *s, float **rows, int64_t *n_ctx, int64_t *n_q) {
    *rows = NULL;
    const state *x = s->qa.ready ? &s->qa : &s->ag;
    const session_prompt *p = &s->p;
    *n_ctx = p->n_ctx;
    *n_q = s->qa.ready ? s->n_suf - 1 : 0;
    int64_t d = s->m->config.d_model;
    if (!x->obs.hid) return tis_error(TIS_EINVAL, "session: no hidden states were kept");
    float *out = malloc((size_t)((*n_ctx + *n_q) * d) * sizeof(float));
    if (!out) return tis_error(TIS_ENOMEM, "session: out of memory");
    memcpy(out, x->obs.hid + p->ctx_begin * d, (size_t)(*n_ctx * d) * sizeof(float));
    memcpy(out + *n_ctx * d, x->obs.hid + p->suf_begin * d, (size_t)(*n_q * d) * sizeof(float));
    *rows = out;
    return 0;
}

/* ---- compression ---------------------------------------------------------------- */

/* Importance in [0, 1] as the percentile of each context token's head score
 * (scale-free: listwise-trained logits have no fixed level). */
static float *s_percentiles(const float *sc, int64_t n) {
    float *pct = malloc((size_t)n * sizeof(float));
    if (!pct) return NULL;
    for (int64_t j = 0; j < n; j++) { /* O(n^2): a few ms at 4k tokens, once per request */
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

/* A scoring of (pr, qa) with the head scores the session holds: *out, and
 * *secs its time (with the head's, reconstruction's, self-information's). */
static int s_make_plan(session *s, const press *pr, bool qa, press_plan **out, double *secs) {
    *out = NULL;
    const state *x = qa ? &s->qa : &s->ag;
    if (!x->ready)
        return tis_error(TIS_EINVAL, "session: the %s state was not built", qa ? "query-aware" : "agnostic");
    const float *hs = pr->needs_head ? s->scores[pr->query_head] : NULL;
    if (pr->needs_head && !hs) return tis_error(TIS_EINVAL, "session: %s needs importance-head scores", pr->name);
    if (pr->needs_head && pr->attn_hook && s->n_out[pr->query_head] > 1)
        return tis_error(TIS_EINVAL, "session: %s: the attention hook takes a single-score head, not a per-head one",
                         pr->name);
    double recon_s = 0;
    if (pr->needs_recon) {
        int rc = session_recon(s, qa, &recon_s);
        if (rc) return rc;
    }
    double selfinfo_s = 0;
    if (pr->needs_selfinfo) {
        int rc = s_selfinfo(s, &selfinfo_s);
        if (rc) return rc;
    }
    if (pr->needs_oracle && !s->orc.total) return tis_error(TIS_EINVAL, "session: %s needs oracle labels", pr->name);
    const session_prompt *p = &s->p;
    press_ctx pc = {.kv = x->kv, .obs = &x->obs, .oracle = s->orc.total ? &s->orc : NULL,
                    .ctx_begin = p->ctx_begin, .n_ctx = p->n_ctx, .window = qa ? 0 : s->win,
                    .n_sink = s->o.n_sink, .head_scores = hs, .head_n_out = pr->needs_head ? s->n_out[pr->query_head] : 1,
                    .recon = s->recon[qa],
                    .recon_copy = session_recon_copy(s, qa), .selfinfo = s->selfinfo, .seed = s->o.seed ^ (uint64_t)p->n * TIS_GOLDEN64};
    double t0 = tis_now();
    int rc = press_plan_new(out, pr, &pc);
    *secs = tis_now() - t0 + (pr->needs_head ? s->score_s[pr->query_head] : 0) + recon_s + selfinfo_s;
    return rc;
}

/* The mean of v[0..n), rounded to the nearest (n >= 1, v >= 0). */
static int64_t s_mean_rounded(const int64_t *v, int64_t n) {
    int64_t sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    return (sum + n / 2) / n;
}

/* The scoring of (pr, qa), made once and kept for the budgets after it. */
static int s_plan(session *s, const press *pr, bool qa) {
    if (s->plan && s->plan_qa == qa && !strcmp(s->plan_name, pr->name)) return 0;
    press_plan_destroy(&s->plan);
    int rc = s_make_plan(s, pr, qa, &s->plan, &s->plan_s);
    if (rc) return rc;
    snprintf(s->plan_name, sizeof s->plan_name, "%s", pr->name);
    s->plan_qa = qa;
    return 0;
}

/* session_compact to k entries per stream, or (tau >= 0) by threshold. */
static int s_compact_to(session *s, const press *pr, bool qa, int64_t k, double tau, int64_t max_new,
                        float hook_lambda, kv_cache **out, int64_t *kept_mean, double *secs) {
    *out = NULL;
    const session_prompt *p = &s->p;
    int64_t extra = (qa ? 1 : s->n_suf) + max_new;
    const state *x = qa ? &s->qa : &s->ag;
    if (!pr->score) { /* full: the state itself */
        if (!x->ready) return tis_error(TIS_EINVAL, "session: the %s state was not built", qa ? "query-aware" : "agnostic");
        double t0 = tis_now();
        int rc = kv_cache_compact(out, x->kv, NULL, extra);
        *kept_mean = p->n_ctx;
        *secs = tis_now() - t0;
        return rc;
    }
    if (tau < 0 && k < 1) return tis_error(TIS_EINVAL, "session: a budget of %lld tokens", (long long)k);
    int rc = s_plan(s, pr, qa);
    if (rc) return rc;
    int64_t ns = x->kv->n_stream;
    int64_t *kept = malloc((size_t)ns * sizeof *kept);
    if (!kept) return tis_error(TIS_ENOMEM, "session: out of memory");
    double t0 = tis_now();
    rc = tau >= 0 ? press_plan_compact_threshold(s->plan, tau, extra, out, kept)
                  : press_plan_compact(s->plan, k, extra, out, kept);
    if (!rc && pr->attn_hook) {
        bool q = pr->query_head;
        if (!s->pct[q]) s->pct[q] = s_percentiles(s->scores[q], p->n_ctx);
        rc = s->pct[q] ? s_apply_hook(*out, s->pct[q], p->ctx_begin, p->n_ctx, hook_lambda)
                       : tis_error(TIS_ENOMEM, "session: out of memory");
    }
    *secs = s->plan_s + (tis_now() - t0);
    if (!rc) *kept_mean = s_mean_rounded(kept, ns);
    free(kept);
    if (rc) kv_cache_destroy(out);
    return rc;
}

int session_compact(session *s, const press *pr, bool qa, int64_t k, int64_t max_new, float hook_lambda,
                    kv_cache **out, int64_t *kept_mean, double *secs) {
    return s_compact_to(s, pr, qa, k, -1, max_new, hook_lambda, out, kept_mean, secs);
}

int session_compact_threshold(session *s, const press *pr, bool qa, double tau, int64_t max_new,
                              float hook_lambda, kv_cache **out, int64_t *kept_mean, double *secs) {
    if (!pr->score || !(tau >= 0 && tau <= 1))
        return tis_error(TIS_EINVAL, "session: a threshold of %g for %s", tau, pr->score ? pr->name : "full");
    return s_compact_to(s, pr, qa, 0, tau, max_new, hook_lambda, out, kept_mean, secs);
}

/* The union a | b: each member's scoring once per (name, protocol) — its
 * head run here (hd[i]) or its scores given (given[i]: [n_given[i]][n_ctx],
 * from an outside scorer) — then press_plan_compact_union. */
static int s_union(session *s, const char *name, const press *const pr[2], const head *const hd[2],
                   const float *const given[2], const int64_t n_given[2], bool qa, int64_t k, int64_t max_new,
                   kv_cache **out, int64_t *kept_mean, double *secs) {
    *out = NULL;
    if (!pr[0]->score || !pr[1]->score)
        return tis_error(TIS_EINVAL, "session: a union of %s: full keeps everything", name);
    if (pr[0]->attn_hook || pr[1]->attn_hook)
        return tis_error(TIS_EINVAL, "session: a union of %s: the attention hook belongs to one policy", name);
    if (k < 1) return tis_error(TIS_EINVAL, "session: a budget of %lld tokens", (long long)k);
    for (int i = 0; i < 2; i++)
        if (pr[i]->needs_head && !given[i] && (!hd[i] || hd[i]->cfg.query_aware != pr[i]->query_head))
            return tis_error(TIS_EINVAL, "session: a union of %s: %s needs its %shead", name, pr[i]->name,
                             pr[i]->query_head ? "query-aware " : "");
    if (!s->uplan[0] || s->uplan_qa != qa || strcmp(s->uplan_name, name)) {
        s_uplan_drop(s);
        double t = 0;
        s->uplan_s = 0;
        for (int i = 0; i < 2; i++) {
            int rc = !pr[i]->needs_head ? 0
                     : given[i]         ? session_set_scores(s, pr[i]->query_head, given[i], n_given[i])
                                        : session_score_head(s, hd[i], NULL);
            if (!rc) rc = s_make_plan(s, pr[i], qa, &s->uplan[i], &t);
            if (rc) {
                s_uplan_drop(s);
                return rc;
            }
            s->uplan_s += t;
        }
        snprintf(s->uplan_name, sizeof s->uplan_name, "%s", name);
        s->uplan_qa = qa;
    }
    const state *x = qa ? &s->qa : &s->ag;
    int64_t ns = x->kv->n_stream;
    int64_t *kept = malloc((size_t)ns * sizeof *kept);
    if (!kept) return tis_error(TIS_ENOMEM, "session: out of memory");
    double t0 = tis_now();
    int rc = press_plan_compact_union(s->uplan[0], s->uplan[1], k, (qa ? 1 : s->n_suf) + max_new, out, kept);
    *secs = s->uplan_s + (tis_now() - t0);
    if (!rc) *kept_mean = s_mean_rounded(kept, ns);
    free(kept);
    return rc;
}

int session_compact_union(session *s, const char *name, const press *a, const head *ha, const press *b,
                          const head *hb, bool qa, int64_t k, int64_t max_new, kv_cache **out, int64_t *kept_mean,
                          double *secs) {
    const press *pr[2] = {a, b};
    const head *hd[2] = {ha, hb};
    const float *given[2] = {NULL, NULL};
    const int64_t n_given[2] = {0, 0};
    return s_union(s, name, pr, hd, given, n_given, qa, k, max_new, out, kept_mean, secs);
}

/* ---- one request ------------------------------------------------------------------ */

void session_result_free(session_result *r) {
    if (!r) return;
    kv_cache_destroy(&r->kv);
    free(r->rest);
    memset(r, 0, sizeof *r);
}

/* A request's members: 1, or 2 for a union (rq->policy | rq->policy_b);
 * name: the policy's name, "A|B" for a union. */
typedef char request_name[2 * sizeof(((press *)0)->name) + 2];
static int s_members(const session_request *rq, const press *pr[2], request_name name) {
    pr[0] = &rq->policy;
    pr[1] = &rq->policy_b;
    int nm = rq->policy_b.score ? 2 : 1;
    snprintf(name, sizeof(request_name), nm == 2 ? "%s|%s" : "%s", pr[0]->name, pr[1]->name);
    return nm;
}

/* Rows member i's scores take: its head's outputs (1, or a per-head
 * head's n_stream), 0 for a member without a head. */
static int64_t s_head_rows(const press *pr, const head *h) {
    return !pr->needs_head ? 0 : h && h->cfg.n_out > 1 ? h->cfg.n_out : 1;
}

int session_request_begin(session **out, forward_state *st, const chat_template *ct, const session_input *in,
                          const session_request *rq, const head *h, const head *h_b, bool outside) {
    *out = NULL;
    const press *pr[2];
    const head *hd[2] = {h, h_b};
    request_name name;
    int nm = s_members(rq, pr, name);
    if (nm == 2 && (!pr[0]->score || pr[0]->attn_hook || pr[1]->attn_hook))
        return tis_error(TIS_EINVAL, "request: %s: a union takes two compressing policies, without +hook", name);
    if (nm == 2 && rq->threshold > 0)
        return tis_error(TIS_EINVAL, "request: %s: a union takes a budget, not a threshold", name);
    if (pr[0]->score && rq->budget <= 0 && rq->budget_tokens <= 0 && rq->threshold <= 0)
        return tis_error(TIS_EINVAL, "request: policy %s needs a budget", name);
    if (rq->threshold > 0 && (!pr[0]->score || !(rq->threshold <= 1)))
        return tis_error(TIS_EINVAL, "request: a threshold of %g for %s (thresholds are in (0, 1], for a compressing policy)",
                         rq->threshold, name);
    int64_t layer = -1;
    for (int i = 0; i < nm; i++) {
        if (pr[i]->query_head && !rq->query_aware)
            return tis_error(TIS_EINVAL, "request: %s needs the query-aware protocol", pr[i]->name);
        if (pr[i]->needs_oracle && !in->answer)
            return tis_error(TIS_EINVAL, "request: oracle needs the expected answer");
        if (!pr[i]->needs_head) continue;
        if (!hd[i]) return tis_error(TIS_EINVAL, "request: %s needs an importance head", pr[i]->name);
        if (hd[i]->cfg.query_aware != pr[i]->query_head)
            return tis_error(TIS_EINVAL, "request: %s needs a %squery-aware head", pr[i]->name,
                             pr[i]->query_head ? "" : "non-");
        if (layer >= 0 && hd[i]->cfg.layer != layer) /* the session keeps one layer's hidden states */
            return tis_error(TIS_EINVAL, "request: %s: the heads read different layers (%lld and %lld)", name,
                             (long long)layer, (long long)hd[i]->cfg.layer);
        layer = hd[i]->cfg.layer;
    }
    bool qa = rq->query_aware || !pr[0]->score; /* full: as eval, the question goes in uncompressed */
    session_opts so = {.chat = rq->chat, .agnostic = !qa, .query_aware = qa, .window = rq->window,
                       .n_sink = rq->n_sink, .seed = rq->seed, .hid_layer = layer, .max_tokens = rq->max_tokens};
    session *s = NULL;
    int rc = session_new(&s, st, ct, in, &so);
    if (rc) return rc;
    s->rq = *rq;
    for (int i = 0; i < nm; i++) s->h[i] = pr[i]->needs_head ? hd[i] : NULL;
    s->outside = outside && layer >= 0;
    s->qa_path = qa;
    if (pr[0]->needs_oracle || (nm == 2 && pr[1]->needs_oracle)) {
        int32_t *ans = NULL;
        int64_t n_ans = 0;
        rc = session_oracle_answer(s, false, NULL, &ans, &n_ans);
        if (!rc) rc = n_ans > 0 ? session_oracle(s, ans, n_ans)
                                : tis_error(TIS_EINVAL, "request: the expected answer encodes to nothing");
        free(ans);
    }
    if (!rc && nm == 1 && s->h[0] && !s->outside) rc = session_score_head(s, s->h[0], NULL);
    if (rc) {
        session_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

bool session_needs_scores(const session *s) { return s->outside && !s->got_scores; }

int session_request_finish(session *s, const float *scores, int64_t n_out, session_result *out) {
    memset(out, 0, sizeof *out);
    const session_request *rq = &s->rq;
    const press *pr[2];
    request_name name;
    int nm = s_members(rq, pr, name);
    const session_prompt *p = &s->p;
    int64_t rows[2] = {s_head_rows(pr[0], s->h[0]), nm == 2 ? s_head_rows(pr[1], s->h[1]) : 0};
    const float *given[2] = {NULL, NULL};
    int rc = 0;
    if (session_needs_scores(s)) {
        if (!scores) return tis_error(TIS_EINVAL, "request: %s needs scores from a scorer", name);
        if (n_out != rows[0] + rows[1])
            return tis_error(TIS_EINVAL, "request: %lld score rows per token where the heads give %lld",
                             (long long)n_out, (long long)(rows[0] + rows[1]));
        if (nm == 1) {
            rc = session_set_scores(s, pr[0]->query_head, scores, n_out);
            if (rc) return rc;
        } else {
            given[0] = rows[0] ? scores : NULL;
            given[1] = rows[1] ? scores + rows[0] * p->n_ctx : NULL;
        }
        s->got_scores = true;
    }
    int64_t k = pr[0]->score ? session_budget(rq->budget, rq->budget_tokens, p->n_ctx) : p->n_ctx;
    float lambda = rq->hook_lambda >= 0 ? rq->hook_lambda : s->h[0] ? s->h[0]->attn_hook_lambda : 0.0f;
    if (nm == 2) {
        rc = s_union(s, name, pr, (const head *const[2]){s->h[0], s->h[1]}, given, rows, s->qa_path, k, rq->max_new,
                     &out->kv, &out->kept_mean, &out->compress_s);
    } else if (pr[0]->score && rq->threshold > 0) {
        rc = session_compact_threshold(s, pr[0], s->qa_path, rq->threshold, rq->max_new, lambda, &out->kv,
                                       &out->kept_mean, &out->compress_s);
    } else {
        rc = session_compact(s, pr[0], s->qa_path, k, rq->max_new, lambda, &out->kv, &out->kept_mean,
                             &out->compress_s);
    }
    const int32_t *rest = NULL;
    session_rest(s, s->qa_path, &rest, &out->n_rest);
    if (!rc && !(out->rest = malloc((size_t)out->n_rest * sizeof(int32_t))))
        rc = tis_error(TIS_ENOMEM, "request: out of memory");
    if (rc) {
        session_result_free(out);
        return rc;
    }
    memcpy(out->rest, rest, (size_t)out->n_rest * sizeof(int32_t));
    out->n_ctx = p->n_ctx;
    out->full_kv_bytes = session_full_kv_bytes(s);
    out->prefill_s = s->prefill_s + s->prefill_q_s;
    return 0;
}
