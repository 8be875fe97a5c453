/* press_fixture: what the press tests share (test_press, test_press_kvzip):
 * a tiny 3-layer random-weight model, a prompt of PRE prefix + CTX context
 * + SUF suffix tokens, its observed prefill (prefix + context, the last 8
 * context tokens the observation window) and the press context over it
 * (4 sinks, seed 1). The fixture owns everything in it. */
#ifndef TIS_PRESS_FIXTURE_H
#define TIS_PRESS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "kv.h"
#include "model.h"
#include "press.h"

enum { PRE = 3, CTX = 40, SUF = 5, TOTAL = PRE + CTX + SUF };

typedef struct press_fixture {
    model *m;
    forward_state *st; /* batch 16: the prefill is chunked */
    int32_t ids[TOTAL];
    kv_cache *kv;      /* room for TOTAL + 8 */
    press_obs obs;
    press_ctx pc;
} press_fixture;

/* Writes the model under the test's temporary directory as gguf_name,
 * loads it and prefills the prompt observed (each step TT_OK'd). 0: set
 * up; otherwise the failing step's status (press_fixture_free still). */
int press_fixture_new(press_fixture *f, const char *gguf_name);
void press_fixture_free(press_fixture *f);

/* Whether stream s of kv holds the entry at position pos. */
bool pf_kept(const kv_cache *kv, int64_t s, int32_t pos);

#endif
