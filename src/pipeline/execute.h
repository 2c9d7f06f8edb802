/*
 * The executor: streams a plan's fragments through a backend in chunks and
 * pwrites each finished chunk at its final offset. Memory is
 * threads x (staging + output chunk), whatever the model's size.
 */
#ifndef WELD_EXECUTE_H
#define WELD_EXECUTE_H

#include "backend/backend.h"
#include "pipeline/plan.h"

/* A record's bytes the fragments skip (padding) are read to check its CRC while they stay this few. */
#define WELD_RECORD_GAP_MAX (1u << 20)

typedef struct weld_exec_options {
	int threads;        /* >= 1 */
	size_t chunk_bytes; /* output bytes per chunk */
	weld_progress_fn progress;
	void *payload;
	/*
	 * One part of a multi-part job (pipeline/parts.h): only elements
	 * [range_begin[i], range_end[i]) of tensor i are read and written, and
	 * the record pieces read are handed back rather than checked, since
	 * the other parts read the rest of each record. NULL: everything.
	 */
	const uint64_t *range_begin, *range_end;
} weld_exec_options;

typedef struct weld_exec_result {
	uint32_t *tensor_crcs; /* plan->nt entries, malloc'd: caller frees (a part: of its range of each) */
	weld_record_piece *record_pieces; /* a part's, for the publisher to check; malloc'd: caller frees */
	size_t nrecord_pieces;
	uint64_t bytes_written; /* tensor bytes written */
	uint64_t fp16_overflows;
	uint64_t bytes_read;
	double seconds;
} weld_exec_result;

/*
 * Fill every tensor of P into FDS[t.file] (PATHS[t.file] for messages) at
 * its offset, both of which the writer's layout has set. Verifies the CRC of every source record
 * the plan marked. A progress callback returning nonzero stops the run
 * between chunks with WELD_ERR_CANCELLED.
 */
weld_status weld_execute(const weld_plan *p, weld_backend *b, const int *fds, const char *const *paths,
			 const weld_exec_options *opts, weld_exec_result *res, weld_error *err);

#endif /* WELD_EXECUTE_H */
