/* wire_jobs: see wire_jobs.h. */
#include "wire_jobs.h"

int tt_send_prefill_job(void *sock, const wire_peer *peer, uint64_t id, Tis__Submit *sub, bool outside_scores) {
    Tis__PrefillJob pj = TIS__PREFILL_JOB__INIT;
    pj.request = sub;
    pj.outside_scores = outside_scores;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_PREFILL_JOB;
    e.prefill_job = &pj;
    return wire_send(sock, peer, &e);
}

int tt_send_decode_job(void *sock, const wire_peer *peer, uint64_t id, Tis__BlockRef *kv, Tis__KvLayout *layout,
                       size_t n_qids, int32_t *qids, Tis__GenParams *gp) {
    Tis__DecodeJob dj = TIS__DECODE_JOB__INIT;
    dj.kv = kv;
    dj.layout = layout;
    dj.n_question_ids = n_qids;
    dj.question_ids = qids;
    dj.gen = gp;
    Tis__Envelope e = TIS__ENVELOPE__INIT;
    e.request_id = id;
    e.body_case = TIS__ENVELOPE__BODY_DECODE_JOB;
    e.decode_job = &dj;
    return wire_send(sock, peer, &e);
}
