/* http_req: OpenAI request bodies -> tis requests; answers, chunks and
 * errors -> OpenAI JSON. */
#include "http_req.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "press.h"
#include "press_spec.h"

http_err *http_err_set(http_err *e, int status, const char *type, const char *code, const char *param,
                       const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return e;
}

static int s_bad(http_err *e, const char *param, const char *fmt, const char *what) {
    http_err_set(e, 400, "invalid_request_error", NULL, param, fmt, param, what);
    return -1;
}

char *http_err_json(const http_err *e) {
    cJSON *o = cJSON_CreateObject(), *x = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(x, "message", e->message);
    cJSON_AddStringToObject(x, "type", e->type ? e->type : "server_error");
    if (e->param[0]) cJSON_AddStringToObject(x, "param", e->param);
    else cJSON_AddNullToObject(x, "param");
    if (e->code) cJSON_AddStringToObject(x, "code", e->code);
    else cJSON_AddNullToObject(x, "code");
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

void http_req_free(http_req *r) {
    free(r->prefix);
    free(r->context);
    free(r->question);
    free(r->kv_policy);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    for (int i = 0; i < r->n_turns; i++) {
        free(r->turn_role[i]);
        free(r->turn_text[i]);
    }
    free(r->turn_role);
    free(r->turn_text);
    memset(r, 0, sizeof *r);
}

/* ---- typed fields: absent or null leaves *out; another type is a 400 ---- */

static const cJSON *s_field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int s_num(const cJSON *o, const char *name, double lo, double hi, double *out, http_err *e) {
    const cJSON *v = s_field(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return s_bad(e, name, "'%s' must be a number%s", "");
    if (v->valuedouble < lo || v->valuedouble > hi) {
        char rng[96];
        snprintf(rng, sizeof rng, " in [%g, %g] (got %g)", lo, hi, v->valuedouble);
        return s_bad(e, name, "'%s' must be a number%s", rng);
    }
    *out = v->valuedouble;
    return 0;
}

static int s_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t *out, http_err *e) {
    const cJSON *v = s_field(o, name);
    if (!v) return 0;
    double x = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(x) || x != floor(x)) return s_bad(e, name, "'%s' must be an integer%s", "");
    if (x < (double)lo || x > (double)hi) {
        char rng[96];
        snprintf(rng, sizeof rng, " in [%lld, %lld] (got %g)", (long long)lo, (long long)hi, x);
        return s_bad(e, name, "'%s' must be an integer%s", rng);
    }
    *out = (int64_t)x;
    return 0;
}

static int s_bool(const cJSON *o, const char *name, bool *out, http_err *e) {
    const cJSON *v = s_field(o, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return s_bad(e, name, "'%s' must be true or false%s", "");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string field (borrowed from the JSON), or NULL when absent. */
static int s_str(const cJSON *o, const char *name, const char **out, http_err *e) {
    const cJSON *v = s_field(o, name);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return s_bad(e, name, "'%s' must be a string%s", "");
    *out = v->valuestring;
    return 0;
}

/* ---- the prompt ---------------------------------------------------------- */

/* A message's content: a string, or an array of {"type": "text", "text": ...}
 * parts (joined); malloc'd. */
static int s_content(const cJSON *m, char **out, http_err *e) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(c)) {
        *out = strdup(c->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(c)) return s_bad(e, "messages", "'%s': a message's content must be a string or text parts%s", "");
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text"), *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(t))
            return s_bad(e, "messages", "'%s': only text content parts are supported%s", "");
        n += strlen(t->valuestring);
    }
    if (!(*out = malloc(n + 1))) return s_bad(e, "messages", "'%s': out of memory%s", "");
    size_t k = 0;
    cJSON_ArrayForEach(p, c) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        memcpy(*out + k, t, strlen(t));
        k += strlen(t);
    }
    (*out)[k] = 0;
    return 0;
}

/* Appends b to *a with a blank line between (malloc'd; *a freed). */
static char *s_join(char *a, const char *b) {
    if (!a) return strdup(b);
    size_t la = strlen(a), lb = strlen(b);
    char *t = realloc(a, la + lb + 3);
    if (!t) {
        free(a);
        return NULL;
    }
    memcpy(t + la, "\n\n", 2);
    memcpy(t + la + 2, b, lb + 1);
    return t;
}

/* The last user message is split at its last blank line into context and
 * question: the chat template renders the user turn as context + "\n\n" +
 * question, so the prompt is the message as sent. Without a blank line the
 * whole message is the context and the question is empty. */
