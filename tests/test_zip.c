/*
 * Tests for the zip reader (src/zip.c): the real torch fixtures, a small
 * in-test zip writer that builds torch-shaped archives (FB padding, data
 * descriptors, ZIP64 extras and end records) plus damaged variants, a 70000
 * entry archive and a sparse archive with a record over 4 GiB.
 *
 * `test_zip --write-corpus DIR` writes the generated seed archives used by
 * tests/fuzz/corpus/zip instead of running the tests.
 */
#include "io/zip.h"

#include "test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------------- */
/* A minimal zip writer shaped like torch's (PyTorchStreamWriter + miniz).   */

enum { Z64_USIZE = 1, Z64_CSIZE = 2, Z64_OFFSET = 4, Z64_ALL = 7,
       Z64_JUNK = 8 /* wrap the central ZIP64 extra in an unknown field and 2 pad bytes */ };

typedef struct zw_ent {
	char *name;
	uint64_t usize, csize, offset;
	uint32_t crc;
	uint16_t method, flags;
	unsigned force64; /* central fields to write as 0xFFFFFFFF + ZIP64 extra */
} zw_ent;

typedef struct zw {
	int fd;
	uint64_t base; /* file offset of buf[0] */
	uint8_t *buf;
	size_t len, cap;
	zw_ent *ents;
	size_t n, ents_cap;
	bool zip64_end; /* write ZIP64 EOCD + locator (torch always does) */
	const char *comment;
	uint64_t cd_offset, eocd64_offset;
	int failed;
} zw;

static uint64_t zw_pos(const zw *w)
{
	return w->base + w->len;
}

