/* config_hf: model_config from a Hugging Face config.json (untrusted input).
 *
 * Read (transformers names -> model_config):
 *   model_type "llama" | "mistral" | "qwen2"            -> arch
 *   vocab_size, hidden_size, num_hidden_layers,
 *   num_attention_heads, intermediate_size (required)     -> n_vocab, d_model, ...
 *   num_key_value_heads (default: num_attention_heads)    -> n_kv_head
 *   head_dim (default: hidden_size / num_attention_heads) -> head_dim, rope_dim
 *   max_position_embeddings (default: the class default)  -> n_ctx_train
 *   rms_norm_eps (default 1e-6), rope_theta (default 1e4)
 *   rope_scaling null | {"rope_type": "default"}
 *                | {"rope_type"|"type": "linear", "factor"}
 *                | {"rope_type": "llama3", "factor", "low_freq_factor",
 *                   "high_freq_factor", "original_max_position_embeddings"}
 *   (transformers v5: "rope_parameters" = rope_scaling + "rope_theta")
 *   tie_word_embeddings (default false, as LlamaConfig / MistralConfig /
 *                        Qwen2Config; PretrainedConfig's own default is true)
 * A null value means "absent", as transformers treats None. The name is the
 * directory holding config.json (HF configs carry none). HF checkpoints
 * rotate halves of each head (rope_interleaved = false). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tis_error.h"

#define CONFIG_JSON_MAX (16u << 20) /* real config.json files are ~1 KB */

/* Absent or JSON null: the field takes its default. */
static const cJSON *s_field(const cJSON *root, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(j) ? NULL : j;
}

/* An integer field in [lo, 2^53]; `def` < 0 makes it required. */
static int s_get_int(const cJSON *root, const char *path, const char *key, int64_t def,
                     int64_t lo, int64_t *out) {
    const cJSON *j = s_field(root, key);
    if (!j) {
        if (def < 0) return tis_error(TIS_EFORMAT, "config: %s: '%s' is missing", path, key);
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : 0.5;
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is not an integer", path, key);
    if ((int64_t)d < lo)
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is %lld, below %lld", path, key,
                         (long long)d, (long long)lo);
    *out = (int64_t)d;
    return 0;
}

/* A number field (JSON int or float); `required` or else `def`. */
static int s_get_num(const cJSON *root, const char *path, const char *key, bool required,
                     double def, float *out) {
    const cJSON *j = s_field(root, key);
    if (!j) {
        if (required) return tis_error(TIS_EFORMAT, "config: %s: '%s' is missing", path, key);
        *out = (float)def;
        return 0;
    }
    if (!cJSON_IsNumber(j))
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is not a number", path, key);
    if (!(fabs(j->valuedouble) <= FLT_MAX)) /* the cast would be undefined */
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is out of float range", path, key);
    *out = (float)j->valuedouble;
    return 0;
}

static int s_get_bool(const cJSON *root, const char *path, const char *key, bool def,
                      bool *out) {
    const cJSON *j = s_field(root, key);
    if (!j) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(j))
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is not true/false", path, key);
    *out = cJSON_IsTrue(j);
    return 0;
}

/* An optional string field: NULL when absent; EFORMAT when not a string. */
static int s_get_str(const cJSON *root, const char *path, const char *key, const char **out) {
    const cJSON *j = s_field(root, key);
    *out = NULL;
    if (!j) return 0;
    if (!cJSON_IsString(j))
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is not a string", path, key);
    *out = j->valuestring;
    return 0;
}

/* rope_theta and rope_scaling; transformers v5 moves both into one
 * "rope_parameters" object ({"rope_theta", "rope_type", "factor", ...}). */
