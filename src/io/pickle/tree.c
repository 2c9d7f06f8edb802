/*
 * The values of the tree: leaves, containers, and the numbers that keep
 * every tree handed out small enough to walk.
 *
 * A container's depth is 1 + the deepest child (empty containers 1, leaves
 * 0), kept up to date on every insertion, as is its weight (values in its
 * fully expanded tree). A container that has been nested somewhere may not
 * change afterwards (its parents' numbers would go stale); Python's pickler
 * only does that for cyclic structures, which are refused. So every tree
 * handed out is acyclic, no deeper than max_depth and walks in at most
 * max_nodes steps even through memo-shared subtrees.
 *
 * Other choices:
 *  - dict keys are not deduplicated; weld_py_dict_get returns the last match.
 *    Sets keep every item, unhashed.
 *  - big ints saturate .i.v to INT64_MAX/INT64_MIN; only .i.le is exact.
 *  - APPEND/SETITEMS/ADDITEMS on an opaque object (a list/dict/set subclass)
 *    put the items in a list/dict/set in its .state; a later BUILD makes
 *    .state the tuple (items, state) (call.c).
 */
#include "io/pickle/internal.h"

#include <string.h>

const char *weld__pk_kind_name(const weld_py *o)
{
	switch (o->kind) {
	case WELD_PY_NONE: return "None";
	case WELD_PY_BOOL: return "a bool";
	case WELD_PY_INT: return o->i.big ? "a big int" : "an int";
	case WELD_PY_FLOAT: return "a float";
	case WELD_PY_STR: return "a str";
	case WELD_PY_BYTES: return "a bytes object";
	case WELD_PY_TUPLE: return "a tuple";
	case WELD_PY_LIST: return "a list";
	case WELD_PY_SET: return "a set";
	case WELD_PY_SIZE: return "a torch.Size";
	case WELD_PY_DICT: return "a dict";
	case WELD_PY_GLOBAL: return "a global";
	case WELD_PY_OBJECT: return "an object";
	case WELD_PY_STORAGE: return "a storage";
	case WELD_PY_TENSOR: return "a tensor";
	}
	return "a value";
}

/* ------------------------------------------------------------------------- */
/* Leaves */

weld_py *weld__pk_make_int(weld_pickle *p, int64_t v)
{
	if (v >= 0 && v < 256 && p->small[v])
		return p->small[v];
	weld_py *o = weld__pk_new_node(p, WELD_PY_INT);
	if (!o)
		return NULL;
	o->i.v = v;
	if (v >= 0 && v < 256)
		p->small[v] = o; /* ints are immutable: share the common ones */
	return o;
}

weld_py *weld__pk_make_long(weld_pickle *p, const uint8_t *b, size_t n)
{
	if (n == 0)
		return weld__pk_make_int(p, 0);
	bool neg = (b[n - 1] & 0x80) != 0;
	uint8_t ext = neg ? 0xFF : 0x00;
	bool fits = true;
	if (n > 8) {
		for (size_t k = 8; k < n; k++)
			if (b[k] != ext)
				fits = false;
		if (((b[7] & 0x80) != 0) != neg)
			fits = false;
	}
	if (fits) {
		uint64_t u = neg ? UINT64_MAX : 0;
		size_t m = n < 8 ? n : 8;
		for (size_t k = 0; k < m; k++) {
			u &= ~((uint64_t)0xFF << (8 * k));
			u |= (uint64_t)b[k] << (8 * k);
		}
		int64_t v;
		memcpy(&v, &u, sizeof(v));
		return weld__pk_make_int(p, v);
	}
	weld_py *o = weld__pk_new_node(p, WELD_PY_INT);
	if (!o)
		return NULL;
	uint8_t *le = weld__pk_alloc(p, n);
	if (!le)
		return NULL;
	memcpy(le, b, n);
	o->i.big = true;
	o->i.le = le;
	o->i.nle = n;
	o->i.v = neg ? INT64_MIN : INT64_MAX; /* saturated; only .le is exact */
	return o;
}

weld_py *weld__pk_make_str(weld_pickle *p, weld_py_kind kind, const void *s, size_t n)
{
	weld_py *o = weld__pk_new_node(p, kind);
	if (!o)
		return NULL;
	char *c = weld__pk_copy_str(p, s, n);
	if (!c)
		return NULL;
	o->str.s = c;
	o->str.len = n;
	return o;
}

/* ------------------------------------------------------------------------- */
/* Containers */

static weld_status fail_cycle(weld_pickle *p)
{
	return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
			     "pickle grows a container after nesting it elsewhere at offset %zu (%s); cyclic structures are not supported",
			     p->off, p->opname);
}

static weld_status fail_depth(weld_pickle *p)
{
	return weld__pk_fail(p, WELD_ERR_LIMIT, "pickle nests deeper than %u levels at offset %zu", p->lim.max_depth,
			     p->off);
}

