/*
 * DeepSpeed ZeRO reconstruction as fragments: the tensors DeepSpeed's
 * zero_to_fp32 rebuilds (shared docs: deepspeed-zero-format.md, section 3),
 * described as runs of the fp32 master partitions in the optimizer files,
 * never materialised and never touching the Adam moments.
 *
 * Stage 1/2 (and BF16_Optimizer): group g's masters are the concatenation of
 * every rank's single_partition_of_fp32_groups[g]; param_shapes[g] lists
 * the parameters back to back in it. Stage 3: every parameter of n elements
 * is split into W slices of p = ceil(n/W), rank r holding slice r at the same
 * running offset of its concatenated fp32_flat_groups. Output order is
 * zero_to_fp32's: buffers, frozen parameters, trainable ones, tied aliases.
 */
#include "formats/zero.h"

#include "formats/torch_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A contiguous 1-D run of master elements in one file, and the zip record that holds it. */
typedef struct part {
	uint32_t src;
	uint64_t offset, numel;
	uint32_t record;
} part;

typedef struct rank_parts {
	part *p;
	size_t n;
	uint64_t total;
} rank_parts;

/* A torch file of the checkpoint, opened once as a source; *ROOT its top-level dict. */
static weld_status open_dict(weld_ckpt *c, const char *path, uint32_t *src, const weld_py **root, weld_error *err)
{
	weld_status s = weld__torch_source(c, path, src, root, err);
	if (!s && (*root)->kind != WELD_PY_DICT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: does not hold a dict", path);
	return s;
}

/*
 * The value of dict D under NAME, found through AT (weld_py_index_strs of D),
 * or NULL: also when D is no dict (the index of a list holds positions too).
 */
static const weld_py *dict_val(const weld_py *d, const weld_map *at, const char *name)
{
	size_t i = d && d->kind == WELD_PY_DICT ? weld_map_get(at, name) : WELD_MAP_NONE;
	return i == WELD_MAP_NONE ? NULL : d->dict.vals[i];
}

/*
 * The flat 1-D partition T of source SRC as a part, all partitions being of
 * *DTYPE (set by the first). Its zip record is noted so that streaming it
 * checks the record's CRC-32.
 */
static weld_status flat_run(weld_ckpt *c, uint32_t src, const weld_py *t, weld_dtype *dtype, part *out,
			    const char *what, weld_error *err)
{
	const char *path = c->src[src].file->path;
	if (!t || t->kind != WELD_PY_TENSOR)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: %s is not a tensor", path, what);
	if (t->tensor.ndim != 1 || (t->tensor.shape[0] > 1 && t->tensor.stride[0] != 1))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: %s is not a flat 1-D tensor", path, what);
	weld_status s = weld__torch_plain_view(path, what, NULL, t, err);
	if (s)
		return s;
	if (*dtype == WELD_DTYPE_INVALID)
		*dtype = t->tensor.dtype;
	if (t->tensor.dtype != *dtype)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: %s is %s, other partitions are %s", path, what,
				  weld_dtype_name(t->tensor.dtype), weld_dtype_name(*dtype));
	weld_torch_storage st;
	if ((s = weld_torch_storage_range(weld__torch_of(c, src), t->tensor.storage, &st, err)))
		return s;
	/* The pickle reader checked the view lies inside its storage. */
	*out = (part){src, st.offset + t->tensor.storage_offset * weld_dtype_size(*dtype), t->tensor.shape[0],
		      WELD_NO_RECORD};
	if (!st.entry || !weld_zip_crc_known(st.entry))
		return WELD_OK;
	/* The record's name outlives the file's tree, which is dropped once its rank is read. */
	const char *name = weld__ckpt_own(c, weld__strdup(st.entry->record));
	if (!name)
		return weld__nomem(err);
	return weld__ckpt_add_record(c, (weld_record){c->src[src].file, st.offset, st.nbytes, st.entry->crc32, name},
				     &out->record, err);
}

