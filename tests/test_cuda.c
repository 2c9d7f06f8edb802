/*
 * The CUDA backend against the CPU backend, which is the reference.
 *
 * Everywhere (built with CUDA): the CUDA pipeline's host emulation (the
 * kernels' own code run in loops) on random jobs, odd CRC spans, a sample
 * of casts, and blocks at element indices and byte offsets past 2^31, 2^32
 * and 2^33 of one job (sparse buffers). With a usable device: random jobs from several threads at once,
 * a tight memory budget, odd CRC spans, all 2^32 fp32 patterns through the
 * cast kernel against backend/cast.h compiled for the host, one launch of
 * 2^31 + 4101 elements (4 GiB out), cuBLAS sums of squares, and
 * every fixture converted on both devices to byte-identical model.safetensors
 * and weld.json (bf16 and fp16, small and default chunks, HF and ZeRO).
 *
 * Without a usable device it prints "cuda: skipped: <why>" and exits 77
 * (ctest: SKIP_RETURN_CODE 77), or fails when WELD_REQUIRE_CUDA is set.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "backend/backend.h"
#include "backend/cast.h"
#include "util/util.h"
#include "pipeline/plan.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[] = "/tmp/weld_test_cuda_XXXXXX";

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* ---- random jobs: the CUDA backend B against the CPU backend ----------------- */

typedef struct job_buf {
	uint8_t *staging, *out_cpu, *out_b;
	weld_seg segs[64];
	weld_span spans_cpu[16], spans_b[16];
	size_t nsegs, nspans, staging_len, out_len;
} job_buf;

static const weld_dtype float_src[] = {WELD_DTYPE_F32, WELD_DTYPE_F32, WELD_DTYPE_F16, WELD_DTYPE_BF16,
				       WELD_DTYPE_F64};
static const weld_dtype float_dst[] = {WELD_DTYPE_BF16, WELD_DTYPE_BF16, WELD_DTYPE_F16, WELD_DTYPE_F32};
static const weld_dtype raw_types[] = {WELD_DTYPE_U8, WELD_DTYPE_BOOL, WELD_DTYPE_I16, WELD_DTYPE_I32,
				       WELD_DTYPE_I64, WELD_DTYPE_F32, WELD_DTYPE_BF16};
/* Integers cast to fp32 only (ZeRO buffers under --dtype keep). */
static const weld_dtype int_src[] = {WELD_DTYPE_BOOL, WELD_DTYPE_U8,  WELD_DTYPE_I8,  WELD_DTYPE_I16, WELD_DTYPE_U16,
				     WELD_DTYPE_I32,  WELD_DTYPE_U32, WELD_DTYPE_I64, WELD_DTYPE_U64};

/* A random chunk shaped like the executor's: pieces (spans) cut into segments. */
static int make_job(job_buf *j, uint64_t *rng, size_t max_elems)
{
	size_t npieces = 1 + rng_below(rng, 6);
	size_t out = 0, staging = 0;
	j->nsegs = j->nspans = 0;
	for (size_t p = 0; p < npieces; p++) {
		bool raw = rng_below(rng, 4) == 0;
		weld_dtype dst = raw ? raw_types[rng_below(rng, 7)] : float_dst[rng_below(rng, 4)];
		size_t esz = weld_dtype_size(dst);
		size_t elems = rng_below(rng, 8) == 0 ? 0 : 1 + rng_below(rng, max_elems);
		size_t piece_off = align8(out);
		size_t nseg = 1 + rng_below(rng, 4), done = 0;
		for (size_t k = 0; k < nseg && done < elems; k++) {
			size_t n = k + 1 == nseg ? elems - done : 1 + rng_below(rng, elems - done);
			weld_dtype src = raw ? dst : float_src[rng_below(rng, 5)];
			if (!raw && dst == WELD_DTYPE_F32 && rng_below(rng, 3) == 0)
				src = int_src[rng_below(rng, sizeof(int_src) / sizeof(int_src[0]))];
			weld_seg *s = &j->segs[j->nsegs++];
			*s = (weld_seg){.count = n, .staging_off = staging, .out_off = piece_off + done * esz,
					.src_dtype = src, .dst_dtype = dst};
			staging += align8(n * weld_dtype_size(src));
			done += n;
		}
		j->spans_cpu[j->nspans++] = (weld_span){.out_off = piece_off, .len = elems * esz};
		out = piece_off + elems * esz;
	}
	j->staging_len = staging;
	j->out_len = align8(out);
	j->staging = malloc(staging ? staging : 1);
	j->out_cpu = malloc(j->out_len ? j->out_len : 1);
	j->out_b = malloc(j->out_len ? j->out_len : 1);
	if (!j->staging || !j->out_cpu || !j->out_b)
		return -1;
	/* Random bits: every NaN payload, subnormal, inf and overflow shows up; a
	 * quarter of the fp32 values sit near the fp16 limits. */
	for (size_t i = 0; i < staging; i += 8) {
		uint64_t r = rng_next(rng);
		memcpy(j->staging + i, &r, staging - i < 8 ? staging - i : 8);
	}
	for (size_t k = 0; k < j->nsegs; k++) {
		weld_seg *s = &j->segs[k];
		if (s->src_dtype != WELD_DTYPE_F32)
			continue;
		for (size_t i = 0; i < s->count; i++)
			if (rng_below(rng, 4) == 0) {
				uint32_t x = (uint32_t)(0x477fe000u + rng_below(rng, 0x4000)) |
					     (uint32_t)(rng_below(rng, 2) << 31);
				if (rng_below(rng, 2))
					x = (uint32_t)(0x33000000u + rng_below(rng, 0x5000000)) | (x & 0x80000000u);
				memcpy(j->staging + s->staging_off + 4 * i, &x, 4);
			}
	}
	memset(j->out_cpu, 0xa5, j->out_len ? j->out_len : 1);
	memset(j->out_b, 0x5a, j->out_len ? j->out_len : 1);
	memcpy(j->spans_b, j->spans_cpu, sizeof(j->spans_cpu));
	return 0;
}

