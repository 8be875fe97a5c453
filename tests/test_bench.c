/* test_bench: answer scoring on tricky answers, the JSONL loader (good
 * files, every kind of bad line named by file:line), and the generators on
 * the tiny tokenizer and — with TIS_MODEL — the real one: determinism by
 * seed, the answer in the context exactly once, the needle at the asked
 * depth, the context within its token budget. */
#include <math.h>
#include <string.h>

#include "bench.h"
#include "gguf.h"
#include "tiny_model.h"
#include "tokenizer.h"
#include "tt.h"

/* ---- helpers ------------------------------------------------------------- */

static int64_t s_occurs(const char *hay, const char *needle) {
    int64_t n = 0;
    size_t len = strlen(needle);
    for (const char *p = hay; len && (p = strstr(p, needle)) != NULL; p += len) n++;
    return n;
}

static int64_t s_tokens(const tokenizer *t, const char *s, size_t n) {
    int32_t *ids = NULL;
    int64_t k = -1;
    if (tokenizer_encode(t, s, n, false, &ids, &k)) k = -1;
    free(ids);
    return k;
}

static tokenizer *s_load_tok(const char *path) {
    gguf_file *g = NULL;
    tokenizer *t = NULL;
    TT_OK(gguf_open(&g, path));
    if (g) TT_OK(tokenizer_from_gguf(&t, g));
    gguf_destroy(&g);
    return t;
}

static bench_score s_score(const char *const *answers, int64_t n_ans, const char *const *dis,
                           int64_t n_dis, const char *gen) {
    bench_sample s = {.answers = (char **)answers, .n_answers = n_ans,
                      .distractors = (char **)dis, .n_distractors = n_dis};
    bench_score sc;
    bench_score_answer(&s, gen, &sc);
    return sc;
}
#define ANS(...) (const char *const[]){__VA_ARGS__}, \
    (int64_t)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))
#define NO_DIS NULL, 0

/* contains, exact, hallucinated and the extracted text, in one check */
static bool s_is(bench_score sc, bool c, bool e, bool h, const char *ex, const char *gen) {
    bool ok = sc.contains == c && sc.exact == e && sc.hallucinated == h &&
              (!ex || strcmp(sc.extracted, ex) == 0);
    if (!ok)
        fprintf(stderr, "  '%s': contains %d exact %d hallucinated %d extracted '%s'\n", gen,
                sc.contains, sc.exact, sc.hallucinated, sc.extracted);
    return ok;
}
#define SCORE_IS(answers, dis, gen, c, e, h, ex) \
    TT_CHECK(s_is(s_score(answers, dis, gen), c, e, h, ex, gen))

/* ---- scoring ------------------------------------------------------------- */

