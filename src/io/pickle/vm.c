/*
 * weld_pickle_load and the opcode loop: one iterative loop reads an opcode,
 * names it for messages and runs its handler from the opcode table. Handlers
 * read their operands here and leave the stack to stack.c, values to tree.c
 * and globals and calls to policy.c, call.c and tensor.c.
 *
 * Python 2 str (BINSTRING, SHORT_BINSTRING) is a str when it is UTF-8, else
 * bytes. NEWOBJ is modelled as a call, like REDUCE; NEWOBJ_EX keyword
 * arguments of opaque classes are dropped.
 */
#include "io/pickle/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* LONG1/LONG4 payloads longer than this are refused (2**8192 is plenty). */
#define MAX_LONG_BYTES 1024u

/* ------------------------------------------------------------------------- */
/* Operands */

/* The N bytes after the current position exist. */
static weld_status need(weld_pickle *p, uint64_t n)
{
	size_t left = p->len - p->pos;
	if (n > left)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "truncated pickle: %s at offset %zu needs %llu bytes, %zu left", p->opname, p->off,
				     (unsigned long long)n, left);
	return WELD_OK;
}

/* Reads an N-byte little-endian length field after the opcode. */
static weld_status read_len(weld_pickle *p, size_t n, uint64_t *out)
{
	TRY(need(p, n));
	uint64_t v = 0;
	for (size_t k = 0; k < n; k++)
		v |= (uint64_t)p->data[p->pos + k] << (8 * k);
	*out = v;
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

/* ------------------------------------------------------------------------- */
/* Framing */

static weld_status op_proto(weld_pickle *p, uint8_t op)
{
	uint64_t n;
	TRY(read_len(p, 1, &n));
	if (n > 5)
		return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "pickle protocol %u at offset %zu is newer than 5",
				     (unsigned)n, p->off);
	return WELD_OK;
}

/* FRAME: a length hint; the data must be there. */
static weld_status op_frame(weld_pickle *p, uint8_t op)
{
	uint64_t n;
	TRY(read_len(p, 8, &n));
	if (n > p->len - p->pos)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "truncated pickle: FRAME at offset %zu announces %llu bytes, %zu left", p->off,
				     (unsigned long long)n, p->len - p->pos);
	return WELD_OK;
}

/* STOP: the value on top is the result. */
static weld_status stop(weld_pickle *p, weld_py **out)
{
	weld_py *x;
	TRY(weld__pk_pop(p, &x));
	if (weld__pk_is_getattr(x))
		return weld__pk_fail(p, WELD_ERR_UNSAFE,
				     "pickle returns builtins.getattr itself at offset %zu, which is not data; refusing to load",
				     p->off);
	if (p->pending)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "pickle creates a tensor at offset %zu that never gets a storage", p->pending_off);
	*out = x;
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* Stack and memo */

static weld_status op_mark(weld_pickle *p, uint8_t op)
{
	return weld__pk_mark(p);
}

/* POP: with nothing above the mark, Python drops the mark. */
static weld_status op_pop(weld_pickle *p, uint8_t op)
{
	if (p->nstack > weld__pk_fence(p))
		p->nstack--;
	else if (p->nmarks)
		p->nmarks--;
	else
		return weld__pk_underflow(p);
	return WELD_OK;
}

static weld_status op_pop_mark(weld_pickle *p, uint8_t op)
{
	size_t start;
	TRY(weld__pk_pop_mark(p, &start));
	p->nstack = start;
	return WELD_OK;
}

static weld_status op_dup(weld_pickle *p, uint8_t op)
{
	weld_py *x;
	TRY(weld__pk_top(p, &x));
	return weld__pk_push(p, x);
}

/* BINPUT, LONG_BINPUT; MEMOIZE puts at index len(memo), as Python does. */
static weld_status op_put(weld_pickle *p, uint8_t op)
{
	uint64_t idx = p->memo_count;
	if (op != 0x94)
		TRY(read_len(p, op == 'q' ? 1 : 4, &idx));
	return weld__pk_memo_put(p, idx);
}

/* BINGET, LONG_BINGET */
static weld_status op_get(weld_pickle *p, uint8_t op)
{
	uint64_t idx;
	TRY(read_len(p, op == 'h' ? 1 : 4, &idx));
	return weld__pk_memo_get(p, idx);
}

/* ------------------------------------------------------------------------- */
/* Constants */

static weld_status op_none(weld_pickle *p, uint8_t op)
{
	if (!p->none)
		p->none = weld__pk_new_node(p, WELD_PY_NONE);
	return weld__pk_push(p, p->none);
}

