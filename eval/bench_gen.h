/* bench_gen: the private interface between bench.c (haystack, grid, public
 * API) and bench_gen.c (the generators). Not part of the library's API. */
#ifndef TIS_BENCH_GEN_H
#define TIS_BENCH_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "tokenizer.h"

/* Indices into bench_names. */
enum { BENCH_PASSKEY, BENCH_NIAH, BENCH_MULTIKEY, BENCH_LITM_KV, BENCH_LITM_QA };
enum { BENCH_MAX_NEEDLES = 32 };

typedef struct bench_hay_sent {
    size_t off, len; /* into bench_haystack.text */
    int64_t tok;     /* token estimate with its separator, -1 until asked */
    bool par;        /* starts a paragraph (written after "\n\n", else " ") */
} bench_hay_sent;

/* A text file split into sentences (see bench.c for the rules). */
typedef struct bench_haystack {
    const char *path;     /* borrowed from the spec */
    char *text;           /* the sentences, each NUL-terminated (owned) */
    size_t text_n, text_cap;
    bench_hay_sent *s;    /* [n] (owned) */
    int64_t n, cap;
    bool next_par;        /* while loading: a dropped paragraph start passes its flag on */
} bench_haystack;

/* Errors: TIS_EIO (missing), TIS_EFORMAT (fewer than 50 sentences). */
int bench_hay_load(bench_haystack *h, const char *path);
void bench_hay_free(bench_haystack *h);
static inline const char *bench_hay_text(const bench_haystack *h, int64_t i) {
    return h->text + h->s[i].off;
}
/* Token estimate of sentence i (computed once, then cached). */
int bench_hay_tok(bench_haystack *h, const tokenizer *tok, int64_t i, int64_t *out);

/* Tokens of text, at least 1 for a non-empty text. */
int bench_count_tokens(const tokenizer *tok, const char *text, size_t len, int64_t *out);

/* One sample of benchmark kind at target tokens and depth; hay is NULL for
 * passkey and litm_kv. On error *s may hold partial allocations: the caller
 * frees it with the set. */
int bench_gen_sample(const bench_spec *spec, int kind, const tokenizer *tok,
                     bench_haystack *hay, int64_t target, int64_t index, double depth,
                     bench_sample *s);

#endif
