// Per-tensor L2 norms on the GPU with cuBLAS (weld verify).
//
// cuBLAS is loaded with dlopen on first use rather than linked: the weld
// binary must start on machines without any CUDA library, and no static
// cuBLAS ships with every toolkit. libcublas carries its own runtime; both
// work in the device's primary context, so our device pointers are its too.
// Work is serialised on the legacy default stream, which every runtime in
// the process shares.
#include "cuda_backend.h"
#include "kernels.cuh"

#include <cublas_v2.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

using namespace weld_cuda;

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

constexpr uint64_t kPieceElems = (uint64_t)1 << 25; // 32 Mi elements: 512 MiB of device memory at most

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

extern "C" int weld__cuda_l2_norms(const void *data, int dtype, const uint64_t *offset, const uint64_t *count, size_t n,
				   double *norms, char *msg, size_t msg_len)
{
	int rc = 0;
	uint8_t *d_raw = NULL;
	double *d_wide = NULL;
	unsigned esz = dtype_size((unsigned)dtype);
	uint64_t most = 0;
	if (dtype != WELD_DTYPE_F32 && dtype != WELD_DTYPE_F64 && dtype != WELD_DTYPE_BF16 && dtype != WELD_DTYPE_F16)
		return fail(msg, msg_len, "L2 norms: dtype %d is not F32, F64, BF16 or F16", dtype);
	for (size_t i = 0; i < n; i++)
		most = count[i] > most ? count[i] : most;
	most = most < kPieceElems ? most : kPieceElems;
	pthread_mutex_lock(&g_mu);
	// cuBLAS binds its handle to the calling thread's device: make that device 0 first.
	CK(cudaSetDevice(0));
	pthread_once(&g_once, load_cublas);
	if (!g_cublas.handle) {
		rc = fail(msg, msg_len, "%s", g_cublas.error);
		goto done;
	}
	if (most) {
		CK(cudaMalloc((void **)&d_raw, most * esz));
		CK(cudaMalloc((void **)&d_wide, most * sizeof(double)));
	}
	for (size_t i = 0; i < n; i++) {
		double sumsq = 0;
		for (uint64_t done_elems = 0; done_elems < count[i];) {
			uint64_t k = count[i] - done_elems < kPieceElems ? count[i] - done_elems : kPieceElems;
			const uint8_t *src = (const uint8_t *)data + (offset[i] + done_elems) * esz;
			double r = 0;
			CK(cudaMemcpy(d_raw, src, k * esz, cudaMemcpyHostToDevice));
			CK(launch_widen(d_raw, dtype, d_wide, k, 0));
			CK(cudaDeviceSynchronize());
			cublasStatus_t st = g_cublas.dnrm2(g_cublas.handle, (int)k, d_wide, 1, &r);
			if (st != CUBLAS_STATUS_SUCCESS) {
				rc = fail(msg, msg_len, "cublasDnrm2 failed: %s",
					  g_cublas.status_string ? g_cublas.status_string(st) : "unknown cuBLAS status");
				goto done;
			}
			sumsq += r * r;
			done_elems += k;
		}
		norms[i] = sqrt(sumsq);
	}
done:
	cudaFree(d_raw);
	cudaFree(d_wide);
	pthread_mutex_unlock(&g_mu);
	return rc;
}
