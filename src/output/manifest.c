/* weld.json: what was written, with checksums a verifier can recompute (manifest.h). */
#define _DEFAULT_SOURCE /* realpath */
#include "output/manifest.h"

#include "output/atomic.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ITEM added to TO (under KEY, or appended when KEY is NULL); *OK false and ITEM freed when that fails. */
static void put(cJSON *to, const char *key, cJSON *item, bool *ok)
{
	bool added = item && to && (key ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item));
	if (!added) {
		cJSON_Delete(item);
		*ok = false;
	}
}

static void put_str(cJSON *to, const char *key, const char *s, bool *ok)
{
	put(to, key, cJSON_CreateString(s), ok);
}

/* V as an exact integer (a raw decimal: a cJSON number is a double, inexact past 2^53). */
static void put_u64(cJSON *to, const char *key, uint64_t v, bool *ok)
{
	char text[24];
	snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
	put(to, key, cJSON_CreateRaw(text), ok);
}

static cJSON *tensor_entry(const weld_plan_tensor *t, uint32_t crc, const char *file, bool *ok)
{
	cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
	put_str(e, "name", t->name, ok);
	put_str(e, "dtype", weld_dtype_name(t->dtype), ok);
	for (size_t d = 0; d < t->ndim; d++)
		put_u64(shape, NULL, t->shape[d], ok);
	put(e, "shape", shape, ok);
	put_u64(e, "offset", t->offset, ok);
	put_u64(e, "bytes", t->nbytes, ok);
	put_u64(e, "crc32", crc, ok);
	if (file)
		put_str(e, "file", file, ok);
	return e;
}

/* "cross_check": what the HF 16-bit copy beside the masters said of them. */
static cJSON *cross_check_entry(const weld_cross_check *x, bool *ok)
{
	cJSON *e = cJSON_CreateObject();
	put_str(e, "result", weld_cross_check_result_name(x->result), ok);
	put_str(e, "against", x->against, ok);
	put_u64(e, "compared", x->compared, ok);
	put_u64(e, "differing", x->differing, ok);
	put_u64(e, "placeholders", x->placeholders, ok);
	put_u64(e, "not_compared", x->not_compared, ok);
	put_u64(e, "missing", x->missing, ok);
	put(e, "first_difference", x->first_difference[0] ? cJSON_CreateString(x->first_difference) : cJSON_CreateNull(),
	    ok);
	put_str(e, "summary", x->summary, ok);
	return e;
}

static cJSON *build(const weld_plan *p, const weld_manifest_info *info, bool *ok)
{
	cJSON *o = cJSON_CreateObject(), *files = cJSON_CreateArray();
	cJSON *tensors = cJSON_CreateArray(), *tied = cJSON_CreateObject(), *side = cJSON_CreateArray();
	put_str(o, "tool", "weld", ok);
	put_str(o, "version", weld_version(), ok);
	put_str(o, "source", info->source, ok);
	/*
	 * "source" is the path as given, relative or through links, so two
	 * runs' inputs may record the same one. Resolved, it tells batch
	 * --skip-existing an output of this input from another run's under the
	 * same name; null when it does not resolve (no input is then taken
	 * for this output's).
	 */
	char real[PATH_MAX];
	const char *resolved = info->source_path ? info->source_path : realpath(info->source, real);
	put(o, "source_path", resolved ? cJSON_CreateString(resolved) : cJSON_CreateNull(), ok);
	put_str(o, "source_format", info->source_format, ok);
	put_str(o, "dtype", info->dtype, ok);
	if (info->index_file)
		put_str(o, "index", info->index_file, ok);
	for (size_t k = 0; k < info->nfiles; k++) {
		cJSON *f = cJSON_CreateObject();
		size_t count = 0;
		for (size_t i = 0; i < p->nt; i++)
			count += p->t[i].file == k;
		put_str(f, "name", info->files[k].name, ok);
		put_u64(f, "size", info->files[k].size, ok);
		put_u64(f, "crc32", info->file_crcs[k], ok);
		put_u64(f, "tensor_count", count, ok);
		put(files, NULL, f, ok);
	}
	put(o, "files", files, ok);
	/* One file: no "file" per tensor, so that an unsharded weld.json reads as it always has. */
	for (size_t i = 0; i < p->nt; i++)
		put(tensors, NULL,
		    tensor_entry(&p->t[i], info->tensor_crcs[i], info->nfiles > 1 ? info->files[p->t[i].file].name : NULL, ok),
		    ok);
	put(o, "tensors", tensors, ok);
	for (size_t i = 0; i < p->nalias; i++)
		put_str(tied, p->alias[i].name, p->alias[i].owner, ok);
	put(o, "tied", tied, ok);
	put_str(o, "stripped_prefix", p->stripped_prefix, ok);
	put_u64(o, "fp16_overflows", info->fp16_overflows, ok);
	for (size_t i = 0; i < info->nside; i++)
		put_str(side, NULL, info->side_files[i], ok);
	put(o, "side_files", side, ok);
	if (info->choice_note)
		put_str(o, "source_choice", info->choice_note, ok);
	if (info->cross_check && info->cross_check->result != WELD_CROSS_CHECK_NONE)
		put(o, "cross_check", cross_check_entry(info->cross_check, ok), ok);
	return o;
}

