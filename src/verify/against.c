/*
 * Is the output the source? With --against: the same tensor names and
 * shapes, every tensor exactly the source cast to its dtype, error
 * statistics against the source widened to double (the L2 norms summed by
 * the backend: cuBLAS on a GPU), NaN/Inf counts, and for DeepSpeed ZeRO
 * 0-2 the 16-bit weights DeepSpeed stored.
 */
#include "verify/verify.h"

#include "backend/cast.h"
#include "pipeline/names.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Squares are summed on the backend this many values at a time. */
#define NORM_BATCH 65536

/* The value of type T at P, as a double. */
#define LOAD(T)                            \
	do {                               \
		T v_;                      \
		memcpy(&v_, p, sizeof(v_)); \
		return (double)v_;         \
	} while (0)

/* One element as a double; NAN for types without a value (f8, complex). */
static double widen(const uint8_t *p, weld_dtype d)
{
	uint16_t h;
	uint32_t x;
	float f;
	switch (d) {
	case WELD_DTYPE_BF16:
		memcpy(&h, p, 2);
		x = weld_bf16_to_f32(h);
		memcpy(&f, &x, 4);
		return f;
	case WELD_DTYPE_F16:
		memcpy(&h, p, 2);
		x = weld_f16_to_f32(h);
		memcpy(&f, &x, 4);
		return f;
	case WELD_DTYPE_F32: memcpy(&f, p, 4); return f;
	case WELD_DTYPE_F64: LOAD(double);
	case WELD_DTYPE_BOOL:
	case WELD_DTYPE_U8: return *p;
	case WELD_DTYPE_I8: return (int8_t)*p;
	case WELD_DTYPE_I16: LOAD(int16_t);
	case WELD_DTYPE_U16: LOAD(uint16_t);
	case WELD_DTYPE_I32: LOAD(int32_t);
	case WELD_DTYPE_U32: LOAD(uint32_t);
	case WELD_DTYPE_I64: LOAD(int64_t);
	case WELD_DTYPE_U64: LOAD(uint64_t);
	default: return NAN;
	}
}

static bool has_value(weld_dtype d)
{
	return weld__dtype_is_float(d) || d == WELD_DTYPE_BOOL || d == WELD_DTYPE_U8 || d == WELD_DTYPE_I8 || d == WELD_DTYPE_I16 ||
	       d == WELD_DTYPE_U16 || d == WELD_DTYPE_I32 || d == WELD_DTYPE_U32 || d == WELD_DTYPE_I64 ||
	       d == WELD_DTYPE_U64;
}

/*
 * The casts weld makes: none, float to a 16/32-bit float, or an integer to
 * float32 (ZeRO buffers under --dtype keep, as zero_to_fp32 before 0.19.8).
 */
static bool castable(weld_dtype from, weld_dtype to)
{
	return from == to ||
	       (weld__dtype_is_float(from) && (to == WELD_DTYPE_BF16 || to == WELD_DTYPE_F16 || to == WELD_DTYPE_F32)) ||
	       (has_value(from) && !weld__dtype_is_float(from) && to == WELD_DTYPE_F32);
}

/* Running error statistics of one tensor: the squares go to the backend in batches. */
typedef struct stats {
	weld_backend *b;
	double *diff, *src; /* NORM_BATCH each: the differences, the finite source values */
	size_t n;
	double num, den, max;
	bool inf_diff;      /* a difference is infinite: the L2 error is too */
	const char **on;    /* where the last sums were made */
} stats;

static void flush(stats *st)
{
	if (st->n) {
		st->num += weld_backend_sum_squares(st->b, st->diff, st->n, st->on);
		st->den += weld_backend_sum_squares(st->b, st->src, st->n, st->on);
	}
	st->n = 0;
}

/* One output value Y against the source value X. */
static void add_pair(stats *st, double x, double y)
{
	if ((isnan(x) && isnan(y)) || (isinf(x) && x == y))
		return;
	double diff = y > x ? y - x : x - y;
	if (isnan(diff) || isinf(diff)) {
		diff = INFINITY; /* one side NaN or infinite, the other not */
		st->inf_diff = true;
	}
	st->max = diff > st->max ? diff : st->max;
	if (st->n == NORM_BATCH)
		flush(st);
	st->diff[st->n] = isinf(diff) ? 0 : diff;
	st->src[st->n++] = isfinite(x) ? x : 0;
}