static int s_rope(model_config *c, const cJSON *root, const char *path) {
    const cJSON *rs = s_field(root, "rope_parameters");
    const char *key = "rope_parameters";
    if (!rs) {
        rs = s_field(root, "rope_scaling");
        key = "rope_scaling";
    }
    if (rs && !cJSON_IsObject(rs))
        return tis_error(TIS_EFORMAT, "config: %s: '%s' is not an object", path, key);
    int rc = s_get_num(root, path, "rope_theta", false, 10000.0, &c->rope_theta);
    if (!rc && rs && s_field(rs, "rope_theta"))
        rc = s_get_num(rs, path, "rope_theta", true, 0, &c->rope_theta);
    if (rc) return rc;
    c->rope_scaling_type = ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    if (!rs) return 0;
    /* transformers >= 4.45 writes "rope_type"; older configs "type" */
    const char *type;
    rc = s_get_str(rs, path, "rope_type", &type);
    if (!rc && !type) rc = s_get_str(rs, path, "type", &type);
    if (rc) return rc;
    if (!type) return tis_error(TIS_EFORMAT, "config: %s: '%s' has no 'rope_type'", path, key);
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling_type = ROPE_SCALING_LINEAR;
        return s_get_num(rs, path, "factor", true, 0, &c->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_scaling_type = ROPE_SCALING_LLAMA3;
        if ((rc = s_get_num(rs, path, "factor", true, 0, &c->rope_factor)) ||
            (rc = s_get_num(rs, path, "low_freq_factor", true, 0, &c->rope_low_freq_factor)) ||
            (rc = s_get_num(rs, path, "high_freq_factor", true, 0, &c->rope_high_freq_factor)) ||
            (rc = s_get_int(rs, path, "original_max_position_embeddings", -1, 1, &c->rope_orig_ctx)))
            return rc;
        /* the llama3 formula divides by (high - low) and by the factors */
        if (!(c->rope_low_freq_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor))
            return tis_error(TIS_EFORMAT,
                             "config: %s: llama3 rope scaling needs 0 < low_freq_factor (%g) < "
                             "high_freq_factor (%g)", path, (double)c->rope_low_freq_factor,
                             (double)c->rope_high_freq_factor);
        return 0;
    }
    return tis_error(TIS_EUNSUPPORTED, "config: %s: rope scaling '%.32s' is not supported "
                     "(linear, llama3)", path, type);
}

/* Features of these classes that the forward pass does not implement. */
static int s_reject_features(const cJSON *root, const char *path, const char *arch,
                             int64_t n_ctx) {
    const char *act;
    bool b = false;
    int rc;
    if ((rc = s_get_str(root, path, "hidden_act", &act))) return rc;
    if (act && strcmp(act, "silu") != 0)
        return tis_error(TIS_EUNSUPPORTED, "config: %s: hidden_act '%.32s' is not supported "
                         "(silu)", path, act);
    /* LlamaConfig: attention_bias adds biases to q, k, v AND o; mlp_bias to
     * the MLP. Qwen2's q/k/v bias is implied by the class instead. */
    if (strcmp(arch, "qwen2") != 0) {
        if ((rc = s_get_bool(root, path, "attention_bias", false, &b))) return rc;
        if (b) return tis_error(TIS_EUNSUPPORTED, "config: %s: attention_bias is not supported", path);
    }
    if ((rc = s_get_bool(root, path, "mlp_bias", false, &b))) return rc;
    if (b) return tis_error(TIS_EUNSUPPORTED, "config: %s: mlp_bias is not supported", path);
    /* Mistral v0.1 declares sliding_window 4096 with 32k positions: accepted,
     * and exact for contexts up to the window (v0.2/v0.3 set null). Qwen2
     * applies its window only when use_sliding_window is true. */
    if (strcmp(arch, "qwen2") == 0) {
        int64_t win = 0;
        if ((rc = s_get_bool(root, path, "use_sliding_window", false, &b))) return rc;
        if ((rc = s_get_int(root, path, "sliding_window", n_ctx, 0, &win))) return rc;
        if (b && win < n_ctx)
            return tis_error(TIS_EUNSUPPORTED, "config: %s: sliding-window attention (%lld) is "
                             "not supported", path, (long long)win);
    }
    return 0;
}

/* The name of the directory holding `path` ("." resolved). */
static void s_dir_name(char *out, size_t cap, const char *path) {
    char *real = realpath(path, NULL);
    const char *p = real ? real : path;
    const char *slash = strrchr(p, '/');
    const char *beg = p, *end = slash ? slash : p;
    if (slash) {
        beg = end;
        while (beg > p && beg[-1] != '/') beg--;
    }
    size_t n = (size_t)(end - beg);
    if (n >= cap) n = cap - 1;
    memcpy(out, beg, n);
    out[n] = 0;
    free(real);
}

