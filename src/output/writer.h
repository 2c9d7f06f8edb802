/*
 * The weights file a plan is written into, behind one interface: each kind
 * lays the plan out (every tensor's file offset fixed before any data
 * moves), writes what precedes and lies between the tensors, and finishes
 * the file once the executor has put their bytes in and returned their
 * CRC-32s. model.safetensors (output/safetensors.c) and pytorch_model.bin
 * (output/torch_bin.c) are the two kinds. A safetensors writer given a
 * shard limit lays the plan out over several files, as transformers shards
 * (output/shards.h): each tensor's file is then p->t[i].file.
 */
#ifndef WELD_OUTPUT_WRITER_H
#define WELD_OUTPUT_WRITER_H

#include "pipeline/plan.h"

typedef struct weld_writer weld_writer;

typedef struct weld_writer_iface {
	const char *file_name; /* "model.safetensors" */
	/*
	 * Reorder P into file order (file by file) and set each tensor's file
	 * and offset; *FILE_SIZE is the size of all files. A kind that writes
	 * several files sets W's files itself.
	 */
	weld_status (*layout)(weld_writer *w, weld_plan *p, uint64_t *file_size, weld_error *err);
	/* Everything of file FILE before and between the tensors that is known up front. */
	weld_status (*write_head)(weld_writer *w, size_t file, int fd, const char *path, weld_error *err);
	/*
	 * The rest of file FILE, given the tensors' CRC-32s (plan order);
	 * *FILE_CRC: the whole file's, combined without reading back.
	 */
	weld_status (*finish)(weld_writer *w, size_t file, const weld_plan *p, int fd, const char *path,
			      const uint32_t *tensor_crcs, uint32_t *file_crc, weld_error *err);
	void (*free_state)(void *state);
} weld_writer_iface;

/* One file a writer writes. */
typedef struct weld_out_file {
	char name[48];
	uint64_t size;
} weld_out_file;

struct weld_writer {
	const weld_writer_iface *iface;
	void *state;
	bool sharded;        /* set before the layout: split at shard_limit bytes */
	int64_t shard_limit;
	weld_out_file *files; /* set by the layout */
	size_t nfiles;
	char *index;          /* sharded into more than one file: the index's text, else NULL */
	size_t index_len;
};

extern const weld_writer_iface weld_writer_safetensors;
extern const weld_writer_iface weld_writer_torch_bin;

/* A writer of KIND (one of the two above). */
weld_status weld_writer_new(weld_writer **out, const weld_writer_iface *kind, weld_error *err);
void weld_writer_free(weld_writer *w);

/* W's layout of P (iface->layout): W's files set, *TOTAL the bytes of them all. */
weld_status weld_writer_layout(weld_writer *w, weld_plan *p, uint64_t *total, weld_error *err);

#endif /* WELD_OUTPUT_WRITER_H */
