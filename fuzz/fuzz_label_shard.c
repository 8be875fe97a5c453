/* fuzz_label_shard: a label shard (untrusted safetensors, tis-labels-1)
 * -> label_shard_read, every record's rows touched. */
#include <stdio.h>

#include "fuzz_util.h"
#include "label.h"

static volatile float s_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("shard-00000.safetensors", data, size);
    label_records r;
    label_records_init(&r);
    if (path && label_shard_read(path, &r) == 0) {
        for (int64_t i = 0; i < r.n; i++) {
            const label_record *x = &r.s[i];
            if (x->n_ctx > 0) s_sink += x->labels[x->n_ctx - 1] + x->features[x->n_ctx * r.d_model - 1];
            if (x->n_q > 0 && x->query_features) s_sink += x->query_features[x->n_q * r.d_model - 1];
        }
    }
    label_records_free(&r);
    return 0;
}
