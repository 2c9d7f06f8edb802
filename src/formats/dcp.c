/*
 * PyTorch Distributed Checkpoints as fragments (dcp.h).
 *
 * A DCP folder is a .metadata pickle beside __R_I.distcp files. With the
 * default serialization (torch_save) each chunk of a tensor is a complete
 * torch.save archive of that chunk stored at [offset, offset + length) of
 * one .distcp file: it is opened as a zip inside that window of the file
 * (weld_file_window), its data record checked by CRC as it streams.
 *
 * A chunk covers offsets[d] .. offsets[d] + sizes[d] of every dimension of
 * the global tensor. Its elements land in the output as runs: the trailing
 * dimensions it covers whole, plus the last one it cuts, are contiguous in
 * both the chunk and the output; each index of the dimensions before that
 * is one run. A chunk of a row-sharded (dim 0) tensor is one run; one cut on
 * dimension 1 is a run per row. Runs of all chunks are sorted by where they
 * land and must tile the tensor exactly: the metadata is trusted for where
 * chunks are, never a sharding rule, but not for covering the tensor.
 */
#include "formats/dcp.h"

#include "io/dcp_meta.h"
#include "formats/torch_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the plan takes per tensor (pipeline/plan.c): the same bound, said in DCP's words and earlier. */
#define DCP_MAX_RUNS (1u << 22)

typedef struct run {
	uint64_t dst, count, src_off; /* elements, elements, bytes */
	uint32_t src, record;
} run;

typedef struct opener {
	weld_ckpt *c;
	const char *dir;
	const dcp_meta *m;
	weld_file **parents; /* by storage relative path, opened once */
	char **parent_names;
	size_t nparents;
	weld_map parent_index; /* parent_names -> position: every chunk looks its file up */
	run *runs;
	size_t nruns, cap;
} opener;

static bool holds(const char *dir, const char *name)
{
	char *p = weld__path_join(dir, name);
	bool yes = p && weld__is_file(p);
	free(p);
	return yes;
}

/* DIR itself, or its pytorch_model_fsdp_0/ (HF Trainer + accelerate); NULL when neither is a DCP. */
static char *dcp_dir(const char *dir)
{
	/* Megatron's distributed format is a DCP of its own names beside these: not the model's HF names. */
	if (holds(dir, ".metadata") && !(holds(dir, "metadata.json") && holds(dir, "common.pt")))
		return weld__strdup(dir);
	char *sub = weld__path_join(dir, "pytorch_model_fsdp_0");
	if (sub && holds(sub, ".metadata"))
		return sub;
	free(sub);
	return NULL;
}

bool weld__dcp_present(const char *dir)
{
	char *d = dcp_dir(dir);
	free(d);
	return d != NULL;
}

static const char *parent_name(const void *ctx, size_t i)
{
	return ((const opener *)ctx)->parent_names[i];
}

/* The .distcp file a storage entry names, opened once. */
static weld_status parent_file(opener *o, const char *rel, weld_file **out, weld_error *err)
{
	if (!o->parent_index.name_of)
		weld_map_init_names(&o->parent_index, parent_name, o);
	size_t at = weld_map_get(&o->parent_index, rel), had;
	if (at != WELD_MAP_NONE) {
		*out = o->parents[at];
		return WELD_OK;
	}
	if (!rel[0] || strchr(rel, '/') || strcmp(rel, ".") == 0 || strcmp(rel, "..") == 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: storage file '%s' is not a file name in the folder",
				  o->dir, rel);
	weld_file **p = weld__reallocarray(o->parents, o->nparents + 1, sizeof(*p));
	char **n = p ? weld__reallocarray(o->parent_names, o->nparents + 1, sizeof(*n)) : NULL;
	if (p)
		o->parents = p;
	if (n)
		o->parent_names = n;
	char *path = weld__path_join(o->dir, rel);
	if (!p || !n || !path || !(n[o->nparents] = weld__strdup(rel))) {
		free(path);
		return weld__nomem(err);
	}
	weld_status s = weld_file_open(&p[o->nparents], path, err);
	free(path);
	if (!s && !weld_map_add(&o->parent_index, rel, o->nparents, &had)) {
		weld_file_close(p[o->nparents]);
		s = weld__nomem(err);
	}
	if (s) {
		free(n[o->nparents]);
		return s;
	}
	*out = p[o->nparents++];
	return WELD_OK;
}