/* N elements of the source SBUF and the output OBUF: exactness, NaN/Inf counts, error statistics. */
static void compare_chunk(stats *st, weld_tensor_diff *d, const uint8_t *sbuf, const uint8_t *obuf, uint8_t *cast,
			  size_t n, bool values)
{
	weld_dtype od = d->dtype, sd = d->source_dtype;
	size_t osz = weld_dtype_size(od), ssz = weld_dtype_size(sd);
	uint64_t overflows = 0;
	weld_cpu_convert_run(sbuf, sd, cast, od, n, &overflows);
	if (memcmp(cast, obuf, n * osz) != 0)
		d->exact = 0;
	bool fl = weld__dtype_is_float(od);
	for (size_t k = 0; values && k < n; k++) {
		double x = widen(sbuf + k * ssz, sd), y = widen(obuf + k * osz, od);
		if (fl && isnan(y))
			d->nan_count++;
		else if (fl && isinf(y))
			d->inf_count++;
		add_pair(st, x, y);
	}
}

/*
 * Output tensor OI against source tensor SI, WELD_VERIFY_CHUNK at a time:
 * exact bytes of the cast, and error statistics against the source widened
 * to double.
 */
static weld_status compare_tensor(weld_verifier *v, size_t oi, weld_ckpt *src, size_t si, weld_tensor_diff *d,
				  const char **on, weld_error *err)
{
	const ckpt_tensor *o = &v->out->t[oi], *t = &src->t[si];
	size_t osz = weld_dtype_size(o->dtype), ssz = weld_dtype_size(t->dtype);
	size_t per = WELD_VERIFY_CHUNK / (osz > ssz ? osz : ssz);
	*d = (weld_tensor_diff){d->name, o->dtype, t->dtype, o->numel, 1, 0, 0, 0, 0};
	stats st = {.b = v->b, .diff = malloc(NORM_BATCH * sizeof(double)), .src = malloc(NORM_BATCH * sizeof(double)),
		    .on = on};
	uint8_t *sbuf = malloc(per * ssz), *obuf = malloc(per * osz), *cast = malloc(per * osz);
	weld_vf_reader sr = {0}, orr = {0};
	weld_status s = sbuf && obuf && cast && st.diff && st.src ? WELD_OK : weld__nomem(err);
	if (!s && !(s = weld__vf_reader_open(&sr, src, si, err)))
		s = weld__vf_reader_open(&orr, v->out, oi, err);
	bool values = has_value(o->dtype) && has_value(t->dtype);
	for (uint64_t e = 0; !s && e < o->numel;) {
		size_t n = o->numel - e < per ? (size_t)(o->numel - e) : per;
		if (!(s = weld__vf_reader_read(&sr, sbuf, n * ssz, e * ssz, err)) &&
		    !(s = weld__vf_reader_read(&orr, obuf, n * osz, e * osz, err)))
			compare_chunk(&st, d, sbuf, obuf, cast, n, values);
		e += n;
	}
	flush(&st);
	weld__vf_reader_close(&sr);
	weld__vf_reader_close(&orr);
	free(sbuf);
	free(obuf);
	free(cast);
	free(st.diff);
	free(st.src);
	double num = st.inf_diff ? INFINITY : st.num;
	d->max_abs_diff = values ? st.max : (d->exact ? 0 : NAN);
	/* 0 against an all-zero source only when the output is all zero too. */
	d->rel_l2 = !values ? (d->exact ? 0 : NAN) : st.den > 0 ? sqrt(num) / sqrt(st.den) : (num > 0 ? INFINITY : 0);
	return s;
}

/* A 16-bit tensor of the model states, by what an output tensor must share with it: name, dtype, element count. */
typedef struct stored_key {
	const char *name;
	weld_dtype dtype;
	uint64_t numel;
} stored_key;

static uint64_t stored_hash(const void *key)
{
	const stored_key *k = key;
	return weld__hash_u64(weld__hash_u64(weld__hash_bytes(0, k->name, strlen(k->name)), (uint64_t)k->dtype), k->numel);
}

static bool stored_holds(const weld_map *m, const void *key, size_t i)
{
	const stored_key *k = key;
	const ckpt_tensor *t = &((const weld_ckpt *)m->ctx)->t[i];
	return t->dtype == k->dtype && t->numel == k->numel && strcmp(t->name, k->name) == 0;
}

static const weld_map_kind stored_kind = {stored_hash, stored_holds};

/* BY_KEY: the 16-bit tensors of M (the first of a key wins); *SIXTEEN: how many, *STORED: their dtype. */
static bool index_stored(const weld_ckpt *m, weld_map *by_key, size_t *sixteen, weld_dtype *stored)
{
	weld_map_init(by_key, &stored_kind, m);
	bool ok = true;
	for (size_t k = 0; k < m->nt && ok; k++)
		if (m->t[k].dtype == WELD_DTYPE_BF16 || m->t[k].dtype == WELD_DTYPE_F16) {
			(*sixteen)++;
			*stored = m->t[k].dtype;
			size_t had;
			ok = weld_map_add(by_key, &(stored_key){m->t[k].name, m->t[k].dtype, m->t[k].numel}, k, &had);
		}
	return ok;
}

