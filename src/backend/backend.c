/*
 * Backend selection: the one place that knows whether the CUDA code was
 * built. The rest of the library asks here.
 */
#include "backend/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WELD_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#define NO_CUDA_BUILD "weld was built without the CUDA backend"

void weld_cuda_probe(weld_cuda_info *out)
{
	memset(out, 0, sizeof(*out));
#ifdef WELD_HAVE_CUDA
	out->built = 1;
	weld__cuda_probe(&out->devices, &out->runtime_version, out->message, sizeof(out->message));
#else
	snprintf(out->message, sizeof(out->message), NO_CUDA_BUILD);
#endif
}

/* $WELD_GPU_MEMORY_MB in bytes; 0 when unset (the backend's default). */
static weld_status gpu_budget(size_t *out, weld_error *err)
{
	const char *v = getenv("WELD_GPU_MEMORY_MB");
	*out = 0;
	if (!v || !*v)
		return WELD_OK;
	char *end;
	errno = 0;
	unsigned long long mb = strtoull(v, &end, 10);
	if (errno || *end || mb == 0 || mb > (1ull << 24) || v[0] == '-' || v[0] == '+')
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "WELD_GPU_MEMORY_MB must be a whole number of MiB from 1 to 16777216, not '%s'", v);
	*out = (size_t)mb << 20;
	return WELD_OK;
}

#ifdef WELD_HAVE_CUDA
static weld_status cuda_convert(weld_backend *b, weld_job *job, weld_error *err)
{
	/* The C boundary has its own plain structs; translate (small tables). */
	weld__cuda_seg seg_buf[64];
	weld__cuda_span span_buf[64];
	weld__cuda_seg *segs = job->nsegs <= 64 ? seg_buf : weld__calloc(job->nsegs, sizeof(*segs));
	weld__cuda_span *spans = job->nspans <= 64 ? span_buf : weld__calloc(job->nspans, sizeof(*spans));
	weld_status s = WELD_OK;
	char msg[WELD_ERROR_MESSAGE_MAX - 64];
	if (!segs || !spans) {
		s = weld__nomem(err);
		goto done;
	}
	for (size_t i = 0; i < job->nsegs; i++) {
		const weld_seg *g = &job->segs[i];
		segs[i] = (weld__cuda_seg){.staging_off = g->staging_off, .out_off = g->out_off, .count = g->count,
					   .src_dtype = (int)g->src_dtype, .dst_dtype = (int)g->dst_dtype};
	}
	for (size_t i = 0; i < job->nspans; i++)
		spans[i] = (weld__cuda_span){.out_off = job->spans[i].out_off, .len = job->spans[i].len};
	if (weld__cuda_convert(b->impl, job->staging, job->out, segs, job->nsegs, spans, job->nspans,
			       &job->fp16_overflows, msg, sizeof(msg))) {
		s = weld__fail(err, WELD_ERR_BACKEND, "CUDA: %s", msg);
		goto done;
	}
	for (size_t i = 0; i < job->nspans; i++)
		job->spans[i].crc = spans[i].crc;
done:
	if (segs != seg_buf)
		free(segs);
	if (spans != span_buf)
		free(spans);
	return s;
}

static void cuda_close(weld_backend *b)
{
	weld__cuda_close(b->impl);
	b->impl = NULL;
}

static const weld_backend weld_backend_cuda = {"cuda", cuda_convert, cuda_close, NULL};

/* B becomes the CUDA backend on device 0 (or its emulation). */
static weld_status cuda_open(weld_backend *b, int emulate, size_t budget, weld_error *err)
{
	char msg[WELD_ERROR_MESSAGE_MAX - 64];
	weld__cuda_ctx *ctx = NULL;
	int rc = emulate ? weld__cuda_open_emulated(&ctx, budget, msg, sizeof(msg))
			 : weld__cuda_open(&ctx, 0, budget, msg, sizeof(msg));
	if (rc)
		return weld__fail(err, WELD_ERR_BACKEND, "%s", msg);
	*b = weld_backend_cuda;
	b->impl = ctx;
	return WELD_OK;
}
#endif

