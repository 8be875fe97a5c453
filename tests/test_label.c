/* test_label: `tis label` on a tiny model: shards round-trip (shapes,
 * offsets, labels sum to 1, features equal a direct label_run), a run
 * killed after its first shard resumes to byte-identical shards and
 * manifest, changed settings are refused, Python's safetensors reads a
 * shard where it is installed. The shards read back (label_dir_read, what
 * tis train reads): every sample, the shard's values, refusals; `tis train`
 * on them: a checkpoint that loads, the same bytes from a second run.
 * Reconstruction and self-information labels: test_label_recon.c. */
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

static const char *s_data =
    "{\"id\": \"s0\", \"context\": \"the cat sat on the mat and the dog ran in the park while the sun was hot\", "
    "\"question\": \"where is the cat?\", \"answers\": [\"the mat\"]}\n"
    "{\"id\": \"s1\", \"context\": \"one two three four five six seven eight nine ten eleven twelve\", "
    "\"question\": \"what comes after four?\", \"answers\": \"five\"}\n"
    "{\"id\": \"s2\", \"context\": \"in the north the rain and the ther then the thin hen ran\", \"question\": \"who ran?\"}\n"
    "{\"id\": \"s3\", \"context\": \"an inn near the errand then the hen and the rain\", \"question\": \"what is near?\", "
    "\"answers\": [\"inn\"]}\n"
    "{\"id\": \"s4\", \"context\": \"the end of the list is here and then there\", \"question\": \"where?\", "
    "\"answers\": [\"here\"]}\n";

static bool s_same_file(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = tt_read_file(a, &la), *y = tt_read_file(b, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* label_dir_read on dir (5 samples of a 3-layer tiny model, layer 3):
 * counts, the shard's labels and features as f32, the fingerprint; a
 * directory of another layer, an empty one and a file that is no label
 * shard are refused. */
static void s_read_back(const char *dir, const char *same, const char *other_layer, const model *m) {
    label_records r, r2;
    label_records_init(&r);
    label_records_init(&r2);
    TT_OK(label_dir_read(dir, &r));
    TT_CHECK(r.n == 5 && r.d_model == m->config.d_model && r.layer == 3 && !strcmp(r.model, m->config.name));
    for (int64_t i = 0; i < r.n; i++) {
        double sum = 0;
        for (int64_t j = 0; j < r.s[i].n_ctx; j++) sum += r.s[i].labels[j];
        TT_CHECK(r.s[i].n_ctx > 0 && r.s[i].n_q > 0 && fabs(sum - 1.0) < 1e-4);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/shard-00001.safetensors", dir); /* samples 2 and 3 */
    st_file *f = NULL;
    TT_OK(st_open(&f, path));
    const st_tensor *feat = f ? st_tensor_find(f, "features") : NULL, *lab = f ? st_tensor_find(f, "labels") : NULL;
    if (feat && lab && r.n == 5) {
        const uint16_t *F = feat->data;
        const float *L = lab->data;
        int64_t n2 = r.s[2].n_ctx, d = r.d_model;
        TT_CHECK(feat->shape[0] == n2 + r.s[3].n_ctx);
        bool same_f = true, same_l = true;
        for (int64_t j = 0; j < n2 * d; j++) same_f &= r.s[2].features[j] == label_f32(F[j]);
        for (int64_t j = 0; j < r.s[3].n_ctx; j++) same_l &= r.s[3].labels[j] == L[n2 + j];
        TT_CHECK(same_f && same_l);
    }
    st_destroy(&f);
    TT_OK(label_dir_read(same, &r2)); /* byte-identical shards: the same fingerprint */
    TT_CHECK(r2.n == 5 && r2.hash == r.hash);
    TT_FAILS(label_dir_read(other_layer, &r), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "layer 1, the others for"));
    TT_CHECK(r.n == 5); /* what was read before stays */
    const char *empty = tt_path("empty");
    char cmd[1200], out[256];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", empty);
    tt_sh(cmd, out, sizeof out);
    TT_FAILS(label_dir_read(empty, &r2), TIS_ENOTFOUND);
    TT_FAILS(label_dir_read(tt_path("nosuch"), &r2), TIS_EIO);
    label_records_free(&r);
    label_records_free(&r2);
    TT_CHECK(r.n == 0 && r.s == NULL);
}

/* tis train on the labels: a checkpoint that loads and names the labels'
 * fingerprint; a second run gives the same bytes; no labels: exit 1. */
static void s_train(const char *bin, const char *dir) {
    static char out[1 << 16];
    char cmd[4096], ckpt[1024], metrics[1024];
    snprintf(ckpt, sizeof ckpt, "%s", tt_path("head.safetensors"));
    snprintf(metrics, sizeof metrics, "%s", tt_path("head_metrics.csv"));
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s' --head mlp --hidden 8 --epochs 3 --val_frac 0.4",
             bin, dir, ckpt);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "2 validation samples") && strstr(out, "[train] best epoch"));
    if (rc) fprintf(stderr, "%s\n", out);
    size_t n1 = 0, nm = 0;
    char *first = tt_read_file(ckpt, &n1), *csv = tt_read_file(metrics, &nm);
    TT_CHECK(csv && !strncmp(csv, "epoch,train_loss,val_loss", 25) && strstr(csv, "\n0,nan,"));
    head *h = NULL;
    TT_OK(head_load(&h, ckpt));
    label_records r;
    label_records_init(&r);
    TT_OK(label_dir_read(dir, &r));
    char hash[80];
    snprintf(hash, sizeof hash, "fnv1a64:%016llx", (unsigned long long)r.hash);
    TT_CHECK(h && h->cfg.kind == HEAD_MLP && h->cfg.layer == 3 && !strcmp(h->label_hash, hash) &&
             !strncmp(h->train_command, "tis train --labels", 18));
    head_destroy(&h);
    label_records_free(&r);
    TT_CHECK(tt_rerun_same(cmd, ckpt, first, n1)); /* the same bytes again */
    free(csv);
    snprintf(cmd, sizeof cmd, "'%s' train --labels '%s' --output '%s'", bin, tt_path("empty"), ckpt);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "train: no shard-*.safetensors in"));
}

