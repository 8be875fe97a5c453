/* tokenizer: building the tables (vocabulary hash, merge ranks, special
 * tokens, decoded bytes), decoding and the accessors. Encoding is in
 * tokenizer_encode.c, the file formats in tokenizer_load.c. */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#include "unicode.h"
#include "rng.h"

/* FNV-1a: pieces are short, and this is only used at load and lookup. */
static uint64_t s_hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static uint64_t s_hash_u64(uint64_t x) { return tis_mix64(x); }

static size_t s_pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static size_t s_piece_len(const tokenizer *t, int32_t id) {
    return t->piece_off[id + 1] - t->piece_off[id] - 1;
}

int32_t tok_find_bytes(const tokenizer *t, const char *p, size_t n) {
    size_t mask = t->piece_cap - 1;
    for (size_t h = s_hash_bytes(p, n) & mask;; h = (h + 1) & mask) {
        int32_t id = t->piece_map[h];
        if (id < 0) return -1;
        if (s_piece_len(t, id) == n && memcmp(t->pieces + t->piece_off[id], p, n) == 0)
            return id;
    }
}

const tok_merge *tok_merge_find(const tokenizer *t, int32_t left, int32_t right) {
    if (!t->merge_cap) return NULL;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = t->merge_cap - 1;
    for (size_t h = s_hash_u64(key) & mask;; h = (h + 1) & mask) {
        const tok_merge *m = &t->merges[h];
        if (m->key == key) return m;
        if (m->key == TOK_MERGE_EMPTY) return NULL;
    }
}

/* Copies the pieces and fills the piece -> id map. A piece listed twice
 * keeps its first id (some GGUF vocabularies repeat unused pieces). */
static int s_build_pieces(tokenizer *t, const tok_spec *s) {
    size_t total = 0;
    for (int64_t i = 0; i < s->n_vocab; i++) {
        if (s->pieces[i].len > (1u << 20) || (s->pieces[i].len && !s->pieces[i].ptr))
            return tis_error(TIS_EFORMAT, "tokenizer: token %lld is %llu bytes long",
                             (long long)i, (unsigned long long)s->pieces[i].len);
        total += s->pieces[i].len + 1;
    }
    t->pieces = malloc(total);
    t->piece_off = malloc(((size_t)s->n_vocab + 1) * sizeof *t->piece_off);
    t->piece_cap = s_pow2_at_least((size_t)s->n_vocab * 2);
    t->piece_map = malloc(t->piece_cap * sizeof *t->piece_map);
    if (!t->pieces || !t->piece_off || !t->piece_map)
        return tis_error(TIS_ENOMEM, "tokenizer: out of memory for %lld tokens",
                         (long long)s->n_vocab);
    memset(t->piece_map, 0xFF, t->piece_cap * sizeof *t->piece_map);
    size_t off = 0;
    for (int64_t i = 0; i < s->n_vocab; i++) {
        t->piece_off[i] = off;
        if (s->pieces[i].len) memcpy(t->pieces + off, s->pieces[i].ptr, s->pieces[i].len);
        off += s->pieces[i].len;
        t->pieces[off++] = 0;
    }
    t->piece_off[s->n_vocab] = off;
    t->n_vocab = s->n_vocab;
    size_t mask = t->piece_cap - 1;
    for (int32_t id = 0; id < (int32_t)s->n_vocab; id++) {
        const char *p = t->pieces + t->piece_off[id];
        size_t n = s_piece_len(t, id);
        size_t h = s_hash_bytes(p, n) & mask;
        for (; t->piece_map[h] >= 0; h = (h + 1) & mask) {
            int32_t o = t->piece_map[h];
            if (s_piece_len(t, o) == n && memcmp(t->pieces + t->piece_off[o], p, n) == 0)
                break;
        }
        if (t->piece_map[h] < 0) t->piece_map[h] = id;
    }
    return 0;
}

