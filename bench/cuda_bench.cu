// weld_cuda_bench: what scripts/device-check measures on a GPU machine.
//
//   weld_cuda_bench --weld PATH [--dir DIR] [--gb N] [--keep]
//   weld_cuda_bench --generate FILE [--gb N]     (the checkpoint only)
//
// 1. Writes DIR/in/model.safetensors: N GB (default 4.3) of random fp32 in
//    32 large tensors plus small ones, with several threads and a
//    counter-based PRNG (a few seconds; reused when already there).
// 2. Kernels: gather_cast + crc over 256 MiB of staged fp32, beside a
//    device-to-device copy of the same 256 MiB.
// 3. Staging: weld's CUDA backend converting 8 MiB chunks from pinned host
//    buffers with 1, 2, 4 and 8 threads, beside pinned host-to-device copies
//    of the same bytes.
// 4. End to end: `weld convert --device cpu` (all cores) and `--device cuda`
//    on the checkpoint in the page cache, best of two runs each, with peak
//    RSS; both outputs must have the same CRC-32.
// Prints one table. Exit status 0 when every step ran and the outputs
// agree, whatever the ratios; 1 otherwise.
#include "cuda_backend.h"
#include "kernels.cuh"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

using namespace weld_cuda;

static double now()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CUDA_OR_DIE(call)                                                                            \
	do {                                                                                         \
		cudaError_t e_ = (call);                                                             \
		if (e_ != cudaSuccess) {                                                             \
			fprintf(stderr, "bench: %s: %s (line %d)\n", #call, cudaGetErrorString(e_), __LINE__); \
			exit(1);                                                                     \
		}                                                                                    \
	} while (0)

// ---- 1. the checkpoint ------------------------------------------------------------

struct GenTensor {
	std::string name;
	uint64_t rows, cols, offset; // offset within the data section
};

struct GenArg {
	int fd;
	uint64_t data_start, begin, end; // byte range of the data section to fill
	int failed;
};

static void *gen_thread(void *p)
{
	GenArg *a = (GenArg *)p;
	const size_t buf_len = 8u << 20;
	std::vector<float> buf(buf_len / 4);
	for (uint64_t off = a->begin; off < a->end; off += buf_len) {
		size_t n = (size_t)(a->end - off < buf_len ? a->end - off : buf_len);
		uint64_t idx = off / 4;
		for (size_t i = 0; i < n / 4; i++) {
			uint64_t z = (idx + i) * 0x9e3779b97f4a7c15ull + 0x1234567ull;
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			z ^= z >> 31;
			buf[i] = (float)(int32_t)(uint32_t)z * (0.05f / 2147483648.0f);
		}
		const char *q = (const char *)buf.data();
		size_t left = n;
		uint64_t at = a->data_start + off;
		while (left) {
			ssize_t w = pwrite(a->fd, q, left, (off_t)at);
			if (w <= 0) {
				a->failed = 1;
				return NULL;
			}
			q += w;
			left -= (size_t)w;
			at += (uint64_t)w;
		}
	}
	return NULL;
}

static int generate(const std::string &path, double gb)
{
	std::vector<GenTensor> ts;
	uint64_t cols = 4096, big_rows = 8192; // 128 MiB each
	uint64_t total = (uint64_t)(gb * 1e9), off = 0;
	for (int l = 0; off < total; l++) {
		ts.push_back({"model.layers." + std::to_string(l) + ".mlp.weight", big_rows, cols, off});
		off += big_rows * cols * 4;
		ts.push_back({"model.layers." + std::to_string(l) + ".norm.weight", 1, cols, off});
		off += cols * 4;
	}
	std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
	for (const GenTensor &t : ts) {
		uint64_t n = t.rows * t.cols * 4;
		h += ",\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[" +
		     (t.rows > 1 ? std::to_string(t.rows) + "," : std::string()) + std::to_string(t.cols) +
		     "],\"data_offsets\":[" + std::to_string(t.offset) + "," + std::to_string(t.offset + n) + "]}";
	}
	h += "}";
	while ((h.size() + 8) % 8)
		h += ' ';
	uint64_t hlen = h.size(), data_start = 8 + hlen, file_size = data_start + off;
	struct stat sb;
	if (stat(path.c_str(), &sb) == 0 && (uint64_t)sb.st_size == file_size) {
		printf("checkpoint: reusing %s (%.2f GB)\n", path.c_str(), (double)file_size / 1e9);
		return 0;
	}
	double t0 = now();
	int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)file_size) != 0) {
		fprintf(stderr, "bench: %s: %s\n", path.c_str(), strerror(errno));
		return -1;
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)(hlen >> (8 * i));
	if (pwrite(fd, len8, 8, 0) != 8 || pwrite(fd, h.data(), hlen, 8) != (ssize_t)hlen) {
		fprintf(stderr, "bench: %s: cannot write the header\n", path.c_str());
		close(fd);
		return -1;
	}
	int nt = (int)sysconf(_SC_NPROCESSORS_ONLN);
	nt = nt < 1 ? 1 : nt > 32 ? 32 : nt;
	std::vector<pthread_t> tid(nt);
	std::vector<GenArg> args(nt);
	uint64_t per = (off / nt + 4095) / 4096 * 4096;
	int failed = 0;
	for (int i = 0; i < nt; i++) {
		uint64_t b = per * i < off ? per * i : off, e = per * (i + 1) < off ? per * (i + 1) : off;
		args[i] = {fd, data_start, b, e, 0};
		pthread_create(&tid[i], NULL, gen_thread, &args[i]);
	}
	for (int i = 0; i < nt; i++) {
		pthread_join(tid[i], NULL);
		failed |= args[i].failed;
	}
	if (close(fd) != 0 || failed) {
		fprintf(stderr, "bench: %s: write failed\n", path.c_str());
		return -1;
	}
	printf("checkpoint: wrote %s: %zu tensors, %.2f GB in %.1f s\n", path.c_str(), ts.size(),
	       (double)file_size / 1e9, now() - t0);
	return 0;
}

