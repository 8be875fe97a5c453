/* msg: Envelope pack / unpack with size, parse, version and body checks. */
#include "msg.h"

#include <stdbool.h>
#include <stdlib.h>

#include "tis_error.h"

/* protobuf-c's unpacking allocates through this (malloc from our objects,
 * so allocation-failure injection reaches it, base/alloc_fault.h), and it
 * notes a failed allocation: a NULL unpack is then "out of memory", not
 * "malformed". */
static _Thread_local bool s_pb_oom;
static void *s_pb_alloc(void *ud, size_t n) {
    (void)ud;
    void *p = malloc(n ? n : 1);
    if (!p) s_pb_oom = true;
    return p;
}
static void s_pb_free(void *ud, void *p) {
    (void)ud;
    free(p);
}
static ProtobufCAllocator s_pb = {.alloc = s_pb_alloc, .free = s_pb_free, .allocator_data = NULL};

int msg_pack(Tis__Envelope *env, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (env->body_case == TIS__ENVELOPE__BODY__NOT_SET)
        return tis_error(TIS_EINVAL, "msg: an envelope without a body");
    env->version = TIS_PROTO_VERSION;
    size_t n = tis__envelope__get_packed_size(env);
    if (n > TIS_MSG_MAX_BYTES)
        return tis_error(TIS_ERANGE, "msg: a %zu-byte %s message exceeds the %zu-byte limit", n,
                         msg_body_name(env), TIS_MSG_MAX_BYTES);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return tis_error(TIS_ENOMEM, "msg: out of memory for %zu bytes", n);
    size_t w = tis__envelope__pack(env, b);
    TIS_ASSERT(w == n);
    *buf = b;
    *len = n;
    return 0;
}

int msg_unpack(const uint8_t *buf, size_t len, size_t max_bytes, Tis__Envelope **out) {
    *out = NULL;
    if (len > max_bytes)
        return tis_error(TIS_ERANGE, "msg: a %zu-byte frame exceeds the %zu-byte limit", len, max_bytes);
    s_pb_oom = false;
    Tis__Envelope *env = tis__envelope__unpack(&s_pb, len, buf);
    if (!env && s_pb_oom) return tis_error(TIS_ENOMEM, "msg: out of memory unpacking a %zu-byte frame", len);
    if (!env) return tis_error(TIS_EFORMAT, "msg: a %zu-byte frame is not a tis message", len);
    if (env->version != TIS_PROTO_VERSION) {
        *out = env;
        return tis_error(TIS_EUNSUPPORTED, "msg: protocol version %u, this build speaks %u", env->version,
                         TIS_PROTO_VERSION);
    }
    if (env->body_case == TIS__ENVELOPE__BODY__NOT_SET) {
        tis__envelope__free_unpacked(env, &s_pb);
        return tis_error(TIS_EFORMAT, "msg: a message without a body");
    }
    *out = env;
    return 0;
}

void msg_free(Tis__Envelope *env) {
    if (env) tis__envelope__free_unpacked(env, &s_pb);
}

const char *msg_body_name(const Tis__Envelope *env) {
    switch (env->body_case) {
    case TIS__ENVELOPE__BODY_SUBMIT: return "submit";
    case TIS__ENVELOPE__BODY_PREFILL_JOB: return "prefill_job";
    case TIS__ENVELOPE__BODY_PREFILL_DONE: return "prefill_done";
    case TIS__ENVELOPE__BODY_SCORE_JOB: return "score_job";
    case TIS__ENVELOPE__BODY_SCORE_DONE: return "score_done";
    case TIS__ENVELOPE__BODY_DECODE_JOB: return "decode_job";
    case TIS__ENVELOPE__BODY_TOKENS: return "tokens";
    case TIS__ENVELOPE__BODY_REPLY: return "reply";
    case TIS__ENVELOPE__BODY_ERROR: return "error";
    case TIS__ENVELOPE__BODY_LEASE_RENEW: return "lease_renew";
    case TIS__ENVELOPE__BODY_LEASE_RELEASE: return "lease_release";
    case TIS__ENVELOPE__BODY_READY: return "ready";
    case TIS__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case TIS__ENVELOPE__BODY_SHUTDOWN: return "shutdown";
    case TIS__ENVELOPE__BODY_BUSY: return "busy";
    case TIS__ENVELOPE__BODY_STATUS_REQUEST: return "status_request";
    case TIS__ENVELOPE__BODY_STATUS: return "status";
    case TIS__ENVELOPE__BODY_COMPRESS_JOB: return "compress_job";
    case TIS__ENVELOPE__BODY_EVAL_JOB: return "eval_job";
    case TIS__ENVELOPE__BODY_EVAL_DONE: return "eval_done";
    case TIS__ENVELOPE__BODY_LABEL_JOB: return "label_job";
    case TIS__ENVELOPE__BODY_LABEL_DONE: return "label_done";
    case TIS__ENVELOPE__BODY_CANCEL: return "cancel";
    case TIS__ENVELOPE__BODY_BLOCK_FETCH: return "block_fetch";
    case TIS__ENVELOPE__BODY_BLOCK_CHUNK: return "block_chunk";
    default: return "none";
    }
}
