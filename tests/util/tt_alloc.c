/* tt_alloc: the one-shot and persistent allocation-failure sweeps. */
#include "tt_alloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "alloc_fault.h"
#include "tt.h"

/* One sweep; returns the clean run's allocation count, or -1. */
static int64_t s_sweep(const char *what, int (*op)(void *), void *ctx, int64_t max_points, bool persist) {
    int64_t benign = 0, failed = 0;
    for (int64_t k = 1;; k++) {
        if (max_points > 0 && k > max_points) {
            fprintf(stderr, "%s: %s sweep stopped at %lld allocation points\n", what,
                    persist ? "persistent" : "one-shot", (long long)max_points);
            TT_CHECK(!"the sweep ended before the operation's last allocation");
            return -1;
        }
        tis_error(TIS_OK, "%s", "");
        alloc_fault_arm(k, persist);
        int rc = op(ctx);
        alloc_fault_disarm();
        int64_t seen = alloc_fault_seen(), injected = alloc_fault_injected();
        if (injected == 0) { /* past the last allocation: op ran clean */
            if (rc) fprintf(stderr, "%s: the clean run failed: %s\n", what, tis_last_error());
            TT_CHECK(rc == 0);
            fprintf(stderr, "  %s (%s): %lld allocation points, %lld failed with ENOMEM, %lld benign\n", what,
                    persist ? "persistent" : "one-shot", (long long)seen, (long long)failed, (long long)benign);
            return seen;
        }
        if (rc == 0) {
            benign++;
        } else if (rc == TIS_ENOMEM && tis_last_error()[0]) {
            failed++;
        } else {
            fprintf(stderr, "%s: allocation %lld failing%s -> %d (%s): '%s', wanted ENOMEM\n", what, (long long)k,
                    persist ? " (and after)" : "", rc, tis_status_name(rc), tis_last_error());
            TT_CHECK(!"an allocation failure gave something else than ENOMEM");
        }
    }
}

int64_t tt_alloc_sweep(const char *what, int (*op)(void *ctx), void *ctx, int64_t max_points) {
    if (!alloc_fault_available()) return -1;
    int64_t n = s_sweep(what, op, ctx, max_points, false);
    int64_t p = s_sweep(what, op, ctx, max_points, true);
    TT_CHECK(n == p);
    return n;
}
