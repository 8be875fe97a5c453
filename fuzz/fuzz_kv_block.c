/* fuzz_kv_block: a KV block and its layout as a decode worker receives
 * them (the bytes from a peer's arena, the layout from a DecodeJob's
 * KvLayout) -> kv_cache_block_read, then every entry read back as floats
 * (quantised keys times their scales), a compaction and a second block
 * written and read back byte for byte.
 *
 * Input: 8 bytes of layout, then the stream lengths (u16 each), then the
 * block:
 *   [0] n_layer - 1 (mod 2)   [1] n_kv_head - 1 (mod 2)   [2] head_dim: 32 << (b & 1)
 *   [3] key type, [4] value type: one of f32, f16, bf16, q8_0, q4_0, q4_1
 *       (the last no cache holds), b mod 6
 *   [5] bias flag (b & 1)     [6..7] n_past u16 LE */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kv.h"
#include "quant.h"

static const int s_types[6] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16,
                               GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    int64_t nl = 1 + data[0] % 2, nkv = 1 + data[1] % 2, hd = 32 << (data[2] & 1), ns = nl * nkv;
    kv_types t = {s_types[data[3] % 6], s_types[data[4] % 6]};
    bool bias = data[5] & 1;
    int64_t n_past = data[6] | (int64_t)data[7] << 8;
    size_t at = 8 + 2 * (size_t)ns;
    if (size < at) return 0;
    int64_t lens[4];
    for (int64_t s = 0; s < ns; s++) lens[s] = data[8 + 2 * s] | (int64_t)data[9 + 2 * s] << 8;
    kv_cache *kv = NULL, *c = NULL, *back = NULL;
    if (kv_cache_block_read(&kv, nl, nkv, hd, t, lens, n_past, bias, data + at, size - at, 2)) return 0;
    /* every entry as floats: what attention and the presses read */
    float *row = malloc((size_t)hd * sizeof(float));
    uint8_t *keep = calloc((size_t)(kv->off[ns - 1] + kv->cap[ns - 1]) + 1, 1);
    for (int64_t s = 0; row && keep && s < ns; s++)
        for (int64_t i = 0; i < kv->len[s]; i++) {
            kv_cache_rows_f32(kv, s, 0, i, 1, row);
            kv_cache_rows_f32(kv, s, 1, i, 1, row);
            keep[kv->off[s] + i] = (uint8_t)(i % 2 == 0);
        }
    if (row && keep && !kv_cache_compact(&c, kv, keep, 0)) {
        size_t nb = kv_cache_block_bytes(c);
        uint8_t *blk = malloc(nb ? nb : 1), *again = malloc(nb ? nb : 1);
        if (blk && again) {
            kv_cache_block_write(c, blk);
            if (kv_cache_block_read(&back, nl, nkv, hd, t, c->len, n_past, bias, blk, nb, 0)) abort();
            kv_cache_block_write(back, again);
            if (memcmp(blk, again, nb)) abort(); /* a block read and written again is the same bytes */
        }
        free(blk);
        free(again);
    }
    kv_cache_destroy(&back);
    kv_cache_destroy(&c);
    kv_cache_destroy(&kv);
    free(row);
    free(keep);
    return 0;
}
