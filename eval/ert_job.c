/* ert_job: end-to-end fine-tuning of the importance head (ert_job.h). */
#include "ert_job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "bench.h"
#include "eval.h"
#include "forward.h"
#include "head.h"
#include "session.h"
#include "tis_error.h"
#include "clock.h"

enum { MAX_BUDGETS = 16 };

/* One training or validation sample, prepared once. */
typedef struct ert_sample {
    char id[96];
    kv_cache *kv;            /* prefix + context (the agnostic prefill), room for the suffix */
    int64_t ctx_begin, n_ctx;
    float *feat;             /* [n_ctx][d_model] the head's features */
    int32_t *suf;            /* [T] suffix then the answer, teacher-forced */
    int64_t T;
    int64_t *rows;           /* [n_rows] suffix rows predicting the answer's tokens */
    int64_t n_rows;
    float *ref;              /* [n_rows][n_vocab] the full cache's log-probabilities */
} ert_sample;

typedef struct ert_run {
    const ert_config *c;
    model *m;
    forward_state *st;
    chat_template ct;
    bool have_ct;
    head *h;
    suffix_grad *g;
    ert_sample *smp;
    int64_t n_smp, n_train;
    /* per step scratch */
    float *scores, *bias, *dbias, *dsc, *ds, *grad, *adam_m, *adam_v;
    size_t scratch_ctx, scratch_e;
    int64_t step, seen;   /* Adam steps, training samples seen (cycles the budgets) */
} ert_run;

void ert_config_defaults(ert_config *c) {
    static const float budgets[] = {0.02f, 0.1f};
    memset(c, 0, sizeof *c);
    c->context_tokens = 1024;
    c->n_samples = 24;
    c->seed = 2001;
    c->budgets = budgets;
    c->n_budgets = 2;
    c->beta = 4.0f;
    c->lr = 1e-4f;
    c->epochs = 6;
    c->batch = 4;
    c->patience = 2;
    c->val_frac = 0.25f;
    c->max_answer = 16;
    c->chat = true;
}

static void s_sample_free(ert_sample *s) {
    kv_cache_destroy(&s->kv);
    free(s->feat), free(s->suf), free(s->rows), free(s->ref);
    memset(s, 0, sizeof *s);
}

/* The suffix, the answer after it and the rows that predict the answer. */
static int s_suffix(ert_run *r, session *ss, const session_input *in, ert_sample *o) {
    const int32_t *rest = NULL;
    int64_t n_rest = 0, n_ans = 0;
    int32_t *ans = NULL;
    session_rest(ss, false, &rest, &n_rest);
    int rc = session_answer_ids(r->m->tok, in, &ans, &n_ans);
    if (rc) return rc;
    if (n_ans > r->c->max_answer) n_ans = r->c->max_answer;
    if (n_ans < 1) {
        free(ans);
        return tis_error(TIS_EINVAL, "ert: sample %s has no answer tokens", o->id);
    }
    o->T = n_rest + n_ans - 1;
    o->n_rows = n_ans;
    o->suf = malloc((size_t)o->T * sizeof *o->suf);
    o->rows = malloc((size_t)n_ans * sizeof *o->rows);
    if (!o->suf || !o->rows) rc = tis_error(TIS_ENOMEM, "ert: out of memory");
    if (!rc) {
        memcpy(o->suf, rest, (size_t)n_rest * sizeof *rest);
        memcpy(o->suf + n_rest, ans, (size_t)(n_ans - 1) * sizeof *ans);
        for (int64_t a = 0; a < n_ans; a++) o->rows[a] = n_rest - 1 + a;
    }
    free(ans);
    return rc;
}

