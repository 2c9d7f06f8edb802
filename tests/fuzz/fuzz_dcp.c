/*
 * Fuzz target for the PyTorch DCP .metadata reader: the input becomes the
 * .metadata file (weld reads it by path). After a successful read every
 * tensor's chunks must have its number of dimensions and name a storage
 * entry or none, every storage a file name and a range that does not wrap,
 * and a model name, when there is one, must be its key or the key's tail.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/dcp_meta.h"
#include "fuzz_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(const dcp_meta *m)
{
	for (size_t i = 0; i < m->nt; i++) {
		const dcp_tensor *t = &m->t[i];
		if (!t->fqn)
			abort();
		size_t n = strlen(t->fqn);
		if (t->ndim > WELD_MAX_DIMS || t->dtype == WELD_DTYPE_INVALID ||
		    (t->name && (strlen(t->name) > n || strcmp(t->fqn + n - strlen(t->name), t->name) != 0)))
			abort();
		for (size_t k = 0; k < t->nchunks; k++)
			if (t->chunks[k].storage != DCP_NO_STORAGE && t->chunks[k].storage >= m->nstorage)
				abort();
	}
	for (size_t i = 0; i < m->nstorage; i++) {
		const dcp_storage *s = &m->storage[i];
		if (!s->relative_path || !s->fqn || s->offset + s->length < s->offset)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_input_write("fuzz_dcp", data, size) != 0)
		return 0;
	weld_error err = {0};
	dcp_meta m;
	weld_status s = weld__dcp_meta_read(&m, fuzz_input_path, NULL, 0, &err);
	/* A failure says why, in one line, and leaves nothing behind. */
	if (s != WELD_OK && (s != err.status || err.message[0] == '\0' || strchr(err.message, '\n') || m.t || m.storage))
		abort();
	if (s == WELD_OK)
		check(&m);
	weld__dcp_meta_free(&m);
	return 0;
}
