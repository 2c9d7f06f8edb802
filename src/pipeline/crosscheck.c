/* Output tensors against a second copy of the model (crosscheck.h). */
#include "pipeline/crosscheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes read at a time; a view (not one run) is read only when that costs at most VIEW_MAX bytes. */
#define CMP_CHUNK (1u << 20)
#define VIEW_MAX ((uint64_t)64 << 20)
/* Progress reports at most this often, as the executor's. */
#define REPORT_EVERY 0.2

const char *weld_cross_check_result_name(weld_cross_check_result r)
{
	switch (r) {
	case WELD_CROSS_CHECK_AGREE: return "agree";
	case WELD_CROSS_CHECK_DIFFER: return "differ";
	case WELD_CROSS_CHECK_SKIPPED: return "skipped";
	case WELD_CROSS_CHECK_NONE: break;
	}
	return "none";
}

/* The plan's tensors and tied aliases by name. */
typedef struct plan_names {
	weld_map tensors, aliases;
} plan_names;

static const char *tensor_name(const void *p, size_t i)
{
	return ((const weld_plan *)p)->t[i].name;
}

static const char *alias_name(const void *p, size_t i)
{
	return ((const weld_plan *)p)->alias[i].name;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the comparison needs: the copy, the written tensors' CRC-32s, a buffer, progress. */
typedef struct xcheck {
	const weld_plan *p;
	const uint32_t *crcs; /* of each plan tensor as written */
	const weld_cross_check_io *io;
	weld_ckpt *hf;
	uint8_t *buf;
	bool *covered;         /* per plan tensor: the copy holds it */
	weld_dtype dtype_seen; /* the copy's dtype where it differed from the output's */
	char unreadable[160];  /* why the first differing tensor could not be read, or "" */
	weld_progress pr;
	double t0, last_report;
} xcheck;

/* N more bytes of the copy read: progress, and the caller's chance to cancel. */
static weld_status advance(xcheck *x, uint64_t n, weld_error *err)
{
	x->pr.bytes_done += n;
	x->pr.bytes_read = x->pr.bytes_done;
	double t = now();
	if (!x->io->progress || t - x->last_report < REPORT_EVERY)
		return WELD_OK;
	x->last_report = t;
	x->pr.seconds = t - x->t0;
	if (x->io->progress(&x->pr, x->io->payload))
		return weld__fail(err, WELD_ERR_CANCELLED, "cancelled");
	return WELD_OK;
}

/* The CRC-32 of N bytes at OFF of F, read in chunks. */
static weld_status crc_run(xcheck *x, weld_file *f, uint64_t off, uint64_t n, uint32_t *crc, weld_error *err)
{
	*crc = 0;
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < CMP_CHUNK ? (size_t)(n - done) : CMP_CHUNK;
		weld_status s = weld_file_pread(f, x->buf, k, off + done, err);
		if (!s)
			s = advance(x, k, err);
		if (s)
			return s;
		*crc = weld__crc32(*crc, x->buf, k);
		done += k;
	}
	return WELD_OK;
}

/*
 * Bytes reading the copy's tensor I as a view takes: the tensor, and for
 * each strided fragment the zip record (or file window) it is gathered
 * from, which weld_ckpt_read_tensor reads whole to check its CRC-32.
 */
static uint64_t view_cost(const weld_ckpt *c, size_t i)
{
	const ckpt_tensor *t = &c->t[i];
	uint64_t cost = t->nbytes;
	for (size_t k = 0; k < t->frag_count; k++) {
		const weld_frag *f = &c->frag[t->frag_first + k];
		if (f->pattern == WELD_NO_PATTERN)
			continue;
		if (f->record != WELD_NO_RECORD) {
			cost += c->rec[f->record].nbytes;
			continue;
		}
		uint64_t last = 0;
		for (size_t d = 0; d < c->pat[f->pattern].ndim; d++)
			last += (c->pat[f->pattern].shape[d] - 1) * c->pat[f->pattern].stride[d];
		cost += (last + f->count) * weld_dtype_size(t->dtype); /* extents were checked on open */
	}
	return cost;
}

/* The CRC-32 of the copy's tensor I (N bytes), a view: gathered whole. */
static weld_status crc_view(xcheck *x, size_t i, uint64_t n, uint32_t *crc, weld_error *err)
{
	uint8_t *data = malloc(n ? (size_t)n : 1);
	weld_status s = data ? weld_ckpt_read_tensor(x->hf, i, data, (size_t)n, err) : weld__nomem(err);
	if (!s)
		*crc = weld__crc32(0, data, (size_t)n);
	if (!s)
		s = advance(x, n, err);
	free(data);
	return s;
}

static bool same_shape(const weld_tensor_info *a, const weld_plan_tensor *t)
{
	return a->ndim == t->ndim && memcmp(a->shape, t->shape, sizeof(uint64_t) * t->ndim) == 0;
}