static void free_job(job_buf *j)
{
	free(j->staging);
	free(j->out_cpu);
	free(j->out_b);
}

/* One random job on B and on the CPU; 0 when they agree. */
static int compare_one(weld_backend *b, uint64_t *rng, size_t max_elems, const char *label)
{
	job_buf j;
	int bad = 0;
	weld_error err = {0};
	if (make_job(&j, rng, max_elems)) {
		free_job(&j);
		return 1;
	}
	weld_backend cpu = {&weld_backend_cpu_iface, NULL};
	weld_job jc = {.staging = j.staging, .out = j.out_cpu, .segs = j.segs, .nsegs = j.nsegs, .spans = j.spans_cpu,
		       .nspans = j.nspans};
	weld_job jb = jc;
	jb.out = j.out_b;
	jb.spans = j.spans_b;
	if (weld_backend_convert(&cpu, &jc, &err) || weld_backend_convert(b, &jb, &err)) {
		fprintf(stderr, "%s: convert failed: %s\n", label, err.message);
		free_job(&j);
		return 1;
	}
	if (jc.fp16_overflows != jb.fp16_overflows) {
		fprintf(stderr, "%s: fp16 overflows %llu, cpu %llu\n", label, (unsigned long long)jb.fp16_overflows,
			(unsigned long long)jc.fp16_overflows);
		bad = 1;
	}
	for (size_t i = 0; i < j.nspans; i++) {
		const weld_span *c = &j.spans_cpu[i], *g = &j.spans_b[i];
		if (memcmp(j.out_cpu + c->out_off, j.out_b + c->out_off, c->len) != 0) {
			size_t at = 0;
			while (j.out_cpu[c->out_off + at] == j.out_b[c->out_off + at])
				at++;
			fprintf(stderr, "%s: span %zu (%zu bytes) differs from the cpu at byte %zu\n", label, i, c->len,
				at);
			bad = 1;
		}
		if (c->crc != g->crc || c->crc != weld__crc32(0, j.out_cpu + c->out_off, c->len)) {
			fprintf(stderr, "%s: span %zu (%zu bytes) crc 0x%08x, cpu 0x%08x\n", label, i, c->len, g->crc,
				c->crc);
			bad = 1;
		}
	}
	free_job(&j);
	return bad;
}

typedef struct compare_arg {
	weld_backend *b;
	uint64_t seed;
	int jobs;
	size_t max_elems;
	int failures;
} compare_arg;

static void *compare_thread(void *p)
{
	compare_arg *a = p;
	uint64_t rng = a->seed;
	char label[64];
	for (int i = 0; i < a->jobs; i++) {
		snprintf(label, sizeof(label), "job %d (seed %llu)", i, (unsigned long long)a->seed);
		a->failures += compare_one(a->b, &rng, a->max_elems, label);
	}
	return NULL;
}

/* JOBS random jobs on each of NTHREADS threads at once. */
static void check_random_jobs(weld_backend *b, int nthreads, int jobs, size_t max_elems, uint64_t seed)
{
	pthread_t tid[16];
	compare_arg args[16];
	for (int t = 0; t < nthreads; t++) {
		args[t] = (compare_arg){b, seed + (uint64_t)t * 1000003u, jobs, max_elems, 0};
		if (pthread_create(&tid[t], NULL, compare_thread, &args[t]) != 0) {
			CHECK(!"pthread_create");
			nthreads = t;
			break;
		}
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_join(tid[t], NULL);
		CHECK(args[t].failures == 0);
	}
}

