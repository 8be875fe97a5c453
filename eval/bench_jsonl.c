/* bench_jsonl: loads a user dataset (docs/design.md §7). Format: UTF-8 text, one
 * JSON object a line, lines of any length, blank lines skipped:
 *
 *   {"id": "q1", "context": "...", "question": "...", "answers": ["a", "b"],
 *    "prefix": "...", "answer_prefix": "...", "source": "kept in meta"}
 *
 * "context" and "question" (strings) are required. "id" (string or number)
 * defaults to "jsonl-LINE" and must be unique; "answers" is a string or an
 * array of strings; "prefix" and "answer_prefix" are strings; null counts as
 * absent. Every other field is kept, as compact JSON, in meta. A bad line is
 * TIS_EFORMAT "FILE:LINE: problem". */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tis_error.h"

static const char *const s_known[] = {"id", "context", "question", "answers", "prefix",
                                      "answer_prefix", NULL};

static int s_bad(const char *path, int64_t line, const char *what) {
    return tis_error(TIS_EFORMAT, "%s:%lld: %s", path, (long long)line, what);
}

static int s_oom(void) { return tis_error(TIS_ENOMEM, "bench: out of memory"); }

/* An optional (required: present) string field, copied to *out. */
static int s_str(const cJSON *o, const char *key, bool required, char **out, const char *path,
                 int64_t line) {
    char msg[64];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (!required) return 0;
        snprintf(msg, sizeof msg, "missing \"%s\"", key);
        return s_bad(path, line, msg);
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
        return s_bad(path, line, msg);
    }
    *out = strdup(v->valuestring);
    return *out ? 0 : s_oom();
}

static int s_answers(const cJSON *o, bench_sample *s, const char *path, int64_t line) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "answers");
    if (!v || cJSON_IsNull(v)) return 0;
    const char *bad = "\"answers\" must be a string or an array of strings";
    int n = 1;
    if (cJSON_IsArray(v)) {
        n = cJSON_GetArraySize(v);
        const cJSON *e = NULL;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e)) return s_bad(path, line, bad);
        }
    } else if (!cJSON_IsString(v)) {
        return s_bad(path, line, bad);
    }
    if (n == 0) return 0;
    s->answers = calloc((size_t)n, sizeof *s->answers);
    if (!s->answers) return s_oom();
    if (cJSON_IsString(v)) {
        s->answers[0] = strdup(v->valuestring);
        s->n_answers = 1;
        return s->answers[0] ? 0 : s_oom();
    }
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, v) {
        if (!(s->answers[s->n_answers] = strdup(e->valuestring))) return s_oom();
        s->n_answers++;
    }
    return 0;
}

static int s_id(const cJSON *o, bench_sample *s, const char *path, int64_t line) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!v || cJSON_IsNull(v)) {
        snprintf(s->id, sizeof s->id, "jsonl-%lld", (long long)line);
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d)
            snprintf(s->id, sizeof s->id, "%lld", (long long)d);
        else
            snprintf(s->id, sizeof s->id, "%.17g", d);
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return s_bad(path, line, "\"id\" must be a string or a number");
    size_t n = strlen(v->valuestring);
    if (n == 0) return s_bad(path, line, "\"id\" is empty");
    if (n >= sizeof s->id) {
        char msg[64];
        snprintf(msg, sizeof msg, "\"id\" is longer than %zu bytes", sizeof s->id - 1);
        return s_bad(path, line, msg);
    }
    memcpy(s->id, v->valuestring, n + 1);
    return 0;
}

/* The fields the loader does not know, as compact JSON (NULL if none). */
static int s_meta(const cJSON *o, bench_sample *s) {
    cJSON *meta = NULL;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, o) {
        bool known = false;
        for (int i = 0; s_known[i] && !known; i++)
            known = e->string && !strcmp(e->string, s_known[i]);
        if (known) continue;
        if (!meta && !(meta = cJSON_CreateObject())) return s_oom();
        cJSON *dup = cJSON_Duplicate(e, true);
        if (!dup || !cJSON_AddItemToObject(meta, e->string ? e->string : "", dup)) {
            cJSON_Delete(dup);
            cJSON_Delete(meta);
            return s_oom();
        }
    }
    if (!meta) return 0;
    s->meta = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    return s->meta ? 0 : s_oom();
}

static int s_parse_line(const char *path, int64_t line, const char *text, size_t len,
                        bench_sample *s) {
    memset(s, 0, sizeof *s);
    s->target_tokens = -1;
    s->depth = -1.0;
    s->position = -1;
    if (strlen(text) != len) return s_bad(path, line, "contains a NUL byte");
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len + 1, &end, true);
    if (!o) {
        char msg[64];
        long long col = end && end >= text ? (long long)(end - text) + 1 : 1;
        snprintf(msg, sizeof msg, "invalid JSON (near byte %lld)", col);
        return s_bad(path, line, msg);
    }
    int rc = 0;
    if (!cJSON_IsObject(o)) rc = s_bad(path, line, "not a JSON object");
    if (!rc) rc = s_id(o, s, path, line);
    if (!rc) rc = s_str(o, "context", true, &s->context, path, line);
    if (!rc) rc = s_str(o, "question", true, &s->question, path, line);
    if (!rc) rc = s_answers(o, s, path, line);
    if (!rc) rc = s_str(o, "prefix", false, &s->prefix, path, line);
    if (!rc) rc = s_str(o, "answer_prefix", false, &s->answer_prefix, path, line);
    if (!rc) rc = s_meta(o, s);
    cJSON_Delete(o);
    return rc;
}

