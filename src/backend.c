/*
 * Backend selection: the one place that knows whether the CUDA code was
 * built. The rest of the library asks here.
 */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WELD_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

void weld_cuda_probe(weld_cuda_info *out)
{
	memset(out, 0, sizeof(*out));
#ifdef WELD_HAVE_CUDA
	out->built = 1;
	weld__cuda_probe(&out->devices, &out->runtime_version, out->message, sizeof(out->message));
#else
	snprintf(out->message, sizeof(out->message), "weld was built without the CUDA backend");
#endif
}

weld_status weld_backend_open(weld_backend **out, weld_device device, char *notice, size_t notice_len,
			      weld_error *err)
{
	*out = NULL;
	if (notice_len)
		notice[0] = '\0';
	if (device != WELD_DEVICE_CPU) {
		weld_cuda_info cuda;
		weld_cuda_probe(&cuda);
		const char *why = cuda.devices ? "the CUDA backend's kernels are not in this version" : cuda.message;
		if (device == WELD_DEVICE_CUDA)
			return weld__fail(err, WELD_ERR_BACKEND, "--device cuda: no usable CUDA device: %s", why);
		snprintf(notice, notice_len, "CUDA not used (%s); converting on the CPU", why);
	}
	weld_backend *b = malloc(sizeof(*b));
	if (!b)
		return weld__nomem(err);
	*b = weld_backend_cpu;
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
