/*
 * Files that appear whole or not at all: written under a temporary name
 * beside their final one (".NAME.weld-tmp-PID"), fsynced, and renamed into
 * place. The temporary name is opened with O_NOFOLLOW, so a symlink planted
 * there is never written through.
 */
#ifndef WELD_OUTPUT_ATOMIC_H
#define WELD_OUTPUT_ATOMIC_H

#include "util/util.h"

typedef struct weld_atomic {
	int fd;          /* -1 once closed */
	char *tmp, *path; /* the temporary and the final name */
	uint64_t written; /* bytes appended */
} weld_atomic;

/* A weld_atomic that holds nothing yet (weld__atomic_abort may be called on it). */
#define WELD_ATOMIC_INIT {.fd = -1}

/* Create DIR/NAME's temporary file, empty, open for reading and writing. */
weld_status weld__atomic_create(weld_atomic *a, const char *dir, const char *name, weld_error *err);
/* Append N bytes. */
weld_status weld__atomic_append(weld_atomic *a, const void *data, size_t n, weld_error *err);
/*
 * fsync, close and rename into place. Whatever fails, the descriptor is
 * closed and, unless the rename happened, the temporary file removed;
 * A's names are freed either way.
 */
weld_status weld__atomic_commit(weld_atomic *a, weld_error *err);
/* Give up: close, remove the temporary file, free the names. Safe on WELD_ATOMIC_INIT and on a finished A. */
void weld__atomic_abort(weld_atomic *a);

/* DIR/NAME holding DATA[0..LEN), atomically. */
weld_status weld__write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
				    weld_error *err);

/* Whether NAME is a temporary name weld writes under (what a killed run may leave behind). */
bool weld__is_temp_name(const char *name);

/* fsync the folder DIR, so that the renames in it are durable. */
weld_status weld__fsync_dir(const char *dir, weld_error *err);

#endif /* WELD_OUTPUT_ATOMIC_H */