/* Fragments of the last tensor for elements [OFF, OFF+N) of the concatenation of PARTS. */
static weld_status concat_frags(weld_ckpt *c, const part *parts, size_t nparts, uint64_t off, uint64_t n,
				uint64_t dst_elem, size_t esz, bool *short_out, weld_error *err)
{
	for (size_t i = 0; i < nparts && n; i++) {
		if (off >= parts[i].numel) {
			off -= parts[i].numel;
			continue;
		}
		uint64_t take = parts[i].numel - off < n ? parts[i].numel - off : n;
		weld_status s = weld__ckpt_add_frag(
			c, (weld_frag){parts[i].offset + off * esz, take, dst_elem, parts[i].src, parts[i].record, WELD_NO_PATTERN}, err);
		if (s)
			return s;
		dst_elem += take;
		n -= take;
		off = 0;
	}
	*short_out = n != 0;
	return WELD_OK;
}

static bool shape_of(const weld_py *size, ckpt_tensor *t)
{
	if (!size || (size->kind != WELD_PY_SIZE && size->kind != WELD_PY_TUPLE) || size->seq.n > WELD_MAX_DIMS)
		return false;
	t->ndim = size->seq.n;
	for (size_t j = 0; j < size->seq.n; j++) {
		const weld_py *d = size->seq.items[j];
		if (d->kind != WELD_PY_INT || d->i.big || d->i.v < 0)
			return false;
		t->shape[j] = (uint64_t)d->i.v;
	}
	return true;
}

