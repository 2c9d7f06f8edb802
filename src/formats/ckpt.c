/*
 * The weld_ckpt container every format fills (ckpt.h), its public getters,
 * and the one way to read a tensor: its fragments, whatever the format.
 */
#include "formats/ckpt.h"

#include <stdlib.h>
#include <string.h>

const char *weld_format_name(weld_format format)
{
	switch (format) {
	case WELD_FORMAT_SAFETENSORS: return "safetensors";
	case WELD_FORMAT_SAFETENSORS_SHARDED: return "safetensors-sharded";
	case WELD_FORMAT_TORCH_ZIP: return "torch-zip";
	case WELD_FORMAT_TORCH_LEGACY: return "torch-legacy";
	case WELD_FORMAT_TORCH_SHARDED: return "torch-sharded";
	case WELD_FORMAT_DEEPSPEED: return "deepspeed";
	case WELD_FORMAT_DCP: return "dcp";
	case WELD_FORMAT_UNKNOWN: break;
	}
	return "unknown";
}

/* Room for one more of an array's N items of SIZE bytes, doubling from FIRST. */
static bool reserve(void **items, size_t *cap, size_t n, size_t size, size_t first)
{
	if (n < *cap)
		return true;
	size_t grown = *cap ? *cap * 2 : first;
	void *p = weld__reallocarray(*items, grown, size);
	if (!p)
		return false;
	*items = p;
	*cap = grown;
	return true;
}

static const char *source_path(const void *ctx, size_t i)
{
	return ((const weld_ckpt *)ctx)->src[i].file->path;
}

/* PATH's index among C's sources, or WELD_MAP_NONE. By path, hashed: a ZeRO-3 checkpoint of 8192 ranks has 16,384. */
static size_t find_source(weld_ckpt *c, const char *path)
{
	if (!c->src_index.name_of)
		weld_map_init_names(&c->src_index, source_path, c);
	return weld_map_get(&c->src_index, path);
}

weld_status weld__ckpt_add_source(weld_ckpt *c, const char *path, uint32_t *index, weld_error *err)
{
	size_t at = find_source(c, path);
	if (at != WELD_MAP_NONE) {
		*index = (uint32_t)at;
		return WELD_OK;
	}
	weld_file *f;
	weld_status st = weld_file_open(&f, path, err);
	return st ? st : weld__ckpt_add_file(c, f, index, err);
}

weld_status weld__ckpt_add_file(weld_ckpt *c, weld_file *f, uint32_t *index, weld_error *err)
{
	const char *path = f->path;
	size_t at = find_source(c, path);
	if (at != WELD_MAP_NONE) {
		weld_file_close(f);
		*index = (uint32_t)at;
		return WELD_OK;
	}
	if (c->nsrc >= UINT32_MAX || !reserve((void **)&c->src, &c->scap, c->nsrc, sizeof(*c->src), 16)) {
		weld_file_close(f);
		return c->nsrc >= UINT32_MAX ? weld__fail(err, WELD_ERR_LIMIT, "%s: too many input files", path)
					     : weld__nomem(err);
	}
	ckpt_source *s = &c->src[c->nsrc];
	memset(s, 0, sizeof(*s));
	s->file = f;
	size_t had;
	if (!weld_map_add(&c->src_index, path, c->nsrc, &had)) {
		weld_file_close(s->file);
		s->file = NULL;
		return weld__nomem(err);
	}
	*index = (uint32_t)c->nsrc++;
	return WELD_OK;
}

weld_status weld__ckpt_new_tensor(weld_ckpt *c, const char *name, ckpt_tensor **out, weld_error *err)
{
	*out = NULL;
	if (!reserve((void **)&c->t, &c->tcap, c->nt, sizeof(*c->t), 64))
		return weld__nomem(err);
	ckpt_tensor *t = &c->t[c->nt];
	memset(t, 0, sizeof(*t));
	if (!(t->name = weld__strdup(name)))
		return weld__nomem(err);
	t->frag_first = c->nfrag;
	c->nt++;
	*out = t;
	return WELD_OK;
}

