/* The output folder, named, checked and repaired (target.h). */
#define _DEFAULT_SOURCE /* realpath, lstat */
#include "output/target.h"

#include "output/atomic.h"
#include "output/folder.h"
#include "output/lock.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *weld__target_beside(const weld_target *t, const char *mark)
{
	return weld__format("%s/.%s%s%ld", t->parent, t->name, mark, (long)getpid());
}

/*
 * Whether ENTRY (a name in T's parent) is ".NAME<MARK><PID>" for T: the PID
 * all digits, so that another target whose name merely starts alike (a
 * target "out.weld-stage-a" beside "out") is never taken for ours.
 */
static bool is_beside(const char *entry, const weld_target *t, const char *mark)
{
	size_t n = strlen(t->name), m = strlen(mark);
	if (entry[0] != '.' || strncmp(entry + 1, t->name, n) != 0 || strncmp(entry + 1 + n, mark, m) != 0)
		return false;
	const char *pid = entry + 1 + n + m;
	return *pid && strspn(pid, "0123456789") == strlen(pid);
}

/* mkdir -p DIR (mode 0755); each folder made is fsynced into its parent. */
static weld_status make_dirs(const char *dir, weld_error *err)
{
	char *p = weld__strdup(dir);
	if (!p)
		return weld__nomem(err);
	weld_status st = WELD_OK;
	for (char *c = p + 1; !st; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char saved = *c;
		*c = '\0';
		struct stat sb;
		if (mkdir(p, 0755) == 0) {
			char *slash = strrchr(p, '/');
			char *up = slash ? weld__strndup(p, slash == p ? 1 : (size_t)(slash - p)) : weld__strdup(".");
			st = up ? weld__fsync_dir(up, err) : weld__nomem(err);
			free(up);
		} else if (errno != EEXIST || stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
			int e = errno == EEXIST ? ENOTDIR : errno;
			st = weld__fail(err, WELD_ERR_IO, "%s: cannot create folder: %s", p, strerror(e));
		}
		*c = saved;
		if (saved == '\0')
			break;
	}
	free(p);
	return st;
}

/* T's path, parent and name from PATH (taken over: freed with T). */
static weld_status split(weld_target *t, char *path, weld_error *err)
{
	const char *slash = strrchr(path, '/');
	t->path = path;
	t->name = weld__strdup(slash ? slash + 1 : path);
	t->parent = slash ? weld__strndup(path, slash == path ? 1 : (size_t)(slash - path)) : weld__strdup(".");
	return t->name && t->parent ? WELD_OK : weld__nomem(err);
}

/*
 * DIR named as the folder it is: a name that is "." or "..", or a link to a
 * folder, is resolved, so that the staging folder sits beside the real one
 * and the publish renames the folder, not the link.
 */
static weld_status name_target(weld_target *t, const char *dir, weld_error *err)
{
	*t = (weld_target)WELD_TARGET_INIT;
	size_t n = dir ? strlen(dir) : 0;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 0)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "empty output folder name");
	char *path = weld__strndup(dir, n);
	if (!path)
		return weld__nomem(err);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct stat sb;
	bool resolve = strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(path, "/") == 0 ||
		       (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode));
	char real[PATH_MAX];
	weld_status s = WELD_OK;
	if (resolve && !realpath(path, real))
		s = weld__fail(err, WELD_ERR_IO, "%s: %s", path, strerror(errno));
	else if (resolve && strcmp(real, "/") == 0)
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: the root folder cannot be an output folder", path);
	if (!s && resolve) {
		free(path);
		path = weld__strdup(real);
	}
	if (s || !path) {
		free(path);
		return s ? s : weld__nomem(err);
	}
	if ((s = split(t, path, err)))
		weld__target_free(t);
	return s;
}

weld_status weld__target_open(weld_target *t, const char *dir, weld_error *err)
{
	weld_status s = name_target(t, dir, err);
	if (!s && (s = make_dirs(t->parent, err)))
		weld__target_free(t);
	return s;
}

void weld__target_free(weld_target *t)
{
	free(t->path);
	free(t->parent);
	free(t->name);
	*t = (weld_target)WELD_TARGET_INIT;
}

