/*
 * DeepSpeed ZeRO checkpoints through weld_convert, against what DeepSpeed
 * itself wrote (tests/fixtures/zero, and tests/fixtures/zero_versions/<release>
 * from older releases, made by make_zero_fixtures.py):
 *  - --dtype keep gives exactly zero_to_fp32's safetensors file, byte for byte
 *    (the zero_to_fp32 of the release that wrote the checkpoint);
 *  - --dtype bfloat16 gives exactly zero_to_fp32's state dict cast (the HF
 *    path's cast is checked against torch in test_convert and test_cast),
 *    except integer buffers, which stay integer where zero_to_fp32 before
 *    0.19.8 made them float32;
 *  - where zero_to_fp32 refuses (BF16_Optimizer, stage 0) and at stage 1/2,
 *    the bf16 output equals the 16-bit module weights DeepSpeed stored;
 *  - only the master partitions and the pickles are read, never the moments;
 *  - broken folders get their exact errors.
 */
#include "util/util.h"
#include "test_util.h"
#include "io/zip.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static weld_status convert(const char *in, const char *out, weld_out_dtype dtype, weld_convert_result *r,
			   weld_error *err)
{
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = dtype;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	o.chunk_bytes = 4096; /* many chunks even on tiny fixtures */
	return weld_convert(in, out, &o, r, err);
}

/* Each tensor of GOT_PATH equals WANT_PATH's PREFIX+NAME (of the same dtype only, if asked). */
static size_t same_tensors(const char *got_path, const char *want_path, const char *prefix, bool same_dtype_only)
{
	weld_error err = {0};
	weld_ckpt *g = NULL, *w = NULL;
	size_t matched = 0;
	CHECK_OK(weld_ckpt_open(&g, got_path, &err), &err);
	CHECK_OK(weld_ckpt_open(&w, want_path, &err), &err);
	for (size_t i = 0; g && w && i < weld_ckpt_tensor_count(g); i++) {
		weld_tensor_info a, b;
		weld_ckpt_tensor(g, i, &a);
		char name[512];
		snprintf(name, sizeof(name), "%s%s", prefix, a.name);
		size_t j = 0;
		for (; j < weld_ckpt_tensor_count(w); j++) {
			weld_ckpt_tensor(w, j, &b);
			if (strcmp(b.name, name) == 0)
				break;
		}
		if (j == weld_ckpt_tensor_count(w) || (same_dtype_only && a.dtype != b.dtype))
			continue;
		CHECK(a.dtype == b.dtype && a.nbytes == b.nbytes);
		uint8_t *x = malloc(a.nbytes + 1), *y = malloc(b.nbytes + 1);
		if (a.nbytes == b.nbytes) {
			CHECK_OK(weld_ckpt_read_tensor(g, i, x, a.nbytes, &err), &err);
			CHECK_OK(weld_ckpt_read_tensor(w, j, y, b.nbytes, &err), &err);
			if (memcmp(x, y, a.nbytes) != 0) {
				fprintf(stderr, "%s: '%s' differs from %s\n", got_path, a.name, want_path);
				test_failures++;
			}
		}
		free(x);
		free(y);
		matched++;
	}
	weld_ckpt_free(g);
	weld_ckpt_free(w);
	return matched;
}

/* Bytes weld may read: the fp32 master tensors of every optimizer file plus every file's data.pkl. */
static uint64_t master_and_pickle_bytes(const char *tag_dir)
{
	DIR *d = opendir(tag_dir);
	struct dirent *e;
	uint64_t total = 0;
	while (d && (e = readdir(d))) {
		if (!strstr(e->d_name, "_states.pt"))
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", tag_dir, e->d_name);
		weld_error err = {0};
		weld_file *f = NULL;
		weld_zip *z = NULL;
		const weld_zip_entry *pkl;
		CHECK_OK(weld_file_open(&f, path, &err), &err);
		CHECK_OK(weld_zip_open(&z, f, &err), &err);
		if (z && weld_zip_find(z, "data.pkl", &pkl, &err) == WELD_OK)
			total += pkl->size;
		weld_zip_close(z);
		weld_file_close(f);
		/* The masters, as the optimizer file lists them. */
		weld_ckpt *c = NULL;
		if (strstr(e->d_name, "optim_states") && weld_ckpt_open(&c, path, &err) == WELD_OK) {
			for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
				weld_tensor_info ti;
				weld_ckpt_tensor(c, i, &ti);
				if (strstr(ti.name, "single_partition_of_fp32_groups.") || strstr(ti.name, "fp32_flat_groups."))
					total += ti.nbytes;
			}
		}
		weld_ckpt_free(c);
	}
	if (d)
		closedir(d);
	return total;
}

