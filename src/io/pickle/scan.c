/*
 * The opcode walker behind weld_scan_file (src/io/scan.c): reads a pickle as
 * pickletools.genops does, building no object, and records every global it
 * references (GLOBAL, STACK_GLOBAL, INST, EXT*) with its opcode offset and
 * the verdict of the reader's own allowlist (weld__pk_global_allowed).
 *
 * STACK_GLOBAL takes its module and name from the stack, so a shadow stack
 * and memo follow every opcode's stack effect, remembering only strings,
 * globals and 2-tuples; an operand that is not a known string is an
 * "unknown" global, unsafe. builtins.getattr is allowed as the reader allows
 * it: only when every use is REDUCE(getattr, (allowlisted class, member
 * name)) and the member is never called.
 */
#include "io/pickle/internal.h"
#include "io/pickle/scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum vkind { V_OTHER, V_STR, V_GLOBAL, V_TUPLE2, V_MEMBER };

typedef struct val {
	uint8_t kind;
	bool str_known;      /* V_STR: its text is s[0..n) */
	const uint8_t *s;
	size_t n;
	size_t g;            /* V_GLOBAL, V_MEMBER: index in the scan's globals */
	size_t a, b;         /* V_TUPLE2: the items */
} val;

typedef struct walker {
	weld_pk_scan *sc;
	const uint8_t *d;
	size_t len, pos, off;
	val *vals;
	size_t nvals, capvals;
	size_t *stack, nstack, capstack;
	size_t *marks, nmarks, capmarks;
	size_t *memo, capmemo; /* value index + 1; 0 = empty */
	size_t memo_count;
	bool nomem;
	char problem[200];
} walker;

#define MAX_MEMO ((size_t)1 << 24)

static bool grow(walker *w, void **v, size_t *cap, size_t want, size_t item)
{
	if (want <= *cap)
		return true;
	size_t c = *cap ? *cap : 16;
	while (c < want)
		c *= 2;
	void *n = weld__reallocarray(*v, c, item);
	if (!n) {
		w->nomem = true;
		return false;
	}
	memset((char *)n + *cap * item, 0, (c - *cap) * item);
	*v = n;
	*cap = c;
	return true;
}

static bool bad(walker *w, const char *fmt, const char *what)
{
	snprintf(w->problem, sizeof(w->problem), fmt, what, w->off);
	return false;
}

static bool new_val(walker *w, val v, size_t *out)
{
	if (!grow(w, (void **)&w->vals, &w->capvals, w->nvals + 1, sizeof(val)))
		return false;
	w->vals[w->nvals] = v;
	*out = w->nvals++;
	return true;
}

static bool push_idx(walker *w, size_t i)
{
	if (!grow(w, (void **)&w->stack, &w->capstack, w->nstack + 1, sizeof(size_t)))
		return false;
	w->stack[w->nstack++] = i;
	return true;
}

static bool push(walker *w, val v)
{
	size_t i;
	return new_val(w, v, &i) && push_idx(w, i);
}

static size_t fence(const walker *w)
{
	return w->nmarks ? w->marks[w->nmarks - 1] : 0;
}

/* A value used as data (put in a container, a state, an argument): getattr may not be. */
static void consume(walker *w, size_t i)
{
	const val *v = &w->vals[i];
	if (v->kind == V_GLOBAL && w->sc->globals[v->g].getattr)
		w->sc->globals[v->g].getattr_misused = true;
}

/* Value I called by OBJ or INST, or given attributes by BUILD: its global (or getattr's) is unsafe. */
static void mark_misused(walker *w, size_t i)
{
	const val *v = &w->vals[i];
	if (v->kind == V_GLOBAL)
		w->sc->globals[v->g].misused = true;
	else if (v->kind == V_MEMBER)
		w->sc->globals[v->g].getattr_misused = true;
}

static bool pop(walker *w, size_t *out, const char *op)
{
	if (w->nstack <= fence(w))
		return bad(w, "pickle %s at offset %zu pops an empty stack", op);
	*out = w->stack[--w->nstack];
	return true;
}

