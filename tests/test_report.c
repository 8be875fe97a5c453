/* test_report: CSV quoting read back by an RFC 4180 parser and by
 * report_read_csv (every field, tricky strings, UTF-8-safe truncation,
 * each kind of malformed CSV naming its line), the summary's
 * numbers (accuracy, retention, measured compression) read back from the
 * JSON, the Markdown tables, unwritable paths, peak RSS. The plots are
 * tests/test_report_plot.c. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval_rows.h"
#include "report.h"
#include "tt.h"

enum { NC = 28 }; /* columns; a CSV from before `threshold` has the first 25, from before `truncated` 26,
                     from before `kv_type` 27 */
static const char *const s_cols[NC] = {
    "benchmark", "policy", "protocol", "budget", "budget_tokens", "context_tokens",
    "target_tokens", "depth", "position", "sample_id", "correct", "exact", "hallucinated",
    "answer", "expected", "kept_tokens", "kv_bytes", "full_kv_bytes", "prefill_s",
    "compress_s", "decode_s", "ttft_s", "tokens_per_s", "n_generated", "peak_rss_bytes", "threshold", "truncated",
    "kv_type"};

/* One RFC 4180 record from *p into fields[max][512]; returns the field
 * count (-1 at the end of the text or on a malformed quote). */
static int s_csv_record(const char **p, char (*fields)[512], int max) {
    const char *s = *p;
    if (!*s) return -1;
    int n = 0;
    for (;;) {
        if (n == max) return -1;
        size_t len = 0;
        char *out = fields[n++];
        if (*s == '"') {
            for (s++;; s++) {
                if (!*s) return -1;
                if (*s == '"') {
                    if (s[1] != '"') break;
                    s++;
                }
                if (len < 511) out[len++] = *s;
            }
            s++;
            if (*s && *s != ',' && *s != '\n') return -1;
        } else {
            for (; *s && *s != ',' && *s != '\n'; s++)
                if (len < 511) out[len++] = *s;
        }
        out[len] = 0;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\n') s++;
        *p = s;
        return n;
    }
}

static bool s_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_csv(void) {
    TT_CASE("csv");
    eval_row rows[2];
    rows[0] = tt_eval_row("passkey", "agnostic", "snapkv", 0.1, -1, true, 100, 1000, 40);
    const char *tricky = "He said \"12345\", then\nleft";
    snprintf(rows[0].answer, sizeof rows[0].answer, "%s", tricky);
    snprintf(rows[0].sample_id, sizeof rows[0].sample_id, "a,b");
    rows[0].depth = 0.25;
    rows[0].hallucinated = true;
    rows[1] = tt_eval_row("niah", "query_aware", "full", -1, 256, false, 1000, 1000, 55.5);
    rows[1].answer[0] = 0; /* empty field */
    rows[1].prefill_s = 1.23456789;
    rows[0].truncated = 1;
    rows[1].truncated = -1; /* unknown: an empty field */
    snprintf(rows[0].kv_type, sizeof rows[0].kv_type, "q8_0,q4_0"); /* a comma: quoted */
    /* an unterminated string field must not run into the next field */
    memset(rows[1].expected, 'x', sizeof rows[1].expected);
    const char *path = tt_path("rows.csv");
    TT_OK(report_write_csv(path, rows, 2));
    TT_CHECK(!s_exists(tt_path("rows.csv.tmp")));
    char *text = tt_read_file(path, NULL);
    TT_CHECK(text != NULL);
    if (!text) return;
    const char *p = text;
    char f[30][512];
    int n = s_csv_record(&p, f, 30);
    TT_CHECK(n == NC);
    for (int i = 0; i < NC && i < n; i++) TT_CHECK(strcmp(f[i], s_cols[i]) == 0);

    n = s_csv_record(&p, f, 30);
    TT_CHECK(n == NC);
    if (n == NC) {
        TT_CHECK(strcmp(f[0], "passkey") == 0 && strcmp(f[1], "snapkv") == 0);
        TT_CHECK(strcmp(f[2], "agnostic") == 0);
        TT_CHECK(strcmp(f[3], "0.1") == 0 && strcmp(f[4], "-1") == 0);
        TT_CHECK(strcmp(f[7], "0.25") == 0);
        TT_CHECK(strcmp(f[9], "a,b") == 0);
        TT_CHECK(strcmp(f[10], "1") == 0 && strcmp(f[11], "0") == 0 && strcmp(f[12], "1") == 0);
        TT_CHECK(strcmp(f[13], tricky) == 0);
        TT_CHECK(strcmp(f[16], "100") == 0 && strcmp(f[17], "1000") == 0);
        TT_CHECK(strcmp(f[22], "40") == 0);
        TT_CHECK(strcmp(f[24], "1048576") == 0);
        TT_CHECK(strcmp(f[25], "-1") == 0 && strcmp(f[26], "1") == 0);
        TT_CHECK(strcmp(f[27], "q8_0,q4_0") == 0);
    }
    n = s_csv_record(&p, f, 30);
    TT_CHECK(n == NC);
    if (n == NC) {
        TT_CHECK(strcmp(f[3], "-1") == 0 && strcmp(f[4], "256") == 0);
        TT_CHECK(strcmp(f[10], "0") == 0);
        TT_CHECK(f[13][0] == 0);
        TT_CHECK(strlen(f[14]) == sizeof rows[1].expected);
        TT_CHECK(strcmp(f[18], "1.23457") == 0);
        TT_CHECK(strcmp(f[22], "55.5") == 0);
        TT_CHECK(f[26][0] == 0 && f[27][0] == 0);
    }
    TT_CHECK(s_csv_record(&p, f, 30) == -1); /* exactly two rows */
    free(text);

    /* no rows: the header alone */
    TT_OK(report_write_csv(path, rows, 0));
    text = tt_read_file(path, NULL);
    TT_CHECK(text && strncmp(text, "benchmark,policy,", 17) == 0 && strchr(text, '\n') &&
             strchr(text, '\n')[1] == 0);
    free(text);

    TT_FAILS(report_write_csv("/nonexistent-tis-dir/rows.csv", rows, 2), TIS_EIO);
    TT_FAILS(report_write_csv(path, NULL, 2), TIS_EINVAL);
}

