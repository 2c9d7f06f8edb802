/*
 * What a plan amounts to, for the dry run and the first line of a real one:
 * its reads grouped by kind of file, and the memory its tables take. Known
 * from the plan alone, so no format is named: a kind of file is its name
 * with every run of digits read as N (one pattern per rank file family).
 */
#ifndef WELD_PIPELINE_SUMMARY_H
#define WELD_PIPELINE_SUMMARY_H

#include "pipeline/plan.h"

/*
 * Group the sources of C (whose plan is P) into at most WELD_READ_GROUPS_MAX
 * groups in OUT, largest read first (the last one "other files" when there
 * are more kinds); *N is how many. false only when out of memory.
 */
bool weld__plan_read_groups(const weld_plan *p, const weld_ckpt *c, weld_read_group *out, size_t *n);
/*
 * The reads of the cross-check against the HF weights in DIR, as one group
 * in *G; false when they cannot be opened (the cross-check then reads none).
 */
bool weld__plan_copy_reads(const char *dir, weld_read_group *g);
/* Bytes the tables of C and P take (tensors, fragments, records, patterns, names). */
uint64_t weld__plan_memory(const weld_plan *p, const weld_ckpt *c);

#endif /* WELD_PIPELINE_SUMMARY_H */
