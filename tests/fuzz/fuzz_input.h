/*
 * The fuzz input as a file, for targets whose reader takes a path (weld
 * reads files with pread, not buffers): one backing file per process, a
 * memfd where there is one, rewritten for every input.
 */
#ifndef WELD_FUZZ_INPUT_H
#define WELD_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static char fuzz_input_path[64];
static int fuzz_input_fd = -1;

static void fuzz_input_remove(void)
{
	unlink(fuzz_input_path);
}

/* DATA[0..SIZE) as the file at fuzz_input_path (TAG names it); 0, or -1 when it cannot be written. */
static int fuzz_input_write(const char *tag, const uint8_t *data, size_t size)
{
	if (fuzz_input_fd < 0) {
#if defined(__linux__) && defined(MFD_CLOEXEC)
		fuzz_input_fd = memfd_create(tag, MFD_CLOEXEC);
		if (fuzz_input_fd >= 0)
			snprintf(fuzz_input_path, sizeof(fuzz_input_path), "/proc/self/fd/%d", fuzz_input_fd);
#endif
		if (fuzz_input_fd < 0) {
			snprintf(fuzz_input_path, sizeof(fuzz_input_path), "/tmp/%s.XXXXXX", tag);
			if ((fuzz_input_fd = mkstemp(fuzz_input_path)) < 0)
				return -1;
			atexit(fuzz_input_remove);
		}
	}
	if (ftruncate(fuzz_input_fd, 0) != 0)
		return -1;
	for (size_t done = 0; done < size;) {
		ssize_t w = pwrite(fuzz_input_fd, data + done, size - done, (off_t)done);
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

#endif /* WELD_FUZZ_INPUT_H */
