/*
 * weld_verify on good outputs (HF and DeepSpeed ZeRO sources, safetensors
 * and pytorch-bin, with and without --against) and on each kind of broken
 * output: a flipped byte, a missing tensor, a wrong config dtype, a stale
 * shard or index, a consolidated.safetensors, a 'module.' prefix, a missing
 * config.json, missing metadata, an inconsistent tie, a wrong size, JSON
 * with data after its value, a weld.json that leaves a tensor out, shapes
 * torch cannot hold. Each asserts the
 * exact FAIL line it must produce and that nothing else FAILs.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "test_verify.h"

#include <cjson/cJSON.h>
#include <zlib.h>

/* weld.json's entry for tensor NAME: offset, bytes and crc32. */
static void manifest_tensor(const char *dir, const char *name, uint64_t *offset, uint64_t *bytes, uint32_t *crc)
{
	size_t n;
	char *text = (char *)read_file(path_in(dir, "weld.json"), &n);
	cJSON *m = text ? cJSON_ParseWithLength(text, n) : NULL;
	const cJSON *t;
	*offset = *bytes = 0;
	*crc = 0;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(m, "tensors"))
	{
		if (strcmp(cJSON_GetObjectItem(t, "name")->valuestring, name) != 0)
			continue;
		*offset = (uint64_t)cJSON_GetObjectItem(t, "offset")->valuedouble;
		*bytes = (uint64_t)cJSON_GetObjectItem(t, "bytes")->valuedouble;
		*crc = (uint32_t)cJSON_GetObjectItem(t, "crc32")->valuedouble;
	}
	CHECK(*bytes != 0);
	cJSON_Delete(m);
	free(text);
}

static uint32_t file_crc(const char *path)
{
	size_t n;
	uint8_t *data = read_file(path, &n);
	uint32_t crc = data ? (uint32_t)crc32(0, data, (uInt)n) : 0;
	free(data);
	return crc;
}

/* ------------------------------------------------------------------------- */

static char good[4096]; /* a good bf16 output of qwen2_tied/st_sharded */

