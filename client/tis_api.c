/* tis_api: the public in-process API (include/tis.h) over the session and
 * the decoder. */
#include "tis.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "decoder.h"
#include "generate.h"
#include "head.h"
#include "model.h"
#include "press_spec.h"
#include "session.h"
#include "tis_error.h"

_Static_assert(TIS_E_INVAL == TIS_EINVAL && TIS_E_IO == TIS_EIO && TIS_E_NOMEM == TIS_ENOMEM &&
                   TIS_E_FORMAT == TIS_EFORMAT && TIS_E_UNSUPPORTED == TIS_EUNSUPPORTED &&
                   TIS_E_RANGE == TIS_ERANGE && TIS_E_NOTFOUND == TIS_ENOTFOUND,
               "tis.h status codes follow tis_error.h");

struct tis_engine {
    model *m;
    forward_state *st;
    chat_template ct;
    head *h_ctx, *h_q;
    char **head_as;   /* [n_named] copies of the "NAME=PATH" entries */
    head **h_named;   /* [n_named] their heads */
    size_t n_named;
    decoder *dec;
};

const char *tis_policy_name(size_t i) {
    size_t n = 0;
    while (press_registry[n].name) n++;
    return i < n ? press_registry[i].name : NULL;
}

void tis_engine_close(tis_engine *e) {
    if (!e) return;
    decoder_destroy(&e->dec);
    forward_state_destroy(&e->st);
    chat_template_free(&e->ct);
    head_destroy(&e->h_ctx);
    head_destroy(&e->h_q);
    for (size_t i = 0; i < e->n_named; i++) {
        if (e->h_named) head_destroy(&e->h_named[i]);
        if (e->head_as) free(e->head_as[i]);
    }
    free(e->h_named);
    free(e->head_as);
    model_destroy(&e->m);
    free(e);
}

static int s_head(tis_engine *e, const char *path, bool query, head **out) {
    if (!path) return 0;
    const model_config *c = &e->m->config;
    int rc = head_load(out, path);
    if (!rc) rc = head_check_model(*out, c->name, c->d_model, c->n_layer, c->n_kv_head);
    if (!rc && (*out)->cfg.query_aware != query)
        rc = tis_error(TIS_EINVAL, "tis: %s is %sa query-aware head", path, query ? "not " : "");
    return rc;
}

/* The --head_as-style heads: entries checked and copied, heads loaded. */
static int s_named_heads(tis_engine *e, const tis_engine_opts *o) {
    if (!o->n_head_as) return 0;
    if (!o->head_as || o->n_head_as > 64) return tis_error(TIS_EINVAL, "tis: %zu named heads", o->n_head_as);
    int rc = press_head_as_check(o->head_as, (int64_t)o->n_head_as, "tis: head_as");
    if (rc) return rc;
    if (!(e->head_as = calloc(o->n_head_as, sizeof *e->head_as)) ||
        !(e->h_named = calloc(o->n_head_as, sizeof *e->h_named)))
        return tis_error(TIS_ENOMEM, "tis: out of memory");
    e->n_named = o->n_head_as;
    for (size_t i = 0; !rc && i < o->n_head_as; i++) {
        if (!(e->head_as[i] = strdup(o->head_as[i]))) return tis_error(TIS_ENOMEM, "tis: out of memory");
        rc = s_head(e, o->head_as[i] + press_head_as_name_len(o->head_as[i]) + 1, false, &e->h_named[i]);
    }
    return rc;
}

