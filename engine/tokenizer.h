/* tokenizer: BPE tokenizers (byte-level GPT-2 style now; SentencePiece-style
 * BPE later) built from GGUF metadata or a HF tokenizer.json. */
#ifndef TIS_TOKENIZER_H
#define TIS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum tok_kind {
    TOK_KIND_BYTE_BPE = 0, /* GPT-2 byte-level BPE: SmolLM2, Llama-3, Qwen2 */
    TOK_KIND_SPM_BPE = 1,  /* SentencePiece BPE: Llama-2, Mistral (not yet) */
} tok_kind;

/* Pre-tokeniser regex family (llama.cpp's tokenizer.ggml.pre names). */
typedef enum tok_pre {
    TOK_PRE_GPT2 = 0,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TOK_PRE_SMOLLM = 1, /* every \p{N} alone, then GPT-2 */
    TOK_PRE_LLAMA3 = 2, /* Llama-3 regex (numbers in runs of 1-3) */
    TOK_PRE_QWEN2 = 3,  /* Qwen2 regex (single digits) */
} tok_pre;

typedef enum tok_type { /* token_type values as in GGUF */
    TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6,
} tok_type;

typedef struct tokenizer tokenizer;

int tokenizer_from_gguf(tokenizer **out, const gguf_file *g);
int tokenizer_from_json(tokenizer **out, const char *tokenizer_json_path);
void tokenizer_destroy(tokenizer **p);

/* Encodes UTF-8 text (need not be NUL-terminated). With parse_special,
 * special/added tokens written in the text ("<|im_start|>") map to their
 * ids; without, they are encoded as plain text. Invalid UTF-8 bytes are
 * encoded as their byte tokens. A tokenizer.json whose normalizer is NFC
 * has the text between special tokens put in Unicode NFC first, as HF
 * tokenizers does (tokenizer_encode.c); GGUF tokenizers encode the text as
 * given. *ids is malloc'd (caller frees). */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len,
                     bool parse_special, int32_t **ids, int64_t *n_ids);

/* Decodes ids to UTF-8 (malloc'd, NUL-terminated, *len without the NUL).
 * With skip_special, control tokens produce no text. */
int tokenizer_decode(const tokenizer *t, const int32_t *ids, int64_t n,
                     bool skip_special, char **text, size_t *len);

/* Bytes one token decodes to, into buf (cap bytes); returns the byte count
 * (may exceed cap: then truncated) or a negative status for a bad id.
 * For streaming: a token may end mid-character. */
int64_t tokenizer_token_bytes(const tokenizer *t, int32_t id, char *buf, size_t cap);

int64_t tokenizer_n_vocab(const tokenizer *t);
/* The vocabulary string of a token as stored (e.g. "Ġthe"); NULL if bad id. */
const char *tokenizer_piece(const tokenizer *t, int32_t id);
int tokenizer_token_type(const tokenizer *t, int32_t id);
/* Id of an exact vocabulary string, or -1. */
int32_t tokenizer_find(const tokenizer *t, const char *piece);

int32_t tokenizer_bos(const tokenizer *t); /* -1 when none */
int32_t tokenizer_eos(const tokenizer *t);
bool tokenizer_add_bos(const tokenizer *t); /* whether prompts start with BOS */
/* True for ids that end generation (eos, and e.g. <|im_end|>, <|eot_id|>). */
bool tokenizer_is_eog(const tokenizer *t, int32_t id);

/* The chat template text from the model file, or NULL. */
const char *tokenizer_chat_template(const tokenizer *t);

#endif