static void check_good_hf(void)
{
	snprintf(good, sizeof(good), "%s", tpath("good"));
	convert(fixture("qwen2_tied/st_sharded"), good, WELD_OUT_BF16, 0);
	weld_verify_report *r = verify(good, NULL);
	EXPECT_FAILS(r, NO_FAILS);
	CHECK(r && r->nchecks == 14 && r->passed == 13 && r->warnings == 1);
	EXPECT(r, "format", WELD_CHECK_PASS,
	       "safetensors: model.safetensors, 26 tensors, 125312 parameters, 250624 tensor bytes");
	EXPECT(r, "weights", WELD_CHECK_PASS, "1 weight file valid: model.safetensors");
	EXPECT(r, "manifest", WELD_CHECK_PASS, "weld.json describes the 26 tensors of model.safetensors");
	EXPECT(r, "size", WELD_CHECK_PASS, "model.safetensors: 253304 bytes, as weld.json says");
	EXPECT(r, "crc32", WELD_CHECK_PASS, "model.safetensors and its 26 tensors match weld.json (computed on cpu)");
	EXPECT(r, "leftovers", WELD_CHECK_PASS, "no staging folder or temporary file of an interrupted conversion");
	EXPECT(r, "config", WELD_CHECK_PASS, "config.json: Qwen2ForCausalLM (model_type qwen2)");
	EXPECT(r, "config_dtype", WELD_CHECK_PASS, "config.json says bfloat16, the tensors are BF16");
	EXPECT(r, "config_shapes", WELD_CHECK_PASS,
	       "qwen2: hidden 64, vocab 509, 2 layers, 4 heads (2 KV) of dim 16, intermediate 176 agree with the "
	       "tensors; the head is the tied embedding");
	CHECK(r && strcmp(r->checks[8].name, "config_shapes") == 0 && strcmp(r->checks[7].name, "config_dtype") == 0);
	EXPECT(r, "one_format", WELD_CHECK_PASS, "model.safetensors only");
	EXPECT(r, "prefix", WELD_CHECK_PASS, "no 'module.' or '_orig_mod.' prefixes");
	EXPECT(r, "tied", WELD_CHECK_PASS,
	       "no lm_head.weight stored, and tie_word_embeddings is true: the head is the input embedding");
	EXPECT(r, "tokenizer", WELD_CHECK_WARN,
	       "no tokenizer files (tokenizer.json, tokenizer.model, ...): serve with a tokenizer from elsewhere");
	EXPECT(r, "metadata", WELD_CHECK_PASS, "__metadata__ \"format\": \"pt\"");
	CHECK(r && strcmp(r->format, "safetensors") == 0 && strcmp(r->device, "cpu") == 0 && r->ndiffs == 0);
	weld_verify_report_free(r);

	/* Against the source it came from, and the same weights in other forms. */
	static const char *const sources[] = {"qwen2_tied/st_sharded", "qwen2_tied/st_single_fp32",
					      "qwen2_tied/bin_sharded"};
	for (size_t i = 0; i < 3; i++) {
		r = verify(good, fixture(sources[i]));
		EXPECT_FAILS(r, NO_FAILS);
		EXPECT(r, "against_names", WELD_CHECK_PASS,
		       "the 26 output tensors match the source's names and shapes");
		EXPECT(r, "against_values", WELD_CHECK_PASS, NULL);
		EXPECT(r, "finite", WELD_CHECK_PASS, "no NaN or Inf in the 26 tensors compared");
		CHECK(r && r->ndiffs == 26);
		for (size_t k = 0; r && k < r->ndiffs; k++) {
			const weld_tensor_diff *d = &r->diffs[k];
			CHECK(d->exact && d->dtype == WELD_DTYPE_BF16 && d->source_dtype == WELD_DTYPE_F32);
			/* bf16 keeps 8 significant bits: relative error below 2^-8, and not zero for random weights. */
			CHECK(d->rel_l2 < 1.0 / 256 && d->max_abs_diff < 0.05 && d->nan_count == 0 &&
			      d->inf_count == 0);
		}
		weld_verify_report_free(r);
	}
	CHECK(find(NULL, "x") == NULL);

	/* pytorch-bin output of a .bin source: the same checks hold. */
	const char *bin = tpath("good_bin");
	convert(fixture("qwen2_tied/bin_single"), bin, WELD_OUT_BF16, 1);
	r = verify(bin, fixture("qwen2_tied/bin_single"));
	EXPECT_FAILS(r, NO_FAILS);
	EXPECT(r, "format", WELD_CHECK_PASS,
	       "pytorch-bin: pytorch_model.bin, 26 tensors, 125312 parameters, 250624 tensor bytes");
	EXPECT(r, "crc32", WELD_CHECK_PASS, "pytorch_model.bin and its 26 tensors match weld.json (computed on cpu)");
	EXPECT(r, "metadata", WELD_CHECK_PASS, "pytorch-bin: no safetensors metadata needed");
	EXPECT(r, "against_values", WELD_CHECK_PASS, NULL);
	weld_verify_report_free(r);

	/* A flipped byte in a tensor of the .bin: the CRC check names it. */
	uint64_t off, len;
	uint32_t want;
	manifest_tensor(bin, "model.norm.weight", &off, &len, &want);
	size_t n;
	uint8_t *data = read_file(path_in(bin, "pytorch_model.bin"), &n);
	uint32_t file_want = data ? (uint32_t)crc32(0, data, (uInt)n) : 0;
	if (data) {
		data[off + 3] ^= 0x10;
		CHECK(write_file(path_in(bin, "pytorch_model.bin"), data, n) == 0);
	}
	char msg[1024];
	snprintf(msg, sizeof(msg),
		 "tensor 'model.norm.weight': CRC-32 0x%08x, weld.json says 0x%08x; pytorch_model.bin: CRC-32 0x%08x, "
		 "weld.json says 0x%08x (computed on cpu)",
		 data ? (uint32_t)crc32(0, data + off, (uInt)len) : 0, want,
		 file_crc(path_in(bin, "pytorch_model.bin")), file_want);
	free(data);
	r = verify(bin, NULL);
	EXPECT_FAILS(r, "crc32");
	EXPECT(r, "crc32", WELD_CHECK_FAIL, msg);
	weld_verify_report_free(r);
}

