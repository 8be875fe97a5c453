/* test_head_io: importance-head checkpoints: the round trip of every
 * field and kind (single-score, per-head, with positions), the metadata as
 * documented, old checkpoints, the committed heads, crafted bad files,
 * bad values and truncations (each a clear error, nothing handed out), and
 * the model check. The head's arithmetic is test_head's. */
#define _GNU_SOURCE
#include <glob.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "head.h"
#include "safetensors.h"
#include "tt.h"

static head *s_new(head_kind kind, bool qa, int64_t d, int64_t hidden, int64_t rank,
                   uint64_t seed) {
    head_config c = {.kind = kind, .query_aware = qa, .d_model = d, .hidden = hidden, .rank = rank, .layer = 3,
                     .n_out = 1};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL;
    TT_OK(head_new(&h, &c, seed));
    return h;
}

static void s_fill(float *p, int64_t n, float scale, uint64_t *st) {
    for (int64_t i = 0; i < n; i++) p[i] = scale * tt_randf(st);
}

/* ---- construction -------------------------------------------------------- */

/* ---- checkpoint ---------------------------------------------------------- */

/* A head with everything set to distinct values. */
static head *s_full_head(head_kind kind, bool qa) {
    head *h = s_new(kind, qa, 8, 5, 3, 21);
    if (!h) return NULL;
    uint64_t st = 3;
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    for (int64_t k = 0; k < 8; k++) {
        h->mean[k] = 0.1f * tt_randf(&st);
        h->std[k] = 1.5f + tt_randf(&st);
    }
    h->attn_hook_lambda = 0.2f;
    snprintf(h->label_hash, sizeof h->label_hash, "sha256:0123abcd");
    snprintf(h->train_command, sizeof h->train_command, "tis train --layer 3 \"x y\"");
    return h;
}

/* Rewrites the checkpoint src into dst with one change: drop a tensor,
 * reshape one to [2][3] (6 floats), store one as F16, set a metadata value
 * (NULL value: drop the key), or add an extra F32 [2] tensor. */
typedef struct s_edit {
    const char *drop, *reshape, *f16, *meta_key, *meta_val, *extra;
} s_edit;

static void s_rewrite(const char *src, const char *dst, s_edit e) {
    st_file *f = NULL;
    TT_OK(st_open(&f, src));
    if (!f) return;
    st_writer *w = st_writer_new();
    for (int64_t i = 0; i < st_tensor_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        if (e.drop && !strcmp(t->name, e.drop)) continue;
        if (e.reshape && !strcmp(t->name, e.reshape)) {
            const int64_t shape[2] = {2, 3};
            const float zero[6] = {0};
            TT_OK(st_writer_add(w, t->name, ST_F32, 2, shape, zero));
        } else if (e.f16 && !strcmp(t->name, e.f16)) {
            uint16_t *half = calloc(t->nbytes / 4 + 1, 2);
            TT_OK(st_writer_add(w, t->name, ST_F16, t->n_dims, t->shape, half));
            free(half);
        } else {
            TT_OK(st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, t->data));
        }
    }
    if (e.extra) {
        const int64_t shape[1] = {2};
        const float two[2] = {1, 2};
        TT_OK(st_writer_add(w, e.extra, ST_F32, 1, shape, two));
    }
    for (int64_t i = 0; i < st_metadata_count(f); i++) {
        const char *k, *val;
        st_metadata_at(f, i, &k, &val);
        if (e.meta_key && !strcmp(k, e.meta_key)) continue;
        TT_OK(st_writer_add_metadata(w, k, val));
    }
    if (e.meta_key && e.meta_val) TT_OK(st_writer_add_metadata(w, e.meta_key, e.meta_val));
    TT_OK(st_writer_write(w, dst));
    st_writer_destroy(&w);
    st_destroy(&f);
}

/* head_load's status; nothing must be handed out on failure. */
static int s_load_rc(const char *path) {
    head *h = (head *)&h;
    int rc = head_load(&h, path);
    if (rc != 0 && h != NULL) return 999;
    head_destroy(&h);
    return rc;
}