/* Stage 0-2 DeepSpeed: the 16-bit weights the engine stored must equal the output where dtypes agree. */
static weld_status check_zero_16bit(weld_verifier *v, weld_ckpt *src, const char *prefix, weld_error *err)
{
	const weld_deepspeed_info *ds = weld_ckpt_deepspeed(src);
	if (!ds || ds->zero_stage < 0 || ds->zero_stage > 2)
		return WELD_OK; /* ZeRO-3 model states hold no weights */
	const char *states = NULL;
	for (size_t i = 0; i < ds->nfiles && !states; i++)
		if (strcmp(weld__vf_base_name(ds->files[i]), "mp_rank_00_model_states.pt") == 0)
			states = ds->files[i];
	if (!states) {
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_WARN, "%s: no mp_rank_00_model_states.pt to cross-check",
			  ds->tag_dir);
		return WELD_OK;
	}
	weld_ckpt *m = NULL;
	weld_error e = {0};
	weld_status s = weld_ckpt_open(&m, states, &e);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_FAIL, "%s", e.message);
		return WELD_OK;
	}
	size_t compared = 0, differ = 0, sixteen = 0;
	const char *first = NULL;
	weld_dtype stored = WELD_DTYPE_INVALID;
	weld_map by_key;
	if (!index_stored(m, &by_key, &sixteen, &stored))
		s = WELD_ERR_NOMEM;
	for (size_t i = 0; i < v->out->nt && !s && sixteen; i++) {
		const ckpt_tensor *o = &v->out->t[i];
		if (o->dtype != WELD_DTYPE_BF16 && o->dtype != WELD_DTYPE_F16)
			continue;
		char name[4096];
		if ((size_t)snprintf(name, sizeof(name), "module.%s%s", prefix, o->name) >= sizeof(name))
			continue; /* longer than any name a state dict holds */
		size_t k = weld_map_get(&by_key, &(stored_key){name, o->dtype, o->numel});
		bool eq;
		if (k == WELD_MAP_NONE)
			continue;
		if ((s = weld__vf_same_bytes(v->out, i, m, k, &eq, &e)))
			break;
		compared++;
		if (!eq && !differ++)
			first = o->name;
	}
	weld_map_clear(&by_key);
	if (s == WELD_ERR_NOMEM)
		s = weld__nomem(err);
	else if (s)
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_FAIL, "%s", e.message);
	else if (differ)
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_FAIL,
			  "%zu of %zu tensors differ from the 16-bit weights in %s (first '%s')", differ, compared,
			  weld__vf_base_name(states), first);
	else if (!compared && sixteen) /* e.g. fp16 training written as bf16: nothing comparable */
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_WARN,
			  "%s holds %s weights, none of the output's dtype and name", weld__vf_base_name(states),
			  weld_dtype_name(stored));
	else if (compared) /* fp32 training stores no 16-bit weights: no line */
		weld__vf_check(v->r, "zero_16bit", WELD_CHECK_PASS,
			  "%zu tensors equal the 16-bit weights DeepSpeed stored in %s", compared, weld__vf_base_name(states));
	weld_ckpt_free(m);
	return s == WELD_ERR_NOMEM ? s : WELD_OK;
}

/* Which source tensor each output tensor is (SIZE_MAX: none), and the names that do not match. */
typedef struct matching {
	size_t *src_of;
	const char **missing, **extra, **shapes;
	size_t nmissing, nextra, nshapes, skipped;
	char prefix[64];
	weld_map ties; /* weld.json's tied names */
} matching;

static const char *tie_name(const void *m, size_t k)
{
	return ((const weld_manifest *)m)->ties[k].name;
}

/* MT's index of the tied names weld.json lists (none without one); false when out of memory. */
static bool index_ties(const weld_verifier *v, matching *mt)
{
	const weld_manifest *m = v->manifest;
	weld_map_init_names(&mt->ties, tie_name, m);
	bool ok = true;
	for (size_t k = 0; m && k < m->nties && ok; k++) {
		size_t had;
		ok = weld_map_add(&mt->ties, m->ties[k].name, k, &had);
	}
	return ok;
}

