/* worker_scorer: the scorer worker's job: the importance head over a
 * prefill worker's hidden rows, scores into its own arena. */
#include "clock.h"
#include "tis_error.h"
#include "worker_internal.h"

/* ScoreJob (scorer): the head over hidden rows in a prefill worker's arena
 * -> scores in our arena -> ScoreDone. */
int worker_score(self_t *s, const Tis__Envelope *env) {
    const Tis__ScoreJob *j = env->score_job;
    press pr;
    int rc = press_parse(j->policy && *j->policy ? j->policy : "?", &pr);
    if (rc) return rc;
    const head *hd = !pr.needs_head ? NULL : pr.query_head ? s->h_q : s->h_ctx;
    if (!hd) return tis_error(TIS_EINVAL, "this scorer has no head for policy %s", pr.name);
    int64_t n = j->n_rows, nq = j->n_query, d = s->m->config.d_model;
    if (!j->hidden || !j->hidden->arena || j->d_model != (uint32_t)d || n < 1 || n > (1 << 24) || nq > (1 << 24) ||
        j->hidden->length != (uint64_t)((n + nq) * d) * sizeof(float))
        return tis_error(TIS_EINVAL, "score job: the hidden block does not hold %lld + %lld rows of %lld", (long long)n,
                         (long long)nq, (long long)d);
    if (j->n_ctx_ids != 0 && j->n_ctx_ids != (size_t)n)
        return tis_error(TIS_EINVAL, "score job: %zu context ids for %lld rows", j->n_ctx_ids, (long long)n);
    if (hd->cfg.n_rep && !j->n_ctx_ids)
        return tis_error(TIS_EINVAL, "score job: the head has repetition inputs and the job no context ids");
    arena *a = worker_peer(s, j->hidden);
    const float *rows = a ? arena_at(a, j->hidden->offset, j->hidden->length) : NULL;
    if (!rows) return a ? TIS_ERANGE : TIS_EIO;
    double t0 = tis_now();
    size_t nb = (size_t)(n * (hd->cfg.n_out > 1 ? hd->cfg.n_out : 1)) * sizeof(float); /* [n_out][n] */
    uint64_t off = 0, lease = 0;
    arena_expire(s->own, tis_now_ms());
    rc = arena_alloc(s->own, nb, s->o->lease_ms, &off, &lease);
    if (rc) return rc;
    rc = head_score_context(hd, rows, j->n_ctx_ids ? j->ctx_ids : NULL, 0, n, n, nq, arena_at(s->own, off, nb));
    if (rc) {
        arena_lease_release(s->own, lease);
        return rc;
    }
    Tis__BlockRef br = worker_blockref(s, off, nb, lease);
    Tis__ScoreDone sd = TIS__SCORE_DONE__INIT;
    sd.scores = &br;
    sd.n = (uint32_t)n;
    sd.scoring_s = tis_now() - t0;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = env->request_id;
    out.body_case = TIS__ENVELOPE__BODY_SCORE_DONE;
    out.score_done = &sd;
    return worker_send(s, &out);
}
