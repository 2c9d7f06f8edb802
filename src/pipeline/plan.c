/*
 * Building the plan from a checkpoint: output names (prefixes stripped, tied
 * aliases folded into their owners), output dtypes, and for each tensor the
 * source fragments that make it, one per contiguous run of a torch view.
 */
#include "pipeline/plan.h"

#include "formats/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A view with more runs than this is a pathological layout, not a checkpoint. */
#define MAX_FRAGS_PER_TENSOR (1u << 22)

static bool is_float(weld_dtype d)
{
	return d == WELD_DTYPE_F16 || d == WELD_DTYPE_BF16 || d == WELD_DTYPE_F32 || d == WELD_DTYPE_F64;
}

weld_dtype weld_plan_out_dtype(weld_dtype src, weld_out_dtype want)
{
	if (!is_float(src))
		return src;
	switch (want) {
	case WELD_OUT_BF16: return WELD_DTYPE_BF16;
	case WELD_OUT_F16: return WELD_DTYPE_F16;
	case WELD_OUT_F32: return WELD_DTYPE_F32;
	case WELD_OUT_KEEP: break;
	}
	return src;
}

void weld_plan_free(weld_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nt; i++)
		free(p->t[i].name);
	for (size_t i = 0; i < p->nalias; i++) {
		free(p->alias[i].name);
		free(p->alias[i].owner);
	}
	free(p->t);
	free(p->f);
	free(p->rec);
	free(p->alias);
	free(p->files);
	free(p);
}

static weld_frag *new_frag(weld_plan *p, weld_error *err)
{
	if (p->nf == p->fcap) {
		size_t cap = p->fcap ? p->fcap * 2 : 256;
		weld_frag *f = weld__reallocarray(p->f, cap, sizeof(*f));
		if (!f) {
			weld__nomem(err);
			return NULL;
		}
		p->f = f;
		p->fcap = cap;
	}
	return &p->f[p->nf++];
}

/*
 * Fragments of a torch view: the innermost dimensions that are laid out
 * contiguously form one run; the outer ones are walked.
 */
static weld_status torch_frags(weld_plan *p, weld_ckpt *c, const ckpt_tensor *t, uint32_t *record_of,
			       weld_error *err)
{
	const weld_py *v = t->view;
	ckpt_source *so = &c->src[t->src];
	weld_torch_storage st;
	weld_status s = weld_torch_storage_range(so->torch, v->tensor.storage, &st, err);
	if (s)
		return s;
	size_t esz = weld_dtype_size(t->dtype), nd = v->tensor.ndim;
	/* Collapse trailing dims that are contiguous into one run. */
	uint64_t run = 1;
	size_t inner = nd;
	while (inner > 0) {
		size_t d = inner - 1;
		if (v->tensor.shape[d] != 1 && (uint64_t)v->tensor.stride[d] != run)
			break;
		run *= v->tensor.shape[d];
		inner--;
	}
	uint64_t runs = run ? t->numel / run : 0;
	if (runs > MAX_FRAGS_PER_TENSOR)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: tensor '%s' is a strided view made of %llu separate runs; save it contiguous",
				  so->path, t->name, (unsigned long long)runs);
	/* The record counts as read whole only if this tensor covers all of it. */
	*record_of = (st.entry && t->contiguous && t->nbytes == st.nbytes) ? 1 : 0;
	uint64_t idx[WELD_MAX_DIMS] = {0};
	uint64_t elem = v->tensor.storage_offset;
	for (uint64_t r = 0; r < runs; r++) {
		weld_frag *f = new_frag(p, err);
		if (!f)
			return WELD_ERR_NOMEM;
		/* Extents were checked against the storage when the pickle was read. */
		*f = (weld_frag){.src_offset = st.offset + elem * esz,
				 .count = run,
				 .dst_elem = r * run,
				 .src = (uint32_t)t->src,
				 .record = WELD_NO_RECORD,
				 .src_dtype = t->dtype};
		for (size_t d = inner; d-- > 0;) {
			if (++idx[d] < v->tensor.shape[d]) {
				elem += (uint64_t)v->tensor.stride[d];
				break;
			}
			elem -= (uint64_t)v->tensor.stride[d] * (idx[d] - 1);
			idx[d] = 0;
		}
	}
	return WELD_OK;
}

static bool all_have_prefix(const weld_ckpt *c, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < c->nt; i++)
		if (strncmp(c->t[i].name, prefix, n) != 0 || c->t[i].name[n] == '\0')
			return false;
	return c->nt > 0;
}