int tis_engine_open(const tis_engine_opts *o, tis_engine **out) {
    *out = NULL;
    if (!o || !o->model) return tis_error(TIS_EINVAL, "tis: no model given");
    tis_engine *e = calloc(1, sizeof *e);
    if (!e) return tis_error(TIS_ENOMEM, "tis: out of memory");
    int rc = model_load(&e->m, o->model);
    if (!rc) rc = forward_state_new(&e->st, e->m, backend_cpu(), 512);
    if (!rc) rc = chat_template_init(&e->ct, tokenizer_chat_template(e->m->tok));
    if (!rc) rc = decoder_new(&e->dec, e->st, 1);
    if (!rc) rc = s_head(e, o->head, false, &e->h_ctx);
    if (!rc) rc = s_head(e, o->head_query, true, &e->h_q);
    if (!rc) rc = s_named_heads(e, o);
    if (rc) {
        tis_engine_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

const char *tis_engine_model(const tis_engine *e) { return e->m->config.name; }

void tis_answer_free(tis_answer *a) {
    if (!a) return;
    free(a->text);
    free(a->ids);
    memset(a, 0, sizeof *a);
}

/* Decodes a compressed request greedily into *out. */
static int s_decode(tis_engine *e, const session_result *r, int64_t max_new, const char *question, tis_answer *out) {
    decoder_answer a;
    int rc = decoder_answer_run(e->dec, r->kv, r->rest, r->n_rest, max_new, question, &a);
    if (!rc) { /* ownership moves to out */
        out->text = a.text;
        out->ids = a.ids;
        out->n_ids = (size_t)a.n;
        out->kv_bytes = (uint64_t)a.kv_bytes;
        out->decode_s = a.secs;
    }
    return rc;
}

int tis_engine_answer(tis_engine *e, const tis_request *rq, tis_answer *out) {
    memset(out, 0, sizeof *out);
    if (!rq || !rq->context || !*rq->context || !rq->question)
        return tis_error(TIS_EINVAL, "tis: a request needs a context and a question");
    session_request sr = {.budget = rq->budget, .budget_tokens = rq->budget_tokens, .threshold = rq->threshold,
                          .query_aware = rq->query_aware,
                          .chat = tokenizer_chat_template(e->m->tok) != NULL, .window = 64, .n_sink = 4, .seed = 42,
                          .max_new = rq->max_new ? rq->max_new : 16, .hook_lambda = -1};
    if (sr.max_new > 4096) return tis_error(TIS_EINVAL, "tis: max_new %lld", (long long)sr.max_new);
    press_spec sp;
    int rc = press_spec_parse(rq->policy ? rq->policy : "full", (const char *const *)e->head_as, (int64_t)e->n_named,
                              &sp);
    if (rc) return rc;
    const head *hd[2];
    int miss = press_spec_heads(&sp, e->h_ctx, e->h_q, e->h_named, hd);
    if (miss >= 0)
        return tis_error(TIS_EINVAL, "tis: policy %s needs an importance head (tis_engine_opts.%s)", sp.m[miss].name,
                         sp.head[miss] == PRESS_HEAD_QUERY ? "head_query" : "head");
    sr.policy = sp.m[0];
    if (sp.n == 2) sr.policy_b = sp.m[1];
    session_input in = {.id = "request", .context = rq->context, .question = rq->question, .prefix = rq->prefix,
                        .answer_prefix = rq->answer_prefix};
    session *s = NULL;
    session_result r = {0};
    rc = session_request_begin(&s, e->st, &e->ct, &in, &sr, hd[0], hd[1], false);
    if (!rc) rc = session_request_finish(s, NULL, 1, &r);
    session_destroy(&s);
    if (!rc) rc = s_decode(e, &r, sr.max_new, rq->question, out);
    if (!rc) {
        out->n_ctx = (uint32_t)r.n_ctx;
        out->kept_tokens = (uint32_t)r.kept_mean;
        out->full_kv_bytes = (uint64_t)r.full_kv_bytes;
        out->prefill_s = r.prefill_s;
        out->compress_s = r.compress_s;
    }
    session_result_free(&r);
    if (rc) tis_answer_free(out);
    return rc;
}

/* The prompt as tokens: BOS (when the model adds one) + the text. */
static int s_prompt(tis_engine *e, const char *prompt, const tis_gen_opts *o, int32_t **ids, int64_t *n) {
    char *text = NULL;
    int rc = 0;
    if (o->chat) {
        chat_msg msgs[2];
        size_t nm = 0;
        if (o->system) msgs[nm++] = (chat_msg){"system", o->system};
        msgs[nm++] = (chat_msg){"user", prompt};
        rc = chat_render(&e->ct, msgs, nm, true, &text);
    } else if (!(text = strdup(prompt))) {
        rc = tis_error(TIS_ENOMEM, "tis: out of memory");
    }
    int32_t *body = NULL;
    int64_t nb = 0;
    if (!rc) rc = tokenizer_encode(e->m->tok, text, strlen(text), true, &body, &nb);
    free(text);
    bool bos = tokenizer_add_bos(e->m->tok) && tokenizer_bos(e->m->tok) >= 0;
    if (!rc && !(*ids = malloc((size_t)(nb + 1) * sizeof(int32_t)))) rc = tis_error(TIS_ENOMEM, "tis: out of memory");
    if (!rc) {
        if (bos) (*ids)[0] = tokenizer_bos(e->m->tok);
        memcpy(*ids + bos, body, (size_t)nb * sizeof(int32_t));
        *n = nb + bos;
        if (*n == 0) rc = tis_error(TIS_EINVAL, "tis: the prompt encodes to no tokens");
    }
    free(body);
    return rc;
}

int tis_engine_generate(tis_engine *e, const char *prompt, const tis_gen_opts *o, char **text) {
    *text = NULL;
    tis_gen_opts def = {0};
    if (!o) o = &def;
    if (!prompt) return tis_error(TIS_EINVAL, "tis: no prompt");
    int64_t max_new = o->max_new ? o->max_new : 128, n = 0;
    int32_t *ids = NULL, *gen = NULL;
    kv_cache *kv = NULL;
    sampler smp = {0};
    gen_stats gs = {0};
    int rc = s_prompt(e, prompt, o, &ids, &n);
    if (!rc) rc = forward_kv_new(e->m, n + max_new, &kv);
    if (!rc) rc = sampler_init(&smp, e->m->config.n_vocab, o->temp, o->top_p > 0 ? o->top_p : 1.0f, o->seed);
    if (!rc && !(gen = malloc((size_t)max_new * sizeof(int32_t)))) rc = tis_error(TIS_ENOMEM, "tis: out of memory");
    gen_params gp = {.max_new = max_new, .stop_at_eog = true};
    if (!rc) rc = generate(e->st, kv, e->m, &smp, ids, n, &gp, gen, NULL, NULL, &gs);
    size_t len = 0;
    if (!rc) rc = tokenizer_decode(e->m->tok, gen, gs.n_new - (gs.stopped_eog ? 1 : 0), true, text, &len);
    sampler_free(&smp);
    free(ids);
    free(gen);
    kv_cache_destroy(&kv);
    return rc;
}
