/*
 * Zip reader for torch.save archives (shared docs, section A). Parses the end
 * records (classic and ZIP64) and the central directory once, keeps a sorted
 * name index for lookups, and resolves each record's data offset from its
 * local header only when the record is asked for (under a lock: readers may
share one archive across threads). Every offset and size read
 * from the file is checked against the file size with overflow-checked
 * arithmetic; record data is read with pread, never the whole file.
 */
#include "io/zip.h"

#include "io/record.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034B50u
#define SIG_CENTRAL 0x02014B50u
#define SIG_EOCD 0x06054B50u
#define SIG_EOCD64 0x06064B50u
#define SIG_LOCATOR64 0x07064B50u

enum {
	LOCAL_LEN = 30,
	CENTRAL_LEN = 46,
	EOCD_LEN = 22,
	LOCATOR64_LEN = 20,
	EOCD64_LEN = 56,
	MAX_COMMENT = 65535,
	ZIP64_EXTRA_ID = 0x0001,
	FLAG_ENCRYPTED = 0x0001,
};

/* torch's central directory is ~100 bytes per record; anything near this is hostile. */
#define CD_MAX_BYTES (1ull << 30)
/* CRC and read granularity for big records. */
#define READ_CHUNK ((size_t)1 << 20)

struct weld_zip {
	weld_file *f;
	char *prefix;
	char *names; /* every entry's NUL-terminated name, in one block */
	weld_zip_entry *entries;
	size_t count;
	weld_zip_entry **by_name; /* sorted by name, for binary search */
	uint64_t *data_limit;     /* per entry: next local header or the CD start */
	uint64_t cd_offset;
	pthread_mutex_t lock; /* guards the lazily resolved data offsets */
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static weld_status no_eocd(const weld_file *f, weld_error *err)
{
	return weld__fail(err, WELD_ERR_FORMAT,
			  "%s: not a zip archive or truncated: end of central directory not found",
			  f->path);
}

/* Where the central directory is, as the end records describe it. */
struct zip_end {
	uint64_t count;
	uint64_t cd_offset;
	uint64_t cd_size;
	uint64_t cd_limit; /* the CD must end here: the first end record */
};

/*
 * Find the classic EOCD: last 22 bytes first (torch writes no comment), else
 * scan the largest window a comment allows. A candidate counts only when its
 * comment length reaches exactly to the end of the file, so a stray signature
 * inside record data is not taken for it.
 */
static weld_status find_eocd(weld_file *f, uint64_t *pos, uint8_t rec[EOCD_LEN], weld_error *err)
{
	if (f->size < EOCD_LEN)
		return no_eocd(f, err);
	weld_status s = weld_file_pread(f, rec, EOCD_LEN, f->size - EOCD_LEN, err);
	if (s)
		return s;
	if (rd32(rec) == SIG_EOCD && rd16(rec + 20) == 0) {
		*pos = f->size - EOCD_LEN;
		return WELD_OK;
	}
	uint64_t window = EOCD_LEN + MAX_COMMENT;
	size_t len = (size_t)(f->size < window ? f->size : window);
	uint64_t base = f->size - len;
	uint8_t *buf = malloc(len);
	if (!buf)
		return weld__nomem(err);
	s = weld_file_pread(f, buf, len, base, err);
	if (s) {
		free(buf);
		return s;
	}
	for (size_t i = len - EOCD_LEN + 1; i-- > 0;) {
		if (rd32(buf + i) == SIG_EOCD && i + EOCD_LEN + rd16(buf + i + 20) == len) {
			memcpy(rec, buf + i, EOCD_LEN);
			*pos = base + i;
			free(buf);
			return WELD_OK;
		}
	}
	free(buf);
	return no_eocd(f, err);
}

static weld_status read_end(weld_file *f, struct zip_end *end, weld_error *err)
{
	uint8_t eocd[EOCD_LEN];
	uint64_t eocd_pos = 0;
	weld_status s = find_eocd(f, &eocd_pos, eocd, err);
	if (s)
		return s;

	/* torch always writes ZIP64 end records; when a locator precedes the EOCD they rule. */
	uint8_t loc[LOCATOR64_LEN];
	if (eocd_pos >= LOCATOR64_LEN) {
		s = weld_file_pread(f, loc, LOCATOR64_LEN, eocd_pos - LOCATOR64_LEN, err);
		if (s)
			return s;
	}
	if (eocd_pos < LOCATOR64_LEN || rd32(loc) != SIG_LOCATOR64) {
		if (rd16(eocd + 4) != 0 || rd16(eocd + 6) != 0 || rd16(eocd + 8) != rd16(eocd + 10))
			return weld__fail(err, WELD_ERR_UNSUPPORTED,
					  "%s: multi-disk zip archives are not supported", f->path);
		end->count = rd16(eocd + 10);
		end->cd_size = rd32(eocd + 12);
		end->cd_offset = rd32(eocd + 16);
		end->cd_limit = eocd_pos;
		return WELD_OK;
	}

	uint64_t loc_pos = eocd_pos - LOCATOR64_LEN;
	if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: multi-disk zip archives are not supported", f->path);
	uint64_t e64_pos = rd64(loc + 8), e64_end;
	uint8_t e64[EOCD64_LEN];
	if (!weld__add_u64(&e64_end, e64_pos, EOCD64_LEN) || e64_end > loc_pos)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: ZIP64 end of central directory offset %llu is out of range",
				  f->path, (unsigned long long)e64_pos);
	s = weld_file_pread(f, e64, EOCD64_LEN, e64_pos, err);
	if (s)
		return s;
	uint64_t rec_size = rd64(e64 + 4), rec_end;
	if (rd32(e64) != SIG_EOCD64 || rec_size < EOCD64_LEN - 12 ||
	    !weld__add_u64(&rec_end, e64_pos + 12, rec_size) || rec_end > loc_pos)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: bad ZIP64 end of central directory record at offset %llu",
				  f->path, (unsigned long long)e64_pos);
	if (rd32(e64 + 16) != 0 || rd32(e64 + 20) != 0 || rd64(e64 + 24) != rd64(e64 + 32))
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: multi-disk zip archives are not supported", f->path);
	end->count = rd64(e64 + 32);
	end->cd_size = rd64(e64 + 40);
	end->cd_offset = rd64(e64 + 48);
	end->cd_limit = e64_pos;
	return WELD_OK;
}

