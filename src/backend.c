/*
 * The one place that knows whether the CUDA backend was compiled in; the
 * rest of the library asks here.
 */
#include "internal.h"

#include <stdio.h>
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
