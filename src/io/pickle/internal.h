/*
 * The insides of the safe pickle reader, shared by its files only (pickle.h
 * is the API; shared docs section B). One iterative loop decodes opcodes into
 * an inert object tree; nothing is ever imported or called.
 *
 *   vm.c      weld_pickle_load and the opcode loop
 *   stack.c   the VM stack, marks and memo
 *   arena.c   weld_pickle itself: its limits and the arena every value lives in
 *   tree.c    values: leaves, containers, depth and weight
 *   policy.c  what a GLOBAL names: refused, interpreted or opaque
 *   call.c    REDUCE/NEWOBJ/BUILD on Python symbols, opaque objects
 *   tensor.c  torch storages, tensors and parameters
 *
 * Functions that return a weld_py * return NULL on failure with p->st set
 * (weld__pk_fail, weld__pk_fail_memory and the out-of-memory paths set it).
 */
#ifndef WELD_PICKLE_INTERNAL_H
#define WELD_PICKLE_INTERNAL_H

#include "io/pickle/pickle.h"

/* What a GLOBAL names, decided once when it is pushed (policy.c). */
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

struct weld_pickle {
	weld_pickle_limits lim;
	/* arena */
	struct block *blocks;
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
	size_t pending;      /* tensors awaiting BUILD */
	size_t pending_off;  /* offset of the first of them */
	/* classes the caller allowed (weld_pickle_allow_global); malloc'd */
	struct {
		char *mod;
		const char *name;
	} *allow;
	size_t nallow, cap_allow;
};

static inline node *hdr(const weld_py *o)
{
	return (node *)((char *)(uintptr_t)o - offsetof(node, py));
}

