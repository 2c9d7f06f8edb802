// The CUDA conversion pipeline behind weld__cuda_convert.
//
// Each call (one chunk, from one executor thread) takes a slot from a pool:
// a stream plus device buffers for staging, output and the small tables.
// On its stream it uploads the tables and the staged bytes, runs
// gather_cast and crc, downloads the output and the block CRCs, waits, and
// folds the block CRCs into span CRCs with zlib's crc32_combine64. Executor
// threads run calls concurrently, so one chunk's transfers and kernels
// overlap other threads' reads and writes and each other (one stream per
// busy thread). The pool never holds more device memory than the budget;
// a call that finds no room waits for a slot to come free.
#include "cuda_backend.h"
#include "kernels.cuh"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

using namespace weld_cuda;

namespace {

constexpr int kMaxSlots = 64;
constexpr size_t kRound = 1u << 20; // device buffers grow in MiB steps
constexpr size_t kDefaultBudgetCap = (size_t)4 << 30;

struct Slot {
	cudaStream_t stream;
	uint8_t *d_staging, *d_out, *d_tab, *h_tab;
	size_t cap_staging, cap_out, cap_tab, cap_htab;
	bool busy;
};

// Where a job's tables live in d_tab / h_tab.
struct Layout {
	size_t segs, spans, upload, res, total;
	uint32_t nparts, nblocks;
	size_t staging_len, out_len;
};

} // namespace

struct weld__cuda_ctx {
	int device;
	bool emulate;
	size_t budget, used; // device bytes held by slots
	pthread_mutex_t mu;
	pthread_cond_t cv;
	Slot *slots[kMaxSlots];
	int nslots;
};

// "cuda/backend.cu" rather than the build's absolute path.
static const char *short_path(const char *f)
{
	const char *p = strstr(f, "cuda/");
	return p ? p : f;
}

static int fail(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -1;
}

// "cudaMemcpyAsync failed: out of memory (cudaErrorMemoryAllocation, cuda/backend.cu:123)"
static int cuda_fail(char *msg, size_t len, const char *call, cudaError_t e, const char *file, int line)
{
	int name = (int)strcspn(call, "(");
	return fail(msg, len, "%.*s failed: %s (%s, %s:%d)", name, call, cudaGetErrorString(e), cudaGetErrorName(e),
		    short_path(file), line);
}

