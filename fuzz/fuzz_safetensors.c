/* fuzz_safetensors: a .safetensors file (untrusted) -> st_open, every
 * tensor's bytes and every metadata entry touched. */
#include <string.h>

#include "fuzz_util.h"
#include "safetensors.h"

static volatile uint64_t s_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    st_file *f = NULL;
    if (!path || st_open(&f, path)) return 0;
    for (int64_t i = 0; i < st_tensor_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        s_sink += strlen(t->name) + (uint64_t)t->n_dims + st_dtype_size(t->dtype);
        if (t->nbytes) s_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        if (st_tensor_find(f, t->name) != t) __builtin_trap(); /* names are unique */
    }
    for (int64_t i = 0; i < st_metadata_count(f); i++) {
        const char *k = NULL, *v = NULL;
        st_metadata_at(f, i, &k, &v);
        s_sink += strlen(k) + strlen(v);
        if (!st_metadata(f, k)) __builtin_trap();
    }
    st_destroy(&f);
    return 0;
}