static void test_normalize(void) {
    TT_CASE("normalize");
    const char *cases[][2] = {
        {"  Hello, WORLD!!  12-3 ", "hello world 12 3"},
        {"\"The pass key is 12345.\"\n", "the pass key is 12345"},
        {"서울, 한국!  Seoul", "서울 한국 seoul"},
        {"", ""},
        {"...", ""},
        {"a\tb\r\nc", "a b c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = bench_normalize(cases[i][0]);
        TT_CHECK(n && strcmp(n, cases[i][1]) == 0);
        if (n && strcmp(n, cases[i][1])) fprintf(stderr, "  normalize -> '%s'\n", n);
        free(n);
    }
}

static void test_score(void) {
    TT_CASE("score");
    /* numbers: word boundaries, other numbers of the same shape */
    SCORE_IS(ANS("1234"), NO_DIS, "The pass key is 51234.", false, false, false, "51234");
    SCORE_IS(ANS("12345"), NO_DIS, "The pass key is 51234.", false, false, true, "51234");
    SCORE_IS(ANS("12345"), NO_DIS, " 12345. Remember it.", true, true, false, "12345");
    SCORE_IS(ANS("12345"), NO_DIS, "pass key: 12,345", true, true, false, "12345");
    SCORE_IS(ANS("12345"), NO_DIS, "It is 123456.", false, false, false, "123456");
    SCORE_IS(ANS("12345"), NO_DIS, "12345678", false, false, false, "12345678");
    SCORE_IS(ANS("12345"), NO_DIS, "I don't know.", false, false, false, "");
    SCORE_IS(ANS("12345"), NO_DIS, "Maybe 99999, or 12345?", true, false, false, "99999");
    SCORE_IS(ANS("1234567"), ANS("7654321"), "The number is 7,654,321.", false, false, true,
             "7654321");
    SCORE_IS(ANS("1234567"), NO_DIS, "12 34 567", false, false, false, "12");

    /* text: case and punctuation, distractors at word boundaries */
    SCORE_IS(ANS("Doranton"), ANS("Kelburg"), " DORANTON!\nMore text.", true, true, false,
             "DORANTON");
    SCORE_IS(ANS("Doranton"), ANS("Kelburg"), "\n\n\"Doranton\".", true, true, false, "Doranton");
    SCORE_IS(ANS("Doranton"), ANS("Kelburg"), "Kelburg.", false, false, true, "Kelburg");
    SCORE_IS(ANS("Doranton"), ANS("Kelburg"), "Kelburgia", false, false, false, "Kelburgia");
    SCORE_IS(ANS("Doranton"), ANS("Kelburg"), "It is Doranton, a city.", true, false, false,
             "It is Doranton, a city");
    SCORE_IS(ANS("New York City", "NYC"), NO_DIS, "nyc", true, true, false, "nyc");
    SCORE_IS(ANS("New York City", "NYC"), NO_DIS, "new-york city!", true, true, false,
             "new-york city");
    SCORE_IS(ANS("New York"), NO_DIS, "New Yorker", false, false, false, NULL);

    /* hex values: the first 8-digit hex word, others of that shape */
    SCORE_IS(ANS("3fa9c0d1"), NO_DIS, "3fa9c0d1\".", true, true, false, "3fa9c0d1");
    SCORE_IS(ANS("3fa9c0d1"), NO_DIS, "The value is 3FA9C0D1", true, true, false, "3fa9c0d1");
    SCORE_IS(ANS("3fa9c0d1"), NO_DIS, "deadbee1\"", false, false, true, "deadbee1");
    SCORE_IS(ANS("3fa9c0d1"), NO_DIS, "3fa9c0d", false, false, false, "");

    /* Korean: particles attach to the word */
    SCORE_IS(ANS("서울"), NO_DIS, "정답은 서울입니다.", true, false, false,
             "정답은 서울입니다");
    SCORE_IS(ANS("서울"), NO_DIS, "“서울”.", true, true, false, "서울");
    SCORE_IS(ANS("서울"), ANS("부산"), "부산", false, false, true, "부산");

    /* no answers: nothing is right or wrong; NULL text */
    bench_sample none = {0};
    bench_score sc;
    bench_score_answer(&none, "12345", &sc);
    TT_CHECK(!sc.contains && !sc.exact && !sc.hallucinated && !strcmp(sc.extracted, "12345"));
    SCORE_IS(ANS("12345"), NO_DIS, NULL, false, false, false, "");
    /* an extracted answer longer than the buffer is cut at a character */
    char longg[400];
    memset(longg, 'x', sizeof longg);
    memcpy(longg + 120, "가나다", 9);
    longg[sizeof longg - 1] = 0;
    sc = s_score(ANS("x"), NO_DIS, longg);
    TT_CHECK(strlen(sc.extracted) == 126 && !sc.contains); /* 120 x + two 3-byte chars */
}

/* ---- JSONL --------------------------------------------------------------- */

static void test_jsonl(void) {
    TT_CASE("jsonl");
    const char *path = tt_path("data.jsonl");
    /* a long context: lines are not limited */
    size_t big_n = 200000;
    char *big = malloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++) big[i] = "abc "[i % 4];
    big[big_n] = 0;
    size_t text_cap = big_n + 4096;
    char *text = malloc(text_cap);
    snprintf(text, text_cap,
             "\xEF\xBB\xBF{\"id\": \"a\", \"context\": \"c1\", \"question\": \"q1\", "
             "\"answers\": [\"x\", \"y\"], \"source\": {\"n\": [1, 2]}, \"lang\": \"ko\"}\r\n"
             "\n   \t\n"
             "{\"context\": \"%s\", \"question\": \"q2\", \"answers\": \"서울\", "
             "\"prefix\": \"You are helpful.\", \"answer_prefix\": \"The answer is\"}\n"
             "{\"id\": 7, \"context\": \"\", \"question\": \"q3\", \"answers\": null}",
             big);
    TT_OK(tt_write_file(path, text, strlen(text)));
    bench_set set = {0};
    TT_OK(bench_load_jsonl(path, &set));
    TT_CHECK(set.n == 3 && !strcmp(set.name, "jsonl"));
    if (set.n == 3) {
        bench_sample *a = &set.s[0], *b = &set.s[1], *c = &set.s[2];
        TT_CHECK(!strcmp(a->id, "a") && !strcmp(a->context, "c1") && !strcmp(a->question, "q1"));
        TT_CHECK(a->n_answers == 2 && !strcmp(a->answers[1], "y") && !a->prefix);
        TT_CHECK(a->meta && !strcmp(a->meta, "{\"source\":{\"n\":[1,2]},\"lang\":\"ko\"}"));
        TT_CHECK(a->target_tokens == -1 && a->depth == -1.0 && a->position == -1);
        TT_CHECK(!strcmp(b->id, "jsonl-4") && strlen(b->context) == big_n);
        TT_CHECK(b->n_answers == 1 && !strcmp(b->answers[0], "서울") && !b->meta);
        TT_CHECK(b->prefix && !strcmp(b->prefix, "You are helpful.") &&
                 !strcmp(b->answer_prefix, "The answer is"));
        TT_CHECK(!strcmp(c->id, "7") && c->n_answers == 0 && !c->answers &&
                 !strcmp(c->context, ""));
    }
    bench_set_free(&set);
    TT_CHECK(set.n == 0 && set.s == NULL);
    bench_set_free(&set);
    free(text);
    free(big);

    /* every kind of bad line, on line 3, is named with its line */
    static const char *bad[][2] = {
        {"[1, 2]", "not a JSON object"},
        {"{\"question\": \"q\"}", "missing \"context\""},
        {"{\"context\": \"c\"}", "missing \"question\""},
        {"{\"context\": 5, \"question\": \"q\"}", "\"context\" must be a string"},
        {"{\"context\": \"c\", \"question\": [\"q\"]}", "\"question\" must be a string"},
        {"{\"context\": \"c\", \"question\": \"q\", \"answers\": 5}", "\"answers\" must be"},
        {"{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\", 1]}",
         "\"answers\" must be"},
        {"{\"context\": \"c\", \"question\": \"q\", \"prefix\": 1}", "\"prefix\" must be"},
        {"{\"context\": \"c\", \"question\": \"q\", \"id\": true}", "\"id\" must be"},
        {"{\"context\": \"c\", \"question\": \"q\", \"id\": \"\"}", "\"id\" is empty"},
        {"{\"context\": \"c\", \"question\": \"q\"", "invalid JSON"},
        {"{\"context\": \"c\", \"question\": \"q\"} x", "invalid JSON"},
        {"\"just a string\"", "not a JSON object"},
        {"{\"id\": \"one\", \"context\": \"c\", \"question\": \"q\"}", "duplicate id \"one\""},
    };
    const char *bpath = tt_path("bad.jsonl");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "{\"id\": \"one\", \"context\": \"c\", \"question\": \"q\"}\n\n%s\n"
                 "{\"context\": \"c\", \"question\": \"q\"}\n",
                 bad[i][0]);
        TT_OK(tt_write_file(bpath, buf, strlen(buf)));
        bench_set bs = {0};
        TT_FAILS(bench_load_jsonl(bpath, &bs), TIS_EFORMAT);
        TT_CHECK(strstr(tis_last_error(), "bad.jsonl:3: ") && strstr(tis_last_error(), bad[i][1]));
        TT_CHECK(bs.n == 0 && bs.s == NULL);
    }
    char longid[300];
    snprintf(longid, sizeof longid,
             "{\"id\": \"%0120d\", \"context\": \"c\", \"question\": \"q\"}\n", 1);
    TT_OK(tt_write_file(bpath, longid, strlen(longid)));
    bench_set bs = {0};
    TT_FAILS(bench_load_jsonl(bpath, &bs), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "bad.jsonl:1: \"id\" is longer"));
    static const char with_nul[] = "{\"context\": \"c\", \"question\": \"q\"}\n\0\n";
    TT_OK(tt_write_file(bpath, with_nul, sizeof with_nul - 1));
    TT_FAILS(bench_load_jsonl(bpath, &bs), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "bad.jsonl:2: contains a NUL byte"));
    TT_FAILS(bench_load_jsonl(tt_path("nosuch.jsonl"), &bs), TIS_EIO);
    TT_CHECK(strstr(tis_last_error(), "nosuch.jsonl"));
    TT_OK(tt_write_file(bpath, "\n\n", 2));
    TT_OK(bench_load_jsonl(bpath, &bs));
    TT_CHECK(bs.n == 0);
    bench_set_free(&bs);
}