static int s_prepare(ert_run *r, const bench_sample *bs, ert_sample *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", bs->id);
    session_input in;
    eval_session_input(bs, &in);
    if (!in.answer) return tis_error(TIS_EINVAL, "ert: sample %s has no expected answer", bs->id);
    session_opts so = {.chat = r->c->chat, .agnostic = true, .window = 64, .n_sink = 4,
                       .hid_layer = r->h->cfg.layer};
    session *ss = NULL;
    float *hid = NULL;
    int64_t n_ctx = 0, n_q = 0, kept = 0;
    double secs = 0;
    press full;
    int rc = press_parse("full", &full);
    if (!rc) rc = session_new(&ss, r->st, r->have_ct ? &r->ct : NULL, &in, &so);
    if (!rc) rc = session_hidden(ss, &hid, &n_ctx, &n_q);
    if (!rc) rc = session_compact(ss, &full, false, n_ctx, 0, -1.0f, &o->kv, &kept, &secs);
    if (!rc) rc = s_suffix(r, ss, &in, o);
    if (!rc && o->T > 1024) rc = tis_error(TIS_ERANGE, "ert: sample %s: a suffix of %lld tokens", o->id, (long long)o->T);
    if (!rc) {
        const session_prompt *p = session_get_prompt(ss);
        o->ctx_begin = p->ctx_begin;
        o->n_ctx = n_ctx;
        o->feat = malloc((size_t)(n_ctx * head_feat_dim(r->h)) * sizeof *o->feat);
        o->ref = malloc((size_t)(o->n_rows * r->m->config.n_vocab) * sizeof *o->ref);
        if (!o->feat || !o->ref) rc = tis_error(TIS_ENOMEM, "ert: out of memory for sample %s", o->id);
    }
    /* entry ctx_begin + j of every stream is context token j (an uncompressed fork) */
    for (int64_t s = 0; !rc && s < o->kv->n_stream; s++)
        if (o->kv->len[s] != o->ctx_begin + n_ctx || kv_cache_pos(o->kv, s)[o->ctx_begin] != o->ctx_begin)
            rc = tis_error(TIS_EINVAL, "ert: sample %s: unexpected cache layout", o->id);
    if (!rc) rc = head_features(r->h, hid, session_get_prompt(ss)->ids + o->ctx_begin, n_ctx, o->feat);
    if (!rc) rc = suffix_logprobs(r->g, o->kv, NULL, o->suf, o->T, o->rows, o->n_rows, o->ref);
    free(hid);
    session_destroy(&ss);
    if (rc) s_sample_free(o);
    return rc;
}

static int s_cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The head's scores of a sample, the threshold that keeps `frac` of the
 * context (pooled over streams for a per-head head) and their spread. */
static int s_scores(ert_run *r, const ert_sample *o, double frac, float *tau, float *sd) {
    int64_t n_out = r->h->cfg.n_out, n = n_out * o->n_ctx;
    int rc = head_forward(r->h, o->feat, o->n_ctx, NULL, r->scores);
    if (rc) return rc;
    float *tmp = r->ds; /* free until the backward */
    memcpy(tmp, r->scores, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, s_cmp_desc);
    int64_t k = session_budget(frac, 0, o->n_ctx) * n_out;
    *tau = 0.5f * (tmp[k - 1] + tmp[k < n ? k : n - 1]);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += tmp[i];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) v += (tmp[i] - m) * (tmp[i] - m);
    *sd = (float)fmax(sqrt(v / (double)n), 1e-6);
    return 0;
}

void ert_soft_bias(const kv_cache *kv, int64_t ctx_begin, int64_t n_ctx, const float *scores, int64_t n_out,
                   float tau, float sd, float beta, bool soft, float *bias, float *dsc) {
    size_t ne = (size_t)(kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1]);
    memset(bias, 0, ne * sizeof *bias);
    for (int64_t s = 0; s < kv->n_stream; s++)
        for (int64_t j = 0; j < n_ctx; j++) {
            int64_t e = kv->off[s] + ctx_begin + j;
            float x = beta * (scores[(n_out > 1 ? s * n_ctx : 0) + j] - tau) / sd;
            if (!soft) {
                bias[e] = x > 0 ? 0.0f : -1e4f;
                continue;
            }
            bias[e] = x > 0 ? -log1pf(expf(-x)) : x - log1pf(expf(x)); /* log sigmoid(x) */
            dsc[e] = beta / sd / (1.0f + expf(x));                       /* beta/sd * sigmoid(-x) */
        }
}

