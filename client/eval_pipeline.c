/* eval_pipeline: eval jobs over a coordinator. */
#include "eval_pipeline.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "pipeline_local.h"
#include "tis_error.h"
#include "wire.h"
#include "wire_eval.h"

enum { SILENCE_S = 900 }; /* no message from the coordinator this long: give up */

typedef struct job {
    const bench_set *set;
    const bench_sample *s;
    eval_row *rows;
    int64_t n_rows;
    int64_t max_new; /* the sample's answer cap, as sent */
    int state;      /* 0 to send, 1 sent, 2 done */
    uint64_t probe; /* status requests sent before it was (last) sent */
} job;

typedef void (*progress_fn)(int64_t done, int64_t total, double elapsed, const char *what, bool tty);

/* One run: the jobs (sample k is request id k + 1), the connection and the
 * window of jobs in flight. */
typedef struct run {
    const eval_pipeline_opts *o;
    progress_fn progress;
    job *jobs;                  /* [n] */
    int64_t n, window, in_flight, done, next;
    eval_config cfg;            /* the caller's, heads by absolute path */
    char head[PATH_MAX], head_q[PATH_MAX];
    char **head_as;             /* [cfg.n_head_as] "NAME=/absolute/path" (owned) */
    Tis__EvalSpec spec;         /* points into cfg */
    pipeline_local pl;          /* --workers: the private server */
    const char *ep;
    void *ctx, *sock;
    double t0, last_msg, wait_until, next_probe;
    uint64_t status_seq;
} run;

/* The jobs of every set, the server (a private one without --connect), the
 * spec, the connection. */
static int s_open(run *r, const eval_config *cfg, const bench_set *sets, int n_sets) {
    const eval_pipeline_opts *o = r->o;
    for (int s = 0; s < n_sets; s++) r->n += sets[s].n;
    if (!(r->jobs = calloc((size_t)(r->n ? r->n : 1), sizeof *r->jobs))) return tis_error(TIS_ENOMEM, "out of memory");
    for (int s = 0, k = 0; s < n_sets; s++)
        for (int64_t i = 0; i < sets[s].n; i++, k++) r->jobs[k].set = &sets[s], r->jobs[k].s = &sets[s].s[i];
    r->pl.pid = -1;
    r->ep = o->connect;
    if (!r->ep) {
        int rc = pipeline_local_start(&r->pl, o->workers, o->model_path, cfg->head_path, cfg->head_query_path,
                                      1 /* MiB: eval jobs hand off no blocks */);
        if (rc) return rc;
        r->ep = r->pl.front;
    }
    /* heads by absolute path: a worker's working directory may differ */
    r->cfg = *cfg;
    if (r->cfg.head_path && realpath(r->cfg.head_path, r->head)) r->cfg.head_path = r->head;
    if (r->cfg.head_query_path && realpath(r->cfg.head_query_path, r->head_q)) r->cfg.head_query_path = r->head_q;
    if (cfg->n_head_as && !(r->head_as = calloc((size_t)cfg->n_head_as, sizeof *r->head_as)))
        return tis_error(TIS_ENOMEM, "out of memory");
    for (int64_t i = 0; i < cfg->n_head_as; i++) { /* NAME=PATH, PATH made absolute when it resolves */
        const char *e = cfg->head_as[i], *eq = strchr(e, '=');
        char abs[PATH_MAX];
        const char *path = eq && realpath(eq + 1, abs) ? abs : eq ? eq + 1 : "";
        size_t nl = eq ? (size_t)(eq - e) : strlen(e), len = nl + 1 + strlen(path) + 1;
        if (!(r->head_as[i] = malloc(len))) return tis_error(TIS_ENOMEM, "out of memory");
        snprintf(r->head_as[i], len, "%.*s=%s", (int)nl, e, path);
    }
    r->cfg.head_as = (const char *const *)r->head_as;
    wire_eval_spec_view(&r->cfg, o->model_name, &r->spec);
    r->ctx = zmq_ctx_new();
    r->sock = r->ctx ? zmq_socket(r->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    if (!r->sock || zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger))
        return tis_error(TIS_EIO, "cannot connect to %s: %s", r->ep, zmq_strerror(zmq_errno()));
    int src = sec_connect(r->sock, r->ep, &o->sec);
    if (src) return src;
    r->window = o->connect ? 16 : 2 * o->workers + 2;
    r->t0 = r->last_msg = tis_now();
    r->next_probe = r->t0 + 2.0;
    return 0;
}