weld_status weld_manifest_write(const char *dir, const weld_plan *p, const weld_manifest_info *info,
				weld_error *err)
{
	bool ok = true;
	cJSON *o = build(p, info, &ok);
	char *text = ok ? cJSON_Print(o) : NULL;
	cJSON_Delete(o);
	if (!text)
		return weld__nomem(err);
	size_t n = strlen(text);
	char *withnl = realloc(text, n + 2);
	if (!withnl) {
		free(text);
		return weld__nomem(err);
	}
	withnl[n] = '\n';
	withnl[n + 1] = '\0';
	weld_status s = weld__write_file_atomic(dir, WELD_MANIFEST_NAME, withnl, n + 1, err);
	free(withnl);
	return s;
}

/*
 * N as a whole number: in 0..2^53, what a double holds exactly, or a raw
 * node of digits past that (weld__read_json_file_exact), up to 2^64-1.
 * Checked before the conversion, which is undefined for a double past 2^64.
 */
static bool json_whole(const cJSON *n, uint64_t *out)
{
	if (cJSON_IsRaw(n)) {
		const char *d = n->valuestring;
		uint64_t v = 0;
		if (!d || !*d)
			return false;
		for (; *d; d++)
			if (*d < '0' || *d > '9' || !weld__mul_u64(&v, v, 10) || !weld__add_u64(&v, v, (uint64_t)(*d - '0')))
				return false;
		*out = v;
		return true;
	}
	if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > 9007199254740992.0 ||
	    (double)(uint64_t)n->valuedouble != n->valuedouble)
		return false;
	*out = (uint64_t)n->valuedouble;
	return true;
}

/* KEY of O as a whole number (json_whole). */
static bool json_u64(const cJSON *o, const char *key, uint64_t *out)
{
	return json_whole(cJSON_GetObjectItemCaseSensitive(o, key), out);
}

