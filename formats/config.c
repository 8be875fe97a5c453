/* config: model hyper-parameters from GGUF metadata, and validation. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tis_error.h"

/* Reads "{arch}.{suffix}" as u32/i64; required unless def >= 0. */
static int s_get_int(const gguf_file *g, const char *arch, const char *suffix,
                     int64_t def, int64_t *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_i64(g, key, out);
    if (rc == TIS_ENOTFOUND && def >= 0) {
        *out = def;
        return 0;
    }
    if (rc == TIS_ENOTFOUND) return tis_error(TIS_EFORMAT, "gguf: required key '%s' is missing", key);
    if (rc) return tis_error(TIS_EFORMAT, "gguf: key '%s' is not an integer", key);
    return 0;
}

static int s_get_float(const gguf_file *g, const char *arch, const char *suffix,
                       float def, bool required, float *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(g, key, out);
    if (rc == TIS_ENOTFOUND && !required) {
        *out = def;
        return 0;
    }
    if (rc == TIS_ENOTFOUND) return tis_error(TIS_EFORMAT, "gguf: required key '%s' is missing", key);
    if (rc) return tis_error(TIS_EFORMAT, "gguf: key '%s' is not a float", key);
    return 0;
}

int config_from_gguf(model_config *c, const gguf_file *g) {
    memset(c, 0, sizeof *c);
    gguf_str s;
    if (gguf_get_str(g, "general.architecture", &s) != 0)
        return tis_error(TIS_EFORMAT, "gguf: 'general.architecture' is missing or not a string");
    if (s.len >= sizeof c->arch) return tis_error(TIS_EFORMAT, "gguf: architecture name too long");
    memcpy(c->arch, s.ptr, s.len);
    c->arch[s.len] = 0;
    if (strcmp(c->arch, "llama") && strcmp(c->arch, "mistral") && strcmp(c->arch, "qwen2"))
        return tis_error(TIS_EUNSUPPORTED,
                         "gguf: architecture '%s' is not supported (llama, mistral, qwen2)", c->arch);
    if (gguf_get_str(g, "general.name", &s) == 0) {
        size_t n = s.len < sizeof c->name - 1 ? s.len : sizeof c->name - 1;
        memcpy(c->name, s.ptr, n);
        c->name[n] = 0;
    }
    const char *a = c->arch;
    int rc;
    if ((rc = s_get_int(g, a, "embedding_length", -1, &c->d_model))) return rc;
    if ((rc = s_get_int(g, a, "block_count", -1, &c->n_layer))) return rc;
    if ((rc = s_get_int(g, a, "attention.head_count", -1, &c->n_head))) return rc;
    if ((rc = s_get_int(g, a, "attention.head_count_kv", c->n_head, &c->n_kv_head))) return rc;
    if ((rc = s_get_int(g, a, "feed_forward_length", -1, &c->d_ff))) return rc;
    if ((rc = s_get_int(g, a, "context_length", 2048, &c->n_ctx_train))) return rc;
    int64_t hd_def = c->n_head > 0 ? c->d_model / c->n_head : 0;
    if ((rc = s_get_int(g, a, "attention.key_length", hd_def, &c->head_dim))) return rc;
    if ((rc = s_get_int(g, a, "rope.dimension_count", c->head_dim, &c->rope_dim))) return rc;
    if ((rc = s_get_float(g, a, "attention.layer_norm_rms_epsilon", 0, true, &c->norm_eps))) return rc;
    if ((rc = s_get_float(g, a, "rope.freq_base", 10000.0f, false, &c->rope_theta))) return rc;
    /* The vocabulary size: the key when present, else the tokenizer's. */
    if (s_get_int(g, a, "vocab_size", 0, &c->n_vocab) || c->n_vocab == 0) {
        const gguf_value *toks;
        if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STR, &toks) == 0)
            c->n_vocab = (int64_t)toks->arr.n;
    }
    /* llama.cpp permutes Q/K of "llama"-family weights at conversion so that
     * adjacent pairs rotate; qwen2 keeps the HF (NEOX) half rotation. */
    c->rope_interleaved = strcmp(a, "qwen2") != 0;
    c->qkv_bias = strcmp(a, "qwen2") == 0;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    c->rope_factor = 1.0f;
    if (gguf_get_str(g, key, &s) == 0) {
        if (gguf_str_eq(s, "linear")) {
            c->rope_scaling_type = ROPE_SCALING_LINEAR;
            if ((rc = s_get_float(g, a, "rope.scaling.factor", 1.0f, true, &c->rope_factor))) return rc;
        } else if (!gguf_str_eq(s, "none")) {
            return tis_error(TIS_EUNSUPPORTED, "gguf: rope scaling '%.*s' is not supported",
                             (int)(s.len > 64 ? 64 : s.len), s.ptr);
        }
    }
    c->tied_embeddings = gguf_tensor_find(g, "output.weight") == NULL;
    return config_validate(c);
}

int config_validate(const model_config *c) {
    if (c->n_vocab <= 0 || c->d_model <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
        c->n_kv_head <= 0 || c->head_dim <= 0 || c->d_ff <= 0)
        return tis_error(TIS_EFORMAT,
                         "config: sizes must be positive (vocab %lld, d_model %lld, layers %lld, "
                         "heads %lld, kv heads %lld, head_dim %lld, d_ff %lld)",
                         (long long)c->n_vocab, (long long)c->d_model, (long long)c->n_layer,
                         (long long)c->n_head, (long long)c->n_kv_head, (long long)c->head_dim,
                         (long long)c->d_ff);
    /* Bounds well past any real model, so that products below cannot overflow. */
    const int64_t big = (int64_t)1 << 24;
    if (c->n_vocab > big || c->d_model > big || c->n_layer > 4096 || c->n_head > 4096 ||
        c->head_dim > 4096 || c->d_ff > big)
        return tis_error(TIS_EFORMAT, "config: a size is implausibly large");
    if (c->n_head % c->n_kv_head != 0)
        return tis_error(TIS_EFORMAT, "config: %lld heads are not a multiple of %lld kv heads",
                         (long long)c->n_head, (long long)c->n_kv_head);
    if (c->head_dim % 2 != 0 || c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2)
        return tis_error(TIS_EFORMAT, "config: head_dim %lld / rope dims %lld must be even, rope <= head",
                         (long long)c->head_dim, (long long)c->rope_dim);
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return tis_error(TIS_EFORMAT, "config: rms epsilon %g out of range", (double)c->norm_eps);
    if (!(c->rope_theta > 1))
        return tis_error(TIS_EFORMAT, "config: rope theta %g out of range", (double)c->rope_theta);
    if (c->rope_scaling_type != ROPE_SCALING_NONE && !(c->rope_factor > 0))
        return tis_error(TIS_EFORMAT, "config: rope scaling factor %g out of range",
                         (double)c->rope_factor);
    return 0;
}
