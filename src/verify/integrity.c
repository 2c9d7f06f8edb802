/*
 * Is the output intact? The format and its totals, every weight file valid
 * under the reference rules, weld.json describing the weights, the size
 * and CRC-32s weld.json records, recomputed, and nothing an interrupted
 * conversion left. Also weld_output_intact and weld_output_intact_from, the
 * quick form of the same that batch --skip-existing uses.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "verify/verify.h"

#include "io/safetensors.h"
#include "output/target.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void weld__vf_load_manifest(weld_verifier *v)
{
	char *path = weld__path_join(v->dir, WELD_MANIFEST_NAME);
	bool there = path && weld__is_file(path);
	free(path);
	if (!there) {
		v->manifest_level = WELD_CHECK_WARN;
		snprintf(v->manifest_why, sizeof(v->manifest_why),
			 "no weld.json: not written by weld convert; sizes and CRC-32s not checked");
		return;
	}
	weld_error e = {0};
	if (weld_manifest_read(v->dir, &v->manifest, &e)) {
		v->manifest_level = WELD_CHECK_FAIL;
		snprintf(v->manifest_why, sizeof(v->manifest_why), "%s", weld__vf_in_dir(v, e.message));
	}
}

/* What verify calls an output format, and its weights file when it is one file. */
static const char *servable_label(weld_format f, const char **index)
{
	static const struct {
		weld_format format;
		const char *label, *index;
	} servable[] = {
		{WELD_FORMAT_SAFETENSORS, "safetensors", NULL},
		{WELD_FORMAT_SAFETENSORS_SHARDED, "safetensors", "model.safetensors.index.json"},
		{WELD_FORMAT_TORCH_ZIP, "pytorch-bin", NULL},
		{WELD_FORMAT_TORCH_LEGACY, "pytorch-bin", NULL},
		{WELD_FORMAT_TORCH_SHARDED, "pytorch-bin", "pytorch_model.bin.index.json"},
	};
	for (size_t i = 0; i < sizeof(servable) / sizeof(servable[0]); i++)
		if (servable[i].format == f) {
			*index = servable[i].index;
			return servable[i].label;
		}
	return NULL;
}

/* The report's totals and the by-name index of the output's tensors. */
static weld_status count_tensors(weld_verifier *v, bool *overflow, weld_error *err)
{
	weld_verify_report *r = v->r;
	size_t n = weld_ckpt_tensor_count(v->out);
	if (!(v->by_name = weld__calloc(n ? n : 1, sizeof(*v->by_name))))
		return weld__nomem(err);
	*overflow = false;
	for (size_t i = 0; i < n; i++) {
		const ckpt_tensor *t = &v->out->t[i];
		v->by_name[v->nby++] = (weld_vf_name){t->name, i};
		if (t->alias_of) {
			r->tied++;
			continue;
		}
		r->tensors++;
		*overflow |= !weld__add_u64(&r->parameters, r->parameters, t->numel) ||
			     !weld__add_u64(&r->bytes, r->bytes, t->nbytes);
	}
	qsort(v->by_name, v->nby, sizeof(*v->by_name), weld__vf_cmp_name);
	if (v->manifest)
		r->tied += v->manifest->nties;
	return WELD_OK;
}