/* ---- report_read_csv ------------------------------------------------- */

/* |a - b| within what printf %.<digits>g keeps (NaN == NaN, inf == inf). */
static bool s_close(double a, double b, int digits) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (a == b) return true;
    return fabs(a - b) <= 0.5 * pow(10.0, 1 - digits) * fabs(b) * (1 + 1e-9);
}

/* Compares every field of a row read back with the row written. */
static int s_rows_differ(const eval_row *a, const eval_row *b) {
    int bad = 0;
#define S_STR(f) bad += strcmp(a->f, b->f) != 0
#define S_INT(f) bad += a->f != b->f
    S_STR(benchmark);
    S_STR(policy);
    S_STR(protocol);
    S_STR(sample_id);
    S_STR(answer);
    S_STR(expected);
    S_STR(kv_type);
    S_INT(budget_tokens);
    S_INT(context_tokens);
    S_INT(target_tokens);
    S_INT(position);
    S_INT(correct);
    S_INT(exact);
    S_INT(hallucinated);
    S_INT(kept_tokens);
    S_INT(kv_bytes);
    S_INT(full_kv_bytes);
    S_INT(n_generated);
    S_INT(peak_rss_bytes);
    S_INT(truncated);
#undef S_STR
#undef S_INT
    bad += !s_close(a->budget, b->budget, 4);
    bad += !s_close(a->depth, b->depth, 6);
    bad += !s_close(a->prefill_s, b->prefill_s, 6);
    bad += !s_close(a->compress_s, b->compress_s, 6);
    bad += !s_close(a->decode_s, b->decode_s, 6);
    bad += !s_close(a->ttft_s, b->ttft_s, 6);
    bad += !s_close(a->tokens_per_s, b->tokens_per_s, 6);
    return bad;
}

static void test_read_csv_roundtrip(void) {
    TT_CASE("read_csv_roundtrip");
    enum { N = 150 }; /* past the reader's first allocation */
    static eval_row rows[N];
    uint64_t st = 7;
    for (int i = 0; i < N; i++) {
        rows[i] = tt_eval_row(i % 3 ? "passkey" : "niah", i % 2 ? "agnostic" : "query_aware",
                        i % 5 ? "snapkv" : "full", 0.05 * (i % 7), -1, i % 4 == 0,
                        1000 + i, 5000 + 3 * i, 40 + tt_randf(&st));
        rows[i].depth = 0.5 + 0.5 * tt_randf(&st);
        rows[i].prefill_s = 1e-3 * (1 + tt_randf(&st));
        rows[i].compress_s = 12345.678901 * (1 + tt_randf(&st));
        rows[i].decode_s = 1e-7 * (2 + tt_randf(&st));
        rows[i].ttft_s = 3.3e8 * (2 + tt_randf(&st));
        rows[i].exact = i % 3 == 0;
        rows[i].hallucinated = i % 7 == 0;
        rows[i].truncated = i % 3 - 1; /* unknown, no, yes */
        snprintf(rows[i].kv_type, sizeof rows[i].kv_type, "%s", i % 3 == 0 ? "" : i % 3 == 1 ? "f16" : "q8_0,q4_0");
        snprintf(rows[i].sample_id, sizeof rows[i].sample_id, "s-%d", i);
    }
    /* strings a CSV can get wrong */
    snprintf(rows[0].benchmark, sizeof rows[0].benchmark, "pass,key");
    snprintf(rows[0].policy, sizeof rows[0].policy, "he said \"x\"");
    snprintf(rows[0].protocol, sizeof rows[0].protocol, "a\nb");
    snprintf(rows[0].sample_id, sizeof rows[0].sample_id, "x\r\ny");
    snprintf(rows[0].answer, sizeof rows[0].answer,
             "\"quoted\", then\n\nblank line, h\xc3\xa9llo \xf0\x9f\x98\x80 \xe4\xb8\x96, \"\"\"");
    rows[0].expected[0] = 0;
    snprintf(rows[1].answer, sizeof rows[1].answer, "\"");
    snprintf(rows[1].expected, sizeof rows[1].expected, "  007 ");
    snprintf(rows[1].sample_id, sizeof rows[1].sample_id, ",");
    memset(rows[2].benchmark, 'b', sizeof rows[2].benchmark - 1); /* exactly full */
    rows[2].benchmark[sizeof rows[2].benchmark - 1] = 0;
    memset(rows[2].answer, 'a', sizeof rows[2].answer - 1);
    rows[2].answer[sizeof rows[2].answer - 1] = 0;
    rows[2].answer[100] = '\n';
    /* numbers at the edges */
    rows[3].budget = 1.0 / 3.0;
    rows[3].budget_tokens = INT64_MAX;
    rows[3].context_tokens = INT64_MIN;
    rows[3].kv_bytes = 0;
    rows[3].depth = -0.0;
    rows[3].prefill_s = 1e-300;
    rows[3].compress_s = -1.5e300;
    rows[3].decode_s = NAN;
    rows[3].ttft_s = INFINITY;
    rows[3].tokens_per_s = -INFINITY;
    rows[4].budget = -1;
    rows[4].budget_tokens = 256;
    rows[1].budget = -1;
    rows[1].threshold = 0.02; /* an adaptive budget */

    const char *path = tt_path("roundtrip.csv");
    TT_OK(report_write_csv(path, rows, N));
    eval_row *back = NULL;
    int64_t n = -1;
    TT_OK(report_read_csv(path, &back, &n));
    TT_CHECK(n == N && back != NULL);
    int bad_rows = 0;
    for (int64_t i = 0; back && i < n && i < N; i++)
        if (s_rows_differ(&back[i], &rows[i])) {
            bad_rows++;
            fprintf(stderr, "  row %lld read back differs\n", (long long)i);
        }
    TT_CHECK(bad_rows == 0);
    if (back && n > 3) {
        TT_CHECK(strcmp(back[0].answer, rows[0].answer) == 0);
        TT_CHECK(back[3].budget == 0.3333 && isnan(back[3].decode_s));
        TT_CHECK(isinf(back[3].ttft_s) && back[3].ttft_s > 0 && back[3].tokens_per_s < 0);
        TT_CHECK(back[1].threshold == 0.02 && back[4].threshold == rows[4].threshold);
    }
    free(back);

    /* written again from what was read: the same bytes */
    TT_OK(report_read_csv(path, &back, &n));
    const char *again = tt_path("roundtrip2.csv");
    TT_OK(report_write_csv(again, back, n));
    free(back);
    char *t1 = tt_read_file(path, NULL), *t2 = tt_read_file(again, NULL);
    TT_CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    free(t1);
    free(t2);

    /* header only: no rows */
    TT_OK(report_write_csv(path, rows, 0));
    back = (eval_row *)1;
    TT_OK(report_read_csv(path, &back, &n));
    TT_CHECK(n == 0 && back == NULL);

    TT_FAILS(report_read_csv(tt_path("missing.csv"), &back, &n), TIS_EIO);
    TT_CHECK(back == NULL && n == 0);
    TT_FAILS(report_read_csv(NULL, &back, &n), TIS_EINVAL);
}

