/* tis info: what a model file holds, without loading the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"
#include "gguf.h"
#include "head.h"
#include "quant.h"
#include "safetensors.h"
#include "tis_error.h"

/* Where tis eval looks for this model's heads (cli_default_head: the one
 * rule; scripts/train_recon_head.sh reads this line). */
static void s_print_default_head(const char *path) {
    char h[1200];
    cli_default_head(path, "tis", h, sizeof h);
    printf("default head    %s (tis; tis_query: .tis_query.safetensors)\n", h);
}

static void s_print_config(const model_config *c) {
    printf("architecture    %s\n", c->arch);
    printf("name            %s\n", c->name);
    printf("vocab           %lld\n", (long long)c->n_vocab);
    printf("d_model         %lld\n", (long long)c->d_model);
    printf("layers          %lld\n", (long long)c->n_layer);
    printf("heads           %lld (kv heads %lld, head dim %lld)\n", (long long)c->n_head,
           (long long)c->n_kv_head, (long long)c->head_dim);
    printf("d_ff            %lld\n", (long long)c->d_ff);
    printf("context (train) %lld\n", (long long)c->n_ctx_train);
    printf("rope            theta %g, %lld dims, %s%s\n", (double)c->rope_theta,
           (long long)c->rope_dim, c->rope_interleaved ? "adjacent pairs" : "halves",
           c->rope_scaling_type == ROPE_SCALING_NONE     ? ""
           : c->rope_scaling_type == ROPE_SCALING_LINEAR ? ", linear scaling"
                                                         : ", llama3 scaling");
    printf("rms eps         %g\n", (double)c->norm_eps);
    printf("embeddings      %s\n", c->tied_embeddings ? "tied" : "untied");
    int64_t d = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv_head * c->head_dim;
    int64_t params = c->n_vocab * d * (c->tied_embeddings ? 1 : 2) + d +
                     c->n_layer * (2 * d + 2 * qd * d + 2 * kd * d + 3 * d * c->d_ff);
    printf("parameters      %.1f M\n", (double)params / 1e6);
    printf("KV per token    %lld bytes (f16 keys + values, all layers; %lld in f32; + 4 per layer and kv head "
           "for positions)\n",
           (long long)(2 * c->n_layer * kd * 2), (long long)(2 * c->n_layer * kd * 4));
}

static int s_info_gguf(const char *path) {
    gguf_file *g = NULL;
    if (gguf_open(&g, path)) return cli_fail("reading the model");
    printf("file            %s (GGUF v%u, %lld metadata keys, %lld tensors)\n", path,
           gguf_version(g), (long long)gguf_kv_count(g), (long long)gguf_tensor_count(g));
    model_config c;
    if (config_from_gguf(&c, g) == 0) s_print_config(&c);
    else printf("config          not a supported model: %s\n", tis_last_error());
    gguf_str s;
    if (gguf_get_str(g, "tokenizer.ggml.model", &s) == 0)
        printf("tokenizer       %.*s", (int)(s.len > 64 ? 64 : s.len), s.ptr);
    if (gguf_get_str(g, "tokenizer.ggml.pre", &s) == 0)
        printf(" (pre %.*s)", (int)(s.len > 64 ? 64 : s.len), s.ptr);
    printf("\n");
    int64_t count[GGML_TYPE_COUNT] = {0};
    size_t bytes[GGML_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type >= 0 && t->type < GGML_TYPE_COUNT) {
            count[t->type]++;
            bytes[t->type] += t->nbytes;
        }
    }
    printf("tensor types   ");
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (count[t])
            printf(" %s x%lld (%.1f MiB)", quant_type_name(t) ? quant_type_name(t) : "?",
                   (long long)count[t], (double)bytes[t] / 1048576.0);
    printf("\n");
    s_print_default_head(path);
    gguf_destroy(&g);
    return 0;
}

