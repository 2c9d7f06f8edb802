/* A plan's reads by kind of file, and its memory (summary.h). */
#include "pipeline/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * PATH's file name with each run of digits that does not end a word as N:
 * "bf16_zero_pp_rank_N_mp_rank_N_optim_states.pt", "model-N-of-N.safetensors".
 */
static void name_pattern(const char *path, char *out, size_t cap)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = 0;
	for (const char *s = base; *s && n + 1 < cap;) {
		bool digits = *s >= '0' && *s <= '9', kept = s > base && is_letter(s[-1]);
		const char *end = s + 1;
		while (digits && *end >= '0' && *end <= '9')
			end++;
		if (digits && !kept) {
			out[n++] = 'N';
			s = end;
			continue;
		}
		const char *stop = digits ? end : s + 1;
		while (s < stop && n + 1 < cap)
			out[n++] = *s++;
	}
	out[n] = '\0';
}

/* Tensor bytes the plan reads from each source, into PER_SRC (c->nsrc entries). */
static void bytes_per_source(const weld_plan *p, uint64_t *per_src)
{
	for (size_t i = 0; i < p->nt; i++) {
		const weld_plan_tensor *t = &p->t[i];
		size_t esz = weld_dtype_size(t->src_dtype);
		for (size_t k = 0; k < t->frag_count; k++) {
			const weld_frag *f = &p->frags[t->frag_first + k];
			/* Within the plan's src_bytes, which was summed overflow-checked. */
			per_src[f->src] += weld__frag_runs(p->patterns, f) * f->count * esz;
		}
	}
}

static const char *group_pattern(const void *ctx, size_t i)
{
	return ((const weld_read_group *)ctx)[i].pattern;
}

static int by_bytes(const void *a, const void *b)
{
	const weld_read_group *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return strcmp(x->pattern, y->pattern);
}

bool weld__plan_read_groups(const weld_plan *p, const weld_ckpt *c, weld_read_group *out, size_t *n)
{
	*n = 0;
	uint64_t *per_src = calloc(c->nsrc ? c->nsrc : 1, sizeof(*per_src));
	weld_read_group *g = calloc(c->nsrc ? c->nsrc : 1, sizeof(*g));
	if (!per_src || !g) {
		free(per_src);
		free(g);
		return false;
	}
	bytes_per_source(p, per_src);
	size_t ng = 0;
	weld_map by_pattern;
	weld_map_init_names(&by_pattern, group_pattern, g);
	bool ok = true;
	for (size_t i = 0; i < c->nsrc && ok; i++) {
		name_pattern(c->src[i].file->path, g[ng].pattern, sizeof(g->pattern));
		size_t k = WELD_MAP_NONE;
		if (!(ok = weld_map_add(&by_pattern, g[ng].pattern, ng, &k)))
			break;
		if (k == WELD_MAP_NONE)
			k = ng++;
		g[k].files++;
		g[k].bytes += per_src[i];
	}
	weld_map_clear(&by_pattern);
	if (!ok) {
		free(per_src);
		free(g);
		return false;
	}
	qsort(g, ng, sizeof(*g), by_bytes);
	for (size_t k = WELD_READ_GROUPS_MAX; k < ng; k++) {
		g[WELD_READ_GROUPS_MAX - 1].files += g[k].files;
		g[WELD_READ_GROUPS_MAX - 1].bytes += g[k].bytes;
		snprintf(g[WELD_READ_GROUPS_MAX - 1].pattern, sizeof(g->pattern), "other files");
	}
	*n = ng < WELD_READ_GROUPS_MAX ? ng : WELD_READ_GROUPS_MAX;
	memcpy(out, g, *n * sizeof(*g));
	free(per_src);
	free(g);
	return true;
}

uint64_t weld__plan_memory(const weld_plan *p, const weld_ckpt *c)
{
	uint64_t n = c->nt * sizeof(*c->t) + c->nfrag * sizeof(*c->frag) + c->nrec * sizeof(*c->rec) +
		     c->npat * sizeof(*c->pat) + c->nsrc * sizeof(*c->src) + p->nt * sizeof(*p->t) +
		     p->nalias * sizeof(*p->alias);
	for (size_t i = 0; i < c->nt; i++)
		n += strlen(c->t[i].name) + 1;
	for (size_t i = 0; i < p->nt; i++)
		n += strlen(p->t[i].name) + 1;
	return n;
}

bool weld__plan_copy_reads(const char *dir, weld_read_group *g)
{
	weld_ckpt *hf = NULL;
	if (weld_ckpt_open_as(&hf, dir, WELD_INPUT_HF, NULL) != WELD_OK)
		return false; /* unreadable: the cross-check will say so, and read nothing */
	memset(g, 0, sizeof(*g));
	char pat[sizeof(g->pattern)];
	name_pattern(hf->nsrc ? hf->src[0].file->path : "", pat, sizeof(pat));
	snprintf(g->pattern, sizeof(g->pattern), "%.60s (16-bit copy, for the cross-check)", pat);
	g->files = hf->nsrc;
	for (size_t i = 0; i < hf->nt; i++)
		if (!hf->t[i].alias_of)
			g->bytes += hf->t[i].nbytes; /* each checked on open; a real file's sum cannot wrap */
	weld_ckpt_free(hf);
	return true;
}
