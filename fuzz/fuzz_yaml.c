/* fuzz_yaml: a serve config (untrusted YAML) -> yaml_kv_load, then the
 * getters tis serve uses and the unused-key check. */
#include <string.h>

#include "fuzz_util.h"
#include "yaml_kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("serve.yaml", data, size);
    yaml_kv kv;
    memset(&kv, 0, sizeof kv);
    if (path && yaml_kv_load(&kv, path) == 0) {
        int64_t v = 0;
        const char *s = NULL;
        static const char *const ints[] = {"coordinator.max_queue", "coordinator.heartbeat_ms",
                                           "prefill.workers", "prefill.arena_mb", "decode.max_batch"};
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) yaml_kv_i64(&kv, ints[i], 0, 1 << 20, &v);
        yaml_kv_str(&kv, "model", &s);
        yaml_kv_str(&kv, "front", &s);
        yaml_kv_get(&kv, "prefill.head");
        yaml_kv_unused(&kv);
    }
    yaml_kv_free(&kv);
    return 0;
}
