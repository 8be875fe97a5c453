/* coord_context: compressed contexts the coordinator keeps for later
 * questions (Submit.keep_context / Submit.context_id, docs/http.md). A kept
 * context is the agnostic compressed block of a request already answered:
 * it stays in its prefill worker's arena under its lease, which is renewed
 * here every heartbeat; a later request naming it goes straight to a decode
 * worker with its own question (the worker tokenizes it). */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_internal.h"
#include "tis_error.h"

/* Renewals of kept contexts carry this + the context's id as request id, so
 * that a worker's Error for one (the block expired) names the context. */
#define CTX_RENEW_BASE ((uint64_t)1 << 62)

static uint64_t s_lease(const kept_ctx *k) { return k->block->prefill_done->kv->lease_id; }

static void s_forget(self_t *s, kept_ctx *k, bool release) {
    if (release) coord_release(s, &k->holder, s_lease(k));
    msg_free(k->block);
    memset(k, 0, sizeof *k);
}

uint64_t coord_context_keep(self_t *s, request *r) {
    if (!r->block || !r->block->prefill_done || !r->block->prefill_done->kv || !r->lease) return 0;
    kept_ctx *k = NULL;
    for (int i = 0; i < MAX_CONTEXTS && !k; i++)
        if (!s->kept[i].id) k = &s->kept[i];
    if (!k) { /* full: the least recently used goes */
        k = &s->kept[0];
        for (int i = 1; i < MAX_CONTEXTS; i++)
            if (s->kept[i].last_used < k->last_used) k = &s->kept[i];
        s_forget(s, k, true);
    }
    k->id = ++s->next_ctx;
    k->block = coord_take(&r->block);
    k->holder = r->prefill_peer;
    k->last_used = tis_now_ms();
    r->lease = r->kept = 0; /* no longer the request's to release */
    return k->id;
}

int coord_context_use(self_t *s, request *r, uint64_t id) {
    kept_ctx *k = NULL;
    for (int i = 0; i < MAX_CONTEXTS && !k; i++)
        if (id && s->kept[i].id == id) k = &s->kept[i];
    if (!k)
        return tis_error(TIS_ENOTFOUND, "context %llu is not kept here (it expired, its prefill worker was lost, "
                         "or it never was)", (unsigned long long)id);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = msg_pack(k->block, &buf, &len); /* the request's own copy of the block's handle */
    if (!rc) rc = msg_unpack(buf, len, len, &r->block);
    free(buf);
    if (rc) return rc;
    k->last_used = tis_now_ms();
    r->prefill_peer = k->holder;
    r->full_kv_bytes = r->block->prefill_done->full_kv_bytes;
    return 0;
}

void coord_context_renew(self_t *s) {
    uint64_t now = tis_now_ms();
    for (int i = 0; i < MAX_CONTEXTS; i++) {
        kept_ctx *k = &s->kept[i];
        if (!k->id) continue;
        int64_t ttl = s->o->context_ttl_ms > 0 ? s->o->context_ttl_ms : 600000;
        if (now - k->last_used > (uint64_t)ttl) {
            s_forget(s, k, true);
            continue;
        }
        Tis__LeaseRenew lr = TIS__LEASE_RENEW__INIT;
        lr.lease_id = s_lease(k);
        lr.ttl_ms = (uint32_t)s->o->lease_ms;
        Tis__Envelope e = TIS__ENVELOPE__INIT;
        e.request_id = CTX_RENEW_BASE + k->id;
        e.body_case = TIS__ENVELOPE__BODY_LEASE_RENEW;
        e.lease_renew = &lr;
        wire_send(s->back, &k->holder, &e);
    }
}

void coord_context_drop(self_t *s, const wire_peer *holder) {
    for (int i = 0; i < MAX_CONTEXTS; i++)
        if (s->kept[i].id && (!holder || coord_same(&s->kept[i].holder, holder))) s_forget(s, &s->kept[i], false);
}

bool coord_context_lost(self_t *s, const wire_peer *from, uint64_t request_id) {
    if (request_id < CTX_RENEW_BASE) return false;
    for (int i = 0; i < MAX_CONTEXTS; i++)
        if (s->kept[i].id == request_id - CTX_RENEW_BASE && coord_same(&s->kept[i].holder, from))
            s_forget(s, &s->kept[i], false);
    return true;
}

uint32_t coord_context_count(const self_t *s) {
    uint32_t n = 0;
    for (int i = 0; i < MAX_CONTEXTS; i++) n += s->kept[i].id != 0;
    return n;
}