/* report_append_csv after report_write_csv gives the bytes of one
 * report_write_csv of every row; report_trim_csv drops a torn last line. */
static void test_append_csv(void) {
    TT_CASE("append_csv");
    enum { N = 90 };
    static eval_row rows[N];
    uint64_t st = 11;
    for (int i = 0; i < N; i++) {
        rows[i] = tt_eval_row("niah", i % 2 ? "agnostic" : "query_aware", i % 5 ? "h2o" : "full", 0.1 * (i % 4),
                              -1, i % 3 == 0, 900 + i, 4000 + i, 30 + tt_randf(&st));
        snprintf(rows[i].sample_id, sizeof rows[i].sample_id, "s-%d", i / 9);
    }
    snprintf(rows[7].answer, sizeof rows[7].answer, "two\nlines, \"quoted\"");
    const char *one = tt_path("append_one.csv"), *inc = tt_path("append_inc.csv");
    TT_OK(report_write_csv(one, rows, N));
    TT_OK(report_write_csv(inc, rows, 0));
    for (int i = 0; i < N; i += 9) TT_OK(report_append_csv(inc, rows + i, 9));
    TT_OK(report_append_csv(inc, rows, 0));
    char *a = tt_read_file(one, NULL), *b = tt_read_file(inc, NULL);
    TT_CHECK(a && b && strcmp(a, b) == 0);
    free(b);

    int64_t cut = -1;
    TT_OK(report_trim_csv(inc, &cut));
    TT_CHECK(cut == 0);
    FILE *f = fopen(inc, "ab");
    TT_CHECK(f && fputs("niah,h2o,agnostic,0.1,-1,9", f) >= 0);
    if (f) fclose(f);
    TT_OK(report_trim_csv(inc, &cut));
    TT_CHECK(cut == 26);
    b = tt_read_file(inc, NULL);
    TT_CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);

    TT_FAILS(report_append_csv(tt_path("append_missing.csv"), rows, 1), TIS_EIO);
    TT_OK(tt_write_file(tt_path("append_empty.csv"), "", 0));
    TT_FAILS(report_append_csv(tt_path("append_empty.csv"), rows, 1), TIS_EINVAL);
    TT_FAILS(report_append_csv(inc, NULL, 1), TIS_EINVAL);
    TT_FAILS(report_trim_csv(tt_path("append_missing.csv"), &cut), TIS_EIO);
}

/* The header line report_write_csv writes, from the test's own list (the
 * older ones: test_read_csv_legacy). */
static char s_header[1024];
static void s_header_init(void) {
    size_t len = 0;
    for (int c = 0; c < NC; c++)
        len += (size_t)snprintf(s_header + len, sizeof s_header - len, "%s%s", c ? "," : "",
                                s_cols[c]);
    snprintf(s_header + len, sizeof s_header - len, "\n");
}

