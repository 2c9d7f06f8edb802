/*
 * Writes a legacy-compatible pytorch_model.bin (`--pytorch-bin`): the zip
 * layout torch.save produces (stored records, 64-byte aligned data through an
 * "FB" local extra field, data descriptors, ZIP64 end records) holding a
 * protocol-2 pickle of a plain dict name -> tensor that
 * torch.load(weights_only=True) accepts.
 *
 * The layout is fixed before any tensor data exists, so the executor can
 * pwrite tensor bytes straight to their final offsets: first
 * weld_tw_layout(), then weld_tw_write_head() (data.pkl, small records and
 * every local header), then the tensor data at tensors[i].offset, then
 * weld_tw_finish() with each tensor's CRC-32 (data descriptors, central
 * directory, end records).
 */
#ifndef WELD_TORCH_WRITER_H
#define WELD_TORCH_WRITER_H

#include "util/util.h"

typedef struct weld_tw_tensor {
	const char *name;
	weld_dtype dtype;
	size_t ndim;
	const uint64_t *shape;
	uint64_t nbytes; /* numel x dtype size */
	uint64_t offset; /* out: file offset of this tensor's data */
} weld_tw_tensor;

typedef struct weld_tw_layout weld_tw_layout;

/*
 * Plan the archive for TENSORS (in this order; names unique; each tensor its
 * own storage, keys "0", "1", ...). ARCHIVE_NAME is the folder inside the zip
 * (torch uses the file name without extension: "pytorch_model").
 * Fills tensors[i].offset and *FILE_SIZE.
 */
weld_status weld_tw_layout_new(weld_tw_layout **out, weld_tw_tensor *tensors, size_t n,
			       const char *archive_name, uint64_t *file_size, weld_error *err);
void weld_tw_layout_free(weld_tw_layout *l);

/* Write everything that precedes or sits between tensor data, except descriptors. */
weld_status weld_tw_write_head(const weld_tw_layout *l, int fd, const char *path, weld_error *err);

/*
 * Write the data descriptors (with TENSOR_CRCS[i], zlib's CRC-32 of tensor
 * i's bytes), the central directory and the end records. *FILE_CRC gets the
 * CRC-32 of the whole file, combined from the pieces without reading back.
 */
weld_status weld_tw_finish(const weld_tw_layout *l, int fd, const char *path, const uint32_t *tensor_crcs,
			   uint32_t *file_crc, weld_error *err);

#endif /* WELD_TORCH_WRITER_H */
