/*
 * weld_ckpt: any input weld reads, detected and listed as named tensors with
 * their byte sources. Reads headers, indexes and pickles; tensor bytes only
 * in weld_ckpt_read_tensor.
 *
 * Folders: an HF index (model.safetensors.index.json or
 * pytorch_model.bin.index.json) with its shards, a single model.safetensors
 * or pytorch_model.bin, or a DeepSpeed checkpoint (deepspeed.c).
 */
#include "formats/ckpt.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Index files are a few MB even for the largest models. */
#define INDEX_MAX_BYTES (256u << 20)

const char *weld_format_name(weld_format format)
{
	switch (format) {
	case WELD_FORMAT_SAFETENSORS: return "safetensors";
	case WELD_FORMAT_SAFETENSORS_SHARDED: return "safetensors-sharded";
	case WELD_FORMAT_TORCH_ZIP: return "torch-zip";
	case WELD_FORMAT_TORCH_LEGACY: return "torch-legacy";
	case WELD_FORMAT_TORCH_SHARDED: return "torch-sharded";
	case WELD_FORMAT_DEEPSPEED: return "deepspeed";
	case WELD_FORMAT_UNKNOWN: break;
	}
	return "unknown";
}

char *weld__path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	size_t n = a;
	if (n && p[n - 1] != '/')
		p[n++] = '/';
	memcpy(p + n, name, b + 1);
	return p;
}

bool weld__is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool weld__is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

