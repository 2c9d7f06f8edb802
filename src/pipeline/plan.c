/*
 * Building the plan from a checkpoint: output names (wrapper prefixes
 * stripped, tied aliases folded into their owners), output dtypes, and each
 * tensor's fragments, as the format described them.
 */
#include "pipeline/plan.h"

#include "pipeline/names.h"

#include <stdlib.h>
#include <string.h>

/* A view with more runs than this is a pathological layout, not a checkpoint. */
#define MAX_RUNS_PER_TENSOR (1u << 22)

weld_dtype weld_plan_out_dtype(weld_dtype src, weld_out_dtype want)
{
	if (!weld__dtype_is_float(src))
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
	free(p->alias);
	free(p);
}

/* The next alias (room for every one was made at the start). */
static weld_status add_alias(weld_plan *p, const char *name, const char *owner, weld_error *err)
{
	weld_plan_alias *a = p->alias;
	a[p->nalias] = (weld_plan_alias){weld__strdup(name), weld__strdup(owner)};
	if (!a[p->nalias].name || !a[p->nalias].owner) {
		free(a[p->nalias].name);
		free(a[p->nalias].owner);
		return weld__nomem(err);
	}
	p->nalias++;
	return WELD_OK;
}

/* The executor streams a view run by run: one with millions of runs is refused. */
static weld_status check_runs(const weld_ckpt *c, const ckpt_tensor *t, weld_error *err)
{
	uint64_t runs = 0;
	for (size_t k = 0; k < t->frag_count; k++)
		runs += weld__frag_runs(c->pat, &c->frag[t->frag_first + k]);
	if (runs <= MAX_RUNS_PER_TENSOR)
		return WELD_OK;
	return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: tensor '%s' is a strided view made of %llu separate runs; save it contiguous",
			  c->src[c->frag[t->frag_first].src].file->path, t->name, (unsigned long long)runs);
}

/* Output tensor for checkpoint tensor T, its name without the first STRIP bytes. */
static weld_status add_tensor(weld_plan *p, const weld_ckpt *c, const ckpt_tensor *t, size_t strip, weld_out_dtype want,
			      weld_error *err)
{
	weld_status s = check_runs(c, t, err);
	if (s)
		return s;
	weld_plan_tensor *o = &p->t[p->nt];
	if (!(o->name = weld__strdup(t->name + strip)))
		return weld__nomem(err);
	p->nt++;
	o->dtype = want == WELD_OUT_KEEP && t->keep_as ? t->keep_as : weld_plan_out_dtype(t->dtype, want);
	o->src_dtype = t->dtype;
	o->ndim = t->ndim;
	memcpy(o->shape, t->shape, sizeof(uint64_t) * t->ndim);
	o->numel = t->numel;
	o->frag_first = t->frag_first;
	o->frag_count = t->frag_count;
	if (!weld__mul_u64(&o->nbytes, t->numel, weld_dtype_size(o->dtype)) ||
	    !weld__add_u64(&p->out_bytes, p->out_bytes, o->nbytes) ||
	    !weld__add_u64(&p->src_bytes, p->src_bytes, t->nbytes))
		return weld__fail(err, WELD_ERR_FORMAT, "tensor '%s' is too large", t->name);
	return WELD_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const weld_plan_tensor *)a)->name, ((const weld_plan_tensor *)b)->name);
}

/* The file output tensor T's first fragment comes from; NULL when it has none. */
static const char *tensor_file(const weld_plan *p, const weld_plan_tensor *t)
{
	return t->frag_count ? p->src[p->frags[t->frag_first].src].file->path : NULL;
}

/* Names must be unique: two shards may not both hold one tensor. */
static weld_status check_unique(const weld_plan *p, weld_error *err)
{
	weld_plan_tensor *sorted = weld__calloc(p->nt ? p->nt : 1, sizeof(*sorted));
	if (!sorted)
		return weld__nomem(err);
	memcpy(sorted, p->t, p->nt * sizeof(*sorted));
	qsort(sorted, p->nt, sizeof(*sorted), cmp_name);
	weld_status s = WELD_OK;
	for (size_t i = 1; i < p->nt && !s; i++) {
		if (strcmp(sorted[i - 1].name, sorted[i].name) != 0)
			continue;
		const char *a = tensor_file(p, &sorted[i - 1]), *b = tensor_file(p, &sorted[i]);
		if (a && b && strcmp(a, b) != 0)
			s = weld__fail(err, WELD_ERR_MISMATCH, "tensor '%s' appears twice in the checkpoint (in %s and %s)",
				       sorted[i].name, a, b);
		else if (a)
			s = weld__fail(err, WELD_ERR_MISMATCH, "tensor '%s' appears twice in the checkpoint (twice in %s)",
				       sorted[i].name, a);
		else
			s = weld__fail(err, WELD_ERR_MISMATCH, "tensor '%s' appears twice in the checkpoint", sorted[i].name);
	}
	free(sorted);
	return s;
}

/* The lm_head.weight to write as its embedding when config.json ties them; SIZE_MAX when none. */
static size_t tied_head(const weld_ckpt *c, size_t strip, size_t *embed)
{
	for (size_t i = 0; i < c->nt; i++)
		if (!c->t[i].alias_of && strcmp(c->t[i].name + strip, "lm_head.weight") == 0) {
			*embed = weld__tied_embedding(c, i);
			return *embed == SIZE_MAX ? SIZE_MAX : i;
		}
	return SIZE_MAX;
}

weld_status weld_plan_build(weld_plan **out, const weld_ckpt *c, const weld_plan_options *opts, weld_error *err)
{
	*out = NULL;
	weld_plan *p = calloc(1, sizeof(*p));
	size_t strip = 0, embed = SIZE_MAX, head = SIZE_MAX, naliases = 0;
	if (p) {
		strip = weld__wrapper_prefix(c, p->stripped_prefix, sizeof(p->stripped_prefix));
		head = opts->tie_word_embeddings ? tied_head(c, strip, &embed) : SIZE_MAX;
		for (size_t i = 0; i < c->nt; i++)
			naliases += c->t[i].alias_of || i == head;
	}
	if (!p || !(p->t = weld__calloc(c->nt ? c->nt : 1, sizeof(*p->t))) ||
	    !(p->alias = weld__calloc(naliases ? naliases : 1, sizeof(*p->alias)))) {
		weld_plan_free(p);
		return weld__nomem(err);
	}
	p->src = c->src;
	p->nsrc = c->nsrc;
	p->frags = c->frag;
	p->records = c->rec;
	p->patterns = c->pat;
	weld_status s = WELD_OK;
	for (size_t i = 0; i < c->nt && !s; i++) {
		const ckpt_tensor *t = &c->t[i];
		if (t->alias_of || i == head)
			s = add_alias(p, t->name + strip, (t->alias_of ? t->alias_of : c->t[embed].name) + strip, err);
		else
			s = add_tensor(p, c, t, strip, opts->dtype, err);
	}
	if (!s)
		s = check_unique(p, err);
	if (s) {
		weld_plan_free(p);
		return s;
	}
	*out = p;
	return WELD_OK;
}
