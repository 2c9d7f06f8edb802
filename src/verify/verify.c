/*
 * weld_verify: is an output folder intact and servable, and (with a source)
 * is every tensor exactly the source cast to its dtype? Each finding is one
 * PASS / WARN / FAIL line of the report, in the order: what is there, is it
 * intact (integrity.c), is it servable (servable.c, shapes.c), is it the
 * source (against.c). Only a folder that cannot be examined at all is an error.
 */
#include "verify/verify.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Passes over a folder that keeps being replaced before the last one is reported as it is. */
#define VERIFY_PASSES 5

void weld_verify_report_free(weld_verify_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ndiffs; i++)
		free(r->diffs[i].name);
	free(r->diffs);
	free(r->checks);
	free(r);
}

/* Regular, non-hidden files directly in DIR, sorted. */
static weld_status list_files(weld_verifier *v, weld_error *err)
{
	char **names;
	size_t n;
	weld_status s = weld__list_dir(v->dir, &names, &n, err);
	if (s)
		return s;
	for (size_t i = 0; i < n; i++) {
		char *path = names[i][0] == '.' ? NULL : weld__path_join(v->dir, names[i]);
		if (path && weld__is_file(path))
			names[v->nfiles++] = names[i];
		else
			free(names[i]);
		free(path);
	}
	v->files = names;
	return WELD_OK;
}

/* The backend that recomputes CRC-32s and norms; when CUDA is not used after all, the notice says why. */
static weld_status open_backend(weld_verifier *v, weld_device device, weld_error *err)
{
	weld_verify_report *r = v->r;
	char why[sizeof(r->notice)];
	weld_status s = weld_backend_open(&v->b, device, why, sizeof(why), err);
	if (!s && why[0])
		snprintf(r->notice, sizeof(r->notice), "CUDA not used (%s); verifying on the CPU", why);
	if (!s)
		snprintf(r->device, sizeof(r->device), "%s", weld_backend_name(v->b));
	return s;
}

/* Every check, in report order; stops only on errors that are not findings (out of memory). */
static weld_status run_checks(weld_verifier *v, const char *against, weld_error *err)
{
	weld__vf_load_manifest(v);
	weld_status s = weld__vf_open_output(v, err);
	if (!s)
		s = weld__vf_check_weight_files(v, err);
	if (!s && v->out)
		s = weld__vf_check_index(v, err);
	if (!s && v->manifest_why[0])
		weld__vf_check(v->r, "manifest", v->manifest_level, "%s", v->manifest_why);
	else if (!s && v->out)
		weld__vf_check_manifest_tensors(v);
	if (!s && v->manifest)
		s = weld__vf_check_size_and_crcs(v, err);
	if (!s)
		s = weld__vf_check_leftovers(v, err);
	if (!s && v->manifest)
		weld__vf_check_cross_check(v);
	if (!s)
		weld__vf_check_config(v);
	if (!s && v->out && v->config)
		weld__vf_check_config_dtype(v);
	if (!s && v->out && v->config)
		s = weld__vf_check_config_shapes(v, err);
	if (!s && v->out)
		s = weld__vf_check_one_format(v, err);
	if (!s && v->out)
		weld__vf_check_prefix(v);
	if (!s && v->out)
		s = weld__vf_check_tied(v, err);
	if (!s)
		weld__vf_check_tokenizer(v);
	if (!s && v->out)
		s = weld__vf_check_metadata(v, err);
	if (!s && against && v->out)
		s = weld__vf_check_against(v, against, err);
	else if (!s && against)
		weld__vf_check(v->r, "against_names", WELD_CHECK_FAIL,
			       "not compared with %s: the output's weights could not be read", against);
	return s;
}

/* One pass of every check over DIR into a new report *OUT. */
static weld_status verify_once(const char *dir, const char *against, weld_device device, weld_verify_report **out,
			       weld_error *err)
{
	weld_verifier v = {.dir = dir, .tie = -1};
	weld_verify_report *r = calloc(1, sizeof(*r));
	if (!r || !(r->checks = weld__calloc(WELD_VERIFY_MAX_CHECKS, sizeof(*r->checks)))) {
		free(r);
		return weld__nomem(err);
	}
	v.r = r;
	weld_status s = open_backend(&v, device, err);
	if (!s)
		s = list_files(&v, err);
	if (!s)
		s = run_checks(&v, against, err);
	for (size_t i = 0; i < r->nchecks; i++) {
		r->passed += r->checks[i].level == WELD_CHECK_PASS;
		r->warnings += r->checks[i].level == WELD_CHECK_WARN;
		r->failed += r->checks[i].level == WELD_CHECK_FAIL;
	}
	weld_backend_close(v.b);
	weld_ckpt_free(v.out);
	free(v.by_name);
	weld_manifest_free(v.manifest);
	cJSON_Delete(v.config);
	weld__free_strings(v.files, v.nfiles);
	if (s) {
		weld_verify_report_free(r);
		return s;
	}
	*out = r;
	return WELD_OK;
}

/* DIR's identity: a conversion with --force swaps a new folder in under the same name. */
static bool same_folder(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

weld_status weld_verify(const char *dir, const char *against, weld_device device, weld_verify_report **out,
			weld_error *err)
{
	weld_error scratch = {0};
	if (!err)
		err = &scratch;
	if (!out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_verify: no place for the report");
	*out = NULL;
	if (!dir || !*dir)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_verify: no folder given");
	/*
	 * A folder replaced while its files were read may have been seen half
	 * old, half new: read it again. The descriptor held on the folder keeps
	 * its inode in use, so a new folder cannot get its number meanwhile.
	 */
	for (int pass = 1;; pass++) {
		struct stat before, after;
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &before) != 0) {
			if (fd >= 0)
				close(fd);
			return weld__fail(err, WELD_ERR_IO, "%s: no such folder", dir);
		}
		weld_status s = verify_once(dir, against, device, out, err);
		bool replaced = !s && stat(dir, &after) == 0 && !same_folder(&before, &after);
		close(fd);
		if (!replaced || pass == VERIFY_PASSES)
			return s;
		weld_verify_report_free(*out);
		*out = NULL;
	}
}
