// Sums of squares on the GPU with cuBLAS: the L2 norms of weld verify --against.
//
// cuBLAS is loaded with dlopen on first use rather than linked: the weld
// binary must start on machines without any CUDA library, and no static
// cuBLAS ships with every toolkit. libcublas carries its own runtime; both
// work in the device's primary context, so our device pointers are its too.
// Work is serialised on the legacy default stream, which every runtime in
// the process shares.
#include "cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

namespace {

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*dnrm2_fn)(cublasHandle_t, int, const double *, int, double *);
typedef const char *(*status_string_fn)(cublasStatus_t);

struct Cublas {
	void *lib;
	create_fn create;
	dnrm2_fn dnrm2;
	status_string_fn status_string;
	cublasHandle_t handle;
	char error[256];
};

Cublas g_cublas;
pthread_once_t g_once = PTHREAD_ONCE_INIT;
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

constexpr uint64_t kPieceElems = (uint64_t)1 << 25; // 32 Mi doubles: 256 MiB of device memory at most

void load_cublas()
{
	Cublas &c = g_cublas;
	char names[4][512];
	const char *home = getenv("CUDA_HOME");
	int major = CUDART_VERSION / 1000;
	snprintf(names[0], sizeof(names[0]), "libcublas.so.%d", major);
	snprintf(names[1], sizeof(names[1]), "%s/lib64/libcublas.so.%d", home ? home : "/usr/local/cuda", major);
	snprintf(names[2], sizeof(names[2]), "/usr/local/cuda/lib64/libcublas.so.%d", major);
	snprintf(names[3], sizeof(names[3]), "/usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.%d", major);
	for (int i = 0; i < 4 && !c.lib; i++)
		c.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!c.lib) {
		snprintf(c.error, sizeof(c.error), "cuBLAS not found (%.200s)", names[0]);
		return;
	}
	c.create = (create_fn)dlsym(c.lib, "cublasCreate_v2");
	c.dnrm2 = (dnrm2_fn)dlsym(c.lib, "cublasDnrm2_v2");
	c.status_string = (status_string_fn)dlsym(c.lib, "cublasGetStatusString");
	if (!c.create || !c.dnrm2) {
		snprintf(c.error, sizeof(c.error), "%.200s lacks cublasCreate_v2 or cublasDnrm2_v2", names[0]);
		return;
	}
	// The handle lives as long as the process (cuBLAS frees it at exit).
	cublasStatus_t st = c.create(&c.handle);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(c.error, sizeof(c.error), "cublasCreate failed: %s",
			 c.status_string ? c.status_string(st) : "unknown cuBLAS status");
		c.handle = NULL;
	}
}

int fail(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

} // namespace

#define CK(call)                                                                                      \
	do {                                                                                          \
		cudaError_t e_ = (call);                                                              \
		if (e_ != cudaSuccess) {                                                              \
			rc = fail(msg, msg_len, "%.*s failed: %s (%s, cuda/l2norm.cu:%d)",            \
				  (int)strcspn(#call, "("), #call, cudaGetErrorString(e_), cudaGetErrorName(e_), \
				  __LINE__);                                                          \
			goto done;                                                                    \
		}                                                                                     \
	} while (0)

extern "C" int weld__cuda_sum_squares(const double *v, uint64_t n, double *out, char *msg, size_t msg_len)
{
	int rc = 0;
	double *d_v = NULL, sumsq = 0;
	uint64_t most = n < kPieceElems ? n : kPieceElems;
	pthread_mutex_lock(&g_mu);
	// cuBLAS binds its handle to the calling thread's device: make that device 0 first.
	CK(cudaSetDevice(0));
	pthread_once(&g_once, load_cublas);
	if (!g_cublas.handle) {
		rc = fail(msg, msg_len, "%s", g_cublas.error);
		goto done;
	}
	if (most)
		CK(cudaMalloc((void **)&d_v, most * sizeof(double)));
	for (uint64_t at = 0; at < n;) {
		uint64_t k = n - at < kPieceElems ? n - at : kPieceElems;
		double r = 0;
		CK(cudaMemcpy(d_v, v + at, k * sizeof(double), cudaMemcpyHostToDevice));
		cublasStatus_t st = g_cublas.dnrm2(g_cublas.handle, (int)k, d_v, 1, &r);
		if (st != CUBLAS_STATUS_SUCCESS) {
			rc = fail(msg, msg_len, "cublasDnrm2 failed: %s",
				  g_cublas.status_string ? g_cublas.status_string(st) : "unknown cuBLAS status");
			goto done;
		}
		sumsq += r * r;
		at += k;
	}
	*out = sumsq;
done:
	cudaFree(d_v);
	pthread_mutex_unlock(&g_mu);
	return rc;
}