static int s_build_types(tokenizer *t, const tok_spec *s) {
    t->types = malloc((size_t)s->n_vocab);
    if (!t->types) return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    for (int64_t i = 0; i < s->n_vocab; i++) {
        int32_t ty = s->types ? s->types[i] : TOK_TYPE_NORMAL;
        if (ty < 0 || ty > TOK_TYPE_BYTE)
            return tis_error(TIS_EFORMAT, "tokenizer: token %lld ('%s') has type %d, "
                             "not 0..6", (long long)i, tokenizer_piece(t, (int32_t)i), ty);
        t->types[i] = (uint8_t)(ty == 0 ? TOK_TYPE_NORMAL : ty);
    }
    return 0;
}

static int s_build_merges(tokenizer *t, const tok_spec *s) {
    if (s->n_merges <= 0) return 0;
    if (s->n_merges > INT32_MAX / 4)
        return tis_error(TIS_EFORMAT, "tokenizer: %lld merges is implausible",
                         (long long)s->n_merges);
    size_t max_len = 0; /* both halves of a merge are pieces: bounds the join */
    for (int32_t id = 0; id < (int32_t)t->n_vocab; id++)
        if (s_piece_len(t, id) > max_len) max_len = s_piece_len(t, id);
    t->merge_cap = s_pow2_at_least((size_t)s->n_merges * 2);
    t->merges = malloc(t->merge_cap * sizeof *t->merges);
    char *cat = malloc(2 * max_len + 1);
    if (!t->merges || !cat) {
        free(cat);
        return tis_error(TIS_ENOMEM, "tokenizer: out of memory for %lld merges",
                         (long long)s->n_merges);
    }
    for (size_t i = 0; i < t->merge_cap; i++) t->merges[i].key = TOK_MERGE_EMPTY;
    size_t mask = t->merge_cap - 1;
    int rc = 0;
    for (int64_t r = 0; r < s->n_merges; r++) {
        gguf_str a = s->merge_left[r], b = s->merge_right[r];
        int32_t ia = a.len <= max_len ? tok_find_bytes(t, a.ptr, a.len) : -1;
        int32_t ib = b.len <= max_len ? tok_find_bytes(t, b.ptr, b.len) : -1;
        if (ia < 0 || ib < 0) {
            gguf_str bad = ia < 0 ? a : b;
            int shown = bad.len > 64 ? 64 : (int)bad.len;
            rc = tis_error(TIS_EFORMAT, "tokenizer: merge %lld: '%.*s' is not in the "
                           "vocabulary", (long long)r, shown, bad.ptr);
            break;
        }
        memcpy(cat, a.ptr, a.len);
        memcpy(cat + a.len, b.ptr, b.len);
        int32_t id = tok_find_bytes(t, cat, a.len + b.len);
        if (id < 0) {
            rc = tis_error(TIS_EFORMAT, "tokenizer: merge %lld '%s %s': the result is "
                           "not in the vocabulary", (long long)r, tokenizer_piece(t, ia),
                           tokenizer_piece(t, ib));
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        size_t h = s_hash_u64(key) & mask;
        while (t->merges[h].key != TOK_MERGE_EMPTY && t->merges[h].key != key)
            h = (h + 1) & mask;
        if (t->merges[h].key == key) continue; /* a repeated rule keeps its first rank */
        t->merges[h] = (tok_merge){.key = key, .rank = (int32_t)r, .id = id};
    }
    free(cat);
    return rc;
}

/* What each token decodes to: added tokens (CONTROL, USER_DEFINED) are
 * literal text; the others are GPT-2-mapped bytes, mapped back. A code
 * point outside the byte mapping is kept as its own UTF-8. */
static int s_build_bytes(tokenizer *t) {
    size_t total = t->piece_off[t->n_vocab]; /* decoded is never longer */
    t->bytes = malloc(total ? total : 1);
    t->bytes_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->bytes_off);
    if (!t->bytes || !t->bytes_off) return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    size_t o = 0;
    for (int32_t id = 0; id < (int32_t)t->n_vocab; id++) {
        t->bytes_off[id] = o;
        const char *p = t->pieces + t->piece_off[id];
        size_t n = s_piece_len(t, id);
        bool literal = t->types[id] == TOK_TYPE_CONTROL || t->types[id] == TOK_TYPE_USER_DEFINED;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = unicode_utf8_decode(p + i, n - i, &cp);
            int b = literal ? -1 : unicode_cpt_to_byte(cp);
            if (b >= 0) {
                t->bytes[o++] = (char)b;
            } else {
                memcpy(t->bytes + o, p + i, l);
                o += l;
            }
            i += l;
        }
    }
    t->bytes_off[t->n_vocab] = o;
    return 0;
}