weld_status weld__read_small_file(const char *path, size_t max, char **out, size_t *len, weld_error *err)
{
	weld_file *f;
	weld_status s = weld_file_open(&f, path, err);
	if (s)
		return s;
	if (f->size > max) {
		s = weld__fail(err, WELD_ERR_LIMIT, "%s: %llu bytes, over the %zu-byte limit for this file",
			       path, (unsigned long long)f->size, max);
		weld_file_close(f);
		return s;
	}
	char *buf = malloc((size_t)f->size + 1);
	if (!buf) {
		weld_file_close(f);
		return weld__nomem(err);
	}
	s = weld_file_pread(f, buf, (size_t)f->size, 0, err);
	buf[f->size] = '\0';
	*len = (size_t)f->size;
	weld_file_close(f);
	if (s) {
		free(buf);
		return s;
	}
	*out = buf;
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* sources and tensors */

weld_status weld__ckpt_add_source(weld_ckpt *c, const char *path, size_t *index, weld_error *err)
{
	for (size_t i = 0; i < c->nsrc; i++)
		if (strcmp(c->src[i].path, path) == 0) {
			*index = i;
			return WELD_OK;
		}
	ckpt_source *grown = weld__reallocarray(c->src, c->nsrc + 1, sizeof(*c->src));
	if (!grown)
		return weld__nomem(err);
	c->src = grown;
	ckpt_source *s = &c->src[c->nsrc];
	memset(s, 0, sizeof(*s));
	weld_status st = weld_file_open(&s->file, path, err);
	if (st)
		return st;
	s->path = s->file->path;
	*index = c->nsrc++;
	return WELD_OK;
}

ckpt_tensor *weld__ckpt_new_tensor(weld_ckpt *c, const char *name, weld_error *err)
{
	if (c->nt == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		ckpt_tensor *t = weld__reallocarray(c->t, cap, sizeof(*t));
		if (!t) {
			weld__nomem(err);
			return NULL;
		}
		c->t = t;
		c->cap = cap;
	}
	ckpt_tensor *t = &c->t[c->nt];
	memset(t, 0, sizeof(*t));
	if (!(t->name = weld__strdup(name))) {
		weld__nomem(err);
		return NULL;
	}
	c->nt++;
	return t;
}

static bool shape_numel(const uint64_t *shape, size_t ndim, uint64_t *numel)
{
	uint64_t n = 1;
	for (size_t i = 0; i < ndim; i++)
		if (!weld__mul_u64(&n, n, shape[i]))
			return false;
	*numel = n;
	return true;
}

weld_status weld__ckpt_set_sizes(ckpt_tensor *t, const char *path, weld_error *err)
{
	if (!shape_numel(t->shape, t->ndim, &t->numel) ||
	    !weld__mul_u64(&t->nbytes, t->numel, weld_dtype_size(t->dtype)))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor '%s': size overflows", path, t->name);
	return WELD_OK;
}

static bool view_contiguous(const weld_py *v)
{
	int64_t expect = 1;
	for (size_t i = v->tensor.ndim; i-- > 0;) {
		if (v->tensor.shape[i] == 0)
			return true;
		if (v->tensor.shape[i] != 1 && v->tensor.stride[i] != expect)
			return false;
		expect *= (int64_t)v->tensor.shape[i];
	}
	return true;
}

static bool same_view(const weld_py *a, const weld_py *b)
{
	if (a == b)
		return true;
	if (strcmp(a->tensor.storage->storage.key, b->tensor.storage->storage.key) != 0 ||
	    a->tensor.dtype != b->tensor.dtype || a->tensor.storage_offset != b->tensor.storage_offset ||
	    a->tensor.ndim != b->tensor.ndim)
		return false;
	for (size_t i = 0; i < a->tensor.ndim; i++)
		if (a->tensor.shape[i] != b->tensor.shape[i] || a->tensor.stride[i] != b->tensor.stride[i])
			return false;
	return true;
}

weld_status weld__ckpt_add_torch_tensor(weld_ckpt *c, size_t src, const char *name, const weld_py *v,
					weld_error *err)
{
	ckpt_tensor *t = weld__ckpt_new_tensor(c, name, err);
	if (!t)
		return err->status;
	t->src = src;
	t->view = v;
	t->dtype = v->tensor.dtype;
	t->ndim = v->tensor.ndim;
	memcpy(t->shape, v->tensor.shape, sizeof(uint64_t) * t->ndim);
	t->contiguous = view_contiguous(v);
	for (size_t i = 0; i + 1 < c->nt; i++)
		if (c->t[i].src == src && c->t[i].view && same_view(c->t[i].view, v)) {
			t->alias_of = c->t[i].alias_of ? c->t[i].alias_of : c->t[i].name;
			break;
		}
	return weld__ckpt_set_sizes(t, c->src[src].path, err);
}

/*
 * Name every tensor reachable through dicts, lists and tuples: keys joined
 * with '.', list positions as numbers, as state-dict names are. A shared
 * container is walked once. Pickle nesting is bounded (1000), so this
 * recursion is too.
 */
static weld_status flatten(weld_ckpt *c, size_t src, const weld_py *o, char *name, size_t len,
			   size_t cap, weld_ptrset *seen, weld_error *err)
{
	weld_status s = WELD_OK;
	bool added;
	if (o->kind == WELD_PY_TENSOR)
		return weld__ckpt_add_torch_tensor(c, src, name, o, err);
	if (o->kind != WELD_PY_DICT && o->kind != WELD_PY_LIST && o->kind != WELD_PY_TUPLE)
		return WELD_OK;
	if (!weld_ptrset_add(seen, o, &added))
		return weld__nomem(err);
	if (!added)
		return WELD_OK;
	size_t n = o->kind == WELD_PY_DICT ? o->dict.n : o->seq.n;
	for (size_t i = 0; i < n && !s; i++) {
		char num[32];
		const char *part = num;
		const weld_py *child;
		if (o->kind == WELD_PY_DICT) {
			const weld_py *k = o->dict.keys[i];
			child = o->dict.vals[i];
			if (k->kind == WELD_PY_STR)
				part = k->str.s;
			else if (k->kind == WELD_PY_INT && !k->i.big)
				snprintf(num, sizeof(num), "%lld", (long long)k->i.v);
			else
				continue;
		} else {
			child = o->seq.items[i];
			snprintf(num, sizeof(num), "%zu", i);
		}
		size_t plen = strlen(part), nlen = len + (len ? 1 : 0) + plen;
		if (nlen + 1 > cap)
			return weld__fail(err, WELD_ERR_LIMIT, "%s: tensor name longer than %zu bytes",
					  c->src[src].path, cap - 1);
		if (len)
			name[len] = '.';
		memcpy(name + len + (len ? 1 : 0), part, plen + 1);
		s = flatten(c, src, child, name, nlen, cap, seen, err);
		name[len] = '\0';
	}
	return s;
}

weld_status weld__ckpt_add_torch_tree(weld_ckpt *c, size_t src, const weld_py *root, weld_error *err)
{
	if (root->kind != WELD_PY_DICT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: holds no dict of tensors", c->src[src].path);
	char name[4096] = "";
	weld_ptrset seen = {0};
	weld_status s = flatten(c, src, root, name, 0, sizeof(name), &seen, err);
	weld_ptrset_clear(&seen);
	return s;
}

static weld_status add_torch_file(weld_ckpt *c, const char *path, size_t *first, weld_error *err)
{
	size_t src;
	weld_status s = weld__ckpt_add_source(c, path, &src, err);
	if (s)
		return s;
	ckpt_source *so = &c->src[src];
	if ((s = weld_torch_open(&so->torch, so->file, err)))
		return s;
	*first = c->nt;
	return weld__ckpt_add_torch_tree(c, src, weld_torch_root(so->torch), err);
}

static weld_status add_st_file(weld_ckpt *c, const char *path, size_t *first, weld_error *err)
{
	size_t src;
	weld_status s = weld__ckpt_add_source(c, path, &src, err);
	if (s)
		return s;
	ckpt_source *so = &c->src[src];
	if ((s = weld_st_read_header(&so->st, so->file, err)))
		return s;
	so->is_st = true;
	*first = c->nt;
	for (size_t i = 0; i < so->st.ntensors; i++) {
		const weld_st_tensor *h = &so->st.tensors[i];
		ckpt_tensor *t = weld__ckpt_new_tensor(c, h->name, err);
		if (!t)
			return err->status;
		t->src = src;
		t->dtype = h->dtype;
		t->ndim = h->ndim;
		memcpy(t->shape, h->shape, sizeof(uint64_t) * h->ndim);
		t->st_offset = so->st.data_start + h->begin;
		t->contiguous = true;
		if ((s = weld__ckpt_set_sizes(t, path, err)))
			return s;
	}
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* detection */

typedef enum file_kind { KIND_UNKNOWN, KIND_SAFETENSORS, KIND_TORCH } file_kind;

static weld_status sniff_file(const char *path, file_kind *kind, weld_error *err)
{
	weld_file *f;
	weld_status s = weld_file_open(&f, path, err);
	if (s)
		return s;
	uint8_t head[9] = {0};
	size_t n = f->size < sizeof(head) ? (size_t)f->size : sizeof(head);
	s = weld_file_pread(f, head, n, 0, err);
	weld_file_close(f);
	if (s)
		return s;
	*kind = KIND_UNKNOWN;
	if (n == 9 && head[8] == '{')
		*kind = KIND_SAFETENSORS;
	else if (weld_torch_sniff(head, n))
		*kind = KIND_TORCH;
	return WELD_OK;
}

static weld_status open_file(weld_ckpt *c, const char *path, weld_error *err)
{
	file_kind kind;
	size_t first;
	weld_status s = sniff_file(path, &kind, err);
	if (s)
		return s;
	switch (kind) {
	case KIND_SAFETENSORS:
		c->format = WELD_FORMAT_SAFETENSORS;
		return add_st_file(c, path, &first, err);
	case KIND_TORCH:
		if ((s = add_torch_file(c, path, &first, err)))
			return s;
		c->format = weld_torch_kind_of(c->src[0].torch) == WELD_TORCH_ZIP ? WELD_FORMAT_TORCH_ZIP
										   : WELD_FORMAT_TORCH_LEGACY;
		return WELD_OK;
	case KIND_UNKNOWN:
		break;
	}
	return weld__fail(err, WELD_ERR_FORMAT,
			  "%s: not a safetensors or torch checkpoint file (unrecognised first bytes)", path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * HF sharded checkpoint: the index's weight_map says which shard holds each
 * tensor. Shards are opened in name order; every name the index lists must
 * be in the shard it names.
 */
static weld_status open_index(weld_ckpt *c, const char *dir, const char *index_name, bool st,
			      weld_error *err)
{
	char *index_path = weld__path_join(dir, index_name);
	char *text = NULL, **shards = NULL;
	size_t len, nshards = 0;
	cJSON *root = NULL;
	weld_status s;
	if (!index_path)
		return weld__nomem(err);
	if ((s = weld__read_small_file(index_path, INDEX_MAX_BYTES, &text, &len, err)))
		goto done;
	root = cJSON_ParseWithLength(text, len);
	const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!root || !cJSON_IsObject(root)) {
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON", index_path);
		goto done;
	}
	if (!cJSON_IsObject(map)) {
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
		goto done;
	}
	const cJSON *e;
	cJSON_ArrayForEach(e, map)
	{
		const char *f = cJSON_GetStringValue(e);
		if (!f || !*f) {
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name",
				       index_path, e->string);
			goto done;
		}
		/* Shards live beside the index; a path that leaves the folder is hostile. */
		if (strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
			s = weld__fail(err, WELD_ERR_FORMAT,
				       "%s: weight_map names '%s', which is not a file in this folder",
				       index_path, f);
			goto done;
		}
		bool known = false;
		for (size_t i = 0; i < nshards && !known; i++)
			known = strcmp(shards[i], f) == 0;
		if (known)
			continue;
		char **grown = weld__reallocarray(shards, nshards + 1, sizeof(*shards));
		if (!grown) {
			s = weld__nomem(err);
			goto done;
		}
		shards = grown;
		shards[nshards++] = (char *)f;
	}
	if (nshards == 0) {
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: weight_map is empty", index_path);
		goto done;
	}
	qsort(shards, nshards, sizeof(*shards), cmp_str);
	for (size_t i = 0; i < nshards; i++) {
		char *path = weld__path_join(dir, shards[i]);
		size_t first;
		if (!path) {
			s = weld__nomem(err);
			goto done;
		}
		if (!weld__is_file(path)) {
			s = weld__fail(err, WELD_ERR_MISMATCH, "%s: names shard '%s', which is missing",
				       index_path, shards[i]);
			free(path);
			goto done;
		}
		s = st ? add_st_file(c, path, &first, err) : add_torch_file(c, path, &first, err);
		free(path);
		if (s)
			goto done;
		(void)first;
	}
	/* Every indexed name must be where the index says. */
	cJSON_ArrayForEach(e, map)
	{
		const char *want = cJSON_GetStringValue(e);
		bool found = false;
		for (size_t i = 0; i < c->nt && !found; i++) {
			const char *p = c->src[c->t[i].src].path;
			const char *base = strrchr(p, '/');
			found = strcmp(c->t[i].name, e->string) == 0 && strcmp(base ? base + 1 : p, want) == 0;
		}
		if (!found) {
			s = weld__fail(err, WELD_ERR_MISMATCH,
				       "%s: lists tensor '%s' in '%s', but that shard does not hold it",
				       index_path, e->string, want);
			goto done;
		}
	}
	c->format = st ? WELD_FORMAT_SAFETENSORS_SHARDED : WELD_FORMAT_TORCH_SHARDED;
	s = WELD_OK;
done:
	cJSON_Delete(root);
	free(shards);
	free(text);
	free(index_path);
	return s;
}

static weld_status open_dir(weld_ckpt *c, const char *dir, weld_input_type type, weld_error *err)
{
	static const char *const candidates[] = {"model.safetensors.index.json", "pytorch_model.bin.index.json",
						 "model.safetensors", "pytorch_model.bin"};
	bool has[4];
	for (int i = 0; i < 4; i++) {
		char *p = weld__path_join(dir, candidates[i]);
		if (!p)
			return weld__nomem(err);
		has[i] = weld__is_file(p);
		free(p);
	}
	bool deepspeed = weld__deepspeed_present(dir);
	if (type == WELD_INPUT_ZERO) {
		if (!deepspeed)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: not a DeepSpeed checkpoint (no 'latest' and no model states files)",
					  dir);
		return weld__deepspeed_open(c, dir, err);
	}
	if (type == WELD_INPUT_HF) {
		/* Asked for HF weights: vLLM's preference, safetensors over .bin. */
		deepspeed = false;
		if (has[0] || has[2])
			has[1] = has[3] = false;
	}
	int kinds = (has[0] || has[2]) + (has[1] || has[3]) + deepspeed;
	if (kinds > 1)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: holds more than one kind of checkpoint (%s%s%s); choose one with --type",
				  dir, has[0] || has[2] ? "safetensors " : "",
				  has[1] || has[3] ? "pytorch-bin " : "", deepspeed ? "deepspeed" : "");
	if (has[0])
		return open_index(c, dir, candidates[0], true, err);
	if (has[1])
		return open_index(c, dir, candidates[1], false, err);
	if (has[2] || has[3]) {
		char *p = weld__path_join(dir, candidates[has[2] ? 2 : 3]);
		if (!p)
			return weld__nomem(err);
		weld_status s = open_file(c, p, err);
		free(p);
		return s;
	}
	if (deepspeed)
		return weld__deepspeed_open(c, dir, err);
	return weld__fail(err, WELD_ERR_FORMAT,
			  "%s: no checkpoint found (no model.safetensors, pytorch_model.bin, index file or DeepSpeed tag)",
			  dir);
}

weld_status weld_ckpt_open(weld_ckpt **out, const char *path, weld_error *err)
{
	return weld_ckpt_open_as(out, path, WELD_INPUT_AUTO, err);
}

weld_status weld_ckpt_open_as(weld_ckpt **out, const char *path, weld_input_type type, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	*out = NULL;
	weld_ckpt *c = calloc(1, sizeof(*c));
	if (!c)
		return weld__nomem(err);
	weld_status s;
	if (weld__is_dir(path))
		s = open_dir(c, path, type, err);
	else if (weld__is_file(path) && type == WELD_INPUT_ZERO)
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: a DeepSpeed checkpoint is a folder, not a file", path);
	else if (weld__is_file(path))
		s = open_file(c, path, err);
	else
		s = weld__fail(err, WELD_ERR_IO, "%s: no such file or folder", path);
	if (s) {
		weld_ckpt_free(c);
		return s;
	}
	*out = c;
	return WELD_OK;
}

void weld_ckpt_free(weld_ckpt *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nt; i++)
		free(c->t[i].name);
	free(c->t);
	for (size_t i = 0; i < c->nsrc; i++) {
		weld_torch_close(c->src[i].torch);
		weld_st_header_clear(&c->src[i].st);
		weld_file_close(c->src[i].file);
	}
	free(c->src);
	free(c->zf);
	weld__deepspeed_clear(&c->ds);
	free(c);
}

