/* fuzz_config_json: a Hugging Face config.json (untrusted) ->
 * config_from_hf_json, then config_validate. */
#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("config.json", data, size);
    model_config c;
    if (path && config_from_hf_json(&c, path) == 0) config_validate(&c);
    return 0;
}
