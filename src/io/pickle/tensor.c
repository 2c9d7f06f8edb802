/*
 * torch storages, tensors and parameters: storages from persistent ids, the
 * torch._utils rebuild functions, Parameter, and the legacy torch.Tensor() /
 * Parameter() + BUILD forms. Every view is checked against its storage here,
 * so no tensor handed out reaches outside its storage.
 *
 * Storages: every persistent id yields a fresh WELD_PY_STORAGE node, even for
 * a key seen before (unless the same node is reached through the memo);
 * callers cache storages by key.
 *
 * A torch.Tensor()/Parameter() made by NEWOBJ must get its storage from BUILD
 * before STOP, so every tensor handed out has one.
 */
#include "io/pickle/internal.h"

#include <string.h>

static bool get_i64(const weld_py *o, int64_t *v)
{
	if (o->kind != WELD_PY_INT || o->i.big)
		return false;
	*v = o->i.v;
	return true;
}

static bool get_bool(const weld_py *o, bool *b)
{
	if (o->kind == WELD_PY_BOOL) {
		*b = o->b;
		return true;
	}
	if (o->kind == WELD_PY_INT && !o->i.big) {
		*b = o->i.v != 0;
		return true;
	}
	return false;
}

/* Storage bytes / element size of DTYPE: how many DTYPE elements it holds. */
static uint64_t storage_elems(const weld_py *st, weld_dtype dtype)
{
	uint64_t bytes = st->storage.numel;
	if (!st->storage.untyped && !weld__mul_u64(&bytes, st->storage.numel, weld_dtype_size(st->storage.dtype)))
		bytes = UINT64_MAX; /* cannot happen: checked at BINPERSID */
	return bytes / weld_dtype_size(dtype);
}

/* Fill tensor T's view of STORAGE from offset/size/stride values, validated. */
static weld_status set_view(weld_pickle *p, weld_py *t, weld_py *storage, weld_dtype dtype, const weld_py *off,
			    const weld_py *size, const weld_py *stride)
{
	int64_t v;
	if (storage->kind != WELD_PY_STORAGE)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "tensor at offset %zu is built on %s, not a storage", p->off,
				     weld__pk_kind_name(storage));
	if (!get_i64(off, &v))
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "tensor at offset %zu has a storage offset that is %s, not a 64-bit int", p->off,
				     weld__pk_kind_name(off));
	if (v < 0)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has negative storage offset %lld", p->off,
				     (long long)v);
	uint64_t soff = (uint64_t)v;
	if (!is_seq(size) || !is_seq(stride))
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "tensor at offset %zu has a size or stride that is %s, not a tuple", p->off,
				     weld__pk_kind_name(is_seq(size) ? stride : size));
	size_t nd = size->seq.n;
	if (nd > WELD_MAX_DIMS)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "tensor at offset %zu has %zu dimensions; weld supports at most %d", p->off, nd,
				     WELD_MAX_DIMS);
	if (stride->seq.n != nd)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has %zu sizes but %zu strides", p->off,
				     nd, stride->seq.n);
	uint64_t shape[WELD_MAX_DIMS];
	int64_t strides[WELD_MAX_DIMS];
	uint64_t numel = 1, reach = soff;
	bool overflow = false;
	for (size_t d = 0; d < nd; d++) {
		int64_t sz, sd;
		if (!get_i64(size->seq.items[d], &sz) || !get_i64(stride->seq.items[d], &sd))
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "tensor at offset %zu has a size or stride in dimension %zu that is not a 64-bit int",
					     p->off, d);
		if (sz < 0)
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "tensor at offset %zu has negative size %lld in dimension %zu", p->off,
					     (long long)sz, d);
		if (sd < 0)
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
					     "tensor at offset %zu has negative stride %lld in dimension %zu", p->off,
					     (long long)sd, d);
		shape[d] = (uint64_t)sz;
		strides[d] = sd;
		if (!weld__mul_u64(&numel, numel, shape[d]))
			overflow = true;
	}
	uint64_t nbytes;
	if (overflow || !weld__mul_u64(&nbytes, numel, weld_dtype_size(dtype)))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has more than 2^64 bytes", p->off);
	if (numel > 0) {
		for (size_t d = 0; d < nd; d++) {
			uint64_t step;
			if (!weld__mul_u64(&step, shape[d] - 1, (uint64_t)strides[d]) || !weld__add_u64(&reach, reach, step))
				return weld__pk_fail(p, WELD_ERR_FORMAT,
						     "tensor at offset %zu reaches past element 2^64 of its storage", p->off);
		}
		uint64_t have = storage_elems(storage, dtype);
		if (reach >= have)
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "tensor at offset %zu reaches element %llu but its storage '%s' holds only %llu",
					     p->off, (unsigned long long)reach, storage->storage.key,
					     (unsigned long long)have);
	}
	t->tensor.storage = storage;
	t->tensor.dtype = dtype;
	t->tensor.storage_offset = soff;
	t->tensor.ndim = nd;
	memset(t->tensor.shape, 0, sizeof(t->tensor.shape));
	memset(t->tensor.stride, 0, sizeof(t->tensor.stride));
	memcpy(t->tensor.shape, shape, nd * sizeof(shape[0]));
	memcpy(t->tensor.stride, strides, nd * sizeof(strides[0]));
	return WELD_OK;
}