/* The manifest: one line per sample. */
static void s_manifest(const char *d1) {
    char path[1024];
    TT_CASE("manifest");
    /* manifest: one line per sample */
    snprintf(path, sizeof path, "%s/manifest.jsonl", d1);
    size_t len = 0;
    char *man = tt_read_file(path, &len);
    int lines = 0;
    for (size_t i = 0; man && i < len; i++) lines += man[i] == '\n';
    TT_CHECK(lines == 5);
    TT_CHECK(man && strstr(man, "\"id\":\"s2\"") && strstr(man, "\"answer_source\":\"model\""));
    free(man);

}

/* Shard 0 round-trip: shapes, offsets, label sums, features = label_run's. */
static void s_shard(const char *d1, const char *tiny, const char *data) {
    char path[1024];
    TT_CASE("shard round-trip");
    /* shard 0 round-trip: shapes, offsets, label sums, features = label_run's */
    snprintf(path, sizeof path, "%s/shard-00000.safetensors", d1);
    st_file *f = NULL;
    TT_OK(st_open(&f, path));
    model *m = NULL;
    TT_OK(model_load(&m, tiny));
    if (f && m) {
        const st_tensor *spans = st_tensor_find(f, "sample_spans"), *lab = st_tensor_find(f, "labels"),
                        *co = st_tensor_find(f, "ctx_offsets"), *feat = st_tensor_find(f, "features"),
                        *ph = st_tensor_find(f, "labels_per_head"), *tok = st_tensor_find(f, "token_ids");
        TT_CHECK(spans && lab && co && feat && ph && tok);
        TT_CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "tis-labels-1"));
        TT_CHECK(st_metadata(f, "sample_ids") && !strcmp(st_metadata(f, "sample_ids"), "[\"s0\",\"s1\"]"));
        if (spans && lab && co && feat && ph && tok) {
            const int64_t *sp2 = spans->data, *off = co->data;
            const float *l = lab->data;
            TT_CHECK(spans->shape[0] == 2 && co->shape[0] == 3 && off[0] == 0);
            TT_CHECK(feat->dtype == ST_F16 && feat->shape[1] == m->config.d_model && feat->shape[0] == off[2]);
            TT_CHECK(ph->shape[0] == off[2] * m->config.n_layer * m->config.n_head);
            for (int i = 0; i < 2; i++) {
                TT_CHECK(off[i + 1] - off[i] == sp2[i * 4 + 1]);
                double sum = 0;
                for (int64_t j = off[i]; j < off[i + 1]; j++) sum += l[j];
                TT_CHECK(fabs(sum - 1.0) < 1e-4);
            }
            /* the same sample labelled directly gives the same bytes */
            bench_set set = {0};
            TT_OK(bench_load_jsonl(data, &set));
            forward_state *st = NULL;
            TT_OK(forward_state_new(&st, m, backend_cpu(), 512));
            chat_template ct = {0};
            TT_OK(chat_template_init(&ct, tokenizer_chat_template(m->tok)));
            label_config cfg = {.layer = m->config.n_layer, .per_head = true, .max_new = 6,
                                .chat = tokenizer_chat_template(m->tok) != NULL};
            label_sample ls;
            if (st && set.n == 5) {
                TT_OK(label_run(st, &ct, &cfg, &set.s[1], &ls));
                TT_CHECK(ls.n_ctx == off[2] - off[1]);
                /* (the CLI may run other BLAS kernels: equal up to rounding) */
                double fe = 0, le = 0;
                const uint16_t *F = (const uint16_t *)feat->data + off[1] * m->config.d_model;
                for (int64_t j = 0; ls.features && j < ls.n_ctx * m->config.d_model; j++) {
                    double a = label_f32(ls.features[j]), b = label_f32(F[j]);
                    double e = fabs(a - b) / (1.0 + fabs(b));
                    if (e > fe) fe = e;
                }
                for (int64_t j = 0; ls.labels && j < ls.n_ctx; j++)
                    if (fabs(ls.labels[j] - l[off[1] + j]) > le) le = fabs(ls.labels[j] - l[off[1] + j]);
                fprintf(stderr, "  direct vs CLI: features %.2e, labels %.2e\n", fe, le);
                TT_CHECK(ls.features && fe < 2e-3);
                TT_CHECK(ls.labels && le < 1e-4);
                label_sample_free(&ls);
                cfg.layer = 99;
                TT_FAILS(label_run(st, &ct, &cfg, &set.s[1], &ls), TIS_EINVAL);
            }
            chat_template_free(&ct);
            forward_state_destroy(&st);
            bench_set_free(&set);
        }
    }
    st_destroy(&f);
    model_destroy(&m);
    TT_CHECK(label_f32(label_f16(1.5f)) == 1.5f && label_f32(label_f16(1e6f)) == 65504.0f);

}

