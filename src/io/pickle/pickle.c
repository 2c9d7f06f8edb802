/*
 * The safe pickle reader (see pickle.h and shared docs section B).
 *
 * One iterative loop decodes opcodes into an inert object tree; nothing is
 * ever imported or called. Globals are classified once when they are pushed:
 * code-running ones are refused on the spot (WELD_ERR_UNSAFE), a short list
 * (OrderedDict, torch.Size, set, _codecs.encode, the torch rebuild functions,
 * storage classes...) is interpreted when REDUCEd, and everything else turns
 * into an opaque WELD_PY_OBJECT.
 *
 * Memory: every object lives in an arena of big blocks owned by the
 * weld_pickle, freed in one loop with no recursion. Arena blocks, the VM
 * stack and the memo all count against limits.max_bytes.
 *
 * Depth: a container's depth is 1 + the deepest child (empty containers 1,
 * leaves 0), kept up to date on every insertion, as is its weight (values in
 * its fully expanded tree). A container that has been nested somewhere may
 * not change afterwards (its parents' numbers would go stale); Python's
 * pickler only does that for cyclic structures, which are refused. So every
 * tree handed out is acyclic, no deeper than max_depth and walks in at most
 * max_nodes steps even through memo-shared subtrees.
 *
 * Storages: every persistent id yields a fresh WELD_PY_STORAGE node, even for
 * a key seen before (unless the same node is reached through the memo);
 * callers cache storages by key.
 *
 * Other choices:
 *  - builtins.getattr is allowed only as REDUCE(getattr, (GLOBAL, "name"))
 *    with a non-dunder name (enum members, CPython 3.11.2): it yields an
 *    OBJECT of that class whose .args is the name str. Calling that result,
 *    any other arguments, or getattr stored as a value is WELD_ERR_UNSAFE.
 *  - dict keys are not deduplicated; weld_py_dict_get returns the last match.
 *    Sets keep every item, unhashed.
 *  - big ints saturate .i.v to INT64_MAX/INT64_MIN; only .i.le is exact.
 *  - Python 2 str (BINSTRING, SHORT_BINSTRING) is a str when it is UTF-8,
 *    else bytes. NEWOBJ_EX keyword arguments of opaque classes are dropped.
 *  - APPEND/SETITEMS/ADDITEMS on an opaque object (a list/dict/set subclass)
 *    put the items in a list/dict/set in its .state; a later BUILD makes
 *    .state the tuple (items, state).
 *  - a torch.Tensor()/Parameter() made by NEWOBJ must get its storage from
 *    BUILD before STOP, so every tensor handed out has one.
 */
#include "io/pickle/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_DEPTH 1000u
#define DEFAULT_MAX_MEMO ((size_t)1 << 24)
#define DEFAULT_MAX_STACK ((size_t)1 << 24)
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define DEFAULT_MAX_NODES ((uint64_t)1 << 28)
/* LONG1/LONG4 payloads longer than this are refused (2**8192 is plenty). */
#define MAX_LONG_BYTES 1024u
#define ARENA_ALIGN 16u
#define ARENA_FIRST_BLOCK ((size_t)64 << 10)
#define ARENA_MAX_BLOCK ((size_t)4 << 20)

/* What a GLOBAL names, decided once when it is pushed. */
enum gkind {
	G_PLAIN, /* anything else: calls give opaque objects */
	G_GETATTR,
	G_ORDERED_DICT,
	G_DICTLIKE, /* collections.defaultdict: a dict, factory ignored */
	G_COUNTER,
	G_SIZE,
	G_SET,
	G_FROZENSET,
	G_BYTEARRAY,
	G_BYTES,
	G_ENCODE,
	G_REBUILD_V2,
	G_REBUILD_V3,
	G_REBUILD,
	G_REBUILD_PARAM,
	G_REBUILD_PARAM_STATE,
	G_FROM_TYPE_V2,
	G_PARAMETER,
	G_TENSOR,
	G_STORAGE,
	G_REBUILD_UNSUPPORTED,
	G_RECONSTRUCTOR
};

/* Every weld_py is allocated inside one of these; the header stays private. */
typedef struct node {
	uint64_t weight;      /* values in the expanded tree, this one included */
	uint8_t gkind;        /* enum gkind, for GLOBAL nodes */
	bool contained;       /* inserted into some container, tuple, object... */
	bool getattr_member;  /* OBJECT made by builtins.getattr(Cls, name) */
	bool pending;         /* tensor from torch.Tensor()/Parameter() awaiting BUILD */
	weld_py py;
} node;

typedef struct block {
	struct block *next;
} block;

#define BLOCK_HEADER ((sizeof(block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

struct weld_pickle {
	weld_pickle_limits lim;
	/* arena */
	block *blocks;
	unsigned char *cur;
	size_t left;
	size_t next_block;
	size_t used; /* arena blocks + stack + marks + memo, against lim.max_bytes */
	/* VM state, reused by every load */
	weld_py **stack;
	size_t nstack, cap_stack;
	size_t *marks;
	size_t nmarks, cap_marks;
	weld_py **memo;
	size_t cap_memo, memo_hi, memo_count;
	/* shared immutable leaves */
	weld_py *none, *yes, *no, *small[256];
	/* the current load */
	const uint8_t *data;
	size_t len, pos;
	size_t off;          /* offset of the opcode being run */
	const char *opname;  /* its name, for messages */
	weld_error *err;
	weld_status st;      /* status behind a NULL return */
	size_t pending, pending_off;
};

static inline node *hdr(const weld_py *o)
{
	return (node *)((char *)(uintptr_t)o - offsetof(node, py));
}

/* ------------------------------------------------------------------------- */
/* Opcode names for messages. */

static const char *const opnames[256] = {
	['('] = "MARK", ['.'] = "STOP", ['0'] = "POP", ['1'] = "POP_MARK", ['2'] = "DUP",
	['F'] = "FLOAT", ['I'] = "INT", ['J'] = "BININT", ['K'] = "BININT1", ['L'] = "LONG",
	['M'] = "BININT2", ['N'] = "NONE", ['P'] = "PERSID", ['Q'] = "BINPERSID",
	['R'] = "REDUCE", ['S'] = "STRING", ['T'] = "BINSTRING", ['U'] = "SHORT_BINSTRING",
	['V'] = "UNICODE", ['X'] = "BINUNICODE", ['a'] = "APPEND", ['b'] = "BUILD",
	['c'] = "GLOBAL", ['d'] = "DICT", ['}'] = "EMPTY_DICT", ['e'] = "APPENDS", ['g'] = "GET",
	['h'] = "BINGET", ['i'] = "INST", ['j'] = "LONG_BINGET", ['l'] = "LIST",
	[']'] = "EMPTY_LIST", ['o'] = "OBJ", ['p'] = "PUT", ['q'] = "BINPUT",
	['r'] = "LONG_BINPUT", ['s'] = "SETITEM", ['t'] = "TUPLE", [')'] = "EMPTY_TUPLE",
	['u'] = "SETITEMS", ['G'] = "BINFLOAT", [0x80] = "PROTO", [0x81] = "NEWOBJ",
	[0x82] = "EXT1", [0x83] = "EXT2", [0x84] = "EXT4", [0x85] = "TUPLE1", [0x86] = "TUPLE2",
	[0x87] = "TUPLE3", [0x88] = "NEWTRUE", [0x89] = "NEWFALSE", [0x8a] = "LONG1",
	[0x8b] = "LONG4", ['B'] = "BINBYTES", ['C'] = "SHORT_BINBYTES",
	[0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8",
	[0x8f] = "EMPTY_SET", [0x90] = "ADDITEMS", [0x91] = "FROZENSET", [0x92] = "NEWOBJ_EX",
	[0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE", [0x95] = "FRAME", [0x96] = "BYTEARRAY8",
	[0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
};

/* "an int", "a list"...: what a value is, for messages. */
static const char *kind_name(const weld_py *o)
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
/* Memory */

static weld_status fail_limit_mem(weld_pickle *p)
{
	return p->st = weld__fail(p->err, WELD_ERR_LIMIT,
				  "pickle needs more than %zu bytes of memory at offset %zu",
				  p->lim.max_bytes, p->off);
}

static weld_status charge(weld_pickle *p, size_t add)
{
	size_t u;
	if (!weld__add_size(&u, p->used, add) || u > p->lim.max_bytes)
		return fail_limit_mem(p);
	p->used = u;
	return WELD_OK;
}

/* N zeroed bytes from the arena; NULL with p->st set on failure. */
static void *alloc(weld_pickle *p, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - ARENA_ALIGN - BLOCK_HEADER) {
		fail_limit_mem(p);
		return NULL;
	}
	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (n > p->left) {
		size_t size = n > p->next_block ? n : p->next_block, total;
		/* Near the limit, a block just big enough may still fit. */
		if (!weld__add_size(&total, p->used, BLOCK_HEADER + size) || total > p->lim.max_bytes)
			size = n;
		if (charge(p, BLOCK_HEADER + size) != WELD_OK)
			return NULL;
		block *b = malloc(BLOCK_HEADER + size);
		if (!b) {
			p->used -= BLOCK_HEADER + size;
			p->st = weld__nomem(p->err);
			return NULL;
		}
		b->next = p->blocks;
		p->blocks = b;
		p->cur = (unsigned char *)b + BLOCK_HEADER;
		p->left = size;
		if (p->next_block < ARENA_MAX_BLOCK)
			p->next_block *= 2;
	}
	void *r = p->cur;
	p->cur += n;
	p->left -= n;
	memset(r, 0, n);
	return r;
}

/* Grow a malloc'd VM array (stack, marks, memo) to hold at least WANT items. */
static weld_status grow_vec(weld_pickle *p, void **vec, size_t *cap, size_t want, size_t item)
{
	if (want <= *cap)
		return WELD_OK;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2)
			return fail_limit_mem(p);
		ncap *= 2;
	}
	size_t add_items = ncap - *cap, add;
	if (!weld__mul_size(&add, add_items, item))
		return fail_limit_mem(p);
	weld_status s = charge(p, add);
	if (s != WELD_OK)
		return s;
	void *nv = weld__reallocarray(*vec, ncap, item);
	if (!nv) {
		p->used -= add;
		return p->st = weld__nomem(p->err);
	}
	*vec = nv;
	*cap = ncap;
	return WELD_OK;
}

