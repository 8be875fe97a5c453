/* tis_client.h: the C client of a running `tis serve` (the public API).
 *
 *   tis_client *c;
 *   if (tis_client_open("ipc:///tmp/tis-1000/front", &c) < 0) ...;
 *   tis_request rq = {.context = doc, .question = q, .policy = "snapkv", .budget = 0.1};
 *   tis_client_submit(c, 1, &rq);
 *   tis_result res;
 *   while (tis_client_next(c, 1000, &res) == 0) {}   // 0: nothing yet
 *   if (res.kind == TIS_RESULT_REPLY) puts(res.answer);
 *   tis_result_free(&res);
 *   tis_client_close(c);
 *
 * Requests are asynchronous: submit many, then collect the results in the
 * order they finish; `id` (any value but 0, unique per client) ties a result
 * to its request. Every submitted id gets exactly one result: a reply, an
 * error, or `busy` (the server's queues are full: not queued, submit again
 * later). Errors are negative codes (as in tis_error.h) with a message from
 * tis_client_last_error(). One tis_client belongs to one thread.
 *
 * A coordinator that restarts loses what it held: while requests are out,
 * tis_client_next asks the coordinator every 2 s which of them it holds,
 * and sends again the ones it lost (the coordinator drops duplicates of
 * requests it holds or answered). A request is never answered twice to the
 * caller.
 *
 * Streaming: a request with `stream` set also gets TIS_RESULT_CHUNK results
 * (its tokens as they are generated, and the text they completed) before
 * its one final result. tis_client_cancel drops a request: nothing more
 * comes for it, and the server stops working on it. */
#ifndef TIS_CLIENT_H
#define TIS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tis_client tis_client;

/* One earlier turn of a conversation (borrowed strings). */
typedef struct tis_turn {
    const char *role;          /* "user" or "assistant" */
    const char *content;
} tis_turn;

typedef struct tis_request {
    const char *context;       /* the long document (required, unless context_id) */
    const char *question;      /* (required, unless the context is the whole message) */
    const char *prefix;        /* instructions before the context, or NULL */
    const char *answer_prefix; /* text the answer continues, or NULL */
    const char *policy;        /* compression policy: full, snapkv, tis, ... (NULL: full) */
    double budget;             /* fraction of the context kept, in (0, 1] ... */
    uint32_t budget_tokens;    /* ... or tokens per head (used when > 0) */
    bool query_aware;          /* question prefilled before compression */
    uint32_t max_new;          /* answer tokens at most (0: 16) */
    float temperature;         /* 0: greedy; > 0: sampled (with top_p, seed) */
    float top_p;               /* (0, 1]; 0: 1 */
    uint64_t seed;             /* the sampler's seed (0: 42) */
    bool until_eog;            /* generate until end-of-generation or max_new (else one short
                                  answer: stops at its sentence end and is trimmed) */
    bool raw;                  /* no chat template: prefix, context, question and answer_prefix
                                  joined as given (a completion prompt) */
    bool stream;               /* TIS_RESULT_CHUNK results while generating */
    const char *const *stop;   /* [n_stop] generation ends where the text first holds one of
                                  these (the answer is cut there); borrowed until submitted */
    size_t n_stop;
    bool keep_context;         /* keep the compressed context for later questions (needs a
                                  compression policy, not query_aware): the reply's context_id */
    uint64_t context_id;       /* answer from a kept context (context NULL): no prefill */
    const tis_turn *history;   /* [n_history] earlier turns, between the prefix (system) and the user
                                  turn holding context + question; borrowed until submitted */
    size_t n_history;
    double threshold;          /* > 0: an adaptive budget instead of budget / budget_tokens: every
                                  head keeps the context tokens scoring >= threshold, in (0, 1]
                                  (calibrated policies only: kvzip, tis with a per-head head) */
} tis_request;

typedef enum tis_result_kind {
    TIS_RESULT_REPLY = 0, TIS_RESULT_ERROR = 1, TIS_RESULT_BUSY = 2,
    TIS_RESULT_CHUNK = 3       /* a streamed request's tokens; its final result comes later */
} tis_result_kind;

