/*
 * weld.json, the manifest beside every output: tool version, source, dtype,
 * the weights file's size and CRC-32, and each tensor's CRC-32 (zlib's, so
 * Python's zlib.crc32 agrees).
 */
#ifndef WELD_MANIFEST_H
#define WELD_MANIFEST_H

#include "pipeline/plan.h"

#define WELD_MANIFEST_NAME "weld.json"

typedef struct weld_manifest_info {
	const char *source;        /* input path as given */
	const char *source_format; /* weld_format_name */
	const char *dtype;         /* "bfloat16", "float16", "float32", "keep" */
	const char *weights_file;  /* "model.safetensors" / "pytorch_model.bin" */
	uint64_t file_size;
	uint32_t file_crc32;
	const uint32_t *tensor_crcs; /* plan order */
	uint64_t fp16_overflows;
	char *const *side_files;
	size_t nside;
} weld_manifest_info;

/* Write DIR/weld.json atomically (temporary name, fsync, rename). */
weld_status weld_manifest_write(const char *dir, const weld_plan *p, const weld_manifest_info *info,
				weld_error *err);

/* Write LEN bytes to DIR/NAME through a temporary file, fsync and rename. */
weld_status weld__write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
				    weld_error *err);

#endif /* WELD_MANIFEST_H */
