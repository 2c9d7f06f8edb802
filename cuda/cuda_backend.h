/*
 * C entry points into the CUDA code; no CUDA types cross this line. Only
 * src/backend/ (backend.c for the probe, cuda.c for the rest) and the device
 * benchmark (bench/cuda_bench.cu) include this header.
 *
 * Every function that can fail returns 0 on success, or nonzero after
 * writing one line into MESSAGE: the CUDA call that failed, cudaGetErrorString,
 * and the source line. Nothing here prints, aborts or exits.
 */
#ifndef WELD_CUDA_BACKEND_H
#define WELD_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Count usable devices. The runtime is linked statically and finds the
 * driver at run time, so this works (and says why not) on machines with no
 * NVIDIA driver at all. MESSAGE gets the reason when *DEVICES is 0.
 */
void weld__cuda_probe(int *devices, int *runtime_version, char *message, size_t message_len);

/* One run of COUNT elements: SRC_DTYPE at STAGING_OFF -> DST_DTYPE at OUT_OFF (weld_dtype values). */
typedef struct weld__cuda_seg {
	uint64_t staging_off, out_off, count;
	int src_dtype, dst_dtype;
} weld__cuda_seg;

/* A byte range of the output whose zlib CRC-32 is wanted (filled in CRC). */
typedef struct weld__cuda_span {
	uint64_t out_off, len;
	uint32_t crc;
} weld__cuda_span;

typedef struct weld__cuda_ctx weld__cuda_ctx;

/*
 * Open DEVICE for conversions with at most BUDGET_BYTES of device memory
 * (0: half of the free memory, at most 4 GiB). Each concurrent caller of
 * weld__cuda_convert gets its own stream and device buffers ("slot") from a
 * pool bounded by the budget; callers beyond it wait for a free slot.
 */
int weld__cuda_open(weld__cuda_ctx **out, int device, size_t budget_bytes, char *message, size_t message_len);
/*
 * The same pipeline on the host, with the kernels' code run in loops over
 * blocks and threads and host memory standing in for the device's (budget
 * 0: 1 GiB): for tests on machines without a GPU. Never touches CUDA.
 */
int weld__cuda_open_emulated(weld__cuda_ctx **out, size_t budget_bytes, char *message, size_t message_len);
void weld__cuda_close(weld__cuda_ctx *ctx);
/* The budget in bytes, after defaults. */
size_t weld__cuda_budget(const weld__cuda_ctx *ctx);

/*
 * Gather and cast NSEGS runs from STAGING into OUT, then CRC every span of
 * OUT; *FP16_OVERFLOWS grows by the finite values that became inf. Staging
 * runs start 8-byte aligned. Thread-safe; STAGING and OUT are best pinned
 * (weld__cuda_host_alloc). Identical bytes and CRCs to the CPU backend.
 */
int weld__cuda_convert(weld__cuda_ctx *ctx, const uint8_t *staging, uint8_t *out, const weld__cuda_seg *segs,
		       size_t nsegs, weld__cuda_span *spans, size_t nspans, uint64_t *fp16_overflows, char *message,
		       size_t message_len);

/*
 * Page-locked host memory for CTX's device (NULL on failure: use malloc
 * then); free with weld__cuda_host_free. Plain malloc when CTX emulates.
 */
void *weld__cuda_host_alloc(weld__cuda_ctx *ctx, size_t size);
void weld__cuda_host_free(weld__cuda_ctx *ctx, void *p);

/*
 * Test entry: the conversion kernel on the N fp32 bit patterns FIRST,
 * FIRST+1, ... (generated on the device), to DST_DTYPE (BF16 or F16) into
 * host OUT (N uint16_t); *OVERFLOWS counts finite values that became inf.
 */
int weld__cuda_test_cast(weld__cuda_ctx *ctx, uint32_t first, uint32_t n, int dst_dtype, uint16_t *out,
			 uint64_t *overflows, char *message, size_t message_len);

/*
 * One block of the conversion kernels, named by what it covers: element AT
 * of segment INDEX (gather_cast) or byte AT of span INDEX (crc). Filled in:
 * the elements or bytes [FIRST, END) of that segment or span the block
 * covers, and for a crc block the zlib CRC-32 of those bytes.
 */
typedef struct weld__cuda_block_probe {
	uint64_t index, at;
	uint64_t first, end;
	uint32_t crc;
} weld__cuda_block_probe;

/*
 * Test entry: the kernels' code run on the host for a few blocks of the job
 * SEGS, SPANS (as weld__cuda_convert takes it, with the same tables), so
 * that a test reaches element indices and byte offsets past 2^32 in a job
 * whose STAGING and OUT are sparse mappings: only the probed blocks' bytes
 * are touched. The gather_cast blocks of PARTS run first, then the crc
 * blocks of BLOCKS; *OVERFLOWS grows by the parts' fp16 overflows. A probe
 * past the end of its segment or span fails.
 */
int weld__cuda_test_blocks(const uint8_t *staging, uint8_t *out, const weld__cuda_seg *segs, size_t nsegs,
			   const weld__cuda_span *spans, size_t nspans, weld__cuda_block_probe *parts, size_t nparts,
			   weld__cuda_block_probe *blocks, size_t nblocks, uint64_t *overflows, char *message,
			   size_t message_len);

/*
 * The sum of the squares of V[0..N) (host memory), as cuBLAS's cublasDnrm2
 * squared, in pieces. libcublas is loaded at run time (dlopen), so weld
 * itself still needs no CUDA library; without it this fails with a message
 * that says so, and the caller sums on the CPU. Thread-safe (serialised).
 */
int weld__cuda_sum_squares(const double *v, uint64_t n, double *out, char *message, size_t message_len);

#ifdef __cplusplus
}
#endif

#endif
