/* fuzz_st_index: the index of a sharded Hugging Face checkpoint,
 * model.safetensors.index.json (untrusted), -> st_model_open on a
 * directory holding it and two real shards (a.safetensors: the committed
 * safetensors fixture; b.safetensors: a committed head), every tensor of
 * the model touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "safetensors.h"

static volatile uint64_t s_sink;

static int s_copy(const char *rel, const char *name) {
    const char *src = getenv("TIS_SOURCE_DIR");
    char from[1024];
    snprintf(from, sizeof from, "%s/%s", src && *src ? src : ".", rel);
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return fuzz_file(name, buf, n) ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (s_copy("tests/golden/st_fixture.safetensors", "a.safetensors") ||
        s_copy("configs/heads/smollm2-135m-instruct.tis.safetensors", "b.safetensors")) {
        fprintf(stderr, "fuzz_st_index: the shards are missing (run from the source tree or set TIS_SOURCE_DIR)\n");
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_model *m = NULL;
    if (!fuzz_file("model.safetensors.index.json", data, size) || st_model_open(&m, fuzz_dir())) return 0;
    for (int64_t i = 0; i < st_model_tensor_count(m); i++) {
        const st_tensor *t = st_model_tensor_at(m, i);
        if (st_model_find(m, t->name) == NULL) __builtin_trap(); /* each listed tensor is found */
        if (t->nbytes) s_sink += ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    st_model_destroy(&m);
    return 0;
}
