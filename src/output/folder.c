/* Creating and clearing the output folder (folder.h). */
#include "output/folder.h"

#include "output/atomic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool weld_is_weight_file(const char *name)
{
	/*
	 * By suffix, as vLLM and transformers glob: this covers shards,
	 * consolidated*.safetensors, every *.index.json, and the torch-saved
	 * training state (optimizer.pt, scheduler.pt, scaler.pt,
	 * rng_state*.pth, training_args.bin).
	 */
	static const char *const suffixes[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
					       ".h5", ".msgpack", ".gguf", ".index.json"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (weld__has_suffix(name, suffixes[i]))
			return true;
	return false;
}

/* mkdir -p DIR with mode 0755; components that already exist as folders are fine. */
static weld_status make_dirs(const char *dir, weld_error *err)
{
	char *p = weld__strdup(dir);
	if (!p)
		return weld__nomem(err);
	weld_status st = WELD_OK;
	for (char *c = p + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char saved = *c;
		*c = '\0';
		struct stat sb;
		if (mkdir(p, 0755) != 0) {
			int e = errno;
			if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
				st = weld__fail(err, WELD_ERR_IO, "%s: cannot create folder: %s", p,
						strerror(e == EEXIST ? ENOTDIR : e));
				break;
			}
		}
		*c = saved;
		if (saved == '\0')
			break;
	}
	free(p);
	return st;
}

static weld_status remove_file(const char *dir, const char *name, weld_error *err)
{
	char *path = weld__path_join(dir, name);
	if (!path)
		return weld__nomem(err);
	weld_status st = WELD_OK;
	if (unlink(path) != 0 && errno != ENOENT)
		st = weld__fail(err, WELD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
	free(path);
	return st;
}

weld_status weld_output_dir_prepare(const char *dir, const char *keep, bool force, weld_error *err)
{
	if (!dir || !*dir)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "empty output folder name");
	weld_status st = make_dirs(dir, err);
	char **names = NULL;
	size_t n = 0;
	if (!st)
		st = weld__list_dir(dir, &names, &n, err);
	/* Refuse before touching anything, so an error leaves the folder as it was. */
	for (size_t i = 0; !st && i < n && !force; i++)
		if (weld_is_weight_file(names[i]) || (keep && strcmp(names[i], keep) == 0))
			st = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: already holds %s; use --force to replace it", dir,
					names[i]);
	for (size_t i = 0; !st && i < n; i++) {
		bool stale = force && weld_is_weight_file(names[i]) && !(keep && strcmp(names[i], keep) == 0);
		if (stale || weld__is_temp_name(names[i]))
			st = remove_file(dir, names[i], err);
	}
	weld__free_strings(names, n);
	return st;
}