/* A tied name stored once under its owner: in weld.json, or an lm_head.weight the config ties. */
static bool is_tied(const weld_verifier *v, const matching *mt, const char *name, size_t oi)
{
	if (weld_map_get(&mt->ties, name) != WELD_MAP_NONE)
		return true;
	return !v->manifest && v->tie == 1 && oi == SIZE_MAX && weld__has_suffix(name, "lm_head.weight");
}

/* Output tensors to source tensors by name, the source's wrapper prefix stripped as the planner strips it. */
static void match_names(const weld_verifier *v, const weld_ckpt *src, matching *mt)
{
	size_t plen = weld__wrapper_prefix(src, mt->prefix, sizeof(mt->prefix)), nout = v->out->nt;
	for (size_t i = 0; i < nout; i++)
		mt->src_of[i] = SIZE_MAX;
	for (size_t i = 0; i < src->nt; i++) {
		const ckpt_tensor *t = &src->t[i];
		const char *name = t->name + plen;
		size_t oi = weld__vf_find_out(v, name);
		if (t->alias_of || is_tied(v, mt, name, oi))
			mt->skipped++;
		else if (oi == SIZE_MAX)
			mt->missing[mt->nmissing++] = name;
		else
			mt->src_of[oi] = i;
	}
	for (size_t i = 0; i < nout; i++) {
		const ckpt_tensor *o = &v->out->t[i];
		if (o->alias_of)
			continue;
		if (mt->src_of[i] == SIZE_MAX) {
			mt->extra[mt->nextra++] = o->name;
			continue;
		}
		const ckpt_tensor *t = &src->t[mt->src_of[i]];
		if (t->ndim != o->ndim || memcmp(t->shape, o->shape, sizeof(uint64_t) * o->ndim) != 0) {
			mt->shapes[mt->nshapes++] = o->name;
			mt->src_of[i] = SIZE_MAX;
		}
	}
}

/* "N things ...: 'a', 'b'" appended to DETAIL when there are any. */
static void list_names(char *detail, size_t cap, const char *what, const char *const *names, size_t n)
{
	if (!n)
		return;
	weld__vf_appendf(detail, cap, "%s%zu %s: ", detail[0] ? "; " : "", n, what);
	weld__vf_append_names(detail, cap, names, n);
}

static void report_names(weld_verifier *v, const matching *mt)
{
	weld_verify_report *r = v->r;
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	size_t plen = strlen(mt->prefix);
	list_names(detail, sizeof(detail), mt->nmissing == 1 ? "source tensor missing from the output" : "source tensors missing from the output",
		   mt->missing, mt->nmissing);
	list_names(detail, sizeof(detail), mt->nextra == 1 ? "output tensor not in the source" : "output tensors not in the source",
		   mt->extra, mt->nextra);
	list_names(detail, sizeof(detail), mt->nshapes == 1 ? "shape differ from the source" : "shapes differ from the source",
		   mt->shapes, mt->nshapes);
	if (detail[0])
		weld__vf_check(r, "against_names", WELD_CHECK_FAIL, "%s", detail);
	else
		weld__vf_check(r, "against_names", WELD_CHECK_PASS,
			       "the %llu output tensors match the source's names and shapes%s%s%s%s%s%s",
			       (unsigned long long)r->tensors, mt->skipped || plen ? " (" : "",
			       mt->skipped ? "tied aliases folded" : "", mt->skipped && plen ? "; " : "",
			       plen ? "prefix stripped: " : "", plen ? mt->prefix : "", mt->skipped || plen ? ")" : "");
}

/* What comparing the values found, for the report. */
typedef struct tally {
	size_t compared, inexact, bad_cast, nonfinite, unreadable;
	const weld_tensor_diff *first_inexact, *first_nonfinite;
	const char *first_cast, *norms_on;
	double worst_rel;
	char read_error[WELD_CHECK_DETAIL_MAX];
} tally;

/* Output tensor I against its source tensor; a tensor that cannot be read is a finding, not an error. */
static weld_status compare_one(weld_verifier *v, weld_ckpt *src, size_t i, size_t si, tally *ty, weld_error *err)
{
	weld_verify_report *r = v->r;
	weld_tensor_diff *d = &r->diffs[r->ndiffs];
	if (!(d->name = weld__strdup(v->out->t[i].name)))
		return weld__nomem(err);
	r->ndiffs++;
	weld_error e = {0};
	weld_status s = compare_tensor(v, i, src, si, d, &ty->norms_on, &e);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		d->exact = 0;
		d->max_abs_diff = d->rel_l2 = NAN;
		if (!ty->unreadable++)
			weld__vf_appendf(ty->read_error, sizeof(ty->read_error), "%s", e.message);
		return WELD_OK;
	}
	ty->compared++;
	if (!d->exact && !ty->inexact++)
		ty->first_inexact = d;
	if (d->nan_count + d->inf_count && !ty->nonfinite++)
		ty->first_nonfinite = d;
	if (d->rel_l2 > ty->worst_rel)
		ty->worst_rel = d->rel_l2;
	return WELD_OK;
}

