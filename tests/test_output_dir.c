/*
 * The output folder: config.json's dtype rewritten byte for byte as
 * transformers writes it, the weight-file name rules, side files copied
 * (and training state left behind), and each refusal with its exact
 * message.
 */
#include "output/config_json.h"
#include "output/folder.h"
#include "output/side_files.h"
#include "test_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* set_dtype on the NUL-terminated IN must give exactly WANT. */
static void check_edit(int line, const char *in, const char *dtype, const char *want)
{
	weld_error err = {0};
	char *out = NULL;
	size_t len = 0;
	weld_status st = weld_config_set_dtype(in, strlen(in), dtype, &out, &len, &err);
	if (st != WELD_OK || len != strlen(want) || memcmp(out, want, len) != 0) {
		fprintf(stderr, "line %d: set_dtype(%s) on\n%s\ngave %d \"%s\"\n%s\nwanted\n%s\n", line, dtype, in,
			st, err.message, out ? out : "(null)", want);
		test_failures++;
	}
	free(out);
}
#define EDIT(in, dtype, want) check_edit(__LINE__, in, dtype, want)

static void check_bad(int line, const char *in, const char *msg)
{
	weld_error err = {0};
	char *out = (char *)1;
	size_t len = 1;
	weld_status st = weld_config_set_dtype(in, strlen(in), "bfloat16", &out, &len, &err);
	if (st != WELD_ERR_FORMAT || strcmp(err.message, msg) != 0 || out || len) {
		fprintf(stderr, "line %d: on %s\n  wanted \"%s\"\n  got %d \"%s\"\n", line, in, msg, st, err.message);
		test_failures++;
	}
	free(out);
}
#define BAD(in, msg) check_bad(__LINE__, in, msg)

/* S with every FROM replaced by TO (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	for (const char *p = s; (p = strstr(p, from)); p += fl)
		n++;
	char *r = malloc(strlen(s) + n * tl + 1), *o = r;
	for (const char *p = s, *q; ; p = q + fl) {
		q = strstr(p, from);
		size_t k = q ? (size_t)(q - p) : strlen(p);
		memcpy(o, p, k);
		o += k;
		if (!q)
			break;
		memcpy(o, to, tl);
		o += tl;
	}
	*o = '\0';
	return r;
}

static void test_transformers_config(void)
{
	size_t fp32_len = 0, bf16_len = 0;
	char *fp32 = (char *)read_file(fixture("qwen2_tied/st_single_fp32/config.json"), &fp32_len);
	char *bf16 = (char *)read_file(fixture("qwen2_tied/st_single_bf16_reference/config.json"), &bf16_len);
	CHECK(fp32 && bf16);
	if (!fp32 || !bf16)
		return;
	weld_error err = {0};
	char *out = NULL;
	size_t len = 0;
	/* Not NUL-terminated on purpose: only LEN bytes may be read. */
	CHECK_OK(weld_config_set_dtype(fp32, fp32_len, "bfloat16", &out, &len, &err), &err);
	CHECK(out && len == bf16_len && memcmp(out, bf16, len) == 0 && out[len] == '\0');
	free(out);
	CHECK_OK(weld_config_set_dtype(bf16, bf16_len, "float32", &out, &len, &err), &err);
	CHECK(out && len == fp32_len && memcmp(out, fp32, len) == 0);
	free(out);

	char *fp32z = weld__strndup(fp32, fp32_len);
	char *fp16 = replace_all(fp32z, "\"float32\"", "\"float16\"");
	EDIT(fp32z, "float16", fp16);
	EDIT(fp32z, "float32", fp32z);
	free(fp16);
	free(fp32z);
	free(fp32);
	free(bf16);
}