weld_status weld__ckpt_set_sizes(ckpt_tensor *t, const char *path, weld_error *err)
{
	uint64_t n = 1;
	/* torch's sizes are int64, and a safetensors loader's too: a larger dimension loads nowhere. */
	for (size_t i = 0; i < t->ndim; i++)
		if (t->shape[i] > (uint64_t)INT64_MAX)
			return weld__fail(err, WELD_ERR_FORMAT,
					  "%s: tensor '%s': dimension %zu is %llu, above 2^63-1, which no loader can index",
					  path, t->name, i, (unsigned long long)t->shape[i]);
	for (size_t i = 0; i < t->ndim; i++)
		if (!weld__mul_u64(&n, n, t->shape[i]))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor '%s': size overflows", path, t->name);
	t->numel = n;
	if (weld__dtype_is_sub_byte(t->dtype)) {
		/* Copied as bytes: numel counts the bytes (shape keeps the elements). */
		uint64_t bits;
		if (!weld__mul_u64(&bits, n, weld_dtype_bits(t->dtype)))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor '%s': size overflows", path, t->name);
		if (bits % 8)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor '%s': %s is not a whole number of bytes", path,
					  t->name, weld_dtype_name(t->dtype));
		t->numel = t->nbytes = bits / 8;
		return WELD_OK;
	}
	if (!weld__mul_u64(&t->nbytes, n, weld_dtype_size(t->dtype)))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor '%s': size overflows", path, t->name);
	return WELD_OK;
}

weld_status weld__ckpt_add_frag(weld_ckpt *c, weld_frag f, weld_error *err)
{
	if (!reserve((void **)&c->frag, &c->fcap, c->nfrag, sizeof(*c->frag), 256))
		return weld__nomem(err);
	c->frag[c->nfrag++] = f;
	c->t[c->nt - 1].frag_count++;
	return WELD_OK;
}

/* Records are keyed by file and offset: one range of a file is one record, however many views read it. */
static uint64_t rec_hash(const void *key)
{
	const weld_record *r = key;
	return weld__hash_u64(weld__hash_u64(0, (uint64_t)(uintptr_t)r->file), r->offset);
}

static bool rec_holds(const weld_map *m, const void *key, size_t value)
{
	const weld_record *r = key, *have = &((const weld_ckpt *)m->ctx)->rec[value];
	return have->file == r->file && have->offset == r->offset;
}

static const weld_map_kind rec_kind = {rec_hash, rec_holds};

weld_status weld__ckpt_add_record(weld_ckpt *c, weld_record r, uint32_t *index, weld_error *err)
{
	if (c->nrec >= WELD_NO_RECORD - 1)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: too many records", r.file->path);
	if (!c->rec_index.kind)
		weld_map_init(&c->rec_index, &rec_kind, c);
	size_t had;
	if (!reserve((void **)&c->rec, &c->rcap, c->nrec, sizeof(*c->rec), 64) ||
	    !weld_map_add(&c->rec_index, &r, c->nrec, &had))
		return weld__nomem(err);
	if (had == WELD_MAP_NONE)
		c->rec[c->nrec++] = r;
	*index = (uint32_t)(had == WELD_MAP_NONE ? c->nrec - 1 : had);
	return WELD_OK;
}

weld_status weld__ckpt_add_pattern(weld_ckpt *c, const weld_pattern *p, uint32_t *index, weld_error *err)
{
	if (c->npat >= WELD_NO_PATTERN)
		return weld__fail(err, WELD_ERR_LIMIT, "too many strided views");
	if (!reserve((void **)&c->pat, &c->pcap, c->npat, sizeof(*c->pat), 16))
		return weld__nomem(err);
	c->pat[c->npat] = *p;
	*index = (uint32_t)c->npat++;
	return WELD_OK;
}

uint64_t weld__frag_runs(const weld_pattern *pats, const weld_frag *f)
{
	if (f->pattern == WELD_NO_PATTERN)
		return 1;
	uint64_t n = 1;
	const weld_pattern *p = &pats[f->pattern];
	for (size_t d = 0; d < p->ndim; d++)
		n *= p->shape[d]; /* bounded by the tensor's element count, checked on open */
	return n;
}