static bool is_container(weld_py_kind k)
{
	return k == WELD_PY_TUPLE || k == WELD_PY_LIST || k == WELD_PY_SET || k == WELD_PY_SIZE ||
	       k == WELD_PY_DICT || k == WELD_PY_OBJECT;
}

static weld_py *new_node(weld_pickle *p, weld_py_kind kind)
{
	node *n = alloc(p, sizeof(node));
	if (!n)
		return NULL;
	n->weight = 1;
	n->py.kind = kind;
	n->py.depth = is_container(kind) ? 1 : 0;
	return &n->py;
}

/* A NUL-terminated arena copy of S[0..N). */
static char *copy_str(weld_pickle *p, const void *s, size_t n)
{
	if (n == SIZE_MAX) {
		fail_limit_mem(p);
		return NULL;
	}
	char *d = alloc(p, n + 1);
	if (d && n)
		memcpy(d, s, n);
	return d;
}

/* ------------------------------------------------------------------------- */
/* Errors */

static weld_status fail(weld_pickle *p, weld_status s, const char *fmt, ...) WELD_PRINTF(3, 4);
static weld_status fail(weld_pickle *p, weld_status s, const char *fmt, ...)
{
	if (p->err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
		va_end(ap);
		p->err->status = s;
	}
	return p->st = s;
}

static weld_status underflow(weld_pickle *p)
{
	return fail(p, WELD_ERR_FORMAT, "pickle stack underflow at offset %zu (%s)", p->off, p->opname);
}

/* The N bytes after the current position exist. */
static weld_status need(weld_pickle *p, uint64_t n)
{
	size_t left = p->len - p->pos;
	if (n > left)
		return fail(p, WELD_ERR_FORMAT, "truncated pickle: %s at offset %zu needs %llu bytes, %zu left",
			    p->opname, p->off, (unsigned long long)n, left);
	return WELD_OK;
}

static weld_status unsafe_global(weld_pickle *p, const char *module, const char *name)
{
	return fail(p, WELD_ERR_UNSAFE, "pickle calls %s.%s at offset %zu, which could run code; refusing to load",
		    module, name, p->off);
}

#define TRY(x)                                   \
	do {                                     \
		weld_status s__ = (x);           \
		if (s__ != WELD_OK)              \
			return s__;              \
	} while (0)
#define TRY_PTR(x)                               \
	do {                                     \
		if (!(x))                        \
			return p->st;            \
	} while (0)

/* ------------------------------------------------------------------------- */
/* Leaves */

static weld_py *make_int(weld_pickle *p, int64_t v)
{
	if (v >= 0 && v < 256 && p->small[v])
		return p->small[v];
	weld_py *o = new_node(p, WELD_PY_INT);
	if (!o)
		return NULL;
	o->i.v = v;
	if (v >= 0 && v < 256)
		p->small[v] = o; /* ints are immutable: share the common ones */
	return o;
}

/* Little-endian two's complement B[0..N) (LONG1/LONG4). */
static weld_py *make_long(weld_pickle *p, const uint8_t *b, size_t n)
{
	if (n == 0)
		return make_int(p, 0);
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
		return make_int(p, v);
	}
	weld_py *o = new_node(p, WELD_PY_INT);
	if (!o)
		return NULL;
	uint8_t *le = alloc(p, n);
	if (!le)
		return NULL;
	memcpy(le, b, n);
	o->i.big = true;
	o->i.le = le;
	o->i.nle = n;
	o->i.v = neg ? INT64_MIN : INT64_MAX; /* saturated; only .le is exact */
	return o;
}

static weld_py *make_bytes_like(weld_pickle *p, weld_py_kind kind, const void *s, size_t n)
{
	weld_py *o = new_node(p, kind);
	if (!o)
		return NULL;
	char *c = copy_str(p, s, n);
	if (!c)
		return NULL;
	o->str.s = c;
	o->str.len = n;
	return o;
}

/* ------------------------------------------------------------------------- */
/* Containers */

static bool is_getattr(const weld_py *o)
{
	return o->kind == WELD_PY_GLOBAL && hdr(o)->gkind == G_GETATTR;
}

/*
 * Record that CHILD now lives inside PARENT: mark the child nested, raise the
 * parent's depth and weight. A parent that is itself nested somewhere may not
 * change any more (its ancestors' depth and weight would go stale); Python's
 * pickler fills every container before nesting it, except in cycles.
 */
static weld_status link_child(weld_pickle *p, weld_py *parent, weld_py *child)
{
	node *c = hdr(child);
	if (is_getattr(child))
		return fail(p, WELD_ERR_UNSAFE,
			    "pickle passes builtins.getattr around as a value at offset %zu, which could run code; refusing to load",
			    p->off);
	/* Mark first, so that a container added to itself counts as nested. */
	c->contained = true;
	node *ph = hdr(parent);
	if (ph->contained)
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "pickle grows a container after nesting it elsewhere at offset %zu (%s); cyclic structures are not supported",
			    p->off, p->opname);
	uint64_t d = (uint64_t)child->depth + 1, w;
	if (d > parent->depth) {
		if (d > p->lim.max_depth)
			return fail(p, WELD_ERR_LIMIT, "pickle nests deeper than %u levels at offset %zu",
				    p->lim.max_depth, p->off);
		parent->depth = (uint32_t)d;
	}
	if (!weld__add_u64(&w, ph->weight, c->weight) || w > p->lim.max_nodes)
		return fail(p, WELD_ERR_LIMIT,
			    "pickle expands to more than %llu values through shared references at offset %zu",
			    (unsigned long long)p->lim.max_nodes, p->off);
	ph->weight = w;
	return WELD_OK;
}

/* Room for EXTRA more items in a seq or dict. */
static weld_status reserve(weld_pickle *p, weld_py *o, size_t extra)
{
	bool is_dict = o->kind == WELD_PY_DICT;
	size_t n = is_dict ? o->dict.n : o->seq.n;
	size_t cap = is_dict ? o->dict.cap : o->seq.cap;
	size_t want;
	if (!weld__add_size(&want, n, extra))
		return fail_limit_mem(p);
	if (want <= cap)
		return WELD_OK;
	size_t ncap = cap < 4 ? 4 : cap;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	size_t bytes;
	if (!weld__mul_size(&bytes, ncap, sizeof(weld_py *)))
		return fail_limit_mem(p);
	/* Old arrays stay in the arena: sets and Sizes may share them (share_seq). */
	if (is_dict) {
		weld_py **k = alloc(p, bytes), **v = k ? alloc(p, bytes) : NULL;
		TRY_PTR(v);
		if (n) {
			memcpy(k, o->dict.keys, n * sizeof(*k));
			memcpy(v, o->dict.vals, n * sizeof(*v));
		}
		o->dict.keys = k, o->dict.vals = v, o->dict.cap = ncap;
	} else {
		weld_py **it = alloc(p, bytes);
		TRY_PTR(it);
		if (n)
			memcpy(it, o->seq.items, n * sizeof(*it));
		o->seq.items = it, o->seq.cap = ncap;
	}
	return WELD_OK;
}

static weld_status seq_add(weld_pickle *p, weld_py *s, weld_py *child)
{
	TRY(link_child(p, s, child));
	TRY(reserve(p, s, 1));
	s->seq.items[s->seq.n++] = child;
	return WELD_OK;
}

static weld_status dict_add(weld_pickle *p, weld_py *d, weld_py *k, weld_py *v)
{
	TRY(link_child(p, d, k));
	TRY(link_child(p, d, v));
	TRY(reserve(p, d, 1));
	d->dict.keys[d->dict.n] = k;
	d->dict.vals[d->dict.n++] = v;
	return WELD_OK;
}