/* Open the weights: the one file weld.json names, else whatever weld_ckpt_open finds in DIR. */
weld_status weld__vf_open_output(weld_verifier *v, weld_error *err)
{
	weld_verify_report *r = v->r;
	weld_error e = {0};
	/* Shards are read through their index, as loaders read them: the folder is opened. */
	bool one_file = v->manifest && v->manifest->nfiles == 1;
	char *path = one_file ? weld__path_join(v->dir, v->manifest->weights) : weld__strdup(v->dir);
	weld_status s = path ? weld_ckpt_open(&v->out, path, &e) : WELD_ERR_NOMEM;
	free(path);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		weld__vf_check(r, "format", WELD_CHECK_FAIL, "%s", e.message);
		return WELD_OK;
	}
	const char *index = NULL, *label = servable_label(weld_ckpt_format(v->out), &index);
	if (!label) {
		weld__vf_check(r, "format", WELD_CHECK_FAIL, "the folder holds a %s checkpoint, not servable weights",
			       weld_format_name(weld_ckpt_format(v->out)));
		weld_ckpt_free(v->out);
		v->out = NULL;
		return WELD_OK;
	}
	snprintf(r->format, sizeof(r->format), "%s", label);
	snprintf(r->weights_file, sizeof(r->weights_file), "%s",
		 index ? index : weld__vf_base_name(weld_ckpt_file(v->out, 0)));
	bool overflow = false;
	if ((s = count_tensors(v, &overflow, err)))
		return s;
	char files[64] = "", tied_n[64] = "";
	if (weld_ckpt_file_count(v->out) > 1)
		snprintf(files, sizeof(files), " (%zu files)", weld_ckpt_file_count(v->out));
	if (r->tied)
		snprintf(tied_n, sizeof(tied_n), " (+ %llu tied alias%s)", (unsigned long long)r->tied,
			 r->tied == 1 ? "" : "es");
	weld__vf_check(r, "format", overflow ? WELD_CHECK_FAIL : WELD_CHECK_PASS,
		       "%s: %s%s, %llu tensors%s, %llu parameters, %llu tensor bytes%s", label, r->weights_file, files,
		       (unsigned long long)r->tensors, tied_n, (unsigned long long)r->parameters,
		       (unsigned long long)r->bytes, overflow ? ": totals overflow" : "");
	return WELD_OK;
}

/*
 * The reference rules take any 64-bit dimension, but torch (and numpy) hold
 * sizes as int64 and refuse a larger one; with another dimension 0 such a
 * tensor even passes the size checks. Overflowing element counts and byte
 * sizes the reader already refuses.
 */
static weld_status dims_loadable(const weld_st_header *h, const char *path, weld_error *e)
{
	for (size_t i = 0; i < h->ntensors; i++)
		for (size_t d = 0; d < h->tensors[i].ndim; d++) {
			if (h->tensors[i].shape[d] <= (uint64_t)INT64_MAX)
				continue;
			char nb[WELD_ST_SHOW_BUF];
			return weld__fail(e, WELD_ERR_FORMAT,
					  "%s: tensor '%s': shape[%zu] is %llu, above 2^63 - 1: torch cannot load it", path,
					  weld__st_show(nb, h->tensors[i].name), d, (unsigned long long)h->tensors[i].shape[d]);
		}
	return WELD_OK;
}

/* Whether the weight file PATH is loadable: safetensors under the reference rules and torch's, else a torch file. */
static weld_status weight_file_valid(const char *path, bool st, weld_error *e)
{
	if (!st) {
		weld_ckpt *c = NULL;
		weld_status s = weld_ckpt_open(&c, path, e);
		weld_ckpt_free(c);
		return s;
	}
	weld_file *f = NULL;
	weld_st_header h = {0};
	weld_status s = weld_file_open(&f, path, e);
	if (!s)
		s = weld_st_read_header(&h, f, e); /* its messages name the file */
	if (!s)
		s = dims_loadable(&h, path, e);
	weld_st_header_clear(&h);
	weld_file_close(f);
	return s;
}