// Every CUDA call goes through CK: a failure becomes a message and a jump to done.
#define CK(call)                                                                          \
	do {                                                                              \
		cudaError_t e_ = (call);                                                  \
		if (e_ != cudaSuccess) {                                                  \
			rc = cuda_fail(msg, msg_len, #call, e_, __FILE__, __LINE__);      \
			goto done;                                                        \
		}                                                                         \
	} while (0)

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

// ---- memory: device buffers (host memory when emulating) ---------------------------

static cudaError_t dev_alloc(weld__cuda_ctx *ctx, uint8_t **p, size_t n)
{
	*p = NULL;
	if (!n)
		return cudaSuccess;
	if (ctx->emulate) {
		*p = (uint8_t *)malloc(n);
		return *p ? cudaSuccess : cudaErrorMemoryAllocation;
	}
	return cudaMalloc((void **)p, n);
}

static void dev_free(weld__cuda_ctx *ctx, uint8_t *p)
{
	if (!p)
		return;
	if (ctx->emulate)
		free(p);
	else
		cudaFree(p);
}

static cudaError_t pinned_alloc(weld__cuda_ctx *ctx, uint8_t **p, size_t n)
{
	*p = NULL;
	if (ctx->emulate) {
		*p = (uint8_t *)malloc(n ? n : 1);
		return *p ? cudaSuccess : cudaErrorMemoryAllocation;
	}
	return cudaHostAlloc((void **)p, n ? n : 1, cudaHostAllocPortable);
}

static void pinned_free(weld__cuda_ctx *ctx, uint8_t *p)
{
	if (!p)
		return;
	if (ctx->emulate)
		free(p);
	else
		cudaFreeHost(p);
}

static size_t slot_bytes(const Slot *s)
{
	return s->cap_staging + s->cap_out + s->cap_tab;
}

// Device bytes SLOT must add to hold a job of the given sizes.
static size_t slot_extra(const Slot *s, size_t ns, size_t no, size_t nt)
{
	return (ns > s->cap_staging ? ns - s->cap_staging : 0) + (no > s->cap_out ? no - s->cap_out : 0) +
	       (nt > s->cap_tab ? nt - s->cap_tab : 0);
}

static cudaError_t grow(weld__cuda_ctx *ctx, uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return cudaSuccess;
	dev_free(ctx, *p);
	*cap = 0;
	cudaError_t e = dev_alloc(ctx, p, need);
	if (e == cudaSuccess)
		*cap = need;
	return e;
}

static void slot_destroy(weld__cuda_ctx *ctx, Slot *s)
{
	if (!s)
		return;
	if (s->stream && !ctx->emulate)
		cudaStreamDestroy(s->stream);
	dev_free(ctx, s->d_staging);
	dev_free(ctx, s->d_out);
	dev_free(ctx, s->d_tab);
	pinned_free(ctx, s->h_tab);
	free(s);
}

static void slot_remove(weld__cuda_ctx *ctx, Slot *s)
{
	for (int i = 0; i < ctx->nslots; i++)
		if (ctx->slots[i] == s) {
			ctx->slots[i] = ctx->slots[--ctx->nslots];
			break;
		}
}

static void release(weld__cuda_ctx *ctx, Slot *s)
{
	pthread_mutex_lock(&ctx->mu);
	s->busy = false;
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
}

// Bring a slot we own (busy) up to the sizes; RESERVED device bytes were
// already counted in ctx->used, which is set right afterwards.
static int slot_fit(weld__cuda_ctx *ctx, Slot *s, size_t ns, size_t no, size_t nt, size_t reserved, char *msg,
		    size_t msg_len)
{
	int rc = 0;
	size_t before = slot_bytes(s);
	if (!ctx->emulate && !s->stream)
		CK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
	CK(grow(ctx, &s->d_staging, &s->cap_staging, ns));
	CK(grow(ctx, &s->d_out, &s->cap_out, no));
	CK(grow(ctx, &s->d_tab, &s->cap_tab, nt));
	if (s->cap_htab < nt) {
		pinned_free(ctx, s->h_tab);
		s->h_tab = NULL;
		s->cap_htab = 0;
		CK(pinned_alloc(ctx, &s->h_tab, nt));
		s->cap_htab = nt;
	}
done:
	pthread_mutex_lock(&ctx->mu);
	ctx->used = ctx->used - reserved + slot_bytes(s) - before;
	pthread_mutex_unlock(&ctx->mu);
	if (rc && strlen(msg) + 1 < msg_len)
		fail(msg + strlen(msg), msg_len - strlen(msg), " (GPU memory budget %zu MiB)", ctx->budget >> 20);
	return rc;
}

// A slot that fits the job, within the budget; waits while others hold it.
static int acquire(weld__cuda_ctx *ctx, size_t ns, size_t no, size_t nt, Slot **out, char *msg, size_t msg_len)
{
	ns = round_up(ns, kRound);
	no = round_up(no, kRound);
	nt = round_up(nt, 64u << 10);
	*out = NULL;
	pthread_mutex_lock(&ctx->mu);
	for (;;) {
		Slot *best = NULL;
		size_t best_extra = SIZE_MAX;
		int busy = 0;
		for (int i = 0; i < ctx->nslots; i++) {
			Slot *s = ctx->slots[i];
			if (s->busy) {
				busy++;
				continue;
			}
			size_t e = slot_extra(s, ns, no, nt);
			if (e < best_extra) {
				best = s;
				best_extra = e;
			}
		}
		if (best && (best_extra == 0 || ctx->used + best_extra <= ctx->budget)) {
			best->busy = true;
			ctx->used += best_extra;
			pthread_mutex_unlock(&ctx->mu);
			*out = best;
			int rc = best_extra || (!ctx->emulate && !best->stream) || best->cap_htab < nt
					 ? slot_fit(ctx, best, ns, no, nt, best_extra, msg, msg_len)
					 : 0;
			if (rc)
				release(ctx, best);
			return rc;
		}
		size_t fresh = ns + no + nt;
		if (ctx->nslots < kMaxSlots && ctx->used + fresh <= ctx->budget) {
			Slot *s = (Slot *)calloc(1, sizeof(*s));
			if (!s) {
				pthread_mutex_unlock(&ctx->mu);
				return fail(msg, msg_len, "out of host memory");
			}
			s->busy = true;
			ctx->slots[ctx->nslots++] = s;
			ctx->used += fresh;
			pthread_mutex_unlock(&ctx->mu);
			int rc = slot_fit(ctx, s, ns, no, nt, fresh, msg, msg_len);
			if (rc) {
				pthread_mutex_lock(&ctx->mu);
				ctx->used -= slot_bytes(s);
				slot_remove(ctx, s);
				pthread_cond_broadcast(&ctx->cv);
				pthread_mutex_unlock(&ctx->mu);
				slot_destroy(ctx, s);
				return rc;
			}
			*out = s;
			return 0;
		}
		if (best) {
			// An idle slot too small for this job, and no room to grow: drop it.
			slot_remove(ctx, best);
			ctx->used -= slot_bytes(best);
			pthread_mutex_unlock(&ctx->mu);
			slot_destroy(ctx, best);
			pthread_mutex_lock(&ctx->mu);
			continue;
		}
		if (!busy) {
			pthread_mutex_unlock(&ctx->mu);
			return fail(msg, msg_len,
				    "a chunk needs %zu MiB of GPU memory, more than the budget of %zu MiB "
				    "(WELD_GPU_MEMORY_MB); use a smaller --chunk-bytes or a larger budget",
				    fresh >> 20, ctx->budget >> 20);
		}
		pthread_cond_wait(&ctx->cv, &ctx->mu);
	}
}

// ---- open / close --------------------------------------------------------------

static int ctx_new(weld__cuda_ctx **out, char *msg, size_t msg_len)
{
	weld__cuda_ctx *ctx = (weld__cuda_ctx *)calloc(1, sizeof(*ctx));
	if (!ctx)
		return fail(msg, msg_len, "out of host memory");
	pthread_mutex_init(&ctx->mu, NULL);
	pthread_cond_init(&ctx->cv, NULL);
	(void)crc_consts(); // built once, before threads race for it
	*out = ctx;
	return 0;
}

extern "C" int weld__cuda_open(weld__cuda_ctx **out, int device, size_t budget_bytes, char *msg, size_t msg_len)
{
	int rc = 0;
	size_t free_b = 0, total_b = 0;
	weld__cuda_ctx *ctx = NULL;
	*out = NULL;
	CK(cudaSetDevice(device));
	// Waiting threads sleep instead of spinning: the CPU cores are busy reading and writing.
	if (cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync) != cudaSuccess)
		cudaGetLastError();
	CK(cudaFree(0)); // create the context now, so that failures show here
	CK(cudaMemGetInfo(&free_b, &total_b));
	if ((rc = ctx_new(&ctx, msg, msg_len)))
		return rc;
	ctx->device = device;
	ctx->budget = budget_bytes;
	if (!ctx->budget)
		ctx->budget = free_b / 2 < kDefaultBudgetCap ? free_b / 2 : kDefaultBudgetCap;
	*out = ctx;
done:
	return rc;
}

