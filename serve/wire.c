/* wire: Envelope framing over ZeroMQ, defensive on receive. */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tis_error.h"

int wire_send(void *sock, const wire_peer *peer, Tis__Envelope *env) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = msg_pack(env, &buf, &len);
    if (rc) return rc;
    if (peer && zmq_send(sock, peer->id, peer->len, ZMQ_SNDMORE) < 0) {
        free(buf);
        return tis_error(TIS_EIO, "wire: cannot address peer: %s", zmq_strerror(zmq_errno()));
    }
    int n = zmq_send(sock, buf, len, 0);
    free(buf);
    if (n < 0) return tis_error(TIS_EIO, "wire: send %s: %s", msg_body_name(env), zmq_strerror(zmq_errno()));
    return 0;
}

/* Drops the rest of a multipart message. */
static void s_drain(void *sock) {
    int more = 0;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        zmq_msg_close(&m);
        sz = sizeof more;
    }
}

int wire_recv(void *sock, int router, wire_peer *peer, Tis__Envelope **out) {
    *out = NULL;
    if (peer) peer->len = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int rc = 0;
    if (router) {
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return tis_error(TIS_EIO, "wire: receive: %s", zmq_strerror(zmq_errno()));
        }
        size_t n = zmq_msg_size(&m);
        if (peer) {
            peer->len = n < sizeof peer->id ? n : sizeof peer->id;
            memcpy(peer->id, zmq_msg_data(&m), peer->len);
        }
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more) return tis_error(TIS_EFORMAT, "wire: a message with no body frame");
        zmq_msg_init(&m);
    }
    if (zmq_msg_recv(&m, sock, 0) < 0) {
        zmq_msg_close(&m);
        return tis_error(TIS_EIO, "wire: receive: %s", zmq_strerror(zmq_errno()));
    }
    if (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        s_drain(sock);
        return tis_error(TIS_EFORMAT, "wire: a message of more than one frame");
    }
    rc = msg_unpack(zmq_msg_data(&m), zmq_msg_size(&m), TIS_MSG_MAX_BYTES, out);
    zmq_msg_close(&m);
    return rc;
}

int wire_send_error(void *sock, const wire_peer *peer, uint64_t request_id, int code,
                    const char *message) {
    Tis__Error er = TIS__ERROR__INIT;
    er.code = code;
    er.message = (char *)(message ? message : "");
    Tis__Envelope env = TIS__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = TIS__ENVELOPE__BODY_ERROR;
    env.error = &er;
    return wire_send(sock, peer, &env);
}

int wire_send_status_request(void *sock, uint64_t id) {
    Tis__StatusRequest sr = TIS__STATUS_REQUEST__INIT;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &sr;
    return wire_send(sock, NULL, &e);
}

bool wire_status_holds(const Tis__Status *st, uint64_t id) {
    for (size_t k = 0; k < st->n_client_requests; k++)
        if (st->client_requests[k] == id) return true;
    return false;
}
