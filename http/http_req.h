/* http_req: an OpenAI-shaped request body (POST /v1/chat/completions,
 * /v1/completions) read into a tis request, and the JSON the front answers
 * with (docs/http.md). Pure functions over text: no sockets, no server. */
#ifndef TIS_HTTP_REQ_H
#define TIS_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { HTTP_MAX_STOP = 4, HTTP_MAX_TOKENS = 4096, HTTP_MAX_TURNS = 256 };

typedef enum http_kind { HTTP_CHAT = 0, HTTP_COMPLETION = 1 } http_kind;

/* What a request may leave out (the config's http: block). */
typedef struct http_defaults {
    const char *model_id;   /* the served model (/v1/models); a request naming another is refused */
    const char *kv_policy;  /* full, snapkv, tis, ... */
    double kv_budget;       /* fraction of the context kept, in (0, 1] */
    int64_t kv_budget_tokens; /* > 0: tokens per head instead of the fraction */
    bool query_aware;
    int64_t max_tokens;     /* when the request gives none */
    const char *const *head_as; /* [n_head_as] the served named heads ("NAME=PATH", tis serve
                                   --head_as): kv_policy may name them, alone or in a union */
    int64_t n_head_as;
} http_defaults;

/* One request, its strings malloc'd (http_req_free). The prompt is tis's
 * shape: prefix (system), context (what is compressed), question. */
typedef struct http_req {
    http_kind kind;
    char *prefix, *context, *question;
    char **turn_role, **turn_text;    /* [n_turns] earlier user / assistant turns of a chat */
    int n_turns;
    bool raw;                         /* completions: no chat template */
    int64_t max_tokens;
    double temperature, top_p;        /* 0: greedy; top_p in (0, 1] */
    uint64_t seed;
    char *stop[HTTP_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    char *kv_policy;
    double kv_budget;
    int64_t kv_budget_tokens;
    double kv_threshold;              /* > 0: adaptive budget (calibrated policies), instead of the two above */
    bool query_aware;
    bool keep_context;                /* keep the compressed context: the answer's context_id */
    uint64_t context_id;              /* answer from a kept context ("ctx-N"): context NULL */
} http_req;

/* A refused request: HTTP status, OpenAI error type and code, the
 * offending parameter (or ""), and the message. */
typedef struct http_err {
    int status;
    const char *type;  /* invalid_request_error, ... */
    const char *code;  /* or NULL */
    char param[64];
    char message[512];
} http_err;

/* Parses body[len] as kind. 0, or -1 with *err filled (400 for bad JSON,
 * a field of the wrong type or out of range, an unsupported feature; 404
 * for another model). */
int http_req_parse(http_kind kind, const char *body, size_t len, const http_defaults *d, http_req *out,
                   http_err *err);
void http_req_free(http_req *r);

/* The error as OpenAI's {"error": {...}} (malloc'd). */
char *http_err_json(const http_err *e);
/* Fills *e (printf-style message); returns e. */
http_err *http_err_set(http_err *e, int status, const char *type, const char *code, const char *param,
                       const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* What the answer's JSON reports beside the text. */
typedef struct http_usage {
    int64_t prompt_tokens, completion_tokens;
    uint64_t kv_bytes, full_kv_bytes;
    double queue_s, prefill_s, compress_s, scoring_s, handoff_s, decode_s, ttft_s, total_s;
    uint64_t context_id;            /* the kept context (keep_context), or 0 */
} http_usage;

/* A whole answer: chat.completion or text_completion (malloc'd). */
char *http_answer_json(const http_req *r, const char *id, int64_t created, const char *model_id, const char *text,
                       const char *finish, const http_usage *u);
/* One server-sent event's JSON: a chunk of text (first: the chat chunk
 * carries the assistant role), a finish reason (text NULL), or, with u, the
 * usage chunk (no choices) (malloc'd). */
char *http_chunk_json(const http_req *r, const char *id, int64_t created, const char *model_id, const char *text,
                      bool first, const char *finish, const http_usage *u);

#endif