extern "C" int weld__cuda_open_emulated(weld__cuda_ctx **out, size_t budget_bytes, char *msg, size_t msg_len)
{
	int rc = ctx_new(out, msg, msg_len);
	if (!rc) {
		(*out)->emulate = true;
		(*out)->budget = budget_bytes ? budget_bytes : (size_t)1 << 30;
	}
	return rc;
}

extern "C" void weld__cuda_close(weld__cuda_ctx *ctx)
{
	if (!ctx)
		return;
	if (!ctx->emulate)
		cudaSetDevice(ctx->device);
	for (int i = 0; i < ctx->nslots; i++)
		slot_destroy(ctx, ctx->slots[i]);
	pthread_mutex_destroy(&ctx->mu);
	pthread_cond_destroy(&ctx->cv);
	free(ctx);
}

extern "C" size_t weld__cuda_budget(const weld__cuda_ctx *ctx)
{
	return ctx->budget;
}

extern "C" void *weld__cuda_host_alloc(weld__cuda_ctx *ctx, size_t size)
{
	uint8_t *p = NULL;
	if (ctx && !ctx->emulate && cudaSetDevice(ctx->device) != cudaSuccess) {
		cudaGetLastError();
		return NULL;
	}
	if (ctx && ctx->emulate)
		return malloc(size ? size : 1);
	if (cudaHostAlloc((void **)&p, size ? size : 1, cudaHostAllocPortable) != cudaSuccess) {
		cudaGetLastError();
		return NULL;
	}
	return p;
}

