/* config: the hyper-parameters of a Llama-family decoder (plain data, from
 * the model file only). */
#ifndef TIS_CONFIG_H
#define TIS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"

typedef enum rope_scaling {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR = 1, /* positions divided by factor */
    ROPE_SCALING_LLAMA3 = 2, /* Llama-3.1 frequency-dependent scaling */
} rope_scaling;

typedef struct model_config {
    char arch[32];        /* "llama", "mistral", "qwen2" */
    char name[128];       /* general.name or the directory name */
    int64_t n_vocab;
    int64_t d_model;      /* hidden size */
    int64_t n_layer;
    int64_t n_head;       /* query heads */
    int64_t n_kv_head;    /* key/value heads (GQA: n_head % n_kv_head == 0) */
    int64_t head_dim;
    int64_t d_ff;         /* SwiGLU inner size */
    int64_t n_ctx_train;  /* context length the model was trained for */
    float norm_eps;       /* RMSNorm epsilon */
    float rope_theta;     /* RoPE base */
    int64_t rope_dim;     /* rotated dims per head (== head_dim for Llama) */
    /* true: rotate adjacent pairs (2i, 2i+1) as llama.cpp does for GGUF
     * "llama" weights (Q/K permuted at conversion); false: rotate halves
     * (i, i + rope_dim/2) as HF checkpoints and GGUF qwen2 do. */
    bool rope_interleaved;
    rope_scaling rope_scaling_type;
    float rope_factor;               /* linear / llama3 factor */
    float rope_low_freq_factor;      /* llama3 */
    float rope_high_freq_factor;     /* llama3 */
    int64_t rope_orig_ctx;           /* llama3: original max positions */
    bool tied_embeddings; /* output projection = token embedding */
    bool qkv_bias;        /* Qwen2 */
} model_config;

/* Reads `{arch}.*` metadata of a GGUF file and validates. */
int config_from_gguf(model_config *c, const gguf_file *g);
/* Reads a HF config.json (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM) and validates. */
int config_from_hf_json(model_config *c, const char *path);
/* Consistency checks shared by both loaders (positive sizes, GQA divides,
 * head_dim even, products fit): 0 or TIS_EFORMAT with a message. */
int config_validate(const model_config *c);

#endif
