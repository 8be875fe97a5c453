/* http_front: the OpenAI-compatible HTTP front of tis serve (docs/http.md).
 *
 * An HTTP/1.1 server (libmicrohttpd, a thread per connection) that turns
 * POST /v1/chat/completions and /v1/completions into requests to the
 * coordinator's front socket through the public C client
 * (include/tis_client.h): the same path as any client, no second inference
 * path. Also GET /v1/models, /health and /metrics (Prometheus text).
 * Streams answers as server-sent events; a client that goes away cancels
 * its request. */
#ifndef TIS_HTTP_FRONT_H
#define TIS_HTTP_FRONT_H

#include <stdint.h>

#include "http_req.h"
#include "tis_client.h"

typedef struct http_opts {
    const char *listen;       /* "HOST:PORT" or "PORT" (HOST 127.0.0.1); HOST an IPv4 address or
                                 localhost; PORT 0: any free port (http_front_port says which) */
    const char *front;        /* the coordinator's front endpoint (borrowed) */
    tis_client_keys keys;     /* how its clients connect to front (tcp: the coordinator's own pair) */
    http_defaults defaults;   /* (strings borrowed) */
    int64_t max_body;         /* request bodies over this many bytes get 413 (default 1 MiB) */
    int64_t max_connections;  /* (default 256) */
    int64_t n_role[3];        /* workers started per role (prefill, scorer, decode): /health is
                                 ready when a prefill and a decode worker are alive, and a scorer
                                 when any was started */
} http_opts;

typedef struct http_front http_front;

/* Binds and starts serving (its own threads). o's strings must outlive it. */
int http_front_start(http_front **out, const http_opts *o);
/* The port it listens on. */
int http_front_port(const http_front *f);
/* Stops serving (requests in flight are cancelled) and frees it. */
void http_front_stop(http_front **p);

/* "HOST:PORT" / "PORT" -> an IPv4 address and port (0..65535); TIS_EINVAL
 * with a message otherwise. *loopback: the address is 127.x.x.x. */
int http_parse_listen(const char *s, uint32_t *addr_be, int *port, int *loopback);

#endif
