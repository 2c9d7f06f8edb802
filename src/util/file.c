/*
 * Input files (read with pread so threads can share them, their descriptors
 * kept in a bounded cache so that a checkpoint may have more files than the
 * process may open), the one write loop, paths, small whole files, and
 * folders listed and removed.
 */
#include "util/util.h"

#include "util/json.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The descriptor cache. A weld_file holding a descriptor is on the list,
 * newest use first; one whose descriptor was closed to make room is on no
 * list and reopens on its next read. A reader pins the file under the lock
 * and unpins it without; only unpinned descriptors are closed, so none is
 * closed (and its number reused for another file) under a read. open(2) and
 * close(2) run outside the lock: on NFS or Lustre either may wait on a
 * server, and the other threads' reads should not.
 */
#define EVICT_MAX 4

static struct {
	pthread_mutex_t lock;
	weld_file *newest, *oldest;
	size_t held;    /* descriptors held, and opens in flight */
	size_t budget;  /* 0: from RLIMIT_NOFILE */
	uint64_t opens; /* open(2) calls that succeeded */
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

void weld__file_cache_budget(size_t budget)
{
	pthread_mutex_lock(&cache.lock);
	cache.budget = budget;
	pthread_mutex_unlock(&cache.lock);
}

size_t weld__file_cache_held(void)
{
	pthread_mutex_lock(&cache.lock);
	size_t n = cache.held;
	pthread_mutex_unlock(&cache.lock);
	return n;
}

uint64_t weld__file_cache_opens(void)
{
	pthread_mutex_lock(&cache.lock);
	uint64_t n = cache.opens;
	pthread_mutex_unlock(&cache.lock);
	return n;
}

/* Under the lock: the budget set, or the soft RLIMIT_NOFILE less the headroom (at most half of it). */
static size_t budget_now(void)
{
	struct rlimit rl;
	if (cache.budget)
		return cache.budget;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= SIZE_MAX / 2)
		return SIZE_MAX / 2;
	size_t soft = (size_t)rl.rlim_cur, headroom = soft / 2 < WELD_FILE_HEADROOM ? soft / 2 : WELD_FILE_HEADROOM;
	return soft - headroom > 0 ? soft - headroom : 1;
}

static void list_remove(weld_file *f)
{
	*(f->newer ? &f->newer->older : &cache.newest) = f->older;
	*(f->older ? &f->older->newer : &cache.oldest) = f->newer;
	f->newer = f->older = NULL;
}

static void list_push(weld_file *f)
{
	f->older = cache.newest;
	f->newer = NULL;
	*(cache.newest ? &cache.newest->newer : &cache.oldest) = f;
	cache.newest = f;
}

/* Under the lock: the least recently used idle descriptor, taken from its file (-1 when all are in use). */
static int evict_one(void)
{
	for (weld_file *f = cache.oldest; f; f = f->newer) {
		if (atomic_load_explicit(&f->pins, memory_order_acquire) != 0)
			continue;
		int fd = f->fd;
		list_remove(f);
		f->fd = -1;
		cache.held--;
		return fd;
	}
	return -1;
}

/* Counts one more descriptor and closes idle ones while over the budget (a few at a time). */
static void make_room(void)
{
	int victims[EVICT_MAX], n = 0;
	pthread_mutex_lock(&cache.lock);
	cache.held++;
	for (size_t budget = budget_now(); n < EVICT_MAX && cache.held > budget; n++)
		if ((victims[n] = evict_one()) < 0)
			break;
	pthread_mutex_unlock(&cache.lock);
	for (int i = 0; i < n && victims[i] >= 0; i++)
		close(victims[i]);
}

/* open(2) of PATH; out of descriptors (EMFILE, ENFILE), idle ones are closed until it works or none is left. */
static int open_evicting(const char *path)
{
	for (;;) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 || (errno != EMFILE && errno != ENFILE))
			return fd;
		int e = errno;
		pthread_mutex_lock(&cache.lock);
		int victim = evict_one();
		pthread_mutex_unlock(&cache.lock);
		if (victim < 0) {
			errno = e;
			return -1;
		}
		close(victim);
	}
}

/*
 * F's path opened: a regular file, which on a REOPEN must be the one first
 * opened (device, inode, size, modification time), else noted as that one.
 */