static int s_split_user(http_req *r, char *user) {
    char *cut = NULL;
    for (char *p = strstr(user, "\n\n"); p; p = strstr(p + 1, "\n\n")) cut = p;
    if (cut && cut > user && cut[2]) {
        *cut = 0;
        r->context = user;
        r->question = strdup(cut + 2);
    } else {
        r->context = user;
        r->question = strdup("");
    }
    return r->question ? 0 : -1;
}

/* An earlier turn kept (text taken); false when out of memory. */
static bool s_turn(http_req *r, const char *role, char *text) {
    if (!r->turn_role) {
        r->turn_role = calloc(HTTP_MAX_TURNS, sizeof *r->turn_role);
        r->turn_text = calloc(HTTP_MAX_TURNS, sizeof *r->turn_text);
    }
    char *ro = strdup(role);
    if (!r->turn_role || !r->turn_text || !ro) {
        free(ro);
        free(text);
        return false;
    }
    r->turn_role[r->n_turns] = ro;
    r->turn_text[r->n_turns++] = text;
    return true;
}

/* messages -> prefix (system / developer messages, first), earlier turns
 * (user and assistant, as sent) and context and question (the last
 * message, the user's). */
static int s_messages(const cJSON *body, http_req *r, const char *ext_context, http_err *e) {
    bool kept = r->context_id != 0;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
        return s_bad(e, "messages", "'%s' must be a non-empty array of messages%s", "");
    int n = cJSON_GetArraySize(ms), i = 0;
    if (n > HTTP_MAX_TURNS) return s_bad(e, "messages", "'%s': 256 messages at most%s", "");
    const cJSON *m;
    char *user = NULL;
    cJSON_ArrayForEach(m, ms) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            free(user);
            return s_bad(e, "messages", "'%s': each message needs a string 'role'%s", "");
        }
        char *text = NULL;
        if (s_content(m, &text, e)) {
            free(user);
            return -1;
        }
        const char *ro = role->valuestring;
        bool sys = !strcmp(ro, "system") || !strcmp(ro, "developer"), last = i == n - 1;
        bool turn = !strcmp(ro, "user") || !strcmp(ro, "assistant");
        if (sys && r->n_turns == 0 && !last) {
            r->prefix = s_join(r->prefix, text);
        } else if (last && !strcmp(ro, "user")) {
            user = text;
            text = NULL;
        } else if (!last && turn && !kept) {
            if (!s_turn(r, ro, text)) return s_bad(e, "messages", "'%s': out of memory%s", "");
            text = NULL;
        } else {
            free(text);
            return s_bad(e, "messages",
                         "'%s': system messages first, then user and assistant turns, the last one the user's "
                         "(one user message with a kept context) (role '%s' here)", ro);
        }
        free(text);
        i++;
    }
    if (!user) return s_bad(e, "messages", "'%s': the last message must be the user's%s", "");
    if (kept) { /* a kept context: the message is the question */
        r->question = user;
        return 0;
    }
    if (ext_context) { /* the extension: the document apart, the message is the question */
        r->context = strdup(ext_context);
        r->question = user;
        return r->context ? 0 : s_bad(e, "context", "'%s': out of memory%s", "");
    }
    if (!*user) {
        free(user);
        return s_bad(e, "messages", "'%s': the user message is empty%s", "");
    }
    return s_split_user(r, user) ? s_bad(e, "messages", "'%s': out of memory%s", "") : 0;
}

/* A completion prompt, verbatim: the context is all but its last words,
 * which are the question (the session runs at least two tokens after the
 * compressed context). Cut before a space, where the tokenizer starts a new
 * word anyway, so the tokens are those of the whole prompt. */
static int s_prompt(const cJSON *body, http_req *r, http_err *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
    if (!cJSON_IsString(p)) return s_bad(e, "prompt", "'%s' must be a string (or an array of one)%s", "");
    const char *t = p->valuestring;
    r->raw = true;
    if (r->context_id) { /* a kept context: the prompt continues it, verbatim */
        r->question = strdup(t);
        return r->question ? 0 : s_bad(e, "prompt", "'%s': out of memory%s", "");
    }
    size_t n = strlen(t), cut = 0;
    int words = 0;
    for (size_t k = n; k > 1 && words < 3; k--)
        if (t[k - 1] == ' ' && t[k - 2] != ' ') {
            cut = k - 1;
            words++;
        }
    if (cut == 0 || cut >= n)
        return s_bad(e, "prompt", "'%s' needs at least two words (the last ones run after the compressed%s",
                     " context)");
    r->context = strndup(t, cut);
    r->question = strdup(t + cut);
    return r->context && r->question ? 0 : s_bad(e, "prompt", "'%s': out of memory%s", "");
}