typedef struct tis_result {
    uint64_t id;
    tis_result_kind kind;
    char *answer;              /* REPLY: the answer text; CHUNK: the text these tokens completed */
    int32_t *ids;              /* REPLY: its tokens; CHUNK: the tokens of one step */
    size_t n_ids;
    uint32_t prompt_tokens;    /* REPLY: the prompt's tokens */
    bool length;               /* REPLY: generation stopped at max_new (else at its end) */
    uint64_t context_id;       /* REPLY to keep_context: the kept context's id */
    uint64_t kv_bytes;         /* REPLY: the compressed cache handed to decode */
    uint64_t full_kv_bytes;    /* REPLY: what the full cache would have been */
    /* REPLY: seconds; queue (waiting for workers), prefill (incl. compression),
     * scoring (a scorer worker's head, when one ran), handoff (mapping the
     * block), decode, ttft (submit to first token), total */
    double queue_s, prefill_s, scoring_s, handoff_s, decode_s, ttft_s, total_s;
    double compress_s;         /* REPLY: of prefill_s, the press's scoring and the compaction */
    int error_code;            /* ERROR: a negative tis_error.h code */
    char *error;               /* ERROR: the message */
    uint32_t retry_after_ms;   /* BUSY: the server's hint */
} tis_result;

/* Connects to a coordinator's front end (ipc://... or tcp://...).
 * tis_client_open is tis_client_open_keys without keys: a tcp endpoint is
 * refused (an ipc one is guarded by its directory's and socket's modes). */
int tis_client_open(const char *endpoint, tis_client **out);

/* Who we are to a coordinator's tcp front end (libzmq CURVE; docs/pipeline.md
 * "Who may connect"): files written by `tis keygen`. Paths are borrowed. A
 * coordinator that does not have our public key on its allow-list does not
 * answer (the handshake fails; results time out). */
typedef struct tis_client_keys {
    const char *key_file;         /* our key pair (PREFIX.key, mode 0600) */
    const char *server_key_file;  /* the coordinator's public key (its PREFIX.pub) */
    int insecure;                 /* nonzero: a tcp endpoint without keys (anyone on the path can
                                     read and send); the key files are then not needed */
} tis_client_keys;
int tis_client_open_keys(const char *endpoint, const tis_client_keys *keys, tis_client **out);
void tis_client_close(tis_client *c);

/* Sends one request; its result comes from tis_client_next. */
int tis_client_submit(tis_client *c, uint64_t id, const tis_request *rq);

/* Waits up to timeout_ms for a result: 1 (*out filled; free it with
 * tis_result_free), 0 (nothing yet), < 0 (error). */
int tis_client_next(tis_client *c, int timeout_ms, tis_result *out);

/* Drops request id: the server stops it, and no result comes for it (one
 * that was on its way is dropped). 0 also when it was answered already. */
int tis_client_cancel(tis_client *c, uint64_t id);
void tis_result_free(tis_result *r);

/* The coordinator's state as JSON (malloc'd, free it): workers, queue
 * lengths, per-stage latency percentiles, bytes handed off. Results of
 * requests that arrive meanwhile are kept for tis_client_next. */
int tis_client_status(tis_client *c, int timeout_ms, char **json_out);

const char *tis_client_last_error(void);

/* Requests sent again after a coordinator restart, so far. */
uint64_t tis_client_resent(const tis_client *c);

/* Results dropped so far because their request was not pending: answered
 * already, cancelled, or never sent. A caller never sees a request answered
 * twice; without cancels this counts the times the server answered one
 * twice (scripts/chaos.sh). */
uint64_t tis_client_duplicates(const tis_client *c);

/* Seconds since anything came from the coordinator (while requests are
 * out it is asked every 2 s, so a long silence means it is not there). */
double tis_client_silence_s(const tis_client *c);

#ifdef __cplusplus
}
#endif

#endif
