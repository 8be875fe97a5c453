/* client: the public C client (include/tis_client.h) over a DEALER socket. */
#include "tis_client.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "generate.h"
#include "tis_error.h"
#include "wire.h"

struct tis_client {
    void *ctx, *sock;
    tis_result *held; /* results that came while waiting for a status reply */
    size_t n_held, cap_held;
    uint64_t status_seq;
};

const char *tis_client_last_error(void) { return tis_last_error(); }

int tis_client_open(const char *endpoint, tis_client **out) {
    *out = NULL;
    if (!endpoint || !*endpoint) return tis_error(TIS_EINVAL, "client: no endpoint");
    tis_client *c = calloc(1, sizeof *c);
    if (!c) return tis_error(TIS_ENOMEM, "client: out of memory");
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    if (!c->sock || zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_connect(c->sock, endpoint)) {
        int rc = tis_error(TIS_EIO, "client: cannot connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        tis_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tis_client_close(tis_client *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_held; i++) tis_result_free(&c->held[i]);
    free(c->held);
    if (c->sock) zmq_close(c->sock);
    if (c->ctx) zmq_ctx_term(c->ctx);
    free(c);
}

int tis_client_submit(tis_client *c, uint64_t id, const tis_request *rq) {
    if (!c || !rq || id == 0) return tis_error(TIS_EINVAL, "client: submit needs a client, a request and an id > 0");
    if (!rq->context || !*rq->context || !rq->question || !*rq->question)
        return tis_error(TIS_EINVAL, "client: a request needs a context and a question");
    if (rq->budget_tokens == 0 && !(rq->budget > 0 && rq->budget <= 1))
        return tis_error(TIS_EINVAL, "client: budget %g is not in (0, 1] and no budget_tokens", rq->budget);
    Tis__GenParams gp = TIS__GEN_PARAMS__INIT;
    gp.max_new = rq->max_new ? rq->max_new : 16;
    gp.seed = 42;
    Tis__Submit sub = TIS__SUBMIT__INIT;
    sub.context = (char *)rq->context;
    sub.question = (char *)rq->question;
    sub.prefix = (char *)(rq->prefix ? rq->prefix : "");
    sub.answer_prefix = (char *)(rq->answer_prefix ? rq->answer_prefix : "");
    sub.policy = (char *)(rq->policy ? rq->policy : "full");
    sub.budget = rq->budget_tokens ? 0 : rq->budget;
    sub.budget_tokens = rq->budget_tokens;
    sub.query_aware = rq->query_aware;
    sub.gen = &gp;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_SUBMIT;
    e.submit = &sub;
    return wire_send(c->sock, NULL, &e);
}

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
        if (r->timing) {
            out->queue_s = r->timing->queue_s;
            out->prefill_s = r->timing->prefill_s;
            out->handoff_s = r->timing->handoff_s;
            out->decode_s = r->timing->decode_s;
            out->ttft_s = r->timing->ttft_s;
            out->total_s = r->timing->total_s;
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
    return false;
}

/* Receives one message within timeout_ms: 1 (*e set), 0 (none), < 0. */
static int s_recv(tis_client *c, int timeout_ms, Tis__Envelope **e) {
    *e = NULL;
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&it, 1, timeout_ms);
    if (n < 0) return tis_error(TIS_EIO, "client: poll: %s", zmq_strerror(zmq_errno()));
    if (n == 0) return 0;
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
        double left = t_end - tis_now();
        Tis__Envelope *e = NULL;
        int rc = s_recv(c, left > 0 ? (int)(left * 1000.0) : 0, &e);
        if (rc <= 0) return rc;
        bool got = s_result(e, out);
        msg_free(e);
        if (got) return 1;
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
    cJSON_AddNumberToObject(q, "waiting_decode", st->waiting_decode);
    cJSON_AddNumberToObject(q, "decoding", st->decoding);
    cJSON *r = cJSON_AddObjectToObject(o, "requests");
    cJSON_AddNumberToObject(r, "submitted", (double)st->submitted);
    cJSON_AddNumberToObject(r, "answered", (double)st->answered);
    cJSON_AddNumberToObject(r, "errors", (double)st->errors);
    cJSON_AddNumberToObject(r, "busy", (double)st->busy);
    cJSON_AddNumberToObject(r, "retried", (double)st->retried);
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
    Tis__StatusRequest sr = TIS__STATUS_REQUEST__INIT;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &sr;
    int rc = wire_send(c->sock, NULL, &e);
    if (rc) return rc;
    double t_end = tis_now() + timeout_ms / 1000.0;
    for (;;) {
        double left = t_end - tis_now();
        if (left <= 0) return tis_error(TIS_EIO, "client: no status reply within %d ms (is tis serve running?)", timeout_ms);
        Tis__Envelope *m = NULL;
        rc = s_recv(c, (int)(left * 1000.0) + 1, &m);
        if (rc < 0) return rc;
        if (rc == 0) continue;
        if (m->body_case == TIS__ENVELOPE__BODY_STATUS && m->request_id == id) {
            *json_out = s_status_json(m->status);
            msg_free(m);
            return *json_out ? 0 : tis_error(TIS_ENOMEM, "client: out of memory");
        }
        tis_result res;
        if (s_result(m, &res)) { /* a request's result: keep it for tis_client_next */
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