// Read the whole file once so that the runs below read from the page cache.
static void warm(const std::string &path)
{
	int fd = open(path.c_str(), O_RDONLY);
	if (fd < 0)
		return;
	std::vector<char> buf(16u << 20);
	while (read(fd, buf.data(), buf.size()) > 0) {
	}
	close(fd);
}

// ---- 2. kernels -----------------------------------------------------------------

struct KernelResult {
	double kernel_s, cast_s, crc_s, copy_s, bytes;
};

static KernelResult bench_kernels()
{
	const uint64_t seg_elems = 4u << 20, nseg = 16, elems = seg_elems * nseg; // 256 MiB of fp32
	uint8_t *d_in, *d_out, *d_copy, *d_tab;
	uint32_t *d_crcs;
	unsigned long long *d_ovf;
	CUDA_OR_DIE(cudaMalloc(&d_in, elems * 4));
	CUDA_OR_DIE(cudaMalloc(&d_copy, elems * 4));
	CUDA_OR_DIE(cudaMalloc(&d_out, elems * 2));
	CUDA_OR_DIE(cudaMalloc(&d_tab, nseg * (sizeof(DevSeg) + sizeof(DevSpan))));
	CUDA_OR_DIE(cudaMalloc(&d_crcs, elems * 2 / kCrcBlock * 4 + 64));
	CUDA_OR_DIE(cudaMalloc(&d_ovf, 8));
	CUDA_OR_DIE(launch_fill_random((float *)d_in, elems, 1, 0));
	std::vector<DevSeg> segs(nseg);
	std::vector<DevSpan> spans(nseg);
	for (uint64_t i = 0; i < nseg; i++) {
		segs[i] = DevSeg{i * seg_elems * 4, i * seg_elems * 2, seg_elems, (uint32_t)(i * (seg_elems / kPartElems)),
				 (uint16_t)WELD_DTYPE_F32, (uint16_t)WELD_DTYPE_BF16};
		spans[i] = DevSpan{i * seg_elems * 2, seg_elems * 2, (uint32_t)(i * (seg_elems * 2 / kCrcBlock)), 0};
	}
	DevSeg *d_segs = (DevSeg *)d_tab;
	DevSpan *d_spans = (DevSpan *)(d_tab + nseg * sizeof(DevSeg));
	CUDA_OR_DIE(cudaMemcpy(d_segs, segs.data(), nseg * sizeof(DevSeg), cudaMemcpyHostToDevice));
	CUDA_OR_DIE(cudaMemcpy(d_spans, spans.data(), nseg * sizeof(DevSpan), cudaMemcpyHostToDevice));
	uint32_t nparts = (uint32_t)(elems / kPartElems), nblocks = (uint32_t)(elems * 2 / kCrcBlock);
	cudaEvent_t a, b;
	CUDA_OR_DIE(cudaEventCreate(&a));
	CUDA_OR_DIE(cudaEventCreate(&b));
	auto timeit = [&](int which) {
		const int reps = 10;
		float best = 1e30f;
		for (int r = 0; r <= reps; r++) {
			CUDA_OR_DIE(cudaEventRecord(a, 0));
			if (which == 0 || which == 1)
				CUDA_OR_DIE(launch_gather_cast(d_segs, (uint32_t)nseg, nparts, d_in, d_out, d_ovf, 0));
			if (which == 0 || which == 2)
				CUDA_OR_DIE(launch_crc(d_spans, (uint32_t)nseg, nblocks, d_out, d_crcs, 0));
			if (which == 3)
				CUDA_OR_DIE(cudaMemcpyAsync(d_copy, d_in, elems * 4, cudaMemcpyDeviceToDevice, 0));
			CUDA_OR_DIE(cudaEventRecord(b, 0));
			CUDA_OR_DIE(cudaEventSynchronize(b));
			float ms;
			CUDA_OR_DIE(cudaEventElapsedTime(&ms, a, b));
			if (r && ms < best) // the first run warms up
				best = ms;
		}
		return best / 1e3;
	};
	KernelResult k;
	k.kernel_s = timeit(0);
	k.cast_s = timeit(1);
	k.crc_s = timeit(2);
	k.copy_s = timeit(3);
	k.bytes = (double)(elems * 4);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	cudaFree(d_in);
	cudaFree(d_copy);
	cudaFree(d_out);
	cudaFree(d_tab);
	cudaFree(d_crcs);
	cudaFree(d_ovf);
	return k;
}

