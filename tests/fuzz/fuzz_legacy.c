/*
 * Fuzz target for the torch.save reader, aimed at the legacy (pre-1.6,
 * non-zip) format: the input becomes a file (weld reads files with pread),
 * which weld_torch_open opens. Zip inputs reach the same function; the zip
 * layer itself is fuzz_zip's. After a successful open every storage in the
 * object tree is resolved, and its byte range must lie inside the file.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/torch.h"
#include "fuzz_input.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failure says why, in one line. */
static void check_message(weld_status s, const weld_error *err)
{
	if (s != WELD_OK && (s != err->status || !memchr(err->message, '\0', sizeof(err->message)) ||
			     err->message[0] == '\0' || strchr(err->message, '\n')))
		abort();
}

/*
 * Values already walked. The tree is a DAG (memo references share values),
 * so a "billion laughs" pickle would make a plain walk take ages: each value
 * is visited once.
 */
typedef struct seen_set {
	const weld_py **slots;
	size_t cap, n;
} seen_set;

static bool seen_add(seen_set *s, const weld_py *v)
{
	if (2 * (s->n + 1) > s->cap) {
		seen_set g = {calloc(s->cap ? 2 * s->cap : 256, sizeof(*g.slots)), s->cap ? 2 * s->cap : 256, 0};
		if (!g.slots)
			abort();
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i])
				seen_add(&g, s->slots[i]);
		free(s->slots);
		*s = g;
	}
	size_t i = ((uintptr_t)v >> 4) * 0x9E3779B97F4A7C15u % s->cap;
	for (; s->slots[i]; i = (i + 1) % s->cap)
		if (s->slots[i] == v)
			return false;
	s->slots[i] = v;
	s->n++;
	return true;
}

typedef struct walk {
	weld_torch *t;
	uint64_t size; /* the file's */
	weld_torch_kind kind;
	seen_set seen;
	size_t resolved;
} walk;

static void check_storage(walk *w, const weld_py *s)
{
	weld_error err = {0};
	weld_torch_storage r = {0};
	weld_status st = weld_torch_storage_range(w->t, s, &r, &err);
	check_message(st, &err);
	if (st != WELD_OK)
		return;
	w->resolved++;
	if (r.offset > w->size || r.nbytes > w->size - r.offset)
		abort();
	/* Legacy storages are plain byte ranges; zip ones come with their record. */
	if ((w->kind == WELD_TORCH_LEGACY) != (r.entry == NULL))
		abort();
}

static void visit(walk *w, const weld_py *v)
{
	if (!v || !seen_add(&w->seen, v))
		return;
	switch (v->kind) {
	case WELD_PY_TUPLE:
	case WELD_PY_LIST:
	case WELD_PY_SET:
	case WELD_PY_SIZE:
		for (size_t i = 0; i < v->seq.n; i++)
			visit(w, v->seq.items[i]);
		break;
	case WELD_PY_DICT:
		for (size_t i = 0; i < v->dict.n; i++) {
			visit(w, v->dict.keys[i]);
			visit(w, v->dict.vals[i]);
		}
		break;
	case WELD_PY_OBJECT:
		visit(w, v->obj.args);
		visit(w, v->obj.state);
		break;
	case WELD_PY_TENSOR:
		if (!v->tensor.storage || v->tensor.storage->kind != WELD_PY_STORAGE)
			abort();
		visit(w, v->tensor.storage);
		break;
	case WELD_PY_STORAGE:
		check_storage(w, v);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_input_write("fuzz_legacy", data, size) != 0)
		return 0;

	weld_error err = {0};
	weld_file *f = NULL;
	weld_torch *t = NULL;
	if (weld_file_open(&f, fuzz_input_path, &err) != WELD_OK)
		return 0;
	weld_status s = weld_torch_open(&t, f, NULL, 0, &err);
	check_message(s, &err);
	if (s == WELD_OK) {
		walk w = {.t = t, .size = f->size, .kind = weld_torch_kind_of(t)};
		if (!weld_torch_root(t))
			abort();
		/* A legacy file is its pickles, then the storages' bytes. */
		if (w.kind == WELD_TORCH_LEGACY &&
		    (size < 2 || data[0] != 0x80 || weld_torch_pickle_bytes(t) > f->size))
			abort();
		visit(&w, weld_torch_root(t));
		free(w.seen.slots);
		weld_torch_close(t);
	}
	weld_file_close(f);
	return 0;
}
