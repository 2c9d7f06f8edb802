/* A DCP .metadata pickle read as inert objects into plain structs (dcp_meta.h). */
#include "io/dcp_meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DCP_MOD "torch.distributed.checkpoint.metadata"
/* A .metadata lists every chunk of every tensor: tens of MB for the largest models. */
#define DCP_META_MAX ((size_t)1 << 30)

typedef struct reader {
	const char *path;
	dcp_meta *m;
	weld_map storage_keys; /* "fqn|o1,o2,..." -> storage index */
	char **keys;
	size_t nkeys;
	weld_error *err;
} reader;

static bool is_obj(const weld_py *o, const char *module, const char *name)
{
	return o && o->kind == WELD_PY_OBJECT && strcmp(o->obj.module, module) == 0 && strcmp(o->obj.name, name) == 0;
}

/* Field NAME of dataclass instance O: its BUILD state dict (or a slots state's dict). */
static const weld_py *field(const weld_py *o, const char *name)
{
	const weld_py *st = o && o->kind == WELD_PY_OBJECT ? o->obj.state : NULL;
	if (st && st->kind == WELD_PY_TUPLE && st->seq.n == 2) {
		const weld_py *v = weld_py_dict_get(st->seq.items[1], name);
		return v ? v : weld_py_dict_get(st->seq.items[0], name);
	}
	return st && st->kind == WELD_PY_DICT ? weld_py_dict_get(st, name) : NULL;
}

static bool as_u64(const weld_py *o, uint64_t *v)
{
	if (!o || o->kind != WELD_PY_INT || o->i.big || o->i.v < 0)
		return false;
	*v = (uint64_t)o->i.v;
	return true;
}

/* A torch.Size (or tuple/list) of non-negative ints into OUT; *N its length. */
static bool as_dims(const weld_py *o, uint64_t *out, size_t *n)
{
	if (!o || (o->kind != WELD_PY_SIZE && o->kind != WELD_PY_TUPLE && o->kind != WELD_PY_LIST) ||
	    o->seq.n > WELD_MAX_DIMS)
		return false;
	for (size_t i = 0; i < o->seq.n; i++)
		if (!as_u64(o->seq.items[i], &out[i]) || out[i] > (uint64_t)INT64_MAX)
			return false;
	*n = o->seq.n;
	return true;
}

static weld_status bad(reader *r, const char *what)
{
	return weld__fail(r->err, WELD_ERR_FORMAT, "%s: %s", r->path, what);
}

/* The lookup key of a chunk: its tensor's fqn and its offsets. */
static char *chunk_key(const char *fqn, const uint64_t *off, size_t n)
{
	size_t cap = strlen(fqn) + 2 + n * 21, len;
	char *k = malloc(cap);
	if (!k)
		return NULL;
	len = (size_t)snprintf(k, cap, "%s|", fqn);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(k + len, cap - len, "%s%llu", i ? "," : "", (unsigned long long)off[i]);
	return k;
}

static const char *key_of(const void *ctx, size_t i)
{
	return ((const reader *)ctx)->keys[i];
}

/* A str without NUL (a NUL would cut the C string short: torch would not read that name). */
static bool plain_str(const weld_py *o)
{
	return o && o->kind == WELD_PY_STR && strlen(o->str.s) == o->str.len;
}

/* One storage_data entry: MetadataIndex -> _StorageInfo. */
static weld_status read_storage(reader *r, const weld_py *idx, const weld_py *info)
{
	const weld_py *fqn = field(idx, "fqn"), *rel = field(info, "relative_path"), *tr = field(info, "transform_descriptors");
	uint64_t off[WELD_MAX_DIMS], end;
	size_t n = 0;
	dcp_storage *s = &r->m->storage[r->m->nstorage];
	const weld_py *offset = field(idx, "offset");
	s->bytes_item = !offset || offset->kind == WELD_PY_NONE; /* byte items have no offset in a tensor */
	if (!is_obj(idx, DCP_MOD, "MetadataIndex") || !plain_str(fqn) || (!s->bytes_item && !as_dims(offset, off, &n)) ||
	    !is_obj(info, "torch.distributed.checkpoint.filesystem", "_StorageInfo") || !plain_str(rel))
		return bad(r, "a storage_data entry is not a MetadataIndex and a _StorageInfo");
	if (!as_u64(field(info, "offset"), &s->offset) || !as_u64(field(info, "length"), &s->length) ||
	    !weld__add_u64(&end, s->offset, s->length) || end > (uint64_t)INT64_MAX)
		return weld__fail(r->err, WELD_ERR_FORMAT, "%s: the storage of a chunk of '%s' has an offset or length out of range",
				  r->path, fqn->str.s);
	s->relative_path = rel->str.s;
	s->fqn = fqn->str.s;
	s->transform = NULL;
	if (tr && tr->kind == WELD_PY_LIST && tr->seq.n > 0)
		s->transform = tr->seq.items[0]->kind == WELD_PY_STR ? tr->seq.items[0]->str.s : "(not a string)";
	else if (tr && tr->kind != WELD_PY_NONE && tr->kind != WELD_PY_LIST)
		return bad(r, "a _StorageInfo's transform_descriptors is not a list");
	char *k = chunk_key(fqn->str.s, off, n);
	size_t had;
	if (!k)
		return weld__nomem(r->err);
	r->keys[r->nkeys++] = k; /* freed with the others whatever happens next */
	if (!weld_map_add(&r->storage_keys, k, r->nkeys - 1, &had))
		return weld__nomem(r->err);
	if (had != WELD_MAP_NONE)
		return weld__fail(r->err, WELD_ERR_FORMAT, "%s: two storage_data entries for one chunk of '%s'", r->path,
				  fqn->str.s);
	r->m->nstorage++;
	return WELD_OK;
}