/*
 * A new seq of KIND sharing SRC's item array. Arena arrays are never written
 * below their owner's n and cap == n forces a copy on growth, so the share is
 * a snapshot. SRC's children are already nested, and its depth is theirs + 1.
 */
static weld_py *share_seq(weld_pickle *p, weld_py_kind kind, const weld_py *src)
{
	weld_py *o = new_node(p, kind);
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
 * The container that APPEND/SETITEM/ADDITEMS on TARGET fill: TARGET itself,
 * or for an opaque object (a list/dict/set subclass) a container in its
 * state, made here and reachable only through it; *OWNER is then the object,
 * whose depth and weight sync_object updates after the items are in.
 */
static weld_status items_target(weld_pickle *p, weld_py *target, weld_py_kind want, weld_py **out, weld_py **owner)
{
	static const char *const names[] = {[WELD_PY_LIST] = "list", [WELD_PY_DICT] = "dict", [WELD_PY_SET] = "set"};
	*owner = NULL;
	if (target->kind == WELD_PY_OBJECT) {
		if (hdr(target)->contained)
			return fail(p, WELD_ERR_UNSUPPORTED,
				    "pickle grows a container after nesting it elsewhere at offset %zu (%s); cyclic structures are not supported",
				    p->off, p->opname);
		if (!target->obj.state)
			TRY_PTR(target->obj.state = new_node(p, want));
		if (target->obj.state->kind != want)
			return fail(p, WELD_ERR_UNSUPPORTED, "pickle %s at offset %zu adds items to %s.%s whose state is %s",
				    p->opname, p->off, target->obj.module, target->obj.name, kind_name(target->obj.state));
		*owner = target;
		*out = target->obj.state;
		return WELD_OK;
	}
	if (target->kind != want)
		return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu targets %s, not a %s", p->opname, p->off,
			    kind_name(target), names[want]);
	*out = target;
	return WELD_OK;
}

/* Recomputes an opaque object's depth and weight from its args and state. */
static weld_status sync_object(weld_pickle *p, weld_py *obj)
{
	/* It was not nested before the items went in: now it is inside them. */
	if (hdr(obj)->contained)
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "pickle grows a container after nesting it elsewhere at offset %zu (%s); cyclic structures are not supported",
			    p->off, p->opname);
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
		return fail(p, WELD_ERR_LIMIT, "pickle nests deeper than %u levels at offset %zu", p->lim.max_depth,
			    p->off);
	if (w > p->lim.max_nodes)
		return fail(p, WELD_ERR_LIMIT,
			    "pickle expands to more than %llu values through shared references at offset %zu",
			    (unsigned long long)p->lim.max_nodes, p->off);
	obj->depth = (uint32_t)d;
	hdr(obj)->weight = w;
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* VM stack and memo */

static weld_status push(weld_pickle *p, weld_py *o)
{
	if (!o)
		return p->st;
	if (p->nstack + p->nmarks >= p->lim.max_stack)
		return fail(p, WELD_ERR_LIMIT, "pickle stack grows past %zu entries at offset %zu",
			    p->lim.max_stack, p->off);
	if (p->nstack == p->cap_stack)
		TRY(grow_vec(p, (void **)&p->stack, &p->cap_stack, p->nstack + 1, sizeof(*p->stack)));
	p->stack[p->nstack++] = o;
	return WELD_OK;
}

static size_t fence(const weld_pickle *p)
{
	return p->nmarks ? p->marks[p->nmarks - 1] : 0;
}

static weld_status pop(weld_pickle *p, weld_py **out)
{
	if (p->nstack <= fence(p))
		return underflow(p);
	*out = p->stack[--p->nstack];
	return WELD_OK;
}

static weld_status top(weld_pickle *p, weld_py **out)
{
	if (p->nstack <= fence(p))
		return underflow(p);
	*out = p->stack[p->nstack - 1];
	return WELD_OK;
}

/* Pops the last mark; *START gets the stack index it recorded. */
static weld_status pop_mark(weld_pickle *p, size_t *start)
{
	if (!p->nmarks)
		return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has no MARK before it", p->opname, p->off);
	*start = p->marks[--p->nmarks];
	return WELD_OK;
}

static weld_status memo_put(weld_pickle *p, uint64_t idx)
{
	weld_py *o = NULL;
	TRY(top(p, &o));
	if (idx >= p->lim.max_memo)
		return fail(p, WELD_ERR_LIMIT, "pickle memo index %llu at offset %zu is beyond the limit of %zu entries",
			    (unsigned long long)idx, p->off, p->lim.max_memo);
	size_t i = (size_t)idx;
	if (i >= p->cap_memo) {
		size_t old = p->cap_memo;
		TRY(grow_vec(p, (void **)&p->memo, &p->cap_memo, i + 1, sizeof(*p->memo)));
		memset(p->memo + old, 0, (p->cap_memo - old) * sizeof(*p->memo));
	}
	if (!p->memo[i])
		p->memo_count++;
	p->memo[i] = o;
	if (i >= p->memo_hi)
		p->memo_hi = i + 1;
	return WELD_OK;
}

static weld_status memo_get(weld_pickle *p, uint64_t idx)
{
	if (idx >= p->memo_hi || !p->memo[idx])
		return fail(p, WELD_ERR_FORMAT, "pickle memo index %llu not defined at offset %zu",
			    (unsigned long long)idx, p->off);
	return push(p, p->memo[idx]);
}

/* ------------------------------------------------------------------------- */
/* Globals */

static bool starts_dotted(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(s, prefix, n) == 0 && (s[n] == '\0' || s[n] == '.');
}

/* Python 2 names, as in Python's _compat_pickle (the parts that matter here). */
static const struct {
	const char *mod, *name, *to_mod, *to_name;
} name_map[] = {
	{"__builtin__", "xrange", "builtins", "range"},
	{"__builtin__", "reduce", "functools", "reduce"},
	{"__builtin__", "intern", "sys", "intern"},
	{"__builtin__", "unichr", "builtins", "chr"},
	{"__builtin__", "unicode", "builtins", "str"},
	{"__builtin__", "long", "builtins", "int"},
	{"__builtin__", "basestring", "builtins", "str"},
	{"itertools", "izip", "builtins", "zip"},
	{"itertools", "imap", "builtins", "map"},
	{"itertools", "ifilter", "builtins", "filter"},
	{"itertools", "ifilterfalse", "itertools", "filterfalse"},
	{"itertools", "izip_longest", "itertools", "zip_longest"},
	{"UserDict", "IterableUserDict", "collections", "UserDict"},
	{"UserList", "UserList", "collections", "UserList"},
	{"UserString", "UserString", "collections", "UserString"},
	{"whichdb", "whichdb", "dbm", "whichdb"},
	{"_socket", "fromfd", "socket", "fromfd"},
	{"_multiprocessing", "Connection", "multiprocessing.connection", "Connection"},
	{"multiprocessing.process", "Process", "multiprocessing.context", "Process"},
	{"multiprocessing.forking", "Popen", "multiprocessing.popen_fork", "Popen"},
	{"urllib", "ContentTooShortError", "urllib.error", "ContentTooShortError"},
	{"urllib", "getproxies", "urllib.request", "getproxies"},
	{"urllib", "pathname2url", "urllib.request", "pathname2url"},
	{"urllib", "quote_plus", "urllib.parse", "quote_plus"},
	{"urllib", "quote", "urllib.parse", "quote"},
	{"urllib", "unquote_plus", "urllib.parse", "unquote_plus"},
	{"urllib", "unquote", "urllib.parse", "unquote"},
	{"urllib", "url2pathname", "urllib.request", "url2pathname"},
	{"urllib", "urlcleanup", "urllib.request", "urlcleanup"},
	{"urllib", "urlencode", "urllib.parse", "urlencode"},
	{"urllib", "urlopen", "urllib.request", "urlopen"},
	{"urllib", "urlretrieve", "urllib.request", "urlretrieve"},
	{"urllib2", "HTTPError", "urllib.error", "HTTPError"},
	{"urllib2", "URLError", "urllib.error", "URLError"},
};

static const struct {
	const char *from, *to;
} module_map[] = {
	{"__builtin__", "builtins"}, {"copy_reg", "copyreg"},       {"Queue", "queue"},
	{"SocketServer", "socketserver"}, {"ConfigParser", "configparser"}, {"repr", "reprlib"},
	{"cPickle", "pickle"},        {"cStringIO", "io"},           {"StringIO", "io"},
	{"UserDict", "collections"},  {"UserList", "collections"},   {"UserString", "collections"},
	{"whichdb", "dbm"},           {"anydbm", "dbm"},             {"commands", "subprocess"},
	{"thread", "_thread"},        {"dummy_thread", "_dummy_thread"}, {"httplib", "http.client"},
	{"urlparse", "urllib.parse"}, {"urllib2", "urllib.request"}, {"cookielib", "http.cookiejar"},
	{"xmlrpclib", "xmlrpc.client"}, {"exceptions", "builtins"},  {"sets", "builtins"},
	{"itertools", "itertools"},
};

