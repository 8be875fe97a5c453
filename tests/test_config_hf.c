/* test_config_hf: model_config from HF config.json files (real configs of
 * Llama-3.1, Mistral v0.1/v0.3, Qwen2.5, SmolLM2; missing and mistyped
 * fields; unsupported features). */
#define _GNU_SOURCE
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tt.h"

static const char *LLAMA31 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
    "\"attention_dropout\": 0.0, \"bos_token_id\": 128000, \"eos_token_id\": 128001, "
    "\"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02, "
    "\"intermediate_size\": 14336, \"max_position_embeddings\": 131072, \"mlp_bias\": false, "
    "\"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32, "
    "\"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, "
    "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
    "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
    "\"rope_theta\": 500000.0, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
    "\"transformers_version\": \"4.43.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}";

static const char *MISTRAL03 =
    "{\"architectures\": [\"MistralForCausalLM\"], \"attention_dropout\": 0.0, "
    "\"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 4096, "
    "\"initializer_range\": 0.02, \"intermediate_size\": 14336, "
    "\"max_position_embeddings\": 32768, \"model_type\": \"mistral\", "
    "\"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8, "
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0, \"sliding_window\": null, "
    "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
    "\"transformers_version\": \"4.42.0.dev0\", \"use_cache\": true, \"vocab_size\": 32768}";

static const char *MISTRAL01 =
    "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2, "
    "\"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02, "
    "\"intermediate_size\": 14336, \"max_position_embeddings\": 32768, "
    "\"model_type\": \"mistral\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32, "
    "\"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
    "\"sliding_window\": 4096, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
    "\"transformers_version\": \"4.34.0.dev0\", \"use_cache\": true, \"vocab_size\": 32000}";

static const char *QWEN25 =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, "
    "\"bos_token_id\": 151643, \"eos_token_id\": 151645, \"hidden_act\": \"silu\", "
    "\"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864, "
    "\"max_position_embeddings\": 32768, \"max_window_layers\": 21, \"model_type\": \"qwen2\", "
    "\"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2, "
    "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 32768, "
    "\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
    "\"transformers_version\": \"4.43.1\", \"use_cache\": true, \"use_sliding_window\": false, "
    "\"vocab_size\": 151936}";

static const char *SMOL =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
    "\"attention_dropout\": 0.0, \"bos_token_id\": 1, \"eos_token_id\": 2, "
    "\"hidden_act\": \"silu\", \"hidden_size\": 576, \"initializer_range\": 0.041666666666666664, "
    "\"intermediate_size\": 1536, \"is_llama_config\": true, \"max_position_embeddings\": 8192, "
    "\"mlp_bias\": false, \"model_type\": \"llama\", \"num_attention_heads\": 9, "
    "\"num_hidden_layers\": 30, \"num_key_value_heads\": 3, \"pad_token_id\": 2, "
    "\"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_interleaved\": false, "
    "\"rope_scaling\": null, \"rope_theta\": 100000, \"tie_word_embeddings\": true, "
    "\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.42.3\", \"use_cache\": true, "
    "\"vocab_size\": 49152}";

/* `json` with the first `from` replaced by `to` (a copy when from is NULL);
 * malloc'd. */
static char *s_replace(const char *json, const char *from, const char *to) {
    char *text;
    const char *hit = from ? strstr(json, from) : NULL;
    if (from && !hit) {
        fprintf(stderr, "test bug: '%s' not in the base config\n", from);
        tt_failures++;
    }
    if (!hit) return strdup(json);
    if (asprintf(&text, "%.*s%s%s", (int)(hit - json), json, to, hit + strlen(from)) < 0)
        return NULL;
    return text;
}

/* Writes s_replace(json, from, to) to <tmp>/<dir>/config.json; its path. */
static const char *s_config(const char *dir, const char *json, const char *from, const char *to) {
    char *text = s_replace(json, from, to);
    if (!text) return NULL;
    mkdir(tt_path(dir), 0755);
    char rel[256];
    snprintf(rel, sizeof rel, "%s/config.json", dir);
    const char *p = tt_path(rel);
    if (tt_write_file(p, text, strlen(text))) fprintf(stderr, "cannot write %s\n", p);
    free(text);
    return p;
}

static int s_load(const char *dir, const char *json, const char *from, const char *to) {
    model_config c;
    return config_from_hf_json(&c, s_config(dir, json, from, to));
}