/* A data line whose column `col` (0-based; -1: none) holds `value` as is. */
static const char *s_line(char *buf, size_t cap, int col, const char *value) {
    static const char *const good[NC] = {
        "passkey", "snapkv", "agnostic", "0.1", "-1", "1024", "1024", "0.5", "-1", "id-1",
        "1", "0", "0", "12345", "12345", "102", "1000", "10000", "0.5", "0.01",
        "0.25", "0.6", "40.5", "8", "1048576", "-1", "1", "f16"};
    size_t len = 0;
    for (int c = 0; c < NC; c++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", c ? "," : "",
                                c == col ? value : good[c]);
    snprintf(buf + len, cap - len, "\n");
    return buf;
}

/* `text` (len bytes) must be rejected with TIS_EFORMAT naming PATH:line. */
static void s_bad_csv(const char *text, size_t len, int line) {
    char path[512], want[600];
    snprintf(path, sizeof path, "%s", tt_path("bad.csv"));
    TT_CHECK(tt_write_file(path, text, len) == 0);
    eval_row *rows = (eval_row *)1;
    int64_t n = -1;
    TT_FAILS(report_read_csv(path, &rows, &n), TIS_EFORMAT);
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    bool named = strncmp(tis_last_error(), want, strlen(want)) == 0;
    if (!named) fprintf(stderr, "  wanted '%s...', got '%s'\n", want, tis_last_error());
    TT_CHECK(named);
    TT_CHECK(rows == NULL && n == 0);
}

/* header + good line + lines (text) must fail naming `line`. */
static void s_bad_after(const char *lines, int line) {
    char text[8192], good[1024];
    int len = snprintf(text, sizeof text, "%s%s%s", s_header,
                       s_line(good, sizeof good, -1, NULL), lines);
    s_bad_csv(text, (size_t)len, line);
}

/* A bad value in column `col` of line 3. */
static void s_bad_value(int col, const char *value) {
    char line[1024];
    s_bad_after(s_line(line, sizeof line, col, value), 3);
}

static void test_read_csv_bad(void) {
    s_header_init();
    size_t len = 0;
    char text[8192], a[1024], b[1024];

    /* wrong header */
    TT_CASE("read_csv_bad: wrong header");
    s_bad_csv("", 0, 1);
    s_bad_csv("\n", 1, 1);
    snprintf(text, sizeof text, "%s", s_header);
    memcpy(strstr(text, "budget"), "BUDGET", 6);
    s_bad_csv(text, strlen(text), 1);
    snprintf(text, sizeof text, "%s", s_header);
    for (int k = 0; k < 4; k++) strcpy(strrchr(text, ','), "\n"); /* 24 columns */
    s_bad_csv(text, strlen(text), 1);
    snprintf(text, sizeof text, "x,%s", s_header); /* 29 */
    s_bad_csv(text, strlen(text), 1);
    /* wrong column count */
    TT_CASE("read_csv_bad: wrong column count");
    snprintf(text, sizeof text, "%s", s_line(a, sizeof a, -1, NULL));
    strcpy(strrchr(text, ','), "\n"); /* 27 columns, the file has 28 */
    s_bad_after(text, 3);
    s_bad_value(24, "1,2");  /* 29 */
    s_bad_after("\n", 3);    /* a blank line is a record of one field */
    /* bad numbers */
    TT_CASE("read_csv_bad: bad numbers");
    s_bad_value(3, "abc");
    s_bad_value(3, "");
    s_bad_value(3, " 0.1");
    s_bad_value(3, "0.1 ");
    s_bad_value(3, "0x10");
    s_bad_value(3, "infinity");
    s_bad_value(3, "1e999");
    s_bad_value(3, "1.2.3");
    s_bad_value(3, "--1");
    s_bad_value(3, "\"0.1\"\"\""); /* quoted: 0.1" */
    s_bad_value(5, "12x");
    s_bad_value(5, "1.5");
    s_bad_value(5, "+5");
    s_bad_value(5, "99999999999999999999");
    s_bad_value(16, "");
    s_bad_value(10, "2");
    s_bad_value(10, "true");
    s_bad_value(23, "-");
    s_bad_value(26, "2");    /* truncated: 0, 1 or empty */
    s_bad_value(26, "-1");
    s_bad_value(26, "yes");
    char zeros[700]; /* longer than the reader keeps of a field: 0...01 */
    memset(zeros, '0', sizeof zeros - 2);
    zeros[sizeof zeros - 2] = '1';
    zeros[sizeof zeros - 1] = 0;
    s_bad_value(5, zeros);
    /* quoting */
    TT_CASE("read_csv_bad: quoting");
    s_bad_value(13, "ab\"c");       /* quote inside an unquoted field */
    s_bad_value(13, "\"ab\"c");     /* text after the closing quote */
    s_bad_value(13, "ab\rc");       /* a bare CR */
    s_bad_after("passkey,\"unterminated\n\n", 3);
    s_bad_after("passkey,\"almost\"\"\n", 3);
    snprintf(text, sizeof text, "%s%s", s_line(a, sizeof a, 13, "\"1\n2\n3\""),
             s_line(b, sizeof b, -1, NULL));
    s_bad_after(strcat(text, "\"never closed,\n"), 7);
    /* line numbers count the lines inside quoted fields */
    TT_CASE("read_csv_bad: line numbers in quoted fields");
    snprintf(text, sizeof text, "%s%s", s_line(a, sizeof a, 13, "\"1\n2,\r\n3\""),
             s_line(b, sizeof b, 7, "deep"));
    s_bad_after(text, 6);
    snprintf(text, sizeof text, "%s%s", s_line(a, sizeof a, 13, "\"1\n\n3\""),
             s_line(b, sizeof b, 13, "\"x\ny\"z"));
    s_bad_after(text, 7); /* the stray byte is on the field's second line */
    /* a NUL byte */
    TT_CASE("read_csv_bad: NUL byte");
    len = (size_t)snprintf(text, sizeof text, "%s%s", s_header, s_line(a, sizeof a, 13, "ab"));
    *strstr(text + strlen(s_header), "ab") = 0;
    s_bad_csv(text, len, 2);

    /* accepted: CRLF line ends, no final line feed */
    TT_CASE("read_csv_bad: CRLF and no final line feed accepted");
    len = 0;
    for (const char *p = s_header; *p; p++) {
        if (*p == '\n') text[len++] = '\r';
        text[len++] = *p;
    }
    s_line(a, sizeof a, 13, "\"two\r\nlines\"");
    for (const char *p = a; *p; p++) {
        if (*p == '\n' && p[-1] != '\r') text[len++] = '\r';
        text[len++] = *p;
    }
    s_line(a, sizeof a, -1, NULL);
    memcpy(text + len, a, strlen(a) - 1); /* without its \n */
    len += strlen(a) - 1;
    const char *path = tt_path("crlf.csv");
    TT_CHECK(tt_write_file(path, text, len) == 0);
    eval_row *rows = NULL;
    int64_t n = 0;
    TT_OK(report_read_csv(path, &rows, &n));
    TT_CHECK(n == 2);
    if (n == 2) {
        TT_CHECK(strcmp(rows[0].answer, "two\r\nlines") == 0);
        TT_CHECK(rows[1].peak_rss_bytes == 1048576);
        TT_CHECK(rows[1].budget == 0.1 && rows[1].tokens_per_s == 40.5 && rows[0].correct);
        TT_CHECK(rows[0].threshold == -1 && rows[1].threshold == -1); /* "-1": fixed budgets */
    }
    free(rows);
}

