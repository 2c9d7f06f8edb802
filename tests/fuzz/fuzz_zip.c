/*
 * Fuzz target for the zip reader: the input becomes a file (weld reads files
 * with pread, not buffers), which is opened as a zip; every entry is looked
 * up by its record name and, when small, read with its CRC checked.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/zip.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_READ ((uint64_t)1 << 20)

static char input_path[64];
static int input_fd = -1;

static void remove_input(void)
{
	unlink(input_path);
}

/* One backing file per process, rewritten for every input. */
static int input_file(void)
{
	if (input_fd >= 0)
		return 0;
#if defined(__linux__) && defined(MFD_CLOEXEC)
	input_fd = memfd_create("fuzz_zip", MFD_CLOEXEC);
	if (input_fd >= 0) {
		snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
		return 0;
	}
#endif
	snprintf(input_path, sizeof(input_path), "/tmp/fuzz_zip.XXXXXX");
	input_fd = mkstemp(input_path);
	if (input_fd < 0)
		return -1;
	atexit(remove_input);
	return 0;
}

/* Every failure must be one line that starts with the file name. */
static void check_message(weld_status s, const weld_error *err)
{
	size_t n = strlen(input_path);
	if (s != WELD_OK && (s != err->status || strncmp(err->message, input_path, n) != 0 ||
			     strncmp(err->message + n, ": ", 2) != 0 || strchr(err->message, '\n')))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (input_file() != 0 || ftruncate(input_fd, 0) != 0)
		return 0;
	for (size_t done = 0; done < size;) {
		ssize_t w = pwrite(input_fd, data + done, size - done, (off_t)done);
		if (w <= 0)
			return 0;
		done += (size_t)w;
	}

	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	if (weld_file_open(&f, input_path, &err) != WELD_OK)
		return 0;
	weld_status s = weld_zip_open(&z, f, &err);
	check_message(s, &err);
	if (s == WELD_OK) {
		(void)weld_zip_prefix(z);
		for (size_t i = 0; i < weld_zip_count(z); i++) {
			const weld_zip_entry *e = NULL;
			s = weld_zip_find(z, weld_zip_entry_at(z, i)->record, &e, &err);
			check_message(s, &err);
			if (s != WELD_OK || e->size > MAX_READ)
				continue;
			uint8_t *buf = malloc(e->size ? (size_t)e->size : 1);
			if (!buf)
				continue;
			check_message(weld_zip_read(z, e, buf, &err), &err);
			free(buf);
		}
		check_message(weld_zip_find(z, "data/999", &(const weld_zip_entry *){NULL}, &err), &err);
		weld_zip_close(z);
	}
	weld_file_close(f);
	return 0;
}
