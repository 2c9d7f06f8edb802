/*
 * Format detection and HF checkpoints through the public API. Every variant
 * of the qwen2_tied fixture (written by torch and transformers) must read
 * back the very same tensors: names, dtypes, shapes and bytes. Each bad
 * folder layout gets its exact error.
 */
#include "pipeline/plan.h"
#include "util/util.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct snapshot {
	size_t n;
	char **names;
	weld_dtype *dtypes;
	uint64_t *numel;
	uint8_t **bytes;
	uint64_t *nbytes;
} snapshot;

static int take(snapshot *s, const char *path, weld_format want_format)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	if (!c)
		return -1;
	if (weld_ckpt_format(c) != want_format) {
		fprintf(stderr, "%s: format %s, expected %s\n", path, weld_format_name(weld_ckpt_format(c)),
			weld_format_name(want_format));
		test_failures++;
	}
	size_t n = weld_ckpt_tensor_count(c);
	s->n = 0;
	s->names = calloc(n, sizeof(char *));
	s->dtypes = calloc(n, sizeof(weld_dtype));
	s->numel = calloc(n, sizeof(uint64_t));
	s->bytes = calloc(n, sizeof(uint8_t *));
	s->nbytes = calloc(n, sizeof(uint64_t));
	for (size_t i = 0; i < n; i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		if (ti.alias_of)
			continue;
		size_t k = s->n++;
		s->names[k] = strdup(ti.name);
		s->dtypes[k] = ti.dtype;
		s->numel[k] = ti.numel;
		s->nbytes[k] = ti.nbytes;
		s->bytes[k] = malloc(ti.nbytes + 1);
		CHECK_OK(weld_ckpt_read_tensor(c, i, s->bytes[k], ti.nbytes, &err), &err);
	}
	weld_ckpt_free(c);
	return 0;
}

static void drop(snapshot *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->names[i]);
		free(s->bytes[i]);
	}
	free(s->names);
	free(s->dtypes);
	free(s->numel);
	free(s->bytes);
	free(s->nbytes);
}

static void same_tensors(const snapshot *a, const snapshot *b, const char *what)
{
	if (a->n != b->n) {
		fprintf(stderr, "%s: %zu tensors vs %zu\n", what, a->n, b->n);
		test_failures++;
	}
	for (size_t i = 0; i < a->n; i++) {
		size_t j = 0;
		while (j < b->n && strcmp(a->names[i], b->names[j]) != 0)
			j++;
		if (j == b->n) {
			fprintf(stderr, "%s: '%s' missing\n", what, a->names[i]);
			test_failures++;
			continue;
		}
		if (a->dtypes[i] != b->dtypes[j] || a->numel[i] != b->numel[j] || a->nbytes[i] != b->nbytes[j] ||
		    memcmp(a->bytes[i], b->bytes[j], a->nbytes[i]) != 0) {
			fprintf(stderr, "%s: '%s' differs\n", what, a->names[i]);
			test_failures++;
		}
	}
}

static void check_qwen_variants(void)
{
	snapshot ref = {0}, v = {0};
	take(&ref, fixture("qwen2_tied/st_single_fp32"), WELD_FORMAT_SAFETENSORS);
	CHECK(ref.n == 26);
	static const struct {
		const char *path;
		weld_format format;
	} variants[] = {
		{"qwen2_tied/bin_single", WELD_FORMAT_TORCH_ZIP},
		{"qwen2_tied/bin_single/pytorch_model.bin", WELD_FORMAT_TORCH_ZIP},
		{"qwen2_tied/bin_sharded", WELD_FORMAT_TORCH_SHARDED},
		{"qwen2_tied/st_sharded", WELD_FORMAT_SAFETENSORS_SHARDED},
		{"qwen2_tied/st_single_fp32/model.safetensors", WELD_FORMAT_SAFETENSORS},
	};
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		if (take(&v, fixture(variants[i].path), variants[i].format) == 0)
			same_tensors(&ref, &v, variants[i].path);
		drop(&v);
	}
	/* The bf16 reference holds the same names and shapes, in another dtype. */
	take(&v, fixture("qwen2_tied/st_single_bf16_reference"), WELD_FORMAT_SAFETENSORS);
	CHECK(v.n == ref.n);
	for (size_t i = 0; i < v.n; i++)
		CHECK(v.dtypes[i] == WELD_DTYPE_BF16);
	drop(&v);
	drop(&ref);
}