/* A CSV from before the kv_type column (27 columns), the truncated column
 * (26) or the threshold column (25) is read with those unknown, and written
 * back with the columns empty. */
static void test_read_csv_legacy(void) {
    s_header_init();
    for (int drop = 1; drop <= 3; drop++) { /* 27 columns (no kv_type), 26 (nor truncated), 25 (nor threshold) */
        TT_CASE(drop == 1 ? "read_csv_legacy: 27 columns" : drop == 2 ? "read_csv_legacy: 26 columns" : "read_csv_legacy: 25 columns");
        char text[8192], a[1024];
        snprintf(text, sizeof text, "%s", s_header);
        for (int k = 0; k < drop; k++) strcpy(strrchr(text, ','), "\n");
        s_line(a, sizeof a, 25, "0.5"); /* a threshold, where there is one */
        for (int k = 0; k < drop; k++) strcpy(strrchr(a, ','), "\n");
        strcat(text, a);
        strcat(text, a);
        const char *path = tt_path("legacy.csv");
        TT_CHECK(tt_write_file(path, text, strlen(text)) == 0);
        eval_row *rows = NULL;
        int64_t n = 0;
        TT_OK(report_read_csv(path, &rows, &n));
        int trunc = drop == 1 ? 1 : -1;
        TT_CHECK(n == 2 && rows && rows[0].truncated == trunc && rows[1].truncated == trunc);
        TT_CHECK(rows && rows[1].peak_rss_bytes == 1048576 && rows[1].n_generated == 8);
        TT_CHECK(rows && rows[1].threshold == (drop <= 2 ? 0.5 : -1));
        TT_CHECK(rows && rows[0].kv_type[0] == 0 && rows[1].kv_type[0] == 0);
        if (rows && n == 2) { /* written back: every column, the missing ones empty */
            TT_OK(report_write_csv(path, rows, n));
            char *back = tt_read_file(path, NULL);
            const char *tail = drop == 1 ? ",8,1048576,0.5,1,\n" : drop == 2 ? ",8,1048576,0.5,,\n" : ",8,1048576,-1,,\n";
            TT_CHECK(back && strstr(back, ",peak_rss_bytes,threshold,truncated,kv_type\n") && strstr(back, tail));
            free(back);
        }
        free(rows);
        /* a line of all the columns in a file of fewer */
        snprintf(text, sizeof text, "%s", s_header);
        for (int k = 0; k < drop; k++) strcpy(strrchr(text, ','), "\n");
        strcat(text, s_line(a, sizeof a, -1, NULL));
        s_bad_csv(text, strlen(text), 2);
    }
}

