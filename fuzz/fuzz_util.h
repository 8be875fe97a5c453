/* fuzz_util: what the libFuzzer targets share (fuzz/README.md).
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput (and may define
 * LLVMFuzzerInitialize). Built with -DTIS_FUZZ=ON and clang they link
 * libFuzzer; in every build they also link replay_main.c, which runs
 * them over files (the committed regressions/<name>/ inputs, a ctest). */
#ifndef TIS_FUZZ_UTIL_H
#define TIS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a file `name` in this process's scratch directory
 * (created once under $TMPDIR or /tmp, removed at exit) and returns its
 * path (static storage per name slot; valid until the next call with the
 * same name). NULL when it cannot be written. */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);

/* The scratch directory itself. */
const char *fuzz_dir(void);

/* The default model (TIS_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf
 * under TIS_SOURCE_DIR or the working directory), or NULL. */
const char *fuzz_model_path(void);

#endif
