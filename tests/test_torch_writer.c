/*
 * Tests for the pytorch_model.bin writer (src/torch_writer.c). The oracles
 * are files torch 2.15 wrote itself (tests/fixtures/torch_writer, see its
 * README): the mixed-dtype archive must equal torch's byte for byte except
 * the informational serialization id, and data.pkl must equal torch's for a
 * 1001-tensor dict and for a ZIP64 archive (a sparse 6 GiB file). Every
 * archive is also read back through weld's own zip and checkpoint readers.
 *
 * WELD_TEST_KEEP_TMP=1 keeps the written files (the folder is printed).
 */
#include "formats/ckpt.h"
#include "output/torch_bin.h"
#include "io/zip.h"

#include "test_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct spec {
	weld_dtype dtype;
	size_t ndim;
	uint64_t shape[5];
	const char *name;
} spec;

/* Must match MIXED, MANY and ZIP64 in tests/fixtures/torch_writer/make_fixtures.py. */
static const spec mixed[] = {
	{WELD_DTYPE_F32, 2, {3, 5}, "model.embed.weight"},
	{WELD_DTYPE_F16, 2, {2, 2}, "na\xc3\xafve.\xe6\x9d\x83\xe9\x87\x8d.\xf0\x9f\x99\x82"},
	{WELD_DTYPE_BF16, 2, {0, 7}, "empty.bf16"},
	{WELD_DTYPE_F64, 0, {0}, "scalar.f64"},
	{WELD_DTYPE_I64, 2, {4, 1}, "ids"},
	{WELD_DTYPE_I32, 2, {300, 2}, "i32.300x2"},
	{WELD_DTYPE_I16, 2, {1, 5}, "i16"},
	{WELD_DTYPE_I8, 5, {2, 3, 4, 5, 1}, "i8.5d"},
	{WELD_DTYPE_U8, 1, {6}, "0"},
	{WELD_DTYPE_BOOL, 3, {3, 0, 2}, "mask"},
	{WELD_DTYPE_C64, 1, {2}, "complex"},
	{WELD_DTYPE_U16, 1, {3}, "u16"},
	{WELD_DTYPE_F8_E4M3, 1, {4}, "f8"},
	{WELD_DTYPE_U64, 0, {0}, "u64.scalar"},
	{WELD_DTYPE_F32, 2, {70000, 0}, "wide.empty"},
	{WELD_DTYPE_BF16, 2, {2, 3}, ""},
	{WELD_DTYPE_U32, 2, {2, 2}, "u32"},
	{WELD_DTYPE_F8_E5M2, 1, {3}, "f8e5m2"},
	{WELD_DTYPE_BOOL, 1, {5}, "flags"},
	{WELD_DTYPE_F32, 1, {1}, "storage"},
};
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

static const spec zip64[] = {
	{WELD_DTYPE_F32, 1, {((uint64_t)1 << 30) + 4}, "big"}, /* 4 GiB + 16 bytes */
	{WELD_DTYPE_U8, 1, {6}, "small"},                     /* local header beyond 4 GiB */
	{WELD_DTYPE_F32, 1, {0}, "empty"},
	{WELD_DTYPE_I16, 1, {3}, "after"},
	{WELD_DTYPE_BOOL, 1, {((uint64_t)1 << 31) + 1}, "huge"}, /* numel needs LONG1 */
	{WELD_DTYPE_F32, 2, {(uint64_t)1 << 31, 0}, "wide.long"},
	{WELD_DTYPE_F32, 1, {2}, "tail"},
};
#define NZIP64 (sizeof(zip64) / sizeof(zip64[0]))

#define BIG_TENSOR ((uint64_t)1 << 28) /* larger tensors stay unwritten (sparse zeros) */

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
	static char buf[4][512];
	static int slot;
	char *b = buf[slot++ & 3];
	snprintf(b, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return b;
}