typedef struct special_key {
    size_t len;
    int32_t id;
} special_key;

static int s_cmp_special(const void *a, const void *b) { /* longest, then lowest id */
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool s_is_added(const tokenizer *t, int32_t id) {
    return (t->types[id] == TOK_TYPE_CONTROL || t->types[id] == TOK_TYPE_USER_DEFINED) &&
           s_piece_len(t, id) > 0;
}

static int s_build_specials(tokenizer *t, const tok_spec *s) {
    int64_t n = 0;
    for (int32_t id = 0; id < (int32_t)t->n_vocab; id++) n += s_is_added(t, id);
    special_key *keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    t->specials = malloc((size_t)(n ? n : 1) * sizeof *t->specials);
    t->special_late = calloc((size_t)(n ? n : 1), 1);
    if (!keys || !t->specials || !t->special_late) {
        free(keys);
        return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    }
    int64_t k = 0;
    for (int32_t id = 0; id < (int32_t)t->n_vocab; id++)
        if (s_is_added(t, id)) {
            keys[k++] = (special_key){.len = s_piece_len(t, id), .id = id};
            bool late = s->normalized && s->normalized[id];
            t->special_first[(uint8_t)t->pieces[t->piece_off[id]]] |= late ? 2 : 1;
        }
    /* Longest first, so the first match at a position is the longest. */
    qsort(keys, (size_t)n, sizeof *keys, s_cmp_special);
    for (int64_t i = 0; i < n; i++) {
        t->specials[i] = keys[i].id;
        t->special_late[i] = s->normalized && s->normalized[keys[i].id];
        t->n_late += t->special_late[i];
    }
    t->n_specials = n;
    free(keys);
    return 0;
}

static void s_add_eog(tokenizer *t, int32_t id) {
    if (id < 0 || t->n_eog == TOK_MAX_EOG) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    t->eog[t->n_eog++] = id;
}

static int s_check_id(const tok_spec *s, int32_t id, const char *what) {
    if (id < -1 || id >= s->n_vocab)
        return tis_error(TIS_EFORMAT, "tokenizer: %s id %d is outside the vocabulary "
                         "(%lld tokens)", what, id, (long long)s->n_vocab);
    return 0;
}

int tok_build(tokenizer **out, const tok_spec *s) {
    *out = NULL;
    if (s->kind != TOK_KIND_BYTE_BPE)
        return tis_error(TIS_EUNSUPPORTED, "tokenizer: only byte-level BPE is supported "
                         "(SentencePiece-style vocabularies are not yet)");
    if (s->n_vocab <= 0 || s->n_vocab > TOK_MAX_VOCAB)
        return tis_error(TIS_EFORMAT, "tokenizer: vocabulary of %lld tokens (want 1..%d)",
                         (long long)s->n_vocab, TOK_MAX_VOCAB);
    int rc;
    if ((rc = s_check_id(s, s->bos, "bos")) || (rc = s_check_id(s, s->eos, "eos")) ||
        (rc = s_check_id(s, s->unk, "unknown")) || (rc = s_check_id(s, s->pad, "padding")) ||
        (rc = s_check_id(s, s->eot, "eot")) || (rc = s_check_id(s, s->byte_unk, "unk_token")))
        return rc;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    t->kind = s->kind;
    t->pre = s->pre;
    t->ignore_merges = s->ignore_merges;
    t->add_bos = s->add_bos;
    t->nfc = s->nfc;
    t->bos = s->bos, t->eos = s->eos, t->unk = s->unk, t->pad = s->pad;
    t->byte_unk = s->byte_unk;
    if ((rc = s_build_pieces(t, s)) || (rc = s_build_types(t, s)) ||
        (rc = s_build_merges(t, s)) || (rc = s_build_bytes(t)) || (rc = s_build_specials(t, s)))
        goto fail;
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t l = unicode_utf8_encode(unicode_byte_to_cpt((uint8_t)b), u);
        t->byte_id[b] = tok_find_bytes(t, u, l);
    }
    /* End of generation: eos, eot, and the end-of-turn markers chat
     * templates close messages with, where the vocabulary has them. */
    s_add_eog(t, s->eos);
    s_add_eog(t, s->eot);
    static const char *const eog_names[] = {
        "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|end_of_text|>",
        "<|end|>", "<end_of_turn>", "<|return|>",
    };
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++)
        s_add_eog(t, tokenizer_find(t, eog_names[i]));
    if (s->chat_template.ptr) {
        t->chat_template = malloc(s->chat_template.len + 1);
        if (!t->chat_template) {
            rc = tis_error(TIS_ENOMEM, "tokenizer: out of memory");
            goto fail;
        }
        memcpy(t->chat_template, s->chat_template.ptr, s->chat_template.len);
        t->chat_template[s->chat_template.len] = 0;
    }
    *out = t;
    return 0;