static void zw_put(zw *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			w->failed = 1;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void zw_u16(zw *w, uint64_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	zw_put(w, b, 2);
}

static void zw_u32(zw *w, uint64_t v)
{
	zw_u16(w, v & 0xFFFF);
	zw_u16(w, (v >> 16) & 0xFFFF);
}

static void zw_u64(zw *w, uint64_t v)
{
	zw_u32(w, v & 0xFFFFFFFFu);
	zw_u32(w, v >> 32);
}

static void zw_flush(zw *w)
{
	if (w->len && pwrite(w->fd, w->buf, w->len, (off_t)w->base) != (ssize_t)w->len)
		w->failed = 1;
	w->base += w->len;
	w->len = 0;
}

/* Leave N bytes of zeros without writing them: a hole in a sparse file. */
static void zw_skip(zw *w, uint64_t n)
{
	zw_flush(w);
	w->base += n;
}

static void zw_init(zw *w, const char *path, bool zip64_end)
{
	memset(w, 0, sizeof(*w));
	w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	w->zip64_end = zip64_end;
	if (w->fd < 0)
		w->failed = 1;
}

/*
 * Add an entry. DATA (CSIZE bytes, already compressed for METHOD != 0) or, if
 * NULL, a hole of CSIZE zero bytes. Local header as torch writes it: CRC and
 * sizes 0, ZIP64 extra when needed, then "FB" padding to a 64-byte boundary,
 * then the data and a data descriptor.
 */
static void zw_add_raw(zw *w, const char *name, const void *data, uint64_t csize, uint64_t usize,
		       uint32_t crc, uint16_t method, unsigned force64)
{
	if (w->n == w->ents_cap) {
		size_t cap = w->ents_cap ? w->ents_cap * 2 : 16;
		zw_ent *e = realloc(w->ents, cap * sizeof(*e));
		if (!e) {
			w->failed = 1;
			return;
		}
		w->ents = e;
		w->ents_cap = cap;
	}
	zw_ent *e = &w->ents[w->n++];
	size_t nl = strlen(name);
	e->name = malloc(nl + 1);
	if (!e->name) {
		w->failed = 1;
		return;
	}
	memcpy(e->name, name, nl + 1);
	e->usize = usize;
	e->csize = csize;
	e->offset = zw_pos(w);
	e->crc = crc;
	e->method = method;
	e->flags = usize ? 0x0808 : 0x0800;
	e->force64 = force64;

	bool big = usize >= 0xFFFFFFFFu || csize >= 0xFFFFFFFFu || (force64 & (Z64_USIZE | Z64_CSIZE));
	bool far = e->offset >= 0xFFFFFFFFu;
	size_t z64len = (big || far) ? 4 + (big ? 16 : 0) + (far ? 8 : 0) : 0;
	uint64_t start = e->offset + 30 + nl + z64len + 4;
	size_t pad = (size_t)((64 - start % 64) % 64);
	zw_u32(w, 0x04034B50);
	zw_u16(w, (big || far) ? 45 : 20);
	zw_u16(w, e->flags);
	zw_u16(w, method);
	zw_u32(w, 0); /* time, date */
	zw_u32(w, 0); /* crc */
	zw_u32(w, 0); /* compressed */
	zw_u32(w, 0); /* uncompressed */
	zw_u16(w, nl);
	zw_u16(w, z64len + 4 + pad);
	zw_put(w, name, nl);
	if (z64len) {
		zw_u16(w, 1);
		zw_u16(w, z64len - 4);
		if (big) {
			zw_u64(w, usize);
			zw_u64(w, 0); /* torch writes a compressed size of 0 here */
		}
		if (far)
			zw_u64(w, e->offset);
	}
	zw_u16(w, 0x4246);
	zw_u16(w, pad);
	for (size_t i = 0; i < pad; i++)
		zw_put(w, "Z", 1);
	if (data)
		zw_put(w, data, (size_t)csize);
	else
		zw_skip(w, csize);
	if (usize) {
		zw_u32(w, 0x08074B50);
		zw_u32(w, crc);
		if (z64len) {
			zw_u64(w, csize);
			zw_u64(w, usize);
		} else {
			zw_u32(w, csize);
			zw_u32(w, usize);
		}
	}
}

static void zw_add(zw *w, const char *name, const void *data, size_t n)
{
	uint32_t crc = (uint32_t)crc32(0L, data, (uInt)n);
	zw_add_raw(w, name, data, n, n, crc, 0, 0);
}

static void zw_add_str(zw *w, const char *name, const char *s)
{
	zw_add(w, name, s, strlen(s));
}

/* Central directory and end records; writes everything out and closes. */
static int zw_finish(zw *w)
{
	w->cd_offset = zw_pos(w);
	for (size_t i = 0; i < w->n; i++) {
		zw_ent *e = &w->ents[i];
		bool u = e->usize >= 0xFFFFFFFFu || (e->force64 & Z64_USIZE);
		bool c = e->csize >= 0xFFFFFFFFu || (e->force64 & Z64_CSIZE);
		bool o = e->offset >= 0xFFFFFFFFu || (e->force64 & Z64_OFFSET);
		size_t xl = (u || c || o) ? 4 + 8 * (size_t)(u + c + o) : 0;
		size_t junk = (e->force64 & Z64_JUNK) ? 8 + 2 : 0;
		size_t nl = strlen(e->name);
		zw_u32(w, 0x02014B50);
		zw_u16(w, 0x031E);
		zw_u16(w, xl ? 45 : 20);
		zw_u16(w, e->flags);
		zw_u16(w, e->method);
		zw_u32(w, 0);
		zw_u32(w, e->crc);
		zw_u32(w, c ? 0xFFFFFFFFu : e->csize);
		zw_u32(w, u ? 0xFFFFFFFFu : e->usize);
		zw_u16(w, nl);
		zw_u16(w, xl + junk);
		zw_u16(w, 0); /* comment */
		zw_u16(w, 0); /* disk */
		zw_u16(w, 0); /* internal attributes */
		zw_u32(w, 0x81A40000u);
		zw_u32(w, o ? 0xFFFFFFFFu : e->offset);
		zw_put(w, e->name, nl);
		if (junk) {
			zw_u16(w, 0xCAFE);
			zw_u16(w, 4);
			zw_u32(w, 0xDEADBEEF);
		}
		if (xl) {
			zw_u16(w, 1);
			zw_u16(w, xl - 4);
			if (u)
				zw_u64(w, e->usize);
			if (c)
				zw_u64(w, e->csize);
			if (o)
				zw_u64(w, e->offset);
		}
		if (junk)
			zw_u16(w, 0);
	}
	uint64_t cd_size = zw_pos(w) - w->cd_offset;
	if (w->zip64_end) {
		w->eocd64_offset = zw_pos(w);
		zw_u32(w, 0x06064B50);
		zw_u64(w, 44);
		zw_u16(w, 0x031E);
		zw_u16(w, 45);
		zw_u32(w, 0);
		zw_u32(w, 0);
		zw_u64(w, w->n);
		zw_u64(w, w->n);
		zw_u64(w, cd_size);
		zw_u64(w, w->cd_offset);
		zw_u32(w, 0x07064B50);
		zw_u32(w, 0);
		zw_u64(w, w->eocd64_offset);
		zw_u32(w, 1);
	}
	size_t cl = w->comment ? strlen(w->comment) : 0;
	zw_u32(w, 0x06054B50);
	zw_u16(w, 0);
	zw_u16(w, 0);
	zw_u16(w, w->n > 0xFFFF ? 0xFFFF : w->n);
	zw_u16(w, w->n > 0xFFFF ? 0xFFFF : w->n);
	zw_u32(w, cd_size > 0xFFFFFFFFu ? 0xFFFFFFFFu : cd_size);
	zw_u32(w, w->cd_offset > 0xFFFFFFFFu ? 0xFFFFFFFFu : w->cd_offset);
	zw_u16(w, cl);
	if (cl)
		zw_put(w, w->comment, cl);
	zw_flush(w);
	if (w->fd >= 0 && ftruncate(w->fd, (off_t)w->base) != 0)
		w->failed = 1;
	if (w->fd >= 0 && close(w->fd) != 0)
		w->failed = 1;
	for (size_t i = 0; i < w->n; i++)
		free(w->ents[i].name);
	free(w->ents);
	free(w->buf);
	return w->failed ? -1 : 0;
}

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char buf[8][256];
	static int slot;
	char *b = buf[slot++ & 7];
	snprintf(b, 256, "%s/%s", tmpdir, name);
	return b;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* Overwrite N bytes at OFFSET of an existing file. */
static void patch(const char *path, uint64_t offset, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, bytes, n, (off_t)offset) == (ssize_t)n);
	if (fd >= 0)
		close(fd);
}

static void patch32(const char *path, uint64_t offset, uint32_t v)
{
	uint8_t b[4];
	put32(b, v);
	patch(path, offset, b, 4);
}

static void patch64(const char *path, uint64_t offset, uint64_t v)
{
	uint8_t b[8];
	put64(b, v);
	patch(path, offset, b, 8);
}

