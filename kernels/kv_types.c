/* kv_types: the KV cache's element types, one table. */
#include "kv_types.h"

#include <string.h>

#include "quant.h"

static const struct {
    int type;
    const char *name;
    bool block; /* blocks of 32: whole blocks a row; keys with channel scales */
} s_types[] = {
    {GGML_TYPE_F32, "f32", false},   {GGML_TYPE_F16, "f16", false},   {GGML_TYPE_BF16, "bf16", false},
    {GGML_TYPE_Q8_0, "q8_0", true},  {GGML_TYPE_Q4_0, "q4_0", true},
};
enum { N_TYPES = sizeof s_types / sizeof s_types[0] };

static int s_find(int dtype) {
    for (int i = 0; i < N_TYPES; i++)
        if (s_types[i].type == dtype) return i;
    return -1;
}

bool kv_dtype_ok(int dtype) { return s_find(dtype) >= 0; }

bool kv_dtype_block(int dtype) {
    int i = s_find(dtype);
    return i >= 0 && s_types[i].block;
}

size_t kv_row_bytes(int dtype, int64_t head_dim) {
    size_t b = 0;
    if (!kv_dtype_ok(dtype) || head_dim <= 0 || quant_row_bytes(dtype, head_dim, &b)) return 0;
    return b;
}

const char *kv_dtype_name(int dtype) {
    int i = s_find(dtype);
    return i >= 0 ? s_types[i].name : "?";
}

int kv_dtype_parse(const char *name) {
    for (int i = 0; name && i < N_TYPES; i++)
        if (!strcmp(name, s_types[i].name)) return s_types[i].type;
    return -1;
}
