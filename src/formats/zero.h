/*
 * DeepSpeed ZeRO reconstruction (shared docs: deepspeed-zero-format.md,
 * section 3): the tensors zero_to_fp32 rebuilds, described as fragments of
 * the fp32 master partitions in the optimizer files.
 */
#ifndef WELD_FORMATS_ZERO_H
#define WELD_FORMATS_ZERO_H

#include "formats/ckpt.h"

/* What deepspeed.c found in a tag folder. */
typedef struct zero_layout {
	int stage;                /* 0..3 */
	int world;                /* data-parallel world size from the file names */
	uint32_t states_src;      /* rank 0's model states, a torch source of the checkpoint */
	const char **optim_paths; /* by rank */
	const char **model_paths; /* stage 3: by rank */
} zero_layout;

/* Every tensor of the checkpoint Z describes, added to C. */
weld_status weld__zero_build(weld_ckpt *c, const zero_layout *z, weld_error *err);

#endif /* WELD_FORMATS_ZERO_H */