/* Raw deflate (what zip method 8 holds). Returns a malloc'd buffer. */
static uint8_t *deflate_raw(const void *in, size_t n, size_t *out_n)
{
	z_stream s;
	memset(&s, 0, sizeof(s));
	if (deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	size_t cap = deflateBound(&s, (uLong)n);
	uint8_t *out = malloc(cap);
	s.next_in = (Bytef *)(uintptr_t)in;
	s.avail_in = (uInt)n;
	s.next_out = out;
	s.avail_out = (uInt)cap;
	if (!out || deflate(&s, Z_FINISH) != Z_STREAM_END) {
		free(out);
		deflateEnd(&s);
		return NULL;
	}
	*out_n = cap - s.avail_out;
	deflateEnd(&s);
	return out;
}

/* Open PATH as a zip; on failure return the status with ERR filled. */
static weld_status open_zip(const char *path, weld_file **f, weld_zip **z, weld_error *err)
{
	*z = NULL;
	weld_status s = weld_file_open(f, path, err);
	if (s)
		return s;
	s = weld_zip_open(z, *f, err);
	if (s) {
		weld_file_close(*f);
		*f = NULL;
	}
	return s;
}

static void close_zip(weld_file *f, weld_zip *z)
{
	weld_zip_close(z);
	weld_file_close(f);
}

/* Expect opening PATH to fail with STATUS and "<path>: MSG". */
static void expect_open_error(const char *path, weld_status status, const char *msg, int line)
{
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	char want[WELD_ERROR_MESSAGE_MAX];
	snprintf(want, sizeof(want), "%s: %s", path, msg);
	weld_status s = open_zip(path, &f, &z, &err);
	if (s != status || strcmp(err.message, want) != 0) {
		fprintf(stderr, "line %d: ", line);
		CHECK_ERR(s, status, &err, want);
	}
	if (!s)
		close_zip(f, z);
}
#define EXPECT_OPEN_ERROR(p, st, m) expect_open_error((p), (st), (m), __LINE__)

/* Expect opening PATH to work and finding RECORD to fail with STATUS and "<path>: MSG". */
static void expect_find_error(const char *path, const char *record, weld_status status,
			      const char *msg, int line)
{
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	char want[WELD_ERROR_MESSAGE_MAX];
	snprintf(want, sizeof(want), "%s: %s", path, msg);
	weld_status s = open_zip(path, &f, &z, &err);
	if (s) {
		fprintf(stderr, "line %d: ", line);
		CHECK_OK(s, &err);
		return;
	}
	const weld_zip_entry *e = (const weld_zip_entry *)1;
	s = weld_zip_find(z, record, &e, &err);
	if (s != status || strcmp(err.message, want) != 0) {
		fprintf(stderr, "line %d: ", line);
		CHECK_ERR(s, status, &err, want);
	}
	CHECK(e == NULL);
	close_zip(f, z);
}
#define EXPECT_FIND_ERROR(p, r, st, m) expect_find_error((p), (r), (st), (m), __LINE__)

static const weld_zip_entry *find_entry(const weld_zip *z, const char *record)
{
	for (size_t i = 0; i < weld_zip_count(z); i++)
		if (strcmp(weld_zip_entry_at(z, i)->record, record) == 0)
			return weld_zip_entry_at(z, i);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* (a) real fixtures                                                          */

/* Open, find every record, read it with CRC checks; data records must be 64-aligned. */
static void check_fixture(const char *rel, const char *prefix, size_t count)
{
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	const char *path = fixture(rel);
	weld_status s = open_zip(path, &f, &z, &err);
	CHECK_OK(s, &err);
	if (s)
		return;
	CHECK(strcmp(weld_zip_prefix(z), prefix) == 0);
	CHECK(weld_zip_count(z) == count);
	CHECK(weld_zip_entry_at(z, count) == NULL);
	const weld_zip_entry *pkl;
	CHECK_OK(weld_zip_find(z, "data.pkl", &pkl, &err), &err);
	for (size_t i = 0; i < weld_zip_count(z); i++) {
		const weld_zip_entry *e = weld_zip_entry_at(z, i), *found = NULL;
		CHECK(e->data_offset == UINT64_MAX || strcmp(e->record, "data.pkl") == 0);
		CHECK_OK(weld_zip_find(z, e->record, &found, &err), &err);
		CHECK(found == e);
		CHECK(e->method == 0);
		CHECK(e->data_offset != UINT64_MAX && e->data_offset + e->size <= f->size);
		if (strncmp(e->record, "data/", 5) == 0)
			CHECK(e->data_offset % 64 == 0);
		uint8_t *buf = malloc(e->size ? e->size : 1);
		CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
		free(buf);
	}
	close_zip(f, z);
}

/* Threads that find and read every record of one freshly opened archive at once. */
typedef struct reader_arg {
	weld_zip *z;
	const uint32_t *crcs; /* each record's CRC-32, read alone beforehand */
	int failures;
} reader_arg;

static void *read_all(void *p)
{
	reader_arg *a = p;
	weld_error err = {0};
	for (size_t i = weld_zip_count(a->z); i-- > 0;) {
		const weld_zip_entry *e = weld_zip_entry_at(a->z, i), *found = NULL;
		uint8_t *buf = malloc(e->size ? e->size : 1);
		if (!buf || weld_zip_find(a->z, e->record, &found, &err) || found != e || weld_zip_read(a->z, e, buf, &err) ||
		    weld__crc32(0, buf, e->size) != a->crcs[i])
			a->failures++;
		free(buf);
	}
	return NULL;
}

/*
 * Lookups resolve each record's data offset on first use; several threads
 * doing that at once must agree (ThreadSanitizer, in run-tests, watches
 * for the race).
 */
static void test_concurrent_readers(void)
{
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	const char *path = fixture("torch_edge/edge_zip.pt");
	uint32_t crcs[64];
	CHECK_OK(open_zip(path, &f, &z, &err), &err);
	for (size_t i = 0; i < weld_zip_count(z) && i < 64; i++) {
		const weld_zip_entry *e = weld_zip_entry_at(z, i);
		uint8_t *buf = malloc(e->size ? e->size : 1);
		CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
		crcs[i] = weld__crc32(0, buf, e->size);
		free(buf);
	}
	close_zip(f, z);
	CHECK_OK(open_zip(path, &f, &z, &err), &err);
	CHECK(weld_zip_count(z) <= 64);
	pthread_t tid[4];
	reader_arg args[4];
	for (int t = 0; t < 4; t++) {
		args[t] = (reader_arg){z, crcs, 0};
		CHECK(pthread_create(&tid[t], NULL, read_all, &args[t]) == 0);
	}
	for (int t = 0; t < 4; t++) {
		pthread_join(tid[t], NULL);
		CHECK(args[t].failures == 0);
	}
	close_zip(f, z);
}

static void test_fixtures(void)
{
	check_fixture("torch_edge/edge_zip.pt", "edge_zip", 19);
	check_fixture("torch_edge/plain_zip.pt", "plain_zip", 8);
	check_fixture("qwen2_tied/bin_single/pytorch_model.bin", "pytorch_model", 32);
	static const size_t shard_counts[9] = {7, 13, 7, 7, 9, 13, 7, 7, 10};
	for (int i = 1; i <= 9; i++) {
		char rel[128], prefix[64];
		snprintf(prefix, sizeof(prefix), "pytorch_model-%05d-of-00009", i);
		snprintf(rel, sizeof(rel), "qwen2_tied/bin_sharded/%s.bin", prefix);
		check_fixture(rel, prefix, shard_counts[i - 1]);
	}

	/* Oracle values from Python's zipfile (CRCs computed by zlib). */
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	CHECK_OK(open_zip(fixture("torch_edge/edge_zip.pt"), &f, &z, &err), &err);
	if (!z)
		return;
	static const struct {
		const char *record;
		uint64_t size, local_offset, data_offset;
		uint32_t crc;
	} want[] = {
		{"data.pkl", 1247, 0, 64, 0xc1d0d309},
		{"data/0", 96, 1686, 1792, 0x6edc4182},
		{"data/2", 0, 2004, 2112, 0},
		{"data/12", 16, 3292, 3392, 0xc22429db},
		{".data/serialization_id", 40, 3538, 3648, 0xc8d1bd83},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const weld_zip_entry *e;
		CHECK_OK(weld_zip_find(z, want[i].record, &e, &err), &err);
		if (!e)
			continue;
		CHECK(e->size == want[i].size);
		CHECK(e->crc32 == want[i].crc);
		CHECK(e->local_offset == want[i].local_offset);
		CHECK(e->data_offset == want[i].data_offset);
		CHECK(strncmp(e->name, "edge_zip/", 9) == 0 && e->record == e->name + 9);
	}
	const weld_zip_entry *e;
	CHECK_OK(weld_zip_find(z, "byteorder", &e, &err), &err);
	char bo[7] = {0};
	CHECK_OK(weld_zip_read(z, e, bo, &err), &err);
	CHECK(strcmp(bo, "little") == 0);
	char ver[2];
	CHECK_OK(weld_zip_find(z, "version", &e, &err), &err);
	/* The resolved data offset is where the record's bytes are (readers pread there). */
	CHECK_OK(weld_file_pread(f, ver, 2, e->data_offset, &err), &err);
	CHECK(memcmp(ver, "3\n", 2) == 0);
	char want_msg[512];

	/* Missing records, including a prefix of a real name and the full name. */
	snprintf(want_msg, sizeof(want_msg), "%s: missing record 'data/999'", f->path);
	e = (const weld_zip_entry *)1;
	CHECK_ERR(weld_zip_find(z, "data/999", &e, &err), WELD_ERR_FORMAT, &err, want_msg);
	CHECK(e == NULL);
	snprintf(want_msg, sizeof(want_msg), "%s: missing record 'edge_zip/data.pkl'", f->path);
	CHECK_ERR(weld_zip_find(z, "edge_zip/data.pkl", &e, &err), WELD_ERR_FORMAT, &err,
		  want_msg);
	snprintf(want_msg, sizeof(want_msg), "%s: missing record ''", f->path);
	CHECK_ERR(weld_zip_find(z, "", &e, &err), WELD_ERR_FORMAT, &err, want_msg);
	close_zip(f, z);
}

/* ------------------------------------------------------------------------- */
/* (b) damaged inputs                                                         */

static const char *const NOT_FOUND =
	"not a zip archive or truncated: end of central directory not found";

static void test_truncated(void)
{
	size_t len;
	uint8_t *data = read_file(fixture("torch_edge/edge_zip.pt"), &len);
	CHECK(data != NULL);
	if (!data)
		return;
	const size_t cuts[] = {len / 2, len - 1, len - 22, 21, 10, 0};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		const char *p = tmp_path("cut.pt");
		CHECK(write_file(p, data, cuts[i]) == 0);
		EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, NOT_FOUND);
	}
	/* Cut the front instead: every offset now points 64 bytes too far. */
	const char *p = tmp_path("front.pt");
	CHECK(write_file(p, data + 64, len - 64) == 0);
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "ZIP64 end of central directory offset %zu is out of range", len - 98);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);
	free(data);
	EXPECT_OPEN_ERROR(fixture("torch_edge/edge_legacy.pt"), WELD_ERR_FORMAT, NOT_FOUND);
}