static bool pop_consume(walker *w, size_t n, const char *op)
{
	size_t i;
	while (n--) {
		if (!pop(w, &i, op))
			return false;
		consume(w, i);
	}
	return true;
}

/* Pops to the last mark; *N gets how many items were above it, *BASE where they start. */
static bool pop_mark(walker *w, size_t *base, size_t *n, const char *op)
{
	if (!w->nmarks)
		return bad(w, "pickle %s at offset %zu has no mark", op);
	*base = w->marks[--w->nmarks];
	*n = w->nstack - *base;
	w->nstack = *base;
	return true;
}

static bool need(walker *w, size_t n, const char *op)
{
	if (w->len - w->pos < n)
		return bad(w, "truncated pickle: %s at offset %zu runs past the end", op);
	return true;
}

static uint64_t le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A newline-terminated argument (text opcodes): *S, *N without the newline. */
static bool line(walker *w, const uint8_t **s, size_t *n, const char *op)
{
	const uint8_t *nl = memchr(w->d + w->pos, '\n', w->len - w->pos);
	if (!nl)
		return bad(w, "truncated pickle: %s at offset %zu has no end of line", op);
	*s = w->d + w->pos;
	*n = (size_t)(nl - *s);
	w->pos += *n + 1;
	return true;
}

/* true when the user allowed M.N (--allow-global): a plain class, as the reader treats it. */
static bool user_allowed(const weld_pk_scan *sc, const char *m, const char *n)
{
	size_t nm = strlen(m);
	for (size_t i = 0; i < sc->nallow; i++) {
		const char *a = sc->allow[i];
		/* Split at the last dot, as weld_pickle_allow_global splits it. */
		if (strncmp(a, m, nm) == 0 && a[nm] == '.' && !strchr(n, '.') && strcmp(a + nm + 1, n) == 0)
			return true;
	}
	return false;
}

/* Records a global M.N (M NULL: unknown) at the current opcode; *G its index. */
static bool record(walker *w, const uint8_t *m, size_t nm, const uint8_t *n, size_t nn, const char *why, size_t *g)
{
	weld_pk_scan *sc = w->sc;
	if (!grow(w, (void **)&sc->globals, &sc->cap, sc->n + 1, sizeof(*sc->globals)))
		return false;
	weld_pk_scan_global *x = &sc->globals[sc->n];
	memset(x, 0, sizeof(*x));
	x->offset = w->off;
	if (m) {
		if (!nm || !nn || memchr(m, 0, nm) || memchr(n, 0, nn) || !weld__utf8_valid(m, nm, true) ||
		    !weld__utf8_valid(n, nn, true))
			return bad(w, "pickle %s at offset %zu has an empty or malformed name", "global");
		char *ms = weld__strndup((const char *)m, nm), *ns = weld__strndup((const char *)n, nn);
		const char *mm = ms, *mn = ns;
		enum gkind kind = G_PLAIN;
		if (ms && ns) {
			x->allowed = weld__pk_global_allowed(&mm, &mn, &kind) || user_allowed(sc, mm, mn);
			x->module = weld__strdup(mm);
			x->name = weld__strdup(mn);
		}
		free(ms);
		free(ns);
		if (!x->module || !x->name) {
			free(x->module);
			free(x->name);
			w->nomem = true;
			return false;
		}
		x->plain_class = x->allowed && kind == G_PLAIN;
		x->getattr_target = x->plain_class && weld__pk_getattr_target(x->module, x->name);
		x->getattr = x->allowed && kind == G_GETATTR;
	} else {
		x->why = why;
	}
	*g = sc->n++;
	return true;
}

static bool push_global(walker *w, const uint8_t *m, size_t nm, const uint8_t *n, size_t nn, const char *why)
{
	size_t g;
	return record(w, m, nm, n, nn, why, &g) && push(w, (val){.kind = V_GLOBAL, .g = g});
}