/* Round trip of every field, and the metadata as documented. */
static void s_ckpt_round_trip(const head *h, const char *good) {
    st_file *f = NULL;
    head *l = NULL;
    TT_OK(head_load(&l, good));
    if (l) {
        TT_CHECK(l->cfg.kind == HEAD_MLP && l->cfg.query_aware && l->cfg.d_model == 8 &&
                 l->cfg.hidden == 5 && l->cfg.rank == 3 && l->cfg.layer == 3);
        TT_CHECK(!strcmp(l->cfg.base_model, "tiny-model"));
        TT_CHECK(l->n_params == h->n_params);
        TT_CHECK(memcmp(l->params, h->params, (size_t)h->n_params * sizeof(float)) == 0);
        TT_CHECK(l->attn_hook_lambda == 0.2f);
        TT_CHECK(!strcmp(l->label_hash, h->label_hash));
        TT_CHECK(!strcmp(l->train_command, h->train_command));
        head_destroy(&l);
    }
    /* metadata as documented */
    TT_CASE("checkpoint: metadata");
    TT_OK(st_open(&f, good));
    if (f) {
        const char *k[] = {"format", "kind", "query_aware", "d_model", "hidden", "rank",
                           "feature_norm"};
        const char *want[] = {"tis-head-1", "mlp", "1", "8", "5", "3", "rmsnorm+standardise"};
        for (int i = 0; i < 7; i++) {
            const char *got = st_metadata(f, k[i]);
            TT_CHECK(got && !strcmp(got, want[i]));
        }
        const st_tensor *t = st_tensor_find(f, "importance_head.fc1.weight");
        TT_CHECK(t && t->dtype == ST_F32 && t->n_dims == 2 && t->shape[0] == 5 &&
                 t->shape[1] == 8);
        t = st_tensor_find(f, "attn_hook_lambda");
        TT_CHECK(t && t->n_dims == 1 && t->shape[0] == 1);
        st_destroy(&f);
    }

}

/* A linear head without query round-trips too, with no extra tensors. */
static void s_ckpt_linear(void) {
    head *l = NULL;
    st_file *f = NULL;
    TT_CASE("checkpoint: linear round trip");
    head *lin = s_full_head(HEAD_LINEAR, false);
    const char *lin_path = tt_path("linear.safetensors");
    if (lin) {
        TT_OK(head_save(lin, lin_path));
        TT_OK(head_load(&l, lin_path));
        if (l) {
            TT_CHECK(l->n_params == 9 + 16 && !l->w1 && !l->pq);
            TT_CHECK(memcmp(l->params, lin->params, (size_t)lin->n_params * sizeof(float)) == 0);
            head_destroy(&l);
        }
        TT_OK(st_open(&f, lin_path));
        TT_CHECK(f && st_tensor_count(f) == 5);
        st_destroy(&f);
    }

    head_destroy(&lin);
}

/* The reference's extra component is ignored; a 0-dim lambda is fine. */
static void s_ckpt_reference(const char *good, const char *p) {
    head *l = NULL;
    st_file *f = NULL;
    TT_CASE("checkpoint: reference components");
    s_rewrite(good, p, (s_edit){.extra = "importance_embedding.table"});
    TT_OK(s_load_rc(p));
    {
        st_writer *w = st_writer_new();
        TT_OK(st_open(&f, good));
        for (int64_t i = 0; f && i < st_tensor_count(f); i++) {
            const st_tensor *t = st_tensor_at(f, i);
            TT_OK(st_writer_add(w, t->name, t->dtype,
                                strcmp(t->name, "attn_hook_lambda") ? t->n_dims : 0, t->shape,
                                t->data));
        }
        for (int64_t i = 0; f && i < st_metadata_count(f); i++) {
            const char *k, *val;
            st_metadata_at(f, i, &k, &val);
            TT_OK(st_writer_add_metadata(w, k, val));
        }
        TT_OK(st_writer_write(w, p));
        st_writer_destroy(&w);
        st_destroy(&f);
        TT_OK(head_load(&l, p));
        TT_CHECK(l && l->attn_hook_lambda == 0.2f);
        head_destroy(&l);
    }

}

