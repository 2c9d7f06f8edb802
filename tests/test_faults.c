/*
 * Faults injected where the library meets the system, each one required to
 * end in an error and leave nothing behind (no weights file, no temporary
 * file, no descriptor):
 *  - fsync of the weights fails (EIO): the descriptor used to leak;
 *  - pwrite fails with ENOSPC at each write of a conversion in turn;
 *  - every allocation cJSON makes for weld.json fails in turn: the writer
 *    used to ignore them and write a manifest with fields missing.
 * fsync and pwrite are interposed here: the library is linked statically
 * into this program, so its calls resolve to these definitions first.
 */
#define _DEFAULT_SOURCE /* syscall() */
#include "util/util.h"

#include "output/manifest.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail_fsync;         /* 1: the next fsync fails with EIO */
static long fail_pwrite_at;          /* > 0: the Nth write to the weights file (and later ones) fail with ENOSPC */
static _Atomic long pwrites;         /* writes to the weights file since the counter was armed (worker threads) */
static long fail_alloc_at = -1; /* >= 0: cJSON allocations after this many fail */
static long allocs;

int fsync(int fd)
{
	if (fail_fsync) {
		fail_fsync = 0;
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fsync, fd);
}

/* Whether FD is the temporary weights file of a conversion. */
static bool is_weights(int fd)
{
	char link[64], path[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = '\0';
	return strstr(path, "/.model.safetensors.weld-tmp-") != NULL;
}

/* weld is built with _FILE_OFFSET_BITS=64, where glibc's pwrite is pwrite64. */
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (fail_pwrite_at > 0 && is_weights(fd) && atomic_fetch_add(&pwrites, 1) + 1 >= fail_pwrite_at) {
		errno = ENOSPC;
		return -1;
	}
	return syscall(SYS_pwrite64, fd, buf, n, off);
}

static void *counting_malloc(size_t n)
{
	if (fail_alloc_at >= 0 && allocs++ >= fail_alloc_at)
		return NULL;
	return malloc(n);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Names in DIR that are not the side files a failed run may have copied. */
static int weight_or_temp_files(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strstr(e->d_name, ".weld-tmp") != NULL || strcmp(e->d_name, "model.safetensors") == 0 ||
		     strcmp(e->d_name, "weld.json") == 0;
	if (d)
		closedir(d);
	return n;
}

static weld_status convert(const char *out, weld_error *err)
{
	weld_convert_options o;
	weld_convert_options_init(&o);
	o.device = WELD_DEVICE_CPU;
	o.threads = 2;
	o.chunk_bytes = 65536; /* many chunks, so many writes */
	return weld_convert(fixture("qwen2_tied/st_sharded"), out, &o, NULL, err);
}

static void check_fsync_fails(void)
{
	weld_error err = {0};
	int before = open_fds();
	fail_fsync = 1;
	CHECK(convert(scratch("fsync"), &err) == WELD_ERR_IO);
	CHECK(strstr(err.message, "cannot flush: Input/output error") != NULL);
	CHECK(open_fds() == before);
	CHECK(weight_or_temp_files(scratch("fsync")) == 0);
	fail_fsync = 0;
}

/* The disk fills at each write of the weights file in turn, until a run has fewer writes. */
static void check_disk_full(void)
{
	weld_error err = {0};
	int before = open_fds();
	long at = 1;
	for (weld_status s = WELD_ERR_IO; s == WELD_ERR_IO && at < 10000; at++) {
		char dir[64];
		snprintf(dir, sizeof(dir), "full%ld", at);
		pwrites = 0;
		fail_pwrite_at = at;
		s = convert(scratch(dir), &err);
		fail_pwrite_at = 0;
		if (s == WELD_OK)
			break; /* AT is past the last write: nothing failed */
		CHECK(s == WELD_ERR_IO && strstr(err.message, "No space left on device") != NULL);
		CHECK(weight_or_temp_files(scratch(dir)) == 0);
	}
	fprintf(stderr, "faults: the weights file failed cleanly at each of its %ld writes\n", at - 1);
	CHECK(at > 5);
	CHECK(open_fds() == before);
}

/* weld.json written while cJSON's Nth allocation fails: NOMEM and no file, or the whole manifest. */
static void check_manifest_allocations(void)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	weld_plan *p = NULL;
	weld_plan_options po = {.dtype = WELD_OUT_BF16};
	CHECK_OK(weld_ckpt_open(&c, fixture("hf_edge/wrapped"), &err), &err);
	CHECK_OK(c ? weld_plan_build(&p, c, &po, &err) : WELD_ERR_INVALID_ARG, &err);
	if (!p) {
		weld_ckpt_free(c);
		return;
	}
	uint32_t crcs[64] = {0};
	static char *const side[] = {"config.json"};
	static const weld_out_file file = {"model.safetensors", 1234};
	static const uint32_t file_crc = 0xabcdef;
	weld_manifest_info mi = {.source = "in", .source_format = "torch-zip", .dtype = "bfloat16", .files = &file,
				 .file_crcs = &file_crc, .nfiles = 1, .tensor_crcs = crcs, .side_files = side, .nside = 1};
	CHECK(p->nt <= 64);
	CHECK_OK(weld_manifest_write(scratch(""), p, &mi, &err), &err);
	size_t want_len = 0, got_len = 0;
	uint8_t *want = read_file(scratch("weld.json"), &want_len);
	cJSON_Hooks hooks = {counting_malloc, free};
	cJSON_InitHooks(&hooks);
	long n = 0;
	for (weld_status s = WELD_ERR_NOMEM; s == WELD_ERR_NOMEM && n < 100000; n++) {
		unlink(scratch("weld.json"));
		allocs = 0;
		fail_alloc_at = n;
		s = weld_manifest_write(scratch(""), p, &mi, &err);
		uint8_t *got = read_file(scratch("weld.json"), &got_len);
		if (s == WELD_ERR_NOMEM)
			CHECK(got == NULL);
		else
			CHECK(s == WELD_OK && got && want && got_len == want_len && memcmp(got, want, want_len) == 0);
		free(got);
	}
	fail_alloc_at = -1;
	cJSON_InitHooks(NULL);
	fprintf(stderr, "faults: weld.json refused cleanly under %ld failing allocations\n", n - 1);
	CHECK(n > 50);
	free(want);
	weld_plan_free(p);
	weld_ckpt_free(c);
}

int main(void)
{
	if (scratch_init("faults"))
		return 1;
	check_fsync_fails();
	check_disk_full();
	check_manifest_allocations();
	scratch_remove();
	TEST_DONE();
}
