/*
 * What the weld_verify tests share: a scratch folder, outputs converted,
 * copied or written by hand (write_by_hand), files edited, and reports
 * checked line by line (EXPECT) and as a whole (EXPECT_FAILS: exactly these
 * checks FAIL).
 */
#ifndef WELD_TEST_VERIFY_H
#define WELD_TEST_VERIFY_H

#include "io/safetensors.h"
#include "output/safetensors.h"
#include "util/util.h"
#include "test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* The test's scratch folder, made by tmp_init. */
static char tmp[256];

static inline void tmp_init(const char *test)
{
	snprintf(tmp, sizeof(tmp), "/tmp/weld_test_%s_XXXXXX", test);
	CHECK(mkdtemp(tmp) != NULL);
}

static inline void tmp_remove(void)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	CHECK(system(cmd) == 0);
}

static inline const char *path_in(const char *dir, const char *name)
{
	static char buf[8][4096];
	static int slot;
	char *b = buf[slot++ & 7];
	snprintf(b, 4096, "%s/%s", dir, name);
	return b;
}

/*
 * Its own slots, so a folder name outlives the path_in calls made with it;
 * eight of them, so copy a name that must outlive more tpath calls.
 */
static inline const char *tpath(const char *name)
{
	static char buf[8][4096];
	static int slot;
	char *b = buf[slot++ & 7];
	snprintf(b, 4096, "%s/%s", tmp, name);
	return b;
}

static inline void convert(const char *input, const char *out, weld_out_dtype dtype, int pytorch_bin)
{
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = dtype;
	o.pytorch_bin = pytorch_bin;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	o.threads = 2;
	weld_error err = {0};
	CHECK_OK(weld_convert(input, out, &o, NULL, &err), &err);
}

static inline void copy_file(const char *from, const char *to)
{
	size_t n;
	uint8_t *data = read_file(from, &n);
	CHECK(data && write_file(to, data, n) == 0);
	free(data);
}

/* A fresh copy of every regular file of FROM in TO. */
static inline void copy_dir(const char *from, const char *to)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", to, to);
	CHECK(system(cmd) == 0);
	DIR *d = opendir(from);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char src[4096];
		struct stat st;
		snprintf(src, sizeof(src), "%s/%s", from, e->d_name);
		if (stat(src, &st) == 0 && S_ISREG(st.st_mode))
			copy_file(src, path_in(to, e->d_name));
	}
	if (d)
		closedir(d);
}

static inline weld_verify_report *verify(const char *dir, const char *against)
{
	weld_verify_report *r = NULL;
	weld_error err = {0};
	CHECK_OK(weld_verify(dir, against, WELD_DEVICE_CPU, &r, &err), &err);
	return r;
}

static inline const weld_check *find(const weld_verify_report *r, const char *name)
{
	for (size_t i = 0; r && i < r->nchecks; i++)
		if (strcmp(r->checks[i].name, name) == 0)
			return &r->checks[i];
	return NULL;
}

/* Check NAME has LEVEL and, when DETAIL is not NULL, exactly that detail. */
#define EXPECT(r, name, level, detail) expect_(__FILE__, __LINE__, r, name, level, detail)
static inline void expect_(const char *file, int line, const weld_verify_report *r, const char *name,
			   weld_check_level level, const char *detail)
{
	const weld_check *c = find(r, name);
	if (!c) {
		fprintf(stderr, "%s:%d: no check '%s' in the report\n", file, line, name);
		test_failures++;
		return;
	}
	if (c->level != level || (detail && strcmp(c->detail, detail) != 0)) {
		fprintf(stderr, "%s:%d: check '%s'\n  expected %s \"%s\"\n  got      %s \"%s\"\n", file, line, name,
			weld_check_level_name(level), detail ? detail : "*", weld_check_level_name(c->level),
			c->detail);
		test_failures++;
	}
}

/* Exactly the checks named in FAILS (a NULL-terminated list) FAIL. */
#define EXPECT_FAILS(r, ...) expect_fails_(__FILE__, __LINE__, r, (const char *const[]){__VA_ARGS__, NULL})
static inline void expect_fails_(const char *file, int line, const weld_verify_report *r, const char *const *fails)
{
	size_t want = 0;
	while (fails[want])
		want++;
	for (size_t i = 0; r && i < r->nchecks; i++) {
		bool listed = false;
		for (size_t k = 0; k < want; k++)
			listed = listed || strcmp(fails[k], r->checks[i].name) == 0;
		if ((r->checks[i].level == WELD_CHECK_FAIL) != listed) {
			fprintf(stderr, "%s:%d: check '%s' is %s: %s\n", file, line, r->checks[i].name,
				weld_check_level_name(r->checks[i].level), r->checks[i].detail);
			test_failures++;
		}
	}
	if (!r || r->failed != want) {
		fprintf(stderr, "%s:%d: %zu checks FAIL, not %zu\n", file, line, r ? (size_t)r->failed : 0, want);
		test_failures++;
	}
}
#define NO_FAILS NULL

