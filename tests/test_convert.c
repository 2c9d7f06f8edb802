/*
 * weld_convert end to end, against files written by torch, transformers and
 * safetensors: every qwen2_tied input variant must produce exactly the
 * model.safetensors and config.json that transformers wrote for the bf16
 * model; the hf_edge fixture (prefix, tied alias, strided views, fp16
 * overflow) must equal what torch + safetensors produce. Also: identical
 * bytes for any chunk size and thread count, the manifest's CRCs equal
 * zlib's, and failures or cancels leave no weights file behind.
 */
#include "util/util.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static weld_status convert(const char *input, const char *out, weld_out_dtype dtype, int threads, size_t chunk,
			   weld_convert_result *r, weld_error *err)
{
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = dtype;
	o.threads = threads;
	o.chunk_bytes = chunk;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	return weld_convert(input, out, &o, r, err);
}

static bool exists(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0;
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	uint8_t *data = read_file(from, &n);
	CHECK(data && write_file(to, data, n) == 0);
	free(data);
}

/* Files in DIR whose names contain NEEDLE. */
static int count_files(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		n += strstr(e->d_name, needle) != NULL;
	if (d)
		closedir(d);
	return n;
}

/* weld.json's file CRC and size must be zlib's CRC-32 and the size of the weights file. */
static void check_manifest(const char *dir, const char *weights)
{
	char path[4096];
	size_t n, wn;
	snprintf(path, sizeof(path), "%s/weld.json", dir);
	char *text = (char *)read_file(path, &n);
	snprintf(path, sizeof(path), "%s/%s", dir, weights);
	uint8_t *data = read_file(path, &wn);
	CHECK(text && data);
	if (!text || !data) {
		free(text);
		free(data);
		return;
	}
	cJSON *m = cJSON_ParseWithLength(text, n);
	const cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "files"), 0);
	CHECK((uint64_t)cJSON_GetObjectItem(f, "size")->valuedouble == wn);
	CHECK((uint32_t)cJSON_GetObjectItem(f, "crc32")->valuedouble == (uint32_t)crc32(0, data, (uInt)wn));
	const cJSON *t;
	size_t checked = 0;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tensors"))
	{
		uint64_t off = (uint64_t)cJSON_GetObjectItem(t, "offset")->valuedouble;
		uint64_t len = (uint64_t)cJSON_GetObjectItem(t, "bytes")->valuedouble;
		CHECK(off + len <= wn);
		if (off + len <= wn)
			CHECK((uint32_t)cJSON_GetObjectItem(t, "crc32")->valuedouble ==
			      (uint32_t)crc32(0, data + off, (uInt)len));
		checked++;
	}
	CHECK(checked == (size_t)cJSON_GetObjectItem(f, "tensor_count")->valueint);
	cJSON_Delete(m);
	free(text);
	free(data);
}

static void check_qwen(void)
{
	static const char *const inputs[] = {"qwen2_tied/st_single_fp32", "qwen2_tied/st_sharded", "qwen2_tied/bin_single",
					     "qwen2_tied/bin_sharded", "qwen2_tied/bin_single/pytorch_model.bin"};
	char want_model[4096], want_config[4096];
	snprintf(want_model, sizeof(want_model), "%s", fixture("qwen2_tied/st_single_bf16_reference/model.safetensors"));
	snprintf(want_config, sizeof(want_config), "%s", fixture("qwen2_tied/st_single_bf16_reference/config.json"));
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		weld_error err = {0};
		weld_convert_result r;
		const char *out = scratch("qwen");
		fprintf(stderr, "qwen: %s\n", inputs[i]);
		CHECK_OK(convert(fixture(inputs[i]), out, WELD_OUT_BF16, 2, 0, &r, &err), &err);
		char got[4096];
		snprintf(got, sizeof(got), "%s/model.safetensors", out);
		CHECK(same_file(got, want_model));
		snprintf(got, sizeof(got), "%s/config.json", out);
		CHECK(same_file(got, want_config));
		CHECK(r.tensors == 26 && r.tied == 0);
		CHECK(count_files(out, "index.json") == 0 && count_files(out, ".bin") == 0);
		CHECK(count_files(out, "weld-tmp") == 0);
		check_manifest(out, "model.safetensors");
	}
	/* The same plan gives the same bytes for any chunk size and thread count. */
	static const struct {
		int threads;
		size_t chunk;
	} shapes[] = {{1, 4096}, {3, 4096}, {2, 65536}, {1, 1u << 30}};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		weld_error err = {0};
		weld_convert_result r;
		CHECK_OK(convert(fixture("qwen2_tied/bin_sharded"), scratch("shapes"), WELD_OUT_BF16, shapes[i].threads,
				 shapes[i].chunk, &r, &err),
			 &err);
		char got[4096];
		snprintf(got, sizeof(got), "%s/model.safetensors", scratch("shapes"));
		CHECK(same_file(got, want_model));
	}
	/* float32 and keep from fp32 sources copy the bytes: the fp32 file transformers wrote. */
	weld_out_dtype same[] = {WELD_OUT_F32, WELD_OUT_KEEP};
	for (size_t i = 0; i < 2; i++) {
		weld_error err = {0};
		weld_convert_result r;
		CHECK_OK(convert(fixture("qwen2_tied/bin_sharded"), scratch("f32"), same[i], 2, 0, &r, &err), &err);
		char got[4096];
		snprintf(got, sizeof(got), "%s/model.safetensors", scratch("f32"));
		CHECK(same_file(got, fixture("qwen2_tied/st_single_fp32/model.safetensors")));
		snprintf(got, sizeof(got), "%s/config.json", scratch("f32"));
		CHECK(same_file(got, fixture("qwen2_tied/st_single_fp32/config.json")));
	}
}

