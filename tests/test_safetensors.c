/*
 * safetensors header reader and builder: the real fixtures parse, the
 * builder reproduces the Python writer's header byte for byte, and every
 * kind of malformed header fails with its exact status and message.
 */
#include "io/safetensors.h"
#include "output/safetensors.h"
#include "test_util.h"

#include <unistd.h>

static char tmpdir[256];
static int case_no;

/* Write BYTES to a fresh file in tmpdir (its path in PATH), run weld_st_read_header on it. */
static weld_status run_file(const void *bytes, size_t len, char path[512], weld_error *err,
			    weld_st_header *h)
{
	snprintf(path, 512, "%s/case%d.safetensors", tmpdir, ++case_no);
	memset(h, 0, sizeof(*h));
	if (write_file(path, bytes, len) != 0) {
		fprintf(stderr, "cannot write %s\n", path);
		test_failures++;
		return WELD_ERR_IO;
	}
	weld_file *f;
	weld_status st = weld_file_open(&f, path, err);
	if (st == WELD_OK) {
		st = weld_st_read_header(h, f, err);
		weld_file_close(f);
	}
	unlink(path);
	return st;
}

/* A file: 8-byte LE N (= JLEN) + JSON + DATA_LEN zero bytes. */
static uint8_t *make_file(const char *json, size_t jlen, size_t data_len, size_t *len)
{
	*len = 8 + jlen + data_len;
	uint8_t *b = calloc(1, *len);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)jlen >> (8 * i));
	memcpy(b + 8, json, jlen);
	return b;
}

static weld_status run_json_len(const char *json, size_t jlen, size_t data_len, char path[512],
				weld_error *err, weld_st_header *h)
{
	size_t len;
	uint8_t *b = make_file(json, jlen, data_len, &len);
	weld_status st = run_file(b, len, path, err, h);
	free(b);
	return st;
}

/* Expect the file BYTES to fail with STATUS and "<path>: MSG". */
#define EXPECT_FILE(bytes, len, status, msg)                                      \
	do {                                                                      \
		char path_[512], want_[1600];                                     \
		weld_error e_ = {0};                                              \
		weld_st_header h_;                                                \
		weld_status got_ = run_file(bytes, len, path_, &e_, &h_);         \
		snprintf(want_, sizeof(want_), "%s: %s", path_, msg);             \
		CHECK_ERR(got_, status, &e_, want_);                              \
		CHECK(h_.ntensors == 0 && h_.tensors == NULL);                    \
		weld_st_header_clear(&h_);                                        \
	} while (0)

/* Expect header JSON (N = its length) followed by DATA_LEN bytes to fail. */
#define EXPECT_JSON_LEN(json, jlen, data_len, status, msg)                        \
	do {                                                                      \
		char path_[512], want_[1600];                                     \
		weld_error e_ = {0};                                              \
		weld_st_header h_;                                                \
		weld_status got_ = run_json_len(json, jlen, data_len, path_, &e_, &h_); \
		snprintf(want_, sizeof(want_), "%s: %s", path_, msg);             \
		CHECK_ERR(got_, status, &e_, want_);                              \
		CHECK(h_.ntensors == 0 && h_.tensors == NULL);                    \
		weld_st_header_clear(&h_);                                        \
	} while (0)
#define EXPECT_JSON(json, data_len, status, msg) EXPECT_JSON_LEN(json, strlen(json), data_len, status, msg)
#define FMT WELD_ERR_FORMAT
#define UNS WELD_ERR_UNSUPPORTED

/* Parse JSON + DATA_LEN bytes of data directly (no file). */
static weld_status parse_mem(const char *json, size_t data_len, weld_st_header *h, weld_error *err)
{
	return weld_st_parse_header(h, json, strlen(json), 8 + strlen(json) + data_len, err);
}

static const weld_st_tensor *find(const weld_st_header *h, const char *name)
{
	for (size_t i = 0; i < h->ntensors; i++)
		if (strcmp(h->tensors[i].name, name) == 0)
			return &h->tensors[i];
	return NULL;
}

/* ------------------------------------------------------------------------- */

