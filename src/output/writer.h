/*
 * The weights file a plan is written into, behind one interface: each kind
 * lays the plan out (every tensor's file offset fixed before any data
 * moves), writes what precedes and lies between the tensors, and finishes
 * the file once the executor has put their bytes in and returned their
 * CRC-32s. model.safetensors (output/safetensors.c) and pytorch_model.bin
 * (output/torch_bin.c) are the two kinds.
 */
#ifndef WELD_OUTPUT_WRITER_H
#define WELD_OUTPUT_WRITER_H

#include "pipeline/plan.h"

typedef struct weld_writer weld_writer;

typedef struct weld_writer_iface {
	const char *file_name; /* "model.safetensors" */
	/* Reorder P into file order and set each tensor's offset; *FILE_SIZE is the file's size. */
	weld_status (*layout)(weld_writer *w, weld_plan *p, uint64_t *file_size, weld_error *err);
	/* Everything before and between the tensors that is known up front. */
	weld_status (*write_head)(weld_writer *w, int fd, const char *path, weld_error *err);
	/* The rest, given the tensors' CRC-32s (plan order); *FILE_CRC: the whole file's, combined without reading back. */
	weld_status (*finish)(weld_writer *w, const weld_plan *p, int fd, const char *path, const uint32_t *tensor_crcs,
			      uint32_t *file_crc, weld_error *err);
	void (*free_state)(void *state);
} weld_writer_iface;

struct weld_writer {
	const weld_writer_iface *iface;
	void *state;
};

extern const weld_writer_iface weld_writer_safetensors;
extern const weld_writer_iface weld_writer_torch_bin;

/* A writer of KIND (one of the two above). */
weld_status weld_writer_new(weld_writer **out, const weld_writer_iface *kind, weld_error *err);
void weld_writer_free(weld_writer *w);

#endif /* WELD_OUTPUT_WRITER_H */