static void check_edge(void)
{
	static const struct {
		weld_out_dtype dtype;
		const char *expected;
		uint64_t overflows;
	} cases[] = {{WELD_OUT_BF16, "hf_edge/expected_bf16.safetensors", 0},
		     {WELD_OUT_F16, "hf_edge/expected_fp16.safetensors", 1}};
	for (size_t i = 0; i < 2; i++) {
		weld_error err = {0};
		weld_convert_result r;
		CHECK_OK(convert(fixture("hf_edge/wrapped"), scratch("edge"), cases[i].dtype, 2, 4096, &r, &err), &err);
		char got[4096];
		snprintf(got, sizeof(got), "%s/model.safetensors", scratch("edge"));
		CHECK(same_file(got, fixture(cases[i].expected)));
		CHECK(strcmp(r.stripped_prefix, "module.") == 0);
		CHECK(r.tied == 1 && r.tensors == 5);
		CHECK(r.fp16_overflows == cases[i].overflows);
		snprintf(got, sizeof(got), "%s/tokenizer_config.json", scratch("edge"));
		CHECK(same_file(got, fixture("hf_edge/wrapped/tokenizer_config.json")));
		check_manifest(scratch("edge"), "model.safetensors");
	}
}

/* --pytorch-bin: a torch zip our reader (and torch.load) opens, with the bf16 reference's tensors. */
static void check_pytorch_bin(void)
{
	weld_error err = {0};
	weld_convert_result r;
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.pytorch_bin = 1;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	CHECK_OK(weld_convert(fixture("qwen2_tied/st_sharded"), scratch("bin"), &o, &r, &err), &err);
	char got[4096];
	snprintf(got, sizeof(got), "%s/pytorch_model.bin", scratch("bin"));
	weld_ckpt *a = NULL, *b = NULL;
	CHECK_OK(weld_ckpt_open(&a, got, &err), &err);
	CHECK_OK(weld_ckpt_open(&b, fixture("qwen2_tied/st_single_bf16_reference"), &err), &err);
	CHECK(a && b && weld_ckpt_tensor_count(a) == weld_ckpt_tensor_count(b));
	for (size_t i = 0; a && b && i < weld_ckpt_tensor_count(a); i++) {
		weld_tensor_info ta, tb = {0};
		weld_ckpt_tensor(a, i, &ta);
		size_t j = 0;
		for (; j < weld_ckpt_tensor_count(b); j++) {
			weld_ckpt_tensor(b, j, &tb);
			if (strcmp(ta.name, tb.name) == 0)
				break;
		}
		CHECK(j < weld_ckpt_tensor_count(b) && ta.dtype == tb.dtype && ta.nbytes == tb.nbytes);
		uint8_t *x = malloc(ta.nbytes + 1), *y = malloc(tb.nbytes + 1);
		CHECK_OK(weld_ckpt_read_tensor(a, i, x, ta.nbytes, &err), &err);
		CHECK_OK(weld_ckpt_read_tensor(b, j, y, tb.nbytes, &err), &err);
		CHECK(memcmp(x, y, ta.nbytes) == 0);
		free(x);
		free(y);
	}
	weld_ckpt_free(a);
	weld_ckpt_free(b);
	check_manifest(scratch("bin"), "pytorch_model.bin");
}

