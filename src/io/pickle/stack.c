/*
 * The VM's stack, marks and memo. Stack items and marks share
 * limits.max_stack; the memo is a plain array indexed by the stream's memo
 * keys, bounded by limits.max_memo.
 */
#include "io/pickle/internal.h"

#include <string.h>

void weld__pk_stack_clear(weld_pickle *p)
{
	p->nstack = p->nmarks = 0;
	if (p->memo_hi)
		memset(p->memo, 0, p->memo_hi * sizeof(*p->memo));
	p->memo_hi = p->memo_count = 0;
}

size_t weld__pk_fence(const weld_pickle *p)
{
	return p->nmarks ? p->marks[p->nmarks - 1] : 0;
}

weld_status weld__pk_underflow(weld_pickle *p)
{
	return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle stack underflow at offset %zu (%s)", p->off, p->opname);
}

/* Room for one more stack item or mark. */
static weld_status room(weld_pickle *p)
{
	if (p->nstack + p->nmarks >= p->lim.max_stack)
		return weld__pk_fail(p, WELD_ERR_LIMIT, "pickle stack grows past %zu entries at offset %zu",
				     p->lim.max_stack, p->off);
	return WELD_OK;
}

weld_status weld__pk_push(weld_pickle *p, weld_py *o)
{
	if (!o)
		return p->st;
	TRY(room(p));
	if (p->nstack == p->cap_stack)
		TRY(weld__pk_grow_vec(p, (void **)&p->stack, &p->cap_stack, p->nstack + 1, sizeof(*p->stack)));
	p->stack[p->nstack++] = o;
	return WELD_OK;
}

weld_status weld__pk_pop(weld_pickle *p, weld_py **out)
{
	if (p->nstack <= weld__pk_fence(p))
		return weld__pk_underflow(p);
	*out = p->stack[--p->nstack];
	return WELD_OK;
}

weld_status weld__pk_top(weld_pickle *p, weld_py **out)
{
	if (p->nstack <= weld__pk_fence(p))
		return weld__pk_underflow(p);
	*out = p->stack[p->nstack - 1];
	return WELD_OK;
}

weld_status weld__pk_mark(weld_pickle *p)
{
	TRY(room(p));
	if (p->nmarks == p->cap_marks)
		TRY(weld__pk_grow_vec(p, (void **)&p->marks, &p->cap_marks, p->nmarks + 1, sizeof(*p->marks)));
	p->marks[p->nmarks++] = p->nstack;
	return WELD_OK;
}

weld_status weld__pk_pop_mark(weld_pickle *p, size_t *start)
{
	if (!p->nmarks)
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has no MARK before it", p->opname,
				     p->off);
	*start = p->marks[--p->nmarks];
	return WELD_OK;
}

weld_status weld__pk_pop_tuple(weld_pickle *p, size_t start, weld_py **out)
{
	weld_py *t = weld__pk_new_node(p, WELD_PY_TUPLE);
	TRY_PTR(t);
	size_t n = p->nstack - start;
	TRY(weld__pk_reserve(p, t, n));
	for (size_t i = start; i < p->nstack; i++)
		TRY(weld__pk_seq_add(p, t, p->stack[i]));
	p->nstack = start;
	*out = t;
	return WELD_OK;
}

weld_status weld__pk_memo_put(weld_pickle *p, uint64_t idx)
{
	weld_py *o = NULL;
	TRY(weld__pk_top(p, &o));
	if (idx >= p->lim.max_memo)
		return weld__pk_fail(p, WELD_ERR_LIMIT,
				     "pickle memo index %llu at offset %zu is beyond the limit of %zu entries",
				     (unsigned long long)idx, p->off, p->lim.max_memo);
	size_t i = (size_t)idx;
	if (i >= p->cap_memo) {
		size_t old = p->cap_memo;
		TRY(weld__pk_grow_vec(p, (void **)&p->memo, &p->cap_memo, i + 1, sizeof(*p->memo)));
		memset(p->memo + old, 0, (p->cap_memo - old) * sizeof(*p->memo));
	}
	if (!p->memo[i])
		p->memo_count++;
	p->memo[i] = o;
	if (i >= p->memo_hi)
		p->memo_hi = i + 1;
	return WELD_OK;
}

weld_status weld__pk_memo_get(weld_pickle *p, uint64_t idx)
{
	if (idx >= p->memo_hi || !p->memo[idx])
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle memo index %llu not defined at offset %zu",
				     (unsigned long long)idx, p->off);
	return weld__pk_push(p, p->memo[idx]);
}
