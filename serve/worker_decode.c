/* worker_decode: the decode worker: jobs accepted (the block copied out of
 * a peer's arena or fetched from another host), the continuous batch, stop
 * strings, streaming, cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "tis_error.h"
#include "wire.h"
#include "worker_internal.h"


void worker_dseq_free(dseq *d) {
    kv_cache_destroy(&d->kv);
    free(d->q);
    decoder_seq_free(&d->seq);
    if (d->smp) sampler_free(d->smp);
    free(d->smp);
    for (size_t i = 0; i < d->n_stop; i++) free(d->stop[i]);
    free(d->stop);
    free(d->qtext);
    memset(d, 0, sizeof *d);
}

/* The tokens a decode job runs first (malloc'd): the ids the prefill
 * worker sent, or, for a kept context (no ids), its own question's tokens
 * framed as the prefill worker frames a suffix (after the context). */
static int s_decode_question(self_t *s, const Tis__DecodeJob *j, int32_t **ids, int64_t *n) {
    *ids = NULL;
    *n = 0;
    if (j->n_question_ids) {
        for (size_t i = 0; i < j->n_question_ids; i++)
            if (j->question_ids[i] < 0 || j->question_ids[i] >= s->m->config.n_vocab)
                return tis_error(TIS_EINVAL, "question token %d outside the vocabulary", j->question_ids[i]);
        if (!(*ids = malloc(j->n_question_ids * sizeof **ids))) return tis_error(TIS_ENOMEM, "out of memory");
        memcpy(*ids, j->question_ids, j->n_question_ids * sizeof **ids);
        *n = (int64_t)j->n_question_ids;
        return 0;
    }
    const Tis__Submit *q = j->question;
    if (!q || !q->question) return tis_error(TIS_EINVAL, "decode job without a question");
    session_input in = {.id = "kept context", .context = "", .question = q->question,
                        .answer_prefix = q->answer_prefix && *q->answer_prefix ? q->answer_prefix : NULL,
                        .verbatim = q->raw};
    session_prompt p;
    int rc = session_prompt_build(s->m->tok, &s->ct, tokenizer_chat_template(s->m->tok) != NULL, &in, &p);
    if (rc) return rc;
    *n = p.n - p.suf_begin;
    *ids = malloc((size_t)*n * sizeof **ids);
    if (*ids) memcpy(*ids, p.ids + p.suf_begin, (size_t)*n * sizeof **ids);
    session_prompt_free(&p);
    return *ids ? 0 : tis_error(TIS_ENOMEM, "out of memory");
}

static int s_decode_build(self_t *s, const Tis__Envelope *env, const void *blk, double t0);
static int s_fetch_start(self_t *s, const Tis__Envelope *env);

/* A block in a cuda prefill worker's device pool (this host, this worker
 * on cuda:N): the pool opened once and cached (devpool_peers), the copy
 * after the producer's event. To the host for now: the decode worker's KV
 * cache is on the host until engine/kv.c keeps it on the device; then
 * devpool_peers_copy_to_device (cudaMemcpyPeer across devices) replaces
 * this copy. The hand-off time covers the copy and the cache's build. */
static int s_decode_from_pool(self_t *s, const Tis__Envelope *env) {
    const Tis__BlockRef *br = env->decode_job->kv;
    if (br->length == 0 || br->length > ((uint64_t)1 << 36))
        return tis_error(TIS_ERANGE, "a device block of %llu bytes", (unsigned long long)br->length);
    double t0 = tis_now();
    void *host = malloc((size_t)br->length);
    if (!host) return tis_error(TIS_ENOMEM, "out of memory");
    int64_t opens = s->dpeers.opens;
    int rc = devpool_peers_read(&s->dpeers, br, host, tis_now_ms());
    if (s->dpeers.opens != opens) /* once per producer instance: never per request */
        fprintf(stderr, "[worker %s] opened the device pool %s (cuda:%d): %lld open%s so far\n", s->o->name,
                br->arena, br->device_index, (long long)s->dpeers.opens, s->dpeers.opens > 1 ? "s" : "");
    if (!rc) rc = s_decode_build(s, env, host, t0);
    free(host);
    return rc;
}

/* DecodeJob: checked, the block copied out of the peer's arena (or fetched
 * from its host: fetch.h) into a cache with room for the question and the
 * answer, queued for the batch. */