/* CRCs of odd lengths at odd offsets: one U8 copy, many spans. */
static void check_crc_spans(weld_backend *b)
{
	static const size_t sizes[] = {1, 7, 8, 9, 255, 256, 257, 4095, 65535, 65536, 65537, 200003, (1u << 20) + 3};
	uint64_t rng = 42;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint8_t *in = malloc(n), *out = malloc(n);
		CHECK(in && out);
		if (!in || !out) {
			free(in);
			free(out);
			return;
		}
		for (size_t i = 0; i < n; i++)
			in[i] = (uint8_t)rng_next(&rng);
		weld_seg seg = {.count = n, .src_dtype = WELD_DTYPE_U8, .dst_dtype = WELD_DTYPE_U8};
		weld_span spans[6] = {{0, n, 0}, {n / 2, n - n / 2, 0}, {1 % n, n - 1 % n, 0}, {n / 3, n / 3, 0},
				      {n > 5 ? 5 : 0, n > 10 ? n - 10 : 0, 0}, {n - 1, 1, 0}};
		weld_job job = {.staging = in, .out = out, .segs = &seg, .nsegs = 1, .spans = spans, .nspans = 6};
		weld_error err = {0};
		CHECK_OK(weld_backend_convert(b, &job, &err), &err);
		CHECK(memcmp(in, out, n) == 0);
		for (int i = 0; i < 6; i++)
			if (spans[i].crc != weld__crc32(0, in + spans[i].out_off, spans[i].len)) {
				fprintf(stderr, "crc of %zu bytes at %zu (buffer %zu): 0x%08x, want 0x%08x\n", spans[i].len,
					spans[i].out_off, n, spans[i].crc, weld__crc32(0, in + spans[i].out_off, spans[i].len));
				test_failures++;
			}
		free(in);
		free(out);
	}
}

/* ---- casts: the kernel against src/cast.h compiled for the host --------------- */

typedef struct cast_check {
	const uint16_t *got;
	uint32_t first;
	size_t n;
	weld_dtype dst;
	uint64_t mismatches, overflows;
	uint32_t first_bad;
} cast_check;

static void *cast_check_thread(void *p)
{
	cast_check *c = p;
	for (size_t i = 0; i < c->n; i++) {
		uint32_t x = c->first + (uint32_t)i;
		uint16_t want = c->dst == WELD_DTYPE_BF16 ? weld_f32_to_bf16(x) : weld_f32_to_f16(x);
		if (c->dst == WELD_DTYPE_F16)
			c->overflows += weld_f16_is_inf(want) && (x & 0x7f800000u) != 0x7f800000u;
		if (c->got[i] != want && !c->mismatches++)
			c->first_bad = x;
	}
	return NULL;
}

/* Patterns [FIRST, FIRST + N) in batches of BATCH; N = 2^32 when ALL. */
static void check_casts(weld_backend *b, weld_dtype dst, uint32_t first, uint64_t n, uint32_t batch, int nthreads)
{
	uint16_t *got = malloc((size_t)batch * 2);
	CHECK(got != NULL);
	uint64_t mismatches = 0, overflows = 0, want_overflows = 0;
	for (uint64_t done = 0; got && done < n; done += batch) {
		uint32_t k = (uint32_t)(n - done < batch ? n - done : batch);
		uint32_t at = first + (uint32_t)done;
		uint64_t ovf = 0;
		weld_error err = {0};
		weld_status s = weld__backend_cuda_test_cast(b, at, k, dst, got, &ovf, &err);
		CHECK_OK(s, &err);
		if (s)
			break;
		overflows += ovf;
		pthread_t tid[64];
		cast_check cc[64];
		int t = 0;
		for (; t < nthreads; t++) {
			size_t lo = (size_t)k * t / nthreads, hi = (size_t)k * (t + 1) / nthreads;
			cc[t] = (cast_check){got + lo, at + (uint32_t)lo, hi - lo, dst, 0, 0, 0};
			if (pthread_create(&tid[t], NULL, cast_check_thread, &cc[t]) != 0)
				break;
		}
		for (int i = 0; i < t; i++) {
			pthread_join(tid[i], NULL);
			if (cc[i].mismatches && !mismatches)
				fprintf(stderr, "cast to %s: pattern 0x%08x differs from cast.h\n", weld_dtype_name(dst),
					cc[i].first_bad);
			mismatches += cc[i].mismatches;
			want_overflows += cc[i].overflows;
		}
		CHECK(t == nthreads);
	}
	if (mismatches)
		fprintf(stderr, "cast to %s: %llu of %llu patterns differ\n", weld_dtype_name(dst),
			(unsigned long long)mismatches, (unsigned long long)n);
	CHECK(mismatches == 0);
	CHECK(overflows == want_overflows);
	free(got);
}

