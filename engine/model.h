/* model: a Llama-family decoder loaded from GGUF or a HF directory:
 * config (plain data) + weights (views into the model's arena) + tokenizer. */
#ifndef TIS_MODEL_H
#define TIS_MODEL_H

#include <stdint.h>

#include "config.h"
#include "tokenizer.h"

typedef struct layer_weights {
    const float *attn_norm; /* [d_model] */
    const float *wq;        /* [n_head*head_dim][d_model] */
    const float *wk;        /* [n_kv_head*head_dim][d_model] */
    const float *wv;        /* [n_kv_head*head_dim][d_model] */
    const float *bq;        /* [n_head*head_dim] or NULL (Qwen2 has biases) */
    const float *bk;        /* [n_kv_head*head_dim] or NULL */
    const float *bv;        /* [n_kv_head*head_dim] or NULL */
    const float *wo;        /* [d_model][n_head*head_dim] */
    const float *ffn_norm;  /* [d_model] */
    const float *w_gate;    /* [d_ff][d_model] */
    const float *w_up;      /* [d_ff][d_model] */
    const float *w_down;    /* [d_model][d_ff] */
} layer_weights;

typedef struct model_weights {
    const float *tok_embd;  /* [n_vocab][d_model] */
    const float *out_norm;  /* [d_model] */
    const float *output;    /* [n_vocab][d_model]; == tok_embd when tied */
    layer_weights *layers;  /* [n_layer], owned by the model */
} model_weights;

typedef struct model {
    model_config config;
    model_weights weights;
    tokenizer *tok;         /* owned */
    char path[1024];
    char format[16];        /* "gguf" or "safetensors" */
    float *arena;           /* owned: every weight, dequantised to f32 */
    size_t arena_bytes;
    int64_t n_params;
} model;

/* Loads a .gguf file, or a directory with config.json + *.safetensors +
 * tokenizer.json. Weights are dequantised to f32 (the CPU reference). */
int model_load(model **out, const char *path);
void model_destroy(model **p);

#endif
