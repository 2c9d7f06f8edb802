/*
 * A torch.save file, zip or legacy: its object tree (from the safe pickle
 * reader) and where each storage's bytes lie in the file.
 */
#ifndef WELD_TORCH_H
#define WELD_TORCH_H

#include "util/util.h"
#include "io/pickle/pickle.h"
#include "io/zip.h"

typedef struct weld_torch weld_torch;

typedef enum weld_torch_kind { WELD_TORCH_ZIP, WELD_TORCH_LEGACY } weld_torch_kind;

/* Where a storage's bytes are: a byte range of the file. */
typedef struct weld_torch_storage {
	uint64_t offset;  /* file offset of the first byte */
	uint64_t nbytes;
	const weld_zip_entry *entry; /* zip record (for CRC checks); NULL for legacy */
} weld_torch_storage;

/*
 * Open F (borrowed; must outlive the result), which starts with the zip magic
 * or the legacy magic pickle, and run its pickle(s), accepting the NALLOW
 * classes ALLOW ("module.Name", the user's --allow-global; may be NULL) as
 * inert data besides the allowlist. Refuses TorchScript archives and
 * big-endian files with WELD_ERR_UNSUPPORTED.
 */
weld_status weld_torch_open(weld_torch **out, weld_file *f, const char *const *allow, size_t nallow, weld_error *err);
void weld_torch_close(weld_torch *t);

weld_torch_kind weld_torch_kind_of(const weld_torch *t);
weld_py *weld_torch_root(const weld_torch *t);
/* Bytes of pickle data read to build the tree. */
uint64_t weld_torch_pickle_bytes(const weld_torch *t);

/*
 * Resolve STORAGE (a WELD_PY_STORAGE from this file's tree) to its bytes in
 * the file, checking that the record holds numel x element size bytes.
 */
weld_status weld_torch_storage_range(weld_torch *t, const weld_py *storage, weld_torch_storage *out,
				     weld_error *err);

/* true when the first bytes HEAD[0..N) may be torch zip or legacy torch (a cheap guess; open decides). */
bool weld_torch_sniff(const uint8_t *head, size_t n);

#endif /* WELD_TORCH_H */