static int s_stop(const cJSON *body, http_req *r, http_err *e) {
    const cJSON *s = s_field(body, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (!*s->valuestring) return s_bad(e, "stop", "'%s' must not be empty%s", "");
        r->stop[r->n_stop++] = strdup(s->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) > HTTP_MAX_STOP)
        return s_bad(e, "stop", "'%s' must be a string or an array of at most 4 strings%s", "");
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!cJSON_IsString(x) || !*x->valuestring) return s_bad(e, "stop", "'%s': each stop must be a non-empty string%s", "");
        r->stop[r->n_stop++] = strdup(x->valuestring);
    }
    return 0;
}

/* Sampling, length, streaming and the KV policy fields. */
static int s_options(const cJSON *b, const http_defaults *d, http_req *r, http_err *e) {
    int64_t seed = 0, n = 1;
    r->max_tokens = d->max_tokens;
    r->top_p = 1;
    if (s_int(b, "max_tokens", 1, HTTP_MAX_TOKENS, &r->max_tokens, e) ||
        s_int(b, "max_completion_tokens", 1, HTTP_MAX_TOKENS, &r->max_tokens, e) ||
        s_num(b, "temperature", 0, 2, &r->temperature, e) || s_num(b, "top_p", 1e-6, 1, &r->top_p, e) ||
        s_int(b, "seed", 0, INT64_MAX, &seed, e) || s_int(b, "n", 1, 1, &n, e) || s_bool(b, "stream", &r->stream, e) ||
        s_stop(b, r, e))
        return -1;
    r->seed = (uint64_t)seed;
    const cJSON *so = s_field(b, "stream_options");
    if (so && !cJSON_IsObject(so)) return s_bad(e, "stream_options", "'%s' must be an object%s", "");
    if (so && s_bool(so, "include_usage", &r->include_usage, e)) return -1;
    const char *pol = d->kv_policy;
    r->kv_budget = d->kv_budget;
    r->kv_budget_tokens = d->kv_budget_tokens;
    r->query_aware = d->query_aware;
    bool budget_given = s_field(b, "kv_budget") != NULL;
    if (s_str(b, "kv_policy", &pol, e) || s_num(b, "kv_budget", 1e-9, 1, &r->kv_budget, e) ||
        s_int(b, "kv_budget_tokens", 1, 1 << 24, &r->kv_budget_tokens, e) || s_bool(b, "query_aware", &r->query_aware, e))
        return -1;
    if (budget_given && !s_field(b, "kv_budget_tokens")) r->kv_budget_tokens = 0; /* the fraction asked wins */
    if (s_num(b, "kv_threshold", 1e-9, 1, &r->kv_threshold, e)) return -1;
    press_spec sp;
    if (press_spec_parse(pol, d->head_as, d->n_head_as, &sp))
        return s_bad(e, "kv_policy", "'%s': unknown policy (full, snapkv, streaming, tis, a head this server "
                     "runs with --head_as NAME=PATH, a union A|B of two, ...: docs/eval.md)%s", "");
    const press *pr = &sp.m[0];
    /* (tis: whether the served head is per-head is the worker's to say) */
    if (r->kv_threshold > 0 && (sp.n > 1 || !press_calibratable(pr)))
        return s_bad(e, "kv_threshold", "'%s' needs one policy whose scores share one scale across heads (kvzip, or "
                     "tis with a per-head head)%s", "");
    if ((pr->query_head || (sp.n > 1 && sp.m[1].query_head)) && !r->query_aware)
        return s_bad(e, "query_aware", "'%s' must be true for a query-aware policy%s", "");
    if (s_bool(b, "keep_context", &r->keep_context, e)) return -1;
    if (r->keep_context && (r->query_aware || !pr->score || r->context_id))
        return s_bad(e, "keep_context", "'%s' needs a compression policy (not full) with query_aware false%s: the "
                     "kept block holds the context alone, for any later question", "");
    r->kv_policy = strdup(pol);
    return r->kv_policy ? 0 : s_bad(e, "kv_policy", "'%s': out of memory%s", "");
}