/* A parameter NAME of SHAPE (from the model states, source SRC), its fragments to follow. */
static weld_status new_zero_tensor(weld_ckpt *c, const weld_py *name, const weld_py *shape, weld_dtype dtype,
				   uint32_t src, ckpt_tensor **out, weld_error *err)
{
	const char *path = c->src[src].file->path;
	if (name->kind != WELD_PY_STR)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: a parameter name is not a string", path);
	weld_status s = weld__ckpt_new_tensor(c, name->str.s, out, err);
	if (s)
		return s;
	ckpt_tensor *t = *out;
	t->src = src;
	t->dtype = dtype;
	if (!shape_of(shape, t))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: parameter '%s' has a malformed shape", path, name->str.s);
	return weld__ckpt_set_sizes(t, path, err);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* partition_count is an int (stage 3) or a list per group (stage 1/2): the largest. */
static int max_partition_count(const weld_py *pc)
{
	int best = -1;
	if (pc && pc->kind == WELD_PY_INT && !pc->i.big)
		return (int)pc->i.v;
	for (size_t i = 0; pc && pc->kind == WELD_PY_LIST && i < pc->seq.n; i++)
		if (pc->seq.items[i]->kind == WELD_PY_INT && !pc->seq.items[i]->i.big && pc->seq.items[i]->i.v > best)
			best = (int)pc->seq.items[i]->i.v;
	return best;
}

/* The optimizer's step count for rank checks: int, float or a 0-dim tensor. */
static bool step_of(weld_ckpt *c, uint32_t src, const weld_py *osd, double *step)
{
	const weld_py *inner = weld_py_dict_get(osd, "base_optimizer_state");
	if (!inner)
		inner = weld_py_dict_get(osd, "optimizer_state_dict");
	const weld_py *state = weld_py_dict_get(inner, "state");
	if (!state || state->kind != WELD_PY_DICT || state->dict.n == 0)
		return false;
	const weld_py *v = weld_py_dict_get(state->dict.vals[0], "step");
	if (!v)
		return false;
	if (v->kind == WELD_PY_INT && !v->i.big) {
		*step = (double)v->i.v;
		return true;
	}
	if (v->kind == WELD_PY_FLOAT) {
		*step = v->f;
		return true;
	}
	weld_torch_storage st;
	if (v->kind != WELD_PY_TENSOR || v->tensor.ndim != 0 || v->tensor.neg || v->tensor.conj ||
	    weld_torch_storage_range(weld__torch_of(c, src), v->tensor.storage, &st, NULL) != WELD_OK)
		return false;
	uint8_t b[8] = {0};
	size_t esz = weld_dtype_size(v->tensor.dtype);
	if ((v->tensor.dtype != WELD_DTYPE_F32 && v->tensor.dtype != WELD_DTYPE_I64 && v->tensor.dtype != WELD_DTYPE_F64) ||
	    weld_file_pread(c->src[src].file, b, esz, st.offset + v->tensor.storage_offset * esz, NULL) != WELD_OK)
		return false;
	float f;
	double d;
	int64_t i;
	if (v->tensor.dtype == WELD_DTYPE_F32)
		memcpy(&f, b, 4), *step = f;
	else if (v->tensor.dtype == WELD_DTYPE_F64)
		memcpy(&d, b, 8), *step = d;
	else
		memcpy(&i, b, 8), *step = (double)i;
	return true;
}

/* Every rank's master partitions, with the checks zero_to_fp32 makes and a few more. */
static weld_status load_partitions(weld_ckpt *c, const zero_layout *z, rank_parts *ranks, weld_dtype *dtype,
				   weld_error *err)
{
	const char *key = z->stage == 3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups";
	double step0 = 0;
	bool have_step0 = false;
	for (int r = 0; r < z->world; r++) {
		uint32_t src;
		const weld_py *root;
		weld_status s = open_dict(c, z->optim_paths[r], &src, &root, err);
		if (s)
			return s;
		const char *path = c->src[src].file->path;
		const weld_py *osd = weld_py_dict_get(root, "optimizer_state_dict");
		const weld_py *groups = weld_py_dict_get(osd, key);
		if (!groups || groups->kind != WELD_PY_LIST)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: no %s list in optimizer_state_dict", path, key);
		int pc = max_partition_count(weld_py_dict_get(osd, "partition_count"));
		if (pc != z->world)
			return weld__fail(err, WELD_ERR_MISMATCH,
					  "%s: partition_count says %d ranks but the folder holds optimizer files for %d "
					  "(stale files from another world size?)",
					  path, pc, z->world);
		double step;
		if (step_of(c, src, osd, &step)) {
			if (!have_step0) {
				step0 = step;
				have_step0 = true;
			} else if (step != step0) {
				return weld__fail(err, WELD_ERR_MISMATCH,
						  "%s: optimizer is at step %.0f but rank 0's is at step %.0f: files from different steps",
						  path, step, step0);
			}
		}
		rank_parts *rp = &ranks[r];
		rp->p = weld__calloc(groups->seq.n, sizeof(*rp->p));
		if (!rp->p)
			return weld__nomem(err);
		for (size_t g = 0; g < groups->seq.n; g++) {
			char what[64];
			snprintf(what, sizeof(what), "%s[%zu]", key, g);
			if ((s = flat_run(c, src, groups->seq.items[g], dtype, &rp->p[g], what, err)))
				return s;
			rp->total += rp->p[g].numel;
			rp->n++;
		}
		if (rp->n != ranks[0].n)
			return weld__fail(err, WELD_ERR_MISMATCH, "%s: %zu parameter groups, rank 0 has %zu", path, rp->n,
					  ranks[0].n);
		if (src != z->states_src) /* what the plan needs is in RANKS now: hold one rank's tree at a time */
			weld__ckpt_drop_parsed(c, src);
	}
	return WELD_OK;
}

/* Stage 1/2 and BF16_Optimizer: params back to back in the ranks' concatenated group. */
static weld_status build_stage12(weld_ckpt *c, const zero_layout *z, const weld_py *shapes, rank_parts *ranks,
				 weld_dtype dtype, weld_error *err)
{
	const char *path = c->src[z->states_src].file->path;
	size_t G = ranks[0].n, esz = weld_dtype_size(dtype);
	if (shapes->seq.n != G)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: param_shapes has %zu groups but the optimizer has %zu",
				  path, shapes->seq.n, G);
	part *parts = weld__calloc((size_t)z->world, sizeof(*parts));
	if (!parts)
		return weld__nomem(err);
	weld_status s = WELD_OK;
	for (size_t g = 0; g < G && !s; g++) {
		const weld_py *d = shapes->seq.items[g];
		uint64_t total = 0, off = 0;
		for (int r = 0; r < z->world; r++) {
			parts[r] = ranks[r].p[g];
			total += parts[r].numel;
		}
		if (d->kind != WELD_PY_DICT) {
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: param_shapes[%zu] is not a dict", path, g);
			break;
		}
		for (size_t i = 0; i < d->dict.n && !s; i++) {
			ckpt_tensor *t;
			bool short_run = false;
			if ((s = new_zero_tensor(c, d->dict.keys[i], d->dict.vals[i], dtype, z->states_src, &t, err)))
				break;
			s = concat_frags(c, parts, (size_t)z->world, off, t->numel, 0, esz, &short_run, err);
			if (!s && short_run)
				s = weld__fail(err, WELD_ERR_MISMATCH,
					       "%s: parameter '%s' runs past the end of group %zu's partitions (%llu elements)",
					       path, t->name, g, (unsigned long long)total);
			off += t->numel;
		}
		/* zero_to_fp32's check: what is left over is alignment padding, under 2 x world size. */
		uint64_t a = 2 * (uint64_t)z->world;
		if (!s && ceil_div(off, a) != ceil_div(total, a))
			s = weld__fail(err, WELD_ERR_MISMATCH,
				       "%s: group %zu's parameters use %llu elements but the partitions hold %llu",
				       path, g, (unsigned long long)off, (unsigned long long)total);
	}
	free(parts);
	return s;
}

