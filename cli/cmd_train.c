/* tis train: fits the importance head on `tis label` shards (in C: forward,
 * backward, Adam over OpenBLAS), split by sample, early stopping on the
 * validation loss, metrics per epoch to CSV and a PNG curve. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "generate.h"
#include "head.h"
#include "label.h"
#include "safetensors.h"
#include "tis_error.h"
#include "rng.h"

enum { MAX_DIRS = 16 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis train --labels DIR... --output HEAD.safetensors [options]\n"
            "      --labels DIR...      directories written by tis label (same model and layer)\n"
            "      --head linear|mlp    (default linear)\n"
            "      --hidden N           mlp width (default 256)\n"
            "      --query_aware        add the question's pooled feature (for tis_query)\n"
            "      --rank N             bilinear rank of the query term (default 32)\n"
            "      --loss listwise|bce_topk   (default listwise)\n"
            "      --topk F             bce_topk: positives are the top F of each sample (default 0.1)\n"
            "      --epochs N           at most (default 20)\n"
            "      --lr LR              Adam learning rate (default 1e-3)\n"
            "      --weight_decay W     decoupled weight decay (default 0)\n"
            "      --batch N            samples per Adam step (default 4)\n"
            "      --val_frac F         validation share, by sample (default 0.2)\n"
            "      --patience N         stop after N epochs without a better validation loss (default 3)\n"
            "      --seed S             split, order and initial weights (default 42)\n"
            "      --metrics PATH.csv   per-epoch metrics (default HEAD_metrics.csv; + .png curve)\n"
            "  -t, --threads N          BLAS threads\n");
}

/* One labelled sample, features already normalised by the head. */
typedef struct tsample {
    int64_t n;       /* context tokens */
    float *f;        /* [n][d] */
    float *y;        /* [n] labels */
    float *q;        /* [d] pooled question feature (query-aware) */
} tsample;

typedef struct dataset {
    tsample *s;
    int64_t n, cap;
    int64_t d_model, layer;
    char model[128];
    uint64_t hash;   /* FNV-1a over ids, labels and features as read */
    float **raw;     /* per sample: raw f32 rows [n][d] before normalisation (freed after stats) */
    float **rawq;    /* per sample: raw question rows */
    int64_t *nq;
} dataset;

static uint64_t s_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int s_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int s_grow(dataset *ds) {
    if (ds->n < ds->cap) return 0;
    int64_t nc = ds->cap ? 2 * ds->cap : 64;
    tsample *s = realloc(ds->s, (size_t)nc * sizeof *s);
    float **r = realloc(ds->raw, (size_t)nc * sizeof *r);
    if (s) ds->s = s;
    if (r) ds->raw = r;
    float **rq = realloc(ds->rawq, (size_t)nc * sizeof *rq);
    if (rq) ds->rawq = rq;
    int64_t *nq = realloc(ds->nq, (size_t)nc * sizeof *nq);
    if (nq) ds->nq = nq;
    if (!s || !r || !rq || !nq) return tis_error(TIS_ENOMEM, "train: out of memory");
    ds->cap = nc;
    return 0;
}

static const st_tensor *s_need(const st_file *f, const char *name, st_dtype dt, int dims) {
    const st_tensor *t = st_tensor_find(f, name);
    if (!t || t->dtype != dt || t->n_dims != dims) {
        tis_error(TIS_EFORMAT, "train: %s: tensor %s missing or not %s with %d dims", st_file_path(f), name,
                  st_dtype_name(dt), dims);
        return NULL;
    }
    return t;
}