int worker_decode_accept(self_t *s, const Tis__Envelope *env) {
    const Tis__DecodeJob *j = env->decode_job;
    if (!j->kv || !j->layout || !j->kv->arena || (j->n_question_ids == 0 && !j->question))
        return tis_error(TIS_EINVAL, "decode job without a block, layout or question");
    const Tis__KvLayout *lay = j->layout;
    const model_config *c = &s->m->config;
    if (lay->n_layer != c->n_layer || lay->n_kv_head != c->n_kv_head || lay->head_dim != c->head_dim ||
        lay->n_stream_len != (size_t)(c->n_layer * c->n_kv_head))
        return tis_error(TIS_EINVAL, "the block's layout does not fit this model");
    uint32_t vt = lay->v_dtype1 ? lay->v_dtype1 - 1 : lay->dtype;
    if (lay->dtype > 64 || !kv_dtype_ok((int)lay->dtype) || vt > 64 || !kv_dtype_ok((int)vt))
        return tis_error(TIS_EUNSUPPORTED,
                         "a KV block of dtype %u (values %u): this worker reads f32 (0), f16 (1), q8_0 (8), bf16 (30)",
                         lay->dtype, vt);
    switch (devpool_path(j->kv, fetch_is_remote(j->kv), s->dpeers.ops != NULL)) {
    case BLOCK_PATH_FETCH: return s_fetch_start(s, env); /* another host, or a device block for a cpu worker */
    case BLOCK_PATH_CUDA_IPC: return s_decode_from_pool(s, env);
    case BLOCK_PATH_SHM: break;
    }
    arena *a = worker_peer(s, j->kv);
    if (!a) return TIS_EIO;
    const void *blk = arena_at(a, j->kv->offset, j->kv->length);
    if (!blk) return TIS_ERANGE;
    return s_decode_build(s, env, blk, -1);
}

/* The checked job's block (blk: its bytes) into a sequence queued for the
 * batch. t0: when the hand-off began (a fetch's start), or < 0: now (the
 * copy out of shared memory is the hand-off). */
static int s_decode_build(self_t *s, const Tis__Envelope *env, const void *blk, double t0) {
    const Tis__DecodeJob *j = env->decode_job;
    const Tis__KvLayout *lay = j->layout;
    const model_config *c = &s->m->config;
    int64_t ns = (int64_t)lay->n_stream_len, max_new = j->gen && j->gen->max_new ? j->gen->max_new : 16;
    if (max_new > 4096) return tis_error(TIS_EINVAL, "max_new %lld", (long long)max_new);
    dseq d = {.request_id = env->request_id};
    int64_t nq = 0;
    int rc = s_decode_question(s, j, &d.q, &nq);
    if (!rc && c->n_ctx_train > 0 && (int64_t)lay->n_past + nq + max_new > c->n_ctx_train)
        rc = tis_error(TIS_ERANGE, "a prompt of %lld tokens + %lld to generate is over the model's context of %lld",
                       (long long)(lay->n_past + (uint64_t)nq), (long long)max_new, (long long)c->n_ctx_train);
    int64_t *lens = rc ? NULL : malloc((size_t)ns * sizeof *lens);
    if (!rc && !lens) rc = tis_error(TIS_ENOMEM, "out of memory");
    if (rc) {
        free(d.q);
        return rc;
    }
    for (int64_t i = 0; i < ns; i++) lens[i] = lay->stream_len[i];
    d.prompt_tokens = (int64_t)lay->n_past + nq;
    d.t0 = t0 >= 0 ? t0 : tis_now();
    kv_types types = {(int)lay->dtype, (int)(lay->v_dtype1 ? lay->v_dtype1 - 1 : lay->dtype)};
    rc = kv_cache_block_read(&d.kv, c->n_layer, c->n_kv_head, c->head_dim, types, lens, (int64_t)lay->n_past,
                             lay->bias, blk, j->kv->length, nq + max_new);
    if (!rc && !backend_is_host(s->be)) { /* a cuda decode worker: the cache on its device */
        kv_cache *dev = NULL;
        rc = kv_cache_to_backend(&dev, d.kv, s->be);
        kv_cache_destroy(&d.kv);
        d.kv = dev;
    }
    d.handoff_s = tis_now() - d.t0;
    free(lens);
    if (rc) {
        free(d.q);
        return rc;
    }
    if (s->n_pend == s->cap_pend) {
        int64_t cap = s->cap_pend ? 2 * s->cap_pend : 16;
        dseq *np = realloc(s->pend, (size_t)cap * sizeof *np);
        if (np) {
            s->pend = np;
            s->cap_pend = cap;
        }
    }
    rc = s->n_pend < s->cap_pend ? 0 : tis_error(TIS_ENOMEM, "out of memory");
    if (!rc) rc = decoder_seq_init(&d.seq, d.kv, d.q, nq, max_new);
    if (!rc && j->question_text && *j->question_text) { /* the restatement rule, as tis eval decodes */
        if (!(d.qtext = strdup(j->question_text))) rc = tis_error(TIS_ENOMEM, "out of memory");
        else answer_stop_init(&d.seq.stop, d.qtext);
    }
    if (!rc && j->gen && j->gen->until_eog) { /* a full answer: only end-of-generation or max_new stop it */
        d.until_eog = true;
        d.seq.stop_answer = false;
    }
    d.stream = j->stream;
    if (!rc && j->gen && j->gen->n_stop) {
        if (j->gen->n_stop > 16) rc = tis_error(TIS_EINVAL, "%zu stop strings (16 at most)", j->gen->n_stop);
        else if (!(d.stop = calloc(j->gen->n_stop, sizeof *d.stop))) rc = tis_error(TIS_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < j->gen->n_stop; i++) {
            const char *t = j->gen->stop[i];
            if (!t || !*t) rc = tis_error(TIS_EINVAL, "an empty stop string");
            else if (!(d.stop[d.n_stop++] = strdup(t))) rc = tis_error(TIS_ENOMEM, "out of memory");
        }
    }
    if (!rc && j->gen && j->gen->temperature > 0) { /* sampled, as the request asks */
        float top_p = j->gen->top_p > 0 && j->gen->top_p <= 1 ? j->gen->top_p : 1.0f;
        d.smp = calloc(1, sizeof *d.smp);
        rc = d.smp ? sampler_init(d.smp, c->n_vocab, j->gen->temperature, top_p, j->gen->seed)
                   : tis_error(TIS_ENOMEM, "out of memory");
        d.seq.smp = d.smp;
    }
    if (rc) {
        worker_dseq_free(&d);
        return rc;
    }
    s->pend[s->n_pend++] = d;
    return 0;
}