/*
 * Stage 3: the fragments of T, slice r of p = ceil(n/W) elements coming from
 * RANKS[r]'s parts at element OFF. *SHORT is the first rank whose parts run
 * out before its slice does, or -1.
 */
static weld_status stage3_slices(weld_ckpt *c, const ckpt_tensor *t, const rank_parts *ranks, uint64_t W,
				 uint64_t off, size_t esz, int64_t *short_rank, weld_error *err)
{
	uint64_t p = ceil_div(t->numel, W);
	*short_rank = -1;
	for (uint64_t r = 0; r < W && r * p < t->numel; r++) {
		uint64_t take = t->numel - r * p < p ? t->numel - r * p : p;
		bool short_run = false;
		weld_status s = concat_frags(c, ranks[r].p, ranks[r].n, off, take, r * p, esz, &short_run, err);
		if (s || short_run) {
			*short_rank = short_run ? (int64_t)r : -1;
			return s;
		}
	}
	return WELD_OK;
}

/* Stage 3: slice r of every parameter comes from rank r, at the same running offset. */
static weld_status build_stage3(weld_ckpt *c, const zero_layout *z, const weld_py *shapes, rank_parts *ranks,
				weld_dtype dtype, weld_error *err)
{
	const char *path = c->src[z->states_src].file->path;
	size_t esz = weld_dtype_size(dtype);
	uint64_t W = (uint64_t)z->world, off = 0;
	for (int r = 1; r < z->world; r++)
		if (ranks[r].total != ranks[0].total)
			return weld__fail(err, WELD_ERR_MISMATCH,
					  "%s: rank %d's partitions hold %llu elements, rank 0's %llu", z->optim_paths[r], r,
					  (unsigned long long)ranks[r].total, (unsigned long long)ranks[0].total);
	for (size_t g = 0; g < shapes->seq.n; g++) {
		const weld_py *d = shapes->seq.items[g];
		if (d->kind != WELD_PY_DICT)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: param_shapes[%zu] is not a dict", path, g);
		for (size_t i = 0; i < d->dict.n; i++) {
			ckpt_tensor *t;
			int64_t short_rank;
			weld_status s = new_zero_tensor(c, d->dict.keys[i], d->dict.vals[i], dtype, z->states_src, &t, err);
			if (!s)
				s = stage3_slices(c, t, ranks, W, off, esz, &short_rank, err);
			if (s)
				return s;
			if (short_rank >= 0)
				return weld__fail(err, WELD_ERR_MISMATCH, "%s: parameter '%s' runs past the end of rank %lld's partitions",
						  path, t->name, (long long)short_rank);
			off += ceil_div(t->numel, W);
		}
	}
	if (off != ranks[0].total)
		return weld__fail(err, WELD_ERR_MISMATCH,
				  "%s: the parameters use %llu elements per rank but the partitions hold %llu",
				  path, (unsigned long long)off, (unsigned long long)ranks[0].total);
	return WELD_OK;
}

