/* chat: renders a conversation with the model's chat template. Templates
 * are Jinja in the model file; tis recognises the common families by their
 * markers and renders them natively (no Jinja engine). */
#ifndef TIS_CHAT_H
#define TIS_CHAT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum chat_family {
    CHAT_NONE = 0,   /* no template: plain concatenation of contents */
    CHAT_CHATML = 1, /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen2) */
    CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    CHAT_MISTRAL = 3,/* [INST] ... [/INST] */
} chat_family;

typedef struct chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} chat_msg;

typedef struct chat_template {
    chat_family family;
    /* Default system message the template inserts when the conversation has
     * none (ChatML in SmolLM2 does), or "" (owned). */
    char *default_system;
} chat_template;

/* Recognises the family of a Jinja template text (NULL -> CHAT_NONE).
 * Unknown non-empty templates give TIS_EUNSUPPORTED. */
int chat_template_init(chat_template *ct, const char *jinja);
void chat_template_free(chat_template *ct);

/* Renders msgs; with add_generation_prompt, ends with the assistant header.
 * *out is malloc'd and NUL-terminated. */
int chat_render(const chat_template *ct, const chat_msg *msgs, size_t n,
                bool add_generation_prompt, char **out);

#endif