/* A ZeRO-2 output: the toy config has no architectures (a true FAIL); the 16-bit weights cross-check. */
static void check_good_zero(void)
{
	const char *out = tpath("zero");
	const char *src = fixture("zero/s2_w2_bf16");
	convert(src, out, WELD_OUT_BF16, 0);
	weld_verify_report *r = verify(out, src);
	EXPECT_FAILS(r, "config");
	EXPECT(r, "config", WELD_CHECK_FAIL,
	       "config.json has no \"architectures\" list (vLLM needs one to pick the model class)");
	CHECK(find(r, "config_shapes") == NULL); /* model_type weld_toy: nothing known to compare */
	EXPECT(r, "against_names", WELD_CHECK_PASS, "the 11 output tensors match the source's names and shapes");
	EXPECT(r, "against_values", WELD_CHECK_PASS, NULL);
	EXPECT(r, "zero_16bit", WELD_CHECK_PASS,
	       "11 tensors equal the 16-bit weights DeepSpeed stored in mp_rank_00_model_states.pt");
	CHECK(r && r->ndiffs == 11);
	for (size_t k = 0; r && k < r->ndiffs; k++)
		CHECK(r->diffs[k].exact && r->diffs[k].source_dtype == WELD_DTYPE_F32);
	weld_verify_report_free(r);

	/* Named architectures, nothing fails. */
	edit_file(out, "config.json", "{", "{\"architectures\": [\"WeldToy\"], ");
	r = verify(out, src);
	EXPECT_FAILS(r, NO_FAILS);
	EXPECT(r, "config", WELD_CHECK_PASS, "config.json: WeldToy (model_type weld_toy)");
	weld_verify_report_free(r);

	/* A tied fixture: the alias is folded, and the config does not say whether to tie. */
	out = tpath("zero_tied");
	src = fixture("zero/s2_w2_bf16_tied");
	convert(src, out, WELD_OUT_BF16, 0);
	r = verify(out, src);
	EXPECT(r, "tied", WELD_CHECK_WARN,
	       "'head.weight' is stored only as 'embed.weight'; config.json does not set tie_word_embeddings, so "
	       "the model class's default must tie them");
	EXPECT(r, "against_names", WELD_CHECK_PASS,
	       "the 10 output tensors match the source's names and shapes (tied aliases folded)");
	EXPECT(r, "zero_16bit", WELD_CHECK_PASS, NULL);
	weld_verify_report_free(r);
}

static void check_flipped_byte(void)
{
	const char *dir = tpath("flipped");
	copy_dir(good, dir);
	uint64_t off, len;
	uint32_t want;
	const char *name = "model.layers.1.mlp.up_proj.weight";
	manifest_tensor(dir, name, &off, &len, &want);
	size_t n;
	uint8_t *data = read_file(path_in(dir, "model.safetensors"), &n);
	uint32_t file_want = data ? (uint32_t)crc32(0, data, (uInt)n) : 0;
	CHECK(data && off + len <= n);
	if (!data)
		return;
	data[off + 101] ^= 0x40; /* the high byte of a bf16: a large change */
	CHECK(write_file(path_in(dir, "model.safetensors"), data, n) == 0);
	char msg[1024];
	snprintf(msg, sizeof(msg),
		 "tensor '%s': CRC-32 0x%08x, weld.json says 0x%08x; model.safetensors: CRC-32 0x%08x, weld.json says "
		 "0x%08x (computed on cpu)",
		 name, (uint32_t)crc32(0, data + off, (uInt)len), want, (uint32_t)crc32(0, data, (uInt)n), file_want);
	free(data);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "crc32");
	EXPECT(r, "crc32", WELD_CHECK_FAIL, msg);
	weld_verify_report_free(r);

	/* Against the source the same tensor is named, with its error. */
	r = verify(dir, fixture("qwen2_tied/st_sharded"));
	EXPECT_FAILS(r, "crc32", "against_values");
	const weld_check *c = find(r, "against_values");
	const char *want_start = "1 of 26 tensors differ from the source cast to their dtype: "
				 "'model.layers.1.mlp.up_proj.weight' (max abs diff ";
	CHECK(c && strncmp(c->detail, want_start, strlen(want_start)) == 0);
	size_t inexact = 0;
	for (size_t k = 0; r && k < r->ndiffs; k++)
		if (!r->diffs[k].exact) {
			inexact++;
			CHECK(strcmp(r->diffs[k].name, name) == 0 && r->diffs[k].max_abs_diff > 0.01);
		}
	CHECK(inexact == 1);
	weld_verify_report_free(r);
}