/* Tuple, list or torch.Size: what Python code would index or iterate. */
static inline bool is_seq(const weld_py *o)
{
	return o->kind == WELD_PY_TUPLE || o->kind == WELD_PY_LIST || o->kind == WELD_PY_SIZE;
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

/* arena.c */
/* Sets p->err (when there is one) and p->st to S with a formatted message. */
weld_status weld__pk_fail(weld_pickle *p, weld_status s, const char *fmt, ...) WELD_PRINTF(3, 4);
/* WELD_ERR_LIMIT: the load would need more than lim.max_bytes. */
weld_status weld__pk_fail_memory(weld_pickle *p);
/* N zeroed bytes from the arena. */
void *weld__pk_alloc(weld_pickle *p, size_t n);
/* Grows a malloc'd VM array (stack, marks, memo) to hold at least WANT items. */
weld_status weld__pk_grow_vec(weld_pickle *p, void **vec, size_t *cap, size_t want, size_t item);
/* An empty value of KIND: depth 1 for containers, 0 for leaves; weight 1. */
weld_py *weld__pk_new_node(weld_pickle *p, weld_py_kind kind);
/* A NUL-terminated arena copy of S[0..N). */
char *weld__pk_copy_str(weld_pickle *p, const void *s, size_t n);

/* stack.c */
/* Forgets the previous pickle's stack, marks and memo. */
void weld__pk_stack_clear(weld_pickle *p);
/* The stack index of the last mark (0 without one): pops never go below it. */
size_t weld__pk_fence(const weld_pickle *p);
weld_status weld__pk_underflow(weld_pickle *p);
/* Pushes O; a NULL O returns p->st, so a failed constructor can be pushed directly. */
weld_status weld__pk_push(weld_pickle *p, weld_py *o);
weld_status weld__pk_pop(weld_pickle *p, weld_py **out);
weld_status weld__pk_top(weld_pickle *p, weld_py **out);
weld_status weld__pk_mark(weld_pickle *p);
/* Pops the last mark; *START gets the stack index it recorded. */
weld_status weld__pk_pop_mark(weld_pickle *p, size_t *start);
/* Pops stack[START..) into a fresh tuple. */
weld_status weld__pk_pop_tuple(weld_pickle *p, size_t start, weld_py **out);
weld_status weld__pk_memo_put(weld_pickle *p, uint64_t idx);
/* Pushes memo entry IDX. */
weld_status weld__pk_memo_get(weld_pickle *p, uint64_t idx);

/* tree.c */
/* "an int", "a list"...: what a value is, for messages. */
const char *weld__pk_kind_name(const weld_py *o);
weld_py *weld__pk_make_int(weld_pickle *p, int64_t v);
/* Little-endian two's complement B[0..N) (LONG1/LONG4). */
weld_py *weld__pk_make_long(weld_pickle *p, const uint8_t *b, size_t n);
/* A str or bytes value holding a copy of S[0..N). */
weld_py *weld__pk_make_str(weld_pickle *p, weld_py_kind kind, const void *s, size_t n);
/* Records that CHILD now lives inside PARENT (checks cycles and the limits). */
weld_status weld__pk_link_child(weld_pickle *p, weld_py *parent, weld_py *child);
/* Room for EXTRA more items in a seq or dict. */
weld_status weld__pk_reserve(weld_pickle *p, weld_py *o, size_t extra);
weld_status weld__pk_seq_add(weld_pickle *p, weld_py *s, weld_py *child);
weld_status weld__pk_dict_add(weld_pickle *p, weld_py *d, weld_py *k, weld_py *v);
/* A new seq of KIND with SRC's items (none when SRC is NULL), sharing its array. */
weld_py *weld__pk_share_seq(weld_pickle *p, weld_py_kind kind, const weld_py *src);
/* APPEND(S)/SETITEM(S)/ADDITEMS: ITEMS[0..N) (key, value, key... for a dict) into TARGET. */
weld_status weld__pk_add_items(weld_pickle *p, weld_py *target, weld_py_kind want, weld_py *const *items, size_t n);
/* Whether O is builtins.getattr (only ever interpreted, never a value). */
bool weld__pk_is_getattr(const weld_py *o);
/* FN was called with GOT arguments where it takes EXPECT ("4", "6 or 7"). */
weld_status weld__pk_bad_args(weld_pickle *p, const weld_py *fn, const char *expect, size_t got);

/* policy.c */
/* A GLOBAL for module MOD and name NAME, or WELD_ERR_UNSAFE when it is not allowlisted. */
weld_status weld__pk_global(weld_pickle *p, const uint8_t *mod, size_t nmod, const uint8_t *name, size_t nname,
			    weld_py **out);
weld_status weld__pk_unsafe_global(weld_pickle *p, const char *module, const char *name);
/*
 * Whether *MOD.*NAME is on the built-in allowlist, the one weld__pk_global
 * applies (weld scan asks it, so the two never disagree). *MOD and *NAME are
 * first mapped to their Python 3 spelling; *KIND gets the kind (may be NULL).
 */
bool weld__pk_global_allowed(const char **mod, const char **name, enum gkind *kind);
/*
 * Whether builtins.getattr may fetch a member of class MODULE.NAME: only the
 * enums whose members real files pickle that way (DeepSpeed's ZeroStageEnum).
 * getattr on any other class (a path class's write_text, a function's
 * __globals__...) is how payloads reach code, so it is refused.
 */
bool weld__pk_getattr_target(const char *module, const char *name);
/* WELD_ERR_INVALID_ARG unless DOTTED is a MODULE.NAME a user may allow (no dunder part). */
weld_status weld__pk_allow_name_check(const char *dotted, weld_error *err);

/* call.c */
/* REDUCE/NEWOBJ: FN applied to the tuple ARGS. */
weld_status weld__pk_call(weld_pickle *p, weld_py *fn, weld_py *args, bool has_kwargs, weld_py **out);
/* BUILD: STATE applied to INST (which stays on the stack). */
weld_status weld__pk_build(weld_pickle *p, weld_py *inst, weld_py *state);

/* tensor.c */
/* A call on a torch symbol: the rebuild functions, Parameter, torch.Tensor. */
weld_status weld__pk_call_torch(weld_pickle *p, const weld_py *fn, const weld_py *args, weld_py **out);
/* BINPERSID: the storage that persistent id PID names. */
weld_status weld__pk_persistent_load(weld_pickle *p, const weld_py *pid, weld_py **out);
/* BUILD on tensor INST. */
weld_status weld__pk_build_tensor(weld_pickle *p, weld_py *inst, const weld_py *state);

#endif /* WELD_PICKLE_INTERNAL_H */