/* Byte I of tensor K: (31 I + 17 K + 7) mod 256, & 1 for bool (as make_fixtures.py). */
static void fill(uint8_t *p, uint64_t n, size_t k, weld_dtype dtype)
{
	for (uint64_t i = 0; i < n; i++) {
		p[i] = (uint8_t)(i * 31 + k * 17 + 7);
		if (dtype == WELD_DTYPE_BOOL)
			p[i] &= 1;
	}
}

/* zlib CRC-32 of N zero bytes, by combining 1 MiB blocks. */
static uint32_t zeros_crc(uint64_t n)
{
	static const uint8_t zero[1 << 20];
	uLong block = crc32(0, zero, sizeof(zero)), c = crc32(0, NULL, 0);
	for (; n >= sizeof(zero); n -= sizeof(zero))
		c = crc32_combine(c, block, (z_off_t)sizeof(zero));
	return (uint32_t)crc32(c, zero, (uInt)n);
}

/* weld_tw_tensor descriptions of SPECS (shapes point into SPECS). */
static weld_tw_tensor *tensors_of(const spec *specs, size_t n)
{
	weld_tw_tensor *t = calloc(n ? n : 1, sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		uint64_t numel = 1;
		for (size_t d = 0; d < specs[i].ndim; d++)
			numel *= specs[i].shape[d];
		t[i] = (weld_tw_tensor){specs[i].name, specs[i].dtype, specs[i].ndim, specs[i].shape,
					numel * weld_dtype_size(specs[i].dtype), 0};
	}
	return t;
}

/*
 * Write SPECS as PATH the way the executor does: layout, pre-size, head,
 * tensor data at the planned offsets, finish. Returns the tensors (offsets
 * filled) and the CRC weld_tw_finish combined; NULL on failure.
 */
