/* test_wire: Envelopes between a ROUTER and DEALERs over ipc://; garbage,
 * multi-frame and wrong-version messages come back as errors naming the
 * problem, the receiver answers them and keeps serving; an unknown peer is
 * an error (ROUTER_MANDATORY), not a silent drop. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "tt.h"
#include "wire.h"

static Tis__Envelope *s_recv_router(void *r, wire_peer *peer, int *rc) {
    zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 2000) != 1) {
        *rc = -100;
        return NULL;
    }
    Tis__Envelope *e = NULL;
    *rc = wire_recv(r, 1, peer, &e);
    return e;
}

int main(void) {
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s", tt_path("wire.sock"));
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER), *d = zmq_socket(ctx, ZMQ_DEALER);
    int one = 1, linger = 0;
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_ROUTING_ID, "worker-1", 8);
    TT_CHECK(zmq_bind(r, ep) == 0);
    TT_CHECK(zmq_connect(d, ep) == 0);

    /* READY from the worker; the router sees its identity */
    Tis__Ready rd = TIS__READY__INIT;
    rd.role = TIS__ROLE__ROLE_PREFILL;
    rd.worker_id = "worker-1";
    rd.capacity = 2;
    Tis__Envelope env = TIS__ENVELOPE__INIT;
    env.body_case = TIS__ENVELOPE__BODY_READY;
    env.ready = &rd;
    TT_OK(wire_send(d, NULL, &env));
    wire_peer peer;
    int rc = 0;
    Tis__Envelope *got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == 0 && got && got->body_case == TIS__ENVELOPE__BODY_READY && got->ready->capacity == 2);
    TT_CHECK(peer.len == 8 && memcmp(peer.id, "worker-1", 8) == 0);
    msg_free(got);

    /* garbage from the worker: an error, and the router still serves */
    TT_CHECK(zmq_send(d, "\xff\xfe garbage \x01", 12, 0) == 12);
    got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == TIS_EFORMAT && got == NULL && peer.len == 8);
    fprintf(stderr, "  garbage -> %s\n", tis_last_error());
    TT_OK(wire_send_error(r, &peer, 0, rc, tis_last_error()));
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    TT_CHECK(zmq_poll(&it, 1, 2000) == 1);
    got = NULL;
    TT_OK(wire_recv(d, 0, NULL, &got));
    TT_CHECK(got && got->body_case == TIS__ENVELOPE__BODY_ERROR && got->error->code == TIS_EFORMAT);
    msg_free(got);

    /* two frames where one is expected */
    TT_CHECK(zmq_send(d, "a", 1, ZMQ_SNDMORE) == 1 && zmq_send(d, "b", 1, 0) == 1);
    got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == TIS_EFORMAT && got == NULL);

    /* another protocol version: refused, but its request id is known */
    Tis__Heartbeat hb = TIS__HEARTBEAT__INIT;
    Tis__Envelope ev = TIS__ENVELOPE__INIT;
    ev.version = 99;
    ev.request_id = 5;
    ev.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    ev.heartbeat = &hb;
    uint8_t raw[64];
    size_t n = tis__envelope__pack(&ev, raw);
    TT_CHECK(zmq_send(d, raw, n, 0) == (int)n);
    got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == TIS_EUNSUPPORTED && got && got->request_id == 5);
    msg_free(got);

    /* a version-1 client's eval job (inside Submit, as that version sent it):
     * the same refusal, with the version named */
    static const uint8_t v1_eval[] = {0x08, 0x01, 0x10, 0x06, 0x52, 0x05, 0x6a, 0x03, 0x0a, 0x01, 'x'};
    TT_CHECK(zmq_send(d, v1_eval, sizeof v1_eval, 0) == (int)sizeof v1_eval);
    got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == TIS_EUNSUPPORTED && got && got->request_id == 6 && strstr(tis_last_error(), "version 1"));
    msg_free(got);

    /* and a good message after all that */
    Tis__Heartbeat h2 = TIS__HEARTBEAT__INIT;
    h2.queue_len = 3;
    Tis__Envelope e2 = TIS__ENVELOPE__INIT;
    e2.body_case = TIS__ENVELOPE__BODY_HEARTBEAT;
    e2.heartbeat = &h2;
    TT_OK(wire_send(d, NULL, &e2));
    got = s_recv_router(r, &peer, &rc);
    TT_CHECK(rc == 0 && got && got->heartbeat->queue_len == 3);
    msg_free(got);

    /* an unknown peer is an error, not a drop */
    wire_peer ghost = {.len = 5};
    memcpy(ghost.id, "ghost", 5);
    TT_FAILS(wire_send(r, &ghost, &e2), TIS_EIO);

    zmq_close(d);
    zmq_close(r);
    zmq_ctx_term(ctx);
    return tt_done("test_wire");
}
