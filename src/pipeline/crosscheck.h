/*
 * The cross-check of an output against a second copy of the same model: an
 * HF Trainer's 16-bit weights saved beside the DeepSpeed masters that were
 * converted (weld_cross_check in weld.h). It compares bytes already written,
 * so it costs one read of the copy, and it knows no format: the checkpoint
 * says where the copy is (hf_beside), the plan what was written.
 */
#ifndef WELD_PIPELINE_CROSSCHECK_H
#define WELD_PIPELINE_CROSSCHECK_H

#include "pipeline/plan.h"

/*
 * Compare the tensors of the HF weights in DIR with the plan's tensors of the
 * same name, dtype and shape, as written at their offsets in the weights file
 * OUT_PATH. Fills *OUT, its summary included. HF weights that cannot be read
 * are a SKIPPED result saying why, not an error: an error is only running
 * out of memory or failing to read OUT_PATH.
 */
weld_status weld__cross_check(const weld_plan *p, const char *out_path, const char *dir, weld_cross_check *out,
			      weld_error *err);

#endif /* WELD_PIPELINE_CROSSCHECK_H */
