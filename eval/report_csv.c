/* report_csv: the per-sample CSV (write, append, trim, read back) and the
 * atomic output files every report file goes through (report_out.h). */
#define _GNU_SOURCE
#include "report.h"
#include "report_out.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tis_error.h"

/* ---- atomic output files -------------------------------------------- */

static const char *s_errstr(int e) { return e ? strerror(e) : "write error"; }

int report_out_open(report_out *o, const char *path) {
    o->f = NULL;
    o->path = path;
    size_t n = strlen(path) + 5;
    o->tmp = malloc(n);
    if (!o->tmp) return tis_error(TIS_ENOMEM, "report: out of memory for %s", path);
    snprintf(o->tmp, n, "%s.tmp", path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        return tis_error(TIS_EIO, "report: cannot write %s: %s", path, s_errstr(e));
    }
    return 0;
}

/* Closes the file; when everything went well (rc == 0) renames it into
 * place, otherwise removes it. Returns the final status. */
int report_out_close(report_out *o, int rc) {
    if (o->f) {
        errno = 0;
        int bad = ferror(o->f);
        int e = errno;
        if (fclose(o->f) != 0 && !bad) {
            bad = 1;
            e = errno;
        }
        o->f = NULL;
        if (rc == 0 && bad)
            rc = tis_error(TIS_EIO, "report: cannot write %s: %s", o->path, s_errstr(e));
    }
    if (rc == 0 && rename(o->tmp, o->path) != 0)
        rc = tis_error(TIS_EIO, "report: cannot write %s: rename: %s", o->path,
                       strerror(errno));
    if (rc != 0 && o->tmp) unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}

/* ---- CSV -------------------------------------------------------------- */

/* The columns, in eval_row order: the one table the writer and the reader
 * share. Doubles are printed %.6g except budget (%.4g). */
enum { S_COL_STR, S_COL_I64, S_COL_BOOL, S_COL_F64, S_COL_TRI /* int: 1, 0, -1 written "" */ };

typedef struct s_col {
    const char *name;
    int type;        /* S_COL_* */
    size_t off;      /* offsetof(eval_row, name) */
    size_t size;     /* bytes of the field (string capacity) */
    const char *fmt; /* printf format of a double */
} s_col;