/* NEWTRUE, NEWFALSE */
static weld_status op_bool(weld_pickle *p, uint8_t op)
{
	weld_py **slot = op == 0x88 ? &p->yes : &p->no;
	if (!*slot && (*slot = weld__pk_new_node(p, WELD_PY_BOOL)))
		(*slot)->b = op == 0x88;
	return weld__pk_push(p, *slot);
}

/* BININT1, BININT2: unsigned; BININT: signed 32-bit. */
static weld_status op_binint(weld_pickle *p, uint8_t op)
{
	uint64_t n;
	TRY(read_len(p, op == 'K' ? 1 : op == 'M' ? 2 : 4, &n));
	return weld__pk_push(p, weld__pk_make_int(p, op == 'J' ? (int64_t)(int32_t)(uint32_t)n : (int64_t)n));
}

/* LONG1, LONG4 */
static weld_status op_long(weld_pickle *p, uint8_t op)
{
	uint64_t n;
	const uint8_t *b;
	TRY(read_len(p, op == 0x8a ? 1 : 4, &n));
	if (op == 0x8b && (n & 0x80000000u))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle LONG4 at offset %zu has a negative length", p->off);
	if (n > MAX_LONG_BYTES)
		return weld__pk_fail(p, WELD_ERR_LIMIT, "pickle integer at offset %zu is %llu bytes long, more than %u",
				     p->off, (unsigned long long)n, MAX_LONG_BYTES);
	TRY(read_bytes(p, n, &b));
	return weld__pk_push(p, weld__pk_make_long(p, b, (size_t)n));
}

/* BINFLOAT: big-endian double */
static weld_status op_binfloat(weld_pickle *p, uint8_t op)
{
	const uint8_t *b;
	TRY(read_bytes(p, 8, &b));
	uint64_t u = 0;
	for (int k = 0; k < 8; k++)
		u = (u << 8) | b[k];
	weld_py *x = weld__pk_new_node(p, WELD_PY_FLOAT);
	TRY_PTR(x);
	memcpy(&x->f, &u, sizeof(x->f));
	return weld__pk_push(p, x);
}

/* The length-prefixed str and bytes opcodes. */
static weld_status op_text(weld_pickle *p, uint8_t op)
{
	weld_py_kind kind = WELD_PY_STR;
	size_t lenbytes = 4;
	bool py2 = false; /* Python 2 str: text when it is UTF-8, else bytes */
	switch (op) {
	case 'X': break;                                     /* BINUNICODE */
	case 0x8c: lenbytes = 1; break;                      /* SHORT_BINUNICODE */
	case 0x8d: lenbytes = 8; break;                      /* BINUNICODE8 */
	case 'T': py2 = true; break;                         /* BINSTRING */
	case 'U': lenbytes = 1, py2 = true; break;           /* SHORT_BINSTRING */
	case 'B': kind = WELD_PY_BYTES; break;               /* BINBYTES */
	case 'C': kind = WELD_PY_BYTES, lenbytes = 1; break; /* SHORT_BINBYTES */
	default: kind = WELD_PY_BYTES, lenbytes = 8; break;  /* BINBYTES8, BYTEARRAY8 */
	}
	uint64_t n;
	const uint8_t *s;
	TRY(read_len(p, lenbytes, &n));
	if (op == 'T' && (n & 0x80000000u)) /* BINSTRING's length is signed */
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle BINSTRING at offset %zu has a negative length", p->off);
	TRY(read_bytes(p, n, &s));
	if (kind == WELD_PY_STR && !weld__utf8_valid(s, (size_t)n, true)) {
		if (!py2)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu is not valid UTF-8", p->opname,
					     p->off);
		kind = WELD_PY_BYTES;
	}
	return weld__pk_push(p, weld__pk_make_str(p, kind, s, (size_t)n));
}

/* ------------------------------------------------------------------------- */
/* Containers */

/* EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, EMPTY_SET */
static weld_status op_empty(weld_pickle *p, uint8_t op)
{
	weld_py_kind kind = op == ')'   ? WELD_PY_TUPLE
			    : op == ']' ? WELD_PY_LIST
			    : op == '}' ? WELD_PY_DICT
					: WELD_PY_SET;
	return weld__pk_push(p, weld__pk_new_node(p, kind));
}

/* TUPLE, FROZENSET: the items above the last mark. */
static weld_status op_tuple(weld_pickle *p, uint8_t op)
{
	size_t start;
	weld_py *x;
	TRY(weld__pk_pop_mark(p, &start));
	TRY(weld__pk_pop_tuple(p, start, &x));
	if (op == 0x91)
		x->kind = WELD_PY_SET;
	return weld__pk_push(p, x);
}

