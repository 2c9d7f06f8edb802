/*
 * torch.save files as checkpoint tensors: every tensor in the object tree,
 * named as state-dict keys, each view cut into fragments (one per
 * contiguous run of its storage), tied views recognised as aliases.
 */
#include "formats/torch_file.h"

#include "formats/unsupported.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A view already listed from this file, to recognise a second name for it. */
typedef struct seen_view {
	const weld_py *view;
	size_t tensor;
} seen_view;

/* What a torch source keeps: the file's object tree and the views listed from it, found by view. */
typedef struct torch_source {
	weld_torch *torch;
	seen_view *views;
	size_t nviews, cap;
	weld_map by_view;
} torch_source;

static void torch_source_free(void *p)
{
	torch_source *ts = p;
	if (!ts)
		return;
	weld_torch_close(ts->torch);
	free(ts->views);
	weld_map_clear(&ts->by_view);
	free(ts);
}

/* Source SRC of C parsed as a torch file (once); *ROOT its object tree. */
static weld_status parse_source(weld_ckpt *c, uint32_t src, const weld_py **root, weld_error *err)
{
	weld_status s;
	ckpt_source *so = &c->src[src];
	if (!so->parsed) {
		torch_source *ts = calloc(1, sizeof(*ts));
		if (!ts)
			return weld__nomem(err);
		so->parsed = ts;
		so->free_parsed = torch_source_free;
		if ((s = weld_torch_open(&ts->torch, so->file, c->allow_globals, c->nallow_globals, err)))
			return s;
	}
	*root = weld_torch_root(weld__torch_of(c, src));
	return WELD_OK;
}

weld_status weld__torch_source(weld_ckpt *c, const char *path, uint32_t *src, const weld_py **root,
			       weld_error *err)
{
	weld_status s = weld__ckpt_add_source(c, path, src, err);
	return s ? s : parse_source(c, *src, root, err);
}

weld_status weld__torch_file_source(weld_ckpt *c, weld_file *f, uint32_t *src, const weld_py **root, weld_error *err)
{
	weld_status s = weld__ckpt_add_file(c, f, src, err);
	return s ? s : parse_source(c, *src, root, err);
}

weld_status weld__torch_peek(const weld_ckpt *c, const char *path, weld_file **f, weld_torch **t, weld_error *err)
{
	*t = NULL;
	weld_status s = weld_file_open(f, path, err);
	if (!s && (s = weld_torch_open(t, *f, c->allow_globals, c->nallow_globals, err))) {
		weld_file_close(*f);
		*f = NULL;
	}
	return s;
}

weld_torch *weld__torch_of(const weld_ckpt *c, uint32_t src)
{
	return ((const torch_source *)c->src[src].parsed)->torch;
}

/* Two names for the same data: the same storage (by key), dtype, offset, shape and strides. */
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

/* The hash of what same_view compares. */
static uint64_t view_hash(const void *key)
{
	const weld_py *v = key;
	const char *storage = v->tensor.storage->storage.key;
	uint64_t h = weld__hash_bytes(0, storage, strlen(storage));
	h = weld__hash_u64(weld__hash_u64(h, (uint64_t)v->tensor.dtype), v->tensor.storage_offset);
	h = weld__hash_u64(h, v->tensor.ndim);
	for (size_t i = 0; i < v->tensor.ndim; i++)
		h = weld__hash_u64(weld__hash_u64(h, v->tensor.shape[i]), (uint64_t)v->tensor.stride[i]);
	return h;
}

static bool view_holds(const weld_map *m, const void *key, size_t value)
{
	return same_view(((const torch_source *)m->ctx)->views[value].view, key);
}

static const weld_map_kind view_kind = {view_hash, view_holds};

/* The tensor V was already listed as from this source, or SIZE_MAX; V is noted either way. */
static weld_status listed_as(torch_source *ts, const weld_py *v, size_t tensor, size_t *owner, weld_error *err)
{
	*owner = SIZE_MAX;
	if (!ts->by_view.kind)
		weld_map_init(&ts->by_view, &view_kind, ts);
	size_t had;
	if (ts->nviews == ts->cap) {
		size_t cap = ts->cap ? ts->cap * 2 : 64;
		seen_view *grown = weld__reallocarray(ts->views, cap, sizeof(*grown));
		if (!grown)
			return weld__nomem(err);
		ts->views = grown;
		ts->cap = cap;
	}
	if (!weld_map_add(&ts->by_view, v, ts->nviews, &had))
		return weld__nomem(err);
	if (had != WELD_MAP_NONE)
		*owner = ts->views[had].tensor;
	else
		ts->views[ts->nviews++] = (seen_view){v, tensor};
	return WELD_OK;
}