/* Strings longer than their field are cut on a UTF-8 character boundary. */
static void test_read_csv_truncate(void) {
    TT_CASE("read_csv_truncate");
    char big[4096], val[4200], line[8192], text[9000];
    s_header_init();
    size_t n = 0;
    big[n++] = 'x';
    while (n + 3 < sizeof big) { /* U+4E16, 3 bytes: a lead byte every 3 */
        memcpy(big + n, "\xe4\xb8\x96", 3);
        n += 3;
    }
    big[n] = 0;
    struct {
        int col;
        const char *value;
        const char *want;
    } cases[] = {
        /* benchmark[32] keeps at most 31 bytes */
        {0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9zz", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9zz", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"},
        /* policy[64] (a union "A|B" is up to 63) keeps at most 63 */
        {1, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xf0\x9f\x98\x80", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
        {1, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xf0\x9f\x98\x80",
         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xf0\x9f\x98\x80"},
        /* not UTF-8 (continuation bytes only): a plain cut */
        {2, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
         "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"},
        {13, big, NULL}, /* answer[256], the field longer than the reader keeps */
    };
    const char *path = tt_path("long.csv");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(val, sizeof val, "\"%s\"", cases[i].value);
        int len = snprintf(text, sizeof text, "%s%s", s_header,
                           s_line(line, sizeof line, cases[i].col, val));
        TT_CHECK(tt_write_file(path, text, (size_t)len) == 0);
        eval_row *rows = NULL;
        int64_t nr = 0;
        TT_OK(report_read_csv(path, &rows, &nr));
        TT_CHECK(nr == 1);
        if (nr != 1) {
            free(rows);
            continue;
        }
        const char *got = cases[i].col == 0   ? rows[0].benchmark
                          : cases[i].col == 1 ? rows[0].policy
                          : cases[i].col == 2 ? rows[0].protocol
                                              : rows[0].answer;
        if (cases[i].want) {
            TT_CHECK(strcmp(got, cases[i].want) == 0);
        } else { /* 1 + 3k bytes: 253 of the 255 */
            TT_CHECK(strlen(got) == 253 && strncmp(got, big, 253) == 0);
        }
        TT_CHECK(rows[0].tokens_per_s == 40.5); /* the rest of the line still read */
        free(rows);
    }
}

static cJSON *s_group(cJSON *groups, int i) { return cJSON_GetArrayItem(groups, i); }
static double s_num(cJSON *g, const char *key) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(g, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static bool s_null(cJSON *g, const char *key) {
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(g, key));
}
static bool s_str_is(cJSON *g, const char *key, const char *want) {
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, key));
    return v && strcmp(v, want) == 0;
}

static int s_count_lines(const char *text, const char *start) {
    int n = 0;
    size_t len = strlen(start);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        n += strncmp(l, start, len) == 0;
    return n;
}

/* The summary's rows: two benchmarks, both protocols, budgets as
 * fractions and a token count, a full row that misses, hallucinated and
 * truncated answers, unknown figures. Returns the count (r holds 32). */
static int s_summary_rows(eval_row *r) {
    int n = 0;
    /* input order sets the order of names: snapkv before full */
    TT_CASE("summary: order of names");
    for (int i = 0; i < 2; i++)
        r[n++] = tt_eval_row("passkey", "agnostic", "snapkv", 0.25, -1, true, 250, 1000, 80);
    static const bool full_ok[4] = {true, true, true, false};
    for (int i = 0; i < 4; i++) {
        r[n] = tt_eval_row("passkey", "agnostic", "full", 1.0, -1, full_ok[i], 1000, 1000, 50);
        r[n++].exact = i < 2;
    }
    for (int i = 0; i < 2; i++)
        r[n++] = tt_eval_row("niah", "agnostic", "full", 1.0, -1, false, 800, 800, 50);
    for (int i = 0; i < 2; i++)
        r[n++] = tt_eval_row("niah", "agnostic", "knorm", 0.1, -1, true, 80, 800, 60);
    static const bool snap_ok[4] = {true, false, true, false};
    for (int i = 0; i < 4; i++) {
        r[n] = tt_eval_row("passkey", "agnostic", "snapkv", 0.1, -1, snap_ok[i], 100, 1000, 100);
        r[n].hallucinated = i == 1;
        r[n].truncated = i % 2; /* two answers hit the cap */
        r[n++].peak_rss_bytes = 5 << 20;
    }
    for (int i = 0; i < 2; i++) {
        r[n] = tt_eval_row("passkey", "agnostic", "snapkv", -1, 64, i == 0, 64, 1000, 90);
        r[n++].truncated = i ? -1 : 1; /* one known, one from an old CSV */
    }
    for (int i = 0; i < 2; i++) {
        r[n] = tt_eval_row("passkey", "query_aware", "snapkv", 0.1, -1, true, 100, 1000, 100);
        r[n++].truncated = -1; /* not recorded */
    }
    r[n - 1].tokens_per_s = 0; /* unknown: not in the mean */
    for (int i = 0; i < n; i++) /* the cache: f16 but for the last two rows (not recorded) */
        snprintf(r[i].kv_type, sizeof r[i].kv_type, "%s", i < n - 2 ? "f16" : "");

    return n;
}