/* Wrapper prefixes (DDP/DeepSpeed 'module.', torch.compile '_orig_mod.') stripped when all names carry them. */
static size_t strip_length(const weld_ckpt *c, char *stripped, size_t cap)
{
	static const char *const prefixes[] = {"module.", "_orig_mod."};
	size_t total = 0;
	stripped[0] = '\0';
	for (bool again = true; again;) {
		again = false;
		for (size_t k = 0; k < 2; k++) {
			char probe[64];
			snprintf(probe, sizeof(probe), "%s%s", stripped, prefixes[k]);
			if (strlen(probe) < cap && all_have_prefix(c, probe)) {
				memcpy(stripped, probe, strlen(probe) + 1);
				total = strlen(stripped);
				again = true;
			}
		}
	}
	return total;
}

/* The input embedding lm_head.weight is tied to: same shape, a usual name. */
static const ckpt_tensor *embedding_for(const weld_ckpt *c, const ckpt_tensor *head)
{
	static const char *const names[] = {"embed_tokens.weight", "wte.weight", "word_embeddings.weight",
					    "embed_in.weight", "tok_embeddings.weight"};
	for (size_t i = 0; i < c->nt; i++) {
		const ckpt_tensor *e = &c->t[i];
		if (e == head || e->alias_of || e->ndim != head->ndim ||
		    memcmp(e->shape, head->shape, sizeof(uint64_t) * e->ndim) != 0)
			continue;
		size_t n = strlen(e->name);
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			size_t m = strlen(names[k]);
			if (n >= m && strcmp(e->name + n - m, names[k]) == 0)
				return e;
		}
	}
	return NULL;
}

static weld_status add_alias(weld_plan *p, const char *name, const char *owner, weld_error *err)
{
	weld_plan_alias *a = weld__reallocarray(p->alias, p->nalias + 1, sizeof(*a));
	if (!a)
		return weld__nomem(err);
	p->alias = a;
	a[p->nalias] = (weld_plan_alias){weld__strdup(name), weld__strdup(owner)};
	if (!a[p->nalias].name || !a[p->nalias].owner) {
		free(a[p->nalias].name);
		free(a[p->nalias].owner);
		return weld__nomem(err);
	}
	p->nalias++;
	return WELD_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const weld_plan_tensor *)a)->name, ((const weld_plan_tensor *)b)->name);
}

/*
 * The record index for a ZeRO partition's zip entry, added on first use.
 * Fragments cover it except for padding; the executor reads the padding too
 * so the whole record's CRC gets checked.
 */
static weld_status zero_record(weld_plan *p, uint32_t src, const weld_zip_entry *e, uint32_t *out,
			       weld_error *err)
{
	*out = WELD_NO_RECORD;
	if (!e || (e->crc32 == 0 && e->size != 0))
		return WELD_OK;
	for (size_t i = 0; i < p->nrec; i++)
		if (p->rec[i].src == src && p->rec[i].offset == e->data_offset) {
			*out = (uint32_t)i;
			return WELD_OK;
		}
	weld_plan_record *r = weld__reallocarray(p->rec, p->nrec + 1, sizeof(*r));
	if (!r)
		return weld__nomem(err);
	p->rec = r;
	r[p->nrec] = (weld_plan_record){.src = src, .offset = e->data_offset, .nbytes = e->size, .crc = e->crc32,
					.name = e->record};
	*out = (uint32_t)p->nrec++;
	return WELD_OK;
}

/* Zip records read whole (one tensor covering all of it) get their CRC checked. */
static weld_status add_record(weld_plan *p, weld_ckpt *c, const ckpt_tensor *t, size_t frag, weld_error *err)
{
	weld_torch_storage st;
	weld_status s = weld_torch_storage_range(c->src[t->src].torch, t->view->tensor.storage, &st, err);
	if (s)
		return s;
	if (!st.entry || (st.entry->crc32 == 0 && st.nbytes != 0))
		return WELD_OK; /* a CRC of 0 on a non-empty record means "not computed" */
	weld_plan_record *r = weld__reallocarray(p->rec, p->nrec + 1, sizeof(*r));
	if (!r)
		return weld__nomem(err);
	p->rec = r;
	r[p->nrec] = (weld_plan_record){.src = (uint32_t)t->src,
					.offset = st.offset,
					.nbytes = st.nbytes,
					.crc = st.entry->crc32,
					.name = st.entry->record};
	p->f[frag].record = (uint32_t)p->nrec++;
	return WELD_OK;
}

