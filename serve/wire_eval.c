/* wire_eval: eval samples, settings and rows <-> protobuf-c messages. */
#include "wire_eval.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kv.h"
#include "tis_error.h"

static char *s_or_empty(const char *s) { return (char *)(s ? s : ""); }
static char *s_or_null(char *s) { return s && *s ? s : NULL; }

void wire_eval_sample_view(const bench_sample *s, Tis__EvalSample *m) {
    tis__eval_sample__init(m);
    m->id = (char *)s->id;
    m->prefix = s_or_empty(s->prefix);
    m->context = s_or_empty(s->context);
    m->question = s_or_empty(s->question);
    m->answer_prefix = s_or_empty(s->answer_prefix);
    m->n_answers = (size_t)s->n_answers;
    m->answers = s->answers;
    m->n_distractors = (size_t)s->n_distractors;
    m->distractors = s->distractors;
    m->target_tokens = s->target_tokens;
    m->depth = s->depth;
    m->position = s->position;
    m->meta = s_or_empty(s->meta);
}

int wire_eval_sample_from(const Tis__EvalSample *m, bench_sample *s) {
    memset(s, 0, sizeof *s);
    if (!m || !m->id || !*m->id || !m->context || !*m->context || !m->question || !*m->question)
        return tis_error(TIS_EINVAL, "eval job: a sample needs an id, a context and a question");
    if (strlen(m->id) >= sizeof s->id) return tis_error(TIS_EINVAL, "eval job: sample id too long");
    if (!isfinite(m->depth) || m->depth > 1) return tis_error(TIS_EINVAL, "eval job: bad depth %g", m->depth);
    snprintf(s->id, sizeof s->id, "%s", m->id);
    s->prefix = s_or_null(m->prefix);
    s->context = m->context;
    s->question = m->question;
    s->answer_prefix = s_or_null(m->answer_prefix);
    s->answers = m->answers;
    s->n_answers = (int64_t)m->n_answers;
    s->distractors = m->distractors;
    s->n_distractors = (int64_t)m->n_distractors;
    s->target_tokens = m->target_tokens;
    s->depth = m->depth;
    s->position = m->position;
    s->meta = s_or_null(m->meta);
    return 0;
}

void wire_eval_spec_view(const eval_config *cfg, const char *model_name, Tis__EvalSpec *m) {
    tis__eval_spec__init(m);
    m->n_policies = (size_t)cfg->n_policies;
    m->policies = (char **)cfg->policies;
    m->n_budgets = (size_t)cfg->n_budgets;
    m->budgets = (double *)cfg->budgets;
    m->n_budget_tokens = (size_t)cfg->n_budget_tokens;
    m->budget_tokens = (int64_t *)cfg->budget_tokens;
    m->agnostic = cfg->agnostic;
    m->query_aware = cfg->query_aware;
    m->max_new = (uint32_t)cfg->max_new;
    m->window = (uint32_t)cfg->window;
    m->n_sink = (uint32_t)cfg->n_sink;
    m->seed = cfg->seed;
    m->chat = cfg->chat;
    m->use_model_answer = cfg->use_model_answer;
    m->head = s_or_empty(cfg->head_path);
    m->head_query = s_or_empty(cfg->head_query_path);
    m->attn_hook_lambda = cfg->attn_hook_lambda;
    m->batch = (uint32_t)cfg->batch;
    m->model_name = s_or_empty(model_name);
    m->n_thresholds = (size_t)cfg->n_thresholds;
    m->thresholds = (double *)cfg->thresholds;
    m->n_head_as = (size_t)cfg->n_head_as;
    m->head_as = (char **)cfg->head_as;
}

int wire_eval_spec_from(const Tis__EvalSpec *m, eval_config *cfg) {
    eval_config_defaults(cfg);
    if (!m || m->n_policies == 0 || (m->n_budgets == 0 && m->n_budget_tokens == 0))
        return tis_error(TIS_EINVAL, "eval job: the spec needs policies and budgets");
    if (!m->agnostic && !m->query_aware) return tis_error(TIS_EINVAL, "eval job: no protocol");
    if (m->max_new < 1 || m->max_new > 4096 || m->window > 1 << 20 || m->n_sink > 1 << 20 ||
        m->batch < 1 || m->batch > 4096 || !isfinite(m->attn_hook_lambda))
        return tis_error(TIS_EINVAL, "eval job: max_new, window, n_sink, batch or lambda out of range");
    for (size_t i = 0; i < m->n_budgets; i++)
        if (!(m->budgets[i] > 0 && m->budgets[i] <= 1))
            return tis_error(TIS_EINVAL, "eval job: budget %g is not in (0, 1]", m->budgets[i]);
    for (size_t i = 0; i < m->n_budget_tokens; i++)
        if (m->budget_tokens[i] < 1) return tis_error(TIS_EINVAL, "eval job: a token budget must be >= 1");
    for (size_t i = 0; i < m->n_thresholds; i++)
        if (!(m->thresholds[i] > 0 && m->thresholds[i] <= 1))
            return tis_error(TIS_EINVAL, "eval job: threshold %g is not in (0, 1]", m->thresholds[i]);
    if (m->n_head_as > 64) return tis_error(TIS_EINVAL, "eval job: %zu named heads (64 at most)", m->n_head_as);
    cfg->head_as = (const char *const *)m->head_as; /* checked with the policies by eval_runner_new */
    cfg->n_head_as = (int64_t)m->n_head_as;
    cfg->thresholds = m->thresholds;
    cfg->n_thresholds = (int64_t)m->n_thresholds;
    cfg->policies = (const char *const *)m->policies;
    cfg->n_policies = (int64_t)m->n_policies;
    cfg->budgets = m->budgets;
    cfg->n_budgets = (int64_t)m->n_budgets;
    cfg->budget_tokens = m->budget_tokens;
    cfg->n_budget_tokens = (int64_t)m->n_budget_tokens;
    cfg->agnostic = m->agnostic;
    cfg->query_aware = m->query_aware;
    cfg->max_new = m->max_new;
    cfg->window = m->window;
    cfg->n_sink = m->n_sink;
    cfg->seed = m->seed;
    cfg->chat = m->chat;
    cfg->use_model_answer = m->use_model_answer;
    cfg->head_path = s_or_null(m->head);
    cfg->head_query_path = s_or_null(m->head_query);
    cfg->attn_hook_lambda = m->attn_hook_lambda;
    cfg->batch = m->batch;
    return 0;
}