/* REDUCE/NEWOBJ: FN called with ARGS; the getattr rule (call.c getattr_member). */
static bool call(walker *w, size_t fn, size_t args)
{
	const val *f = &w->vals[fn], *a = &w->vals[args];
	weld_pk_scan_global *gs = w->sc->globals;
	if (f->kind == V_MEMBER) {
		gs[f->g].getattr_misused = true; /* calls a member fetched with getattr */
		return push(w, (val){.kind = V_OTHER});
	}
	if (f->kind != V_GLOBAL || !gs[f->g].getattr) {
		consume(w, fn);
		consume(w, args);
		return push(w, (val){.kind = V_OTHER});
	}
	const val *cls = a->kind == V_TUPLE2 ? &w->vals[a->a] : NULL, *mem = cls ? &w->vals[a->b] : NULL;
	if (!cls || cls->kind != V_GLOBAL || !gs[cls->g].getattr_target || mem->kind != V_STR || !mem->str_known ||
	    memchr(mem->s, 0, mem->n) || (mem->n >= 2 && mem->s[0] == '_' && mem->s[1] == '_')) {
		gs[f->g].getattr_misused = true;
		return push(w, (val){.kind = V_OTHER});
	}
	gs[f->g].getattr_used = true;
	return push(w, (val){.kind = V_MEMBER, .g = f->g});
}

static bool op_text(walker *w, uint8_t op, const char *name)
{
	size_t lenb = 0, n;
	bool str = true;
	switch (op) {
	case 'X': case 'B': lenb = 4; break;
	case 0x8c: case 'U': case 'C': lenb = 1; break;
	case 0x8d: case 0x8e: case 0x96: lenb = 8; break;
	case 'T': lenb = 4; break;
	}
	if (op == 'B' || op == 'C' || op == 0x8e || op == 0x96)
		str = false;
	if (!need(w, lenb, name))
		return false;
	uint64_t l = le(w->d + w->pos, lenb);
	w->pos += lenb;
	if (l > w->len - w->pos)
		return bad(w, "truncated pickle: %s at offset %zu runs past the end", name);
	n = (size_t)l;
	const uint8_t *s = w->d + w->pos;
	w->pos += n;
	return push(w, (val){.kind = str ? V_STR : V_OTHER, .str_known = str, .s = s, .n = n});
}

/* Text-format string opcodes: STRING ('quoted' repr) and UNICODE (raw-unicode-escape). */
static bool op_text_line(walker *w, uint8_t op, const char *name)
{
	const uint8_t *s;
	size_t n;
	if (!line(w, &s, &n, name))
		return false;
	if (op == 'S') {
		if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
			return bad(w, "pickle %s at offset %zu is not a quoted string", name);
		s++, n -= 2;
	}
	bool known = !memchr(s, '\\', n);
	return push(w, (val){.kind = V_STR, .str_known = known, .s = s, .n = n});
}

static bool op_memo(walker *w, uint8_t op, const char *name)
{
	size_t n = op == 'q' || op == 'h' ? 1 : op == 'r' || op == 'j' ? 4 : 0;
	uint64_t idx;
	if (op == 'p' || op == 'g') {
		const uint8_t *s;
		size_t len;
		if (!line(w, &s, &len, name))
			return false;
		char buf[24] = {0};
		if (len == 0 || len >= sizeof(buf) || strspn((const char *)s, "0123456789") < len)
			return bad(w, "pickle %s at offset %zu has a bad memo index", name);
		memcpy(buf, s, len);
		idx = strtoull(buf, NULL, 10);
	} else if (op == 0x94) {
		idx = w->memo_count;
	} else {
		if (!need(w, n, name))
			return false;
		idx = le(w->d + w->pos, n);
		w->pos += n;
	}
	/* Python numbers memo entries from 0 as it writes them, so an index past the pickle's size is no
	 * real pickle's, and would only make the scan allocate for it. */
	if (idx >= MAX_MEMO || idx > w->len)
		return bad(w, "pickle %s at offset %zu uses a memo index beyond weld's limit", name);
	if (op == 'h' || op == 'j' || op == 'g') {
		if (idx >= w->capmemo || !w->memo[idx])
			return bad(w, "pickle %s at offset %zu reads a memo entry never written", name);
		return push_idx(w, w->memo[idx] - 1);
	}
	if (w->nstack <= fence(w))
		return bad(w, "pickle %s at offset %zu memoizes from an empty stack", name);
	if (!grow(w, (void **)&w->memo, &w->capmemo, (size_t)idx + 1, sizeof(size_t)))
		return false;
	if (!w->memo[idx])
		w->memo_count++;
	w->memo[idx] = w->stack[w->nstack - 1] + 1;
	return true;
}