static const char *const shards[] = {
	"qwen2_tied/st_sharded/model-00001-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00002-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00003-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00004-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00005-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00006-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00007-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00008-of-00009.safetensors",
	"qwen2_tied/st_sharded/model-00009-of-00009.safetensors",
};
static const size_t shard_counts[] = {1, 7, 1, 1, 3, 7, 1, 1, 4};

static weld_status read_fixture(const char *rel, weld_st_header *h, weld_error *err)
{
	weld_file *f;
	weld_status st = weld_file_open(&f, fixture(rel), err);
	if (st != WELD_OK)
		return st;
	st = weld_st_read_header(h, f, err);
	weld_file_close(f);
	return st;
}

static void test_fixtures(void)
{
	weld_error err = {0};
	weld_st_header h;

	CHECK_OK(read_fixture("qwen2_tied/st_single_fp32/model.safetensors", &h, &err), &err);
	CHECK(h.ntensors == 26);
	CHECK(h.header_len == 2656 && h.data_start == 2664);
	CHECK(h.nmeta == 1 && strcmp(h.meta_keys[0], "format") == 0 &&
	      strcmp(h.meta_vals[0], "pt") == 0);
	const weld_st_tensor *t = find(&h, "model.embed_tokens.weight");
	CHECK(t && t->dtype == WELD_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 509 &&
	      t->shape[1] == 64 && t->begin == 0 && t->end == 130304);
	CHECK(h.tensors[0].name == t->name); /* JSON order kept */
	t = find(&h, "model.layers.1.mlp.down_proj.weight");
	CHECK(t && t->ndim == 2 && t->shape[0] == 64 && t->shape[1] == 176 && t->begin == 315904 &&
	      t->end == 360960);
	t = find(&h, "model.norm.weight");
	CHECK(t && t->ndim == 1 && t->shape[0] == 64 && t->end == 501248);
	CHECK(find(&h, "lm_head.weight") == NULL);
	weld_st_header_clear(&h);
	CHECK(h.tensors == NULL && h.ntensors == 0);

	CHECK_OK(read_fixture("qwen2_tied/st_single_bf16_reference/model.safetensors", &h, &err), &err);
	CHECK(h.ntensors == 26 && h.nmeta == 1 && strcmp(h.meta_vals[0], "pt") == 0);
	t = find(&h, "model.embed_tokens.weight");
	CHECK(t && t->dtype == WELD_DTYPE_BF16 && t->end == 65152);
	t = find(&h, "model.layers.0.self_attn.k_proj.bias");
	CHECK(t && t->dtype == WELD_DTYPE_BF16 && t->ndim == 1 && t->shape[0] == 32 &&
	      t->begin == 132992 && t->end == 133056);
	weld_st_header_clear(&h);

	size_t total = 0;
	for (size_t i = 0; i < sizeof(shards) / sizeof(shards[0]); i++) {
		CHECK_OK(read_fixture(shards[i], &h, &err), &err);
		CHECK(h.ntensors == shard_counts[i]);
		CHECK(h.nmeta == 1 && strcmp(h.meta_keys[0], "format") == 0 &&
		      strcmp(h.meta_vals[0], "pt") == 0);
		total += h.ntensors;
		if (i == 8) {
			t = find(&h, "model.norm.weight");
			CHECK(t && t->dtype == WELD_DTYPE_F32 && t->begin == 45568 && t->end == 45824);
		}
		weld_st_header_clear(&h);
	}
	CHECK(total == 26);
}

