/* bench_gen: the generated benchmarks (passkey, niah, niah_multikey,
 * litm_kv, litm_qa), one sample at a time, the context fitted to a length
 * in tokens (docs/design.md §7).
 *
 * Every generator works the same way: a sample draws its random choices from
 * its own splitmix64 stream (seeded by seed, name, length and index), then a
 * builder lays out lead + filler units + needles for a token budget using
 * per-unit token estimates, and s_fit encodes the real text and moves the
 * budget until the context is <= the target and close to it. */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_gen.h"
#include "sbuf.h"
#include "tis_error.h"
#include "rng.h"

enum {
    GAP_SCAN = 256,       /* sentences scanned to fill the last gap */
    QA_MAX_SENT_TOK = 48, /* litm_qa: longest haystack sentence in a document */
    FIT_ITERS = 8,        /* exact encodes per sample, at most (+1) */
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t s_next(uint64_t *st) { return tis_rng_next(st); }
static uint64_t s_below(uint64_t *st, uint64_t n) { return s_next(st) % n; }
static double s_unit(uint64_t *st) { return tis_rng_unit(st); }

static uint64_t s_fnv(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static char *s_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}


static bool s_push(int64_t **a, int64_t *n, int64_t *cap, int64_t v) {
    if (*n == *cap) {
        int64_t c = *cap ? *cap * 2 : 64;
        int64_t *p = realloc(*a, (size_t)c * sizeof **a);
        if (!p) return false;
        *a = p;
        *cap = c;
    }
    (*a)[(*n)++] = v;
    return true;
}

/* A set of 64-bit values (open addressing; 0 is stored as a flag). */
typedef struct u64set {
    uint64_t *slot;
    size_t cap, n;
    bool has_zero;
} u64set;

static int s_set_add(u64set *s, uint64_t v, bool *added) {
    if (v == 0) {
        *added = !s->has_zero;
        s->has_zero = true;
        return 0;
    }
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return tis_error(TIS_ENOMEM, "bench: out of memory");
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i]) continue;
            size_t j = (size_t)(s->slot[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);
            while (slot[j]) j = (j + 1) & (cap - 1);
            slot[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    size_t j = (size_t)(v * 0x9e3779b97f4a7c15ull) & (s->cap - 1);
    while (s->slot[j] && s->slot[j] != v) j = (j + 1) & (s->cap - 1);
    *added = !s->slot[j];
    if (*added) {
        s->slot[j] = v;
        s->n++;
    }
    return 0;
}

/* ---- per-sample generator state ----------------------------------------- */

static const char *const s_passkey_fill[] = {
    "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
    "There and back again."};
enum { N_PASSKEY_FILL = 5 };

static const char *const s_keys[] = {
    "Lisbon", "Nairobi", "Oslo", "Kyoto", "Lima", "Dakar", "Quito", "Hanoi", "Tbilisi",
    "Reykjavik", "Montevideo", "Zagreb", "Accra", "Bergen", "Cusco", "Dublin", "Fez",
    "Granada", "Havana", "Innsbruck", "Jaipur", "Kraków", "Lagos", "Marrakesh", "Nagoya",
    "Odessa", "Porto", "Riga", "Seville", "Tallinn", "Utrecht", "Valparaíso", "Wellington",
    "Yerevan", "Zanzibar", "lantern", "compass", "teapot", "violin", "anchor", "kettle",
    "telescope", "harmonica", "umbrella", "lighthouse", "pinecone", "saxophone", "hourglass",
    "typewriter", "canoe", "windmill", "chandelier", "accordion", "snowglobe", "thimble",
    "trombone", "sundial", "abacus", "periscope", "gramophone"};
enum { N_KEYS = sizeof s_keys / sizeof s_keys[0] };

static const char *const s_syll[] = {
    "ka", "lo", "mi", "ra", "ven", "tor", "sa", "bel", "dor", "fi", "gan", "hel",
    "ir", "jo", "kel", "lum", "mar", "nor", "os", "pra", "quin", "rus", "sel", "tam",
    "ul", "var", "wen", "yor", "zan", "bri", "cal", "dra", "el", "fen", "gor", "ith"};
static const char *const s_land_end[] = {"ia", "land", "mark", "ora", "istan", "enia"};
static const char *const s_city_end[] = {"ton", "burg", "grad", "polis", "mouth", "ford"};
#define N_OF(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

typedef struct item {
    uint32_t key, val;   /* litm_kv */
    char *name, *city;   /* litm_qa (owned) */
    int64_t body[3];     /* litm_qa: haystack sentences of the document */
    int n_body;
    int64_t tok;         /* estimate of the unit with its separator */
} item;

typedef struct gen {
    int kind;
    int phrasing;        /* 0 standard wording, 1 the alternative */
    const char *name;
    const tokenizer *tok;
    bench_haystack *hay; /* NULL for passkey and litm_kv (borrowed) */
    int64_t target;
    double depth;
    uint64_t rng;        /* draws made once per sample */
    uint64_t item_rng;   /* litm: the item stream, drawn as far as needed */
    char *lead;          /* text before the units (owned) */
    int64_t fixed_tok;   /* lead + the layout around the units */
    /* passkey / niah / niah_multikey: needle 0 is the one asked */
    int64_t n_needles;
    char *needle[BENCH_MAX_NEEDLES];
    char *needle_answer[BENCH_MAX_NEEDLES];
    const char *needle_key[BENCH_MAX_NEEDLES];
    int64_t needle_tok[BENCH_MAX_NEEDLES];
    double needle_frac[BENCH_MAX_NEEDLES];
    int64_t hay_off;
    int64_t pass_tok[N_PASSKEY_FILL];
    /* litm */
    item *items;
    int64_t n_items, cap_items;
    u64set seen;
    /* the last build */
    int64_t *sel, n_sel, cap_sel; /* filler units chosen */
    int64_t *cum, n_cum, cap_cum; /* token estimate before each boundary */
    int64_t *extra, n_extra, cap_extra; /* litm_qa gap fill */
    int64_t k, asked;
} gen;

static void s_gen_free(gen *g) {
    free(g->lead);
    for (int i = 0; i < BENCH_MAX_NEEDLES; i++) {
        free(g->needle[i]);
        free(g->needle_answer[i]);
    }
    for (int64_t i = 0; i < g->n_items; i++) {
        free(g->items[i].name);
        free(g->items[i].city);
    }
    free(g->items);
    free(g->seen.slot);
    free(g->sel);
    free(g->cum);
    free(g->extra);
    memset(g, 0, sizeof *g);
}

static int s_oom(void) { return tis_error(TIS_ENOMEM, "bench: out of memory"); }

static int s_too_short(const gen *g) {
    return tis_error(TIS_ERANGE, "bench: a %s context of %lld tokens is too short%s",
                     g->name, (long long)g->target,
                     g->n_needles > 1 ? " for its needles" : "");
}

/* ---- passkey, niah, niah_multikey --------------------------------------- */

static int s_fill_tok(gen *g, int64_t i, int64_t *t) {
    if (!g->hay) {
        *t = g->pass_tok[i % N_PASSKEY_FILL];
        return 0;
    }
    return bench_hay_tok(g->hay, g->tok, (g->hay_off + i) % g->hay->n, t);
}

/* The boundary (0..n) whose token estimate is nearest frac of the filler. */
static int64_t s_boundary(const int64_t *cum, int64_t n, double frac) {
    double want = frac * (double)cum[n];
    int64_t best = 0;
    for (int64_t j = 1; j <= n; j++)
        if (fabs((double)cum[j] - want) < fabs((double)cum[best] - want)) best = j;
    return best;
}

static int s_build_needles(gen *g, int64_t budget, sbuf *out) {
    int64_t avail = budget - g->fixed_tok, used = 0, t = 0;
    for (int64_t k = 0; k < g->n_needles; k++) avail -= g->needle_tok[k];
    if (avail < 0) return s_too_short(g);
    int rc = 0;
    g->n_sel = 0;
    int64_t i = 0;
    for (;; i++) { /* the contiguous run */
        if ((rc = s_fill_tok(g, i, &t))) return rc;
        if (used + t > avail) break;
        if (!s_push(&g->sel, &g->n_sel, &g->cap_sel, i)) return s_oom();
        used += t;
    }
    int64_t period = g->hay ? (g->hay->n < GAP_SCAN ? g->hay->n : GAP_SCAN) : N_PASSKEY_FILL;
    for (int64_t j = i + 1; j < i + period && used < avail; j++) { /* then the gap */
        if ((rc = s_fill_tok(g, j, &t))) return rc;
        if (used + t > avail) continue;
        if (!s_push(&g->sel, &g->n_sel, &g->cap_sel, j)) return s_oom();
        used += t;
    }
    int64_t n = g->n_sel;
    if (n + 1 < g->n_needles) return s_too_short(g);
    g->n_cum = 0;
    if (!s_push(&g->cum, &g->n_cum, &g->cap_cum, 0)) return s_oom();
    for (int64_t j = 0; j < n; j++) {
        if ((rc = s_fill_tok(g, g->sel[j], &t))) return rc;
        if (!s_push(&g->cum, &g->n_cum, &g->cap_cum, g->cum[j] + t)) return s_oom();
    }
    /* needle k sits before filler at[k]; distinct boundaries, the asked one first */
    int64_t at[BENCH_MAX_NEEDLES];
    for (int64_t k = 0; k < BENCH_MAX_NEEDLES; k++) at[k] = -1;
    for (int64_t k = 0; k < g->n_needles; k++) {
        int64_t b = s_boundary(g->cum, n, g->needle_frac[k]);
        for (int64_t d = 0; d <= n; d++) {
            int64_t c[2] = {b - d, b + d};
            bool found = false;
            for (int e = 0; e < 2 && !found; e++) {
                if (c[e] < 0 || c[e] > n) continue;
                bool taken = false;
                for (int64_t q = 0; q < k; q++) taken |= at[q] == c[e];
                if (!taken) {
                    at[k] = c[e];
                    found = true;
                }
            }
            if (found) break;
        }
    }
    sbuf_reset(out);
    sbuf_str(out, g->lead);
    sbuf_str(out, "\n\n");
    bool first = true;
    for (int64_t j = 0; j <= n; j++) {
        for (int64_t k = 0; k < g->n_needles; k++) {
            if (at[k] != j) continue;
            if (!first) sbuf_str(out, " ");
            sbuf_str(out, g->needle[k]);
            first = false;
        }
        if (j == n) break;
        if (g->hay) {
            int64_t s = (g->hay_off + g->sel[j]) % g->hay->n;
            if (!first) sbuf_str(out, g->hay->s[s].par ? "\n\n" : " ");
            sbuf_add(out, bench_hay_text(g->hay, s), g->hay->s[s].len);
        } else {
            if (!first) sbuf_str(out, " ");
            sbuf_str(out, s_passkey_fill[g->sel[j] % N_PASSKEY_FILL]);
        }
        first = false;
    }
    return out->oom ? s_oom() : 0;
}

static int s_setup_needles(gen *g, const bench_spec *spec) {
    int rc = 0;
    if (g->kind == BENCH_PASSKEY) {
        g->n_needles = 1;
        g->lead = strdup("There is an important piece of information hidden inside a lot of "
                         "irrelevant text. Find it and memorize it. I will quiz you about it.");
        g->needle_answer[0] = s_fmt("%05d", (int)(10000 + s_below(&g->rng, 90000)));
        if (!g->needle_answer[0]) return s_oom();
        g->needle[0] = s_fmt(g->phrasing ? "The secret code is %s. Keep it in mind. %s is the secret code."
                                         : "The pass key is %s. Remember it. %s is the pass key.",
                             g->needle_answer[0], g->needle_answer[0]);
        for (int i = 0; i < N_PASSKEY_FILL && !rc; i++) {
            char sp[64];
            int n = snprintf(sp, sizeof sp, " %s", s_passkey_fill[i]);
            rc = bench_count_tokens(g->tok, sp, (size_t)n, &g->pass_tok[i]);
        }
    } else {
        g->n_needles = g->kind == BENCH_MULTIKEY ? (spec->n_keys > 0 ? spec->n_keys : 4) : 1;
        g->lead = strdup("Some special magic numbers are hidden within the following text. "
                         "Make sure to memorize it. I will quiz you about the numbers "
                         "afterwards.");
        g->hay_off = (int64_t)s_below(&g->rng, (uint64_t)g->hay->n);
        int64_t perm[N_KEYS];
        for (int64_t i = 0; i < N_KEYS; i++) perm[i] = i;
        for (int64_t k = 0; k < g->n_needles; k++) { /* distinct keys: partial shuffle */
            int64_t j = k + (int64_t)s_below(&g->rng, (uint64_t)(N_KEYS - k));
            int64_t tmp = perm[k];
            perm[k] = perm[j];
            perm[j] = tmp;
            g->needle_key[k] = s_keys[perm[k]];
            char num[16];
            for (;;) { /* distinct, and absent from the haystack */
                snprintf(num, sizeof num, "%07d", (int)(1000000 + s_below(&g->rng, 9000000)));
                bool dup = false;
                for (int64_t q = 0; q < k; q++) dup |= strcmp(num, g->needle_answer[q]) == 0;
                if (dup) continue;
                bool in_hay = false;
                for (int64_t s = 0; s < g->hay->n && !in_hay; s++)
                    in_hay = strstr(bench_hay_text(g->hay, s), num) != NULL;
                if (!in_hay) break;
            }
            g->needle_answer[k] = strdup(num);
            if (!g->needle_answer[k]) return s_oom();
            g->needle[k] = s_fmt(g->phrasing ? "The hidden number associated with %s is %s."
                                             : "The special magic number for %s is %s.",
                                 g->needle_key[k], num);
            if (!g->needle[k]) return s_oom();
            g->needle_frac[k] = k == 0 ? g->depth : s_unit(&g->rng);
        }
    }
    if (!g->lead || !g->needle[0]) return s_oom();
    g->needle_frac[0] = g->depth;
    for (int64_t k = 0; k < g->n_needles && !rc; k++) {
        char *sp = s_fmt(" %s", g->needle[k]);
        rc = sp ? bench_count_tokens(g->tok, sp, strlen(sp), &g->needle_tok[k]) : s_oom();
        free(sp);
    }
    if (rc) return rc;
    char *lead2 = s_fmt("%s\n\n", g->lead);
    if (!lead2) return s_oom();
    rc = bench_count_tokens(g->tok, lead2, strlen(lead2), &g->fixed_tok);
    free(lead2);
    return rc;
}

/* ---- litm_kv ------------------------------------------------------------- */

/* 8 lowercase hex digits with at least one letter and one digit, so that
 * every key and value has the "hex word" shape the scorer looks for. */
static bool s_hexlike(uint32_t x) {
    int letters = 0;
    for (int i = 0; i < 8; i++) letters += ((x >> (4 * i)) & 15) >= 10;
    return letters > 0 && letters < 8;
}

/* The next item's slot, zeroed (g->items grown as needed); n_items is left
 * to the caller, which counts the item once it owns what it holds. */
static int s_item_slot(gen *g, item **out) {
    if (g->n_items == g->cap_items) {
        int64_t cap = g->cap_items ? g->cap_items * 2 : 64;
        item *p = realloc(g->items, (size_t)cap * sizeof *p);
        if (!p) return s_oom();
        g->items = p;
        g->cap_items = cap;
    }
    *out = &g->items[g->n_items];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int s_kv_item(gen *g, int64_t i, item **out) {
    while (g->n_items <= i) {
        item *it = NULL;
        int grc = s_item_slot(g, &it);
        if (grc) return grc;
        uint32_t v[2];
        for (int e = 0; e < 2; e++) {
            for (;;) {
                v[e] = (uint32_t)s_next(&g->item_rng);
                bool added = false;
                if (!s_hexlike(v[e])) continue;
                int rc = s_set_add(&g->seen, v[e], &added);
                if (rc) return rc;
                if (added) break;
            }
        }
        it->key = v[0];
        it->val = v[1];
        char line[40];
        int n = snprintf(line, sizeof line, "\"%08x\": \"%08x\",\n", it->key, it->val);
        int rc = bench_count_tokens(g->tok, line, (size_t)n, &it->tok);
        if (rc) return rc;
        g->n_items++;
    }
    *out = &g->items[i];
    return 0;
}

static int s_build_kv(gen *g, int64_t budget, sbuf *out) {
    int64_t avail = budget - g->fixed_tok, used = 0, k = 0;
    for (;; k++) {
        item *it = NULL;
        int rc = s_kv_item(g, k, &it);
        if (rc) return rc;
        if (used + it->tok > avail) break;
        used += it->tok;
    }
    if (k < 1) return s_too_short(g);
    g->k = k;
    g->asked = llround(g->depth * (double)(k - 1));
    sbuf_reset(out);
    sbuf_str(out, g->lead);
    sbuf_str(out, "\n\n{\n");
    for (int64_t i = 0; i < k; i++) {
        char line[40];
        int n = snprintf(line, sizeof line, "%s\"%08x\": \"%08x\"", i ? ",\n" : "",
                         g->items[i].key, g->items[i].val);
        sbuf_add(out, line, (size_t)n);
    }
    sbuf_str(out, "\n}");
    return out->oom ? s_oom() : 0;
}

/* ---- litm_qa ------------------------------------------------------------- */

/* A fictional proper name from syllables, not seen before in this sample. */
static int s_qa_name(gen *g, const char *const *ends, int64_t n_ends, char **out) {
    for (;;) {
        char buf[64] = "";
        int n_syll = 1 + (int)s_below(&g->item_rng, 2);
        for (int i = 0; i < n_syll; i++)
            strcat(buf, s_syll[s_below(&g->item_rng, (uint64_t)N_OF(s_syll))]);
        strcat(buf, ends[s_below(&g->item_rng, (uint64_t)n_ends)]);
        buf[0] = (char)(buf[0] - 'a' + 'A');
        bool added = false;
        int rc = s_set_add(&g->seen, s_fnv(buf), &added);
        if (rc) return rc;
        if (!added) continue;
        *out = strdup(buf);
        return *out ? 0 : s_oom();
    }
}

/* Document i: "Document [i+1] (Title: NAME): S1 S2 [extra] The capital of NAME is CITY." */
static void s_qa_doc(const gen *g, int64_t i, const int64_t *extra, int64_t n_extra, sbuf *out) {
    const item *it = &g->items[i];
    char head[128];
    snprintf(head, sizeof head, "Document [%lld] (Title: %s):", (long long)(i + 1), it->name);
    sbuf_str(out, head);
    for (int b = 0; b < it->n_body; b++) {
        sbuf_str(out, " ");
        sbuf_str(out, bench_hay_text(g->hay, it->body[b]));
    }
    for (int64_t b = 0; b < n_extra; b++) {
        sbuf_str(out, " ");
        sbuf_str(out, bench_hay_text(g->hay, extra[b]));
    }
    sbuf_str(out, " The capital of ");
    sbuf_str(out, it->name);
    sbuf_str(out, " is ");
    sbuf_str(out, it->city);
    sbuf_str(out, ".");
}

static int s_qa_item(gen *g, int64_t i, item **out) {
    int rc = 0;
    while (g->n_items <= i) {
        item *it = NULL;
        int grc = s_item_slot(g, &it);
        if (grc) return grc;
        g->n_items++; /* owned strings are freed from here on */
        if ((rc = s_qa_name(g, s_land_end, N_OF(s_land_end), &it->name))) return rc;
        if ((rc = s_qa_name(g, s_city_end, N_OF(s_city_end), &it->city))) return rc;
        int want = 1 + (int)s_below(&g->item_rng, 3);
        int64_t s = (int64_t)s_below(&g->item_rng, (uint64_t)g->hay->n), t = 0;
        for (int scan = 0; scan < 64 && it->n_body < want; scan++, s = (s + 1) % g->hay->n) {
            if ((rc = bench_hay_tok(g->hay, g->tok, s, &t))) return rc;
            if (t <= QA_MAX_SENT_TOK) it->body[it->n_body++] = s;
        }
        sbuf doc = {0};
        sbuf_str(&doc, "\n\n");
        s_qa_doc(g, g->n_items - 1, NULL, 0, &doc);
        rc = doc.oom ? s_oom() : bench_count_tokens(g->tok, doc.p, doc.n, &it->tok);
        free(doc.p);
        if (rc) return rc;
    }
    *out = &g->items[i];
    return 0;
}

static int s_build_qa(gen *g, int64_t budget, sbuf *out) {
    int64_t avail = budget - g->fixed_tok, used = 0, k = 0, t = 0;
    int rc = 0;
    for (;; k++) {
        item *it = NULL;
        if ((rc = s_qa_item(g, k, &it))) return rc;
        if (used + it->tok > avail) break;
        used += it->tok;
    }
    if (k < 1) return s_too_short(g);
    /* the last document takes haystack sentences that fit the gap */
    g->n_extra = 0;
    const item *last = &g->items[k - 1];
    int64_t s = last->n_body ? last->body[last->n_body - 1] + 1 : 0;
    for (int64_t scan = 0; scan < GAP_SCAN && used < avail; scan++) {
        int64_t si = (s + scan) % g->hay->n;
        if ((rc = bench_hay_tok(g->hay, g->tok, si, &t))) return rc;
        if (used + t > avail) continue;
        if (!s_push(&g->extra, &g->n_extra, &g->cap_extra, si)) return s_oom();
        used += t;
    }
    g->k = k;
    g->asked = llround(g->depth * (double)(k - 1));
    sbuf_reset(out);
    sbuf_str(out, g->lead);
    for (int64_t i = 0; i < k; i++) {
        sbuf_str(out, "\n\n");
        s_qa_doc(g, i, i == k - 1 ? g->extra : NULL, i == k - 1 ? g->n_extra : 0, out);
    }
    return out->oom ? s_oom() : 0;
}

/* ---- fitting and the grid ------------------------------------------------ */

static int s_build(gen *g, int64_t budget, sbuf *out) {
    switch (g->kind) {
    case BENCH_LITM_KV: return s_build_kv(g, budget, out);
    case BENCH_LITM_QA: return s_build_qa(g, budget, out);
    default: return s_build_needles(g, budget, out);
    }
}

/* Finds the budget whose text is the longest <= target tokens: estimates are
 * additive up to merges across unit boundaries, so a few exact encodes with
 * the budget moved by the error (kept inside the known bracket) settle it. */
static int s_fit(gen *g, sbuf *out, int64_t *n_tok) {
    int64_t lo = -1, hi = INT64_MAX, best_b = -1, best_c = -1, b = g->target;
    int64_t close = g->target / 512 > 4 ? g->target / 512 : 4;
    for (int it = 0; it < FIT_ITERS; it++) {
        int rc = s_build(g, b, out);
        if (rc == TIS_ERANGE && best_b >= 0) break;
        if (rc) return rc;
        int64_t c = 0;
        if ((rc = bench_count_tokens(g->tok, out->p, out->n, &c))) return rc;
        int64_t next;
        if (c <= g->target) {
            if (c > best_c) best_b = b, best_c = c;
            lo = b > lo ? b : lo;
            if (g->target - c <= close) break;
            next = b + (g->target - c);
        } else {
            hi = b < hi ? b : hi;
            next = b - (c - g->target) - it; /* a growing margin ends oscillation */
        }
        if (next >= hi) next = hi - 1;
        if (next <= lo) next = lo + 1;
        if (next >= hi || next == b) break;
        b = next;
    }
    if (best_b < 0) return s_too_short(g);
    int rc = s_build(g, best_b, out);
    if (!rc) rc = bench_count_tokens(g->tok, out->p, out->n, n_tok);
    if (!rc) TIS_ASSERT(*n_tok == best_c);
    return rc;
}

static int s_set_strings(char ***arr, int64_t *n, const char *const *src, int64_t count) {
    *arr = count ? calloc((size_t)count, sizeof **arr) : NULL;
    if (count && !*arr) return s_oom();
    for (int64_t i = 0; i < count; i++) {
        if (!((*arr)[i] = strdup(src[i]))) return s_oom();
        *n = i + 1;
    }
    return 0;
}

/* Fills the sample's question, answers and distractors from the last build. */
static int s_fill_sample(gen *g, bench_sample *s) {
    const char *ans = NULL;
    const char *dis[BENCH_MAX_NEEDLES];
    int64_t n_dis = 0;
    const char **many = NULL;
    char hex[6][12];
    int rc = 0;
    s->position = -1;
    switch (g->kind) {
    case BENCH_PASSKEY:
        s->question = strdup(g->phrasing ? "What is the secret code?" : "What is the pass key?");
        s->answer_prefix = strdup(g->phrasing ? "The secret code is" : "The pass key is");
        ans = g->needle_answer[0];
        break;
    case BENCH_NIAH:
    case BENCH_MULTIKEY:
        s->question = g->phrasing
                          ? s_fmt("Which hidden number is associated with %s in the text above?",
                                  g->needle_key[0])
                          : s_fmt("What is the special magic number for %s mentioned in the provided "
                                  "text?", g->needle_key[0]);
        s->answer_prefix = s_fmt(g->phrasing ? "The hidden number associated with %s is"
                                             : "The special magic number for %s is",
                                 g->needle_key[0]);
        ans = g->needle_answer[0];
        for (int64_t k = 1; k < g->n_needles; k++) dis[n_dis++] = g->needle_answer[k];
        break;
    case BENCH_LITM_KV: {
        const item *it = &g->items[g->asked];
        snprintf(hex[0], sizeof hex[0], "%08x", it->val);
        s->question = s_fmt("What is the value of key \"%08x\"?", it->key);
        s->answer_prefix = s_fmt("The value of key \"%08x\" is \"", it->key);
        ans = hex[0];
        for (int64_t d = -2; d <= 2; d++) { /* the neighbours' values */
            int64_t j = g->asked + d;
            if (d == 0 || j < 0 || j >= g->k) continue;
            snprintf(hex[1 + n_dis], sizeof hex[0], "%08x", g->items[j].val);
            dis[n_dis] = hex[1 + n_dis];
            n_dis++;
        }
        s->position = g->asked;
        break;
    }
    case BENCH_LITM_QA: {
        const item *it = &g->items[g->asked];
        s->question = s_fmt("What is the capital of %s?", it->name);
        s->answer_prefix = s_fmt("The capital of %s is", it->name);
        ans = it->city;
        many = malloc((size_t)g->k * sizeof *many);
        if (!many) return s_oom();
        for (int64_t j = 0; j < g->k; j++)
            if (j != g->asked) many[n_dis++] = g->items[j].city;
        s->position = g->asked;
        break;
    }
    }
    if (!s->question || !s->answer_prefix) rc = s_oom();
    if (!rc) rc = s_set_strings(&s->answers, &s->n_answers, &ans, 1);
    if (!rc) rc = s_set_strings(&s->distractors, &s->n_distractors, many ? many : dis, n_dis);
    free(many);
    return rc;
}

int bench_gen_sample(const bench_spec *spec, int kind, const tokenizer *tok,
                     bench_haystack *hay, int64_t target, int64_t index, double depth,
                     bench_sample *s) {
    gen g = {.kind = kind, .phrasing = spec->phrasing, .name = spec->name, .tok = tok, .hay = hay,
             .target = target, .depth = depth};
    uint64_t st = spec->seed;
    g.rng = s_next(&st) ^ s_fnv(spec->name);
    g.rng = s_next(&g.rng) ^ (uint64_t)target;
    g.rng = s_next(&g.rng) ^ (uint64_t)index;
    g.item_rng = s_next(&g.rng);
    int rc = 0;
    if (kind == BENCH_LITM_KV || kind == BENCH_LITM_QA) {
        g.lead = strdup(kind == BENCH_LITM_KV
                            ? "Extract the value corresponding to the specified key in the "
                              "JSON object below."
                            : "Write a high-quality answer for the given question using only "
                              "the provided search results (some of which might be "
                              "irrelevant).");
        char *fixed = g.lead ? s_fmt("%s%s", g.lead, kind == BENCH_LITM_KV ? "\n\n{\n\n}" : "")
                             : NULL;
        rc = fixed ? bench_count_tokens(tok, fixed, strlen(fixed), &g.fixed_tok) : s_oom();
        free(fixed);
    } else {
        rc = s_setup_needles(&g, spec);
    }
    sbuf ctx = {0};
    int64_t n_tok = 0;
    if (!rc) rc = s_fit(&g, &ctx, &n_tok);
    if (!rc) {
        snprintf(s->id, sizeof s->id, "%s-%lld-d%.2f-%lld%s", spec->name, (long long)target,
                 depth, (long long)index, spec->phrasing ? "-p1" : "");
        s->context = ctx.p;
        ctx.p = NULL;
        s->target_tokens = target;
        s->depth = depth;
        rc = s_fill_sample(&g, s);
    }
    free(ctx.p);
    s_gen_free(&g);
    return rc;
}