/* Why the bytes at the window's start are not a torch.save archive. */
/* true when F starts as a safetensors file does: a little-endian header length, then '{'. */
static bool safetensors_head(weld_file *f)
{
	uint8_t head[9] = {0};
	weld_error e = {0};
	return f->size >= 9 && weld_file_pread(f, head, 9, 0, &e) == WELD_OK && head[8] == '{';
}

#define SAFETENSORS_FORMAT " (the file is safetensors: a DCP saved with serialization_format SAFETENSORS, which weld does not read)"

static weld_status not_torch_save(const opener *o, weld_file *parent, const dcp_tensor *t, const dcp_storage *st,
				  weld_error *err)
{
	return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s/%s: the chunk of '%s' at byte %llu is not a torch.save archive%s",
			  o->dir, st->relative_path, t->fqn, (unsigned long long)st->offset,
			  safetensors_head(parent) ? SAFETENSORS_FORMAT : "");
}

/* Why two storage entries share bytes: a safetensors-format DCP lists them all at its data's start. */
static weld_status overlap(const char *dir, const dcp_storage *a, const dcp_storage *b, weld_error *err)
{
	char *path = weld__path_join(dir, b->relative_path);
	weld_file *f = NULL;
	weld_error e = {0};
	bool st = path && weld_file_open(&f, path, &e) == WELD_OK && safetensors_head(f);
	weld_file_close(f);
	free(path);
	if (st)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s/%s: the chunk of '%s' at byte %llu is not a torch.save archive" SAFETENSORS_FORMAT, dir,
				  a->relative_path, a->fqn, (unsigned long long)a->offset);
	return weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: the stored chunks of '%s' and '%s' overlap in %s at byte %llu",
			  dir, a->fqn, b->fqn, b->relative_path, (unsigned long long)b->offset);
}

/* The chunk's tensor must be the chunk: its dtype and sizes, contiguous, no view bits. */
static weld_status check_chunk(const char *path, const dcp_tensor *t, const dcp_chunk *k, const weld_py *v,
			       weld_error *err)
{
	if (!v || v->kind != WELD_PY_TENSOR)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: holds no tensor for a chunk of '%s'", path, t->fqn);
	weld_status s = weld__torch_plain_view(path, "the chunk of '", t->fqn, v, err);
	if (s)
		return s;
	if (v->tensor.dtype != t->dtype)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: the chunk of '%s' holds %s, where .metadata says %s", path, t->fqn,
				  weld_dtype_name(v->tensor.dtype), weld_dtype_name(t->dtype));
	bool same = v->tensor.ndim == t->ndim;
	int64_t want = 1;
	for (size_t d = t->ndim; same && d-- > 0;) {
		same = v->tensor.shape[d] == k->sizes[d];
		if (same && k->sizes[d] > 1 && v->tensor.stride[d] != want)
			return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: the chunk of '%s' is not stored contiguous", path,
					  t->fqn);
		want *= (int64_t)k->sizes[d];
	}
	if (!same)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: the chunk of '%s' holds a tensor of another shape than .metadata says",
				  path, t->fqn);
	return WELD_OK;
}

