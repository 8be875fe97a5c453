/* gen_model: random-weight GGUF models at real shapes. */
#include "gen_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_writer.h"
#include "quant.h"
#include "tis_error.h"
#include "rng.h"

const char *const gen_model_names[] = {"smollm2-135m", "smollm2-360m", "llama3-8b", "mistral-7b", NULL};

int gen_model_preset(const char *name, gen_model_spec *o) {
    memset(o, 0, sizeof *o);
    o->wtype = GGML_TYPE_BF16;
    o->seed = 1;
    o->context = 8192;
    if (!strcmp(name, "smollm2-135m")) {
        *o = (gen_model_spec){"gen smollm2-135m", 576, 30, 9, 3, 1536, 49152, 8192, 100000.0f, 1, GGML_TYPE_BF16, 1};
    } else if (!strcmp(name, "smollm2-360m")) {
        *o = (gen_model_spec){"gen smollm2-360m", 960, 32, 15, 5, 2560, 49152, 8192, 100000.0f, 1, GGML_TYPE_BF16, 1};
    } else if (!strcmp(name, "llama3-8b")) {
        *o = (gen_model_spec){"gen llama3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, 500000.0f, 0, GGML_TYPE_BF16, 1};
    } else if (!strcmp(name, "mistral-7b")) {
        *o = (gen_model_spec){"gen mistral-7b", 4096, 32, 32, 8, 14336, 32000, 32768, 1000000.0f, 0, GGML_TYPE_BF16, 1};
    } else {
        return tis_error(TIS_ENOTFOUND, "gen-model: unknown config '%s'", name);
    }
    return 0;
}

int64_t gen_model_params(const gen_model_spec *s) {
    int64_t hd = s->d_model / s->n_head, qd = s->n_head * hd, kd = s->n_kv_head * hd;
    int64_t layer = 2 * s->d_model + s->d_model * (qd + 2 * kd) + qd * s->d_model + 3 * s->d_model * s->d_ff;
    return s->n_vocab * s->d_model * (s->tied ? 1 : 2) + s->d_model + s->n_layer * layer;
}

void gen_model_byte_piece(int b, char out[4]) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static uint64_t s_next(uint64_t *x) { return tis_rng_next(x); }

/* Uniform in [offset - scale, offset + scale]. */
static int s_tensor(gguf_writer *w, const char *name, int type, int64_t rows, int64_t cols, float scale,
                    float offset, uint64_t *rng) {
    size_t n = (size_t)(rows ? rows : 1) * (size_t)cols;
    float *buf = malloc(n * sizeof(float));
    if (!buf) return tis_error(TIS_ENOMEM, "gen-model: out of memory for %s (%zu values)", name, n);
    for (size_t i = 0; i < n; i++) buf[i] = offset + scale * (2.0f * (float)(s_next(rng) >> 40) / 16777216.0f - 1.0f);
    int64_t ne[2] = {cols, rows};
    int rc = gguf_writer_add_tensor(w, name, type, rows ? 2 : 1, ne, buf);
    free(buf);
    return rc;
}

enum { N_SPECIALS = 3, N_PRINT = 94 }; /* '!'..'~' */

/* The merge that makes token k of the synthetic vocabulary (k counts from
 * the first merged token): two-character strings of printable characters,
 * then three-character ones (a two-character token + a character), ...
 * Written as "left right" into out. */
static void s_merge(int64_t k, char *out, size_t cap) {
    char s[16];
    int len = 2;
    int64_t span = (int64_t)N_PRINT * N_PRINT;
    while (k >= span && len < 12) {
        k -= span;
        span *= N_PRINT;
        len++;
    }
    for (int i = len - 1; i >= 0; i--) {
        s[i] = (char)('!' + k % N_PRINT);
        k /= N_PRINT;
    }
    snprintf(out, cap, "%.*s %c", len - 1, s, s[len - 1]);
}

int gen_model_write(const char *path, const gen_model_spec *sp, void (*progress)(int64_t, int64_t)) {
    if (sp->d_model < 1 || sp->n_layer < 1 || sp->n_head < 1 || sp->n_kv_head < 1 || sp->d_ff < 1 ||
        sp->d_model % sp->n_head || sp->n_head % sp->n_kv_head || sp->n_vocab < N_SPECIALS + 256 + 1)
        return tis_error(TIS_EINVAL, "gen-model: inconsistent shapes (d_model %% heads, heads %% kv heads, vocab)");
    int64_t nv = sp->n_vocab, hd = sp->d_model / sp->n_head, n_merge = nv - N_SPECIALS - 256;
    gguf_writer *w = gguf_writer_new();
    char **toks = calloc((size_t)nv, sizeof *toks), **merges = calloc((size_t)n_merge, sizeof *merges);
    int32_t *types = calloc((size_t)nv, sizeof *types);
    int rc = w && toks && merges && types ? 0 : tis_error(TIS_ENOMEM, "gen-model: out of memory");
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "llama.%s", suffix), key)
    if (!rc) {
        rc |= gguf_writer_add_str(w, "general.architecture", "llama");
        rc |= gguf_writer_add_str(w, "general.name", sp->name ? sp->name : "gen");
        rc |= gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)sp->n_layer);
        rc |= gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)sp->context);
        rc |= gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)sp->d_model);
        rc |= gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)sp->d_ff);
        rc |= gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)sp->n_head);
        rc |= gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)sp->n_kv_head);
        rc |= gguf_writer_add_f32(w, KEY("rope.freq_base"), sp->rope_theta);
        rc |= gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
        rc |= gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)nv);
        rc |= gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    }
