/* tis.h: tis as a library (the public API). Everything a program links
 * from libtis.so is declared here or in tis_client.h (included): symbols
 * start with tis_, the rest of the library is hidden.
 *
 * In one process, from a model file:
 *
 *   tis_engine *e;
 *   tis_engine_opts eo = {.model = "models/SmolLM2-135M-Instruct.Q4_1.gguf"};
 *   if (tis_engine_open(&eo, &e) < 0) { fprintf(stderr, "%s\n", tis_last_error()); ... }
 *   tis_request rq = {.context = doc, .question = "Where is the key?", .policy = "snapkv", .budget = 0.1};
 *   tis_answer a;
 *   if (tis_engine_answer(e, &rq, &a) == 0) printf("%s (%llu of %llu KV bytes)\n", a.text,
 *                                                  a.kv_bytes, a.full_kv_bytes);
 *   tis_answer_free(&a);
 *   tis_engine_close(e);
 *
 * A request is answered exactly as `tis eval` and `tis serve` answer it
 * (the same session and decoder): the context is prefilled, compressed by
 * the policy to the budget, and the answer decoded greedily from the
 * compressed cache. Through a running `tis serve`: tis_client.h.
 *
 * Errors: functions return 0 or a negative code (TIS_E* below) and leave a
 * message for tis_last_error() (per thread). One tis_engine belongs to one
 * thread at a time. */
#ifndef TIS_H
#define TIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tis_client.h" /* tis_request, the pipeline client */

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (the values of the library's internal tis_error.h). */
#define TIS_E_INVAL (-1)       /* bad argument */
#define TIS_E_IO (-2)          /* open/read/write/mmap failed */
#define TIS_E_NOMEM (-3)       /* allocation failed */
#define TIS_E_FORMAT (-4)      /* malformed file or message */
#define TIS_E_UNSUPPORTED (-5) /* well-formed but not handled */
#define TIS_E_RANGE (-6)       /* size or index out of range */
#define TIS_E_NOTFOUND (-7)    /* key, tensor, token or policy missing */

/* The message of the last error on this thread ("" if none). */
const char *tis_last_error(void);
/* Short name of a status code ("EFORMAT", ...). */
const char *tis_status_name(int code);

/* The compression policies tis knows, i = 0, 1, ... (NULL past the end). */
const char *tis_policy_name(size_t i);

typedef struct tis_engine tis_engine;

typedef struct tis_engine_opts {
    const char *model;       /* a .gguf file, or a folder with safetensors + config.json (required) */
    const char *head;        /* importance head for policy tis (a .safetensors), or NULL */
    const char *head_query;  /* query-aware head for policy tis_query, or NULL */
    const char *const *head_as; /* [n_head_as] "NAME=PATH": policy NAME is tis with that head
                                   (NAME+lpool5, and unions such as NAME+lpool5|tis+recent64/8),
                                   or NULL; copied */
    size_t n_head_as;
} tis_engine_opts;

/* Loads the model (and heads, checked against it). */
int tis_engine_open(const tis_engine_opts *o, tis_engine **out);
void tis_engine_close(tis_engine *e);
/* The model's name (from its file). */
const char *tis_engine_model(const tis_engine *e);

typedef struct tis_answer {
    char *text;              /* the answer, trimmed (malloc'd) */
    int32_t *ids;            /* [n_ids] its tokens (malloc'd) */
    size_t n_ids;
    uint32_t n_ctx;          /* context tokens */
    uint32_t kept_tokens;    /* context tokens kept per (layer, kv-head) on average */
    uint64_t kv_bytes;       /* the compressed cache when decoding started */
    uint64_t full_kv_bytes;  /* the uncompressed cache it replaces */
    double prefill_s, compress_s, decode_s;
} tis_answer;

/* Answers one request in process (rq->policy NULL: full; a budget for
 * every other policy; max_new 0: 16). A policy may be a union "A|B" of two
 * compressing ones (each stream keeps what the two rankings put first, in
 * turn; a budget, not a threshold; heads of one layer). */
int tis_engine_answer(tis_engine *e, const tis_request *rq, tis_answer *out);
void tis_answer_free(tis_answer *a);

typedef struct tis_gen_opts {
    bool chat;               /* through the model's chat template */
    const char *system;      /* system message with chat, or NULL */
    uint32_t max_new;        /* tokens at most (0: 128) */
    float temp;              /* 0: greedy */
    float top_p;             /* 0 or 1: no nucleus cut */
    uint64_t seed;
} tis_gen_opts;

/* Plain generation from a prompt (no compression): *text (malloc'd). */
int tis_engine_generate(tis_engine *e, const char *prompt, const tis_gen_opts *o, char **text);

#ifdef __cplusplus
}
#endif

#endif