/* Modules whose every name (and submodules') is refused. */
static const char *const blocked_modules[] = {
	"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pty", "importlib", "runpy",
	"code", "codeop", "ctypes", "pickle", "_pickle", "marshal", "webbrowser", "multiprocessing",
	"commands", "popen2", "platform", "signal", "_posixsubprocess", "timeit", "pdb", "cPickle",
};

/* builtins names that run code, reach frames or read files. */
static const char *const blocked_builtins[] = {
	"eval", "exec", "execfile", "compile", "open", "file", "getattr", "setattr", "delattr",
	"globals", "locals", "vars", "input", "raw_input", "breakpoint", "memoryview", "reload",
	"help", "exit", "quit",
};

static bool module_blocked(const char *m)
{
	for (size_t i = 0; i < sizeof(blocked_modules) / sizeof(blocked_modules[0]); i++)
		if (starts_dotted(m, blocked_modules[i]))
			return true;
	return false;
}

static enum gkind classify(const char *m, const char *n)
{
	if (strcmp(m, "builtins") == 0) {
		if (strcmp(n, "getattr") == 0) return G_GETATTR;
		if (strcmp(n, "set") == 0) return G_SET;
		if (strcmp(n, "frozenset") == 0) return G_FROZENSET;
		if (strcmp(n, "bytearray") == 0) return G_BYTEARRAY;
		if (strcmp(n, "bytes") == 0) return G_BYTES;
		return G_PLAIN;
	}
	if (strcmp(m, "collections") == 0) {
		if (strcmp(n, "OrderedDict") == 0) return G_ORDERED_DICT;
		if (strcmp(n, "defaultdict") == 0) return G_DICTLIKE;
		if (strcmp(n, "Counter") == 0) return G_COUNTER;
		return G_PLAIN;
	}
	if (strcmp(m, "_codecs") == 0 && strcmp(n, "encode") == 0)
		return G_ENCODE;
	if (strcmp(m, "copyreg") == 0 && strcmp(n, "_reconstructor") == 0)
		return G_RECONSTRUCTOR;
	if (strcmp(m, "torch._utils") == 0) {
		if (strcmp(n, "_rebuild_tensor_v2") == 0) return G_REBUILD_V2;
		if (strcmp(n, "_rebuild_tensor_v3") == 0) return G_REBUILD_V3;
		if (strcmp(n, "_rebuild_tensor") == 0) return G_REBUILD;
		if (strcmp(n, "_rebuild_parameter") == 0) return G_REBUILD_PARAM;
		if (strcmp(n, "_rebuild_parameter_with_state") == 0) return G_REBUILD_PARAM_STATE;
		if (strncmp(n, "_rebuild_", 9) == 0) return G_REBUILD_UNSUPPORTED;
		return G_PLAIN;
	}
	if (strcmp(m, "torch._tensor") == 0) {
		if (strcmp(n, "_rebuild_from_type_v2") == 0) return G_FROM_TYPE_V2;
		if (strncmp(n, "_rebuild_", 9) == 0) return G_REBUILD_UNSUPPORTED;
		return G_PLAIN;
	}
	if ((strcmp(m, "torch.nn.parameter") == 0 || strcmp(m, "torch.nn") == 0) && strcmp(n, "Parameter") == 0)
		return G_PARAMETER;
	if (strcmp(m, "torch") == 0 && strcmp(n, "Size") == 0)
		return G_SIZE;
	if (strcmp(m, "torch") == 0 && strcmp(n, "Tensor") == 0)
		return G_TENSOR;
	if (strcmp(m, "torch") == 0 || strcmp(m, "torch.cuda") == 0 || strcmp(m, "torch.storage") == 0) {
		size_t ln = strlen(n);
		if (ln >= 7 && strcmp(n + ln - 7, "Storage") == 0)
			return G_STORAGE;
	}
	return G_PLAIN;
}

/* Checks, maps and classifies module MOD and name NAME, and pushes the GLOBAL. */
static weld_status push_global(weld_pickle *p, const uint8_t *mod, size_t nmod, const uint8_t *name, size_t nname)
{
	if (nmod == 0 || nname == 0 || memchr(mod, 0, nmod) || memchr(name, 0, nname) ||
	    !weld__utf8_valid(mod, nmod, true) || !weld__utf8_valid(name, nname, true))
		return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has an empty or malformed name",
			    p->opname, p->off);
	char *m = copy_str(p, mod, nmod), *n = m ? copy_str(p, name, nname) : NULL;
	TRY_PTR(n);
	const char *om = m;
	const char *mm = m, *mn = n;
	bool mapped = false;
	for (size_t i = 0; i < sizeof(name_map) / sizeof(name_map[0]); i++)
		if (strcmp(m, name_map[i].mod) == 0 && strcmp(n, name_map[i].name) == 0) {
			mm = name_map[i].to_mod, mn = name_map[i].to_name, mapped = true;
			break;
		}
	if (!mapped)
		for (size_t i = 0; i < sizeof(module_map) / sizeof(module_map[0]); i++)
			if (strcmp(m, module_map[i].from) == 0) {
				mm = module_map[i].to;
				break;
			}
	if (module_blocked(mm) || module_blocked(om))
		return unsafe_global(p, mm, mn);
	if (strcmp(mm, "builtins") == 0 && strcmp(mn, "getattr") != 0) {
		if (strncmp(mn, "__", 2) == 0)
			return unsafe_global(p, mm, mn);
		for (size_t i = 0; i < sizeof(blocked_builtins) / sizeof(blocked_builtins[0]); i++)
			if (starts_dotted(mn, blocked_builtins[i]))
				return unsafe_global(p, mm, mn);
	}
	/* A dunder attribute of a class (Cls.__init__.__globals__) reaches anything. */
	for (const char *d = strchr(mn, '.'); d; d = strchr(d + 1, '.'))
		if (strncmp(d + 1, "__", 2) == 0)
			return unsafe_global(p, mm, mn);
	weld_py *g = new_node(p, WELD_PY_GLOBAL);
	TRY_PTR(g);
	g->obj.module = mm;
	g->obj.name = mn;
	hdr(g)->gkind = (uint8_t)classify(mm, mn);
	return push(p, g);
}

/* ------------------------------------------------------------------------- */
/* Interpreted calls */

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

static bool is_seq(const weld_py *o)
{
	return o->kind == WELD_PY_TUPLE || o->kind == WELD_PY_LIST || o->kind == WELD_PY_SIZE;
}

static weld_status opaque(weld_pickle *p, const weld_py *cls, weld_py *args, weld_py **out)
{
	weld_py *o = new_node(p, WELD_PY_OBJECT);
	TRY_PTR(o);
	o->obj.module = cls->obj.module;
	o->obj.name = cls->obj.name;
	if (args) {
		TRY(link_child(p, o, args));
		o->obj.args = args;
	}
	*out = o;
	return WELD_OK;
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
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu is built on %s, not a storage", p->off,
			    kind_name(storage));
	if (!get_i64(off, &v))
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has a storage offset that is %s, not a 64-bit int",
			    p->off, kind_name(off));
	if (v < 0)
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has negative storage offset %lld", p->off,
			    (long long)v);
	uint64_t soff = (uint64_t)v;
	if (!is_seq(size) || !is_seq(stride))
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has a size or stride that is %s, not a tuple",
			    p->off, kind_name(is_seq(size) ? stride : size));
	size_t nd = size->seq.n;
	if (nd > WELD_MAX_DIMS)
		return fail(p, WELD_ERR_UNSUPPORTED, "tensor at offset %zu has %zu dimensions; weld supports at most %d",
			    p->off, nd, WELD_MAX_DIMS);
	if (stride->seq.n != nd)
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has %zu sizes but %zu strides", p->off, nd,
			    stride->seq.n);
	uint64_t shape[WELD_MAX_DIMS];
	int64_t strides[WELD_MAX_DIMS];
	uint64_t numel = 1, reach = soff;
	bool overflow = false;
	for (size_t d = 0; d < nd; d++) {
		int64_t sz, sd;
		if (!get_i64(size->seq.items[d], &sz) || !get_i64(stride->seq.items[d], &sd))
			return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has a size or stride in dimension %zu that is not a 64-bit int",
				    p->off, d);
		if (sz < 0)
			return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has negative size %lld in dimension %zu",
				    p->off, (long long)sz, d);
		if (sd < 0)
			return fail(p, WELD_ERR_UNSUPPORTED, "tensor at offset %zu has negative stride %lld in dimension %zu",
				    p->off, (long long)sd, d);
		shape[d] = (uint64_t)sz;
		strides[d] = sd;
		if (!weld__mul_u64(&numel, numel, shape[d]))
			overflow = true;
	}
	uint64_t nbytes;
	if (overflow || !weld__mul_u64(&nbytes, numel, weld_dtype_size(dtype)))
		return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu has more than 2^64 bytes", p->off);
	if (numel > 0) {
		for (size_t d = 0; d < nd; d++) {
			uint64_t step;
			if (!weld__mul_u64(&step, shape[d] - 1, (uint64_t)strides[d]) || !weld__add_u64(&reach, reach, step))
				return fail(p, WELD_ERR_FORMAT, "tensor at offset %zu reaches past element 2^64 of its storage",
					    p->off);
		}
		uint64_t have = storage_elems(storage, dtype);
		if (reach >= have)
			return fail(p, WELD_ERR_FORMAT,
				    "tensor at offset %zu reaches element %llu but its storage '%s' holds only %llu",
				    p->off, (unsigned long long)reach, storage->storage.key, (unsigned long long)have);
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

static weld_status bad_args(weld_pickle *p, const weld_py *fn, const char *expect, size_t got)
{
	return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu takes %s arguments, got %zu", fn->obj.module,
		    fn->obj.name, p->off, expect, got);
}