static size_t n_tensors(const char *path)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	size_t n = c ? weld_ckpt_tensor_count(c) : 0;
	weld_ckpt_free(c);
	return n;
}

/* An integer tensor's element I as a double (the integer dtypes a buffer may have). */
static bool int_value(const uint8_t *p, weld_dtype d, size_t i, double *v)
{
	int64_t i64;
	int32_t i32;
	switch (d) {
	case WELD_DTYPE_I64: memcpy(&i64, p + 8 * i, 8); *v = (double)i64; return true;
	case WELD_DTYPE_I32: memcpy(&i32, p + 4 * i, 4); *v = i32; return true;
	case WELD_DTYPE_BOOL:
	case WELD_DTYPE_U8: *v = p[i]; return true;
	default: return false;
	}
}

/*
 * The integer tensors of GOT_PATH hold the values of KEEP_PATH's float32
 * ones of the same name (zero_to_fp32 before 0.19.8 made integer buffers
 * float32). Returns how many there are.
 */
static size_t ints_equal_floats(const char *got_path, const char *keep_path)
{
	weld_error err = {0};
	weld_ckpt *g = NULL, *k = NULL;
	size_t n = 0;
	CHECK_OK(weld_ckpt_open(&g, got_path, &err), &err);
	CHECK_OK(weld_ckpt_open(&k, keep_path, &err), &err);
	for (size_t i = 0; g && k && i < weld_ckpt_tensor_count(g); i++) {
		weld_tensor_info a, b;
		weld_ckpt_tensor(g, i, &a);
		double v;
		if (a.dtype == WELD_DTYPE_F32 || a.dtype == WELD_DTYPE_BF16 || a.dtype == WELD_DTYPE_F16)
			continue;
		size_t j = 0;
		while (j < weld_ckpt_tensor_count(k) && (weld_ckpt_tensor(k, j, &b), strcmp(a.name, b.name) != 0))
			j++;
		CHECK(j < weld_ckpt_tensor_count(k));
		if (j == weld_ckpt_tensor_count(k) || b.dtype == a.dtype)
			continue; /* kept integer by zero_to_fp32 too (0.19.8 on) */
		CHECK(b.dtype == WELD_DTYPE_F32 && b.numel == a.numel);
		if (b.dtype != WELD_DTYPE_F32 || b.numel != a.numel)
			continue;
		uint8_t *x = malloc(a.nbytes + 1), *y = malloc(b.nbytes + 1);
		CHECK_OK(weld_ckpt_read_tensor(g, i, x, a.nbytes, &err), &err);
		CHECK_OK(weld_ckpt_read_tensor(k, j, y, b.nbytes, &err), &err);
		for (uint64_t e = 0; e < a.numel; e++) {
			float f;
			memcpy(&f, y + 4 * e, 4);
			if (!int_value(x, a.dtype, e, &v) || v != (double)f) {
				fprintf(stderr, "%s: integer '%s'[%llu] is not %s's float32 value\n", got_path, a.name,
					(unsigned long long)e, keep_path);
				test_failures++;
				break;
			}
		}
		free(x);
		free(y);
		n++;
	}
	weld_ckpt_free(g);
	weld_ckpt_free(k);
	return n;
}

