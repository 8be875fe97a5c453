/* train_job: the importance head fitted on label shards (tis train). */
#include "train_job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "label.h"
#include "rng.h"
#include "tis_error.h"

void train_job_defaults(train_job_config *c) {
    *c = (train_job_config){.kind = HEAD_LINEAR, .hidden = 256, .rank = 32, .loss = LOSS_LISTWISE,
                            .topk = 0.1f, .epochs = 20, .batch = 4, .patience = 3, .lr = 1e-3f,
                            .weight_decay = 0.0f, .val_frac = 0.2f, .seed = 42};
}

/* One sample as the head trains on it. */
typedef struct tsample {
    int64_t n;       /* context tokens */
    float *f;        /* [n][d] features, normalised by the head (owned) */
    const float *y;  /* [n] labels (the records'), or [n_out][n] recon scores (per-head) */
    const float *yh; /* [ns][n] recon scores of the trained streams (the records'), or NULL */
    float *q;        /* [d] pooled question feature (owned) */
} tsample;

/* Everything one training run holds; s_trainer_free releases it. */
typedef struct trainer {
    const train_job_config *c;
    label_records recs;
    tsample *s;                  /* [recs.n] */
    head *h;
    int64_t *order;              /* [recs.n]: training samples, then validation */
    int64_t n_train, n_val;
    int64_t n_given_val;         /* --val_labels: the last n_given_val records validate */
    int64_t np;                  /* trained parameters */
    float *grad, *am, *av, *best; /* [np] gradient, Adam moments, best weights */
    float *sc, *dsc;             /* [n_out * longest sample] scores and their gradient */
    int64_t n_out;               /* the head's outputs per token */
    int64_t s0, ns;              /* recon: the streams trained and measured, [s0, s0 + ns) */
    head_loss loss;              /* what it trains with */
    float *sw;                   /* [n_out] per-stream weights of the squared errors, or NULL (all 1) */
    uint64_t rng;
} trainer;

/* recall: of each sample's oracle top 5/10/25 % (per stream, averaged over
 * streams, for recon labels); global: recon, the pooled top 10 % (NAN for
 * a single-score head, whose pooled order says nothing). */
typedef struct epoch_metrics {
    double loss, recall[3], global, global2; /* global2: the pooled top 2 % */
} epoch_metrics;

static const double s_recall_fracs[3] = {0.05, 0.10, 0.25};

static void s_trainer_free(trainer *t) {
    for (int64_t i = 0; t->s && i < t->recs.n; i++) {
        free(t->s[i].f);
        free(t->s[i].q);
    }
    free(t->s);
    label_records_free(&t->recs);
    head_destroy(&t->h);
    free(t->order);
    free(t->grad);
    free(t->am);
    free(t->av);
    free(t->best);
    free(t->sc);
    free(t->dsc);
    free(t->sw);
}

static int s_oom(void) {
    fprintf(stderr, "tis train: out of memory\n");
    return 1;
}

static int s_fail(const char *what) {
    fprintf(stderr, "tis: %s: %s\n", what, tis_last_error());
    return 1;
}

static const char *s_kind_name(head_kind k) { return k == HEAD_MLP ? "mlp" : "linear"; }
static const char *s_loss_name(head_loss l) {
    return l == LOSS_BCE_TOPK ? "bce_topk" : l == LOSS_RECON_MSE ? "recon_mse" : l == LOSS_RECON_RANK ? "recon_rank" : "listwise";
}

/* Appends every directory's samples; a problem is "train: WHAT..." (the reader's message). */
static int s_read_dirs(trainer *t, const char *const *dirs, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (label_dir_read(dirs[i], &t->recs)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", tis_last_error());
            tis_error(TIS_EINVAL, "train: %s%s", what, why);
            return s_fail("reading labels");
        }
    return 0;
}