static void test_crc_mismatch(void)
{
	size_t len;
	uint8_t *data = read_file(fixture("torch_edge/edge_zip.pt"), &len);
	CHECK(data != NULL && len > 1792 + 96);
	if (!data)
		return;
	data[1792 + 5] ^= 0x40; /* inside data/0 (data offset 1792, 96 bytes) */
	uint32_t computed = (uint32_t)crc32(0L, data + 1792, 96);
	const char *p = tmp_path("crc.pt");
	CHECK(write_file(p, data, len) == 0);
	free(data);
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	CHECK_OK(open_zip(p, &f, &z, &err), &err);
	if (!z)
		return;
	const weld_zip_entry *e;
	CHECK_OK(weld_zip_find(z, "data/0", &e, &err), &err);
	uint8_t buf[96];
	char want[512];
	snprintf(want, sizeof(want),
		 "%s: CRC-32 mismatch in record 'data/0' (stored 0x6edc4182, computed 0x%08x)", p,
		 (unsigned)computed);
	CHECK_ERR(weld_zip_read(z, e, buf, &err), WELD_ERR_CHECKSUM, &err, want);
	/* The bytes are still there to read unchecked. */
	CHECK_OK(weld_file_pread(f, buf, 96, e->data_offset, &err), &err);
	/* Neighbours are intact. */
	CHECK_OK(weld_zip_find(z, "data/1", &e, &err), &err);
	CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
	close_zip(f, z);
}

