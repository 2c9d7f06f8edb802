/* The insides of weld_ckpt, shared by checkpoint.c and deepspeed.c. */
#ifndef WELD_CHECKPOINT_H
#define WELD_CHECKPOINT_H

#include "util/util.h"
#include "io/pickle/pickle.h"
#include "io/safetensors.h"
#include "io/torch.h"

typedef struct ckpt_source {
	const char *path; /* owned by file */
	weld_file *file;
	weld_torch *torch; /* torch files */
	weld_st_header st; /* safetensors files */
	bool is_st;
} ckpt_source;

/* COUNT elements of a ZeRO partition at file OFFSET, landing at DST_ELEM of a tensor. */
typedef struct ckpt_zfrag {
	uint32_t src;
	uint64_t offset, count, dst_elem;
	const weld_zip_entry *entry; /* the partition's record, for its CRC check; NULL for legacy files */
} ckpt_zfrag;

typedef struct ckpt_tensor {
	char *name;
	weld_dtype dtype;
	size_t ndim;
	uint64_t shape[WELD_MAX_DIMS];
	uint64_t numel, nbytes;
	size_t src;
	const weld_py *view; /* torch tensor node; NULL for safetensors and ZeRO partitions */
	uint64_t st_offset;  /* safetensors: file offset of the data */
	bool contiguous;
	const char *alias_of;
	bool zero;               /* gathered from ZeRO partitions: zf_first.. */
	size_t zf_first, zf_count;
} ckpt_tensor;

typedef struct ckpt_deepspeed {
	weld_deepspeed_info info;
	char *tag, *tag_dir, *ds_version;
	char **files;
	size_t nfiles;
} ckpt_deepspeed;

struct weld_ckpt {
	weld_format format;
	ckpt_source *src;
	size_t nsrc;
	ckpt_tensor *t;
	size_t nt, cap;
	ckpt_deepspeed ds;
	ckpt_zfrag *zf;
	size_t nzf, zfcap;
};

/* Helpers shared by the formats. */
char *weld__path_join(const char *dir, const char *name);
bool weld__is_file(const char *path);
bool weld__is_dir(const char *path);
/* Whole small file (index, `latest`) NUL-terminated; over MAX bytes is an error. */
weld_status weld__read_small_file(const char *path, size_t max, char **out, size_t *len, weld_error *err);
/* Open PATH as a source (once); *INDEX is its position in c->src. */
weld_status weld__ckpt_add_source(weld_ckpt *c, const char *path, size_t *index, weld_error *err);
/* Appends a tensor named NAME (zeroed otherwise); NULL when out of memory. */
ckpt_tensor *weld__ckpt_new_tensor(weld_ckpt *c, const char *name, weld_error *err);
/* numel and nbytes from shape and dtype, overflow-checked. */
weld_status weld__ckpt_set_sizes(ckpt_tensor *t, const char *path, weld_error *err);
weld_status weld__ckpt_add_torch_tensor(weld_ckpt *c, size_t src, const char *name, const weld_py *v,
					weld_error *err);
/* Every tensor under ROOT's dicts/lists, named as state-dict keys. */
weld_status weld__ckpt_add_torch_tree(weld_ckpt *c, size_t src, const weld_py *root, weld_error *err);

/* deepspeed.c: finding the tag folder and its files */
bool weld__deepspeed_present(const char *dir);
weld_status weld__deepspeed_open(weld_ckpt *c, const char *dir, weld_error *err);
void weld__deepspeed_clear(ckpt_deepspeed *ds);
/* A torch file of the checkpoint, opened once as a source; *ROOT its object tree. */
weld_status weld__ckpt_open_torch(weld_ckpt *c, const char *path, size_t *src, const weld_py **root,
				  weld_error *err);

/* zero.c: the tensors zero_to_fp32 would rebuild, as fragments of the partitions */
typedef struct zero_layout {
	int stage;             /* 0..3 */
	int world;             /* data-parallel world size from the file names */
	size_t states_src;     /* rank 0's model states */
	char **optim_paths;    /* by rank; NULL entries for none */
	char **model_paths;    /* stage 3: by rank */
} zero_layout;
weld_status weld__zero_build(weld_ckpt *c, const zero_layout *z, weld_error *err);
weld_status weld__zero_read(weld_ckpt *c, const ckpt_tensor *t, void *dst, weld_error *err);

#endif /* WELD_CHECKPOINT_H */