static int ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* The interesting corners plus random patterns, for the emulation. */
static void check_cast_sample(weld_backend *b)
{
	static const uint32_t starts[] = {0x00000000u, 0x33000000u, 0x387fe000u, 0x3f7ff000u, 0x477fe000u,
					  0x7f7ff000u, 0x7f800000u, 0x7fbff000u, 0xb3000000u, 0xc77fe000u,
					  0xff7ff000u, 0xff800000u, 0xfffff000u};
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		check_casts(b, WELD_DTYPE_BF16, starts[i], 0x2000, 0x2000, 1);
		check_casts(b, WELD_DTYPE_F16, starts[i], 0x2000, 0x2000, 1);
	}
	uint64_t rng = 7;
	for (int i = 0; i < 64; i++) {
		uint32_t at = (uint32_t)rng_next(&rng);
		check_casts(b, i & 1 ? WELD_DTYPE_F16 : WELD_DTYPE_BF16, at, 4096, 4096, 1);
	}
}

/* ---- whole conversions: --device cuda against --device cpu --------------------- */

static void convert_both(const char *input, weld_out_dtype dtype, size_t chunk, int pytorch_bin)
{
	char out_cpu[4200], out_gpu[4200], a[4300], b[4300];
	snprintf(out_cpu, sizeof(out_cpu), "%s/cpu", tmp);
	snprintf(out_gpu, sizeof(out_gpu), "%s/gpu", tmp);
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = dtype;
	o.chunk_bytes = chunk;
	o.threads = 3;
	o.force = 1;
	o.pytorch_bin = pytorch_bin;
	weld_convert_result rc, rg;
	weld_error ec = {0}, eg = {0};
	o.device = WELD_DEVICE_CPU;
	weld_status sc = weld_convert(input, out_cpu, &o, &rc, &ec);
	o.device = WELD_DEVICE_CUDA;
	weld_status sg = weld_convert(input, out_gpu, &o, &rg, &eg);
	if (sc != sg) {
		fprintf(stderr, "%s: cpu status %d (%s), cuda status %d (%s)\n", input, sc, ec.message, sg, eg.message);
		test_failures++;
		return;
	}
	if (sc) /* an input neither device converts: both said so */
		return;
	const char *weights = pytorch_bin ? "pytorch_model.bin" : "model.safetensors";
	bool ok = strcmp(rg.backend, "cuda") == 0 && rc.file_crc32 == rg.file_crc32 &&
		  rc.fp16_overflows == rg.fp16_overflows;
	snprintf(a, sizeof(a), "%s/%s", out_cpu, weights);
	snprintf(b, sizeof(b), "%s/%s", out_gpu, weights);
	ok = same_file(a, b) && ok;
	snprintf(a, sizeof(a), "%s/weld.json", out_cpu);
	snprintf(b, sizeof(b), "%s/weld.json", out_gpu);
	ok = same_file(a, b) && ok;
	if (!ok) {
		fprintf(stderr, "%s: dtype %d, chunk %zu: cuda output differs from cpu (backend %s)\n", input, dtype,
			chunk, rg.backend);
		test_failures++;
	}
}

static int fixture_count;

static void check_fixture(const char *input)
{
	static const weld_out_dtype dtypes[] = {WELD_OUT_BF16, WELD_OUT_F16};
	static const size_t chunks[] = {4096, 0};
	for (int d = 0; d < 2; d++)
		for (int c = 0; c < 2; c++)
			convert_both(input, dtypes[d], chunks[c], 0);
	fixture_count++;
}

static void check_fixtures(void)
{
	static const char *const hf[] = {"qwen2_tied/st_single_fp32", "qwen2_tied/st_sharded", "qwen2_tied/bin_single",
					 "qwen2_tied/bin_sharded", "hf_edge/wrapped"};
	for (size_t i = 0; i < sizeof(hf) / sizeof(hf[0]); i++)
		check_fixture(fixture(hf[i]));
	char zero[4096];
	snprintf(zero, sizeof(zero), "%s", fixture("zero"));
	DIR *d = opendir(zero);
	CHECK(d != NULL);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[8192];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", zero, e->d_name);
		if (e->d_name[0] == '.' || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
			continue;
		check_fixture(path);
	}
	if (d)
		closedir(d);
	/* PyTorch DCP: chunks in windows of .distcp files, row fragments of 2-D cuts, a tied GPT2 head. */
	static const char *const dcp[] = {"dcp/titan_2d/step-3", "dcp/fsdp2_empty/checkpoint",
					  "dcp/gpt2_mp/pytorch_model_fsdp_0", "dcp/trainer_fsdp2/checkpoint-2"};
	for (size_t i = 0; i < sizeof(dcp) / sizeof(dcp[0]); i++)
		check_fixture(fixture(dcp[i]));
	/* Copies (float32, keep) and the other writer. */
	convert_both(fixture("qwen2_tied/bin_sharded"), WELD_OUT_F32, 4096, 0);
	convert_both(fixture("hf_edge/wrapped"), WELD_OUT_KEEP, 0, 0);
	convert_both(fixture("qwen2_tied/st_sharded"), WELD_OUT_BF16, 65536, 1);
	fprintf(stderr, "cuda: %d fixtures converted identically on both devices\n", fixture_count);
	CHECK(fixture_count >= 30);
}

