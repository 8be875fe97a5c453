/* client: the public C client (include/tis_client.h) over a DEALER socket. */
#include "tis_client.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "secure.h"
#include "tis_error.h"
#include "wire.h"

enum { PROBE_MS = 2000 }; /* while requests are out: ask the coordinator what it holds this often */

/* A request sent and not answered yet, kept to send again if the
 * coordinator restarts (a new one knows nothing of it). */
typedef struct pending {
    uint64_t id;
    uint8_t *submit; /* packed Submit */
    size_t len;
    uint64_t probe;  /* status requests sent before it was (last) sent */
} pending;

struct tis_client {
    void *ctx, *sock;
    tis_result *held; /* results that came while waiting for a status reply */
    size_t n_held, cap_held;
    uint64_t status_seq;
    pending *pend;
    size_t n_pend, cap_pend;
    double next_probe;
    uint64_t resent;
    uint64_t dropped;             /* results of requests answered already (or never sent) */
    double last_heard;    /* when anything last came from the coordinator */
    void *mon;            /* tcp: a PAIR on the socket's monitor (handshake events), or NULL */
    int refused;          /* the last handshake failed (the monitor's event), 0 once one succeeds */
    char ep[256];
};

/* tcp: the coordinator may refuse our key (CURVE, its allow-list); then the
 * socket has no peer and a send would block for ever. The handshake events
 * tell: refused until a handshake succeeds. */
static bool s_refused(tis_client *c) {
    if (!c->mon) return false;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        uint16_t ev = 0;
        if (zmq_msg_size(&m) >= 6) memcpy(&ev, zmq_msg_data(&m), 2);
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, c->mon, 0) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->refused = 0;
        else if (ev) c->refused = ev;
    }
    return c->refused != 0;
}

static int s_refused_error(const tis_client *c) {
    return tis_error(TIS_EIO, "client: %s refused us (%s): is our public key (--key's .pub) on the coordinator's "
                     "--allow list, and --server_key its public key?", c->ep,
                     c->refused == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "CURVE: our key is not allowed"
                                                                  : "the security handshake failed");
}

/* Before a send: on tcp, waits until the socket can take a message, or
 * gives the refusal. */
static int s_writable(tis_client *c) {
    while (c->mon) {
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLOUT, 0};
        int n = zmq_poll(&it, 1, 200);
        if (n > 0) return 0;
        if (n < 0 && zmq_errno() != EINTR) return tis_error(TIS_EIO, "client: poll: %s", zmq_strerror(zmq_errno()));
        if (s_refused(c)) return s_refused_error(c);
    }
    return 0;
}

const char *tis_client_last_error(void) { return tis_last_error(); }

int tis_client_open(const char *endpoint, tis_client **out) { return tis_client_open_keys(endpoint, NULL, out); }

int tis_client_open_keys(const char *endpoint, const tis_client_keys *keys, tis_client **out) {
    *out = NULL;
    if (!endpoint || !*endpoint) return tis_error(TIS_EINVAL, "client: no endpoint");
    tis_client *c = calloc(1, sizeof *c);
    if (!c) return tis_error(TIS_ENOMEM, "client: out of memory");
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    sec_opts so = {0};
    if (keys) so = (sec_opts){.key = keys->key_file, .server_key = keys->server_key_file, .insecure = keys->insecure};
    int rc = 0;
    if (!c->sock || zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger))
        rc = tis_error(TIS_EIO, "client: cannot connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
    else if (!strncmp(endpoint, "tcp://", 6)) { /* watch the handshakes (s_refused) */
        char mon[64];
        snprintf(mon, sizeof mon, "inproc://tis-client-monitor-%p", (void *)c);
        c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
        if (!c->mon || zmq_socket_monitor(c->sock, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) ||
            zmq_setsockopt(c->mon, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(c->mon, mon))
            rc = tis_error(TIS_EIO, "client: cannot watch %s: %s", endpoint, zmq_strerror(zmq_errno()));
    }
    snprintf(c->ep, sizeof c->ep, "%s", endpoint);
    if (!rc) rc = sec_connect(c->sock, endpoint, &so);
    if (rc) {
        tis_client_close(c);
        return rc;
    }
    c->last_heard = tis_now();
    *out = c;
    return 0;
}

void tis_client_close(tis_client *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_pend; i++) free(c->pend[i].submit);
    free(c->pend);
    for (size_t i = 0; i < c->n_held; i++) tis_result_free(&c->held[i]);
    free(c->held);
    if (c->mon) zmq_close(c->mon);
    if (c->sock) zmq_close(c->sock);
    if (c->ctx) zmq_ctx_term(c->ctx);
    free(c);
}