static void test_real_configs(void) {
    TT_CASE("real_configs");
    model_config c;
    TT_OK(config_from_hf_json(&c, s_config("Llama-3.1-8B", LLAMA31, NULL, NULL)));
    TT_CHECK(strcmp(c.arch, "llama") == 0 && strcmp(c.name, "Llama-3.1-8B") == 0);
    TT_CHECK(c.n_vocab == 128256 && c.d_model == 4096 && c.n_layer == 32 && c.n_head == 32);
    TT_CHECK(c.n_kv_head == 8 && c.head_dim == 128 && c.rope_dim == 128 && c.d_ff == 14336);
    TT_CHECK(c.n_ctx_train == 131072 && !c.tied_embeddings && !c.qkv_bias);
    TT_CHECK(!c.rope_interleaved);
    TT_NEAR(c.norm_eps, 1e-5, 1e-12);
    TT_NEAR(c.rope_theta, 500000.0, 0);
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_LLAMA3 && c.rope_orig_ctx == 8192);
    TT_NEAR(c.rope_factor, 8.0, 0);
    TT_NEAR(c.rope_low_freq_factor, 1.0, 0);
    TT_NEAR(c.rope_high_freq_factor, 4.0, 0);

    TT_OK(config_from_hf_json(&c, s_config("Mistral-7B-v0.3", MISTRAL03, NULL, NULL)));
    TT_CHECK(strcmp(c.arch, "mistral") == 0 && c.n_vocab == 32768 && c.n_kv_head == 8);
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_NONE && c.n_ctx_train == 32768);
    TT_NEAR(c.rope_theta, 1e6, 0);
    /* v0.1: a 4096 sliding window with 32k positions is accepted */
    TT_OK(config_from_hf_json(&c, s_config("Mistral-7B-v0.1", MISTRAL01, NULL, NULL)));
    TT_CHECK(c.n_vocab == 32000 && c.head_dim == 128);
    TT_NEAR(c.rope_theta, 1e4, 0);

    TT_OK(config_from_hf_json(&c, s_config("Qwen2.5-0.5B-Instruct", QWEN25, NULL, NULL)));
    TT_CHECK(strcmp(c.arch, "qwen2") == 0 && c.qkv_bias && c.tied_embeddings);
    TT_CHECK(c.n_head == 14 && c.n_kv_head == 2 && c.head_dim == 64 && c.d_ff == 4864);
    TT_NEAR(c.norm_eps, 1e-6, 1e-13);

    TT_OK(config_from_hf_json(&c, s_config("SmolLM2-135M-Instruct", SMOL, NULL, NULL)));
    TT_CHECK(strcmp(c.name, "SmolLM2-135M-Instruct") == 0 && strcmp(c.arch, "llama") == 0);
    TT_CHECK(c.n_vocab == 49152 && c.d_model == 576 && c.n_layer == 30 && c.n_head == 9);
    TT_CHECK(c.n_kv_head == 3 && c.head_dim == 64 && c.d_ff == 1536 && c.n_ctx_train == 8192);
    TT_CHECK(c.tied_embeddings && !c.qkv_bias && !c.rope_interleaved);
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_NONE);
    TT_NEAR(c.rope_theta, 100000.0, 0);
}