static weld_tw_tensor *write_archive(const char *path, const char *archive, const spec *specs, size_t n,
				     uint64_t *file_size, uint32_t *file_crc)
{
	weld_error err = {0};
	weld_tw_tensor *t = tensors_of(specs, n);
	weld_tw_layout *l = NULL;
	CHECK_OK(weld_tw_layout_new(&l, t, n, archive, file_size, &err), &err);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (!l || fd < 0) {
		weld_tw_layout_free(l);
		free(t);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	CHECK(ftruncate(fd, (off_t)*file_size) == 0);
	CHECK_OK(weld_tw_write_head(l, fd, path, &err), &err);
	uint32_t *crcs = calloc(n ? n : 1, sizeof(*crcs));
	for (size_t i = 0; i < n; i++) {
		if (t[i].nbytes > BIG_TENSOR) {
			crcs[i] = zeros_crc(t[i].nbytes);
			continue;
		}
		uint8_t *buf = malloc(t[i].nbytes + 1);
		fill(buf, t[i].nbytes, i, t[i].dtype);
		crcs[i] = (uint32_t)crc32(0, buf, (uInt)t[i].nbytes);
		CHECK(pwrite(fd, buf, t[i].nbytes, (off_t)t[i].offset) == (ssize_t)t[i].nbytes);
		free(buf);
	}
	CHECK_OK(weld_tw_finish(l, fd, path, crcs, file_crc, &err), &err);
	CHECK(close(fd) == 0);
	free(crcs);
	weld_tw_layout_free(l);
	return t;
}

/* Read whole record RECORD of the zip at PATH (malloc'd, CRC checked); NULL on failure. */
static uint8_t *zip_record(const char *path, const char *record, size_t *len)
{
	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	const weld_zip_entry *e = NULL;
	uint8_t *buf = NULL;
	CHECK_OK(weld_file_open(&f, path, &err), &err);
	if (f)
		CHECK_OK(weld_zip_open(&z, f, &err), &err);
	if (z)
		CHECK_OK(weld_zip_find(z, record, &e, &err), &err);
	if (e) {
		buf = malloc(e->size + 1);
		CHECK_OK(weld_zip_read(z, e, buf, &err), &err);
		*len = (size_t)e->size;
	}
	weld_zip_close(z);
	weld_file_close(f);
	return buf;
}

/* data.pkl of the archive at PATH equals WANT. */
static void check_pickle_equals(const char *path, const uint8_t *want, size_t want_len, const char *what)
{
	size_t got_len = 0;
	uint8_t *got = zip_record(path, "data.pkl", &got_len);
	CHECK(got && want);
	if (got && want && (got_len != want_len || memcmp(got, want, got_len) != 0)) {
		size_t i = 0;
		while (i < got_len && i < want_len && got[i] == want[i])
			i++;
		fprintf(stderr, "%s: data.pkl differs from %s at byte %zu (%zu vs %zu bytes)\n", path, what, i,
			got_len, want_len);
		test_failures++;
	}
	free(got);
}

static void check_pickle_fixture(const char *path, const char *rel)
{
	size_t len = 0;
	uint8_t *want = read_file(fixture(rel), &len);
	check_pickle_equals(path, want, len, rel);
	free(want);
}

/*
 * Every record of PATH has 64-byte aligned data, and data/<i> sits at
 * T[i].offset with T[i].nbytes bytes.
 */
static void check_zip_layout(const char *path, const weld_tw_tensor *t, size_t n)
{
	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	CHECK_OK(weld_file_open(&f, path, &err), &err);
	if (f)
		CHECK_OK(weld_zip_open(&z, f, &err), &err);
	if (!z) {
		weld_file_close(f);
		return;
	}
	CHECK(weld_zip_count(z) == n + 6);
	for (size_t i = 0; i < weld_zip_count(z); i++) {
		const weld_zip_entry *e = NULL;
		CHECK_OK(weld_zip_find(z, weld_zip_entry_at(z, i)->record, &e, &err), &err);
		if (e) {
			CHECK(e->data_offset % 64 == 0);
			CHECK(e->method == 0);
		}
	}
	for (size_t i = 0; i < n; i++) {
		char rec[32];
		const weld_zip_entry *e = NULL;
		snprintf(rec, sizeof(rec), "data/%zu", i);
		CHECK_OK(weld_zip_find(z, rec, &e, &err), &err);
		if (e) {
			CHECK(e->data_offset == t[i].offset);
			CHECK(e->size == t[i].nbytes);
		}
	}
	weld_zip_close(z);
	weld_file_close(f);
}

/* The checkpoint reader lists SPECS in order; tensors up to BIG_TENSOR hold the pattern. */
static void check_read_back(const char *path, const spec *specs, size_t n)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	if (!c)
		return;
	CHECK(weld_ckpt_format(c) == WELD_FORMAT_TORCH_ZIP);
	CHECK(weld_ckpt_tensor_count(c) == n);
	for (size_t i = 0; i < n && i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		CHECK(weld_ckpt_tensor(c, i, &ti) == WELD_OK);
		CHECK(strcmp(ti.name, specs[i].name) == 0);
		CHECK(ti.dtype == specs[i].dtype);
		CHECK(ti.ndim == specs[i].ndim);
		for (size_t d = 0; d < ti.ndim && d < specs[i].ndim; d++)
			CHECK(ti.shape[d] == specs[i].shape[d]);
		CHECK(ti.contiguous == 1);
		CHECK(ti.alias_of == NULL);
		if (ti.nbytes > BIG_TENSOR)
			continue;
		uint8_t *got = malloc(ti.nbytes + 1), *want = malloc(ti.nbytes + 1);
		fill(want, ti.nbytes, i, ti.dtype);
		CHECK_OK(weld_ckpt_read_tensor(c, i, got, (size_t)ti.nbytes, &err), &err);
		if (memcmp(got, want, (size_t)ti.nbytes) != 0) {
			fprintf(stderr, "%s: tensor '%s' bytes differ\n", path, ti.name);
			test_failures++;
		}
		free(got);
		free(want);
	}
	weld_ckpt_free(c);
}

