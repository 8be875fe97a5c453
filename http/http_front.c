/* http_front: the HTTP server (libmicrohttpd), its routes, the client pool
 * and the coordinator's status as the front sees it. A completion request
 * (http_job.c) goes to the coordinator through include/tis_client.h. */
#include "http_front.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "http_internal.h"
#include "tis_error.h"

int http_parse_listen(const char *s, uint32_t *addr_be, int *port, int *loopback) {
    if (!s || !*s) return tis_error(TIS_EINVAL, "http: no address to listen on");
    const char *colon = strrchr(s, ':');
    const char *ps = colon ? colon + 1 : s;
    char host[64] = "127.0.0.1";
    if (colon) {
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof host) return tis_error(TIS_EINVAL, "http: bad host in '%s' (HOST:PORT)", s);
        memcpy(host, s, n);
        host[n] = 0;
        if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    }
    char *end = NULL;
    long p = strtol(ps, &end, 10);
    if (!*ps || *end || p < 0 || p > 65535) return tis_error(TIS_EINVAL, "http: bad port in '%s' (HOST:PORT)", s);
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return tis_error(TIS_EINVAL, "http: '%s' is not an IPv4 address (or localhost)", host);
    *addr_be = a.s_addr;
    *port = (int)p;
    *loopback = (ntohl(a.s_addr) >> 24) == 127;
    return 0;
}

/* ---- the client pool: a connection to the coordinator per request at a time ---- */

tis_client *http_client_get(http_front *f) {
    tis_client *c = NULL;
    pthread_mutex_lock(&f->pool_mu);
    if (f->n_pool) c = f->pool[--f->n_pool];
    pthread_mutex_unlock(&f->pool_mu);
    if (!c && tis_client_open_keys(f->o.front, &f->o.keys, &c)) c = NULL;
    return c;
}

void http_client_put(http_front *f, tis_client *c) {
    if (!c) return;
    pthread_mutex_lock(&f->pool_mu);
    if (f->n_pool < HTTP_POOL) {
        f->pool[f->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&f->pool_mu);
    tis_client_close(c);
}

/* ---- the coordinator's status, asked at most every 0.5 s ---------------------- */

static int64_t s_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static void s_view_parse(const char *json, http_coord_view *v) {
    memset(v, 0, sizeof *v);
    cJSON *o = cJSON_Parse(json);
    if (!o) return;
    v->up = true;
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(o, "workers")) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(w, "role");
        for (int r = 0; r < 3 && cJSON_IsString(role); r++) v->alive[r] += !strcmp(role->valuestring, HTTP_ROLE[r]);
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "queues");
    v->waiting[0] = s_num(q, "waiting_prefill"), v->running[0] = s_num(q, "prefilling");
    v->waiting[1] = s_num(q, "waiting_score"), v->running[1] = s_num(q, "scoring");
    v->waiting[2] = s_num(q, "waiting_decode"), v->running[2] = s_num(q, "decoding");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "requests");
    v->submitted = (uint64_t)s_num(r, "submitted"), v->answered = (uint64_t)s_num(r, "answered");
    v->errors = (uint64_t)s_num(r, "errors"), v->busy = (uint64_t)s_num(r, "busy");
    v->retried = (uint64_t)s_num(r, "retried"), v->cancelled = (uint64_t)s_num(r, "cancelled");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "handoff");
    v->handoffs = (uint64_t)s_num(h, "count"), v->handoff_bytes = (uint64_t)s_num(h, "bytes");
    v->full_kv_bytes = (uint64_t)s_num(h, "full_kv_bytes");
    v->kept_contexts = s_num(o, "kept_contexts");
    cJSON_Delete(o);
}

void http_view(http_front *f, http_coord_view *out) {
    pthread_mutex_lock(&f->st_mu);
    double now = tis_now();
    if (now - f->view_t > 0.5) {
        char *json = NULL;
        if (!f->st_client && tis_client_open_keys(f->o.front, &f->o.keys, &f->st_client)) f->st_client = NULL;
        if (f->st_client && tis_client_status(f->st_client, 1000, &json) == 0) s_view_parse(json, &f->view);
        else memset(&f->view, 0, sizeof f->view);
        free(json);
        f->view_t = tis_now();
    }
    *out = f->view;
    pthread_mutex_unlock(&f->st_mu);
}

const char *http_missing_role(const http_front *f, const http_coord_view *v) {
    if (!v->up) return "the coordinator does not answer";
    static const char *const why[3] = {"no prefill worker is alive", "no scorer worker is alive",
                                       "no decode worker is alive"};
    for (int r = 0; r < 3; r++) /* every request needs prefill and decode; a scorer when there are any */
        if ((r != 1 || f->o.n_role[r] > 0) && v->alive[r] == 0) return why[r];
    return NULL;
}

/* ---- responses ------------------------------------------------------------------ */

enum MHD_Result http_send(struct MHD_Connection *conn, int status, const char *type, char *body,
                          int retry_after_s) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_send_error(struct MHD_Connection *conn, const http_err *e, int retry_after_s) {
    return http_send(conn, e->status, "application/json", http_err_json(e), retry_after_s);
}

