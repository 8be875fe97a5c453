/* test_label_recon: reconstruction and self-information labels on a tiny
 * model: a text corpus read (s_corpus), labelled with --target recon and
 * trained on (s_recon), features of another layer for labels already made
 * and partial heads (s_refeature), self-information labels (s_selfinfo).
 * Answer-attention labels and their shards: test_label.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "chat.h"
#include "head.h"
#include "label.h"
#include "label_job.h"
#include "model.h"
#include "safetensors.h"
#include "selfinfo.h"
#include "backend.h"
#include "forward.h"
#include "tiny_model.h"
#include "tt.h"


/* A one-sample dataset: reconstruction labels take dataset samples too. */
static const char *s_data =
    "{\"id\": \"s0\", \"context\": \"the cat sat on the mat and the dog ran in the park\", "
    "\"question\": \"where is the cat?\", \"answers\": [\"the mat\"]}\n";

/* The corpus reader: files in sorted order (a subdirectory walked), pieces
 * of ctx tokens, a binary and a non-UTF-8 file skipped, the cap. */
static void s_corpus(const model *m, const char *dir) {
    TT_CASE("corpus samples");
    const char *paths[1] = {dir};
    bench_set set;
    TT_OK(label_corpus_samples(paths, 1, m->tok, 32, 0, &set));
    int64_t from_a = 0, from_b = 0;
    for (int64_t i = 0; i < set.n; i++) {
        const bench_sample *x = &set.s[i];
        TT_CHECK(strstr(x->id, "corpus:") == x->id && x->context && x->context[0] && x->question);
        from_a += strstr(x->id, "/a.txt#") != NULL;
        from_b += strstr(x->id, "sub/b.txt#") != NULL;
        TT_CHECK(!strstr(x->id, "bin.dat") && !strstr(x->id, "latin1.txt"));
        int32_t *ids = NULL;
        int64_t n = 0;
        TT_OK(tokenizer_encode(m->tok, x->context, strlen(x->context), false, &ids, &n));
        TT_CHECK(n >= 16 && n <= 40); /* re-encoding a cut piece: about the same length */
        free(ids);
    }
    TT_CHECK(set.n >= 4 && from_a >= 2 && from_b >= 2 && from_a + from_b == set.n);
    TT_CHECK(set.n > 0 && strstr(set.s[0].id, "/a.txt#0")); /* a.txt before sub/ */
    int64_t all = set.n;
    bench_set_free(&set);
    TT_OK(label_corpus_samples(paths, 1, m->tok, 32, 3, &set));
    TT_CHECK(set.n == 3 && all > 3);
    bench_set_free(&set);
    TT_FAILS(label_corpus_samples(paths, 1, m->tok, 100000, 0, &set), TIS_ENOTFOUND);
    const char *none[1] = {"/nonexistent/dir"};
    TT_FAILS(label_corpus_samples(none, 1, m->tok, 32, 0, &set), TIS_EIO);
}

/* A per-head head trained on labels dir rf with the input flags `flags`
 * (--positions, --repeats): recorded in the checkpoint (n_pos, n_rep),
 * described by tis info (`says`), and run by eval's tis policy with a
 * threshold. */
static void s_feature_head(const char *bin, const char *tiny, const char *rf, const char *flags, const char *name,
                           int64_t n_pos, int64_t n_rep, const char *says) {
    static char out[1 << 16];
    char cmd[4096], pk[1024], csv[1100];
    snprintf(pk, sizeof pk, "%s", tt_path(name));
    snprintf(csv, sizeof csv, "%s_eval.csv", pk);
    strncat(pk, ".safetensors", sizeof pk - strlen(pk) - 1);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 2 --val_frac 0.4 %s", bin, rf, pk, flags);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    head *h = NULL;
    TT_OK(head_load(&h, pk));
    TT_CHECK(h && h->cfg.n_pos == n_pos && h->cfg.n_rep == n_rep && head_feat_dim(h) == h->cfg.d_model + n_pos + n_rep);
    head_destroy(&h);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", bin, pk);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, says));
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --baseline full tis --head '%s' --benchmark passkey --n_samples 1 "
             "--context_tokens 256 --cache_budgets 0.5 --thresholds 0.01 --no_plots --output '%s'", bin, tiny, pk, csv);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
}

