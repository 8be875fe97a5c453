/* tiny_model: writes small random-weight Llama-family GGUF models for tests,
 * with a byte-level BPE vocabulary (256 byte tokens, a few merges, ChatML
 * special tokens). */
#ifndef TIS_TINY_MODEL_H
#define TIS_TINY_MODEL_H

#include <stdint.h>

typedef struct tiny_spec {
    const char *arch;   /* "llama" (adjacent-pair RoPE) or "qwen2" (halves, QKV bias) */
    int64_t d_model, n_layer, n_head, n_kv_head, d_ff;
    float rope_theta;
    int tied;           /* output = token embedding */
    int wtype;          /* ggml type of the matrices (F32, Q8_0, Q4_1, ...) */
    uint64_t seed;
} tiny_spec;

/* Defaults: llama, d_model 64, 2 layers, 4 heads, 2 kv heads, d_ff 96, F32. */
tiny_spec tiny_spec_default(void);

/* Vocabulary size of the tiny tokenizer (byte tokens + merges + specials). */
int64_t tiny_vocab_size(void);

/* Writes the model to path; 0 or a negative status. */
int tiny_model_write(const char *path, const tiny_spec *spec);

struct model;
/* Writes the model to path and loads it into *out (model_destroy it);
 * 0, or the failing step's status with *out NULL. */
int tiny_model_make(const char *path, const tiny_spec *spec, struct model **out);

#endif
