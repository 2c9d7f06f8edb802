/*
 * The plan: every output tensor, made of source fragments, known before any
 * data moves (shared docs: design.md). It is built from any checkpoint
 * alike; the writer fixes each tensor's file offset from it, and the
 * executor streams its fragments through a backend.
 */
#ifndef WELD_PIPELINE_PLAN_H
#define WELD_PIPELINE_PLAN_H

#include "formats/ckpt.h"

typedef struct weld_plan_tensor {
	char *name;
	weld_dtype dtype;     /* output dtype */
	weld_dtype src_dtype; /* dtype of its fragments' elements */
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t numel, nbytes;
	uint64_t offset; /* file offset of the data, set by the writer's layout */
	uint32_t file;   /* which of the writer's files (shards) holds it, set by the layout */
	size_t frag_first, frag_count; /* into plan->frags */
} weld_plan_tensor;

/* A name written once, under its owner's (a tied weight). */
typedef struct weld_plan_alias {
	char *name, *owner;
} weld_plan_alias;

typedef struct weld_plan {
	/* Borrowed from the checkpoint, which must outlive the plan. */
	const ckpt_source *src;
	size_t nsrc;
	const weld_frag *frags;
	const weld_record *records;
	const weld_pattern *patterns;
	weld_plan_tensor *t;
	size_t nt;
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

/* Build the plan for C (which must outlive it). */
weld_status weld_plan_build(weld_plan **out, const weld_ckpt *c, const weld_plan_options *opts, weld_error *err);
void weld_plan_free(weld_plan *p);

/* Output dtype for a source tensor of dtype SRC. */
weld_dtype weld_plan_out_dtype(weld_dtype src, weld_out_dtype want);

#endif /* WELD_PIPELINE_PLAN_H */