fail:
    tokenizer_destroy(&t);
    return rc;
}

void tokenizer_destroy(tokenizer **p) {
    if (!p || !*p) return;
    tokenizer *t = *p;
    free(t->pieces);
    free(t->piece_off);
    free(t->bytes);
    free(t->bytes_off);
    free(t->types);
    free(t->piece_map);
    free(t->merges);
    free(t->specials);
    free(t->special_late);
    free(t->chat_template);
    free(t);
    *p = NULL;
}

static bool s_valid_id(const tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab;
}

int tokenizer_decode(const tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                     char **text, size_t *len) {
    if (!text) return tis_error(TIS_EINVAL, "tokenizer_decode: NULL output");
    *text = NULL;
    if (len) *len = 0;
    if (!t || n < 0 || (n > 0 && !ids))
        return tis_error(TIS_EINVAL, "tokenizer_decode: bad arguments");
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!s_valid_id(t, ids[i]))
            return tis_error(TIS_ERANGE, "tokenizer_decode: id %d at position %lld is "
                             "outside the vocabulary (%lld tokens)", ids[i], (long long)i,
                             (long long)t->n_vocab);
        if (skip_special && t->types[ids[i]] == TOK_TYPE_CONTROL) continue;
        total += t->bytes_off[ids[i] + 1] - t->bytes_off[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return tis_error(TIS_ENOMEM, "tokenizer_decode: out of memory (%zu bytes)", total);
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        if (skip_special && t->types[ids[i]] == TOK_TYPE_CONTROL) continue;
        size_t b = t->bytes_off[ids[i]], e = t->bytes_off[ids[i] + 1];
        memcpy(out + o, t->bytes + b, e - b);
        o += e - b;
    }
    out[o] = 0;
    *text = out;
    if (len) *len = o;
    return 0;
}

int64_t tokenizer_token_bytes(const tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!s_valid_id(t, id))
        return tis_error(TIS_ERANGE, "tokenizer: id %d is outside the vocabulary", id);
    size_t b = t->bytes_off[id], n = t->bytes_off[id + 1] - b;
    if (buf) memcpy(buf, t->bytes + b, n < cap ? n : cap);
    return (int64_t)n;
}

int64_t tokenizer_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }

const char *tokenizer_piece(const tokenizer *t, int32_t id) {
    return s_valid_id(t, id) ? t->pieces + t->piece_off[id] : NULL;
}

int tokenizer_token_type(const tokenizer *t, int32_t id) {
    if (!s_valid_id(t, id))
        return tis_error(TIS_ERANGE, "tokenizer: id %d is outside the vocabulary", id);
    return t->types[id];
}

int32_t tokenizer_find(const tokenizer *t, const char *piece) {
    return t && piece ? tok_find_bytes(t, piece, strlen(piece)) : -1;
}

int32_t tokenizer_bos(const tokenizer *t) { return t ? t->bos : -1; }
int32_t tokenizer_eos(const tokenizer *t) { return t ? t->eos : -1; }
bool tokenizer_add_bos(const tokenizer *t) { return t && t->add_bos && t->bos >= 0; }

bool tokenizer_is_eog(const tokenizer *t, int32_t id) {
    if (!s_valid_id(t, id)) return false;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

const char *tokenizer_chat_template(const tokenizer *t) { return t ? t->chat_template : NULL; }