/* torch._utils._rebuild_tensor / _v2 / _v3. */
static weld_status rebuild_tensor(weld_pickle *p, const weld_py *fn, enum gkind gk, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	if (gk == G_REBUILD && n != 4)
		return bad_args(p, fn, "4", n);
	if (gk == G_REBUILD_V2 && n != 6 && n != 7)
		return bad_args(p, fn, "6 or 7", n);
	if (gk == G_REBUILD_V3 && n != 7 && n != 8)
		return bad_args(p, fn, "7 or 8", n);
	weld_py *st = a[0];
	if (st->kind != WELD_PY_STORAGE)
		return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a storage as argument 1, got %s",
			    fn->obj.module, fn->obj.name, p->off, kind_name(st));
	weld_dtype dtype = st->storage.untyped ? WELD_DTYPE_U8 : st->storage.dtype;
	if (gk == G_REBUILD_V3) {
		const weld_py *g = a[6];
		if (g->kind != WELD_PY_GLOBAL || strcmp(g->obj.module, "torch") != 0)
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a torch dtype as argument 7, got %s",
				    fn->obj.module, fn->obj.name, p->off, kind_name(g));
		dtype = weld__dtype_from_torch_name(g->obj.name);
		if (dtype == WELD_DTYPE_INVALID)
			return fail(p, WELD_ERR_UNSUPPORTED, "tensor dtype torch.%s at offset %zu is not supported",
				    g->obj.name, p->off);
	}
	bool rg = false;
	if (gk != G_REBUILD && !get_bool(a[4], &rg))
		return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a bool requires_grad, got %s",
			    fn->obj.module, fn->obj.name, p->off, kind_name(a[4]));
	weld_py *t = new_node(p, WELD_PY_TENSOR);
	TRY_PTR(t);
	TRY(set_view(p, t, st, dtype, a[1], a[2], a[3]));
	t->tensor.requires_grad = rg;
	*out = t;
	return WELD_OK;
}

/* A Parameter wrapping tensor DATA: a new node, since DATA may be shared. */
static weld_status make_parameter(weld_pickle *p, const weld_py *fn, const weld_py *data, bool rg, weld_py **out)
{
	if (data->kind != WELD_PY_TENSOR)
		return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a tensor as argument 1, got %s",
			    fn->obj.module, fn->obj.name, p->off, kind_name(data));
	if (hdr(data)->pending)
		return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu wraps a tensor that has no storage yet",
			    fn->obj.module, fn->obj.name, p->off);
	weld_py *t = new_node(p, WELD_PY_TENSOR);
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
	weld_py *t = new_node(p, WELD_PY_TENSOR);
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
			return bad_args(p, fn, "3", n);
		if (gk == G_REBUILD_PARAM_STATE && n != 4)
			return bad_args(p, fn, "4", n);
		if (!get_bool(a[1], &rg))
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a bool requires_grad, got %s",
				    fn->obj.module, fn->obj.name, p->off, kind_name(a[1]));
		return make_parameter(p, fn, a[0], rg, out);
	case G_PARAMETER:
		if (n == 0)
			return pending_tensor(p, true, out);
		if (n > 2)
			return bad_args(p, fn, "0 to 2", n);
		rg = true;
		if (n == 2 && !get_bool(a[1], &rg))
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a bool requires_grad, got %s",
				    fn->obj.module, fn->obj.name, p->off, kind_name(a[1]));
		return make_parameter(p, fn, a[0], rg, out);
	case G_REBUILD_UNSUPPORTED:
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "pickle rebuilds a tensor with %s.%s at offset %zu, which weld does not support",
			    fn->obj.module, fn->obj.name, p->off);
	default:
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "torch._tensor._rebuild_from_type_v2 at offset %zu applies %s.%s, which is not a tensor rebuild function",
			    p->off, fn->obj.module, fn->obj.name);
	}
}

/* A dict from (), (dict,) or (iterable of pairs,), as OrderedDict/Counter take. */
static weld_status dict_from(weld_pickle *p, const weld_py *fn, const weld_py *args, bool ordered, weld_py **out)
{
	weld_py *d = new_node(p, WELD_PY_DICT);
	TRY_PTR(d);
	d->dict.ordered = ordered;
	*out = d;
	if (args->seq.n == 0)
		return WELD_OK;
	const weld_py *src = args->seq.items[0];
	if (src->kind == WELD_PY_DICT) {
		TRY(reserve(p, d, src->dict.n));
		for (size_t i = 0; i < src->dict.n; i++)
			TRY(dict_add(p, d, src->dict.keys[i], src->dict.vals[i]));
		return WELD_OK;
	}
	if (src->kind == WELD_PY_LIST || src->kind == WELD_PY_TUPLE) {
		TRY(reserve(p, d, src->seq.n));
		for (size_t i = 0; i < src->seq.n; i++) {
			const weld_py *pair = src->seq.items[i];
			if ((pair->kind != WELD_PY_TUPLE && pair->kind != WELD_PY_LIST) || pair->seq.n != 2)
				return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects (key, value) pairs, got %s",
					    fn->obj.module, fn->obj.name, p->off, kind_name(pair));
			TRY(dict_add(p, d, pair->seq.items[0], pair->seq.items[1]));
		}
		return WELD_OK;
	}
	return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu cannot build a dict from %s", fn->obj.module,
		    fn->obj.name, p->off, kind_name(src));
}

/* bytes/bytearray/_codecs.encode: (), (bytes,), (str[, encoding]). */
static weld_status bytes_from(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out)
{
	size_t n = args->seq.n;
	if (n == 0 && hdr(fn)->gkind != G_ENCODE) {
		*out = make_bytes_like(p, WELD_PY_BYTES, "", 0);
		return *out ? WELD_OK : p->st;
	}
	if (n == 1 && args->seq.items[0]->kind == WELD_PY_BYTES && hdr(fn)->gkind != G_ENCODE) {
		const weld_py *b = args->seq.items[0];
		*out = make_bytes_like(p, WELD_PY_BYTES, b->str.s, b->str.len);
		return *out ? WELD_OK : p->st;
	}
	if (n < 1 || n > 2 || args->seq.items[0]->kind != WELD_PY_STR ||
	    (n == 2 && args->seq.items[1]->kind != WELD_PY_STR))
		return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects (str, encoding)", fn->obj.module,
			    fn->obj.name, p->off);
	const weld_py *s = args->seq.items[0];
	const char *enc = n == 2 ? args->seq.items[1]->str.s : "utf-8";
	if (strcmp(enc, "utf-8") == 0 || strcmp(enc, "utf8") == 0) {
		*out = make_bytes_like(p, WELD_PY_BYTES, s->str.s, s->str.len);
		return *out ? WELD_OK : p->st;
	}
	if (strcmp(enc, "latin1") != 0 && strcmp(enc, "latin-1") != 0 && strcmp(enc, "iso-8859-1") != 0)
		return fail(p, WELD_ERR_UNSUPPORTED, "%s.%s at offset %zu uses encoding '%s'; weld handles latin1 and utf-8",
			    fn->obj.module, fn->obj.name, p->off, enc);
	weld_py *b = new_node(p, WELD_PY_BYTES);
	TRY_PTR(b);
	uint8_t *d = s->str.len < SIZE_MAX ? alloc(p, s->str.len + 1) : NULL; /* latin1 is never longer */
	TRY_PTR(d);
	size_t i = 0, k = 0;
	const uint8_t *u = (const uint8_t *)s->str.s;
	while (i < s->str.len) {
		uint32_t cp = weld__utf8_next(u, &i);
		if (cp > 0xFF)
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu: U+%04X does not fit latin1", fn->obj.module,
				    fn->obj.name, p->off, (unsigned)cp);
		d[k++] = (uint8_t)cp;
	}
	d[k] = 0;
	b->str.s = (const char *)d;
	b->str.len = k;
	*out = b;
	return WELD_OK;
}