/* Every .safetensors and .bin file in DIR parses under the reference rules. */
weld_status weld__vf_check_weight_files(weld_verifier *v, weld_error *err)
{
	const char *ok[WELD_VERIFY_LIST_MAX + 1];
	size_t nok = 0, nbad = 0, total = 0;
	char first_bad[WELD_CHECK_DETAIL_MAX] = "";
	for (size_t i = 0; i < v->nfiles; i++) {
		const char *name = v->files[i];
		bool st = weld__has_suffix(name, ".safetensors");
		if (!st && !weld__has_suffix(name, ".bin"))
			continue;
		total++;
		char *path = weld__path_join(v->dir, name);
		weld_error e = {0};
		weld_status s = path ? weight_file_valid(path, st, &e) : WELD_ERR_NOMEM;
		free(path);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s && !nbad++)
			weld__vf_appendf(first_bad, sizeof(first_bad), "%s", e.message);
		else if (!s && nok < WELD_VERIFY_LIST_MAX + 1)
			ok[nok++] = name;
	}
	if (total == 0) {
		weld__vf_check(v->r, "weights", WELD_CHECK_FAIL, "no .safetensors or .bin file in the folder");
	} else if (nbad) {
		if (nbad > 1)
			weld__vf_appendf(first_bad, sizeof(first_bad), " (and %zu more invalid)", nbad - 1);
		weld__vf_check(v->r, "weights", WELD_CHECK_FAIL, "%s", first_bad);
	} else {
		char names[WELD_CHECK_DETAIL_MAX] = "";
		for (size_t i = 0; i < nok && i < WELD_VERIFY_LIST_MAX; i++)
			weld__vf_appendf(names, sizeof(names), "%s%s", i ? ", " : "", ok[i]);
		if (total > WELD_VERIFY_LIST_MAX)
			weld__vf_appendf(names, sizeof(names), " and %zu more", total - WELD_VERIFY_LIST_MAX);
		weld__vf_check(v->r, "weights", WELD_CHECK_PASS, "%zu weight file%s valid: %s", total,
			       total == 1 ? "" : "s", names);
	}
	return WELD_OK;
}

/* Manifest entry M against the weights' own header; the first disagreement goes into FIRST. */
static bool entry_agrees(const weld_verifier *v, const weld_manifest_tensor *m, char *first, size_t cap)
{
	size_t i = weld__vf_find_out(v, m->name);
	if (i == SIZE_MAX) {
		snprintf(first, cap, "weld.json lists '%s', which %s lacks", m->name, v->manifest->weights);
		return false;
	}
	const ckpt_tensor *o = &v->out->t[i];
	weld_file *f = NULL;
	uint64_t where = UINT64_MAX;
	/* Only a tensor stored as one run has an offset to compare; that is every one weld writes. */
	weld__ckpt_one_run(v->out, i, &f, &where);
	const char *file = v->manifest->files[m->file].name, *in = f ? weld__vf_base_name(f->path) : "?";
	if (strcmp(in, file) != 0) {
		snprintf(first, cap, "weld.json puts '%s' in %s, the index in %s", m->name, file, in);
		return false;
	}
	if (strcmp(m->dtype, weld_dtype_name(o->dtype)) == 0 && m->ndim == o->ndim &&
	    memcmp(m->shape, o->shape, m->ndim * sizeof(uint64_t)) == 0 && m->bytes == o->nbytes && m->offset == where)
		return true;
	char a[256], b[256];
	weld__vf_shape_str(a, sizeof(a), m->shape, m->ndim);
	weld__vf_shape_str(b, sizeof(b), o->shape, o->ndim);
	snprintf(first, cap, "weld.json says '%s' is %s %s at offset %llu, %s has %s %s at %llu", m->name, m->dtype, a,
		 (unsigned long long)m->offset, v->manifest->weights, weld_dtype_name(o->dtype), b,
		 (unsigned long long)where);
	return false;
}

static const char *listed_name(const void *m, size_t k)
{
	return ((const weld_manifest *)m)->tensors[k].name;
}

/* A stored tensor the manifest does not list, the first by name (the counts when none, or no memory to look). */
static void name_unlisted(const weld_verifier *v, char *first, size_t cap)
{
	const weld_manifest *m = v->manifest;
	weld_map listed;
	weld_map_init_names(&listed, listed_name, m);
	bool ok = weld_map_reserve(&listed, m->ntensors);
	for (size_t k = 0; k < m->ntensors && ok; k++) {
		size_t had;
		ok = weld_map_add(&listed, m->tensors[k].name, k, &had);
	}
	for (size_t i = 0; i < v->nby && ok; i++) {
		const ckpt_tensor *o = &v->out->t[v->by_name[i].index];
		if (!o->alias_of && weld_map_get(&listed, o->name) == WELD_MAP_NONE) {
			snprintf(first, cap, "%s holds '%s', which weld.json does not list", m->weights, o->name);
			weld_map_clear(&listed);
			return;
		}
	}
	weld_map_clear(&listed);
	snprintf(first, cap, "weld.json lists %zu tensors, %s holds %zu", m->ntensors, m->weights,
		 (size_t)v->r->tensors);
}

