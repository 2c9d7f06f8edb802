/* The output folder's lock (lock.h). */
#define _DEFAULT_SOURCE /* flock */
#include "output/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Linux's highest possible PID (PID_MAX_LIMIT). */
#define PID_LIMIT (4L << 20)

/* Who holds a lock: what its file says. */
typedef struct holder {
	char host[256];
	long pid;
	unsigned long long start; /* the process's start, in clock ticks since boot (PID reuse tells) */
	long long since;          /* when it took the lock, seconds since the epoch */
} holder;

/* Start time of process PID from /proc (0 when it cannot be read). */
static unsigned long long process_start(long pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(line, 1, sizeof(line) - 1, f) : 0;
	if (f)
		fclose(f);
	line[n] = '\0';
	/* Field 22; the command name (field 2) may hold spaces, so count after its ')'. */
	const char *p = strrchr(line, ')');
	unsigned long long start = 0;
	for (int field = 2; p && *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (p && sscanf(p, "%llu", &start) != 1)
		start = 0;
	return start;
}

static void this_host(char *host, size_t cap)
{
	if (gethostname(host, cap) != 0)
		snprintf(host, cap, "unknown");
	host[cap - 1] = '\0';
}

/* Whether H, of this host, names a process that still runs (the very one: same start). */
static bool alive(const holder *h)
{
	if (h->pid <= 0 || (kill((pid_t)h->pid, 0) != 0 && errno == ESRCH))
		return false;
	unsigned long long start = process_start(h->pid);
	return !start || !h->start || start == h->start;
}

static void describe(const holder *h, char *buf, size_t cap)
{
	char when[32] = "an unknown time";
	time_t t = (time_t)h->since;
	struct tm tm;
	if (h->since > 0 && localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, cap, "process %ld on host %s since %s", h->pid, h->host, when);
}

static bool read_holder(int fd, holder *h)
{
	char text[512];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	*h = (holder){0};
	/* A PID outside what Linux hands out (kill(-1, 0) would ask about every process) is no holder. */
	return sscanf(text, "weld-lock host=%255s pid=%ld start=%llu since=%lld", h->host, &h->pid, &h->start,
		      &h->since) == 4 &&
	       h->pid > 0 && h->pid <= PID_LIMIT;
}

/* Our own line into the lock file FD (from its start), flushed. */
static weld_status write_holder(int fd, const char *path, weld_error *err)
{
	char host[256], line[512];
	this_host(host, sizeof(host));
	int n = snprintf(line, sizeof(line), "weld-lock host=%s pid=%ld start=%llu since=%lld\n", host, (long)getpid(),
			 process_start((long)getpid()), (long long)time(NULL));
	/* Written over the old line before the rest is cut: a reader never finds the file empty. */
	weld_status s = weld_pwrite_all(fd, path, line, (size_t)n, 0, err);
	if (!s && ftruncate(fd, n) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
	if (!s && fsync(fd) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", path, strerror(errno));
	return s;
}

/* Whether FD is still the file at PATH (its holder may have removed it since we opened it). */
static bool still_there(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/*
 * The holder's line, waited for: a creator writes it just after it creates
 * the file (holding its flock), so an empty file is read again for up to a
 * second. false when it stays unreadable: with the flock ours, its creator
 * was killed before it wrote.
 */
static bool wait_for_holder(int fd, holder *h)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	for (int i = 0; i < 100; i++) {
		if (read_holder(fd, h))
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

/*
 * The lock file exists: its holder still runs (refused), or it is stale
 * and becomes ours, with a notice. FD is open on it. A running holder keeps
 * its flock, so where flock works a lock of this host whose flock we get is
 * stale whatever its PID says now. Where flock does nothing, a dead local
 * PID is the only sign, and several runs could read it at once: only --force
 * takes such a lock over.
 */
static weld_status take_over(weld_lock *l, int fd, bool force, char *notice, size_t notice_len, weld_error *err)
{
	char host[256], who[512];
	holder h;
	this_host(host, sizeof(host));
	bool flocked = flock(fd, LOCK_EX | LOCK_NB) == 0, busy = !flocked && errno == EWOULDBLOCK;
	if (!busy && !still_there(fd, l->path))
		return WELD_OK; /* released while we looked: the caller tries again */
	bool known = read_holder(fd, &h) || ((flocked || busy) && wait_for_holder(fd, &h));
	bool unwritten = !known && flocked, local = known && strcmp(h.host, host) == 0;
	bool running = busy || (local && !flocked && alive(&h));
	describe(&h, who, sizeof(who));
	if (running)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: another conversion into this folder is running (%s)",
				  l->path, known ? who : "one that has not written its name yet");
	if (!force && !known && !unwritten)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: a lock weld cannot read; if no conversion into this folder runs, run again with --force",
				  l->path);
	if (!force && known && !local)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: locked by %s; if that conversion is gone, run again with --force", l->path, who);
	if (!force && known && !flocked)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: left by %s, which no longer runs; without flock on this filesystem weld cannot take "
				  "it over safely by itself: run again with --force",
				  l->path, who);
	snprintf(notice, notice_len, "took over the lock of a conversion that no longer runs (%s)",
		 known ? who : "a lock left empty or unreadable");
	l->fd = fd;
	return write_holder(fd, l->path, err);
}

/* "PARENT/.NAME.weld-lock", malloc'd. */
static char *lock_path(const char *parent, const char *name)
{
	size_t n = strlen(parent);
	return weld__format("%s%s.%s.weld-lock", parent, n && parent[n - 1] == '/' ? "" : "/", name);
}

/* "PATH.HOST.PID.N": where this process writes the lock before linking it into place, N for each take. */
static char *draft_path(const char *path)
{
	static unsigned long takes;
	unsigned long n_take = __atomic_add_fetch(&takes, 1, __ATOMIC_RELAXED);
	char host[256];
	this_host(host, sizeof(host));
	return weld__format("%s.%s.%ld.%lu", path, host, (long)getpid(), n_take);
}

/* A new lock file at PATH, created with O_EXCL and written: for filesystems without hard links. */
static int create_in_place(const char *path, bool *taken, weld_error *err, weld_status *s)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno != EEXIST)
		*s = weld__fail(err, WELD_ERR_IO, "%s: cannot create the lock: %s", path, strerror(errno));
	if (fd < 0)
		return -1;
	flock(fd, LOCK_EX | LOCK_NB);
	*taken = true;
	*s = write_holder(fd, path, err);
	return fd;
}

