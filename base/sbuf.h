/* sbuf: a growable, always NUL-terminated string (chat prompts, generated
 * benchmark texts, metrics pages).
 *
 * Every append is checked: the first allocation failure sets `oom`, and
 * the appends after it do nothing, so a builder appends freely and looks
 * once at the end. Zero-initialise (`sbuf b = {0};`); `p` is NULL until the
 * first append and is owned by the sbuf until sbuf_free (or taken). */
#ifndef TIS_SBUF_H
#define TIS_SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sbuf {
    char *p;      /* n bytes then a NUL (NULL before the first append) */
    size_t n, cap;
    bool oom;     /* an append failed: p holds what came before it */
} sbuf;

void sbuf_add(sbuf *b, const char *s, size_t n);
void sbuf_str(sbuf *b, const char *s);
void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties b, keeping its memory (and clearing nothing else: oom stays). */
void sbuf_reset(sbuf *b);
void sbuf_free(sbuf *b);

#endif