static int cancel_now(const weld_progress *p, void *payload)
{
	(void)p;
	(*(int *)payload)++;
	return 1;
}

static void check_failures(void)
{
	char msg[8192], path[4096];
	weld_error err = {0};
	weld_convert_result r;

	/* A flipped byte in a tensor record: CRC error, no weights file, no temp file. */
	mkdir(scratch("corrupt-in"), 0755);
	size_t n;
	uint8_t *data = read_file(fixture("qwen2_tied/bin_single/pytorch_model.bin"), &n);
	CHECK(data != NULL);
	/* The middle of the file is tensor data: the embedding is most of it. */
	data[n / 2] ^= 0x40;
	snprintf(path, sizeof(path), "%s/pytorch_model.bin", scratch("corrupt-in"));
	CHECK(write_file(path, data, n) == 0);
	free(data);
	weld_status s = convert(scratch("corrupt-in"), scratch("corrupt-out"), WELD_OUT_BF16, 2, 4096, &r, &err);
	CHECK(s == WELD_ERR_CHECKSUM);
	snprintf(msg, sizeof(msg), "%s: CRC-32 mismatch in record", path);
	CHECK(strncmp(err.message, msg, strlen(msg)) == 0);
	CHECK(!exists(scratch("corrupt-out")) && count_files(scratch(""), ".corrupt-out.") == 0);

	/* A cancel from the progress callback: no weights file, no temp file. */
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	int calls = 0;
	o.device = WELD_DEVICE_CPU;
	o.progress = cancel_now;
	o.payload = &calls;
	s = weld_convert(fixture("qwen2_tied/st_sharded"), scratch("cancel"), &o, &r, &err);
	CHECK(s == WELD_ERR_CANCELLED && calls >= 1);
	CHECK(!exists(scratch("cancel")) && count_files(scratch(""), ".cancel.") == 0);

	/* An existing output needs --force; with it, stale shards go too. */
	o = (weld_convert_options)WELD_CONVERT_OPTIONS_INIT;
	o.device = WELD_DEVICE_CPU;
	CHECK_OK(weld_convert(fixture("qwen2_tied/st_single_fp32"), scratch("exists"), &o, &r, &err), &err);
	s = weld_convert(fixture("qwen2_tied/st_single_fp32"), scratch("exists"), &o, &r, &err);
	snprintf(msg, sizeof(msg), "%s: already holds model.safetensors; use --force to replace it", scratch("exists"));
	CHECK_ERR(s, WELD_ERR_INVALID_ARG, &err, msg);
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", scratch("exists"));
	CHECK(write_file(path, "stale", 5) == 0);
	o.force = 1;
	CHECK_OK(weld_convert(fixture("qwen2_tied/st_single_fp32"), scratch("exists"), &o, &r, &err), &err);
	CHECK(count_files(scratch("exists"), "model-00001") == 0);

	/* --force over another model's output replaces the folder whole: no generation_config.json stays. */
	CHECK(count_files(scratch("exists"), "generation_config.json") == 1);
	CHECK_OK(weld_convert(fixture("hf_edge/wrapped"), scratch("exists"), &o, &r, &err), &err);
	CHECK_OK(weld_convert(fixture("hf_edge/wrapped"), scratch("fresh"), &o, &r, &err), &err);
	CHECK(count_files(scratch("exists"), "") == count_files(scratch("fresh"), "") &&
	      count_files(scratch("exists"), "generation_config.json") == 0);
	CHECK(count_files(scratch(""), ".exists.") == 0);

	/* 'replace' replaces the output as --force does, but takes over no other host's lock. */
	o.force = 0;
	o.replace = 1;
	CHECK_OK(weld_convert(fixture("qwen2_tied/st_single_fp32"), scratch("exists"), &o, &r, &err), &err);
	CHECK(count_files(scratch("exists"), "generation_config.json") == 1);
	snprintf(path, sizeof(path), "%s/.exists.weld-lock", scratch(""));
	CHECK(write_file(path, "weld-lock host=far-away pid=7 start=1 since=0\n", 46) == 0);
	CHECK(weld_convert(fixture("hf_edge/wrapped"), scratch("exists"), &o, &r, &err) == WELD_ERR_INVALID_ARG);
	CHECK(strstr(err.message, "locked by process 7 on host far-away") != NULL);
	o.force = 1;
	CHECK_OK(weld_convert(fixture("hf_edge/wrapped"), scratch("exists"), &o, &r, &err), &err);
	CHECK(strstr(r.notice, "took over the lock of a conversion that no longer runs (process 7 on host far-away") != NULL);
	CHECK(!exists(path));

	/* An input inside the output folder would go with it. */
	snprintf(path, sizeof(path), "%s/in", scratch("holder"));
	CHECK(mkdir(scratch("holder"), 0755) == 0 && mkdir(path, 0755) == 0);
	copy_file(fixture("hf_edge/wrapped/pytorch_model.bin"), scratch("holder/in/pytorch_model.bin"));
	s = weld_convert(path, scratch("holder"), &o, &r, &err);
	snprintf(msg, sizeof(msg), "%s: the output folder holds the input (%s); choose another --output", scratch("holder"),
		 path);
	CHECK_ERR(s, WELD_ERR_INVALID_ARG, &err, msg);
	CHECK(exists(scratch("holder/in/pytorch_model.bin")));

	/* A cause at the end of a message longer than the buffer is kept: the middle of the path gives way. */
	char deep[4200];
	snprintf(deep, sizeof(deep), "%s", scratch("d"));
	while (strlen(deep) < 3960)
		strcat(deep, "/0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz");
	strcat(deep, "/");
	while (strlen(deep) < 4070) /* the staging folder fits in PATH_MAX; the weights' temporary name does not */
		strcat(deep, "o");
	s = weld_convert(fixture("hf_edge/wrapped"), deep, &o, &r, &err);
	CHECK(s == WELD_ERR_IO && strlen(err.message) == sizeof(err.message) - 1);
	CHECK(strncmp(err.message, scratch("d"), strlen(scratch("d"))) == 0 && strstr(err.message, "...") != NULL);
	CHECK(weld__has_suffix(err.message, ": File name too long"));

	/* Converting into the input's own folder is refused before anything is touched. */
	s = weld_convert(fixture("qwen2_tied/st_sharded"), fixture("qwen2_tied/st_sharded"), &o, &r, &err);
	snprintf(msg, sizeof(msg), "%s: the output folder is the input's folder; choose another --output",
		 fixture("qwen2_tied/st_sharded"));
	CHECK_ERR(s, WELD_ERR_INVALID_ARG, &err, msg);
}

