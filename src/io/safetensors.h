/*
 * safetensors headers: a strict reader that enforces the reference (Rust)
 * reader's rules (shared docs, section D). The writer is in
 * output/safetensors.h; the helpers at the end serve both.
 */
#ifndef WELD_IO_SAFETENSORS_H
#define WELD_IO_SAFETENSORS_H

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

/* Room weld__st_show needs. */
#define WELD_ST_SHOW_BUF 204

/*
 * S made fit for a one-line message into BUF: control bytes become '?', and a
 * long name is cut at a UTF-8 character boundary and ends in "...".
 */
const char *weld__st_show(char buf[WELD_ST_SHOW_BUF], const char *s);
/* "[509,64]" for messages. */
const char *weld__st_show_shape(char buf[400], const uint64_t *shape, size_t ndim);
/*
 * Byte size of a tensor; false on overflow, *WHICH then 0 (element count) or
 * 1 (bytes), or for a sub-byte dtype 2 when numel x bits is not a whole
 * number of bytes (the reference's "does not end up at a byte boundary").
 */
bool weld__st_tensor_bytes(weld_dtype dtype, const uint64_t *shape, size_t ndim, uint64_t *bytes, int *which);

#endif /* WELD_IO_SAFETENSORS_H */
