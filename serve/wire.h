/* wire: Envelopes over ZeroMQ sockets. A DEALER (worker, client) sends and
 * receives one frame per message; a ROUTER (coordinator) sees the peer's
 * identity frame first. Receiving never trusts the peer: an oversized,
 * malformed, wrong-version or mis-framed message is returned as an error
 * (with the peer's identity and, when readable, its request id) so the
 * caller can answer it and keep serving. */
#ifndef TIS_WIRE_H
#define TIS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* A peer's ROUTER identity (ZeroMQ identities are at most 255 bytes). */
typedef struct wire_peer {
    uint8_t id[256];
    size_t len;
} wire_peer;

/* Sends env on a DEALER/REQ-less socket (peer NULL) or to `peer` on a
 * ROUTER. ZMQ_ROUTER_MANDATORY makes an unknown peer an error, not a drop. */
int wire_send(void *sock, const wire_peer *peer, Tis__Envelope *env);

/* Receives one message (blocking; use zmq_poll first). router: the socket
 * is a ROUTER (an identity frame comes first; filled into *peer). On
 * TIS_EUNSUPPORTED (another version) *out is still set for the reply. */
int wire_recv(void *sock, int router, wire_peer *peer, Tis__Envelope **out);

/* Answers a bad or failed request with an Error message. */
int wire_send_error(void *sock, const wire_peer *peer, uint64_t request_id, int code,
                    const char *message);

/* Asks the coordinator (front end) for its Status; id: the client's
 * status request id (answered in Status, request_id = id). */
int wire_send_status_request(void *sock, uint64_t id);

/* Whether a Status lists request id among the asking client's held ones. */
bool wire_status_holds(const Tis__Status *st, uint64_t id);

#endif