static weld_status fail_nodes(weld_pickle *p)
{
	return weld__pk_fail(p, WELD_ERR_LIMIT,
			     "pickle expands to more than %llu values through shared references at offset %zu",
			     (unsigned long long)p->lim.max_nodes, p->off);
}

/*
 * Mark the child nested, raise the parent's depth and weight. A parent that
 * is itself nested somewhere may not change any more (its ancestors' depth
 * and weight would go stale); Python's pickler fills every container before
 * nesting it, except in cycles.
 */
weld_status weld__pk_link_child(weld_pickle *p, weld_py *parent, weld_py *child)
{
	node *c = hdr(child);
	if (weld__pk_is_getattr(child))
		return weld__pk_fail(p, WELD_ERR_UNSAFE,
				     "pickle passes builtins.getattr around as a value at offset %zu, which could run code; refusing to load",
				     p->off);
	/* Mark first, so that a container added to itself counts as nested. */
	c->contained = true;
	node *ph = hdr(parent);
	if (ph->contained)
		return fail_cycle(p);
	uint64_t d = (uint64_t)child->depth + 1, w;
	if (d > parent->depth) {
		if (d > p->lim.max_depth)
			return fail_depth(p);
		parent->depth = (uint32_t)d;
	}
	if (!weld__add_u64(&w, ph->weight, c->weight) || w > p->lim.max_nodes)
		return fail_nodes(p);
	ph->weight = w;
	return WELD_OK;
}

weld_status weld__pk_reserve(weld_pickle *p, weld_py *o, size_t extra)
{
	bool is_dict = o->kind == WELD_PY_DICT;
	size_t n = is_dict ? o->dict.n : o->seq.n;
	size_t cap = is_dict ? o->dict.cap : o->seq.cap;
	size_t want;
	if (!weld__add_size(&want, n, extra))
		return weld__pk_fail_memory(p);
	if (want <= cap)
		return WELD_OK;
	size_t ncap = cap < 4 ? 4 : cap;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	size_t bytes;
	if (!weld__mul_size(&bytes, ncap, sizeof(weld_py *)))
		return weld__pk_fail_memory(p);
	/* Old arrays stay in the arena: sets and Sizes may share them (share_seq). */
	if (is_dict) {
		weld_py **k = weld__pk_alloc(p, bytes), **v = k ? weld__pk_alloc(p, bytes) : NULL;
		TRY_PTR(v);
		if (n) {
			memcpy(k, o->dict.keys, n * sizeof(*k));
			memcpy(v, o->dict.vals, n * sizeof(*v));
		}
		o->dict.keys = k, o->dict.vals = v, o->dict.cap = ncap;
	} else {
		weld_py **it = weld__pk_alloc(p, bytes);
		TRY_PTR(it);
		if (n)
			memcpy(it, o->seq.items, n * sizeof(*it));
		o->seq.items = it, o->seq.cap = ncap;
	}
	return WELD_OK;
}

weld_status weld__pk_seq_add(weld_pickle *p, weld_py *s, weld_py *child)
{
	TRY(weld__pk_link_child(p, s, child));
	TRY(weld__pk_reserve(p, s, 1));
	s->seq.items[s->seq.n++] = child;
	return WELD_OK;
}

weld_status weld__pk_dict_add(weld_pickle *p, weld_py *d, weld_py *k, weld_py *v)
{
	TRY(weld__pk_link_child(p, d, k));
	TRY(weld__pk_link_child(p, d, v));
	TRY(weld__pk_reserve(p, d, 1));
	d->dict.keys[d->dict.n] = k;
	d->dict.vals[d->dict.n++] = v;
	return WELD_OK;
}

/*
 * Arena arrays are never written below their owner's n and cap == n forces a
 * copy on growth, so the share is a snapshot. SRC's children are already
 * nested, and its depth is theirs + 1.
 */
weld_py *weld__pk_share_seq(weld_pickle *p, weld_py_kind kind, const weld_py *src)
{
	weld_py *o = weld__pk_new_node(p, kind);
	if (!o)
		return NULL;
	if (src) {
		o->seq.items = src->seq.items;
		o->seq.n = o->seq.cap = src->seq.n;
		o->depth = src->depth;
		hdr(o)->weight = hdr(src)->weight;
	}
	return o;
}

/*
 * The container that the items for TARGET go into: TARGET itself, or for an
 * opaque object (a list/dict/set subclass) a container in its state, made
 * here and reachable only through it; *OWNER is then the object, whose depth
 * and weight sync_object updates after the items are in.
 */