/* The element type a view of storage ST has when nothing else says. */
static weld_dtype storage_dtype(const weld_py *st)
{
	return st->storage.untyped ? WELD_DTYPE_U8 : st->storage.dtype;
}

static weld_status bad_requires_grad(weld_pickle *p, const weld_py *fn, const weld_py *arg)
{
	return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a bool requires_grad, got %s",
			     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(arg));
}

/*
 * The view bits in tensor metadata MD ({'neg': True}, {'conj': True}), as
 * torch._C._set_tensor_metadata reads them; other keys carry nothing weld
 * keeps. A metadata that is not a dict is malformed.
 */
static weld_status view_bits(weld_pickle *p, const weld_py *fn, const weld_py *md, weld_py *t)
{
	if (md->kind == WELD_PY_NONE)
		return WELD_OK;
	if (md->kind != WELD_PY_DICT)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a metadata dict, got %s",
				     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(md));
	for (size_t i = 0; i < md->dict.n; i++) {
		bool on;
		bool *bit = weld_py_is_str(md->dict.keys[i], "neg")    ? &t->tensor.neg
			    : weld_py_is_str(md->dict.keys[i], "conj") ? &t->tensor.conj
								       : NULL;
		if (!bit)
			continue;
		if (!get_bool(md->dict.vals[i], &on))
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "%s.%s at offset %zu has a tensor metadata flag that is %s, not a bool",
					     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(md->dict.vals[i]));
		*bit = on;
	}
	return WELD_OK;
}

/* torch._utils._rebuild_tensor / _v2 / _v3. */
static weld_status rebuild_tensor(weld_pickle *p, const weld_py *fn, enum gkind gk, const weld_py *args,
				  weld_py **out)
{
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	if (gk == G_REBUILD && n != 4)
		return weld__pk_bad_args(p, fn, "4", n);
	if (gk == G_REBUILD_V2 && n != 6 && n != 7)
		return weld__pk_bad_args(p, fn, "6 or 7", n);
	if (gk == G_REBUILD_V3 && n != 7 && n != 8)
		return weld__pk_bad_args(p, fn, "7 or 8", n);
	weld_py *st = a[0];
	if (st->kind != WELD_PY_STORAGE)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a storage as argument 1, got %s",
				     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(st));
	weld_dtype dtype = storage_dtype(st);
	if (gk == G_REBUILD_V3) {
		const weld_py *g = a[6];
		if (g->kind != WELD_PY_GLOBAL || strcmp(g->obj.module, "torch") != 0)
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "%s.%s at offset %zu expects a torch dtype as argument 7, got %s",
					     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(g));
		dtype = weld__dtype_from_torch_name(g->obj.name);
		if (dtype == WELD_DTYPE_INVALID)
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "tensor dtype torch.%s at offset %zu is not supported",
					     g->obj.name, p->off);
	}
	bool rg = false;
	if (gk != G_REBUILD && !get_bool(a[4], &rg))
		return bad_requires_grad(p, fn, a[4]);
	weld_py *t = weld__pk_new_node(p, WELD_PY_TENSOR);
	TRY_PTR(t);
	TRY(set_view(p, t, st, dtype, a[1], a[2], a[3]));
	t->tensor.requires_grad = rg;
	/* _v2's 7th / _v3's 8th argument: torch._utils._set_tensor_metadata's dict. */
	size_t mi = gk == G_REBUILD_V2 ? 6 : 7;
	if (gk != G_REBUILD && n > mi)
		TRY(view_bits(p, fn, a[mi], t));
	*out = t;
	return WELD_OK;
}