/* REDUCE/NEWOBJ: FN applied to the tuple ARGS. */
static weld_status call(weld_pickle *p, weld_py *fn, weld_py *args, bool has_kwargs, weld_py **out)
{
	if (fn->kind != WELD_PY_GLOBAL) {
		if (fn->kind == WELD_PY_OBJECT && hdr(fn)->getattr_member)
			return fail(p, WELD_ERR_UNSAFE,
				    "pickle calls %s.%s.%s, fetched with builtins.getattr, at offset %zu, which could run code; refusing to load",
				    fn->obj.module, fn->obj.name, fn->obj.args->str.s, p->off);
		return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu calls %s, not a class or function",
			    p->opname, p->off, kind_name(fn));
	}
	if (args->kind != WELD_PY_TUPLE)
		return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu passes %s as the argument tuple of %s.%s",
			    p->opname, p->off, kind_name(args), fn->obj.module, fn->obj.name);
	enum gkind gk = (enum gkind)hdr(fn)->gkind;
	if (has_kwargs && gk != G_PLAIN)
		return fail(p, WELD_ERR_UNSUPPORTED, "pickle %s at offset %zu passes keyword arguments to %s.%s",
			    p->opname, p->off, fn->obj.module, fn->obj.name);
	size_t n = args->seq.n;
	weld_py **a = args->seq.items;
	switch (gk) {
	case G_PLAIN:
	case G_STORAGE:
		return opaque(p, fn, args, out);
	case G_GETATTR: {
		/* Enum members as Python 3.11.2 pickles them: getattr(Cls, "NAME"). */
		if (n != 2 || a[0]->kind != WELD_PY_GLOBAL || hdr(a[0])->gkind == G_GETATTR ||
		    a[1]->kind != WELD_PY_STR || memchr(a[1]->str.s, 0, a[1]->str.len) ||
		    strncmp(a[1]->str.s, "__", 2) == 0)
			return fail(p, WELD_ERR_UNSAFE,
				    "pickle calls builtins.getattr at offset %zu on something other than (class, member name), which could run code; refusing to load",
				    p->off);
		TRY(opaque(p, a[0], NULL, out));
		TRY(link_child(p, *out, a[1]));
		(*out)->obj.args = a[1];
		hdr(*out)->getattr_member = true;
		return WELD_OK;
	}
	case G_ORDERED_DICT:
		if (n > 1)
			return bad_args(p, fn, "0 or 1", n);
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
		if (n == 0) {
			*out = share_seq(p, WELD_PY_SIZE, NULL);
			return *out ? WELD_OK : p->st;
		}
		if (n != 1 || !is_seq(a[0]))
			return fail(p, WELD_ERR_FORMAT, "torch.Size at offset %zu expects a tuple of ints", p->off);
		for (size_t i = 0; i < a[0]->seq.n; i++)
			if (a[0]->seq.items[i]->kind != WELD_PY_INT)
				return fail(p, WELD_ERR_FORMAT, "torch.Size at offset %zu expects a tuple of ints, got %s",
					    p->off, kind_name(a[0]->seq.items[i]));
		*out = share_seq(p, WELD_PY_SIZE, a[0]);
		return *out ? WELD_OK : p->st;
	case G_SET:
	case G_FROZENSET:
		if (n == 0) {
			*out = share_seq(p, WELD_PY_SET, NULL);
			return *out ? WELD_OK : p->st;
		}
		if (n != 1 || (!is_seq(a[0]) && a[0]->kind != WELD_PY_SET))
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a list", fn->obj.module,
				    fn->obj.name, p->off);
		*out = share_seq(p, WELD_PY_SET, a[0]);
		return *out ? WELD_OK : p->st;
	case G_BYTEARRAY:
	case G_BYTES:
	case G_ENCODE:
		return bytes_from(p, fn, args, out);
	case G_REBUILD_V2:
	case G_REBUILD_V3:
	case G_REBUILD:
	case G_REBUILD_PARAM:
	case G_REBUILD_PARAM_STATE:
	case G_PARAMETER:
	case G_REBUILD_UNSUPPORTED:
		return call_rebuild(p, fn, args, out);
	case G_FROM_TYPE_V2: {
		if (n != 4)
			return bad_args(p, fn, "4", n);
		if (a[0]->kind != WELD_PY_GLOBAL)
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects a function as argument 1, got %s",
				    fn->obj.module, fn->obj.name, p->off, kind_name(a[0]));
		if (a[2]->kind != WELD_PY_TUPLE)
			return fail(p, WELD_ERR_FORMAT, "%s.%s at offset %zu expects an argument tuple as argument 3, got %s",
				    fn->obj.module, fn->obj.name, p->off, kind_name(a[2]));
		TRY(call_rebuild(p, a[0], a[2], out));
		/* The subclass is dropped, but a Parameter stays a parameter. */
		if (a[1]->kind == WELD_PY_GLOBAL && hdr(a[1])->gkind == G_PARAMETER && (*out)->kind == WELD_PY_TENSOR)
			(*out)->tensor.parameter = true;
		return WELD_OK;
	}
	case G_TENSOR:
		if (n != 0)
			return fail(p, WELD_ERR_UNSUPPORTED,
				    "torch.Tensor at offset %zu is called with arguments; only the empty tensor plus BUILD form is supported",
				    p->off);
		return pending_tensor(p, false, out);
	case G_RECONSTRUCTOR:
		/* copyreg._reconstructor(cls, base, state): protocol 0/1 objects. */
		if (n != 3 || a[0]->kind != WELD_PY_GLOBAL)
			return fail(p, WELD_ERR_FORMAT, "copyreg._reconstructor at offset %zu expects (class, base, state)",
				    p->off);
		return opaque(p, a[0], a[2]->kind == WELD_PY_NONE ? NULL : a[2], out);
	}
	return opaque(p, fn, args, out);
}

/* BINPERSID: ("storage", class, key, location, numel[, None]). */
static weld_status persistent_load(weld_pickle *p, const weld_py *pid, weld_py **out)
{
	if (pid->kind != WELD_PY_TUPLE || pid->seq.n == 0 ||
	    (pid->seq.items[0]->kind != WELD_PY_STR && pid->seq.items[0]->kind != WELD_PY_BYTES))
		return fail(p, WELD_ERR_FORMAT, "persistent id at offset %zu is %s, not a ('storage', ...) tuple",
			    p->off, kind_name(pid));
	weld_py **a = pid->seq.items;
	if (strcmp(a[0]->str.s, "module") == 0)
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "persistent id at offset %zu holds a pickled nn.Module class, which weld does not load",
			    p->off);
	if (strcmp(a[0]->str.s, "storage") != 0 || a[0]->str.len != 7)
		return fail(p, WELD_ERR_FORMAT, "persistent id at offset %zu is not a ('storage', ...) tuple", p->off);
	if (pid->seq.n != 5 && pid->seq.n != 6)
		return fail(p, WELD_ERR_FORMAT, "storage persistent id at offset %zu has %zu fields, not 5 or 6",
			    p->off, pid->seq.n);
	if (pid->seq.n == 6 && a[5]->kind != WELD_PY_NONE)
		return fail(p, WELD_ERR_UNSUPPORTED,
			    "storage persistent id at offset %zu is a legacy storage view, which weld does not support",
			    p->off);
	const weld_py *cls = a[1];
	int64_t numel;
	if (cls->kind != WELD_PY_GLOBAL || hdr(cls)->gkind != G_STORAGE)
		return fail(p, WELD_ERR_FORMAT, "storage persistent id at offset %zu names %s, not a storage class",
			    p->off, cls->kind == WELD_PY_GLOBAL ? "a non-storage global" : kind_name(cls));
	if (a[2]->kind != WELD_PY_STR || a[3]->kind != WELD_PY_STR || memchr(a[2]->str.s, 0, a[2]->str.len))
		return fail(p, WELD_ERR_FORMAT, "storage persistent id at offset %zu has a malformed key or location",
			    p->off);
	if (!get_i64(a[4], &numel) || numel < 0)
		return fail(p, WELD_ERR_FORMAT, "storage '%s' at offset %zu has a bad element count", a[2]->str.s, p->off);
	bool untyped = strcmp(cls->obj.name, "UntypedStorage") == 0;
	weld_dtype dtype = untyped ? WELD_DTYPE_INVALID : weld__dtype_from_storage_class(cls->obj.name);
	if (!untyped && dtype == WELD_DTYPE_INVALID)
		return fail(p, WELD_ERR_UNSUPPORTED, "storage class %s.%s at offset %zu is not supported",
			    cls->obj.module, cls->obj.name, p->off);
	uint64_t nbytes;
	if (!weld__mul_u64(&nbytes, (uint64_t)numel, untyped ? 1 : weld_dtype_size(dtype)))
		return fail(p, WELD_ERR_FORMAT, "storage '%s' at offset %zu holds more than 2^64 bytes", a[2]->str.s,
			    p->off);
	weld_py *s = new_node(p, WELD_PY_STORAGE);
	TRY_PTR(s);
	s->storage.key = a[2]->str.s;
	s->storage.location = a[3]->str.s;
	s->storage.dtype = dtype;
	s->storage.untyped = untyped;
	s->storage.numel = (uint64_t)numel;
	*out = s;
	return WELD_OK;
}