/*
 * The fragment of view V (tensor T, the last one of C): the innermost
 * dimensions laid out contiguously form one run, and the outer ones, when
 * there are any, become the fragment's pattern. A view of a zip record
 * names it (torch computed its CRC-32), so whoever streams the record's
 * bytes can check it.
 */
static weld_status view_frag(weld_ckpt *c, uint32_t src, const ckpt_tensor *t, const weld_py *v, weld_error *err)
{
	weld_torch_storage st;
	weld_status s = weld_torch_storage_range(weld__torch_of(c, src), v->tensor.storage, &st, err);
	if (s)
		return s;
	size_t esz = weld_dtype_size(t->dtype), inner = v->tensor.ndim;
	uint64_t run = 1;
	while (inner > 0 && (v->tensor.shape[inner - 1] == 1 || (uint64_t)v->tensor.stride[inner - 1] == run))
		run *= v->tensor.shape[--inner];
	/* Extents were checked against the storage when the pickle was read. */
	weld_frag f = {st.offset + v->tensor.storage_offset * esz, run, 0, src, WELD_NO_RECORD, WELD_NO_PATTERN};
	if (t->numel == 0) /* nothing to read, but a place in the file all the same */
		return weld__ckpt_add_frag(c, (weld_frag){f.src_offset, 0, 0, src, WELD_NO_RECORD, WELD_NO_PATTERN}, err);
	if (inner > 0) {
		weld_pattern p = {.ndim = inner};
		for (size_t d = 0; d < inner; d++) {
			p.shape[d] = v->tensor.shape[d];
			p.stride[d] = (uint64_t)v->tensor.stride[d];
		}
		if ((s = weld__ckpt_add_pattern(c, &p, &f.pattern, err)))
			return s;
	}
	if (st.entry && weld_zip_crc_known(st.entry))
		s = weld__ckpt_add_record(c, (weld_record){c->src[src].file, st.offset, st.nbytes, st.entry->crc32, st.entry->record},
					  &f.record, err);
	return s ? s : weld__ckpt_add_frag(c, f, err);
}

weld_status weld__torch_plain_view(const char *path, const char *what, const char *name, const weld_py *v,
				   weld_error *err)
{
	if (v->tensor.neg)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: %s%s%s is a negative view (torch's neg bit): its values are its storage's negated; "
				  "save it after .resolve_neg()",
				  path, what, name ? name : "", name ? "'" : "");
	if (v->tensor.conj)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: %s%s%s is a conjugate view (torch's conj bit): its values are its storage's conjugated; "
				  "save it after .resolve_conj()",
				  path, what, name ? name : "", name ? "'" : "");
	return WELD_OK;
}

weld_status weld__torch_add_tensor(weld_ckpt *c, uint32_t src, const char *name, const weld_py *v, weld_error *err)
{
	ckpt_tensor *t;
	weld_status s;
	if ((s = weld__torch_plain_view(c->src[src].file->path, "tensor '", name, v, err)))
		return s;
	s = weld__ckpt_new_tensor(c, name, &t, err);
	if (s)
		return s;
	t->src = src;
	t->dtype = v->tensor.dtype;
	t->ndim = v->tensor.ndim;
	memcpy(t->shape, v->tensor.shape, sizeof(uint64_t) * t->ndim);
	if ((s = weld__ckpt_set_sizes(t, c->src[src].file->path, err)))
		return s;
	size_t owner;
	if ((s = listed_as(c->src[src].parsed, v, c->nt - 1, &owner, err)))
		return s;
	if (owner == SIZE_MAX)
		return view_frag(c, src, t, v, err);
	/* The same view under a second name: the owner's fragments, once. */
	const ckpt_tensor *o = &c->t[owner];
	t->alias_of = o->alias_of ? o->alias_of : o->name;
	t->frag_first = o->frag_first;
	t->frag_count = o->frag_count;
	return WELD_OK;
}

/*
 * Name every tensor reachable through dicts, lists and tuples: keys joined
 * with '.', list positions as numbers, as state-dict names are. A shared
 * container is walked once. Pickle nesting is bounded (1000), so this
 * recursion is too.
 */
typedef struct walk {
	weld_ckpt *c;
	uint32_t src;
	char name[4096];
	weld_ptrset seen;
} walk;