/* ---- generators ---------------------------------------------------------- */

/* Tokens of the body (after the lead's blank line) before and after text at
 * byte offset off of length len: the needle's depth within the filler. */
static double s_depth_of(const tokenizer *t, const char *ctx, const char *at, size_t len) {
    const char *body = strstr(ctx, "\n\n");
    if (!body || at < body) return -1;
    body += 2;
    int64_t before = s_tokens(t, body, (size_t)(at - body));
    int64_t after = s_tokens(t, at + len, strlen(at + len));
    return before + after > 0 ? (double)before / (double)(before + after) : 0.0;
}

/* The tolerance of a needle's depth: what one filler unit (a sentence: the
 * longest in the body) moves it by, plus a little. */
static double s_depth_tol(const char *ctx) {
    const char *body = strstr(ctx, "\n\n");
    body = body ? body + 2 : ctx;
    size_t n = strlen(body), start = 0, longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strchr(".!?", body[i]) || (body[i + 1] != ' ' && body[i + 1] != '\n')) continue;
        if (i + 1 - start > longest) longest = i + 1 - start;
        start = i + 2;
    }
    return 0.03 + (double)longest / (double)(n ? n : 1);
}

/* The checks every generated sample must pass. */
static int64_t s_worst_gap = 0; /* target - tokens, the most seen */

