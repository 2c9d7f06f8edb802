/*
 * Fuzz target for the zip reader: the input becomes a file (weld reads files
 * with pread, not buffers), which is opened as a zip; every entry is looked
 * up by its record name and, when small, read with its CRC checked.
 */
#define _GNU_SOURCE /* memfd_create */
#include "io/zip.h"
#include "fuzz_input.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_READ ((uint64_t)1 << 20)

/* Every failure must be one line that starts with the file name. */
static void check_message(weld_status s, const weld_error *err)
{
	size_t n = strlen(fuzz_input_path);
	if (s != WELD_OK && (s != err->status || strncmp(err->message, fuzz_input_path, n) != 0 ||
			     strncmp(err->message + n, ": ", 2) != 0 || strchr(err->message, '\n')))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_input_write("fuzz_zip", data, size) != 0)
		return 0;

	weld_error err = {0};
	weld_file *f = NULL;
	weld_zip *z = NULL;
	if (weld_file_open(&f, fuzz_input_path, &err) != WELD_OK)
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