static char *s_print(cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static enum MHD_Result s_health(http_front *f, struct MHD_Connection *conn) {
    http_coord_view v;
    http_view(f, &v);
    const char *why = http_missing_role(f, &v);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", why ? "unavailable" : "ok");
    if (why) cJSON_AddStringToObject(o, "reason", why);
    cJSON *w = cJSON_AddObjectToObject(o, "workers_alive");
    for (int r = 0; r < 3; r++) cJSON_AddNumberToObject(w, HTTP_ROLE[r], (double)v.alive[r]);
    return http_send(conn, why ? 503 : 200, "application/json", s_print(o), why ? 1 : 0);
}

static enum MHD_Result s_models(http_front *f, struct MHD_Connection *conn) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", f->o.defaults.model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)f->started);
    cJSON_AddStringToObject(m, "owned_by", "tis");
    cJSON_AddItemToArray(d, m);
    return http_send(conn, 200, "application/json", s_print(o), 0);
}

static enum MHD_Result s_metrics(http_front *f, struct MHD_Connection *conn) {
    http_coord_view v;
    http_view(f, &v);
    return http_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", http_metrics_render(f->met, &v), 0);
}

/* ---- the server ------------------------------------------------------------------ */

/* A connection's request while its body comes in. */
typedef struct conn_state {
    char *body;
    size_t n, cap;
    bool too_large;
} conn_state;

static bool s_body_add(conn_state *cs, const char *data, size_t n, size_t max) {
    if (cs->too_large) return true;
    if (cs->n + n > max) {
        cs->too_large = true;
        free(cs->body);
        cs->body = NULL;
        cs->n = cs->cap = 0;
        return true;
    }
    if (cs->n + n + 1 > cs->cap) {
        size_t nc = (cs->n + n + 1) * 2;
        char *p = realloc(cs->body, nc);
        if (!p) return false;
        cs->body = p;
        cs->cap = nc;
    }
    memcpy(cs->body + cs->n, data, n);
    cs->n += n;
    cs->body[cs->n] = 0;
    return true;
}

static enum MHD_Result s_route(http_front *f, struct MHD_Connection *conn, const char *url, const char *method,
                               conn_state *cs) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    static const struct { const char *path; bool post; } R[] = {
        {"/health", false}, {"/v1/models", false}, {"/metrics", false},
        {"/v1/chat/completions", true}, {"/v1/completions", true}};
    http_err e;
    for (int k = 0; k < 5; k++) {
        if (strcmp(url, R[k].path)) continue;
        if (R[k].post ? !post : !get)
            return http_send_error(conn, http_err_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                                                      "%s takes %s, not %s", url, R[k].post ? "POST" : "GET", method), 0);
        switch (k) {
        case 0: return s_health(f, conn);
        case 1: return s_models(f, conn);
        case 2: return s_metrics(f, conn);
        default: {
            http_kind kind = k == 3 ? HTTP_CHAT : HTTP_COMPLETION;
            if (cs->too_large) {
                http_metrics_request(f->met, kind, HTTP_TOO_LARGE);
                return http_send_error(conn, http_err_set(&e, 413, "invalid_request_error", "request_too_large",
                                                          NULL, "the request body is over %lld bytes (http.max_body_kb)",
                                                          (long long)f->o.max_body), 0);
            }
            return http_complete(f, conn, kind, cs->body ? cs->body : "", cs->n);
        }
        }
    }
    return http_send_error(conn, http_err_set(&e, 404, "invalid_request_error", "not_found", NULL,
                                              "no route %s %s (POST /v1/chat/completions, POST /v1/completions, "
                                              "GET /v1/models, /health, /metrics)", method, url), 0);
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    http_front *f = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* headers are in: a body announced over the limit is refused unread */
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)f->o.max_body) {
            cs->too_large = true;
            return s_route(f, conn, url, method, cs);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        bool ok = s_body_add(cs, upload, *upload_size, (size_t)f->o.max_body);
        *upload_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    return s_route(f, conn, url, method, cs);
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode t) {
    conn_state *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

int http_front_start(http_front **out, const http_opts *o) {
    *out = NULL;
    uint32_t addr;
    int port, loopback;
    int rc = http_parse_listen(o->listen, &addr, &port, &loopback);
    if (rc) return rc;
    http_front *f = calloc(1, sizeof *f);
    if (!f) return tis_error(TIS_ENOMEM, "http: out of memory");
    f->o = *o;
    if (f->o.max_body <= 0) f->o.max_body = 1 << 20;
    if (f->o.max_connections <= 0) f->o.max_connections = 256;
    f->started = (int64_t)time(NULL);
    pthread_mutex_init(&f->pool_mu, NULL);
    pthread_mutex_init(&f->st_mu, NULL);
    if ((rc = http_metrics_new(&f->met))) {
        http_front_stop(&f);
        return rc;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = addr};
    /* the server's threads leave SIGTERM / SIGINT to the coordinator's */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    f->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, s_access, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)f->o.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, 300u, MHD_OPTION_NOTIFY_COMPLETED, s_completed, f,
                            MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!f->d) {
        http_front_stop(&f);
        return tis_error(TIS_EIO, "http: cannot listen on %s (in use, or not an address of this machine?)", o->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = di ? di->port : port;
    *out = f;
    return 0;
}

int http_front_port(const http_front *f) { return f ? f->port : -1; }

void http_front_stop(http_front **p) {
    if (!p || !*p) return;
    http_front *f = *p;
    f->stopping = 1;
    if (f->d) MHD_stop_daemon(f->d); /* waits for the connections' threads (their waits see stopping) */
    for (int i = 0; i < f->n_pool; i++) tis_client_close(f->pool[i]);
    tis_client_close(f->st_client);
    http_metrics_destroy(&f->met);
    pthread_mutex_destroy(&f->pool_mu);
    pthread_mutex_destroy(&f->st_mu);
    free(f);
    *p = NULL;
}