/* The training samples, then the given validation ones (--val_labels). */
static int s_read_labels(trainer *t) {
    label_records_init(&t->recs);
    if (s_read_dirs(t, t->c->label_dirs, t->c->n_label_dirs, "")) return 1;
    int64_t n_train = t->recs.n;
    if (s_read_dirs(t, t->c->val_dirs, t->c->n_val_dirs, "--val_labels: ")) return 1;
    t->n_given_val = t->recs.n - n_train;
    if (t->c->n_val_dirs && (t->n_given_val < 1 || n_train < 1)) {
        fprintf(stderr, "tis train: %lld training and %lld validation samples (--val_labels); at least 1 of each\n",
                (long long)n_train, (long long)t->n_given_val);
        return 1;
    }
    if (t->recs.target != t->c->target) {
        const char *n = head_target_name(t->recs.target);
        fprintf(stderr, "tis train: the labels are %s labels; train with --target %s\n", n, n);
        return 1;
    }
    if (t->recs.n < 2) {
        fprintf(stderr, "tis train: %lld labelled samples; at least 2 are needed (train + validation)\n",
                (long long)t->recs.n);
        return 1;
    }
    return 0;
}

static void s_shuffle(int64_t *a, int64_t n, uint64_t *rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tis_rng_next(rng) % (uint64_t)(i + 1));
        int64_t x = a[i];
        a[i] = a[j];
        a[j] = x;
    }
}

/* Split by sample (never by token): order[0, n_train) trains, the rest validates
 * (with --val_labels: those samples, every label_dirs sample training). */
static int s_split(trainer *t) {
    int64_t n = t->recs.n;
    if (!(t->order = malloc((size_t)n * sizeof *t->order))) return s_oom();
    for (int64_t i = 0; i < n; i++) t->order[i] = i;
    t->rng = (uint64_t)t->c->seed * TIS_GOLDEN64 + 1;
    if (t->n_given_val) { /* the given validation samples stay last, in their order */
        s_shuffle(t->order, n - t->n_given_val, &t->rng);
        t->n_val = t->n_given_val;
        t->n_train = n - t->n_given_val;
        return 0;
    }
    s_shuffle(t->order, n, &t->rng);
    int64_t n_val = (int64_t)llround(t->c->val_frac * (double)n);
    if (t->c->val_frac > 0 && n_val < 1) n_val = 1;
    if (n_val >= n) n_val = n - 1;
    t->n_val = n_val;
    t->n_train = n - n_val;
    return 0;
}

/* Feature statistics of the training samples only, into the head. */
static int s_standardise(trainer *t) {
    int64_t d = head_feat_dim(t->h), longest = 1;
    for (int64_t i = 0; i < t->n_train; i++)
        if (t->recs.s[t->order[i]].n_ctx > longest) longest = t->recs.s[t->order[i]].n_ctx;
    double *sum = calloc((size_t)d, sizeof(double)), *sq = calloc((size_t)d, sizeof(double));
    float *tmp = malloc((size_t)(longest * d) * sizeof(float));
    if (!sum || !sq || !tmp) {
        free(sum);
        free(sq);
        free(tmp);
        return s_oom();
    }
    int64_t rows = 0;
    for (int64_t i = 0; i < t->n_train; i++) {
        const label_record *r = &t->recs.s[t->order[i]];
        /* a whole sample (positions, repetitions); mean 0 / std 1 still */
        if (head_features(t->h, r->features, r->ctx_ids, r->n_ctx, tmp)) {
            free(sum);
            free(sq);
            free(tmp);
            return s_fail("the features");
        }
        for (int64_t k = 0; k < r->n_ctx; k++, rows++)
            for (int64_t j = 0; j < d; j++) sum[j] += tmp[k * d + j], sq[j] += (double)tmp[k * d + j] * tmp[k * d + j];
    }
    for (int64_t j = 0; j < d; j++) {
        double mu = sum[j] / (double)rows, var = sq[j] / (double)rows - mu * mu;
        t->h->mean[j] = (float)mu;
        t->h->std[j] = (float)sqrt(var > 1e-8 ? var : 1e-8);
    }
    free(sum);
    free(sq);
    free(tmp);
    return 0;
}

/* Normalised features for every sample; the raw rows are freed as we go. */
static int s_normalise(trainer *t) {
    int64_t d = head_feat_dim(t->h), n = t->recs.n;
    if (!(t->s = calloc((size_t)n, sizeof *t->s))) return s_oom();
    for (int64_t i = 0; i < n; i++) {
        label_record *r = &t->recs.s[i];
        tsample *x = &t->s[i];
        x->n = r->n_ctx;
        x->yh = r->labels_per_head ? r->labels_per_head + t->s0 * x->n : NULL;
        x->y = t->n_out > 1 ? x->yh : r->labels;
        x->f = malloc((size_t)(x->n * d) * sizeof(float));
        x->q = malloc((size_t)d * sizeof(float));
        if (!x->f || !x->q) return s_oom();
        if (head_features(t->h, r->features, r->ctx_ids, x->n, x->f)) return s_fail("the features");
        if (r->n_q > 0) head_query(t->h, r->query_features, r->n_q, x->q);
        else memset(x->q, 0, (size_t)d * sizeof(float));
        free(r->features);
        free(r->query_features);
        r->features = r->query_features = NULL;
    }
    return 0;
}

