/*
 * weld_pickle_load and the opcode loop: one iterative loop reads each opcode
 * and its operands, and leaves the stack to stack.c, values to tree.c and
 * globals and calls to policy.c, call.c and tensor.c.
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
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle BINSTRING at offset %zu has a negative length", p->off);
	TRY(read_bytes(p, n, &s));
	if (kind == WELD_PY_STR && !weld__utf8_valid(s, (size_t)n, true)) {
		if (!lenient)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu is not valid UTF-8", p->opname, p->off);
		kind = WELD_PY_BYTES; /* Python 2 str that is not text */
	}
	return weld__pk_push(p, weld__pk_make_str(p, kind, s, (size_t)n));
}

static weld_status tuple_n(weld_pickle *p, size_t n)
{
	if (p->nstack < n || p->nstack - n < weld__pk_fence(p))
		return weld__pk_underflow(p);
	weld_py *t;
	TRY(weld__pk_pop_tuple(p, p->nstack - n, &t));
	return weld__pk_push(p, t);
}

static weld_status run(weld_pickle *p, weld_py **out)
{
	for (;;) {
		if (p->pos >= p->len)
			return weld__pk_fail(p, WELD_ERR_FORMAT, "truncated pickle: data ends at offset %zu before STOP", p->pos);
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
				return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "pickle protocol %u at offset %zu is newer than 5",
					    (unsigned)n, p->off);
			break;
		case 0x95: /* FRAME: a length hint; the data must be there */
			TRY(read_len(p, 8, &n));
			if (n > p->len - p->pos)
				return weld__pk_fail(p, WELD_ERR_FORMAT, "truncated pickle: FRAME at offset %zu announces %llu bytes, %zu left",
					    p->off, (unsigned long long)n, p->len - p->pos);
			break;
		case '.': /* STOP */
			TRY(weld__pk_pop(p, &x));
			if (weld__pk_is_getattr(x))
				return weld__pk_unsafe_global(p, "builtins", "getattr");
			if (p->pending)
				return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle creates a tensor at offset %zu that never gets a storage",
					    p->pending_off);
			*out = x;
			return WELD_OK;
		case '(': /* MARK */
			TRY(weld__pk_mark(p));
			break;
		case '0': /* POP: with nothing above the mark, Python drops the mark */
			if (p->nstack > weld__pk_fence(p))
				p->nstack--;
			else if (p->nmarks)
				p->nmarks--;
			else
				return weld__pk_underflow(p);
			break;
		case '1': /* POP_MARK */
			TRY(weld__pk_pop_mark(p, &start));
			p->nstack = start;
			break;
		case '2': /* DUP */
			TRY(weld__pk_top(p, &x));
			TRY(weld__pk_push(p, x));
			break;
		case 'N':
			if (!p->none)
				p->none = weld__pk_new_node(p, WELD_PY_NONE);
			TRY(weld__pk_push(p, p->none));
			break;
		case 0x88: /* NEWTRUE */
		case 0x89: /* NEWFALSE */ {
			weld_py **slot = op == 0x88 ? &p->yes : &p->no;
			if (!*slot && (*slot = weld__pk_new_node(p, WELD_PY_BOOL)))
				(*slot)->b = op == 0x88;
			TRY(weld__pk_push(p, *slot));
			break;
		}
		case 'K': /* BININT1 */
			TRY(read_len(p, 1, &n));
			TRY(weld__pk_push(p, weld__pk_make_int(p, (int64_t)n)));
			break;
		case 'M': /* BININT2 */
			TRY(read_len(p, 2, &n));
			TRY(weld__pk_push(p, weld__pk_make_int(p, (int64_t)n)));
			break;
		case 'J': /* BININT: signed 32-bit */
			TRY(read_len(p, 4, &n));
			TRY(weld__pk_push(p, weld__pk_make_int(p, (int64_t)(int32_t)(uint32_t)n)));
			break;
		case 0x8a: /* LONG1 */
		case 0x8b: /* LONG4 */
			TRY(read_len(p, op == 0x8a ? 1 : 4, &n));
			if (op == 0x8b && (n & 0x80000000u))
				return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle LONG4 at offset %zu has a negative length", p->off);
			if (n > MAX_LONG_BYTES)
				return weld__pk_fail(p, WELD_ERR_LIMIT, "pickle integer at offset %zu is %llu bytes long, more than %u",
					    p->off, (unsigned long long)n, MAX_LONG_BYTES);
			TRY(read_bytes(p, n, &b));
			TRY(weld__pk_push(p, weld__pk_make_long(p, b, (size_t)n)));
			break;
		case 'G': { /* BINFLOAT: big-endian double */
			TRY(read_bytes(p, 8, &b));
			uint64_t u = 0;
			for (int k = 0; k < 8; k++)
				u = (u << 8) | b[k];
			x = weld__pk_new_node(p, WELD_PY_FLOAT);
			TRY_PTR(x);
			memcpy(&x->f, &u, sizeof(x->f));
			TRY(weld__pk_push(p, x));
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
		case ')': TRY(weld__pk_push(p, weld__pk_new_node(p, WELD_PY_TUPLE))); break;
		case ']': TRY(weld__pk_push(p, weld__pk_new_node(p, WELD_PY_LIST))); break;
		case '}': TRY(weld__pk_push(p, weld__pk_new_node(p, WELD_PY_DICT))); break;
		case 0x8f: TRY(weld__pk_push(p, weld__pk_new_node(p, WELD_PY_SET))); break;         /* EMPTY_SET */
		case 't': /* TUPLE */
			TRY(weld__pk_pop_mark(p, &start));
			TRY(weld__pk_pop_tuple(p, start, &x));
			TRY(weld__pk_push(p, x));
			break;
		case 0x85: TRY(tuple_n(p, 1)); break;
		case 0x86: TRY(tuple_n(p, 2)); break;
		case 0x87: TRY(tuple_n(p, 3)); break;
		case 0x91: /* FROZENSET */
			TRY(weld__pk_pop_mark(p, &start));
			TRY(weld__pk_pop_tuple(p, start, &x));
			x->kind = WELD_PY_SET;
			TRY(weld__pk_push(p, x));
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
			break;
		}
		case 'q': /* BINPUT */
			TRY(read_len(p, 1, &n));
			TRY(weld__pk_memo_put(p, n));
			break;
		case 'r': /* LONG_BINPUT */
			TRY(read_len(p, 4, &n));
			TRY(weld__pk_memo_put(p, n));
			break;
		case 0x94: /* MEMOIZE */
			TRY(weld__pk_memo_put(p, p->memo_count));
			break;
		case 'h': /* BINGET */
			TRY(read_len(p, 1, &n));
			TRY(weld__pk_memo_get(p, n));
			break;
		case 'j': /* LONG_BINGET */
			TRY(read_len(p, 4, &n));
			TRY(weld__pk_memo_get(p, n));
			break;
		case 'c': { /* GLOBAL: "module\nname\n" */
			const uint8_t *m = p->data + p->pos, *e1, *e2;
			size_t left = p->len - p->pos;
			e1 = memchr(m, '\n', left);
			e2 = e1 ? memchr(e1 + 1, '\n', left - (size_t)(e1 + 1 - m)) : NULL;
			if (!e2)
				return weld__pk_fail(p, WELD_ERR_FORMAT,
					    "truncated pickle: GLOBAL at offset %zu has no newline-terminated module and name",
					    p->off);
			p->pos += (size_t)(e2 + 1 - m);
			TRY(weld__pk_global(p, m, (size_t)(e1 - m), e1 + 1, (size_t)(e2 - e1 - 1), &z));
			TRY(weld__pk_push(p, z));
			break;
		}
		case 0x93: /* STACK_GLOBAL */
			TRY(weld__pk_pop(p, &y));
			TRY(weld__pk_pop(p, &x));
			if (x->kind != WELD_PY_STR || y->kind != WELD_PY_STR)
				return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle STACK_GLOBAL at offset %zu needs two str, got %s and %s",
					    p->off, weld__pk_kind_name(x), weld__pk_kind_name(y));
			TRY(weld__pk_global(p, (const uint8_t *)x->str.s, x->str.len, (const uint8_t *)y->str.s, y->str.len, &z));
			TRY(weld__pk_push(p, z));
			break;
		case 'Q': /* BINPERSID */
			TRY(weld__pk_pop(p, &x));
			TRY(weld__pk_persistent_load(p, x, &y));
			TRY(weld__pk_push(p, y));
			break;
		case 'R': /* REDUCE */
			TRY(weld__pk_pop(p, &y));
			TRY(weld__pk_pop(p, &x));
			TRY(weld__pk_call(p, x, y, false, &z));
			TRY(weld__pk_push(p, z));
			break;
		case 0x81: /* NEWOBJ: cls.__new__(cls, *args), same model as a call */
			TRY(weld__pk_pop(p, &y));
			TRY(weld__pk_pop(p, &x));
			TRY(weld__pk_call(p, x, y, false, &z));
			TRY(weld__pk_push(p, z));
			break;
		case 0x92: { /* NEWOBJ_EX: keyword arguments of opaque classes are dropped */
			weld_py *kw = NULL;
			TRY(weld__pk_pop(p, &kw));
			TRY(weld__pk_pop(p, &y));
			TRY(weld__pk_pop(p, &x));
			if (kw->kind != WELD_PY_DICT)
				return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle NEWOBJ_EX at offset %zu has %s for keyword arguments",
					    p->off, weld__pk_kind_name(kw));
			TRY(weld__pk_call(p, x, y, kw->dict.n > 0, &z));
			TRY(weld__pk_push(p, z));
			break;
		}
		case 'b': /* BUILD */
			TRY(weld__pk_pop(p, &x));
			TRY(weld__pk_top(p, &y));
			TRY(weld__pk_build(p, y, x));
			break;
		case 'I': case 'L': case 'F': case 'S': case 'V': case 'g': case 'p': case 'd':
		case 'l': case 'P': case 'i': case 'o': case 0x82: case 0x83: case 0x84: case 0x97: case 0x98:
			return weld__pk_fail(p, WELD_ERR_UNSUPPORTED, "pickle opcode %s (0x%02x) at offset %zu is not supported",
				    p->opname, op, p->off);
		default:
			return weld__pk_fail(p, WELD_ERR_FORMAT, "unknown pickle opcode 0x%02x at offset %zu", op, p->off);
		}
	}
}

/* ------------------------------------------------------------------------- */
/* API */

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