/* weld.json's tensor table agrees with the weights file's own header. */
void weld__vf_check_manifest_tensors(weld_verifier *v)
{
	const weld_manifest *m = v->manifest;
	char first[WELD_CHECK_DETAIL_MAX] = "", scratch[WELD_CHECK_DETAIL_MAX];
	size_t problems = 0;
	for (size_t k = 0; k < m->ntensors; k++)
		if (!entry_agrees(v, &m->tensors[k], problems ? scratch : first, sizeof(first)))
			problems++;
	if (!problems && m->ntensors != (size_t)v->r->tensors) {
		problems++;
		name_unlisted(v, first, sizeof(first));
	}
	if (!problems && m->has_tensor_count && m->tensor_count != m->ntensors) {
		problems++;
		snprintf(first, sizeof(first), "weld.json: tensor_count is %llu but it lists %zu tensors",
			 (unsigned long long)m->tensor_count, m->ntensors);
	}
	/* Each tied alias must name an owner that is stored. */
	for (size_t k = 0; k < m->nties; k++) {
		const weld_manifest_tie *t = &m->ties[k];
		if ((!t->owner || weld__vf_find_out(v, t->owner) == SIZE_MAX) && !problems++)
			snprintf(first, sizeof(first), "weld.json ties '%s' to '%s', which %s lacks", t->name,
				 t->owner ? t->owner : "?", m->weights);
	}
	if (problems > 1)
		weld__vf_appendf(first, sizeof(first), " (%zu problems)", problems);
	if (problems)
		weld__vf_check(v->r, "manifest", WELD_CHECK_FAIL, "%s", first);
	else
		weld__vf_check(v->r, "manifest", WELD_CHECK_PASS, "weld.json describes the %zu tensors of %s", m->ntensors,
			       m->weights);
}

/* The recomputed CRC-32s of file K and its tensors against weld.json's, into DETAIL; *BAD counts the tensors. */
static void compare_crcs(const weld_verifier *v, size_t k, const weld_vf_span *spans, uint32_t got_file, char *detail,
			 size_t cap, size_t *bad)
{
	const weld_manifest *m = v->manifest;
	for (size_t i = 0; i < m->ntensors; i++) {
		if (m->tensors[i].file != k || spans[i].crc == m->tensors[i].crc32)
			continue;
		if ((*bad)++ < WELD_VERIFY_LIST_MAX)
			weld__vf_appendf(detail, cap, "%stensor '%s': CRC-32 0x%08x, weld.json says 0x%08x",
					 detail[0] ? "; " : "", m->tensors[i].name, spans[i].crc, m->tensors[i].crc32);
	}
	if (got_file != m->files[k].crc32)
		weld__vf_appendf(detail, cap, "%s%s: CRC-32 0x%08x, weld.json says 0x%08x", detail[0] ? "; " : "",
				 m->files[k].name, got_file, m->files[k].crc32);
}

/*
 * The CRC-32s of weights file K (open as F) and of each tensor weld.json
 * puts in it, compared into DETAIL; a tensor past the file's end or a read
 * error is a finding there too.
 */
