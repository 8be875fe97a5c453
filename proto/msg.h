/* msg: framing of the protobuf-c messages of proto/tis.proto. Every frame
 * is one Envelope; decoding checks the size before parsing, then that it
 * parses, that its version is ours and that it carries a body. Tensor bytes
 * never travel here (BlockRef names them). */
#ifndef TIS_MSG_H
#define TIS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "tis.pb-c.h"

/* 2: eval and label jobs have their own bodies (EvalJob / EvalDone,
 * LabelJob / LabelDone; version 1 carried them inside Submit and Reply).
 * 3: Cancel; TokenChunk sent for Submit.stream; Submit.raw,
 * GenParams.until_eog / stop, Reply.finish_reason / prompt_tokens, Status.cancelled. */
#define TIS_PROTO_VERSION 3u
/* Frames above this are refused unread: control messages are small (the
 * largest carries a request's text). */
#define TIS_MSG_MAX_BYTES ((size_t)64 << 20)

/* Serialises env (its version is set to TIS_PROTO_VERSION) into a malloc'd
 * buffer. Errors: no body, larger than TIS_MSG_MAX_BYTES. */
int msg_pack(Tis__Envelope *env, uint8_t **buf, size_t *len);

/* Parses a frame. Errors (message says which): TIS_ERANGE over max_bytes,
 * TIS_EFORMAT malformed or no body, TIS_EUNSUPPORTED another version (the
 * envelope is still returned in *out then, so the caller can answer its
 * request id; free it with msg_free). */
int msg_unpack(const uint8_t *buf, size_t len, size_t max_bytes, Tis__Envelope **out);
void msg_free(Tis__Envelope *env);

/* The body's field name in proto/tis.proto ("submit", "eval_job", ...), or "none". */
const char *msg_body_name(const Tis__Envelope *env);

#endif