/* Position of the last occurrence of NEEDLE in HAY, or SIZE_MAX. */
static size_t find_last(const uint8_t *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = len >= n ? len - n + 1 : 0; i-- > 0;)
		if (memcmp(hay + i, needle, n) == 0)
			return i;
	return SIZE_MAX;
}

/*
 * The mixed archive equals torch's mixed.pt byte for byte once the
 * serialization id (its 40 digits, its descriptor CRC and its central CRC)
 * is taken from torch's file; the id itself is 40 ASCII digits.
 */
static void check_same_as_torch(const char *path, const char *torch_path, const char *sid_name)
{
	size_t got_len = 0, want_len = 0;
	uint8_t *got = read_file(path, &got_len);
	uint8_t *want = read_file(torch_path, &want_len);
	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	const weld_zip_entry *e = NULL;
	CHECK_OK(weld_file_open(&f, path, &err), &err);
	if (f)
		CHECK_OK(weld_zip_open(&z, f, &err), &err);
	if (z)
		CHECK_OK(weld_zip_find(z, ".data/serialization_id", &e, &err), &err);
	size_t name_at = got ? find_last(got, got_len, sid_name) : SIZE_MAX; /* in the central directory */
	CHECK(got && want && e && got_len == want_len && name_at != SIZE_MAX && name_at >= 46);
	if (got && want && e && got_len == want_len && name_at != SIZE_MAX && name_at >= 46 &&
	    e->data_offset + 48 <= got_len) {
		size_t d = (size_t)e->data_offset;
		for (size_t i = 0; i < 40; i++)
			CHECK(got[d + i] >= '0' && got[d + i] <= '9');
		memcpy(got + d, want + d, 40);
		memcpy(got + d + 44, want + d + 44, 4);                       /* descriptor CRC */
		memcpy(got + name_at - 46 + 16, want + name_at - 46 + 16, 4); /* central CRC */
		size_t i = 0;
		while (i < got_len && got[i] == want[i])
			i++;
		if (i != got_len) {
			fprintf(stderr, "%s differs from torch's %s at byte %zu\n", path, torch_path, i);
			test_failures++;
		}
	}
	weld_zip_close(z);
	weld_file_close(f);
	free(got);
	free(want);
}

static void test_mixed(void)
{
	const char *path = tmp_path("mixed.pt");
	uint64_t size = 0;
	uint32_t crc = 0;
	weld_tw_tensor *t = write_archive(path, "mixed", mixed, NMIXED, &size, &crc);
	if (!t)
		return;
	size_t len = 0;
	uint8_t *bytes = read_file(path, &len);
	CHECK(bytes && len == size);
	if (bytes)
		CHECK(crc == (uint32_t)crc32(0, bytes, (uInt)len));
	free(bytes);

	check_same_as_torch(path, fixture("torch_writer/mixed.pt"), "mixed/.data/serialization_id");
	size_t want_len = 0;
	uint8_t *want = zip_record(fixture("torch_writer/mixed.pt"), "data.pkl", &want_len);
	check_pickle_equals(path, want, want_len, "torch_writer/mixed.pt");
	free(want);
	check_zip_layout(path, t, NMIXED);
	check_read_back(path, mixed, NMIXED);
	free(t);
}

