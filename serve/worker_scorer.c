/* worker_scorer: the scorer worker's job: the importance head over a
 * prefill worker's hidden rows, scores into its own arena. */
#include "clock.h"
#include "tis_error.h"
#include "worker_internal.h"

/* ScoreJob (scorer): the policy's head (a union's: each member's, in
 * member order) over hidden rows in a prefill worker's arena -> scores in
 * our arena -> ScoreDone. */
int worker_score(self_t *s, const Tis__Envelope *env) {
    const Tis__ScoreJob *j = env->score_job;
    press_spec sp;
    const head *hd[2];
    int rc = worker_policy(s, j->policy && *j->policy ? j->policy : "?", &sp, hd);
    if (rc) return rc;
    if (!hd[0] && !hd[1]) return tis_error(TIS_EINVAL, "policy %s reads no importance head: nothing to score", sp.name);
    int64_t n = j->n_rows, nq = j->n_query, d = s->m->config.d_model;
    if (!j->hidden || !j->hidden->arena || j->d_model != (uint32_t)d || n < 1 || n > (1 << 24) || nq > (1 << 24) ||
        j->hidden->length != (uint64_t)((n + nq) * d) * sizeof(float))
        return tis_error(TIS_EINVAL, "score job: the hidden block does not hold %lld + %lld rows of %lld", (long long)n,
                         (long long)nq, (long long)d);
    if (j->n_ctx_ids != 0 && j->n_ctx_ids != (size_t)n)
        return tis_error(TIS_EINVAL, "score job: %zu context ids for %lld rows", j->n_ctx_ids, (long long)n);
    if (hd[0] && hd[1] && hd[0]->cfg.layer != hd[1]->cfg.layer) /* one block of hidden rows for both */
        return tis_error(TIS_EINVAL, "policy %s: its heads read different layers", sp.name);
    int64_t n_out[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (!hd[i]) continue;
        if (hd[i]->cfg.n_rep && !j->n_ctx_ids)
            return tis_error(TIS_EINVAL, "score job: the head has repetition inputs and the job no context ids");
        n_out[i] = hd[i]->cfg.n_out > 1 ? hd[i]->cfg.n_out : 1;
    }
    arena *a = worker_peer(s, j->hidden);
    const float *rows = a ? arena_at(a, j->hidden->offset, j->hidden->length) : NULL;
    if (!rows) return a ? TIS_ERANGE : TIS_EIO;
    double t0 = tis_now();
    size_t nb = (size_t)(n * (n_out[0] + n_out[1])) * sizeof(float); /* [n_out[0] + n_out[1]][n] */
    uint64_t off = 0, lease = 0;
    arena_expire(s->own, tis_now_ms());
    rc = arena_alloc(s->own, nb, s->o->lease_ms, &off, &lease);
    if (rc) return rc;
    float *out = arena_at(s->own, off, nb);
    for (int i = 0; !rc && i < 2; i++) /* each member's head, in member order */
        if (hd[i])
            rc = head_score_context(hd[i], rows, j->n_ctx_ids ? j->ctx_ids : NULL, 0, n, n, nq,
                                    out + (i ? n_out[0] * n : 0));
    if (rc) {
        arena_lease_release(s->own, lease);
        return rc;
    }
    Tis__BlockRef br = worker_blockref(s, off, nb, lease);
    Tis__ScoreDone sd = TIS__SCORE_DONE__INIT;
    sd.scores = &br;
    sd.n = (uint32_t)n;
    sd.scoring_s = tis_now() - t0;
    Tis__Envelope out_env = TIS__ENVELOPE__INIT;
    out_env.request_id = env->request_id;
    out_env.body_case = TIS__ENVELOPE__BODY_SCORE_DONE;
    out_env.score_done = &sd;
    return worker_send(s, &out_env);
}
