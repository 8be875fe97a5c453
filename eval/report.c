/* report: the per-sample CSV, the grouped JSON summary and the Markdown
 * report of an evaluation (docs/design.md §7); the plots are in report_plot.c.
 *
 * Every file is written to PATH.tmp and renamed into place, so a reader
 * never sees half a report. */
#define _GNU_SOURCE
#include "report.h"

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

typedef struct s_out {
    FILE *f;
    char *tmp;        /* PATH.tmp (owned) */
    const char *path; /* borrowed from the caller */
} s_out;

static const char *s_errstr(int e) { return e ? strerror(e) : "write error"; }

static int s_out_open(s_out *o, const char *path) {
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
static int s_out_close(s_out *o, int rc) {
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

/* Copies a fixed-size field of a row that may lack its terminator. */
static void s_field(char *dst, size_t cap, const char *src, size_t src_cap) {
    size_t n = strnlen(src, src_cap);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}
#define S_FIELD(dst, row, name) s_field(dst, sizeof dst, (row)->name, sizeof (row)->name)

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
    S_COL(truncated, S_COL_TRI, NULL),
};
#undef S_COL
enum { S_N_COLS = sizeof s_csv_cols / sizeof s_csv_cols[0] };
/* CSVs of earlier versions hold the first S_N_COLS_MIN columns (or 26, from
 * before truncated): the later ones read as their "none" value (threshold
 * -1, truncated -1: unknown). */
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
    s_out o;
    int rc = s_out_open(&o, path);
    if (rc) return rc;
    s_csv_header(o.f);
    s_csv_rows(o.f, rows, n);
    return s_out_close(&o, 0);
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
 * Format (what report_write_csv writes): a header line naming the 27
 * columns of s_csv_cols in order (or the first 25 or 26: a CSV from before
 * the threshold column, read as fixed budgets, or from before the
 * truncated column, read as unknown), then one record per row. Records end in
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

/* ---- grouping ----------------------------------------------------------- */

/* A mean over the rows where the value is known (finite and >= 0). */
typedef struct s_stat {
    double sum;
    int64_t n;
} s_stat;

static void s_stat_add(s_stat *s, double v) {
    if (isfinite(v) && v >= 0) {
        s->sum += v;
        s->n++;
    }
}
static double s_stat_mean(const s_stat *s) { return s->n ? s->sum / (double)s->n : NAN; }

enum { S_BUDGET_FRAC, S_BUDGET_TOKENS, S_BUDGET_THRESH, S_BUDGET_NONE };

typedef struct s_group {
    int bench, proto, policy; /* first-appearance ranks of the names */
    int bkind;                /* S_BUDGET_* */
    double bval;              /* fraction or tokens */
    char label[32];           /* "0.1", "256 tok", "none" */
    char benchmark[32], protocol[16], policy_name[32];
    int64_t n, n_correct, n_exact, n_halluc, peak_rss;
    int64_t n_trunc, n_trunc_unknown; /* rows that ended at the answer cap / not known */
    double kv_sum, full_sum; /* over rows with both measured */
    s_stat kv, kept, ctx, ttft, tps, prefill, compress, decode;
    double full_acc, full_tps; /* of `full`, same benchmark and protocol; NAN if none */
} s_group;

/* Budget of a row: a fraction when budget >= 0, else tokens when
 * budget_tokens >= 0, else none (e.g. an uncompressed baseline). */
static void s_budget(const eval_row *r, int *kind, double *val, char *label, size_t cap) {
    if (isfinite(r->threshold) && r->threshold > 0) {
        *kind = S_BUDGET_THRESH;
        *val = r->threshold;
        snprintf(label, cap, "score >= %.4g", r->threshold);
    } else if (isfinite(r->budget) && r->budget >= 0) {
        *kind = S_BUDGET_FRAC;
        *val = r->budget;
        snprintf(label, cap, "%.4g", r->budget);
    } else if (r->budget_tokens >= 0) {
        *kind = S_BUDGET_TOKENS;
        *val = (double)r->budget_tokens;
        snprintf(label, cap, "%lld tok", (long long)r->budget_tokens);
    } else {
        *kind = S_BUDGET_NONE;
        *val = 0;
        snprintf(label, cap, "none");
    }
}

/* Rank of `name` in a first-appearance table of up to `n` names, adding it. */
static int s_rank(char (*tab)[32], int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (strcmp(tab[i], name) == 0) return i;
    snprintf(tab[*n], 32, "%s", name);
    return (*n)++;
}

static int s_group_cmp(const void *pa, const void *pb) {
    const s_group *a = pa, *b = pb;
    if (a->bench != b->bench) return a->bench < b->bench ? -1 : 1;
    if (a->proto != b->proto) return a->proto < b->proto ? -1 : 1;
    if (a->policy != b->policy) return a->policy < b->policy ? -1 : 1;
    if (a->bkind != b->bkind) return a->bkind < b->bkind ? -1 : 1;
    if (a->bval != b->bval) return a->bval < b->bval ? -1 : 1;
    return strcmp(a->label, b->label);
}

/* Groups rows by (benchmark, protocol, policy, budget label), sorted by the
 * first appearance of each name, then budget (fractions, tokens, none,
 * each ascending); fills the `full` references. *out is malloc'd. */
static int s_group_rows(const eval_row *rows, int64_t n, s_group **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    s_group *g = calloc(n > 0 ? (size_t)n : 1, sizeof *g);
    /* names: at most n distinct of each kind */
    char (*names)[32] = calloc(n > 0 ? (size_t)n * 3 : 3, sizeof *names);
    if (!g || !names) {
        free(g);
        free(names);
        return tis_error(TIS_ENOMEM, "report: out of memory grouping %lld rows", (long long)n);
    }
    char (*bench_tab)[32] = names, (*proto_tab)[32] = names + n, (*pol_tab)[32] = names + 2 * n;
    int n_bench = 0, n_proto = 0, n_pol = 0;
    int64_t ng = 0;
    for (int64_t i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        s_group key = {0};
        S_FIELD(key.benchmark, r, benchmark);
        S_FIELD(key.protocol, r, protocol);
        S_FIELD(key.policy_name, r, policy);
        key.bench = s_rank(bench_tab, &n_bench, key.benchmark);
        key.proto = s_rank(proto_tab, &n_proto, key.protocol);
        key.policy = s_rank(pol_tab, &n_pol, key.policy_name);
        s_budget(r, &key.bkind, &key.bval, key.label, sizeof key.label);
        int64_t j = 0;
        while (j < ng && (g[j].bench != key.bench || g[j].proto != key.proto ||
                          g[j].policy != key.policy || g[j].bkind != key.bkind ||
                          strcmp(g[j].label, key.label) != 0))
            j++;
        if (j == ng) g[ng++] = key;
        s_group *x = &g[j];
        x->n++;
        x->n_correct += r->correct;
        x->n_exact += r->exact;
        x->n_halluc += r->hallucinated;
        x->n_trunc += r->truncated > 0;
        x->n_trunc_unknown += r->truncated < 0;
        if (r->kv_bytes > 0 && r->full_kv_bytes > 0) {
            x->kv_sum += (double)r->kv_bytes;
            x->full_sum += (double)r->full_kv_bytes;
        }
        s_stat_add(&x->kv, (double)r->kv_bytes);
        s_stat_add(&x->kept, (double)r->kept_tokens);
        s_stat_add(&x->ctx, (double)r->context_tokens);
        s_stat_add(&x->ttft, r->ttft_s);
        if (r->tokens_per_s > 0) s_stat_add(&x->tps, r->tokens_per_s);
        s_stat_add(&x->prefill, r->prefill_s);
        s_stat_add(&x->compress, r->compress_s);
        s_stat_add(&x->decode, r->decode_s);
        if (r->peak_rss_bytes > x->peak_rss) x->peak_rss = r->peak_rss_bytes;
    }
    free(names);
    /* `full` pooled over its budgets, per benchmark and protocol */
    for (int64_t j = 0; j < ng; j++) {
        int64_t fn = 0, fc = 0;
        s_stat ftps = {0};
        for (int64_t k = 0; k < ng; k++) {
            if (g[k].bench != g[j].bench || g[k].proto != g[j].proto ||
                strcmp(g[k].policy_name, "full") != 0)
                continue;
            fn += g[k].n;
            fc += g[k].n_correct;
            ftps.sum += g[k].tps.sum;
            ftps.n += g[k].tps.n;
        }
        g[j].full_acc = fn ? (double)fc / (double)fn : NAN;
        g[j].full_tps = s_stat_mean(&ftps);
    }
    qsort(g, (size_t)ng, sizeof *g, s_group_cmp);
    *out = g;
    *n_out = ng;
    return 0;
}

static double s_ratio(double a, double b) { return (isfinite(a) && b > 0) ? a / b : NAN; }

/* Derived numbers of a group, the one place they are computed. */
typedef struct s_stats {
    double acc, exact, halluc, retention, compression, kv_reduction, kv_mib, tps_vs_full;
} s_stats;

static s_stats s_group_stats(const s_group *g) {
    s_stats s;
    double n = (double)g->n;
    s.acc = g->n_correct / n;
    s.exact = g->n_exact / n;
    s.halluc = g->n_halluc / n;
    s.retention = s_ratio(s.acc, g->full_acc);
    s.compression = s_ratio(g->full_sum, g->kv_sum);
    s.kv_reduction = g->full_sum > 0 ? 1.0 - g->kv_sum / g->full_sum : NAN;
    s.kv_mib = s_stat_mean(&g->kv) / (1024.0 * 1024.0);
    s.tps_vs_full = s_ratio(s_stat_mean(&g->tps), g->full_tps);
    return s;
}

/* ---- JSON ----------------------------------------------------------- */

static void s_jnum(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *s_json(const s_group *g, int64_t ng, int64_t n_rows, const report_meta *meta) {
    cJSON *root = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(root, "meta");
    cJSON *arr = cJSON_AddArrayToObject(root, "groups");
    if (!m || !arr) goto fail;
    cJSON_AddStringToObject(m, "command", meta->command ? meta->command : "");
    cJSON_AddStringToObject(m, "model", meta->model ? meta->model : "");
    cJSON_AddStringToObject(m, "title", meta->title ? meta->title : "");
    if (meta->seed < (1ull << 53)) {
        cJSON_AddNumberToObject(m, "seed", (double)meta->seed);
    } else { /* a JSON number would lose digits */
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)meta->seed);
        cJSON_AddStringToObject(m, "seed", seed);
    }
    cJSON_AddNumberToObject(m, "threads", meta->threads);
    s_jnum(m, "wall_s", meta->wall_s);
    cJSON_AddNumberToObject(m, "n_rows", (double)n_rows);
    for (int64_t i = 0; i < ng; i++) {
        const s_group *x = &g[i];
        s_stats s = s_group_stats(x);
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            goto fail;
        }
        cJSON_AddStringToObject(o, "benchmark", x->benchmark);
        cJSON_AddStringToObject(o, "protocol", x->protocol);
        cJSON_AddStringToObject(o, "policy", x->policy_name);
        s_jnum(o, "budget", x->bkind == S_BUDGET_FRAC ? x->bval : NAN);
        s_jnum(o, "budget_tokens", x->bkind == S_BUDGET_TOKENS ? x->bval : NAN);
        s_jnum(o, "threshold", x->bkind == S_BUDGET_THRESH ? x->bval : NAN);
        cJSON_AddStringToObject(o, "budget_label", x->label);
        cJSON_AddNumberToObject(o, "n", (double)x->n);
        s_jnum(o, "accuracy", s.acc);
        s_jnum(o, "exact_match", s.exact);
        s_jnum(o, "hallucination_rate", s.halluc);
        s_jnum(o, "truncated", x->n_trunc_unknown == x->n ? NAN : (double)x->n_trunc);
        cJSON_AddNumberToObject(o, "truncated_unknown", (double)x->n_trunc_unknown);
        s_jnum(o, "retention", s.retention);
        s_jnum(o, "full_accuracy", x->full_acc);
        s_jnum(o, "compression_ratio", s.compression);
        s_jnum(o, "kv_reduction", s.kv_reduction);
        s_jnum(o, "kv_mib", s.kv_mib);
        s_jnum(o, "kept_tokens_mean", s_stat_mean(&x->kept));
        s_jnum(o, "context_tokens_mean", s_stat_mean(&x->ctx));
        s_jnum(o, "ttft_s_mean", s_stat_mean(&x->ttft));
        s_jnum(o, "tokens_per_s_mean", s_stat_mean(&x->tps));
        s_jnum(o, "throughput_vs_full", s.tps_vs_full);
        s_jnum(o, "prefill_s_mean", s_stat_mean(&x->prefill));
        s_jnum(o, "compress_s_mean", s_stat_mean(&x->compress));
        s_jnum(o, "decode_s_mean", s_stat_mean(&x->decode));
        cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)x->peak_rss);
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* ---- Markdown ------------------------------------------------------- */

