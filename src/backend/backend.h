/*
 * Backends: one small interface that gathers, casts and checksums a chunk
 * (ggml's shape: a table of functions, some of them optional, and a
 * context). The CPU backend is the reference; every backend must produce
 * the same bytes and CRCs. Backends know nothing of formats, plans or files:
 * a job is staging bytes in, output bytes out.
 */
#ifndef WELD_BACKEND_BACKEND_H
#define WELD_BACKEND_BACKEND_H

#include "util/util.h"

/* COUNT elements at STAGING_OFF (SRC_DTYPE) become elements at OUT_OFF (DST_DTYPE). */
typedef struct weld_seg {
	size_t staging_off;
	size_t out_off;
	uint64_t count;
	weld_dtype src_dtype, dst_dtype;
} weld_seg;

/* A byte range of the output chunk whose CRC-32 the backend computes. */
typedef struct weld_span {
	size_t out_off, len;
	uint32_t crc;
} weld_span;

typedef struct weld_job {
	const uint8_t *staging; /* source bytes, each segment 8-byte aligned */
	uint8_t *out;
	const weld_seg *segs;
	size_t nsegs;
	weld_span *spans;
	size_t nspans;
	uint64_t fp16_overflows; /* out: finite values that became inf */
} weld_job;

typedef struct weld_backend weld_backend;

typedef struct weld_backend_iface {
	const char *name;
	/* Gather and cast every segment into job->out, then CRC every span. Thread-safe. */
	weld_status (*convert)(weld_backend *b, weld_job *job, weld_error *err);
	/* Optional: host memory the backend moves fastest (pinned); NULL when it has none to give. */
	void *(*host_alloc)(weld_backend *b, size_t size);
	void (*host_free)(weld_backend *b, void *p);
	/* Optional: the sum of the squares of N doubles (L2 norms); without it the CPU sums. */
	weld_status (*sum_squares)(weld_backend *b, const double *v, size_t n, double *out, weld_error *err);
	/* Releases the context. */
	void (*free)(weld_backend *b);
} weld_backend_iface;

struct weld_backend {
	const weld_backend_iface *iface;
	void *context;
};

/*
 * Open the backend for DEVICE. AUTO falls back to the CPU and says why CUDA
 * is not used in WHY (empty when it is, or when DEVICE is CPU); CUDA without
 * a usable device is WELD_ERR_NO_DEVICE.
 *
 * The CUDA backend keeps at most $WELD_GPU_MEMORY_MB MiB of device memory
 * (default: half the free memory, at most 4 GiB); a value that is not a
 * positive whole number is WELD_ERR_INVALID_ARG.
 */
weld_status weld_backend_open(weld_backend **out, weld_device device, char *why, size_t why_len, weld_error *err);
void weld_backend_close(weld_backend *b);

/* "cpu" or "cuda". */
const char *weld_backend_name(const weld_backend *b);
/* B's convert; a failing device is WELD_ERR_DEVICE. */
weld_status weld_backend_convert(weld_backend *b, weld_job *job, weld_error *err);
/*
 * Host memory B moves fastest, for the executor's staging and output
 * buffers; NULL when B has none to give (the CPU) or it ran out: use malloc
 * then. Thread-safe. Free it with weld_backend_free_host.
 */
void *weld_backend_alloc_host(weld_backend *b, size_t size);
void weld_backend_free_host(weld_backend *b, void *p);
/*
 * The sum of the squares of V[0..N), on B when it can (cuBLAS), else on the
 * CPU. *ON names which one did it ("cpu" after a device's failure too).
 */
double weld_backend_sum_squares(weld_backend *b, const double *v, size_t n, const char **on);

/* The CPU backend's conversion of one run, shared with tests. */
void weld_cpu_convert_run(const uint8_t *src, weld_dtype src_dtype, uint8_t *dst, weld_dtype dst_dtype,
			  uint64_t count, uint64_t *fp16_overflows);
/* The CPU backend's sum of squares, the reference. */
double weld_cpu_sum_squares(const double *v, size_t n);

extern const weld_backend_iface weld_backend_cpu_iface;

/*
 * The CUDA backend (backend/cuda.c, built only with CUDA): on device 0, or
 * with EMULATE its whole pipeline run on the host (the kernels' code in
 * loops, host memory standing in for device memory under the same budget,
 * default 1 GiB), for tests on machines without a GPU. BUDGET: bytes of
 * device memory, 0 for the default. Failure: WELD_ERR_NO_DEVICE.
 */
weld_status weld__backend_cuda_open(weld_backend **out, bool emulate, size_t budget, weld_error *err);

/* Test hook: B (from weld__backend_cuda_open) emulated, $WELD_GPU_MEMORY_MB as the budget. */
weld_status weld__backend_open_cuda_emulated(weld_backend **out, weld_error *err);

/*
 * Test hook: the CUDA conversion kernel on the N fp32 bit patterns FIRST,
 * FIRST+1, ... to DST (BF16 or F16), into OUT (N entries) on the device that
 * B (a CUDA backend, or an emulated one) drives. *OVERFLOWS: finite values
 * that became inf.
 */
weld_status weld__backend_cuda_test_cast(weld_backend *b, uint32_t first, uint32_t n, weld_dtype dst, uint16_t *out,
					 uint64_t *overflows, weld_error *err);

/*
 * Test hook: one block of the CUDA kernels, named by what it covers: element
 * AT of segment INDEX (gather_cast) or byte AT of span INDEX (crc) of a job.
 * Filled in: the elements or bytes [FIRST, END) of that segment or span the
 * block covers, and for a crc block the CRC-32 of those bytes.
 */
typedef struct weld_block_probe {
	size_t index;
	uint64_t at;
	uint64_t first, end;
	uint32_t crc;
} weld_block_probe;

/*
 * Test hook: the CUDA kernels' code run on the host (no device needed) for
 * the probed blocks of JOB only, with the tables a conversion of JOB builds:
 * the gather_cast blocks of PARTS, then the crc blocks of BLOCKS.
 * JOB->fp16_overflows grows by the parts' overflows. Only the probed blocks'
 * bytes of JOB->staging and JOB->out are touched, so both may be sparse
 * mappings far larger than memory: element indices and byte offsets past
 * 2^32 are reached with a few pages. WELD_ERR_INVALID_ARG for a probe past
 * its segment or span; WELD_ERR_NO_DEVICE without the CUDA backend.
 */
weld_status weld__backend_cuda_test_blocks(weld_job *job, weld_block_probe *parts, size_t nparts,
					   weld_block_probe *blocks, size_t nblocks, weld_error *err);

#endif /* WELD_BACKEND_BACKEND_H */
