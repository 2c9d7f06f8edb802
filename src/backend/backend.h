/*
 * Backends: a small function table that gathers, casts and checksums one
 * chunk. The CPU backend is the reference; every backend must produce the
 * same bytes and CRCs. Backends know nothing of formats.
 */
#ifndef WELD_BACKEND_H
#define WELD_BACKEND_H

#include "util/util.h"

/* COUNT elements at STAGING_OFF (SRC_DTYPE) become elements at OUT_OFF (DST_DTYPE). */
typedef struct weld_seg {
	uint64_t src_offset; /* file offset (read by the executor) */
	uint64_t count;
	size_t staging_off;
	size_t out_off;
	uint32_t src;
	uint32_t record;     /* WELD_NO_RECORD or the record these bytes are part of */
	weld_dtype src_dtype, dst_dtype;
	uint32_t src_crc;    /* CRC-32 of the source bytes, when record is set */
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
struct weld_backend {
	const char *name;
	/* Gather and cast every segment into job->out, then CRC every span. Thread-safe. */
	weld_status (*convert)(weld_backend *b, weld_job *job, weld_error *err);
	void (*close)(weld_backend *b);
	void *impl;
};

/*
 * Open the backend for DEVICE. AUTO falls back to the CPU and says why in
 * NOTICE; CUDA without a usable device is WELD_ERR_BACKEND.
 *
 * The CUDA backend keeps at most $WELD_GPU_MEMORY_MB MiB of device memory
 * (default: half the free memory, at most 4 GiB); a value that is not a
 * positive whole number is WELD_ERR_INVALID_ARG.
 */
weld_status weld_backend_open(weld_backend **out, weld_device device, char *notice, size_t notice_len,
			      weld_error *err);
void weld_backend_close(weld_backend *b);

/*
 * Host memory B moves fastest (pinned, for CUDA), for the executor's staging
 * and output buffers; NULL when B has none to give (the CPU) or it ran out:
 * use malloc then. Thread-safe. Free it with weld_backend_free_host.
 */
void *weld_backend_alloc_host(weld_backend *b, size_t size);
void weld_backend_free_host(weld_backend *b, void *p);

/* The CPU backend's conversion of one run, shared with tests. */
void weld_cpu_convert_run(const uint8_t *src, weld_dtype src_dtype, uint8_t *dst, weld_dtype dst_dtype,
			  uint64_t count, uint64_t *fp16_overflows);

extern const weld_backend weld_backend_cpu;

/*
 * Test hook: the CUDA backend's whole pipeline run on the host, the kernels'
 * code in loops (no GPU, no CUDA call), host memory standing in for device
 * memory under the same budget ($WELD_GPU_MEMORY_MB, default 1 GiB here).
 * WELD_ERR_UNSUPPORTED in builds without CUDA.
 */
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
 * L2 norm of each of N runs of DTYPE elements (F32, F64, BF16, F16) in host
 * memory DATA, run i being COUNT[i] elements from element OFFSET[i], computed
 * on the GPU with cuBLAS (cublasDnrm2 on values widened to double; libcublas
 * is loaded at run time). WELD_ERR_UNSUPPORTED without the CUDA backend,
 * WELD_ERR_BACKEND when no GPU or cuBLAS is usable: callers then compute the
 * norms on the CPU.
 */
weld_status weld__gpu_l2_norms(const void *data, weld_dtype dtype, const uint64_t *offset, const uint64_t *count,
			       size_t n, double *norms, weld_error *err);

#endif /* WELD_BACKEND_H */