int http_req_parse(http_kind kind, const char *body, size_t len, const http_defaults *d, http_req *out,
                   http_err *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    cJSON *b = cJSON_ParseWithLength(body, len);
    if (!b || !cJSON_IsObject(b)) {
        cJSON_Delete(b);
        http_err_set(err, 400, "invalid_request_error", NULL, NULL,
                     "the request body is not a JSON object (we could not parse it)");
        return -1;
    }
    const char *asked = NULL, *ext_context = NULL;
    int rc = s_str(b, "model", &asked, err);
    if (!rc && asked && d->model_id && strcmp(asked, d->model_id)) {
        http_err_set(err, 404, "invalid_request_error", "model_not_found", "model",
                     "the model '%s' does not exist here; this server runs '%s'", asked, d->model_id);
        rc = -1;
    }
    if (!rc) rc = s_str(b, "context", &ext_context, err);
    if (!rc && ext_context && !*ext_context) rc = s_bad(err, "context", "'%s' must not be empty%s", "");
    const char *cid = NULL;
    if (!rc) rc = s_str(b, "context_id", &cid, err);
    if (!rc && cid) {
        char *end = NULL;
        unsigned long long v = strncmp(cid, "ctx-", 4) ? 0 : strtoull(cid + 4, &end, 10);
        if (!v || !end || *end) rc = s_bad(err, "context_id", "'%s' must be an id a keep_context answer gave%s", " (ctx-N)");
        else if (ext_context) rc = s_bad(err, "context_id", "'%s' and 'context' together: the kept context is the context%s", "");
        out->context_id = v;
    }
    if (!rc) rc = kind == HTTP_CHAT ? s_messages(b, out, ext_context, err) : s_prompt(b, out, err);
    if (!rc) rc = s_options(b, d, out, err);
    cJSON_Delete(b);
    if (rc) http_req_free(out);
    return rc;
}

/* ---- answers ----------------------------------------------------------------- */

static void s_usage(cJSON *o, const http_usage *u) {
    cJSON *x = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(x, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(x, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(x, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens));
}

/* The KV policy asked, and what it measured. */
static void s_kv(cJSON *o, const http_req *r, const http_usage *u) {
    uint64_t cid = r->context_id ? r->context_id : u->context_id;
    if (cid) {
        char t[32];
        snprintf(t, sizeof t, "ctx-%llu", (unsigned long long)cid);
        cJSON_AddStringToObject(o, "context_id", t);
    }
    if (!r->context_id) { /* a kept context keeps the policy it was compressed with */
        cJSON_AddStringToObject(o, "kv_policy", r->kv_policy);
        if (r->kv_threshold > 0) cJSON_AddNumberToObject(o, "kv_threshold", r->kv_threshold);
        else if (r->kv_budget_tokens > 0) cJSON_AddNumberToObject(o, "kv_budget_tokens", (double)r->kv_budget_tokens);
        else cJSON_AddNumberToObject(o, "kv_budget", r->kv_budget);
        cJSON_AddBoolToObject(o, "query_aware", r->query_aware);
    }
    cJSON_AddNumberToObject(o, "kv_bytes", (double)u->kv_bytes);
    cJSON_AddNumberToObject(o, "full_kv_bytes", (double)u->full_kv_bytes);
    cJSON_AddNumberToObject(o, "compression", u->kv_bytes ? (double)u->full_kv_bytes / (double)u->kv_bytes : 0);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    cJSON_AddNumberToObject(t, "queue_s", u->queue_s);
    cJSON_AddNumberToObject(t, "prefill_s", u->prefill_s);
    cJSON_AddNumberToObject(t, "compress_s", u->compress_s);
    cJSON_AddNumberToObject(t, "scoring_s", u->scoring_s);
    cJSON_AddNumberToObject(t, "handoff_s", u->handoff_s);
    cJSON_AddNumberToObject(t, "decode_s", u->decode_s);
    cJSON_AddNumberToObject(t, "ttft_s", u->ttft_s);
    cJSON_AddNumberToObject(t, "total_s", u->total_s);
}

static cJSON *s_head(const char *id, const char *object, int64_t created, const char *model_id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model_id);
    return o;
}

static char *s_print(cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

char *http_answer_json(const http_req *r, const char *id, int64_t created, const char *model_id, const char *text,
                       const char *finish, const http_usage *u) {
    bool chat = r->kind == HTTP_CHAT;
    cJSON *o = s_head(id, chat ? "chat.completion" : "text_completion", created, model_id);
    cJSON *cs = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text);
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish);
    cJSON_AddItemToArray(cs, c);
    s_usage(o, u);
    s_kv(o, r, u);
    return s_print(o);
}

char *http_chunk_json(const http_req *r, const char *id, int64_t created, const char *model_id, const char *text,
                      bool first, const char *finish, const http_usage *u) {
    bool chat = r->kind == HTTP_CHAT;
    cJSON *o = s_head(id, chat ? "chat.completion.chunk" : "text_completion", created, model_id);
    cJSON *cs = cJSON_AddArrayToObject(o, "choices");
    if (u) { /* the usage chunk: no choices */
        s_usage(o, u);
        s_kv(o, r, u);
        return s_print(o);
    }
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *dl = cJSON_AddObjectToObject(c, "delta");
        if (first) cJSON_AddStringToObject(dl, "role", "assistant");
        if (text) cJSON_AddStringToObject(dl, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(cs, c);
    return s_print(o);
}
