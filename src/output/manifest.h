/*
 * weld.json, the manifest beside every output: tool version, source (as
 * given, and resolved: source_path), dtype, each weights file's size and
 * CRC-32 (several when sharded: "index" then names the index, and each
 * tensor its "file"), and each tensor's CRC-32 (zlib's, so Python's
 * zlib.crc32 agrees).
 * Written by convert, read by verify and by batch --skip-existing.
 */
#ifndef WELD_OUTPUT_MANIFEST_H
#define WELD_OUTPUT_MANIFEST_H

#include "output/writer.h"

#define WELD_MANIFEST_NAME "weld.json"

typedef struct weld_manifest_info {
	const char *source;        /* input path as given */
	const char *source_path;   /* resolved; NULL: resolved here (a job's publisher may run elsewhere) */
	const char *source_format; /* weld_format_name */
	const char *dtype;         /* "bfloat16", "float16", "float32", "keep" */
	const weld_out_file *files; /* "model.safetensors" / "pytorch_model.bin", or the shards */
	const uint32_t *file_crcs;
	size_t nfiles;
	const char *index_file;     /* the shards' index, or NULL */
	const uint32_t *tensor_crcs; /* plan order */
	uint64_t fp16_overflows;
	char *const *side_files;
	size_t nside;
	const char *choice_note;              /* why these weights were read, or NULL */
	const weld_cross_check *cross_check;  /* NULL or result NONE: not recorded */
} weld_manifest_info;

/* Write DIR/weld.json for plan P atomically (temporary name, fsync, rename). */
weld_status weld_manifest_write(const char *dir, const weld_plan *p, const weld_manifest_info *info,
				weld_error *err);

/* What a manifest says of one tensor. */
typedef struct weld_manifest_tensor {
	const char *name, *dtype; /* dtype as written ("BF16") */
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t offset, bytes;
	uint32_t crc32;
	size_t file; /* index into the manifest's files */
} weld_manifest_tensor;

/* One weights file a manifest lists. */
typedef struct weld_manifest_file {
	const char *name; /* a plain file name */
	uint64_t size;
	uint32_t crc32;
} weld_manifest_file;

/* A tied name and the name it is stored under (NULL when the manifest gives no string). */
typedef struct weld_manifest_tie {
	const char *name, *owner;
} weld_manifest_tie;

typedef struct weld_manifest {
	const char *weights; /* files[0], or the shards' index: a plain file name */
	const char *source_path; /* the input, resolved; NULL when not recorded (older welds) */
	weld_manifest_file *files;
	size_t nfiles;
	bool has_tensor_count;
	uint64_t tensor_count;
	weld_manifest_tensor *tensors;
	size_t ntensors;
	weld_manifest_tie *ties;
	size_t nties;
	struct cJSON *json; /* the strings above point into it */
} weld_manifest;

/*
 * DIR/weld.json, read and checked: each of files names a file in DIR with
 * a size and CRC-32, and every tensor has a name, dtype, shape, offset,
 * bytes and CRC-32 (and a file that is listed, when there are several). A missing file is WELD_ERR_IO; a malformed one WELD_ERR_FORMAT
 * naming what is wrong. Numbers above 2^53 are malformed (JSON's doubles).
 */
weld_status weld_manifest_read(const char *dir, weld_manifest **out, weld_error *err);
void weld_manifest_free(weld_manifest *m);

#endif /* WELD_OUTPUT_MANIFEST_H */