void ert_scores_grad(const kv_cache *kv, int64_t ctx_begin, int64_t n_ctx, int64_t n_out, const float *dbias,
                     const float *dsc, float *ds) {
    memset(ds, 0, (size_t)(n_out * n_ctx) * sizeof *ds);
    for (int64_t s = 0; s < kv->n_stream; s++)
        for (int64_t j = 0; j < n_ctx; j++) {
            int64_t e = kv->off[s] + ctx_begin + j;
            ds[(n_out > 1 ? s * n_ctx : 0) + j] += dbias[e] * dsc[e];
        }
}

static int s_grow(float **p, size_t n) {
    float *q = realloc(*p, (n ? n : 1) * sizeof *q);
    if (!q) return tis_error(TIS_ENOMEM, "ert: out of memory");
    *p = q;
    return 0;
}

static int s_scratch(ert_run *r, const ert_sample *o) {
    size_t nc = (size_t)(r->h->cfg.n_out * o->n_ctx);
    const kv_cache *kv = o->kv;
    size_t ne = (size_t)(kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1]);
    int rc = 0;
    if (nc > r->scratch_ctx) {
        rc = s_grow(&r->scores, nc);
        if (!rc) rc = s_grow(&r->ds, nc);
        if (!rc) r->scratch_ctx = nc;
    }
    if (!rc && ne > r->scratch_e) {
        rc = s_grow(&r->bias, ne);
        if (!rc) rc = s_grow(&r->dbias, ne);
        if (!rc) rc = s_grow(&r->dsc, ne);
        if (!rc) r->scratch_e = ne;
    }
    return rc;
}

/* One training sample: loss and head gradient accumulated into r->grad. */
static int s_train_one(ert_run *r, const ert_sample *o, double frac, double *loss) {
    float tau, sd;
    int rc = s_scratch(r, o);
    if (!rc) rc = s_scores(r, o, frac, &tau, &sd);
    if (rc) return rc;
    const kv_cache *kv = o->kv;
    int64_t n_out = r->h->cfg.n_out;
    ert_soft_bias(kv, o->ctx_begin, o->n_ctx, r->scores, n_out, tau, sd, r->c->beta, true, r->bias, r->dsc);
    size_t ne = (size_t)(kv->off[kv->n_stream - 1] + kv->cap[kv->n_stream - 1]);
    memset(r->dbias, 0, ne * sizeof *r->dbias);
    rc = suffix_kl_grad(r->g, kv, r->bias, o->suf, o->T, o->rows, o->n_rows, o->ref, loss, r->dbias);
    if (rc) return rc;
    ert_scores_grad(kv, o->ctx_begin, o->n_ctx, n_out, r->dbias, r->dsc, r->ds);
    return head_backward(r->h, o->feat, o->n_ctx, NULL, r->ds, r->grad);
}

/* KL with the hard eviction at budget frac. */
static int s_val_one(ert_run *r, const ert_sample *o, double frac, double *kl) {
    float tau, sd;
    int rc = s_scratch(r, o);
    if (!rc) rc = s_scores(r, o, frac, &tau, &sd);
    if (rc) return rc;
    ert_soft_bias(o->kv, o->ctx_begin, o->n_ctx, r->scores, r->h->cfg.n_out, tau, sd, r->c->beta, false, r->bias,
                  NULL);
    int64_t V = r->m->config.n_vocab;
    float *lp = malloc((size_t)(o->n_rows * V) * sizeof *lp);
    if (!lp) return tis_error(TIS_ENOMEM, "ert: out of memory");
    rc = suffix_logprobs(r->g, o->kv, r->bias, o->suf, o->T, o->rows, o->n_rows, lp);
    double sum = 0;
    for (int64_t i = 0; !rc && i < o->n_rows * V; i++) sum += exp((double)o->ref[i]) * ((double)o->ref[i] - lp[i]);
    free(lp);
    *kl = sum / (double)o->n_rows;
    return rc;
}