/*
 * Apply the entry's ZIP64 extra field (id 1): 8-byte values follow for each
 * 32-bit field that is 0xFFFFFFFF, in the order uncompressed size,
 * compressed size, local header offset.
 */
static weld_status parse_extra(const weld_file *f, weld_zip_entry *e, uint64_t *csize,
			       const uint8_t *x, size_t len, weld_error *err)
{
	bool need_u = e->size == UINT32_MAX, need_c = *csize == UINT32_MAX;
	bool need_o = e->local_offset == UINT32_MAX;
	if (!need_u && !need_c && !need_o)
		return WELD_OK;
	size_t pos = 0;
	/* Fewer than 4 trailing bytes cannot hold a field; some writers pad, so ignore them. */
	while (len - pos >= 4) {
		uint16_t id = rd16(x + pos), n = rd16(x + pos + 2);
		if (len - pos - 4 < n)
			break;
		if (id == ZIP64_EXTRA_ID) {
			const uint8_t *v = x + pos + 4;
			size_t want = (size_t)(need_u + need_c + need_o) * 8;
			if (n < want)
				return weld__fail(err, WELD_ERR_FORMAT,
						  "%s: record '%s' has a ZIP64 extra field too short "
						  "for its sizes and offset",
						  f->path, e->name);
			if (need_u) {
				e->size = rd64(v);
				v += 8;
			}
			if (need_c) {
				*csize = rd64(v);
				v += 8;
			}
			if (need_o)
				e->local_offset = rd64(v);
			return WELD_OK;
		}
		pos += 4 + (size_t)n;
	}
	return weld__fail(err, WELD_ERR_FORMAT,
			  "%s: record '%s' lacks the ZIP64 extra field its sizes or offset need",
			  f->path, e->name);
}

static int cmp_name(const void *a, const void *b)
{
	const weld_zip_entry *x = *(weld_zip_entry *const *)a, *y = *(weld_zip_entry *const *)b;
	return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const weld_zip_entry *x = *(weld_zip_entry *const *)a, *y = *(weld_zip_entry *const *)b;
	if (x->local_offset != y->local_offset)
		return x->local_offset < y->local_offset ? -1 : 1;
	return x < y ? -1 : x > y; /* entry order, so messages are deterministic */
}