/* A per-head head's output o starts at stream o's mean target over the
 * training samples (the level differs by orders of magnitude between
 * streams; the weights then learn the deviations). */
static void s_init_bias(trainer *t) {
    for (int64_t o = 0; o < t->n_out; o++) {
        double sum = 0;
        int64_t cnt = 0;
        for (int64_t i = 0; i < t->n_train; i++) {
            const tsample *x = &t->s[t->order[i]];
            for (int64_t j = 0; j < x->n; j++, cnt++) {
                float y = x->y[o * x->n + j];
                sum += log(y > HEAD_RECON_FLOOR ? (double)y : HEAD_RECON_FLOOR);
            }
        }
        t->h->b_out[o] = cnt ? (float)(sum / (double)cnt) : 0.0f;
    }
}

/* t->sw: each stream's weight, 1 / sd or 1 / var of its targets over the
 * training samples (sd floored at 1e-3), normalised to mean 1. */
static int s_stream_weights(trainer *t) {
    if (!(t->sw = malloc((size_t)t->n_out * sizeof *t->sw))) return s_oom();
    double total = 0;
    for (int64_t o = 0; o < t->n_out; o++) {
        double sum = 0, sq = 0;
        int64_t cnt = 0;
        for (int64_t i = 0; i < t->n_train; i++) {
            const tsample *x = &t->s[t->order[i]];
            for (int64_t j = 0; j < x->n; j++, cnt++) {
                float y = x->y[o * x->n + j];
                double v = log(y > HEAD_RECON_FLOOR ? (double)y : HEAD_RECON_FLOOR);
                sum += v;
                sq += v * v;
            }
        }
        double mean = cnt ? sum / (double)cnt : 0, var = cnt ? sq / (double)cnt - mean * mean : 0;
        double sd = sqrt(var > 1e-6 ? var : 1e-6);
        t->sw[o] = (float)(t->c->stream_weights == STREAM_WEIGHTS_INV_VAR ? 1.0 / (sd * sd) : 1.0 / sd);
        total += t->sw[o];
    }
    float lo = INFINITY, hi = 0;
    for (int64_t o = 0; o < t->n_out; o++) {
        t->sw[o] = (float)((double)t->sw[o] * (double)t->n_out / total);
        lo = fminf(lo, t->sw[o]);
        hi = fmaxf(hi, t->sw[o]);
    }
    fprintf(stderr, "[train] stream weights 1/%s, mean 1: %.3f to %.3f\n",
            t->c->stream_weights == STREAM_WEIGHTS_INV_VAR ? "var" : "sd", (double)lo, (double)hi);
    return 0;
}