/* Whether the DeepSpeed that wrote STATES is older than MAJOR.MINOR.PATCH (false when it does not say). */
static bool ds_older_than(const weld_py *states, int major, int minor, int patch)
{
	const weld_py *v = weld_py_dict_get(states, "ds_version");
	long num[3];
	const char *at = v && v->kind == WELD_PY_STR ? v->str.s : NULL;
	/* Three dotted numbers of at most 6 digits each ("0.19.8", "0.16.9+abc"): anything else says nothing. */
	for (int k = 0; k < 3; k++) {
		size_t n = at ? strspn(at, "0123456789") : 0;
		if (!n || n > 6 || (k < 2 && at[n] != '.'))
			return false;
		num[k] = strtol(at, NULL, 10);
		at += n + (k < 2);
	}
	long want[3] = {major, minor, patch};
	for (int k = 0; k < 3; k++)
		if (num[k] != want[k])
			return num[k] < want[k];
	return false;
}

static bool is_integer(weld_dtype d)
{
	return d == WELD_DTYPE_BOOL || d == WELD_DTYPE_U8 || d == WELD_DTYPE_I8 || d == WELD_DTYPE_I16 ||
	       d == WELD_DTYPE_U16 || d == WELD_DTYPE_I32 || d == WELD_DTYPE_U32 || d == WELD_DTYPE_I64 ||
	       d == WELD_DTYPE_U64;
}

/*
 * Buffers, in module order, for the names buffer_names lists. zero_to_fp32
 * writes them as .float(): DeepSpeed before 0.19 stores float buffers in the
 * 16-bit dtype, and zero_to_fp32 before 0.19.8 turns integer and bool
 * buffers into float32 too (0.19.8 keeps those as they are). --dtype keep
 * writes what the writing version's own zero_to_fp32 writes; the casting
 * dtypes keep integer buffers integer, as the model holds them.
 */
static weld_status add_buffers(weld_ckpt *c, uint32_t src, const weld_py *states, weld_error *err)
{
	const weld_py *names = weld_py_dict_get(states, "buffer_names");
	const weld_py *module = weld_py_dict_get(states, "module");
	if (!names || names->kind != WELD_PY_LIST || !module || module->kind != WELD_PY_DICT)
		return WELD_OK;
	bool ints_to_float = ds_older_than(states, 0, 19, 8);
	weld_map listed;
	if (!weld_py_index_strs(names, &listed))
		return weld__nomem(err);
	weld_status s = WELD_OK;
	for (size_t i = 0; i < module->dict.n && !s; i++) {
		const weld_py *k = module->dict.keys[i], *v = module->dict.vals[i];
		if (k->kind != WELD_PY_STR || weld_map_get(&listed, k->str.s) == WELD_MAP_NONE)
			continue;
		s = v->kind != WELD_PY_TENSOR ? weld__fail(err, WELD_ERR_FORMAT, "%s: buffer '%s' is not a tensor",
							  c->src[src].file->path, k->str.s)
					      : weld__torch_add_tensor(c, src, k->str.s, v, err);
		ckpt_tensor *t = s ? NULL : &c->t[c->nt - 1];
		if (t && (t->dtype == WELD_DTYPE_BF16 || t->dtype == WELD_DTYPE_F16 || t->dtype == WELD_DTYPE_F64 ||
			  (ints_to_float && is_integer(t->dtype))))
			t->keep_as = WELD_DTYPE_F32;
	}
	weld_map_clear(&listed);
	return s;
}