/* The output of a source that lost a tensor is intact, but not the checkpoint it should be. */
static void check_missing_tensor(void)
{
	const char *src = tpath("src_missing"), *out = tpath("missing");
	write_by_hand(fixture("qwen2_tied/st_single_fp32/model.safetensors"), src, "", "model.norm.weight", true);
	convert(src, out, WELD_OUT_BF16, 0);
	weld_verify_report *r = verify(out, NULL);
	EXPECT_FAILS(r, NO_FAILS);
	weld_verify_report_free(r);
	r = verify(out, fixture("qwen2_tied/st_single_fp32"));
	EXPECT_FAILS(r, "against_names");
	EXPECT(r, "against_names", WELD_CHECK_FAIL, "1 source tensor missing from the output: 'model.norm.weight'");
	EXPECT(r, "against_values", WELD_CHECK_PASS, NULL);
	weld_verify_report_free(r);
}

static void check_config_dtype(void)
{
	const char *dir = tpath("dtype");
	copy_dir(good, dir);
	edit_file(dir, "config.json", "\"dtype\": \"bfloat16\"", "\"dtype\": \"float32\"");
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "config_dtype");
	EXPECT(r, "config_dtype", WELD_CHECK_FAIL, "config.json says \"dtype\": \"float32\", the tensors are BF16");
	weld_verify_report_free(r);
}

static void check_stale(void)
{
	const char *dir = tpath("stale");
	copy_dir(good, dir);
	copy_file(fixture("qwen2_tied/st_sharded/model-00001-of-00009.safetensors"),
		  path_in(dir, "model-00001-of-00009.safetensors"));
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "one_format");
	EXPECT(r, "one_format", WELD_CHECK_FAIL,
	       "stale weight file beside model.safetensors: 'model-00001-of-00009.safetensors'");
	EXPECT(r, "weights", WELD_CHECK_PASS,
	       "2 weight files valid: model-00001-of-00009.safetensors, model.safetensors");
	weld_verify_report_free(r);

	copy_file(fixture("qwen2_tied/st_sharded/model.safetensors.index.json"),
		  path_in(dir, "model.safetensors.index.json"));
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "one_format");
	EXPECT(r, "one_format", WELD_CHECK_FAIL,
	       "stale weight files beside model.safetensors: 'model-00001-of-00009.safetensors', "
	       "'model.safetensors.index.json'");
	weld_verify_report_free(r);

	dir = tpath("consolidated");
	copy_dir(good, dir);
	copy_file(path_in(dir, "model.safetensors"), path_in(dir, "consolidated.safetensors"));
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "one_format");
	EXPECT(r, "one_format", WELD_CHECK_FAIL,
	       "'consolidated.safetensors' present: vLLM then loads consolidated*.safetensors (Mistral format)");
	weld_verify_report_free(r);
}

/*
 * What a killed conversion leaves: a temporary file inside (older welds wrote
 * there), a staging folder beside. While the lock's holder runs, the staging
 * folder is work in progress: a warning, not a failure.
 */
static void check_leftovers(void)
{
	char dir[4096], stage[4096], lock[4096], msg[8192];
	snprintf(dir, sizeof(dir), "%s", tpath("left"));
	copy_dir(good, dir);
	copy_file(path_in(dir, "config.json"), path_in(dir, ".config.json.weld-tmp-4242"));
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "leftovers");
	EXPECT(r, "leftovers", WELD_CHECK_FAIL,
	       ".config.json.weld-tmp-4242: left by an interrupted conversion; the next conversion into left removes it");
	weld_verify_report_free(r);
	CHECK(weld_output_intact(dir, NULL) == WELD_ERR_MISMATCH);
	CHECK(unlink(path_in(dir, ".config.json.weld-tmp-4242")) == 0);
	CHECK(weld_output_intact(dir, NULL) == WELD_OK);

	snprintf(stage, sizeof(stage), "%s", tpath(".left.weld-stage-4242"));
	CHECK(mkdir(stage, 0755) == 0);
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "leftovers");
	snprintf(msg, sizeof(msg), "%s: left by an interrupted conversion; the next conversion into left removes it", stage);
	EXPECT(r, "leftovers", WELD_CHECK_FAIL, msg);
	weld_verify_report_free(r);
	CHECK(weld_output_intact(dir, NULL) == WELD_ERR_MISMATCH);

	snprintf(lock, sizeof(lock), "%s", tpath(".left.weld-lock"));
	snprintf(msg, sizeof(msg), "weld-lock host=another-node pid=1 start=1 since=0\n");
	CHECK(write_file(lock, msg, strlen(msg)) == 0);
	r = verify(dir, NULL);
	EXPECT_FAILS(r, NO_FAILS);
	EXPECT(r, "leftovers", WELD_CHECK_WARN,
	       "a conversion into this folder is running; it replaces the folder when it completes");
	weld_verify_report_free(r);
	CHECK(weld_output_intact(dir, NULL) == WELD_OK);
	CHECK(unlink(lock) == 0 && rmdir(stage) == 0);
}