/* The head, standardised and with its training scratch. */
static int s_setup(trainer *t) {
    const train_job_config *c = t->c;
    bool recon = c->target == HEAD_TARGET_RECON;
    if (c->target != HEAD_TARGET_ANSWER && c->query_aware) {
        fprintf(stderr, "tis train: %s labels are query-agnostic (no question rows): no --query_aware\n",
                head_target_name(c->target));
        return 1;
    }
    t->s0 = 0;
    t->ns = t->recs.n_streams;
    if (c->stream_begin || c->stream_end) {
        if (!recon || !c->per_head || c->stream_begin < 0 || c->stream_end > t->recs.n_streams ||
            c->stream_end - c->stream_begin < 2) {
            fprintf(stderr, "tis train: --streams %lld:%lld: a per-head head on reconstruction labels, at least 2 "
                            "of the labels' %lld streams\n",
                    (long long)c->stream_begin, (long long)c->stream_end, (long long)t->recs.n_streams);
            return 1;
        }
        t->s0 = c->stream_begin;
        t->ns = c->stream_end - c->stream_begin;
    }
    t->n_out = recon && c->per_head ? t->ns : 1;
    if (c->loss == LOSS_RECON_RANK && t->n_out == 1) {
        fprintf(stderr, "tis train: --loss recon_rank trains a per-head head on reconstruction labels "
                        "(--target recon --outputs per_head)\n");
        return 1;
    }
    if (c->calibrate && t->n_out == 1) {
        fprintf(stderr, "tis train: --calibrate is for a per-head head (--target recon --outputs per_head)\n");
        return 1;
    }
    if (c->stream_weights != STREAM_WEIGHTS_NONE && t->n_out == 1) {
        fprintf(stderr, "tis train: --stream_weights is for a per-head head (--target recon --outputs per_head)\n");
        return 1;
    }
    if (c->label_lpool && (c->label_lpool < 2 || c->label_lpool > 63 || t->n_out == 1)) {
        fprintf(stderr, "tis train: --label_lpool %lld: a span of 2..63 tokens, for a per-head head "
                        "(--target recon --outputs per_head)\n", (long long)c->label_lpool);
        return 1;
    }
    if (c->label_lpool) label_records_pool_left(&t->recs, c->label_lpool);
    t->loss = t->n_out > 1 ? (c->loss == LOSS_RECON_RANK ? LOSS_RECON_RANK : LOSS_RECON_MSE) : c->loss;
    head_config hc = {.kind = c->kind, .query_aware = c->query_aware, .d_model = t->recs.d_model,
                      .hidden = c->hidden, .rank = c->rank, .layer = t->recs.layer, .n_out = t->n_out,
                      .target = c->target, .n_pos = c->positions ? 2 : 0, .n_rep = c->repeats ? 2 : 0};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", t->recs.model);
    if (head_new(&t->h, &hc, (uint64_t)c->seed)) return s_fail("creating the head");
    int rc = s_split(t);
    if (!rc) rc = s_standardise(t);
    if (!rc) rc = s_normalise(t);
    if (rc) return rc;
    if (t->n_out > 1) s_init_bias(t);
    if (c->stream_weights != STREAM_WEIGHTS_NONE && (rc = s_stream_weights(t))) return rc;
    int64_t maxn = 1;
    for (int64_t i = 0; i < t->recs.n; i++) maxn = t->s[i].n > maxn ? t->s[i].n : maxn;
    t->np = head_n_trained(t->h);
    t->grad = calloc((size_t)t->np, sizeof(float));
    t->am = calloc((size_t)t->np, sizeof(float));
    t->av = calloc((size_t)t->np, sizeof(float));
    t->best = malloc((size_t)t->np * sizeof(float));
    t->sc = malloc((size_t)(maxn * t->n_out) * sizeof(float));
    t->dsc = malloc((size_t)(maxn * t->n_out) * sizeof(float));
    return t->grad && t->am && t->av && t->best && t->sc && t->dsc ? 0 : s_oom();
}

/* Recalls of one sample's scores sc[n_out][n] against its labels:
 * per stream (recon labels: each stream's oracle against its output, or
 * the single score), else the answer labels; adds to m. */
static void s_sample_recalls(const trainer *t, const tsample *x, epoch_metrics *m) {
    const int64_t S = x->yh ? t->ns : 0, n = x->n;
    for (int k = 0; k < 3; k++) {
        if (!S) {
            m->recall[k] += head_recall_at(t->sc, x->y, n, s_recall_fracs[k]);
            continue;
        }
        double r = 0;
        for (int64_t o = 0; o < S; o++)
            r += head_recall_at(t->sc + (t->n_out > 1 ? o * n : 0), x->yh + o * n, n, s_recall_fracs[k]);
        m->recall[k] += r / (double)S;
    }
    if (S && t->n_out > 1) {
        m->global += head_recall_at(t->sc, x->yh, S * n, 0.10);
        m->global2 += head_recall_at(t->sc, x->yh, S * n, 0.02);
    }
}

/* The training loss of sample x's scores t->sc (and its gradient into ds,
 * may be NULL). */
static double s_loss(const trainer *t, const tsample *x, float *ds) {
    if (t->sw) return head_loss_recon(t->loss, t->sc, x->y, t->n_out, x->n, t->sw, ds);
    return head_loss_eval(t->loss, t->sc, x->y, x->n * t->n_out, t->c->topk, ds);
}

