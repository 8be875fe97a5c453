/* label_corpus: plain text files cut into label samples (tis label --corpus). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "label_job.h"
#include "tis_error.h"

#define CORPUS_MAX_FILE (8u << 20)  /* bytes read of one file at most */
#define CORPUS_MAX_DEPTH 16         /* directory levels followed */
#define CORPUS_MAX_FILES 200000     /* files listed at most */
#define CORPUS_QUESTION "What is this text about?"

typedef struct path_list {
    char **p;
    int64_t n, cap;
} path_list;

static int s_push(path_list *l, const char *path) {
    if (l->n >= CORPUS_MAX_FILES)
        return tis_error(TIS_ERANGE, "corpus: more than %d files", CORPUS_MAX_FILES);
    if (l->n == l->cap) {
        int64_t nc = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->p, (size_t)nc * sizeof *p);
        if (!p) return tis_error(TIS_ENOMEM, "corpus: out of memory");
        l->p = p;
        l->cap = nc;
    }
    if (!(l->p[l->n] = strdup(path))) return tis_error(TIS_ENOMEM, "corpus: out of memory");
    l->n++;
    return 0;
}

static int s_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files under path (itself, or a directory's, names sorted at
 * every level), appended to l in that order. */
static int s_walk(const char *path, int depth, path_list *l) {
    struct stat sb;
    if (stat(path, &sb) != 0) return tis_error(TIS_EIO, "corpus: %s: %s", path, strerror(errno));
    if (S_ISREG(sb.st_mode)) return s_push(l, path);
    if (!S_ISDIR(sb.st_mode)) return 0; /* devices, fifos: not text files */
    if (depth >= CORPUS_MAX_DEPTH) return 0;
    DIR *dp = opendir(path);
    if (!dp) return tis_error(TIS_EIO, "corpus: cannot list %s: %s", path, strerror(errno));
    path_list names = {0};
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(dp));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rc = s_push(&names, e->d_name);
    closedir(dp);
    if (!rc && names.n) qsort(names.p, (size_t)names.n, sizeof *names.p, s_cmp_str);
    for (int64_t i = 0; i < names.n && !rc; i++) {
        char *sub = malloc(strlen(path) + strlen(names.p[i]) + 2);
        if (!sub) {
            rc = tis_error(TIS_ENOMEM, "corpus: out of memory");
            break;
        }
        sprintf(sub, "%s/%s", path, names.p[i]);
        struct stat ls;
        /* a link to a directory is not followed (no cycles); a link to a file is read */
        if (lstat(sub, &ls) == 0 && !(S_ISLNK(ls.st_mode) && stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)))
            rc = s_walk(sub, depth + 1, l);
        free(sub);
    }
    for (int64_t i = 0; i < names.n; i++) free(names.p[i]);
    free(names.p);
    return rc;
}

/* Whether b[n] is UTF-8 text: valid sequences, no NUL and few other control
 * bytes (tab, newline, carriage return and form feed are text). */
static bool s_is_text(const unsigned char *b, size_t n) {
    size_t ctrl = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = b[i];
        if (c < 0x80) {
            if (c == 0) return false;
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') ctrl++;
            i++;
            continue;
        }
        size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || c == 0xC0 || c == 0xC1 || c > 0xF4 || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((b[i + k] & 0xC0) != 0x80) return false;
        i += len;
    }
    return ctrl * 100 <= n; /* at most 1 % other control bytes (backspace overstrike in man pages) */
}

