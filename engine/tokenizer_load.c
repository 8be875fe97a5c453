/* tokenizer_load: builds a tokenizer from GGUF metadata or from a Hugging
 * Face tokenizer.json (+ a sibling tokenizer_config.json).
 *
 * GGUF keys read: tokenizer.ggml.model ("gpt2"), .pre, .tokens (str[]),
 * .token_type (i32[], optional), .merges (str[] "left right"),
 * .bos/.eos/.unknown/.padding/.eot_token_id, .add_bos_token,
 * tokenizer.chat_template.
 * tokenizer.json: model {type "BPE", vocab {piece: id}, merges ["a b"] or
 * [["a","b"]], unk_token, ignore_merges, byte_fallback}, added_tokens
 * [{id, content, special, normalized}], normalizer (null or NFC),
 * pre_tokenizer, post_processor. GGUF files carry no normalizer: text is
 * encoded as given (as llama.cpp does). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#include "tokenizer_impl.h"

/* The Split regexes of HF Llama-3 and Qwen2 tokenizer.json files. */
static const char s_llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char s_qwen2_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* llama.cpp tokenizer.ggml.pre names -> family. Several names share one
 * regex set in llama.cpp (starcoder, refact, command-r use SmolLM's), and
 * "default" is the adapted Llama-3 regex there. */
static const struct {
    const char *name;
    tok_pre pre;
    bool ignore_merges;
} s_pre_names[] = {
    {"gpt2", TOK_PRE_GPT2, false},       {"gpt-2", TOK_PRE_GPT2, false},
    {"smollm", TOK_PRE_SMOLLM, false},   {"starcoder", TOK_PRE_SMOLLM, false},
    {"refact", TOK_PRE_SMOLLM, false},   {"command-r", TOK_PRE_SMOLLM, false},
    {"llama-bpe", TOK_PRE_LLAMA3, true}, {"llama3", TOK_PRE_LLAMA3, true},
    {"llama-v3", TOK_PRE_LLAMA3, true},  {"default", TOK_PRE_LLAMA3, false},
    {"qwen2", TOK_PRE_QWEN2, false},
};

static int s_pre_from_name(const char *name, size_t len, tok_spec *s) {
    for (size_t i = 0; i < sizeof s_pre_names / sizeof s_pre_names[0]; i++)
        if (strlen(s_pre_names[i].name) == len && memcmp(s_pre_names[i].name, name, len) == 0) {
            s->pre = s_pre_names[i].pre;
            s->ignore_merges = s_pre_names[i].ignore_merges;
            return 0;
        }
    return tis_error(TIS_EUNSUPPORTED, "tokenizer: pre-tokenizer '%.*s' is not supported "
                     "(known: gpt2, smollm, llama-bpe, qwen2, default, starcoder, refact, "
                     "command-r)", (int)(len > 64 ? 64 : len), name);
}

/* Splits a "left right" merge at its first space after the first byte. */
static int s_split_merge(gguf_str m, int64_t r, gguf_str *l, gguf_str *rt) {
    const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
    if (!sp)
        return tis_error(TIS_EFORMAT, "tokenizer: merge %lld '%.*s' is not 'left right'",
                         (long long)r, (int)(m.len > 64 ? 64 : m.len), m.ptr);
    *l = (gguf_str){.ptr = m.ptr, .len = (uint64_t)(sp - m.ptr)};
    *rt = (gguf_str){.ptr = sp + 1, .len = m.len - l->len - 1};
    return 0;
}

/* ---- GGUF ---------------------------------------------------------------- */

/* An optional id key: -1 when absent. */
static int s_gguf_id(const gguf_file *g, const char *key, int32_t *out) {
    int64_t v;
    int rc = gguf_get_i64(g, key, &v);
    *out = -1;
    if (rc == TIS_ENOTFOUND) return 0;
    if (rc) return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return tis_error(TIS_EFORMAT, "tokenizer: %s = %lld is not a token id", key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

int tokenizer_from_gguf(tokenizer **out, const gguf_file *g) {
    if (!out) return tis_error(TIS_EINVAL, "tokenizer_from_gguf: NULL output");
    *out = NULL;
    if (!g) return tis_error(TIS_EINVAL, "tokenizer_from_gguf: NULL file");
    tok_spec s = {.kind = TOK_KIND_BYTE_BPE, .byte_unk = -1};
    gguf_str model, pre;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc == TIS_ENOTFOUND)
        return tis_error(TIS_ENOTFOUND, "tokenizer: the model file has no tokenizer "
                         "(tokenizer.ggml.model is missing)");
    if (rc) return rc;
    if (gguf_str_eq(model, "llama"))
        return tis_error(TIS_EUNSUPPORTED, "tokenizer: SentencePiece tokenizers "
                         "(tokenizer.ggml.model 'llama') are not supported yet");
    if (!gguf_str_eq(model, "gpt2"))
        return tis_error(TIS_EUNSUPPORTED, "tokenizer: tokenizer.ggml.model '%.*s' is not "
                         "supported (only 'gpt2')", (int)(model.len > 64 ? 64 : model.len),
                         model.ptr);
    rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    if (rc == TIS_ENOTFOUND) pre = (gguf_str){.ptr = "default", .len = 7};
    else if (rc) return rc;
    if ((rc = s_pre_from_name(pre.ptr, pre.len, &s))) return rc;

    const gguf_value *tokens, *types = NULL, *merges = NULL;
    if ((rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STR, &tokens))) return rc;
    if (tokens->arr.n == 0 || tokens->arr.n > TOK_MAX_VOCAB)
        return tis_error(TIS_EFORMAT, "tokenizer: tokenizer.ggml.tokens has %llu entries "
                         "(want 1..%d)", (unsigned long long)tokens->arr.n, TOK_MAX_VOCAB);
    s.n_vocab = (int64_t)tokens->arr.n;
    s.pieces = tokens->arr.strs;
    rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_I32, &types);
    if (rc && rc != TIS_ENOTFOUND) return rc;
    if (!rc && types->arr.n != tokens->arr.n)
        return tis_error(TIS_EFORMAT, "tokenizer: %llu token types for %llu tokens",
                         (unsigned long long)types->arr.n, (unsigned long long)tokens->arr.n);
    rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STR, &merges);
    if (rc == TIS_ENOTFOUND)
        return tis_error(TIS_EFORMAT, "tokenizer: a 'gpt2' tokenizer needs "
                         "tokenizer.ggml.merges, which is missing");
    if (rc) return rc;
    if (merges->arr.n > (uint64_t)INT32_MAX / 4)
        return tis_error(TIS_EFORMAT, "tokenizer: %llu merges is implausible",
                         (unsigned long long)merges->arr.n);
    s.n_merges = (int64_t)merges->arr.n;
    if ((rc = s_gguf_id(g, "tokenizer.ggml.bos_token_id", &s.bos)) ||
        (rc = s_gguf_id(g, "tokenizer.ggml.eos_token_id", &s.eos)) ||
        (rc = s_gguf_id(g, "tokenizer.ggml.unknown_token_id", &s.unk)) ||
        (rc = s_gguf_id(g, "tokenizer.ggml.padding_token_id", &s.pad)) ||
        (rc = s_gguf_id(g, "tokenizer.ggml.eot_token_id", &s.eot)))
        return rc;
    rc = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &s.add_bos);
    if (rc && rc != TIS_ENOTFOUND) return rc;
    rc = gguf_get_str(g, "tokenizer.chat_template", &s.chat_template);
    if (rc == TIS_ENOTFOUND) s.chat_template.ptr = NULL;
    else if (rc) return rc;

    int32_t *ty = NULL;
    gguf_str *ml = malloc((size_t)(s.n_merges ? s.n_merges : 1) * 2 * sizeof *ml);
    if (types) ty = malloc((size_t)s.n_vocab * sizeof *ty);
    if (!ml || (types && !ty)) {
        rc = tis_error(TIS_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    if (types) memcpy(ty, types->arr.data, (size_t)s.n_vocab * sizeof *ty); /* unaligned */
    s.types = ty;
    s.merge_left = ml;
    s.merge_right = ml + s.n_merges;
    for (int64_t r = 0; r < s.n_merges && !rc; r++)
        rc = s_split_merge(merges->arr.strs[r], r, &ml[r], &ml[s.n_merges + r]);
    if (!rc) rc = tok_build(out, &s);
done:
    free(ml);
    free(ty);
    return rc;
}

/* ---- tokenizer.json ------------------------------------------------------ */

static char *s_read_text(const char *path, size_t *len, int *rc) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) {
        *rc = tis_error(TIS_EIO, "tokenizer: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || n > (1L << 30) || fseek(f, 0, SEEK_SET) != 0) {
        *rc = tis_error(TIS_EIO, "tokenizer: cannot size %s (or over 1 GiB)", path);
    } else if (!(buf = malloc((size_t)n + 1))) {
        *rc = tis_error(TIS_ENOMEM, "tokenizer: out of memory reading %s", path);
    } else if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        *rc = tis_error(TIS_EIO, "tokenizer: short read from %s", path);
        free(buf);
        buf = NULL;
    } else {
        buf[n] = 0;
        *len = (size_t)n;
        *rc = 0;
    }
    fclose(f);
    return buf;
}