#define S_COL(field, type, fmt) \
    {#field, type, offsetof(eval_row, field), sizeof((eval_row *)0)->field, fmt}
static const s_col s_csv_cols[] = {
    S_COL(benchmark, S_COL_STR, NULL),       S_COL(policy, S_COL_STR, NULL),
    S_COL(protocol, S_COL_STR, NULL),        S_COL(budget, S_COL_F64, "%.4g"),
    S_COL(budget_tokens, S_COL_I64, NULL),   S_COL(context_tokens, S_COL_I64, NULL),
    S_COL(target_tokens, S_COL_I64, NULL),   S_COL(depth, S_COL_F64, "%.6g"),
    S_COL(position, S_COL_I64, NULL),        S_COL(sample_id, S_COL_STR, NULL),
    S_COL(correct, S_COL_BOOL, NULL),        S_COL(exact, S_COL_BOOL, NULL),
    S_COL(hallucinated, S_COL_BOOL, NULL),   S_COL(answer, S_COL_STR, NULL),
    S_COL(expected, S_COL_STR, NULL),        S_COL(kept_tokens, S_COL_I64, NULL),
    S_COL(kv_bytes, S_COL_I64, NULL),        S_COL(full_kv_bytes, S_COL_I64, NULL),
    S_COL(prefill_s, S_COL_F64, "%.6g"),     S_COL(compress_s, S_COL_F64, "%.6g"),
    S_COL(decode_s, S_COL_F64, "%.6g"),      S_COL(ttft_s, S_COL_F64, "%.6g"),
    S_COL(tokens_per_s, S_COL_F64, "%.6g"),  S_COL(n_generated, S_COL_I64, NULL),
    S_COL(peak_rss_bytes, S_COL_I64, NULL),  S_COL(threshold, S_COL_F64, "%.4g"),
    S_COL(truncated, S_COL_TRI, NULL),       S_COL(kv_type, S_COL_STR, NULL),
};
#undef S_COL
enum { S_N_COLS = sizeof s_csv_cols / sizeof s_csv_cols[0] };
/* CSVs of earlier versions hold the first S_N_COLS_MIN columns (or 26, from
 * before truncated, or 27, from before kv_type): the later ones read as
 * their "none" value (threshold -1, truncated -1, kv_type "": unknown). */
enum { S_N_COLS_MIN = 25 };

/* RFC 4180: quoted (with "" for ") when it holds a comma, quote, CR or LF. */
static void s_csv_str(FILE *f, const char *s, size_t cap) {
    size_t n = strnlen(s, cap);
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        fwrite(s, 1, n, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

static void s_csv_header(FILE *f) {
    for (int c = 0; c < S_N_COLS; c++) fprintf(f, "%s%s", c ? "," : "", s_csv_cols[c].name);
    fputc('\n', f);
}

static void s_csv_rows(FILE *f, const eval_row *rows, int64_t n) {
    for (int64_t i = 0; i < n && !ferror(f); i++) {
        for (int c = 0; c < S_N_COLS; c++) {
            const s_col *col = &s_csv_cols[c];
            const char *p = (const char *)&rows[i] + col->off;
            if (c) fputc(',', f);
            switch (col->type) {
            case S_COL_STR: s_csv_str(f, p, col->size); break;
            case S_COL_I64: fprintf(f, "%lld", (long long)*(const int64_t *)p); break;
            case S_COL_BOOL: fputc(*(const bool *)p ? '1' : '0', f); break;
            case S_COL_TRI:
                if (*(const int *)p >= 0) fputc(*(const int *)p ? '1' : '0', f);
                break;
            default: fprintf(f, col->fmt, *(const double *)p); break;
            }
        }
        fputc('\n', f);
    }
}

int report_write_csv(const char *path, const eval_row *rows, int64_t n) {
    if (!path || n < 0 || (n > 0 && !rows))
        return tis_error(TIS_EINVAL, "report: bad arguments to report_write_csv");
    report_out o;
    int rc = report_out_open(&o, path);
    if (rc) return rc;
    s_csv_header(o.f);
    s_csv_rows(o.f, rows, n);
    return report_out_close(&o, 0);
}

int report_append_csv(const char *path, const eval_row *rows, int64_t n) {
    if (!path || n < 0 || (n > 0 && !rows))
        return tis_error(TIS_EINVAL, "report: bad arguments to report_append_csv");
    if (n == 0) return 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return tis_error(TIS_ENOMEM, "report: out of memory for %s", path);
    s_csv_rows(m, rows, n);
    bool bad = ferror(m);
    if (fclose(m) != 0 || bad) {
        free(buf);
        return tis_error(TIS_ENOMEM, "report: out of memory for %s", path);
    }
    int rc = 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = tis_error(TIS_EIO, "report: cannot append to %s: %s", path, strerror(errno));
    } else if (st.st_size == 0) {
        rc = tis_error(TIS_EINVAL, "report: %s has no header line to append to", path);
    } else {
        for (size_t off = 0; !rc && off < len;) {
            ssize_t w = write(fd, buf + off, len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = tis_error(TIS_EIO, "report: cannot append to %s: %s", path,
                               w < 0 ? strerror(errno) : "no progress");
                if (ftruncate(fd, st.st_size) != 0) { /* the rows are lost either way; say so */
                    rc = tis_error(TIS_EIO, "report: cannot append to %s, and a part of the rows stays: %s",
                                   path, strerror(errno));
                }
            } else {
                off += (size_t)w;
            }
        }
    }
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = tis_error(TIS_EIO, "report: cannot append to %s: %s", path, strerror(errno));
    free(buf);
    return rc;
}

int report_trim_csv(const char *path, int64_t *cut) {
    *cut = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return tis_error(TIS_EIO, "report: cannot open %s: %s", path, strerror(e));
    }
    /* back from the end, a block at a time, to the last LF */
    char blk[4096];
    off_t end = st.st_size, keep = 0;
    int rc = 0;
    while (end > 0 && !rc) {
        off_t at = end > (off_t)sizeof blk ? end - (off_t)sizeof blk : 0;
        ssize_t got = pread(fd, blk, (size_t)(end - at), at);
        if (got != end - at) {
            rc = tis_error(TIS_EIO, "report: cannot read %s: %s", path, got < 0 ? strerror(errno) : "short read");
            break;
        }
        ssize_t i = got - 1;
        while (i >= 0 && blk[i] != '\n') i--;
        if (i >= 0) {
            keep = at + i + 1;
            break;
        }
        end = at;
    }
    if (!rc && keep < st.st_size) {
        if (ftruncate(fd, keep) != 0) rc = tis_error(TIS_EIO, "report: cannot cut %s: %s", path, strerror(errno));
        else *cut = (int64_t)(st.st_size - keep);
    }
    close(fd);
    return rc;
}

/* ---- reading the CSV back ----------------------------------------------
 *
 * Format (what report_write_csv writes): a header line naming the 28
 * columns of s_csv_cols in order (or the first 25, 26 or 27: a CSV from
 * before the threshold column, read as fixed budgets, or from before the
 * truncated or the kv_type column, read as unknown), then one record per row. Records end in
 * LF (CRLF accepted); fields are separated by commas; a field that holds a
 * comma, quote, CR or LF is enclosed in double quotes with each quote
 * doubled, and may span lines. Integers are decimal int64, booleans 0 or 1,
 * doubles as printf %g writes them (inf / nan included). A field is kept
 * up to S_CELL_CAP - 1 bytes: enough for every string column, and a number
 * that long is malformed anyway. */

enum { S_CELL_CAP = 512 };

typedef struct s_csv_in {
    FILE *f;
    const char *path;
    int64_t line;                     /* current physical line, 1-based */
    int64_t n_fields;                 /* fields of the record just read */
    char cell[S_N_COLS][S_CELL_CAP];  /* the first S_N_COLS fields */
    size_t len[S_N_COLS];             /* bytes kept of each */
    bool cut[S_N_COLS];               /* longer than kept */
    int64_t cell_line[S_N_COLS];      /* line each field starts on */
} s_csv_in;

/* TIS_EFORMAT with "FILE:LINE: problem". */
__attribute__((format(printf, 3, 4))) static int s_csv_bad(const s_csv_in *in, int64_t line,
                                                           const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return tis_error(TIS_EFORMAT, "%s:%lld: %s", in->path, (long long)line, what);
}

/* Reads one record into in->cell. Returns 1 for a record, 0 at the end of
 * the file, a negative status on malformed input or a read error. */
static int s_csv_record(s_csv_in *in) {
    FILE *f = in->f;
    int c = getc(f);
    if (c == EOF)
        return ferror(f) ? tis_error(TIS_EIO, "%s: read error", in->path) : 0;
    in->n_fields = 0;
    for (;;) { /* one field; c is its first byte */
        int64_t k = in->n_fields++;
        char *cell = k < S_N_COLS ? in->cell[k] : NULL; /* extra fields: counted only */
        size_t len = 0;
        bool cut = false;
        int64_t start = in->line;
#define S_PUT(ch)                                       \
    do {                                                \
        if (!cell) break;                               \
        if (len < S_CELL_CAP - 1) cell[len++] = (char)(ch); \
        else cut = true;                                \
    } while (0)
        if (c == '"') {
            for (;;) {
                c = getc(f);
                if (c == EOF) {
                    if (ferror(f)) return tis_error(TIS_EIO, "%s: read error", in->path);
                    return s_csv_bad(in, start, "unterminated quoted field (column %lld)",
                                     (long long)k + 1);
                }
                if (c == '"' && (c = getc(f)) != '"') break; /* closing quote */
                if (c == 0) return s_csv_bad(in, in->line, "NUL byte in a field");
                if (c == '\n') in->line++;
                S_PUT(c);
            }
            if (c != ',' && c != '\n' && c != '\r' && c != EOF)
                return s_csv_bad(in, in->line, "character after the closing quote (column %lld)",
                                 (long long)k + 1);
        } else {
            for (; c != ',' && c != '\n' && c != '\r' && c != EOF; c = getc(f)) {
                if (c == '"')
                    return s_csv_bad(in, in->line, "quote inside an unquoted field (column %lld)",
                                     (long long)k + 1);
                if (c == 0) return s_csv_bad(in, in->line, "NUL byte in a field");
                S_PUT(c);
            }
        }
#undef S_PUT
        if (cell) {
            cell[len] = 0;
            in->len[k] = len;
            in->cut[k] = cut;
            in->cell_line[k] = start;
        }
        if (c == '\r' && (c = getc(f)) != '\n')
            return s_csv_bad(in, in->line, "carriage return not followed by a line feed");
        if (c == ',') {
            c = getc(f);
            continue;
        }
        if (c == '\n') in->line++;
        else if (ferror(f)) return tis_error(TIS_EIO, "%s: read error", in->path);
        return 1;
    }
}

/* A field for a message: at most 40 bytes, control bytes as '?'. */
static const char *s_show(char *buf, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap && i < 40; i++)
        buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    buf[i] = 0;
    return buf;
}

