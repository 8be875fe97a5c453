/* fuzz_label_manifest: a label directory's manifest.jsonl (untrusted: a
 * resumed tis label reads it) -> label_manifest_read. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "label_job.h"

static volatile uint64_t s_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("manifest.jsonl", data, size);
    char **ids = NULL;
    int64_t n = 0, next = 0;
    if (!path) return 0;
    int rc = label_manifest_read(path, &ids, &n, &next);
    if (!rc && (next < 0 || next > 1000000000)) __builtin_trap();
    for (int64_t i = 0; i < n; i++) {
        s_sink += strlen(ids[i]);
        free(ids[i]);
    }
    free(ids);
    return 0;
}