static void report_values(weld_verifier *v, const tally *ty)
{
	weld_verify_report *r = v->r;
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	if (ty->unreadable)
		weld__vf_appendf(detail, sizeof(detail), "%s%s", ty->read_error, ty->unreadable > 1 ? " (and more unreadable)" : "");
	if (ty->inexact)
		weld__vf_appendf(detail, sizeof(detail),
				 "%s%zu of %zu tensors differ from the source cast to their dtype: '%s' (max abs diff %g, rel L2 %g)",
				 detail[0] ? "; " : "", ty->inexact, ty->compared, ty->first_inexact->name,
				 ty->first_inexact->max_abs_diff, ty->first_inexact->rel_l2);
	if (ty->bad_cast)
		weld__vf_appendf(detail, sizeof(detail), "%s%zu tensor%s of a dtype weld cannot make from the source's: '%s'",
				 detail[0] ? "; " : "", ty->bad_cast, ty->bad_cast == 1 ? "" : "s", ty->first_cast);
	bool gpu = ty->norms_on && strcmp(ty->norms_on, "cpu") != 0;
	if (detail[0])
		weld__vf_check(r, "against_values", WELD_CHECK_FAIL, "%s", detail);
	else
		weld__vf_check(r, "against_values", WELD_CHECK_PASS,
			       "all %zu tensors equal the source cast to their dtype exactly (largest rel L2 error %g%s)",
			       ty->compared, ty->worst_rel, gpu ? ", norms by cuBLAS" : "");
	const weld_tensor_diff *d = ty->first_nonfinite;
	if (d)
		weld__vf_check(r, "finite", WELD_CHECK_WARN, "%zu tensor%s NaN or Inf: '%s' (%llu NaN, %llu Inf)",
			       ty->nonfinite, ty->nonfinite == 1 ? " holds" : "s hold", d->name,
			       (unsigned long long)d->nan_count, (unsigned long long)d->inf_count);
	else
		weld__vf_check(r, "finite", WELD_CHECK_PASS, "no NaN or Inf in the %zu tensors compared", ty->compared);
}

/* Values: every matched tensor, exactly the source cast to its dtype. */
static weld_status compare_values(weld_verifier *v, weld_ckpt *src, const matching *mt, weld_error *err)
{
	size_t nout = v->out->nt;
	tally *ty = calloc(1, sizeof(*ty));
	if (!ty || !(v->r->diffs = weld__calloc(nout ? nout : 1, sizeof(*v->r->diffs)))) {
		free(ty);
		return weld__nomem(err);
	}
	weld_status s = WELD_OK;
	for (size_t i = 0; i < nout && !s; i++) {
		size_t si = mt->src_of[i];
		if (si == SIZE_MAX)
			continue;
		if (castable(src->t[si].dtype, v->out->t[i].dtype))
			s = compare_one(v, src, i, si, ty, err);
		else if (!ty->bad_cast++)
			ty->first_cast = v->out->t[i].name;
	}
	if (!s)
		report_values(v, ty);
	free(ty);
	return s;
}

weld_status weld__vf_check_against(weld_verifier *v, const char *against, weld_error *err)
{
	weld_ckpt *src = NULL;
	weld_status s = weld_ckpt_open(&src, against, err);
	if (s)
		return s;
	size_t nout = v->out->nt;
	matching mt = {.src_of = weld__calloc(nout ? nout : 1, sizeof(*mt.src_of)),
		       .missing = weld__calloc(src->nt ? src->nt : 1, sizeof(*mt.missing)),
		       .extra = weld__calloc(nout ? nout : 1, sizeof(*mt.extra)),
		       .shapes = weld__calloc(nout ? nout : 1, sizeof(*mt.shapes))};
	if (!mt.src_of || !mt.missing || !mt.extra || !mt.shapes || !index_ties(v, &mt))
		s = weld__nomem(err);
	if (!s) {
		match_names(v, src, &mt);
		report_names(v, &mt);
		s = compare_values(v, src, &mt, err);
	}
	if (!s)
		s = check_zero_16bit(v, src, mt.prefix, err);
	free(mt.src_of);
	free(mt.missing);
	free(mt.extra);
	free(mt.shapes);
	weld_map_clear(&mt.ties);
	weld_ckpt_free(src);
	return s;
}