static void count_difference(weld_cross_check *r, const char *name)
{
	if (r->differing++ == 0)
		snprintf(r->first_difference, sizeof(r->first_difference), "%s", name);
}

/* The copy's tensor I against plan tensor T, counted in *R. */
static weld_status compare_one(xcheck *x, size_t i, const weld_tensor_info *info, const weld_plan_tensor *t,
			       weld_cross_check *r, weld_error *err)
{
	if (info->numel == 0 && t->numel > 0) {
		r->placeholders++;
		return WELD_OK;
	}
	if (info->dtype != t->dtype || !same_shape(info, t)) {
		if (info->dtype != t->dtype)
			x->dtype_seen = info->dtype;
		r->not_compared++;
		return WELD_OK;
	}
	weld_file *f;
	uint64_t off;
	uint32_t crc = 0;
	weld_error why = {0};
	weld_status s;
	if (weld__ckpt_one_run(x->hf, i, &f, &off))
		s = crc_run(x, f, off, t->nbytes, &crc, &why);
	else if (view_cost(x->hf, i) <= VIEW_MAX)
		s = crc_view(x, i, t->nbytes, &crc, &why);
	else {
		r->not_compared++;
		return WELD_OK;
	}
	r->compared++;
	if (s == WELD_ERR_NOMEM || s == WELD_ERR_CANCELLED)
		return weld__fail(err, s, "%s", why.message);
	/* A copy too damaged to read is a copy that differs: the masters are still converted. */
	if (s && r->differing == 0)
		snprintf(x->unreadable, sizeof(x->unreadable), "%s", why.message);
	if (s || crc != x->crcs[t - x->p->t])
		count_difference(r, t->name);
	return WELD_OK;
}

/*
 * The plan's tensor NAME was written as: its own, or its owner's when it is
 * a tied alias (the Trainer's ZeRO-1/2 copy stores a tied lm_head.weight
 * apart, with the embedding's data). NULL when the plan has no NAME.
 */
static const weld_plan_tensor *written_as(const weld_plan *p, const plan_names *index, const char *name)
{
	size_t k = weld_map_get(&index->aliases, name);
	if (k != WELD_MAP_NONE)
		name = p->alias[k].owner;
	size_t i = weld_map_get(&index->tensors, name);
	return i == WELD_MAP_NONE ? NULL : &p->t[i];
}

/* Every tensor of the copy, matched by name to the plan's (in INDEX). */
static weld_status compare_all(xcheck *x, const plan_names *index, weld_cross_check *r, weld_error *err)
{
	size_t n = weld_ckpt_tensor_count(x->hf);
	for (size_t i = 0; i < n; i++) {
		weld_tensor_info info;
		weld_status s = weld_ckpt_tensor(x->hf, i, &info);
		if (s)
			return weld__fail(err, s, "%s: tensor %zu of the HF weights: cannot describe it", x->io->dir, i);
		if (info.alias_of)
			continue; /* a tied name: its owner is compared */
		const weld_plan_tensor *t = written_as(x->p, index, info.name);
		if (!t) {
			r->not_compared++;
			continue;
		}
		x->covered[t - x->p->t] = true;
		if ((s = compare_one(x, i, &info, t, r, err)))
			return s;
	}
	return WELD_OK;
}

static const char *dtype_word(weld_dtype d)
{
	const char *t = weld__dtype_torch_name(d);
	return strncmp(t, "torch.", 6) == 0 ? t + 6 : t;
}

/* "; 3 empty placeholders skipped; ..." for what was not compared, into BUF. */
static void side_counts(const xcheck *x, const weld_cross_check *r, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (r->placeholders)
		snprintf(buf, cap, "; %zu empty placeholder%s skipped", r->placeholders, r->placeholders == 1 ? "" : "s");
	if (r->not_compared)
		snprintf(buf + strlen(buf), cap - strlen(buf), "; %zu not comparable", r->not_compared);
	const char *first_missing = NULL;
	for (size_t i = 0; i < x->p->nt && !first_missing; i++)
		if (!x->covered[i])
			first_missing = x->p->t[i].name;
	if (r->missing)
		snprintf(buf + strlen(buf), cap - strlen(buf), "; %zu output tensor%s not in the copy (first: %s)",
			 r->missing, r->missing == 1 ? "" : "s", first_missing);
}