static weld_status read_storage_data(reader *r, const weld_py *sd)
{
	if (!sd || sd->kind != WELD_PY_DICT)
		return bad(r, "Metadata has no storage_data dict (only a FileSystemWriter's .metadata is read)");
	dcp_meta *m = r->m;
	if (!(m->storage = weld__calloc(sd->dict.n ? sd->dict.n : 1, sizeof(*m->storage))) ||
	    !(r->keys = weld__calloc(sd->dict.n ? sd->dict.n : 1, sizeof(*r->keys))))
		return weld__nomem(r->err);
	weld_map_init_names(&r->storage_keys, key_of, r);
	if (!weld_map_reserve(&r->storage_keys, sd->dict.n))
		return weld__nomem(r->err);
	weld_status s = WELD_OK;
	for (size_t i = 0; i < sd->dict.n && !s; i++)
		s = read_storage(r, sd->dict.keys[i], sd->dict.vals[i]);
	return s;
}

/* The chunks of tensor T (their metadata list CH), each matched with its storage. */
static weld_status read_chunks(reader *r, dcp_tensor *t, const weld_py *ch)
{
	if (!ch || ch->kind != WELD_PY_LIST)
		return weld__fail(r->err, WELD_ERR_FORMAT, "%s: tensor '%s' has no chunks list", r->path, t->fqn);
	if (!(t->chunks = weld__calloc(ch->seq.n ? ch->seq.n : 1, sizeof(*t->chunks))))
		return weld__nomem(r->err);
	for (size_t i = 0; i < ch->seq.n; i++) {
		dcp_chunk *k = &t->chunks[t->nchunks++];
		size_t no, ns;
		const weld_py *c = ch->seq.items[i];
		if (!is_obj(c, DCP_MOD, "ChunkStorageMetadata") || !as_dims(field(c, "offsets"), k->offsets, &no) ||
		    !as_dims(field(c, "sizes"), k->sizes, &ns) || no != t->ndim || ns != t->ndim)
			return weld__fail(r->err, WELD_ERR_FORMAT, "%s: tensor '%s': chunk %zu is not offsets and sizes of %zu dims",
					  r->path, t->fqn, i, t->ndim);
		char *key = chunk_key(t->fqn, k->offsets, t->ndim);
		if (!key)
			return weld__nomem(r->err);
		size_t at = weld_map_get(&r->storage_keys, key);
		free(key);
		k->storage = at == WELD_MAP_NONE ? DCP_NO_STORAGE : at;
	}
	return WELD_OK;
}

/* Entry FQN -> V of state_dict_metadata: a tensor (kept) or bytes (counted). */
static weld_status read_entry(reader *r, const weld_py *fqn, const weld_py *v)
{
	if (!plain_str(fqn))
		return bad(r, "a state_dict_metadata key is not a string without NUL");
	if (is_obj(v, DCP_MOD, "BytesStorageMetadata")) {
		r->m->nbytes_entries++;
		return WELD_OK;
	}
	dcp_tensor *t = &r->m->t[r->m->nt];
	memset(t, 0, sizeof(*t));
	t->fqn = fqn->str.s;
	const weld_py *props = field(v, "properties");
	const weld_py *st = props && props->kind == WELD_PY_OBJECT ? props->obj.state : NULL;
	const weld_py *dt = st && st->kind == WELD_PY_TUPLE && st->seq.n >= 1 ? st->seq.items[0] : field(props, "dtype");
	if (!is_obj(v, DCP_MOD, "TensorStorageMetadata") || !is_obj(props, DCP_MOD, "TensorProperties") || !dt ||
	    dt->kind != WELD_PY_GLOBAL || strcmp(dt->obj.module, "torch") != 0 || !as_dims(field(v, "size"), t->size, &t->ndim))
		return weld__fail(r->err, WELD_ERR_FORMAT, "%s: entry '%s' is neither tensor nor bytes metadata", r->path,
				  t->fqn);
	if ((t->dtype = weld__dtype_from_torch_name(dt->obj.name)) == WELD_DTYPE_INVALID)
		return weld__fail(r->err, WELD_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype torch.%s, which weld does not read",
				  r->path, t->fqn, dt->obj.name);
	r->m->nt++;
	return read_chunks(r, t, field(v, "chunks"));
}