/* 1001 tensors: two SETITEMS batches, LONG_BINPUT, and v3 globals first met past memo 255. */
static void test_many(void)
{
	enum { N = 1001 };
	static spec specs[N];
	static char names[N][8];
	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "t%zu", i);
		specs[i] = (spec){WELD_DTYPE_F32, 1, {1}, names[i]};
	}
	specs[998].dtype = WELD_DTYPE_U16;
	specs[999].dtype = WELD_DTYPE_U16;
	specs[999].shape[0] = 2;
	specs[1000].dtype = WELD_DTYPE_F8_E5M2;
	const char *path = tmp_path("many.pt");
	uint64_t size = 0;
	uint32_t crc = 0;
	weld_tw_tensor *t = write_archive(path, "many", specs, N, &size, &crc);
	if (!t)
		return;
	check_pickle_fixture(path, "torch_writer/many.data.pkl");
	check_zip_layout(path, t, N);
	check_read_back(path, specs, N);
	size_t len = 0;
	uint8_t *bytes = read_file(path, &len);
	CHECK(bytes && len == size);
	if (bytes)
		CHECK(crc == (uint32_t)crc32(0, bytes, (uInt)len));
	free(bytes);
	free(t);
}

/* CRC-32 of the archive at PATH, reading everything but T's big (never written, zero) tensors. */
static uint32_t sparse_file_crc(const char *path, const weld_tw_tensor *t, size_t n, uint64_t size)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	uLong c = crc32(0, NULL, 0);
	uint64_t pos = 0;
	static uint8_t buf[1 << 16];
	for (size_t i = 0; i <= n; i++) {
		uint64_t end = i < n ? t[i].offset : size;
		if (i < n && t[i].nbytes <= BIG_TENSOR)
			continue;
		while (pos < end) {
			size_t k = end - pos < sizeof(buf) ? (size_t)(end - pos) : sizeof(buf);
			CHECK(pread(fd, buf, k, (off_t)pos) == (ssize_t)k);
			c = crc32(c, buf, (uInt)k);
			pos += k;
		}
		if (i < n) {
			c = crc32_combine(c, zeros_crc(t[i].nbytes), (z_off_t)t[i].nbytes);
			pos += t[i].nbytes;
		}
	}
	close(fd);
	return (uint32_t)c;
}

/*
 * ZIP64: a 4 GiB + 16 byte record, records whose local headers lie beyond
 * 4 GiB, a 2 GiB + 1 element bool storage and a 2^31 dimension (LONG1).
 * The file is sparse: the two big tensors are never written.
 */
static void test_zip64(void)
{
	const char *path = tmp_path("zip64.pt");
	uint64_t size = 0;
	uint32_t crc = 0;
	weld_tw_tensor *t = write_archive(path, "zip64", zip64, NZIP64, &size, &crc);
	if (!t)
		return;
	check_pickle_fixture(path, "torch_writer/zip64.data.pkl");
	check_zip_layout(path, t, NZIP64);
	CHECK(crc == sparse_file_crc(path, t, NZIP64, size));

	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	const weld_zip_entry *big = NULL, *small = NULL, *pkl = NULL;
	CHECK_OK(weld_file_open(&f, path, &err), &err);
	if (f)
		CHECK_OK(weld_zip_open(&z, f, &err), &err);
	if (z) {
		CHECK_OK(weld_zip_find(z, "data/0", &big, &err), &err);
		CHECK_OK(weld_zip_find(z, "data/1", &small, &err), &err);
		CHECK_OK(weld_zip_find(z, "data.pkl", &pkl, &err), &err);
	}
	if (big && small && pkl) {
		uint8_t d[24];
		/* data/0: ZIP64 sizes, 24-byte descriptor right before data/1's header */
		CHECK(big->size == ((uint64_t)4 << 30) + 16);
		CHECK(big->local_offset < 0xFFFFFFFFu);
		CHECK(big->crc32 == zeros_crc(big->size));
		CHECK(small->local_offset == big->data_offset + big->size + 24);
		CHECK(pread(f->fd, d, 24, (off_t)(big->data_offset + big->size)) == 24);
		CHECK(memcmp(d, "PK\x07\x08", 4) == 0);
		CHECK(d[8] == 0x10 && d[12] == 1 && d[16] == 0x10 && d[20] == 1);
		/* data/1: 6 bytes, header beyond 4 GiB: still a 24-byte descriptor */
		CHECK(small->local_offset > 0xFFFFFFFFu);
		CHECK(small->size == 6);
		CHECK(pread(f->fd, d, 24, (off_t)(small->data_offset + small->size)) == 24);
		CHECK(memcmp(d, "PK\x07\x08", 4) == 0 && d[8] == 6 && d[16] == 6);
		/* data.pkl: classic 16-byte descriptor */
		CHECK(pread(f->fd, d, 4, (off_t)(pkl->data_offset + pkl->size + 16)) == 4);
		CHECK(memcmp(d, "PK\x03\x04", 4) == 0);
	}
	weld_zip_close(z);
	weld_file_close(f);
	check_read_back(path, zip64, NZIP64);
	free(t);
	if (!getenv("WELD_TEST_KEEP_TMP"))
		unlink(path); /* 6 GiB apparent size */
}

