/* http_metrics: what GET /metrics reports, in the Prometheus text format
 * (version 0.0.4): counters and histograms the HTTP front keeps over the
 * requests it carries, and gauges and counters from the coordinator's
 * Status (docs/http.md has the list). Thread-safe. */
#ifndef TIS_HTTP_METRICS_H
#define TIS_HTTP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a request through the front ended. */
typedef enum http_outcome {
    HTTP_OK, HTTP_BAD_REQUEST, HTTP_TOO_LARGE, HTTP_NOT_FOUND, HTTP_BUSY, HTTP_UNAVAILABLE, HTTP_ERROR,
    HTTP_CANCELLED, HTTP_N_OUTCOME
} http_outcome;

/* The stages a Reply times (tis_result's seconds). */
typedef enum http_stage {
    HS_QUEUE, HS_PREFILL, HS_COMPRESS, HS_SCORING, HS_HANDOFF, HS_DECODE, HS_TTFT, HS_TOTAL, HS_N
} http_stage;

typedef struct http_metrics http_metrics;

int http_metrics_new(http_metrics **out);
void http_metrics_destroy(http_metrics **p);

/* A request to endpoint 0 (chat.completions) or 1 (completions) ended so. */
void http_metrics_request(http_metrics *m, int endpoint, http_outcome o);
/* A reply: its stage seconds [HS_N], tokens, and KV bytes (compressed, full). */
void http_metrics_reply(http_metrics *m, const double *stage_s, int64_t prompt_tokens, int64_t gen_tokens,
                        uint64_t kv_bytes, uint64_t full_kv_bytes);
void http_metrics_in_flight(http_metrics *m, int delta);

/* The coordinator's view (from its Status), for the gauges. */
typedef struct http_coord_view {
    bool up;                     /* it answered */
    int64_t alive[3];            /* workers per role: prefill, scorer, decode */
    int64_t waiting[3], running[3];
    uint64_t submitted, answered, errors, busy, retried, cancelled, handoffs, handoff_bytes, full_kv_bytes;
    int64_t kept_contexts;       /* compressed contexts kept for later questions */
} http_coord_view;

/* The text of /metrics (malloc'd). */
char *http_metrics_render(http_metrics *m, const http_coord_view *v);

#endif
