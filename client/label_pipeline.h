/* label_pipeline: tis label's samples labelled by pipeline prefill workers
 * (--workers N: a private tis serve; --connect EP: a running one). Results
 * are taken in sample order (a window of jobs runs ahead), so the shards
 * are the ones the in-process run writes. A label's arrays come back by
 * arena handle: mapped, copied, and the lease released. */
#ifndef TIS_LABEL_PIPELINE_H
#define TIS_LABEL_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "label.h"
#include "model.h"
#include "secure.h"

typedef struct label_remote label_remote;

/* todo[n]: the samples to label, in order (borrowed until close). */
/* sec: how to connect to a tcp endpoint (serve/secure.h; borrowed, or NULL). */
int label_remote_open(label_remote **out, const char *connect, const sec_opts *sec, int64_t workers,
                      const char *model_path, const model_config *mc, const label_config *cfg,
                      const bench_sample *const *todo, int64_t n);
/* The next sample's label: 0 (*ls filled, owned by the caller), 1 (skipped:
 * why says so), < 0 (an error: stop). */
int label_remote_next(label_remote *r, label_sample *ls, char *why, size_t why_cap);
void label_remote_close(label_remote **p);

#endif