/* Opens chunk K of T as a source: *SRC, the file offset of its first element, and its record. */
static weld_status open_chunk(opener *o, const dcp_tensor *t, const dcp_chunk *k, uint32_t *src, uint64_t *base,
			      uint32_t *record, weld_error *err)
{
	const dcp_storage *st = &o->m->storage[k->storage];
	if (st->transform)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s/%s: the chunk of '%s' is stored through the extension '%s' (a transform_descriptor), "
				  "which weld does not read",
				  o->dir, st->relative_path, t->fqn, st->transform);
	weld_file *parent = NULL, *win = NULL;
	char *name = NULL;
	weld_status s = parent_file(o, st->relative_path, &parent, err);
	if (!s && !(name = weld__format("%s/%s (bytes %llu-%llu)", o->dir, st->relative_path, (unsigned long long)st->offset,
					 (unsigned long long)(st->offset + (st->length > UINT64_MAX - st->offset ? 0 : st->length)))))
		s = weld__nomem(err);
	if (!s)
		s = weld_file_window(&win, parent, st->offset, st->length, name, err);
	free(name);
	uint8_t magic[4] = {0};
	if (!s && st->length >= 4)
		s = weld_file_pread(win, magic, 4, 0, err);
	if (s || memcmp(magic, "PK\x03\x04", 4) != 0) {
		weld_file_close(win);
		return s ? s : not_torch_save(o, parent, t, st, err);
	}
	const weld_py *root = NULL;
	s = weld__torch_file_source(o->c, win, src, &root, err);
	if (!s)
		s = check_chunk(o->c->src[*src].file->path, t, k, root, err);
	weld_torch_storage r;
	if (!s)
		s = weld_torch_storage_range(weld__torch_of(o->c, *src), root->tensor.storage, &r, err);
	if (s)
		return s;
	*base = r.offset + root->tensor.storage_offset * weld_dtype_size(t->dtype);
	*record = WELD_NO_RECORD;
	if (r.entry && weld_zip_crc_known(r.entry)) {
		/* The record's name outlives the parsed archive, dropped below. */
		char *rec = weld__ckpt_own(o->c, weld__strdup(r.entry->record));
		if (!rec)
			return weld__nomem(err);
		s = weld__ckpt_add_record(o->c, (weld_record){o->c->src[*src].file, r.offset, r.nbytes, r.entry->crc32, rec},
					  record, err);
	}
	weld__ckpt_drop_parsed(o->c, *src);
	return s;
}

static weld_status add_run(opener *o, run r, weld_error *err)
{
	if (o->nruns == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		run *g = weld__reallocarray(o->runs, cap, sizeof(*g));
		if (!g)
			return weld__nomem(err);
		o->runs = g;
		o->cap = cap;
	}
	o->runs[o->nruns++] = r;
	return WELD_OK;
}

/*
 * Chunk K of T inside T (checked: sizes and offsets come from the file):
 * *NUMEL its elements, *J the last dimension it cuts (0 when none), *NRUNS
 * the runs it lands as, each *LEN elements.
 */
static weld_status chunk_shape(const opener *o, const dcp_tensor *t, const dcp_chunk *k, uint64_t *numel, size_t *j,
			       uint64_t *nruns, uint64_t *len, weld_error *err)
{
	uint64_t end;
	*numel = 1, *j = 0, *len = 1;
	for (size_t d = t->ndim; d-- > 0;)
		if (!weld__add_u64(&end, k->offsets[d], k->sizes[d]) || end > t->size[d])
			return weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: a chunk of '%s' lies outside its size on dimension %zu",
					  o->dir, t->fqn, d);
	for (size_t d = 0; d < t->ndim; d++)
		*numel *= k->sizes[d]; /* at most the tensor's numel, which did not overflow */
	for (size_t d = t->ndim; d-- > 0;)
		if (k->sizes[d] != t->size[d]) {
			*j = d;
			break;
		}
	for (size_t d = *j; d < t->ndim; d++)
		*len *= k->sizes[d];
	*nruns = *numel ? *numel / *len : 0;
	return WELD_OK;
}