static void copy(const char *from, const char *to)
{
	size_t n;
	uint8_t *d = read_file(from, &n);
	CHECK(d && write_file(to, d, n) == 0);
	free(d);
}

static void expect_error(const char *path, weld_status status, const char *msg)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_ERR(weld_ckpt_open(&c, path, &err), status, &err, msg);
	CHECK(c == NULL);
}

static void check_bad_folders(void)
{
	char msg[8192];
	CHECK(scratch_init("ckpt") == 0);

	/* Both kinds of weights in one folder. */
	mkdir(scratch("both"), 0755);
	copy(fixture("qwen2_tied/bin_single/pytorch_model.bin"), scratch("both/pytorch_model.bin"));
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), scratch("both/model.safetensors"));
	/* auto reads safetensors before .bin, as transformers and vLLM do, and notes it; --type hf says nothing. */
	weld_error both_err = {0};
	weld_ckpt *both = NULL;
	CHECK_OK(weld_ckpt_open(&both, scratch("both"), &both_err), &both_err);
	snprintf(msg, sizeof(msg), "%s: read the safetensors weights, not the pytorch-bin ones beside them", scratch("both"));
	CHECK(both && weld_ckpt_format(both) == WELD_FORMAT_SAFETENSORS && weld_ckpt_choice_note(both) &&
	      strcmp(weld_ckpt_choice_note(both), msg) == 0);
	weld_ckpt_free(both);
	CHECK_OK(weld_ckpt_open_as(&both, scratch("both"), WELD_INPUT_HF, &both_err), &both_err);
	CHECK(both && weld_ckpt_format(both) == WELD_FORMAT_SAFETENSORS && weld_ckpt_choice_note(both) == NULL);
	weld_ckpt_free(both);

	/* Empty folder. */
	mkdir(scratch("empty"), 0755);
	snprintf(msg, sizeof(msg),
		 "%s: no checkpoint found (no model.safetensors, pytorch_model.bin, index file or DeepSpeed tag)",
		 scratch("empty"));
	expect_error(scratch("empty"), WELD_ERR_FORMAT, msg);

	/* Not a checkpoint file. */
	snprintf(msg, sizeof(msg),
		 "%s: not a safetensors or torch checkpoint file (unrecognised first bytes)",
		 fixture("qwen2_tied/st_sharded/config.json"));
	expect_error(fixture("qwen2_tied/st_sharded/config.json"), WELD_ERR_FORMAT, msg);

	snprintf(msg, sizeof(msg), "%s: no such file or folder", scratch("nothing-here"));
	expect_error(scratch("nothing-here"), WELD_ERR_IO, msg);

	/* Links that lead nowhere say which way: a loop, or a missing target. Neither is "no such file". */
	CHECK(symlink("loop-b", scratch("loop-a")) == 0 && symlink("loop-a", scratch("loop-b")) == 0);
	snprintf(msg, sizeof(msg), "%s: %s", scratch("loop-a"), strerror(ELOOP));
	expect_error(scratch("loop-a"), WELD_ERR_IO, msg);
	CHECK(symlink("gone", scratch("dangling")) == 0);
	snprintf(msg, sizeof(msg), "%s: a symbolic link whose target does not exist", scratch("dangling"));
	expect_error(scratch("dangling"), WELD_ERR_IO, msg);
	expect_error("/dev/null", WELD_ERR_IO, "/dev/null: not a regular file or a folder");

	/* An index naming a shard that is not there. */
	mkdir(scratch("missing"), 0755);
	copy(fixture("qwen2_tied/st_sharded/model.safetensors.index.json"),
	     scratch("missing/model.safetensors.index.json"));
	snprintf(msg, sizeof(msg), "%s: names shard 'model-00001-of-00009.safetensors', which is missing",
		 scratch("missing/model.safetensors.index.json"));
	expect_error(scratch("missing"), WELD_ERR_MISMATCH, msg);

	/* An index whose shard path leaves the folder. */
	mkdir(scratch("escape"), 0755);
	const char *esc = "{\"metadata\":{},\"weight_map\":{\"a\":\"../../etc/passwd\"}}";
	CHECK(write_file(scratch("escape/model.safetensors.index.json"), esc, strlen(esc)) == 0);
	snprintf(msg, sizeof(msg),
		 "%s: weight_map names '../../etc/passwd', which is not a file in this folder",
		 scratch("escape/model.safetensors.index.json"));
	expect_error(scratch("escape"), WELD_ERR_FORMAT, msg);

	/* An index that lists a tensor its shard does not hold. */
	mkdir(scratch("liar"), 0755);
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), scratch("liar/model.safetensors"));
	const char *liar = "{\"weight_map\":{\"model.embed_tokens.weight\":\"model.safetensors\","
			   "\"lm_head.weight\":\"model.safetensors\"}}";
	CHECK(write_file(scratch("liar/model.safetensors.index.json"), liar, strlen(liar)) == 0);
	snprintf(msg, sizeof(msg),
		 "%s: lists tensor 'lm_head.weight' in 'model.safetensors', but that shard does not hold it",
		 scratch("liar/model.safetensors.index.json"));
	expect_error(scratch("liar"), WELD_ERR_MISMATCH, msg);

	/* An index that is not JSON. */
	mkdir(scratch("garbage"), 0755);
	CHECK(write_file(scratch("garbage/pytorch_model.bin.index.json"), "{\"weight_map\":", 14) == 0);
	snprintf(msg, sizeof(msg), "%s: not valid JSON", scratch("garbage/pytorch_model.bin.index.json"));
	expect_error(scratch("garbage"), WELD_ERR_FORMAT, msg);
	/* A value with more after it: Python's json.loads stops at "Extra data", and so do we. */
	const char *extra = "{\"weight_map\":{}} \n}";
	CHECK(write_file(scratch("garbage/pytorch_model.bin.index.json"), extra, strlen(extra)) == 0);
	snprintf(msg, sizeof(msg), "%s: not valid JSON (trailing data after the value at byte 19)",
		 scratch("garbage/pytorch_model.bin.index.json"));
	expect_error(scratch("garbage"), WELD_ERR_FORMAT, msg);

	/* A corrupted shard inside a sharded folder: the shard's own error surfaces. */
	mkdir(scratch("cut"), 0755);
	copy(fixture("qwen2_tied/st_sharded/model.safetensors.index.json"),
	     scratch("cut/model.safetensors.index.json"));
	for (int k = 1; k <= 9; k++) {
		char name[64];
		snprintf(name, sizeof(name), "qwen2_tied/st_sharded/model-%05d-of-00009.safetensors", k);
		char to[64];
		snprintf(to, sizeof(to), "cut/model-%05d-of-00009.safetensors", k);
		copy(fixture(name), scratch(to));
	}
	CHECK(truncate(scratch("cut/model-00003-of-00009.safetensors"), 1000) == 0);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK(weld_ckpt_open(&c, scratch("cut"), &err) == WELD_ERR_FORMAT);
	CHECK(strstr(err.message, "model-00003-of-00009.safetensors: ") != NULL);
	weld_ckpt_free(c);

	CHECK(scratch_remove() == 0);
}