typedef struct id_line {
    const char *id;
    int64_t line;
} id_line;

static int s_cmp_id(const void *a, const void *b) {
    const id_line *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Every id once: results are keyed by it. */
static int s_check_ids(const char *path, bench_set *set, const int64_t *lines) {
    if (set->n < 2) return 0;
    id_line *v = malloc((size_t)set->n * sizeof *v);
    if (!v) return s_oom();
    for (int64_t i = 0; i < set->n; i++) v[i] = (id_line){set->s[i].id, lines[i]};
    qsort(v, (size_t)set->n, sizeof *v, s_cmp_id);
    int rc = 0;
    for (int64_t i = 1; i < set->n && !rc; i++) {
        if (strcmp(v[i].id, v[i - 1].id)) continue;
        char msg[160];
        snprintf(msg, sizeof msg, "duplicate id \"%s\" (first on line %lld)", v[i].id,
                 (long long)v[i - 1].line);
        rc = s_bad(path, v[i].line, msg);
    }
    free(v);
    return rc;
}

int bench_load_jsonl(const char *path, bench_set *out) {
    if (!out || !path) return tis_error(TIS_EINVAL, "bench: no path or output set");
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "jsonl");
    FILE *f = fopen(path, "rb");
    if (!f) return tis_error(TIS_EIO, "bench: cannot open '%s': %s", path, strerror(errno));
    char *buf = NULL;
    size_t buf_cap = 0;
    int64_t cap = 0, line = 0, *lines = NULL;
    ssize_t got;
    int rc = 0;
    while (!rc && (got = getline(&buf, &buf_cap, f)) >= 0) {
        line++;
        size_t n = (size_t)got;
        char *text = buf;
        if (line == 1 && n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, n -= 3;
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
        text[n] = 0;
        size_t lead = strspn(text, " \t\r");
        if (lead == n) continue; /* blank */
        if (out->n == cap) {
            int64_t c = cap ? cap * 2 : 64;
            bench_sample *s = realloc(out->s, (size_t)c * sizeof *s);
            int64_t *l = s ? realloc(lines, (size_t)c * sizeof *l) : NULL;
            if (s) out->s = s;
            if (l) lines = l;
            if (!s || !l) {
                rc = s_oom();
                break;
            }
            cap = c;
        }
        rc = s_parse_line(path, line, text, n, &out->s[out->n]);
        lines[out->n] = line;
        out->n++; /* even when bad: frees what the line got */
    }
    if (!rc && ferror(f)) rc = tis_error(TIS_EIO, "bench: cannot read '%s'", path);
    fclose(f);
    free(buf);
    if (!rc) rc = s_check_ids(path, out, lines);
    free(lines);
    if (rc) bench_set_free(out);
    else snprintf(out->name, sizeof out->name, "jsonl");
    return rc;
}

/* ---- writing: a set as a dataset file -------------------------------- */

static bool s_add_strs(cJSON *o, const char *key, char *const *v, int64_t n) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int64_t i = 0; a && i < n; i++) {
        cJSON *x = cJSON_CreateString(v[i]);
        if (!x || !cJSON_AddItemToArray(a, x)) return false;
    }
    return a != NULL;
}

int bench_write_jsonl(const char *path, const bench_set *set, bool append) {
    if (!path || !set) return tis_error(TIS_EINVAL, "bench: no path or set to write");
    FILE *f = fopen(path, append ? "ab" : "wb");
    if (!f) return tis_error(TIS_EIO, "bench: cannot write '%s': %s", path, strerror(errno));
    int rc = 0;
    for (int64_t i = 0; !rc && i < set->n; i++) {
        const bench_sample *s = &set->s[i];
        cJSON *o = cJSON_CreateObject();
        bool ok = o && cJSON_AddStringToObject(o, "id", s->id) && cJSON_AddStringToObject(o, "context", s->context) &&
                  cJSON_AddStringToObject(o, "question", s->question) &&
                  s_add_strs(o, "answers", s->answers, s->n_answers) &&
                  (!s->prefix || cJSON_AddStringToObject(o, "prefix", s->prefix)) &&
                  (!s->answer_prefix || cJSON_AddStringToObject(o, "answer_prefix", s->answer_prefix)) &&
                  cJSON_AddStringToObject(o, "benchmark", set->name) &&
                  (s->depth < 0 || cJSON_AddNumberToObject(o, "depth", s->depth)) &&
                  (s->position < 0 || cJSON_AddNumberToObject(o, "position", (double)s->position)) &&
                  (s->target_tokens < 0 || cJSON_AddNumberToObject(o, "target_tokens", (double)s->target_tokens)) &&
                  (s->n_distractors == 0 || s_add_strs(o, "distractors", s->distractors, s->n_distractors));
        char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
        if (!line) rc = tis_error(TIS_ENOMEM, "bench: out of memory writing '%s'", path);
        else if (fprintf(f, "%s\n", line) < 0) rc = tis_error(TIS_EIO, "bench: cannot write '%s'", path);
        free(line);
        cJSON_Delete(o);
    }
    if (fclose(f) && !rc) rc = tis_error(TIS_EIO, "bench: cannot write '%s'", path);
    return rc;
}
