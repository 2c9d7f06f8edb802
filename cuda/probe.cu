// Device discovery: the only CUDA code weld needs before choosing a backend.
#include "cuda_backend.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" void weld__cuda_probe(int *devices, int *runtime_version, char *message, size_t message_len)
{
	*devices = 0;
	*runtime_version = CUDART_VERSION;
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	int driver = 0;
	if (e == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
		// CUDA reports a missing driver as an old one; say what is really the case.
		snprintf(message, message_len, "no NVIDIA driver found");
		cudaGetLastError();
		return;
	}
	if (e != cudaSuccess) {
		snprintf(message, message_len, "%s", cudaGetErrorString(e));
		cudaGetLastError(); // clear the sticky error so later probes start clean
		return;
	}
	if (n == 0) {
		snprintf(message, message_len, "no CUDA device found");
		return;
	}
	*devices = n;
	message[0] = '\0';
}