/* The Reply of a finished sequence, or an Error when it cannot be made or
 * sent (out of memory): the request is answered either way. */
static void s_decode_reply(self_t *s, dseq *d) {
    char *text = NULL;
    int rc = decoder_seq_text(s->dec, &d->seq, !d->until_eog && !d->stopped, &text);
    if (rc) {
        worker_error(s, d->request_id, rc, "decoding the answer");
        return;
    }
    if (d->stopped && d->cut < strlen(text)) text[d->cut] = 0;
    double now = tis_now();
    Tis__Timing tm = TIS__TIMING__INIT;
    tm.handoff_s = d->handoff_s;
    tm.decode_s = now - d->t0 - d->handoff_s;
    tm.ttft_s = d->seq.t_fed - d->t0;
    Tis__Reply rp = TIS__REPLY__INIT;
    rp.answer = text;
    rp.n_ids = (size_t)d->seq.n_gen;
    rp.ids = d->seq.gen;
    rp.timing = &tm;
    rp.kv_bytes = (uint64_t)d->seq.kv_bytes;
    rp.prompt_tokens = (uint32_t)d->prompt_tokens;
    rp.finish_reason = !d->stopped && d->seq.eog < 0 && d->seq.n_gen >= d->seq.max_new ? "length" : "stop";
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = d->request_id;
    out.body_case = TIS__ENVELOPE__BODY_REPLY;
    out.reply = &rp;
    rc = worker_send(s, &out);
    if (rc) worker_error(s, d->request_id, rc, "sending the answer");
    free(text);
}

/* Bytes of text[0..n) that end on a whole UTF-8 character (a token may end
 * inside one; its rest comes with the next token). */