/* The runs chunk K of T lands as (see the top of this file). */
static weld_status chunk_runs(opener *o, const dcp_tensor *t, const dcp_chunk *k, weld_error *err)
{
	uint64_t g[WELD_MAX_DIMS], numel, len, nruns;
	size_t n = t->ndim, j;
	weld_status s = chunk_shape(o, t, k, &numel, &j, &nruns, &len, err);
	if (s || numel == 0)
		return s;
	for (size_t d = n; d-- > 0;)
		g[d] = d + 1 == n ? 1 : g[d + 1] * t->size[d + 1];
	uint32_t src = 0, record = WELD_NO_RECORD;
	uint64_t base = 0;
	s = open_chunk(o, t, k, &src, &base, &record, err);
	size_t esz = weld_dtype_size(t->dtype);
	uint64_t idx[WELD_MAX_DIMS] = {0};
	for (uint64_t r = 0; r < nruns && !s; r++) {
		uint64_t dst = 0;
		for (size_t d = 0; d < n; d++)
			dst += (k->offsets[d] + (d < j ? idx[d] : 0)) * g[d];
		s = add_run(o, (run){dst, len, base + r * len * esz, src, record}, err);
		for (size_t d = j; d-- > 0;) { /* next index over the dimensions before J, in C order */
			if (++idx[d] < k->sizes[d])
				break;
			idx[d] = 0;
		}
	}
	return s;
}

static int cmp_run(const void *a, const void *b)
{
	const run *x = a, *y = b;
	return x->dst < y->dst ? -1 : x->dst > y->dst;
}

/* T's runs, sorted, as fragments: they must tile it, no gap and no overlap. */
static weld_status emit(opener *o, const dcp_tensor *t, const ckpt_tensor *ct, weld_error *err)
{
	if (o->nruns)
		qsort(o->runs, o->nruns, sizeof(*o->runs), cmp_run);
	uint64_t next = 0, esz = weld_dtype_size(t->dtype);
	weld_status s = WELD_OK;
	run cur = {0};
	for (size_t i = 0; i < o->nruns && !s; i++) {
		const run *r = &o->runs[i];
		if (r->dst != next)
			return weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: the chunks of '%s' %s at element %llu", o->dir,
					  t->fqn, r->dst < next ? "overlap" : "leave a gap", (unsigned long long)next);
		next += r->count;
		/* Rows of one chunk that follow each other in the output too are one fragment. */
		if (i > 0 && r->src == cur.src && r->record == cur.record && r->src_off == cur.src_off + cur.count * esz) {
			cur.count += r->count;
			continue;
		}
		if (i > 0)
			s = weld__ckpt_add_frag(o->c, (weld_frag){cur.src_off, cur.count, cur.dst, cur.src, cur.record, WELD_NO_PATTERN}, err);
		cur = *r;
	}
	if (!s && o->nruns)
		s = weld__ckpt_add_frag(o->c, (weld_frag){cur.src_off, cur.count, cur.dst, cur.src, cur.record, WELD_NO_PATTERN}, err);
	if (!s && next != ct->numel)
		return weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: the chunks of '%s' cover %llu of its %llu elements",
				  o->dir, t->fqn, (unsigned long long)next, (unsigned long long)ct->numel);
	if (!s && !o->nruns && o->c->nsrc > 0) /* empty: a place all the same */
		s = weld__ckpt_add_frag(o->c, (weld_frag){0, 0, 0, 0, WELD_NO_RECORD, WELD_NO_PATTERN}, err);
	return s;
}

static weld_status add_tensor(opener *o, const dcp_tensor *t, weld_error *err)
{
	ckpt_tensor *ct;
	weld_status s = weld__ckpt_new_tensor(o->c, t->name, &ct, err);
	if (s)
		return s;
	ct->dtype = t->dtype;
	ct->ndim = t->ndim;
	memcpy(ct->shape, t->size, sizeof(uint64_t) * t->ndim);
	if (weld__dtype_is_sub_byte(t->dtype))
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s/.metadata: tensor '%s' is %s, a sub-byte dtype weld does not gather from chunks",
				  o->dir, t->fqn, weld_dtype_name(t->dtype));
	if ((s = weld__ckpt_set_sizes(ct, o->dir, err)))
		return s;
	size_t idx = o->c->nt - 1;
	o->nruns = 0;
	uint64_t runs = 0;
	for (size_t i = 0; i < t->nchunks && !s; i++) { /* every chunk checked before any is read */
		const dcp_chunk *k = &t->chunks[i];
		uint64_t numel, nruns, len;
		size_t j;
		if ((s = chunk_shape(o, t, k, &numel, &j, &nruns, &len, err)))
			break;
		if (numel && k->storage == DCP_NO_STORAGE)
			s = weld__fail(err, WELD_ERR_FORMAT, "%s/.metadata: chunk %zu of '%s' has no storage_data entry", o->dir, i,
				       t->fqn);
		else if ((runs += nruns) > DCP_MAX_RUNS)
			s = weld__fail(err, WELD_ERR_LIMIT, "%s/.metadata: the chunks of '%s' cut it into more than %u runs",
				       o->dir, t->fqn, DCP_MAX_RUNS);
	}
	for (size_t i = 0; i < t->nchunks && !s; i++)
		if (t->chunks[i].storage != DCP_NO_STORAGE)
			s = chunk_runs(o, t, &t->chunks[i], err);
	ct = &o->c->t[idx];
	if (!s && o->nruns)
		ct->src = o->runs[0].src;
	return s ? s : emit(o, t, ct, err);
}