/* ---- budget, norms ---------------------------------------------------------------- */

/* The CUDA backend, or its emulation, under the current $WELD_GPU_MEMORY_MB. */
static weld_status open_cuda(weld_backend **b, bool emulated, weld_error *err)
{
	char notice[256];
	return emulated ? weld__backend_open_cuda_emulated(b, err)
			: weld_backend_open(b, WELD_DEVICE_CUDA, notice, sizeof(notice), err);
}

/* ---- past 2^31 elements and 2^32 bytes ------------------------------------------- */

/* A private zero-filled mapping of N bytes that costs memory only where written; NULL when refused. */
static uint8_t *sparse_map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void sparse_unmap(uint8_t *p, size_t n)
{
	if (p)
		munmap(p, n);
}

/* Random bits in bytes [AT - R, AT + R) of BUF (LEN bytes), clipped to it. */
static void fill_around(uint8_t *buf, uint64_t len, uint64_t at, uint64_t r, uint64_t *rng)
{
	uint64_t lo = at > r ? at - r : 0, hi = len - at > r ? at + r : len;
	for (uint64_t i = lo; i < hi; i += 8) {
		uint64_t x = rng_next(rng);
		memcpy(buf + i, &x, hi - i < 8 ? hi - i : 8);
	}
}

/*
 * A chunk as the executor lays one out, with a segment of N1 elements in the
 * middle: 3 F32 -> BF16, then N1 F32 -> BF16, then 3000 F32 -> F16 whose
 * staging and output offsets lie past 4 x N1 and 2 x N1 bytes. One span per
 * segment.
 */
static void wide_layout(weld_seg segs[3], weld_span spans[3], uint64_t n1, size_t *staging_len, size_t *out_len)
{
	size_t s2 = align8(16 + 4 * n1), o2 = align8(8 + 2 * n1);
	segs[0] = (weld_seg){0, 0, 3, WELD_DTYPE_F32, WELD_DTYPE_BF16};
	segs[1] = (weld_seg){16, 8, n1, WELD_DTYPE_F32, WELD_DTYPE_BF16};
	segs[2] = (weld_seg){s2, o2, 3000, WELD_DTYPE_F32, WELD_DTYPE_F16};
	for (int k = 0; k < 3; k++)
		spans[k] = (weld_span){segs[k].out_off, segs[k].count * 2, 0};
	*staging_len = s2 + 4 * 3000;
	*out_len = o2 + 2 * 3000;
}

/* The gather_cast blocks of PARTS (run by the emulation into JOB) against the CPU backend. */
static void check_wide_parts(const weld_job *job, const weld_block_probe *parts, size_t n, uint64_t overflows)
{
	uint8_t *ref = malloc(1u << 17);
	uint64_t want = 0;
	CHECK(ref != NULL);
	for (size_t i = 0; ref && i < n; i++) {
		const weld_block_probe *p = &parts[i];
		const weld_seg *s = &job->segs[p->index];
		size_t ss = weld_dtype_size(s->src_dtype), ds = weld_dtype_size(s->dst_dtype);
		if (!(p->first <= p->at && p->at < p->end && p->end <= s->count && p->end - p->first <= 1u << 15)) {
			fprintf(stderr, "segment %zu element %llu: block covers [%llu, %llu)\n", p->index,
				(unsigned long long)p->at, (unsigned long long)p->first, (unsigned long long)p->end);
			test_failures++;
			continue;
		}
		weld_cpu_convert_run(job->staging + s->staging_off + ss * p->first, s->src_dtype, ref, s->dst_dtype,
				     p->end - p->first, &want);
		if (memcmp(ref, job->out + s->out_off + ds * p->first, ds * (p->end - p->first)) != 0) {
			fprintf(stderr, "segment %zu element %llu: emulated kernel differs from the cpu\n", p->index,
				(unsigned long long)p->at);
			test_failures++;
		}
	}
	CHECK(overflows == want);
	free(ref);
}