extern "C" void weld__cuda_host_free(weld__cuda_ctx *ctx, void *p)
{
	if (!p)
		return;
	if (ctx && ctx->emulate)
		free(p);
	else
		cudaFreeHost(p);
}

// ---- convert ---------------------------------------------------------------------

static int plan_job(const weld__cuda_seg *segs, size_t nsegs, const weld__cuda_span *spans, size_t nspans, Layout *l,
		    char *msg, size_t msg_len)
{
	uint64_t parts = 0, blocks = 0;
	memset(l, 0, sizeof(*l));
	for (size_t i = 0; i < nsegs; i++) {
		const weld__cuda_seg &s = segs[i];
		unsigned ss = dtype_size((unsigned)s.src_dtype), ds = dtype_size((unsigned)s.dst_dtype);
		if (!ss || !ds || s.src_dtype < 0 || s.dst_dtype < 0 || s.src_dtype > 0xffff || s.dst_dtype > 0xffff)
			return fail(msg, msg_len, "segment %zu: unsupported dtypes %d -> %d", i, s.src_dtype, s.dst_dtype);
		bool fsrc = s.src_dtype == WELD_DTYPE_F32 || s.src_dtype == WELD_DTYPE_F16 ||
			    s.src_dtype == WELD_DTYPE_BF16 || s.src_dtype == WELD_DTYPE_F64;
		bool fdst = s.dst_dtype == WELD_DTYPE_F32 || s.dst_dtype == WELD_DTYPE_F16 || s.dst_dtype == WELD_DTYPE_BF16;
		if (s.src_dtype != s.dst_dtype && !(fsrc && fdst))
			return fail(msg, msg_len, "segment %zu: no cast from dtype %d to %d", i, s.src_dtype, s.dst_dtype);
		// The kernels load and store whole elements: misaligned runs would fault.
		if (s.staging_off % (ss < 8 ? ss : 8) || s.out_off % ds)
			return fail(msg, msg_len, "segment %zu: staging offset %llu or output offset %llu not aligned", i,
				    (unsigned long long)s.staging_off, (unsigned long long)s.out_off);
		uint64_t se, oe;
		if (__builtin_mul_overflow(s.count, (uint64_t)ss, &se) || __builtin_add_overflow(se, s.staging_off, &se) ||
		    __builtin_mul_overflow(s.count, (uint64_t)ds, &oe) || __builtin_add_overflow(oe, s.out_off, &oe))
			return fail(msg, msg_len, "segment %zu: %llu elements overflow the offsets", i,
				    (unsigned long long)s.count);
		l->staging_len = se > l->staging_len ? se : l->staging_len;
		l->out_len = oe > l->out_len ? oe : l->out_len;
		parts += (s.count + kPartElems - 1) / kPartElems;
	}
	for (size_t i = 0; i < nspans; i++) {
		uint64_t e;
		if (__builtin_add_overflow(spans[i].out_off, spans[i].len, &e))
			return fail(msg, msg_len, "span %zu: %llu bytes overflow the offsets", i,
				    (unsigned long long)spans[i].len);
		l->out_len = e > l->out_len ? e : l->out_len;
		blocks += (spans[i].len + kCrcBlock - 1) / kCrcBlock;
	}
	// Block numbers and table indices are 32-bit in the kernels (kernels.cuh); offsets are not.
	if (parts > 0x7fffffffu || blocks > 0x7fffffffu || nsegs > 0xffffffffu || nspans > 0xffffffffu)
		return fail(msg, msg_len, "chunk too large for one launch");
	l->nparts = (uint32_t)parts;
	l->nblocks = (uint32_t)blocks;
	l->segs = 0;
	l->spans = round_up(nsegs * sizeof(DevSeg), 16);
	l->upload = l->spans + nspans * sizeof(DevSpan);
	l->res = round_up(l->upload, 16);
	l->total = l->res + 8 + (size_t)l->nblocks * 4;
	return 0;
}

