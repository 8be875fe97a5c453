/* test_kv: cache layout, ragged capacities and byte accounting. */
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "tt.h"

int main(void) {
    TT_CASE("uniform cache");
    kv_cache *kv = NULL;
    TT_OK(kv_cache_new(&kv, 3, 2, 8, 10));
    TT_CHECK(kv && kv->n_stream == 6);
    TT_CHECK(kv_cache_room(kv) == 10);
    TT_CHECK(kv_cache_entries(kv) == 0 && kv_cache_bytes_used(kv) == 0);
    TT_CHECK(kv_cache_bytes_reserved(kv) == 6 * 10 * (2 * 8 * 4 + 4));
    /* streams are disjoint and in order */
    for (int64_t s = 1; s < kv->n_stream; s++)
        TT_CHECK(kv_cache_k(kv, s) == kv_cache_k(kv, s - 1) + 10 * 8);
    TT_CHECK(kv_stream(kv, 2, 1) == 5);
    kv->len[3] = 4;
    TT_CHECK(kv_cache_room(kv) == 6);
    TT_CHECK(kv_cache_bytes_used(kv) == 4 * (2 * 8 * 4 + 4));
    kv_cache_clear(kv);
    TT_CHECK(kv_cache_entries(kv) == 0 && kv->n_past == 0);
    kv_cache_destroy(&kv);
    TT_CHECK(kv == NULL);
    kv_cache_destroy(&kv); /* NULL is fine */

    /* Ragged: capacities follow a budget per stream, memory with them. */
    TT_CASE("ragged cache");
    int64_t caps[4] = {5, 0, 2, 9};
    TT_OK(kv_cache_new_ragged(&kv, 2, 2, 4, caps));
    TT_CHECK(kv_cache_room(kv) == 0);
    TT_CHECK(kv_cache_bytes_reserved(kv) == 16 * (2 * 4 * 4 + 4));
    TT_CHECK(kv_cache_k(kv, 3) == kv->k + 7 * 4);
    TT_CHECK(kv_cache_pos(kv, 2) == kv->pos + 5);
    kv_cache_destroy(&kv);

    TT_CASE("bad sizes");
    int64_t bad[2] = {3, -1};
    TT_FAILS(kv_cache_new_ragged(&kv, 1, 2, 4, bad), TIS_EINVAL);
    TT_FAILS(kv_cache_new(&kv, 0, 2, 4, 8), TIS_EINVAL);
    TT_CHECK(kv == NULL);
    /* block export / import: same entries; lying layouts refused */
    TT_CASE("block write and read");
    int64_t caps2[4] = {6, 6, 6, 6};
    TT_OK(kv_cache_new_ragged(&kv, 2, 2, 4, caps2));
    if (kv) {
        int64_t lens[4] = {3, 0, 5, 1};
        for (int64_t s2 = 0; s2 < 4; s2++) {
            kv->len[s2] = lens[s2];
            for (int64_t i = 0; i < lens[s2]; i++) {
                kv_cache_pos(kv, s2)[i] = (int32_t)(i * 2 + s2);
                for (int64_t d = 0; d < 4; d++) {
                    kv_cache_k(kv, s2)[i * 4 + d] = (float)(s2 * 100 + i * 10 + d);
                    kv_cache_v(kv, s2)[i * 4 + d] = -(float)(s2 * 100 + i * 10 + d);
                }
            }
        }
        kv->n_past = 20;
        size_t nb = kv_cache_block_bytes(kv);
        TT_CHECK(nb == 9 * (2 * 4 * 4 + 4));
        char *blk = malloc(nb);
        kv_cache_block_write(kv, blk);
        kv_cache *back = NULL;
        TT_OK(kv_cache_block_read(&back, 2, 2, 4, lens, 20, false, blk, nb, 2));
        if (back) {
            TT_CHECK(back->n_past == 20 && kv_cache_room(back) == 2);
            for (int64_t s2 = 0; s2 < 4; s2++) {
                TT_CHECK(back->len[s2] == lens[s2]);
                TT_CHECK(memcmp(kv_cache_k(back, s2), kv_cache_k(kv, s2), (size_t)lens[s2] * 16) == 0);
                TT_CHECK(memcmp(kv_cache_v(back, s2), kv_cache_v(kv, s2), (size_t)lens[s2] * 16) == 0);
                TT_CHECK(memcmp(kv_cache_pos(back, s2), kv_cache_pos(kv, s2), (size_t)lens[s2] * 4) == 0);
            }
        }
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, lens, 20, false, blk, nb - 1, 0), TIS_EFORMAT);
        int64_t lie[4] = {3, 0, 5, 2};
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, lie, 20, false, blk, nb, 0), TIS_EFORMAT);
        int64_t neg[4] = {3, -1, 5, 2};
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, neg, 20, false, blk, nb, 0), TIS_EFORMAT);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, lens, 5, false, blk, nb, 0), TIS_EFORMAT); /* positions >= n_past */
        TT_FAILS(kv_cache_block_read(&back, 0, 2, 4, lens, 20, false, blk, nb, 0), TIS_EFORMAT);
        TT_CHECK(back == NULL);
        /* with an attention bias: it travels in the block; a flag that
         * disagrees with the block's size is refused */
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, lens, 20, true, blk, nb, 0), TIS_EFORMAT);
        TT_OK(kv_cache_enable_bias(kv));
        for (int64_t s2 = 0; s2 < 4; s2++)
            for (int64_t i = 0; i < lens[s2]; i++) kv->bias[kv->off[s2] + i] = 0.25f * (float)(s2 + i);
        size_t nbb = kv_cache_block_bytes(kv);
        TT_CHECK(nbb == 9 * (2 * 4 * 4 + 4 + 4));
        char *blkb = malloc(nbb);
        kv_cache_block_write(kv, blkb);
        TT_OK(kv_cache_block_read(&back, 2, 2, 4, lens, 20, true, blkb, nbb, 1));
        for (int64_t s2 = 0; back && s2 < 4; s2++) {
            TT_CHECK(memcmp(back->bias + back->off[s2], kv->bias + kv->off[s2], (size_t)lens[s2] * 4) == 0);
            TT_CHECK(memcmp(kv_cache_pos(back, s2), kv_cache_pos(kv, s2), (size_t)lens[s2] * 4) == 0);
        }
        kv_cache_destroy(&back);
        TT_FAILS(kv_cache_block_read(&back, 2, 2, 4, lens, 20, false, blkb, nbb, 0), TIS_EFORMAT);
        free(blkb);
        free(blk);
    }
    kv_cache_destroy(&kv);
    return tt_done("test_kv");
}