/* REL: a fixture folder under tests/fixtures (zero/<name> or zero_versions/<release>/<name>). */
static void check_fixture(const char *rel_dir)
{
	char dir[4096], rel[512];
	const char *name = rel_dir;
	snprintf(dir, sizeof(dir), "%s", fixture(rel_dir));
	snprintf(rel, sizeof(rel), "%s/oracle.json", rel_dir);
	size_t n;
	char *text = (char *)read_file(fixture(rel), &n);
	cJSON *o = text ? cJSON_ParseWithLength(text, n) : NULL;
	free(text);
	CHECK(o != NULL);
	if (!o)
		return;
	int stage = cJSON_GetObjectItem(o, "stage")->valueint;
	bool bf16 = strcmp(cJSON_GetObjectItem(o, "dtype")->valuestring, "bf16") == 0;
	bool has_z2f = cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "zero_to_fp32"), "file"));
	weld_error err = {0};
	weld_convert_result r;
	char got[4096], want[4096], out_keep[4096], out_bf16[4096];
	snprintf(out_keep, sizeof(out_keep), "%s", scratch("keep"));
	snprintf(out_bf16, sizeof(out_bf16), "%s", scratch("bf16"));

	CHECK_OK(convert(dir, out_keep, WELD_OUT_KEEP, &r, &err), &err);
	snprintf(got, sizeof(got), "%s/model.safetensors", out_keep);
	if (has_z2f) {
		snprintf(want, sizeof(want), "%s/zero_to_fp32.safetensors", dir);
		if (!same_file(got, want)) {
			fprintf(stderr, "%s: --dtype keep differs from zero_to_fp32\n", name);
			test_failures++;
		}
		/* Only masters and pickles: never the Adam moments. */
		char tag[4096];
		snprintf(tag, sizeof(tag), "%s/global_step1", dir);
		uint64_t bound = master_and_pickle_bytes(tag);
		if ((double)r.bytes_read > 1.05 * (double)bound + 16384) {
			fprintf(stderr, "%s: read %llu bytes, masters + pickles are %llu\n", name,
				(unsigned long long)r.bytes_read, (unsigned long long)bound);
			test_failures++;
		}
	} else {
		snprintf(want, sizeof(want), "%s/live_fp32.safetensors", dir);
		CHECK(same_tensors(got, want, "", false) > 0);
	}

	CHECK_OK(convert(dir, out_bf16, WELD_OUT_BF16, &r, &err), &err);
	snprintf(got, sizeof(got), "%s/model.safetensors", out_bf16);
	if (has_z2f) {
		/* zero_to_fp32's state dict cast by the HF path. */
		CHECK_OK(convert(scratch("keep/model.safetensors"), scratch("ref"), WELD_OUT_BF16, &r, &err), &err);
		snprintf(want, sizeof(want), "%s/model.safetensors", scratch("ref"));
		/* Integer buffers zero_to_fp32 made float32 stay integer: the rest must match. */
		size_t ints = ints_equal_floats(got, scratch("keep/model.safetensors"));
		if (ints ? same_tensors(got, want, "", true) + ints != n_tensors(got) : !same_file(got, want)) {
			fprintf(stderr, "%s: bfloat16 output differs from zero_to_fp32 cast\n", name);
			test_failures++;
		}
	}
	/* DeepSpeed's own 16-bit module copy is the rounded master: a free cross-check. */
	if (bf16 && stage <= 2) {
		snprintf(want, sizeof(want), "%s/global_step1/mp_rank_00_model_states.pt", dir);
		/* Buffers stay fp32 in the module, so only the 16-bit parameters compare. */
		CHECK(same_tensors(got, want, "module.", true) > 0);
	}
	cJSON_Delete(o);
}

static void copy_tree(const char *from, const char *to)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s' && chmod -R u+w '%s'", to, from, to, to);
	CHECK(system(cmd) == 0);
}

static void expect_error(const char *dir, weld_status want, const char *msg)
{
	weld_error err = {0};
	weld_convert_result r;
	weld_status s = convert(dir, scratch("bad-out"), WELD_OUT_BF16, &r, &err);
	CHECK_ERR(s, want, &err, msg);
	char path[4096];
	snprintf(path, sizeof(path), "%s/model.safetensors", scratch("bad-out"));
	CHECK(access(path, F_OK) != 0);
}

/*
 * Flip a byte of optimizer file PATH at DELTA bytes from the start of the
 * master tensor NAME (found by its bytes, which are random floats).
 */
static void flip_master_byte(const char *path, const char *name, size_t delta)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	for (size_t i = 0; c && i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		if (strcmp(ti.name, name) != 0)
			continue;
		uint8_t *want = malloc(ti.nbytes + 1);
		size_t n;
		uint8_t *file = read_file(path, &n);
		CHECK_OK(weld_ckpt_read_tensor(c, i, want, ti.nbytes, &err), &err);
		uint8_t *at = NULL;
		for (size_t k = 0; file && !at && ti.nbytes && k + ti.nbytes <= n; k++)
			if (memcmp(file + k, want, ti.nbytes) == 0)
				at = file + k;
		CHECK(at != NULL && (size_t)(at - file) + delta < n);
		if (at && (size_t)(at - file) + delta < n) {
			at[delta] ^= 0x01;
			CHECK(write_file(path, file, n) == 0);
		}
		free(want);
		free(file);
	}
	weld_ckpt_free(c);
}