static bool op_tuple(walker *w, uint8_t op, const char *name)
{
	size_t base, n;
	if (op == 't' || op == 0x91 || op == 'l' || op == 'd') {
		if (!pop_mark(w, &base, &n, name))
			return false;
	} else {
		n = (size_t)(op - 0x84); /* TUPLE1..3 */
		if (w->nstack < fence(w) + n)
			return bad(w, "pickle %s at offset %zu pops an empty stack", name);
		base = w->nstack - n;
		w->nstack = base;
	}
	for (size_t i = 0; i < n; i++)
		consume(w, w->stack[base + i]);
	if (n == 2 && op != 0x91 && op != 'l' && op != 'd')
		return push(w, (val){.kind = V_TUPLE2, .a = w->stack[base], .b = w->stack[base + 1]});
	return push(w, (val){.kind = V_OTHER});
}

/* REDUCE, NEWOBJ, NEWOBJ_EX, BUILD, BINPERSID, OBJ, INST and the container updates. */
static bool op_apply(walker *w, uint8_t op, const char *name)
{
	size_t fn, args, kw, base, n;
	switch (op) {
	case 'R': case 0x81:
		return pop(w, &args, name) && pop(w, &fn, name) && call(w, fn, args);
	case 0x92:
		if (!pop(w, &kw, name) || !pop(w, &args, name) || !pop(w, &fn, name))
			return false;
		consume(w, kw);
		return call(w, fn, args);
	case 'b': case 'a':
		if (!pop_consume(w, 1, name))
			return false;
		if (w->nstack <= fence(w))
			return bad(w, "pickle %s at offset %zu pops an empty stack", name);
		if (op == 'b')
			mark_misused(w, w->stack[w->nstack - 1]); /* BUILD on a class sets its attributes */
		return true;
	case 's':
		if (!pop_consume(w, 2, name))
			return false;
		return w->nstack > fence(w) || bad(w, "pickle %s at offset %zu pops an empty stack", name);
	case 'Q':
		return pop_consume(w, 1, name) && push(w, (val){.kind = V_OTHER});
	case 'e': case 'u': case 0x90: case 'o': case '1':
		if (!pop_mark(w, &base, &n, name))
			return false;
		if (op == 'o' && n)
			mark_misused(w, w->stack[base]); /* OBJ calls the first item: the reader refuses OBJ */
		for (size_t i = 0; i < n; i++)
			consume(w, w->stack[base + i]);
		if (op == 'o')
			return push(w, (val){.kind = V_OTHER});
		return op == '1' || w->nstack > fence(w) || bad(w, "pickle %s at offset %zu pops an empty stack", name);
	}
	return false;
}

static bool op_simple(walker *w, uint8_t op, const char *name)
{
	static const uint8_t argsize[256] = {[0x80] = 1, [0x95] = 8, ['K'] = 1, ['M'] = 2, ['J'] = 4, ['G'] = 8,
					     [0x8a] = 1, [0x8b] = 4, [0x82] = 1, [0x83] = 2, [0x84] = 4};
	size_t top;
	if (op == 0x8a || op == 0x8b) { /* LONG1/LONG4: a length, then the bytes */
		if (!need(w, argsize[op], name))
			return false;
		uint64_t l = le(w->d + w->pos, argsize[op]);
		w->pos += argsize[op];
		if (l > w->len - w->pos)
			return bad(w, "truncated pickle: %s at offset %zu runs past the end", name);
		w->pos += (size_t)l;
		return push(w, (val){.kind = V_OTHER});
	}
	if (!need(w, argsize[op], name))
		return false;
	uint64_t arg = le(w->d + w->pos, argsize[op]);
	w->pos += argsize[op];
	(void)arg;
	switch (op) {
	case 0x80: case 0x95: case 0x98: /* PROTO, FRAME, READONLY_BUFFER */
		return true;
	case '(':
		if (!grow(w, (void **)&w->marks, &w->capmarks, w->nmarks + 1, sizeof(size_t)))
			return false;
		w->marks[w->nmarks++] = w->nstack;
		return true;
	case '0':
		if (w->nstack == fence(w) && w->nmarks) { /* POP of a mark, as Python's load_pop */
			w->nmarks--;
			return true;
		}
		return pop_consume(w, 1, name);
	case '2':
		return pop(w, &top, name) && push_idx(w, top) && push_idx(w, top);
	case 0x82: case 0x83: case 0x84: {
		size_t g;
		return record(w, NULL, 0, NULL, 0, "an extension code (copyreg registry), which names a global weld cannot see", &g) &&
		       push(w, (val){.kind = V_OTHER});
	}
	}
	return push(w, (val){.kind = V_OTHER}); /* NONE, bools, ints, floats, empty containers, NEXT_BUFFER */
}