static weld_status open_checked(weld_file *f, bool reopen, int *out, weld_error *err)
{
	int fd = open_evicting(f->path);
	if (fd < 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot %s: %s", f->path, reopen ? "reopen" : "open", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", f->path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return weld__fail(err, WELD_ERR_IO, "%s: not a regular file", f->path);
	}
	if (reopen && ((uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino || (uint64_t)st.st_size != f->size ||
		       st.st_mtim.tv_sec != f->mtime_s || st.st_mtim.tv_nsec != f->mtime_ns)) {
		close(fd);
		return weld__fail(err, WELD_ERR_IO, "%s: replaced or changed since it was first opened", f->path);
	}
	if (!reopen) { /* F is not shared yet: later readers only read these */
		f->dev = (uint64_t)st.st_dev;
		f->ino = (uint64_t)st.st_ino;
		f->size = (uint64_t)st.st_size;
		f->mtime_s = st.st_mtim.tv_sec;
		f->mtime_ns = st.st_mtim.tv_nsec;
	}
	*out = fd;
	return WELD_OK;
}

/*
 * F given a descriptor, counted by the cache (REOPEN: F had one before); with
 * PIN, *FD is it, pinned. Another reader may have reopened F meanwhile: its
 * descriptor is kept and this one closed.
 */
static weld_status cache_open(weld_file *f, bool reopen, bool pin, int *fd, weld_error *err)
{
	int mine = -1, spare = -1;
	make_room();
	weld_status s = open_checked(f, reopen, &mine, err);
	pthread_mutex_lock(&cache.lock);
	if (s || f->fd >= 0) {
		cache.held--;
		spare = mine;
	} else {
		cache.opens++;
		f->fd = mine;
		list_push(f);
	}
	if (!s && pin) {
		atomic_fetch_add_explicit(&f->pins, 1, memory_order_relaxed);
		*fd = f->fd;
	}
	pthread_mutex_unlock(&cache.lock);
	if (spare >= 0)
		close(spare);
	return s;
}

/* *FD: F's descriptor, pinned until unpin(F); reopened when the cache closed it. */
static weld_status pin(weld_file *f, int *fd, weld_error *err)
{
	pthread_mutex_lock(&cache.lock);
	if (f->fd >= 0) {
		atomic_fetch_add_explicit(&f->pins, 1, memory_order_relaxed);
		if (cache.newest != f) {
			list_remove(f);
			list_push(f);
		}
		*fd = f->fd;
		pthread_mutex_unlock(&cache.lock);
		return WELD_OK;
	}
	pthread_mutex_unlock(&cache.lock);
	return cache_open(f, true, true, fd, err);
}

/* The read on F's descriptor is over: the cache may close it again. */
static void unpin(weld_file *f)
{
	atomic_fetch_sub_explicit(&f->pins, 1, memory_order_release);
}

/* A closed file named PATH (copied), one reference; NULL when out of memory. */
static weld_file *file_new(const char *path)
{
	weld_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->path = weld__strdup(path))) {
		free(f);
		return NULL;
	}
	f->fd = -1;
	atomic_init(&f->bytes_read, 0);
	atomic_init(&f->pins, 0);
	atomic_init(&f->refs, 1);
	return f;
}

weld_status weld_file_open(weld_file **out, const char *path, weld_error *err)
{
	*out = NULL;
	weld_file *f = file_new(path);
	if (!f)
		return weld__nomem(err);
	weld_status s = cache_open(f, false, false, NULL, err);
	if (s) {
		free(f->path);
		free(f);
		return s;
	}
	*out = f;
	return WELD_OK;
}

weld_status weld_file_window(weld_file **out, weld_file *parent, uint64_t base, uint64_t len, const char *name,
			     weld_error *err)
{
	*out = NULL;
	uint64_t end;
	if (!weld__add_u64(&end, base, len) || end > parent->size)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: bytes %llu to %llu lie past its end (%llu bytes)", parent->path,
				  (unsigned long long)base, (unsigned long long)(base + len < base ? UINT64_MAX : base + len),
				  (unsigned long long)parent->size);
	weld_file *f = file_new(name);
	if (!f)
		return weld__nomem(err);
	f->size = len;
	f->parent = parent;
	f->base = base;
	atomic_fetch_add(&parent->refs, 1);
	*out = f;
	return WELD_OK;
}

