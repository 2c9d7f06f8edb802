/*
 * Choosing a backend, and the calls every user of one makes (backend.h).
 * The one place that knows whether the CUDA backend was built.
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

static weld_status open_cpu(weld_backend **out, weld_error *err)
{
	weld_backend *b = malloc(sizeof(*b));
	if (!b)
		return weld__nomem(err);
	*b = (weld_backend){&weld_backend_cpu_iface, NULL};
	*out = b;
	return WELD_OK;
}

/* The CUDA backend on device 0, or why not in WHY. */
static weld_status open_cuda(weld_backend **out, size_t budget, char *why, size_t why_len)
{
	weld_cuda_info cuda;
	weld_cuda_probe(&cuda);
	snprintf(why, why_len, "%s", cuda.message);
	if (!cuda.devices)
		return WELD_ERR_NO_DEVICE;
	weld_error e = {0};
	weld_status s = weld__backend_cuda_open(out, false, budget, &e);
	if (s)
		snprintf(why, why_len, "%s", e.message);
	return s;
}

weld_status weld_backend_open(weld_backend **out, weld_device device, char *why, size_t why_len, weld_error *err)
{
	*out = NULL;
	if (why_len)
		why[0] = '\0';
	if (device == WELD_DEVICE_CPU)
		return open_cpu(out, err);
	size_t budget;
	weld_status s = gpu_budget(&budget, err);
	if (s)
		return s;
	/* Test hook: whole conversions through the CUDA pipeline's host emulation, on machines without a GPU. */
	if (device == WELD_DEVICE_CUDA && getenv("WELD_CUDA_EMULATE"))
		return weld__backend_cuda_open(out, true, budget, err);
	char reason[WELD_ERROR_MESSAGE_MAX - 64];
	s = open_cuda(out, budget, reason, sizeof(reason));
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (!s)
		return WELD_OK;
	if (device == WELD_DEVICE_CUDA)
		return weld__fail(err, WELD_ERR_NO_DEVICE, "--device cuda: no usable CUDA device: %s", reason);
	snprintf(why, why_len, "%s", reason);
	return open_cpu(out, err);
}

void weld_backend_close(weld_backend *b)
{
	if (!b)
		return;
	if (b->iface->free)
		b->iface->free(b);
	free(b);
}

const char *weld_backend_name(const weld_backend *b)
{
	return b->iface->name;
}

weld_status weld_backend_convert(weld_backend *b, weld_job *job, weld_error *err)
{
	return b->iface->convert(b, job, err);
}

void *weld_backend_alloc_host(weld_backend *b, size_t size)
{
	return b->iface->host_alloc ? b->iface->host_alloc(b, size) : NULL;
}

void weld_backend_free_host(weld_backend *b, void *p)
{
	if (b->iface->host_free)
		b->iface->host_free(b, p);
	else
		free(p);
}

double weld_backend_sum_squares(weld_backend *b, const double *v, size_t n, const char **on)
{
	double sum;
	weld_error ignored;
	if (b->iface->sum_squares && b->iface->sum_squares(b, v, n, &sum, &ignored) == WELD_OK) {
		*on = b->iface->name;
		return sum;
	}
	*on = "cpu";
	return weld_cpu_sum_squares(v, n);
}

#ifndef WELD_HAVE_CUDA
/* Without the CUDA backend (backend/cuda.c) there is no device to open. */
weld_status weld__backend_cuda_open(weld_backend **out, bool emulate, size_t budget, weld_error *err)
{
	(void)emulate, (void)budget;
	*out = NULL;
	return weld__fail(err, WELD_ERR_NO_DEVICE, NO_CUDA_BUILD);
}

weld_status weld__backend_cuda_test_cast(weld_backend *b, uint32_t first, uint32_t n, weld_dtype dst, uint16_t *out,
					 uint64_t *overflows, weld_error *err)
{
	(void)b, (void)first, (void)n, (void)dst, (void)out, (void)overflows;
	return weld__fail(err, WELD_ERR_NO_DEVICE, NO_CUDA_BUILD);
}

weld_status weld__backend_cuda_test_blocks(weld_job *job, weld_block_probe *parts, size_t nparts,
					   weld_block_probe *blocks, size_t nblocks, weld_error *err)
{
	(void)job, (void)parts, (void)nparts, (void)blocks, (void)nblocks;
	return weld__fail(err, WELD_ERR_NO_DEVICE, NO_CUDA_BUILD);
}
#endif

weld_status weld__backend_open_cuda_emulated(weld_backend **out, weld_error *err)
{
	size_t budget;
	weld_status s = gpu_budget(&budget, err);
	return s ? s : weld__backend_cuda_open(out, true, budget, err);
}
