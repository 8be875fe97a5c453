/* pretok: pre-tokenisation, the regex split a byte-level BPE tokenizer
 * applies before merging, written by hand for each tok_pre family. */
#ifndef TIS_PRETOK_H
#define TIS_PRETOK_H

#include <stddef.h>

#include "tokenizer.h"

/* Called once per piece, in order; start/len are byte offsets into the
 * text. A non-zero return stops the split and is passed back. */
typedef int (*pretok_emit_fn)(void *ud, size_t start, size_t len);

/* Splits text[0..len) (any bytes; invalid UTF-8 bytes are single
 * characters of no class) into pieces that cover it exactly. Returns 0, the
 * first non-zero emit result, or a negative status (out of memory, unknown
 * family). */
int pretok_split(tok_pre pre, const char *text, size_t len, pretok_emit_fn emit,
                 void *ud);

/* The llama.cpp tokenizer.ggml.pre name of a family ("smollm", ...). */
const char *pretok_name(tok_pre pre);

#endif