/* Mean loss and recalls over the validation samples. */
static int s_evaluate(trainer *t, epoch_metrics *m) {
    memset(m, 0, sizeof *m);
    const int64_t *idx = t->order + t->n_train;
    int64_t n = t->n_val;
    for (int64_t i = 0; i < n; i++) {
        const tsample *x = &t->s[idx[i]];
        int rc = head_forward(t->h, x->f, x->n, t->h->cfg.query_aware ? x->q : NULL, t->sc);
        if (rc) return rc;
        m->loss += s_loss(t, x, NULL);
        s_sample_recalls(t, x, m);
    }
    if (n > 0) {
        m->loss /= (double)n;
        for (int k = 0; k < 3; k++) m->recall[k] /= (double)n;
        m->global /= (double)n;
        m->global2 /= (double)n;
    }
    if (t->n_out == 1) m->global = m->global2 = NAN;
    return 0;
}

/* One pass over the training samples in a new order; *loss: their mean. */
static int s_epoch(trainer *t, int64_t *step, double *loss) {
    const train_job_config *c = t->c;
    int64_t *train = t->order, n_train = t->n_train;
    s_shuffle(train, n_train, &t->rng);
    double tl = 0;
    for (int64_t b0 = 0; b0 < n_train; b0 += c->batch) {
        int64_t b1 = b0 + c->batch < n_train ? b0 + c->batch : n_train;
        memset(t->grad, 0, (size_t)t->np * sizeof(float));
        for (int64_t i = b0; i < b1; i++) {
            const tsample *x = &t->s[train[i]];
            const float *q = c->query_aware ? x->q : NULL;
            int rc = head_forward(t->h, x->f, x->n, q, t->sc);
            if (rc) return rc;
            tl += s_loss(t, x, t->dsc);
            float inv = 1.0f / (float)(b1 - b0);
            for (int64_t j = 0; j < x->n * t->n_out; j++) t->dsc[j] *= inv;
            if ((rc = head_backward(t->h, x->f, x->n, q, t->dsc, t->grad))) return rc;
        }
        head_adam_step(t->h->params, t->grad, t->am, t->av, t->np, ++*step, c->lr, 0.9f, 0.999f, 1e-8f,
                       c->weight_decay);
    }
    *loss = tl / (double)n_train;
    return 0;
}

/* The metrics CSV's path and the curve's beside it. */
static void s_metrics_paths(const train_job_config *c, char *csv, size_t cap, char *png, size_t png_cap) {
    if (c->metrics) {
        snprintf(csv, cap, "%s", c->metrics);
    } else {
        snprintf(csv, cap, "%s", c->output);
        char *dot = strrchr(csv, '.');
        if (dot && !strcmp(dot, ".safetensors")) *dot = 0;
        strncat(csv, "_metrics.csv", cap - strlen(csv) - 1);
    }
    snprintf(png, png_cap, "%s", csv);
    char *dot = strrchr(png, '.');
    if (dot) *dot = 0;
    strncat(png, ".png", png_cap - strlen(png) - 1);
}

/* gnuplot curve next to the CSV (skipped with a note when gnuplot is absent). */
static void s_plot(const char *csv, const char *png) {
    char script[4096];
    snprintf(script, sizeof script,
             "set terminal pngcairo size 960,540; set output '%s'; set datafile separator ',';"
             "set key outside right noenhanced; set xlabel 'epoch'; set ylabel 'loss'; set y2label 'recall';"
             "set y2range [0:1]; set ytics nomirror; set y2tics; set grid;"
             "set title 'importance head: loss and validation recall of the oracle top-k';"
             "plot '%s' skip 1 using 1:2 with linespoints title 'train loss',"
             " '' skip 1 using 1:3 with linespoints title 'val loss',"
             " '' skip 1 using 1:4 axes x1y2 with lines dt 2 lw 2 title 'val recall@5%%',"
             " '' skip 1 using 1:5 axes x1y2 with lines dt 2 lw 2 title 'val recall@10%%',"
             " '' skip 1 using 1:6 axes x1y2 with lines dt 2 lw 2 title 'val recall@25%%'",
             png, csv);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", "-e", script, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "tis train: no curve plot (gnuplot missing or failed)\n");
}

/* Epochs until patience runs out; the head ends with the best epoch's
 * weights. Each epoch is a line of csv. */