void wire_eval_row_view(const eval_row *r, Tis__EvalRow *m) {
    tis__eval_row__init(m);
    m->benchmark = (char *)r->benchmark;
    m->policy = (char *)r->policy;
    m->protocol = (char *)r->protocol;
    m->budget = r->budget;
    m->budget_tokens = r->budget_tokens;
    m->context_tokens = r->context_tokens;
    m->target_tokens = r->target_tokens;
    m->depth = r->depth;
    m->position = r->position;
    m->sample_id = (char *)r->sample_id;
    m->correct = r->correct;
    m->exact = r->exact;
    m->hallucinated = r->hallucinated;
    m->answer = (char *)r->answer;
    m->expected = (char *)r->expected;
    m->kept_tokens = r->kept_tokens;
    m->kv_bytes = r->kv_bytes;
    m->full_kv_bytes = r->full_kv_bytes;
    m->prefill_s = r->prefill_s;
    m->compress_s = r->compress_s;
    m->decode_s = r->decode_s;
    m->ttft_s = r->ttft_s;
    m->tokens_per_s = r->tokens_per_s;
    m->n_generated = r->n_generated;
    m->peak_rss_bytes = r->peak_rss_bytes;
    m->threshold = r->threshold;
    m->kv_type = (char *)r->kv_type;
}

/* Copies a string field into a fixed buffer; an overlong one is an error
 * (a worker never writes one: eval_row's own fields bound them). */
static int s_copy(char *dst, size_t cap, const char *src, const char *what) {
    if (!src) src = "";
    if (strlen(src) >= cap) return tis_error(TIS_EINVAL, "eval row: %s longer than %zu bytes", what, cap - 1);
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int wire_eval_row_from(const Tis__EvalRow *m, eval_row *r) {
    memset(r, 0, sizeof *r);
    int rc = 0;
    if ((rc = s_copy(r->benchmark, sizeof r->benchmark, m->benchmark, "benchmark")) ||
        (rc = s_copy(r->policy, sizeof r->policy, m->policy, "policy")) ||
        (rc = s_copy(r->protocol, sizeof r->protocol, m->protocol, "protocol")) ||
        (rc = s_copy(r->sample_id, sizeof r->sample_id, m->sample_id, "sample id")) ||
        (rc = s_copy(r->answer, sizeof r->answer, m->answer, "answer")) ||
        (rc = s_copy(r->expected, sizeof r->expected, m->expected, "expected")) ||
        (rc = s_copy(r->kv_type, sizeof r->kv_type, m->kv_type, "kv type")))
        return rc;
    r->budget = m->budget;
    r->budget_tokens = m->budget_tokens;
    r->context_tokens = m->context_tokens;
    r->target_tokens = m->target_tokens;
    r->depth = m->depth;
    r->position = m->position;
    r->correct = m->correct;
    r->exact = m->exact;
    r->hallucinated = m->hallucinated;
    r->kept_tokens = m->kept_tokens;
    r->kv_bytes = m->kv_bytes;
    r->full_kv_bytes = m->full_kv_bytes;
    r->prefill_s = m->prefill_s;
    r->compress_s = m->compress_s;
    r->decode_s = m->decode_s;
    r->ttft_s = m->ttft_s;
    r->tokens_per_s = m->tokens_per_s;
    r->n_generated = m->n_generated;
    r->peak_rss_bytes = m->peak_rss_bytes;
    r->threshold = m->threshold > 0 ? m->threshold : -1; /* absent (0): a fixed budget */
    if (!(r->threshold == -1 || r->threshold <= 1)) return tis_error(TIS_EINVAL, "eval row: threshold %g", r->threshold);
    if (r->kv_type[0] && kv_types_parse(r->kv_type, &(kv_types){0}) != 0)
        return tis_error(TIS_EINVAL, "eval row: kv type '%.23s' is not a cache type", r->kv_type);
    return 0;
}