/* A small valid torch-like archive; the damaged variants patch its bytes. */
struct small_layout {
	uint64_t off1, off2, cd_offset, eocd64_offset; /* off1, off2: data/0, version */
};

static void write_small(const char *path, bool zip64_end, const char *comment,
			struct small_layout *lay)
{
	zw w;
	zw_init(&w, path, zip64_end);
	w.comment = comment;
	zw_add_str(&w, "arch/data.pkl", "\x80\x02}.");
	zw_add_str(&w, "arch/data/0", "0123456789abcdef");
	zw_add_str(&w, "arch/version", "3\n");
	if (lay) {
		lay->off1 = w.ents[1].offset;
		lay->off2 = w.ents[2].offset;
	}
	CHECK(zw_finish(&w) == 0);
	if (lay) {
		lay->cd_offset = w.cd_offset;
		lay->eocd64_offset = w.eocd64_offset;
	}
}

/*
 * Offset of central directory entry I of the small archive (names are 13, 11
 * and 12 bytes); I = 3 is the end record that follows.
 */
static uint64_t small_central(const struct small_layout *lay, int i)
{
	static const uint64_t lens[] = {46 + 13, 46 + 11, 46 + 12};
	uint64_t off = lay->cd_offset;
	for (int k = 0; k < i; k++)
		off += lens[k];
	return off;
}

static void test_small_valid(void)
{
	for (int variant = 0; variant < 3; variant++) {
		const char *p = tmp_path("small.zip");
		write_small(p, variant != 1, variant == 2 ? "a comment with PK\x05\x06 inside" : NULL,
			    NULL);
		weld_error err = {0};
		weld_file *f;
		weld_zip *z;
		CHECK_OK(open_zip(p, &f, &z, &err), &err);
		if (!z)
			continue;
		CHECK(strcmp(weld_zip_prefix(z), "arch") == 0);
		CHECK(weld_zip_count(z) == 3);
		const weld_zip_entry *e;
		CHECK_OK(weld_zip_find(z, "data/0", &e, &err), &err);
		char buf[16];
		CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
		CHECK(memcmp(buf, "0123456789abcdef", 16) == 0);
		CHECK_OK(weld_file_pread(f, buf, 6, e->data_offset + 10, &err), &err);
		CHECK(memcmp(buf, "abcdef", 6) == 0);
		CHECK(e->data_offset % 64 == 0);
		close_zip(f, z);
	}
}