uint64_t weld__pattern_run_start(const weld_pattern *p, uint64_t k)
{
	uint64_t at = 0;
	for (size_t d = p->ndim; d-- > 0;) {
		at += (k % p->shape[d]) * p->stride[d];
		k /= p->shape[d];
	}
	return at;
}

void *weld__ckpt_own(weld_ckpt *c, void *p)
{
	/* By doubling: ZeRO-3 owns a record name per frozen parameter per rank. */
	if (!p || !reserve((void **)&c->owned, &c->owncap, c->nowned, sizeof(*c->owned), 16)) {
		free(p);
		return NULL;
	}
	c->owned[c->nowned++] = p;
	return p;
}

void weld__ckpt_drop_parsed(weld_ckpt *c, uint32_t src)
{
	ckpt_source *s = &c->src[src];
	if (s->free_parsed)
		s->free_parsed(s->parsed);
	s->parsed = NULL;
	s->free_parsed = NULL;
}

bool weld__ckpt_one_run(const weld_ckpt *c, size_t i, weld_file **f, uint64_t *offset)
{
	const ckpt_tensor *t = &c->t[i];
	if (t->frag_count != 1 || c->frag[t->frag_first].pattern != WELD_NO_PATTERN)
		return false;
	const weld_frag *fr = &c->frag[t->frag_first];
	*f = c->src[fr->src].file;
	*offset = fr->src_offset;
	return true;
}

void weld_ckpt_free(weld_ckpt *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nt; i++)
		free(c->t[i].name);
	free(c->t);
	for (size_t i = 0; i < c->nsrc; i++) {
		if (c->src[i].free_parsed)
			c->src[i].free_parsed(c->src[i].parsed);
		weld_file_close(c->src[i].file);
	}
	free(c->src);
	free(c->frag);
	free(c->rec);
	weld_map_clear(&c->rec_index);
	weld_map_clear(&c->src_index);
	free(c->pat);
	for (size_t i = 0; i < c->nowned; i++)
		free(c->owned[i]);
	free(c->owned);
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
	uint64_t numel = t->numel;
	if (weld__dtype_is_sub_byte(t->dtype)) /* t->numel counts bytes; the shape, elements (checked on open) */
		for (size_t d = (numel = 1, 0); d < t->ndim; d++)
			numel *= t->shape[d];
	*out = (weld_tensor_info){
		.name = t->name,
		.dtype = t->dtype,
		.ndim = t->ndim,
		.shape = t->shape,
		.numel = numel,
		.nbytes = t->nbytes,
		.file = c->src[t->src].file->path,
		.contiguous = t->frag_count == 0 || (t->frag_count == 1 && c->frag[t->frag_first].pattern == WELD_NO_PATTERN),
		.alias_of = t->alias_of,
	};
	return WELD_OK;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

size_t weld_ckpt_tensor_parts(const weld_ckpt *c, size_t i)
{
	if (i >= c->nt)
		return 0;
	const ckpt_tensor *t = &c->t[i];
	uint32_t *srcs = malloc((t->frag_count ? t->frag_count : 1) * sizeof(*srcs));
	size_t n = t->frag_count ? 0 : 1;
	if (!srcs)
		return 1; /* out of memory: at least one */
	for (size_t k = 0; k < t->frag_count; k++)
		srcs[k] = c->frag[t->frag_first + k].src;
	if (t->frag_count)
		qsort(srcs, t->frag_count, sizeof(*srcs), cmp_u32);
	for (size_t k = 0; k < t->frag_count; k++)
		n += k == 0 || srcs[k] != srcs[k - 1];
	free(srcs);
	return n;
}

size_t weld_ckpt_file_count(const weld_ckpt *c)
{
	return c->nsrc;
}

const char *weld_ckpt_file(const weld_ckpt *c, size_t i)
{
	return i < c->nsrc ? c->src[i].file->path : NULL;
}

const weld_deepspeed_info *weld_ckpt_deepspeed(const weld_ckpt *c)
{
	return c->deepspeed;
}