weld_format weld_ckpt_format(const weld_ckpt *c)
{
	return c->format;
}

size_t weld_ckpt_tensor_count(const weld_ckpt *c)
{
	return c->nt;
}

weld_status weld_ckpt_tensor(const weld_ckpt *c, size_t i, weld_tensor_info *out)
{
	if (i >= c->nt)
		return WELD_ERR_INVALID_ARG;
	const ckpt_tensor *t = &c->t[i];
	*out = (weld_tensor_info){
		.name = t->name,
		.dtype = t->dtype,
		.ndim = t->ndim,
		.shape = t->shape,
		.numel = t->numel,
		.nbytes = t->nbytes,
		.file = c->src[t->src].path,
		.contiguous = t->contiguous,
		.alias_of = t->alias_of,
	};
	return WELD_OK;
}

size_t weld_ckpt_file_count(const weld_ckpt *c)
{
	return c->nsrc;
}

const char *weld_ckpt_file(const weld_ckpt *c, size_t i)
{
	return i < c->nsrc ? c->src[i].path : NULL;
}

const weld_deepspeed_info *weld_ckpt_deepspeed(const weld_ckpt *c)
{
	return c->format == WELD_FORMAT_DEEPSPEED ? &c->ds.info : NULL;
}

/* ------------------------------------------------------------------------- */
/* reading */