/* Walk the central directory in CD (END->cd_size bytes) and fill Z's entries. */
static weld_status parse_cd(weld_zip *z, const uint8_t *cd, const struct zip_end *end,
			    weld_error *err)
{
	const weld_file *f = z->f;
	size_t cd_size = (size_t)end->cd_size, pos = 0, npos = 0;
	for (size_t i = 0; i < z->count; i++) {
		if (cd_size - pos < CENTRAL_LEN)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: central directory entry %zu runs past the end of the "
					  "central directory",
					  f->path, i);
		const uint8_t *p = cd + pos;
		if (rd32(p) != SIG_CENTRAL)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: central directory entry %zu has a bad signature", f->path,
					  i);
		size_t nl = rd16(p + 28), el = rd16(p + 30), cl = rd16(p + 32);
		size_t len = CENTRAL_LEN + nl + el + cl; /* cannot overflow: each <= 65535 */
		if (cd_size - pos < len)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: central directory entry %zu runs past the end of the "
					  "central directory",
					  f->path, i);
		const uint8_t *name = p + CENTRAL_LEN;
		/* Names go into one-line messages and C strings: no control bytes, no NUL. */
		for (size_t k = 0; k < nl; k++)
			if (name[k] < 0x20 || name[k] == 0x7F)
				return weld__fail(err, WELD_ERR_FORMAT,
						  "%s: central directory entry %zu has a control "
						  "character in its name",
						  f->path, i);
		weld_zip_entry *e = &z->entries[i];
		memcpy(z->names + npos, name, nl);
		z->names[npos + nl] = '\0';
		e->name = z->names + npos;
		e->record = e->name;
		npos += nl + 1;
		e->flags = rd16(p + 8);
		e->method = rd16(p + 10);
		e->crc32 = rd32(p + 16);
		uint64_t csize = rd32(p + 20);
		e->size = rd32(p + 24);
		e->local_offset = rd32(p + 42);
		e->data_offset = UINT64_MAX;
		weld_status s = parse_extra(f, e, &csize, name + nl, el, err);
		if (s)
			return s;
		if (e->method == 0 && csize != e->size)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: stored record '%s' has compressed size %llu but "
					  "uncompressed size %llu",
					  f->path, e->name, (unsigned long long)csize,
					  (unsigned long long)e->size);
		uint64_t hdr_end;
		if (!weld__add_u64(&hdr_end, e->local_offset, LOCAL_LEN) || hdr_end > end->cd_offset)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: record '%s' has its local header at offset %llu, past the "
					  "central directory at %llu",
					  f->path, e->name, (unsigned long long)e->local_offset,
					  (unsigned long long)end->cd_offset);
		pos += len;
	}
	if (pos != cd_size)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: central directory is %llu bytes but its %zu entries use %zu",
				  f->path, (unsigned long long)end->cd_size, z->count, pos);
	return WELD_OK;
}

/* Prefix from the first entry (up to its first '/'); every entry must share it. */
static weld_status check_prefix(weld_zip *z, weld_error *err)
{
	const char *first = z->entries[0].name, *slash = strchr(first, '/');
	if (!slash)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: first entry '%s' has no '/', so the archive has no prefix",
				  z->f->path, first);
	size_t plen = (size_t)(slash - first);
	z->prefix = weld__strndup(first, plen);
	if (!z->prefix)
		return weld__nomem(err);
	for (size_t i = 0; i < z->count; i++) {
		weld_zip_entry *e = &z->entries[i];
		if (strncmp(e->name, z->prefix, plen) != 0 || e->name[plen] != '/')
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: entry '%s' is outside the archive prefix '%s/'",
					  z->f->path, e->name, z->prefix);
		e->record = e->name + plen + 1;
	}
	return WELD_OK;
}

/*
 * Sort the name index and reject duplicates; sort by local offset to give
 * every record an upper bound (the next local header, or the central
 * directory) so no record's data can overlap another's.
 */