static bool no_hard_links(int e)
{
	return e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS;
}

/*
 * A new lock file at L's path, whole from its first moment: written under a
 * draft name only this call uses and link(2)ed into place, which fails
 * while another holds it. This is how locks are made on NFS, where link is
 * atomic across clients; a link whose reply was lost shows in the draft's
 * link count. Where the filesystem has no hard links, O_EXCL creates it in
 * place. *TAKEN is false (with WELD_OK) when the lock exists already.
 */
static weld_status create_lock(weld_lock *l, bool *taken, weld_error *err)
{
	*taken = false;
	char *draft = draft_path(l->path);
	if (!draft)
		return weld__nomem(err);
	int fd = open(draft, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	weld_status s = fd < 0 ? weld__fail(err, WELD_ERR_IO, "%s: cannot create the lock: %s", draft, strerror(errno))
			       : WELD_OK;
	if (!s) {
		flock(fd, LOCK_EX | LOCK_NB); /* where flock works it is ours: nobody else has the file yet */
		s = write_holder(fd, draft, err);
	}
	int linked = -1, e = 0;
	if (!s) {
		struct stat sb;
		linked = link(draft, l->path);
		e = errno;
		*taken = linked == 0 || (fstat(fd, &sb) == 0 && sb.st_nlink == 2);
	}
	if (fd >= 0)
		unlink(draft);
	if (!s && !*taken && no_hard_links(e)) {
		close(fd);
		fd = create_in_place(l->path, taken, err, &s);
	} else if (!s && !*taken && e != EEXIST) {
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot create the lock: %s", l->path, strerror(e));
	}
	if (*taken)
		l->fd = fd;
	else if (fd >= 0)
		close(fd);
	free(draft);
	return s;
}

/* Drafts of lock L that processes of this host killed before they linked them: ours to remove now. */
static void remove_dead_drafts(const weld_lock *l, const char *parent)
{
	char host[256], **names;
	size_t n;
	this_host(host, sizeof(host));
	const char *base = strrchr(l->path, '/') + 1;
	size_t blen = strlen(base), hlen = strlen(host);
	if (weld__list_dir(parent, &names, &n, NULL) != WELD_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *e = names[i];
		holder h = {.start = 0};
		char *end = NULL;
		if (strncmp(e, base, blen) || e[blen] != '.' || strncmp(e + blen + 1, host, hlen) || e[blen + 1 + hlen] != '.')
			continue;
		h.pid = strtol(e + blen + 2 + hlen, &end, 10); /* then ".N" */
		char *path = *end == '.' && end[1] && strspn(end + 1, "0123456789") == strlen(end + 1) && !alive(&h)
				     ? weld__path_join(parent, e)
				     : NULL;
		if (path)
			unlink(path);
		free(path);
	}
	weld__free_strings(names, n);
}

weld_status weld__lock_take(weld_lock *l, const char *parent, const char *name, bool force, char *notice,
			    size_t notice_len, weld_error *err)
{
	*l = (weld_lock)WELD_LOCK_INIT;
	if (notice_len)
		notice[0] = '\0';
	if (!(l->path = lock_path(parent, name)))
		return weld__nomem(err);
	weld_status s = WELD_OK;
	for (int tries = 0; tries < 3 && l->fd < 0 && !s; tries++) {
		bool taken;
		int fd;
		s = create_lock(l, &taken, err);
		if (s || taken)
			break;
		if ((fd = open(l->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
			s = take_over(l, fd, force, notice, notice_len, err);
			if (l->fd != fd)
				close(fd);
		} /* else: released meanwhile; try again */
	}
	if (!s && l->fd < 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot take the lock: it keeps changing hands", l->path);
	if (s)
		weld__lock_release(l);
	else
		remove_dead_drafts(l, parent);
	return s;
}

void weld__lock_release(weld_lock *l)
{
	if (l->fd >= 0) {
		unlink(l->path); /* still holding the flock, so no one takes a lock that is going */
		close(l->fd);
	}
	free(l->path);
	*l = (weld_lock)WELD_LOCK_INIT;
}

bool weld__lock_busy(const char *parent, const char *name)
{
	char *path = lock_path(parent, name);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	bool busy = false;
	if (fd >= 0) {
		char host[256];
		holder h;
		this_host(host, sizeof(host));
		busy = !read_holder(fd, &h) || strcmp(h.host, host) != 0 || alive(&h);
		close(fd);
	}
	free(path);
	return busy;
}
