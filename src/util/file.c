/*
 * Input files (one descriptor each, read with pread so threads can share
 * it), the one write loop, paths, small whole files, and folders listed and
 * removed.
 */
#include "util/util.h"

#include "util/json.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

weld_status weld_file_open(weld_file **out, const char *path, weld_error *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return weld__fail(err, WELD_ERR_IO, "%s: not a regular file", path);
	}
	weld_file *f = calloc(1, sizeof(*f));
	char *p = weld__strdup(path);
	if (!f || !p) {
		free(f);
		free(p);
		close(fd);
		return weld__nomem(err);
	}
	f->fd = fd;
	f->size = (uint64_t)st.st_size;
	f->path = p;
	atomic_init(&f->bytes_read, 0);
	*out = f;
	return WELD_OK;
}

void weld_file_close(weld_file *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f->path);
	free(f);
}

weld_status weld_file_pread(weld_file *f, void *buf, size_t n, uint64_t offset, weld_error *err)
{
	uint64_t end;
	if (!weld__add_u64(&end, offset, n) || end > f->size)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: truncated: needs bytes up to %llu but the file has %llu", f->path,
				  (unsigned long long)(offset + (uint64_t)n < offset ? UINT64_MAX : offset + n),
				  (unsigned long long)f->size);
	uint8_t *p = buf;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(f->fd, p + done, n - done, (off_t)(offset + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return weld__fail(err, WELD_ERR_IO, "%s: read failed at offset %llu: %s", f->path,
					  (unsigned long long)(offset + done), strerror(errno));
		}
		if (r == 0)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: truncated: file shrank while reading",
					  f->path);
		done += (size_t)r;
	}
	atomic_fetch_add_explicit(&f->bytes_read, n, memory_order_relaxed);
	return WELD_OK;
}

weld_status weld_pwrite_all(int fd, const char *path, const void *buf, size_t n, uint64_t offset, weld_error *err)
{
	const uint8_t *p = buf;
	while (n > 0) {
		/* Linux moves at most about 2 GiB per call; ask for 1 GiB at a time. */
		size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
		ssize_t w = pwrite(fd, p, chunk, (off_t)offset);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return weld__fail(err, WELD_ERR_IO, "%s: write failed at offset %llu: %s", path,
					  (unsigned long long)offset, w < 0 ? strerror(errno) : "no progress");
		p += w;
		n -= (size_t)w;
		offset += (uint64_t)w;
	}
	return WELD_OK;
}

char *weld__path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	size_t n = a;
	if (n && p[n - 1] != '/')
		p[n++] = '/';
	memcpy(p + n, name, b + 1);
	return p;
}

bool weld__is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool weld__is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

weld_status weld__read_small_file(const char *path, size_t max, char **out, size_t *len, weld_error *err)
{
	weld_file *f;
	weld_status s = weld_file_open(&f, path, err);
	if (s)
		return s;
	if (f->size > max) {
		s = weld__fail(err, WELD_ERR_LIMIT, "%s: %llu bytes, over the %zu-byte limit for this file",
			       path, (unsigned long long)f->size, max);
		weld_file_close(f);
		return s;
	}
	char *buf = malloc((size_t)f->size + 1);
	if (!buf) {
		weld_file_close(f);
		return weld__nomem(err);
	}
	s = weld_file_pread(f, buf, (size_t)f->size, 0, err);
	buf[f->size] = '\0';
	*len = (size_t)f->size;
	weld_file_close(f);
	if (s) {
		free(buf);
		return s;
	}
	*out = buf;
	return WELD_OK;
}

/*
 * Where TEXT[0..LEN) stops being what Python's json.loads accepts around the
 * value cJSON parsed, which ends at END: a byte order mark before it (which
 * cJSON skips), or anything but JSON white space after it. LEN when none.
 */
static size_t json_outside_value(const char *text, size_t len, size_t end)
{
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		return 0;
	weld__json_skip_ws(text, len, &end);
	return end;
}

weld_status weld__read_json_file(const char *path, size_t max, cJSON **out, weld_error *err)
{
	char *text = NULL;
	size_t len = 0;
	const char *end = NULL;
	*out = NULL;
	weld_status s = weld__read_small_file(path, max, &text, &len, err);
	if (s)
		return s;
	*out = cJSON_ParseWithLengthOpts(text, len, &end, false);
	size_t bad = *out ? json_outside_value(text, len, (size_t)(end - text)) : len;
	free(text);
	/* cJSON cannot tell a parse error from running out of memory; both mean "unusable". */
	if (!*out)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON", path);
	if (bad == len)
		return WELD_OK;
	cJSON_Delete(*out);
	*out = NULL;
	return weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON (%s at byte %zu)", path,
			  bad ? "trailing data after the value" : "a UTF-8 byte order mark", bad);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names in folder D (DIR, for messages), sorted; D is closed. */
static weld_status read_names(DIR *d, const char *dir, char ***names, size_t *count, weld_error *err)
{
	char **list = NULL;
	size_t n = 0, cap = 0;
	weld_status st = WELD_OK;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno)
				st = weld__fail(err, WELD_ERR_IO, "%s: cannot read folder: %s", dir, strerror(errno));
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 16;
			char **l = weld__reallocarray(list, c, sizeof(*l));
			if (!l) {
				st = weld__nomem(err);
				break;
			}
			list = l;
			cap = c;
		}
		if (!(list[n] = weld__strdup(e->d_name))) {
			st = weld__nomem(err);
			break;
		}
		n++;
	}
	closedir(d);
	if (st) {
		weld__free_strings(list, n);
		return st;
	}
	if (n)
		qsort(list, n, sizeof(*list), cmp_names);
	*names = list;
	*count = n;
	return WELD_OK;
}

weld_status weld__list_dir(const char *dir, char ***names, size_t *count, weld_error *err)
{
	*names = NULL;
	*count = 0;
	DIR *d = opendir(dir);
	if (!d)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
	return read_names(d, dir, names, count, err);
}

/*
 * NAME in folder AT removed, with what is in it when it is a folder. Each
 * folder is opened with O_NOFOLLOW and emptied through its descriptor, so a
 * folder swapped for a link meanwhile never leads outside the tree.
 */
static bool remove_at(int at, const char *name)
{
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ENOTDIR || errno == ELOOP))
		return unlinkat(at, name, 0) == 0 || errno == ENOENT;
	if (fd < 0)
		return errno == ENOENT;
	int listed = dup(fd); /* read_names closes its DIR, and with it the descriptor under it */
	DIR *d = listed >= 0 ? fdopendir(listed) : NULL;
	char **names = NULL;
	size_t n = 0;
	bool all = d && read_names(d, name, &names, &n, NULL) == WELD_OK;
	if (!d && listed >= 0)
		close(listed);
	for (size_t i = 0; i < n; i++)
		all = remove_at(fd, names[i]) && all;
	weld__free_strings(names, n);
	close(fd);
	return all && (unlinkat(at, name, AT_REMOVEDIR) == 0 || errno == ENOENT);
}

bool weld__remove_tree(const char *path)
{
	return remove_at(AT_FDCWD, path);
}
