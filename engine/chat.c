/* chat: recognises a chat template family by its markers and renders it
 * natively. The renderers reproduce what the Jinja templates of each
 * family produce; the beginning-of-text token is not written (the caller
 * adds it when tokenizer_add_bos() says so). */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "tis_error.h"

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
        sbuf_str(b, "<|im_start|>system\n");
        sbuf_str(b, ct->default_system);
        sbuf_str(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sbuf_str(b, "<|im_start|>");
        sbuf_str(b, m[i].role);
        sbuf_str(b, "\n");
        sbuf_str(b, m[i].content);
        sbuf_str(b, "<|im_end|>\n");
    }
    if (gen) sbuf_str(b, "<|im_start|>assistant\n");
}

/* Llama-3 trims each content (Jinja "| trim"). */
static void s_put_trimmed(sbuf *b, const char *s) {
    const char *e = s + strlen(s);
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r')) e--;
    sbuf_add(b, s, (size_t)(e - s));
}

static void s_render_llama3(sbuf *b, const chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        sbuf_str(b, "<|start_header_id|>");
        sbuf_str(b, m[i].role);
        sbuf_str(b, "<|end_header_id|>\n\n");
        s_put_trimmed(b, m[i].content);
        sbuf_str(b, "<|eot_id|>");
    }
    if (gen) sbuf_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
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
            sbuf_str(b, "[INST] ");
            if (sys) {
                sbuf_str(b, sys);
                sbuf_str(b, "\n\n");
                sys = NULL;
            }
            sbuf_str(b, m[i].content);
            sbuf_str(b, " [/INST]");
        } else if (s_is(m[i].role, "assistant")) {
            sbuf_str(b, m[i].content);
            sbuf_str(b, "</s>");
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
    sbuf_add(&b, "", 0); /* an empty conversation still yields "" */
    int rc = 0;
    switch (ct->family) {
    case CHAT_NONE:
        for (size_t i = 0; i < n; i++) sbuf_str(&b, msgs[i].content);
        break;
    case CHAT_CHATML: s_render_chatml(&b, ct, msgs, n, add_generation_prompt); break;
    case CHAT_LLAMA3: s_render_llama3(&b, msgs, n, add_generation_prompt); break;
    case CHAT_MISTRAL: rc = s_render_mistral(&b, msgs, n); break;
    default: rc = tis_error(TIS_EINVAL, "chat_render: bad family %d", (int)ct->family);
    }
    if (!rc && b.oom) rc = tis_error(TIS_ENOMEM, "chat: out of memory for a %zu-byte prompt", b.n);
    if (rc) {
        sbuf_free(&b);
        return rc;
    }
    *out = b.p;
    return 0;
}