/* Crafted bad files: each a clear error, never a crash. */
static void s_ckpt_crafted(const char *good, const char *p) {
    TT_CASE("checkpoint: crafted bad files");
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    const s_edit bad[] = {
        {.drop = "importance_head.key_proj.weight"},
        {.drop = "importance_head.feature_std"},
        {.drop = "attn_hook_lambda"},
        {.reshape = "importance_head.fc1.weight"},
        {.reshape = "importance_head.out_proj.bias"},
        {.f16 = "importance_head.fc1.bias"},
        {.extra = "importance_head.fc2.weight"},
        {.extra = "something_else"},
        {.meta_key = "kind", .meta_val = "transformer"},
        {.meta_key = "kind", .meta_val = "linear"}, /* fc1 present: does not belong */
        {.meta_key = "query_aware", .meta_val = "yes"},
        {.meta_key = "query_aware", .meta_val = "0"},
        {.meta_key = "format", .meta_val = "tis-head-2"},
        {.meta_key = "feature_norm", .meta_val = "layernorm"},
        {.meta_key = "d_model", .meta_val = "abc"},
        {.meta_key = "d_model", .meta_val = "8x"},
        {.meta_key = "d_model", .meta_val = ""},
        {.meta_key = "d_model", .meta_val = "-8"},
        {.meta_key = "d_model", .meta_val = "99999999999999999999999"},
        {.meta_key = "d_model", .meta_val = "16"}, /* shapes disagree */
        {.meta_key = "hidden", .meta_val = "0"},
        {.meta_key = "rank", .meta_val = "4"},
        {.meta_key = "layer", .meta_val = "-1"},
        {.meta_key = "d_model"}, /* missing */
        {.meta_key = "format"},
        {.meta_key = "base_model"},
        {.meta_key = "base_model", .meta_val = long_name},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_rewrite(good, p, bad[i]);
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    }
}

/* Values: lambda out of range, NaN weight, std 0. */
static void s_ckpt_values(head *h, const char *p) {
    TT_CASE("checkpoint: bad values");
    h->attn_hook_lambda = 0.9f;
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    h->attn_hook_lambda = -0.1f;
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    h->attn_hook_lambda = 0.5f; /* the edge is allowed */
    TT_OK(head_save(h, p));
    TT_OK(s_load_rc(p));
    h->w1[3] = NAN;
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    h->w1[3] = 0;
    h->std[2] = 0;
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    h->std[2] = 1;

}

/* Truncated: at every cut the load fails cleanly. */
static void s_ckpt_truncated(const char *good, const char *p) {
    TT_CASE("checkpoint: truncated");
    size_t len = 0;
    char *bytes = tt_read_file(good, &len);
    TT_CHECK(bytes && len > 64);
    if (bytes) {
        const size_t cuts[] = {0, 7, 8, 20, len / 2, len - 4, len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
            TT_CHECK(tt_write_file(p, bytes, cuts[i]) == 0);
            TT_FAILS(s_load_rc(p), TIS_EFORMAT);
        }
        free(bytes);
    }
    TT_FAILS(s_load_rc(tt_path("absent.safetensors")), TIS_EIO);
}

/* The model check. */
static void s_ckpt_model_check(const head *h) {
    TT_CASE("checkpoint: model check");
    TT_OK(head_check_model(h, "tiny-model", 8, 4, 2));
    TT_OK(head_check_model(h, "tiny-model", 8, 3, 2)); /* after the last layer, as label.h */
    TT_FAILS(head_check_model(h, "tiny-model", 8, 2, 2), TIS_EINVAL);
    TT_FAILS(head_check_model(h, "tiny-model", 16, 4, 2), TIS_EINVAL);
    TT_FAILS(head_check_model(h, "other-model", 8, 4, 2), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "head was trained for 'tiny-model' (d_model 8, layer 3); "
                                      "this model is 'other-model' (d_model 8, 4 layers)") != NULL);
}

static void test_checkpoint(void) {
    TT_CASE("checkpoint");
    head *h = s_full_head(HEAD_MLP, true);
    if (!h) return;
    const char *good = tt_path("good.safetensors"), *p = tt_path("bad.safetensors");
    TT_OK(head_save(h, good));
    s_ckpt_round_trip(h, good);
    s_ckpt_linear();
    s_ckpt_reference(good, p);
    s_ckpt_crafted(good, p);
    s_ckpt_values(h, p);
    s_ckpt_truncated(good, p);
    s_ckpt_model_check(h);
    head_destroy(&h);
}

