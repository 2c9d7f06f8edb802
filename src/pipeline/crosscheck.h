/*
 * The cross-check of an output against a second copy of the same model: an
 * HF Trainer's 16-bit weights saved beside the DeepSpeed masters that were
 * converted (weld_cross_check in weld.h). It compares the copy's tensors
 * with the CRC-32s of the tensors written, so it costs one read of the copy
 * and none of the output; and it knows no format: the checkpoint says where
 * the copy is (hf_beside), the plan what was written.
 */
#ifndef WELD_PIPELINE_CROSSCHECK_H
#define WELD_PIPELINE_CROSSCHECK_H

#include "pipeline/plan.h"

/* Where the copy is, and whom to tell how far the reading of it has got. */
typedef struct weld_cross_check_io {
	const char *dir;           /* the folder holding the HF weights */
	weld_progress_fn progress; /* may be NULL; WELD_PHASE_CROSS_CHECK reports, nonzero cancels */
	void *payload;
} weld_cross_check_io;

/*
 * Compare the tensors of the HF weights in IO->DIR with the plan's tensors of
 * the same name (or tied to it), dtype and shape, whose CRC-32s as written
 * are CRCS (plan order). Fills *OUT, its summary included. HF weights that
 * cannot be opened are a SKIPPED result saying why, and a tensor of them that
 * cannot be read is a difference, never an error: an error is running out
 * of memory, or WELD_ERR_CANCELLED when the progress callback asked.
 */
weld_status weld__cross_check(const weld_plan *p, const uint32_t *crcs, const weld_cross_check_io *io,
			      weld_cross_check *out, weld_error *err);

#endif /* WELD_PIPELINE_CROSSCHECK_H */