#undef KEY
    static const char *const specials[N_SPECIALS] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int64_t k = 0; !rc && k < nv; k++) {
        char buf[40];
        if (k < N_SPECIALS) {
            snprintf(buf, sizeof buf, "%s", specials[k]);
            types[k] = 3; /* CONTROL */
        } else if (k < N_SPECIALS + 256) {
            gen_model_byte_piece((int)(k - N_SPECIALS), buf);
            types[k] = 1;
        } else {
            char m[40];
            s_merge(k - N_SPECIALS - 256, m, sizeof m);
            if (!(merges[k - N_SPECIALS - 256] = strdup(m))) rc = tis_error(TIS_ENOMEM, "gen-model: out of memory");
            const char *spc = strchr(m, ' ');
            snprintf(buf, sizeof buf, "%.*s%s", (int)(spc - m), m, spc + 1);
            types[k] = 1;
        }
        if (!rc && !(toks[k] = strdup(buf))) rc = tis_error(TIS_ENOMEM, "gen-model: out of memory");
    }
    if (!rc) {
        rc |= gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
        rc |= gguf_writer_add_str(w, "tokenizer.ggml.pre", "smollm");
        rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)nv);
        rc |= gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)nv);
        rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, (uint64_t)n_merge);
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
        rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
        rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0);
        rc |= gguf_writer_add_str(w, "tokenizer.chat_template",
                                  "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                                  "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
        if (rc) rc = tis_error(TIS_EINVAL, "gen-model: metadata: %s", tis_last_error());
    }
    for (int64_t k = 0; toks && k < nv; k++) free(toks[k]);
    for (int64_t k = 0; merges && k < n_merge; k++) free(merges[k]);
    free(toks);
    free(merges);
    free(types);
    /* weights: scales keep activations O(1) through the layers */
    uint64_t rng = sp->seed ? sp->seed : 1;
    int64_t d = sp->d_model, qd = sp->n_head * hd, kd = sp->n_kv_head * hd, total = 3 + 9 * sp->n_layer, done = 0;
    float ws = 1.0f / sqrtf((float)d), fs = 1.0f / sqrtf((float)sp->d_ff);
    if (!rc) rc = s_tensor(w, "token_embd.weight", sp->wtype, nv, d, 1.0f, 0, &rng);
    if (!rc) rc = s_tensor(w, "output_norm.weight", GGML_TYPE_F32, 0, d, 0.1f, 1.0f, &rng);
    if (!rc && !sp->tied) rc = s_tensor(w, "output.weight", sp->wtype, nv, d, ws, 0, &rng);
    done = 3;
    if (progress && !rc) progress(done, total);
    for (int64_t l = 0; !rc && l < sp->n_layer; l++) {
        char n[96];
#define T(suffix, rows, cols, scale, off, type)                                                                       \
    (snprintf(n, sizeof n, "blk.%lld.%s", (long long)l, suffix), s_tensor(w, n, type, rows, cols, scale, off, &rng))
        if (!rc) rc = T("attn_norm.weight", 0, d, 0.1f, 1.0f, GGML_TYPE_F32);
        if (!rc) rc = T("attn_q.weight", qd, d, ws, 0, sp->wtype);
        if (!rc) rc = T("attn_k.weight", kd, d, ws, 0, sp->wtype);
        if (!rc) rc = T("attn_v.weight", kd, d, ws, 0, sp->wtype);
        if (!rc) rc = T("attn_output.weight", d, qd, ws, 0, sp->wtype);
        if (!rc) rc = T("ffn_norm.weight", 0, d, 0.1f, 1.0f, GGML_TYPE_F32);
        if (!rc) rc = T("ffn_gate.weight", sp->d_ff, d, ws, 0, sp->wtype);
        if (!rc) rc = T("ffn_up.weight", sp->d_ff, d, ws, 0, sp->wtype);
        if (!rc) rc = T("ffn_down.weight", d, sp->d_ff, fs, 0, sp->wtype);
#undef T
        done += 9;
        if (progress && !rc) progress(done, total);
    }
    if (!rc) rc = gguf_writer_write(w, path);
    gguf_writer_destroy(&w);
    return rc;
}