static void s_check_sample(const tokenizer *t, const char *name, const bench_sample *s,
                           bool check_depth) {
    int64_t target = s->target_tokens;
    int64_t n = s_tokens(t, s->context, strlen(s->context));
    if (target - n > s_worst_gap) s_worst_gap = target - n;
    int64_t slack = target * 3 / 100 > 30 ? target * 3 / 100 : 30;
    bool fits = n <= target && n >= target - slack;
    TT_CHECK(fits);
    if (!fits) fprintf(stderr, "  %s: %lld tokens for a target of %lld\n", s->id, (long long)n,
                       (long long)target);
    TT_CHECK(s->n_answers == 1 && s->question && s->answer_prefix && !s->prefix && !s->meta);
    if (s->n_answers != 1) return;
    const char *ans = s->answers[0];
    const char *ctx = s->context;
    /* the sample scores its own answer as right and a distractor as a hallucination */
    bench_score sc;
    bench_score_answer(s, ans, &sc);
    TT_CHECK(sc.contains && sc.exact && !sc.hallucinated);
    for (int64_t i = 0; i < s->n_distractors; i++) {
        TT_CHECK(s_occurs(ctx, s->distractors[i]) == 1 && strcmp(s->distractors[i], ans));
        if (i == 0) {
            bench_score_answer(s, s->distractors[i], &sc);
            TT_CHECK(!sc.contains && !sc.exact && sc.hallucinated);
        }
    }
    char needle[256] = "";
    if (!strcmp(name, "passkey")) {
        snprintf(needle, sizeof needle, "The pass key is %s. Remember it. %s is the pass key.",
                 ans, ans);
        TT_CHECK(strlen(ans) == 5 && ans[0] != '0' && s_occurs(ctx, ans) == 2);
        TT_CHECK(s->n_distractors == 0 && s->position == -1);
    } else if (!strncmp(name, "niah", 4)) {
        /* answer_prefix is "The special magic number for KEY is" */
        const char *key = s->answer_prefix + strlen("The special magic number for ");
        int key_len = (int)strlen(key) - 3;
        char q[200];
        snprintf(needle, sizeof needle, "%s %s.", s->answer_prefix, ans);
        snprintf(q, sizeof q, "What is the special magic number for %.*s mentioned in the "
                 "provided text?", key_len, key);
        TT_CHECK(!strcmp(s->question, q));
        TT_CHECK(strlen(ans) == 7 && s_occurs(ctx, ans) == 1 && s->position == -1);
        TT_CHECK(s->n_distractors == (!strcmp(name, "niah") ? 0 : 3));
        TT_CHECK(s_occurs(ctx, "The special magic number for ") == 1 + s->n_distractors);
    } else if (!strcmp(name, "litm_kv")) {
        char line[64];
        int64_t k = s_occurs(ctx, "\": \"");
        snprintf(line, sizeof line, "\": \"%s\"", ans);
        const char *at = strstr(ctx, line);
        TT_CHECK(s_occurs(ctx, ans) == 1 && at && at - ctx >= 9);
        if (!at || at - ctx < 9) return;
        TT_CHECK(strncmp(s->question, "What is the value of key \"", 26) == 0 &&
                 strncmp(s->question + 26, at - 8, 8) == 0);
        int64_t idx = 0; /* the asked pair's line in the JSON object */
        for (const char *p = strstr(ctx, "{\n"); p && p < at; p++) idx += *p == '\n';
        TT_CHECK(idx - 1 == s->position && s->position == llround(s->depth * (double)(k - 1)));
        TT_CHECK(s->n_distractors >= 1 && s->n_distractors <= 4);
    } else if (!strcmp(name, "litm_qa")) {
        const char *nm = s->question + strlen("What is the capital of ");
        char doc[128];
        int64_t k = s_occurs(ctx, "Document [");
        snprintf(doc, sizeof doc, "Document [%lld] (Title: %.*s):", (long long)(s->position + 1),
                 (int)(strlen(nm) - 1), nm);
        const char *d = strstr(ctx, doc);
        const char *next = d ? strstr(d + 1, "Document [") : NULL;
        char fact[160];
        snprintf(fact, sizeof fact, "The capital of %.*s is %s.", (int)(strlen(nm) - 1), nm, ans);
        const char *f = strstr(ctx, fact);
        TT_CHECK(d && f > d && (!next || f < next) && s_occurs(ctx, ans) == 1);
        TT_CHECK(s->position == llround(s->depth * (double)(k - 1)) &&
                 s->n_distractors == k - 1);
    }
    if (needle[0]) {
        const char *at = strstr(ctx, needle);
        TT_CHECK(at && s_occurs(ctx, needle) == 1);
        if (at && check_depth) {
            double d = s_depth_of(t, ctx, at, strlen(needle));
            TT_NEAR(d, s->depth, s_depth_tol(ctx));
        }
    }
}