static size_t find_name(const weld_ckpt *c, const char *name)
{
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		if (strcmp(ti.name, name) == 0)
			return i;
	}
	return SIZE_MAX;
}

/*
 * One real DeepSpeed checkpoint against what DeepSpeed and zero_to_fp32 said
 * of it (oracle.json, zero_to_fp32.safetensors or module_16bit.safetensors,
 * all written by make_zero_fixtures.py).
 */
static void check_deepspeed_fixture(const char *name)
{
	char rel[512], path[4096];
	size_t n;
	snprintf(rel, sizeof(rel), "zero/%s/oracle.json", name);
	char *text = (char *)read_file(fixture(rel), &n);
	CHECK(text != NULL);
	cJSON *o = text ? cJSON_ParseWithLength(text, n) : NULL;
	free(text);
	if (!o)
		return;
	snprintf(path, sizeof(path), "%s", fixture(rel));
	*strrchr(path, '/') = '\0';

	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	if (!c) {
		cJSON_Delete(o);
		return;
	}
	const weld_deepspeed_info *ds = weld_ckpt_deepspeed(c);
	CHECK(weld_ckpt_format(c) == WELD_FORMAT_DEEPSPEED && ds);
	int stage = cJSON_GetObjectItem(o, "stage")->valueint;
	if (ds) {
		CHECK(ds->zero_stage == stage);
		CHECK(ds->world_size == cJSON_GetObjectItem(o, "world_size")->valueint);
		CHECK(strcmp(ds->tag, cJSON_GetObjectItem(o, "tag")->valuestring) == 0);
		CHECK(ds->ds_version && strcmp(ds->ds_version, cJSON_GetObjectItem(o, "ds_version")->valuestring) == 0);
		CHECK(ds->bf16_optimizer == cJSON_IsTrue(cJSON_GetObjectItem(o, "bf16_optimizer")));
		size_t in_tag = 0;
		const cJSON *f;
		cJSON_ArrayForEach(f, cJSON_GetObjectItem(o, "files"))
			in_tag += strncmp(f->valuestring, "global_step1/", 13) == 0;
		CHECK(ds->nfiles == in_tag);
	}

	/* Names: what zero_to_fp32 returns, or the module's 16-bit weights where it refuses. */
	const cJSON *z = cJSON_GetObjectItem(o, "zero_to_fp32");
	const cJSON *m = cJSON_GetObjectItem(o, "module_16bit");
	const cJSON *ref = cJSON_IsString(cJSON_GetObjectItem(z, "file")) ? z : m;
	const cJSON *keys = cJSON_GetObjectItem(ref, "keys_in_order");
	CHECK((size_t)cJSON_GetArraySize(keys) == weld_ckpt_tensor_count(c));
	const cJSON *k;
	cJSON_ArrayForEach(k, keys)
	{
		if (find_name(c, k->valuestring) == SIZE_MAX) {
			fprintf(stderr, "%s: weld does not list '%s'\n", name, k->valuestring);
			test_failures++;
		}
	}

	/*
	 * Bytes: every tensor equals zero_to_fp32's (names, dtypes, shapes, bytes).
	 * Where zero_to_fp32 refuses the checkpoint, the fp32 masters read from the
	 * live training processes stand in (live_fp32.safetensors).
	 */
	const char *oracle_file = cJSON_IsString(cJSON_GetObjectItem(z, "file"))
					  ? cJSON_GetObjectItem(z, "file")->valuestring
					  : cJSON_GetObjectItem(cJSON_GetObjectItem(o, "live_fp32"), "file")->valuestring;
	snprintf(rel, sizeof(rel), "zero/%s/%s", name, oracle_file);
	weld_ckpt *oc = NULL;
	size_t compared = 0;
	CHECK_OK(weld_ckpt_open(&oc, fixture(rel), &err), &err);
	for (size_t i = 0; oc && i < weld_ckpt_tensor_count(oc); i++) {
		weld_tensor_info want, got;
		weld_ckpt_tensor(oc, i, &want);
		size_t j = find_name(c, want.name);
		CHECK(j != SIZE_MAX);
		if (j == SIZE_MAX)
			continue;
		weld_ckpt_tensor(c, j, &got);
		CHECK(got.ndim == want.ndim && memcmp(got.shape, want.shape, sizeof(uint64_t) * got.ndim) == 0);
		CHECK(got.dtype == want.dtype && got.nbytes == want.nbytes);
		if (got.dtype != want.dtype || got.nbytes != want.nbytes)
			continue;
		uint8_t *a = malloc(got.nbytes + 1), *b = malloc(want.nbytes + 1);
		CHECK_OK(weld_ckpt_read_tensor(c, j, a, got.nbytes, &err), &err);
		CHECK_OK(weld_ckpt_read_tensor(oc, i, b, want.nbytes, &err), &err);
		if (memcmp(a, b, got.nbytes) != 0) {
			fprintf(stderr, "%s: '%s' differs from %s\n", name, want.name, oracle_file);
			test_failures++;
		}
		compared++;
		free(a);
		free(b);
	}
	CHECK(compared > 0);
	weld_ckpt_free(oc);
	weld_ckpt_free(c);
	cJSON_Delete(o);
}

