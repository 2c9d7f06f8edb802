/* Zip records' CRC-32s, joined from the pieces readers streamed (record.h). */
#include "io/record.h"

#include <stdlib.h>

/* Padding between a record's pieces is read only while it stays this small. */
#define MAX_GAP_BYTES (1u << 20)

weld_status weld__crc_mismatch(weld_error *err, const char *path, const char *record, uint32_t stored,
			       uint32_t computed)
{
	return weld__fail(err, WELD_ERR_CHECKSUM, "%s: CRC-32 mismatch in record '%s' (stored 0x%08x, computed 0x%08x)",
			  path, record, (unsigned)stored, (unsigned)computed);
}

static int cmp_piece(const void *a, const void *b)
{
	const weld_record_piece *x = a, *y = b;
	if (x->record != y->record)
		return x->record < y->record ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* CRC-32 of LEN bytes at AT of F, appended to *CRC, through BUF (MAX_GAP_BYTES). */
static weld_status add_gap(weld_file *f, uint64_t at, uint64_t len, uint8_t *buf, uint32_t *crc, weld_error *err)
{
	weld_status s = weld_file_pread(f, buf, (size_t)len, at, err);
	if (!s)
		*crc = weld__crc32_combine(*crc, weld__crc32(0, buf, (size_t)len), len);
	return s;
}

/* One record, P[0..N) its pieces in file order; left unchecked when they do not tile it. */
static weld_status check_one(const weld_record *rec, const weld_record_piece *p, size_t n, uint8_t *gap,
			     weld_error *err)
{
	uint64_t at = rec->offset, end = rec->offset + rec->nbytes, gaps = 0;
	uint32_t crc = 0;
	for (size_t j = 0; j <= n; j++) {
		uint64_t next = j == n ? end : p[j].offset;
		if (next < at)
			return WELD_OK; /* overlapping views: nothing to check */
		if (next > at) {
			gaps += next - at;
			if (gaps > MAX_GAP_BYTES)
				return WELD_OK;
			weld_status s = add_gap(rec->file, at, next - at, gap, &crc, err);
			if (s)
				return s;
			at = next;
		}
		if (j == n)
			break;
		crc = weld__crc32_combine(crc, p[j].crc, p[j].len);
		at += p[j].len;
	}
	return crc == rec->crc ? WELD_OK : weld__crc_mismatch(err, rec->file->path, rec->name, rec->crc, crc);
}

weld_status weld_records_check(const weld_record *recs, weld_record_piece *pieces, size_t n, weld_error *err)
{
	if (n == 0)
		return WELD_OK;
	uint8_t *gap = malloc(MAX_GAP_BYTES);
	if (!gap)
		return weld__nomem(err);
	qsort(pieces, n, sizeof(*pieces), cmp_piece);
	weld_status s = WELD_OK;
	for (size_t i = 0; !s && i < n;) {
		size_t j = i;
		while (j < n && pieces[j].record == pieces[i].record)
			j++;
		s = check_one(&recs[pieces[i].record], pieces + i, j - i, gap, err);
		i = j;
	}
	free(gap);
	return s;
}