static weld_status check_file_crcs(weld_verifier *v, size_t k, weld_file *f, weld_vf_span *spans, char *detail,
				   size_t cap, size_t *bad, weld_error *err)
{
	const weld_manifest *m = v->manifest;
	size_t n = 0;
	/* Spans of this file's tensors go first; the rest are left with length 0 and skipped. */
	weld_vf_span *mine = spans + m->ntensors;
	for (size_t i = 0; i < m->ntensors; i++) {
		const weld_manifest_tensor *t = &m->tensors[i];
		uint64_t end;
		if (t->file != k)
			continue;
		if (!weld__add_u64(&end, t->offset, t->bytes) || end > f->size) {
			weld__vf_appendf(detail, cap, "%stensor '%s' (%llu bytes at offset %llu) lies past the end of %s",
					 detail[0] ? "; " : "", t->name, (unsigned long long)t->bytes,
					 (unsigned long long)t->offset, m->files[k].name);
			(*bad)++;
			return WELD_OK;
		}
		mine[n++] = (weld_vf_span){t->offset, t->bytes, 0};
	}
	uint32_t got_file;
	weld_error e = {0};
	weld_status s = weld__vf_crc_file(v->b, f, mine, n, &got_file, &e);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) { /* a read error part way is a finding about this folder, not a failure to verify */
		weld__vf_appendf(detail, cap, "%s%s", detail[0] ? "; " : "", e.message);
		(*bad)++;
		return WELD_OK;
	}
	for (size_t i = 0, j = 0; i < m->ntensors; i++)
		if (m->tensors[i].file == k)
			spans[i].crc = mine[j++].crc;
	compare_crcs(v, k, spans, got_file, detail, cap, bad);
	return WELD_OK;
}

/* Each weights file has weld.json's size and CRC-32s, recomputed: one size line and one crc32 line. */
weld_status weld__vf_check_size_and_crcs(weld_verifier *v, weld_error *err)
{
	const weld_manifest *m = v->manifest;
	char sizes[WELD_CHECK_DETAIL_MAX] = "", crcs[WELD_CHECK_DETAIL_MAX] = "";
	size_t bad_size = 0, bad = 0;
	uint64_t total = 0;
	weld_vf_span *spans = weld__calloc(2 * m->ntensors + 1, sizeof(*spans));
	if (!spans)
		return weld__nomem(err);
	weld_status s = WELD_OK;
	for (size_t k = 0; !s && k < m->nfiles; k++) {
		char *path = weld__path_join(v->dir, m->files[k].name);
		weld_file *f = NULL;
		weld_error e = {0};
		s = path ? weld_file_open(&f, path, &e) : WELD_ERR_NOMEM;
		free(path);
		if (s == WELD_ERR_NOMEM)
			break;
		if (s) {
			s = WELD_OK;
			if (!bad_size++)
				weld__vf_appendf(sizes, sizeof(sizes), "%s", e.message);
			continue;
		}
		total += f->size;
		if (f->size != m->files[k].size && !bad_size++)
			weld__vf_appendf(sizes, sizeof(sizes), "%s: %llu bytes, weld.json says %llu", m->files[k].name,
					 (unsigned long long)f->size, (unsigned long long)m->files[k].size);
		s = check_file_crcs(v, k, f, spans, crcs, sizeof(crcs), &bad, err);
		weld_file_close(f);
	}
	free(spans);
	if (s)
		return s == WELD_ERR_NOMEM ? weld__nomem(err) : s;
	const char *what = m->nfiles > 1 ? "the shards" : m->weights;
	if (bad_size)
		weld__vf_check(v->r, "size", WELD_CHECK_FAIL, "%s%s", sizes,
			       bad_size > 1 ? " (and more files)" : "");
	else if (m->nfiles > 1)
		weld__vf_check(v->r, "size", WELD_CHECK_PASS, "%zu shards: %llu bytes, as weld.json says", m->nfiles,
			       (unsigned long long)total);
	else
		weld__vf_check(v->r, "size", WELD_CHECK_PASS, "%s: %llu bytes, as weld.json says", m->weights,
			       (unsigned long long)total);
	if (bad > WELD_VERIFY_LIST_MAX)
		weld__vf_appendf(crcs, sizeof(crcs), "; and %zu more tensors", bad - WELD_VERIFY_LIST_MAX);
	if (crcs[0])
		weld__vf_check(v->r, "crc32", WELD_CHECK_FAIL, "%s (computed on %s)", crcs, weld_backend_name(v->b));
	else
		weld__vf_check(v->r, "crc32", WELD_CHECK_PASS, "%s and %s%zu tensors match weld.json (computed on %s)", what,
			       m->nfiles > 1 ? "their " : "its ", m->ntensors, weld_backend_name(v->b));
	return WELD_OK;
}