/* Part K of planner_data's path for FQN as a string, or NULL; KEYS indexes PLANNER's keys. */
static const char *path_part(const weld_py *planner, const weld_map *keys, const char *fqn, size_t k, size_t *nparts)
{
	size_t at = planner ? weld_map_get(keys, fqn) : WELD_MAP_NONE;
	const weld_py *p = at == WELD_MAP_NONE ? NULL : planner->dict.vals[at];
	*nparts = 0;
	if (!p || (p->kind != WELD_PY_TUPLE && p->kind != WELD_PY_LIST))
		return NULL;
	*nparts = p->seq.n;
	return k < p->seq.n && p->seq.items[k]->kind == WELD_PY_STR ? p->seq.items[k]->str.s : NULL;
}

/*
 * Which tensors are the model's, from planner_data (each fqn's path in the
 * nested dict that was saved): with a "model" group, its entries, named
 * without it; else the top-level tensors, named as they are. Without
 * planner_data: every fqn outside the usual training-state groups.
 */
static weld_status name_model(dcp_meta *m, const weld_py *planner, weld_error *err)
{
	bool grouped = false;
	size_t n;
	weld_map keys = {0}; /* one lookup per tensor: scanning instead took 12 s at 51,200 tensors */
	if (planner && !weld_py_index_strs(planner, &keys))
		return weld__nomem(err);
	for (size_t i = 0; i < m->nt && !grouped; i++) {
		const char *top = path_part(planner, &keys, m->t[i].fqn, 0, &n);
		grouped = n >= 2 && top && strcmp(top, "model") == 0;
	}
	static const char *const state_groups[] = {"optimizer.", "optim.", "lr_scheduler.", "dataloader.", "train_state."};
	for (size_t i = 0; i < m->nt; i++) {
		dcp_tensor *t = &m->t[i];
		const char *top = path_part(planner, &keys, t->fqn, 0, &n);
		if (grouped)
			t->name = n >= 2 && top && strcmp(top, "model") == 0 && strncmp(t->fqn, "model.", 6) == 0 ? t->fqn + 6 : NULL;
		else if (planner && planner->kind == WELD_PY_DICT)
			t->name = n == 1 ? t->fqn : NULL;
		else
			t->name = t->fqn;
		for (size_t g = 0; !planner && g < sizeof(state_groups) / sizeof(state_groups[0]); g++)
			if (strncmp(t->fqn, state_groups[g], strlen(state_groups[g])) == 0)
				t->name = NULL;
	}
	weld_map_clear(&keys);
	return WELD_OK;
}

static weld_status read_root(reader *r, const weld_py *root)
{
	if (!is_obj(root, DCP_MOD, "Metadata"))
		return bad(r, "not a torch.distributed.checkpoint Metadata pickle");
	const weld_py *sdm = field(root, "state_dict_metadata"), *planner = field(root, "planner_data");
	if (!sdm || sdm->kind != WELD_PY_DICT)
		return bad(r, "Metadata has no state_dict_metadata dict");
	weld_status s = read_storage_data(r, field(root, "storage_data"));
	if (!s && !(r->m->t = weld__calloc(sdm->dict.n ? sdm->dict.n : 1, sizeof(*r->m->t))))
		s = weld__nomem(r->err);
	for (size_t i = 0; i < sdm->dict.n && !s; i++)
		s = read_entry(r, sdm->dict.keys[i], sdm->dict.vals[i]);
	if (!s)
		s = name_model(r->m, planner && planner->kind == WELD_PY_DICT ? planner : NULL, r->err);
	return s;
}

weld_status weld__dcp_meta_read(dcp_meta *m, const char *path, const char *const *allow, size_t nallow,
				weld_error *err)
{
	memset(m, 0, sizeof(*m));
	char *text = NULL;
	size_t len = 0, used = 0;
	weld_py *root = NULL;
	weld_status s = weld__read_small_file(path, DCP_META_MAX, &text, &len, err);
	if (!s)
		s = weld_pickle_new(&m->pickle, NULL, err);
	for (size_t i = 0; i < nallow && !s; i++)
		s = weld_pickle_allow_global(m->pickle, allow[i], err);
	if (!s && (s = weld_pickle_load(m->pickle, (const uint8_t *)text, len, &used, &root, err)))
		weld__prefix(err, "%s", path);
	free(text);
	reader r = {.path = path, .m = m, .err = err};
	if (!s)
		s = read_root(&r, root);
	for (size_t i = 0; i < r.nkeys; i++)
		free(r.keys[i]);
	free(r.keys);
	weld_map_clear(&r.storage_keys);
	if (s)
		weld__dcp_meta_free(m);
	return s;
}

void weld__dcp_meta_free(dcp_meta *m)
{
	for (size_t i = 0; i < m->nt; i++)
		free(m->t[i].chunks);
	free(m->t);
	free(m->storage);
	weld_pickle_free(m->pickle);
	memset(m, 0, sizeof(*m));
}