/* tis train --stream_weights: a per-head head only, and a known value. */
static void s_recon_weights(const char *bin, const char *d) {
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 2 --val_frac 0.4 --stream_weights inv_var", bin, d, tt_path("recon_w.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "[train] stream weights 1/var, mean 1: "));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --outputs single --head mlp "
             "--hidden 8 --epochs 1 --stream_weights inv_sd", bin, d, tt_path("recon_w1.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "--stream_weights is for a per-head head"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --stream_weights sd", bin, d,
             tt_path("recon_w2.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "bad value 'sd' for --stream_weights"));
}

/* label_records_pool_left against a direct maximum over each span, and
 * tis train --label_lpool: trains a per-head head, refuses a single one. */
static void s_recon_lpool(const char *bin, const char *d) {
    TT_CASE("recon labels pooled left");
    label_records r, p;
    label_records_init(&r);
    label_records_init(&p);
    TT_OK(label_dir_read(d, &r));
    TT_OK(label_dir_read(d, &p));
    const int64_t span = 3;
    label_records_pool_left(&p, span);
    bool same_n = r.n == p.n && r.n > 0, ok = true, changed = false;
    for (int64_t i = 0; same_n && i < r.n; i++) {
        const int64_t n = r.s[i].n_ctx;
        for (int64_t o = 0; o < r.n_streams; o++) {
            const float *y = r.s[i].labels_per_head + o * n, *z = p.s[i].labels_per_head + o * n;
            for (int64_t j = 0; j < n; j++) {
                float m = y[j];
                for (int64_t k = j + 1; k < j + span && k < n; k++) m = y[k] > m ? y[k] : m;
                ok &= z[j] == m;
                changed |= z[j] != y[j];
            }
            ok &= z[n - 1] == y[n - 1]; /* the last token has no span after it */
        }
    }
    TT_CHECK(same_n && ok && changed);
    label_records_free(&r);
    label_records_free(&p);
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 1 --val_frac 0.4 --label_lpool 5", bin, d, tt_path("recon_lp.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --outputs single --head mlp "
             "--hidden 8 --epochs 1 --label_lpool 5", bin, d, tt_path("recon_lp1.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "--label_lpool 5: a span of 2..63 tokens, for a per-head"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --label_lpool 1", bin, d,
             tt_path("recon_lp2.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2);
}

/* Reconstruction labels of a corpus, into d: shards with per-(layer, kv
 * head) scores in [0, 1], labels their normalised mean, no question rows; a
 * rerun resumes; another target is refused; read back with the streams. */
static void s_recon_labels(const char *bin, const char *tiny, const char *corpus, const char *data, const char *d) {
    static char out[1 << 16];
    char cmd[4096], path[1200];
    TT_CASE("recon labels");
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --target recon --output '%s' "
             "--shard_size 3", bin, tiny, corpus, d);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "bin.dat: not UTF-8 text") && strstr(out, "latin1.txt: not UTF-8 text"));
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "already"));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    snprintf(path, sizeof path, "%s/shard-00000.safetensors", d);
    st_file *f = NULL;
    TT_OK(st_open(&f, path));
    if (f && m) {
        const int64_t S = m->config.n_layer * m->config.n_kv_head;
        const st_tensor *ph = st_tensor_find(f, "labels_per_head"), *lab = st_tensor_find(f, "labels"),
                        *co = st_tensor_find(f, "ctx_offsets"), *qf = st_tensor_find(f, "query_features");
        TT_CHECK(!strcmp(st_metadata(f, "target"), "recon") && !strcmp(st_metadata(f, "label_heads"), "2"));
        TT_CHECK(ph && lab && co && qf && qf->shape[0] == 0);
        if (ph && lab && co) {
            const int64_t *off = co->data, n = co->shape[0] - 1;
            const float *P = ph->data, *Y = lab->data;
            TT_CHECK(n == 3 && ph->shape[0] == off[n] * S);
            bool in01 = true, mean_ok = true, some = false;
            for (int64_t i = 0; i < n; i++) {
                int64_t nc = off[i + 1] - off[i];
                const float *B = P + off[i] * S;
                double tot = 0, ysum = 0;
                for (int64_t j = 0; j < nc * S; j++) {
                    in01 &= B[j] >= 0 && B[j] <= 1;
                    some |= B[j] > 0.01f;
                    tot += B[j];
                }
                for (int64_t j = 0; j < nc; j++) {
                    double mean = 0;
                    for (int64_t k = 0; k < S; k++) mean += B[k * nc + j];
                    mean_ok &= fabs(Y[off[i] + j] - mean / tot) < 1e-5;
                    ysum += Y[off[i] + j];
                }
                mean_ok &= fabs(ysum - 1) < 1e-4;
            }
            TT_CHECK(in01 && some && mean_ok);
        }
    }
    st_destroy(&f);
    label_records r;
    label_records_init(&r);
    TT_OK(label_dir_read(d, &r));
    TT_CHECK(r.n >= 4 && r.target == HEAD_TARGET_RECON && m && r.n_streams == m->config.n_layer * m->config.n_kv_head);
    TT_CHECK(r.n > 0 && r.s[0].labels_per_head && r.s[0].n_q == 0);
    label_records_free(&r);
    model_destroy(&m);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --output '%s'", bin, tiny, corpus, d);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "other settings"));
    /* benchmark / dataset samples take the recon target too */
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' --target recon --output '%s'", bin, tiny, data,
             tt_path("recon_ds"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
}