/* Killed right after writing its first shard (before the manifest), then
 * resumed: the same shards and manifest. */
static void s_resume(const char *bin, const char *d1, const char *d2, const char *tiny, const char *data) {
    static char out[1 << 16];
    char cmd[4096], path[1024], path2[1024];
    int rc;
    TT_CASE("resume after a kill");
    /* killed right after writing its first shard (before the manifest),
     * then resumed: the same shards and manifest */
    snprintf(cmd, sizeof cmd,
             "TIS_FAULT_LABEL_EXIT_AFTER_SHARDS=1 '%s' label -m '%s' --dataset '%s' --output '%s' --shard_size 2 "
             "--per_head --max_new 6", bin, tiny, data, d2);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 137);
    snprintf(path, sizeof path, "%s/manifest.jsonl", d2);
    FILE *mf = fopen(path, "rb");
    TT_CHECK(mf == NULL); /* nothing recorded yet: the shard will be redone */
    if (mf) fclose(mf);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' --output '%s' --shard_size 2 --per_head --max_new 6",
             bin, tiny, data, d2);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    /* and once more: everything is done, nothing changes */
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "5 already"));
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/shard-%05d.safetensors", d1, k);
        snprintf(path2, sizeof path2, "%s/shard-%05d.safetensors", d2, k);
        TT_CHECK(s_same_file(path, path2));
    }
    snprintf(path, sizeof path, "%s/manifest.jsonl", d1);
    snprintf(path2, sizeof path2, "%s/manifest.jsonl", d2);
    TT_CHECK(s_same_file(path, path2));

}

