/* http_job: one completion request through the front: parsed, sent to the
 * coordinator with a pooled client, answered as one JSON body or streamed
 * as server-sent events; cancelled when its HTTP client goes away. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http_internal.h"
#include "tis_error.h"

typedef struct job {
    http_front *f;
    http_req rq;
    tis_client *c;
    uint64_t id;
    int fd;                    /* the HTTP connection's socket (is its client still there?) */
    char rid[48];              /* chatcmpl-... / cmpl-... */
    int64_t created;
    char *acc;                 /* stream: the text sent so far [n_acc] */
    size_t n_acc, cap_acc;
    char *out;                 /* stream: event bytes not yet handed to the server [off_out, n_out) */
    size_t n_out, cap_out, off_out;
    tis_result pend;           /* stream: the first event, read before the stream began */
    bool has_pend, finished, done;
} job;

/* The client closed its end (a read would see EOF or an error). */
static bool s_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void s_job_free(job *j) {
    if (!j) return;
    if (!j->finished && j->c) { /* its HTTP client went away: the server stops working on it */
        tis_client_cancel(j->c, j->id);
        http_metrics_request(j->f->met, j->rq.kind, HTTP_CANCELLED);
    }
    http_client_put(j->f, j->c);
    if (j->has_pend) tis_result_free(&j->pend);
    http_metrics_in_flight(j->f->met, -1);
    http_req_free(&j->rq);
    free(j->acc);
    free(j->out);
    free(j);
}

/* The next result for the job: 1 (*res filled), -2 (its client is gone),
 * -3 (the server is stopping), or a negative tis error. */
static int s_wait(job *j, tis_result *res) {
    for (;;) {
        if (j->f->stopping) return -3;
        int rc = tis_client_next(j->c, 100, res);
        if (rc) return rc;
        if (s_gone(j->fd)) return -2;
    }
}

/* A final result that is not a reply -> the HTTP error, its Retry-After and
 * how the request is counted. */
static void s_map(const tis_result *res, const http_req *rq, http_err *e, int *retry, http_outcome *oc) {
    *retry = 0;
    if (res->kind == TIS_RESULT_ERROR && res->error_code == TIS_ENOTFOUND && rq->context_id) {
        *oc = HTTP_NOT_FOUND;
        http_err_set(e, 404, "invalid_request_error", "context_not_found", "context_id", "%s",
                     res->error ? res->error : "no such context");
        return;
    }
    if (res->kind == TIS_RESULT_BUSY) {
        *retry = res->retry_after_ms > 1000 ? (int)((res->retry_after_ms + 999) / 1000) : 1;
        *oc = HTTP_BUSY;
        http_err_set(e, 429, "rate_limit_error", "server_busy", NULL,
                     "the server's queue is full; retry after %u ms", res->retry_after_ms);
        return;
    }
    const char *msg = res->error ? res->error : "error";
    switch (res->error_code) {
    case TIS_ERANGE:
        if (strstr(msg, "model's context")) {
            *oc = HTTP_BAD_REQUEST;
            http_err_set(e, 400, "invalid_request_error", "context_length_exceeded", "messages", "%s", msg);
            return;
        }
        *retry = 1; /* else out of room on a worker */
        *oc = HTTP_UNAVAILABLE;
        http_err_set(e, 503, "server_error", "service_unavailable", NULL, "%s", msg);
        return;
    case TIS_EIO:
    case TIS_ENOTFOUND:
        *retry = 1;
        *oc = HTTP_UNAVAILABLE;
        http_err_set(e, 503, "server_error", "service_unavailable", NULL, "%s", msg);
        return;
    case TIS_EINVAL:
    case TIS_EFORMAT:
    case TIS_EUNSUPPORTED:
        *oc = HTTP_BAD_REQUEST;
        http_err_set(e, 400, "invalid_request_error", NULL, NULL, "%s", msg);
        return;
    default:
        *oc = HTTP_ERROR;
        http_err_set(e, 500, "server_error", NULL, NULL, "%s", msg);
    }
}

static void s_usage(const tis_result *r, http_usage *u) {
    *u = (http_usage){.prompt_tokens = r->prompt_tokens, .completion_tokens = (int64_t)r->n_ids,
                      .kv_bytes = r->kv_bytes, .full_kv_bytes = r->full_kv_bytes, .queue_s = r->queue_s,
                      .prefill_s = r->prefill_s, .compress_s = r->compress_s, .scoring_s = r->scoring_s, .handoff_s = r->handoff_s,
                      .decode_s = r->decode_s, .ttft_s = r->ttft_s, .total_s = r->total_s,
                      .context_id = r->context_id};
}