/* tis train --target recon on the labels in d: a per-head head, the same
 * bytes twice, the metrics' columns, the stream weights. */
static void s_recon_train(const char *bin, const char *d, const char *ck) {
    static char out[1 << 16];
    char cmd[4096], csv[1024];
    TT_CASE("recon training");
    snprintf(csv, sizeof csv, "%s", tt_path("recon_head_metrics.csv"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 3 --val_frac 0.4", bin, d, ck);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "recon_mse") && strstr(out, "global@10/2%") && !strstr(out, "calibration") &&
             !strstr(out, "stream weights"));
    if (rc) fprintf(stderr, "%s\n", out);
    size_t n1 = 0, nm = 0;
    char *first = tt_read_file(ck, &n1), *metrics = tt_read_file(csv, &nm);
    TT_CHECK(metrics && strstr(metrics, ",seconds,val_global_recall_10,val_global_recall_2\n"));
    head *h = NULL;
    TT_OK(head_load(&h, ck));
    TT_CHECK(h && h->cfg.n_out == 6 && h->cfg.target == HEAD_TARGET_RECON && h->cfg.kind == HEAD_MLP);
    TT_CHECK(h && h->n_calib == 0); /* not calibrated unless asked */
    head_destroy(&h);
    TT_CHECK(tt_rerun_same(cmd, ck, first, n1)); /* the same bytes again */
    free(metrics);
    s_recon_weights(bin, d);
    s_recon_lpool(bin, d);
}

/* --calibrate: the same weights as ck's, and the knots; a single-score head
 * (not calibrated); answer training and --query_aware refused on recon
 * labels. */
static void s_recon_calibrate(const char *bin, const char *d, const char *ck) {
    static char out[1 << 16];
    char cmd[4096];
    head *h = NULL;
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 3 --val_frac 0.4 --calibrate", bin, d, tt_path("recon_cal.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "[train] calibration: 128 knots per stream"));
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", bin, tt_path("recon_cal.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "calibration      128 knots per stream"));
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", bin, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "calibration      none"));
    head *cal = NULL;
    TT_OK(head_load(&cal, tt_path("recon_cal.safetensors")));
    TT_OK(head_load(&h, ck));
    TT_CHECK(cal && h && cal->n_calib == HEAD_CALIB_KNOTS && cal->n_params == h->n_params &&
             !memcmp(cal->params, h->params, (size_t)h->n_params * sizeof(float)));
    head_destroy(&cal);
    head_destroy(&h);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --outputs single --epochs 2 "
             "--val_frac 0.4", bin, d, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_OK(head_load(&h, ck));
    TT_CHECK(h && h->cfg.n_out == 1 && h->cfg.target == HEAD_TARGET_RECON && h->n_calib == 0);
    head_destroy(&h);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --outputs single --epochs 1 "
             "--calibrate", bin, d, tt_path("single_cal.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) != 0 && strstr(out, "--calibrate is for a per-head head"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s'", bin, d, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "--target recon"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --query_aware", bin, d, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "query-agnostic"));
}

/* Self-information labels of the corpus, into d: one label per token, the
 * word self-information selfinfo_compute gives on the stored prompt,
 * normalised; the features those of the recon labels (the same agnostic
 * state, same layer); no per-head labels, no question rows; resumes;
 * refusals; then a one-output selfinfo head. */
