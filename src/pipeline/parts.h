/*
 * One conversion cut into K parts that separate processes (Slurm tasks on
 * several nodes) run at once. The plan, laid out, is one sequence of
 * source bytes in file order; part I reads its I-th K-th of them, so the
 * parts read about equal bytes whatever the tensors' sizes: a large tensor
 * is split between parts at an element. What a part writes follows: each
 * output byte is computed from the source bytes of its element.
 */
#ifndef WELD_PIPELINE_PARTS_H
#define WELD_PIPELINE_PARTS_H

#include "pipeline/plan.h"

/* The most parts one job may have (a part manifest per part sits in one folder). */
#define WELD_PARTS_MAX 4096

/*
 * Part PART of PARTS of plan P: elements [BEGIN[i], END[i]) of each tensor
 * i (arrays of p->nt). The parts together cover every element exactly
 * once, in order; *SRC_BYTES is what this part reads.
 */
void weld__part_ranges(const weld_plan *p, unsigned parts, unsigned part, uint64_t *begin, uint64_t *end,
		       uint64_t *src_bytes);

#endif /* WELD_PIPELINE_PARTS_H */