static const char s_na[] = "\u2013"; /* en dash: not applicable */

/* Formats v with fmt (one double), or "–" when unknown. */
static const char *s_fmt(char *buf, size_t cap, const char *fmt, double v) {
    if (!isfinite(v)) return s_na;
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* A table cell: '|' escaped, line breaks as spaces. */
static void s_md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
}

static void s_md_table_row(FILE *f, const s_group *x) {
    s_stats s = s_group_stats(x);
    double mib = s.kv_mib;
    char b[9][32];
    fputs("| ", f);
    s_md_cell(f, x->policy_name);
    fputs(" | ", f);
    fputs(x->bkind == S_BUDGET_NONE ? s_na : x->label, f);
    if (x->n_trunc_unknown == x->n) snprintf(b[8], 32, "%s", s_na);
    else if (x->n_trunc_unknown) snprintf(b[8], 32, "%lld (+%lld ?)", (long long)x->n_trunc, (long long)x->n_trunc_unknown);
    else snprintf(b[8], 32, "%lld", (long long)x->n_trunc);
    fprintf(f, " | %lld | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", (long long)x->n,
            s_fmt(b[0], 32, "%.3f", s.acc), s_fmt(b[1], 32, "%.3f", s.exact),
            s_fmt(b[2], 32, "%.1f%%", 100.0 * s.retention),
            s_fmt(b[3], 32, s.compression >= 100 ? "%.0fx" : "%.1fx", s.compression),
            s_fmt(b[4], 32, mib < 1 ? "%.3f" : mib < 100 ? "%.2f" : "%.1f", mib),
            s_fmt(b[5], 32, "%.3f", s_stat_mean(&x->ttft)),
            s_fmt(b[6], 32, "%.1f", s_stat_mean(&x->tps)), s_fmt(b[7], 32, "%.3f", s.halluc), b[8]);
}