/*
 * weld_output_intact_from: an output is SOURCE's when weld.json's
 * source_path is SOURCE's realpath, however SOURCE is spelled. An intact
 * output of another source is not, nor one whose weld.json names none (an
 * older weld's); either is said before the weights are read.
 */
static void check_source(void)
{
	char src[4096], msg[8192], other[4096];
	weld_error err = {0};
	CHECK(realpath(fixture("qwen2_tied/st_sharded"), src) != NULL);
	CHECK_OK(weld_output_intact_from(good, fixture("qwen2_tied/st_sharded"), &err), &err);
	snprintf(other, sizeof(other), "%s/../st_sharded/", src);
	CHECK_OK(weld_output_intact_from(good, other, &err), &err);
	snprintf(msg, sizeof(msg), "%s: made from %s", good, src);
	CHECK_ERR(weld_output_intact_from(good, fixture("qwen2_tied/bin_sharded"), &err), WELD_ERR_MISMATCH, &err, msg);
	CHECK(weld_output_intact_from(good, NULL, NULL) == WELD_ERR_INVALID_ARG);
	snprintf(msg, sizeof(msg), "%s: No such file or directory", tpath("nowhere"));
	CHECK_ERR(weld_output_intact_from(good, tpath("nowhere"), &err), WELD_ERR_IO, &err, msg);

	/* Weights cut short: the source is compared first. */
	snprintf(other, sizeof(other), "%s", tpath("other_source"));
	copy_dir(good, other);
	CHECK(truncate(path_in(other, "model.safetensors"), 100) == 0);
	snprintf(msg, sizeof(msg), "%s: made from %s", other, src);
	CHECK_ERR(weld_output_intact_from(other, fixture("qwen2_tied/bin_sharded"), &err), WELD_ERR_MISMATCH, &err, msg);
	CHECK(weld_output_intact_from(other, src, NULL) == WELD_ERR_MISMATCH); /* the size */

	const char *dir = tpath("older_weld");
	copy_dir(good, dir);
	edit_file(dir, "weld.json", "\"source_path\":", "\"was_source_path\":");
	CHECK(weld_output_intact(dir, NULL) == WELD_OK);
	snprintf(msg, sizeof(msg), "%s: made from an unknown source (its weld.json, by an older weld, has no source_path)", dir);
	CHECK_ERR(weld_output_intact_from(dir, src, &err), WELD_ERR_MISMATCH, &err, msg);
}

/* Written by hand (weld convert would strip it): every name keeps 'module.'. */
static void check_prefix(void)
{
	const char *dir = tpath("prefixed");
	write_by_hand(fixture("qwen2_tied/st_single_fp32/model.safetensors"), dir, "module.", NULL, true);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "prefix");
	EXPECT(r, "prefix", WELD_CHECK_FAIL,
	       "26 of 26 tensor names start with 'module.' (e.g. 'module.model.embed_tokens.weight'); loaders "
	       "expect the bare names");
	EXPECT(r, "manifest", WELD_CHECK_WARN,
	       "no weld.json: not written by weld convert; sizes and CRC-32s not checked");
	EXPECT(r, "config_dtype", WELD_CHECK_PASS, "config.json says float32, the tensors are F32");
	EXPECT(r, "config_shapes", WELD_CHECK_PASS, NULL); /* checked through the prefix, which is prefix's finding */
	CHECK(find(r, "crc32") == NULL && find(r, "size") == NULL);
	weld_verify_report_free(r);

	/* Without weld.json the source's prefix is matched as the planner would strip it. */
	r = verify(tpath("good"), dir);
	EXPECT(r, "against_names", WELD_CHECK_PASS,
	       "the 26 output tensors match the source's names and shapes (prefix stripped: module.)");
	weld_verify_report_free(r);

	/* And a file without the "format": "pt" metadata, which transformers refuses. */
	dir = tpath("no_meta");
	write_by_hand(fixture("qwen2_tied/st_single_fp32/model.safetensors"), dir, "", NULL, false);
	r = verify(dir, fixture("qwen2_tied/st_single_fp32"));
	EXPECT_FAILS(r, "metadata");
	EXPECT(r, "metadata", WELD_CHECK_FAIL,
	       "model.safetensors has no __metadata__ \"format\" (transformers refuses to load it)");
	EXPECT(r, "against_values", WELD_CHECK_PASS,
	       "all 26 tensors equal the source cast to their dtype exactly "
	       "(largest rel L2 error 0)");
	weld_verify_report_free(r);
}