static void test_defaults_and_variants(void) {
    TT_CASE("defaults_and_variants");
    model_config c;
    /* num_key_value_heads absent or null -> heads; head_dim explicit */
    TT_OK(config_from_hf_json(&c, s_config("v1", SMOL, "\"num_key_value_heads\": 3", "\"x\": 3")));
    TT_CHECK(c.n_kv_head == 9);
    TT_OK(config_from_hf_json(&c, s_config("v2", SMOL, "\"num_key_value_heads\": 3",
                                           "\"num_key_value_heads\": null")));
    TT_CHECK(c.n_kv_head == 9);
    /* Mistral-Nemo: head_dim 128 with hidden 5120 / 32 heads = 160 */
    TT_OK(config_from_hf_json(&c, s_config("v3", MISTRAL03, "\"hidden_size\": 4096",
                                           "\"hidden_size\": 5120, \"head_dim\": 128")));
    TT_CHECK(c.head_dim == 128 && c.rope_dim == 128 && c.d_model == 5120);
    /* rope_theta, rms_norm_eps, tie_word_embeddings, max positions absent */
    TT_OK(config_from_hf_json(&c, s_config("v4", SMOL, "\"rope_theta\": 100000", "\"y\": 0")));
    TT_NEAR(c.rope_theta, 10000.0, 0);
    TT_OK(config_from_hf_json(&c, s_config("v5", SMOL, "\"tie_word_embeddings\": true", "\"y\": 0")));
    TT_CHECK(!c.tied_embeddings);
    TT_OK(config_from_hf_json(&c, s_config("v6", SMOL, "\"rms_norm_eps\": 1e-05", "\"y\": 0")));
    TT_NEAR(c.norm_eps, 1e-6, 1e-13);
    TT_OK(config_from_hf_json(&c, s_config("v7", QWEN25, "\"max_position_embeddings\": 32768",
                                           "\"y\": 0")));
    TT_CHECK(c.n_ctx_train == 32768);
    /* linear scaling, old "type" key */
    TT_OK(config_from_hf_json(&c, s_config("v8", SMOL, "\"rope_scaling\": null",
                                           "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}")));
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_LINEAR);
    TT_NEAR(c.rope_factor, 4.0, 0);
    TT_OK(config_from_hf_json(&c, s_config("v9", SMOL, "\"rope_scaling\": null",
                                           "\"rope_scaling\": {\"rope_type\": \"default\"}")));
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_NONE);
    /* transformers v5: rope_parameters carries theta and scaling */
    TT_OK(config_from_hf_json(&c, s_config("v10", SMOL, "\"rope_scaling\": null",
                                           "\"rope_parameters\": {\"rope_theta\": 500000.0, "
                                           "\"rope_type\": \"linear\", \"factor\": 2.0}")));
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_LINEAR);
    TT_NEAR(c.rope_theta, 500000.0, 0);
    TT_NEAR(c.rope_factor, 2.0, 0);
    TT_OK(config_from_hf_json(&c, s_config("v10b", LLAMA31, "\"rope_scaling\": {",
                                           "\"rope_parameters\": {\"rope_theta\": 250000, ")));
    TT_CHECK(c.rope_scaling_type == ROPE_SCALING_LLAMA3 && c.rope_orig_ctx == 8192);
    TT_NEAR(c.rope_theta, 250000.0, 0); /* rope_parameters wins over the top-level key */
    /* Qwen2 with the window switched on, but as large as the context */
    TT_OK(config_from_hf_json(&c, s_config("v11", QWEN25, "\"use_sliding_window\": false",
                                           "\"use_sliding_window\": true")));
    /* a relative path: the name is still the directory's */
    char cwd[4096];
    TT_CHECK(getcwd(cwd, sizeof cwd) != NULL);
    TT_CHECK(chdir(tt_tmpdir()) == 0);
    TT_OK(config_from_hf_json(&c, "SmolLM2-135M-Instruct/config.json"));
    TT_CHECK(strcmp(c.name, "SmolLM2-135M-Instruct") == 0);
    TT_CHECK(chdir("SmolLM2-135M-Instruct") == 0);
    TT_OK(config_from_hf_json(&c, "config.json"));
    TT_CHECK(strcmp(c.name, "SmolLM2-135M-Instruct") == 0);
    TT_CHECK(chdir(cwd) == 0);
}