static void s_selfinfo(const char *bin, const char *tiny, const char *corpus, const char *recon_dir) {
    static char out[1 << 16];
    char cmd[4096], path[1200], rpath[1200], d[1024], ck[1024];
    TT_CASE("selfinfo labels, a selfinfo head");
    snprintf(d, sizeof d, "%s", tt_path("selfinfo"));
    snprintf(ck, sizeof ck, "%s", tt_path("selfinfo_head.safetensors"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --target selfinfo --output '%s' "
             "--shard_size 3", bin, tiny, corpus, d);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "self-information labels"));
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "already"));
    model *m = NULL;
    forward_state *st = NULL;
    TT_OK(model_load(&m, tiny));
    if (m) TT_OK(forward_state_new(&st, m, backend_cpu(), 512));
    snprintf(path, sizeof path, "%s/shard-00000.safetensors", d);
    snprintf(rpath, sizeof rpath, "%s/shard-00000.safetensors", recon_dir);
    st_file *f = NULL, *g = NULL;
    TT_OK(st_open(&f, path));
    TT_OK(st_open(&g, rpath));
    if (f && g && st) {
        const st_tensor *lab = st_tensor_find(f, "labels"), *co = st_tensor_find(f, "ctx_offsets"),
                        *sp = st_tensor_find(f, "sample_spans"), *ti = st_tensor_find(f, "token_ids"),
                        *to = st_tensor_find(f, "token_offsets"), *qf = st_tensor_find(f, "query_features"),
                        *ft = st_tensor_find(f, "features"), *rft = st_tensor_find(g, "features");
        TT_CHECK(!strcmp(st_metadata(f, "target"), "selfinfo") && !st_tensor_find(f, "labels_per_head"));
        TT_CHECK(lab && co && sp && ti && to && qf && qf->shape[0] == 0 && ft && rft);
        if (lab && co && sp && ti && to && ft && rft) {
            const int64_t *off = co->data, *spans = sp->data, *toff = to->data, n = co->shape[0] - 1;
            TT_CHECK(n == 3);
            /* the same agnostic state as the recon labels': the same features */
            TT_CHECK(ft->nbytes == rft->nbytes && !memcmp(ft->data, rft->data, ft->nbytes));
            for (int64_t i = 0; i < n; i++) {
                int64_t cb = spans[i * 4], nc = spans[i * 4 + 1];
                TT_CHECK(nc == off[i + 1] - off[i]);
                float *si = malloc((size_t)nc * sizeof(float));
                TT_OK(selfinfo_compute(st, m->tok, (const int32_t *)ti->data + toff[i], cb, nc, si));
                double tot = 0, ysum = 0, worst = 0;
                for (int64_t j = 0; j < nc; j++) tot += si[j];
                for (int64_t j = 0; j < nc; j++) {
                    double y = ((const float *)lab->data)[off[i] + j];
                    worst = fmax(worst, fabs(y - si[j] / tot));
                    ysum += y;
                }
                TT_CHECK(tot > 0 && worst < 1e-6 && fabs(ysum - 1) < 1e-4);
                free(si);
            }
        }
    }
    st_destroy(&f);
    st_destroy(&g);
    forward_state_destroy(&st);
    model_destroy(&m);
    label_records r;
    label_records_init(&r);
    TT_OK(label_dir_read(d, &r));
    TT_CHECK(r.n >= 4 && r.target == HEAD_TARGET_SELFINFO && r.n_streams == 0 && r.s[0].n_q == 0);
    label_records_free(&r);
    /* another target into the same directory; per-head selfinfo labels */
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --target recon --output '%s'", bin,
             tiny, corpus, d);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "other settings"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --target selfinfo --per_head "
             "--output '%s'", bin, tiny, corpus, tt_path("selfinfo_ph"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "no --per_head"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --target nosuch --output '%s'", bin, tiny, corpus,
             tt_path("selfinfo_bad"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "answer, recon or selfinfo"));
    /* a one-output head on them; the labels' kind is named when it differs */
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target selfinfo --head mlp --hidden 8 "
             "--epochs 2 --val_frac 0.4", bin, d, ck);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    head *h = NULL;
    TT_OK(head_load(&h, ck));
    TT_CHECK(h && h->cfg.n_out == 1 && h->cfg.target == HEAD_TARGET_SELFINFO && h->n_calib == 0);
    head_destroy(&h);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", bin, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "target selfinfo (the word self-information"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s'", bin, d, tt_path("si2.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "the labels are selfinfo labels; train with --target selfinfo"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target selfinfo --query_aware", bin, d,
             tt_path("si3.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "selfinfo labels are query-agnostic"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target selfinfo", bin, recon_dir,
             tt_path("si4.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "the labels are recon labels"));
}

/* Reconstruction labels, then heads trained on them. */
static void s_recon(const char *bin, const char *tiny, const char *corpus, const char *data) {
    char d[1024], ck[1024];
    snprintf(d, sizeof d, "%s", tt_path("recon"));
    snprintf(ck, sizeof ck, "%s", tt_path("recon_head.safetensors"));
    s_recon_labels(bin, tiny, corpus, data, d);
    s_recon_train(bin, d, ck);
    s_recon_calibrate(bin, d, ck);
}

/* Features of another layer for labels already made (tis label
 * --refeature): the labels and every other tensor as they were, the
 * features those of labelling at that layer directly; resumable; bad
 * requests refused. Then a partial head on some streams (tis train
 * --streams). d: recon labels of the corpus at the default layer. */
static void s_refeature_refused(const char *bin, const char *tiny, const char *corpus, const char *d, const char *rf);
static void s_partial_head(const char *bin, const char *tiny, const char *d, const char *direct, const char *rf);

static void s_refeature(const char *bin, const char *tiny, const char *corpus, const char *recon_dir) {
    static char out[1 << 16];
    char cmd[8192], direct[1024], rf[1024], d[1024];
    snprintf(d, sizeof d, "%s", recon_dir); /* tt_path's buffers are reused: keep a copy */
    TT_CASE("refeature");
    snprintf(direct, sizeof direct, "%s", tt_path("recon_l1"));
    snprintf(rf, sizeof rf, "%s", tt_path("recon_rf1"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --corpus '%s' --context_tokens 32 --target recon --layer 1 "
             "--output '%s' --shard_size 3", bin, tiny, corpus, direct);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --layer 1 --output '%s'", bin, tiny, d, rf);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "shards (0 already there)"));
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "refeatured 0 shards ("));
    /* every other tensor as it was; the features those of labelling at layer 1 */
    char **names = NULL;
    int64_t ns = 0;
    TT_OK(label_dir_shards(rf, &names, &ns));
    for (int64_t k = 0; k < ns; k++) {
        char pa[1200], pb[1200];
        snprintf(pa, sizeof pa, "%s/%s", d, names[k]);
        snprintf(pb, sizeof pb, "%s/%s", rf, names[k]);
        st_file *a = NULL, *b = NULL;
        TT_OK(st_open(&a, pa));
        TT_OK(st_open(&b, pb));
        if (a && b) {
            TT_CHECK(st_tensor_count(a) == st_tensor_count(b) && !strcmp(st_metadata(b, "layer"), "1"));
            bool same = true;
            for (int64_t i = 0; i < st_tensor_count(a); i++) {
                const st_tensor *ta = st_tensor_at(a, i), *tb = st_tensor_find(b, ta->name);
                same &= tb && tb->nbytes == ta->nbytes;
                if (tb && tb->nbytes == ta->nbytes && strcmp(ta->name, "features"))
                    same &= !memcmp(ta->data, tb->data, ta->nbytes);
            }
            TT_CHECK(same);
        }
        st_destroy(&a);
        st_destroy(&b);
        free(names[k]);
    }
    free(names);
    label_records ra, rb;
    label_records_init(&ra);
    label_records_init(&rb);
    TT_OK(label_dir_read(direct, &ra));
    TT_OK(label_dir_read(rf, &rb));
    TT_CHECK(ra.n == rb.n && ra.n >= 4 && ra.layer == 1 && rb.layer == 1 && ra.d_model == rb.d_model);
    bool close = ra.n == rb.n, labels = ra.n == rb.n;
    for (int64_t i = 0; close && i < ra.n; i++) {
        const label_record *x = &ra.s[i], *y = &rb.s[i];
        close = x->n_ctx == y->n_ctx;
        for (int64_t j = 0; close && j < x->n_ctx * ra.d_model; j++) /* f16 rounding apart */
            close = fabsf(x->features[j] - y->features[j]) <= 2e-3f * (1.0f + fabsf(x->features[j]));
        labels &= close && !memcmp(x->labels_per_head, y->labels_per_head,
                                   (size_t)(x->n_ctx * ra.n_streams) * sizeof(float));
    }
    TT_CHECK(close && labels);
    label_records_free(&ra);
    label_records_free(&rb);
    size_t n = 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/label_config.json", rf);
    char *cfg = tt_read_file(path, &n);
    TT_CHECK(cfg && strstr(cfg, "\"layer\":\t1") && strstr(cfg, "\"target\":\t\"recon\""));
    free(cfg);
    snprintf(path, sizeof path, "%s/manifest.jsonl", d);
    char *man0 = tt_read_file(path, &n);
    snprintf(path, sizeof path, "%s/manifest.jsonl", rf);
    size_t n1 = 0;
    char *man = tt_read_file(path, &n1);
    TT_CHECK(man && man0 && n1 == n && !memcmp(man, man0, n));
    free(man);
    free(man0);
    s_refeature_refused(bin, tiny, corpus, d, rf);
    s_partial_head(bin, tiny, d, direct, rf);
}

/* tis label --refeature refuses: the directory itself, a layer the model
 * lacks, samples beside it, a shard that is not one, token ids outside the
 * vocabulary. d: recon labels; rf: their refeatured copy. */
static void s_refeature_refused(const char *bin, const char *tiny, const char *corpus, const char *d, const char *rf) {
    static char out[1 << 16];
    char cmd[8192];
    /* refused: the directory itself, a layer the model lacks, samples beside it, a shard that is not one */
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --layer 1 --output '%s'", bin, tiny, rf, rf);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "itself"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --layer 99 --output '%s'", bin, tiny, d,
             tt_path("recon_rf99"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "--layer 99"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --corpus '%s' --output '%s'", bin, tiny, d, corpus,
             tt_path("recon_rfx"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2);
    char bad[512];
    snprintf(bad, sizeof bad, "%s", tt_path("recon_bad"));
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/label_config.json' '%s/' && head -c 300 '%s/shard-00000.safetensors' "
             "> '%s/shard-00000.safetensors'", bad, d, bad, d, bad);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --layer 1 --output '%s'", bin, tiny, bad,
             tt_path("recon_rfbad"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "shard-00000.safetensors"));

    { /* a token id outside the vocabulary: refused before any forward pass */
        char src[1400], badids[1024];
        snprintf(src, sizeof src, "%s/shard-00000.safetensors", d);
        snprintf(badids, sizeof badids, "%s", tt_path("recon_badids"));
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/label_config.json' '%s/'", badids, d, badids);
        TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
        st_file *f = NULL;
        TT_OK(st_open(&f, src));
        st_writer *w = st_writer_new();
        for (int64_t i = 0; f && w && i < st_tensor_count(f); i++) {
            const st_tensor *t = st_tensor_at(f, i);
            int32_t *ids = NULL;
            if (!strcmp(t->name, "token_ids") && (ids = malloc(t->nbytes))) {
                memcpy(ids, t->data, t->nbytes);
                ids[t->shape[0] - 1] = 1 << 30;
            }
            TT_OK(st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, ids ? ids : t->data));
            free(ids);
        }
        for (int64_t i = 0; f && w && i < st_metadata_count(f); i++) {
            const char *k, *v;
            st_metadata_at(f, i, &k, &v);
            TT_OK(st_writer_add_metadata(w, k, v));
        }
        snprintf(src, sizeof src, "%s/shard-00000.safetensors", badids);
        TT_OK(st_writer_write(w, src));
        st_writer_destroy(&w);
        st_destroy(&f);
        snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --refeature '%s' --layer 1 --output '%s'", bin, tiny, badids,
                 tt_path("recon_rfbadids"));
        TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "outside the vocabulary"));
    }
}

