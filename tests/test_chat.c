/* test_chat: template family detection, default system prompt extraction
 * and native rendering, checked against what the Jinja templates produce;
 * with TIS_MODEL, the template stored in the real model file. */
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tt.h"

/* SmolLM2-135M-Instruct's template, as stored in its GGUF (real newlines
 * inside the Jinja string literals). */
static const char s_smollm2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char s_smollm2_system[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/* Qwen2.5's shape: the system branch with an expression comes first and
 * the literal default second; escapes written as \n in the Jinja text. */
static const char s_qwen_like[] =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
    "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou "
    "are Qwen, created by Alibaba Cloud. You\\'re a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}";

static const char s_chatml_plain[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";

static const char s_llama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{{ content }}{% endfor %}";

static int s_renders(const chat_template *ct, const chat_msg *m, size_t n, bool gen,
                     const char *want) {
    char *out = NULL;
    int rc = chat_render(ct, m, n, gen, &out);
    int ok = rc == 0 && out && strcmp(out, want) == 0;
    if (!ok) fprintf(stderr, "  rendered:\n%s\n  want:\n%s\n", out ? out : "(null)", want);
    free(out);
    return ok;
}

static void test_chatml(void) {
    TT_CASE("chatml");
    chat_template ct;
    TT_OK(chat_template_init(&ct, s_smollm2));
    TT_CHECK(ct.family == CHAT_CHATML);
    TT_CHECK(strcmp(ct.default_system, s_smollm2_system) == 0);
    const chat_msg user[] = {{"user", "Hi there"}};
    TT_CHECK(s_renders(&ct, user, 1, true,
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                       "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there"
                       "<|im_end|>\n<|im_start|>assistant\n"));
    const chat_msg conv[] = {{"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"},
                             {"user", "안녕 👋🏽"}};
    TT_CHECK(s_renders(&ct, conv, 4, false,
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?"
                       "<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n"
                       "안녕 👋🏽<|im_end|>\n"));
    /* the loop never runs: no default system, just the prompt */
    TT_CHECK(s_renders(&ct, NULL, 0, true, "<|im_start|>assistant\n"));
    TT_CHECK(s_renders(&ct, NULL, 0, false, ""));
    chat_template_free(&ct);
    TT_CHECK(ct.default_system == NULL);
    chat_template_free(&ct); /* twice is fine */

    TT_OK(chat_template_init(&ct, s_qwen_like));
    TT_CHECK(ct.family == CHAT_CHATML);
    TT_CHECK(strcmp(ct.default_system,
                    "You are Qwen, created by Alibaba Cloud. You're a helpful assistant.") == 0);
    chat_template_free(&ct);

    TT_OK(chat_template_init(&ct, s_chatml_plain));
    TT_CHECK(ct.family == CHAT_CHATML && ct.default_system[0] == 0);
    TT_CHECK(s_renders(&ct, user, 1, false, "<|im_start|>user\nHi there<|im_end|>\n"));
    chat_template_free(&ct);
}

static void test_other_families(void) {
    TT_CASE("other_families");
    chat_template ct;
    const chat_msg conv[] = {{"system", "Be brief."}, {"user", "  Hi \n"}, {"assistant", "Hello"},
                             {"user", "Bye"}};
    TT_OK(chat_template_init(&ct, s_llama3));
    TT_CHECK(ct.family == CHAT_LLAMA3);
    TT_CHECK(s_renders(&ct, conv, 2, true,
                       "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n"));
    chat_template_free(&ct);

    TT_OK(chat_template_init(&ct, "{{ bos_token }}{% for m in messages %}[INST] ... [/INST]"));
    TT_CHECK(ct.family == CHAT_MISTRAL);
    TT_CHECK(s_renders(&ct, conv, 4, true,
                       "[INST] Be brief.\n\n  Hi \n [/INST]Hello</s>[INST] Bye [/INST]"));
    const chat_msg tool[] = {{"tool", "x"}};
    char *out = NULL;
    TT_FAILS(chat_render(&ct, tool, 1, false, &out), TIS_EINVAL);
    chat_template_free(&ct);

    TT_OK(chat_template_init(&ct, NULL));
    TT_CHECK(ct.family == CHAT_NONE);
    TT_CHECK(s_renders(&ct, conv, 2, true, "Be brief.  Hi \n"));
    chat_template_free(&ct);
    TT_OK(chat_template_init(&ct, ""));
    TT_CHECK(ct.family == CHAT_NONE);
    chat_template_free(&ct);

    TT_FAILS(chat_template_init(&ct, "{{ messages | tojson }}"), TIS_EUNSUPPORTED);
    TT_CHECK(ct.default_system == NULL);
    TT_FAILS(chat_template_init(NULL, s_smollm2), TIS_EINVAL);
    TT_OK(chat_template_init(&ct, s_smollm2));
    const chat_msg bad[] = {{"user", NULL}};
    TT_FAILS(chat_render(&ct, bad, 1, true, &out), TIS_EINVAL);
    TT_CHECK(out == NULL);
    TT_FAILS(chat_render(&ct, NULL, 2, true, &out), TIS_EINVAL);
    TT_FAILS(chat_render(&ct, conv, 1, true, NULL), TIS_EINVAL);
    chat_template_free(&ct);
}

static void test_real_model(void) {
    TT_CASE("real_model");
    const char *path = getenv("TIS_MODEL");
    if (!path) {
        printf("note: TIS_MODEL is unset; skipping the real-model chat checks\n");
        return;
    }
    gguf_file *g = NULL;
    tokenizer *t = NULL;
    TT_OK(gguf_open(&g, path));
    if (g) TT_OK(tokenizer_from_gguf(&t, g));
    gguf_destroy(&g);
    if (!t) return;
    chat_template ct;
    TT_OK(chat_template_init(&ct, tokenizer_chat_template(t)));
    TT_CHECK(ct.family == CHAT_CHATML);
    TT_CHECK(strcmp(tokenizer_chat_template(t), s_smollm2) == 0);
    TT_CHECK(ct.default_system && strcmp(ct.default_system, s_smollm2_system) == 0);
    const chat_msg user[] = {{"user", "Hi"}};
    char *text = NULL;
    TT_OK(chat_render(&ct, user, 1, true, &text));
    int32_t *ids = NULL;
    int64_t n = 0;
    if (text) TT_OK(tokenizer_encode(t, text, strlen(text), true, &ids, &n));
    /* <|im_start|> system \n ... <|im_end|> \n <|im_start|> user \n Hi <|im_end|> \n
     * <|im_start|> ass istant \n */
    TT_CHECK(n > 8 && ids[0] == 1 && ids[n - 4] == 1 && ids[n - 1] == 198);
    int n_start = 0, n_end = 0;
    for (int64_t i = 0; i < n; i++) n_start += ids[i] == 1, n_end += ids[i] == 2;
    TT_CHECK(n_start == 3 && n_end == 2);
    free(ids);
    free(text);
    chat_template_free(&ct);
    tokenizer_destroy(&t);
}

int main(void) {
    test_chatml();
    test_other_families();
    test_real_model();
    return tt_done("test_chat");
}