int tis_client_submit(tis_client *c, uint64_t id, const tis_request *rq) {
    if (!c || !rq || id == 0) return tis_error(TIS_EINVAL, "client: submit needs a client, a request and an id > 0");
    if ((!rq->context || !*rq->context) && !rq->context_id)
        return tis_error(TIS_EINVAL, "client: a request needs a context (or a kept context's id)");
    if (rq->threshold != 0 && !(rq->threshold > 0 && rq->threshold <= 1))
        return tis_error(TIS_EINVAL, "client: threshold %g is not in (0, 1]", rq->threshold);
    if (rq->threshold == 0 && rq->budget_tokens == 0 && !(rq->budget > 0 && rq->budget <= 1))
        return tis_error(TIS_EINVAL, "client: budget %g is not in (0, 1] and no budget_tokens or threshold", rq->budget);
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = rq->max_new ? rq->max_new : 16;
    gp.seed = rq->seed ? rq->seed : 42;
    gp.temperature = rq->temperature;
    gp.top_p = rq->top_p;
    gp.until_eog = rq->until_eog;
    gp.n_stop = rq->n_stop;
    gp.stop = (char **)rq->stop;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = (char *)(rq->context ? rq->context : "");
    sub.keep_context = rq->keep_context;
    sub.context_id = rq->context_id;
    sub.question = (char *)(rq->question ? rq->question : "");
    sub.prefix = (char *)(rq->prefix ? rq->prefix : "");
    sub.answer_prefix = (char *)(rq->answer_prefix ? rq->answer_prefix : "");
    sub.policy = (char *)(rq->policy ? rq->policy : "full");
    sub.budget = rq->budget_tokens ? 0 : rq->budget;
    sub.budget_tokens = rq->budget_tokens;
    sub.kv_threshold = rq->threshold;
    sub.query_aware = rq->query_aware;
    sub.raw = rq->raw;
    sub.stream = rq->stream;
    sub.gen = &gp;
    if (rq->n_history > 256) return tis_error(TIS_EINVAL, "client: %zu earlier turns (256 at most)", rq->n_history);
    Tis__ChatTurn turns[256], *tp[256];
    for (size_t i = 0; i < rq->n_history; i++) {
        tis__chat_turn__init(&turns[i]);
        turns[i].role = (char *)(rq->history[i].role ? rq->history[i].role : "");
        turns[i].content = (char *)(rq->history[i].content ? rq->history[i].content : "");
        tp[i] = &turns[i];
    }
    sub.n_history = rq->n_history;
    sub.history = tp;
    if (c->n_pend == c->cap_pend) {
        size_t nc = c->cap_pend ? 2 * c->cap_pend : 16;
        pending *p = realloc(c->pend, nc * sizeof *p);
        if (!p) return tis_error(TIS_ENOMEM, "client: out of memory");
        c->pend = p;
        c->cap_pend = nc;
    }
    pending *p = &c->pend[c->n_pend];
    p->id = id;
    p->probe = c->status_seq;
    p->len = tis__submit__get_packed_size(&sub);
    if (!(p->submit = malloc(p->len ? p->len : 1))) return tis_error(TIS_ENOMEM, "client: out of memory");
    tis__submit__pack(&sub, p->submit);
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_SUBMIT;
    e.submit = &sub;
    int rc = s_writable(c);
    if (!rc) rc = wire_send(c->sock, NULL, &e);
    if (rc) {
        free(p->submit);
        return rc;
    }
    if (c->n_pend == 0) c->next_probe = tis_now() + PROBE_MS / 1000.0;
    c->n_pend++;
    return 0;
}

static bool s_pending(const tis_client *c, uint64_t id) {
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].id == id) return true;
    return false;
}

/* Forgets an answered request; false when it was not pending (a second
 * answer, or one for an id never submitted: dropped). */
static bool s_answered(tis_client *c, uint64_t id) {
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].id == id) {
            free(c->pend[i].submit);
            c->pend[i] = c->pend[--c->n_pend];
            return true;
        }
    return false;
}