/* R's result and one-line summary, from its counts. */
static void summarise(weld_cross_check *r, const xcheck *x, weld_dtype out_dtype)
{
	char extra[400];
	side_counts(x, r, extra, sizeof(extra));
	const char *dt = dtype_word(out_dtype);
	if (r->differing) {
		r->result = WELD_CROSS_CHECK_DIFFER;
		snprintf(r->summary, sizeof(r->summary),
			 "the HF %s weights beside the masters DIFFER from the masters cast to %s in %zu of %zu tensors "
			 "(first: %s%s%s)%s",
			 r->against, dt, r->differing, r->compared, r->first_difference, x->unreadable[0] ? ", unreadable: " : "",
			 x->unreadable, extra);
	} else if (r->compared) {
		r->result = WELD_CROSS_CHECK_AGREE;
		snprintf(r->summary, sizeof(r->summary),
			 "the HF %s weights beside the masters agree: %zu tensors match the masters cast to %s (CRC-32)%s",
			 r->against, r->compared, dt, extra);
	} else {
		r->result = WELD_CROSS_CHECK_SKIPPED;
		if (r->placeholders)
			snprintf(r->summary, sizeof(r->summary),
				 "the HF %s weights beside the masters are placeholders (ZeRO-3 saved without gathering "
				 "16-bit weights): not compared%s",
				 r->against, extra);
		else if (x->dtype_seen)
			snprintf(r->summary, sizeof(r->summary),
				 "the HF %s weights beside the masters are %s and the output %s: not compared",
				 r->against, dtype_word(x->dtype_seen), dt);
		else
			snprintf(r->summary, sizeof(r->summary),
				 "the HF %s weights beside the masters share no tensor with them: not compared", r->against);
	}
}

/* The plan's dtype for the summary: its first floating tensor's. */
static weld_dtype plan_float_dtype(const weld_plan *p)
{
	for (size_t i = 0; i < p->nt; i++)
		if (weld__dtype_is_float(p->t[i].dtype))
			return p->t[i].dtype;
	return p->nt ? p->t[0].dtype : WELD_DTYPE_BF16;
}

/* The copy's tensor bytes: the total the progress counts up to. */
static uint64_t copy_bytes(const weld_ckpt *c)
{
	uint64_t n = 0;
	for (size_t i = 0; i < c->nt; i++)
		if (!c->t[i].alias_of)
			n += c->t[i].nbytes; /* each checked on open; the sum of a real file's cannot wrap */
	return n;
}

/* INDEX of P's names: its tensors' (unique, checked by the plan) and its aliases' (the first of a name wins). */
static bool index_plan(const weld_plan *p, plan_names *index)
{
	bool ok = weld_map_reserve(&index->tensors, p->nt) && weld_map_reserve(&index->aliases, p->nalias);
	size_t had;
	for (size_t i = 0; ok && i < p->nt; i++)
		ok = weld_map_add(&index->tensors, p->t[i].name, i, &had);
	for (size_t k = 0; ok && k < p->nalias; k++)
		ok = weld_map_add(&index->aliases, p->alias[k].name, k, &had);
	return ok;
}

static weld_status run_check(xcheck *x, weld_cross_check *r, weld_error *err)
{
	size_t nt = x->p->nt ? x->p->nt : 1;
	plan_names index;
	weld_map_init_names(&index.tensors, tensor_name, x->p);
	weld_map_init_names(&index.aliases, alias_name, x->p);
	x->covered = calloc(nt, sizeof(*x->covered));
	x->buf = malloc(CMP_CHUNK);
	weld_status s = x->covered && x->buf && index_plan(x->p, &index) ? WELD_OK : weld__nomem(err);
	if (!s) {
		snprintf(r->against, sizeof(r->against), "%s", weld_format_name(weld_ckpt_format(x->hf)));
		x->pr = (weld_progress){.bytes_total = copy_bytes(x->hf), .phase = WELD_PHASE_CROSS_CHECK};
		x->t0 = now();
		x->last_report = x->t0 - REPORT_EVERY; /* the first read reports: a cancel is seen however small the copy */
		s = compare_all(x, &index, r, err);
	}
	for (size_t i = 0; !s && i < x->p->nt; i++)
		r->missing += !x->covered[i];
	if (!s)
		summarise(r, x, plan_float_dtype(x->p));
	weld_map_clear(&index.tensors);
	weld_map_clear(&index.aliases);
	free(x->covered);
	free(x->buf);
	return s;
}

weld_status weld__cross_check(const weld_plan *p, const uint32_t *crcs, const weld_cross_check_io *io,
			      weld_cross_check *r, weld_error *err)
{
	memset(r, 0, sizeof(*r));
	xcheck x = {.p = p, .crcs = crcs, .io = io};
	weld_error why = {0};
	weld_status s = weld_ckpt_open_as(&x.hf, io->dir, WELD_INPUT_HF, &why);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		r->result = WELD_CROSS_CHECK_SKIPPED;
		snprintf(r->summary, sizeof(r->summary), "the HF weights beside the masters could not be read: %s",
			 why.message);
		return WELD_OK;
	}
	s = run_check(&x, r, err);
	for (size_t i = 0; i < x.hf->nsrc; i++)
		r->bytes_read += atomic_load(&x.hf->src[i].file->bytes_read);
	weld_ckpt_free(x.hf);
	return s;
}