weld_status weld__target_check(const weld_target *t, bool force, weld_error *err)
{
	struct stat sb;
	if (lstat(t->path, &sb) != 0)
		return errno == ENOENT ? WELD_OK : weld__fail(err, WELD_ERR_IO, "%s: %s", t->path, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: exists and is not a folder", t->path);
	if (force)
		return WELD_OK;
	char **names;
	size_t n;
	weld_status s = weld__list_dir(t->path, &names, &n, err);
	const char *shown = n ? names[0] : NULL;
	for (size_t i = 0; !s && i < n; i++)
		if (weld_is_weight_file(names[i])) {
			shown = names[i];
			break;
		}
	if (!s && shown)
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: already holds %s; use --force to replace it", t->path, shown);
	weld__free_strings(names, n);
	return s;
}

/* Temporary files a killed run of an older weld left inside the target. */
static void remove_temp_files(const weld_target *t)
{
	char **names;
	size_t n;
	if (weld__list_dir(t->path, &names, &n, NULL) != WELD_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		char *p = weld__is_temp_name(names[i]) ? weld__path_join(t->path, names[i]) : NULL;
		if (p)
			unlink(p);
		free(p);
	}
	weld__free_strings(names, n);
}

/* The output a two-step publish moved aside to OLD (NAME in T's parent) goes back: the new one never arrived. */
static weld_status put_back(const weld_target *t, const char *old, const char *name, char *notice, size_t notice_len,
			    weld_error *err)
{
	if (rename(old, t->path) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot put back the output in %s: %s", t->path, name, strerror(errno));
	snprintf(notice, notice_len, "put back the output an interrupted conversion had moved aside (%s)", name);
	return weld__fsync_dir(t->parent, err);
}

/* Whether PATH is a folder itself (not a link to one). */
static bool is_real_dir(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

weld_status weld__target_repair(const weld_target *t, char *notice, size_t notice_len, weld_error *err)
{
	char **names;
	size_t n;
	if (notice_len)
		notice[0] = '\0';
	weld_status s = weld__list_dir(t->parent, &names, &n, err);
	for (size_t i = 0; !s && i < n; i++) {
		bool stage = is_beside(names[i], t, WELD_STAGE_MARK), old = is_beside(names[i], t, WELD_OLD_MARK);
		char *p = stage || old ? weld__path_join(t->parent, names[i]) : NULL;
		if ((stage || old) && !p)
			s = weld__nomem(err);
		else if (p && !is_real_dir(p))
			; /* not a folder weld made */
		else if (old && !weld__is_dir(t->path))
			s = put_back(t, p, names[i], notice, notice_len, err);
		else if (p)
			weld__remove_tree(p);
		free(p);
	}
	weld__free_strings(names, n);
	if (!s && weld__is_dir(t->path))
		remove_temp_files(t);
	return s;
}

/* The first entry of DIR that is a leftover of T (beside: in T's parent; else inside T), joined to DIR. */
static char *first_leftover(const char *dir, const weld_target *t, bool beside)
{
	char **names, *found = NULL;
	size_t n;
	if (weld__list_dir(dir, &names, &n, NULL) != WELD_OK)
		return NULL;
	for (size_t i = 0; i < n && !found; i++) {
		bool ours = beside ? is_beside(names[i], t, WELD_STAGE_MARK) || is_beside(names[i], t, WELD_OLD_MARK)
				   : weld__is_temp_name(names[i]);
		char *p = ours ? weld__path_join(dir, names[i]) : NULL;
		if (p && beside && !is_real_dir(p)) {
			free(p);
			p = NULL;
		}
		found = p;
	}
	weld__free_strings(names, n);
	return found;
}

weld_status weld__target_unfinished(const char *dir, bool *running, weld_error *err)
{
	weld_target t;
	*running = false;
	weld_status s = name_target(&t, dir, err);
	if (s)
		return s;
	/* No conversion writes inside the target any more: a temporary file there is always a leftover. */
	char *found = first_leftover(t.path, &t, false);
	if (!found && (found = first_leftover(t.parent, &t, true)) && (*running = weld__lock_busy(t.parent, t.name))) {
		free(found);
		found = NULL;
	}
	if (found)
		s = weld__fail(err, WELD_ERR_MISMATCH,
			       "%s: left by an interrupted conversion; the next conversion into %s removes it", found, t.name);
	free(found);
	weld__target_free(&t);
	return s;
}