static weld_status flatten(walk *w, const weld_py *o, size_t len, weld_error *err);

/* Child CHILD of a container, named PART under the name so far (LEN bytes). */
static weld_status flatten_child(walk *w, const weld_py *child, const char *part, size_t len, weld_error *err)
{
	size_t plen = strlen(part), nlen = len + (len ? 1 : 0) + plen;
	if (nlen + 1 > sizeof(w->name))
		return weld__fail(err, WELD_ERR_LIMIT, "%s: tensor name longer than %zu bytes", w->c->src[w->src].file->path,
				  sizeof(w->name) - 1);
	if (len)
		w->name[len] = '.';
	memcpy(w->name + len + (len ? 1 : 0), part, plen + 1);
	weld_status s = flatten(w, child, nlen, err);
	w->name[len] = '\0';
	return s;
}

static weld_status flatten(walk *w, const weld_py *o, size_t len, weld_error *err)
{
	bool added;
	if (o->kind == WELD_PY_TENSOR)
		return weld__torch_add_tensor(w->c, w->src, w->name, o, err);
	if (o->kind != WELD_PY_DICT && o->kind != WELD_PY_LIST && o->kind != WELD_PY_TUPLE)
		return WELD_OK;
	if (!weld_ptrset_add(&w->seen, o, &added))
		return weld__nomem(err);
	if (!added)
		return WELD_OK;
	bool dict = o->kind == WELD_PY_DICT;
	size_t n = dict ? o->dict.n : o->seq.n;
	weld_status s = WELD_OK;
	for (size_t i = 0; i < n && !s; i++) {
		char num[32];
		const char *part = num;
		const weld_py *k = dict ? o->dict.keys[i] : NULL;
		if (!dict)
			snprintf(num, sizeof(num), "%zu", i);
		else if (k->kind == WELD_PY_STR)
			part = k->str.s;
		else if (k->kind == WELD_PY_INT && !k->i.big)
			snprintf(num, sizeof(num), "%lld", (long long)k->i.v);
		else
			continue;
		s = flatten_child(w, dict ? o->dict.vals[i] : o->seq.items[i], part, len, err);
	}
	return s;
}

weld_status weld__torch_add_tree(weld_ckpt *c, uint32_t src, const weld_py *root, weld_error *err)
{
	if (root->kind != WELD_PY_DICT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: holds no dict of tensors", c->src[src].file->path);
	walk *w = calloc(1, sizeof(*w));
	if (!w)
		return weld__nomem(err);
	w->c = c;
	w->src = src;
	weld_status s = flatten(w, root, 0, err);
	weld_ptrset_clear(&w->seen);
	free(w);
	return s;
}

/* KEY of dict D, when it is there and is not a tensor (a state dict's keys name tensors). */
static bool has_plain(const weld_py *d, const char *key)
{
	const weld_py *v = weld_py_dict_get(d, key);
	return v && v->kind != WELD_PY_TENSOR;
}

/*
 * Megatron-LM's files (model_optim_rng.pt) are torch files like any other,
 * but its tensors sit under model.language_model.* or model.decoder.*, cut
 * by tensor and pipeline rank: names no HF loader understands. Known by
 * what its save_checkpoint puts beside them (a checkpoint_version, or the
 * iteration and the run's args beside model / model0...), whatever the file
 * is called; DeepSpeed's model states keep theirs under 'module'.
 */
static weld_status refuse_megatron(const char *path, const weld_py *root, weld_error *err)
{
	if (has_plain(root, "checkpoint_version"))
		return weld__foreign_fail(err, path, WELD_FOREIGN_MEGATRON, "its dict has 'checkpoint_version'");
	if (has_plain(root, "iteration") && has_plain(root, "args") && (has_plain(root, "model") || has_plain(root, "model0")))
		return weld__foreign_fail(err, path, WELD_FOREIGN_MEGATRON, "its dict has 'iteration', 'args' and 'model'");
	return WELD_OK;
}

weld_status weld__torch_add_file(weld_ckpt *c, const char *path, weld_torch_kind *kind, weld_error *err)
{
	uint32_t src;
	const weld_py *root = NULL;
	weld_status s = weld__torch_source(c, path, &src, &root, err);
	if (!s)
		s = refuse_megatron(path, root, err);
	if (s)
		return s;
	*kind = weld_torch_kind_of(weld__torch_of(c, src));
	return weld__torch_add_tree(c, src, root, err);
}