static void check_deepspeed_fixtures(void)
{
	DIR *d = opendir(fixture("zero"));
	struct dirent *e;
	int seen = 0;
	CHECK(d != NULL);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0)
			continue;
		check_deepspeed_fixture(e->d_name);
		seen++;
	}
	if (d)
		closedir(d);
	CHECK(seen >= 30);
}

/* DIR/model.safetensors.index.json mapping every tensor of the fp32 fixture to A, or to B at every other one. */
static void write_index(const char *dir, const char *a, const char *b)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, fixture("qwen2_tied/st_single_fp32/model.safetensors"), &err), &err);
	cJSON *root = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(root, "weight_map");
	for (size_t i = 0; c && i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		cJSON_AddStringToObject(map, ti.name, i % 2 ? b : a);
	}
	char *text = cJSON_PrintUnformatted(root);
	char path[4096];
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	CHECK(text && write_file(path, text, strlen(text)) == 0);
	free(text);
	cJSON_Delete(root);
	weld_ckpt_free(c);
}

/*
 * Two shards holding the same tensors. The index may name either shard for
 * a tensor, since both hold it: the folder opens with every tensor twice,
 * and the plan refuses the first name twice over in name order. An index
 * naming, for a tensor, a shard that does not hold it (while another does)
 * is refused when the folder is opened.
 */