// ---- 3. staging -----------------------------------------------------------------

struct StageArg {
	weld__cuda_ctx *ctx;
	uint8_t *staging, *out; // pinned
	uint64_t chunks;
	int failed;
	char msg[512];
};

static const uint64_t kChunkOut = 8u << 20; // weld's default chunk (output bytes)

static void *stage_thread(void *p)
{
	StageArg *a = (StageArg *)p;
	weld__cuda_seg seg = {0, 0, kChunkOut / 2, WELD_DTYPE_F32, WELD_DTYPE_BF16};
	for (uint64_t c = 0; c < a->chunks && !a->failed; c++) {
		weld__cuda_span span = {0, kChunkOut, 0};
		uint64_t ovf = 0;
		if (weld__cuda_convert(a->ctx, a->staging, a->out, &seg, 1, &span, 1, &ovf, a->msg, sizeof(a->msg)))
			a->failed = 1;
	}
	return NULL;
}

// Seconds for THREADS threads to convert TOTAL staging bytes, each thread
// with its own pinned buffers as weld's executor has; < 0 on failure.
static double bench_staging(weld__cuda_ctx *ctx, int threads, uint64_t total)
{
	uint64_t chunks = total / (kChunkOut * 2) / threads, elems = kChunkOut / 2;
	std::vector<pthread_t> tid(threads);
	std::vector<StageArg> args(threads);
	double t = -1;
	for (int i = 0; i < threads; i++) {
		args[i].ctx = ctx;
		args[i].staging = (uint8_t *)weld__cuda_host_alloc(ctx, elems * 4);
		args[i].out = (uint8_t *)weld__cuda_host_alloc(ctx, kChunkOut);
		if (!args[i].staging || !args[i].out) {
			fprintf(stderr, "bench: staging: cannot allocate pinned buffers\n");
			threads = i + 1;
			goto done;
		}
		for (uint64_t k = 0; k < elems; k++) {
			float f = (float)(int32_t)(uint32_t)(k * 2654435761u) * (1.0f / 2147483648.0f);
			memcpy(args[i].staging + 4 * k, &f, 4);
		}
	}
	// One untimed round so that every slot exists, then the timed one.
	for (int pass = 0; pass < 2; pass++) {
		double t0 = now();
		for (int i = 0; i < threads; i++) {
			args[i].chunks = pass ? chunks : 1;
			args[i].failed = 0;
			args[i].msg[0] = '\0';
			pthread_create(&tid[i], NULL, stage_thread, &args[i]);
		}
		for (int i = 0; i < threads; i++)
			pthread_join(tid[i], NULL);
		for (int i = 0; i < threads; i++)
			if (args[i].failed) {
				fprintf(stderr, "bench: staging: %s\n", args[i].msg);
				goto done;
			}
		if (pass)
			t = now() - t0;
	}
done:
	for (int i = 0; i < threads; i++) {
		weld__cuda_host_free(ctx, args[i].staging);
		weld__cuda_host_free(ctx, args[i].out);
	}
	return t;
}