const char *weld_ckpt_choice_note(const weld_ckpt *c)
{
	return c->choice_note;
}

/*
 * Strided fragment F: the window of the file its runs lie in, read once and
 * gathered into DST. A view of a zip record is read as the whole record, so
 * its CRC-32 is checked, as torch.load would; legacy files read just the
 * window.
 */
static weld_status read_strided(const weld_ckpt *c, const weld_frag *f, size_t esz, uint8_t *dst, weld_error *err)
{
	const weld_pattern *p = &c->pat[f->pattern];
	uint64_t runs = weld__frag_runs(c->pat, f), last = 0, lo = f->src_offset, hi;
	for (size_t d = 0; d < p->ndim; d++)
		last += (p->shape[d] - 1) * p->stride[d];
	hi = f->src_offset + (last + f->count) * esz; /* extents were checked against the storage on open */
	const weld_record *r = f->record != WELD_NO_RECORD ? &c->rec[f->record] : NULL;
	if (r) {
		lo = r->offset;
		hi = r->offset + r->nbytes;
	}
	if (hi - lo > SIZE_MAX)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: a view of %llu bytes is too large to read", c->src[f->src].file->path,
				  (unsigned long long)(hi - lo));
	uint8_t *win = malloc(hi - lo ? (size_t)(hi - lo) : 1);
	if (!win)
		return weld__nomem(err);
	weld_status s = weld_file_pread(c->src[f->src].file, win, (size_t)(hi - lo), lo, err);
	uint32_t crc = !s && r ? weld__crc32(0, win, (size_t)(hi - lo)) : 0;
	if (!s && r && crc != r->crc)
		s = weld__crc_mismatch(err, r->file->path, r->name, r->crc, crc);
	const uint8_t *base = win + (f->src_offset - lo);
	for (uint64_t k = 0; !s && k < runs; k++)
		memcpy(dst + (f->dst_elem + k * f->count) * esz, base + weld__pattern_run_start(p, k) * esz,
		       (size_t)(f->count * esz));
	free(win);
	return s;
}

/* Fragment F of a tensor of ESZ-byte elements, read into DST; *PIECE notes it for its record's CRC check. */
static weld_status read_frag(const weld_ckpt *c, const weld_frag *f, size_t esz, uint8_t *dst,
			     weld_record_piece *piece, weld_error *err)
{
	size_t n = (size_t)f->count * esz;
	uint8_t *at = dst + f->dst_elem * esz;
	weld_status s = weld_file_pread(c->src[f->src].file, at, n, f->src_offset, err);
	if (!s && f->record != WELD_NO_RECORD)
		*piece = (weld_record_piece){f->record, f->src_offset, n, weld__crc32(0, at, n)};
	return s;
}

weld_status weld_ckpt_read_tensor(weld_ckpt *c, size_t i, void *dst, size_t dst_nbytes, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	if (i >= c->nt)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor index %zu out of range", i);
	const ckpt_tensor *t = &c->t[i];
	if (dst_nbytes != t->nbytes)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s' has %llu bytes, buffer %zu", t->name,
				  (unsigned long long)t->nbytes, dst_nbytes);
	if (t->nbytes == 0)
		return WELD_OK;
	weld_record_piece *pieces = weld__calloc(t->frag_count, sizeof(*pieces));
	if (!pieces)
		return weld__nomem(err);
	size_t esz = weld_dtype_size(t->dtype), npieces = 0;
	weld_status s = WELD_OK;
	for (size_t k = 0; k < t->frag_count && !s; k++) {
		const weld_frag *f = &c->frag[t->frag_first + k];
		if (f->pattern != WELD_NO_PATTERN) {
			s = read_strided(c, f, esz, dst, err);
			continue;
		}
		s = read_frag(c, f, esz, dst, &pieces[npieces], err);
		npieces += !s && f->record != WELD_NO_RECORD;
	}
	/* The rest of a record is read to check it while it is no bigger than the tensor itself. */
	if (!s)
		s = weld_records_check(c->rec, pieces, npieces, t->nbytes, err);
	free(pieces);
	return s;
}
