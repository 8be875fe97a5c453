/* http_internal: the front's state, shared by http_front.c (server, routes,
 * pool, status) and http_job.c (a completion request's life) only. */
#ifndef TIS_HTTP_INTERNAL_H
#define TIS_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>

#include "http_front.h"
#include "http_metrics.h"
#include "tis_client.h"

enum { HTTP_POOL = 64 };

static const char *const HTTP_ROLE[3] = {"prefill", "scorer", "decode"};

struct http_front {
    http_opts o;
    struct MHD_Daemon *d;
    int port;
    int64_t started;                 /* unix seconds (/v1/models) */
    volatile int stopping;
    http_metrics *met;
    pthread_mutex_t pool_mu;
    tis_client *pool[HTTP_POOL];     /* idle connections to the coordinator */
    int n_pool;
    pthread_mutex_t st_mu;
    tis_client *st_client;           /* asks the coordinator's status */
    http_coord_view view;
    double view_t;
    uint64_t next_id;                /* request ids (__atomic) */
};

/* A pooled connection to the coordinator (NULL when none can be opened);
 * put it back when its request is done. */
tis_client *http_client_get(http_front *f);
void http_client_put(http_front *f, tis_client *c);

/* The coordinator's status, at most 0.5 s old. */
void http_view(http_front *f, http_coord_view *out);
/* Why requests cannot be served now (a role with no worker alive, no
 * coordinator), or NULL. */
const char *http_missing_role(const http_front *f, const http_coord_view *v);

/* body (malloc'd, freed here) with the status; Retry-After when > 0. */
enum MHD_Result http_send(struct MHD_Connection *conn, int status, const char *type, char *body, int retry_after_s);
enum MHD_Result http_send_error(struct MHD_Connection *conn, const http_err *e, int retry_after_s);

/* POST /v1/chat/completions or /v1/completions with its body. */
enum MHD_Result http_complete(http_front *f, struct MHD_Connection *conn, http_kind kind, const char *body,
                              size_t len);

#endif