/* A reply is counted: outcome, stage seconds, tokens, KV bytes. */
static void s_count_reply(job *j, const tis_result *r) {
    double st[HS_N] = {r->queue_s,    r->prefill_s, r->compress_s, r->scoring_s,
                       r->handoff_s, r->decode_s,  r->ttft_s,     r->total_s};
    http_metrics_reply(j->f->met, st, r->prompt_tokens, (int64_t)r->n_ids, r->kv_bytes, r->full_kv_bytes);
    http_metrics_request(j->f->met, j->rq.kind, HTTP_OK);
}

static int s_submit(job *j) {
    const http_req *r = &j->rq;
    tis_request q = {.context = r->context, .question = r->question, .prefix = r->prefix, .policy = r->kv_policy,
                     .budget = r->kv_budget_tokens > 0 ? 0 : r->kv_budget,
                     .budget_tokens = (uint32_t)r->kv_budget_tokens, .threshold = r->kv_threshold,
                     .query_aware = r->query_aware,
                     .max_new = (uint32_t)r->max_tokens, .temperature = (float)r->temperature,
                     .top_p = (float)r->top_p, .seed = r->seed, .until_eog = true, .raw = r->raw, .stream = r->stream,
                     .stop = (const char *const *)r->stop, .n_stop = (size_t)r->n_stop,
                     .keep_context = r->keep_context, .context_id = r->context_id};
    tis_turn turns[HTTP_MAX_TURNS];
    for (int i = 0; i < r->n_turns; i++) turns[i] = (tis_turn){r->turn_role[i], r->turn_text[i]};
    q.history = turns;
    q.n_history = (size_t)r->n_turns;
    return tis_client_submit(j->c, j->id, &q);
}

/* A job for rq (taken), its request sent; NULL with *e set. */
static job *s_job_new(http_front *f, struct MHD_Connection *conn, http_req *rq, http_err *e) {
    job *j = calloc(1, sizeof *j);
    if (!j) {
        http_req_free(rq);
        http_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    j->f = f;
    j->rq = *rq;
    memset(rq, 0, sizeof *rq);
    j->id = __atomic_add_fetch(&f->next_id, 1, __ATOMIC_RELAXED);
    snprintf(j->rid, sizeof j->rid, "%s-%llx", j->rq.kind == HTTP_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)j->id);
    j->created = (int64_t)time(NULL);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    http_metrics_in_flight(f->met, 1);
    j->c = http_client_get(f);
    if (!j->c || s_submit(j)) {
        http_err_set(e, 503, "server_error", "service_unavailable", NULL, "cannot reach the coordinator: %s",
                     tis_last_error());
        j->finished = true;
        s_job_free(j);
        return NULL;
    }
    return j;
}

/* ---- server-sent events ---------------------------------------------------------- */

static void s_emit(job *j, char *json) {
    if (!json) return;
    size_t n = strlen(json), need = j->n_out + n + 8 + 1;
    if (need > j->cap_out) {
        char *p = realloc(j->out, need * 2);
        if (!p) {
            free(json);
            return;
        }
        j->out = p;
        j->cap_out = need * 2;
    }
    j->n_out += (size_t)sprintf(j->out + j->n_out, "data: %s\n\n", json);
    free(json);
}

static void s_emit_text(job *j, const char *text) {
    if (!*text) return;
    size_t n = strlen(text);
    if (j->n_acc + n + 1 > j->cap_acc) {
        char *p = realloc(j->acc, (j->n_acc + n + 1) * 2);
        if (!p) return;
        j->acc = p;
        j->cap_acc = (j->n_acc + n + 1) * 2;
    }
    memcpy(j->acc + j->n_acc, text, n + 1);
    j->n_acc += n;
    s_emit(j, http_chunk_json(&j->rq, j->rid, j->created, j->f->o.defaults.model_id, text, false, NULL, NULL));
}

/* One event of the stream: tokens, the reply (what is left of its text, the
 * finish reason, the usage when asked, [DONE]) or an error. */
static void s_sse_event(job *j, const tis_result *r) {
    const char *model = j->f->o.defaults.model_id;
    if (r->kind == TIS_RESULT_CHUNK) {
        s_emit_text(j, r->answer);
        return;
    }
    j->finished = j->done = true;
    if (r->kind == TIS_RESULT_REPLY) {
        if (!strncmp(r->answer, j->acc ? j->acc : "", j->n_acc)) s_emit_text(j, r->answer + j->n_acc);
        s_emit(j, http_chunk_json(&j->rq, j->rid, j->created, model, NULL, false, r->length ? "length" : "stop", NULL));
        http_usage u;
        s_usage(r, &u);
        if (j->rq.include_usage) s_emit(j, http_chunk_json(&j->rq, j->rid, j->created, model, NULL, false, NULL, &u));
        s_count_reply(j, r);
    } else {
        http_err e;
        int retry;
        http_outcome oc;
        s_map(r, &j->rq, &e, &retry, &oc);
        s_emit(j, http_err_json(&e));
        http_metrics_request(j->f->met, j->rq.kind, oc);
    }
    s_emit(j, strdup("[DONE]"));
}

