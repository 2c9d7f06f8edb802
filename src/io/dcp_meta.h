/*
 * A DCP folder's .metadata read into plain structs: the tensors of the state
 * dict with their global sizes and chunks, and where each chunk's bytes are
 * (storage_data). The pickle is read by the safe reader as inert objects:
 * Metadata, TensorStorageMetadata, ChunkStorageMetadata, MetadataIndex and
 * _StorageInfo are dataclasses (their fields in BUILD's state dict),
 * TensorProperties a tuple (its __getstate__).
 */
#ifndef WELD_IO_DCP_META_H
#define WELD_IO_DCP_META_H

#include "io/pickle/pickle.h"
#include "util/util.h"

#define DCP_NO_STORAGE SIZE_MAX

typedef struct dcp_chunk {
	uint64_t offsets[WELD_MAX_DIMS], sizes[WELD_MAX_DIMS];
	size_t storage; /* index into dcp_meta.storage, or DCP_NO_STORAGE */
} dcp_chunk;

typedef struct dcp_tensor {
	const char *fqn;  /* the flattened state-dict key (points into the pickle) */
	const char *name; /* the model's name for it (fqn without the "model." group), or NULL: not the model's */
	weld_dtype dtype;
	size_t ndim;
	uint64_t size[WELD_MAX_DIMS];
	dcp_chunk *chunks;
	size_t nchunks;
} dcp_tensor;

typedef struct dcp_storage {
	const char *fqn;           /* the entry it holds (a chunk of it), for messages */
	const char *relative_path; /* file in the DCP folder */
	uint64_t offset, length;
	const char *transform; /* the first transform descriptor ("stream.zstd/1"), or NULL */
	bool bytes_item;       /* a non-tensor value (torch.save'd, loaded with weights_only=False) */
} dcp_storage;

typedef struct dcp_meta {
	weld_pickle *pickle; /* owns the strings above */
	dcp_tensor *t;
	size_t nt;
	dcp_storage *storage;
	size_t nstorage;
	size_t nbytes_entries; /* non-tensor entries (BytesStorageMetadata): never read */
} dcp_meta;

/*
 * Read PATH (a .metadata file) into M, accepting the NALLOW classes ALLOW
 * besides the allowlist. Model tensors are named from planner_data: the
 * entries under a "model" group (HF Trainer / accelerate save
 * {"model": state_dict}) without that group's name, else the top-level
 * tensors (torchtitan, plain dcp.save); optimizer and other groups get no
 * name. Free with weld__dcp_meta_free.
 */
weld_status weld__dcp_meta_read(dcp_meta *m, const char *path, const char *const *allow, size_t nallow,
				weld_error *err);
void weld__dcp_meta_free(dcp_meta *m);

#endif /* WELD_IO_DCP_META_H */
