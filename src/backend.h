/*
 * Backends: a small function table that gathers, casts and checksums one
 * chunk. The CPU backend is the reference; every backend must produce the
 * same bytes and CRCs. Backends know nothing of formats.
 */
#ifndef WELD_BACKEND_H
#define WELD_BACKEND_H

#include "internal.h"

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
 */
weld_status weld_backend_open(weld_backend **out, weld_device device, char *notice, size_t notice_len,
			      weld_error *err);
void weld_backend_close(weld_backend *b);

/* The CPU backend's conversion of one run, shared with tests. */
void weld_cpu_convert_run(const uint8_t *src, weld_dtype src_dtype, uint8_t *dst, weld_dtype dst_dtype,
			  uint64_t count, uint64_t *fp16_overflows);

extern const weld_backend weld_backend_cpu;

#endif /* WELD_BACKEND_H */
