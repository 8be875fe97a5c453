/* tiny_model: random-weight GGUF models for tests. */
#include "tiny_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_model.h"
#include "gguf_writer.h"
#include "model.h"
#include "quant.h"
#include "tis_error.h"
#include "tt.h"

/* Merges of the tiny vocabulary, in rank order (GPT-2 byte-unicode form:
 * "Ġ" is the space byte). */
static const char *s_merges[] = {"t h", "th e", "Ġ t", "h e", "Ġt he", "i n", "a n", "e r"};
static const char *s_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
enum { N_MERGES = sizeof s_merges / sizeof s_merges[0], N_SPECIALS = 3 };

tiny_spec tiny_spec_default(void) {
    return (tiny_spec){.arch = "llama", .d_model = 64, .n_layer = 2, .n_head = 4,
                       .n_kv_head = 2, .d_ff = 96, .rope_theta = 10000.0f, .tied = 1,
                       .wtype = GGML_TYPE_F32, .seed = 7};
}

int64_t tiny_vocab_size(void) { return N_SPECIALS + 256 + N_MERGES; }

static int s_tensor(gguf_writer *w, const char *name, int type, int64_t rows, int64_t cols,
                    float scale, float offset, uint64_t *rng) {
    size_t n = (size_t)(rows ? rows : 1) * (size_t)cols;
    float *buf = malloc(n * sizeof(float));
    if (!buf) return tis_error(TIS_ENOMEM, "tiny_model: out of memory");
    for (size_t i = 0; i < n; i++) buf[i] = offset + scale * tt_randf(rng);
    int64_t ne[2] = {cols, rows};
    int rc = gguf_writer_add_tensor(w, name, type, rows ? 2 : 1, ne, buf);
    free(buf);
    return rc;
}

int tiny_model_write(const char *path, const tiny_spec *sp) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return tis_error(TIS_ENOMEM, "tiny_model: out of memory");
    int64_t nv = tiny_vocab_size(), hd = sp->d_model / sp->n_head;
    const char *a = sp->arch;
    char key[128];
    int rc = 0;
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
    rc |= gguf_writer_add_str(w, "general.architecture", a);
    rc |= gguf_writer_add_str(w, "general.name", "tiny-test");
    rc |= gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)sp->n_layer);
    rc |= gguf_writer_add_u32(w, KEY("context_length"), 4096);
    rc |= gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)sp->d_model);
    rc |= gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)sp->d_ff);
    rc |= gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)sp->n_head);
    rc |= gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)sp->n_kv_head);
    rc |= gguf_writer_add_f32(w, KEY("rope.freq_base"), sp->rope_theta);
    rc |= gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    rc |= gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)nv);
    rc |= gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
#undef KEY
    /* Tokenizer: specials first (ids 0..2), then 256 byte tokens, then merges. */
    char **toks = calloc((size_t)nv, sizeof(char *));
    int32_t *types = calloc((size_t)nv, sizeof(int32_t));
    if (!toks || !types) {
        free(toks);
        free(types);
        gguf_writer_destroy(&w);
        return tis_error(TIS_ENOMEM, "tiny_model: out of memory");
    }
    int64_t k = 0;
    for (int i = 0; i < N_SPECIALS; i++, k++) {
        toks[k] = strdup(s_specials[i]);
        types[k] = 3; /* CONTROL */
    }
    for (int b = 0; b < 256; b++, k++) {
        toks[k] = malloc(4);
        gen_model_byte_piece(b, toks[k]);
        types[k] = 1;
    }
    for (int i = 0; i < N_MERGES; i++, k++) {
        const char *sp_ = strchr(s_merges[i], ' ');
        size_t l1 = (size_t)(sp_ - s_merges[i]);
        toks[k] = malloc(strlen(s_merges[i]));
        memcpy(toks[k], s_merges[i], l1);
        strcpy(toks[k] + l1, sp_ + 1);
        types[k] = 1;
    }
    rc |= gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    rc |= gguf_writer_add_str(w, "tokenizer.ggml.pre", "smollm");
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)nv);
    rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)nv);
    rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", s_merges, N_MERGES);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0);
    rc |= gguf_writer_add_str(w, "tokenizer.chat_template",
                              "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                              "'\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}");
    for (int64_t i = 0; i < nv; i++) free(toks[i]);
    free(toks);
    free(types);
    if (rc) {
        gguf_writer_destroy(&w);
        return tis_error(TIS_EINVAL, "tiny_model: metadata: %s", tis_last_error());
    }
    /* Weights: scales keep activations O(1) through the layers. */
    uint64_t rng = sp->seed ? sp->seed : 1;
    int64_t d = sp->d_model, qd = sp->n_head * hd, kd = sp->n_kv_head * hd;
    float ws = 1.0f / (float)d;
    rc |= s_tensor(w, "token_embd.weight", sp->wtype, nv, d, 1.0f, 0, &rng);
    rc |= s_tensor(w, "output_norm.weight", GGML_TYPE_F32, 0, d, 0.2f, 1.0f, &rng);
    if (!sp->tied) rc |= s_tensor(w, "output.weight", sp->wtype, nv, d, 0.5f, 0, &rng);
    int qwen = strcmp(a, "qwen2") == 0;
    for (int64_t l = 0; l < sp->n_layer; l++) {
        char n[96];
#define T(suffix, rows, cols, scale, off, type)                                   \
    (snprintf(n, sizeof n, "blk.%lld.%s", (long long)l, suffix),                  \
     s_tensor(w, n, type, rows, cols, scale, off, &rng))
        rc |= T("attn_norm.weight", 0, d, 0.2f, 1.0f, GGML_TYPE_F32);
        rc |= T("attn_q.weight", qd, d, 3 * ws * 8, 0, sp->wtype);
        rc |= T("attn_k.weight", kd, d, 3 * ws * 8, 0, sp->wtype);
        rc |= T("attn_v.weight", kd, d, 3 * ws * 8, 0, sp->wtype);
        if (qwen) {
            rc |= T("attn_q.bias", 0, qd, 0.1f, 0, GGML_TYPE_F32);
            rc |= T("attn_k.bias", 0, kd, 0.1f, 0, GGML_TYPE_F32);
            rc |= T("attn_v.bias", 0, kd, 0.1f, 0, GGML_TYPE_F32);
        }
        rc |= T("attn_output.weight", d, qd, 3 * ws * 4, 0, sp->wtype);
        rc |= T("ffn_norm.weight", 0, d, 0.2f, 1.0f, GGML_TYPE_F32);
        rc |= T("ffn_gate.weight", sp->d_ff, d, 3 * ws * 8, 0, sp->wtype);
        rc |= T("ffn_up.weight", sp->d_ff, d, 3 * ws * 8, 0, sp->wtype);
        rc |= T("ffn_down.weight", d, sp->d_ff, 3.0f / (float)sp->d_ff * 4, 0, sp->wtype);
#undef T
    }
    if (rc) {
        gguf_writer_destroy(&w);
        return tis_error(TIS_EINVAL, "tiny_model: tensors: %s", tis_last_error());
    }
    rc = gguf_writer_write(w, path);
    gguf_writer_destroy(&w);
    return rc;
}

int tiny_model_make(const char *path, const tiny_spec *spec, model **out) {
    *out = NULL;
    int rc = tiny_model_write(path, spec);
    return rc ? rc : model_load(out, path);
}