static void fill_tables(uint8_t *h, const Layout &l, const weld__cuda_seg *segs, size_t nsegs,
			const weld__cuda_span *spans, size_t nspans)
{
	DevSeg *ds = (DevSeg *)(h + l.segs);
	uint32_t part = 0;
	for (size_t i = 0; i < nsegs; i++) {
		ds[i] = DevSeg{segs[i].staging_off, segs[i].out_off, segs[i].count, part, (uint16_t)segs[i].src_dtype,
			       (uint16_t)segs[i].dst_dtype};
		part += (uint32_t)((segs[i].count + kPartElems - 1) / kPartElems);
	}
	DevSpan *dp = (DevSpan *)(h + l.spans);
	uint32_t block = 0;
	for (size_t i = 0; i < nspans; i++) {
		dp[i] = DevSpan{spans[i].out_off, spans[i].len, block, 0};
		block += (uint32_t)((spans[i].len + kCrcBlock - 1) / kCrcBlock);
	}
}

// Span CRCs from the block CRCs (zlib CRC-32 of each block's bytes).
static void combine_spans(const uint32_t *crcs, weld__cuda_span *spans, size_t nspans)
{
	size_t b = 0;
	for (size_t i = 0; i < nspans; i++) {
		uLong crc = crc32(0L, Z_NULL, 0);
		for (uint64_t off = 0; off < spans[i].len; off += kCrcBlock, b++) {
			uint64_t n = spans[i].len - off < kCrcBlock ? spans[i].len - off : kCrcBlock;
			crc = crc32_combine64(crc, crcs[b], (z_off64_t)n);
		}
		spans[i].crc = (uint32_t)crc;
	}
}

// A failed job may leave copies and kernels queued on the slot's stream: wait
// for them before the slot's buffers go to another job, and drop a slot whose
// stream cannot even be waited for.
static void finish(weld__cuda_ctx *ctx, Slot *s, bool failed)
{
	if (!failed || ctx->emulate || !s->stream || cudaStreamSynchronize(s->stream) == cudaSuccess) {
		release(ctx, s);
		return;
	}
	cudaGetLastError();
	pthread_mutex_lock(&ctx->mu);
	slot_remove(ctx, s);
	ctx->used -= slot_bytes(s);
	pthread_cond_broadcast(&ctx->cv);
	pthread_mutex_unlock(&ctx->mu);
	slot_destroy(ctx, s);
}