static void check_missing_config(void)
{
	const char *dir = tpath("no_config");
	copy_dir(good, dir);
	CHECK(unlink(path_in(dir, "config.json")) == 0);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "config");
	EXPECT(r, "config", WELD_CHECK_FAIL, "config.json: missing");
	CHECK(find(r, "config_dtype") == NULL);
	weld_verify_report_free(r);

	copy_dir(good, dir);
	edit_file(dir, "config.json", "{", "{,");
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "config");
	EXPECT(r, "config", WELD_CHECK_FAIL, "config.json: not valid JSON");
	weld_verify_report_free(r);

	/*
	 * transformers reads config.json with Python's json.loads, which refuses
	 * data after the value ("Extra data ... (char N)", N the old length when
	 * only white space ended the file) and a byte order mark; white space is fine.
	 */
	char msg[256];
	copy_dir(good, dir);
	size_t n = wrap_file(dir, "config.json", "", "}");
	snprintf(msg, sizeof(msg), "config.json: not valid JSON (trailing data after the value at byte %zu)", n);
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "config");
	EXPECT(r, "config", WELD_CHECK_FAIL, msg);
	CHECK(find(r, "config_dtype") == NULL && find(r, "config_shapes") == NULL);
	weld_verify_report_free(r);

	copy_dir(good, dir);
	wrap_file(dir, "config.json", "\xef\xbb\xbf", "");
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "config");
	EXPECT(r, "config", WELD_CHECK_FAIL, "config.json: not valid JSON (a UTF-8 byte order mark at byte 0)");
	weld_verify_report_free(r);

	copy_dir(good, dir);
	wrap_file(dir, "config.json", " \r\n\t", " \r\n\t");
	r = verify(dir, NULL);
	EXPECT_FAILS(r, NO_FAILS);
	weld_verify_report_free(r);
}

