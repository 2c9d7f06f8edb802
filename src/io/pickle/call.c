/*
 * REDUCE, NEWOBJ and BUILD. Calls on the Python symbols policy.c tagged
 * (OrderedDict, defaultdict, Counter, torch.Size, set, frozenset, bytes,
 * bytearray, _codecs.encode, copyreg._reconstructor, getattr) are interpreted
 * here, the torch ones in tensor.c; any other callable yields an opaque
 * WELD_PY_OBJECT recording the class, its arguments and later its state.
 *
 * builtins.getattr is allowed only as REDUCE(getattr, (GLOBAL, "name")) where
 * GLOBAL is an allowlisted data class (G_PLAIN: not a function weld interprets)
 * and a non-dunder name (enum members, CPython 3.11.2): it yields an OBJECT of
 * that class whose .args is the name str. Calling that result, any other
 * arguments, or getattr stored as a value is WELD_ERR_UNSAFE.
 */
#include "io/pickle/internal.h"

#include <string.h>

static weld_status opaque(weld_pickle *p, const weld_py *cls, weld_py *args, weld_py **out)
{
	weld_py *o = weld__pk_new_node(p, WELD_PY_OBJECT);
	TRY_PTR(o);
	o->obj.module = cls->obj.module;
	o->obj.name = cls->obj.name;
	if (args) {
		TRY(weld__pk_link_child(p, o, args));
		o->obj.args = args;
	}
	*out = o;
	return WELD_OK;
}

/* Enum members as Python 3.11.2 pickles them: getattr(Cls, "NAME"). */
static weld_status getattr_member(weld_pickle *p, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	if (n != 2 || a[0]->kind != WELD_PY_GLOBAL || hdr(a[0])->gkind != G_PLAIN ||
	    !weld__pk_getattr_target(a[0]->obj.module, a[0]->obj.name) || a[1]->kind != WELD_PY_STR ||
	    memchr(a[1]->str.s, 0, a[1]->str.len) || strncmp(a[1]->str.s, "__", 2) == 0)
		return weld__pk_fail(p, WELD_ERR_UNSAFE,
				     "pickle calls builtins.getattr at offset %zu on something other than (an enum weld knows, member name), which could run code; refusing to load",
				     p->off);
	TRY(opaque(p, a[0], NULL, out));
	TRY(weld__pk_link_child(p, *out, a[1]));
	(*out)->obj.args = a[1];
	hdr(*out)->getattr_member = true;
	return WELD_OK;
}

/* A dict from (), (dict,) or (iterable of pairs,), as OrderedDict/Counter take. */
static weld_status dict_from(weld_pickle *p, const weld_py *fn, const weld_py *args, bool ordered, weld_py **out)
{
	weld_py *d = weld__pk_new_node(p, WELD_PY_DICT);
	TRY_PTR(d);
	d->dict.ordered = ordered;
	*out = d;
	if (args->seq.n == 0)
		return WELD_OK;
	const weld_py *src = args->seq.items[0];
	if (src->kind == WELD_PY_DICT) {
		TRY(weld__pk_reserve(p, d, src->dict.n));
		for (size_t i = 0; i < src->dict.n; i++)
			TRY(weld__pk_dict_add(p, d, src->dict.keys[i], src->dict.vals[i]));
		return WELD_OK;
	}
	if (src->kind == WELD_PY_LIST || src->kind == WELD_PY_TUPLE) {
		TRY(weld__pk_reserve(p, d, src->seq.n));
		for (size_t i = 0; i < src->seq.n; i++) {
			const weld_py *pair = src->seq.items[i];
			if ((pair->kind != WELD_PY_TUPLE && pair->kind != WELD_PY_LIST) || pair->seq.n != 2)
				return weld__pk_fail(p, WELD_ERR_FORMAT,
						     "%s.%s at offset %zu expects (key, value) pairs, got %s",
						     fn->obj.module, fn->obj.name, p->off, weld__pk_kind_name(pair));
			TRY(weld__pk_dict_add(p, d, pair->seq.items[0], pair->seq.items[1]));
		}
		return WELD_OK;
	}
	return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu cannot build a dict from %s", fn->obj.module,
			     fn->obj.name, p->off, weld__pk_kind_name(src));
}