weld_status weld_plan_build(weld_plan **out, weld_ckpt *c, const weld_plan_options *opts, weld_error *err)
{
	*out = NULL;
	weld_plan *p = calloc(1, sizeof(*p));
	weld_status s = WELD_OK;
	if (!p || !(p->files = weld__calloc(c->nsrc, sizeof(*p->files))) ||
	    !(p->t = weld__calloc(c->nt, sizeof(*p->t)))) {
		weld_plan_free(p);
		return weld__nomem(err);
	}
	p->nfiles = c->nsrc;
	for (size_t i = 0; i < c->nsrc; i++)
		p->files[i] = c->src[i].file;
	size_t strip = strip_length(c, p->stripped_prefix, sizeof(p->stripped_prefix));

	const ckpt_tensor *tied_head = NULL, *tied_embed = NULL;
	if (opts->tie_word_embeddings) {
		for (size_t i = 0; i < c->nt && !tied_head; i++)
			if (!c->t[i].alias_of && strcmp(c->t[i].name + strip, "lm_head.weight") == 0)
				tied_head = &c->t[i];
		tied_embed = tied_head ? embedding_for(c, tied_head) : NULL;
	}

	for (size_t i = 0; i < c->nt && !s; i++) {
		const ckpt_tensor *t = &c->t[i];
		if (t->alias_of || (tied_head == t && tied_embed)) {
			const char *owner = t->alias_of ? t->alias_of : tied_embed->name;
			s = add_alias(p, t->name + strip, owner + strip, err);
			continue;
		}
		weld_plan_tensor *o = &p->t[p->nt];
		if (!(o->name = weld__strdup(t->name + strip))) {
			s = weld__nomem(err);
			break;
		}
		p->nt++;
		o->dtype = weld_plan_out_dtype(t->dtype, opts->dtype);
		o->ndim = t->ndim;
		memcpy(o->shape, t->shape, sizeof(uint64_t) * t->ndim);
		o->numel = t->numel;
		if (!weld__mul_u64(&o->nbytes, t->numel, weld_dtype_size(o->dtype)) ||
		    !weld__add_u64(&p->out_bytes, p->out_bytes, o->nbytes) ||
		    !weld__add_u64(&p->src_bytes, p->src_bytes, t->nbytes)) {
			s = weld__fail(err, WELD_ERR_FORMAT, "tensor '%s' is too large", t->name);
			break;
		}
		o->frag_first = p->nf;
		if (t->numel == 0) {
			/* nothing to read */
		} else if (c->src[t->src].is_st) {
			weld_frag *f = new_frag(p, err);
			if (!f) {
				s = WELD_ERR_NOMEM;
				break;
			}
			*f = (weld_frag){.src_offset = t->st_offset, .count = t->numel, .dst_elem = 0,
					 .src = (uint32_t)t->src, .record = WELD_NO_RECORD, .src_dtype = t->dtype};
		} else if (!t->zero) {
			uint32_t whole = 0;
			size_t first = p->nf;
			s = torch_frags(p, c, t, &whole, err);
			if (!s && whole && p->nf == first + 1)
				s = add_record(p, c, t, first, err);
		} else {
			/* ZeRO: the runs of the master partitions zero.c found. */
			for (size_t k = 0; k < t->zf_count && !s; k++) {
				const ckpt_zfrag *z = &c->zf[t->zf_first + k];
				uint32_t rec;
				weld_frag *f = (s = zero_record(p, z->src, z->entry, &rec, err)) ? NULL : new_frag(p, err);
				if (!f)
					s = s ? s : WELD_ERR_NOMEM;
				else
					*f = (weld_frag){.src_offset = z->offset, .count = z->count, .dst_elem = z->dst_elem,
							 .src = z->src, .record = rec, .src_dtype = t->dtype};
			}
		}
		o->frag_count = p->nf - o->frag_first;
	}
	if (!s) {
		/* Names must be unique: two shards may not both hold one tensor. */
		weld_plan_tensor *sorted = weld__calloc(p->nt, sizeof(*sorted));
		if (!sorted)
			s = weld__nomem(err);
		if (sorted) {
			memcpy(sorted, p->t, p->nt * sizeof(*sorted));
			qsort(sorted, p->nt, sizeof(*sorted), cmp_name);
			for (size_t i = 1; i < p->nt && !s; i++)
				if (strcmp(sorted[i - 1].name, sorted[i].name) == 0)
					s = weld__fail(err, WELD_ERR_MISMATCH, "tensor '%s' appears twice in the checkpoint",
						       sorted[i].name);
			free(sorted);
		}
	}
	if (s) {
		weld_plan_free(p);
		return s;
	}
	*out = p;
	return WELD_OK;
}
