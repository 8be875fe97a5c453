/* tokenizer_encode: text -> ids. Special tokens are cut out first (longest
 * match), each remaining segment is normalised when the tokenizer asks for
 * NFC (s_gap_normalise says how this meets the added tokens), then
 * pre-tokenised (pretok.c), and each piece is merged by byte-level BPE.
 *
 * BPE on one piece of n bytes: the symbols start as the n byte tokens in a
 * doubly linked list; a min-heap holds every adjacent pair that has a merge
 * rule, keyed by (rank, position), so the lowest-ranked rule is applied
 * first and, on a tie, the leftmost pair (as HF tokenizers does). A merge
 * pushes the two new pairs it creates; stale heap entries are recognised on
 * pop because the ids they recorded no longer sit at that position (merged
 * symbols only grow, so equal ids mean the same span). O(n log n) per piece,
 * so a 10 000-space run costs no more than it must. */
#include <stdlib.h>
#include <string.h>

#include "pretok.h"
#include "tis_error.h"
#include "tokenizer_impl.h"
#include "unicode.h"

typedef struct pair_item {
    int32_t rank;
    int32_t pos;         /* index of the left symbol (its first byte) */
    int32_t left, right; /* the ids the pair had when pushed */
    int32_t id;          /* the merged token */
} pair_item;

/* Per-call state, so a const tokenizer can encode from many threads. */
typedef struct encoder {
    const tokenizer *t;
    const char *base;    /* the segment pretok offsets refer to */
    int32_t *ids;        /* output, grown by doubling */
    int64_t n_ids, cap_ids;
    int32_t *sym;        /* [n] token id of the symbol starting at byte i; -1 merged away */
    int32_t *prev, *next;/* [n] neighbours in the list, -1 at the ends */
    size_t sym_cap;
    pair_item *heap;     /* [2n]: n-1 initial pairs; each merge pops one and
                          * pushes at most two, and there are at most n-1 merges */
    size_t heap_n, heap_cap;
    char *mapped;        /* [2n] piece in GPT-2 characters (ignore_merges lookup) */
    size_t mapped_cap;
} encoder;

static int s_push_id(encoder *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        int64_t cap = e->cap_ids ? e->cap_ids * 2 : 256;
        int32_t *p = realloc(e->ids, (size_t)cap * sizeof *p);
        if (!p) return tis_error(TIS_ENOMEM, "tokenizer_encode: out of memory for %lld ids",
                                 (long long)cap);
        e->ids = p;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
    return 0;
}

static int s_reserve(encoder *e, size_t n) {
    if (n <= e->sym_cap) return 0;
    size_t cap = e->sym_cap ? e->sym_cap : 64;
    while (cap < n) cap *= 2;
    free(e->sym), free(e->prev), free(e->next), free(e->heap), free(e->mapped);
    e->sym = malloc(cap * sizeof *e->sym);
    e->prev = malloc(cap * sizeof *e->prev);
    e->next = malloc(cap * sizeof *e->next);
    e->heap = malloc(2 * cap * sizeof *e->heap);
    e->mapped = malloc(2 * cap);
    e->sym_cap = e->heap_cap = e->mapped_cap = 0;
    if (!e->sym || !e->prev || !e->next || !e->heap || !e->mapped)
        return tis_error(TIS_ENOMEM, "tokenizer_encode: out of memory for a %zu-byte piece", n);
    e->sym_cap = cap;
    e->heap_cap = 2 * cap;
    e->mapped_cap = 2 * cap;
    return 0;
}

static bool s_pair_less(const pair_item *a, const pair_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void s_heap_push(encoder *e, pair_item it) {
    TIS_ASSERT(e->heap_n < e->heap_cap);
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!s_pair_less(&it, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = it;
}

static pair_item s_heap_pop(encoder *e) {
    pair_item top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s_pair_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!s_pair_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void s_push_pair(encoder *e, int32_t pos) {
    if (pos < 0 || e->next[pos] < 0) return;
    int32_t l = e->sym[pos], r = e->sym[e->next[pos]];
    const tok_merge *m = tok_merge_find(e->t, l, r);
    if (m) s_heap_push(e, (pair_item){.rank = m->rank, .pos = pos, .left = l, .right = r, .id = m->id});
}

/* BPE-merges one pre-tokenised piece and appends its ids. */
static int s_bpe_piece(encoder *e, const char *w, size_t n) {
    const tokenizer *t = e->t;
    if (n == 0) return 0;
    int rc = s_reserve(e, n);
    if (rc) return rc;
    if (t->ignore_merges) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += unicode_utf8_encode(unicode_byte_to_cpt((uint8_t)w[i]), e->mapped + m);
        int32_t id = tok_find_bytes(t, e->mapped, m);
        if (id >= 0) return s_push_id(e, id);
    }
    /* Symbols are indexed by byte; a byte without a token (see byte_unk)
     * becomes byte_unk or is left out of the list. */
    int32_t first = -1, last = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)w[i]];
        if (id < 0) id = t->byte_unk;
        e->sym[i] = id;
        if (id < 0) continue;
        e->prev[i] = last;
        e->next[i] = -1;
        if (last >= 0) e->next[last] = (int32_t)i;
        else first = (int32_t)i;
        last = (int32_t)i;
    }
    e->heap_n = 0;
    for (int32_t i = first; i >= 0; i = e->next[i]) s_push_pair(e, i);
    while (e->heap_n) {
        pair_item it = s_heap_pop(e);
        int32_t i = it.pos, j = e->next[i];
        if (e->sym[i] != it.left || j < 0 || e->sym[j] != it.right) continue; /* stale */
        e->sym[i] = it.id;
        e->sym[j] = -1;
        e->next[i] = e->next[j];
        if (e->next[j] >= 0) e->prev[e->next[j]] = i;
        s_push_pair(e, e->prev[i]);
        s_push_pair(e, i);
    }
    for (int32_t i = first; i >= 0; i = e->next[i])
        if ((rc = s_push_id(e, e->sym[i]))) return rc;
    return 0;
}