/* A Parameter wrapping tensor DATA: a new node, since DATA may be shared. */
static weld_status make_parameter(weld_pickle *p, const weld_py *fn, const weld_py *data, bool rg, weld_py **out)
{
	if (data->kind != WELD_PY_TENSOR)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a tensor as argument 1, got %s",
				     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(data));
	if (hdr(data)->pending)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu wraps a tensor that has no storage yet",
				     fn->obj.module, fn->obj.name, p->off);
	weld_py *t = weld__pk_new_node(p, WELD_PY_TENSOR);
	TRY_PTR(t);
	t->tensor = data->tensor;
	t->tensor.parameter = true;
	t->tensor.requires_grad = rg;
	*out = t;
	return WELD_OK;
}

/* torch.Tensor() / Parameter(): an empty tensor that a BUILD must fill. */
static weld_status pending_tensor(weld_pickle *p, bool parameter, weld_py **out)
{
	weld_py *t = weld__pk_new_node(p, WELD_PY_TENSOR);
	TRY_PTR(t);
	t->tensor.dtype = WELD_DTYPE_F32;
	t->tensor.ndim = 1;
	t->tensor.stride[0] = 1;
	t->tensor.parameter = parameter;
	t->tensor.requires_grad = parameter;
	hdr(t)->pending = true;
	if (p->pending++ == 0)
		p->pending_off = p->off;
	*out = t;
	return WELD_OK;
}

/* The tensor rebuilds, also reachable through _rebuild_from_type_v2. */
static weld_status call_rebuild(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	enum gkind gk = (enum gkind)hdr(fn)->gkind;
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	bool rg;
	switch (gk) {
	case G_REBUILD:
	case G_REBUILD_V2:
	case G_REBUILD_V3:
		return rebuild_tensor(p, fn, gk, args, out);
	case G_REBUILD_PARAM:
	case G_REBUILD_PARAM_STATE:
		if (gk == G_REBUILD_PARAM && n != 3)
			return weld__pk_bad_args(p, fn, "3", n);
		if (gk == G_REBUILD_PARAM_STATE && n != 4)
			return weld__pk_bad_args(p, fn, "4", n);
		if (!get_bool(a[1], &rg))
			return bad_requires_grad(p, fn, a[1]);
		return make_parameter(p, fn, a[0], rg, out);
	case G_PARAMETER:
		if (n == 0)
			return pending_tensor(p, true, out);
		if (n > 2)
			return weld__pk_bad_args(p, fn, "0 to 2", n);
		rg = true;
		if (n == 2 && !get_bool(a[1], &rg))
			return bad_requires_grad(p, fn, a[1]);
		return make_parameter(p, fn, a[0], rg, out);
	case G_REBUILD_UNSUPPORTED:
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "pickle rebuilds a tensor with %s.%s at offset %zu, which weld does not support",
				     fn->obj.module, fn->obj.name, p->off);
	default:
		/* Only _rebuild_from_type_v2 passes anything else here. */
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "torch._tensor._rebuild_from_type_v2 at offset %zu applies %s.%s, which is not a tensor rebuild function",
				     p->off, fn->obj.module, fn->obj.name);
	}
}

/* torch._tensor._rebuild_from_type_v2(func, type, args, state). */
static weld_status rebuild_from_type(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	if (n != 4)
		return weld__pk_bad_args(p, fn, "4", n);
	if (a[0]->kind != WELD_PY_GLOBAL)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a function as argument 1, got %s",
				     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(a[0]));
	if (a[2]->kind != WELD_PY_TUPLE)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "%s.%s at offset %zu expects an argument tuple as argument 3, got %s",
				     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(a[2]));
	TRY(call_rebuild(p, a[0], a[2], out));
	/* The subclass is dropped, but a Parameter stays a parameter. */
	if (a[1]->kind == WELD_PY_GLOBAL && hdr(a[1])->gkind == G_PARAMETER && (*out)->kind == WELD_PY_TENSOR)
		(*out)->tensor.parameter = true;
	return WELD_OK;
}

weld_status weld__pk_call_torch(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	switch (hdr(fn)->gkind) {
	case G_FROM_TYPE_V2:
		return rebuild_from_type(p, fn, args, out);
	case G_TENSOR:
		if (args->seq.n != 0)
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
					     "torch.Tensor at offset %zu is called with arguments; only the empty tensor plus BUILD form is supported",
					     p->off);
		return pending_tensor(p, false, out);
	default:
		return call_rebuild(p, fn, args, out);
	}
}