/* The JSON summary: meta, the groups' order, each group's figures. */
static void s_summary_json(const char *jp, const report_meta *meta) {
    char *text = tt_read_file(jp, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    TT_CHECK(root != NULL);
    if (!root) return;
    cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "meta");
    TT_CHECK(s_str_is(m, "command", meta->command) && s_str_is(m, "model", "models/m.gguf"));
    TT_CHECK(s_str_is(m, "title", "passkey run"));
    TT_CHECK(s_num(m, "seed") == 7 && s_num(m, "threads") == 4 && s_num(m, "wall_s") == 12.5);
    TT_CHECK(s_str_is(m, "kv_type", "f16 (16 rows), not recorded (2 rows)"));
    cJSON *gs = cJSON_GetObjectItemCaseSensitive(root, "groups");
    TT_CHECK(cJSON_GetArraySize(gs) == 7);
    /* benchmark, protocol, policy by first appearance, then budget */
    TT_CASE("summary: group order");
    static const char *const want[7][4] = {
        {"passkey", "agnostic", "snapkv", "0.1"},    {"passkey", "agnostic", "snapkv", "0.25"},
        {"passkey", "agnostic", "snapkv", "64 tok"}, {"passkey", "agnostic", "full", "1"},
        {"passkey", "query_aware", "snapkv", "0.1"}, {"niah", "agnostic", "full", "1"},
        {"niah", "agnostic", "knorm", "0.1"}};
    for (int i = 0; i < 7; i++) {
        cJSON *g = s_group(gs, i);
        bool ok = s_str_is(g, "benchmark", want[i][0]) && s_str_is(g, "protocol", want[i][1]) &&
                  s_str_is(g, "policy", want[i][2]) && s_str_is(g, "budget_label", want[i][3]);
        if (!ok) fprintf(stderr, "  group %d is not %s/%s/%s/%s\n", i, want[i][0], want[i][1],
                         want[i][2], want[i][3]);
        TT_CHECK(ok);
    }
    cJSON *g = s_group(gs, 0); /* passkey agnostic snapkv 0.1 */
    TT_CHECK(s_num(g, "n") == 4);
    TT_NEAR(s_num(g, "accuracy"), 0.5, 1e-12);
    TT_NEAR(s_num(g, "retention"), 0.5 / 0.75, 1e-12);
    TT_NEAR(s_num(g, "compression_ratio"), 10.0, 1e-12);
    TT_NEAR(s_num(g, "kv_reduction"), 0.9, 1e-12);
    TT_NEAR(s_num(g, "kv_mib"), 100.0 / 1048576.0, 1e-15);
    TT_NEAR(s_num(g, "hallucination_rate"), 0.25, 1e-12);
    TT_NEAR(s_num(g, "exact_match"), 0.0, 1e-12);
    TT_NEAR(s_num(g, "throughput_vs_full"), 2.0, 1e-12);
    TT_NEAR(s_num(g, "budget"), 0.1, 1e-12);
    TT_CHECK(s_null(g, "budget_tokens"));
    TT_CHECK(s_num(g, "peak_rss_bytes") == 5 << 20);
    TT_NEAR(s_num(g, "ttft_s_mean"), 0.6, 1e-12);
    TT_CHECK(s_num(g, "truncated") == 2 && s_num(g, "truncated_unknown") == 0);
    g = s_group(gs, 1); /* snapkv 0.25: better than full */
    TT_NEAR(s_num(g, "retention"), 1.0 / 0.75, 1e-12);
    TT_NEAR(s_num(g, "compression_ratio"), 4.0, 1e-12);
    g = s_group(gs, 2); /* 64 tokens */
    TT_CHECK(s_null(g, "budget") && s_num(g, "budget_tokens") == 64);
    TT_NEAR(s_num(g, "compression_ratio"), 1000.0 / 64.0, 1e-12);
    TT_CHECK(s_num(g, "truncated") == 1 && s_num(g, "truncated_unknown") == 1);
    g = s_group(gs, 3); /* full */
    TT_NEAR(s_num(g, "accuracy"), 0.75, 1e-12);
    TT_NEAR(s_num(g, "exact_match"), 0.5, 1e-12);
    TT_NEAR(s_num(g, "retention"), 1.0, 1e-12);
    TT_NEAR(s_num(g, "compression_ratio"), 1.0, 1e-12);
    g = s_group(gs, 4); /* no full for query_aware */
    TT_CHECK(s_null(g, "retention") && s_null(g, "throughput_vs_full"));
    TT_NEAR(s_num(g, "tokens_per_s_mean"), 100.0, 1e-12); /* the 0 is left out */
    TT_CHECK(s_null(g, "truncated") && s_num(g, "truncated_unknown") == 2);
    g = s_group(gs, 6); /* full accuracy 0 in niah */
    TT_CHECK(s_null(g, "retention"));
    TT_NEAR(s_num(g, "accuracy"), 1.0, 1e-12);
    TT_NEAR(s_num(g, "throughput_vs_full"), 1.2, 1e-12);
    cJSON_Delete(root);

}

