/* fuzz_tokenize: arbitrary bytes (UTF-8 or not) through the default
 * model's tokenizer: encode with and without special tokens, decode, and
 * check that plain text comes back byte for byte (byte-level BPE is
 * lossless), less the bytes the vocabulary has no token for: SmolLM2 has
 * none for 21 of the 256 (0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2
 * 0xF5..0xFF), and the encoder leaves them out (a byte_unk aside).
 * The same bytes go through unicode_nfc (what tokenizer.json files with the
 * NFC normalizer use; GGUF tokenizers do not normalise): NFC must be
 * idempotent, and the quick check's "unchanged" must hold. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

static tokenizer *s_tok;
static bool s_no_token[256]; /* bytes that encode to nothing */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *mp = fuzz_model_path();
    gguf_file *g = NULL;
    if (!mp || gguf_open(&g, mp) || tokenizer_from_gguf(&s_tok, g)) {
        fprintf(stderr, "fuzz_tokenize: no default model (%s): set TIS_MODEL\n", mp ? mp : "not found");
        exit(1);
    }
    gguf_destroy(&g); /* the tokenizer copies what it keeps */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t *ids = NULL;
        int64_t n = 0;
        s_no_token[b] = tokenizer_encode(s_tok, &c, 1, false, &ids, &n) == 0 && n == 0;
        free(ids);
    }
    return 0;
}

static void s_check_nfc(const char *s, size_t n) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (unicode_nfc(s, n, &a, &na)) return; /* out of memory only */
    if (a && !unicode_nfc(a, na, &b, &nb) && b && (nb != na || memcmp(a, b, na)))
        __builtin_trap(); /* NFC(NFC(x)) == NFC(x) */
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s_check_nfc((const char *)data, size);
    char *want = malloc(size ? size : 1);
    size_t nw = 0;
    for (size_t i = 0; want && i < size; i++)
        if (!s_no_token[data[i]]) want[nw++] = (char)data[i];
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        if (tokenizer_encode(s_tok, (const char *)data, size, special, &ids, &n) == 0) {
            char *back = NULL;
            size_t len = 0;
            if (tokenizer_decode(s_tok, ids, n, false, &back, &len) == 0 && !special && want &&
                (len != nw || memcmp(back, want, nw)))
                __builtin_trap(); /* plain text must come back exactly */
            free(back);
        }
        free(ids);
    }
    free(want);
    return 0;
}