/* Partial heads (--streams), positional inputs and --val_labels on the
 * refeatured labels rf (direct: labelled at that layer directly; d: at
 * another one). */
static void s_partial_head(const char *bin, const char *tiny, const char *d, const char *direct, const char *rf) {
    static char out[1 << 16];
    char cmd[8192];
    int rc;
    label_records ra, rb;
    TT_CASE("partial head (--streams)");
    char ck[1024];
    snprintf(ck, sizeof ck, "%s", tt_path("recon_part.safetensors"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --head mlp --hidden 8 "
             "--epochs 2 --val_frac 0.4 --streams 2:4", bin, rf, ck);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "(trained: 2-3); 2 outputs per token"));
    if (rc) fprintf(stderr, "%s\n", out);
    head *h = NULL;
    TT_OK(head_load(&h, ck));
    TT_CHECK(h && h->cfg.n_out == 2 && h->cfg.layer == 1);
    head_destroy(&h);
    /* positional and repetition inputs: trained, recorded, and used by eval's tis policy */
    s_feature_head(bin, tiny, rf, "--positions", "recon_pos", 2, 0, "position in the context");
    s_feature_head(bin, tiny, rf, "--positions --repeats", "recon_rep", 2, 2, "occurs earlier / later in the context");
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --query_aware --positions", bin,
             rf, tt_path("recon_qa.safetensors"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1);

    /* validation on other samples: every --labels sample trains, the --val_labels ones validate */
    label_records_init(&ra);
    label_records_init(&rb);
    TT_OK(label_dir_read(rf, &ra));
    TT_OK(label_dir_read(direct, &rb));
    char want[128];
    snprintf(want, sizeof want, "%lld train / %lld validation samples", (long long)ra.n, (long long)rb.n);
    label_records_free(&ra);
    label_records_free(&rb);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --val_labels '%s' --output '%s' --target recon --head mlp "
             "--hidden 8 --epochs 1", bin, rf, direct, ck);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, want));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --val_labels '%s' --output '%s' --target recon --epochs 1", bin,
             rf, d, ck); /* labelled at another layer */
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "--val_labels"));
    const char *refused[] = {"--streams 2:3", "--streams 4:9", "--streams 3:2", "--streams x", "--streams 0:2 --outputs single"};
    for (int i = 0; i < 5; i++) {
        snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --target recon --epochs 1 %s", bin, rf, ck,
                 refused[i]);
        TT_CHECK(tt_sh(cmd, out, sizeof out) != 0 && strstr(out, "--streams"));
    }
}

