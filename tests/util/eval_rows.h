/* eval_rows: made-up evaluation rows for the report tests. */
#ifndef TIS_TT_EVAL_ROWS_H
#define TIS_TT_EVAL_ROWS_H

#include <stdbool.h>
#include <stdint.h>

#include "report.h"

/* A row with the fields the tests look at; the rest plausible. */
eval_row tt_eval_row(const char *bench, const char *proto, const char *policy, double budget,
                     int64_t budget_tokens, bool correct, int64_t kv, int64_t full_kv, double tps);

#endif
