/* Staging an output folder and publishing it whole (publish.h). */
#define _GNU_SOURCE /* renameat2 */
#include "output/publish.h"

#include "output/atomic.h"
#include "output/folder.h"
#include "output/lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGE_MARK ".weld-stage-"
#define OLD_MARK ".weld-old-"

/* "PARENT/.NAME<MARK><PID>", malloc'd. */
static char *beside(const weld_target *t, const char *mark)
{
	int n = snprintf(NULL, 0, "%s/.%s%s%ld", t->parent, t->name, mark, (long)getpid());
	char *p = n < 0 ? NULL : malloc((size_t)n + 1);
	if (p)
		snprintf(p, (size_t)n + 1, "%s/.%s%s%ld", t->parent, t->name, mark, (long)getpid());
	return p;
}

/* Whether ENTRY (a name in T's parent) is ".NAME<MARK>..." for T. */
static bool is_beside(const char *entry, const char *name, const char *mark)
{
	size_t n = strlen(name), m = strlen(mark);
	return entry[0] == '.' && strncmp(entry + 1, name, n) == 0 && strncmp(entry + 1 + n, mark, m) == 0;
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

/* PATH split at its last '/' into T's parent and name. */
static weld_status split(weld_target *t, const char *path, weld_error *err)
{
	const char *slash = strrchr(path, '/');
	t->name = weld__strdup(slash ? slash + 1 : path);
	t->parent = slash ? weld__strndup(path, slash == path ? 1 : (size_t)(slash - path)) : weld__strdup(".");
	return t->name && t->parent ? WELD_OK : weld__nomem(err);
}

weld_status weld__target_open(weld_target *t, const char *dir, weld_error *err)
{
	*t = (weld_target)WELD_TARGET_INIT;
	size_t n = dir ? strlen(dir) : 0;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 0)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "empty output folder name");
	if (!(t->path = weld__strndup(dir, n)))
		return weld__nomem(err);
	weld_status s = split(t, t->path, err);
	if (!s && (strcmp(t->name, ".") == 0 || strcmp(t->name, "..") == 0 || strcmp(t->path, "/") == 0)) {
		/* Name the folder itself, so that its staging can sit beside it. */
		char real[PATH_MAX];
		if (!realpath(t->path, real))
			s = weld__fail(err, WELD_ERR_IO, "%s: %s", t->path, strerror(errno));
		else if (strcmp(real, "/") == 0)
			s = weld__fail(err, WELD_ERR_INVALID_ARG, "/: cannot be an output folder");
		free(t->name);
		free(t->parent);
		t->name = t->parent = NULL;
		if (!s)
			s = split(t, real, err);
	}
	if (!s)
		s = make_dirs(t->parent, err);
	if (s)
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

/*
 * Remove PATH, and what is in it when it is a folder; symlinks are removed,
 * never followed. false when some of it stays.
 */
static bool remove_tree(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return errno == ENOENT;
	if (!S_ISDIR(sb.st_mode))
		return unlink(path) == 0;
	char **names;
	size_t n;
	if (weld__list_dir(path, &names, &n, NULL) != WELD_OK)
		return false;
	bool all = true;
	for (size_t i = 0; i < n; i++) {
		char *child = weld__path_join(path, names[i]);
		all = child && remove_tree(child) && all;
		free(child);
	}
	weld__free_strings(names, n);
	return all && rmdir(path) == 0;
}

