/*
 * libFuzzer target for the pickle reader: runs pickles back to back while
 * input remains (as the legacy torch format does), with small limits so that
 * hostile inputs hit a bound quickly, then walks each tree it got.
 */
#include "io/pickle/pickle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Touches every node reachable from ROOT with an explicit stack, checking the
 * reader's promises: acyclic, no deeper than max_depth, at most max_nodes
 * values even through shared subtrees. */
static void walk(const weld_py *root, uint32_t max_depth, uint64_t max_nodes)
{
	size_t cap = 64, n = 0;
	const weld_py **todo = malloc(cap * sizeof(*todo));
	if (!todo)
		return;
	todo[n++] = root;
	uint64_t visits = 0;
	while (n) {
		if (++visits > max_nodes)
			abort();
		const weld_py *o = todo[--n];
		if (o->depth > max_depth)
			abort();
		const weld_py *kids[2] = {0};
		size_t nk = 0, extra = 0;
		const weld_py *const *arr = NULL, *const *arr2 = NULL;
		switch (o->kind) {
		case WELD_PY_TUPLE:
		case WELD_PY_LIST:
		case WELD_PY_SET:
		case WELD_PY_SIZE:
			arr = (const weld_py *const *)o->seq.items, extra = o->seq.n;
			break;
		case WELD_PY_DICT:
			arr = (const weld_py *const *)o->dict.keys, arr2 = (const weld_py *const *)o->dict.vals;
			extra = o->dict.n;
			break;
		case WELD_PY_OBJECT:
			if (o->obj.args)
				kids[nk++] = o->obj.args;
			if (o->obj.state)
				kids[nk++] = o->obj.state;
			break;
		case WELD_PY_TENSOR:
			if (!o->tensor.storage || o->tensor.storage->kind != WELD_PY_STORAGE ||
			    o->tensor.ndim > WELD_MAX_DIMS)
				abort();
			break;
		case WELD_PY_STR:
		case WELD_PY_BYTES:
			if (o->str.s[o->str.len] != '\0')
				abort();
			break;
		default:
			break;
		}
		size_t want = n + nk + extra * (arr2 ? 2 : 1);
		if (want > cap) {
			while (cap < want)
				cap *= 2;
			const weld_py **t = realloc(todo, cap * sizeof(*todo));
			if (!t)
				break;
			todo = t;
		}
		for (size_t i = 0; i < nk; i++) {
			if (kids[i]->depth >= o->depth)
				abort();
			todo[n++] = kids[i];
		}
		for (size_t i = 0; i < extra; i++) {
			if (arr[i]->depth >= o->depth || (arr2 && arr2[i]->depth >= o->depth))
				abort();
			todo[n++] = arr[i];
			if (arr2)
				todo[n++] = arr2[i];
		}
	}
	free(todo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	weld_pickle_limits lim = {
		.max_depth = 64,
		.max_memo = 1 << 16,
		.max_stack = 1 << 16,
		.max_bytes = 64u << 20,
		.max_nodes = 1 << 20,
	};
	weld_pickle *p = NULL;
	weld_error err = {0};
	if (weld_pickle_new(&p, &lim, &err) != WELD_OK)
		return 0;
	size_t pos = 0;
	while (pos < size) {
		size_t used = 0;
		weld_py *out = NULL;
		weld_status st = weld_pickle_load(p, data + pos, size - pos, &used, &out, &err);
		if (st != WELD_OK) {
			/* Every failure leaves a message. */
			if (err.status != st || err.message[0] == '\0' || out != NULL)
				abort();
			break;
		}
		if (!out || used == 0 || used > size - pos)
			abort();
		walk(out, lim.max_depth, lim.max_nodes);
		(void)weld_py_dict_get(out, "module");
		pos += used;
	}
	weld_pickle_free(p);
	return 0;
}