extern "C" int weld__cuda_convert(weld__cuda_ctx *ctx, const uint8_t *staging, uint8_t *out, const weld__cuda_seg *segs,
				  size_t nsegs, weld__cuda_span *spans, size_t nspans, uint64_t *fp16_overflows,
				  char *msg, size_t msg_len)
{
	Layout l;
	Slot *s = NULL;
	int rc = plan_job(segs, nsegs, spans, nspans, &l, msg, msg_len);
	if (rc)
		return rc;
	if (!ctx->emulate)
		CK(cudaSetDevice(ctx->device));
	if ((rc = acquire(ctx, l.staging_len, l.out_len, l.total, &s, msg, msg_len)))
		return rc;
	fill_tables(s->h_tab, l, segs, nsegs, spans, nspans);
	if (ctx->emulate) {
		memcpy(s->d_tab, s->h_tab, l.upload);
		if (l.staging_len)
			memcpy(s->d_staging, staging, l.staging_len);
		uint64_t ovf = emulate_gather_cast((const DevSeg *)(s->d_tab + l.segs), (uint32_t)nsegs, l.nparts,
						   s->d_staging, s->d_out);
		emulate_crc((const DevSpan *)(s->d_tab + l.spans), (uint32_t)nspans, l.nblocks, s->d_out,
			    (uint32_t *)(s->d_tab + l.res + 8));
		memcpy(s->d_tab + l.res, &ovf, 8);
		if (l.out_len)
			memcpy(out, s->d_out, l.out_len);
		memcpy(s->h_tab + l.res, s->d_tab + l.res, l.total - l.res);
	} else {
		cudaStream_t st = s->stream;
		unsigned long long *d_ovf = (unsigned long long *)(s->d_tab + l.res);
		if (l.upload)
			CK(cudaMemcpyAsync(s->d_tab, s->h_tab, l.upload, cudaMemcpyHostToDevice, st));
		CK(cudaMemsetAsync(d_ovf, 0, 8, st));
		if (l.staging_len)
			CK(cudaMemcpyAsync(s->d_staging, staging, l.staging_len, cudaMemcpyHostToDevice, st));
		CK(launch_gather_cast((const DevSeg *)(s->d_tab + l.segs), (uint32_t)nsegs, l.nparts, s->d_staging,
				      s->d_out, d_ovf, st));
		CK(launch_crc((const DevSpan *)(s->d_tab + l.spans), (uint32_t)nspans, l.nblocks, s->d_out,
			      (uint32_t *)(s->d_tab + l.res + 8), st));
		if (l.out_len)
			CK(cudaMemcpyAsync(out, s->d_out, l.out_len, cudaMemcpyDeviceToHost, st));
		CK(cudaMemcpyAsync(s->h_tab + l.res, s->d_tab + l.res, l.total - l.res, cudaMemcpyDeviceToHost, st));
		CK(cudaStreamSynchronize(st));
	}
	{
		uint64_t ovf;
		memcpy(&ovf, s->h_tab + l.res, 8);
		*fp16_overflows += ovf;
		combine_spans((const uint32_t *)(s->h_tab + l.res + 8), spans, nspans);
	}
done:
	if (s)
		finish(ctx, s, rc != 0);
	return rc;
}

// ---- test entry ------------------------------------------------------------------