/* Copy a strided view of SRC (a whole storage) into DST in C order. */
static void gather(uint8_t *dst, const uint8_t *src, const weld_py *v, size_t esz)
{
	size_t nd = v->tensor.ndim;
	uint64_t idx[WELD_MAX_DIMS] = {0};
	uint64_t numel = 1;
	for (size_t i = 0; i < nd; i++)
		numel *= v->tensor.shape[i];
	uint64_t off = v->tensor.storage_offset; /* element offset of idx */
	for (uint64_t e = 0; e < numel; e++) {
		memcpy(dst + e * esz, src + off * esz, esz);
		for (size_t d = nd; d-- > 0;) {
			if (++idx[d] < v->tensor.shape[d]) {
				off += (uint64_t)v->tensor.stride[d];
				break;
			}
			off -= (uint64_t)v->tensor.stride[d] * (idx[d] - 1);
			idx[d] = 0;
		}
	}
}

weld_status weld_ckpt_read_tensor(weld_ckpt *c, size_t i, void *dst, size_t dst_nbytes, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	if (i >= c->nt)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor index %zu out of range", i);
	const ckpt_tensor *t = &c->t[i];
	ckpt_source *so = &c->src[t->src];
	if (dst_nbytes != t->nbytes)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s' has %llu bytes, buffer %zu", t->name,
				  (unsigned long long)t->nbytes, dst_nbytes);
	if (t->nbytes == 0)
		return WELD_OK;
	if (so->is_st)
		return weld_file_pread(so->file, dst, dst_nbytes, t->st_offset, err);
	if (t->zero)
		return weld__zero_read(c, t, dst, err);
	weld_torch_storage range;
	weld_status s = weld_torch_storage_range(so->torch, t->view->tensor.storage, &range, err);
	if (s)
		return s;
	/* Read the whole record so its CRC-32 is checked, then cut the view out. */
	bool whole = t->contiguous && range.nbytes == t->nbytes;
	uint8_t *buf = whole ? dst : malloc((size_t)range.nbytes);
	if (!buf)
		return weld__nomem(err);
	s = weld_torch_read_storage(so->torch, &range, buf, err);
	if (!whole) {
		if (!s)
			gather(dst, buf, t->view, weld_dtype_size(t->dtype));
		free(buf);
	}
	return s;
}