void weld__stage_discard(const char *stage)
{
	if (stage)
		remove_tree(stage);
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

weld_status weld__target_repair(const weld_target *t, char *notice, size_t notice_len, weld_error *err)
{
	char **names;
	size_t n;
	if (notice_len)
		notice[0] = '\0';
	weld_status s = weld__list_dir(t->parent, &names, &n, err);
	for (size_t i = 0; !s && i < n; i++) {
		bool stage = is_beside(names[i], t->name, STAGE_MARK), old = is_beside(names[i], t->name, OLD_MARK);
		char *p = stage || old ? weld__path_join(t->parent, names[i]) : NULL;
		if ((stage || old) && !p)
			s = weld__nomem(err);
		else if (old && !weld__is_dir(t->path))
			s = put_back(t, p, names[i], notice, notice_len, err);
		else if (stage || old)
			remove_tree(p);
		free(p);
	}
	weld__free_strings(names, n);
	if (!s && weld__is_dir(t->path))
		remove_temp_files(t);
	return s;
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

weld_status weld__stage_create(const weld_target *t, char **stage, weld_error *err)
{
	*stage = beside(t, STAGE_MARK);
	if (!*stage)
		return weld__nomem(err);
	if (mkdir(*stage, 0755) == 0)
		return WELD_OK;
	weld_status s = weld__fail(err, WELD_ERR_IO, "%s: cannot create the staging folder: %s", *stage, strerror(errno));
	free(*stage);
	*stage = NULL;
	return s;
}

/*
 * The two-step publish: T aside to *OLD, STAGE in. When the second step
 * fails, T goes back (or, if even that fails, the next run puts it back).
 */
static weld_status publish_two_step(const weld_target *t, const char *stage, char **old, weld_error *err)
{
	if (!(*old = beside(t, OLD_MARK)))
		return weld__nomem(err);
	if (rename(t->path, *old) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot move aside: %s", t->path, strerror(errno));
	if (rename(stage, t->path) == 0)
		return WELD_OK;
	weld_status s = weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", t->path, strerror(errno));
	if (rename(*old, t->path) != 0)
		weld__prefix(err, "%s stays in %s until the next run puts it back", t->path, *old);
	return s;
}

static void add_note(char *notice, size_t cap, const char *note)
{
	size_t used = strlen(notice);
	snprintf(notice + used, cap - used, "%s%s", used ? "; " : "", note);
}

weld_status weld__stage_publish(const weld_target *t, const char *stage, char *notice, size_t notice_len,
				weld_error *err)
{
	char *old = NULL, note[PATH_MAX + 128];
	const char *gone = NULL; /* where the old output is once the new one is in place */
	notice[0] = '\0';
	weld_status s = weld__fsync_dir(stage, err);
	if (s)
		return s;
	if (!weld__is_dir(t->path)) {
		if (rename(stage, t->path) != 0)
			return weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", t->path, strerror(errno));
	} else if (renameat2(AT_FDCWD, stage, AT_FDCWD, t->path, RENAME_EXCHANGE) == 0) {
		gone = stage;
	} else if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
		return weld__fail(err, WELD_ERR_IO, "%s: cannot swap in the new output: %s", t->path, strerror(errno));
	} else {
		snprintf(note, sizeof(note), "%s: the filesystem cannot swap folders; replaced the output in two steps",
			 t->path);
		add_note(notice, notice_len, note);
		s = publish_two_step(t, stage, &old, err);
		gone = old;
	}
	if (!s)
		s = weld__fsync_dir(t->parent, err);
	if (!s && gone && !remove_tree(gone)) {
		snprintf(note, sizeof(note), "the old output could not be removed from %s; the next run into %s removes it",
			 gone, t->name);
		add_note(notice, notice_len, note);
	}
	free(old);
	return s;
}

/* The first of NAMES in DIR that IS_LEFTOVER(name, T) accepts, joined to DIR; NULL when none (or no memory). */
static char *first_leftover(const char *dir, const weld_target *t, bool (*is_leftover)(const char *, const weld_target *))
{
	char **names, *found = NULL;
	size_t n;
	if (weld__list_dir(dir, &names, &n, NULL) != WELD_OK)
		return NULL;
	for (size_t i = 0; i < n && !found; i++)
		if (is_leftover(names[i], t))
			found = weld__path_join(dir, names[i]);
	weld__free_strings(names, n);
	return found;
}

static bool beside_leftover(const char *entry, const weld_target *t)
{
	return is_beside(entry, t->name, STAGE_MARK) || is_beside(entry, t->name, OLD_MARK);
}

static bool inside_leftover(const char *entry, const weld_target *t)
{
	(void)t;
	return weld__is_temp_name(entry);
}

weld_status weld__target_unfinished(const char *dir, bool *running, weld_error *err)
{
	weld_target t = WELD_TARGET_INIT;
	*running = false;
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	char *path = weld__strndup(dir, len);
	weld_status s = path ? split(&t, path, err) : weld__nomem(err);
	free(path);
	/* No conversion writes inside the target any more: a temporary file there is always a leftover. */
	char *found = s ? NULL : first_leftover(dir, &t, inside_leftover);
	if (!s && !found && (found = first_leftover(t.parent, &t, beside_leftover)) &&
	    (*running = weld__lock_busy(t.parent, t.name))) {
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