static ssize_t s_sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    while (j->off_out == j->n_out) {
        j->off_out = j->n_out = 0;
        if (j->done) return MHD_CONTENT_READER_END_OF_STREAM;
        tis_result res;
        if (j->has_pend) {
            res = j->pend;
            j->has_pend = false;
        } else {
            int rc = s_wait(j, &res);
            if (rc == -2 || rc == -3) return MHD_CONTENT_READER_END_WITH_ERROR; /* gone: cancelled when freed */
            if (rc < 0) {
                memset(&res, 0, sizeof res);
                res.kind = TIS_RESULT_ERROR;
                res.error_code = rc;
                res.error = strdup(tis_last_error());
            }
        }
        s_sse_event(j, &res);
        tis_result_free(&res);
    }
    size_t k = j->n_out - j->off_out < max ? j->n_out - j->off_out : max;
    memcpy(buf, j->out + j->off_out, k);
    j->off_out += k;
    return (ssize_t)k;
}

static void s_sse_free(void *cls) { s_job_free(cls); }

/* ---- the request -------------------------------------------------------------------- */

/* The first result; an error or Busy before any token is answered with its
 * status code (streamed or not). 0: *res holds it; else the response. */
static enum MHD_Result s_first(job *j, struct MHD_Connection *conn, tis_result *res, bool *answered) {
    *answered = true;
    int rc = s_wait(j, res);
    http_err e;
    if (rc == -2) { /* gone before anything came: cancelled */
        s_job_free(j);
        return MHD_NO;
    }
    if (rc < 0) {
        http_err_set(&e, 503, "server_error", "service_unavailable", NULL, "%s",
                     rc == -3 ? "the server is stopping" : tis_last_error());
        j->finished = true;
        http_metrics_request(j->f->met, j->rq.kind, HTTP_UNAVAILABLE);
        s_job_free(j);
        return http_send_error(conn, &e, 1);
    }
    if (res->kind == TIS_RESULT_ERROR || res->kind == TIS_RESULT_BUSY) {
        int retry;
        http_outcome oc;
        s_map(res, &j->rq, &e, &retry, &oc);
        tis_result_free(res);
        j->finished = true;
        http_metrics_request(j->f->met, j->rq.kind, oc);
        s_job_free(j);
        return http_send_error(conn, &e, retry);
    }
    *answered = false;
    return MHD_YES;
}

static enum MHD_Result s_stream(job *j, struct MHD_Connection *conn, tis_result *first) {
    j->pend = *first;
    j->has_pend = true;
    if (j->rq.kind == HTTP_CHAT) /* the first chunk names the role */
        s_emit(j, http_chunk_json(&j->rq, j->rid, j->created, j->f->o.defaults.model_id, "", true, NULL, NULL));
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, s_sse_read, j, s_sse_free);
    if (!r) {
        s_job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_complete(http_front *f, struct MHD_Connection *conn, http_kind kind, const char *body,
                              size_t len) {
    http_req rq;
    http_err e;
    if (http_req_parse(kind, body, len, &f->o.defaults, &rq, &e)) {
        http_metrics_request(f->met, kind, e.status == 404 ? HTTP_NOT_FOUND : HTTP_BAD_REQUEST);
        return http_send_error(conn, &e, 0);
    }
    http_coord_view v;
    http_view(f, &v);
    const char *why = http_missing_role(f, &v);
    if (why) { /* no worker of a role it needs: at once, not after the coordinator's wait */
        http_req_free(&rq);
        http_metrics_request(f->met, kind, HTTP_UNAVAILABLE);
        return http_send_error(conn, http_err_set(&e, 503, "server_error", "service_unavailable", NULL, "%s", why), 1);
    }
    job *j = s_job_new(f, conn, &rq, &e);
    if (!j) {
        http_metrics_request(f->met, kind, HTTP_UNAVAILABLE);
        return http_send_error(conn, &e, 1);
    }
    tis_result res;
    bool answered;
    enum MHD_Result rc = s_first(j, conn, &res, &answered);
    if (answered) return rc;
    if (j->rq.stream) return s_stream(j, conn, &res);
    j->finished = true; /* not streamed: the first result is the reply */
    http_usage u;
    s_usage(&res, &u);
    char *json = http_answer_json(&j->rq, j->rid, j->created, f->o.defaults.model_id, res.answer,
                                  res.length ? "length" : "stop", &u);
    s_count_reply(j, &res);
    tis_result_free(&res);
    s_job_free(j);
    return http_send(conn, 200, "application/json", json, 0);
}
