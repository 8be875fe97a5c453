/* gen_model: random-weight Llama-family models at real shapes (GGUF), so
 * speed and memory can be measured without downloading weights. The
 * tokenizer is a synthetic byte-level BPE of the model's vocabulary size
 * (specials, the 256 bytes, then merges of printable characters), so tis
 * loads, tokenizes and generates with it like with a real model; what it
 * generates is noise. */
#ifndef TIS_GEN_MODEL_H
#define TIS_GEN_MODEL_H

#include <stdint.h>

typedef struct gen_model_spec {
    const char *name;         /* general.name */
    int64_t d_model, n_layer, n_head, n_kv_head, d_ff, n_vocab, context;
    float rope_theta;
    int tied;                 /* output = token embedding */
    int wtype;                /* ggml type of the matrices (F32, F16, BF16, Q8_0, Q4_1, ...) */
    uint64_t seed;
} gen_model_spec;

/* The shapes of a known model: smollm2-135m, llama3-8b, mistral-7b,
 * qwen2.5-7b... (gen_model_names lists them); TIS_ENOTFOUND otherwise. */
int gen_model_preset(const char *name, gen_model_spec *out);
extern const char *const gen_model_names[];

/* GPT-2's byte -> printable code point map: byte b's vocabulary piece, as
 * UTF-8 (out holds 3 bytes and the NUL). */
void gen_model_byte_piece(int b, char out[4]);

/* Parameters of the spec (embedding and output included). */
int64_t gen_model_params(const gen_model_spec *s);

/* Writes the model to path (atomically). progress(done, total) per tensor. */
int gen_model_write(const char *path, const gen_model_spec *s, void (*progress)(int64_t done, int64_t total));

#endif