/* Rebuild each real file's header from its parsed tensors, shuffled: the bytes must match. */
static void test_writer_oracle(void)
{
	const char *files[2 + sizeof(shards) / sizeof(shards[0])] = {
		"qwen2_tied/st_single_bf16_reference/model.safetensors",
		"qwen2_tied/st_single_fp32/model.safetensors",
	};
	for (size_t i = 0; i < sizeof(shards) / sizeof(shards[0]); i++)
		files[2 + i] = shards[i];
	uint32_t rng = 12345;
	for (size_t fi = 0; fi < sizeof(files) / sizeof(files[0]); fi++) {
		weld_error err = {0};
		weld_st_header h;
		size_t flen = 0;
		uint8_t *whole = read_file(fixture(files[fi]), &flen);
		CHECK(whole != NULL);
		if (!whole)
			continue;
		CHECK_OK(read_fixture(files[fi], &h, &err), &err);
		weld_st_out_tensor *ot = calloc(h.ntensors + 1, sizeof(*ot));
		for (size_t i = 0; i < h.ntensors; i++) {
			ot[i].name = h.tensors[i].name;
			ot[i].dtype = h.tensors[i].dtype;
			ot[i].ndim = h.tensors[i].ndim;
			ot[i].shape = h.tensors[i].shape;
		}
		for (size_t i = h.ntensors; i > 1; i--) { /* Fisher-Yates, fixed seed */
			rng = rng * 1103515245u + 12345u;
			size_t j = (rng >> 8) % i;
			weld_st_out_tensor tmp = ot[i - 1];
			ot[i - 1] = ot[j];
			ot[j] = tmp;
		}
		const char *mk[] = {"format"}, *mv[] = {"pt"};
		uint8_t *hdr = NULL;
		size_t hlen = 0;
		uint64_t dlen = 0;
		CHECK_OK(weld_st_build_header(ot, h.ntensors, mk, mv, 1, &hdr, &hlen, &dlen, &err), &err);
		CHECK(hlen == h.data_start);
		CHECK(hlen <= flen && hdr && memcmp(hdr, whole, hlen) == 0);
		CHECK(dlen + hlen == flen);
		/* Offsets assigned in the same order as the file's. */
		for (size_t i = 0; i < h.ntensors; i++) {
			const weld_st_tensor *t = find(&h, ot[i].name);
			CHECK(t && t->begin == ot[i].offset && t->end - t->begin == ot[i].nbytes);
		}
		if (hdr && hlen <= flen && memcmp(hdr, whole, hlen) != 0)
			fprintf(stderr, "%s: built header differs:\n%.*s\n", files[fi], (int)(hlen - 8),
				(const char *)hdr + 8);
		free(hdr);
		free(ot);
		weld_st_header_clear(&h);
		free(whole);
	}
}

/* ------------------------------------------------------------------------- */