/*
 * An older caller's options struct ends before fields added since: those
 * take their defaults. A size that no weld_convert_options ever had is refused.
 */
static void check_options_size(void)
{
	weld_error err = {0};
	weld_convert_result r;
	weld_convert_options o;
	weld_convert_options_init(&o);
	CHECK(o.struct_size == sizeof(o) && o.dtype == WELD_OUT_BF16 && o.device == WELD_DEVICE_AUTO);
	o.device = WELD_DEVICE_CPU;
	o.dry_run = 1;
	/* Compiled before dry_run existed: it is not read, so this run writes its output. */
	o.struct_size = offsetof(weld_convert_options, dry_run);
	CHECK_OK(weld_convert(fixture("hf_edge/wrapped"), scratch("old-caller"), &o, &r, &err), &err);
	CHECK(count_files(scratch("old-caller"), "model.safetensors") == 1);
	o.struct_size = 0;
	CHECK(weld_convert(fixture("hf_edge/wrapped"), scratch("bad-size"), &o, &r, &err) == WELD_ERR_INVALID_ARG);
	CHECK(strstr(err.message, "options.struct_size is 0") != NULL);
	o.struct_size = sizeof(o) + 8;
	CHECK(weld_convert(fixture("hf_edge/wrapped"), scratch("bad-size"), &o, &r, &err) == WELD_ERR_INVALID_ARG);
}

int main(void)
{
	CHECK(scratch_init("convert") == 0);
	check_options_size();
	check_qwen();
	check_edge();
	check_pytorch_bin();
	check_failures();
	CHECK(scratch_remove() == 0);
	TEST_DONE();
}