/* Reads one shard into ds (raw features; labels). */
static int s_read_shard(const char *path, dataset *ds) {
    st_file *f;
    int rc = st_open(&f, path);
    if (rc) return rc;
    const char *fmt = st_metadata(f, "format"), *mdl = st_metadata(f, "model");
    const char *dm = st_metadata(f, "d_model"), *ly = st_metadata(f, "layer");
    if (!fmt || strcmp(fmt, "tis-labels-1") || !mdl || !dm || !ly) {
        st_destroy(&f);
        return tis_error(TIS_EFORMAT, "train: %s is not a tis label shard", path);
    }
    int64_t d = atoll(dm), layer = atoll(ly);
    if (ds->d_model == 0) {
        ds->d_model = d;
        ds->layer = layer;
        snprintf(ds->model, sizeof ds->model, "%s", mdl);
    } else if (d != ds->d_model || layer != ds->layer || strcmp(mdl, ds->model)) {
        st_destroy(&f);
        return tis_error(TIS_EINVAL, "train: %s was labelled for %s layer %lld, the others for %s layer %lld",
                         path, mdl, (long long)layer, ds->model, (long long)ds->layer);
    }
    const st_tensor *lab = s_need(f, "labels", ST_F32, 1), *co = s_need(f, "ctx_offsets", ST_I64, 1);
    const st_tensor *ft = s_need(f, "features", ST_F16, 2), *qf = s_need(f, "query_features", ST_F16, 2);
    const st_tensor *qo = s_need(f, "query_offsets", ST_I64, 1);
    if (!lab || !co || !ft || !qf || !qo) {
        st_destroy(&f);
        return TIS_EFORMAT;
    }
    int64_t ns = co->shape[0] - 1;
    const int64_t *off = co->data, *qoff = qo->data;
    const uint16_t *F = ft->data, *Q = qf->data;
    const float *Y = lab->data;
    if (ns < 1 || qo->shape[0] != ns + 1 || ft->shape[1] != d || qf->shape[1] != d ||
        off[0] != 0 || off[ns] != lab->shape[0] || off[ns] != ft->shape[0] || qoff[0] != 0 ||
        qoff[ns] != qf->shape[0]) {
        st_destroy(&f);
        return tis_error(TIS_EFORMAT, "train: %s: offsets do not match the tensors", path);
    }
    for (int64_t i = 0; i < ns; i++)
        if (off[i + 1] < off[i] || qoff[i + 1] < qoff[i]) {
            st_destroy(&f);
            return tis_error(TIS_EFORMAT, "train: %s: offsets decrease at sample %lld", path, (long long)i);
        }
    const char *ids = st_metadata(f, "sample_ids");
    if (ids) ds->hash = s_fnv(ds->hash, ids, strlen(ids));
    ds->hash = s_fnv(ds->hash, Y, (size_t)off[ns] * 4);
    for (int64_t i = 0; i < ns && rc == 0; i++) {
        if ((rc = s_grow(ds))) break;
        int64_t n = off[i + 1] - off[i], nq = qoff[i + 1] - qoff[i];
        tsample *t = &ds->s[ds->n];
        memset(t, 0, sizeof *t);
        t->n = n;
        t->y = malloc((size_t)n * sizeof(float));
        float *raw = malloc((size_t)(n * d) * sizeof(float));
        float *rawq = malloc((size_t)((nq ? nq : 1) * d) * sizeof(float));
        if (!t->y || !raw || !rawq) {
            free(t->y);
            free(raw);
            free(rawq);
            rc = tis_error(TIS_ENOMEM, "train: out of memory");
            break;
        }
        memcpy(t->y, Y + off[i], (size_t)n * sizeof(float));
        for (int64_t j = 0; j < n * d; j++) raw[j] = label_f32(F[off[i] * d + j]);
        for (int64_t j = 0; j < nq * d; j++) rawq[j] = label_f32(Q[qoff[i] * d + j]);
        ds->raw[ds->n] = raw;
        ds->rawq[ds->n] = rawq;
        ds->nq[ds->n] = nq;
        ds->n++;
    }
    st_destroy(&f);
    return rc;
}

static int s_read_dir(const char *dir, dataset *ds) {
    DIR *dp = opendir(dir);
    if (!dp) return tis_error(TIS_EIO, "train: cannot open %s: %s", dir, strerror(errno));
    char **names = NULL;
    int64_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "shard-", 6) || l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) { rc = tis_error(TIS_ENOMEM, "train: out of memory"); break; }
            names = p;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(dp);
    if (!rc && n == 0) rc = tis_error(TIS_ENOTFOUND, "train: no shard-*.safetensors in %s (run tis label first)", dir);
    if (!rc) qsort(names, (size_t)n, sizeof *names, s_cmp_str);
    for (int64_t i = 0; i < n && !rc; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = s_read_shard(path, ds);
    }
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static uint64_t s_rng(uint64_t *s) { return tis_rng_next(s); }