/* TUPLE1, TUPLE2, TUPLE3 */
static weld_status op_tuple_n(weld_pickle *p, uint8_t op)
{
	size_t n = (size_t)(op - 0x84);
	if (p->nstack < n || p->nstack - n < weld__pk_fence(p))
		return weld__pk_underflow(p);
	weld_py *t;
	TRY(weld__pk_pop_tuple(p, p->nstack - n, &t));
	return weld__pk_push(p, t);
}

/* APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS */
static weld_status op_add_items(weld_pickle *p, uint8_t op)
{
	bool dict = op == 's' || op == 'u';
	weld_py_kind want = dict ? WELD_PY_DICT : op == 0x90 ? WELD_PY_SET : WELD_PY_LIST;
	size_t start;
	/* The items are stack[start..nstack), the target just below. */
	if (op == 'a' || op == 's') {
		size_t k = op == 'a' ? 1 : 2;
		if (p->nstack < k + 1 || p->nstack - k - 1 < weld__pk_fence(p))
			return weld__pk_underflow(p);
		start = p->nstack - k;
	} else {
		TRY(weld__pk_pop_mark(p, &start));
		if (dict && (p->nstack - start) % 2)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has an odd number of items",
					     p->opname, p->off);
		if (start <= weld__pk_fence(p))
			return weld__pk_underflow(p);
	}
	TRY(weld__pk_add_items(p, p->stack[start - 1], want, p->stack + start, p->nstack - start));
	p->nstack = start;
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* Globals and calls */

/* GLOBAL: "module\nname\n" */
static weld_status op_global(weld_pickle *p, uint8_t op)
{
	const uint8_t *m = p->data + p->pos, *e1, *e2;
	size_t left = p->len - p->pos;
	e1 = memchr(m, '\n', left);
	e2 = e1 ? memchr(e1 + 1, '\n', left - (size_t)(e1 + 1 - m)) : NULL;
	if (!e2)
		return weld__pk_fail(p, WELD_ERR_FORMAT,
				     "truncated pickle: GLOBAL at offset %zu has no newline-terminated module and name",
				     p->off);
	p->pos += (size_t)(e2 + 1 - m);
	weld_py *g;
	TRY(weld__pk_global(p, m, (size_t)(e1 - m), e1 + 1, (size_t)(e2 - e1 - 1), &g));
	return weld__pk_push(p, g);
}

static weld_status op_stack_global(weld_pickle *p, uint8_t op)
{
	weld_py *mod, *name, *g;
	TRY(weld__pk_pop(p, &name));
	TRY(weld__pk_pop(p, &mod));
	if (mod->kind != WELD_PY_STR || name->kind != WELD_PY_STR)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle STACK_GLOBAL at offset %zu needs two str, got %s and %s",
				     p->off, weld__pk_kind_name(mod), weld__pk_kind_name(name));
	TRY(weld__pk_global(p, (const uint8_t *)mod->str.s, mod->str.len, (const uint8_t *)name->str.s,
			    name->str.len, &g));
	return weld__pk_push(p, g);
}

static weld_status op_binpersid(weld_pickle *p, uint8_t op)
{
	weld_py *pid, *storage;
	TRY(weld__pk_pop(p, &pid));
	TRY(weld__pk_persistent_load(p, pid, &storage));
	return weld__pk_push(p, storage);
}

/* REDUCE, NEWOBJ: cls.__new__(cls, *args) is the same model as a call. */
static weld_status op_reduce(weld_pickle *p, uint8_t op)
{
	weld_py *fn, *args, *r;
	TRY(weld__pk_pop(p, &args));
	TRY(weld__pk_pop(p, &fn));
	TRY(weld__pk_call(p, fn, args, false, &r));
	return weld__pk_push(p, r);
}

static weld_status op_newobj_ex(weld_pickle *p, uint8_t op)
{
	weld_py *fn, *args, *kw, *r;
	TRY(weld__pk_pop(p, &kw));
	TRY(weld__pk_pop(p, &args));
	TRY(weld__pk_pop(p, &fn));
	if (kw->kind != WELD_PY_DICT)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle NEWOBJ_EX at offset %zu has %s for keyword arguments",
				     p->off, weld__pk_kind_name(kw));
	TRY(weld__pk_call(p, fn, args, kw->dict.n > 0, &r));
	return weld__pk_push(p, r);
}

static weld_status op_build(weld_pickle *p, uint8_t op)
{
	weld_py *state, *inst;
	TRY(weld__pk_pop(p, &state));
	TRY(weld__pk_top(p, &inst));
	return weld__pk_build(p, inst, state);
}