/* Replace the first FIND in DIR/NAME by REPL. */
static inline void edit_file(const char *dir, const char *name, const char *find_s, const char *repl)
{
	size_t n;
	char *text = (char *)read_file(path_in(dir, name), &n);
	CHECK(text != NULL);
	if (!text)
		return;
	text = realloc(text, n + 1);
	text[n] = '\0';
	char *at = strstr(text, find_s);
	CHECK(at != NULL);
	if (at) {
		FILE *f = fopen(path_in(dir, name), "wb");
		fwrite(text, 1, (size_t)(at - text), f);
		fputs(repl, f);
		fputs(at + strlen(find_s), f);
		fclose(f);
	}
	free(text);
}

/* DIR/NAME becomes BEFORE, its old text, AFTER; the old text's length is returned. */
static inline size_t wrap_file(const char *dir, const char *name, const char *before, const char *after)
{
	size_t n;
	uint8_t *text = read_file(path_in(dir, name), &n);
	CHECK(text != NULL);
	FILE *f = fopen(path_in(dir, name), "wb");
	CHECK(f != NULL);
	if (f && text) {
		fputs(before, f);
		fwrite(text, 1, n, f);
		fputs(after, f);
	}
	if (f)
		fclose(f);
	free(text);
	return text ? n : 0;
}

/*
 * Write OUT_DIR/model.safetensors by hand from the tensors of SRC (a
 * safetensors file): names prefixed with PREFIX, SKIP left out, with or
 * without the "format": "pt" metadata. Plus SRC's folder's config.json.
 */
static inline void write_by_hand(const char *src, const char *out_dir, const char *prefix, const char *skip, bool meta)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", out_dir, out_dir);
	CHECK(system(cmd) == 0);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, src, &err), &err);
	if (!c)
		return;
	size_t n = weld_ckpt_tensor_count(c), k = 0;
	weld_st_out_tensor *t = calloc(n, sizeof(*t));
	char **names = calloc(n, sizeof(*names));
	size_t *index = calloc(n, sizeof(*index));
	for (size_t i = 0; i < n; i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		if (skip && strcmp(ti.name, skip) == 0)
			continue;
		names[k] = malloc(strlen(prefix) + strlen(ti.name) + 1);
		sprintf(names[k], "%s%s", prefix, ti.name);
		t[k] = (weld_st_out_tensor){names[k], ti.dtype, ti.ndim, ti.shape, 0, 0};
		index[k++] = i;
	}
	/* The builder sorts T; keep each entry's source index by its name pointer. */
	char **by_entry = calloc(k, sizeof(*by_entry));
	memcpy(by_entry, names, k * sizeof(*names));
	static const char *const key[] = {"format"}, *const val[] = {"pt"};
	uint8_t *header;
	size_t hlen;
	uint64_t dlen;
	CHECK_OK(weld_st_build_header(t, k, key, val, meta ? 1 : 0, &header, &hlen, &dlen, &err), &err);
	FILE *f = fopen(path_in(out_dir, "model.safetensors"), "wb");
	fwrite(header, 1, hlen, f);
	for (size_t j = 0; j < k; j++) {
		size_t src_i = 0;
		for (size_t q = 0; q < k; q++)
			if (by_entry[q] == t[j].name)
				src_i = index[q];
		uint8_t *buf = malloc(t[j].nbytes ? t[j].nbytes : 1);
		CHECK_OK(weld_ckpt_read_tensor(c, src_i, buf, t[j].nbytes, &err), &err);
		fwrite(buf, 1, t[j].nbytes, f);
		free(buf);
	}
	fclose(f);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", src);
	*strrchr(dir, '/') = '\0';
	copy_file(path_in(dir, "config.json"), path_in(out_dir, "config.json"));
	for (size_t j = 0; j < k; j++)
		free(names[j]);
	free(names);
	free(by_entry);
	free(index);
	free(t);
	free(header);
	weld_ckpt_free(c);
}
#endif /* WELD_TEST_VERIFY_H */
