/* eval_pipeline: eval jobs over a coordinator. */
#include "eval_pipeline.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "evaljob.h"
#include "generate.h"
#include "pipeline_local.h"
#include "tis_error.h"
#include "wire.h"

enum { SILENCE_S = 900 }; /* no message from the coordinator this long: give up */

typedef struct job {
    const bench_set *set;
    const bench_sample *s;
    eval_row *rows;
    int64_t n_rows;
    int state; /* 0 to send, 1 sent, 2 done */
    uint64_t probe; /* status requests sent before it was (last) sent */
} job;

int eval_pipeline_run(const eval_pipeline_opts *o, const eval_config *cfg, const bench_set *sets, int n_sets,
                      eval_row **rows_out, int64_t *n_rows_out,
                      void (*progress)(int64_t, int64_t, double, const char *, bool)) {
    *rows_out = NULL;
    *n_rows_out = 0;
    int64_t n = 0;
    for (int s = 0; s < n_sets; s++) n += sets[s].n;
    job *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
    if (!jobs) return tis_error(TIS_ENOMEM, "out of memory");
    for (int s = 0, k = 0; s < n_sets; s++)
        for (int64_t i = 0; i < sets[s].n; i++, k++) jobs[k].set = &sets[s], jobs[k].s = &sets[s].s[i];

    pipeline_local pl = {.pid = -1};
    const char *ep = o->connect;
    if (!ep) {
        int prc = pipeline_local_start(&pl, o->workers, o->model_path, cfg->head_path, cfg->head_query_path,
                                       1 /* MiB: eval jobs hand off no blocks */);
        if (prc) {
            free(jobs);
            return prc;
        }
        ep = pl.front;
    }
    /* heads by absolute path: a worker's working directory may differ */
    char head_abs[PATH_MAX] = "", head_q[PATH_MAX] = "";
    eval_config c = *cfg;
    if (c.head_path && realpath(c.head_path, head_abs)) c.head_path = head_abs;
    if (c.head_query_path && realpath(c.head_query_path, head_q)) c.head_query_path = head_q;
    Tis__EvalSpec spec;
    evaljob_spec_view(&c, o->model_name, &spec);

    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, rc = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sock, ep)) rc = tis_error(TIS_EIO, "cannot connect to %s: %s", ep, zmq_strerror(zmq_errno()));
    int64_t window = o->connect ? 16 : 2 * o->workers + 2, in_flight = 0, done = 0, next = 0;
    double t0 = tis_now(), last_msg = t0, wait_until = 0, next_probe = t0 + 2.0;
    uint64_t status_seq = 0;
    while (!rc && done < n) {
        /* every 2 s: which jobs does the coordinator hold? One that
         * restarted lost those in flight: they are sent again (run once). */
        if (in_flight > 0 && tis_now() >= next_probe) {
            wire_send_status_request(sock, UINT64_MAX - status_seq++);
            next_probe = tis_now() + 2.0;
        }
        for (; next < n && in_flight < window && tis_now() >= wait_until; next++) {
            if (jobs[next].state != 0) continue;
            Tis__EvalSample sm;
            evaljob_sample_view(jobs[next].s, &sm);
            Tis__EvalJob ej = TIS__EVAL_JOB__INIT;
            ej.benchmark = (char *)jobs[next].set->name;
            ej.sample = &sm;
            ej.spec = &spec;
            Tis__Submit sub = TIS__SUBMIT__INIT;
            sub.eval = &ej;
            Tis__Envelope e = TIS__ENVELOPE__INIT;
            e.request_id = (uint64_t)next + 1;
            e.body_case = TIS__ENVELOPE__BODY_SUBMIT;
            e.submit = &sub;
            if ((rc = wire_send(sock, NULL, &e))) break;
            jobs[next].state = 1;
            jobs[next].probe = status_seq;
            in_flight++;
        }
        if (rc) break;
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int got = zmq_poll(&it, 1, 200);
        if (got <= 0) {
            if (!o->connect && !pipeline_local_alive(&pl)) {
                rc = tis_error(TIS_EIO, "the workers' server exited (see its messages above)");
            } else if (tis_now() - last_msg > SILENCE_S) {
                rc = tis_error(TIS_EIO, "no answer from %s for %d s", ep, (int)SILENCE_S);
            }
            continue;
        }
        Tis__Envelope *e = NULL;
        if (wire_recv(sock, 0, NULL, &e)) {
            fprintf(stderr, "tis eval: a bad message from the coordinator: %s\n", tis_last_error());
            msg_free(e);
            continue;
        }
        last_msg = tis_now();
        if (e->body_case == TIS__ENVELOPE__BODY_STATUS) { /* jobs the coordinator lost: again */
            uint64_t q = UINT64_MAX - e->request_id;
            int64_t again = 0;
            for (int64_t i = 0; i < n; i++) {
                if (jobs[i].state != 1 || jobs[i].probe > q) continue;
                if (wire_status_holds(e->status, (uint64_t)i + 1)) continue;
                jobs[i].state = 0;
                next = i < next ? i : next;
                in_flight--;
                again++;
            }
            if (again) {
                if (o->tty) fprintf(stderr, "\n");
                fprintf(stderr, "[eval] the coordinator lost %lld samples in flight (a restart?): sent again\n",
                        (long long)again);
            }
            msg_free(e);
            continue;
        }
        int64_t k = (int64_t)e->request_id - 1;
        if (k < 0 || k >= n || jobs[k].state != 1) {
            msg_free(e);
            continue;
        }
        job *j = &jobs[k];
        in_flight--;
        if (e->body_case == TIS__ENVELOPE__BODY_BUSY) { /* not queued: again after the hint */
            j->state = 0;
            if (k < next) next = k;
            wait_until = tis_now() + (e->busy->retry_after_ms ? e->busy->retry_after_ms : 200) / 1000.0;
        } else if (e->body_case == TIS__ENVELOPE__BODY_ERROR) {
            rc = tis_error(TIS_EIO, "sample %s: %s", j->s->id, e->error->message ? e->error->message : "error");
        } else if (e->body_case == TIS__ENVELOPE__BODY_REPLY) {
            const Tis__Reply *r = e->reply;
            j->rows = malloc((r->n_rows ? r->n_rows : 1) * sizeof *j->rows);
            if (!j->rows) rc = tis_error(TIS_ENOMEM, "out of memory");
            for (size_t i = 0; !rc && i < r->n_rows; i++) rc = evaljob_row_from(r->rows[i], &j->rows[i]);
            if (!rc && r->n_rows == 0) rc = tis_error(TIS_EIO, "sample %s: the worker sent no rows", j->s->id);
            if (!rc) {
                j->n_rows = (int64_t)r->n_rows;
                j->state = 2;
                done++;
                char what[160] = "";
                for (int64_t i = 0; i < j->n_rows; i++)
                    if (!strcmp(j->rows[i].policy, "full")) {
                        snprintf(what, sizeof what, "%s: full %s", j->s->id, j->rows[i].correct ? "ok" : "miss");
                        break;
                    }
                if (progress) progress(done, n, tis_now() - t0, what, o->tty);
                rc = report_append_csv(o->output, j->rows, j->n_rows); /* partial results survive */
            }
        }
        msg_free(e);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    pipeline_local_stop(&pl);
    int64_t total = o->n_keep;
    for (int64_t i = 0; i < n; i++) total += jobs[i].n_rows;
    eval_row *all = rc ? NULL : malloc((size_t)(total ? total : 1) * sizeof *all);
    if (!rc && !all) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (!rc && o->n_keep) memcpy(all, o->keep, (size_t)o->n_keep * sizeof *all);
    for (int64_t i = 0, k = o->n_keep; !rc && i < n; i++) {
        memcpy(all + k, jobs[i].rows, (size_t)jobs[i].n_rows * sizeof *all);
        k += jobs[i].n_rows;
    }
    for (int64_t i = 0; i < n; i++) free(jobs[i].rows);
    free(jobs);
    if (rc) return rc;
    *rows_out = all;
    *n_rows_out = total;
    return 0;
}