static cJSON *s_parse_json(const char *path, int *rc) {
    size_t len = 0;
    char *text = s_read_text(path, &len, rc);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        *rc = tis_error(TIS_EFORMAT, "tokenizer: %s is not valid JSON (near byte %lld)", path,
                        at ? (long long)(at - text) : -1LL);
    } else if (!cJSON_IsObject(root)) {
        *rc = tis_error(TIS_EFORMAT, "tokenizer: %s is not a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

static gguf_str s_view(const char *s) { return (gguf_str){.ptr = s, .len = strlen(s)}; }

static const char *s_json_type(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "";
}

static bool s_json_flag(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Maps the HF pre_tokenizer onto a tok_pre family. */
static int s_json_pre(const cJSON *p, tok_spec *s) {
    const char *ty = s_json_type(p);
    if (strcmp(ty, "ByteLevel") == 0 && s_json_flag(p, "use_regex", true) &&
        !s_json_flag(p, "add_prefix_space", false)) {
        s->pre = TOK_PRE_GPT2;
        return 0;
    }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    if (strcmp(ty, "Sequence") == 0 && cJSON_GetArraySize(seq) == 2) {
        const cJSON *a = cJSON_GetArrayItem(seq, 0), *b = cJSON_GetArrayItem(seq, 1);
        bool b_bytelevel = strcmp(s_json_type(b), "ByteLevel") == 0 &&
                           !s_json_flag(b, "add_prefix_space", false);
        if (strcmp(s_json_type(a), "Digits") == 0 && s_json_flag(a, "individual_digits", false) &&
            b_bytelevel && s_json_flag(b, "use_regex", true)) {
            s->pre = TOK_PRE_SMOLLM;
            return 0;
        }
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(a, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(a, "behavior");
        if (strcmp(s_json_type(a), "Split") == 0 && cJSON_IsString(rx) &&
            cJSON_IsString(beh) && strcmp(beh->valuestring, "Isolated") == 0 && b_bytelevel &&
            !s_json_flag(b, "use_regex", true)) {
            if (strcmp(rx->valuestring, s_llama3_regex) == 0) {
                s->pre = TOK_PRE_LLAMA3;
                return 0;
            }
            if (strcmp(rx->valuestring, s_qwen2_regex) == 0) {
                s->pre = TOK_PRE_QWEN2;
                return 0;
            }
        }
    }
    char *txt = cJSON_PrintUnformatted(p);
    int rc = tis_error(TIS_EUNSUPPORTED, "tokenizer: pre_tokenizer %.200s is not supported "
                       "(known: ByteLevel, Digits+ByteLevel, the Llama-3 and Qwen2 Split "
                       "regexes)", txt ? txt : ty);
    free(txt);
    return rc;
}

/* A special-token entry of tokenizer_config.json: "<s>" or {"content": "<s>"}. */
static const char *s_config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The slots the ids are gathered into while parsing tokenizer.json. */
typedef struct json_vocab {
    int64_t n;
    gguf_str *pieces; /* [n] views into the cJSON tree; .ptr NULL = unassigned */
    int32_t *types;   /* [n] */
    uint8_t *normalized; /* [n] added tokens' "normalized" flag (0 for the rest) */
} json_vocab;

static int s_vocab_put(json_vocab *v, const cJSON *idv, const char *piece, int32_t type) {
    double d = cJSON_IsNumber(idv) ? idv->valuedouble : -1;
    if (!(d >= 0 && d < v->n) || d != (double)(int64_t)d)
        return tis_error(TIS_EFORMAT, "tokenizer: token '%.64s' has a bad id", piece);
    int64_t id = (int64_t)d;
    if (v->pieces[id].ptr && strcmp(v->pieces[id].ptr, piece) != 0)
        return tis_error(TIS_EFORMAT, "tokenizer: id %lld is both '%.64s' and '%.64s'",
                         (long long)id, v->pieces[id].ptr, piece);
    v->pieces[id] = s_view(piece);
    if (type != TOK_TYPE_NORMAL) v->types[id] = type;
    return 0;
}

static int s_json_vocab(const cJSON *vocab, const cJSON *added, json_vocab *v) {
    if (!cJSON_IsObject(vocab))
        return tis_error(TIS_EFORMAT, "tokenizer: model.vocab is not an object");
    double max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (cJSON_IsNumber(it) && it->valuedouble > max_id) max_id = it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > max_id) max_id = id->valuedouble;
    }
    if (!(max_id >= 0 && max_id < TOK_MAX_VOCAB))
        return tis_error(TIS_EFORMAT, "tokenizer: largest token id %.0f (want 0..%d)", max_id,
                         TOK_MAX_VOCAB - 1);
    v->n = (int64_t)max_id + 1;
    v->pieces = calloc((size_t)v->n, sizeof *v->pieces);
    v->types = malloc((size_t)v->n * sizeof *v->types);
    v->normalized = calloc((size_t)v->n, 1);
    if (!v->pieces || !v->types || !v->normalized) return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    for (int64_t i = 0; i < v->n; i++) v->types[i] = TOK_TYPE_NORMAL;
    int rc = 0;
    cJSON_ArrayForEach(it, vocab) {
        if ((rc = s_vocab_put(v, it, it->string, TOK_TYPE_NORMAL))) return rc;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (rc) return rc;
        if (!cJSON_IsString(c))
            return tis_error(TIS_EFORMAT, "tokenizer: an added_tokens entry has no content");
        bool special = s_json_flag(it, "special", false);
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(it, "id");
        rc = s_vocab_put(v, idv, c->valuestring,
                         special ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED);
        /* HF requires the field; when it is missing, AddedToken's own
         * default (normalized = !special) */
        if (!rc) v->normalized[(int64_t)idv->valuedouble] = s_json_flag(it, "normalized", !special);
    }
    for (int64_t i = 0; i < v->n && !rc; i++)
        if (!v->pieces[i].ptr)
            rc = tis_error(TIS_EFORMAT, "tokenizer: no token has id %lld (ids must be "
                           "0..%lld without gaps)", (long long)i, (long long)v->n - 1);
    return rc;
}

static int s_json_merges(const cJSON *merges, tok_spec *s, gguf_str **store) {
    int n = cJSON_GetArraySize(merges);
    if (merges && !cJSON_IsArray(merges))
        return tis_error(TIS_EFORMAT, "tokenizer: model.merges is not an array");
    *store = malloc((size_t)(n ? n : 1) * 2 * sizeof **store);
    if (!*store) return tis_error(TIS_ENOMEM, "tokenizer: out of memory");
    gguf_str *l = *store, *r = *store + n;
    int64_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        int rc = 0;
        if (cJSON_IsString(m)) {
            rc = s_split_merge(s_view(m->valuestring), i, &l[i], &r[i]);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            l[i] = s_view(cJSON_GetArrayItem(m, 0)->valuestring);
            r[i] = s_view(cJSON_GetArrayItem(m, 1)->valuestring);
        } else {
            rc = tis_error(TIS_EFORMAT, "tokenizer: merge %lld is neither \"a b\" nor [a, b]",
                           (long long)i);
        }
        if (rc) return rc;
        i++;
    }
    s->n_merges = n;
    s->merge_left = l;
    s->merge_right = r;
    return 0;
}

/* bos/eos/pad/unk, add_bos_token and chat_template from the config. */
static int s_json_config(const cJSON *cfg, const tokenizer *t, tok_spec *s) {
    static const struct { const char *key; size_t off; } ids[] = {
        {"bos_token", offsetof(tok_spec, bos)}, {"eos_token", offsetof(tok_spec, eos)},
        {"pad_token", offsetof(tok_spec, pad)}, {"unk_token", offsetof(tok_spec, unk)},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const char *piece = s_config_token(cfg, ids[i].key);
        if (!piece) continue;
        int32_t id = tokenizer_find(t, piece);
        if (id < 0)
            return tis_error(TIS_EFORMAT, "tokenizer: tokenizer_config.json %s '%.64s' is "
                             "not in the vocabulary", ids[i].key, piece);
        *(int32_t *)((char *)s + ids[i].off) = id;
    }
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    if (cJSON_IsBool(ab)) s->add_bos = cJSON_IsTrue(ab);
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsArray(tpl)) { /* [{name, template}]: the "default" one */
        const cJSON *it, *pick = NULL;
        cJSON_ArrayForEach(it, tpl) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(nm) && strcmp(nm->valuestring, "default") == 0) pick = it;
        }
        tpl = pick ? cJSON_GetObjectItemCaseSensitive(pick, "template") : NULL;
    }
    if (cJSON_IsString(tpl)) s->chat_template = s_view(tpl->valuestring);
    return 0;
}