static weld_status build_indexes(weld_zip *z, weld_error *err)
{
	z->by_name = weld__reallocarray(NULL, z->count, sizeof(*z->by_name));
	weld_zip_entry **by_off = weld__reallocarray(NULL, z->count, sizeof(*by_off));
	z->data_limit = weld__reallocarray(NULL, z->count, sizeof(*z->data_limit));
	if (!z->by_name || !by_off || !z->data_limit) {
		free(by_off);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < z->count; i++)
		z->by_name[i] = by_off[i] = &z->entries[i];
	qsort(z->by_name, z->count, sizeof(*z->by_name), cmp_name);
	qsort(by_off, z->count, sizeof(*by_off), cmp_offset);
	weld_status s = WELD_OK;
	for (size_t i = 0; i + 1 < z->count && !s; i++) {
		if (strcmp(z->by_name[i]->name, z->by_name[i + 1]->name) == 0)
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: duplicate entry '%s'", z->f->path,
				       z->by_name[i]->name);
	}
	for (size_t i = 0; i < z->count && !s; i++) {
		const weld_zip_entry *e = by_off[i];
		uint64_t limit = i + 1 < z->count ? by_off[i + 1]->local_offset : z->cd_offset;
		if (limit == e->local_offset)
			s = weld__fail(err, WELD_ERR_FORMAT,
				       "%s: records '%s' and '%s' share the local header at offset %llu",
				       z->f->path, e->record, by_off[i + 1]->record,
				       (unsigned long long)limit);
		z->data_limit[e - z->entries] = limit;
	}
	free(by_off);
	return s;
}

weld_status weld_zip_open(weld_zip **out, weld_file *f, weld_error *err)
{
	*out = NULL;
	if (!f)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_zip_open: no file");
	struct zip_end end = {0};
	weld_status s = read_end(f, &end, err);
	if (s)
		return s;
	uint64_t cd_end;
	if (!weld__add_u64(&cd_end, end.cd_offset, end.cd_size) || cd_end > end.cd_limit)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: central directory (offset %llu, size %llu) lies outside the "
				  "archive",
				  f->path, (unsigned long long)end.cd_offset,
				  (unsigned long long)end.cd_size);
	if (end.count == 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: zip archive has no entries", f->path);
	if (end.cd_size > CD_MAX_BYTES)
		return weld__fail(err, WELD_ERR_LIMIT,
				  "%s: central directory of %llu bytes exceeds the %llu-byte limit",
				  f->path, (unsigned long long)end.cd_size,
				  (unsigned long long)CD_MAX_BYTES);
	/* Bounds the entry array by the bytes actually present. */
	if (end.count > end.cd_size / CENTRAL_LEN)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: central directory of %llu bytes cannot hold %llu entries",
				  f->path, (unsigned long long)end.cd_size,
				  (unsigned long long)end.count);

	weld_zip *z = calloc(1, sizeof(*z));
	uint8_t *cd = malloc((size_t)end.cd_size);
	if (z) {
		pthread_mutex_init(&z->lock, NULL);
		z->f = f;
		z->count = (size_t)end.count;
		z->cd_offset = end.cd_offset;
		z->entries = weld__calloc(z->count, sizeof(*z->entries));
		/* Names plus their NULs fit in the CD: each entry has >= 46 fixed bytes. */
		z->names = malloc((size_t)end.cd_size);
	}
	if (!z || !cd || !z->entries || !z->names) {
		free(cd);
		weld_zip_close(z);
		return weld__nomem(err);
	}
	s = weld_file_pread(f, cd, (size_t)end.cd_size, end.cd_offset, err);
	if (!s)
		s = parse_cd(z, cd, &end, err);
	free(cd);
	if (!s)
		s = check_prefix(z, err);
	if (!s)
		s = build_indexes(z, err);
	if (s) {
		weld_zip_close(z);
		return s;
	}
	*out = z;
	return WELD_OK;
}

void weld_zip_close(weld_zip *z)
{
	if (!z)
		return;
	free(z->prefix);
	free(z->names);
	free(z->entries);
	free(z->by_name);
	free(z->data_limit);
	pthread_mutex_destroy(&z->lock);
	free(z);
}

const char *weld_zip_prefix(const weld_zip *z)
{
	return z->prefix;
}

size_t weld_zip_count(const weld_zip *z)
{
	return z->count;
}

const weld_zip_entry *weld_zip_entry_at(const weld_zip *z, size_t i)
{
	return i < z->count ? &z->entries[i] : NULL;
}

