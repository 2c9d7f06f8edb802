/* Zip records' CRC-32s, joined from the pieces readers streamed (record.h). */
#include "io/record.h"

#include <stdlib.h>

/* Gaps are read through a buffer of this size. */
#define GAP_BUFFER (1u << 20)

weld_status weld__crc_mismatch(weld_error *err, const char *path, const char *record, uint32_t stored,
			       uint32_t computed)
{
	return weld__fail(err, WELD_ERR_CHECKSUM, "%s: CRC-32 mismatch in record '%s' (stored 0x%08x, computed 0x%08x)",
			  path, record, (unsigned)stored, (unsigned)computed);
}

/* By record, then offset, the longest first: the piece kept where views overlap covers most. */
static int cmp_piece(const void *a, const void *b)
{
	const weld_record_piece *x = a, *y = b;
	if (x->record != y->record)
		return x->record < y->record ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->len > y->len ? -1 : x->len < y->len;
}

/* *CRC extended by the LEN bytes at AT of F, read through *BUF (allocated on first use). */
static weld_status add_gap(weld_file *f, uint64_t at, uint64_t len, uint8_t **buf, uint32_t *crc, weld_error *err)
{
	if (!*buf && !(*buf = malloc(GAP_BUFFER)))
		return weld__nomem(err);
	while (len) {
		size_t k = len < GAP_BUFFER ? (size_t)len : GAP_BUFFER;
		weld_status s = weld_file_pread(f, *buf, k, at, err);
		if (s)
			return s;
		*crc = weld__crc32_combine(*crc, weld__crc32(0, *buf, k), k);
		at += k;
		len -= k;
	}
	return WELD_OK;
}

/*
 * Of P[0..N) (REC's pieces in file order), keep in place those that do not
 * overlap one kept before (another view of the same bytes adds nothing);
 * *N becomes their count. false when a piece lies outside REC or the kept
 * ones leave more than MAX_GAP bytes of it to read.
 */
static bool checkable(const weld_record *rec, weld_record_piece *p, size_t *n, uint64_t max_gap)
{
	uint64_t at = rec->offset, covered = 0;
	size_t kept = 0;
	for (size_t j = 0; j < *n; j++) {
		if (p[j].offset < rec->offset || p[j].len > rec->offset + rec->nbytes - p[j].offset)
			return false;
		if (p[j].offset < at)
			continue;
		at = p[j].offset + p[j].len;
		covered += p[j].len;
		p[kept++] = p[j];
	}
	*n = kept;
	return rec->nbytes - covered <= max_gap;
}

/* One record, P[0..N) its pieces in file order: they and the gaps between them must give its CRC. */
static weld_status check_one(const weld_record *rec, const weld_record_piece *p, size_t n, uint8_t **gap,
			     weld_error *err)
{
	uint64_t at = rec->offset, end = rec->offset + rec->nbytes;
	uint32_t crc = 0;
	for (size_t j = 0; j <= n; j++) {
		uint64_t next = j == n ? end : p[j].offset;
		if (next > at) {
			weld_status s = add_gap(rec->file, at, next - at, gap, &crc, err);
			if (s)
				return s;
		}
		if (j == n)
			break;
		crc = weld__crc32_combine(crc, p[j].crc, p[j].len);
		at = next + p[j].len;
	}
	return crc == rec->crc ? WELD_OK : weld__crc_mismatch(err, rec->file->path, rec->name, rec->crc, crc);
}

weld_status weld_records_check(const weld_record *recs, weld_record_piece *pieces, size_t n, uint64_t max_gap,
			       weld_error *err)
{
	uint8_t *gap = NULL;
	if (n) /* PIECES may be NULL then (a part that read no zip record), which qsort may not take */
		qsort(pieces, n, sizeof(*pieces), cmp_piece);
	weld_status s = WELD_OK;
	for (size_t i = 0; !s && i < n;) {
		size_t j = i;
		while (j < n && pieces[j].record == pieces[i].record)
			j++;
		const weld_record *rec = &recs[pieces[i].record];
		size_t kept = j - i;
		if (checkable(rec, pieces + i, &kept, max_gap))
			s = check_one(rec, pieces + i, kept, &gap, err);
		i = j;
	}
	free(gap);
	return s;
}
