/* http_metrics: counters and histograms, rendered as Prometheus text. */
#include "http_metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "tis_error.h"

static const char *const OUTCOME[HTTP_N_OUTCOME] = {"ok",   "bad_request", "too_large", "not_found",
                                                    "busy", "unavailable", "error",     "cancelled"};
static const char *const ENDPOINT[2] = {"chat.completions", "completions"};
static const char *const STAGE[HS_N] = {"queue", "prefill", "compress", "scoring", "handoff", "decode", "ttft", "total"};
static const char *const ROLE[3] = {"prefill", "scorer", "decode"};

/* Upper bounds of the buckets (+Inf implied). */
static const double LAT_LE[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double RATIO_LE[] = {1, 1.25, 1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64};
enum { N_LAT = sizeof LAT_LE / sizeof *LAT_LE, N_RATIO = sizeof RATIO_LE / sizeof *RATIO_LE };

typedef struct hist {
    uint64_t bucket[16]; /* per bound, not cumulative; [n_le]: above the last */
    uint64_t count;
    double sum;
} hist;

struct http_metrics {
    pthread_mutex_t mu;
    uint64_t requests[2][HTTP_N_OUTCOME];
    hist stage[HS_N], ratio;
    uint64_t prompt_tokens, gen_tokens, kv_bytes, full_kv_bytes, replies;
    int64_t in_flight;
};

int http_metrics_new(http_metrics **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return tis_error(TIS_ENOMEM, "http: out of memory");
    pthread_mutex_init(&(*out)->mu, NULL);
    return 0;
}

void http_metrics_destroy(http_metrics **p) {
    if (!p || !*p) return;
    pthread_mutex_destroy(&(*p)->mu);
    free(*p);
    *p = NULL;
}

static void s_observe(hist *h, const double *le, int n_le, double x) {
    int k = 0;
    while (k < n_le && x > le[k]) k++;
    h->bucket[k]++;
    h->count++;
    h->sum += x;
}

void http_metrics_request(http_metrics *m, int endpoint, http_outcome o) {
    pthread_mutex_lock(&m->mu);
    m->requests[endpoint ? 1 : 0][o]++;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_reply(http_metrics *m, const double *stage_s, int64_t prompt_tokens, int64_t gen_tokens,
                        uint64_t kv_bytes, uint64_t full_kv_bytes) {
    pthread_mutex_lock(&m->mu);
    for (int k = 0; k < HS_N; k++) s_observe(&m->stage[k], LAT_LE, N_LAT, stage_s[k]);
    if (kv_bytes) s_observe(&m->ratio, RATIO_LE, N_RATIO, (double)full_kv_bytes / (double)kv_bytes);
    m->prompt_tokens += (uint64_t)prompt_tokens;
    m->gen_tokens += (uint64_t)gen_tokens;
    m->kv_bytes += kv_bytes;
    m->full_kv_bytes += full_kv_bytes;
    m->replies++;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_in_flight(http_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->in_flight += delta;
    pthread_mutex_unlock(&m->mu);
}

static void s_meta(sbuf *b, const char *name, const char *type, const char *help) {
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void s_hist(sbuf *b, const char *name, const char *label, const hist *h, const double *le, int n_le) {
    uint64_t cum = 0;
    const char *sep = *label ? "," : "";
    for (int k = 0; k < n_le; k++) {
        cum += h->bucket[k];
        sbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, sep, le[k], (unsigned long long)cum);
    }
    cum += h->bucket[n_le];
    sbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep, (unsigned long long)cum);
    sbuf_printf(b, *label ? "%s_sum{%s} %.9g\n" : "%s_sum%s %.9g\n", name, label, h->sum);
    sbuf_printf(b, *label ? "%s_count{%s} %llu\n" : "%s_count%s %llu\n", name, label, (unsigned long long)h->count);
}

/* The gauges and counters read from the coordinator's Status. */
static void s_coord(sbuf *b, const http_coord_view *v) {
    s_meta(b, "tis_coordinator_up", "gauge", "1 when the coordinator answered the front's last status request");
    sbuf_printf(b, "tis_coordinator_up %d\n", v->up ? 1 : 0);
    s_meta(b, "tis_workers_alive", "gauge", "Workers the coordinator counts alive, per role");
    for (int r = 0; r < 3; r++) sbuf_printf(b, "tis_workers_alive{role=\"%s\"} %lld\n", ROLE[r], (long long)v->alive[r]);
    s_meta(b, "tis_kept_contexts", "gauge", "Compressed contexts kept for later questions (keep_context)");
    sbuf_printf(b, "tis_kept_contexts %lld\n", (long long)v->kept_contexts);
    s_meta(b, "tis_queue_depth", "gauge", "Requests waiting for a worker of the role (state=waiting) or held by one "
                                          "(state=running)");
    for (int r = 0; r < 3; r++) {
        sbuf_printf(b, "tis_queue_depth{role=\"%s\",state=\"waiting\"} %lld\n", ROLE[r], (long long)v->waiting[r]);
        sbuf_printf(b, "tis_queue_depth{role=\"%s\",state=\"running\"} %lld\n", ROLE[r], (long long)v->running[r]);
    }
    const struct { const char *name, *help; uint64_t x; } c[] = {
        {"tis_coordinator_submitted_total", "Requests the coordinator admitted (all clients)", v->submitted},
        {"tis_coordinator_replies_total", "Requests it answered with a reply", v->answered},
        {"tis_coordinator_errors_total", "Requests it answered with an error", v->errors},
        {"tis_coordinator_busy_total", "Submits it refused with Busy (queue full)", v->busy},
        {"tis_coordinator_retried_total", "Jobs it sent again after a worker was lost", v->retried},
        {"tis_coordinator_cancelled_total", "Requests their clients cancelled", v->cancelled},
        {"tis_kv_handoffs_total", "Compressed KV blocks handed from prefill to decode workers", v->handoffs},
        {"tis_kv_handoff_bytes_total", "Bytes of compressed KV handed from prefill to decode workers", v->handoff_bytes},
        {"tis_kv_handoff_full_bytes_total", "What those requests' uncompressed caches would have been",
         v->full_kv_bytes},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        s_meta(b, c[k].name, "counter", c[k].help);
        sbuf_printf(b, "%s %llu\n", c[k].name, (unsigned long long)c[k].x);
    }
}

char *http_metrics_render(http_metrics *m, const http_coord_view *v) {
    sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    s_meta(&b, "tis_http_requests_total", "counter", "Completion requests through the HTTP front, by outcome");
    for (int e = 0; e < 2; e++)
        for (int o = 0; o < HTTP_N_OUTCOME; o++)
            sbuf_printf(&b, "tis_http_requests_total{endpoint=\"%s\",outcome=\"%s\"} %llu\n", ENDPOINT[e], OUTCOME[o],
                  (unsigned long long)m->requests[e][o]);
    s_meta(&b, "tis_http_in_flight", "gauge", "Completion requests the front holds now");
    sbuf_printf(&b, "tis_http_in_flight %lld\n", (long long)m->in_flight);
    s_meta(&b, "tis_stage_seconds", "histogram", "Seconds per stage of the replies carried by the front "
                                                 "(queue, prefill incl. compress, compress, scoring, handoff, "
                                                 "decode, ttft, total)");
    for (int k = 0; k < HS_N; k++) {
        char label[32];
        snprintf(label, sizeof label, "stage=\"%s\"", STAGE[k]);
        s_hist(&b, "tis_stage_seconds", label, &m->stage[k], LAT_LE, N_LAT);
    }
    s_meta(&b, "tis_kv_compression_ratio", "histogram", "Full KV bytes / compressed KV bytes per reply");
    s_hist(&b, "tis_kv_compression_ratio", "", &m->ratio, RATIO_LE, N_RATIO);
    const struct { const char *name, *help; uint64_t x; } c[] = {
        {"tis_generated_tokens_total", "Tokens generated for the replies carried by the front", m->gen_tokens},
        {"tis_prompt_tokens_total", "Prompt tokens of those replies", m->prompt_tokens},
        {"tis_reply_kv_bytes_total", "Compressed KV bytes their decode workers started from", m->kv_bytes},
        {"tis_reply_full_kv_bytes_total", "What their uncompressed caches would have been", m->full_kv_bytes},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        s_meta(&b, c[k].name, "counter", c[k].help);
        sbuf_printf(&b, "%s %llu\n", c[k].name, (unsigned long long)c[k].x);
    }
    pthread_mutex_unlock(&m->mu);
    s_coord(&b, v);
    if (b.oom) {
        sbuf_free(&b);
        return NULL;
    }
    return b.p;
}