static void test_errors(void)
{
	weld_error err = {0};
	weld_tw_layout *l = NULL;
	uint64_t size = 0;
	uint64_t shape[2] = {2, 3};
	weld_tw_tensor t[2] = {{"a", WELD_DTYPE_F32, 2, shape, 24, 0}, {"b", WELD_DTYPE_BF16, 2, shape, 12, 0}};

	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "dir/x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: archive name must be non-empty and contain no '/'");
	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: archive name must be non-empty and contain no '/'");
	t[1].name = "a";
	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: duplicate tensor name 'a'");
	t[1].name = "b";
	t[1].nbytes = 13;
	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: tensor 'b': nbytes 13 does not match its shape and dtype BF16");
	t[1].nbytes = 12;
	t[1].dtype = WELD_DTYPE_INVALID;
	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: tensor 'b' has an invalid dtype");
	t[1].dtype = WELD_DTYPE_BF16;
	t[1].name = "bad\xff";
	CHECK_ERR(weld_tw_layout_new(&l, t, 2, "x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: tensor name 'bad\xff' is not valid UTF-8 (or too long)");
	t[1].name = "b";
	uint64_t huge[3] = {0, (uint64_t)1 << 40, (uint64_t)1 << 40};
	weld_tw_tensor h = {"h", WELD_DTYPE_F32, 3, huge, 0, 0};
	CHECK_ERR(weld_tw_layout_new(&l, &h, 1, "x", &size, &err), WELD_ERR_INVALID_ARG, &err,
		  "torch writer: tensor 'h': strides overflow");
	CHECK(l == NULL);

	/* Write failures name the path. */
	CHECK_OK(weld_tw_layout_new(&l, t, 2, "x", &size, &err), &err);
	if (!l)
		return;
	CHECK(t[0].offset % 64 == 0 && t[1].offset % 64 == 0 && t[1].offset > t[0].offset);
	CHECK_ERR(weld_tw_write_head(l, -1, "out/x.bin", &err), WELD_ERR_IO, &err,
		  "out/x.bin: write failed at offset 0: Bad file descriptor");
	uint32_t crcs[2] = {0, 0};
	CHECK_ERR(weld_tw_finish(l, -1, "out/x.bin", NULL, NULL, &err), WELD_ERR_INVALID_ARG, &err,
		  "out/x.bin: no tensor CRCs given");
	CHECK(weld_tw_finish(l, -1, "out/x.bin", crcs, NULL, &err) == WELD_ERR_IO);
	CHECK(strncmp(err.message, "out/x.bin: write failed at offset ", 34) == 0);
	weld_tw_layout_free(l);
	weld_tw_layout_free(NULL);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/weld_test_torch_writer.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_mixed();
	test_many();
	test_zip64();
	test_errors();
	if (getenv("WELD_TEST_KEEP_TMP")) {
		fprintf(stderr, "kept %s\n", tmpdir);
	} else {
		unlink(tmp_path("mixed.pt"));
		unlink(tmp_path("many.pt"));
		rmdir(tmpdir);
	}
	TEST_DONE();
}