static void s_shuffle(int64_t *a, int64_t n, uint64_t *rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(s_rng(rng) % (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

typedef struct epoch_metrics {
    double loss, recall[3];
} epoch_metrics;

static const double s_recall_fracs[3] = {0.05, 0.10, 0.25};

static int s_evaluate(const head *h, const dataset *ds, const int64_t *idx, int64_t n, head_loss loss,
                      double topk, epoch_metrics *m) {
    memset(m, 0, sizeof *m);
    int64_t maxn = 1;
    for (int64_t i = 0; i < n; i++) maxn = ds->s[idx[i]].n > maxn ? ds->s[idx[i]].n : maxn;
    float *s = malloc((size_t)maxn * sizeof(float)), *g = malloc((size_t)maxn * sizeof(float));
    if (!s || !g) {
        free(s);
        free(g);
        return tis_error(TIS_ENOMEM, "train: out of memory");
    }
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        const tsample *t = &ds->s[idx[i]];
        rc = head_forward(h, t->f, t->n, h->cfg.query_aware ? t->q : NULL, s);
        if (rc) break;
        m->loss += head_loss_eval(loss, s, t->y, t->n, topk, g);
        for (int k = 0; k < 3; k++) m->recall[k] += head_recall_at(s, t->y, t->n, s_recall_fracs[k]);
    }
    if (n > 0) {
        m->loss /= (double)n;
        for (int k = 0; k < 3; k++) m->recall[k] /= (double)n;
    }
    free(s);
    free(g);
    return rc;
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

int cmd_train(int argc, char **argv) {
    const char *dirs[MAX_DIRS], *output = NULL, *metrics = NULL, *kind = "linear", *loss_name = "listwise";
    int64_t n_dirs = 0;
    int64_t hidden = 256, rank = 32, epochs = 20, batch = 4, patience = 3, seed = 42, threads = 0;
    float lr = 1e-3f, wd = 0.0f, topk = 0.1f, val_frac = 0.2f;
    bool qa = false;
    const cli_opt opts[] = {
        CLI_STRS("--labels", NULL, dirs, &n_dirs, MAX_DIRS),
        CLI_STR("--output", NULL, &output),
        CLI_STR("--metrics", NULL, &metrics),
        CLI_STR("--head", NULL, &kind),
        CLI_STR("--loss", NULL, &loss_name),
        CLI_FLAG("--query_aware", NULL, &qa),
        CLI_I64("--hidden", NULL, &hidden, 1, 4096),
        CLI_I64("--rank", NULL, &rank, 1, 1024),
        CLI_I64("--epochs", NULL, &epochs, 1, 100000),
        CLI_I64("--batch", NULL, &batch, 1, 1 << 20),
        CLI_I64("--patience", NULL, &patience, 1, 100000),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_F32("--lr", NULL, &lr, 1e-8f, 10.0f),
        CLI_F32("--weight_decay", NULL, &wd, 0.0f, 1.0f),
        CLI_F32("--topk", NULL, &topk, 1e-4f, 1.0f),
        CLI_F32("--val_frac", NULL, &val_frac, 0.0f, 0.9f),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_END,
    };
    int prc = cli_parse_opts("train", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (strcmp(kind, "linear") && strcmp(kind, "mlp")) {
        fprintf(stderr, "tis train: bad value '%s' for --head (linear or mlp)\n\n", kind);
        s_usage(stderr);
        return 2;
    }
    if (strcmp(loss_name, "listwise") && strcmp(loss_name, "bce_topk")) {
        fprintf(stderr, "tis train: bad value '%s' for --loss (listwise or bce_topk)\n\n", loss_name);
        s_usage(stderr);
        return 2;
    }
    if (!n_dirs || !output) {
        fprintf(stderr, "tis train: --labels DIR and --output HEAD.safetensors are required\n\n");
        s_usage(stderr);
        return 2;
    }
    cli_threads(threads);
    head_loss loss = !strcmp(loss_name, "bce_topk") ? LOSS_BCE_TOPK : LOSS_LISTWISE;
    dataset ds = {.hash = 0xcbf29ce484222325ull};
    head *h = NULL;
    int rc = 1;
    int64_t *order = NULL;
    float *grad = NULL, *am = NULL, *av = NULL, *best = NULL, *sc = NULL, *dsc = NULL;
    FILE *csv = NULL;
    char metrics_path[1100], png_path[1100];
    for (int i = 0; i < n_dirs; i++)
        if (s_read_dir(dirs[i], &ds)) {
            cli_fail("reading labels");
            goto done;
        }
    if (ds.n < 2) {
        fprintf(stderr, "tis train: %lld labelled samples; at least 2 are needed (train + validation)\n",
                (long long)ds.n);
        goto done;
    }
    head_config hc = {.kind = !strcmp(kind, "mlp") ? HEAD_MLP : HEAD_LINEAR, .query_aware = qa,
                      .d_model = ds.d_model, .hidden = hidden, .rank = rank, .layer = ds.layer};
    snprintf(hc.base_model, sizeof hc.base_model, "%s", ds.model);
    if (head_new(&h, &hc, (uint64_t)seed)) {
        cli_fail("creating the head");
        goto done;
    }
    /* Split by sample (never by token). */
    order = malloc((size_t)ds.n * sizeof *order);
    if (!order) goto oom;
    for (int64_t i = 0; i < ds.n; i++) order[i] = i;
    uint64_t rng = (uint64_t)seed * TIS_GOLDEN64 + 1;
    s_shuffle(order, ds.n, &rng);
    int64_t n_val = (int64_t)llround(val_frac * (double)ds.n);
    if (val_frac > 0 && n_val < 1) n_val = 1;
    if (n_val >= ds.n) n_val = ds.n - 1;
    int64_t n_train = ds.n - n_val, *val = order + n_train, *train = order;
    /* Feature statistics on the training samples only. */
    int64_t d = ds.d_model;
    {
        double *sum = calloc((size_t)d, sizeof(double)), *sq = calloc((size_t)d, sizeof(double));
        float *tmp = malloc((size_t)d * sizeof(float));
        if (!sum || !sq || !tmp) {
            free(sum);
            free(sq);
            free(tmp);
            goto oom;
        }
        int64_t rows = 0;
        for (int64_t i = 0; i < n_train; i++) {
            const float *raw = ds.raw[train[i]];
            for (int64_t r = 0; r < ds.s[train[i]].n; r++, rows++) {
                head_features(h, raw + r * d, 1, tmp); /* mean 0 / std 1 still: rmsnorm only */
                for (int64_t k = 0; k < d; k++) sum[k] += tmp[k], sq[k] += (double)tmp[k] * tmp[k];
            }
        }
        for (int64_t k = 0; k < d; k++) {
            double mu = sum[k] / (double)rows, var = sq[k] / (double)rows - mu * mu;
            h->mean[k] = (float)mu;
            h->std[k] = (float)sqrt(var > 1e-8 ? var : 1e-8);
        }
        free(sum);
        free(sq);
        free(tmp);
    }
    /* Normalised features for every sample; raw rows freed as we go. */
    for (int64_t i = 0; i < ds.n; i++) {
        tsample *t = &ds.s[i];
        t->f = malloc((size_t)(t->n * d) * sizeof(float));
        t->q = malloc((size_t)d * sizeof(float));
        if (!t->f || !t->q) goto oom;
        head_features(h, ds.raw[i], t->n, t->f);
        if (ds.nq[i] > 0) head_query(h, ds.rawq[i], ds.nq[i], t->q);
        else memset(t->q, 0, (size_t)d * sizeof(float));
        free(ds.raw[i]);
        free(ds.rawq[i]);
        ds.raw[i] = ds.rawq[i] = NULL;
    }
    int64_t np = head_n_trained(h), maxn = 1;
    for (int64_t i = 0; i < ds.n; i++) maxn = ds.s[i].n > maxn ? ds.s[i].n : maxn;
    grad = calloc((size_t)np, sizeof(float));
    am = calloc((size_t)np, sizeof(float));
    av = calloc((size_t)np, sizeof(float));
    best = malloc((size_t)np * sizeof(float));
    sc = malloc((size_t)maxn * sizeof(float));
    dsc = malloc((size_t)maxn * sizeof(float));
    if (!grad || !am || !av || !best || !sc || !dsc) goto oom;
    if (metrics) snprintf(metrics_path, sizeof metrics_path, "%s", metrics);
    else {
        snprintf(metrics_path, sizeof metrics_path, "%s", output);
        char *dot = strrchr(metrics_path, '.');
        if (dot && !strcmp(dot, ".safetensors")) *dot = 0;
        strncat(metrics_path, "_metrics.csv", sizeof metrics_path - strlen(metrics_path) - 1);
    }
    snprintf(png_path, sizeof png_path, "%s", metrics_path);
    char *dot = strrchr(png_path, '.');
    if (dot) *dot = 0;
    strncat(png_path, ".png", sizeof png_path - strlen(png_path) - 1);
    csv = fopen(metrics_path, "wb");
    if (!csv) {
        fprintf(stderr, "tis train: cannot write %s: %s\n", metrics_path, strerror(errno));
        goto done;
    }
    fprintf(csv, "epoch,train_loss,val_loss,val_recall_5,val_recall_10,val_recall_25,seconds\n");
    epoch_metrics vm;
    if (s_evaluate(h, &ds, val, n_val, loss, topk, &vm)) goto fail;
    fprintf(csv, "0,nan,%.6f,%.4f,%.4f,%.4f,0\n", vm.loss, vm.recall[0], vm.recall[1], vm.recall[2]);
    fprintf(stderr, "[train] %s head%s | %lld params | %lld train / %lld validation samples (by sample) | "
                    "loss %s | features: %s layer %lld\n",
            kind, qa ? " (query-aware)" : "", (long long)np, (long long)n_train, (long long)n_val, loss_name,
            ds.model, (long long)ds.layer);
    fprintf(stderr, "[train] epoch 0: val loss %.4f recall@5/10/25%% %.3f %.3f %.3f\n", vm.loss, vm.recall[0],
            vm.recall[1], vm.recall[2]);
    double best_loss = vm.loss, t0 = tis_now();
    memcpy(best, h->params, (size_t)np * sizeof(float));
    int64_t since = 0, step = 0, best_epoch = 0;
    for (int64_t ep = 1; ep <= epochs; ep++) {
        s_shuffle(train, n_train, &rng);
        double tl = 0;
        for (int64_t b0 = 0; b0 < n_train; b0 += batch) {
            int64_t b1 = b0 + batch < n_train ? b0 + batch : n_train;
            memset(grad, 0, (size_t)np * sizeof(float));
            for (int64_t i = b0; i < b1; i++) {
                const tsample *t = &ds.s[train[i]];
                const float *q = qa ? t->q : NULL;
                if (head_forward(h, t->f, t->n, q, sc)) goto fail;
                tl += head_loss_eval(loss, sc, t->y, t->n, topk, dsc);
                float inv = 1.0f / (float)(b1 - b0);
                for (int64_t j = 0; j < t->n; j++) dsc[j] *= inv;
                if (head_backward(h, t->f, t->n, q, dsc, grad)) goto fail;
            }
            head_adam_step(h->params, grad, am, av, np, ++step, lr, 0.9f, 0.999f, 1e-8f, wd);
        }
        tl /= (double)n_train;
        if (s_evaluate(h, &ds, val, n_val, loss, topk, &vm)) goto fail;
        double el = tis_now() - t0;
        fprintf(csv, "%lld,%.6f,%.6f,%.4f,%.4f,%.4f,%.2f\n", (long long)ep, tl, vm.loss, vm.recall[0],
                vm.recall[1], vm.recall[2], el);
        fflush(csv);
        bool better = vm.loss < best_loss - 1e-6;
        fprintf(stderr, "[train] epoch %lld: train loss %.4f | val loss %.4f recall@5/10/25%% %.3f %.3f %.3f%s\n",
                (long long)ep, tl, vm.loss, vm.recall[0], vm.recall[1], vm.recall[2], better ? " *" : "");
        if (better) {
            best_loss = vm.loss;
            best_epoch = ep;
            memcpy(best, h->params, (size_t)np * sizeof(float));
            since = 0;
        } else if (++since >= patience) {
            fprintf(stderr, "[train] early stop: no better validation loss for %lld epochs\n", (long long)patience);
            break;
        }
    }
    memcpy(h->params, best, (size_t)np * sizeof(float));
    fclose(csv);
    csv = NULL;
    snprintf(h->label_hash, sizeof h->label_hash, "fnv1a64:%016llx", (unsigned long long)ds.hash);
    size_t used = 0;
    used += (size_t)snprintf(h->train_command, sizeof h->train_command, "tis");
    for (int i = 0; i < argc && used < sizeof h->train_command; i++)
        used += (size_t)snprintf(h->train_command + used, sizeof h->train_command - used, " %s", argv[i]);
    if (head_save(h, output)) goto fail;
    s_plot(metrics_path, png_path);
    fprintf(stderr, "[train] best epoch %lld (val loss %.4f) -> %s; metrics %s\n", (long long)best_epoch,
            best_loss, output, metrics_path);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "tis train: out of memory\n");
    goto done;
fail:
    cli_fail("training");
done:
    if (csv) fclose(csv);
    for (int64_t i = 0; i < ds.n; i++) {
        free(ds.s[i].f);
        free(ds.s[i].y);
        free(ds.s[i].q);
        if (ds.raw) free(ds.raw[i]);
        if (ds.rawq) free(ds.rawq[i]);
    }
    free(ds.s);
    free(ds.raw);
    free(ds.rawq);
    free(ds.nq);
    free(order);
    free(grad);
    free(am);
    free(av);
    free(best);
    free(sc);
    free(dsc);
    head_destroy(&h);
    return rc;
}
