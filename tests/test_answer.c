/* test_answer: the short-answer stop rule (engine/decoder.h answer_stop,
 * answer_trim_q, answer_restates): an answer ends at a newline or sentence
 * end unless the segment it closes ends in ':' or restates the question;
 * fed token by token it stops where the trim cuts. Cases from models seen
 * answering: SmolLM2 on a needle set ("The launch code of the Tamarind
 * mission is:" then the value on the next line), the 0.5B model restating
 * the question before the value. */
#include <stdio.h>
#include <string.h>

#include "decoder.h"
#include "tt.h"

static const char *s_q = "What is the launch code of the Tamarind mission?";

/* The trimmed answer of text under question q (NULL: no restatement rule). */
static const char *s_trim(const char *text, const char *q) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    answer_trim_q(buf, strlen(buf), q);
    return buf;
}

static void s_check_trim(const char *text, const char *q, const char *want) {
    const char *got = s_trim(text, q);
    bool ok = !strcmp(got, want);
    if (!ok) fprintf(stderr, "  trim '%s': got '%s', want '%s'\n", text, got, want);
    TT_CHECK(ok);
}

/* Fed in pieces of `step` bytes, the rule ends the answer in the piece
 * that holds the byte where the trim cuts (or never, when it keeps all). */
static void s_check_feed(const char *text, const char *q, int step) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    size_t n = strlen(text);
    answer_stop a;
    answer_stop_init(&a, q);
    size_t cut = n; /* the first byte the trim drops, if any */
    for (size_t k = 0; k < n; k++) {
        answer_stop b = a;
        if (answer_stop_feed(&b, text + k, 1)) {
            cut = k;
            break;
        }
        a = b;
    }
    answer_stop_init(&a, q);
    size_t stopped = n;
    for (size_t k = 0; k < n; k += (size_t)step) {
        int64_t m = (int64_t)(n - k < (size_t)step ? n - k : (size_t)step);
        if (answer_stop_feed(&a, text + k, m)) {
            stopped = k;
            break;
        }
    }
    bool ok = cut == n ? stopped == n : stopped <= cut && cut < stopped + (size_t)step;
    if (!ok) fprintf(stderr, "  feed '%s' by %d: stopped at %zu, cut at %zu\n", text, step, stopped, cut);
    TT_CHECK(ok);
    /* and the trim of the text cut there is the trim of the whole text */
    buf[cut < n ? cut : n] = 0;
    char whole[1024];
    snprintf(whole, sizeof whole, "%s", s_trim(text, q));
    TT_CHECK(!strcmp(s_trim(buf, q), whole));
}

static void test_restates(void) {
    TT_CASE("restates");
    const char *yes[] = {"The launch code of the Tamarind mission is:", "the LAUNCH code of the tamarind mission",
                         "What is the launch code of the Tamarind mission?", "The launch code is",
                         "  Launch code, Tamarind mission:  "};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        bool r = answer_restates(yes[i], strlen(yes[i]), s_q);
        if (!r) fprintf(stderr, "  '%s' should restate the question\n", yes[i]);
        TT_CHECK(r);
    }
    const char *no[] = {"The launch code of the Tamarind mission is 44249", "44249-ED", "Tamarind mission",
                        "The code", "", "The launch code of the Apollo mission is", "Sure! The launch code is"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        bool r = answer_restates(no[i], strlen(no[i]), s_q);
        if (r) fprintf(stderr, "  '%s' should not restate the question\n", no[i]);
        TT_CHECK(!r);
    }
    TT_CHECK(!answer_restates("The launch code is", 18, NULL));
    /* whole words only: "launch" is not "launcher", "is" is not in "mission" */
    TT_CHECK(!answer_restates("The launcher code is", 20, s_q));
    TT_CHECK(answer_restates("The launch code is 44249", 18, s_q)); /* n bounds the text */
}

static void test_trim(void) {
    TT_CASE("trim: SmolLM2 on the hidden needle set");
    /* the value on the line after "...is:": the old rule answered "...is:" */
    s_check_trim("The launch code of the Tamarind mission is:\n44249-ED\nThe mission", s_q,
                 "The launch code of the Tamarind mission is:\n44249-ED");
    s_check_trim("The launch code of the Tamarind mission is:\n\n44249-ED.\n", s_q,
                 "The launch code of the Tamarind mission is:\n\n44249-ED.");
    TT_CASE("trim: a restated question, no colon");
    s_check_trim("The launch code of the Tamarind mission is\n44249-ED\nBye", s_q,
                 "The launch code of the Tamarind mission is\n44249-ED");
    s_check_trim("What is the launch code of the Tamarind mission? It is 44249-ED. It was secret.", s_q,
                 "What is the launch code of the Tamarind mission? It is 44249-ED.");
    s_check_trim("The launch code of the Tamarind mission is 44249-ED. It was secret.", s_q,
                 "The launch code of the Tamarind mission is 44249-ED.");
    TT_CASE("trim: answers that end where they did");
    s_check_trim(" 44249-ED\nThe next line", s_q, "44249-ED");
    s_check_trim("44249-ED. More text", s_q, "44249-ED.");
    s_check_trim("\n\n  44249-ED  \n", s_q, "44249-ED");
    s_check_trim("Paris\nLyon", "What is the capital of France, Paris or Lyon?", "Paris");
    s_check_trim("Version 1.5 is out\nx", s_q, "Version 1.5 is out");
    s_check_trim("no stop at all", s_q, "no stop at all");
    TT_CASE("trim: no question: only the colon rule");
    s_check_trim("The launch code of the Tamarind mission is\n44249-ED", NULL,
                 "The launch code of the Tamarind mission is");
    s_check_trim("Answer:\n44249-ED\nmore", NULL, "Answer:\n44249-ED");
    s_check_trim("44249-ED\nmore", NULL, "44249-ED");
    TT_CASE("trim: a segment too long to be a restatement");
    char longline[600];
    int k = snprintf(longline, sizeof longline, "The");
    while (k < ANSWER_SEG_CAP + 20) k += snprintf(longline + k, sizeof longline - (size_t)k, " launch code");
    char want[600];
    snprintf(want, sizeof want, "%s", longline);
    snprintf(longline + k, sizeof longline - (size_t)k, "\n44249");
    s_check_trim(longline, s_q, want);
    TT_CASE("feed: stops where the trim cuts");
    const char *texts[] = {"The launch code of the Tamarind mission is:\n44249-ED\nThe mission",
                           "What is the launch code of the Tamarind mission? It is 44249-ED. It was",
                           "44249-ED. More", " \n44249\n", "The launch code is\n\n\n44249. x", "none"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        for (int step = 1; step <= 7; step += 3) {
            s_check_feed(texts[i], s_q, step);
            s_check_feed(texts[i], NULL, step);
        }
}

int main(void) {
    test_restates();
    test_trim();
    return tt_done("test_answer");
}
