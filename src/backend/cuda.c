/*
 * The CUDA backend behind the backend interface: C glue that translates
 * jobs for the CUDA code in cuda/ (which speaks only plain C structs), built
 * only when the CUDA backend is. Everything that fails on the device is
 * WELD_ERR_DEVICE; a device that cannot be opened is WELD_ERR_NO_DEVICE.
 */
#include "backend/backend.h"

#include "cuda/cuda_backend.h"

#include <stdlib.h>
#include <string.h>

/* The CUDA code's messages go into this much of an error message. */
#define MSG_MAX (WELD_ERROR_MESSAGE_MAX - 64)

/* Small jobs translate on the stack. */
#define STACK_ITEMS 64

/* A job's segments and spans as the CUDA code takes them: on the stack when small, else malloc'd. */
typedef struct cuda_tables {
	weld__cuda_seg seg_buf[STACK_ITEMS], *segs;
	weld__cuda_span span_buf[STACK_ITEMS], *spans;
} cuda_tables;

static void tables_free(cuda_tables *t)
{
	if (t->segs != t->seg_buf)
		free(t->segs);
	if (t->spans != t->span_buf)
		free(t->spans);
}

static weld_status tables_from_job(cuda_tables *t, const weld_job *job, weld_error *err)
{
	t->segs = job->nsegs <= STACK_ITEMS ? t->seg_buf : weld__calloc(job->nsegs, sizeof(*t->segs));
	t->spans = job->nspans <= STACK_ITEMS ? t->span_buf : weld__calloc(job->nspans, sizeof(*t->spans));
	if (!t->segs || !t->spans) {
		tables_free(t);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < job->nsegs; i++) {
		const weld_seg *g = &job->segs[i];
		t->segs[i] = (weld__cuda_seg){.staging_off = g->staging_off, .out_off = g->out_off, .count = g->count,
					      .src_dtype = (int)g->src_dtype, .dst_dtype = (int)g->dst_dtype};
	}
	for (size_t i = 0; i < job->nspans; i++)
		t->spans[i] = (weld__cuda_span){.out_off = job->spans[i].out_off, .len = job->spans[i].len};
	return WELD_OK;
}

static weld_status cuda_convert(weld_backend *b, weld_job *job, weld_error *err)
{
	cuda_tables t;
	char msg[MSG_MAX];
	weld_status s = tables_from_job(&t, job, err);
	if (s)
		return s;
	if (weld__cuda_convert(b->context, job->staging, job->out, t.segs, job->nsegs, t.spans, job->nspans,
			       &job->fp16_overflows, msg, sizeof(msg)))
		s = weld__fail(err, WELD_ERR_DEVICE, "CUDA: %s", msg);
	for (size_t i = 0; !s && i < job->nspans; i++)
		job->spans[i].crc = t.spans[i].crc;
	tables_free(&t);
	return s;
}

static void *cuda_host_alloc(weld_backend *b, size_t size)
{
	return weld__cuda_host_alloc(b->context, size);
}

static void cuda_host_free(weld_backend *b, void *p)
{
	weld__cuda_host_free(b->context, p);
}

static weld_status cuda_sum_squares(weld_backend *b, const double *v, size_t n, double *out, weld_error *err)
{
	char msg[MSG_MAX];
	(void)b;
	if (weld__cuda_sum_squares(v, n, out, msg, sizeof(msg)))
		return weld__fail(err, WELD_ERR_DEVICE, "CUDA: %s", msg);
	return WELD_OK;
}

static void cuda_free(weld_backend *b)
{
	weld__cuda_close(b->context);
	b->context = NULL;
}

static const weld_backend_iface cuda_iface = {
	.name = "cuda",
	.convert = cuda_convert,
	.host_alloc = cuda_host_alloc,
	.host_free = cuda_host_free,
	.sum_squares = cuda_sum_squares,
	.free = cuda_free,
};

/* The same pipeline on the host: no device, so no cuBLAS either. */
static const weld_backend_iface emulated_iface = {
	.name = "cuda",
	.convert = cuda_convert,
	.host_alloc = cuda_host_alloc,
	.host_free = cuda_host_free,
	.free = cuda_free,
};

weld_status weld__backend_cuda_open(weld_backend **out, bool emulate, size_t budget, weld_error *err)
{
	char msg[MSG_MAX];
	weld__cuda_ctx *ctx = NULL;
	*out = NULL;
	int rc = emulate ? weld__cuda_open_emulated(&ctx, budget, msg, sizeof(msg))
			 : weld__cuda_open(&ctx, 0, budget, msg, sizeof(msg));
	if (rc)
		return weld__fail(err, WELD_ERR_NO_DEVICE, "%s", msg);
	weld_backend *b = malloc(sizeof(*b));
	if (!b) {
		weld__cuda_close(ctx);
		return weld__nomem(err);
	}
	*b = (weld_backend){emulate ? &emulated_iface : &cuda_iface, ctx};
	*out = b;
	return WELD_OK;
}

weld_status weld__backend_cuda_test_cast(weld_backend *b, uint32_t first, uint32_t n, weld_dtype dst, uint16_t *out,
					 uint64_t *overflows, weld_error *err)
{
	char msg[MSG_MAX];
	if (b->iface != &cuda_iface && b->iface != &emulated_iface)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "not a CUDA backend: %s", b->iface->name);
	if (weld__cuda_test_cast(b->context, first, n, (int)dst, out, overflows, msg, sizeof(msg)))
		return weld__fail(err, WELD_ERR_DEVICE, "CUDA: %s", msg);
	return WELD_OK;
}

/* PROBES[0..N) as the CUDA code's, or back (TO_CUDA false). */
static void copy_probes(weld_block_probe *probes, weld__cuda_block_probe *cp, size_t n, bool to_cuda)
{
	for (size_t i = 0; i < n; i++)
		if (to_cuda)
			cp[i] = (weld__cuda_block_probe){.index = probes[i].index, .at = probes[i].at};
		else
			probes[i] = (weld_block_probe){probes[i].index, probes[i].at, cp[i].first, cp[i].end, cp[i].crc};
}

weld_status weld__backend_cuda_test_blocks(weld_job *job, weld_block_probe *parts, size_t nparts,
					   weld_block_probe *blocks, size_t nblocks, weld_error *err)
{
	cuda_tables t;
	char msg[MSG_MAX];
	weld__cuda_block_probe *cp = weld__calloc(nparts + nblocks ? nparts + nblocks : 1, sizeof(*cp));
	weld_status s = cp ? tables_from_job(&t, job, err) : weld__nomem(err);
	if (s) {
		free(cp);
		return s;
	}
	copy_probes(parts, cp, nparts, true);
	copy_probes(blocks, cp + nparts, nblocks, true);
	if (weld__cuda_test_blocks(job->staging, job->out, t.segs, job->nsegs, t.spans, job->nspans, cp, nparts,
				   cp + nparts, nblocks, &job->fp16_overflows, msg, sizeof(msg)))
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "CUDA: %s", msg);
	copy_probes(parts, cp, nparts, false);
	copy_probes(blocks, cp + nparts, nblocks, false);
	tables_free(&t);
	free(cp);
	return s;
}