/* The crc blocks of BLOCKS (computed by the emulation on JOB's output) against zlib's CRC-32. */
static void check_wide_blocks(const weld_job *job, const weld_block_probe *blocks, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const weld_block_probe *b = &blocks[i];
		const weld_span *sp = &job->spans[b->index];
		if (!(b->first <= b->at && b->at < b->end && b->end <= sp->len)) {
			fprintf(stderr, "span %zu byte %llu: block covers [%llu, %llu)\n", b->index,
				(unsigned long long)b->at, (unsigned long long)b->first, (unsigned long long)b->end);
			test_failures++;
			continue;
		}
		uint32_t want = weld__crc32(0, job->out + sp->out_off + b->first, b->end - b->first);
		if (b->crc != want) {
			fprintf(stderr, "span %zu byte %llu: crc 0x%08x, want 0x%08x\n", b->index, (unsigned long long)b->at,
				b->crc, want);
			test_failures++;
		}
	}
}

/*
 * The kernels' own code, run on the host, at element indices and byte
 * offsets either side of 2^31, 2^32 and 2^33 of one job of 2^32 + 4101
 * elements (16 GiB staged, 8 GiB out), against the CPU backend. Only the
 * probed blocks' pages of the sparse buffers are ever touched.
 */
static void check_wide_emulated(void)
{
	const uint64_t n1 = (1ull << 32) + 4101, g = 1ull << 31;
	weld_seg segs[3];
	weld_span spans[3];
	size_t staging_len, out_len;
	wide_layout(segs, spans, n1, &staging_len, &out_len);
	uint8_t *staging = sparse_map(staging_len), *out = sparse_map(out_len);
	if (!staging || !out) { /* an address-space limit (ulimit -v): say so, it is no failure of weld */
		fprintf(stderr, "cuda: indices past 2^32 not emulated: cannot map %zu GiB\n", (staging_len + out_len) >> 30);
		sparse_unmap(staging, staging_len);
		sparse_unmap(out, out_len);
		return;
	}
	weld_block_probe parts[] = {{0, 0},         {1, 0},         {1, g - 1},  {1, g},        {1, 2 * g - 1},
				    {1, 2 * g},     {1, n1 - 1},    {2, 0},      {2, 2999}};
	weld_block_probe blocks[] = {{0, 0},         {1, 0},         {1, g - 1},     {1, g},    {1, 2 * g - 1}, {1, 2 * g},
				     {1, 4 * g - 1}, {1, 4 * g},     {1, 2 * n1 - 1}, {2, 0},   {2, 5999}};
	size_t nparts = sizeof(parts) / sizeof(parts[0]), nblocks = sizeof(blocks) / sizeof(blocks[0]);
	uint64_t rng = 2031;
	int before = test_failures;
	for (size_t i = 0; i < nparts; i++)
		fill_around(staging + segs[parts[i].index].staging_off, 4 * segs[parts[i].index].count, 4 * parts[i].at,
			    1u << 16, &rng);
	weld_job job = {.staging = staging, .out = out, .segs = segs, .nsegs = 3, .spans = spans, .nspans = 3};
	weld_error err = {0};
	weld_status s = weld__backend_cuda_test_blocks(&job, parts, nparts, NULL, 0, &err);
	CHECK_OK(s, &err);
	if (!s)
		check_wide_parts(&job, parts, nparts, job.fp16_overflows);
	/* Distinct bytes in every probed block, so that a block read from a wrapped offset shows. */
	for (size_t i = 0; i < nblocks; i++)
		fill_around(out + spans[blocks[i].index].out_off, spans[blocks[i].index].len, blocks[i].at, 1u << 17, &rng);
	s = weld__backend_cuda_test_blocks(&job, NULL, 0, blocks, nblocks, &err);
	CHECK_OK(s, &err);
	if (!s)
		check_wide_blocks(&job, blocks, nblocks);
	/* A probe past its segment is refused, not run. */
	weld_block_probe past = {1, n1};
	CHECK(weld__backend_cuda_test_blocks(&job, &past, 1, NULL, 0, &err) == WELD_ERR_INVALID_ARG);
	if (test_failures == before)
		fprintf(stderr, "cuda: emulated kernels at %zu element indices and %zu byte offsets up to 2^33 agree\n",
			nparts, nblocks);
	sparse_unmap(staging, staging_len);
	sparse_unmap(out, out_len);
}

/*
 * On the device: one job of 2^31 + 4101 F32 -> BF16 elements (8 GiB staged,
 * 4 GiB out) in one launch, against the CPU backend, every byte and the CRCs
 * of the whole output and of a span across byte 2^32.
 */