static weld_status items_target(weld_pickle *p, weld_py *target, weld_py_kind want, weld_py **out, weld_py **owner)
{
	static const char *const names[] = {[WELD_PY_LIST] = "list", [WELD_PY_DICT] = "dict", [WELD_PY_SET] = "set"};
	*owner = NULL;
	if (target->kind == WELD_PY_OBJECT) {
		if (hdr(target)->contained)
			return fail_cycle(p);
		if (!target->obj.state)
			TRY_PTR(target->obj.state = weld__pk_new_node(p, want));
		if (target->obj.state->kind != want)
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
					     "pickle %s at offset %zu adds items to %s.%s whose state is %s", p->opname,
					     p->off, target->obj.module, target->obj.name,
					     weld__pk_kind_name(target->obj.state));
		*owner = target;
		*out = target->obj.state;
		return WELD_OK;
	}
	if (target->kind != want)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu targets %s, not a %s", p->opname,
				     p->off, weld__pk_kind_name(target), names[want]);
	*out = target;
	return WELD_OK;
}

/* Recomputes an opaque object's depth and weight from its args and state. */
static weld_status sync_object(weld_pickle *p, weld_py *obj)
{
	/* It was not nested before the items went in: now it is inside them. */
	if (hdr(obj)->contained)
		return fail_cycle(p);
	uint64_t d = 1, w = 1;
	const weld_py *kids[2] = {obj->obj.args, obj->obj.state};
	for (int i = 0; i < 2; i++) {
		if (!kids[i])
			continue;
		if ((uint64_t)kids[i]->depth + 1 > d)
			d = (uint64_t)kids[i]->depth + 1;
		if (!weld__add_u64(&w, w, hdr(kids[i])->weight))
			w = UINT64_MAX;
	}
	if (d > p->lim.max_depth)
		return fail_depth(p);
	if (w > p->lim.max_nodes)
		return fail_nodes(p);
	obj->depth = (uint32_t)d;
	hdr(obj)->weight = w;
	return WELD_OK;
}

weld_status weld__pk_add_items(weld_pickle *p, weld_py *target, weld_py_kind want, weld_py *const *items, size_t n)
{
	bool dict = want == WELD_PY_DICT;
	weld_py *into = NULL, *owner = NULL;
	TRY(items_target(p, target, want, &into, &owner));
	TRY(weld__pk_reserve(p, into, dict ? n / 2 : n));
	for (size_t i = 0; i < n; i += dict ? 2 : 1)
		TRY(dict ? weld__pk_dict_add(p, into, items[i], items[i + 1]) : weld__pk_seq_add(p, into, items[i]));
	return owner ? sync_object(p, owner) : WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* Walking */

weld_py *weld_py_dict_get(const weld_py *d, const char *key)
{
	if (!d || d->kind != WELD_PY_DICT || !key)
		return NULL;
	/* Last match wins, as a Python dict would keep the last assignment. */
	for (size_t i = d->dict.n; i-- > 0;)
		if (weld_py_is_str(d->dict.keys[i], key))
			return d->dict.vals[i];
	return NULL;
}

bool weld_py_is_str(const weld_py *o, const char *s)
{
	if (!o || !s || o->kind != WELD_PY_STR)
		return false;
	size_t n = strlen(s);
	return o->str.len == n && memcmp(o->str.s, s, n) == 0;
}

/* Item I of dict or list CTX: the key or the item, a str (only those are indexed). */
static const weld_py *str_item(const weld_py *o, size_t i)
{
	return o->kind == WELD_PY_DICT ? o->dict.keys[i] : o->seq.items[i];
}

static const char *str_item_name(const void *ctx, size_t i)
{
	return str_item(ctx, i)->str.s;
}

bool weld_py_index_strs(const weld_py *o, weld_map *m)
{
	weld_map_init_names(m, str_item_name, o);
	size_t n = !o ? 0 : o->kind == WELD_PY_DICT ? o->dict.n : o->kind == WELD_PY_LIST ? o->seq.n : 0;
	bool ok = weld_map_reserve(m, n);
	/* From the end, so that the last of equal keys is the one kept; a str with a NUL equals no C string. */
	for (size_t i = n; ok && i-- > 0;) {
		const weld_py *k = str_item(o, i);
		size_t had;
		ok = k->kind != WELD_PY_STR || strlen(k->str.s) != k->str.len || weld_map_add(m, k->str.s, i, &had);
	}
	if (!ok)
		weld_map_clear(m);
	return ok;
}

bool weld__pk_is_getattr(const weld_py *o)
{
	return o->kind == WELD_PY_GLOBAL && hdr(o)->gkind == G_GETATTR;
}

weld_status weld__pk_bad_args(weld_pickle *p, const weld_py *fn, const char *expect, size_t got)
{
	return weld__pk_fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu takes %s arguments, got %zu", fn->obj.module,
			     fn->obj.name, p->off, expect, got);
}
