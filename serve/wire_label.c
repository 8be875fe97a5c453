/* wire_label: label jobs and their flat result blocks. */
#include "wire_label.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

void wire_label_spec_view(const label_config *cfg, const char *model_name, Tis__LabelSpec *m) {
    tis__label_spec__init(m);
    m->layer = cfg->layer;
    m->per_head = cfg->per_head;
    m->use_model_answer = cfg->use_model_answer;
    m->max_new = (uint32_t)cfg->max_new;
    m->chat = cfg->chat;
    m->model_name = (char *)(model_name ? model_name : "");
}

int wire_label_spec_from(const Tis__LabelSpec *m, const model_config *mc, label_config *cfg) {
    if (!m) return tis_error(TIS_EINVAL, "label job without a spec");
    if (m->model_name && *m->model_name && strcmp(m->model_name, mc->name))
        return tis_error(TIS_EINVAL, "label job for model '%s'; this worker runs '%s'", m->model_name, mc->name);
    if (m->layer < 0 || m->layer > mc->n_layer)
        return tis_error(TIS_EINVAL, "label job: layer %lld outside 0..%lld", (long long)m->layer,
                         (long long)mc->n_layer);
    if (m->max_new < 1 || m->max_new > 4096) return tis_error(TIS_EINVAL, "label job: max_new %u", m->max_new);
    *cfg = (label_config){.layer = m->layer, .per_head = m->per_head, .use_model_answer = m->use_model_answer,
                          .max_new = m->max_new, .chat = m->chat};
    return 0;
}

/* The arrays in block order: element counts and sizes. */
static void s_parts(int64_t n_tokens, int64_t n_ctx, int64_t n_q, int64_t n_answer, const model_config *mc,
                    bool per_head, int64_t count[6], size_t elem[6]) {
    count[0] = n_tokens, elem[0] = 4;
    count[1] = n_ctx, elem[1] = 4;
    count[2] = per_head ? mc->n_layer * mc->n_head * n_ctx : 0, elem[2] = 4;
    count[3] = n_ctx * mc->d_model, elem[3] = 2;
    count[4] = n_q * mc->d_model, elem[4] = 2;
    count[5] = n_answer, elem[5] = 4;
}

size_t wire_label_block_bytes(const label_sample *ls, const model_config *mc, bool per_head) {
    int64_t c[6];
    size_t e[6], n = 0;
    s_parts(ls->n_tokens, ls->n_ctx, ls->n_tokens - ls->suf_begin, ls->n_answer, mc, per_head, c, e);
    for (int i = 0; i < 6; i++) n += (size_t)c[i] * e[i];
    return n;
}

void wire_label_block_write(const label_sample *ls, const model_config *mc, bool per_head, void *dst) {
    int64_t c[6];
    size_t e[6];
    s_parts(ls->n_tokens, ls->n_ctx, ls->n_tokens - ls->suf_begin, ls->n_answer, mc, per_head, c, e);
    const void *src[6] = {ls->ids, ls->labels, ls->labels_per_head, ls->features, ls->query_features,
                          ls->answer_ids};
    char *p = dst;
    for (int i = 0; i < 6; i++) {
        size_t n = (size_t)c[i] * e[i];
        if (n) memcpy(p, src[i], n);
        p += n;
    }
}

int wire_label_block_read(const Tis__LabelDone *r, const model_config *mc, const void *block, size_t len,
                        const char *id, label_sample *ls) {
    memset(ls, 0, sizeof *ls);
    const int64_t lim = 1 << 26;
    if (r->n_tokens < 1 || r->n_tokens > lim || r->n_ctx < 0 || r->ctx_begin < 0 ||
        r->ctx_begin + r->n_ctx > r->n_tokens || r->suf_begin < r->ctx_begin + r->n_ctx ||
        r->suf_begin > r->n_tokens || r->n_answer < 0 || r->n_answer > lim)
        return tis_error(TIS_EINVAL, "label result: inconsistent spans");
    int64_t c[6];
    size_t e[6], want = 0;
    s_parts(r->n_tokens, r->n_ctx, r->n_tokens - r->suf_begin, r->n_answer, mc, r->per_head, c, e);
    for (int i = 0; i < 6; i++) want += (size_t)c[i] * e[i];
    if (want != len)
        return tis_error(TIS_EINVAL, "label result: block of %zu bytes, the spans need %zu", len, want);
    snprintf(ls->id, sizeof ls->id, "%s", id);
    ls->n_tokens = r->n_tokens;
    ls->ctx_begin = r->ctx_begin;
    ls->n_ctx = r->n_ctx;
    ls->suf_begin = r->suf_begin;
    ls->n_answer = r->n_answer;
    ls->answer_from_model = r->answer_from_model;
    void **dst[6] = {(void **)&ls->ids, (void **)&ls->labels, (void **)&ls->labels_per_head,
                     (void **)&ls->features, (void **)&ls->query_features, (void **)&ls->answer_ids};
    const char *p = block;
    for (int i = 0; i < 6; i++) {
        size_t n = (size_t)c[i] * e[i];
        if (i == 2 && !r->per_head) continue;
        *dst[i] = malloc(n ? n : 1);
        if (!*dst[i]) {
            label_sample_free(ls);
            return tis_error(TIS_ENOMEM, "out of memory");
        }
        if (n) memcpy(*dst[i], p, n);
        p += n;
    }
    ls->answer = strdup(r->answer ? r->answer : "");
    if (!ls->answer) {
        label_sample_free(ls);
        return tis_error(TIS_ENOMEM, "out of memory");
    }
    return 0;
}
