/*
 * The plan: every output tensor, made of source fragments, known before any
 * data moves (shared docs: design.md). Formats build it from a weld_ckpt;
 * the writer fixes each tensor's file offset from it; the executor streams
 * its fragments through a backend.
 */
#ifndef WELD_PLAN_H
#define WELD_PLAN_H

#include "util/util.h"

#define WELD_NO_RECORD UINT32_MAX

/* COUNT elements read contiguously from a source file, landing at DST_ELEM. */
typedef struct weld_frag {
	uint64_t src_offset; /* file offset of the first element */
	uint64_t count;      /* elements */
	uint64_t dst_elem;   /* first element within the output tensor */
	uint32_t src;        /* index into plan->files */
	uint32_t record;     /* zip record whose CRC these bytes help verify, or WELD_NO_RECORD */
	weld_dtype src_dtype;
} weld_frag;

typedef struct weld_plan_tensor {
	char *name;
	weld_dtype dtype; /* output dtype */
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t numel, nbytes;
	uint64_t offset; /* file offset of the data, set by the writer's layout */
	size_t frag_first, frag_count;
} weld_plan_tensor;

/* A zip record read whole through fragments that tile it: its CRC gets checked. */
typedef struct weld_plan_record {
	uint32_t src;
	uint64_t offset, nbytes;
	uint32_t crc; /* from the central directory */
	const char *name; /* record name, for the error message */
} weld_plan_record;

typedef struct weld_plan_alias {
	char *name, *owner;
} weld_plan_alias;

typedef struct weld_plan {
	weld_file **files; /* borrowed from the checkpoint */
	size_t nfiles;
	weld_plan_tensor *t;
	size_t nt;
	weld_frag *f;
	size_t nf, fcap;
	weld_plan_record *rec;
	size_t nrec;
	weld_plan_alias *alias;
	size_t nalias;
	char stripped_prefix[32];
	uint64_t src_bytes; /* bytes the fragments read */
	uint64_t out_bytes; /* tensor bytes written */
} weld_plan;

typedef struct weld_plan_options {
	weld_out_dtype dtype;
	/* config.json says tie_word_embeddings: write lm_head.weight once, as the embedding. */
	bool tie_word_embeddings;
} weld_plan_options;

typedef struct weld_ckpt weld_ckpt;

/* Build the plan for C (which must outlive it). */
weld_status weld_plan_build(weld_plan **out, weld_ckpt *c, const weld_plan_options *opts, weld_error *err);
void weld_plan_free(weld_plan *p);

/* Output dtype for a source tensor of dtype SRC. */
weld_dtype weld_plan_out_dtype(weld_dtype src, weld_out_dtype want);

#endif /* WELD_PLAN_H */