/* ("storage", class, key, location, numel[, None]). */
weld_status weld__pk_persistent_load(weld_pickle *p, const weld_py *pid, weld_py **out)
{
	if (pid->kind != WELD_PY_TUPLE || pid->seq.n == 0 ||
	    (pid->seq.items[0]->kind != WELD_PY_STR && pid->seq.items[0]->kind != WELD_PY_BYTES))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "persistent id at offset %zu is %s, not a ('storage', ...) tuple",
				     p->off, weld__pk_kind_name(pid));
	weld_py **a = pid->seq.items;
	if (strcmp(a[0]->str.s, "module") == 0)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "persistent id at offset %zu holds a pickled nn.Module class, which weld does not load",
				     p->off);
	if (strcmp(a[0]->str.s, "storage") != 0 || a[0]->str.len != 7)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "persistent id at offset %zu is not a ('storage', ...) tuple",
				     p->off);
	if (pid->seq.n != 5 && pid->seq.n != 6)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "storage persistent id at offset %zu has %zu fields, not 5 or 6",
				     p->off, pid->seq.n);
	if (pid->seq.n == 6 && a[5]->kind != WELD_PY_NONE)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "storage persistent id at offset %zu is a legacy storage view, which weld does not support",
				     p->off);
	const weld_py *cls = a[1];
	int64_t numel;
	if (cls->kind != WELD_PY_GLOBAL || hdr(cls)->gkind != G_STORAGE)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "storage persistent id at offset %zu names %s, not a storage class",
				     p->off, cls->kind == WELD_PY_GLOBAL ? "a non-storage global" : weld__pk_kind_name(cls));
	if (a[2]->kind != WELD_PY_STR || a[3]->kind != WELD_PY_STR || memchr(a[2]->str.s, 0, a[2]->str.len))
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "storage persistent id at offset %zu has a malformed key or location", p->off);
	if (!get_i64(a[4], &numel) || numel < 0)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "storage '%s' at offset %zu has a bad element count",
				     a[2]->str.s, p->off);
	bool untyped = strcmp(cls->obj.name, "UntypedStorage") == 0;
	weld_dtype dtype = untyped ? WELD_DTYPE_INVALID : weld__dtype_from_storage_class(cls->obj.name);
	if (!untyped && dtype == WELD_DTYPE_INVALID)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "storage class %s.%s at offset %zu is not supported",
				     cls->obj.module, cls->obj.name, p->off);
	uint64_t nbytes;
	if (!weld__mul_u64(&nbytes, (uint64_t)numel, untyped ? 1 : weld_dtype_size(dtype)))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "storage '%s' at offset %zu holds more than 2^64 bytes",
				     a[2]->str.s, p->off);
	weld_py *s = weld__pk_new_node(p, WELD_PY_STORAGE);
	TRY_PTR(s);
	s->storage.key = a[2]->str.s;
	s->storage.location = a[3]->str.s;
	s->storage.dtype = dtype;
	s->storage.untyped = untyped;
	s->storage.numel = (uint64_t)numel;
	*out = s;
	return WELD_OK;
}

weld_status weld__pk_build_tensor(weld_pickle *p, weld_py *inst, const weld_py *state)
{
	node *h = hdr(inst);
	if (state->kind == WELD_PY_TUPLE && state->seq.n == 4 && state->seq.items[0]->kind == WELD_PY_STORAGE) {
		/* Legacy torch.Tensor: set_(storage, offset, size, stride). */
		weld_py *const *a = state->seq.items;
		TRY(set_view(p, inst, a[0], storage_dtype(a[0]), a[1], a[2], a[3]));
	} else if (state->kind == WELD_PY_TUPLE && state->seq.n >= 2 &&
		   state->seq.items[0]->kind == WELD_PY_TENSOR && !hdr(state->seq.items[0])->pending) {
		/* Legacy Parameter.__setstate__((data, requires_grad, hooks...)). */
		bool param = inst->tensor.parameter, rg = inst->tensor.requires_grad;
		(void)get_bool(state->seq.items[1], &rg);
		inst->tensor = state->seq.items[0]->tensor;
		inst->tensor.parameter = param;
		inst->tensor.requires_grad = rg;
	} else if (state->kind == WELD_PY_DICT || state->kind == WELD_PY_NONE) {
		return WELD_OK; /* Python attributes of a tensor subclass */
	} else {
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle BUILD at offset %zu gives a tensor %s as its state",
				     p->off, weld__pk_kind_name(state));
	}
	if (h->pending) {
		h->pending = false;
		p->pending--;
	}
	return WELD_OK;
}