static void test_builder(void)
{
	weld_error err = {0};
	uint8_t *hdr = NULL;
	size_t hlen = 0;
	uint64_t dlen = 0;

	/* No tensors, no metadata: "{}" padded to 8. */
	CHECK_OK(weld_st_build_header(NULL, 0, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), &err);
	CHECK(hlen == 16 && dlen == 0 && hdr && memcmp(hdr, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
	free(hdr);

	/* Order: dtype descending, ties by bytes; serde_json escaping; scalar shape. */
	uint64_t s3[] = {3}, s2[] = {2, 1}, s0[] = {0};
	weld_st_out_tensor t[] = {
		{.name = "b", .dtype = WELD_DTYPE_U8, .ndim = 1, .shape = s3},
		{.name = "a\"\\\n\x01\x7f/\xc3\xa9", .dtype = WELD_DTYPE_F16, .ndim = 2, .shape = s2},
		{.name = "Z", .dtype = WELD_DTYPE_U8, .ndim = 0, .shape = NULL},
		{.name = "\xc3\xa9", .dtype = WELD_DTYPE_U8, .ndim = 1, .shape = s0},
		{.name = "big", .dtype = WELD_DTYPE_I64, .ndim = 0, .shape = NULL},
	};
	const char *mk[] = {"format", "k\t"}, *mv[] = {"pt", "v\x1f"};
	CHECK_OK(weld_st_build_header(t, 5, mk, mv, 2, &hdr, &hlen, &dlen, &err), &err);
	const char *want = "{\"__metadata__\":{\"format\":\"pt\",\"k\\t\":\"v\\u001f\"},"
			   "\"big\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
			   "\"a\\\"\\\\\\n\\u0001\x7f/\xc3\xa9\":{\"dtype\":\"F16\",\"shape\":[2,1],"
			   "\"data_offsets\":[8,12]},"
			   "\"Z\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[12,13]},"
			   "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[13,16]},"
			   "\"\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[16,16]}}";
	size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
	CHECK(hlen == 8 + padded && dlen == 16);
	if (hdr && hlen == 8 + padded) {
		CHECK(hdr[0] == (uint8_t)padded && hdr[1] == (uint8_t)(padded >> 8) && hdr[2] == 0);
		CHECK(memcmp(hdr + 8, want, wl) == 0);
		for (size_t i = wl; i < padded; i++)
			CHECK(hdr[8 + i] == ' ');
		if (memcmp(hdr + 8, want, wl) != 0)
			fprintf(stderr, "got  %.*s\nwant %s\n", (int)padded, (const char *)hdr + 8, want);
		/* And it reads back. */
		weld_st_header h;
		CHECK_OK(weld_st_parse_header(&h, (const char *)hdr + 8, padded, hlen + 16, &err), &err);
		CHECK(h.ntensors == 5 && h.nmeta == 2 && strcmp(h.meta_keys[1], "k\t") == 0 &&
		      strcmp(h.meta_vals[1], "v\x1f") == 0);
		CHECK(strcmp(h.tensors[1].name, "a\"\\\n\x01\x7f/\xc3\xa9") == 0);
		weld_st_header_clear(&h);
	}
	CHECK(strcmp(t[0].name, "big") == 0 && t[0].offset == 0 && t[0].nbytes == 8);
	CHECK(strcmp(t[4].name, "\xc3\xa9") == 0 && t[4].offset == 16 && t[4].nbytes == 0);
	free(hdr);

	/* Duplicates and bad input. */
	weld_st_out_tensor d[] = {
		{.name = "x", .dtype = WELD_DTYPE_F32, .ndim = 1, .shape = s3},
		{.name = "y", .dtype = WELD_DTYPE_U8, .ndim = 1, .shape = s3},
		{.name = "x", .dtype = WELD_DTYPE_BF16, .ndim = 1, .shape = s3},
	};
	hdr = NULL;
	CHECK_ERR(weld_st_build_header(d, 3, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "duplicate tensor name 'x'");
	CHECK(hdr == NULL);
	const char *dk[] = {"format", "format"}, *dv[] = {"pt", "pt"};
	CHECK_ERR(weld_st_build_header(d, 2, dk, dv, 2, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "duplicate metadata key 'format'");
	weld_st_out_tensor m = {.name = "__metadata__", .dtype = WELD_DTYPE_U8, .ndim = 1, .shape = s3};
	CHECK_ERR(weld_st_build_header(&m, 1, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "tensor name '__metadata__' is reserved by safetensors");
	weld_st_out_tensor u = {.name = "bad\xff", .dtype = WELD_DTYPE_U8, .ndim = 1, .shape = s3};
	CHECK_ERR(weld_st_build_header(&u, 1, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "tensor name 'bad\xff' is not valid UTF-8");
	uint64_t huge[] = {UINT64_C(1) << 62};
	weld_st_out_tensor o = {.name = "h", .dtype = WELD_DTYPE_F32, .ndim = 1, .shape = huge};
	CHECK_ERR(weld_st_build_header(&o, 1, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "tensor 'h': F32 [4611686018427387904] is more bytes than fit in 64 bits");
	uint64_t half[] = {UINT64_C(1) << 61};
	weld_st_out_tensor two[] = {
		{.name = "p", .dtype = WELD_DTYPE_F32, .ndim = 1, .shape = half},
		{.name = "q", .dtype = WELD_DTYPE_F32, .ndim = 1, .shape = half},
	};
	CHECK_ERR(weld_st_build_header(two, 2, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "tensors total more bytes than fit in 64 bits");
	weld_st_out_tensor inv = {.name = "i", .dtype = WELD_DTYPE_INVALID, .ndim = 0};
	CHECK_ERR(weld_st_build_header(&inv, 1, NULL, NULL, 0, &hdr, &hlen, &dlen, &err), WELD_ERR_INVALID_ARG,
		  &err, "tensor 'i': invalid dtype 0");
}

/* ------------------------------------------------------------------------- */

static void test_valid_edge_cases(void)
{
	weld_error err = {0};
	weld_st_header h;

	/* Empty object, metadata only, null metadata, leading/trailing JSON whitespace. */
	CHECK_OK(parse_mem("{}", 0, &h, &err), &err);
	CHECK(h.ntensors == 0 && h.nmeta == 0 && h.data_start == 10);
	weld_st_header_clear(&h);
	CHECK_OK(parse_mem(" \t\r\n{\"__metadata__\":null} \n\t\r", 0, &h, &err), &err);
	CHECK(h.nmeta == 0);
	weld_st_header_clear(&h);
	CHECK_OK(parse_mem("{\"__metadata__\":{}}", 0, &h, &err), &err);
	weld_st_header_clear(&h);

	/* Escapes in names (incl. a surrogate pair), extra fields ignored, any JSON order. */
	const char *j = "{ \"b\" : { \"data_offsets\" : [ 4 , 4 ] , \"x\":{\"y\":[1,-2.5e+3,true,false,null,\"s\"]},"
			"\"shape\":[0,7], \"dtype\":\"F64\"},"
			"\"\\u00e9\\ud83d\\ude00\\n\\/\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
			"\"__metadata__\":{\"format\":\"pt\",\"\\u0041\":\"\\\"q\\\"\"}}   ";
	CHECK_OK(parse_mem(j, 4, &h, &err), &err);
	CHECK(h.ntensors == 2 && h.nmeta == 2);
	if (h.ntensors == 2) {
		CHECK(strcmp(h.tensors[0].name, "b") == 0 && h.tensors[0].dtype == WELD_DTYPE_F64 &&
		      h.tensors[0].ndim == 2 && h.tensors[0].shape[1] == 7 && h.tensors[0].begin == 4);
		CHECK(strcmp(h.tensors[1].name, "\xc3\xa9\xf0\x9f\x98\x80\n/") == 0 &&
		      h.tensors[1].ndim == 0 && h.tensors[1].dtype == WELD_DTYPE_I32);
	}
	if (h.nmeta == 2)
		CHECK(strcmp(h.meta_keys[1], "A") == 0 && strcmp(h.meta_vals[1], "\"q\"") == 0);
	weld_st_header_clear(&h);

	/* Exact 64-bit integers: 2^64 - 1 survives (a double would round it). */
	CHECK_ERR(parse_mem("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
			    "\"data_offsets\":[0,18446744073709551614]}}", 0, &h, &err),
		  FMT, &err,
		  "tensor 'a': data_offsets [0,18446744073709551614] hold 18446744073709551614 bytes but "
		  "U8 [18446744073709551615] needs 18446744073709551615");
	/* 16 dimensions are fine. */
	CHECK_OK(parse_mem("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2],"
			   "\"data_offsets\":[0,2]}}", 2, &h, &err), &err);
	CHECK(h.ntensors == 1 && h.tensors[0].ndim == 16);
	weld_st_header_clear(&h);
	/* Every dtype name is known. */
	for (int d = 1; d < WELD_DTYPE_COUNT; d++) {
		char buf[200];
		/* 8 elements are BITS bytes, sub-byte dtypes (F4, F6_*) included. */
		size_t sz = weld_dtype_bits((weld_dtype)d);
		snprintf(buf, sizeof(buf), "{\"t\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,%zu]}}",
			 weld_dtype_name((weld_dtype)d), sz);
		CHECK_OK(parse_mem(buf, sz, &h, &err), &err);
		CHECK(h.ntensors == 1 && h.tensors[0].dtype == (weld_dtype)d);
		weld_st_header_clear(&h);
	}
	/* Zero-size tensors may share an offset; JSON order does not matter. */
	CHECK_OK(parse_mem("{\"z2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
			   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
			   "\"z1\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
			   "\"z0\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 4, &h, &err),
		 &err);
	weld_st_header_clear(&h);
	/* A header whose N is not a multiple of 8 (old writers) is fine. */
	CHECK_OK(parse_mem("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &h, &err), &err);
	weld_st_header_clear(&h);
}

static void test_malformed(void)
{
	/* File-level sizes. */
	EXPECT_FILE("\x01\x02\x03\x04\x05", 5, FMT, "too small to be a safetensors file (5 bytes)");
	EXPECT_FILE("", 0, FMT, "too small to be a safetensors file (0 bytes)");
	{
		uint8_t b[16] = {0};
		uint64_t n = UINT64_C(123456789012);
		for (int i = 0; i < 8; i++)
			b[i] = (uint8_t)(n >> (8 * i));
		EXPECT_FILE(b, sizeof(b), FMT, "header length 123456789012 exceeds the 100000000-byte limit");
		n = 100000001;
		for (int i = 0; i < 8; i++)
			b[i] = (uint8_t)(n >> (8 * i));
		EXPECT_FILE(b, sizeof(b), FMT, "header length 100000001 exceeds the 100000000-byte limit");
		memset(b, 0xff, 8);
		EXPECT_FILE(b, sizeof(b), FMT,
			    "header length 18446744073709551615 exceeds the 100000000-byte limit");
	}
	{
		uint8_t b[1000] = {0};
		b[0] = 5000 & 0xff;
		b[1] = 5000 >> 8;
		EXPECT_FILE(b, sizeof(b), FMT, "header length 5000 runs past the end of the file (1000 bytes)");
		b[0] = 993 & 0xff;
		b[1] = 993 >> 8;
		EXPECT_FILE(b, sizeof(b), FMT, "header length 993 runs past the end of the file (1000 bytes)");
	}
	EXPECT_FILE("\0\0\0\0\0\0\0\0", 8, FMT, "header is not valid JSON at byte 0: unexpected end of header");

	/* Text-level problems. */
	EXPECT_JSON("{\"a\xff\":1}", 0, FMT, "header is not valid UTF-8 (byte 3)");
	EXPECT_JSON("{}   \xc0\xaf", 0, FMT, "header is not valid UTF-8 (byte 5)");         /* overlong */
	EXPECT_JSON("{\"\xed\xa0\x80\":{}}", 0, FMT, "header is not valid UTF-8 (byte 2)"); /* surrogate */
	EXPECT_JSON("{}      \xe2\x82", 0, FMT, "header is not valid UTF-8 (byte 8)");      /* cut short */
	EXPECT_JSON("hello world", 0, FMT, "header is not valid JSON at byte 0: expected '{'");
	EXPECT_JSON("[1,2]", 0, FMT, "header is not a JSON object");
	EXPECT_JSON_LEN("\0{}", 3, 0, FMT, "header is not valid JSON at byte 0: expected '{'");
	EXPECT_JSON("\xef\xbb\xbf{}", 0, FMT, "header is not valid JSON at byte 0: expected '{'"); /* BOM */
	EXPECT_JSON("\"str\"", 0, FMT, "header is not a JSON object");
	EXPECT_JSON("        ", 0, FMT, "header is not valid JSON at byte 8: unexpected end of header");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}", 4, FMT,
		    "header is not valid JSON at byte 52: unexpected end of header");
	EXPECT_JSON("{\"a\" {}}", 0, FMT, "header is not valid JSON at byte 5: expected ':'");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},}", 4, FMT,
		    "header is not valid JSON at byte 53: expected a string");
	EXPECT_JSON("{} x", 0, FMT, "header has data after the JSON object (byte 3)");
	EXPECT_JSON("{}{}", 0, FMT, "header has data after the JSON object (byte 2)");
	EXPECT_JSON_LEN("{}\0\0\0\0\0\0", 8, 0, FMT, "header has data after the JSON object (byte 2)");
	EXPECT_JSON("{\"a\tb\":{}}", 0, FMT, "header is not valid JSON at byte 3: control character in a string");
	EXPECT_JSON("{\"a\\qb\":{}}", 0, FMT, "header is not valid JSON at byte 3: invalid escape in a string");
	EXPECT_JSON("{\"a\\u12G4\":{}}", 0, FMT, "header is not valid JSON at byte 3: invalid \\u escape");
	EXPECT_JSON("{\"a\\ud800x\":{}}", 0, FMT, "header is not valid JSON at byte 3: lone surrogate in a \\u escape");
	EXPECT_JSON("{\"a\\udc00\":{}}", 0, FMT, "header is not valid JSON at byte 3: lone surrogate in a \\u escape");
	EXPECT_JSON("{\"a", 0, FMT, "header is not valid JSON at byte 1: unterminated string");
	EXPECT_JSON("{\"a\\u0000b\":{}}", 0, UNS, "tensor name at byte 1 contains a NUL character");

	/* Names and entries. */
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, FMT,
		    "duplicate tensor name 'a'");
	EXPECT_JSON("{\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, FMT,
		    "duplicate tensor name 'a'");
	EXPECT_JSON("{\"__metadata__\":{},\"__metadata__\":{}}", 0, FMT, "duplicate key '__metadata__'");
	EXPECT_JSON("{\"x\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, UNS,
		    "tensor 'x': unknown dtype 'F7'");
	/* Sub-byte dtypes: numel x bits must be whole bytes (the reference's MisalignedSlice). */
	EXPECT_JSON("{\"x\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, FMT,
		    "tensor 'x': F4 [3] is not a whole number of bytes");
	EXPECT_JSON("{\"x\":{\"dtype\":\"F6_E3M2\",\"shape\":[2,4],\"data_offsets\":[0,5]}}", 5, FMT,
		    "tensor 'x': data_offsets [0,5] hold 5 bytes but F6_E3M2 [2,4] needs 6");
	EXPECT_JSON("{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, UNS,
		    "tensor 'x': unknown dtype 'f32'");
	EXPECT_JSON("{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'x': dtype is not a string");
	EXPECT_JSON("{\"x\":[1]}", 0, FMT, "tensor 'x': entry is not a JSON object");
	EXPECT_JSON("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
		    FMT, "tensor 'x': duplicate field 'dtype'");
	EXPECT_JSON("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT, "tensor 'a': missing 'dtype'");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FMT, "tensor 'a': missing 'shape'");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, FMT, "tensor 'a': missing 'data_offsets'");
	EXPECT_JSON("{\"a\":{}}", 0, FMT, "tensor 'a': missing 'dtype'");

	/* Shapes. */
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'a': shape[1] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0, FMT,
		    "tensor 'a': shape[0] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'a': shape[0] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'a': shape[0] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'a': shape[0] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'a': shape[0] is not a non-negative integer");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", 4,
		    FMT, "tensor 'a': shape[0] does not fit in 64 bits");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12, FMT,
		    "tensor 'a': shape is not an array");
	EXPECT_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
		    FMT, "tensor 'a': shape [4294967296,4294967296] has more elements than fit in 64 bits");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
		    FMT, "tensor 'a': F32 [4611686018427387904] is more bytes than fit in 64 bits");
	EXPECT_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
		    "\"data_offsets\":[0,1]}}", 1, UNS, "tensor 'a': shape has more than 16 dimensions");

	/* Offsets. */
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, FMT,
		    "tensor 'a': data_offsets must hold exactly 2 integers");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, FMT,
		    "tensor 'a': data_offsets must hold exactly 2 integers");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[]}}", 4, FMT,
		    "tensor 'a': data_offsets must hold exactly 2 integers");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, FMT,
		    "tensor 'a': data_offsets [8,4] end before they begin");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,10]}}", 10, FMT,
		    "tensor 'a': data_offsets [0,10] hold 10 bytes but F32 [3] needs 12");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, FMT,
		    "tensor 'a' starts at 4 but the first tensor must start at 0");
	EXPECT_JSON("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
		    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, FMT,
		    "tensor 'b' starts at 8 but tensor 'a' ends at 4 (hole)");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, FMT,
		    "tensor 'b' starts at 4 but tensor 'a' ends at 8 (overlap)");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "tensor 'b' starts at 0 but tensor 'a' ends at 4 (overlap)");
	/* 8 + 54 + 4 = 66 bytes of content, 70 in the file. */
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, FMT,
		    "data ends at byte 66 but the file has 70 bytes (trailing bytes)");
	EXPECT_JSON("{}", 1, FMT, "data ends at byte 10 but the file has 11 bytes (trailing bytes)");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 5, FMT,
		    "header describes 8 bytes of data but the file has 5 after the header (truncated)");
	EXPECT_JSON("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
		    "\"data_offsets\":[0,18446744073709551615]}}", 0, FMT,
		    "header describes 18446744073709551615 bytes of data but the file has 0 after the header "
		    "(truncated)");

	/* Metadata. */
	EXPECT_JSON("{\"__metadata__\":{\"format\":1}}", 0, FMT, "__metadata__ value for 'format' is not a string");
	EXPECT_JSON("{\"__metadata__\":{\"format\":\"pt\",\"x\":{\"y\":\"z\"}}}", 0, FMT,
		    "__metadata__ value for 'x' is not a string");
	EXPECT_JSON("{\"__metadata__\":{\"n\":null}}", 0, FMT, "__metadata__ value for 'n' is not a string");
	EXPECT_JSON("{\"__metadata__\":[]}", 0, FMT, "__metadata__ is not a JSON object");
	EXPECT_JSON("{\"__metadata__\":\"pt\"}", 0, FMT, "__metadata__ is not a JSON object");
	EXPECT_JSON("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, FMT, "__metadata__: duplicate key 'k'");
	EXPECT_JSON("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, UNS,
		    "__metadata__ value for 'k' contains a NUL character");

	/* Ignored fields are still parsed: bad JSON inside them fails, deep nesting fails cleanly. */
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"extra\":[1,],\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "header is not valid JSON at byte 31: unexpected character");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"extra\":tru,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "header is not valid JSON at byte 28: unexpected character");
	EXPECT_JSON("{\"a\":{\"dtype\":\"F32\",\"extra\":1.,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
		    "header is not valid JSON at byte 28: invalid number");
	{
		/* {"a":{"x": + 100000 '[' : the 127th bracket is level 129. */
		size_t n = 100000;
		const char *pre = "{\"a\":{\"x\":";
		char *j = malloc(strlen(pre) + n + 1);
		strcpy(j, pre);
		memset(j + strlen(pre), '[', n);
		j[strlen(pre) + n] = '\0';
		char want[128];
		snprintf(want, sizeof(want), "header is not valid JSON at byte %zu: nested deeper than 128 levels",
			 strlen(pre) + 126);
		EXPECT_JSON(j, 0, FMT, want);
		free(j);
		/* 126 brackets, closed, are fine (top object + entry + 126 = 128 levels). */
		char *k = malloc(strlen(pre) + 2 * 126 + 64);
		strcpy(k, pre);
		size_t o = strlen(pre);
		memset(k + o, '[', 126);
		o += 126;
		memset(k + o, ']', 126);
		o += 126;
		strcpy(k + o, ",\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}");
		weld_error err = {0};
		weld_st_header h;
		CHECK_OK(parse_mem(k, 1, &h, &err), &err);
		weld_st_header_clear(&h);
		free(k);
	}

	/* Messages stay one line: control bytes in names are shown as '?'. */
	EXPECT_JSON("{\"a\\nb\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, UNS,
		    "tensor 'a?b': unknown dtype 'F7'");
}

/* parse_header on its own: lengths checked before any byte is touched. */
static void test_parse_direct(void)
{
	weld_error err = {0};
	weld_st_header h;
	CHECK_ERR(weld_st_parse_header(&h, "{}", 2, 9, &err), FMT, &err,
		  "header length 2 runs past the end of the file (9 bytes)");
	CHECK_ERR(weld_st_parse_header(&h, "", 200000000, 300000000, &err), FMT, &err,
		  "header length 200000000 exceeds the 100000000-byte limit");
	CHECK_ERR(weld_st_parse_header(&h, "{\"a\":{\"dtype\":\"F7\",\"shape\":[],\"data_offsets\":[0,4]}}",
				       52, 64, &err),
		  UNS, &err, "tensor 'a': unknown dtype 'F7'");
	CHECK(h.ntensors == 0 && h.tensors == NULL);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/weld_st_test_XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_fixtures();
	test_writer_oracle();
	test_builder();
	test_valid_edge_cases();
	test_malformed();
	test_parse_direct();
	rmdir(tmpdir);
	TEST_DONE();
}