/* The bytes S (already valid UTF-8) encodes to in latin1. */
static weld_status latin1_bytes(weld_pickle *p, const weld_py *fn, const weld_py *s, weld_py **out)
{
	weld_py *b = weld__pk_new_node(p, WELD_PY_BYTES);
	TRY_PTR(b);
	uint8_t *d = s->str.len < SIZE_MAX ? weld__pk_alloc(p, s->str.len + 1) : NULL; /* latin1 is never longer */
	TRY_PTR(d);
	size_t i = 0, k = 0;
	const uint8_t *u = (const uint8_t *)s->str.s;
	while (i < s->str.len) {
		uint32_t cp = weld__utf8_next(u, &i);
		if (cp > 0xFF)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu: U+%04X does not fit latin1",
					     fn->obj.module, fn->obj.name, p->off, (unsigned)cp);
		d[k++] = (uint8_t)cp;
	}
	d[k] = 0;
	b->str.s = (const char *)d;
	b->str.len = k;
	*out = b;
	return WELD_OK;
}

/* bytes/bytearray/_codecs.encode: (), (bytes,), (str[, encoding]). */
static weld_status bytes_from(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	if (n == 0 && hdr(fn)->gkind != G_ENCODE) {
		*out = weld__pk_make_str(p, WELD_PY_BYTES, "", 0);
		return *out ? WELD_OK : p->st;
	}
	if (n == 1 && args->seq.items[0]->kind == WELD_PY_BYTES && hdr(fn)->gkind != G_ENCODE) {
		const weld_py *b = args->seq.items[0];
		*out = weld__pk_make_str(p, WELD_PY_BYTES, b->str.s, b->str.len);
		return *out ? WELD_OK : p->st;
	}
	if (n < 1 || n > 2 || args->seq.items[0]->kind != WELD_PY_STR ||
	    (n == 2 && args->seq.items[1]->kind != WELD_PY_STR))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects (str, encoding)", fn->obj.module,
				     fn->obj.name, p->off);
	const weld_py *s = args->seq.items[0];
	const char *enc = n == 2 ? args->seq.items[1]->str.s : "utf-8";
	if (strcmp(enc, "utf-8") == 0 || strcmp(enc, "utf8") == 0) {
		*out = weld__pk_make_str(p, WELD_PY_BYTES, s->str.s, s->str.len);
		return *out ? WELD_OK : p->st;
	}
	if (strcmp(enc, "latin1") != 0 && strcmp(enc, "latin-1") != 0 && strcmp(enc, "iso-8859-1") != 0)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
				     "%s.%s at offset %zu uses encoding '%s'; weld handles latin1 and utf-8",
				     fn->obj.module, fn->obj.name, p->off, enc);
	return latin1_bytes(p, fn, s, out);
}

/* torch.Size: () or (tuple of ints,). */
static weld_status size_from(weld_pickle *p, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	const weld_py *src = n ? args->seq.items[0] : NULL;
	if (n > 0) {
		if (n != 1 || !is_seq(src))
			return weld__pk_fail(p, WELD_ERR_FORMAT, "torch.Size at offset %zu expects a tuple of ints",
					     p->off);
		for (size_t i = 0; i < src->seq.n; i++)
			if (src->seq.items[i]->kind != WELD_PY_INT)
				return weld__pk_fail(p, WELD_ERR_FORMAT,
						     "torch.Size at offset %zu expects a tuple of ints, got %s", p->off,
						     weld__pk_kind_name(src->seq.items[i]));
	}
	*out = weld__pk_share_seq(p, WELD_PY_SIZE, src);
	return *out ? WELD_OK : p->st;
}

/* set/frozenset: () or (list, tuple or set,). */
static weld_status set_from(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	const weld_py *src = n ? args->seq.items[0] : NULL;
	if (n > 0 && (n != 1 || (!is_seq(src) && src->kind != WELD_PY_SET)))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a list", fn->obj.module,
				     fn->obj.name, p->off);
	*out = weld__pk_share_seq(p, WELD_PY_SET, src);
	return *out ? WELD_OK : p->st;
}

