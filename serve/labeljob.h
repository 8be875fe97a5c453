/* labeljob: tis label's samples and results through the pipeline. A label
 * result's arrays cross in one flat block (layout in proto/tis.proto
 * LabelResult); the sizes come from the scalars and the model's shape,
 * and the block must be exactly that long. */
#ifndef TIS_LABELJOB_H
#define TIS_LABELJOB_H

#include <stddef.h>

#include "label.h"
#include "model.h"
#include "msg.h"

void labeljob_spec_view(const label_config *cfg, const char *model_name, Tis__LabelSpec *m);
int labeljob_spec_from(const Tis__LabelSpec *m, const model_config *mc, label_config *cfg);

/* Bytes of ls's block for a model of this shape. */
size_t labeljob_block_bytes(const label_sample *ls, const model_config *mc, bool per_head);
void labeljob_block_write(const label_sample *ls, const model_config *mc, bool per_head, void *dst);
/* ls from a result + its block (copied: owned by ls). */
int labeljob_block_read(const Tis__LabelResult *r, const model_config *mc, const void *block, size_t len,
                        const char *id, label_sample *ls);

#endif