static void test_damaged(void)
{
	struct small_layout lay;
	char msg[512];
	const char *p = tmp_path("bad.zip");

	/* Prefix mismatch. */
	zw w;
	zw_init(&w, p, true);
	zw_add_str(&w, "arch/data.pkl", "x");
	zw_add_str(&w, "other/data/0", "y");
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "entry 'other/data/0' is outside the archive prefix 'arch/'");
	/* A name equal to the prefix without its '/' is outside too. */
	zw_init(&w, p, true);
	zw_add_str(&w, "arch/data.pkl", "x");
	zw_add_str(&w, "arch", "y");
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "entry 'arch' is outside the archive prefix 'arch/'");

	/* First entry without '/'. */
	zw_init(&w, p, true);
	zw_add_str(&w, "data.pkl", "x");
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "first entry 'data.pkl' has no '/', so the archive has no prefix");

	/* Duplicate name. */
	zw_init(&w, p, true);
	zw_add_str(&w, "arch/data.pkl", "x");
	zw_add_str(&w, "arch/data/0", "y");
	zw_add_str(&w, "arch/data/1", "z");
	zw_add_str(&w, "arch/data/0", "w");
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "duplicate entry 'arch/data/0'");

	/* Control character in a name. */
	zw_init(&w, p, true);
	zw_add_str(&w, "arch/data.pkl", "x");
	zw_add_str(&w, "arch/da\nta", "y");
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "central directory entry 1 has a control character in its name");

	/* No entries at all. */
	zw_init(&w, p, true);
	CHECK(zw_finish(&w) == 0);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "zip archive has no entries");

	/* Deflate-compressed entry: opens, but find and read refuse it. */
	static const char text[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	size_t dn = 0;
	uint8_t *def = deflate_raw(text, sizeof(text) - 1, &dn);
	CHECK(def != NULL);
	zw_init(&w, p, true);
	zw_add_str(&w, "arch/data.pkl", "x");
	if (def)
		zw_add_raw(&w, "arch/data/0", def, dn, sizeof(text) - 1,
			   (uint32_t)crc32(0L, (const Bytef *)text, sizeof(text) - 1), 8, 0);
	CHECK(zw_finish(&w) == 0);
	free(def);
	const char *deflate_msg =
		"record 'data/0' is compressed (method 8); only stored records are supported";
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_UNSUPPORTED, deflate_msg);
	{
		weld_error err = {0};
		weld_file *f;
		weld_zip *z;
		CHECK_OK(open_zip(p, &f, &z, &err), &err);
		if (z) {
			const weld_zip_entry *e = find_entry(z, "data/0");
			CHECK(e && e->method == 8 && e->size == sizeof(text) - 1);
			char buf[128];
			snprintf(msg, sizeof(msg), "%s: %s", p, deflate_msg);
			CHECK_ERR(weld_zip_read(z, e, buf, &err), WELD_ERR_UNSUPPORTED, &err, msg);
			close_zip(f, z);
		}
	}

	/* Encrypted flag on a stored entry. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 8, 0x0809 | (0u << 16)); /* flags, method 0 */
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_UNSUPPORTED,
			  "record 'data/0' is encrypted; encrypted records are not supported");

	/* Stored record whose compressed and uncompressed sizes differ. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 20, 17);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT,
			  "stored record 'arch/data/0' has compressed size 17 but uncompressed size 16");

	/* 0xFFFFFFFF size without a ZIP64 extra field. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 24, 0xFFFFFFFFu);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT,
			  "record 'arch/data/0' lacks the ZIP64 extra field its sizes or offset need");

	/* Size too big for the space before the next local header. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 20, 1000);
	patch32(p, small_central(&lay, 1) + 24, 1000);
	snprintf(msg, sizeof(msg),
		 "data of record 'data/0' (1000 bytes) runs past the next entry or the central "
		 "directory at offset %llu",
		 (unsigned long long)lay.off2);
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_FORMAT, msg);

	/* Local header offset pointing at garbage. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 42, (uint32_t)lay.off1 - 8);
	snprintf(msg, sizeof(msg), "record 'data/0' has no local header at offset %llu",
		 (unsigned long long)lay.off1 - 8);
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_FORMAT, msg);

	/* Local header offset pointing at another entry's header. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 0) + 42, (uint32_t)lay.off1);
	snprintf(msg, sizeof(msg), "records 'data.pkl' and 'data/0' share the local header at offset %llu",
		 (unsigned long long)lay.off1);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);

	/* Local header offset past the central directory. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 42, (uint32_t)lay.cd_offset - 29);
	snprintf(msg, sizeof(msg),
		 "record 'arch/data/0' has its local header at offset %llu, past the central "
		 "directory at %llu",
		 (unsigned long long)lay.cd_offset - 29, (unsigned long long)lay.cd_offset);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);

	/* Local header naming another entry. */
	write_small(p, true, NULL, &lay);
	patch(p, lay.off1 + 30 + 10, "X", 1);
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_FORMAT,
			  "local header of record 'data/0' names a different entry");

	/* Local name length differing from the central one. */
	write_small(p, true, NULL, &lay);
	patch(p, lay.off1 + 26, "\x0c", 1);
	EXPECT_FIND_ERROR(p, "data/0", WELD_ERR_FORMAT,
			  "local header of record 'data/0' names a different entry");

	/* A stored CRC of 0 means "not computed": damaged data then reads fine. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1) + 16, 0);
	/* data/0's data: after 30 + 11 name + 4 FB header bytes, padded to 64. */
	const uint64_t data0 = (lay.off1 + 45 + 63) / 64 * 64;
	patch(p, data0, "X", 1);
	{
		weld_error err = {0};
		weld_file *f;
		weld_zip *z, *z2;
		CHECK_OK(open_zip(p, &f, &z, &err), &err);
		if (z) {
			const weld_zip_entry *e;
			char buf[16];
			CHECK_OK(weld_zip_find(z, "data/0", &e, &err), &err);
			CHECK(e && e->data_offset == data0);
			CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
			CHECK(memcmp(buf, "X123456789abcdef", 16) == 0);
			/* An entry from another archive is refused. */
			CHECK_OK(weld_zip_open(&z2, f, &err), &err);
			snprintf(msg, sizeof(msg),
				 "%s: weld_zip_read: entry does not belong to this archive", p);
			CHECK_ERR(weld_zip_read(z2, e, buf, &err), WELD_ERR_INVALID_ARG, &err, msg);
			weld_zip_close(z2);
			close_zip(f, z);
		}
		weld_zip_close(NULL);
	}

	/* Bad central directory signature. */
	write_small(p, true, NULL, &lay);
	patch32(p, small_central(&lay, 1), 0x12345678);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, "central directory entry 1 has a bad signature");

	/* Central directory outside the file (ZIP64 EOCD cd offset). */
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 48, UINT64_MAX - 10);
	snprintf(msg, sizeof(msg),
		 "central directory (offset 18446744073709551605, size %llu) lies outside the "
		 "archive",
		 (unsigned long long)(lay.eocd64_offset - lay.cd_offset));
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);

	/* Entry count larger than the central directory can hold. */
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 24, 1000000);
	patch64(p, lay.eocd64_offset + 32, 1000000);
	snprintf(msg, sizeof(msg), "central directory of %llu bytes cannot hold 1000000 entries",
		 (unsigned long long)(lay.eocd64_offset - lay.cd_offset));
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);

	/* Entry count smaller than the central directory holds. */
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 24, 2);
	patch64(p, lay.eocd64_offset + 32, 2);
	snprintf(msg, sizeof(msg), "central directory is %llu bytes but its 2 entries use %llu",
		 (unsigned long long)(lay.eocd64_offset - lay.cd_offset),
		 (unsigned long long)(46 + 13 + 46 + 11));
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);

	/* Central directory size cutting an entry short. */
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 40, 46 + 13 + 46 + 11 + 50);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT,
			  "central directory entry 2 runs past the end of the central directory");
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 40, 46 + 13 + 46 + 11 + 40);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT,
			  "central directory entry 2 runs past the end of the central directory");

	/* Broken ZIP64 end record, locator pointing elsewhere, multi-disk. */
	write_small(p, true, NULL, &lay);
	patch32(p, lay.eocd64_offset, 0x06064B51);
	snprintf(msg, sizeof(msg), "bad ZIP64 end of central directory record at offset %llu",
		 (unsigned long long)lay.eocd64_offset);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);
	write_small(p, true, NULL, &lay);
	patch64(p, lay.eocd64_offset + 56 + 8, lay.eocd64_offset + 1);
	snprintf(msg, sizeof(msg), "ZIP64 end of central directory offset %llu is out of range",
		 (unsigned long long)lay.eocd64_offset + 1);
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, msg);
	write_small(p, true, NULL, &lay);
	patch32(p, lay.eocd64_offset + 56 + 16, 2);
	EXPECT_OPEN_ERROR(p, WELD_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");
	write_small(p, true, NULL, &lay);
	patch32(p, lay.eocd64_offset + 16, 1);
	EXPECT_OPEN_ERROR(p, WELD_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");
	write_small(p, false, NULL, &lay);
	patch32(p, small_central(&lay, 3) + 4, 1); /* classic EOCD: this disk = 1 */
	EXPECT_OPEN_ERROR(p, WELD_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");

	/* A comment whose length does not reach the end of the file. */
	write_small(p, false, "comment", &lay);
	{
		uint8_t b[2] = {6, 0};
		patch(p, small_central(&lay, 3) + 20, b, 2);
	}
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT, NOT_FOUND);
}

/* ------------------------------------------------------------------------- */
/* (c) ZIP64 encodings and many entries                                       */

static void test_zip64_forced(void)
{
	const char *p = tmp_path("z64.zip");
	static const char a[] = "pickle bytes", b[] = "0123456789", c[] = "xyz";
	zw w;
	zw_init(&w, p, true);
	/* Every field forced, only the offset, only both sizes: the extra holds just those. */
	zw_add_raw(&w, "z/data.pkl", a, 12, 12, (uint32_t)crc32(0L, (const Bytef *)a, 12), 0, Z64_ALL);
	zw_add_raw(&w, "z/data/0", b, 10, 10, (uint32_t)crc32(0L, (const Bytef *)b, 10), 0, Z64_OFFSET);
	zw_add_raw(&w, "z/data/1", c, 3, 3, (uint32_t)crc32(0L, (const Bytef *)c, 3), 0,
		   Z64_USIZE | Z64_CSIZE);
	zw_add_raw(&w, "z/data/2", NULL, 0, 0, 0, 0, Z64_USIZE);
	zw_add_raw(&w, "z/data/3", c, 3, 3, (uint32_t)crc32(0L, (const Bytef *)c, 3), 0,
		   Z64_OFFSET | Z64_JUNK);
	uint64_t offs[5];
	for (int i = 0; i < 5; i++)
		offs[i] = w.ents[i].offset;
	CHECK(zw_finish(&w) == 0);
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	CHECK_OK(open_zip(p, &f, &z, &err), &err);
	if (!z)
		return;
	CHECK(strcmp(weld_zip_prefix(z), "z") == 0);
	CHECK(weld_zip_count(z) == 5);
	static const char *const recs[] = {"data.pkl", "data/0", "data/1", "data/2", "data/3"};
	static const uint64_t sizes[] = {12, 10, 3, 0, 3};
	for (int i = 0; i < 5; i++) {
		const weld_zip_entry *e;
		CHECK_OK(weld_zip_find(z, recs[i], &e, &err), &err);
		if (!e)
			continue;
		CHECK(e->size == sizes[i]);
		CHECK(e->local_offset == offs[i]);
		CHECK(e->data_offset % 64 == 0);
		char buf[16];
		CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
	}
	close_zip(f, z);

	/* A ZIP64 extra too short for the fields it must carry. */
	zw_init(&w, p, true);
	zw_add_raw(&w, "z/data.pkl", a, 12, 12, (uint32_t)crc32(0L, (const Bytef *)a, 12), 0, Z64_ALL);
	uint64_t cd;
	CHECK(zw_finish(&w) == 0);
	cd = w.cd_offset;
	{
		uint8_t len16[2] = {16, 0}; /* extra data length 24 -> 16 */
		patch(p, cd + 46 + 10 + 2, len16, 2);
	}
	EXPECT_OPEN_ERROR(p, WELD_ERR_FORMAT,
			  "record 'z/data.pkl' has a ZIP64 extra field too short for its sizes and offset");
}

static void test_many_entries(void)
{
	const char *p = tmp_path("many.zip");
	enum { N = 70000 };
	zw w;
	zw_init(&w, p, true);
	char name[64];
	for (int i = 0; i < N; i++) {
		uint8_t v = (uint8_t)(i * 7);
		snprintf(name, sizeof(name), "many/data/%d", i);
		zw_add(&w, name, &v, 1);
	}
	CHECK(zw_finish(&w) == 0);
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	CHECK_OK(open_zip(p, &f, &z, &err), &err);
	if (!z)
		return;
	CHECK(weld_zip_count(z) == N);
	CHECK(strcmp(weld_zip_prefix(z), "many") == 0);
	const int probes[] = {0, 1, 9, 65535, 65536, 69999};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		const weld_zip_entry *e;
		snprintf(name, sizeof(name), "data/%d", probes[i]);
		CHECK_OK(weld_zip_find(z, name, &e, &err), &err);
		uint8_t v = 0;
		if (e) {
			CHECK(e == weld_zip_entry_at(z, (size_t)probes[i]));
			CHECK_OK(weld_zip_read(z, e, &v, &err), &err);
			CHECK(v == (uint8_t)(probes[i] * 7));
		}
	}
	/* Every lookup: O(log n) each, so the whole loop stays fast. */
	size_t found = 0;
	for (int i = 0; i < N; i++) {
		const weld_zip_entry *e;
		snprintf(name, sizeof(name), "data/%d", i);
		found += weld_zip_find(z, name, &e, &err) == WELD_OK;
	}
	CHECK(found == N);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s: missing record 'data/70000'", p);
	const weld_zip_entry *e;
	CHECK_ERR(weld_zip_find(z, "data/70000", &e, &err), WELD_ERR_FORMAT, &err, msg);
	close_zip(f, z);
}

