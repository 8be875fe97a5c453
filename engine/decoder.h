/* decoder: the one step-wise decode loop of tis. Each call to decoder_step
 * runs one batched forward pass over the sequences that are still going
 * (a sequence's first step runs its feed: the question or prompt tokens;
 * later steps its last token), picks each sequence's next token (greedy,
 * or its own sampler) and applies the stop rules: end-of-generation
 * token, the end of a short answer (answer_stop), max_new tokens.
 *
 * Callers: `tis generate` (generate(): one sequence, a sampler, a token
 * callback), eval's batched decode of the policy runs (decoder_run: a
 * group in lockstep), and the decode worker's continuous batching
 * (decoder_step once per poll turn while sequences join and leave). The
 * tokens of a sequence do not depend on what it is batched with, beyond
 * float summation order. */
#ifndef TIS_DECODER_H
#define TIS_DECODER_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"

/* Short answers (benchmarks, labels, served requests): an answer ends at a
 * boundary that closes a segment of text: a newline, or a sentence end
 * (. ! ? followed by a blank). A boundary does not end the answer when the
 * segment it closes cannot hold the answer yet, i.e. when the segment
 *  - is blank (nothing since the last boundary),
 *  - ends in ':' ("The launch code is:" - the value follows), or
 *  - restates the question (answer_restates: question set); the answer
 *    then goes on to the next boundary, end of generation or the cap. */
enum { ANSWER_SEG_CAP = 192 };
typedef struct answer_stop {
    const char *question;      /* borrowed, or NULL: no restatement rule */
    bool seg_text;             /* a non-blank byte since the last boundary */
    bool prev_end;             /* the last byte ended a sentence */
    char last;                 /* the segment's last non-blank byte */
    int seg_n;                 /* bytes in seg (the segment, cut at the cap) */
    bool seg_long;             /* the segment outgrew seg: not a restatement */
    char seg[ANSWER_SEG_CAP];
} answer_stop;

/* A fresh rule state; question (borrowed, may be NULL) enables the
 * restatement rule. */
void answer_stop_init(answer_stop *a, const char *question);

/* Feeds the bytes of one generated token; true once the answer has ended. */
bool answer_stop_feed(answer_stop *a, const char *bytes, int64_t n);

/* Whether text[n] restates question: it has at least ANSWER_RESTATE_MIN
 * words (runs of ASCII letters/digits or bytes >= 0x80, compared
 * case-blind) and every one of them is a word of the question or one of
 * "the a an is are was were". "The launch code of the Tamarind mission
 * is:" restates "What is the launch code of the Tamarind mission?"; "The
 * launch code is 44249" (a word not in the question) and "Paris" (too
 * short) do not. */
enum { ANSWER_RESTATE_MIN = 3 };
bool answer_restates(const char *text, size_t n, const char *question);

/* Cuts a decoded answer where answer_stop (without / with the question)
 * ends it, and trims surrounding blanks, in place; returns the new length. */
size_t answer_trim(char *text, size_t len);
size_t answer_trim_q(char *text, size_t len, const char *question);

/* One sequence. The caller sets the first group of fields (decoder_seq_init
 * does), the decoder the rest. */
typedef struct decoder_seq {
    kv_cache *kv;          /* borrowed; room for n_feed + max_new entries per stream */
    const int32_t *feed;   /* [n_feed] run on the first step (borrowed until then) */
    int64_t n_feed;
    int64_t max_new;       /* tokens generated at most (>= 1) */
    bool stop_answer;      /* also stop at the end of a short answer */
    bool stop_eog;         /* stop at an end-of-generation token (not kept in gen) */
    sampler *smp;          /* borrowed; NULL: greedy */

    int32_t *gen;          /* [max_new] generated tokens (owned: decoder_seq_free) */
    int64_t n_gen;
    bool fed, done;
    int32_t eog;           /* the end-of-generation token that stopped it, or -1 */
    bool capped;           /* it ended at max_new: no end of generation, no stop rule */
    answer_stop stop;
    double t_fed;          /* tis_now() when the step that ran the feed had picked its token */
    double t_done;         /* tis_now() when the sequence finished */
    int64_t kv_bytes;      /* cache bytes used once the feed had run */
} decoder_seq;

/* A greedy short-answer sequence (stop_answer and stop_eog set, no
 * question: set one with answer_stop_init(&q->stop, question)). */
int decoder_seq_init(decoder_seq *q, kv_cache *kv, const int32_t *feed, int64_t n_feed, int64_t max_new);
void decoder_seq_free(decoder_seq *q);
/* Marks a sequence finished now (a caller's own stop rule, a cancel). */
void decoder_seq_finish(decoder_seq *q);

typedef struct decoder decoder;

/* A decoder over st's model with logits scratch for max_batch sequences
 * per step. st is borrowed and must outlive it. */
int decoder_new(decoder **out, forward_state *st, int64_t max_batch);
void decoder_destroy(decoder **p);
int64_t decoder_max_batch(const decoder *d);

/* One step over the sequences of seqs[n] that are not done (at most
 * max_batch of them; the rest wait for a later step). Returns how many
 * stepped; a forward error leaves the sequences as they were and is
 * returned (negative). */
int64_t decoder_step(decoder *d, decoder_seq *const *seqs, int64_t n);

/* Steps seqs[n] (n <= max_batch) until every one is done. */
int decoder_run(decoder *d, decoder_seq *const *seqs, int64_t n);

/* The generated tokens as text (malloc'd); trimmed as a short answer when
 * trim. */
int decoder_seq_text(const decoder *d, const decoder_seq *q, bool trim, char **text);

/* One greedy short answer from kv after feed[n_feed], alone on d: its
 * tokens as generated, its trimmed text, the cache bytes when decoding
 * started and the seconds it took. Free with decoder_answer_free. */
typedef struct decoder_answer {
    char *text;          /* trimmed (malloc'd) */
    int32_t *ids;        /* [n] (malloc'd) */
    int64_t n;
    int64_t kv_bytes;
    double secs;
} decoder_answer;
/* question (borrowed, may be NULL): the short-answer rule's restatement
 * check (answer_stop_init), as tis eval decodes. */
int decoder_answer_run(decoder *d, kv_cache *kv, const int32_t *feed, int64_t n_feed, int64_t max_new,
                       const char *question, decoder_answer *out);
void decoder_answer_free(decoder_answer *a);

#endif