static void check_broken(void)
{
	char msg[8192], path[4096];
	/* A rank's optimizer file is missing. */
	copy_tree(fixture("zero/s3_w4_bf16"), scratch("missing"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_2_mp_rank_00_optim_states.pt", scratch("missing"));
	CHECK(unlink(path) == 0);
	snprintf(msg, sizeof(msg), "%s/global_step1: missing bf16_zero_pp_rank_2_mp_rank_00_optim_states.pt (rank 2 of 4)",
		 scratch("missing"));
	expect_error(scratch("missing"), WELD_ERR_MISMATCH, msg);
	/* The last rank's files gone too: the model states still say 4 ranks. */
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_3_mp_rank_00_optim_states.pt", scratch("missing"));
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/global_step1/zero_pp_rank_3_mp_rank_00_model_states.pt", scratch("missing"));
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/global_step1/zero_pp_rank_2_mp_rank_00_model_states.pt", scratch("missing"));
	CHECK(unlink(path) == 0);
	snprintf(msg, sizeof(msg),
		 "%s/global_step1/zero_pp_rank_0_mp_rank_00_model_states.pt: dp_world_size is 4 but the folder holds files for 2 ranks",
		 scratch("missing"));
	expect_error(scratch("missing"), WELD_ERR_MISMATCH, msg);

	/* Stale files of an earlier run with more ranks, beside a 2-rank checkpoint. */
	copy_tree(fixture("zero/s2_w2_bf16"), scratch("stale"));
	char from[4096];
	snprintf(from, sizeof(from), "%s", fixture("zero/s2_w3_bf16/global_step1/bf16_zero_pp_rank_2_mp_rank_00_optim_states.pt"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_2_mp_rank_00_optim_states.pt", scratch("stale"));
	size_t n;
	uint8_t *d = read_file(from, &n);
	CHECK(d && write_file(path, d, n) == 0);
	free(d);
	snprintf(msg, sizeof(msg), "%s/global_step1/mp_rank_00_model_states.pt: dp_world_size is 2 but the folder holds files for 3 ranks",
		 scratch("stale"));
	expect_error(scratch("stale"), WELD_ERR_MISMATCH, msg);

	/* Ranks from different runs: rank 1's partitions do not fit rank 0's layout. */
	copy_tree(fixture("zero/s3_w2_bf16"), scratch("mixed"));
	snprintf(from, sizeof(from), "%s", fixture("zero/s3_w2_bf16_frozen/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", scratch("mixed"));
	d = read_file(from, &n);
	CHECK(d && write_file(path, d, n) == 0);
	free(d);
	weld_error err = {0};
	weld_convert_result r;
	CHECK(convert(scratch("mixed"), scratch("bad-out"), WELD_OUT_BF16, &r, &err) == WELD_ERR_MISMATCH);
	CHECK(strstr(err.message, "rank 1's partitions hold") != NULL);

	/* Rank 1's model states from a later save of the same run (written by torch). */
	copy_tree(fixture("zero/s3_w2_bf16"), scratch("steps"));
	snprintf(from, sizeof(from), "%s", fixture("zero_bad/step2_zero_pp_rank_1_mp_rank_00_model_states.pt"));
	snprintf(path, sizeof(path), "%s/global_step1/zero_pp_rank_1_mp_rank_00_model_states.pt", scratch("steps"));
	d = read_file(from, &n);
	CHECK(d && write_file(path, d, n) == 0);
	free(d);
	snprintf(msg, sizeof(msg), "%s: global_steps 2 but rank 0's is 1: files from different steps", path);
	expect_error(scratch("steps"), WELD_ERR_MISMATCH, msg);

	/* frozen_param_fragments not a dict (a list of the names): refused, not read as one. */
	copy_tree(fixture("zero/s2_w2_bf16_frozen"), scratch("frozen-list"));
	snprintf(from, sizeof(from), "%s", fixture("zero_bad/frozen_list_mp_rank_00_model_states.pt"));
	snprintf(path, sizeof(path), "%s/global_step1/mp_rank_00_model_states.pt", scratch("frozen-list"));
	d = read_file(from, &n);
	CHECK(d && write_file(path, d, n) == 0);
	free(d);
	snprintf(msg, sizeof(msg), "%s: frozen parameter 'fc3.weight' has no fragment", path);
	expect_error(scratch("frozen-list"), WELD_ERR_FORMAT, msg);

	/* One flipped bit in a master partition: the record's CRC-32 catches it. */
	copy_tree(fixture("zero/s3_w2_bf16"), scratch("flip"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", scratch("flip"));
	flip_master_byte(path, "optimizer_state_dict.fp32_flat_groups.0", 100);
	weld_error e2 = {0};
	CHECK(convert(scratch("flip"), scratch("bad-out"), WELD_OUT_BF16, &r, &e2) == WELD_ERR_CHECKSUM);
	snprintf(msg, sizeof(msg), "%s: CRC-32 mismatch in record 'data/", path);
	CHECK(strncmp(e2.message, msg, strlen(msg)) == 0);
	/* ... and in the alignment padding after the last rank's stage-2 partition, read only to check it. */
	copy_tree(fixture("zero/s2_w2_bf16"), scratch("flip2"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", scratch("flip2"));
	size_t master_bytes = 0;
	{
		weld_ckpt *oc = NULL;
		CHECK_OK(weld_ckpt_open(&oc, path, &e2), &e2);
		for (size_t i = 0; oc && i < weld_ckpt_tensor_count(oc); i++) {
			weld_tensor_info ti;
			weld_ckpt_tensor(oc, i, &ti);
			if (strcmp(ti.name, "optimizer_state_dict.single_partition_of_fp32_groups.0") == 0)
				master_bytes = ti.nbytes;
		}
		weld_ckpt_free(oc);
	}
	flip_master_byte(path, "optimizer_state_dict.single_partition_of_fp32_groups.0", master_bytes);
	CHECK(convert(scratch("flip2"), scratch("bad-out"), WELD_OUT_BF16, &r, &e2) == WELD_ERR_CHECKSUM);
	snprintf(msg, sizeof(msg), "%s: CRC-32 mismatch in record 'data/", path);
	CHECK(strncmp(e2.message, msg, strlen(msg)) == 0);

	/* A truncated optimizer shard. */
	copy_tree(fixture("zero/s1_w2_bf16"), scratch("cut"));
	snprintf(path, sizeof(path), "%s/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", scratch("cut"));
	CHECK(truncate(path, 5000) == 0);
	snprintf(msg, sizeof(msg), "%s: not a zip archive or truncated: end of central directory not found", path);
	expect_error(scratch("cut"), WELD_ERR_FORMAT, msg);

	/* Tensor parallel files. */
	copy_tree(fixture("zero/s1_w1_bf16"), scratch("tp"));
	snprintf(from, sizeof(from), "%s/global_step1/mp_rank_00_model_states.pt", scratch("tp"));
	snprintf(path, sizeof(path), "%s/global_step1/mp_rank_01_model_states.pt", scratch("tp"));
	d = read_file(from, &n);
	CHECK(d && write_file(path, d, n) == 0);
	free(d);
	snprintf(msg, sizeof(msg),
		 "%s/global_step1: tensor or pipeline parallel checkpoints are not supported (found mp_rank_01_model_states.pt)",
		 scratch("tp"));
	expect_error(scratch("tp"), WELD_ERR_UNSUPPORTED, msg);
}

/* Every fixture folder under tests/fixtures/REL (with LEVELS > 1: one more level of folders); how many. */
static int check_all(const char *rel, int levels)
{
	DIR *d = opendir(fixture(rel));
	struct dirent *e;
	int seen = 0;
	CHECK(d != NULL);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0)
			continue;
		char sub[512];
		snprintf(sub, sizeof(sub), "%s/%s", rel, e->d_name);
		if (levels > 1)
			seen += check_all(sub, levels - 1);
		else
			check_fixture(sub);
		seen += levels == 1;
	}
	if (d)
		closedir(d);
	return seen;
}

int main(void)
{
	CHECK(scratch_init("zero") == 0);
	CHECK(check_all("zero", 1) >= 30);
	/* Older DeepSpeed releases: four fixtures each, at least four releases. */
	CHECK(check_all("zero_versions", 2) >= 16);
	check_broken();
	CHECK(scratch_remove() == 0);
	TEST_DONE();
}