/* The Markdown summary: the command, the tables, the plots by name. */
static void s_summary_md(const char *mp) {
    char *text = tt_read_file(mp, NULL);
    TT_CHECK(text != NULL);
    if (!text) return;
    TT_CHECK(strncmp(text, "# passkey run\n", 14) == 0);
    TT_CHECK(strstr(text, "```\ntis eval --model m.gguf --policies snapkv,full "
                          "--note \"a b\"\n```\n"));
    TT_CHECK(strstr(text, "models/m.gguf") && strstr(text, "seed: 7, threads: 4"));
    TT_CHECK(s_count_lines(text, "## ") == 4); /* 3 tables + plots */
    TT_CHECK(s_count_lines(text, "| policy | budget |") == 3);
    TT_CHECK(s_count_lines(text, "| ") - s_count_lines(text, "| policy") == 7);
    TT_CHECK(strstr(text, "| snapkv | 0.1 | 4 | 0.500 | 0.000 | 66.7% | 10.0x |"));
    TT_CHECK(strstr(text, "| snapkv | 0.25 | 2 | 1.000 | 0.000 | 133.3% | 4.0x |"));
    TT_CHECK(strstr(text, "| snapkv | 64 tok | 2 | 0.500 |"));
    TT_CHECK(strstr(text, "| snapkv | 0.1 | 2 | 1.000 | 0.000 | \u2013 | 10.0x |"));
    TT_CHECK(strstr(text, "| decode tok/s | halluc. | truncated |\n"));
    TT_CHECK(strstr(text, "| 0.250 | 2 |\n"));          /* snapkv 0.1: halluc., truncated */
    TT_CHECK(strstr(text, "| 0.000 | 1 (+1 ?) |\n"));   /* 64 tok: one not recorded */
    TT_CHECK(strstr(text, "| 0.000 | \u2013 |\n"));     /* query_aware: none recorded */
    TT_CHECK(strstr(text, "![run_passkey_agnostic_accuracy.png]"
                          "(run_passkey_agnostic_accuracy.png)"));
    TT_CHECK(!strstr(text, "/some/where"));
    TT_CHECK(strstr(text, "\n- KV cache: f16 (16 rows), not recorded (2 rows)\n"));
    if (getenv("TT_VERBOSE")) fputs(text, stderr);
    free(text);

}

/* One cache type is named alone; JSON only; unwritable paths; no rows. */
static void s_summary_edges(eval_row *r, int n, const report_meta *meta) {
    char *text;
    cJSON *root;
    /* one cache type: named alone */
    TT_CASE("summary: the cache type");
    for (int i = 0; i < n; i++) snprintf(r[i].kv_type, sizeof r[i].kv_type, "q8_0,q4_0");
    TT_OK(report_write_summary(tt_path("kv.json"), tt_path("kv.md"), r, n, meta, NULL, 0));
    text = tt_read_file(tt_path("kv.md"), NULL);
    TT_CHECK(text && strstr(text, "\n- KV cache: q8_0,q4_0\n"));
    free(text);
    text = tt_read_file(tt_path("kv.json"), NULL);
    root = text ? cJSON_Parse(text) : NULL;
    TT_CHECK(root && s_str_is(cJSON_GetObjectItemCaseSensitive(root, "meta"), "kv_type", "q8_0,q4_0"));
    cJSON_Delete(root);
    free(text);

    /* md_path NULL: JSON only; meta NULL is allowed */
    TT_CASE("summary: JSON only");
    TT_OK(report_write_summary(tt_path("only.json"), NULL, r, n, NULL, NULL, 0));
    TT_CHECK(s_exists(tt_path("only.json")));
    TT_FAILS(report_write_summary("/nonexistent-tis-dir/s.json", NULL, r, n, meta, NULL, 0),
             TIS_EIO);
    TT_FAILS(report_write_summary(tt_path("ok.json"), "/nonexistent-tis-dir/s.md", r, n, meta,
                                  NULL, 0),
             TIS_EIO);
    TT_FAILS(report_write_summary(NULL, NULL, r, n, meta, NULL, 0), TIS_EINVAL);
    /* no rows: empty groups */
    TT_CASE("summary: no rows");
    TT_OK(report_write_summary(tt_path("empty.json"), tt_path("empty.md"), r, 0, meta, NULL, 0));
    text = tt_read_file(tt_path("empty.json"), NULL);
    root = text ? cJSON_Parse(text) : NULL;
    TT_CHECK(root && cJSON_GetArraySize(cJSON_GetObjectItem(root, "groups")) == 0);
    cJSON_Delete(root);
    free(text);
}

static void test_summary(void) {
    eval_row r[32];
    int n = s_summary_rows(r);
    report_meta meta = {.command = "tis eval --model m.gguf --policies snapkv,full --note \"a b\"",
                        .model = "models/m.gguf", .title = "passkey run", .seed = 7,
                        .threads = 4, .wall_s = 12.5};
    const char *plots[] = {"/some/where/run_passkey_agnostic_accuracy.png"};
    const char *jp = tt_path("sum.json"), *mp = tt_path("sum.md");
    TT_OK(report_write_summary(jp, mp, r, n, &meta, plots, 1));
    TT_CHECK(!s_exists(tt_path("sum.json.tmp")) && !s_exists(tt_path("sum.md.tmp")));
    s_summary_json(jp, &meta);
    s_summary_md(mp);
    s_summary_edges(r, n, &meta);
}

static void test_peak_rss(void) {
    TT_CASE("peak_rss");
    int64_t before = report_peak_rss();
    if (access("/proc/self/status", R_OK) != 0) {
        TT_CHECK(before == 0);
        return;
    }
    TT_CHECK(before > 0);
    size_t big = 96u << 20;
    char *p = malloc(big);
    TT_CHECK(p != NULL);
    if (!p) return;
    memset(p, 1, big); /* touched, so resident */
    int64_t after = report_peak_rss();
    fprintf(stderr, "  peak RSS %.1f MiB -> %.1f MiB\n", before / 1048576.0, after / 1048576.0);
    TT_CHECK(after >= before + (int64_t)(64u << 20));
    volatile char sink = p[big - 1];
    (void)sink;
    free(p);
}

int main(void) {
    test_peak_rss(); /* first, while the process is small */
    test_csv();
    test_read_csv_roundtrip();
    test_append_csv();
    test_read_csv_bad();
    test_read_csv_legacy();
    test_read_csv_truncate();
    test_summary();
    return tt_done("test_report");
}