/* A corpus directory: two texts (one in a subdirectory), a binary file and
 * a Latin-1 file. */
static const char *s_make_corpus(void) {
    const char *dir = tt_path("corpus");
    char cmd[1200], out[256], p[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/sub'", dir);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    const char *a = "The quiet river runs under the old stone bridge, and the town wakes slowly. "
                    "Bakers open their doors, children walk to school, and the market fills with voices. "
                    "By noon the square is loud; by evening the lamps are lit and the river is dark again. ";
    const char *b = "Rules of the game: each player draws three cards, then plays one card per turn. "
                    "A card of the same colour wins the trick; the winner leads the next one. "
                    "When the deck is empty the player with the most tricks wins the round. ";
    snprintf(p, sizeof p, "%s/a.txt", dir);
    TT_CHECK(tt_write_file(p, a, strlen(a)) == 0);
    snprintf(p, sizeof p, "%s/sub/b.txt", dir);
    TT_CHECK(tt_write_file(p, b, strlen(b)) == 0);
    const char bin[] = {'E', 'L', 'F', 0, 1, 2, 3, 'x', 'y', 'z'};
    snprintf(p, sizeof p, "%s/bin.dat", dir);
    TT_CHECK(tt_write_file(p, bin, sizeof bin) == 0);
    const char latin1[] = "caf\xe9" " cr\xe8" "me br\xfb" "l\xe9" "e and more words to make it long enough to matter here";
    snprintf(p, sizeof p, "%s/latin1.txt", dir);
    TT_CHECK(tt_write_file(p, latin1, strlen(latin1)) == 0);
    return dir;
}


int main(void) {
    const char *bin = getenv("TIS_BIN");
    if (!bin) bin = "tis";
    static char tiny[1024], data[1024], corpus[1024], rd[1024]; /* tt_path's buffers are reused */
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    TT_OK(tt_write_file(data, s_data, strlen(s_data)));
    snprintf(corpus, sizeof corpus, "%s", s_make_corpus());
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    if (m) s_corpus(m, corpus);
    model_destroy(&m);
    s_recon(bin, tiny, corpus, data);
    snprintf(rd, sizeof rd, "%s", tt_path("recon"));
    s_refeature(bin, tiny, corpus, rd);
    s_selfinfo(bin, tiny, corpus, rd);
    return tt_done("test_label_recon");
}
