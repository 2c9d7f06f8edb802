/*
 * Fuzz target for the PyTorch DCP .metadata reader: the input becomes the
 * .metadata file (weld reads it by path). After a successful read every
 * tensor's chunks must have its number of dimensions and name a storage
 * entry or none, every storage a file name and a range that does not wrap,
 * and a model name, when there is one, must be its key or the key's tail.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/dcp_meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char input_path[64];
static int input_fd = -1;

static void remove_input(void)
{
	unlink(input_path);
}

/* One backing file per process, rewritten for every input. */
static int input_file(void)
{
	if (input_fd >= 0)
		return 0;
#if defined(__linux__) && defined(MFD_CLOEXEC)
	input_fd = memfd_create("fuzz_dcp", MFD_CLOEXEC);
	if (input_fd >= 0) {
		snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
		return 0;
	}
#endif
	snprintf(input_path, sizeof(input_path), "/tmp/fuzz_dcp.XXXXXX");
	input_fd = mkstemp(input_path);
	if (input_fd < 0)
		return -1;
	atexit(remove_input);
	return 0;
}

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
	if (input_file() != 0 || ftruncate(input_fd, 0) != 0)
		return 0;
	for (size_t done = 0; done < size;) {
		ssize_t w = pwrite(input_fd, data + done, size - done, (off_t)done);
		if (w <= 0)
			return 0;
		done += (size_t)w;
	}
	weld_error err = {0};
	dcp_meta m;
	weld_status s = weld__dcp_meta_read(&m, input_path, NULL, 0, &err);
	/* A failure says why, in one line, and leaves nothing behind. */
	if (s != WELD_OK && (s != err.status || err.message[0] == '\0' || strchr(err.message, '\n') || m.t || m.storage))
		abort();
	if (s == WELD_OK)
		check(&m);
	weld__dcp_meta_free(&m);
	return 0;
}
