/*
 * Reading for verify: a tensor a range at a time, and the CRC-32s of a
 * weights file recomputed through a backend, so that a CUDA backend
 * computes them on the GPU (verify.h).
 */
#include "verify/verify.h"

#include <stdlib.h>
#include <string.h>

weld_status weld__vf_reader_open(weld_vf_reader *tr, weld_ckpt *c, size_t i, weld_error *err)
{
	memset(tr, 0, sizeof(*tr));
	const ckpt_tensor *t = &c->t[i];
	/* One run in a file (every tensor weld writes): read in place. Else gathered once. */
	if (weld__ckpt_one_run(c, i, &tr->f, &tr->offset))
		return WELD_OK;
	if (t->nbytes > SIZE_MAX)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: tensor '%s' is too large to read", c->src[t->src].file->path,
				  t->name);
	if (!(tr->whole = malloc(t->nbytes ? (size_t)t->nbytes : 1)))
		return weld__nomem(err);
	return weld_ckpt_read_tensor(c, i, tr->whole, (size_t)t->nbytes, err);
}

weld_status weld__vf_reader_read(weld_vf_reader *tr, void *buf, size_t n, uint64_t at, weld_error *err)
{
	if (tr->whole) {
		memcpy(buf, tr->whole + at, n);
		return WELD_OK;
	}
	return weld_file_pread(tr->f, buf, n, tr->offset + at, err);
}

void weld__vf_reader_close(weld_vf_reader *tr)
{
	free(tr->whole);
	tr->whole = NULL;
}

weld_status weld__vf_same_bytes(weld_ckpt *ca, size_t a, weld_ckpt *cb, size_t b, bool *eq, weld_error *err)
{
	weld_vf_reader ra = {0}, rb = {0};
	uint8_t *x = malloc(WELD_VERIFY_CHUNK), *y = malloc(WELD_VERIFY_CHUNK);
	uint64_t n = ca->t[a].nbytes;
	weld_status s = (x && y) ? WELD_OK : weld__nomem(err);
	*eq = true;
	if (!s)
		s = weld__vf_reader_open(&ra, ca, a, err);
	if (!s)
		s = weld__vf_reader_open(&rb, cb, b, err);
	for (uint64_t off = 0; !s && *eq && off < n;) {
		size_t k = n - off < WELD_VERIFY_CHUNK ? (size_t)(n - off) : WELD_VERIFY_CHUNK;
		if (!(s = weld__vf_reader_read(&ra, x, k, off, err)) && !(s = weld__vf_reader_read(&rb, y, k, off, err)))
			*eq = memcmp(x, y, k) == 0;
		off += k;
	}
	weld__vf_reader_close(&ra);
	weld__vf_reader_close(&rb);
	free(x);
	free(y);
	return s;
}

/* Spans sorted by offset, for walking them chunk by chunk. */
typedef struct span_order {
	uint64_t offset;
	size_t index;
} span_order;

static int cmp_span_order(const void *a, const void *b)
{
	const span_order *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The pieces of SPANS inside the chunk [C0, C1) as job spans after the whole chunk's (JS[0]). */
static size_t chunk_spans(const weld_vf_span *spans, const span_order *order, size_t n, size_t *first, uint64_t c0,
			  uint64_t c1, weld_span *js, size_t *owner)
{
	size_t nj = 0;
	js[nj++] = (weld_span){0, (size_t)(c1 - c0), 0};
	while (*first < n && spans[order[*first].index].offset + spans[order[*first].index].len <= c0)
		++*first;
	for (size_t k = *first; k < n && order[k].offset < c1; k++) {
		const weld_vf_span *sp = &spans[order[k].index];
		uint64_t a = sp->offset > c0 ? sp->offset : c0, e = sp->offset + sp->len < c1 ? sp->offset + sp->len : c1;
		if (a >= e)
			continue;
		owner[nj] = order[k].index;
		js[nj++] = (weld_span){(size_t)(a - c0), (size_t)(e - a), 0};
	}
	return nj;
}

/*
 * The one place CRCs are recomputed: WELD_VERIFY_CHUNK bytes at a time
 * through backend B (a same-dtype byte copy plus the backend's span CRCs).
 */
weld_status weld__vf_crc_file(weld_backend *b, weld_file *f, weld_vf_span *spans, size_t n, uint32_t *file_crc,
			      weld_error *err)
{
	uint8_t *staging = malloc(WELD_VERIFY_CHUNK), *out = malloc(WELD_VERIFY_CHUNK);
	weld_span *js = weld__calloc(n + 1, sizeof(*js));
	size_t *owner = weld__calloc(n + 1, sizeof(*owner)), first = 0;
	span_order *order = weld__calloc(n ? n : 1, sizeof(*order));
	weld_status s = (staging && out && js && owner && order) ? WELD_OK : weld__nomem(err);
	for (size_t i = 0; !s && i < n; i++) {
		spans[i].crc = 0;
		order[i] = (span_order){spans[i].offset, i};
	}
	if (!s)
		qsort(order, n, sizeof(*order), cmp_span_order);
	*file_crc = 0;
	for (uint64_t c0 = 0; !s && c0 < f->size;) {
		size_t len = f->size - c0 < WELD_VERIFY_CHUNK ? (size_t)(f->size - c0) : WELD_VERIFY_CHUNK;
		if ((s = weld_file_pread(f, staging, len, c0, err)))
			break;
		size_t nj = chunk_spans(spans, order, n, &first, c0, c0 + len, js, owner);
		weld_seg seg = {.count = len, .src_dtype = WELD_DTYPE_U8, .dst_dtype = WELD_DTYPE_U8};
		weld_job job = {.staging = staging, .out = out, .segs = &seg, .nsegs = 1, .spans = js, .nspans = nj};
		if ((s = weld_backend_convert(b, &job, err)))
			break;
		*file_crc = weld__crc32_combine(*file_crc, js[0].crc, len);
		for (size_t j = 1; j < nj; j++)
			spans[owner[j]].crc = weld__crc32_combine(spans[owner[j]].crc, js[j].crc, js[j].len);
		c0 += len;
	}
	free(staging);
	free(out);
	free(js);
	free(owner);
	free(order);
	return s;
}
