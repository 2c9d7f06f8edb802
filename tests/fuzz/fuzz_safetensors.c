/*
 * Fuzz target: the input is a whole safetensors file. Its header is parsed
 * with the file's real size; when that succeeds, the builder must turn the
 * parsed tensors back into a header that parses to the same tensor set.
 */
#include "io/safetensors.h"
#include "output/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const weld_st_tensor *)a)->name, ((const weld_st_tensor *)b)->name);
}

/* Same names, dtypes, shapes and byte sizes, whatever the order. */
static void check_same_set(weld_st_header *a, weld_st_header *b)
{
	if (a->ntensors != b->ntensors || a->nmeta != b->nmeta)
		abort();
	if (a->ntensors) {
		qsort(a->tensors, a->ntensors, sizeof(*a->tensors), cmp_name);
		qsort(b->tensors, b->ntensors, sizeof(*b->tensors), cmp_name);
	}
	for (size_t i = 0; i < a->ntensors; i++) {
		const weld_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
		if (strcmp(x->name, y->name) != 0 || x->dtype != y->dtype || x->ndim != y->ndim ||
		    memcmp(x->shape, y->shape, x->ndim * sizeof(x->shape[0])) != 0 ||
		    x->end - x->begin != y->end - y->begin)
			abort();
	}
	/* The builder keeps metadata in the order given. */
	for (size_t i = 0; i < a->nmeta; i++)
		if (strcmp(a->meta_keys[i], b->meta_keys[i]) != 0 ||
		    strcmp(a->meta_vals[i], b->meta_vals[i]) != 0)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | data[i];
	weld_error err = {0};
	weld_st_header h;
	if (n > SIZE_MAX)
		return 0;
	/*
	 * N may claim more bytes than the input holds: the length checks must
	 * then refuse before reading any (ASan sees a read past the input).
	 */
	weld_status st = weld_st_parse_header(&h, (const char *)data + 8, (size_t)n, size, &err);
	if (st != WELD_OK) {
		if (n > size - 8 && !strstr(err.message, "header length"))
			abort();
		/* A failed parse leaves nothing behind and says why in one line. */
		if (h.tensors || h.ntensors || h.meta_keys || h.nmeta ||
		    !memchr(err.message, '\0', sizeof(err.message)) || err.message[0] == '\0' ||
		    strchr(err.message, '\n'))
			abort();
		return 0;
	}

	if (n > size - 8 || n > WELD_ST_HEADER_MAX)
		abort();

	/* Rebuild: the data buffer must be as long as the file's. */
	weld_st_out_tensor *ot = calloc(h.ntensors ? h.ntensors : 1, sizeof(*ot));
	if (!ot)
		abort();
	for (size_t i = 0; i < h.ntensors; i++) {
		ot[i].name = h.tensors[i].name;
		ot[i].dtype = h.tensors[i].dtype;
		ot[i].ndim = h.tensors[i].ndim;
		ot[i].shape = h.tensors[i].shape;
	}
	uint8_t *hdr = NULL;
	size_t hlen = 0;
	uint64_t dlen = 0;
	st = weld_st_build_header(ot, h.ntensors, (const char *const *)h.meta_keys,
				  (const char *const *)h.meta_vals, h.nmeta, &hdr, &hlen, &dlen, &err);
	if (st != WELD_OK)
		abort(); /* anything the parser accepts must be writable */
	if (dlen != size - h.data_start || hlen < 8 || hlen % 8 != 0)
		abort();
	for (size_t i = 0; i < h.ntensors; i++)
		if (i > 0 && ot[i].offset != ot[i - 1].offset + ot[i - 1].nbytes)
			abort();

	uint64_t n2 = 0;
	for (int i = 7; i >= 0; i--)
		n2 = n2 << 8 | hdr[i];
	if (n2 != hlen - 8)
		abort();
	weld_st_header h2;
	st = weld_st_parse_header(&h2, (const char *)hdr + 8, (size_t)n2, hlen + dlen, &err);
	if (st != WELD_OK)
		abort();
	check_same_set(&h, &h2);

	/* Building again from the reparsed header gives the very same bytes. */
	for (size_t i = 0; i < h2.ntensors; i++) {
		ot[i].name = h2.tensors[i].name;
		ot[i].dtype = h2.tensors[i].dtype;
		ot[i].ndim = h2.tensors[i].ndim;
		ot[i].shape = h2.tensors[i].shape;
	}
	uint8_t *hdr2 = NULL;
	size_t hlen2 = 0;
	uint64_t dlen2 = 0;
	if (weld_st_build_header(ot, h2.ntensors, (const char *const *)h2.meta_keys,
				 (const char *const *)h2.meta_vals, h2.nmeta, &hdr2, &hlen2, &dlen2,
				 &err) != WELD_OK ||
	    hlen2 != hlen || dlen2 != dlen || memcmp(hdr, hdr2, hlen) != 0)
		abort();

	free(hdr2);
	free(hdr);
	free(ot);
	weld_st_header_clear(&h2);
	weld_st_header_clear(&h);
	return 0;
}
