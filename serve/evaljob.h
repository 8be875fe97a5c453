/* evaljob: tis eval's samples, settings and rows as pipeline messages
 * (EvalJob / EvalRow in proto/tis.proto), both ways.
 *
 * The *_view functions fill messages whose fields point into the C structs
 * (nothing copied: keep the structs alive while the message is packed);
 * the *_from functions go the other way, borrowing from the message where
 * the C struct allows (keep the message alive while it is used) and copying
 * into fixed-size fields. Everything from a message is checked: a bad job
 * is an error, never a crash. */
#ifndef TIS_EVALJOB_H
#define TIS_EVALJOB_H

#include "bench.h"
#include "eval.h"
#include "msg.h"
#include "report.h"

void evaljob_sample_view(const bench_sample *s, Tis__EvalSample *m);
int evaljob_sample_from(const Tis__EvalSample *m, bench_sample *s);

/* The spec of cfg (policies, budgets, protocols, decoding settings). */
void evaljob_spec_view(const eval_config *cfg, const char *model_name, Tis__EvalSpec *m);
int evaljob_spec_from(const Tis__EvalSpec *m, eval_config *cfg);

void evaljob_row_view(const eval_row *r, Tis__EvalRow *m);
int evaljob_row_from(const Tis__EvalRow *m, eval_row *r);

#endif