/* hf_edge/wrapped ties lm_head.weight to the embedding; a config that says otherwise must FAIL. */
static void check_tied(void)
{
	const char *dir = tpath("tied");
	convert(fixture("hf_edge/wrapped"), dir, WELD_OUT_F16, 0);
	weld_verify_report *r = verify(dir, fixture("hf_edge/wrapped"));
	EXPECT_FAILS(r, NO_FAILS);
	EXPECT(r, "tied", WELD_CHECK_PASS,
	       "'lm_head.weight' is stored as 'model.embed_tokens.weight', and tie_word_embeddings is true");
	EXPECT(r, "against_names", WELD_CHECK_PASS,
	       "the 5 output tensors match the source's names and shapes (tied aliases folded; prefix stripped: "
	       "module.)");
	/* The fixture's embedding overflows float16: exact, but Inf, and said so. */
	EXPECT(r, "finite", WELD_CHECK_WARN, "1 tensor holds NaN or Inf: 'model.embed_tokens.weight' (0 NaN, 2 Inf)");
	weld_verify_report_free(r);

	edit_file(dir, "config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "tied");
	EXPECT(r, "tied", WELD_CHECK_FAIL,
	       "'lm_head.weight' is stored only as 'model.embed_tokens.weight' (weld.json \"tied\"), but config.json "
	       "has tie_word_embeddings false: the model would not load it");
	weld_verify_report_free(r);
}

static void check_size(void)
{
	const char *dir = tpath("size");
	copy_dir(good, dir);
	FILE *f = fopen(path_in(dir, "model.safetensors"), "ab");
	fputc(0, f);
	fclose(f);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT(r, "size", WELD_CHECK_FAIL, "model.safetensors: 253305 bytes, weld.json says 253304");
	/* One byte past the data breaks the reference rules too. */
	EXPECT(r, "weights", WELD_CHECK_FAIL, NULL);
	EXPECT(r, "format", WELD_CHECK_FAIL, NULL);
	weld_verify_report_free(r);
}

/* A weld.json that does not parse is a FAIL of its own; what it would vouch for is not checked. */
static void check_bad_manifest(void)
{
	const char *dir = tpath("bad_manifest");
	copy_dir(good, dir);
	edit_file(dir, "weld.json", "{", "{,");
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "manifest");
	EXPECT(r, "manifest", WELD_CHECK_FAIL, "weld.json: not valid JSON");
	CHECK(find(r, "crc32") == NULL && find(r, "size") == NULL);
	weld_verify_report_free(r);

	/* A second closing brace, as a botched hand edit leaves: Python's json.load refuses it too. */
	char msg[256];
	copy_dir(good, dir);
	size_t n = wrap_file(dir, "weld.json", "", "}");
	snprintf(msg, sizeof(msg), "weld.json: not valid JSON (trailing data after the value at byte %zu)", n);
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "manifest");
	EXPECT(r, "manifest", WELD_CHECK_FAIL, msg);
	CHECK(find(r, "crc32") == NULL && find(r, "size") == NULL);
	weld_verify_report_free(r);

	/* A dimension no double holds as a whole number (1e300 would be undefined as a uint64_t). */
	copy_dir(good, dir);
	edit_file(dir, "weld.json", "[509, 64]", "[509, 1e300]");
	r = verify(dir, NULL);
	EXPECT(r, "manifest", WELD_CHECK_FAIL, "weld.json: tensors[0] lacks a name, dtype, shape, offset, bytes or crc32");
	weld_verify_report_free(r);
}

/* A weld.json that leaves out one tensor the weights hold: the first such name is the finding. */
static void check_unlisted(void)
{
	const char *dir = tpath("unlisted");
	copy_dir(good, dir);
	size_t n;
	char *text = (char *)read_file(path_in(dir, "weld.json"), &n);
	cJSON *m = text ? cJSON_ParseWithLength(text, n) : NULL, *tensors = cJSON_GetObjectItem(m, "tensors");
	int at = -1, k = 0;
	const cJSON *t;
	cJSON_ArrayForEach(t, tensors)
	{
		if (strcmp(cJSON_GetObjectItem(t, "name")->valuestring, "model.norm.weight") == 0)
			at = k;
		k++;
	}
	CHECK(at >= 0);
	cJSON_DeleteItemFromArray(tensors, at);
	cJSON_DeleteItemFromObject(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "files"), 0), "tensor_count");
	char *edited = cJSON_Print(m);
	CHECK(edited && write_file(path_in(dir, "weld.json"), edited, strlen(edited)) == 0);
	free(edited);
	cJSON_Delete(m);
	free(text);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "manifest");
	EXPECT(r, "manifest", WELD_CHECK_FAIL, "model.safetensors holds 'model.norm.weight', which weld.json does not list");
	weld_verify_report_free(r);
}

/*
 * DIR/model.safetensors with ENTRY ('"name":{...}') first in its header, and
 * no weld.json (which the edit makes wrong).
 */
static void add_header_entry(const char *dir, const char *entry)
{
	size_t n;
	uint8_t *file = read_file(path_in(dir, "model.safetensors"), &n);
	CHECK(file && n >= 8);
	if (!file)
		return;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | file[i];
	size_t used = (size_t)hlen; /* the JSON without its padding */
	while (used > 0 && file[8 + used - 1] == ' ')
		used--;
	size_t cap = used + strlen(entry) + 16;
	char *header = calloc(1, cap);
	int len = snprintf(header, cap, "{%s,%.*s", entry, (int)(used - 1), (const char *)file + 9);
	while (len % 8)
		header[len++] = ' ';
	FILE *f = fopen(path_in(dir, "model.safetensors"), "wb");
	for (int i = 0; i < 8; i++)
		fputc((int)(((uint64_t)len >> (8 * i)) & 0xFF), f);
	fwrite(header, 1, (size_t)len, f);
	fwrite(file + 8 + hlen, 1, n - 8 - (size_t)hlen, f);
	fclose(f);
	unlink(path_in(dir, "weld.json"));
	free(header);
	free(file);
}