weld_status weld_backend_open(weld_backend **out, weld_device device, char *notice, size_t notice_len,
			      weld_error *err)
{
	*out = NULL;
	if (notice_len)
		notice[0] = '\0';
	weld_backend *b = malloc(sizeof(*b));
	if (!b)
		return weld__nomem(err);
	*b = weld_backend_cpu;
	if (device != WELD_DEVICE_CPU) {
		size_t budget;
		weld_status s = gpu_budget(&budget, err);
		if (s) {
			free(b);
			return s;
		}
		weld_cuda_info cuda;
		weld_cuda_probe(&cuda);
		char why[WELD_ERROR_MESSAGE_MAX];
		snprintf(why, sizeof(why), "%s", cuda.message);
#ifdef WELD_HAVE_CUDA
		if (cuda.devices > 0) {
			weld_error e = {0};
			if (!cuda_open(b, 0, budget, &e)) {
				*out = b;
				return WELD_OK;
			}
			snprintf(why, sizeof(why), "%s", e.message);
		}
#endif
		if (device == WELD_DEVICE_CUDA) {
			free(b);
			return weld__fail(err, WELD_ERR_BACKEND, "--device cuda: no usable CUDA device: %s", why);
		}
		snprintf(notice, notice_len, "CUDA not used (%s); converting on the CPU", why);
	}
	*out = b;
	return WELD_OK;
}

void weld_backend_close(weld_backend *b)
{
	if (!b)
		return;
	b->close(b);
	free(b);
}

void *weld_backend_alloc_host(weld_backend *b, size_t size)
{
#ifdef WELD_HAVE_CUDA
	if (b->convert == cuda_convert)
		return weld__cuda_host_alloc(b->impl, size);
#endif
	(void)b, (void)size;
	return NULL;
}

void weld_backend_free_host(weld_backend *b, void *p)
{
#ifdef WELD_HAVE_CUDA
	if (b->convert == cuda_convert) {
		weld__cuda_host_free(b->impl, p);
		return;
	}
#endif
	(void)b;
	free(p);
}

weld_status weld__backend_open_cuda_emulated(weld_backend **out, weld_error *err)
{
	*out = NULL;
#ifdef WELD_HAVE_CUDA
	size_t budget;
	weld_status s = gpu_budget(&budget, err);
	if (s)
		return s;
	weld_backend *b = malloc(sizeof(*b));
	if (!b)
		return weld__nomem(err);
	s = cuda_open(b, 1, budget, err);
	if (s) {
		free(b);
		return s;
	}
	*out = b;
	return WELD_OK;
#else
	return weld__fail(err, WELD_ERR_UNSUPPORTED, NO_CUDA_BUILD);
#endif
}

weld_status weld__backend_cuda_test_cast(weld_backend *b, uint32_t first, uint32_t n, weld_dtype dst, uint16_t *out,
					 uint64_t *overflows, weld_error *err)
{
#ifdef WELD_HAVE_CUDA
	char msg[WELD_ERROR_MESSAGE_MAX - 64];
	if (b->convert != cuda_convert)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "not a CUDA backend: %s", b->name);
	if (weld__cuda_test_cast(b->impl, first, n, (int)dst, out, overflows, msg, sizeof(msg)))
		return weld__fail(err, WELD_ERR_BACKEND, "CUDA: %s", msg);
	return WELD_OK;
#else
	(void)b, (void)first, (void)n, (void)dst, (void)out, (void)overflows;
	return weld__fail(err, WELD_ERR_UNSUPPORTED, NO_CUDA_BUILD);
#endif
}

weld_status weld__gpu_l2_norms(const void *data, weld_dtype dtype, const uint64_t *offset, const uint64_t *count,
			       size_t n, double *norms, weld_error *err)
{
#ifdef WELD_HAVE_CUDA
	char msg[WELD_ERROR_MESSAGE_MAX - 64];
	if (weld__cuda_l2_norms(data, (int)dtype, offset, count, n, norms, msg, sizeof(msg)))
		return weld__fail(err, WELD_ERR_BACKEND, "CUDA: %s", msg);
	return WELD_OK;
#else
	(void)data, (void)dtype, (void)offset, (void)count, (void)n, (void)norms;
	return weld__fail(err, WELD_ERR_UNSUPPORTED, NO_CUDA_BUILD);
#endif
}