static bool s_same_sample(const bench_sample *a, const bench_sample *b) {
    bool same = !strcmp(a->id, b->id) && !strcmp(a->context, b->context) &&
                !strcmp(a->question, b->question) && !strcmp(a->answer_prefix, b->answer_prefix) &&
                a->n_answers == b->n_answers && a->n_distractors == b->n_distractors &&
                a->depth == b->depth && a->position == b->position;
    for (int64_t i = 0; same && i < a->n_answers; i++) same = !strcmp(a->answers[i], b->answers[i]);
    for (int64_t i = 0; same && i < a->n_distractors; i++)
        same = !strcmp(a->distractors[i], b->distractors[i]);
    return same;
}

/* Every benchmark over lengths x the default depths: checks, determinism,
 * and another seed giving other samples. */
static void s_check_generators(const char *who, const tokenizer *t, const int64_t *lens, int64_t n_lens,
                               bool check_depth, bool show) {
    s_worst_gap = 0;
    for (int b = 0; bench_names[b]; b++) {
        const char *name = bench_names[b];
        TT_CASE("%s: generate %s at %lld%s tokens", who, name, (long long)lens[0], n_lens > 1 ? "+" : "");
        bench_spec spec = {.name = name, .n_samples = 5, .context_tokens = lens,
                           .n_context = n_lens, .seed = 42};
        bench_set a = {0}, a2 = {0}, c = {0};
        TT_OK(bench_generate(&spec, t, &a));
        TT_OK(bench_generate(&spec, t, &a2));
        spec.seed = 43;
        TT_OK(bench_generate(&spec, t, &c));
        TT_CHECK(a.n == 5 * n_lens && a2.n == a.n && c.n == a.n && !strcmp(a.name, name));
        /* exported as a dataset and read back: the same prompts and answers */
        char path[512];
        snprintf(path, sizeof path, "%s", tt_path("export.jsonl"));
        bench_set back = {0};
        TT_OK(bench_write_jsonl(path, &a, false));
        TT_OK(bench_load_jsonl(path, &back));
        TT_CHECK(back.n == a.n);
        for (int64_t i = 0; i < a.n && back.n == a.n; i++) {
            const bench_sample *x = &a.s[i], *y = &back.s[i];
            TT_CHECK(!strcmp(x->id, y->id) && !strcmp(x->context, y->context) &&
                     !strcmp(x->question, y->question) && x->n_answers == y->n_answers &&
                     !strcmp(x->answers[0], y->answers[0]) &&
                     !strcmp(x->answer_prefix ? x->answer_prefix : "", y->answer_prefix ? y->answer_prefix : "") &&
                     !strcmp(x->prefix ? x->prefix : "", y->prefix ? y->prefix : "") && y->meta &&
                     strstr(y->meta, "\"benchmark\""));
        }
        bench_set_free(&back);
        int64_t n_same = 0, n_differ = 0;
        for (int64_t i = 0; i < a.n && a2.n == a.n && c.n == a.n; i++) {
            const bench_sample *s = &a.s[i];
            char id[96];
            snprintf(id, sizeof id, "%s-%lld-d%.2f-%lld", name, (long long)lens[i / 5],
                     0.25 * (double)(i % 5), (long long)(i % 5));
            TT_CHECK(!strcmp(s->id, id) && s->target_tokens == lens[i / 5]);
            TT_CHECK(s->depth == 0.25 * (double)(i % 5));
            s_check_sample(t, name, s, check_depth);
            n_same += s_same_sample(s, &a2.s[i]);
            n_differ += strcmp(s->context, c.s[i].context) != 0 &&
                        strcmp(s->answers[0], c.s[i].answers[0]) != 0;
            if (show && i == 2) printf("---- %s (%s)\n%s\n[question] %s\n[answer] %s %s\n", name,
                                       s->id, s->context, s->question, s->answer_prefix,
                                       s->answers[0]);
        }
        TT_CHECK(n_same == a.n && n_differ == a.n);
        /* the samples of one length are independent draws */
        for (int64_t i = 0; i < a.n; i++)
            for (int64_t j = i + 1; j < a.n && j / 5 == i / 5; j++)
                TT_CHECK(strcmp(a.s[i].answers[0], a.s[j].answers[0]) != 0);
        printf("info: %s at", name);
        for (int64_t i = 0; i < n_lens; i++) printf(" %lld", (long long)lens[i]);
        printf(" tokens: at most %lld short of the target\n", (long long)s_worst_gap);
        s_worst_gap = 0;
        bench_set_free(&a);
        bench_set_free(&a2);
        bench_set_free(&c);
    }
}

