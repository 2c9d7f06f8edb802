/*
 * torch.save files through the public API: every tensor of edge_zip.pt
 * (zip) and edge_legacy.pt (legacy format), views and odd dtypes included,
 * must equal what torch itself recorded in edge_expected.json, byte for byte;
 * tied_views.pt's names for shared storages must be aliases exactly where
 * they are the same view.
 */
#include "util/util.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static int hexval(char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Compare every tensor named in EXPECTED with the one PATH holds. */
static void check_against_expected(const char *path, const cJSON *expected, size_t want_count)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	if (!c)
		return;
	size_t matched = 0;
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		CHECK(weld_ckpt_tensor(c, i, &ti) == WELD_OK);
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(expected, ti.name);
		if (!e)
			continue; /* the nested dict's tensors are not in the oracle */
		matched++;
		char dtype[64];
		snprintf(dtype, sizeof(dtype), "torch.%s", weld__dtype_torch_name(ti.dtype));
		if (strcmp(dtype, cJSON_GetObjectItem(e, "dtype")->valuestring) != 0) {
			fprintf(stderr, "%s: %s: dtype %s, expected %s\n", path, ti.name, dtype,
				cJSON_GetObjectItem(e, "dtype")->valuestring);
			test_failures++;
		}
		const cJSON *shape = cJSON_GetObjectItem(e, "shape");
		CHECK((size_t)cJSON_GetArraySize(shape) == ti.ndim);
		for (size_t d = 0; d < ti.ndim; d++)
			CHECK((uint64_t)cJSON_GetArrayItem(shape, (int)d)->valuedouble == ti.shape[d]);
		const char *hex = cJSON_GetObjectItem(e, "hex")->valuestring;
		CHECK(strlen(hex) == 2 * ti.nbytes);
		uint8_t *buf = malloc(ti.nbytes + 1);
		CHECK_OK(weld_ckpt_read_tensor(c, i, buf, ti.nbytes, &err), &err);
		for (size_t b = 0; b < ti.nbytes && b * 2 + 1 < strlen(hex); b++) {
			uint8_t want = (uint8_t)(hexval(hex[2 * b]) << 4 | hexval(hex[2 * b + 1]));
			if (buf[b] != want) {
				fprintf(stderr, "%s: %s: byte %zu is %02x, torch says %02x\n", path, ti.name, b,
					buf[b], want);
				test_failures++;
				break;
			}
		}
		free(buf);
	}
	CHECK(matched == want_count);
	weld_ckpt_free(c);
}

/* A copy of a fixture cut to LEN bytes, in DIR. */
static const char *truncated_copy(const char *dir, const char *src, size_t len)
{
	static char path[4096];
	size_t n;
	uint8_t *data = read_file(src, &n);
	snprintf(path, sizeof(path), "%s/cut.pt", dir);
	CHECK(data && len <= n && write_file(path, data, len) == 0);
	free(data);
	return path;
}

static void check_truncated_legacy(const char *dir)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	size_t n;
	uint8_t *data = read_file(fixture("torch_edge/edge_legacy.pt"), &n);
	CHECK(data != NULL);
	free(data);
	/* Cut inside the pickles: the file cannot be parsed at all. */
	const char *p = truncated_copy(dir, fixture("torch_edge/edge_legacy.pt"), 100);
	weld_status s = weld_ckpt_open(&c, p, &err);
	char want[8192];
	snprintf(want, sizeof(want), "%s: truncated legacy checkpoint: ", p);
	CHECK(s == WELD_ERR_FORMAT && strncmp(err.message, want, strlen(want)) == 0);
	weld_ckpt_free(c);
	c = NULL;
	/* Cut inside the storages that follow the pickles. */
	p = truncated_copy(dir, fixture("torch_edge/edge_legacy.pt"), n - 20);
	s = weld_ckpt_open(&c, p, &err);
	CHECK(s == WELD_ERR_FORMAT && strstr(err.message, "runs past the end of the file"));
	if (s != WELD_ERR_FORMAT)
		fprintf(stderr, "got %d %s\n", s, err.message);
	weld_ckpt_free(c);
}