/* frozen_param_shapes: a dict of names (strings) to shapes, or NULL in *SHAPES when there is none. */
static weld_status frozen_shapes(const weld_ckpt *c, const zero_layout *z, const weld_py *states, const weld_py **shapes,
				 weld_error *err)
{
	const char *path = c->src[z->states_src].file->path;
	const weld_py *d = weld_py_dict_get(states, "frozen_param_shapes");
	*shapes = NULL;
	if (!d || d->kind == WELD_PY_NONE)
		return WELD_OK; /* stage 1 never records them: zero_to_fp32 leaves them out too */
	if (d->kind != WELD_PY_DICT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: frozen_param_shapes is not a dict", path);
	for (size_t i = 0; i < d->dict.n; i++)
		if (d->dict.keys[i]->kind != WELD_PY_STR)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: a frozen parameter name is not a string", path);
	*shapes = d;
	return WELD_OK;
}

/* Stage 2's frozen parameters: whole 16-bit tensors in the model states. */
static weld_status add_frozen(weld_ckpt *c, const zero_layout *z, const weld_py *states, weld_error *err)
{
	const weld_py *shapes, *frags = weld_py_dict_get(states, "frozen_param_fragments");
	weld_map at;
	weld_status s = frozen_shapes(c, z, states, &shapes, err);
	if (s || !shapes)
		return s;
	if (!weld_py_index_strs(frags, &at))
		return weld__nomem(err);
	for (size_t i = 0; !s && i < shapes->dict.n; i++) {
		const char *name = shapes->dict.keys[i]->str.s;
		const weld_py *v = dict_val(frags, &at, name);
		if (!v || v->kind != WELD_PY_TENSOR)
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: frozen parameter '%s' has no fragment",
				       c->src[z->states_src].file->path, name);
		else
			s = weld__torch_add_tensor(c, z->states_src, name, v, err);
	}
	weld_map_clear(&at);
	return s;
}

/* Stage 3's frozen parameters: SHAPES (or NULL), and each one's dtype and slice of every rank. */
typedef struct frozen3 {
	const weld_py *shapes;
	weld_dtype *dtype; /* by parameter */
	part *slices;      /* parameter i's on rank r: [i x world + r] */
} frozen3;

/*
 * Stage 3: every rank's model states, read once and then let go (one tree
 * held at a time, however many ranks): each from rank 0's step (STEPS0),
 * and each holding its slice of every frozen parameter.
 */
static weld_status read_rank_states(weld_ckpt *c, const zero_layout *z, const weld_py *steps0, frozen3 *fz,
				    weld_error *err)
{
	size_t nfrozen = fz->shapes ? fz->shapes->dict.n : 0;
	for (int r = 0; r < z->world; r++) {
		uint32_t src;
		const weld_py *root;
		weld_status s = open_dict(c, z->model_paths[r], &src, &root, err);
		if (s)
			return s;
		const weld_py *st = weld_py_dict_get(root, "global_steps");
		if (steps0 && st && steps0->kind == WELD_PY_INT && st->kind == WELD_PY_INT && st->i.v != steps0->i.v)
			return weld__fail(err, WELD_ERR_MISMATCH,
					  "%s: global_steps %lld but rank 0's is %lld: files from different steps",
					  c->src[src].file->path, (long long)st->i.v, (long long)steps0->i.v);
		const weld_py *frags = weld_py_dict_get(root, "frozen_param_fragments");
		weld_map at;
		if (nfrozen && !weld_py_index_strs(frags, &at))
			s = weld__nomem(err);
		for (size_t i = 0; i < nfrozen && !s; i++) {
			const char *name = fz->shapes->dict.keys[i]->str.s;
			s = flat_run(c, src, dict_val(frags, &at, name), &fz->dtype[i],
				     &fz->slices[i * (size_t)z->world + (size_t)r], name, err);
		}
		if (nfrozen)
			weld_map_clear(&at);
		if (s)
			return s;
		if (src != z->states_src)
			weld__ckpt_drop_parsed(c, src);
	}
	return WELD_OK;
}