/* ------------------------------------------------------------------------- */
/* The loop */

typedef weld_status op_fn(weld_pickle *p, uint8_t op);

/* Every opcode of protocols 0 to 5; RUN is NULL for STOP and those weld refuses. */
static const struct opcode {
	const char *name;
	op_fn *run;
} opcodes[256] = {
	[0x80] = {"PROTO", op_proto}, [0x95] = {"FRAME", op_frame}, ['.'] = {"STOP", NULL},
	['('] = {"MARK", op_mark}, ['0'] = {"POP", op_pop}, ['1'] = {"POP_MARK", op_pop_mark},
	['2'] = {"DUP", op_dup}, ['q'] = {"BINPUT", op_put}, ['r'] = {"LONG_BINPUT", op_put},
	[0x94] = {"MEMOIZE", op_put}, ['h'] = {"BINGET", op_get}, ['j'] = {"LONG_BINGET", op_get},
	['N'] = {"NONE", op_none}, [0x88] = {"NEWTRUE", op_bool}, [0x89] = {"NEWFALSE", op_bool},
	['K'] = {"BININT1", op_binint}, ['M'] = {"BININT2", op_binint}, ['J'] = {"BININT", op_binint},
	[0x8a] = {"LONG1", op_long}, [0x8b] = {"LONG4", op_long}, ['G'] = {"BINFLOAT", op_binfloat},
	['X'] = {"BINUNICODE", op_text}, [0x8c] = {"SHORT_BINUNICODE", op_text},
	[0x8d] = {"BINUNICODE8", op_text}, ['T'] = {"BINSTRING", op_text},
	['U'] = {"SHORT_BINSTRING", op_text}, ['B'] = {"BINBYTES", op_text},
	['C'] = {"SHORT_BINBYTES", op_text}, [0x8e] = {"BINBYTES8", op_text},
	[0x96] = {"BYTEARRAY8", op_text}, [')'] = {"EMPTY_TUPLE", op_empty}, [']'] = {"EMPTY_LIST", op_empty},
	['}'] = {"EMPTY_DICT", op_empty}, [0x8f] = {"EMPTY_SET", op_empty}, ['t'] = {"TUPLE", op_tuple},
	[0x91] = {"FROZENSET", op_tuple}, [0x85] = {"TUPLE1", op_tuple_n}, [0x86] = {"TUPLE2", op_tuple_n},
	[0x87] = {"TUPLE3", op_tuple_n}, ['a'] = {"APPEND", op_add_items}, ['e'] = {"APPENDS", op_add_items},
	['s'] = {"SETITEM", op_add_items}, ['u'] = {"SETITEMS", op_add_items},
	[0x90] = {"ADDITEMS", op_add_items}, ['c'] = {"GLOBAL", op_global},
	[0x93] = {"STACK_GLOBAL", op_stack_global}, ['Q'] = {"BINPERSID", op_binpersid},
	['R'] = {"REDUCE", op_reduce}, [0x81] = {"NEWOBJ", op_reduce}, [0x92] = {"NEWOBJ_EX", op_newobj_ex},
	['b'] = {"BUILD", op_build},
	/* Text-format and extension opcodes, which torch.save never writes. */
	['I'] = {"INT"}, ['L'] = {"LONG"}, ['F'] = {"FLOAT"}, ['S'] = {"STRING"}, ['V'] = {"UNICODE"},
	['g'] = {"GET"}, ['p'] = {"PUT"}, ['d'] = {"DICT"}, ['l'] = {"LIST"}, ['P'] = {"PERSID"},
	['i'] = {"INST"}, ['o'] = {"OBJ"}, [0x82] = {"EXT1"}, [0x83] = {"EXT2"}, [0x84] = {"EXT4"},
	[0x97] = {"NEXT_BUFFER"}, [0x98] = {"READONLY_BUFFER"},
};

static weld_status run(weld_pickle *p, weld_py **out)
{
	for (;;) {
		if (p->pos >= p->len)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "truncated pickle: data ends at offset %zu before STOP",
					     p->pos);
		p->off = p->pos;
		uint8_t op = p->data[p->pos++];
		const struct opcode *o = &opcodes[op];
		p->opname = o->name ? o->name : "?";
		if (op == '.')
			return stop(p, out);
		if (!o->name)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "unknown pickle opcode 0x%02x at offset %zu", op, p->off);
		if (!o->run)
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED,
					     "pickle opcode %s (0x%02x) at offset %zu is not supported", p->opname, op,
					     p->off);
		TRY(o->run(p, op));
	}
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
	weld__pk_stack_clear(p);
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