static int s_fit(trainer *t, FILE *csv, double *best_loss, int64_t *best_epoch) {
    const train_job_config *c = t->c;
    epoch_metrics vm;
    int rc = s_evaluate(t, &vm);
    if (rc) return rc;
    bool recon = c->target == HEAD_TARGET_RECON;
    fprintf(csv, "0,nan,%.6f,%.4f,%.4f,%.4f,0", vm.loss, vm.recall[0], vm.recall[1], vm.recall[2]);
    if (recon) fprintf(csv, ",%.4f,%.4f", vm.global, vm.global2);
    fputc('\n', csv);
    fprintf(stderr, "[train] %s head%s | %lld params | %lld train / %lld validation samples (by sample) | "
                    "loss %s | features: %s layer %lld\n",
            s_kind_name(c->kind), c->query_aware ? " (query-aware)" : "", (long long)t->np, (long long)t->n_train,
            (long long)t->n_val, s_loss_name(t->loss), t->recs.model, (long long)t->recs.layer);
    if (recon)
        fprintf(stderr, "[train] reconstruction labels, %lld streams (trained: %lld-%lld); %lld output%s per token; "
                        "recall per stream%s\n",
                (long long)t->recs.n_streams, (long long)t->s0, (long long)(t->s0 + t->ns - 1), (long long)t->n_out, t->n_out > 1 ? "s" : "",
                t->n_out > 1 ? " (mean) and pooled over streams (global)" : " (mean)");
    fprintf(stderr, "[train] epoch 0: val loss %.4f recall@5/10/25%% %.3f %.3f %.3f", vm.loss, vm.recall[0],
            vm.recall[1], vm.recall[2]);
    if (recon) fprintf(stderr, " global@10/2%% %.3f %.3f", vm.global, vm.global2);
    fputc('\n', stderr);
    double t0 = tis_now();
    *best_loss = vm.loss;
    *best_epoch = 0;
    memcpy(t->best, t->h->params, (size_t)t->np * sizeof(float));
    int64_t since = 0, step = 0;
    for (int64_t ep = 1; ep <= c->epochs; ep++) {
        double tl;
        if ((rc = s_epoch(t, &step, &tl)) || (rc = s_evaluate(t, &vm))) return rc;
        fprintf(csv, "%lld,%.6f,%.6f,%.4f,%.4f,%.4f,%.2f", (long long)ep, tl, vm.loss, vm.recall[0],
                vm.recall[1], vm.recall[2], tis_now() - t0);
        if (recon) fprintf(csv, ",%.4f,%.4f", vm.global, vm.global2);
        fputc('\n', csv);
        fflush(csv);
        bool better = vm.loss < *best_loss - 1e-6;
        fprintf(stderr, "[train] epoch %lld: train loss %.4f | val loss %.4f recall@5/10/25%% %.3f %.3f %.3f", (long long)ep,
                tl, vm.loss, vm.recall[0], vm.recall[1], vm.recall[2]);
        if (recon) fprintf(stderr, " global@10/2%% %.3f %.3f", vm.global, vm.global2);
        fprintf(stderr, "%s\n", better ? " *" : "");
        if (better) {
            *best_loss = vm.loss;
            *best_epoch = ep;
            memcpy(t->best, t->h->params, (size_t)t->np * sizeof(float));
            since = 0;
        } else if (++since >= c->patience) {
            fprintf(stderr, "[train] early stop: no better validation loss for %lld epochs\n",
                    (long long)c->patience);
            break;
        }
    }
    memcpy(t->h->params, t->best, (size_t)t->np * sizeof(float));
    return 0;
}

/* ---- calibration (per-head heads, head.h) --------------------------------- */

static const double s_pool_fracs[4] = {0.01, 0.02, 0.05, 0.10};

/* Validation recall of the pooled top 1 / 2 / 5 / 10 % (over every trained
 * stream's tokens together: what a global selection keeps), with the
 * head's outputs as they are (raw) and calibrated: one forward per sample. */
