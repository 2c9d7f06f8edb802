/*
 * Reader for the zip archives torch.save writes (see shared docs, section A):
 * central directory walk, ZIP64 (EOCD record and per-entry extra fields),
 * data offsets from the *local* header (torch pads it with an "FB" extra
 * field), stored entries only, prefix taken from the first entry.
 */
#ifndef WELD_ZIP_H
#define WELD_ZIP_H

#include "util/util.h"

typedef struct weld_zip_entry {
	char *name;               /* full name, with prefix ("archive/data/0") */
	const char *record;       /* name after "<prefix>/" (points into name) */
	uint64_t size;            /* uncompressed == compressed (stored only) */
	uint64_t local_offset;    /* offset of the local header */
	uint64_t data_offset;     /* resolved by weld_zip_find; UINT64_MAX until then */
	uint32_t crc32;           /* from the central directory */
	uint16_t method;          /* 0 = stored */
	uint16_t flags;
} weld_zip_entry;

/* Whether E's stored CRC-32 is one: torch, told not to compute CRCs, stores 0. */
static inline bool weld_zip_crc_known(const weld_zip_entry *e)
{
	return e->crc32 != 0 || e->size == 0;
}

typedef struct weld_zip weld_zip;

/*
 * An archive may be shared by threads: lookups and reads are thread-safe.
 *
 * Parse the end records and the central directory of F (borrowed; must
 * outlive the zip). Checks every field against the file size, rejects
 * duplicate names and entries outside the archive prefix. Does not read
 * any record's data.
 */
weld_status weld_zip_open(weld_zip **out, weld_file *f, weld_error *err);
void weld_zip_close(weld_zip *z);

const char *weld_zip_prefix(const weld_zip *z); /* without the trailing '/' */
size_t weld_zip_count(const weld_zip *z);
const weld_zip_entry *weld_zip_entry_at(const weld_zip *z, size_t i);

/*
 * Find RECORD (name after the prefix, e.g. "data.pkl", "data/3") and resolve
 * its data offset from its local header. Absent: WELD_ERR_FORMAT
 * "<file>: missing record '<record>'". Compressed entries:
 * WELD_ERR_UNSUPPORTED naming the record and the method.
 */
weld_status weld_zip_find(weld_zip *z, const char *record, const weld_zip_entry **out,
			  weld_error *err);

/*
 * Read the whole record E into BUF (E->size bytes) and verify its CRC-32
 * against the central directory (a stored CRC of 0 on a non-empty record
 * means "not computed" and is not checked). Mismatch: WELD_ERR_CHECKSUM
 * "<file>: CRC-32 mismatch in record '<record>' (stored 0x..., computed 0x...)".
 */
weld_status weld_zip_read(weld_zip *z, const weld_zip_entry *e, void *buf, weld_error *err);

#endif /* WELD_ZIP_H */