/* A file's bytes (the first CORPUS_MAX_FILE), NUL-terminated. */
static char *s_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(CORPUS_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, CORPUS_MAX_FILE, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* Drops an incomplete UTF-8 sequence at either end of t[*n] (a cut between
 * tokens may split a character). */
static void s_trim_utf8(char *t, size_t *n) {
    size_t a = 0;
    while (a < *n && a < 3 && ((unsigned char)t[a] & 0xC0) == 0x80) a++;
    memmove(t, t + a, *n - a);
    *n -= a;
    size_t k = 0; /* continuation bytes at the end */
    while (k < *n && k < 3 && ((unsigned char)t[*n - 1 - k] & 0xC0) == 0x80) k++;
    if (k < *n) {
        unsigned c = (unsigned char)t[*n - 1 - k];
        size_t want = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        if (c >= 0x80 && want != k + 1) *n -= k + 1;
    }
    t[*n] = 0;
}

static uint32_t s_fnv32(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* One sample from ids[n] of path's piece k. */
static int s_sample(const tokenizer *tok, const char *path, int64_t k, const int32_t *ids, int64_t n,
                    bench_sample *out) {
    char *text = NULL;
    size_t len = 0;
    int rc = tokenizer_decode(tok, ids, n, true, &text, &len);
    if (rc) return rc;
    s_trim_utf8(text, &len);
    size_t pl = strlen(path);
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "corpus:%08x:%s#%lld", s_fnv32(path), pl > 48 ? path + pl - 48 : path,
             (long long)k);
    out->context = text;
    out->question = strdup(CORPUS_QUESTION);
    out->target_tokens = n;
    out->depth = -1;
    out->position = -1;
    if (!out->question) return tis_error(TIS_ENOMEM, "corpus: out of memory");
    return 0;
}

/* The pieces of one file appended to set (at most max - set->n). */
static int s_file(const char *path, const tokenizer *tok, int64_t ctx_tokens, int64_t max, bench_set *set,
                  int64_t *cap) {
    size_t len = 0;
    char *buf = s_read(path, &len);
    if (!buf) {
        fprintf(stderr, "tis label: corpus: skipping %s: cannot read it (%s)\n", path, strerror(errno));
        return 0;
    }
    if (len == 0 || !s_is_text((const unsigned char *)buf, len)) {
        if (len) fprintf(stderr, "tis label: corpus: skipping %s: not UTF-8 text\n", path);
        free(buf);
        return 0;
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = tokenizer_encode(tok, buf, len, false, &ids, &n);
    free(buf);
    /* whole pieces, and a last one of at least half the length */
    for (int64_t k = 0, at = 0; !rc && at < n && (max <= 0 || set->n < max); k++, at += ctx_tokens) {
        int64_t m = n - at < ctx_tokens ? n - at : ctx_tokens;
        if (m < ctx_tokens / 2 || m < 16) break;
        if (set->n == *cap) {
            int64_t nc = *cap ? 2 * *cap : 64;
            bench_sample *p = realloc(set->s, (size_t)nc * sizeof *p);
            if (!p) {
                rc = tis_error(TIS_ENOMEM, "corpus: out of memory");
                break;
            }
            set->s = p;
            *cap = nc;
        }
        rc = s_sample(tok, path, k, ids + at, m, &set->s[set->n]);
        set->n++; /* freed with the set, even half-made */
    }
    free(ids);
    return rc;
}

int label_corpus_samples(const char *const *paths, int64_t n_paths, const tokenizer *tok, int64_t ctx_tokens,
                         int64_t max, bench_set *set) {
    memset(set, 0, sizeof *set);
    snprintf(set->name, sizeof set->name, "corpus");
    if (ctx_tokens < 16) return tis_error(TIS_EINVAL, "corpus: %lld tokens per sample (at least 16)", (long long)ctx_tokens);
    path_list files = {0};
    int rc = 0;
    for (int64_t i = 0; i < n_paths && !rc; i++) rc = s_walk(paths[i], 0, &files);
    int64_t cap = 0;
    for (int64_t i = 0; i < files.n && !rc && (max <= 0 || set->n < max); i++)
        rc = s_file(files.p[i], tok, ctx_tokens, max, set, &cap);
    for (int64_t i = 0; i < files.n; i++) free(files.p[i]);
    free(files.p);
    if (!rc && set->n == 0) rc = tis_error(TIS_ENOTFOUND, "corpus: no text of %lld tokens or more in the paths given", (long long)(ctx_tokens / 2));
    if (rc) bench_set_free(set);
    return rc;
}