static size_t s_utf8_whole(const char *text, size_t n) {
    size_t k = n, back = 0;
    while (k > 0 && back < 4 && ((unsigned char)text[k - 1] & 0xC0) == 0x80) k--, back++;
    if (k == 0) return n;
    unsigned char lead = (unsigned char)text[k - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 ? k - 1 : n;
}

/* Where the first stop string begins in text[n] (*hit), else the bytes
 * that cannot begin one: a tail that is the start of a stop string waits
 * for the next tokens. */
static size_t s_stop_scan(char *const *stop, size_t n_stop, const char *text, size_t n, bool *hit) {
    size_t safe = n;
    *hit = false;
    for (size_t i = 0; i < n_stop; i++) {
        const char *f = strstr(text, stop[i]);
        if (f && (size_t)(f - text) < safe) {
            safe = (size_t)(f - text);
            *hit = true;
        }
    }
    for (size_t i = 0; i < n_stop && !*hit; i++)
        for (size_t t = strlen(stop[i]) - 1; t > 0; t--)
            if (t <= n && !memcmp(text + n - t, stop[i], t)) {
                if (n - t < safe) safe = n - t;
                break;
            }
    return safe;
}

/* A sequence's new tokens: the stop strings looked for (one ends it), and,
 * streamed, the tokens and the text they completed as one TokenChunk (the
 * Reply follows when it is done). */
static void s_decode_chunk(self_t *s, dseq *d) {
    if ((!d->stream && !d->n_stop) || d->seq.n_gen <= d->n_sent) return;
    char *text = NULL;
    if (decoder_seq_text(s->dec, &d->seq, false, &text)) return; /* the Reply reports it */
    size_t n = strlen(text), whole = s_utf8_whole(text, n);
    if (d->n_stop) {
        bool hit = false;
        size_t safe = s_stop_scan(d->stop, d->n_stop, text, n, &hit);
        if (hit) {
            decoder_seq_finish(&d->seq);
            d->stopped = true;
            d->cut = safe;
        }
        if (safe < whole) whole = safe;
    }
    if (!d->stream) {
        d->n_sent = d->seq.n_gen;
        free(text);
        return;
    }
    Tis__TokenChunk tc = TIS__TOKEN_CHUNK__INIT;
    tc.n_ids = (size_t)(d->seq.n_gen - d->n_sent);
    tc.ids = d->seq.gen + d->n_sent;
    tc.text = whole > d->text_sent ? text + d->text_sent : "";
    char keep = text[whole];
    text[whole] = 0;
    tc.last = d->seq.done;
    Tis__Envelope out = TIS__ENVELOPE__INIT;
    out.request_id = d->request_id;
    out.body_case = TIS__ENVELOPE__BODY_TOKENS;
    out.tokens = &tc;
    worker_send(s, &out);
    text[whole] = keep;
    d->n_sent = d->seq.n_gen;
    if (whole > d->text_sent) d->text_sent = whole;
    free(text);
}

/* Cancel: the request stops here and its slot is free (its client is gone). */
int worker_decode_cancel(self_t *s, uint64_t request_id) {
    for (int64_t i = 0; i < s->n_act; i++)
        if (s->act[i].request_id == request_id) {
            worker_dseq_free(&s->act[i]);
            s->act[i] = s->act[--s->n_act];
            return worker_ready_again(s);
        }
    for (int64_t i = 0; i < s->n_pend; i++)
        if (s->pend[i].request_id == request_id) {
            worker_dseq_free(&s->pend[i]);
            memmove(s->pend + i, s->pend + i + 1, (size_t)(--s->n_pend - i) * sizeof *s->pend);
            return worker_ready_again(s);
        }
    for (int64_t i = 0; i < s->n_fx; i++)
        if (s->fx[i].request_id == request_id) {
            fetch_free(&s->fx[i]);
            s->fx[i] = s->fx[--s->n_fx];
            return worker_ready_again(s);
        }
    return 0; /* finished already: its Reply is on its way (and dropped) */
}

/* ---- blocks from another host (fetch.h) ----------------------------------- */

/* Sends f's next requests (up to the window). */
static int s_fetch_pump(self_t *s, fetch_job *f) {
    Tis__BlockFetch bf;
    while (fetch_next(f, &bf)) {
        Tis__Envelope out = TIS__ENVELOPE__INIT;
        out.request_id = f->request_id;
        out.body_case = TIS__ENVELOPE__BODY_BLOCK_FETCH;
        out.block_fetch = &bf;
        int rc = worker_send(s, &out);
        if (rc) return rc;
    }
    return 0;
}

static int s_fetch_start(self_t *s, const Tis__Envelope *env) {
    int64_t mb = s->o->max_batch > 0 ? s->o->max_batch : 8;
    if (s->n_fx >= mb) return tis_error(TIS_EINVAL, "more blocks in flight than decode slots");
    fetch_job *f = &s->fx[s->n_fx];
    int rc = fetch_begin(f, env);
    if (rc) return rc;
    static bool said;
    if (!said) { /* once: the operator sees which path the blocks take */
        if (fetch_is_remote(env->decode_job->kv))
            fprintf(stderr, "[worker %s] blocks from %s come over the network (not this host: %s)\n", s->o->name,
                    env->decode_job->kv->host, fetch_host_id());
        else /* a device block for a worker without device memory calls */
            fprintf(stderr, "[worker %s] device blocks come through the coordinator (this worker is on the CPU)\n",
                    s->o->name);
        said = true;
    }
    s->n_fx++;
    rc = s_fetch_pump(s, f);
    if (rc) fetch_free(f), s->n_fx--;
    return rc;
}

/* A fetch ended (rc: how): the job goes on to the batch, or is answered with
 * an Error; either way its slot is free again. */
static void s_fetch_end(self_t *s, int64_t i, int rc) {
    fetch_job *f = &s->fx[i];
    if (!rc) {
        Tis__Envelope *job = NULL;
        rc = msg_unpack(f->job, f->job_len, f->job_len, &job);
        if (!rc) rc = s_decode_build(s, job, f->buf, f->t0);
        msg_free(job);
    }
    if (rc) worker_error(s, f->request_id, rc, "the block from another host");
    fetch_free(f);
    s->fx[i] = s->fx[--s->n_fx];
    if (rc) worker_ready_again(s);
}

/* A BlockChunk: taken into its fetch, more asked for, the job built when
 * the block is whole. */
void worker_fetch_chunk(self_t *s, const Tis__Envelope *env) {
    for (int64_t i = 0; i < s->n_fx; i++) {
        if (s->fx[i].request_id != env->request_id) continue;
        int rc = fetch_take(&s->fx[i], env->block_chunk);
        if (!rc && !fetch_done(&s->fx[i])) rc = s_fetch_pump(s, &s->fx[i]);
        if (rc || fetch_done(&s->fx[i])) s_fetch_end(s, i, rc);
        return;
    }
    /* a fetch that ended (cancelled, failed): dropped */
}

/* Fetches with no chunk for timeout_ms: their holder is gone or hung. */
void worker_fetch_expire(self_t *s, uint64_t timeout_ms) {
    for (int64_t i = 0; i < s->n_fx; i++)
        if (tis_now_ms() - s->fx[i].last_ms > timeout_ms) {
            tis_error(TIS_EIO, "no bytes of the block from its holder for %llu ms", (unsigned long long)timeout_ms);
            s_fetch_end(s, i--, TIS_EIO);
        }
}

/* One step of the continuous batch: new sequences run their question,
 * the others their last token, in one batched pass (weights read once);
 * finished sequences are answered and leave, queued ones take their slots. */
int worker_decode_step(self_t *s) {
    int64_t mb = decoder_max_batch(s->dec);
    while (s->n_act < mb && s->n_pend > 0) {
        s->act[s->n_act++] = s->pend[0];
        memmove(s->pend, s->pend + 1, (size_t)(--s->n_pend) * sizeof *s->pend);
    }
    if (s->n_act == 0) return 0;
    for (int64_t i = 0; i < s->n_act; i++) s->seqp[i] = &s->act[i].seq;
    int64_t k = decoder_step(s->dec, s->seqp, s->n_act);
    if (k < 0) { /* a sequence that does not fit its cache: fail them all, keep serving */
        for (int64_t i = 0; i < s->n_act; i++) {
            worker_error(s, s->act[i].request_id, (int)k, "decode step");
            worker_dseq_free(&s->act[i]);
        }
        s->n_act = 0;
        worker_fault_alloc(s, true); /* a decode job's scope ends with its answer's READY */
        return worker_ready_again(s);
    }
    int64_t kept = 0, finished = 0;
    for (int64_t i = 0; i < s->n_act; i++) {
        dseq *d = &s->act[i];
        s_decode_chunk(s, d);
        if (d->seq.done) {
            s_decode_reply(s, d);
            worker_dseq_free(d);
            finished++;
        } else {
            s->act[kept++] = *d;
        }
    }
    s->n_act = kept;
    if (finished) worker_ready_again(s);
    if (finished) worker_fault_alloc(s, true);
    return 0;
}
