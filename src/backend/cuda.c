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

static weld_status cuda_convert(weld_backend *b, weld_job *job, weld_error *err)
{
	weld__cuda_seg seg_buf[STACK_ITEMS];
	weld__cuda_span span_buf[STACK_ITEMS];
	weld__cuda_seg *segs = job->nsegs <= STACK_ITEMS ? seg_buf : weld__calloc(job->nsegs, sizeof(*segs));
	weld__cuda_span *spans = job->nspans <= STACK_ITEMS ? span_buf : weld__calloc(job->nspans, sizeof(*spans));
	weld_status s = segs && spans ? WELD_OK : weld__nomem(err);
	char msg[MSG_MAX];
	for (size_t i = 0; !s && i < job->nsegs; i++) {
		const weld_seg *g = &job->segs[i];
		segs[i] = (weld__cuda_seg){.staging_off = g->staging_off, .out_off = g->out_off, .count = g->count,
					   .src_dtype = (int)g->src_dtype, .dst_dtype = (int)g->dst_dtype};
	}
	for (size_t i = 0; !s && i < job->nspans; i++)
		spans[i] = (weld__cuda_span){.out_off = job->spans[i].out_off, .len = job->spans[i].len};
	if (!s && weld__cuda_convert(b->context, job->staging, job->out, segs, job->nsegs, spans, job->nspans,
				     &job->fp16_overflows, msg, sizeof(msg)))
		s = weld__fail(err, WELD_ERR_DEVICE, "CUDA: %s", msg);
	for (size_t i = 0; !s && i < job->nspans; i++)
		job->spans[i].crc = spans[i].crc;
	if (segs != seg_buf)
		free(segs);
	if (spans != span_buf)
		free(spans);
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