/* Stage 3's frozen parameters as tensors, slice r of each from rank r. */
static weld_status add_frozen3(weld_ckpt *c, const zero_layout *z, const frozen3 *fz, weld_error *err)
{
	rank_parts *ranks = fz->shapes ? weld__calloc((size_t)z->world, sizeof(*ranks)) : NULL;
	weld_status s = fz->shapes && !ranks ? weld__nomem(err) : WELD_OK;
	for (size_t i = 0; !s && fz->shapes && i < fz->shapes->dict.n; i++) {
		const weld_py *name = fz->shapes->dict.keys[i];
		part *slices = &fz->slices[i * (size_t)z->world];
		for (int r = 0; r < z->world; r++)
			ranks[r] = (rank_parts){&slices[r], 1, slices[r].numel};
		ckpt_tensor *t;
		int64_t short_rank = -1;
		s = new_zero_tensor(c, name, fz->shapes->dict.vals[i], fz->dtype[i], z->states_src, &t, err);
		if (!s)
			s = stage3_slices(c, t, ranks, (uint64_t)z->world, 0, weld_dtype_size(fz->dtype[i]), &short_rank, err);
		if (!s && short_rank >= 0)
			s = weld__fail(err, WELD_ERR_MISMATCH, "%s: frozen parameter '%s' is shorter than its slice",
				       z->model_paths[short_rank], name->str.s);
	}
	free(ranks);
	return s;
}

/* Stage 3: the ranks' model states checked and read for the frozen parameters, which are added. */
static weld_status stage3_states(weld_ckpt *c, const zero_layout *z, const weld_py *states, weld_error *err)
{
	frozen3 fz = {0};
	weld_status s = frozen_shapes(c, z, states, &fz.shapes, err);
	size_t n = fz.shapes ? fz.shapes->dict.n : 0, cells;
	for (size_t i = 0; !s && i < n; i++) {
		ckpt_tensor probe = {0};
		if (!shape_of(fz.shapes->dict.vals[i], &probe))
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: frozen parameter '%s' has a malformed shape",
				       c->src[z->states_src].file->path, fz.shapes->dict.keys[i]->str.s);
	}
	if (!s && !weld__mul_size(&cells, n, (size_t)z->world))
		s = weld__nomem(err);
	if (!s && n) {
		fz.dtype = weld__calloc(n, sizeof(*fz.dtype));
		fz.slices = weld__calloc(cells, sizeof(*fz.slices));
		s = fz.dtype && fz.slices ? WELD_OK : weld__nomem(err);
		for (size_t i = 0; !s && i < n; i++)
			fz.dtype[i] = WELD_DTYPE_INVALID;
	}
	if (!s)
		s = read_rank_states(c, z, weld_py_dict_get(states, "global_steps"), &fz, err);
	if (!s)
		s = add_frozen3(c, z, &fz, err);
	free(fz.dtype);
	free(fz.slices);
	return s;
}

/* shared_params: alias -> owner; written once under the owner (missing owners skipped, as zero_to_fp32 does). */
static const char *tensor_name(const void *ctx, size_t i)
{
	return ((const weld_ckpt *)ctx)->t[i].name;
}

/* Tensors by name, the first of equal names kept (as a scan from the start finds it). */
static bool index_tensors(const weld_ckpt *c, weld_map *m)
{
	weld_map_init_names(m, tensor_name, c);
	size_t had;
	for (size_t i = 0; i < c->nt; i++)
		if (!weld_map_add(m, c->t[i].name, i, &had))
			return false;
	return true;
}

static weld_status add_aliases(weld_ckpt *c, const weld_py *shared, weld_error *err)
{
	if (!shared || shared->kind != WELD_PY_DICT)
		return WELD_OK;
	weld_map by_name;
	weld_status s = index_tensors(c, &by_name) ? WELD_OK : weld__nomem(err);
	for (size_t i = 0; i < shared->dict.n && !s; i++) {
		const weld_py *k = shared->dict.keys[i], *v = shared->dict.vals[i];
		size_t owner = k->kind == WELD_PY_STR && v->kind == WELD_PY_STR ? weld_map_get(&by_name, v->str.s)
										 : WELD_MAP_NONE;
		ckpt_tensor *t;
		if (owner == WELD_MAP_NONE || (s = weld__ckpt_new_tensor(c, k->str.s, &t, err)))
			continue;
		const ckpt_tensor *o = &c->t[owner]; /* after the append: the array may have moved */
		char *name = t->name;
		*t = *o;
		t->name = name;
		t->alias_of = o->name;
		size_t had;
		if (!weld_map_add(&by_name, t->name, c->nt - 1, &had))
			s = weld__nomem(err);
	}
	weld_map_clear(&by_name);
	return s;
}