static double bench_h2d(uint64_t total)
{
	const size_t chunk = kChunkOut * 2;
	uint8_t *h, *d;
	CUDA_OR_DIE(cudaHostAlloc(&h, chunk, cudaHostAllocPortable));
	CUDA_OR_DIE(cudaMalloc(&d, chunk));
	memset(h, 1, chunk);
	CUDA_OR_DIE(cudaMemcpy(d, h, chunk, cudaMemcpyHostToDevice));
	double t0 = now();
	for (uint64_t done = 0; done < total; done += chunk)
		CUDA_OR_DIE(cudaMemcpyAsync(d, h, chunk, cudaMemcpyHostToDevice, 0));
	CUDA_OR_DIE(cudaDeviceSynchronize());
	double t = now() - t0;
	cudaFreeHost(h);
	cudaFree(d);
	return t;
}

// ---- 4. end to end ------------------------------------------------------------------

struct RunResult {
	bool ok;
	double wall, seconds, rss_mb;
	unsigned long crc;
	std::string backend;
};

static double json_number(const std::string &s, const char *key)
{
	std::string k = std::string("\"") + key + "\":";
	size_t at = s.find(k);
	return at == std::string::npos ? -1 : strtod(s.c_str() + at + k.size(), NULL);
}

static std::string json_string(const std::string &s, const char *key)
{
	std::string k = std::string("\"") + key + "\":\"";
	size_t at = s.find(k);
	if (at == std::string::npos)
		return "";
	size_t b = at + k.size(), e = s.find('"', b);
	return s.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

static RunResult run_weld(const char *weld, const std::string &in, const std::string &out, const char *device)
{
	RunResult r = {false, 0, 0, 0, 0, ""};
	int pipefd[2];
	if (pipe(pipefd) != 0)
		return r;
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		unsetenv("SLURM_CPUS_PER_TASK");
		execl(weld, weld, "convert", "--input", in.c_str(), "--output", out.c_str(), "--device", device, "--force",
		      "--quiet", "--json", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	std::string text;
	char buf[4096];
	ssize_t n;
	while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
		text.append(buf, (size_t)n);
	close(pipefd[0]);
	int status = 0;
	struct rusage ru;
	if (pid < 0 || wait4(pid, &status, 0, &ru) < 0)
		return r;
	r.wall = now() - t0;
	r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	r.rss_mb = (double)ru.ru_maxrss / 1024.0;
	r.seconds = json_number(text, "seconds");
	r.crc = (unsigned long)json_number(text, "crc32");
	r.backend = json_string(text, "backend");
	if (!r.ok)
		fprintf(stderr, "bench: weld convert --device %s failed (status 0x%x): %s\n", device, status, text.c_str());
	return r;
}

// ---- main -------------------------------------------------------------------------

static const char *verdict(double ratio, double target)
{
	return ratio >= target ? "met" : "MISSED";
}

static uint64_t free_bytes(const char *dir)
{
	struct statvfs v;
	return statvfs(dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

int main(int argc, char **argv)
{
	const char *weld = NULL, *dir = NULL, *gen_only = NULL;
	double gb = 4.3;
	bool keep = false;
	setvbuf(stdout, NULL, _IOLBF, 0); // keeps order with stderr in logs
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--generate") && i + 1 < argc)
			gen_only = argv[++i];
		else if (!strcmp(argv[i], "--weld") && i + 1 < argc)
			weld = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--gb") && i + 1 < argc)
			gb = atof(argv[++i]);
		else if (!strcmp(argv[i], "--keep"))
			keep = true;
		else {
			fprintf(stderr, "usage: weld_cuda_bench --weld PATH [--dir DIR] [--gb N] [--keep]\n");
			return 2;
		}
	}
	if (gen_only && gb > 0) // just the checkpoint (no GPU needed)
		return generate(gen_only, gb) ? 1 : 0;
	if (!weld || gb <= 0) {
		fprintf(stderr, "usage: weld_cuda_bench --weld PATH [--dir DIR] [--gb N] [--keep]\n"
				"       weld_cuda_bench --generate FILE [--gb N]\n");
		return 2;
	}
	int devices = 0, rt = 0;
	char why[256];
	weld__cuda_probe(&devices, &rt, why, sizeof(why));
	if (!devices) {
		fprintf(stderr, "bench: no usable CUDA device: %s\n", why);
		return 1;
	}
	cudaDeviceProp prop;
	CUDA_OR_DIE(cudaGetDeviceProperties(&prop, 0));
	int driver = 0;
	cudaDriverGetVersion(&driver);
	printf("device: %s, %.0f GiB, %d SMs, driver %d, runtime %d, %ld host cores\n", prop.name,
	       (double)prop.totalGlobalMem / (1 << 30), prop.multiProcessorCount, driver, rt,
	       sysconf(_SC_NPROCESSORS_ONLN));

	// Work in tmpfs when it has room (input, two outputs and slack): both
	// conversions then read and write the page cache only, with no disk flush.
	uint64_t need = (uint64_t)(gb * 1e9 * 2.2) + (1ull << 30);
	std::string base = dir ? dir : (free_bytes("/dev/shm") > need ? "/dev/shm" : ".");
	std::string work = base + "/weld-bench";
	mkdir(work.c_str(), 0755);
	mkdir((work + "/in").c_str(), 0755);
	if (free_bytes(work.c_str()) < need / 2) {
		fprintf(stderr, "bench: %s has too little free space\n", work.c_str());
		return 1;
	}
	std::string input = work + "/in/model.safetensors";
	if (generate(input, gb))
		return 1;

	KernelResult k = bench_kernels();

	weld__cuda_ctx *ctx = NULL;
	char msg[512];
	if (weld__cuda_open(&ctx, 0, 0, msg, sizeof(msg))) {
		fprintf(stderr, "bench: %s\n", msg);
		return 1;
	}
	const uint64_t stage_total = 4ull << 30;
	double h2d = bench_h2d(stage_total);
	int best_threads = 0;
	double best_stage = 1e30;
	std::vector<std::pair<int, double>> stage_rows;
	for (int t : {1, 2, 4, 8}) {
		double s = bench_staging(ctx, t, stage_total);
		if (s < 0)
			return 1;
		stage_rows.push_back({t, s});
		if (s < best_stage) {
			best_stage = s;
			best_threads = t;
		}
	}
	weld__cuda_close(ctx);

	warm(input);
	RunResult cpu[2], gpu[2];
	for (int i = 0; i < 2; i++) {
		cpu[i] = run_weld(weld, input, work + "/out-cpu", "cpu");
		gpu[i] = run_weld(weld, input, work + "/out-cuda", "cuda");
	}
	bool ok = cpu[0].ok && cpu[1].ok && gpu[0].ok && gpu[1].ok;
	const RunResult &bc = cpu[0].wall < cpu[1].wall ? cpu[0] : cpu[1];
	const RunResult &bg = gpu[0].wall < gpu[1].wall ? gpu[0] : gpu[1];
	if (ok && (bc.crc != bg.crc || bg.backend != "cuda")) {
		fprintf(stderr, "bench: outputs differ: cpu crc %08lx, cuda crc %08lx (backend %s)\n", bc.crc, bg.crc,
			bg.backend.c_str());
		ok = false;
	}
	if (!keep) {
		std::string cmd = "rm -rf '" + work + "'";
		if (system(cmd.c_str()) != 0)
			fprintf(stderr, "bench: could not remove %s\n", work.c_str());
	}

	double gbs = 1e9;
	printf("\n%-44s %12s %12s %8s %8s\n", "measure", "weld", "reference", "ratio", "target");
	double r1 = k.copy_s / k.kernel_s;
	printf("%-44s %9.0f GB/s %9.0f GB/s %7.2f  >= 0.80 %s\n", "kernels (cast+crc) vs device-to-device copy",
	       k.bytes / k.kernel_s / gbs, k.bytes / k.copy_s / gbs, r1, verdict(r1, 0.8));
	printf("%-44s %9.0f GB/s %12s\n", "  gather+cast kernel alone", k.bytes / k.cast_s / gbs, "");
	printf("%-44s %9.0f GB/s %12s   (of its %.0f MB output)\n", "  crc kernel alone", k.bytes / k.crc_s / gbs, "",
	       k.bytes / 2 / 1e6);
	double r2 = (double)stage_total / best_stage / ((double)stage_total / h2d);
	for (auto &row : stage_rows)
		printf("  staging, %d thread%s %*s %9.1f GB/s\n", row.first, row.first == 1 ? "" : "s",
		       row.first == 1 ? 31 : 30, "", (double)stage_total / row.second / gbs);
	printf("%-44s %9.1f GB/s %9.1f GB/s %7.2f  >= 0.80 %s\n", "staging (best) vs pinned host-to-device copy",
	       (double)stage_total / best_stage / gbs, (double)stage_total / h2d / gbs, r2, verdict(r2, 0.8));
	printf("  (best staging with %d threads; 8 MiB chunks fp32 -> bf16, H2D + kernels + D2H + CRC combine)\n",
	       best_threads);
	if (ok) {
		double r3 = bc.wall / bg.wall;
		printf("%-44s %10.2f s %10.2f s %7.2fx  >= 1.5x %s\n", "end to end: --device cuda vs --device cpu", bg.wall,
		       bc.wall, r3, verdict(r3, 1.5));
		printf("  (wall clock of `weld convert`, best of 2; conversion alone as weld reports it: cuda %.2f s, cpu %.2f s = %.2fx)\n",
		       bg.seconds, bc.seconds, bg.seconds > 0 ? bc.seconds / bg.seconds : 0.0);
		printf("%-44s %10.0f MB %10.0f MB\n", "peak host RSS: cuda, cpu", bg.rss_mb, bc.rss_mb);
		printf("  (input %.2f GB in %s; outputs identical, crc32 %08lx)\n", gb, base.c_str(), bc.crc);
	}
	return ok ? 0 : 1;
}
