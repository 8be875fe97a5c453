/* fuzz_jsonl: a JSONL dataset (untrusted) -> bench_load_jsonl, every
 * sample's fields touched. */
#include <string.h>

#include "bench.h"
#include "fuzz_util.h"

static volatile uint64_t s_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("data.jsonl", data, size);
    bench_set set;
    memset(&set, 0, sizeof set);
    if (path && bench_load_jsonl(path, &set) == 0) {
        for (int64_t i = 0; i < set.n; i++) {
            const bench_sample *s = &set.s[i];
            s_sink += strlen(s->id) + strlen(s->context) + strlen(s->question);
            for (int64_t a = 0; a < s->n_answers; a++) s_sink += strlen(s->answers[a]);
            if (s->meta) s_sink += strlen(s->meta);
        }
    }
    bench_set_free(&set);
    return 0;
}