static int s_read_json(const char *path, cJSON **root) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return tis_error(TIS_EIO, "config: cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_JSON_MAX + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_JSON_MAX + 1, fp) : 0;
    int err = ferror(fp);
    fclose(fp);
    int rc = 0;
    if (!buf) rc = tis_error(TIS_ENOMEM, "config: out of memory reading %s", path);
    else if (err) rc = tis_error(TIS_EIO, "config: cannot read %s", path);
    else if (n > CONFIG_JSON_MAX) rc = tis_error(TIS_EFORMAT, "config: %s is over %u bytes", path,
                                                 CONFIG_JSON_MAX);
    if (!rc) {
        buf[n] = 0;
        *root = cJSON_ParseWithLengthOpts(buf, n + 1, NULL, 1);
        if (!*root || !cJSON_IsObject(*root)) {
            cJSON_Delete(*root);
            *root = NULL;
            rc = tis_error(TIS_EFORMAT, "config: %s is not a JSON object", path);
        }
    }
    free(buf);
    return rc;
}

int config_from_hf_json(model_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    if (!path) return tis_error(TIS_EINVAL, "config: NULL path");
    cJSON *root = NULL;
    int rc = s_read_json(path, &root);
    if (rc) return rc;
    const char *type;
    if ((rc = s_get_str(root, path, "model_type", &type))) goto done;
    if (!type) {
        rc = tis_error(TIS_EFORMAT, "config: %s: 'model_type' is missing", path);
        goto done;
    }
    /* Defaults of max_position_embeddings in each transformers class. */
    int64_t ctx_def;
    if (!strcmp(type, "llama")) ctx_def = 2048;
    else if (!strcmp(type, "mistral")) ctx_def = 4096 * 32;
    else if (!strcmp(type, "qwen2")) ctx_def = 32768;
    else {
        rc = tis_error(TIS_EUNSUPPORTED, "config: %s: model_type '%.32s' is not supported "
                       "(llama, mistral, qwen2)", path, type);
        goto done;
    }
    snprintf(c->arch, sizeof c->arch, "%s", type);
    s_dir_name(c->name, sizeof c->name, path);

    if ((rc = s_get_int(root, path, "vocab_size", -1, 1, &c->n_vocab)) ||
        (rc = s_get_int(root, path, "hidden_size", -1, 1, &c->d_model)) ||
        (rc = s_get_int(root, path, "num_hidden_layers", -1, 1, &c->n_layer)) ||
        (rc = s_get_int(root, path, "num_attention_heads", -1, 1, &c->n_head)) ||
        (rc = s_get_int(root, path, "intermediate_size", -1, 1, &c->d_ff)) ||
        (rc = s_get_int(root, path, "num_key_value_heads", c->n_head, 1, &c->n_kv_head)) ||
        (rc = s_get_int(root, path, "head_dim", c->d_model / c->n_head, 1, &c->head_dim)) ||
        (rc = s_get_int(root, path, "max_position_embeddings", ctx_def, 1, &c->n_ctx_train)) ||
        (rc = s_get_num(root, path, "rms_norm_eps", false, 1e-6, &c->norm_eps)) ||
        (rc = s_get_bool(root, path, "tie_word_embeddings", false, &c->tied_embeddings)) ||
        (rc = s_rope(c, root, path)) ||
        (rc = s_reject_features(root, path, type, c->n_ctx_train)))
        goto done;
    c->rope_dim = c->head_dim;
    c->rope_interleaved = false;
    c->qkv_bias = strcmp(type, "qwen2") == 0;
    if ((rc = config_validate(c))) {
        char msg[1024];
        const char *inner = tis_last_error();
        if (!strncmp(inner, "config: ", 8)) inner += 8;
        snprintf(msg, sizeof msg, "%s", inner);
        rc = tis_error(rc, "config: %s: %s", path, msg);
    }
done:
    cJSON_Delete(root);
    return rc;
}