/* ------------------------------------------------------------------------- */
/* (d) a sparse archive with a record over 4 GiB (shared docs, A.5)           */

static void test_over_4gib(void)
{
	const char *p = tmp_path("big.zip");
	const uint64_t big = (4ull << 30) + 64;
	zw w;
	zw_init(&w, p, true);
	zw_add_str(&w, "big/data.pkl", "\x80\x02}.");
	zw_add_raw(&w, "big/data/0", NULL, big, big, 0, 0, 0); /* CRC 0: not computed */
	zw_add_str(&w, "big/data/1", "abcdef");
	uint64_t off1 = w.ents[2].offset;
	CHECK(zw_finish(&w) == 0);
	CHECK(off1 > 0xFFFFFFFFu);
	weld_error err = {0};
	weld_file *f;
	weld_zip *z;
	CHECK_OK(open_zip(p, &f, &z, &err), &err);
	if (!z)
		return;
	CHECK(f->size > big);
	const weld_zip_entry *e0, *e1;
	CHECK_OK(weld_zip_find(z, "data/0", &e0, &err), &err);
	CHECK_OK(weld_zip_find(z, "data/1", &e1, &err), &err);
	if (e0 && e1) {
		CHECK(e0->size == big);
		CHECK(e0->data_offset % 64 == 0);
		CHECK(e1->size == 6 && e1->local_offset == off1);
		CHECK(e1->data_offset % 64 == 0 && e1->data_offset > 0xFFFFFFFFu);
		uint8_t buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
		CHECK_OK(weld_file_pread(f, buf, 8, e0->data_offset + big - 8, &err), &err);
		CHECK(memcmp(buf, "\0\0\0\0\0\0\0\0", 8) == 0);
		CHECK_OK(weld_file_pread(f, buf, 4, e1->data_offset + 2, &err), &err);
		CHECK(memcmp(buf, "cdef", 4) == 0);
		CHECK_OK(weld_zip_read(z, e1, buf, &err), &err);
		CHECK(memcmp(buf, "abcdef", 6) == 0);
	}
	close_zip(f, z);
	unlink(p);
}

