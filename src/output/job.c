/* The shared staging folder of a multi-part conversion (job.h). */
#define _DEFAULT_SOURCE /* usleep */
#include "output/job.h"

#include "output/atomic.h"

#include <dirent.h>
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
 * filesystems too). Where there are no hard links the link fails and so
 * does the join, naming the filesystem's errno: the publish links the
 * weights files into the staging folder too, so such a filesystem cannot
 * hold a multi-part job at all. *MADE: whether ours is the one.
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
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot create (a multi-part job needs hard links): %s", path,
			       strerror(errno));
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

/* Whether DIR holds entries (not drafts or temporaries: their names start with '.') but no job.json. */
static bool orphaned(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool entries = false, job = false;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			*(strcmp(e->d_name, WELD_JOB_FILE) == 0 ? &job : &entries) = true;
	if (d)
		closedir(d);
	return entries && !job;
}

weld_status weld__job_join(const char *dir, const char *text, size_t text_len, weld_job_same same, bool discard,
			   bool *discarded, weld_error *err)
{
	*discarded = false;
	for (int round = 0; round < 2; round++) {
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return weld__fail(err, WELD_ERR_IO, "%s: cannot create the parts folder: %s", dir, strerror(errno));
		bool made, ours = false;
		char *stored = NULL, why[512] = "";
		weld_status s = WELD_OK;
		if (!orphaned(dir)) {
			if ((s = make_job_file(dir, text, text_len, &made, err)) || made)
				return s ? s : weld__fsync_dir(dir, err);
			if ((s = read_job(dir, &stored, err)))
				return s;
			ours = same(stored, text, why, sizeof(why));
			free(stored);
		} else {
			snprintf(why, sizeof(why), "parts of an unknown job (its job.json is gone, as when a cleanup was "
						   "interrupted); --force discards them");
		}
		if (ours)
			return WELD_OK;
		if (!discard || round > 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: %s", dir,
					  why[0] ? why
						 : "another multi-part conversion into this folder is unfinished (a different "
						   "input, options or part count); finish it with --finish, or --force discards it");
		weld__job_remove(dir);
		*discarded = true;
	}
	return WELD_OK;
}

bool weld__job_remove(const char *dir)
{
	char *trash = weld__format("%s.gone-%ld", dir, (long)getpid());
	/* Renamed first, so that a removal cut short never leaves records under the job's name without job.json. */
	bool gone = trash && rename(dir, trash) == 0 ? weld__remove_tree(trash) : trash && !weld__is_dir(dir);
	free(trash);
	return gone;
}

weld_status weld__job_file(const char *dir, const char *name, uint64_t size, bool create, int *fd, char **path,
			   weld_error *err)
{
	struct stat st;
	*path = weld__path_join(dir, name);
	if (!*path)
		return weld__nomem(err);
	/* Never O_TRUNC: the other parts' bytes are already in it. Sizing it again changes nothing. */
	*fd = open(*path, O_RDWR | (create ? O_CREAT : 0) | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (*fd < 0 && !create && errno == ENOENT)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: missing, with parts recorded: their bytes are lost; remove the parts "
				  "folder and run every part again",
				  *path);
	if (*fd < 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", *path, strerror(errno));
	if (!create && (fstat(*fd, &st) != 0 || (uint64_t)st.st_size != size))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not the %llu bytes the parts wrote; remove the parts folder and run "
				  "every part again", *path,
				  (unsigned long long)size);
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