static int s_on_piece(void *ud, size_t start, size_t len) {
    encoder *e = ud;
    return s_bpe_piece(e, e->base + start, len);
}

static int s_encode_segment(encoder *e, const char *s, size_t n) {
    if (n == 0) return 0;
    e->base = s;
    return pretok_split(e->t->pre, s, n, s_on_piece, e);
}

/* Longest special token of the given kind (late: HF normalized=true) at
 * text[0..n), or -1 (sets *len). */
static int32_t s_match_special(const tokenizer *t, const char *text, size_t n, bool late,
                               size_t *len) {
    if (!(t->special_first[(uint8_t)text[0]] & (late ? 2 : 1))) return -1;
    for (int64_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        size_t l = t->piece_off[id + 1] - t->piece_off[id] - 1;
        if (t->special_late[k] == late && l <= n &&
            memcmp(text, t->pieces + t->piece_off[id], l) == 0) {
            *len = l;
            return id;
        }
    }
    return -1;
}

typedef int (*gap_fn)(encoder *e, const char *s, size_t n, bool parse_special);

/* Cuts the specials of one kind out of text[0..len): each gap between
 * them goes to gap(), each special is emitted. */
static int s_split_specials(encoder *e, const char *text, size_t len, bool late, gap_fn gap,
                            bool parse_special) {
    int rc = 0;
    size_t seg = 0;
    for (size_t i = 0; i < len && !rc;) {
        size_t l = 0;
        int32_t id = s_match_special(e->t, text + i, len - i, late, &l);
        if (id < 0) {
            i++;
            continue;
        }
        if (!(rc = gap(e, text + seg, i - seg, parse_special))) rc = s_push_id(e, id);
        i += l;
        seg = i;
    }
    return rc ? rc : gap(e, text + seg, len - seg, parse_special);
}

static int s_gap_plain(encoder *e, const char *s, size_t n, bool parse_special) {
    (void)parse_special;
    return s_encode_segment(e, s, n);
}

/* A stretch of raw text between raw-matched specials: normalised (NFC when
 * the tokenizer asks for it), then cut at the late specials. This is how
 * HF tokenizers' AddedVocabulary does it: added tokens with
 * normalized=false (every special token of Qwen2, Llama-3, SmolLM2) are
 * found in the raw text, the text between them is normalised piece by
 * piece (so nothing composes across such a token), and tokens with
 * normalized=true are then found in the normalised pieces. (HF also
 * normalises those tokens' own contents; tis matches them as written,
 * which differs only for a normalized=true token that is not itself NFC.)
 * Without parse_special nothing is cut: the whole text is normalised and
 * encoded as plain text. GGUF tokenizers have no late specials and no
 * normaliser. */
static int s_gap_normalise(encoder *e, const char *s, size_t n, bool parse_special) {
    char *norm = NULL;
    size_t nn = 0;
    if (e->t->nfc && n) {
        int rc = unicode_nfc(s, n, &norm, &nn);
        if (rc) return rc;
        if (norm) s = norm, n = nn; /* NULL: already NFC, s as it is */
        if (n >= INT32_MAX) { /* NFC can triple a text (U+0390: 2 bytes -> 6) */
            free(norm);
            return tis_error(TIS_ERANGE, "tokenizer_encode: %zu bytes of normalised text "
                             "is too long", n);
        }
    }
    int rc = parse_special && e->t->n_late
                 ? s_split_specials(e, s, n, true, s_gap_plain, false)
                 : s_encode_segment(e, s, n);
    free(norm);
    return rc;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool parse_special,
                     int32_t **ids, int64_t *n_ids) {
    if (!ids || !n_ids) return tis_error(TIS_EINVAL, "tokenizer_encode: NULL output");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (len && !text)) return tis_error(TIS_EINVAL, "tokenizer_encode: NULL argument");
    if (len >= INT32_MAX)
        return tis_error(TIS_ERANGE, "tokenizer_encode: %zu bytes of text is too long", len);
    encoder e = {.t = t};
    int rc = parse_special && t->n_specials > t->n_late
                 ? s_split_specials(&e, text, len, false, s_gap_normalise, true)
                 : s_gap_normalise(&e, text, len, parse_special);
    free(e.sym), free(e.prev), free(e.next), free(e.heap), free(e.mapped);
    if (rc) {
        free(e.ids);
        return rc;
    }
    if (!e.ids) { /* empty text: still hand back a buffer the caller can free */
        e.ids = malloc(sizeof *e.ids);
        if (!e.ids) return tis_error(TIS_ENOMEM, "tokenizer_encode: out of memory");
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return 0;
}
