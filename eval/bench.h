/* bench: benchmark samples (generated tasks and user JSONL datasets) and
 * answer scoring (docs/design.md §7).
 *
 * A sample is prefix (system text, may be NULL) + context (the long part,
 * the only part a press compresses) + question, with the accepted answers.
 * Generators are deterministic by seed and fit the context to a target
 * length in tokens of the given tokenizer. Haystack text comes from files
 * the repo ships or the OS provides (never the network). */
#ifndef TIS_BENCH_H
#define TIS_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct bench_sample {
    char id[96];
    char *prefix;          /* system text or NULL (owned) */
    char *context;         /* owned */
    char *question;        /* owned */
    char *answer_prefix;   /* text the assistant turn starts with, or NULL (owned) */
    char **answers;        /* [n_answers] accepted answers (owned); may be 0 */
    int64_t n_answers;
    char **distractors;    /* [n_distractors] wrong answers of the right shape
                              present in the context (owned), for hallucination */
    int64_t n_distractors;
    int64_t target_tokens; /* context length asked of the generator, -1 for jsonl */
    double depth;          /* needle depth in [0,1] (niah, passkey), -1 n/a */
    int64_t position;      /* litm: index of the asked item, -1 n/a */
    char *meta;            /* extra JSON fields of a dataset line (owned), or NULL */
} bench_sample;

typedef struct bench_set {
    bench_sample *s;       /* [n] owned */
    int64_t n;
    char name[32];         /* benchmark name: passkey, niah, ..., jsonl */
} bench_set;

void bench_set_free(bench_set *set);
/* Frees and removes the samples drop() picks, keeping the order of the
 * rest; returns how many went. */
int64_t bench_set_drop(bench_set *set, bool (*drop)(const bench_sample *s, void *user), void *user);

/* Which generated benchmark and over what grid. Every sample gets a
 * context of (close to, never more than) target tokens. */
typedef struct bench_spec {
    const char *name;             /* passkey | niah | niah_multikey | litm_kv | litm_qa */
    int64_t n_samples;            /* per context length; sample i gets depths[i % n_depths] */
    const int64_t *context_tokens;/* [n_context] target lengths */
    int64_t n_context;
    const double *depths;         /* [n_depths] needle depths (niah/passkey); NULL: spread */
    int64_t n_depths;
    uint64_t seed;
    const char *haystack;         /* niah haystack text file; NULL: the default */
    int64_t n_keys;               /* niah_multikey: needles (default 4) */
    int phrasing;                 /* passkey / niah / multikey needle and question wording:
                                     0 the standard one, 1 another (held-out evaluation) */
} bench_spec;

/* Generates n_samples per context length, the depths (for litm: the asked
 * item's position as a fraction of the items) cycling over the samples. Sample ids are stable functions of the
 * spec ("passkey-1024-d0.50-3"). Errors: unknown name, bad grid, a
 * haystack file that is missing or too short. */
int bench_generate(const bench_spec *spec, const tokenizer *tok, bench_set *out);

/* Names bench_generate accepts, NULL-terminated. */
extern const char *const bench_names[];

/* Loads a JSONL dataset: one object a line with "context", "question",
 * optional "id", "answers" (array of strings, or a string), "prefix",
 * "answer_prefix"; other fields are kept in meta. Empty lines are skipped.
 * A bad line gives TIS_EFORMAT with a message naming the file and line. */
int bench_load_jsonl(const char *path, bench_set *out);
/* Writes a set as a dataset bench_load_jsonl reads (the generator's extra
 * fields, benchmark / depth / position / target_tokens / distractors, land
 * in meta when read back); append adds to an existing file. */
int bench_write_jsonl(const char *path, const bench_set *set, bool append);

/* Scoring of one generated answer against a sample. */
typedef struct bench_score {
    bool contains;      /* an accepted answer appears in the normalised text */
    bool exact;         /* the extracted answer equals an accepted answer */
    bool hallucinated;  /* wrong, and gives an answer of the answer's shape
                           (another number of the same digit count, a distractor, ...) */
    char extracted[128];/* the extracted answer ("" if none) */
} bench_score;

/* Lower-case, punctuation to spaces, whitespace collapsed, trimmed. */
char *bench_normalize(const char *text);

void bench_score_answer(const bench_sample *s, const char *generated, bench_score *out);

#endif