/* A per-head MLP head (6 outputs, d_model 8, hidden 5, layer 2, recon). */
static head *s_per_head(uint64_t seed) {
    head_config c = {.kind = HEAD_MLP, .d_model = 8, .hidden = 5, .layer = 2, .n_out = 6,
                     .target = HEAD_TARGET_RECON};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL;
    TT_OK(head_new(&h, &c, seed));
    return h;
}

/* Per-head heads: round trip with n_out / target, an old checkpoint (no
 * n_out, no target) loads as one answer output, shapes must agree with
 * n_out, the committed heads still load, and the model check's n_out rule. */
static void test_checkpoint_per_head(void) {
    TT_CASE("checkpoint: per-head round trip");
    head *h = s_per_head(4), *l = NULL;
    if (!h) return;
    uint64_t st = 9;
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    const char *good = tt_path("per_head.safetensors"), *p = tt_path("per_head_bad.safetensors");
    TT_OK(head_save(h, good));
    TT_OK(head_load(&l, good));
    if (l) {
        TT_CHECK(l->cfg.n_out == 6 && l->cfg.target == HEAD_TARGET_RECON && l->n_params == h->n_params);
        TT_CHECK(memcmp(l->params, h->params, (size_t)h->n_params * sizeof(float)) == 0);
        head_destroy(&l);
    }
    st_file *f = NULL;
    TT_OK(st_open(&f, good));
    if (f) {
        const char *n_out = st_metadata(f, "n_out"), *target = st_metadata(f, "target");
        TT_CHECK(n_out && !strcmp(n_out, "6") && target && !strcmp(target, "recon"));
        const st_tensor *t = st_tensor_find(f, "importance_head.out_proj.weight");
        TT_CHECK(t && t->n_dims == 2 && t->shape[0] == 6 && t->shape[1] == 5);
        t = st_tensor_find(f, "importance_head.out_proj.bias");
        TT_CHECK(t && t->n_dims == 1 && t->shape[0] == 6);
        st_destroy(&f);
    }
    TT_CASE("checkpoint: per-head bad files");
    const s_edit bad[] = {
        {.meta_key = "n_out", .meta_val = "1"}, /* out_proj is [6][5] */
        {.meta_key = "n_out", .meta_val = "7"},
        {.meta_key = "n_out", .meta_val = "0"},
        {.meta_key = "n_out", .meta_val = "6x"},
        {.meta_key = "n_out"},                  /* absent: 1 output, shapes disagree */
        {.meta_key = "target", .meta_val = "question"},
        {.reshape = "importance_head.out_proj.weight"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_rewrite(good, p, bad[i]);
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    }
    TT_CASE("checkpoint: per-head model check");
    TT_OK(head_check_model(h, "tiny-model", 8, 3, 2));  /* 3 x 2 = 6 streams */
    TT_OK(head_check_model(h, "tiny-model", 8, 2, 3));  /* layer 2 = n_layer: after the last */
    TT_FAILS(head_check_model(h, "tiny-model", 8, 4, 2), TIS_EINVAL);
    TT_CHECK(strstr(tis_last_error(), "6 outputs per token") != NULL);
    TT_FAILS(head_check_model(h, "tiny-model", 8, 6, 2), TIS_EINVAL);
    head_destroy(&h);

    /* a checkpoint from before n_out / target: one output, the answer target */
    TT_CASE("checkpoint: old checkpoints");
    head *one = s_full_head(HEAD_LINEAR, false);
    if (one) {
        const char *o = tt_path("one.safetensors"), *old = tt_path("old.safetensors"),
                   *older = tt_path("older.safetensors");
        TT_OK(head_save(one, o));
        s_rewrite(o, old, (s_edit){.meta_key = "n_out"});
        s_rewrite(old, older, (s_edit){.meta_key = "target"});
        TT_OK(head_load(&l, older));
        TT_CHECK(l && l->cfg.n_out == 1 && l->cfg.target == HEAD_TARGET_ANSWER);
        TT_OK(head_check_model(l, "tiny-model", 8, 5, 7)); /* n_out 1 fits any model */
        head_destroy(&l);
        head_destroy(&one);
    }
    /* the committed default heads (written before n_out existed) */
    const char *committed[] = {"configs/heads/smollm2-135m-instruct.tis.safetensors",
                               "configs/heads/smollm2-135m-instruct.tis_query.safetensors",
                               "configs/heads/smollm2-135m-instruct.mix.tis.safetensors",
                               "configs/heads/smollm2-135m-instruct.mix.tis_query.safetensors"};
    for (size_t i = 0; i < sizeof committed / sizeof *committed; i++) {
        TT_OK(head_load(&l, tt_src(committed[i])));
        TT_CHECK(l && l->cfg.n_out == 1 && l->cfg.target == HEAD_TARGET_ANSWER);
        if (l) TT_OK(head_check_model(l, l->cfg.base_model, l->cfg.d_model, 30, 3));
        head_destroy(&l);
    }
    /* the committed per-head head (scripts/train_recon_head.sh): SmolLM2's 30 x 3 streams */
    TT_OK(head_load(&l, tt_src("configs/heads/smollm2-135m-instruct.recon.safetensors")));
    TT_CHECK(l && l->cfg.n_out == 90 && l->cfg.target == HEAD_TARGET_RECON && l->cfg.layer == 15);
    if (l) {
        TT_OK(head_check_model(l, l->cfg.base_model, l->cfg.d_model, 30, 3));
        TT_FAILS(head_check_model(l, l->cfg.base_model, l->cfg.d_model, 30, 1), TIS_EINVAL);
    }
    head_destroy(&l);
    /* Qwen2.5-Coder-0.5B's committed heads (24 layers x 2 kv heads), whichever are there */
    glob_t g;
    int64_t n_qwen = 0;
    if (glob(tt_src("configs/heads/qwen2.5-coder-0.5b-instruct.tis*.safetensors"), 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++, n_qwen++) {
            TT_OK(head_load(&l, g.gl_pathv[i]));
            /* per-head recon heads, and the one-output selfinfo head (tis_si) */
            bool si = strstr(g.gl_pathv[i], ".tis_si.") != NULL;
            TT_CHECK(l && l->cfg.layer == 12 &&
                     (si ? l->cfg.n_out == 1 && l->cfg.target == HEAD_TARGET_SELFINFO
                         : l->cfg.n_out == 48 && l->cfg.target == HEAD_TARGET_RECON));
            if (l) TT_OK(head_check_model(l, l->cfg.base_model, l->cfg.d_model, 24, 2));
            head_destroy(&l);
        }
        globfree(&g);
    }
    TT_CHECK(n_qwen >= 1);
}

/* Positional inputs (n_pos 2): the config's rules, the features, the
 * checkpoint, scoring a context. */
/* A head with positions (n_pos 2) round-trips with its `positions`
 * metadata and wider fc1 / feature statistics; a wrong or missing count
 * is refused. */
static void test_positions_file(void) {
    TT_CASE("positions: checkpoint");
    head_config c = {.kind = HEAD_MLP, .d_model = 2, .hidden = 5, .layer = 1, .n_out = 3, .n_pos = 2,
                     .target = HEAD_TARGET_RECON};
    snprintf(c.base_model, sizeof c.base_model, "tiny-model");
    head *h = NULL, *l = NULL;
    TT_OK(head_new(&h, &c, 1));
    if (!h) return;
    uint64_t st = 5;
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    h->mean[2] = 1.0f, h->std[2] = 2.0f, h->mean[3] = 0.5f, h->std[3] = 4.0f;
    const char *good = tt_path("pos.safetensors"), *p = tt_path("pos_bad.safetensors");
    TT_OK(head_save(h, good));
    TT_OK(head_load(&l, good));
    if (l) {
        TT_CHECK(l->cfg.n_pos == 2 && l->n_params == h->n_params &&
                 !memcmp(l->params, h->params, (size_t)h->n_params * sizeof(float)));
        head_destroy(&l);
    }
    st_file *sf = NULL;
    TT_OK(st_open(&sf, good));
    if (sf) {
        const char *pos = st_metadata(sf, "positions");
        const st_tensor *t = st_tensor_find(sf, "importance_head.fc1.weight");
        TT_CHECK(pos && !strcmp(pos, "2") && t && t->shape[0] == 5 && t->shape[1] == 4);
        t = st_tensor_find(sf, "importance_head.feature_std");
        TT_CHECK(t && t->shape[0] == 4);
        st_destroy(&sf);
    }
    const s_edit edits[] = {
        {.meta_key = "positions", .meta_val = "1"},
        {.meta_key = "positions", .meta_val = "3"},
        {.meta_key = "positions"}, /* absent: no positions, and fc1 is [5][4] where [5][2] is due */
        {.meta_key = "query_aware", .meta_val = "1"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        s_rewrite(good, p, edits[i]);
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    }
    head_destroy(&h);
    /* repetition inputs (n_rep 2): `repeats` metadata, two more feature columns */
    TT_CASE("repeats: checkpoint");
    c.n_rep = 2;
    TT_OK(head_new(&h, &c, 1));
    if (!h) return;
    s_fill(h->params, head_n_trained(h), 1.0f, &st);
    TT_OK(head_save(h, good));
    TT_OK(head_load(&l, good));
    if (l) {
        TT_CHECK(l->cfg.n_rep == 2 && l->cfg.n_pos == 2 && head_feat_dim(l) == 6 && l->n_params == h->n_params &&
                 !memcmp(l->params, h->params, (size_t)h->n_params * sizeof(float)));
        head_destroy(&l);
    }
    TT_OK(st_open(&sf, good));
    if (sf) {
        const char *rep = st_metadata(sf, "repeats");
        const st_tensor *t = st_tensor_find(sf, "importance_head.fc1.weight");
        TT_CHECK(rep && !strcmp(rep, "2") && t && t->shape[1] == 6);
        st_destroy(&sf);
    }
    const s_edit redits[] = {
        {.meta_key = "repeats", .meta_val = "1"},
        {.meta_key = "repeats", .meta_val = "4"},
        {.meta_key = "repeats"}, /* absent: fc1 is [5][6] where [5][4] is due */
        {.meta_key = "query_aware", .meta_val = "1"},
    };
    for (size_t i = 0; i < sizeof redits / sizeof *redits; i++) {
        s_rewrite(good, p, redits[i]);
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    }
    head_destroy(&h);
}

/* A calibrated per-head head round-trips its knots; a calibration that
 * is half there, of another shape or type, not strictly increasing, not
 * finite, or in a single-score head is refused. */
static void test_calibration_file(void) {
    TT_CASE("checkpoint: calibration");
    head *h = s_per_head(4), *l = NULL;
    if (!h) return;
    enum { N = 50 };
    float pred[6 * N], tgt[6 * N];
    uint64_t st = 3;
    for (int i = 0; i < 6 * N; i++) pred[i] = tt_randf(&st), tgt[i] = 3 * tt_randf(&st) - 5;
    TT_OK(head_calibrate(h, pred, tgt, N));
    const char *good = tt_path("calib.safetensors"), *p = tt_path("calib_bad.safetensors");
    TT_OK(head_save(h, good));
    TT_OK(head_load(&l, good));
    const size_t kb = (size_t)(6 * HEAD_CALIB_KNOTS) * sizeof(float);
    TT_CHECK(l && l->n_calib == HEAD_CALIB_KNOTS && !memcmp(l->calib_x, h->calib_x, kb) &&
             !memcmp(l->calib_y, h->calib_y, kb));
    head_destroy(&l);
    const s_edit bad[] = {
        {.drop = "importance_head.calib_target"},
        {.drop = "importance_head.calib_pred"},
        {.reshape = "importance_head.calib_pred"},
        {.f16 = "importance_head.calib_target"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_rewrite(good, p, bad[i]);
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    }
    const float keep = h->calib_x[7];
    h->calib_x[7] = h->calib_x[6]; /* flat: the map would merge two scores */
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    h->calib_x[7] = keep;
    h->calib_y[HEAD_CALIB_KNOTS + 3] = NAN;
    TT_OK(head_save(h, p));
    TT_FAILS(s_load_rc(p), TIS_EFORMAT);
    /* knots in a single-score head */
    head *one = s_full_head(HEAD_MLP, false);
    if (one) {
        one->calib_x = malloc(4 * sizeof(float));
        one->calib_y = malloc(4 * sizeof(float));
        for (int i = 0; one->calib_x && one->calib_y && i < 4; i++) one->calib_x[i] = one->calib_y[i] = (float)i;
        one->n_calib = 4;
        TT_OK(head_save(one, p));
        TT_FAILS(s_load_rc(p), TIS_EFORMAT);
        head_destroy(&one);
    }
    head_destroy(&h);
}

int main(void) {
    test_checkpoint();
    test_checkpoint_per_head();
    test_positions_file();
    test_calibration_file();
    return tt_done("test_head_io");
}
