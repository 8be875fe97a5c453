/* fuzz_gguf: a GGUF file (untrusted) -> gguf_open_memory, every key and
 * tensor touched, the model config and the tokenizer built from it (as
 * model_load does before the weights), then a short text encoded. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"
#include "gguf.h"
#include "tokenizer.h"

static volatile uint64_t s_sink;

static void s_touch_value(const gguf_value *v) {
    if (v->type == GGUF_STR) {
        for (uint64_t i = 0; i < v->str.len; i++) s_sink += (uint8_t)v->str.ptr[i];
    } else if (v->type == GGUF_ARR && v->arr.type == GGUF_STR) {
        for (uint64_t i = 0; i < v->arr.n; i++)
            if (v->arr.strs[i].len) s_sink += (uint8_t)v->arr.strs[i].ptr[v->arr.strs[i].len - 1];
    } else if (v->type == GGUF_ARR && v->arr.n) {
        s_sink += v->arr.data[0];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *g = NULL;
    if (gguf_open_memory(&g, data, size)) return 0;
    for (int64_t i = 0; i < gguf_kv_count(g); i++) s_touch_value(&gguf_kv_at(g, i)->value);
    for (int64_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->nbytes) s_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        s_sink += (uint64_t)gguf_tensor_nelems(t);
        if (gguf_tensor_find(g, "token_embd.weight") == NULL) s_sink++;
    }
    model_config c;
    if (config_from_gguf(&c, g) == 0) s_sink += (uint64_t)config_validate(&c);
    tokenizer *tok = NULL;
    if (tokenizer_from_gguf(&tok, g) == 0) {
        static const char text[] = "Hello world, 123 <|im_start|>user caf\xc3\xa9 \xff!";
        int32_t *ids = NULL;
        int64_t n = 0;
        if (tokenizer_encode(tok, text, sizeof text - 1, true, &ids, &n) == 0) {
            char *back = NULL;
            size_t len = 0;
            if (tokenizer_decode(tok, ids, n, false, &back, &len) == 0) s_sink += len;
            free(back);
        }
        free(ids);
    }
    tokenizer_destroy(&tok);
    gguf_destroy(&g);
    return 0;
}