void weld_file_close(weld_file *f)
{
	if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
		return;
	if (f->parent) {
		weld_file_close(f->parent);
		free(f->path);
		free(f);
		return;
	}
	pthread_mutex_lock(&cache.lock);
	int fd = f->fd;
	if (fd >= 0) {
		list_remove(f);
		cache.held--;
	}
	pthread_mutex_unlock(&cache.lock);
	if (fd >= 0)
		close(fd);
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
	if (f->parent) {
		weld_status ws = weld_file_pread(f->parent, buf, n, f->base + offset, err);
		if (!ws)
			atomic_fetch_add_explicit(&f->bytes_read, n, memory_order_relaxed);
		return ws;
	}
	int fd;
	weld_status s = pin(f, &fd, err);
	if (s)
		return s;
	uint8_t *p = buf;
	size_t done = 0;
	while (done < n && !s) {
		ssize_t r = pread(fd, p + done, n - done, (off_t)(offset + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			s = weld__fail(err, WELD_ERR_IO, "%s: read failed at offset %llu: %s", f->path,
				       (unsigned long long)(offset + done), strerror(errno));
		else if (r == 0)
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: truncated: file shrank while reading", f->path);
		else
			done += (size_t)r;
	}
	unpin(f);
	if (!s)
		atomic_fetch_add_explicit(&f->bytes_read, n, memory_order_relaxed);
	return s;
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

/*
 * The next number token in TEXT[*POS..N) (strings skipped), at *START; *POS
 * moves past it. false when none.
 */
static bool next_number(const char *text, size_t n, size_t *pos, size_t *start)
{
	while (*pos < n) {
		char c = text[*pos];
		size_t at;
		if (c == '"') {
			if (weld__json_string(text, n, pos, false, NULL, NULL, &at))
				return false;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			*start = *pos;
			return weld__json_number(text, n, pos, false) == WELD_JSON_OK;
		} else {
			(*pos)++;
		}
	}
	return false;
}

/*
 * Number nodes under J, in document order, are the number tokens of TEXT in
 * order: each whole number from 2^53 on (a double rounds past it) becomes a raw
 * node holding its digits. false stops the walk (tokens and nodes disagree:
 * nothing more is changed).
 */
static bool exact_integers(cJSON *j, const char *text, size_t n, size_t *pos)
{
	for (cJSON *c = j->child, *next; c; c = next) {
		next = c->next;
		if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
			if (!exact_integers(c, text, n, pos))
				return false;
			continue;
		}
		if (!cJSON_IsNumber(c))
			continue;
		size_t start, len;
		if (!next_number(text, n, pos, &start))
			return false;
		len = *pos - start;
		bool whole = len <= 20;
		for (size_t i = 0; whole && i < len; i++)
			whole = text[start + i] >= '0' && text[start + i] <= '9';
		if (!(c->valuedouble >= 9007199254740992.0) || !whole)
			continue;
		char digits[21];
		memcpy(digits, text + start, len);
		digits[len] = '\0';
		cJSON *raw = cJSON_CreateRaw(digits);
		if (!raw)
			return false;
		if (c->string) { /* an object member keeps its key */
			raw->string = c->string;
			c->string = NULL;
		}
		cJSON_ReplaceItemViaPointer(j, c, raw);
	}
	return true;
}

static weld_status read_json(const char *path, size_t max, bool exact, cJSON **out, weld_error *err)
{
	char *text = NULL;
	size_t len = 0;
	const char *end = NULL;
	*out = NULL;
	weld_status s = weld__read_small_file(path, max, &text, &len, err);
	if (s)
		return s;
	*out = cJSON_ParseWithLengthOpts(text, len, &end, false);
	size_t bad = *out ? json_outside_value(text, len, (size_t)(end - text)) : len, pos = 0;
	/* Falling back to doubles would silently round integers past 2^53: refuse instead. */
	bool inexact = *out && exact && !exact_integers(*out, text, len, &pos);
	free(text);
	/* cJSON cannot tell a parse error from running out of memory; both mean "unusable". */
	if (!*out)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON", path);
	if (inexact) {
		cJSON_Delete(*out);
		*out = NULL;
		return weld__fail(err, WELD_ERR_NOMEM, "%s: out of memory reading its integers exactly", path);
	}
	if (bad == len)
		return WELD_OK;
	cJSON_Delete(*out);
	*out = NULL;
	return weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON (%s at byte %zu)", path,
			  bad ? "trailing data after the value" : "a UTF-8 byte order mark", bad);
}

weld_status weld__read_json_file(const char *path, size_t max, cJSON **out, weld_error *err)
{
	return read_json(path, max, false, out, err);
}

weld_status weld__read_json_file_exact(const char *path, size_t max, cJSON **out, weld_error *err)
{
	return read_json(path, max, true, out, err);
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