static void s_check_errors(const tokenizer *t) {
    int64_t len[] = {3000};
    double depths[] = {0.5, 1.5};
    bench_spec spec = {.name = "niah", .n_samples = 1, .context_tokens = len, .n_context = 1};
    bench_set set = {0};
    spec.name = "nosuch";
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EINVAL);
    spec.name = "niah";
    TT_FAILS(bench_generate(&spec, NULL, &set), TIS_EINVAL);
    spec.depths = depths;
    spec.n_depths = 2;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EINVAL);
    spec.depths = NULL;
    spec.n_samples = 0;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EINVAL);
    spec.n_samples = 1;
    len[0] = 0;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EINVAL);
    len[0] = 40;
    for (int b = 0; bench_names[b]; b++) {
        spec.name = bench_names[b];
        TT_FAILS(bench_generate(&spec, t, &set), TIS_ERANGE);
        TT_CHECK(set.n == 0 && set.s == NULL);
    }
    len[0] = 3000;
    spec.name = "niah_multikey";
    spec.n_keys = 33;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EINVAL);
    spec.n_keys = 32; /* 32 needles of ~50 tokens do not fit in 1000 */
    len[0] = 1000;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_ERANGE);

    /* the haystack: missing, too short, or the user's own */
    len[0] = 3000;
    spec.n_keys = 0;
    spec.name = "niah";
    spec.haystack = tt_path("nosuch.txt");
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EIO);
    TT_CHECK(strstr(tis_last_error(), "nosuch.txt"));
    const char *hay = tt_path("hay.txt");
    const char *short_text = "One two three four five six. Seven eight nine ten eleven twelve."
                             "\n\nThirteen fourteen fifteen sixteen seventeen eighteen.\n\n"
                             "A heading\n";
    TT_OK(tt_write_file(hay, short_text, strlen(short_text)));
    spec.haystack = hay;
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EFORMAT);
    TT_CHECK(strstr(tis_last_error(), "hay.txt") && strstr(tis_last_error(), "3 sentences"));
    spec.name = "litm_qa";
    TT_FAILS(bench_generate(&spec, t, &set), TIS_EFORMAT);
    /* 60 sentences, one of them without a full stop, some abbreviations */
    char text[8192];
    size_t n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%sSentence number %d is here, e.g. "
                              "with Mr. Smith%s", i % 7 == 0 ? "\n\n" : " ", i,
                              i == 30 ? "\n\n" : ".");
    TT_OK(tt_write_file(hay, text, n));
    spec.name = "niah";
    TT_OK(bench_generate(&spec, t, &set));
    TT_CHECK(set.n == 1 && s_occurs(set.s[0].context, "Sentence number") > 10);
    TT_CHECK(set.n == 1 && !strstr(set.s[0].context, "GNU"));
    if (set.n == 1) s_check_sample(t, "niah", &set.s[0], false);
    bench_set_free(&set);
}