static bool op_global(walker *w, uint8_t op, const char *name)
{
	const uint8_t *m, *n;
	size_t nm, nn, ni, base;
	if (op == 'c' || op == 'i') {
		if (!line(w, &m, &nm, name) || !line(w, &n, &nn, name))
			return false;
		if (op == 'c')
			return push_global(w, m, nm, n, nn, NULL);
		size_t g;
		if (!record(w, m, nm, n, nn, NULL, &g) || !pop_mark(w, &base, &ni, name))
			return false;
		w->sc->globals[g].misused = true; /* INST calls it: the reader refuses INST */
		for (size_t i = 0; i < ni; i++)
			consume(w, w->stack[base + i]);
		return push(w, (val){.kind = V_OTHER});
	}
	size_t vm, vn;
	if (!pop(w, &vn, name) || !pop(w, &vm, name))
		return false;
	const val *a = &w->vals[vm], *b = &w->vals[vn];
	if (a->kind != V_STR || b->kind != V_STR || !a->str_known || !b->str_known)
		return push_global(w, NULL, 0, NULL, 0,
				   "STACK_GLOBAL whose module or name is not a string weld can follow");
	return push_global(w, a->s, a->n, b->s, b->n, NULL);
}

typedef bool op_fn(walker *w, uint8_t op, const char *name);