/* A Status answering our status request number q: requests sent before
 * that request, unanswered so far and not held by the coordinator were
 * lost (it restarted): sent again. */
static void s_status_seen(tis_client *c, const Tis__Envelope *e) {
    uint64_t q = UINT64_MAX - e->request_id;
    const Tis__Status *st = e->status;
    for (size_t i = 0; i < c->n_pend; i++) {
        pending *p = &c->pend[i];
        if (p->probe > q) continue; /* sent after the question */
        if (wire_status_holds(st, p->id)) continue;
        Tis__Submit *sub = tis__submit__unpack(NULL, p->len, p->submit);
        if (!sub) continue;
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = p->id;
        out.body_case = TIS__ENVELOPE__BODY_SUBMIT;
        out.submit = sub;
        if (s_writable(c) == 0 && wire_send(c->sock, NULL, &out) == 0) {
            c->resent++;
            p->probe = c->status_seq;
        }
        tis__submit__free_unpacked(sub, NULL);
    }
}


uint64_t tis_client_resent(const tis_client *c) { return c ? c->resent : 0; }
uint64_t tis_client_duplicates(const tis_client *c) { return c ? c->dropped : 0; }

double tis_client_silence_s(const tis_client *c) { return c ? tis_now() - c->last_heard : 0; }

void tis_result_free(tis_result *r) {
    if (!r) return;
    free(r->answer);
    free(r->ids);
    free(r->error);
    memset(r, 0, sizeof *r);
}

/* An Envelope -> a result; false for messages that are not one. */
static bool s_result(const Tis__Envelope *e, tis_result *out) {
    memset(out, 0, sizeof *out);
    out->id = e->request_id;
    if (e->body_case == TIS__ENVELOPE__BODY_REPLY) {
        const Tis__Reply *r = e->reply;
        out->kind = TIS_RESULT_REPLY;
        out->answer = strdup(r->answer ? r->answer : "");
        out->ids = malloc((r->n_ids ? r->n_ids : 1) * sizeof *out->ids);
        if (out->ids && r->n_ids) memcpy(out->ids, r->ids, r->n_ids * sizeof *out->ids);
        out->n_ids = r->n_ids;
        out->kv_bytes = r->kv_bytes;
        out->full_kv_bytes = r->full_kv_bytes;
        out->prompt_tokens = r->prompt_tokens;
        out->context_id = r->context_id;
        out->length = r->finish_reason && !strcmp(r->finish_reason, "length");
        if (r->timing) {
            out->queue_s = r->timing->queue_s;
            out->prefill_s = r->timing->prefill_s;
            out->scoring_s = r->timing->scoring_s;
            out->handoff_s = r->timing->handoff_s;
            out->decode_s = r->timing->decode_s;
            out->ttft_s = r->timing->ttft_s;
            out->total_s = r->timing->total_s;
            out->compress_s = r->timing->compress_s;
        }
        if (!out->answer || !out->ids) {
            tis_result_free(out);
            out->id = e->request_id;
            out->kind = TIS_RESULT_ERROR;
            out->error_code = TIS_ENOMEM;
        }
        return true;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
        out->kind = TIS_RESULT_ERROR;
        out->error_code = e->error->code < 0 ? e->error->code : TIS_EIO;
        out->error = strdup(e->error->message ? e->error->message : "error");
        return true;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_BUSY) {
        out->kind = TIS_RESULT_BUSY;
        out->retry_after_ms = e->busy->retry_after_ms;
        return true;
    }
    if (e->body_case == TIS__ENVELOPE__BODY_TOKENS) {
        const Tis__TokenChunk *t = e->tokens;
        out->kind = TIS_RESULT_CHUNK;
        out->answer = strdup(t->text ? t->text : "");
        out->ids = malloc((t->n_ids ? t->n_ids : 1) * sizeof *out->ids);
        if (out->ids && t->n_ids) memcpy(out->ids, t->ids, t->n_ids * sizeof *out->ids);
        out->n_ids = t->n_ids;
        if (!out->answer || !out->ids) { /* a chunk lost to memory: the Reply still has the whole answer */
            tis_result_free(out);
            return false;
        }
        return true;
    }
    return false;
}

/* A result is handed to the caller once: a chunk while its request is
 * pending, a final result when it answers a pending request. */