static int cmp_storage(const void *a, const void *b)
{
	const dcp_storage *x = *(const dcp_storage *const *)a, *y = *(const dcp_storage *const *)b;
	int c = strcmp(x->relative_path, y->relative_path);
	return c ? c : x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * No two storage entries share bytes: torch writes each item once, one after
 * another. Shared bytes would let one small archive stand for any number of
 * chunks (memory grows with rows x chunks), or a chunk read another's data.
 */
static weld_status storage_disjoint(const dcp_meta *m, const char *dir, weld_error *err)
{
	const dcp_storage **v = weld__calloc(m->nstorage ? m->nstorage : 1, sizeof(*v));
	size_t n = 0;
	if (!v)
		return weld__nomem(err);
	for (size_t i = 0; i < m->nstorage; i++)
		if (m->storage[i].length)
			v[n++] = &m->storage[i];
	if (n)
		qsort(v, n, sizeof(*v), cmp_storage);
	weld_status s = WELD_OK;
	for (size_t i = 1; i < n && !s; i++)
		if (strcmp(v[i - 1]->relative_path, v[i]->relative_path) == 0 &&
		    v[i - 1]->offset + v[i - 1]->length > v[i]->offset)
			s = overlap(dir, v[i - 1], v[i], err);
	free(v);
	return s;
}

static weld_status describe(weld_ckpt *c, const opener *o, size_t ntensors, weld_error *err)
{
	c->description = weld__ckpt_own(c, weld__format("torch.distributed.checkpoint: %zu tensors of the model in %zu files",
							  ntensors, o->nparents));
	return c->description ? WELD_OK : weld__nomem(err);
}

weld_status weld__dcp_open(weld_ckpt *c, const char *dir, weld_error *err)
{
	char *d = dcp_dir(dir), *meta = d ? weld__path_join(d, ".metadata") : NULL;
	if (!meta) {
		free(d);
		return d ? weld__nomem(err) : weld__fail(err, WELD_ERR_FORMAT, "%s: not a DCP folder (no .metadata)", dir);
	}
	dcp_meta m;
	weld_status s = weld__dcp_meta_read(&m, meta, c->allow_globals, c->nallow_globals, err);
	free(meta);
	opener o = {.c = c, .dir = d, .m = &m};
	size_t n = 0;
	c->format = WELD_FORMAT_DCP;
	if (!s)
		s = storage_disjoint(&m, d, err);
	for (size_t i = 0; !s && i < m.nt; i++)
		if (m.t[i].name && !(s = add_tensor(&o, &m.t[i], err)))
			n++;
	if (!s && n == 0)
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: the DCP holds no model tensors (%zu other tensor entries: an optimizer state?)",
			       d, m.nt);
	if (!s)
		s = describe(c, &o, n, err);
	for (size_t i = 0; i < o.nparents; i++) {
		weld_file_close(o.parents[i]); /* the windows keep what they need open */
		free(o.parent_names[i]);
	}
	free(o.parents);
	free(o.parent_names);
	weld_map_clear(&o.parent_index);
	free(o.runs);
	weld__dcp_meta_free(&m); /* names were copied; a failed read left it empty */
	free(d);
	return s;
}