weld_status weld__pk_call(weld_pickle *p, weld_py *fn, weld_py *args, bool has_kwargs, weld_py **out)
{
	if (fn->kind != WELD_PY_GLOBAL) {
		if (fn->kind == WELD_PY_OBJECT && hdr(fn)->getattr_member)
			return weld__pk_fail(p, WELD_ERR_UNSAFE,
					     "pickle calls %s.%s.%s, fetched with builtins.getattr, at offset %zu, which could run code; refusing to load",
					     fn->obj.module, fn->obj.name, fn->obj.args->str.s, p->off);
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu calls %s, not a class or function",
				     p->opname, p->off, weld__pk_kind_name(fn));
	}
	if (args->kind != WELD_PY_TUPLE)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "pickle %s at offset %zu passes %s as the argument tuple of %s.%s", p->opname,
				     p->off, weld__pk_kind_name(args), fn->obj.module, fn->obj.name);
	enum gkind gk = (enum gkind)hdr(fn)->gkind;
	if (has_kwargs && gk != G_PLAIN)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "pickle %s at offset %zu passes keyword arguments to %s.%s",
				     p->opname, p->off, fn->obj.module, fn->obj.name);
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	switch (gk) {
	case G_PLAIN:
	case G_STORAGE:
		return opaque(p, fn, args, out);
	case G_GETATTR:
		return getattr_member(p, args, out);
	case G_ORDERED_DICT:
		if (n > 1)
			return weld__pk_bad_args(p, fn, "0 or 1", n);
		return dict_from(p, fn, args, true, out);
	case G_DICTLIKE: {
		/* defaultdict(factory): the factory does not matter for reading. */
		static const weld_py no_args = {.kind = WELD_PY_TUPLE};
		return dict_from(p, fn, &no_args, false, out);
	}
	case G_COUNTER:
		if (n == 0 || (n == 1 && a[0]->kind == WELD_PY_DICT))
			return dict_from(p, fn, args, false, out);
		return opaque(p, fn, args, out);
	case G_SIZE:
		return size_from(p, args, out);
	case G_SET:
	case G_FROZENSET:
		return set_from(p, fn, args, out);
	case G_BYTEARRAY:
	case G_BYTES:
	case G_ENCODE:
		return bytes_from(p, fn, args, out);
	case G_REBUILD_V2:
	case G_REBUILD_V3:
	case G_REBUILD:
	case G_REBUILD_PARAM:
	case G_REBUILD_PARAM_STATE:
	case G_FROM_TYPE_V2:
	case G_PARAMETER:
	case G_TENSOR:
	case G_REBUILD_UNSUPPORTED:
		return weld__pk_call_torch(p, fn, args, out);
	case G_RECONSTRUCTOR:
		/* copyreg._reconstructor(cls, base, state): protocol 0/1 objects. */
		if (n != 3 || a[0]->kind != WELD_PY_GLOBAL)
			return weld__pk_fail(p, WELD_ERR_FORMAT,
					     "copyreg._reconstructor at offset %zu expects (class, base, state)", p->off);
		return opaque(p, a[0], a[2]->kind == WELD_PY_NONE ? NULL : a[2], out);
	}
	return opaque(p, fn, args, out);
}

weld_status weld__pk_build(weld_pickle *p, weld_py *inst, weld_py *state)
{
	switch (inst->kind) {
	case WELD_PY_OBJECT:
		if (inst->obj.state) {
			/* Items added before BUILD (list/dict subclasses) stay, paired with it. */
			weld_py *t = weld__pk_new_node(p, WELD_PY_TUPLE);
			TRY_PTR(t);
			TRY(weld__pk_seq_add(p, t, inst->obj.state));
			TRY(weld__pk_seq_add(p, t, state));
			state = t;
		}
		TRY(weld__pk_link_child(p, inst, state));
		inst->obj.state = state;
		return WELD_OK;
	case WELD_PY_DICT:
		/* OrderedDict attributes (_metadata of a module state dict): dropped. */
		if (inst->dict.ordered)
			return weld__pk_is_getattr(state)
				       ? weld__pk_fail(p, WELD_ERR_UNSAFE,
						       "pickle passes builtins.getattr around as a value at offset %zu, which could run code; refusing to load",
						       p->off)
				       : WELD_OK;
		break;
	case WELD_PY_TENSOR:
		return weld__pk_build_tensor(p, inst, state);
	default:
		break;
	}
	return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle BUILD at offset %zu targets %s", p->off,
			     weld__pk_kind_name(inst));
}