/* Nothing of an interrupted conversion in the folder or beside it; one that still runs is only a warning. */
weld_status weld__vf_check_leftovers(weld_verifier *v, weld_error *err)
{
	bool running;
	weld_error e = {0};
	weld_status s = weld__target_unfinished(v->dir, &running, &e);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s)
		weld__vf_check(v->r, "leftovers", WELD_CHECK_FAIL, "%s", weld__vf_in_dir(v, e.message));
	else if (running)
		weld__vf_check(v->r, "leftovers", WELD_CHECK_WARN,
			       "a conversion into this folder is running; it replaces the folder when it completes");
	else
		weld__vf_check(v->r, "leftovers", WELD_CHECK_PASS, "no staging folder or temporary file of an interrupted conversion");
	return WELD_OK;
}

/*
 * M, DIR's manifest, names SOURCE as its input: the same file or folder,
 * however each path was written. One without source_path (an older weld's)
 * names none, so it is no output of SOURCE.
 */
static weld_status made_from(const char *dir, const weld_manifest *m, const char *source, weld_error *err)
{
	char real[PATH_MAX];
	if (!realpath(source, real))
		return weld__fail(err, WELD_ERR_IO, "%s: %s", source, strerror(errno));
	if (!m->source_path)
		return weld__fail(err, WELD_ERR_MISMATCH,
				  "%s: made from an unknown source (its weld.json, by an older weld, has no source_path)", dir);
	if (strcmp(real, m->source_path) != 0)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: made from %s", dir, m->source_path);
	return WELD_OK;
}

/*
 * weld_output_intact, and with SOURCE (may be NULL) made from it. The source
 * is compared before the weights are read: another run's output is redone
 * anyway, and reading it whole first would cost as long as converting it.
 */
/* DIR's weights file K has the size and CRC-32 its manifest M records. */
static weld_status file_intact(const char *dir, const weld_manifest *m, size_t k, weld_error *err)
{
	weld_file *f = NULL;
	char *path = weld__path_join(dir, m->files[k].name);
	weld_status s = path ? weld_file_open(&f, path, err) : weld__nomem(err);
	if (!s && f->size != m->files[k].size)
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: %llu bytes, the manifest says %llu", path,
			       (unsigned long long)f->size, (unsigned long long)m->files[k].size);
	weld_backend cpu = {&weld_backend_cpu_iface, NULL};
	uint32_t got;
	if (!s)
		s = weld__vf_crc_file(&cpu, f, NULL, 0, &got, err);
	if (!s && got != m->files[k].crc32)
		s = weld__fail(err, WELD_ERR_CHECKSUM, "%s: CRC-32 0x%08x, the manifest says 0x%08x", path, got,
			       m->files[k].crc32);
	weld_file_close(f);
	free(path);
	return s;
}

static weld_status intact(const char *dir, const char *source, weld_error *err)
{
	weld_error scratch;
	weld_manifest *m = NULL;
	if (!err)
		err = &scratch;
	bool running;
	weld_status s = weld__target_unfinished(dir, &running, err);
	if (!s)
		s = weld_manifest_read(dir, &m, err);
	if (!s && source)
		s = made_from(dir, m, source, err);
	for (size_t k = 0; !s && k < m->nfiles; k++)
		s = file_intact(dir, m, k, err);
	weld_manifest_free(m);
	return s;
}

weld_status weld_output_intact(const char *dir, weld_error *err)
{
	return intact(dir, NULL, err);
}

weld_status weld_output_intact_from(const char *dir, const char *source, weld_error *err)
{
	if (!source)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: no source to compare its weld.json with", dir);
	return intact(dir, source, err);
}

/*
 * What the conversion found when it compared the masters with the HF 16-bit
 * copy beside them (weld.json's cross_check): a difference stays a warning
 * for as long as the output lives, since nothing in the folder shows it.
 */
void weld__vf_check_cross_check(weld_verifier *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(v->manifest->json, "cross_check");
	const char *result = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "result"));
	const char *summary = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "summary"));
	if (!result || !summary)
		return;
	weld__vf_check(v->r, "cross_check", strcmp(result, "differ") == 0 ? WELD_CHECK_WARN : WELD_CHECK_PASS,
		       "at conversion, %s", summary);
}