static void test_edits(void)
{
	/* torch_dtype only (transformers 4.x), pretty. */
	EDIT("{\n  \"a\": 1,\n  \"torch_dtype\": \"float32\",\n  \"b\": null\n}\n", "bfloat16",
	     "{\n  \"a\": 1,\n  \"torch_dtype\": \"bfloat16\",\n  \"b\": null\n}\n");
	/* Both keys, whatever values they held; a value spelled "dtype" stays. */
	EDIT("{\"dtype\": null, \"x\": \"dtype\", \"torch_dtype\": \"float32\"}", "float16",
	     "{\"dtype\": \"float16\", \"x\": \"dtype\", \"torch_dtype\": \"float16\"}");
	EDIT("{\"torch_dtype\":{\"dtype\":1},\"dtype\":[1, 2]}", "bfloat16",
	     "{\"torch_dtype\":\"bfloat16\",\"dtype\":\"bfloat16\"}");
	EDIT("{\"dtype\" : \"auto\" }", "bfloat16", "{\"dtype\" : \"bfloat16\" }");

	/* Neither key: added last, in the object's own style. */
	EDIT("{\n  \"a\": 1,\n  \"b\": [\n    1\n  ]\n}\n", "bfloat16",
	     "{\n  \"a\": 1,\n  \"b\": [\n    1\n  ],\n  \"torch_dtype\": \"bfloat16\"\n}\n");
	EDIT("{\n  \"a\": 1\n}\n", "bfloat16", "{\n  \"a\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
	EDIT("{\n\t\"a\": {\n\t\t\"b\": 2\n\t}\n}", "float32",
	     "{\n\t\"a\": {\n\t\t\"b\": 2\n\t},\n\t\"torch_dtype\": \"float32\"\n}");
	EDIT("{\"a\":1,\"b\":2}", "bfloat16", "{\"a\":1,\"b\":2,\"torch_dtype\":\"bfloat16\"}");
	EDIT("{\"a\":1}", "bfloat16", "{\"a\":1,\"torch_dtype\":\"bfloat16\"}");
	EDIT("{\"a\": 1}", "bfloat16", "{\"a\": 1, \"torch_dtype\": \"bfloat16\"}");
	EDIT("{\"a\": 1, \"b\": 2}", "bfloat16", "{\"a\": 1, \"b\": 2, \"torch_dtype\": \"bfloat16\"}");
	EDIT("{}", "bfloat16", "{\"torch_dtype\": \"bfloat16\"}");
	EDIT(" {\n}\n", "bfloat16", " {\"torch_dtype\": \"bfloat16\"\n}\n");

	/* One level down: rewritten where present, never added; deeper levels and arrays untouched. */
	EDIT("{\"text_config\": {\"torch_dtype\": \"float32\", \"n\": 1}, \"vision_config\": {\"x\": 1},"
	     " \"torch_dtype\": \"float32\"}",
	     "bfloat16",
	     "{\"text_config\": {\"torch_dtype\": \"bfloat16\", \"n\": 1}, \"vision_config\": {\"x\": 1},"
	     " \"torch_dtype\": \"bfloat16\"}");
	EDIT("{\n  \"text_config\": {\n    \"dtype\": null\n  }\n}", "bfloat16",
	     "{\n  \"text_config\": {\n    \"dtype\": \"bfloat16\"\n  },\n  \"torch_dtype\": \"bfloat16\"\n}");
	EDIT("{\"a\": {\"b\": {\"dtype\": \"float32\"}}, \"l\": [{\"dtype\": \"float32\"}], \"dtype\": \"float32\"}",
	     "float16",
	     "{\"a\": {\"b\": {\"dtype\": \"float32\"}}, \"l\": [{\"dtype\": \"float32\"}], \"dtype\": \"float16\"}");

	/* Escapes: "dtype" inside strings is text; an escaped key still names dtype. */
	EDIT("{\"name\": \"say \\\"dtype\\\": \\\"float32\\\", \\\\\", \"dtype\": \"float32\", \"n\": \"torch_dtype\"}",
	     "bfloat16",
	     "{\"name\": \"say \\\"dtype\\\": \\\"float32\\\", \\\\\", \"dtype\": \"bfloat16\", \"n\": \"torch_dtype\"}");
	EDIT("{\"d\\u0074ype\": \"float32\"}", "bfloat16", "{\"d\\u0074ype\": \"bfloat16\"}");
	/* Every character escaped: 68 bytes of key, still torch_dtype (also one level down). */
	EDIT("{\"\\u0074\\u006f\\u0072\\u0063\\u0068\\u005f\\u0064\\u0074\\u0079\\u0070\\u0065\": \"float32\", "
	     "\"t\": {\"\\u0074\\u006f\\u0072\\u0063\\u0068\\u005f\\u0064\\u0074\\u0079\\u0070\\u0065\": 1}}",
	     "bfloat16",
	     "{\"\\u0074\\u006f\\u0072\\u0063\\u0068\\u005f\\u0064\\u0074\\u0079\\u0070\\u0065\": \"bfloat16\", "
	     "\"t\": {\"\\u0074\\u006f\\u0072\\u0063\\u0068\\u005f\\u0064\\u0074\\u0079\\u0070\\u0065\": \"bfloat16\"}}");
	EDIT("{\"\\torch_dtype\": 1}", "bfloat16", "{\"\\torch_dtype\": 1, \"torch_dtype\": \"bfloat16\"}");
	EDIT("{\"dtypes\": \"float32\", \"u\": \"\\u00e9\\/\\b\"}", "bfloat16",
	     "{\"dtypes\": \"float32\", \"u\": \"\\u00e9\\/\\b\", \"torch_dtype\": \"bfloat16\"}");

	/* What Python's json writes and reads besides strict JSON. */
	EDIT("{\"a\": NaN, \"b\": -Infinity, \"c\": Infinity, \"d\": -0.5e+3, \"e\": true, \"f\": false}", "bfloat16",
	     "{\"a\": NaN, \"b\": -Infinity, \"c\": Infinity, \"d\": -0.5e+3, \"e\": true, \"f\": false,"
	     " \"torch_dtype\": \"bfloat16\"}");

	weld_error err = {0};
	char *out = NULL;
	size_t len = 0;
	CHECK_ERR(weld_config_set_dtype("{}", 2, "bf\"16", &out, &len, &err), WELD_ERR_INVALID_ARG, &err,
		  "invalid dtype name for config.json");
	CHECK(!out);
}

static void test_invalid_json(void)
{
	BAD("", "not a JSON object: unexpected end of text at byte 0");
	BAD(" \n", "not a JSON object: unexpected end of text at byte 2");
	BAD("[1]", "not a JSON object: the top-level value is not an object at byte 0");
	BAD("  \"dtype\"", "not a JSON object: the top-level value is not an object at byte 2");
	BAD("  {", "not a JSON object: unexpected end of text at byte 3");
	BAD("{\"a\" 1}", "not a JSON object: expected ':' at byte 5");
	BAD("{\"a\":1,}", "not a JSON object: expected a string key at byte 7");
	BAD("{a:1}", "not a JSON object: expected a string key at byte 1");
	BAD("{\"a\":1 \"b\":2}", "not a JSON object: expected ',' or '}' at byte 7");
	BAD("{\"a\":[1 2]}", "not a JSON object: expected ',' or ']' at byte 8");
	BAD("{\"a\":[1,", "not a JSON object: unexpected end of text at byte 8");
	BAD("{\"a\":1} x", "not a JSON object: trailing data after the object at byte 8");
	BAD("{\"a\":1}{}", "not a JSON object: trailing data after the object at byte 7");
	BAD("{\"a\":\"b\\q\"}", "not a JSON object: invalid escape at byte 7");
	BAD("{\"a\":\"\\u12g4\"}", "not a JSON object: invalid escape at byte 6");
	BAD("{\"a\":\"b", "not a JSON object: unterminated string at byte 5");
	BAD("{\"a\":\"b\\", "not a JSON object: unterminated string at byte 5");
	BAD("{\"a\":\"b\tc\"}", "not a JSON object: control character in string at byte 7");
	BAD("{\"a\":01}", "not a JSON object: expected ',' or '}' at byte 6");
	BAD("{\"a\":-}", "not a JSON object: invalid number at byte 5");
	BAD("{\"a\":1.}", "not a JSON object: invalid number at byte 5");
	BAD("{\"a\":1e}", "not a JSON object: invalid number at byte 5");
	BAD("{\"a\":tru}", "not a JSON object: invalid literal at byte 5");
	BAD("{\"a\":@}", "not a JSON object: unexpected character '@' at byte 5");
	BAD("{\"a\":\x01}", "not a JSON object: unexpected byte 0x01 at byte 5");
	BAD("\xef\xbb\xbf{}", "not a JSON object: the top-level value is not an object at byte 0");

	/* Nesting is bounded; 256 levels are fine, 257 are not. */
	char deep[600];
	size_t n = 0;
	deep[n++] = '{';
	deep[n++] = '"';
	deep[n++] = 'a';
	deep[n++] = '"';
	deep[n++] = ':';
	for (int i = 0; i < 256; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	BAD(deep, "not a JSON object: nesting deeper than 256 levels at byte 260");
	n--;
	for (int i = 0; i < 255; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	weld_error err = {0};
	char *out = NULL;
	size_t len = 0;
	CHECK_OK(weld_config_set_dtype(deep, n, "bfloat16", &out, &len, &err), &err);
	free(out);

	/* A NUL inside the given length is a byte like any other, not the end. */
	CHECK_ERR(weld_config_set_dtype("{}\0", 3, "bfloat16", &out, &len, &err), WELD_ERR_FORMAT, &err,
		  "not a JSON object: trailing data after the object at byte 2");
}

static void test_weight_names(void)
{
	static const char *const weights[] = {
		"model.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
		"pytorch_model.bin", "pytorch_model-00001-of-00009.bin", "pytorch_model.bin.index.json",
		"consolidated.safetensors", "consolidated-00001-of-00002.safetensors", "consolidated.00.pth",
		"optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state_3.pth", "training_args.bin",
		"model.ckpt", "tf_model.h5", "flax_model.msgpack", "flax_model.msgpack.index.json",
		"model-q4.gguf", "adapter_model.safetensors", ".safetensors"};
	static const char *const side[] = {
		"tokenizer.json", "config.json", "tokenizer.model", "vocab.json", "merges.txt",
		"special_tokens_map.json", "tokenizer_config.json", "generation_config.json",
		"chat_template.jinja", "chat_template.json", "added_tokens.json", "preprocessor_config.json",
		"model.safetensors.txt", "index.json", "safetensors", "model.SAFETENSORS", "weights.bin.bak",
		"README.md", "latest"};
	for (size_t i = 0; i < sizeof(weights) / sizeof(weights[0]); i++)
		if (!weld_is_weight_file(weights[i])) {
			fprintf(stderr, "%s should be a weight file\n", weights[i]);
			test_failures++;
		}
	for (size_t i = 0; i < sizeof(side) / sizeof(side[0]); i++)
		if (weld_is_weight_file(side[i])) {
			fprintf(stderr, "%s should not be a weight file\n", side[i]);
			test_failures++;
		}
}

static const char *const fp32_config = "{\n  \"dtype\": \"float32\",\n  \"model_type\": \"qwen2\"\n}\n";
static const char *const bf16_config = "{\n  \"dtype\": \"bfloat16\",\n  \"model_type\": \"qwen2\"\n}\n";

static void test_copy_side_files(const char *root)
{
	char *src = join(root, "ckpt");
	char *dst = join(root, "out");
	CHECK(mkdir(src, 0755) == 0 && mkdir(dst, 0755) == 0);
	put(src, "config.json", fp32_config);
	put(src, "tokenizer.json", "{\"version\": \"1.0\"}");
	put(src, "generation_config.json", "{\"do_sample\": true}\n");
	put(src, "chat_template.jinja", "{{ messages }}");
	put(src, "model-00001-of-00002.safetensors", "weights");
	put(src, "model.safetensors.index.json", "{}");
	put(src, "optimizer.pt", "state");
	put(src, "rng_state_0.pth", "state");
	put(src, "zero_to_fp32.py", "print()");
	put(src, "latest", "global_step5");
	put(src, "trainer_state.json", "{}");
	put(src, "weld.json", "{}");
	put(src, ".config.json.weld-tmp", "leftover");
	char *step = join(src, "global_step5");
	CHECK(mkdir(step, 0755) == 0);
	put(step, "mp_rank_00_model_states.json", "{}");
	/* HF cache snapshots link their files; a link to a folder is not a file. */
	char *link = join(src, "special_tokens_map.json");
	char *target = join(step, "mp_rank_00_model_states.json");
	CHECK(symlink(target, link) == 0);
	char *dlink = join(src, "step_link");
	CHECK(symlink(step, dlink) == 0);
	/* Over 64 MiB: left behind whatever its name (sparse, so it costs nothing). */
	char *big = join(src, "big_vocab.json");
	int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)65 << 20) == 0);
	close(fd);

	weld_error err = {0};
	char **copied = NULL;
	size_t n = 0;
	CHECK_OK(weld_copy_side_files(src, dst, "bfloat16", &copied, &n, &err), &err);
	const char *want[] = {"chat_template.jinja", "config.json", "generation_config.json",
			      "special_tokens_map.json", "tokenizer.json"};
	CHECK(n == 5);
	for (size_t i = 0; i < n && i < 5; i++)
		CHECK(strcmp(copied[i], want[i]) == 0);
	weld__free_strings(copied, n);
	CHECK(strcmp(listing(dst), "chat_template.jinja config.json generation_config.json "
				   "special_tokens_map.json tokenizer.json") == 0);
	CHECK(holds(dst, "config.json", bf16_config));
	CHECK(holds(dst, "tokenizer.json", "{\"version\": \"1.0\"}"));
	CHECK(holds(dst, "generation_config.json", "{\"do_sample\": true}\n"));
	CHECK(holds(dst, "chat_template.jinja", "{{ messages }}"));
	CHECK(holds(dst, "special_tokens_map.json", "{}"));
	CHECK(holds(src, "config.json", fp32_config));

	/* No dtype: config.json as it was; existing copies are replaced. */
	CHECK_OK(weld_copy_side_files(src, dst, NULL, &copied, &n, &err), &err);
	CHECK(n == 5);
	weld__free_strings(copied, n);
	CHECK(holds(dst, "config.json", fp32_config));

	/* A broken config.json: its path in the message, and no temporary file left. */
	put(src, "config.json", "{\"dtype\": \"float32\",}");
	char *src_config = join(src, "config.json");
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s: not a JSON object: expected a string key at byte 20", src_config);
	copied = (char **)1;
	CHECK_ERR(weld_copy_side_files(src, dst, "bfloat16", &copied, &n, &err), WELD_ERR_FORMAT, &err, msg);
	CHECK(!copied && n == 0);
	CHECK(!exists(dst, ".config.json.weld-tmp"));
	CHECK(holds(dst, "config.json", fp32_config));

	/* Converting in place must not touch the input's config, even through a link. */
	snprintf(msg, sizeof(msg), "%s: is the input folder %s itself; choose another output folder", src, src);
	CHECK_ERR(weld_copy_side_files(src, src, "bfloat16", &copied, &n, &err), WELD_ERR_INVALID_ARG, &err, msg);
	char *alias = join(root, "alias");
	CHECK(symlink(src, alias) == 0);
	snprintf(msg, sizeof(msg), "%s: is the input folder %s itself; choose another output folder", alias, src);
	CHECK_ERR(weld_copy_side_files(src, alias, "bfloat16", &copied, &n, &err), WELD_ERR_INVALID_ARG, &err,
		  msg);

	/* A dangling link is an error naming it, not a silently missing tokenizer. */
	put(src, "config.json", fp32_config);
	char *dangling = join(src, "tokenizer.model");
	CHECK(symlink("/nonexistent/weld/tokenizer.model", dangling) == 0);
	snprintf(msg, sizeof(msg), "%s: cannot stat: No such file or directory", dangling);
	CHECK_ERR(weld_copy_side_files(src, dst, NULL, &copied, &n, &err), WELD_ERR_IO, &err, msg);
	/* ... but a stale link of any other name (a shared folder's) is no side file: skipped. */
	CHECK(unlink(dangling) == 0);
	char *stale = join(src, "notes-from-last-week");
	CHECK(symlink("/nonexistent/weld/notes", stale) == 0);
	CHECK_OK(weld_copy_side_files(src, dst, NULL, &copied, &n, &err), &err);
	for (size_t i = 0; i < n; i++)
		CHECK(strcmp(copied[i], "notes-from-last-week") != 0);
	weld__free_strings(copied, n);
	copied = NULL;
	n = 0;
	CHECK(unlink(stale) == 0);
	free(stale);

	char *missing = join(root, "missing");
	snprintf(msg, sizeof(msg), "%s: cannot stat: No such file or directory", missing);
	CHECK_ERR(weld_copy_side_files(src, missing, NULL, &copied, &n, &err), WELD_ERR_IO, &err, msg);

	/* An empty folder copies nothing. */
	char *empty = join(root, "empty");
	CHECK(mkdir(empty, 0755) == 0);
	copied = (char **)1;
	CHECK_OK(weld_copy_side_files(empty, dst, NULL, &copied, &n, &err), &err);
	CHECK(!copied && n == 0);

	free(empty);
	free(missing);
	free(dangling);
	free(alias);
	free(src_config);
	free(big);
	free(dlink);
	free(target);
	free(link);
	free(step);
	free(src);
	free(dst);
}

int main(void)
{
	test_transformers_config();
	test_edits();
	test_invalid_json();
	test_weight_names();

	char root[] = "/tmp/weld_test_output_dir_XXXXXX";
	CHECK(mkdtemp(root) != NULL);
	test_copy_side_files(root);
	remove_tree(root);
	TEST_DONE();
}
