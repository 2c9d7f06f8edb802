/*
 * A file-system fault shim for the shell tests, loaded with LD_PRELOAD. It
 * sees only paths under WELD_FAULT_DIR (and descriptors opened on them), so
 * reading the input and writing the terminal never count.
 *
 *   WELD_FAULT_LOG=F     append "KIND N PATH" to F for every call seen
 *   WELD_FAULT=KIND:N:HOW
 *                        the Nth call of KIND fails (HOW = fail), the
 *                        process is killed with SIGKILL just before it
 *                        (HOW = kill), or gets a SIGTERM just before it and
 *                        the call goes on (HOW = term: Slurm's time limit)
 *
 *   WELD_FAULT_NO_EXCHANGE=1
 *                        renameat2 refuses RENAME_EXCHANGE with EINVAL, as
 *                        filesystems without it do (any path)
 *
 * KINDs and the errno a failure gives: open (ENOSPC when creating, EIO
 * otherwise), write (write and pwrite: ENOSPC), truncate (EIO), fsync (EIO),
 * mkdir (ENOSPC), rename (rename and renameat2: EIO), link (EIO), unlink
 * (unlink, unlinkat and rmdir: EIO).
 */
#define _GNU_SOURCE
/* Both the plain and the 64-bit entry points are defined here, so neither may be renamed to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 4096

enum kind { K_OPEN, K_WRITE, K_TRUNCATE, K_FSYNC, K_MKDIR, K_RENAME, K_LINK, K_UNLINK, NKINDS };
static const char *const kind_names[NKINDS] = {"open",  "write", "truncate", "fsync",
					       "mkdir", "rename", "link",    "unlink"};
static const int kind_errno[NKINDS] = {EIO, ENOSPC, EIO, EIO, ENOSPC, EIO, EIO, EIO};

static const char *dir, *log_path;
static size_t dir_len;
static int fault_kind = -1, fault_kill, fault_term, no_exchange;
static unsigned long fault_at;
static unsigned long counts[NKINDS];
static char *fd_path[MAX_FDS]; /* paths of the descriptors we watch */

__attribute__((constructor)) static void init(void)
{
	dir = getenv("WELD_FAULT_DIR");
	dir_len = dir ? strlen(dir) : 0;
	log_path = getenv("WELD_FAULT_LOG");
	no_exchange = getenv("WELD_FAULT_NO_EXCHANGE") != NULL;
	const char *spec = getenv("WELD_FAULT");
	char kind[16], how[8];
	if (spec && sscanf(spec, "%15[a-z]:%lu:%7s", kind, &fault_at, how) == 3) {
		for (int k = 0; k < NKINDS; k++)
			if (strcmp(kind, kind_names[k]) == 0)
				fault_kind = k;
		fault_kill = strcmp(how, "kill") == 0;
		fault_term = strcmp(how, "term") == 0;
	}
}

static bool watched(const char *path)
{
	return dir && path && strncmp(path, dir, dir_len) == 0;
}

static void log_call(int k, unsigned long n, const char *path)
{
	static ssize_t (*real_write)(int, const void *, size_t);
	if (!real_write)
		real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	char line[8192];
	int len = snprintf(line, sizeof(line), "%s %lu %s\n", kind_names[k], n, path);
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); /* not watched: outside the dir */
	if (fd >= 0 && len > 0)
		(void)!real_write(fd, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
	if (fd >= 0)
		close(fd);
}

/*
 * Counts one call of K on PATH; nonzero (errno set) when it is to fail. The
 * descriptor table is not locked: the tests run weld with one worker thread.
 */
static int fault(int k, const char *path, int creating)
{
	if (!watched(path))
		return 0;
	unsigned long n = __atomic_add_fetch(&counts[k], 1, __ATOMIC_SEQ_CST);
	if (log_path)
		log_call(k, n, path);
	if (k != fault_kind || n != fault_at)
		return 0;
	if (fault_kill)
		kill(getpid(), SIGKILL);
	if (fault_term) {
		kill(getpid(), SIGTERM);
		return 0;
	}
	errno = k == K_OPEN && creating ? ENOSPC : kind_errno[k];
	return 1;
}

static const char *path_of(int fd)
{
	return fd >= 0 && fd < MAX_FDS ? fd_path[fd] : NULL;
}

