/*
 * A safe pickle reader for what torch.save and DeepSpeed write (shared docs,
 * section B). It builds an inert object tree and never calls anything:
 * GLOBAL pushes a symbol only when it is on an allowlist of the data types
 * real checkpoints use (policy.c); any other global is refused with
 * WELD_ERR_UNSAFE naming it. REDUCE/NEWOBJ/BUILD on a known symbol
 * (OrderedDict, torch.Size, set, _codecs.encode, the torch rebuild functions)
 * is interpreted; on the other allowlisted classes (DeepSpeed, numpy,
 * argparse.Namespace...) it yields an opaque object recording the symbol,
 * arguments and state.
 *
 * All objects live in one arena owned by the weld_pickle and are freed with
 * it; shared references through the memo are the same object (a tied weight
 * appears twice as one tensor node).
 */
#ifndef WELD_PICKLE_H
#define WELD_PICKLE_H

#include "util/util.h"

typedef enum weld_py_kind {
	WELD_PY_NONE,
	WELD_PY_BOOL,
	WELD_PY_INT,     /* any size: small ones in .i.v, big ones also in .i.le */
	WELD_PY_FLOAT,
	WELD_PY_STR,     /* UTF-8 in .str */
	WELD_PY_BYTES,   /* raw in .str */
	WELD_PY_TUPLE,   /* .seq */
	WELD_PY_LIST,    /* .seq */
	WELD_PY_SET,     /* .seq (set and frozenset) */
	WELD_PY_SIZE,    /* torch.Size: .seq of ints */
	WELD_PY_DICT,    /* .dict; .dict.ordered for collections.OrderedDict */
	WELD_PY_GLOBAL,  /* a bare global: .obj.module/.obj.name (e.g. torch float32) */
	WELD_PY_OBJECT,  /* opaque instance of .obj.module/.obj.name with .obj.args/.obj.state */
	WELD_PY_STORAGE, /* from a persistent id */
	WELD_PY_TENSOR
} weld_py_kind;

typedef struct weld_py weld_py;

/*
 * A value. Only the union member of its kind is there: the reader allocates
 * each value just big enough for that member, so read no other, and never
 * copy a weld_py whole.
 */
struct weld_py {
	weld_py_kind kind;
	uint32_t depth; /* nesting depth of this value (leaves 0) */
	union {
		bool b;
		struct {
			int64_t v;        /* exact when !big */
			bool big;         /* does not fit int64 */
			const uint8_t *le; /* two's complement little-endian bytes when big */
			size_t nle;
		} i;
		double f;
		struct {
			const char *s; /* NUL-terminated copy; may contain NULs for bytes */
			size_t len;
		} str;
		struct {
			weld_py **items;
			size_t n, cap;
		} seq;
		struct {
			weld_py **keys, **vals;
			size_t n, cap;
			bool ordered;
		} dict;
		struct {
			const char *module, *name;
			weld_py *args;  /* may be NULL */
			weld_py *state; /* may be NULL */
		} obj;
		struct {
			const char *key;      /* record key ("0") */
			const char *location; /* "cpu", "cuda:0"... */
			weld_dtype dtype;     /* from the storage class; INVALID when untyped */
			bool untyped;         /* UntypedStorage: numel counts bytes */
			uint64_t numel;
		} storage;
		struct {
			weld_py *storage;         /* WELD_PY_STORAGE */
			weld_dtype dtype;         /* element type */
			uint64_t storage_offset;  /* in elements of dtype */
			size_t ndim;
			uint64_t shape[WELD_MAX_DIMS];
			int64_t stride[WELD_MAX_DIMS];
			bool requires_grad;
			bool parameter;           /* wrapped by _rebuild_parameter */
			/*
			 * torch's view bits, from _rebuild_tensor_v2/v3's metadata
			 * ({'neg': True} / {'conj': True}): the values are the
			 * storage's negated / conjugated. Readers refuse such views.
			 */
			bool neg, conj;
		} tensor;
	};
};

/*
 * Bounds; a stream that exceeds one gets WELD_ERR_LIMIT naming it. A zero
 * field means its default.
 */
typedef struct weld_pickle_limits {
	uint32_t max_depth;    /* nesting of containers (default 1000) */
	size_t max_memo;       /* memo entries (default 1<<24) */
	size_t max_stack;      /* stack + mark entries (default 1<<24) */
	size_t max_bytes;      /* arena, stack, marks and memo together (default 1 GiB) */
	/*
	 * Values in the tree counting every shared (memo) reference again
	 * (default 1<<28): bounds a full walk of a "billion laughs" DAG.
	 */
	uint64_t max_nodes;
} weld_pickle_limits;

typedef struct weld_pickle weld_pickle;

/* An empty arena. LIMITS may be NULL for the defaults. */
weld_status weld_pickle_new(weld_pickle **out, const weld_pickle_limits *limits, weld_error *err);
void weld_pickle_free(weld_pickle *p);

/*
 * Run one pickle from DATA[0..LEN) up to and including its STOP opcode.
 * *CONSUMED gets the bytes used (several pickles can follow one another,
 * as in the legacy torch format). *OUT points into P's arena.
 * Errors name the opcode and its byte offset; a stream that ends before
 * STOP is WELD_ERR_FORMAT with a message starting "truncated pickle".
 * The caller prefixes the file name.
 */
weld_status weld_pickle_load(weld_pickle *p, const uint8_t *data, size_t len, size_t *consumed,
			     weld_py **out, weld_error *err);

/*
 * Accepts global DOTTED ("MODULE.NAME", split at the last dot) in P's later
 * loads as well, as an inert class (opaque objects, never called). Names with
 * a dunder part are refused (WELD_ERR_INVALID_ARG).
 */
weld_status weld_pickle_allow_global(weld_pickle *p, const char *dotted, weld_error *err);

/* Helpers for walking trees. */
/* Value for KEY (a str key) in dict D, or NULL. */
weld_py *weld_py_dict_get(const weld_py *d, const char *key);
/* true when O is a str equal to S. */
bool weld_py_is_str(const weld_py *o, const char *s);
/*
 * M, an index of the str keys of dict O (or the str items of list O):
 * weld_map_get(M, S) is the position of the last one equal to S, as
 * weld_py_dict_get finds it, without a scan per lookup. O must outlive M;
 * free M with weld_map_clear. false (M empty) when out of memory.
 */
bool weld_py_index_strs(const weld_py *o, weld_map *m);

#endif /* WELD_PICKLE_H */
