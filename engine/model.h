/* model: a Llama-family decoder loaded from GGUF or a HF directory:
 * config (plain data) + weights (matrices: views into the file's mapping,
 * in the file's types; vectors: f32 in the model's arena) + tokenizer. */
#ifndef TIS_MODEL_H
#define TIS_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "kv.h"
#include "tokenizer.h"

/* Matrices are views into the model file's mapping, in the file's type
 * (tis_weight: Q4_1, Q8_0, F16, ...); vectors (norms, biases) are f32 in
 * the model's small arena. */
typedef struct layer_weights {
    const float *attn_norm; /* [d_model] */
    tis_weight wq;          /* [n_head*head_dim][d_model] */
    tis_weight wk;          /* [n_kv_head*head_dim][d_model] */
    tis_weight wv;          /* [n_kv_head*head_dim][d_model] */
    const float *bq;        /* [n_head*head_dim] or NULL (Qwen2 has biases) */
    const float *bk;        /* [n_kv_head*head_dim] or NULL */
    const float *bv;        /* [n_kv_head*head_dim] or NULL */
    tis_weight wo;          /* [d_model][n_head*head_dim] */
    const float *ffn_norm;  /* [d_model] */
    tis_weight w_gate;      /* [d_ff][d_model] */
    tis_weight w_up;        /* [d_ff][d_model] */
    tis_weight w_down;      /* [d_model][d_ff] */
} layer_weights;

typedef struct model_weights {
    tis_weight tok_embd;    /* [n_vocab][d_model]: rows looked up (model_embed) */
    const float *out_norm;  /* [d_model] */
    tis_weight output;      /* [n_vocab][d_model]; the same view as tok_embd when tied */
    layer_weights *layers;  /* [n_layer], owned by the model */
} model_weights;

struct gguf_file;
struct st_model;

typedef struct model {
    model_config config;
    model_weights weights;
    tokenizer *tok;         /* owned */
    char path[1024];
    char format[16];        /* "gguf" or "safetensors" */
    struct gguf_file *g;    /* owned: the mapping the matrices view (GGUF) */
    struct st_model *st;    /* owned: the same for safetensors */
    float *arena;           /* owned: the f32 vectors */
    size_t arena_bytes;
    size_t weights_bytes;   /* matrices in their file type + the arena */
    int64_t n_params;
    const tis_backend *be;  /* the backend model_to_backend prepared it for (borrowed), or NULL */
    model_weights be_weights; /* that backend's copy (owned): matrices through be->weight_prepare,
                               norms and biases uploaded; tok_embd stays on the host (the
                               embedding lookup runs there, model_embed) */
    kv_types kv_type;       /* element types of the KV caches made for it (forward_kv_new):
                               GGML_TYPE_F16 unless $TIS_KV_TYPE ("T" or "K,V" of f16, f32,
                               bf16, q8_0, q4_0) says otherwise; the CLI's --kv_type sets it */
} model;

/* Loads a .gguf file, or a directory with config.json + *.safetensors +
 * tokenizer.json. The file stays mapped: matrices are used in place, in
 * their type (checked: a type the kernels cannot multiply is an error). */
int model_load(model **out, const char *path);
void model_destroy(model **p);

/* Prepares every layer matrix, norm and bias, the final norm and the
 * output matrix in be's memory, once (a backend that computes in host
 * memory needs nothing: 0, no copy). Preparing for another backend
 * releases the previous one's copy. Not thread-safe: call it before any
 * forward_state uses the model. 0, TIS_ENOMEM, or the backend's error
 * (m then holds no backend copy). */
int model_to_backend(model *m, const tis_backend *be);
/* Releases the backend copy, if any (no forward_state may still use it). */
void model_release_backend(model *m);
/* The weights the forward pass hands backend be: the host's for a host
 * backend, the prepared copy for the backend model_to_backend prepared,
 * NULL for any other. */
const model_weights *model_weights_on(const model *m, const tis_backend *be);

/* x[d_model] = the embedding row of token id (dequantised). */
void model_embed(const model *m, int32_t id, float *x);

#endif