/* A TemplateProcessing post-processor that starts with a special token
 * means the HF tokenizer prepends it (Llama-3's <|begin_of_text|>). */
static const char *s_json_post_bos(const cJSON *pp) {
    if (strcmp(s_json_type(pp), "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            const char *b = s_json_post_bos(it);
            if (b) return b;
        }
        return NULL;
    }
    if (strcmp(s_json_type(pp), "TemplateProcessing") != 0) return NULL;
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static char *s_sibling_path(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(dir + strlen(name) + 1);
    if (p) {
        memcpy(p, path, dir);
        strcpy(p + dir, name);
    }
    return p;
}

int tokenizer_from_json(tokenizer **out, const char *path) {
    if (!out) return tis_error(TIS_EINVAL, "tokenizer_from_json: NULL output");
    *out = NULL;
    if (!path) return tis_error(TIS_EINVAL, "tokenizer_from_json: NULL path");
    int rc = 0;
    cJSON *root = s_parse_json(path, &rc), *cfg = NULL;
    if (!root) return rc;
    json_vocab v = {0};
    gguf_str *merge_store = NULL;
    tokenizer *t = NULL;
    char *cfg_path = NULL;
    tok_spec s = {.kind = TOK_KIND_BYTE_BPE, .bos = -1, .eos = -1, .unk = -1, .pad = -1,
                  .eot = -1, .byte_unk = -1};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = s_json_type(model);
    if (!cJSON_IsObject(model)) {
        rc = tis_error(TIS_EFORMAT, "tokenizer: %s has no \"model\" object", path);
    } else if (mtype[0] && strcmp(mtype, "BPE") != 0) {
        rc = tis_error(TIS_EUNSUPPORTED, "tokenizer: model type '%.32s' is not supported "
                       "(only BPE)", mtype);
    } else if (s_json_flag(model, "byte_fallback", false)) {
        rc = tis_error(TIS_EUNSUPPORTED, "tokenizer: byte_fallback BPE (SentencePiece "
                       "style) is not supported yet");
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    /* NFC (Qwen2) is applied by tokenizer_encode (tokenizer_encode.c says
     * how it meets the added tokens); other normalizers are refused. */
    s.nfc = norm && strcmp(s_json_type(norm), "NFC") == 0;
    if (!rc && norm && !cJSON_IsNull(norm) && !s.nfc)
        rc = tis_error(TIS_EUNSUPPORTED, "tokenizer: normalizer '%.32s' is not supported",
                       s_json_type(norm));
    if (!rc) rc = s_json_pre(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &s);
    if (!rc) s.ignore_merges = s_json_flag(model, "ignore_merges", false);
    if (!rc)
        rc = s_json_vocab(cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                          cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &v);
    if (!rc) rc = s_json_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"), &s,
                                &merge_store);
    if (rc) goto done;
    s.n_vocab = v.n;
    s.pieces = v.pieces;
    s.types = v.types;
    s.normalized = v.normalized;
    /* Build once without the ids to resolve pieces, then with them. */
    tok_spec plain = s;
    plain.n_merges = 0;
    if ((rc = tok_build(&t, &plain))) goto done;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) s.unk = s.byte_unk = tokenizer_find(t, unk->valuestring);
    const char *post_bos = s_json_post_bos(cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if (post_bos && tokenizer_find(t, post_bos) >= 0) {
        s.bos = tokenizer_find(t, post_bos);
        s.add_bos = true;
    }
    cfg_path = s_sibling_path(path, "tokenizer_config.json");
    if (!cfg_path) {
        rc = tis_error(TIS_ENOMEM, "tokenizer: out of memory");
        goto done;
    }
    FILE *probe = fopen(cfg_path, "rb");
    if (probe) {
        fclose(probe);
        if (!(cfg = s_parse_json(cfg_path, &rc))) goto done;
        if ((rc = s_json_config(cfg, t, &s))) goto done;
    }
    tokenizer_destroy(&t);
    rc = tok_build(out, &s);
done:
    tokenizer_destroy(&t);
    free(cfg_path);
    free(merge_store);
    free(v.pieces);
    free(v.types);
    free(v.normalized);
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return rc;
}