static void check_shards_holding_one_tensor(void)
{
	char msg[8192];
	CHECK(scratch_init("dup") == 0);
	mkdir(scratch("both"), 0755);
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), scratch("both/a.safetensors"));
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), scratch("both/b.safetensors"));
	write_index(scratch("both"), "a.safetensors", "b.safetensors");
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, scratch("both"), &err), &err);
	CHECK(c && weld_ckpt_tensor_count(c) == 52);
	weld_plan *p = NULL;
	weld_plan_options opts = {.dtype = WELD_OUT_BF16};
	snprintf(msg, sizeof(msg), "tensor 'model.embed_tokens.weight' appears twice in the checkpoint (in %s and %s)",
		 scratch("both/a.safetensors"), scratch("both/b.safetensors"));
	CHECK_ERR(c ? weld_plan_build(&p, c, &opts, &err) : WELD_ERR_INVALID_ARG, WELD_ERR_MISMATCH, &err, msg);
	CHECK(p == NULL);
	weld_ckpt_free(c);

	/* One shard of the fixture and another file: the index says the other file holds half the tensors. */
	mkdir(scratch("half"), 0755);
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), scratch("half/a.safetensors"));
	copy(fixture("qwen2_tied/st_sharded/model-00009-of-00009.safetensors"), scratch("half/b.safetensors"));
	write_index(scratch("half"), "a.safetensors", "b.safetensors");
	weld_ckpt_open(&c, fixture("qwen2_tied/st_single_fp32/model.safetensors"), &err);
	weld_tensor_info second;
	CHECK(c && weld_ckpt_tensor(c, 1, &second) == WELD_OK);
	snprintf(msg, sizeof(msg), "%s: lists tensor '%s' in 'b.safetensors', but that shard does not hold it",
		 scratch("half/model.safetensors.index.json"), c ? second.name : "");
	expect_error(scratch("half"), WELD_ERR_MISMATCH, msg);
	weld_ckpt_free(c);
	scratch_remove();
}

int main(void)
{
	check_qwen_variants();
	check_deepspeed_fixtures();
	check_bad_folders();
	check_shards_holding_one_tensor();
	TEST_DONE();
}
