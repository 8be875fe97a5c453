/* fuzz_tokenizer_json: a Hugging Face tokenizer.json (untrusted) ->
 * tokenizer_from_json, then a text with specials, digits, accents and an
 * invalid byte encoded and decoded. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("tokenizer.json", data, size);
    tokenizer *t = NULL;
    if (!path || tokenizer_from_json(&t, path)) return 0;
    static const char text[] = "Hello world, 2024 <|im_start|>user caf\xc3\xa9 \xe2\x82\xac \xff\n\n  x";
    int32_t *ids = NULL;
    int64_t n = 0;
    if (tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n) == 0) {
        char *back = NULL;
        size_t len = 0;
        tokenizer_decode(t, ids, n, false, &back, &len);
        free(back);
    }
    free(ids);
    tokenizer_destroy(&t);
    return 0;
}
