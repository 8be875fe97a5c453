/* test_kv: cache layout, ragged capacities and byte accounting. */
#include "kv.h"
#include "tt.h"

int main(void) {
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
    int64_t caps[4] = {5, 0, 2, 9};
    TT_OK(kv_cache_new_ragged(&kv, 2, 2, 4, caps));
    TT_CHECK(kv_cache_room(kv) == 0);
    TT_CHECK(kv_cache_bytes_reserved(kv) == 16 * (2 * 4 * 4 + 4));
    TT_CHECK(kv_cache_k(kv, 3) == kv->k + 7 * 4);
    TT_CHECK(kv_cache_pos(kv, 2) == kv->pos + 5);
    kv_cache_destroy(&kv);

    int64_t bad[2] = {3, -1};
    TT_FAILS(kv_cache_new_ragged(&kv, 1, 2, 4, bad), TIS_EINVAL);
    TT_FAILS(kv_cache_new(&kv, 0, 2, 4, 8), TIS_EINVAL);
    TT_CHECK(kv == NULL);
    return tt_done("test_kv");
}