/* Other settings into the same directory are refused. */
static void s_refused(const char *bin, const char *d1, const char *tiny, const char *data) {
    static char out[1 << 16];
    char cmd[4096];
    TT_CASE("other settings refused");
    /* other settings into the same directory are refused */
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' --output '%s' --layer 1", bin, tiny, data, d1);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 1 && strstr(out, "other settings"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s'", bin, tiny, data);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2 && strstr(out, "--output"));
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --benchmark nosuch --output '%s'", bin, tiny, tt_path("x"));
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 2);

}

/* Python reads a shard with the safetensors package, where it is installed. */
static void s_python(const char *d1) {
    static char out[1 << 16];
    char cmd[4096];
    TT_CASE("python reads a shard");
    /* Python reads a shard with the safetensors package, where it is installed */
    if (tt_sh("python3 -c 'import numpy, safetensors.numpy'", out, sizeof out) == 0) {
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"from safetensors.numpy import load_file; import numpy as np; "
                 "d = load_file('%s/shard-00000.safetensors'); o = d['ctx_offsets']; "
                 "assert d['features'].dtype == np.float16 and d['features'].shape[0] == o[-1]; "
                 "assert all(abs(d['labels'][o[i]:o[i+1]].sum() - 1) < 1e-4 for i in range(len(o) - 1)); "
                 "print('python ok')\"", d1);
        TT_CHECK(tt_sh(cmd, out, sizeof out) == 0 && strstr(out, "python ok"));
        fprintf(stderr, "  %s", out);
    } else {
        fprintf(stderr, "  python3 has no numpy + safetensors here: the Python check is skipped\n");
    }
}

int main(void) {
    static char out[1 << 16];
    char cmd[4096];
    const char *bin = getenv("TIS_BIN");
    if (!bin) bin = "tis";
    static char tiny[1024], data[1024]; /* tt_path's buffers are reused */
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    tiny_spec sp = tiny_spec_default();
    sp.n_layer = 3;
    TT_OK(tiny_model_write(tiny, &sp));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    TT_OK(tt_write_file(data, s_data, strlen(s_data)));
    const char *d1 = tt_path("run1"), *d2 = tt_path("run2");

    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' --output '%s' --shard_size 2 --per_head --max_new 6",
             bin, tiny, data, d1);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);

    s_manifest(d1);
    s_shard(d1, tiny, data);
    s_resume(bin, d1, d2, tiny, data);
    s_refused(bin, d1, tiny, data);
    s_python(d1);
    TT_CASE("shards read back, tis train");
    /* the shards read back, another layer's refused; tis train on them */
    const char *d3 = tt_path("run3");
    model *m = NULL;
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' --output '%s' --layer 1 --max_new 6", bin, tiny, data, d3);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    TT_OK(model_load(&m, tiny));
    if (m) s_read_back(d1, d2, d3, m);
    model_destroy(&m);
    s_train(bin, d1);
    return tt_done("test_label");
}