static bool json_crc(const cJSON *o, const char *key, uint32_t *out)
{
	uint64_t v;
	if (!json_u64(o, key, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* One entry of "tensors"; false when a field is missing or malformed. */
static bool read_tensor(const cJSON *t, weld_manifest_tensor *out)
{
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape"), *d;
	out->name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
	out->dtype = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "dtype"));
	if (!out->name || !out->dtype || !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > WELD_MAX_DIMS ||
	    !json_u64(t, "offset", &out->offset) || !json_u64(t, "bytes", &out->bytes) || !json_crc(t, "crc32", &out->crc32))
		return false;
	out->ndim = 0;
	cJSON_ArrayForEach(d, shape)
	{
		if (!json_whole(d, &out->shape[out->ndim++]))
			return false;
	}
	return true;
}

/* A plain file name in DIR: no folder part, nothing that leaves it. */
static bool plain_name(const char *name)
{
	return name && *name && !strchr(name, '/') && strcmp(name, "..") != 0 && strcmp(name, ".") != 0;
}

/* The weights files, each with a name, size and CRC-32; the index when sharded. */
static weld_status read_file_entries(weld_manifest *m, const char *path, weld_error *err)
{
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(m->json, "files"), *file;
	size_t n = cJSON_IsArray(files) ? (size_t)cJSON_GetArraySize(files) : 0;
	if (n == 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: files[0] has no file name", path);
	if (!(m->files = weld__calloc(n, sizeof(*m->files))))
		return weld__nomem(err);
	cJSON_ArrayForEach(file, files)
	{
		weld_manifest_file *f = &m->files[m->nfiles];
		f->name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(file, "name"));
		if (!plain_name(f->name))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: files[%zu] has no file name", path, m->nfiles);
		if (!json_u64(file, "size", &f->size) || !json_crc(file, "crc32", &f->crc32))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: files[%zu] has no size or crc32", path, m->nfiles);
		m->nfiles++;
	}
	const cJSON *index = cJSON_GetObjectItemCaseSensitive(m->json, "index");
	m->weights = m->files[0].name;
	if (index && !plain_name(m->weights = cJSON_GetStringValue(index)))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: \"index\" is not a file name", path);
	m->source_path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m->json, "source_path"));
	/* The tensor count is the sum over the files (one file: its own). */
	uint64_t count;
	m->has_tensor_count = true;
	m->tensor_count = 0;
	cJSON_ArrayForEach(file, files)
	{
		m->has_tensor_count &= json_u64(file, "tensor_count", &count);
		m->tensor_count += m->has_tensor_count ? count : 0;
	}
	return WELD_OK;
}

/* Which of the files tensor entry T names: the only one, or its "file". */
static bool tensor_file(const weld_manifest *m, const cJSON *t, size_t *out)
{
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "file"));
	*out = 0;
	if (!name)
		return m->nfiles == 1;
	for (size_t k = 0; k < m->nfiles; k++)
		if (strcmp(m->files[k].name, name) == 0) {
			*out = k;
			return true;
		}
	return false;
}

static weld_status read_tensors(weld_manifest *m, const char *path, weld_error *err)
{
	const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(m->json, "tensors"), *t;
	if (!cJSON_IsArray(tensors))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: no \"tensors\" list", path);
	size_t n = (size_t)cJSON_GetArraySize(tensors);
	if (!(m->tensors = weld__calloc(n ? n : 1, sizeof(*m->tensors))))
		return weld__nomem(err);
	cJSON_ArrayForEach(t, tensors)
	{
		if (!read_tensor(t, &m->tensors[m->ntensors]))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: tensors[%zu] lacks a name, dtype, shape, offset, bytes or crc32",
					  path, m->ntensors);
		if (!tensor_file(m, t, &m->tensors[m->ntensors].file))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: tensors[%zu] names no file that files lists", path,
					  m->ntensors);
		m->ntensors++;
	}
	return WELD_OK;
}

static weld_status read_ties(weld_manifest *m, weld_error *err)
{
	const cJSON *tied = cJSON_GetObjectItemCaseSensitive(m->json, "tied"), *a;
	if (!cJSON_IsObject(tied))
		return WELD_OK;
	size_t n = (size_t)cJSON_GetArraySize(tied);
	if (!(m->ties = weld__calloc(n ? n : 1, sizeof(*m->ties))))
		return weld__nomem(err);
	cJSON_ArrayForEach(a, tied) m->ties[m->nties++] = (weld_manifest_tie){a->string, cJSON_GetStringValue(a)};
	return WELD_OK;
}

weld_status weld_manifest_read(const char *dir, weld_manifest **out, weld_error *err)
{
	*out = NULL;
	char *path = weld__path_join(dir, WELD_MANIFEST_NAME);
	weld_manifest *m = calloc(1, sizeof(*m));
	weld_status s = path && m ? weld__read_json_file_exact(path, WELD_SIDE_FILE_MAX, &m->json, err) : weld__nomem(err);
	if (!s)
		s = read_file_entries(m, path, err);
	if (!s)
		s = read_tensors(m, path, err);
	if (!s)
		s = read_ties(m, err);
	free(path);
	if (s) {
		weld_manifest_free(m);
		return s;
	}
	*out = m;
	return WELD_OK;
}

void weld_manifest_free(weld_manifest *m)
{
	if (!m)
		return;
	cJSON_Delete(m->json);
	free(m->files);
	free(m->tensors);
	free(m->ties);
	free(m);
}