/*
 * Stage 0: no partitions. The module holds the weights; for 16-bit runs the
 * fp32 masters are the optimizer's fp32_groups, one tensor per trainable
 * parameter in module order.
 */
static weld_status build_stage0(weld_ckpt *c, const zero_layout *z, const weld_py *states, weld_error *err)
{
	const char *path = c->src[z->states_src].file->path;
	const weld_py *module = weld_py_dict_get(states, "module");
	const weld_py *names = weld_py_dict_get(states, "buffer_names");
	const weld_py *groups = weld_py_dict_get(weld_py_dict_get(states, "optimizer"), "fp32_groups");
	if (!module || module->kind != WELD_PY_DICT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: no module state", path);
	if (!groups)
		return weld__torch_add_tree(c, z->states_src, module, err); /* fp32 run: module is the master */
	size_t gi = 0, ti = 0;
	for (size_t i = 0; i < module->dict.n; i++) {
		const weld_py *k = module->dict.keys[i], *v = module->dict.vals[i];
		bool buffer = false;
		for (size_t j = 0; names && names->kind == WELD_PY_LIST && j < names->seq.n && !buffer; j++)
			buffer = k->kind == WELD_PY_STR && weld_py_is_str(names->seq.items[j], k->str.s);
		if (buffer || k->kind != WELD_PY_STR || v->kind != WELD_PY_TENSOR)
			continue;
		while (groups->kind == WELD_PY_LIST && gi < groups->seq.n &&
		       (groups->seq.items[gi]->kind != WELD_PY_LIST || ti >= groups->seq.items[gi]->seq.n)) {
			gi++;
			ti = 0;
		}
		if (groups->kind != WELD_PY_LIST || gi >= groups->seq.n)
			return weld__fail(err, WELD_ERR_UNSUPPORTED,
					  "%s: the optimizer's fp32_groups end before parameter '%s' (frozen parameters at stage 0?)",
					  path, k->str.s);
		const weld_py *m = groups->seq.items[gi]->seq.items[ti++];
		if (m->kind != WELD_PY_TENSOR || m->tensor.ndim != v->tensor.ndim ||
		    memcmp(m->tensor.shape, v->tensor.shape, sizeof(uint64_t) * v->tensor.ndim) != 0)
			return weld__fail(err, WELD_ERR_MISMATCH, "%s: fp32 master for '%s' does not match its shape", path,
					  k->str.s);
		weld_status s = weld__torch_add_tensor(c, z->states_src, k->str.s, m, err);
		if (s)
			return s;
	}
	return WELD_OK;
}

weld_status weld__zero_build(weld_ckpt *c, const zero_layout *z, weld_error *err)
{
	const weld_py *states = weld_torch_root(weld__torch_of(c, z->states_src));
	const char *path = c->src[z->states_src].file->path;
	weld_status s = add_buffers(c, z->states_src, states, err);
	if (s)
		return s;
	if (z->stage == 0)
		return build_stage0(c, z, states, err);

	if ((s = z->stage == 3 ? stage3_states(c, z, states, err) : add_frozen(c, z, states, err)))
		return s;
	const weld_py *shapes = weld_py_dict_get(states, "param_shapes");
	if (!shapes || shapes->kind != WELD_PY_LIST)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: param_shapes is missing or not a list", path);
	rank_parts *ranks = weld__calloc((size_t)z->world, sizeof(*ranks));
	if (!ranks)
		return weld__nomem(err);
	weld_dtype dtype = WELD_DTYPE_INVALID;
	s = load_partitions(c, z, ranks, &dtype, err);
	if (!s)
		s = z->stage == 3 ? build_stage3(c, z, shapes, ranks, dtype, err)
				  : build_stage12(c, z, shapes, ranks, dtype, err);
	for (int r = 0; r < z->world; r++)
		free(ranks[r].p);
	free(ranks);
	if (s)
		return s;
	return add_aliases(c, weld_py_dict_get(states, "shared_params"), err);
}