static void s_close(run *r) {
    if (r->sock) zmq_close(r->sock);
    if (r->ctx) zmq_ctx_term(r->ctx);
    pipeline_local_stop(&r->pl);
    for (int64_t i = 0; r->jobs && i < r->n; i++) free(r->jobs[i].rows);
    free(r->jobs);
    for (int64_t i = 0; r->head_as && i < r->cfg.n_head_as; i++) free(r->head_as[i]);
    free(r->head_as);
}

/* Keeps the window full; every 2 s while jobs are out, asks which of them
 * the coordinator holds (one that restarted lost those in flight). */
static int s_send(run *r) {
    if (r->in_flight > 0 && tis_now() >= r->next_probe) {
        wire_send_status_request(r->sock, UINT64_MAX - r->status_seq++);
        r->next_probe = tis_now() + 2.0;
    }
    for (; r->next < r->n && r->in_flight < r->window && tis_now() >= r->wait_until; r->next++) {
        job *j = &r->jobs[r->next];
        if (j->state != 0) continue;
        Tis__EvalSample sm;
        wire_eval_sample_view(j->s, &sm);
        int rc = eval_sample_max_new(&r->cfg, r->o->tok, j->s, &j->max_new);
        if (rc) return rc;
        Tis__EvalSpec spec = r->spec; /* the sample's own cap */
        spec.max_new = (uint32_t)j->max_new;
        Tis__EvalJob ej = TIS__EVAL_JOB__INIT;
        ej.benchmark = (char *)j->set->name;
        ej.sample = &sm;
        ej.spec = &spec;
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = (uint64_t)r->next + 1;
        e.body_case = TIS__ENVELOPE__BODY_EVAL_JOB;
        e.eval_job = &ej;
        rc = wire_send(r->sock, NULL, &e);
        if (rc) return rc;
        j->state = 1;
        j->probe = r->status_seq;
        r->in_flight++;
    }
    return 0;
}

/* A Status: jobs sent before the question, not answered and not held by
 * the coordinator were lost (a restart): they go out again (run once). */
static void s_on_status(run *r, const Tis__Envelope *e) {
    uint64_t q = UINT64_MAX - e->request_id;
    int64_t again = 0;
    for (int64_t i = 0; i < r->n; i++) {
        job *j = &r->jobs[i];
        if (j->state != 1 || j->probe > q || wire_status_holds(e->status, (uint64_t)i + 1)) continue;
        j->state = 0;
        r->next = i < r->next ? i : r->next;
        r->in_flight--;
        again++;
    }
    if (!again) return;
    if (r->o->tty) fprintf(stderr, "\n");
    fprintf(stderr, "[eval] the coordinator lost %lld samples in flight (a restart?): sent again\n", (long long)again);
}

/* A sample's rows: kept, appended to the CSV (partial results survive). */
static int s_on_done(run *r, job *j, const Tis__EvalDone *d) {
    if (d->n_rows == 0) return tis_error(TIS_EIO, "sample %s: the worker sent no rows", j->s->id);
    if (!(j->rows = malloc(d->n_rows * sizeof *j->rows))) return tis_error(TIS_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->n_rows; i++) {
        int rc = wire_eval_row_from(d->rows[i], &j->rows[i]);
        if (rc) return rc;
        j->rows[i].truncated = j->rows[i].n_generated >= j->max_new;
    }
    j->n_rows = (int64_t)d->n_rows;
    j->state = 2;
    r->done++;
    char what[160] = "";
    for (int64_t i = 0; i < j->n_rows; i++)
        if (!strcmp(j->rows[i].policy, "full")) {
            snprintf(what, sizeof what, "%s: full %s", j->s->id, j->rows[i].correct ? "ok" : "miss");
            break;
        }
    if (r->progress) r->progress(r->done, r->n, tis_now() - r->t0, what, r->o->tty);
    return report_append_csv(r->o->output, j->rows, j->n_rows);
}