#define REAL(ret, name, ...)                                           \
	static ret (*real)(__VA_ARGS__);                               \
	if (!real)                                                     \
		real = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

static int track(int fd, const char *path)
{
	if (fd >= 0 && fd < MAX_FDS && watched(path)) {
		free(fd_path[fd]);
		fd_path[fd] = strdup(path);
	}
	return fd;
}

typedef int (*open_fn)(const char *, int, ...);

static int open_with(open_fn real, const char *path, int flags, va_list ap)
{
	mode_t mode = flags & (O_CREAT | O_TMPFILE) ? va_arg(ap, mode_t) : 0;
	if (fault(K_OPEN, path, flags & O_CREAT))
		return -1;
	return track(real(path, flags, mode), path);
}

int open(const char *path, int flags, ...)
{
	REAL(int, "open", const char *, int, ...);
	va_list ap;
	va_start(ap, flags);
	int fd = open_with(real, path, flags, ap);
	va_end(ap);
	return fd;
}

int open64(const char *path, int flags, ...)
{
	REAL(int, "open64", const char *, int, ...);
	va_list ap;
	va_start(ap, flags);
	int fd = open_with(real, path, flags, ap);
	va_end(ap);
	return fd;
}

int close(int fd)
{
	REAL(int, "close", int);
	if (fd >= 0 && fd < MAX_FDS) {
		free(fd_path[fd]);
		fd_path[fd] = NULL;
	}
	return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, "write", int, const void *, size_t);
	return fault(K_WRITE, path_of(fd), 0) ? -1 : real(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t at)
{
	REAL(ssize_t, "pwrite64", int, const void *, size_t, off64_t);
	return fault(K_WRITE, path_of(fd), 0) ? -1 : real(fd, buf, n, at);
}

int ftruncate(int fd, off_t len)
{
	REAL(int, "ftruncate", int, off_t);
	return fault(K_TRUNCATE, path_of(fd), 0) ? -1 : real(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
	REAL(int, "ftruncate64", int, off64_t);
	return fault(K_TRUNCATE, path_of(fd), 0) ? -1 : real(fd, len);
}

int fsync(int fd)
{
	REAL(int, "fsync", int);
	return fault(K_FSYNC, path_of(fd), 0) ? -1 : real(fd);
}

int mkdir(const char *path, mode_t mode)
{
	REAL(int, "mkdir", const char *, mode_t);
	return fault(K_MKDIR, path, 1) ? -1 : real(path, mode);
}

int rename(const char *from, const char *to)
{
	REAL(int, "rename", const char *, const char *);
	return fault(K_RENAME, to, 0) ? -1 : real(from, to);
}

int renameat2(int dfd_from, const char *from, int dfd_to, const char *to, unsigned flags)
{
	REAL(int, "renameat2", int, const char *, int, const char *, unsigned);
	if ((flags & RENAME_EXCHANGE) && no_exchange) {
		errno = EINVAL;
		return -1;
	}
	return fault(K_RENAME, to, 0) ? -1 : real(dfd_from, from, dfd_to, to, flags);
}

int link(const char *from, const char *to)
{
	REAL(int, "link", const char *, const char *);
	return fault(K_LINK, to, 0) ? -1 : real(from, to);
}

int unlink(const char *path)
{
	REAL(int, "unlink", const char *);
	return fault(K_UNLINK, path, 0) ? -1 : real(path);
}

/* unlinkat's target as a path: its folder's, read back from /proc, joined to NAME. */
static const char *at_path(int dirfd, const char *name, char *buf, size_t cap)
{
	if (dirfd == AT_FDCWD || name[0] == '/')
		return name;
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	ssize_t n = readlink(link, buf, cap - 1);
	if (n < 0)
		return name;
	snprintf(buf + n, cap - (size_t)n, "/%s", name);
	return buf;
}

int unlinkat(int dirfd, const char *name, int flags)
{
	REAL(int, "unlinkat", int, const char *, int);
	char buf[8192];
	return fault(K_UNLINK, at_path(dirfd, name, buf, sizeof(buf)), 0) ? -1 : real(dirfd, name, flags);
}

int rmdir(const char *path)
{
	REAL(int, "rmdir", const char *);
	return fault(K_UNLINK, path, 0) ? -1 : real(path);
}