static bool s_deliver(tis_client *c, const tis_result *r) {
    return r->kind == TIS_RESULT_CHUNK ? s_pending(c, r->id) : s_answered(c, r->id);
}

int tis_client_cancel(tis_client *c, uint64_t id) {
    if (!c || id == 0) return tis_error(TIS_EINVAL, "client: cancel needs a client and an id > 0");
    if (!s_answered(c, id)) return 0; /* answered already (or never sent) */
    for (size_t i = 0; i < c->n_held;) /* chunks of it already here */
        if (c->held[i].id == id) {
            tis_result_free(&c->held[i]);
            memmove(c->held + i, c->held + i + 1, (--c->n_held - i) * sizeof *c->held);
        } else {
            i++;
        }
    Tis__Cancel cn = TIS__CANCEL__INIT;
    cn.reason = "the client cancelled";
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_CANCEL;
    e.cancel = &cn;
    int rc = s_writable(c);
    return rc ? rc : wire_send(c->sock, NULL, &e);
}

/* Receives one message within timeout_ms: 1 (*e set), 0 (none), < 0. */
static int s_recv(tis_client *c, int timeout_ms, Tis__Envelope **e) {
    *e = NULL;
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&it, 1, timeout_ms);
    if (n < 0) return tis_error(TIS_EIO, "client: poll: %s", zmq_strerror(zmq_errno()));
    if (n == 0) return s_refused(c) ? s_refused_error(c) : 0;
    c->last_heard = tis_now();
    int rc = wire_recv(c->sock, 0, NULL, e);
    if (rc) {
        msg_free(*e);
        *e = NULL;
        return rc;
    }
    return 1;
}

int tis_client_next(tis_client *c, int timeout_ms, tis_result *out) {
    if (!c || !out) return tis_error(TIS_EINVAL, "client: next needs a client and a result");
    if (c->n_held) {
        *out = c->held[0];
        memmove(c->held, c->held + 1, --c->n_held * sizeof *c->held);
        return 1;
    }
    double t_end = tis_now() + timeout_ms / 1000.0;
    for (;;) {
        double now = tis_now(), left = t_end - now;
        if (c->n_pend && now >= c->next_probe) { /* is it still the same coordinator? */
            if (s_writable(c) == 0) wire_send_status_request(c->sock, UINT64_MAX - c->status_seq++);
            c->next_probe = now + PROBE_MS / 1000.0;
        }
        double wait = c->next_probe - now < left ? c->next_probe - now : left;
        Tis__Envelope *e = NULL;
        int rc = s_recv(c, wait > 0 ? (int)(wait * 1000.0) + 1 : 0, &e);
        if (rc < 0) return rc;
        if (rc == 0) {
            if (tis_now() >= t_end) return 0;
            continue;
        }
        if (e->body_case == TIS__ENVELOPE__BODY_STATUS) {
            s_status_seen(c, e);
            msg_free(e);
            continue;
        }
        bool got = s_result(e, out);
        msg_free(e);
        if (got && s_deliver(c, out)) return 1;
        if (got) { /* answered already (or cancelled): dropped */
            c->dropped++;
            tis_result_free(out);
        }
        if (left <= 0) return 0;
    }
}

static void s_stage(cJSON *arr, const Tis__StageStats *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "stage", s->stage ? s->stage : "");
    cJSON_AddNumberToObject(o, "n", s->n);
    cJSON_AddNumberToObject(o, "mean_s", s->mean_s);
    cJSON_AddNumberToObject(o, "p50_s", s->p50_s);
    cJSON_AddNumberToObject(o, "p90_s", s->p90_s);
    cJSON_AddNumberToObject(o, "p99_s", s->p99_s);
    cJSON_AddNumberToObject(o, "max_s", s->max_s);
    cJSON_AddItemToArray(arr, o);
}