/* One message from the coordinator (or none within 200 ms). */
static int s_pump(run *r) {
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 200) <= 0) {
        if (!r->o->connect && !pipeline_local_alive(&r->pl))
            return tis_error(TIS_EIO, "the workers' server exited (see its messages above)");
        if (tis_now() - r->last_msg > SILENCE_S)
            return tis_error(TIS_EIO, "no answer from %s for %d s", r->ep, (int)SILENCE_S);
        return 0;
    }
    Tis__Envelope *e = NULL;
    if (wire_recv(r->sock, 0, NULL, &e)) {
        fprintf(stderr, "tis eval: a bad message from the coordinator: %s\n", tis_last_error());
        msg_free(e);
        return 0;
    }
    r->last_msg = tis_now();
    int rc = 0;
    int64_t k = (int64_t)e->request_id - 1;
    if (e->body_case == TIS__ENVELOPE__BODY_STATUS) {
        s_on_status(r, e);
    } else if (k >= 0 && k < r->n && r->jobs[k].state == 1) { /* else: a late duplicate */
        job *j = &r->jobs[k];
        r->in_flight--;
        if (e->body_case == TIS__ENVELOPE__BODY_BUSY) { /* not queued: again after the hint */
            j->state = 0;
            r->next = k < r->next ? k : r->next;
            r->wait_until = tis_now() + (e->busy->retry_after_ms ? e->busy->retry_after_ms : 200) / 1000.0;
        } else if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
            rc = tis_error(TIS_EIO, "sample %s: %s", j->s->id, e->error->message ? e->error->message : "error");
        } else if (e->body_case == TIS__ENVELOPE__BODY_EVAL_DONE) {
            rc = s_on_done(r, j, e->eval_done);
        } else {
            rc = tis_error(TIS_EIO, "sample %s: an unexpected %s", j->s->id, msg_body_name(e));
        }
    }
    msg_free(e);
    return rc;
}

/* The rows from before (--resume), then every sample's in sample order. */
static int s_rows(const run *r, eval_row **rows_out, int64_t *n_rows_out) {
    int64_t total = r->o->n_keep;
    for (int64_t i = 0; i < r->n; i++) total += r->jobs[i].n_rows;
    eval_row *all = malloc((size_t)(total ? total : 1) * sizeof *all);
    if (!all) return tis_error(TIS_ENOMEM, "out of memory");
    if (r->o->n_keep) memcpy(all, r->o->keep, (size_t)r->o->n_keep * sizeof *all);
    for (int64_t i = 0, k = r->o->n_keep; i < r->n; i++) {
        memcpy(all + k, r->jobs[i].rows, (size_t)r->jobs[i].n_rows * sizeof *all);
        k += r->jobs[i].n_rows;
    }
    *rows_out = all;
    *n_rows_out = total;
    return 0;
}

int eval_pipeline_run(const eval_pipeline_opts *o, const eval_config *cfg, const bench_set *sets, int n_sets,
                      eval_row **rows_out, int64_t *n_rows_out, progress_fn progress) {
    *rows_out = NULL;
    *n_rows_out = 0;
    run r = {.o = o, .progress = progress};
    int rc = s_open(&r, cfg, sets, n_sets);
    while (!rc && r.done < r.n) {
        rc = s_send(&r);
        if (!rc) rc = s_pump(&r);
    }
    if (!rc) rc = s_rows(&r, rows_out, n_rows_out);
    s_close(&r);
    return rc;
}
