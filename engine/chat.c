/* chat: recognises a chat template family by its markers and renders it
 * natively. The renderers reproduce what the Jinja templates of each
 * family produce; the beginning-of-text token is not written (the caller
 * adds it when tokenizer_add_bos() says so). */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "tis_error.h"

/* A growable string; every append is checked. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int err;
} sbuf;

static void s_put(sbuf *b, const char *s, size_t n) {
    if (b->err) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = tis_error(TIS_ENOMEM, "chat: out of memory (%zu bytes)", cap);
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void s_puts(sbuf *b, const char *s) { s_put(b, s, strlen(s)); }

/* Finds the default system prompt of a ChatML template: the text of a
 * string literal '<|im_start|>system\n...<|im_end|>' (the branch taken when
 * the conversation has no system message). Occurrences that are followed by
 * an expression (' + messages[0]['content'] + ') are skipped because the
 * literal's closing quote comes before <|im_end|>. Returns a malloc'd,
 * unescaped string, "" when there is none, or NULL on out of memory. */
static char *s_chatml_default_system(const char *jinja) {
    static const char head[] = "<|im_start|>system";
    for (const char *at = strstr(jinja, head); at; at = strstr(at + 1, head)) {
        const char *q = at; /* the quote that opens the enclosing literal */
        while (q > jinja && q[-1] != '\'' && q[-1] != '"') q--;
        if (q == jinja) continue;
        char quote = q[-1];
        const char *p = at + sizeof head - 1;
        if (p[0] == '\n') p += 1;
        else if (p[0] == '\\' && p[1] == 'n') p += 2;
        else continue;
        const char *end = strstr(p, "<|im_end|>");
        if (!end) continue;
        char *out = malloc((size_t)(end - p) + 1);
        if (!out) return NULL;
        size_t o = 0;
        bool ok = true;
        for (const char *c = p; c < end && ok; c++) {
            if (*c == quote) {
                ok = false; /* literal closed: an expression, not a default */
            } else if (*c == '\\' && c + 1 < end) {
                c++;
                out[o++] = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c == 'r' ? '\r' : *c;
            } else {
                out[o++] = *c;
            }
        }
        if (ok) {
            out[o] = 0;
            return out;
        }
        free(out);
    }
    return strdup("");
}

int chat_template_init(chat_template *ct, const char *jinja) {
    if (!ct) return tis_error(TIS_EINVAL, "chat_template_init: NULL template");
    ct->family = CHAT_NONE;
    ct->default_system = NULL;
    if (!jinja || !jinja[0]) {
        ct->default_system = strdup("");
    } else if (strstr(jinja, "<|im_start|>")) {
        ct->family = CHAT_CHATML;
        ct->default_system = s_chatml_default_system(jinja);
    } else if (strstr(jinja, "<|start_header_id|>")) {
        ct->family = CHAT_LLAMA3;
        ct->default_system = strdup("");
    } else if (strstr(jinja, "[INST]")) {
        ct->family = CHAT_MISTRAL;
        ct->default_system = strdup("");
    } else {
        return tis_error(TIS_EUNSUPPORTED, "chat: template not recognised (no ChatML, "
                         "Llama-3 or Mistral markers): %.80s...", jinja);
    }
    if (!ct->default_system) {
        ct->family = CHAT_NONE;
        return tis_error(TIS_ENOMEM, "chat: out of memory");
    }
    return 0;
}

void chat_template_free(chat_template *ct) {
    if (!ct) return;
    free(ct->default_system);
    ct->default_system = NULL;
    ct->family = CHAT_NONE;
}

static bool s_is(const char *role, const char *want) { return strcmp(role, want) == 0; }

/* <|im_start|>role\ncontent<|im_end|>\n; the default system message goes
 * first when the conversation does not open with a system message. */
static void s_render_chatml(sbuf *b, const chat_template *ct, const chat_msg *m, size_t n,
                            bool gen) {
    if (n > 0 && !s_is(m[0].role, "system") && ct->default_system && ct->default_system[0]) {
        s_puts(b, "<|im_start|>system\n");
        s_puts(b, ct->default_system);
        s_puts(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        s_puts(b, "<|im_start|>");
        s_puts(b, m[i].role);
        s_puts(b, "\n");
        s_puts(b, m[i].content);
        s_puts(b, "<|im_end|>\n");
    }
    if (gen) s_puts(b, "<|im_start|>assistant\n");
}

/* Llama-3 trims each content (Jinja "| trim"). */
static void s_put_trimmed(sbuf *b, const char *s) {
    const char *e = s + strlen(s);
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r')) e--;
    s_put(b, s, (size_t)(e - s));
}

static void s_render_llama3(sbuf *b, const chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        s_puts(b, "<|start_header_id|>");
        s_puts(b, m[i].role);
        s_puts(b, "<|end_header_id|>\n\n");
        s_put_trimmed(b, m[i].content);
        s_puts(b, "<|eot_id|>");
    }
    if (gen) s_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* [INST] user [/INST]assistant</s>; a system message is prefixed to the
 * next user turn, as Mistral's templates do. The assistant turn is the
 * open end, so add_generation_prompt adds nothing. */
static int s_render_mistral(sbuf *b, const chat_msg *m, size_t n) {
    const char *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s_is(m[i].role, "system")) {
            sys = m[i].content;
        } else if (s_is(m[i].role, "user")) {
            s_puts(b, "[INST] ");
            if (sys) {
                s_puts(b, sys);
                s_puts(b, "\n\n");
                sys = NULL;
            }
            s_puts(b, m[i].content);
            s_puts(b, " [/INST]");
        } else if (s_is(m[i].role, "assistant")) {
            s_puts(b, m[i].content);
            s_puts(b, "</s>");
        } else {
            return tis_error(TIS_EINVAL, "chat: role '%.32s' has no Mistral rendering",
                             m[i].role);
        }
    }
    return 0;
}

int chat_render(const chat_template *ct, const chat_msg *msgs, size_t n,
                bool add_generation_prompt, char **out) {
    if (!out) return tis_error(TIS_EINVAL, "chat_render: NULL output");
    *out = NULL;
    if (!ct || (n && !msgs)) return tis_error(TIS_EINVAL, "chat_render: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return tis_error(TIS_EINVAL, "chat_render: message %zu has no role or content", i);
    sbuf b = {0};
    s_put(&b, "", 0); /* an empty conversation still yields "" */
    int rc = 0;
    switch (ct->family) {
    case CHAT_NONE:
        for (size_t i = 0; i < n; i++) s_puts(&b, msgs[i].content);
        break;
    case CHAT_CHATML: s_render_chatml(&b, ct, msgs, n, add_generation_prompt); break;
    case CHAT_LLAMA3: s_render_llama3(&b, msgs, n, add_generation_prompt); break;
    case CHAT_MISTRAL: rc = s_render_mistral(&b, msgs, n); break;
    default: rc = tis_error(TIS_EINVAL, "chat_render: bad family %d", (int)ct->family);
    }
    if (!rc) rc = b.err;
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    return 0;
}
