/* wire_label: tis label's specs and results as pipeline messages (LabelJob's
 * LabelSpec; its sample is wire_eval's EvalSample). A label result's arrays
 * cross in one flat block (layout in proto/tis.proto LabelDone); the sizes
 * come from the scalars and the model's shape, and the block must be
 * exactly that long. */
#ifndef TIS_WIRE_LABEL_H
#define TIS_WIRE_LABEL_H

#include <stddef.h>

#include "label.h"
#include "model.h"
#include "msg.h"

void wire_label_spec_view(const label_config *cfg, const char *model_name, Tis__LabelSpec *m);
int wire_label_spec_from(const Tis__LabelSpec *m, const model_config *mc, label_config *cfg);

/* Bytes of ls's block for a model of this shape. */
size_t wire_label_block_bytes(const label_sample *ls, const model_config *mc, bool per_head);
void wire_label_block_write(const label_sample *ls, const model_config *mc, bool per_head, void *dst);
/* ls from a result + its block (copied: owned by ls). */
int wire_label_block_read(const Tis__LabelDone *r, const model_config *mc, const void *block, size_t len,
                        const char *id, label_sample *ls);

#endif