/* A fence longer than any run of backticks in the text. */
static int s_fence_len(const char *s) {
    int best = 0, run = 0;
    for (; *s; s++) {
        run = *s == '`' ? run + 1 : 0;
        if (run > best) best = run;
    }
    return best < 3 ? 3 : best + 1;
}

static void s_md(FILE *f, const s_group *g, int64_t ng, int64_t n_rows, const report_meta *meta,
                 const char *const *plots, int64_t n_plots) {
    const char *cmd = meta->command ? meta->command : "";
    int fence = s_fence_len(cmd);
    fprintf(f, "# %s\n\n", meta->title && meta->title[0] ? meta->title : "tis evaluation");
    for (int i = 0; i < fence; i++) fputc('`', f);
    fprintf(f, "\n%s\n", cmd);
    for (int i = 0; i < fence; i++) fputc('`', f);
    fputs("\n\n", f);
    fprintf(f, "- model: `%s`\n", meta->model ? meta->model : "");
    fprintf(f, "- seed: %llu, threads: %d\n", (unsigned long long)meta->seed, meta->threads);
    fprintf(f, "- wall time: %.1f s, %lld rows\n\n", meta->wall_s, (long long)n_rows);
    fputs("Accuracy: the expected answer appears in the output; exact: strict match of the "
          "extracted answer. Retention: accuracy / accuracy of `full` (same benchmark and "
          "protocol). Compression: total full KV bytes / total kept KV bytes, both measured. "
          "TTFT and decode tok/s are means over samples. Truncated: answers that ended at the "
          "answer cap (--max_new) rather than by themselves, so may be cut short (\u2013: not "
          "recorded, a CSV from before the column).\n",
          f);
    for (int64_t i = 0; i < ng; i++) {
        const s_group *x = &g[i];
        if (i == 0 || x->bench != g[i - 1].bench || x->proto != g[i - 1].proto) {
            fputs("\n## ", f);
            s_md_cell(f, x->benchmark);
            fputs(" (", f);
            s_md_cell(f, x->protocol);
            fputs(")\n\n| policy | budget | n | accuracy | exact | retention | compression "
                  "(measured) | KV MiB | TTFT s | decode tok/s | halluc. | truncated |\n"
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
                  f);
        }
        s_md_table_row(f, x);
    }
    if (n_plots > 0 && plots) {
        fputs("\n## Plots\n\n", f);
        for (int64_t i = 0; i < n_plots; i++) {
            if (!plots[i]) continue;
            const char *slash = strrchr(plots[i], '/');
            const char *base = slash ? slash + 1 : plots[i];
            size_t len = strlen(base);
            bool png = len > 4 && strcmp(base + len - 4, ".png") == 0;
            bool odd = strpbrk(base, " ()<>") != NULL; /* needs <...> in a link */
            fprintf(f, "%s[%s](%s%s%s)\n\n", png ? "!" : "- ", base, odd ? "<" : "", base,
                    odd ? ">" : "");
        }
    }
}