static int s_info_dir(const char *path) {
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", path);
    model_config c;
    if (config_from_hf_json(&c, p)) return cli_fail("reading config.json");
    st_model *st = NULL;
    if (st_model_open(&st, path)) return cli_fail("reading the safetensors");
    printf("directory       %s (safetensors, %lld tensors)\n", path,
           (long long)st_model_tensor_count(st));
    s_print_config(&c);
    int64_t count[16] = {0};
    size_t bytes[16] = {0};
    for (int64_t i = 0; i < st_model_tensor_count(st); i++) {
        const st_tensor *t = st_model_tensor_at(st, i);
        if ((int)t->dtype >= 0 && (int)t->dtype < 16) {
            count[t->dtype]++;
            bytes[t->dtype] += t->nbytes;
        }
    }
    printf("tensor types   ");
    for (int t = 0; t < 16; t++)
        if (count[t])
            printf(" %s x%lld (%.1f MiB)", st_dtype_name((st_dtype)t), (long long)count[t],
                   (double)bytes[t] / 1048576.0);
    printf("\n");
    s_print_default_head(path);
    st_model_destroy(&st);
    return 0;
}

/* An importance-head checkpoint or a label shard (safetensors with tis metadata). */
static int s_info_safetensors(const char *path) {
    st_file *f = NULL;
    if (st_open(&f, path)) return cli_fail("reading the file");
    const char *fmt = st_metadata(f, "format");
    if (fmt && !strcmp(fmt, "tis-head-1")) {
        st_destroy(&f);
        head *h = NULL;
        if (head_load(&h, path)) return cli_fail("reading the head");
        printf("importance head  %s%s\n", h->cfg.kind == HEAD_MLP ? "mlp" : "linear",
               h->cfg.query_aware ? ", query-aware (tis_query)" : " (tis)");
        printf("base model       %s (d_model %lld)\n", h->cfg.base_model, (long long)h->cfg.d_model);
        printf("features         layer %lld, rmsnorm + standardise%s%s\n", (long long)h->cfg.layer,
               h->cfg.n_pos ? "; + the token's position in the context (10 j/n, ln(1 + j))" : "",
               h->cfg.n_rep ? "; + whether its text occurs earlier / later in the context" : "");
        if (h->cfg.kind == HEAD_MLP) printf("hidden           %lld\n", (long long)h->cfg.hidden);
        if (h->cfg.query_aware) printf("query rank       %lld\n", (long long)h->cfg.rank);
        printf("outputs          %lld per token%s; target %s\n", (long long)h->cfg.n_out,
               h->cfg.n_out > 1 ? " (one per layer x kv head stream)" : "",
               h->cfg.target == HEAD_TARGET_RECON      ? "recon (outputs predict ln of the reconstruction score)"
               : h->cfg.target == HEAD_TARGET_SELFINFO ? "selfinfo (the word self-information ranking)"
                                                       : "answer (oracle attention ranking)");
        if (h->cfg.n_out > 1) {
            if (h->n_calib) printf("calibration      %lld knots per stream (tis train --calibrate)\n", (long long)h->n_calib);
            else printf("calibration      none (the outputs as trained)\n");
        }
        printf("parameters       %lld trained\n", (long long)head_n_trained(h));
        printf("attn_hook_lambda %g\n", (double)h->attn_hook_lambda);
        printf("labels           %s\n", h->label_hash[0] ? h->label_hash : "(unknown)");
        printf("trained by       %s\n", h->train_command[0] ? h->train_command : "(unknown)");
        head_destroy(&h);
        return 0;
    }
    printf("safetensors: %lld tensors, %lld metadata keys\n", (long long)st_tensor_count(f),
           (long long)st_metadata_count(f));
    for (int64_t i = 0; i < st_metadata_count(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        printf("  %-16s %.100s%s\n", k, v, strlen(v) > 100 ? "..." : "");
    }
    for (int64_t i = 0; i < st_tensor_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        printf("  %-24s %-5s [", t->name, st_dtype_name(t->dtype));
        for (int k = 0; k < t->n_dims; k++) printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
        printf("]\n");
    }
    st_destroy(&f);
    return 0;
}

int cmd_info(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: tis info MODEL | HEAD.safetensors | SHARD.safetensors\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: tis info MODEL   (a .gguf file or a HF directory)\n");
        return 2;
    }
    struct stat sb;
    if (stat(argv[1], &sb) != 0) {
        fprintf(stderr, "tis info: cannot open '%s'\n", argv[1]);
        return 1;
    }
    size_t l = strlen(argv[1]);
    if (!S_ISDIR(sb.st_mode) && l > 12 && !strcmp(argv[1] + l - 12, ".safetensors"))
        return s_info_safetensors(argv[1]);
    return S_ISDIR(sb.st_mode) ? s_info_dir(argv[1]) : s_info_gguf(argv[1]);
}