/* Strict decimal integer: optional '-', digits, nothing else, in range. */
static bool s_parse_i64(const char *s, int64_t *out) {
    const char *d = *s == '-' ? s + 1 : s;
    if (*d < '0' || *d > '9') return false; /* also rejects "", " 1", "+1" */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* Strict %g output: [-]digits[.digits][e[+-]digits], or inf / nan. */
static bool s_parse_f64(const char *s, double *out) {
    const char *d = *s == '-' ? s + 1 : s;
    if (!strcmp(d, "inf") || !strcmp(d, "nan")) {
        *out = !strcmp(d, "inf") ? (d == s ? INFINITY : -INFINITY) : NAN;
        return true;
    }
    if (strspn(d, "0123456789.eE+-") != strlen(d) || !((*d >= '0' && *d <= '9') || *d == '.'))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || end == s) return false;
    if (errno == ERANGE && isinf(v)) return false; /* overflow; underflow is fine */
    *out = v;
    return true;
}

/* Copies a string of len bytes into dst[cap], cut on a UTF-8 character
 * boundary when it does not fit. */
static void s_utf8_copy(char *dst, size_t cap, const char *src, size_t len) {
    size_t n = len;
    if (n > cap - 1) {
        n = cap - 1;
        /* src[n] is the first byte dropped: if it continues a character,
         * drop that character's leading bytes too (at most 3) */
        for (int back = 0; back < 3 && n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80; back++)
            n--;
        if (((unsigned char)src[n] & 0xC0) == 0x80) n = cap - 1; /* not UTF-8: plain cut */
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* The record in `in` as a row. */
static int s_csv_row(const s_csv_in *in, eval_row *r, int n_cols) {
    memset(r, 0, sizeof *r);
    r->threshold = -1;
    r->truncated = -1;
    for (int c = 0; c < n_cols; c++) {
        const s_col *col = &s_csv_cols[c];
        char *p = (char *)r + col->off;
        const char *v = in->cell[c];
        bool ok = !in->cut[c] || col->type == S_COL_STR;
        int64_t iv = 0;
        double dv = 0;
        switch (col->type) {
        case S_COL_STR: s_utf8_copy(p, col->size, v, in->len[c]); break;
        case S_COL_I64:
            if ((ok = ok && s_parse_i64(v, &iv))) *(int64_t *)p = iv;
            break;
        case S_COL_BOOL:
            if ((ok = ok && (!strcmp(v, "0") || !strcmp(v, "1")))) *(bool *)p = v[0] == '1';
            break;
        case S_COL_TRI:
            if ((ok = ok && (!v[0] || !strcmp(v, "0") || !strcmp(v, "1")))) *(int *)p = v[0] ? v[0] == '1' : -1;
            break;
        default:
            if ((ok = ok && s_parse_f64(v, &dv))) *(double *)p = dv;
            break;
        }
        if (!ok) {
            char show[48];
            return s_csv_bad(in, in->cell_line[c], "bad %s '%s' in column %s",
                             col->type == S_COL_BOOL  ? "boolean (0 or 1)"
                             : col->type == S_COL_TRI ? "value (0, 1 or empty)"
                                                      : "number",
                             s_show(show, sizeof show, v), col->name);
        }
    }
    return 0;
}

int report_read_csv(const char *path, eval_row **rows, int64_t *n) {
    if (!path || !rows || !n)
        return tis_error(TIS_EINVAL, "report: bad arguments to report_read_csv");
    *rows = NULL;
    *n = 0;
    s_csv_in *in = malloc(sizeof *in);
    if (!in) return tis_error(TIS_ENOMEM, "report: out of memory reading %s", path);
    in->path = path;
    in->line = 1;
    in->f = fopen(path, "rb");
    if (!in->f) {
        int e = errno;
        free(in);
        return tis_error(TIS_EIO, "report: cannot read %s: %s", path, strerror(e));
    }
    eval_row *out = NULL;
    int64_t n_out = 0, cap = 0;
    int rc = s_csv_record(in);
    int n_cols = rc > 0 && in->n_fields >= S_N_COLS_MIN && in->n_fields <= S_N_COLS ? (int)in->n_fields : S_N_COLS;
    if (rc == 0) rc = s_csv_bad(in, 1, "empty file, expected the header line");
    else if (rc > 0 && in->n_fields != n_cols)
        rc = s_csv_bad(in, 1, "header has %lld column%s, expected %d: not a tis report CSV",
                       (long long)in->n_fields, in->n_fields == 1 ? "" : "s", (int)S_N_COLS);
    for (int c = 0; rc > 0 && c < n_cols; c++)
        if (strcmp(in->cell[c], s_csv_cols[c].name) != 0) {
            char show[48];
            rc = s_csv_bad(in, 1, "header column %d is '%s', expected '%s'", c + 1,
                           s_show(show, sizeof show, in->cell[c]), s_csv_cols[c].name);
        }
    while (rc > 0) {
        int64_t line = in->line;
        rc = s_csv_record(in);
        if (rc <= 0) break;
        if (in->n_fields != n_cols) {
            rc = s_csv_bad(in, line, "%lld column%s, expected %d", (long long)in->n_fields,
                           in->n_fields == 1 ? "" : "s", n_cols);
            break;
        }
        if (n_out == cap) {
            int64_t want = cap ? 2 * cap : 64;
            eval_row *grown = (uint64_t)want <= SIZE_MAX / sizeof(eval_row)
                                  ? realloc(out, (size_t)want * sizeof(eval_row))
                                  : NULL;
            if (!grown) {
                rc = tis_error(TIS_ENOMEM, "report: out of memory reading %s (%lld rows)", path,
                               (long long)n_out);
                break;
            }
            out = grown;
            cap = want;
        }
        rc = s_csv_row(in, &out[n_out], n_cols);
        if (rc == 0) {
            n_out++;
            rc = 1;
        }
    }
    fclose(in->f);
    free(in);
    if (rc < 0) {
        free(out);
        return rc;
    }
    *rows = out;
    *n = n_out;
    return 0;
}

