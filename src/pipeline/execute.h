/*
 * The executor: streams a plan's fragments through a backend in chunks and
 * pwrites each finished chunk at its final offset. Memory is
 * threads x (staging + output chunk), whatever the model's size.
 */
#ifndef WELD_EXECUTE_H
#define WELD_EXECUTE_H

#include "backend/backend.h"
#include "pipeline/plan.h"

typedef struct weld_exec_options {
	int threads;        /* >= 1 */
	size_t chunk_bytes; /* output bytes per chunk */
	weld_progress_fn progress;
	void *payload;
} weld_exec_options;

typedef struct weld_exec_result {
	uint32_t *tensor_crcs; /* plan->nt entries, malloc'd: caller frees */
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