static const struct {
	const char *name;
	op_fn *run;
} ops[256] = {
	[0x80] = {"PROTO", op_simple}, [0x95] = {"FRAME", op_simple}, ['('] = {"MARK", op_simple},
	['0'] = {"POP", op_simple}, ['1'] = {"POP_MARK", op_apply}, ['2'] = {"DUP", op_simple},
	['q'] = {"BINPUT", op_memo}, ['r'] = {"LONG_BINPUT", op_memo}, [0x94] = {"MEMOIZE", op_memo},
	['h'] = {"BINGET", op_memo}, ['j'] = {"LONG_BINGET", op_memo}, ['p'] = {"PUT", op_memo},
	['g'] = {"GET", op_memo}, ['N'] = {"NONE", op_simple}, [0x88] = {"NEWTRUE", op_simple},
	[0x89] = {"NEWFALSE", op_simple}, ['K'] = {"BININT1", op_simple}, ['M'] = {"BININT2", op_simple},
	['J'] = {"BININT", op_simple}, [0x8a] = {"LONG1", op_simple}, [0x8b] = {"LONG4", op_simple},
	['G'] = {"BINFLOAT", op_simple}, ['X'] = {"BINUNICODE", op_text}, [0x8c] = {"SHORT_BINUNICODE", op_text},
	[0x8d] = {"BINUNICODE8", op_text}, ['T'] = {"BINSTRING", op_text}, ['U'] = {"SHORT_BINSTRING", op_text},
	['B'] = {"BINBYTES", op_text}, ['C'] = {"SHORT_BINBYTES", op_text}, [0x8e] = {"BINBYTES8", op_text},
	[0x96] = {"BYTEARRAY8", op_text}, [')'] = {"EMPTY_TUPLE", op_simple}, [']'] = {"EMPTY_LIST", op_simple},
	['}'] = {"EMPTY_DICT", op_simple}, [0x8f] = {"EMPTY_SET", op_simple}, ['t'] = {"TUPLE", op_tuple},
	[0x91] = {"FROZENSET", op_tuple}, [0x85] = {"TUPLE1", op_tuple}, [0x86] = {"TUPLE2", op_tuple},
	[0x87] = {"TUPLE3", op_tuple}, ['l'] = {"LIST", op_tuple}, ['d'] = {"DICT", op_tuple},
	['a'] = {"APPEND", op_apply}, ['e'] = {"APPENDS", op_apply}, ['s'] = {"SETITEM", op_apply},
	['u'] = {"SETITEMS", op_apply}, [0x90] = {"ADDITEMS", op_apply}, ['c'] = {"GLOBAL", op_global},
	[0x93] = {"STACK_GLOBAL", op_global}, ['i'] = {"INST", op_global}, ['o'] = {"OBJ", op_apply},
	['Q'] = {"BINPERSID", op_apply}, ['R'] = {"REDUCE", op_apply}, [0x81] = {"NEWOBJ", op_apply},
	[0x92] = {"NEWOBJ_EX", op_apply}, ['b'] = {"BUILD", op_apply}, [0x82] = {"EXT1", op_simple},
	[0x83] = {"EXT2", op_simple}, [0x84] = {"EXT4", op_simple}, [0x97] = {"NEXT_BUFFER", op_simple},
	[0x98] = {"READONLY_BUFFER", op_simple}, ['I'] = {"INT", op_text_line}, ['L'] = {"LONG", op_text_line},
	['F'] = {"FLOAT", op_text_line}, ['S'] = {"STRING", op_text_line}, ['V'] = {"UNICODE", op_text_line},
	['P'] = {"PERSID", op_text_line},
};

/* The opcode loop; false with W->problem set (or W->nomem) when the pickle cannot be walked. */
static bool walk(walker *w)
{
	for (;;) {
		if (w->pos >= w->len)
{
			snprintf(w->problem, sizeof(w->problem), "truncated pickle: data ends at offset %zu before STOP", w->pos);
			return false;
		}
		w->off = w->pos;
		uint8_t op = w->d[w->pos++];
		if (op == '.') {
			size_t top;
			if (!pop(w, &top, "STOP"))
				return false;
			consume(w, top);
			return true;
		}
		if (!ops[op].name) {
			snprintf(w->problem, sizeof(w->problem), "unknown pickle opcode 0x%02x at offset %zu", op, w->off);
			return false;
		}
		if (!ops[op].run(w, op, ops[op].name))
			return false;
		/* INT, LONG, FLOAT, PERSID pushed a string: they are other values. */
		if (op == 'I' || op == 'L' || op == 'F' || op == 'P')
			w->vals[w->stack[w->nstack - 1]].kind = V_OTHER;
	}
}

weld_status weld__pk_scan(weld_pk_scan *sc, const uint8_t *data, size_t len, size_t *consumed, weld_error *err)
{
	walker w = {.sc = sc, .d = data, .len = len};
	size_t first = sc->n;
	bool ok = walk(&w);
	free(w.vals);
	free(w.stack);
	free(w.marks);
	free(w.memo);
	if (w.nomem)
		return weld__nomem(err);
	/* getattr: allowed only when used, and only as the reader allows it. */
	for (size_t i = first; i < sc->n; i++) {
		weld_pk_scan_global *g = &sc->globals[i];
		if (g->getattr && (g->getattr_misused || !g->getattr_used)) {
			g->allowed = false;
			g->why = "builtins.getattr used on something other than (an enum weld knows, member name), or its result called";
		} else if (g->misused && g->allowed) {
			g->allowed = false;
			g->why = "called by OBJ or INST, or given attributes by BUILD, which weld's reader refuses";
		}
	}
	*consumed = w.pos;
	if (!ok)
		return weld__fail(err, WELD_ERR_FORMAT, "%s", w.problem);
	return WELD_OK;
}