static void check_wide_device(void)
{
	const uint64_t n = (1ull << 31) + 4101;
	weld_seg seg = {0, 0, n, WELD_DTYPE_F32, WELD_DTYPE_BF16};
	weld_span sc[2] = {{0, 2 * n, 0}, {(1ull << 32) - 8, 16, 0}}, sg[2];
	uint8_t *staging = sparse_map(4 * n), *oc = sparse_map(2 * n), *og = sparse_map(2 * n);
	weld_backend *b = NULL, cpu = {&weld_backend_cpu_iface, NULL};
	weld_error err = {0};
	setenv("WELD_GPU_MEMORY_MB", "16384", 1);
	CHECK(staging && oc && og);
	CHECK_OK(open_cuda(&b, false, &err), &err);
	unsetenv("WELD_GPU_MEMORY_MB");
	if (staging && oc && og && b) {
		uint64_t rng = 31, at[] = {0, 1ull << 30, (1ull << 31) - 1, 1ull << 31, n - 1};
		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
			fill_around(staging, 4 * n, 4 * at[i], 1u << 20, &rng);
		memcpy(sg, sc, sizeof(sc));
		weld_job jc = {.staging = staging, .out = oc, .segs = &seg, .nsegs = 1, .spans = sc, .nspans = 2};
		weld_job jg = {.staging = staging, .out = og, .segs = &seg, .nsegs = 1, .spans = sg, .nspans = 2};
		CHECK_OK(weld_backend_convert(&cpu, &jc, &err), &err);
		weld_status s = weld_backend_convert(b, &jg, &err);
		if (s && strstr(err.message, "out of memory")) { /* it needs about 13 GiB of device memory */
			fprintf(stderr, "cuda: one launch of 2^31 + 4101 elements not run: %s\n", err.message);
		} else {
			CHECK_OK(s, &err);
			CHECK(!s && memcmp(oc, og, 2 * n) == 0);
			CHECK(!s && sc[0].crc == sg[0].crc && sc[1].crc == sg[1].crc);
			CHECK(sc[1].crc == weld__crc32(0, oc + sc[1].out_off, 16));
		}
	}
	weld_backend_close(b);
	sparse_unmap(staging, 4 * n);
	sparse_unmap(oc, 2 * n);
	sparse_unmap(og, 2 * n);
}

static void check_budget(bool emulated)
{
	weld_backend *b = NULL;
	weld_error err = {0};
	/* 1 MiB cannot hold a 2 MiB chunk: an error, not a hang. */
	setenv("WELD_GPU_MEMORY_MB", "1", 1);
	CHECK_OK(open_cuda(&b, emulated, &err), &err);
	if (b) {
		size_t n = 2u << 20;
		uint8_t *in = calloc(1, n), *out = malloc(n);
		weld_seg seg = {.count = n, .src_dtype = WELD_DTYPE_U8, .dst_dtype = WELD_DTYPE_U8};
		weld_span span = {0, n, 0};
		weld_job job = {.staging = in, .out = out, .segs = &seg, .nsegs = 1, .spans = &span, .nspans = 1};
		/* A device that fails during the run is WELD_ERR_DEVICE (exit 1), not "no device" (exit 3). */
		CHECK(in && out && weld_backend_convert(b, &job, &err) == WELD_ERR_DEVICE);
		CHECK(strstr(err.message, "budget") != NULL);
		free(in);
		free(out);
		weld_backend_close(b);
	}
	/* 12 MiB: room for two slots of about 4 MiB; six threads take turns. */
	setenv("WELD_GPU_MEMORY_MB", "12", 1);
	b = NULL;
	CHECK_OK(open_cuda(&b, emulated, &err), &err);
	if (b)
		check_random_jobs(b, 6, 10, 40000, 99);
	weld_backend_close(b);
	unsetenv("WELD_GPU_MEMORY_MB");
}

/*
 * verify's L2 norms on B (cuBLAS) against the CPU's sum: random values of a
 * few magnitudes, lengths across cuBLAS's and the piece boundaries.
 */
static void check_sum_squares(weld_backend *b)
{
	static const size_t sizes[] = {0, 1, 7, 300007, (1u << 25) + 3};
	uint64_t rng = 5;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		double *v = malloc((n ? n : 1) * sizeof(double));
		CHECK(v != NULL);
		if (!v)
			return;
		for (size_t i = 0; i < n; i++)
			v[i] = (double)(int32_t)(uint32_t)rng_next(&rng) / 2147483648.0 * (i % 3 ? 3.0 : 1e-3);
		const char *on;
		double got = weld_backend_sum_squares(b, v, n, &on), want = weld_cpu_sum_squares(v, n);
		if (strcmp(on, "cuda") != 0) { /* a note, not a failure: verify then sums on the CPU */
			fprintf(stderr, "cuda: sums of squares not checked: cuBLAS not usable\n");
			free(v);
			return;
		}
		if (fabs(got - want) > 1e-9 * (want > 1 ? want : 1)) {
			fprintf(stderr, "sum of squares of %zu values: %.17g, want %.17g\n", n, got, want);
			test_failures++;
		}
		free(v);
	}
}

