/*
 * safetensors: a strict header parser that enforces the reference (Rust)
 * rules, and a header builder that matches the Python library's output byte
 * for byte (shared docs, section D).
 */
#ifndef WELD_SAFETENSORS_H
#define WELD_SAFETENSORS_H

#include "util/util.h"

#define WELD_ST_HEADER_MAX 100000000ull

typedef struct weld_st_tensor {
	char *name;
	weld_dtype dtype;
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t begin, end; /* data_offsets, relative to the data buffer */
} weld_st_tensor;

typedef struct weld_st_header {
	weld_st_tensor *tensors; /* in the order the JSON lists them */
	size_t ntensors;
	char **meta_keys, **meta_vals; /* __metadata__, string -> string */
	size_t nmeta;
	uint64_t header_len;  /* N, the 8-byte length prefix */
	uint64_t data_start;  /* 8 + N: file offset of the data buffer */
} weld_st_header;

/*
 * Parse and validate the JSON header JSON[0..LEN) of a file of FILE_SIZE
 * bytes whose prefix said LEN (so data_start = 8 + LEN). Enforces: valid
 * UTF-8 JSON object, known dtypes, shape products and byte sizes without
 * overflow, END - BEGIN == numel x itemsize, offsets contiguous from 0 with
 * no holes or overlaps, last END + 8 + LEN == FILE_SIZE exactly, metadata
 * values strings only, no duplicate names. Errors are WELD_ERR_FORMAT or
 * WELD_ERR_UNSUPPORTED (unknown dtype) with a message naming the tensor;
 * the caller prefixes the file name.
 */
weld_status weld_st_parse_header(weld_st_header *out, const char *json, size_t len,
				 uint64_t file_size, weld_error *err);

/* Read the 8-byte prefix and header of F and parse them as above. */
weld_status weld_st_read_header(weld_st_header *out, weld_file *f, weld_error *err);

void weld_st_header_clear(weld_st_header *h);

/* One tensor to be written: the builder needs only name, dtype and shape. */
typedef struct weld_st_out_tensor {
	const char *name;
	weld_dtype dtype;
	size_t ndim;
	const uint64_t *shape;
	uint64_t offset; /* filled by weld_st_build_header: begin within the data buffer */
	uint64_t nbytes; /* filled by weld_st_build_header */
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

#endif /* WELD_SAFETENSORS_H */