extern "C" int weld__cuda_test_cast(weld__cuda_ctx *ctx, uint32_t first, uint32_t n, int dst_dtype, uint16_t *out,
				    uint64_t *overflows, char *msg, size_t msg_len)
{
	int rc = 0;
	uint8_t *d_in = NULL, *d_out = NULL, *d_tab = NULL;
	uint64_t parts = (n + kPartElems - 1) / kPartElems;
	DevSeg seg = {0, 0, n, 0, (uint16_t)WELD_DTYPE_F32, (uint16_t)dst_dtype};
	unsigned long long ovf = 0;
	*overflows = 0;
	if (dst_dtype != WELD_DTYPE_BF16 && dst_dtype != WELD_DTYPE_F16)
		return fail(msg, msg_len, "weld__cuda_test_cast: dtype %d is not BF16 or F16", dst_dtype);
	if (!n)
		return 0;
	if (ctx->emulate) {
		uint32_t *in = (uint32_t *)malloc((size_t)n * 4);
		if (!in)
			return fail(msg, msg_len, "out of host memory");
		for (uint32_t i = 0; i < n; i++)
			in[i] = first + i;
		*overflows = emulate_gather_cast(&seg, 1, (uint32_t)parts, (const uint8_t *)in, (uint8_t *)out);
		free(in);
		return 0;
	}
	CK(cudaSetDevice(ctx->device));
	CK(cudaMalloc((void **)&d_in, (size_t)n * 4));
	CK(cudaMalloc((void **)&d_out, (size_t)n * 2));
	CK(cudaMalloc((void **)&d_tab, sizeof(seg) + 8));
	CK(cudaMemcpy(d_tab, &seg, sizeof(seg), cudaMemcpyHostToDevice));
	CK(cudaMemset(d_tab + sizeof(seg), 0, 8));
	CK(launch_iota((uint32_t *)d_in, first, n, 0));
	CK(launch_gather_cast((const DevSeg *)d_tab, 1, (uint32_t)parts, d_in, d_out,
			      (unsigned long long *)(d_tab + sizeof(seg)), 0));
	CK(cudaMemcpy(out, d_out, (size_t)n * 2, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(&ovf, d_tab + sizeof(seg), 8, cudaMemcpyDeviceToHost));
	*overflows = ovf;
done:
	cudaFree(d_in);
	cudaFree(d_out);
	cudaFree(d_tab);
	return rc;
}

// A job's tables on the host, for running some of its blocks there.
struct HostJob {
	const uint8_t *staging;
	uint8_t *out;
	const weld__cuda_seg *segs;
	const weld__cuda_span *spans;
	const DevSeg *ds;
	const DevSpan *dp;
	size_t nsegs, nspans;
	const CrcTable *tab;
};

// Run the block of J that probe P names: a gather_cast block (CRC false) or a
// crc block. Sets the range it covers; fails when P lies outside the job.
static int run_probe(const HostJob &j, weld__cuda_block_probe *p, bool crc, uint64_t *overflows, char *msg,
		     size_t msg_len)
{
	size_t n = crc ? j.nspans : j.nsegs;
	uint64_t len = p->index >= n ? 0 : crc ? j.spans[p->index].len : j.segs[p->index].count;
	uint64_t size = crc ? kCrcBlock : kPartElems;
	if (p->at >= len)
		return fail(msg, msg_len, "no %s %llu in %s %llu", crc ? "byte" : "element", (unsigned long long)p->at,
			    crc ? "span" : "segment", (unsigned long long)p->index);
	uint64_t k = p->at / size; // 64-bit: AT may lie far past 2^32
	p->first = k * size;
	p->end = len - p->first < size ? len : p->first + size;
	if (crc)
		p->crc = emulate_crc_block(j.tab, j.dp, (uint32_t)j.nspans, j.out, j.dp[p->index].block_first + (uint32_t)k);
	else
		*overflows += emulate_gather_part(j.ds, (uint32_t)j.nsegs, j.staging, j.out,
						  j.ds[p->index].part_first + (uint32_t)k);
	return 0;
}

extern "C" int weld__cuda_test_blocks(const uint8_t *staging, uint8_t *out, const weld__cuda_seg *segs, size_t nsegs,
				      const weld__cuda_span *spans, size_t nspans, weld__cuda_block_probe *parts,
				      size_t nparts, weld__cuda_block_probe *blocks, size_t nblocks, uint64_t *overflows,
				      char *msg, size_t msg_len)
{
	Layout l;
	int rc = plan_job(segs, nsegs, spans, nspans, &l, msg, msg_len);
	if (rc)
		return rc;
	uint8_t *h = (uint8_t *)malloc(l.upload ? l.upload : 1);
	CrcTable *tab = crc_table_new();
	if (!h || !tab) {
		free(h);
		free(tab);
		return fail(msg, msg_len, "out of host memory");
	}
	fill_tables(h, l, segs, nsegs, spans, nspans);
	HostJob j = {staging, out, segs, spans, (const DevSeg *)(h + l.segs), (const DevSpan *)(h + l.spans),
		     nsegs, nspans, tab};
	for (size_t i = 0; !rc && i < nparts; i++)
		rc = run_probe(j, &parts[i], false, overflows, msg, msg_len);
	for (size_t i = 0; !rc && i < nblocks; i++)
		rc = run_probe(j, &blocks[i], true, overflows, msg, msg_len);
	free(h);
	free(tab);
	return rc;
}
