/*
 * The safetensors writer: a header builder whose output matches the Python
 * writer byte for byte (shared docs, section D), and the layout of a plan
 * as model.safetensors.
 */
#ifndef WELD_OUTPUT_SAFETENSORS_H
#define WELD_OUTPUT_SAFETENSORS_H

#include "pipeline/plan.h"

/* One tensor to be written: the builder needs only name, dtype and shape. */
typedef struct weld_st_out_tensor {
	const char *name;
	weld_dtype dtype;
	size_t ndim;
	const uint64_t *shape;
	uint64_t offset; /* filled by weld_st_build_header: begin within the data buffer */
	uint64_t nbytes; /* filled by weld_st_build_header */
	size_t index;    /* the caller's, carried through the sort */
} weld_st_out_tensor;

/*
 * Sort TENSORS in place into the Python writer's order (dtype descending,
 * then name bytewise ascending), assign contiguous offsets, and build the
 * complete file prefix: 8-byte length + compact JSON with __metadata__ first
 * (META_KEYS/VALS, may be empty) + spaces to a multiple of 8. *OUT_HEADER is
 * malloc'd (caller frees), *OUT_LEN its length (= data buffer start),
 * *OUT_DATA_LEN the data buffer's total size. Duplicate names: WELD_ERR_INVALID_ARG.
 */
weld_status weld_st_build_header(weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
				 const char *const *meta_vals, size_t nmeta, uint8_t **out_header,
				 size_t *out_len, uint64_t *out_data_len, weld_error *err);

/*
 * P laid out as a model.safetensors with __metadata__ {"format": "pt"}: its
 * tensors reordered into the file's order with their offsets set, *HEADER
 * (malloc'd) the file's first *HEADER_LEN bytes, *FILE_SIZE its size.
 */
weld_status weld_st_layout(weld_plan *p, uint8_t **header, size_t *header_len, uint64_t *file_size,
			   weld_error *err);

#endif /* WELD_OUTPUT_SAFETENSORS_H */