/*
 * Shapes no loader takes. The safetensors reference reader allows any 64-bit
 * dimension, but torch sizes are int64 ("Overflow when unpacking long long"):
 * a dimension of 2^63 beside a 0 has no bytes to be caught by. Element counts
 * and byte sizes past 64 bits the reference reader refuses (ValidationOverflow).
 */
static void check_huge_shapes(void)
{
	static const struct {
		const char *entry, *fails; /* what follows "PATH: tensor 'huge': " */
	} cases[] = {
		{"\"huge\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808],\"data_offsets\":[0,0]}",
		 "shape[1] is 9223372036854775808, above 2^63 - 1: torch cannot load it"},
		{"\"huge\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615,0,1],\"data_offsets\":[0,0]}",
		 "shape[0] is 18446744073709551615, above 2^63 - 1: torch cannot load it"},
		{"\"huge\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0],\"data_offsets\":[0,0]}", NULL},
		{"\"huge\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}",
		 "shape [4294967296,4294967296] has more elements than fit in 64 bits"},
		{"\"huge\":{\"dtype\":\"F32\",\"shape\":[4294967296,2147483648],\"data_offsets\":[0,0]}",
		 "F32 [4294967296,2147483648] is more bytes than fit in 64 bits"},
	};
	const char *dir = tpath("huge");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		copy_dir(good, dir);
		add_header_entry(dir, cases[i].entry);
		weld_verify_report *r = verify(dir, NULL);
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s: tensor 'huge': %s", path_in(dir, "model.safetensors"),
			 cases[i].fails ? cases[i].fails : "");
		/*
		 * Past 64 bits, or a dimension past 2^63-1 (which no loader indexes),
		 * the checkpoint does not open either: "format" fails too.
		 */
		if (!cases[i].fails)
			EXPECT_FAILS(r, NO_FAILS);
		else if (strstr(cases[i].fails, "64 bits") || strstr(cases[i].fails, "above 2^63"))
			EXPECT_FAILS(r, "format", "weights");
		else
			EXPECT_FAILS(r, "weights");
		if (cases[i].fails)
			EXPECT(r, "weights", WELD_CHECK_FAIL, msg);
		else
			EXPECT(r, "format", WELD_CHECK_PASS,
			       "safetensors: model.safetensors, 27 tensors, 125312 parameters, 250624 tensor bytes");
		weld_verify_report_free(r);
	}
}

static void check_errors(void)
{
	weld_verify_report *r = NULL;
	weld_error err = {0};
	char msg[4200];
	snprintf(msg, sizeof(msg), "%s: no such folder", tpath("nowhere"));
	CHECK_ERR(weld_verify(tpath("nowhere"), NULL, WELD_DEVICE_CPU, &r, &err), WELD_ERR_IO, &err, msg);
	CHECK(r == NULL);
	snprintf(msg, sizeof(msg), "%s: no such file or folder", tpath("nowhere"));
	CHECK_ERR(weld_verify(good, tpath("nowhere"), WELD_DEVICE_CPU, &r, &err), WELD_ERR_IO, &err, msg);
	CHECK(r == NULL);
	weld_verify_report_free(NULL);

	/* An empty folder can be examined: it just is not servable. */
	CHECK(mkdir(tpath("empty"), 0755) == 0);
	r = verify(tpath("empty"), NULL);
	EXPECT(r, "weights", WELD_CHECK_FAIL, "no .safetensors or .bin file in the folder");
	EXPECT(r, "config", WELD_CHECK_FAIL, "config.json: missing");
	CHECK(r && strcmp(r->format, "") == 0);
	weld_verify_report_free(r);
}

int main(void)
{
	tmp_init("verify");
	check_good_hf();
	check_good_zero();
	check_flipped_byte();
	check_missing_tensor();
	check_config_dtype();
	check_stale();
	check_leftovers();
	check_source();
	check_prefix();
	check_missing_config();
	check_tied();
	check_size();
	check_bad_manifest();
	check_unlisted();
	check_huge_shapes();
	check_errors();
	tmp_remove();
	TEST_DONE();
}