static void check_tied_views(void)
{
	/* row_slice and col_slice are views of base's storage, not aliases of it. */
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, fixture("torch_edge/edge_zip.pt"), &err), &err);
	for (size_t i = 0; c && i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		CHECK(ti.alias_of == NULL);
		if (strcmp(ti.name, "transposed") == 0)
			CHECK(!ti.contiguous);
		if (strcmp(ti.name, "row_slice") == 0)
			CHECK(ti.contiguous);
	}
	CHECK(weld_ckpt_format(c) == WELD_FORMAT_TORCH_ZIP);
	weld_ckpt_free(c);
	CHECK_OK(weld_ckpt_open(&c, fixture("torch_edge/edge_legacy.pt"), &err), &err);
	CHECK(c && weld_ckpt_format(c) == WELD_FORMAT_TORCH_LEGACY);
	weld_ckpt_free(c);
}

/*
 * tied_views.pt (make_tied_views.py): a second name for the very same view
 * is an alias of the first name, wherever it is in the tree and however
 * torch reached it; other views of the same storage are tensors of their
 * own, and their bytes are their own view's.
 */
static void check_aliases(const char *path)
{
	static const struct {
		const char *name, *alias_of;
		float first; /* the first element */
	} want[] = {
		{"a", NULL, 0},        {"a_same_object", "a", 0}, {"a_view", "a", 0},           {"a_t", NULL, 0},
		{"a_flat", NULL, 0},   {"row1", NULL, 3},         {"row1_again", "row1", 3},    {"other", NULL, 0},
		{"nested.x", "a", 0},  {"nested.y.0", "row1", 3},
	};
	size_t n = sizeof(want) / sizeof(want[0]);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, path, &err), &err);
	CHECK(c && weld_ckpt_tensor_count(c) == n);
	for (size_t i = 0; c && i < n && i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		CHECK(weld_ckpt_tensor(c, i, &ti) == WELD_OK);
		bool as_wanted = strcmp(ti.name, want[i].name) == 0 &&
				 (ti.alias_of && want[i].alias_of ? strcmp(ti.alias_of, want[i].alias_of) == 0
								  : ti.alias_of == want[i].alias_of);
		if (!as_wanted) {
			fprintf(stderr, "%s: tensor %zu is '%s' (tied to %s), expected '%s' (tied to %s)\n", path, i, ti.name,
				ti.alias_of ? ti.alias_of : "nothing", want[i].name,
				want[i].alias_of ? want[i].alias_of : "nothing");
			test_failures++;
		}
		float *v = malloc(ti.nbytes);
		CHECK_OK(weld_ckpt_read_tensor(c, i, v, ti.nbytes, &err), &err);
		CHECK(v[0] == want[i].first);
		if (strcmp(ti.name, "a_t") == 0)
			CHECK(v[1] == 3 && v[4] == 1); /* a's columns as rows */
		free(v);
	}
	weld_ckpt_free(c);
}

/*
 * A legacy storage key holding a newline (found by fuzz_legacy): the
 * message quoting it stays one line, the control character shown as '?'.
 */
static void check_message_one_line(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/legacy/regress_newline_in_storage_key", WELD_SOURCE_DIR);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	weld_status s = weld_ckpt_open(&c, path, &err);
	CHECK(s == WELD_ERR_FORMAT && !strchr(err.message, '\n') && strstr(err.message, "'94ons?Order616'"));
	if (s != WELD_ERR_FORMAT)
		fprintf(stderr, "got %d %s\n", s, err.message);
	weld_ckpt_free(c);
	/* Every message, whatever it quotes. */
	weld__fail(&err, WELD_ERR_FORMAT, "name '%s'", "a\nb\r\x1b[31mc\x7f");
	CHECK(strcmp(err.message, "name 'a?b??[31mc?'") == 0);
}

int main(void)
{
	size_t n;
	char *text = (char *)read_file(fixture("torch_edge/edge_expected.json"), &n);
	CHECK(text != NULL);
	if (!text)
		TEST_DONE();
	cJSON *expected = cJSON_ParseWithLength(text, n);
	CHECK(expected != NULL);
	size_t count = (size_t)cJSON_GetArraySize(expected);
	CHECK(count == 13);
	check_against_expected(fixture("torch_edge/edge_zip.pt"), expected, count);
	check_against_expected(fixture("torch_edge/edge_legacy.pt"), expected, count);
	check_tied_views();
	check_aliases(fixture("torch_edge/tied_views.pt"));
	check_aliases(fixture("torch_edge/tied_views_legacy.pt"));

	char dir[] = "/tmp/weld_test_torch_XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	check_truncated_legacy(dir);
	check_message_one_line();
	char cut[4096];
	snprintf(cut, sizeof(cut), "%s/cut.pt", dir);
	unlink(cut);
	rmdir(dir);

	cJSON_Delete(expected);
	free(text);
	TEST_DONE();
}