static void test_bad_configs(void) {
    TT_CASE("bad_configs");
    model_config c;
    TT_FAILS(config_from_hf_json(&c, tt_path("nope/config.json")), TIS_EIO);
    TT_FAILS(s_load("b1", "{\"model_type\": ", NULL, NULL), TIS_EFORMAT);
    TT_FAILS(s_load("b2", "[1]", NULL, NULL), TIS_EFORMAT);
    TT_FAILS(s_load("b3", "", NULL, NULL), TIS_EFORMAT);
    /* model_type */
    TT_FAILS(s_load("t1", SMOL, "\"model_type\": \"llama\"", "\"y\": 0"), TIS_EFORMAT);
    TT_FAILS(s_load("t2", SMOL, "\"model_type\": \"llama\"", "\"model_type\": 7"), TIS_EFORMAT);
    TT_FAILS(s_load("t3", SMOL, "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\""),
             TIS_EUNSUPPORTED);
    /* required sizes: missing, null, mistyped, fractional, negative, zero */
    TT_FAILS(s_load("r1", SMOL, "\"hidden_size\": 576", "\"y\": 0"), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "hidden_size") != NULL);
    TT_FAILS(s_load("r2", SMOL, "\"vocab_size\": 49152", "\"vocab_size\": null"), TIS_EFORMAT);
    TT_FAILS(s_load("r3", SMOL, "\"num_hidden_layers\": 30", "\"num_hidden_layers\": \"30\""),
             TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "num_hidden_layers") != NULL);
    TT_FAILS(s_load("r4", SMOL, "\"intermediate_size\": 1536", "\"intermediate_size\": 1536.5"),
             TIS_EFORMAT);
    TT_FAILS(s_load("r5", SMOL, "\"num_attention_heads\": 9", "\"num_attention_heads\": -9"),
             TIS_EFORMAT);
    TT_FAILS(s_load("r6", SMOL, "\"num_attention_heads\": 9", "\"num_attention_heads\": 0"),
             TIS_EFORMAT);
    TT_FAILS(s_load("r7", SMOL, "\"intermediate_size\": 1536", "\"intermediate_size\": 1e300"),
             TIS_EFORMAT);
    TT_FAILS(s_load("r8", SMOL, "\"num_key_value_heads\": 3", "\"num_key_value_heads\": [3]"),
             TIS_EFORMAT);
    /* optional fields of the wrong type */
    TT_FAILS(s_load("o1", SMOL, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"1e-5\""),
             TIS_EFORMAT);
    TT_FAILS(s_load("o2", SMOL, "\"rope_theta\": 100000", "\"rope_theta\": true"), TIS_EFORMAT);
    TT_FAILS(s_load("o3", SMOL, "\"rope_theta\": 100000", "\"rope_theta\": 1e300"), TIS_EFORMAT);
    TT_FAILS(s_load("o4", SMOL, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1"),
             TIS_EFORMAT);
    TT_FAILS(s_load("o5", SMOL, "\"rope_scaling\": null", "\"rope_scaling\": \"linear\""),
             TIS_EFORMAT);
    TT_FAILS(s_load("o6", SMOL, "\"hidden_act\": \"silu\"", "\"hidden_act\": 3"), TIS_EFORMAT);
    /* rope scaling */
    TT_FAILS(s_load("s1", SMOL, "\"rope_scaling\": null",
                    "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}"),
             TIS_EUNSUPPORTED);
    TT_CHECK(strstr(tis_last_error(), "dynamic") != NULL);
    TT_FAILS(s_load("s2", SMOL, "\"rope_scaling\": null",
                    "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"),
             TIS_EUNSUPPORTED);
    TT_FAILS(s_load("s3", SMOL, "\"rope_scaling\": null", "\"rope_scaling\": {\"factor\": 4.0}"),
             TIS_EFORMAT);
    TT_FAILS(s_load("s4", SMOL, "\"rope_scaling\": null",
                    "\"rope_scaling\": {\"type\": \"linear\"}"), TIS_EFORMAT);
    TT_FAILS(s_load("s5", SMOL, "\"rope_scaling\": null",
                    "\"rope_scaling\": {\"type\": \"linear\", \"factor\": -1}"), TIS_EFORMAT);
    TT_FAILS(s_load("s6", LLAMA31, "\"low_freq_factor\": 1.0, ", ""), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "low_freq_factor") != NULL);
    TT_FAILS(s_load("s7", LLAMA31, "\"original_max_position_embeddings\": 8192",
                    "\"original_max_position_embeddings\": 8192.5"), TIS_EFORMAT);
    TT_FAILS(s_load("s8", LLAMA31, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0"),
             TIS_EFORMAT);
    TT_FAILS(s_load("s9", SMOL, "\"rope_scaling\": null",
                    "\"rope_scaling\": {\"rope_type\": 3, \"factor\": 4.0}"), TIS_EFORMAT);
    /* features the forward pass lacks */
    TT_FAILS(s_load("f1", SMOL, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""),
             TIS_EUNSUPPORTED);
    TT_FAILS(s_load("f2", SMOL, "\"attention_bias\": false", "\"attention_bias\": true"),
             TIS_EUNSUPPORTED);
    TT_FAILS(s_load("f3", SMOL, "\"mlp_bias\": false", "\"mlp_bias\": true"), TIS_EUNSUPPORTED);
    char *qwen_swa = s_replace(QWEN25, "\"use_sliding_window\": false", "\"use_sliding_window\": true");
    TT_FAILS(s_load("f4", qwen_swa, "\"sliding_window\": 32768", "\"sliding_window\": 4096"),
             TIS_EUNSUPPORTED);
    free(qwen_swa);
    /* consistent types, inconsistent values: config_validate */
    TT_FAILS(s_load("x1", SMOL, "\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"),
             TIS_EFORMAT);
    TT_FAILS(s_load("x2", SMOL, "\"hidden_size\": 576", "\"hidden_size\": 8"), TIS_EFORMAT);
    TT_FAILS(s_load("x3", SMOL, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0"), TIS_EFORMAT);
}

int main(void) {
    test_real_configs();
    test_defaults_and_variants();
    test_bad_configs();
    return tt_done("test_config_hf");
}