static void test_tiny(void) {
    TT_CASE("tiny");
    const char *path = tt_path("tiny.gguf");
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(path, &sp));
    tokenizer *t = s_load_tok(path);
    if (!t) return;
    /* about a byte a token: few units fit, so the fit is checked hard */
    int64_t lens[] = {1500, 6000};
    s_check_generators("tiny", t, lens, 2, true, false);
    TT_CASE("tiny: generator errors");
    s_check_errors(t);
    /* the alternative wording: other needle and question, same answers */
    TT_CASE("tiny: phrasing 1");
    const char *names[] = {"passkey", "niah", "niah_multikey"};
    const char *marks[] = {"The secret code is", "The hidden number associated with",
                           "The hidden number associated with"};
    for (int b = 0; b < 3; b++) {
        int64_t len = 1500;
        bench_spec s0 = {.name = names[b], .n_samples = 2, .context_tokens = &len, .n_context = 1, .seed = 5};
        bench_spec s1 = s0;
        s1.phrasing = 1;
        bench_set a = {0}, c = {0};
        TT_OK(bench_generate(&s0, t, &a));
        TT_OK(bench_generate(&s1, t, &c));
        for (int64_t i = 0; i < a.n && i < c.n; i++) {
            TT_CHECK(strstr(c.s[i].context, marks[b]) && !strstr(a.s[i].context, marks[b]));
            TT_CHECK(strcmp(a.s[i].question, c.s[i].question) != 0);
            TT_CHECK(!strcmp(a.s[i].answers[0], c.s[i].answers[0]));
            TT_CHECK(strstr(c.s[i].context, c.s[i].answers[0]) != NULL);
            size_t l = strlen(c.s[i].id);
            TT_CHECK(l > 3 && !strcmp(c.s[i].id + l - 3, "-p1"));
        }
        TT_CHECK(a.n == 2 && c.n == 2);
        bench_set_free(&a);
        bench_set_free(&c);
    }
    tokenizer_destroy(&t);
}

static void test_real(void) {
    TT_CASE("real");
    const char *path = tt_model();
    if (!path) {
        printf("note: the model is missing; skipping the real-tokenizer checks\n");
        return;
    }
    tokenizer *t = s_load_tok(path);
    if (!t) return;
    int64_t small[] = {256};
    s_check_generators("real", t, small, 1, false, getenv("TIS_BENCH_SHOW") != NULL);
    int64_t lens[] = {1024, 4000, 16384};
    s_check_generators("real", t, lens, 3, true, false);
    /* a grid of its own depths and n_samples not a multiple of them */
    TT_CASE("real: own depths");
    double depths[] = {0.1, 0.9};
    int64_t len[] = {2048};
    bench_spec spec = {.name = "niah_multikey", .n_samples = 3, .context_tokens = len,
                       .n_context = 1, .depths = depths, .n_depths = 2, .seed = 5, .n_keys = 6};
    bench_set set = {0};
    TT_OK(bench_generate(&spec, t, &set));
    TT_CHECK(set.n == 3 && set.s[0].depth == 0.1 && set.s[1].depth == 0.9 &&
             set.s[2].depth == 0.1 && !strcmp(set.s[2].id, "niah_multikey-2048-d0.10-2"));
    for (int64_t i = 0; i < set.n; i++) {
        TT_CHECK(set.s[i].n_distractors == 5);
        TT_CHECK(s_occurs(set.s[i].context, "The special magic number for ") == 6);
    }
    bench_set_free(&set);
    tokenizer_destroy(&t);
}

int main(void) {
    test_normalize();
    test_score();
    test_jsonl();
    test_tiny();
    test_real();
    return tt_done("test_bench");
}
