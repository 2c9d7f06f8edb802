/*
 * weld_convert: the one function that strings the steps together
 * (convert.c): one process converts and publishes everything, or runs its
 * part of a multi-part job (convert_parts.c).
 */
#include "convert_steps.h"
#include "pipeline/summary.h"


weld_status weld_convert(const char *input, const char *output_dir, const weld_convert_options *options,
			 weld_convert_result *res, weld_error *err)
{
	weld_error scratch;
	weld_convert_result local;
	if (!err)
		err = &scratch;
	if (!res)
		res = &local;
	conversion cv;
	weld_status s = weld__conversion_begin(&cv, input, output_dir, options, res, err);
	if (!s)
		s = weld__parts_take(&cv, err);
	if (!s)
		s = weld__prepare(&cv, err);
	if (!s)
		weld__fill_planned(&cv);
	if (!s && !weld__plan_read_groups(cv.p, cv.c, res->reads, &res->nreads))
		s = weld__nomem(err);
	/* The cross-check reads the Trainer's copy too: a dry run says so (a real run counts what it read). */
	if (!s && cv.opts.dry_run && cv.c->hf_beside && cv.opts.cross_check != WELD_CROSS_CHECK_OFF &&
	    res->nreads < WELD_READ_GROUPS_MAX &&
	    weld__plan_copy_reads(cv.c->hf_beside, &res->reads[res->nreads]))
		res->nreads++;
	if (!s && cv.opts.dry_run) {
		res->bytes_read = cv.p->src_bytes; /* what a real run would read */
		weld__release(&cv);
		return WELD_OK;
	}
	if (!s && cv.opts.start)
		cv.opts.start(res, cv.opts.payload);
	if (!s && cv.parts)
		s = weld__part_run(&cv, err);
	else if (!s)
		s = weld__write_weights(&cv, err);
	if (!s && !cv.parts)
		s = weld__write_side_files(&cv, err);
	if (!s && !cv.parts)
		s = weld__publish(&cv, err);
	if (!s && !cv.parts)
		weld__fill_result(&cv);
	if (cv.c)
		res->bytes_read = weld__total_bytes_read(cv.c) + res->cross_check.bytes_read;
	weld__release(&cv);
	return s;
}
