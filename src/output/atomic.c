/* Temporary file, fsync, rename: the one way weld puts a file in place (atomic.h). */
#include "output/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TMP_MARK ".weld-tmp"

/* "DIR/.NAME.weld-tmp-PID", malloc'd. */
static char *temp_name(const char *dir, const char *name)
{
	const char *slash = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
	return weld__format("%s%s.%s" TMP_MARK "-%ld", dir, slash, name, (long)getpid());
}

weld_status weld__atomic_create(weld_atomic *a, const char *dir, const char *name, weld_error *err)
{
	*a = (weld_atomic){.fd = -1};
	a->path = weld__path_join(dir, name);
	a->tmp = temp_name(dir, name);
	if (!a->path || !a->tmp) {
		weld__atomic_abort(a);
		return weld__nomem(err);
	}
	a->fd = open(a->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (a->fd < 0) {
		weld_status s = weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
		free(a->tmp); /* nothing was created: nothing to remove */
		a->tmp = NULL;
		weld__atomic_abort(a);
		return s;
	}
	return WELD_OK;
}

weld_status weld__atomic_append(weld_atomic *a, const void *data, size_t n, weld_error *err)
{
	weld_status s = weld_pwrite_all(a->fd, a->tmp, data, n, a->written, err);
	if (!s)
		a->written += n;
	return s;
}

weld_status weld__atomic_commit(weld_atomic *a, weld_error *err)
{
	weld_status s = WELD_OK;
	if (fsync(a->fd) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", a->tmp, strerror(errno));
	/* Closed whatever fsync said: a failed flush must not leak the descriptor. */
	if (close(a->fd) != 0 && !s)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", a->tmp, strerror(errno));
	a->fd = -1;
	if (!s && rename(a->tmp, a->path) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", a->path, strerror(errno));
	if (!s) {
		free(a->tmp);
		a->tmp = NULL;
	}
	weld__atomic_abort(a);
	return s;
}

void weld__atomic_abort(weld_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	if (a->tmp)
		unlink(a->tmp);
	free(a->tmp);
	free(a->path);
	*a = (weld_atomic){.fd = -1};
}

weld_status weld__write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
				    weld_error *err)
{
	weld_atomic a;
	weld_status s = weld__atomic_create(&a, dir, name, err);
	if (!s && (s = weld__atomic_append(&a, data, len, err)))
		weld__atomic_abort(&a);
	return s ? s : weld__atomic_commit(&a, err);
}

bool weld__is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name + 1, TMP_MARK) != NULL;
}

weld_status weld__fsync_dir(const char *dir, weld_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	weld_status s = WELD_OK;
	if (fd < 0 || fsync(fd) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot sync folder: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	return s;
}
