/*
 * Side files copied into the output (side_files.h), each written under a
 * temporary name, fsynced and renamed (output/atomic.c), so an interrupted
 * run never leaves a half-written tokenizer beside the weights.
 */
#define _DEFAULT_SOURCE /* lstat, S_ISLNK */
#include "output/side_files.h"

#include "output/atomic.h"
#include "output/config_json.h"
#include "output/folder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Buffer of the copy loop. */
#define COPY_CHUNK ((size_t)1 << 20)

/* Training state and tooling that is not a weight file by name but must not be served. */
static bool is_training_file(const char *name)
{
	static const char *const names[] = {"latest", "latest_universal", "trainer_state.json", "weld.json"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return weld__has_suffix(name, ".py");
}

/* config.json at SRC (read whole, bounded in case it grew since it was listed), DTYPE set, into OUT. */
static weld_status copy_config(const char *src, weld_atomic *out, const char *dtype, weld_error *err)
{
	char *text = NULL, *edited = NULL;
	size_t n, edited_len;
	weld_status st = weld__read_small_file(src, WELD_SIDE_FILE_MAX, &text, &n, err);
	if (!st && (st = weld_config_set_dtype(text, n, dtype, &edited, &edited_len, err)))
		weld__prefix(err, "%s", src);
	if (!st)
		st = weld__atomic_append(out, edited, edited_len, err);
	free(text);
	free(edited);
	return st;
}

static weld_status copy_bytes(const char *src, weld_atomic *out, weld_error *err)
{
	weld_file *in = NULL;
	uint8_t *buf = malloc(COPY_CHUNK);
	weld_status st = buf ? weld_file_open(&in, src, err) : weld__nomem(err);
	for (uint64_t at = 0; !st && at < in->size;) {
		size_t k = in->size - at < COPY_CHUNK ? (size_t)(in->size - at) : COPY_CHUNK;
		if (!(st = weld_file_pread(in, buf, k, at, err)))
			st = weld__atomic_append(out, buf, k, err);
		at += k;
	}
	weld_file_close(in);
	free(buf);
	return st;
}

/* SRC_DIR/NAME -> DST_DIR/NAME, atomically. */
static weld_status copy_one(const char *src_dir, const char *dst_dir, const char *name, const char *dtype,
			    weld_error *err)
{
	char *src = weld__path_join(src_dir, name);
	weld_atomic out;
	weld_status st = src ? weld__atomic_create(&out, dst_dir, name, err) : weld__nomem(err);
	if (!st) {
		if (dtype && strcmp(name, "config.json") == 0)
			st = copy_config(src, &out, dtype, err);
		else
			st = copy_bytes(src, &out, err);
		if (st)
			weld__atomic_abort(&out);
		else
			st = weld__atomic_commit(&out, err);
	}
	free(src);
	return st;
}

/* Names of the files a served model needs beside its weights (config, tokenizer, templates). */
static bool model_file_name(const char *name)
{
	static const char *const prefixes[] = {"config",		"generation_config", "tokenizer",
					       "special_tokens_map",	"added_tokens",	     "vocab",
					       "merges",		"chat_template",     "preprocessor_config"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* Whether SRC_DIR/NAME is a side file to copy; symlinks are followed (HF cache snapshots). */
static weld_status is_side_file(const char *src_dir, const char *name, bool *yes, weld_error *err)
{
	*yes = false;
	if (weld_is_weight_file(name) || is_training_file(name) || weld__is_temp_name(name))
		return WELD_OK;
	char *path = weld__path_join(src_dir, name);
	if (!path)
		return weld__nomem(err);
	struct stat st;
	weld_status s = WELD_OK;
	int e = stat(path, &st) != 0 ? errno : 0;
	/*
	 * A link to nothing is an error when its name is one a model needs (an HF
	 * cache snapshot missing a blob: better no output than one without its
	 * tokenizer); any other (a stale link in a shared folder) is skipped.
	 */
	bool stale = (e == ENOENT || e == ELOOP) && lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
	if (e && !(stale && !model_file_name(name)))
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
	else if (!e)
		*yes = S_ISREG(st.st_mode) && (uint64_t)st.st_size <= WELD_SIDE_FILE_MAX;
	free(path);
	return s;
}

/* Writing into the input folder would overwrite the input's own config.json. */
static weld_status check_folders(const char *src_dir, const char *dst_dir, weld_error *err)
{
	struct stat s, d;
	if (stat(src_dir, &s) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", src_dir, strerror(errno));
	if (stat(dst_dir, &d) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", dst_dir, strerror(errno));
	if (s.st_dev == d.st_dev && s.st_ino == d.st_ino)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: is the input folder %s itself; choose another output folder",
				  dst_dir, src_dir);
	return WELD_OK;
}

weld_status weld_copy_side_files(const char *src_dir, const char *dst_dir, const char *dtype, char ***copied,
				 size_t *ncopied, weld_error *err)
{
	char **names = NULL;
	size_t n = 0, kept = 0;
	*copied = NULL;
	*ncopied = 0;
	weld_status st = check_folders(src_dir, dst_dir, err);
	if (!st)
		st = weld__list_dir(src_dir, &names, &n, err);
	/* Entries that are not copied are freed; copied ones move down into the result. */
	for (size_t i = 0; i < n; i++) {
		bool yes = false;
		if (!st)
			st = is_side_file(src_dir, names[i], &yes, err);
		if (!st && yes)
			st = copy_one(src_dir, dst_dir, names[i], dtype, err);
		if (!st && yes)
			names[kept++] = names[i];
		else
			free(names[i]);
	}
	if (st || kept == 0) {
		weld__free_strings(names, st ? kept : 0);
		return st;
	}
	*copied = names;
	*ncopied = kept;
	return WELD_OK;
}
