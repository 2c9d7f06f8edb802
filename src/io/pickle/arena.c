/*
 * weld_pickle itself: its limits and the arena every value lives in.
 *
 * Values are carved out of big blocks owned by the weld_pickle and freed in
 * one loop with no recursion, so a tree of any shape costs nothing to drop.
 * Arena blocks and the VM's stack, marks and memo all count against
 * limits.max_bytes.
 */
#include "io/pickle/internal.h"

#include <stdarg.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_DEPTH 1000u
#define DEFAULT_MAX_MEMO ((size_t)1 << 24)
#define DEFAULT_MAX_STACK ((size_t)1 << 24)
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define DEFAULT_MAX_NODES ((uint64_t)1 << 28)
#define ARENA_ALIGN 16u
#define ARENA_FIRST_BLOCK ((size_t)64 << 10)
#define ARENA_MAX_BLOCK ((size_t)4 << 20)

typedef struct block {
	struct block *next;
} block;

#define BLOCK_HEADER ((sizeof(block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

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
	for (size_t i = 0; i < p->nallow; i++)
		free(p->allow[i].mod);
	free(p->allow);
	free(p);
}

weld_status weld__pk_fail(weld_pickle *p, weld_status s, const char *fmt, ...)
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

weld_status weld__pk_fail_memory(weld_pickle *p)
{
	return p->st = weld__fail(p->err, WELD_ERR_LIMIT,
				  "pickle needs more than %zu bytes of memory at offset %zu",
				  p->lim.max_bytes, p->off);
}

static weld_status charge(weld_pickle *p, size_t add)
{
	size_t u;
	if (!weld__add_size(&u, p->used, add) || u > p->lim.max_bytes)
		return weld__pk_fail_memory(p);
	p->used = u;
	return WELD_OK;
}

void *weld__pk_alloc(weld_pickle *p, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - ARENA_ALIGN - BLOCK_HEADER) {
		weld__pk_fail_memory(p);
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

weld_status weld__pk_grow_vec(weld_pickle *p, void **vec, size_t *cap, size_t want, size_t item)
{
	if (want <= *cap)
		return WELD_OK;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2)
			return weld__pk_fail_memory(p);
		ncap *= 2;
	}
	size_t add_items = ncap - *cap, add;
	if (!weld__mul_size(&add, add_items, item))
		return weld__pk_fail_memory(p);
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

/* The end of the union member a value of KIND uses, from the start of its weld_py. */
#define UPTO(m) (offsetof(weld_py, m) + sizeof(((weld_py *)0)->m))

/*
 * Bytes of a node of KIND: its header and its weld_py up to the end of the
 * member KIND uses. A tensor's shape and strides make the union ten times
 * what a tuple or an int needs, and a state dict is mostly those: a node
 * never changes to a kind with a bigger member (only a tuple to a set).
 */
static size_t node_size(weld_py_kind kind)
{
	size_t used = sizeof(weld_py);
	switch (kind) {
	case WELD_PY_NONE: used = offsetof(weld_py, b); break;
	case WELD_PY_BOOL: used = UPTO(b); break;
	case WELD_PY_INT: used = UPTO(i); break;
	case WELD_PY_FLOAT: used = UPTO(f); break;
	case WELD_PY_STR:
	case WELD_PY_BYTES: used = UPTO(str); break;
	case WELD_PY_TUPLE:
	case WELD_PY_LIST:
	case WELD_PY_SET:
	case WELD_PY_SIZE: used = UPTO(seq); break;
	case WELD_PY_DICT: used = UPTO(dict); break;
	case WELD_PY_GLOBAL:
	case WELD_PY_OBJECT: used = UPTO(obj); break;
	case WELD_PY_STORAGE: used = UPTO(storage); break;
	case WELD_PY_TENSOR: break;
	}
	return offsetof(node, py) + used;
}

weld_py *weld__pk_new_node(weld_pickle *p, weld_py_kind kind)
{
	node *n = weld__pk_alloc(p, node_size(kind));
	if (!n)
		return NULL;
	n->weight = 1;
	n->py.kind = kind;
	n->py.depth = is_container(kind) ? 1 : 0;
	return &n->py;
}

char *weld__pk_copy_str(weld_pickle *p, const void *s, size_t n)
{
	if (n == SIZE_MAX) {
		weld__pk_fail_memory(p);
		return NULL;
	}
	char *d = weld__pk_alloc(p, n + 1);
	if (d && n)
		memcpy(d, s, n);
	return d;
}