/* BUILD: STATE applied to INST (which stays on the stack). */
static weld_status build(weld_pickle *p, weld_py *inst, weld_py *state)
{
	switch (inst->kind) {
	case WELD_PY_OBJECT:
		if (inst->obj.state) {
			/* Items added before BUILD (list/dict subclasses) stay, paired with it. */
			weld_py *t = new_node(p, WELD_PY_TUPLE);
			TRY_PTR(t);
			TRY(seq_add(p, t, inst->obj.state));
			TRY(seq_add(p, t, state));
			state = t;
		}
		TRY(link_child(p, inst, state));
		inst->obj.state = state;
		return WELD_OK;
	case WELD_PY_DICT:
		/* OrderedDict attributes (_metadata of a module state dict): dropped. */
		if (inst->dict.ordered)
			return is_getattr(state) ? unsafe_global(p, "builtins", "getattr") : WELD_OK;
		break;
	case WELD_PY_TENSOR: {
		node *h = hdr(inst);
		if (state->kind == WELD_PY_TUPLE && state->seq.n == 4 && state->seq.items[0]->kind == WELD_PY_STORAGE) {
			/* Legacy torch.Tensor: set_(storage, offset, size, stride). */
			weld_py *st = state->seq.items[0];
			weld_dtype dt = st->storage.untyped ? WELD_DTYPE_U8 : st->storage.dtype;
			TRY(set_view(p, inst, st, dt, state->seq.items[1], state->seq.items[2], state->seq.items[3]));
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
			return fail(p, WELD_ERR_FORMAT, "pickle BUILD at offset %zu gives a tensor %s as its state",
				    p->off, kind_name(state));
		}
		if (h->pending) {
			h->pending = false;
			p->pending--;
		}
		return WELD_OK;
	}
	default:
		break;
	}
	return fail(p, WELD_ERR_FORMAT, "pickle BUILD at offset %zu targets %s", p->off, kind_name(inst));
}

/* ------------------------------------------------------------------------- */
/* The VM */

static uint64_t rd_le(const uint8_t *b, size_t n)
{
	uint64_t v = 0;
	for (size_t k = 0; k < n; k++)
		v |= (uint64_t)b[k] << (8 * k);
	return v;
}

/* Reads an N-byte little-endian length field after the opcode. */
static weld_status read_len(weld_pickle *p, size_t n, uint64_t *out)
{
	TRY(need(p, n));
	*out = rd_le(p->data + p->pos, n);
	p->pos += n;
	return WELD_OK;
}

/* The N payload bytes after the length field; truncation is checked first. */
static weld_status read_bytes(weld_pickle *p, uint64_t n, const uint8_t **out)
{
	TRY(need(p, n));
	*out = p->data + p->pos;
	p->pos += (size_t)n;
	return WELD_OK;
}

static weld_status push_text(weld_pickle *p, weld_py_kind kind, size_t lenbytes, bool lenient)
{
	uint64_t n;
	const uint8_t *s;
	TRY(read_len(p, lenbytes, &n));
	if (lenbytes == 4 && kind == WELD_PY_STR && lenient && (n & 0x80000000u))
		return fail(p, WELD_ERR_FORMAT, "pickle BINSTRING at offset %zu has a negative length", p->off);
	TRY(read_bytes(p, n, &s));
	if (kind == WELD_PY_STR && !weld__utf8_valid(s, (size_t)n, true)) {
		if (!lenient)
			return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu is not valid UTF-8", p->opname, p->off);
		kind = WELD_PY_BYTES; /* Python 2 str that is not text */
	}
	return push(p, make_bytes_like(p, kind, s, (size_t)n));
}

/* Pops the items above the last mark into a fresh tuple. */
static weld_status tuple_from(weld_pickle *p, size_t start, weld_py **out)
{
	weld_py *t = new_node(p, WELD_PY_TUPLE);
	TRY_PTR(t);
	size_t n = p->nstack - start;
	TRY(reserve(p, t, n));
	for (size_t i = start; i < p->nstack; i++)
		TRY(seq_add(p, t, p->stack[i]));
	p->nstack = start;
	*out = t;
	return WELD_OK;
}

static weld_status tuple_n(weld_pickle *p, size_t n)
{
	if (p->nstack < n || p->nstack - n < fence(p))
		return underflow(p);
	weld_py *t;
	TRY(tuple_from(p, p->nstack - n, &t));
	return push(p, t);
}