static char *s_status_json(const Tis__Status *st) {
    static const char *const role[] = {"unknown", "prefill", "scorer", "decode"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "uptime_s", st->uptime_s);
    char inst[32];
    snprintf(inst, sizeof inst, "%016llx", (unsigned long long)st->instance);
    cJSON_AddStringToObject(o, "instance", inst);
    cJSON *ws = cJSON_AddArrayToObject(o, "workers");
    for (size_t i = 0; i < st->n_workers; i++) {
        const Tis__WorkerStatus *w = st->workers[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "id", w->id ? w->id : "");
        cJSON_AddStringToObject(x, "role", w->role >= 0 && w->role <= 3 ? role[w->role] : "unknown");
        cJSON_AddNumberToObject(x, "free_slots", (double)w->free_slots);
        cJSON_AddNumberToObject(x, "running", w->running);
        cJSON_AddNumberToObject(x, "jobs_done", (double)w->jobs_done);
        cJSON_AddNumberToObject(x, "last_seen_s", w->last_seen_s);
        cJSON_AddItemToArray(ws, x);
    }
    cJSON *q = cJSON_AddObjectToObject(o, "queues");
    cJSON_AddNumberToObject(q, "waiting_prefill", st->waiting_prefill);
    cJSON_AddNumberToObject(q, "prefilling", st->prefilling);
    cJSON_AddNumberToObject(q, "waiting_score", st->waiting_score);
    cJSON_AddNumberToObject(q, "scoring", st->scoring);
    cJSON_AddNumberToObject(q, "waiting_decode", st->waiting_decode);
    cJSON_AddNumberToObject(q, "decoding", st->decoding);
    cJSON *r = cJSON_AddObjectToObject(o, "requests");
    cJSON_AddNumberToObject(r, "submitted", (double)st->submitted);
    cJSON_AddNumberToObject(r, "answered", (double)st->answered);
    cJSON_AddNumberToObject(r, "errors", (double)st->errors);
    cJSON_AddNumberToObject(r, "busy", (double)st->busy);
    cJSON_AddNumberToObject(r, "retried", (double)st->retried);
    cJSON_AddNumberToObject(r, "cancelled", (double)st->cancelled);
    cJSON_AddNumberToObject(o, "kept_contexts", st->contexts);
    cJSON *h = cJSON_AddObjectToObject(o, "handoff");
    cJSON_AddNumberToObject(h, "count", (double)st->handoffs);
    cJSON_AddNumberToObject(h, "bytes", (double)st->handoff_bytes);
    cJSON_AddNumberToObject(h, "full_kv_bytes", (double)st->full_kv_bytes);
    cJSON *ss = cJSON_AddArrayToObject(o, "latency");
    for (size_t i = 0; i < st->n_stages; i++) s_stage(ss, st->stages[i]);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    return txt;
}

int tis_client_status(tis_client *c, int timeout_ms, char **json_out) {
    if (!c || !json_out) return tis_error(TIS_EINVAL, "client: status needs a client and an output");
    *json_out = NULL;
    /* status ids count down from the top, away from the caller's request ids */
    uint64_t id = UINT64_MAX - c->status_seq++;
    int rc = s_writable(c);
    if (!rc) rc = wire_send_status_request(c->sock, id);
    if (rc) return rc;
    double t_end = tis_now() + timeout_ms / 1000.0;
    for (;;) {
        double left = t_end - tis_now();
        if (left <= 0) return tis_error(TIS_EIO, "client: no status reply within %d ms (is tis serve running?)", timeout_ms);
        Tis__Envelope *m = NULL;
        rc = s_recv(c, (int)(left * 1000.0) + 1, &m);
        if (rc < 0) return rc;
        if (rc == 0) continue;
        if (m->body_case == TIS__ENVELOPE__BODY_STATUS) s_status_seen(c, m);
        if (m->body_case == TIS__ENVELOPE__BODY_STATUS && m->request_id == id) {
            *json_out = s_status_json(m->status);
            msg_free(m);
            return *json_out ? 0 : tis_error(TIS_ENOMEM, "client: out of memory");
        }
        tis_result res;
        bool is_res = s_result(m, &res);
        if (is_res && !s_deliver(c, &res)) { /* answered already: dropped */
            c->dropped++;
            tis_result_free(&res);
            is_res = false;
        }
        if (is_res) { /* a request's result: keep it for tis_client_next */
            if (c->n_held == c->cap_held) {
                size_t nc = c->cap_held ? 2 * c->cap_held : 8;
                tis_result *p = realloc(c->held, nc * sizeof *p);
                if (!p) {
                    tis_result_free(&res);
                    msg_free(m);
                    return tis_error(TIS_ENOMEM, "client: out of memory");
                }
                c->held = p;
                c->cap_held = nc;
            }
            c->held[c->n_held++] = res;
        }
        msg_free(m);
    }
}
