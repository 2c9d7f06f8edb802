/*
 * The steps of weld_convert (convert.c), shared with the parts of a
 * multi-part conversion and its publish (convert_parts.c). Internal.
 */
#ifndef WELD_CONVERT_STEPS_H
#define WELD_CONVERT_STEPS_H

#include "backend/backend.h"
#include "output/atomic.h"
#include "output/lock.h"
#include "output/target.h"
#include "output/writer.h"
#include "pipeline/execute.h"

/* Everything one conversion holds, released in one place. */
typedef struct conversion {
	const char *input, *output_dir;
	const char *input_path; /* the input resolved, when it was recorded (--finish); else NULL */
	weld_convert_options opts;
	weld_convert_result *res;
	char *side_dir;
	weld_target target;
	weld_lock lock;
	char *stage; /* the staging folder everything is written into */
	weld_ckpt *c;
	weld_plan *p;
	weld_backend *b;
	weld_writer *w;
	uint64_t file_size; /* of every weights file */
	weld_atomic *weights; /* one per weights file (w->nfiles) */
	weld_exec_result ex;
	uint32_t *file_crcs;
	uint32_t file_crc; /* the one file's, or the index's */
	char **side;
	size_t nside;
	/* A multi-part job (parts > 0): this process runs part PART of PARTS, or publishes (convert_parts.c). */
	unsigned parts, part;
	char *job_dir;
	char job_id[33];           /* job.json's "id", which every part record names */
	bool finish_force;         /* --finish --force: the caller's force (the job's options keep none) */
	struct cJSON *job;         /* --finish: the recorded job, which the strings below point into */
	const char **job_globals;
} conversion;

const char *weld__dtype_label(weld_out_dtype d);
/*
 * CV for a run from INPUT (NULL: --finish, the job's) into OUTPUT_DIR, RES
 * zeroed; the options GIVEN on top of the defaults (fields past its
 * struct_size keep theirs).
 */
weld_status weld__conversion_begin(conversion *cv, const char *input, const char *output_dir,
				   const weld_convert_options *given, weld_convert_result *res, weld_error *err);
/* The target's lock taken, leftovers repaired, an unfinished job's folder refused (or with force removed). */
weld_status weld__claim_target(conversion *cv, weld_error *err);
/* The plan, its layout and the backend; a whole run also the lock and a staging folder, a part neither. */
weld_status weld__prepare(conversion *cv, weld_error *err);
void weld__fill_planned(conversion *cv);
/* The weights files (one, or the shards) and the index, written whole into cv->stage. */
weld_status weld__write_weights(conversion *cv, weld_error *err);
/* config.json, tokenizer files and weld.json into cv->stage, from the tensor CRCs in cv->ex. */
weld_status weld__write_side_files(conversion *cv, weld_error *err);
weld_status weld__publish(conversion *cv, weld_error *err);
void weld__fill_result(conversion *cv);
uint64_t weld__total_bytes_read(const weld_ckpt *c);
void weld__release(conversion *cv);

/* convert_parts.c */
/* cv->parts and cv->part from the options: 0 parts for a whole run. */
weld_status weld__parts_take(conversion *cv, weld_error *err);
/* This process's part, recorded; the output published when it is the last. */
weld_status weld__part_run(conversion *cv, weld_error *err);

#endif /* WELD_CONVERT_STEPS_H */