/* Device selection that holds with or without a GPU. */
static void check_selection(const weld_cuda_info *info)
{
	weld_backend *b = NULL;
	weld_error err = {0};
	char notice[256];
	/* The budget variable is checked before any device is touched. */
	setenv("WELD_GPU_MEMORY_MB", "lots", 1);
	CHECK(weld_backend_open(&b, WELD_DEVICE_CUDA, notice, sizeof(notice), &err) == WELD_ERR_INVALID_ARG);
	CHECK(b == NULL && strstr(err.message, "WELD_GPU_MEMORY_MB") != NULL);
	unsetenv("WELD_GPU_MEMORY_MB");
	/* --device cpu never asks for CUDA, and says nothing. */
	CHECK_OK(weld_backend_open(&b, WELD_DEVICE_CPU, notice, sizeof(notice), &err), &err);
	CHECK(b && strcmp(weld_backend_name(b), "cpu") == 0 && notice[0] == '\0');
	weld_backend_close(b);
	b = NULL;
	if (info->devices)
		return;
	/* No device: auto falls back and says why in one line, cuda is an error. */
	CHECK_OK(weld_backend_open(&b, WELD_DEVICE_AUTO, notice, sizeof(notice), &err), &err);
	CHECK(b && strcmp(weld_backend_name(b), "cpu") == 0 && notice[0] && !strchr(notice, '\n'));
	weld_backend_close(b);
	b = NULL;
	CHECK(weld_backend_open(&b, WELD_DEVICE_CUDA, notice, sizeof(notice), &err) == WELD_ERR_NO_DEVICE);
	CHECK(b == NULL && strstr(err.message, "--device cuda: no usable CUDA device: ") == err.message);
}

static void remove_tmp(void)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
}

int main(void)
{
	weld_error err = {0};
	weld_cuda_info info;
	weld_cuda_probe(&info);
	check_selection(&info);

	/* The pipeline and the kernels' code, run on the host: no GPU needed. */
	weld_backend *emu = NULL;
	weld_status s = weld__backend_open_cuda_emulated(&emu, &err);
	CHECK(s == WELD_OK || (s == WELD_ERR_NO_DEVICE && !info.built));
	if (emu) {
		int before = test_failures;
		check_random_jobs(emu, 3, 25, 50000, 1);
		check_crc_spans(emu);
		check_cast_sample(emu);
		check_wide_emulated();
		weld_backend_close(emu);
		check_budget(true);
		if (info.devices == 0 && mkdtemp(tmp)) {
			/* Every fixture converted whole through the emulation (WELD_CUDA_EMULATE: --device cuda). */
			setenv("WELD_CUDA_EMULATE", "1", 1);
			check_fixtures();
			unsetenv("WELD_CUDA_EMULATE");
			remove_tmp();
		}
		if (test_failures == before)
			fprintf(stderr, "cuda: host emulation of the CUDA pipeline agrees with the cpu backend\n");
	}
	if (info.devices == 0) {
		if (test_failures)
			TEST_DONE();
		printf("cuda: skipped: %s\n", info.message);
		if (getenv("WELD_REQUIRE_CUDA")) {
			fprintf(stderr, "cuda: WELD_REQUIRE_CUDA is set but no device is usable\n");
			return 1;
		}
		return 77;
	}
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}

	weld_backend *b = NULL;
	char notice[256];
	unsetenv("WELD_GPU_MEMORY_MB");
	s = weld_backend_open(&b, WELD_DEVICE_CUDA, notice, sizeof(notice), &err);
	CHECK_OK(s, &err);
	if (s)
		TEST_DONE();
	CHECK(strcmp(weld_backend_name(b), "cuda") == 0 && notice[0] == '\0');
	void *pinned = weld_backend_alloc_host(b, 1u << 20);
	CHECK(pinned != NULL);
	weld_backend_free_host(b, pinned);
	/* auto picks the device when there is one. */
	weld_backend *a = NULL;
	CHECK_OK(weld_backend_open(&a, WELD_DEVICE_AUTO, notice, sizeof(notice), &err), &err);
	CHECK(a && strcmp(weld_backend_name(a), "cuda") == 0 && notice[0] == '\0');
	weld_backend_close(a);

	fprintf(stderr, "cuda: random jobs\n");
	check_random_jobs(b, 4, 40, 400000, 11);
	check_crc_spans(b);
	fprintf(stderr, "cuda: all 2^32 fp32 patterns to bf16 and fp16\n");
	check_casts(b, WELD_DTYPE_BF16, 0, 1ull << 32, 1u << 27, ncpus());
	check_casts(b, WELD_DTYPE_F16, 0, 1ull << 32, 1u << 27, ncpus());
	fprintf(stderr, "cuda: sums of squares (cuBLAS)\n");
	check_sum_squares(b);
	weld_backend_close(b);
	fprintf(stderr, "cuda: memory budget\n");
	check_budget(false);
	fprintf(stderr, "cuda: one launch of 2^31 + 4101 elements\n");
	check_wide_device();
	fprintf(stderr, "cuda: fixtures\n");
	check_fixtures();

	remove_tmp();
	TEST_DONE();
}
