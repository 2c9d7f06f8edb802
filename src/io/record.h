/*
 * Zip records checked against their CRC-32 without reading them twice: a
 * reader that streams a record's bytes in pieces (fragments of tensors,
 * maybe in any order, maybe skipping padding) keeps each piece's CRC, and
 * weld_records_check joins them, reading only the small gaps between them.
 */
#ifndef WELD_IO_RECORD_H
#define WELD_IO_RECORD_H

#include "util/util.h"

#define WELD_NO_RECORD UINT32_MAX

/* A byte range of a file with the CRC-32 its zip central directory gives. */
typedef struct weld_record {
	weld_file *file;
	uint64_t offset, nbytes;
	uint32_t crc;
	const char *name; /* the record's name, for messages; borrowed */
} weld_record;

/* LEN bytes at OFFSET of record RECORD were read, with CRC-32 CRC. */
typedef struct weld_record_piece {
	uint32_t record;
	uint64_t offset, len;
	uint32_t crc;
} weld_record_piece;

/*
 * Check every record of RECS that PIECES touch: the pieces' CRCs, in file
 * order, joined with those of the gaps between them (read here while they
 * total at most MAX_GAP bytes a record) must give the stored CRC-32. A
 * record whose pieces overlap or leave more of it unread is not checked.
 * Sorts PIECES. A mismatch is WELD_ERR_CHECKSUM naming the file and record.
 */
weld_status weld_records_check(const weld_record *recs, weld_record_piece *pieces, size_t n, uint64_t max_gap,
			       weld_error *err);

/* The WELD_ERR_CHECKSUM message every CRC-32 mismatch of a record gets. */
weld_status weld__crc_mismatch(weld_error *err, const char *path, const char *record, uint32_t stored,
			       uint32_t computed);

#endif /* WELD_IO_RECORD_H */