/* ------------------------------------------------------------------------- */

/* Small generated archives for the fuzz corpus (tests/fuzz/corpus/zip). */
static int write_corpus(const char *dir)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s", dir);
	write_small(tmp_path("gen_small_zip64.zip"), true, NULL, NULL);
	write_small(tmp_path("gen_small_classic.zip"), false, NULL, NULL);
	write_small(tmp_path("gen_small_comment.zip"), false, "comment PK\x05\x06", NULL);
	zw w;
	static const char a[] = "pickle bytes", b[] = "0123456789";
	zw_init(&w, tmp_path("gen_forced_zip64.zip"), true);
	zw_add_raw(&w, "z/data.pkl", a, 12, 12, (uint32_t)crc32(0L, (const Bytef *)a, 12), 0, Z64_ALL);
	zw_add_raw(&w, "z/data/0", b, 10, 10, (uint32_t)crc32(0L, (const Bytef *)b, 10), 0, Z64_OFFSET);
	zw_add_raw(&w, "z/data/1", b, 3, 3, (uint32_t)crc32(0L, (const Bytef *)b, 3), 0,
		   Z64_USIZE | Z64_CSIZE);
	zw_add_raw(&w, "z/data/2", NULL, 0, 0, 0, 0, 0);
	zw_add_raw(&w, "z/data/3", b, 4, 4, (uint32_t)crc32(0L, (const Bytef *)b, 4), 0,
		   Z64_OFFSET | Z64_JUNK);
	zw_finish(&w);
	static const char text[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	size_t dn = 0;
	uint8_t *def = deflate_raw(text, sizeof(text) - 1, &dn);
	zw_init(&w, tmp_path("gen_deflate.zip"), true);
	zw_add_str(&w, "arch/data.pkl", "x");
	if (def)
		zw_add_raw(&w, "arch/data/0", def, dn, sizeof(text) - 1,
			   (uint32_t)crc32(0L, (const Bytef *)text, sizeof(text) - 1), 8, 0);
	zw_finish(&w);
	free(def);
	zw_init(&w, tmp_path("gen_duplicate.zip"), true);
	zw_add_str(&w, "arch/data.pkl", "x");
	zw_add_str(&w, "arch/data/0", "y");
	zw_add_str(&w, "arch/data/0", "w");
	zw_finish(&w);
	return test_failures ? 1 : 0;
}

static void remove_tmpdir(void)
{
	static const char *const names[] = {"cut.pt", "front.pt", "crc.pt", "small.zip", "bad.zip",
					    "z64.zip", "many.zip", "big.zip"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp_path(names[i]));
	rmdir(tmpdir);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/weld_test_zip.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_fixtures();
	test_concurrent_readers();
	test_truncated();
	test_crc_mismatch();
	test_small_valid();
	test_damaged();
	test_zip64_forced();
	test_many_entries();
	test_over_4gib();
	if (!getenv("WELD_TEST_KEEP_TMP"))
		remove_tmpdir();
	else
		fprintf(stderr, "kept %s\n", tmpdir);
	TEST_DONE();
}
