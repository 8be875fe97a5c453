/* wire_eval: tis eval's samples, settings and rows as pipeline messages
 * (EvalJob's EvalSample and EvalSpec, EvalDone's EvalRow in
 * proto/tis.proto), both ways. (eval/ has the jobs themselves; this is
 * their wire form.)
 *
 * The *_view functions fill messages whose fields point into the C structs
 * (nothing copied: keep the structs alive while the message is packed);
 * the *_from functions go the other way, borrowing from the message where
 * the C struct allows (keep the message alive while it is used) and copying
 * into fixed-size fields. Everything from a message is checked: a bad job
 * is an error, never a crash. */
#ifndef TIS_WIRE_EVAL_H
#define TIS_WIRE_EVAL_H

#include "bench.h"
#include "eval.h"
#include "msg.h"
#include "report.h"

void wire_eval_sample_view(const bench_sample *s, Tis__EvalSample *m);
int wire_eval_sample_from(const Tis__EvalSample *m, bench_sample *s);

/* The spec of cfg (policies, budgets, protocols, decoding settings). */
void wire_eval_spec_view(const eval_config *cfg, const char *model_name, Tis__EvalSpec *m);
int wire_eval_spec_from(const Tis__EvalSpec *m, eval_config *cfg);

void wire_eval_row_view(const eval_row *r, Tis__EvalRow *m);
int wire_eval_row_from(const Tis__EvalRow *m, eval_row *r);

#endif
