/* The shared staging folder of a multi-part conversion (job.h). */
#define _DEFAULT_SOURCE /* usleep */
#include "output/job.h"

#include "output/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *weld__job_dir(const weld_target *t)
{
	return weld__format("%s/.%s" WELD_JOB_MARK, t->parent, t->name);
}

void weld__job_part_name(char *buf, size_t cap, unsigned part)
{
	snprintf(buf, cap, "part-%u", part);
}

/*
 * DIR/job.json as TEXT, whole from its first moment: written under a draft
 * name only this process uses and link(2)ed into place, which fails with
 * EEXIST when another part made it first (atomic on NFS and parallel
 * filesystems too). Where there are no hard links, an O_EXCL create could
 * show a reader an empty file for a moment: the reader then waits (read_job).
 * *MADE: whether ours is the one.
 */
static weld_status make_job_file(const char *dir, const char *text, size_t len, bool *made, weld_error *err)
{
	char *path = weld__path_join(dir, WELD_JOB_FILE);
	char host[64];
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	/* Parts on several hosts may share a PID: the host keeps their drafts apart. */
	char *draft = weld__format("%s/.job.%s.%ld.draft", dir, host, (long)getpid());
	weld_status s = path && draft ? weld__write_file_atomic(dir, strrchr(draft, '/') + 1, text, len, err)
				      : weld__nomem(err);
	*made = false;
	if (!s && link(draft, path) == 0)
		*made = true;
	else if (!s && errno != EEXIST)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
	if (draft)
		unlink(draft);
	free(path);
	free(draft);
	return s;
}

/* DIR/job.json's text; a job file another part is still writing is read again, for up to a second. */
static weld_status read_job(const char *dir, char **text, weld_error *err)
{
	char *path = weld__path_join(dir, WELD_JOB_FILE);
	size_t len = 0;
	weld_status s = path ? WELD_OK : weld__nomem(err);
	for (int i = 0; !s && i < 100; i++) {
		if ((s = weld__read_small_file(path, WELD_SIDE_FILE_MAX, text, &len, err)) || len)
			break;
		free(*text);
		*text = NULL;
		usleep(10 * 1000);
	}
	if (!s && !len)
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: empty", path);
	free(path);
	return s;
}

weld_status weld__job_join(const char *dir, const char *text, size_t text_len,
			   bool (*same)(const char *stored, const char *ours), bool discard, weld_error *err)
{
	for (int round = 0; round < 2; round++) {
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return weld__fail(err, WELD_ERR_IO, "%s: cannot create the parts folder: %s", dir, strerror(errno));
		bool made;
		char *stored = NULL;
		weld_status s = make_job_file(dir, text, text_len, &made, err);
		if (s || made)
			return s ? s : weld__fsync_dir(dir, err);
		if ((s = read_job(dir, &stored, err)))
			return s;
		bool ours = same(stored, text);
		free(stored);
		if (ours)
			return WELD_OK;
		if (!discard || round > 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "%s: another multi-part conversion into this folder is unfinished (a different input, "
					  "options or part count); finish it with --finish, or --force discards it",
					  dir);
		weld__remove_tree(dir);
	}
	return WELD_OK;
}

weld_status weld__job_file(const char *dir, const char *name, uint64_t size, int *fd, char **path, weld_error *err)
{
	*path = weld__path_join(dir, name);
	if (!*path)
		return weld__nomem(err);
	/* Never O_TRUNC: the other parts' bytes are already in it. Sizing it again changes nothing. */
	*fd = open(*path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (*fd < 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", *path, strerror(errno));
	if (size > (uint64_t)INT64_MAX || ftruncate(*fd, (off_t)size) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot size to %llu bytes: %s", *path, (unsigned long long)size,
				  strerror(errno));
	return WELD_OK;
}

weld_status weld__job_record(const char *dir, unsigned part, const char *text, size_t len, weld_error *err)
{
	char name[24];
	weld__job_part_name(name, sizeof(name), part);
	weld_status s = weld__write_file_atomic(dir, name, text, len, err);
	return s ? s : weld__fsync_dir(dir, err);
}

bool weld__job_recorded(const char *dir, unsigned part)
{
	char name[24];
	weld__job_part_name(name, sizeof(name), part);
	char *path = weld__path_join(dir, name);
	bool there = path && weld__is_file(path);
	free(path);
	return there;
}

unsigned weld__job_missing(const char *dir, unsigned parts, char *buf, size_t cap)
{
	unsigned n = 0;
	size_t used = 0;
	if (cap)
		buf[0] = '\0';
	for (unsigned i = 0; i < parts; i++) {
		if (weld__job_recorded(dir, i))
			continue;
		if (used < cap)
			used += (size_t)snprintf(buf + used, cap - used, "%s%u", n ? ", " : "", i);
		n++;
	}
	return n;
}

bool weld__job_claim(const char *dir, weld_error *err, weld_status *s)
{
	char *path = weld__path_join(dir, WELD_JOB_CLAIM);
	*s = path ? WELD_OK : weld__nomem(err);
	int fd = path ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
	if (fd < 0 && path && errno != EEXIST)
		*s = weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(path);
	return fd >= 0;
}