/* Mean hard KL per answer token over the validation samples, per budget. */
static int s_validate(ert_run *r, double *per_budget, double *mean) {
    *mean = 0;
    for (int64_t b = 0; b < r->c->n_budgets; b++) {
        double sum = 0;
        for (int64_t i = r->n_train; i < r->n_smp; i++) {
            double kl = 0;
            int rc = s_val_one(r, &r->smp[i], r->c->budgets[b], &kl);
            if (rc) return rc;
            sum += kl;
        }
        per_budget[b] = sum / (double)(r->n_smp - r->n_train);
        *mean += per_budget[b] / (double)r->c->n_budgets;
    }
    return 0;
}

static int s_epoch(ert_run *r, uint64_t *rng, double *train_loss) {
    const ert_config *c = r->c;
    int64_t nt = r->n_train, np = head_n_trained(r->h), in_batch = 0;
    int64_t *order = malloc((size_t)nt * sizeof *order);
    if (!order) return tis_error(TIS_ENOMEM, "ert: out of memory");
    for (int64_t i = 0; i < nt; i++) order[i] = i;
    for (int64_t i = nt - 1; i > 0; i--) { /* Fisher-Yates, xorshift */
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        int64_t j = (int64_t)(*rng % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    double sum = 0;
    int rc = 0;
    memset(r->grad, 0, (size_t)np * sizeof *r->grad);
    for (int64_t i = 0; i < nt && !rc; i++) {
        double loss = 0;
        const ert_sample *o = &r->smp[order[i]];
        rc = s_train_one(r, o, c->budgets[r->seen++ % c->n_budgets], &loss);
        sum += loss / (double)o->n_rows;
        if (!rc && (++in_batch == c->batch || i == nt - 1)) {
            for (int64_t p = 0; p < np; p++) r->grad[p] /= (float)in_batch;
            head_adam_step(r->h->params, r->grad, r->adam_m, r->adam_v, np, ++r->step, c->lr, 0.9f, 0.999f, 1e-8f,
                           c->weight_decay);
            memset(r->grad, 0, (size_t)np * sizeof *r->grad);
            in_batch = 0;
        }
    }
    free(order);
    *train_loss = sum / (double)nt;
    return rc;
}

static int s_fail(const char *what) {
    fprintf(stderr, "tis train: %s: %s\n", what, tis_last_error());
    return 1;
}

/* Model, template, head, scratch. */
static int s_setup(ert_run *r) {
    const ert_config *c = r->c;
    if (model_load(&r->m, c->model_path)) return s_fail("loading the model");
    const model_config *mc = &r->m->config;
    if (head_load(&r->h, c->init_head) ||
        head_check_model(r->h, mc->name, mc->d_model, mc->n_layer, mc->n_kv_head))
        return s_fail("the starting head");
    if (r->h->cfg.query_aware) {
        fprintf(stderr, "tis train: --target ert fine-tunes a query-agnostic head; %s is query-aware\n", c->init_head);
        return 1;
    }
    if (r->h->n_calib) { /* the selection it trains is on the outputs themselves */
        fprintf(stderr, "[ert] the starting head's calibration is dropped: fine-tuning shapes the outputs the "
                        "selection uses\n");
        head_uncalibrate(r->h);
    }
    if (r->h->cfg.n_out != 1 && r->h->cfg.n_out != mc->n_layer * mc->n_kv_head) {
        fprintf(stderr, "tis train: the head has %lld outputs (1 or one per stream)\n", (long long)r->h->cfg.n_out);
        return 1;
    }
    if (forward_state_new(&r->st, r->m, backend_cpu(), 512)) return s_fail("forward state");
    if (c->chat && tokenizer_chat_template(r->m->tok)) {
        if (chat_template_init(&r->ct, tokenizer_chat_template(r->m->tok))) return s_fail("chat template");
        r->have_ct = true;
    }
    if (suffix_grad_new(&r->g, r->m, 1024)) return s_fail("backward scratch");
    size_t np = (size_t)r->h->n_params;
    r->grad = calloc(np, sizeof *r->grad);
    r->adam_m = calloc(np, sizeof *r->adam_m);
    r->adam_v = calloc(np, sizeof *r->adam_v);
    if (!r->grad || !r->adam_m || !r->adam_v) {
        fprintf(stderr, "tis train: out of memory\n");
        return 1;
    }
    return 0;
}

/* Generates every benchmark's samples and prepares them; the first
 * n_train train, the rest (every k-th sample) validate. */
static int s_samples(ert_run *r) {
    const ert_config *c = r->c;
    int64_t cap = c->n_benchmarks * c->n_samples;
    ert_sample *all = calloc((size_t)(cap ? cap : 1), sizeof *all);
    if (!all) return s_fail("samples");
    int64_t n = 0;
    double t0 = tis_now();
    for (int64_t b = 0; b < c->n_benchmarks; b++) {
        bench_spec sp = {.name = c->benchmarks[b], .n_samples = c->n_samples, .context_tokens = &c->context_tokens,
                         .n_context = 1, .seed = c->seed + (uint64_t)b, .haystack = c->haystack, .n_keys = 4,
                         .phrasing = c->phrasing};
        bench_set set = {0};
        if (bench_generate(&sp, r->m->tok, &set)) {
            free(all);
            return s_fail("generating the samples");
        }
        for (int64_t i = 0; i < set.n; i++) {
            if (s_prepare(r, &set.s[i], &all[n])) {
                fprintf(stderr, "tis train: sample %s skipped: %s\n", set.s[i].id, tis_last_error());
                continue;
            }
            n++;
            fprintf(stderr, "\r[ert] prepared %lld/%lld samples (%.0f s)", (long long)n, (long long)cap,
                    tis_now() - t0);
        }
        bench_set_free(&set);
    }
    fprintf(stderr, "\n");
    /* validation: every k-th sample, so each benchmark has its share */
    int64_t n_val = c->val_frac > 0 ? (int64_t)(c->val_frac * (double)n + 0.5) : 0;
    if (n_val < 1) n_val = 1;
    if (n - n_val < 1) {
        for (int64_t i = 0; i < n; i++) s_sample_free(&all[i]);
        free(all);
        fprintf(stderr, "tis train: %lld usable samples: too few to train and validate\n", (long long)n);
        return 1;
    }
    r->smp = calloc((size_t)n, sizeof *r->smp);
    if (!r->smp) return s_fail("samples");
    int64_t step = n / n_val, it = 0, iv = n - n_val;
    for (int64_t i = 0; i < n; i++) {
        bool val = (i % step == step - 1) && iv < n;
        r->smp[val ? iv++ : it++] = all[i];
    }
    r->n_smp = n;
    r->n_train = it;
    free(all);
    return 0;
}

static void s_row(FILE *f, int64_t epoch, double train, const double *vb, int64_t nb, double mean, double secs) {
    if (!f) return;
    fprintf(f, "%lld,%.6f", (long long)epoch, train);
    for (int64_t b = 0; b < nb; b++) fprintf(f, ",%.6f", vb[b]);
    fprintf(f, ",%.6f,%.1f\n", mean, secs);
    fflush(f);
}

static int s_train(ert_run *r, FILE *csv) {
    const ert_config *c = r->c;
    double vb[MAX_BUDGETS], mean = 0, best = 0, t0 = tis_now();
    size_t np = (size_t)r->h->n_params;
    float *best_params = malloc(np * sizeof *best_params);
    if (!best_params) return s_fail("out of memory");
    memcpy(best_params, r->h->params, np * sizeof *best_params);
    if (s_validate(r, vb, &mean)) return s_fail("validation");
    best = mean;
    fprintf(stderr, "[ert] epoch 0 (the starting head): validation KL per answer token %.4f", mean);
    for (int64_t b = 0; b < c->n_budgets; b++) fprintf(stderr, " | %.3g: %.4f", c->budgets[b], vb[b]);
    fprintf(stderr, "\n");
    s_row(csv, 0, NAN, vb, c->n_budgets, mean, tis_now() - t0);
    uint64_t rng = c->seed * 2654435761u + 1;
    int64_t best_epoch = 0;
    for (int64_t e = 1; e <= c->epochs && e - best_epoch <= c->patience; e++) {
        double tl = 0;
        if (s_epoch(r, &rng, &tl) || s_validate(r, vb, &mean)) {
            free(best_params);
            return s_fail("training");
        }
        fprintf(stderr, "[ert] epoch %lld: train soft KL %.4f, validation KL %.4f", (long long)e, tl, mean);
        for (int64_t b = 0; b < c->n_budgets; b++) fprintf(stderr, " | %.3g: %.4f", c->budgets[b], vb[b]);
        fprintf(stderr, " (%.0f s)%s\n", tis_now() - t0, mean < best ? " best" : "");
        s_row(csv, e, tl, vb, c->n_budgets, mean, tis_now() - t0);
        if (mean < best) {
            best = mean, best_epoch = e;
            memcpy(best_params, r->h->params, np * sizeof *best_params);
        }
    }
    memcpy(r->h->params, best_params, np * sizeof *best_params);
    free(best_params);
    fprintf(stderr, "[ert] best epoch %lld: validation KL %.4f\n", (long long)best_epoch, best);
    return 0;
}

int ert_job_run(const ert_config *c) {
    if (!c->model_path || !c->init_head || !c->output || c->n_benchmarks < 1 || c->n_budgets < 1 ||
        c->n_budgets > MAX_BUDGETS) {
        fprintf(stderr, "tis train: --target ert needs -m MODEL, --init HEAD, --output, --benchmark and 1..%d budgets\n",
                MAX_BUDGETS);
        return 1;
    }
    ert_run r = {.c = c};
    int rc = s_setup(&r);
    if (!rc) rc = s_samples(&r);
    char mpath[1100];
    if (c->metrics) snprintf(mpath, sizeof mpath, "%s", c->metrics);
    else {
        snprintf(mpath, sizeof mpath, "%s", c->output);
        char *dot = strstr(mpath, ".safetensors");
        snprintf(dot ? dot : mpath + strlen(mpath), 32, "_metrics.csv");
    }
    FILE *csv = rc ? NULL : fopen(mpath, "w");
    if (!rc && !csv) rc = s_fail("the metrics file");
    if (csv) {
        fprintf(csv, "epoch,train_soft_kl");
        for (int64_t b = 0; b < c->n_budgets; b++) fprintf(csv, ",val_kl_%g", c->budgets[b]);
        fprintf(csv, ",val_kl_mean,seconds\n");
    }
    if (!rc) {
        fprintf(stderr, "[ert] %lld training, %lld validation samples; budgets", (long long)r.n_train,
                (long long)(r.n_smp - r.n_train));
        for (int64_t b = 0; b < c->n_budgets; b++) fprintf(stderr, " %g", c->budgets[b]);
        fprintf(stderr, "; beta %g, lr %g\n", c->beta, c->lr);
        rc = s_train(&r, csv);
    }
    if (csv) fclose(csv);
    if (!rc) {
        snprintf(r.h->train_command, sizeof r.h->train_command, "%s", c->command ? c->command : "");
        if (head_save(r.h, c->output)) rc = s_fail("saving the head");
        else fprintf(stderr, "[ert] saved %s (metrics %s)\n", c->output, mpath);
    }
    for (int64_t i = 0; i < r.n_smp; i++) s_sample_free(&r.smp[i]);
    free(r.smp);
    free(r.scores), free(r.bias), free(r.dbias), free(r.dsc), free(r.ds), free(r.grad), free(r.adam_m), free(r.adam_v);
    suffix_grad_destroy(&r.g);
    if (r.have_ct) chat_template_free(&r.ct);
    forward_state_destroy(&r.st);
    head_destroy(&r.h);
    model_destroy(&r.m);
    return rc ? 1 : 0;
}