int report_write_summary(const char *json_path, const char *md_path, const eval_row *rows,
                         int64_t n, const report_meta *meta, const char *const *plots,
                         int64_t n_plots) {
    if (!json_path || n < 0 || (n > 0 && !rows) || n_plots < 0)
        return tis_error(TIS_EINVAL, "report: bad arguments to report_write_summary");
    static const report_meta no_meta = {0};
    if (!meta) meta = &no_meta;
    s_group *g;
    int64_t ng;
    int rc = s_group_rows(rows, n, &g, &ng);
    if (rc) return rc;

    cJSON *root = s_json(g, ng, n, meta);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        free(g);
        return tis_error(TIS_ENOMEM, "report: out of memory building %s", json_path);
    }
    s_out o;
    rc = s_out_open(&o, json_path);
    if (rc == 0) {
        fputs(text, o.f);
        fputc('\n', o.f);
        rc = s_out_close(&o, 0);
    }
    free(text);
    if (rc == 0 && md_path) {
        rc = s_out_open(&o, md_path);
        if (rc == 0) {
            s_md(o.f, g, ng, n, meta, plots, n_plots);
            rc = s_out_close(&o, 0);
        }
    }
    free(g);
    return rc;
}

/* ---- peak RSS ------------------------------------------------------- */

int64_t report_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            if (sscanf(line + 6, "%lld", &kb) != 1) kb = -1;
            break;
        }
    fclose(f);
    return kb > 0 ? (int64_t)kb * 1024 : 0;
}
