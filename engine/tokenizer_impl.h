/* tokenizer_impl: the tokenizer's private layout and the builder the
 * file-format loaders (tokenizer_load.c) share; not a public header. */
#ifndef TIS_TOKENIZER_IMPL_H
#define TIS_TOKENIZER_IMPL_H

#include "tokenizer.h"

/* One merge rule in the (left id, right id) open-addressing table. */
typedef struct tok_merge {
    uint64_t key;   /* (uint64_t)left << 32 | right; TOK_MERGE_EMPTY if free */
    int32_t rank;   /* position in the merges list: lower merges first */
    int32_t id;     /* the merged token */
} tok_merge;

#define TOK_MERGE_EMPTY UINT64_MAX
#define TOK_MAX_EOG 16
#define TOK_MAX_VOCAB (1 << 24) /* far above any real vocabulary; bounds sizes */

struct tokenizer {
    tok_kind kind;
    tok_pre pre;
    bool ignore_merges;   /* Llama-3: a word that is a token is not merged */
    bool add_bos;
    bool nfc;             /* normalise text to NFC first (HF normalizer "NFC") */
    int64_t n_vocab;
    char *pieces;         /* vocabulary strings, each NUL-terminated, packed */
    size_t *piece_off;    /* [n_vocab + 1] offsets into pieces */
    char *bytes;          /* what each token decodes to, packed */
    size_t *bytes_off;    /* [n_vocab + 1] offsets into bytes */
    uint8_t *types;       /* [n_vocab] tok_type */
    int32_t *piece_map;   /* [piece_cap] token id or -1: piece -> id */
    size_t piece_cap;     /* power of two */
    tok_merge *merges;    /* [merge_cap] */
    size_t merge_cap;     /* power of two (0 when there are no merges) */
    int32_t byte_id[256]; /* token of each raw byte, -1 if absent */
    int32_t *specials;    /* [n_specials] CONTROL/USER_DEFINED ids, longest first */
    int64_t n_specials;
    uint8_t *special_late; /* [n_specials] 1: matched in the normalised text (HF
                            * added token with normalized=true), 0: in the raw text */
    int64_t n_late;       /* how many specials are late */
    uint8_t special_first[256]; /* bit 0 (raw) / bit 1 (late) when some special
                                 * piece of that kind starts with this byte */
    int32_t bos, eos, unk, pad; /* -1 when none */
    int32_t byte_unk;     /* emitted for a byte without a token; -1: dropped */
    int32_t eog[TOK_MAX_EOG];
    int n_eog;
    char *chat_template;  /* owned, or NULL */
};

/* Everything a loader extracts; views are only read during tok_build. */
typedef struct tok_spec {
    tok_kind kind;
    tok_pre pre;
    bool ignore_merges;
    bool add_bos;
    bool nfc;                     /* HF normalizer {"type": "NFC"} */
    int64_t n_vocab;
    const gguf_str *pieces;       /* [n_vocab] */
    const int32_t *types;         /* [n_vocab], or NULL for all NORMAL */
    const uint8_t *normalized;    /* [n_vocab], or NULL for all 0: HF added_tokens'
                                   * "normalized" (1: matched after normalisation) */
    int64_t n_merges;
    const gguf_str *merge_left;   /* [n_merges] */
    const gguf_str *merge_right;  /* [n_merges] */
    int32_t bos, eos, unk, pad;   /* -1 when none */
    int32_t eot;                  /* extra end-of-generation id, or -1 */
    /* For a byte the vocabulary lacks (SmolLM2 has no 0xC0, 0xF5-0xFF,
     * ...): HF tokenizers emits the BPE model's own unk_token, and drops
     * the byte when that is null. GGUF's unknown_token_id comes from the
     * special-tokens config instead (SmolLM2: <|endoftext|>, which would end
     * the document mid-prompt), so GGUF files drop such bytes: -1. */
    int32_t byte_unk;
    gguf_str chat_template;       /* .ptr NULL when none */
} tok_spec;

/* Id of the piece p[0..n), or -1. */
int32_t tok_find_bytes(const tokenizer *t, const char *p, size_t n);
/* The rule merging left+right, or NULL. */
const tok_merge *tok_merge_find(const tokenizer *t, int32_t left, int32_t right);

/* Validates the spec and builds the tokenizer (copies everything). */
int tok_build(tokenizer **out, const tok_spec *s);

#endif