static weld_status run(weld_pickle *p, weld_py **out)
{
	for (;;) {
		if (p->pos >= p->len)
			return fail(p, WELD_ERR_FORMAT, "truncated pickle: data ends at offset %zu before STOP", p->pos);
		p->off = p->pos;
		uint8_t op = p->data[p->pos++];
		p->opname = opnames[op] ? opnames[op] : "?";
		uint64_t n = 0;
		const uint8_t *b = NULL;
		weld_py *x = NULL, *y = NULL, *z = NULL;
		size_t start = 0;
		switch (op) {
		case 0x80: /* PROTO */
			TRY(read_len(p, 1, &n));
			if (n > 5)
				return fail(p, WELD_ERR_UNSUPPORTED, "pickle protocol %u at offset %zu is newer than 5",
					    (unsigned)n, p->off);
			break;
		case 0x95: /* FRAME: a length hint; the data must be there */
			TRY(read_len(p, 8, &n));
			if (n > p->len - p->pos)
				return fail(p, WELD_ERR_FORMAT, "truncated pickle: FRAME at offset %zu announces %llu bytes, %zu left",
					    p->off, (unsigned long long)n, p->len - p->pos);
			break;
		case '.': /* STOP */
			TRY(pop(p, &x));
			if (is_getattr(x))
				return unsafe_global(p, "builtins", "getattr");
			if (p->pending)
				return fail(p, WELD_ERR_FORMAT, "pickle creates a tensor at offset %zu that never gets a storage",
					    p->pending_off);
			*out = x;
			return WELD_OK;
		case '(': /* MARK */
			if (p->nstack + p->nmarks >= p->lim.max_stack)
				return fail(p, WELD_ERR_LIMIT, "pickle stack grows past %zu entries at offset %zu",
					    p->lim.max_stack, p->off);
			if (p->nmarks == p->cap_marks)
				TRY(grow_vec(p, (void **)&p->marks, &p->cap_marks, p->nmarks + 1, sizeof(*p->marks)));
			p->marks[p->nmarks++] = p->nstack;
			break;
		case '0': /* POP: with nothing above the mark, Python drops the mark */
			if (p->nstack > fence(p))
				p->nstack--;
			else if (p->nmarks)
				p->nmarks--;
			else
				return underflow(p);
			break;
		case '1': /* POP_MARK */
			TRY(pop_mark(p, &start));
			p->nstack = start;
			break;
		case '2': /* DUP */
			TRY(top(p, &x));
			TRY(push(p, x));
			break;
		case 'N':
			if (!p->none)
				p->none = new_node(p, WELD_PY_NONE);
			TRY(push(p, p->none));
			break;
		case 0x88: /* NEWTRUE */
		case 0x89: /* NEWFALSE */ {
			weld_py **slot = op == 0x88 ? &p->yes : &p->no;
			if (!*slot && (*slot = new_node(p, WELD_PY_BOOL)))
				(*slot)->b = op == 0x88;
			TRY(push(p, *slot));
			break;
		}
		case 'K': /* BININT1 */
			TRY(read_len(p, 1, &n));
			TRY(push(p, make_int(p, (int64_t)n)));
			break;
		case 'M': /* BININT2 */
			TRY(read_len(p, 2, &n));
			TRY(push(p, make_int(p, (int64_t)n)));
			break;
		case 'J': /* BININT: signed 32-bit */
			TRY(read_len(p, 4, &n));
			TRY(push(p, make_int(p, (int64_t)(int32_t)(uint32_t)n)));
			break;
		case 0x8a: /* LONG1 */
		case 0x8b: /* LONG4 */
			TRY(read_len(p, op == 0x8a ? 1 : 4, &n));
			if (op == 0x8b && (n & 0x80000000u))
				return fail(p, WELD_ERR_FORMAT, "pickle LONG4 at offset %zu has a negative length", p->off);
			if (n > MAX_LONG_BYTES)
				return fail(p, WELD_ERR_LIMIT, "pickle integer at offset %zu is %llu bytes long, more than %u",
					    p->off, (unsigned long long)n, MAX_LONG_BYTES);
			TRY(read_bytes(p, n, &b));
			TRY(push(p, make_long(p, b, (size_t)n)));
			break;
		case 'G': { /* BINFLOAT: big-endian double */
			TRY(read_bytes(p, 8, &b));
			uint64_t u = 0;
			for (int k = 0; k < 8; k++)
				u = (u << 8) | b[k];
			x = new_node(p, WELD_PY_FLOAT);
			TRY_PTR(x);
			memcpy(&x->f, &u, sizeof(x->f));
			TRY(push(p, x));
			break;
		}
		case 'X': TRY(push_text(p, WELD_PY_STR, 4, false)); break;        /* BINUNICODE */
		case 0x8c: TRY(push_text(p, WELD_PY_STR, 1, false)); break;       /* SHORT_BINUNICODE */
		case 0x8d: TRY(push_text(p, WELD_PY_STR, 8, false)); break;       /* BINUNICODE8 */
		case 'T': TRY(push_text(p, WELD_PY_STR, 4, true)); break;         /* BINSTRING */
		case 'U': TRY(push_text(p, WELD_PY_STR, 1, true)); break;         /* SHORT_BINSTRING */
		case 'B': TRY(push_text(p, WELD_PY_BYTES, 4, false)); break;      /* BINBYTES */
		case 'C': TRY(push_text(p, WELD_PY_BYTES, 1, false)); break;      /* SHORT_BINBYTES */
		case 0x8e: TRY(push_text(p, WELD_PY_BYTES, 8, false)); break;     /* BINBYTES8 */
		case 0x96: TRY(push_text(p, WELD_PY_BYTES, 8, false)); break;     /* BYTEARRAY8 */
		case ')': TRY(push(p, new_node(p, WELD_PY_TUPLE))); break;
		case ']': TRY(push(p, new_node(p, WELD_PY_LIST))); break;
		case '}': TRY(push(p, new_node(p, WELD_PY_DICT))); break;
		case 0x8f: TRY(push(p, new_node(p, WELD_PY_SET))); break;         /* EMPTY_SET */
		case 't': /* TUPLE */
			TRY(pop_mark(p, &start));
			TRY(tuple_from(p, start, &x));
			TRY(push(p, x));
			break;
		case 0x85: TRY(tuple_n(p, 1)); break;
		case 0x86: TRY(tuple_n(p, 2)); break;
		case 0x87: TRY(tuple_n(p, 3)); break;
		case 0x91: /* FROZENSET */
			TRY(pop_mark(p, &start));
			TRY(tuple_from(p, start, &x));
			x->kind = WELD_PY_SET;
			TRY(push(p, x));
			break;
		case 'a':  /* APPEND */
		case 's':  /* SETITEM */
		case 'e':  /* APPENDS */
		case 'u':  /* SETITEMS */
		case 0x90: /* ADDITEMS */ {
			bool dict = op == 's' || op == 'u';
			weld_py_kind want = dict ? WELD_PY_DICT : op == 0x90 ? WELD_PY_SET : WELD_PY_LIST;
			/* The items are stack[start..nstack), the target just below. */
			if (op == 'a' || op == 's') {
				size_t k = op == 'a' ? 1 : 2;
				if (p->nstack < k + 1 || p->nstack - k - 1 < fence(p))
					return underflow(p);
				start = p->nstack - k;
			} else {
				TRY(pop_mark(p, &start));
				if (dict && (p->nstack - start) % 2)
					return fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has an odd number of items",
						    p->opname, p->off);
				if (start <= fence(p))
					return underflow(p);
			}
			weld_py *owner = NULL;
			TRY(items_target(p, p->stack[start - 1], want, &y, &owner));
			TRY(reserve(p, y, dict ? (p->nstack - start) / 2 : p->nstack - start));
			for (size_t i = start; i < p->nstack; i += dict ? 2 : 1)
				TRY(dict ? dict_add(p, y, p->stack[i], p->stack[i + 1]) : seq_add(p, y, p->stack[i]));
			p->nstack = start;
			if (owner)
				TRY(sync_object(p, owner));
			break;
		}
		case 'q': /* BINPUT */
			TRY(read_len(p, 1, &n));
			TRY(memo_put(p, n));
			break;
		case 'r': /* LONG_BINPUT */
			TRY(read_len(p, 4, &n));
			TRY(memo_put(p, n));
			break;
		case 0x94: /* MEMOIZE */
			TRY(memo_put(p, p->memo_count));
			break;
		case 'h': /* BINGET */
			TRY(read_len(p, 1, &n));
			TRY(memo_get(p, n));
			break;
		case 'j': /* LONG_BINGET */
			TRY(read_len(p, 4, &n));
			TRY(memo_get(p, n));
			break;
		case 'c': { /* GLOBAL: "module\nname\n" */
			const uint8_t *m = p->data + p->pos, *e1, *e2;
			size_t left = p->len - p->pos;
			e1 = memchr(m, '\n', left);
			e2 = e1 ? memchr(e1 + 1, '\n', left - (size_t)(e1 + 1 - m)) : NULL;
			if (!e2)
				return fail(p, WELD_ERR_FORMAT,
					    "truncated pickle: GLOBAL at offset %zu has no newline-terminated module and name",
					    p->off);
			p->pos += (size_t)(e2 + 1 - m);
			TRY(push_global(p, m, (size_t)(e1 - m), e1 + 1, (size_t)(e2 - e1 - 1)));
			break;
		}
		case 0x93: /* STACK_GLOBAL */
			TRY(pop(p, &y));
			TRY(pop(p, &x));
			if (x->kind != WELD_PY_STR || y->kind != WELD_PY_STR)
				return fail(p, WELD_ERR_FORMAT, "pickle STACK_GLOBAL at offset %zu needs two str, got %s and %s",
					    p->off, kind_name(x), kind_name(y));
			TRY(push_global(p, (const uint8_t *)x->str.s, x->str.len, (const uint8_t *)y->str.s, y->str.len));
			break;
		case 'Q': /* BINPERSID */
			TRY(pop(p, &x));
			TRY(persistent_load(p, x, &y));
			TRY(push(p, y));
			break;
		case 'R': /* REDUCE */
			TRY(pop(p, &y));
			TRY(pop(p, &x));
			TRY(call(p, x, y, false, &z));
			TRY(push(p, z));
			break;
		case 0x81: /* NEWOBJ: cls.__new__(cls, *args), same model as a call */
			TRY(pop(p, &y));
			TRY(pop(p, &x));
			TRY(call(p, x, y, false, &z));
			TRY(push(p, z));
			break;
		case 0x92: { /* NEWOBJ_EX: keyword arguments of opaque classes are dropped */
			weld_py *kw = NULL;
			TRY(pop(p, &kw));
			TRY(pop(p, &y));
			TRY(pop(p, &x));
			if (kw->kind != WELD_PY_DICT)
				return fail(p, WELD_ERR_FORMAT, "pickle NEWOBJ_EX at offset %zu has %s for keyword arguments",
					    p->off, kind_name(kw));
			TRY(call(p, x, y, kw->dict.n > 0, &z));
			TRY(push(p, z));
			break;
		}
		case 'b': /* BUILD */
			TRY(pop(p, &x));
			TRY(top(p, &y));
			TRY(build(p, y, x));
			break;
		case 'I': case 'L': case 'F': case 'S': case 'V': case 'g': case 'p': case 'd':
		case 'l': case 'P': case 'i': case 'o': case 0x82: case 0x83: case 0x84: case 0x97: case 0x98:
			return fail(p, WELD_ERR_UNSUPPORTED, "pickle opcode %s (0x%02x) at offset %zu is not supported",
				    p->opname, op, p->off);
		default:
			return fail(p, WELD_ERR_FORMAT, "unknown pickle opcode 0x%02x at offset %zu", op, p->off);
		}
	}
}

/* ------------------------------------------------------------------------- */
/* API */

weld_status weld_pickle_new(weld_pickle **out, const weld_pickle_limits *limits, weld_error *err)
{
	if (!out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_pickle_new: out is NULL");
	*out = NULL;
	weld_pickle *p = weld__calloc(1, sizeof(*p));
	if (!p)
		return weld__nomem(err);
	/* A zero field means "the default" for that bound. */
	p->lim.max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;
	p->lim.max_memo = limits && limits->max_memo ? limits->max_memo : DEFAULT_MAX_MEMO;
	p->lim.max_stack = limits && limits->max_stack ? limits->max_stack : DEFAULT_MAX_STACK;
	p->lim.max_bytes = limits && limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES;
	p->lim.max_nodes = limits && limits->max_nodes ? limits->max_nodes : DEFAULT_MAX_NODES;
	p->next_block = ARENA_FIRST_BLOCK;
	*out = p;
	return WELD_OK;
}

void weld_pickle_free(weld_pickle *p)
{
	if (!p)
		return;
	for (block *b = p->blocks, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	free(p->stack);
	free(p->marks);
	free(p->memo);
	free(p);
}

weld_status weld_pickle_load(weld_pickle *p, const uint8_t *data, size_t len, size_t *consumed, weld_py **out,
			     weld_error *err)
{
	if (!p || (!data && len) || !out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_pickle_load: NULL argument");
	*out = NULL;
	if (consumed)
		*consumed = 0;
	/* Each pickle has its own stack and memo, as each pickle.load does. */
	p->nstack = p->nmarks = 0;
	if (p->memo_hi)
		memset(p->memo, 0, p->memo_hi * sizeof(*p->memo));
	p->memo_hi = p->memo_count = 0;
	p->pending = p->pending_off = 0;
	p->data = data;
	p->len = len;
	p->pos = p->off = 0;
	p->opname = "";
	p->err = err;
	p->st = WELD_OK;
	weld_status s = run(p, out);
	if (s == WELD_OK && consumed)
		*consumed = p->pos;
	if (s != WELD_OK)
		*out = NULL;
	p->data = NULL;
	p->err = NULL;
	return s;
}

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