static int s_pooled_recalls(trainer *t, double raw[4], double cal[4]) {
    memset(raw, 0, 4 * sizeof *raw);
    memset(cal, 0, 4 * sizeof *cal);
    const int64_t *idx = t->order + t->n_train;
    for (int64_t i = 0; i < t->n_val; i++) {
        const tsample *x = &t->s[idx[i]];
        int rc = head_forward(t->h, x->f, x->n, NULL, t->sc);
        if (rc) return rc;
        for (int k = 0; k < 4; k++) raw[k] += head_recall_at(t->sc, x->yh, t->ns * x->n, s_pool_fracs[k]);
        head_apply_calibration(t->h, t->sc, x->n);
        for (int k = 0; k < 4; k++) cal[k] += head_recall_at(t->sc, x->yh, t->ns * x->n, s_pool_fracs[k]);
    }
    for (int k = 0; k < 4 && t->n_val > 0; k++) raw[k] /= (double)t->n_val, cal[k] /= (double)t->n_val;
    return 0;
}

/* Fits the calibration on the training samples' outputs and ln targets,
 * and reports what it does to the pooled selection on the validation
 * samples (its within-stream order is unchanged). */
static int s_calibrate(trainer *t) {
    int64_t N = 0;
    for (int64_t i = 0; i < t->n_train; i++) N += t->s[t->order[i]].n;
    const int64_t no = t->n_out;
    float *pred = malloc((size_t)(no * N) * sizeof *pred), *tgt = malloc((size_t)(no * N) * sizeof *tgt);
    if (!pred || !tgt) {
        free(pred);
        free(tgt);
        return s_oom();
    }
    int rc = 0;
    for (int64_t i = 0, at = 0; i < t->n_train && !rc; i++) {
        const tsample *x = &t->s[t->order[i]];
        rc = head_forward(t->h, x->f, x->n, NULL, t->sc);
        for (int64_t o = 0; !rc && o < no; o++)
            for (int64_t j = 0; j < x->n; j++) {
                pred[o * N + at + j] = t->sc[o * x->n + j];
                tgt[o * N + at + j] = logf(fmaxf(x->y[o * x->n + j], (float)HEAD_RECON_FLOOR));
            }
        at += x->n;
    }
    double before[4], after[4];
    if (!rc) rc = head_calibrate(t->h, pred, tgt, N);
    if (!rc) rc = s_pooled_recalls(t, before, after);
    free(pred);
    free(tgt);
    if (rc) return s_fail("calibrating the head");
    fprintf(stderr, "[train] calibration: %d knots per stream from %lld training tokens; validation pooled "
                    "recall@1/2/5/10%% %.3f %.3f %.3f %.3f -> %.3f %.3f %.3f %.3f\n", HEAD_CALIB_KNOTS, (long long)N,
            before[0], before[1], before[2], before[3], after[0], after[1], after[2], after[3]);
    return 0;
}

int train_job_run(const train_job_config *c) {
    trainer t = {.c = c};
    int rc = s_read_labels(&t);
    if (!rc) rc = s_setup(&t);
    if (rc) {
        s_trainer_free(&t);
        return rc;
    }
    char metrics[1100], png[1100];
    s_metrics_paths(c, metrics, sizeof metrics, png, sizeof png);
    FILE *csv = fopen(metrics, "wb");
    if (!csv) {
        fprintf(stderr, "tis train: cannot write %s: %s\n", metrics, strerror(errno));
        s_trainer_free(&t);
        return 1;
    }
    fprintf(csv, "epoch,train_loss,val_loss,val_recall_5,val_recall_10,val_recall_25,seconds%s\n",
            c->target == HEAD_TARGET_RECON ? ",val_global_recall_10,val_global_recall_2" : "");
    double best_loss = 0;
    int64_t best_epoch = 0;
    bool ok = s_fit(&t, csv, &best_loss, &best_epoch) == 0;
    fclose(csv);
    if (ok && c->calibrate && t.n_train > 0) ok = s_calibrate(&t) == 0;
    if (ok) {
        snprintf(t.h->label_hash, sizeof t.h->label_hash, "fnv1a64:%016llx", (unsigned long long)t.recs.hash);
        snprintf(t.h->train_command, sizeof t.h->train_command, "%s", c->command ? c->command : "");
        ok = head_save(t.h, c->output) == 0;
    }
    if (ok) {
        s_plot(metrics, png);
        fprintf(stderr, "[train] best epoch %lld (val loss %.4f) -> %s; metrics %s\n", (long long)best_epoch,
                best_loss, c->output, metrics);
    }
    rc = ok ? 0 : s_fail("training");
    s_trainer_free(&t);
    return rc;
}