/* Map a caller's entry pointer back to our mutable copy; NULL if not ours. */
static weld_zip_entry *own_entry(weld_zip *z, const weld_zip_entry *e)
{
	uintptr_t p = (uintptr_t)e, lo = (uintptr_t)z->entries;
	if (!e || p < lo || p >= lo + z->count * sizeof(*e) || (p - lo) % sizeof(*e) != 0)
		return NULL;
	return &z->entries[(p - lo) / sizeof(*e)];
}

/*
 * Check the record is readable in place and resolve its data offset from the
 * local header (whose extra field differs from the central one: torch pads
 * it). The data must end before the next local header or the CD.
 */
static weld_status resolve(weld_zip *z, weld_zip_entry *e, weld_error *err)
{
	const char *path = z->f->path;
	if (e->method != 0)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: record '%s' is compressed (method %u); only stored records are "
				  "supported",
				  path, e->record, (unsigned)e->method);
	if (e->flags & FLAG_ENCRYPTED)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: record '%s' is encrypted; encrypted records are not supported",
				  path, e->record);
	if (e->data_offset != UINT64_MAX)
		return WELD_OK;
	uint8_t h[LOCAL_LEN];
	weld_status s = weld_file_pread(z->f, h, LOCAL_LEN, e->local_offset, err);
	if (s)
		return s;
	if (rd32(h) != SIG_LOCAL)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: record '%s' has no local header at offset %llu", path, e->record,
				  (unsigned long long)e->local_offset);
	size_t nl = rd16(h + 26), el = rd16(h + 28);
	uint64_t start, data_end, limit = z->data_limit[e - z->entries];
	if (!weld__add_u64(&start, e->local_offset, LOCAL_LEN + nl + el) ||
	    !weld__add_u64(&data_end, start, e->size) || data_end > limit)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: data of record '%s' (%llu bytes) runs past the next entry or "
				  "the central directory at offset %llu",
				  path, e->record, (unsigned long long)e->size,
				  (unsigned long long)limit);
	/* A header naming another entry means the central offset is wrong. */
	if (nl != strlen(e->name))
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: local header of record '%s' names a different entry", path,
				  e->record);
	char *name = malloc(nl ? nl : 1);
	if (!name)
		return weld__nomem(err);
	s = weld_file_pread(z->f, name, nl, e->local_offset + LOCAL_LEN, err);
	if (!s && memcmp(name, e->name, nl) != 0)
		s = weld__fail(err, WELD_ERR_FORMAT,
			       "%s: local header of record '%s' names a different entry", path,
			       e->record);
	free(name);
	if (s)
		return s;
	e->data_offset = start;
	return WELD_OK;
}

static weld_status prepare(weld_zip *z, weld_zip_entry *e, weld_error *err)
{
	pthread_mutex_lock(&z->lock);
	weld_status s = resolve(z, e, err);
	pthread_mutex_unlock(&z->lock);
	return s;
}

weld_status weld_zip_find(weld_zip *z, const char *record, const weld_zip_entry **out,
			  weld_error *err)
{
	*out = NULL;
	size_t lo = 0, hi = z->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(record, z->by_name[mid]->record);
		if (c == 0) {
			weld_zip_entry *e = z->by_name[mid];
			weld_status s = prepare(z, e, err);
			if (s)
				return s;
			*out = e;
			return WELD_OK;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return weld__fail(err, WELD_ERR_FORMAT, "%s: missing record '%s'", z->f->path, record);
}

weld_status weld_zip_read(weld_zip *z, const weld_zip_entry *entry, void *buf, weld_error *err)
{
	weld_zip_entry *e = own_entry(z, entry);
	if (!e)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: weld_zip_read: entry does not belong to this archive",
				  z->f->path);
	weld_status s = prepare(z, e, err);
	if (s)
		return s;
	if (e->size > SIZE_MAX)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: record '%s' is too large to read",
				  z->f->path, e->record);
	uint8_t *p = buf;
	size_t size = (size_t)e->size;
	uint32_t crc = 0;
	for (size_t done = 0; done < size;) {
		size_t n = size - done < READ_CHUNK ? size - done : READ_CHUNK;
		s = weld_file_pread(z->f, p + done, n, e->data_offset + done, err);
		if (s)
			return s;
		crc = weld__crc32(crc, p + done, n);
		done += n;
	}
	if (weld_zip_crc_known(e) && crc != e->crc32)
		return weld__crc_mismatch(err, z->f->path, e->record, e->crc32, crc);
	return WELD_OK;
}
