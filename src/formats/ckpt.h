/*
 * weld_ckpt: what every input format is reduced to (shared docs: design.md).
 *
 * A format opens its files as sources and describes each tensor as
 * fragments: runs of elements at byte offsets of a source, landing at an
 * element offset of the tensor. A fragment may name the zip record its bytes
 * belong to, so that whoever streams them can check the record's CRC-32.
 * Nothing downstream (the plan, the executor, verify, inspect) knows which
 * format produced them; this file knows none of the formats either.
 */
#ifndef WELD_FORMATS_CKPT_H
#define WELD_FORMATS_CKPT_H

#include "io/record.h"
#include "util/util.h"

#define WELD_NO_PATTERN UINT32_MAX

/*
 * COUNT elements read contiguously from source SRC at SRC_OFFSET, landing at
 * element DST_ELEM. With a pattern (a strided view) that run is repeated
 * over the pattern's outer dimensions: run k, in C order over its shape,
 * starts at SRC_OFFSET + sum(index_d x stride_d) elements and lands at
 * DST_ELEM + k x COUNT, so one fragment stands for a whole transposed matrix.
 */
typedef struct weld_frag {
	uint64_t src_offset;
	uint64_t count;
	uint64_t dst_elem;
	uint32_t src;
	uint32_t record;  /* index into the checkpoint's records, or WELD_NO_RECORD */
	uint32_t pattern; /* index into the checkpoint's patterns, or WELD_NO_PATTERN */
} weld_frag;

/* The outer dimensions of a strided fragment: sizes and strides in elements. */
typedef struct weld_pattern {
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t stride[WELD_MAX_DIMS];
} weld_pattern;

/* An input file, and whatever its reader parsed from it (a torch object tree, a header...). */
typedef struct ckpt_source {
	weld_file *file;
	void *parsed;
	void (*free_parsed)(void *parsed);
} ckpt_source;

/*
 * A tensor of the checkpoint. Its fragments tile its elements in order: a
 * tensor stored as one run (the usual case) has exactly one, even when it is
 * empty, so that its position in the file is known.
 */
typedef struct ckpt_tensor {
	char *name;
	weld_dtype dtype;
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t numel, nbytes; /* numel: elements, or bytes for a sub-byte dtype (the unit copied) */
	uint32_t src;         /* the file listed for it (ZeRO: the model states) */
	weld_dtype keep_as;   /* what --dtype keep writes when not dtype (ZeRO buffers: zero_to_fp32's .float()), else 0 */
	const char *alias_of; /* the owner's name when this is the very same data, else NULL */
	size_t frag_first, frag_count;
} ckpt_tensor;

struct weld_ckpt {
	weld_format format;
	ckpt_source *src;
	size_t nsrc, scap;
	weld_map src_index; /* src by path */
	ckpt_tensor *t;
	size_t nt, tcap;
	weld_frag *frag;
	size_t nfrag, fcap;
	weld_record *rec;
	size_t nrec, rcap;
	weld_map rec_index; /* rec by file and offset */
	weld_pattern *pat;
	size_t npat, pcap;
	weld_deepspeed_info *deepspeed; /* NULL unless a DeepSpeed folder */
	const char *const *allow_globals; /* the user's extra classes (--allow-global), borrowed during open */
	size_t nallow_globals;
	const char *description;        /* a few words on what the format found (ZeRO stage, ranks, tag), or NULL */
	const char *choice_note;        /* why this kind was read, when the folder held several; else NULL */
	const char *hf_beside;          /* a folder whose HF weights hold the same model as this one's masters */
	void **owned;                   /* freed with the checkpoint (weld__ckpt_own) */
	size_t nowned, owncap;
};

/*
 * Open PATH as a source of C (once: a second call returns the same index).
 * *INDEX is its position in c->src.
 */
weld_status weld__ckpt_add_source(weld_ckpt *c, const char *path, uint32_t *index, weld_error *err);
/* Like weld__ckpt_add_source for an open file F (a window), taken over: closed here if already a source. */
weld_status weld__ckpt_add_file(weld_ckpt *c, weld_file *f, uint32_t *index, weld_error *err);
/* Appends a tensor named NAME, zeroed otherwise, its fragments starting at the next one. */
weld_status weld__ckpt_new_tensor(weld_ckpt *c, const char *name, ckpt_tensor **out, weld_error *err);
/* numel and nbytes of T from its shape and dtype, overflow-checked (PATH names the file). */
weld_status weld__ckpt_set_sizes(ckpt_tensor *t, const char *path, weld_error *err);
/* Appends fragment F to the last tensor. */
weld_status weld__ckpt_add_frag(weld_ckpt *c, weld_frag f, weld_error *err);
/* Adds record R once (the same range of the same file again gives the same index); *INDEX is its index. */
weld_status weld__ckpt_add_record(weld_ckpt *c, weld_record r, uint32_t *index, weld_error *err);
/* Adds pattern P; *INDEX is its index. */
weld_status weld__ckpt_add_pattern(weld_ckpt *c, const weld_pattern *p, uint32_t *index, weld_error *err);

/* How many contiguous runs fragment F is (1 without a pattern); PATS: its checkpoint's patterns. */
uint64_t weld__frag_runs(const weld_pattern *pats, const weld_frag *f);
/* Source element offset, from its fragment's start, of run K of a fragment with pattern P. */
uint64_t weld__pattern_run_start(const weld_pattern *p, uint64_t k);
/*
 * C takes P (malloc'd) and frees it with itself; returns P, or NULL when P
 * is NULL or there is no memory to note it (P is then freed).
 */
void *weld__ckpt_own(weld_ckpt *c, void *p);

/*
 * What source SRC's reader parsed, freed now that the checkpoint's tensors
 * no longer need it (its file stays a source). Records must not borrow
 * names from it. Reading it as a source again parses it again.
 */
void weld__ckpt_drop_parsed(weld_ckpt *c, uint32_t src);

/* true when tensor I is one run of bytes in a file (one fragment, no pattern): *F at *OFFSET. */
bool weld__ckpt_one_run(const weld_ckpt *c, size_t i, weld_file **f, uint64_t *offset);

#endif /* WELD_FORMATS_CKPT_H */
