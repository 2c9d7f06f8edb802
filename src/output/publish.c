/* Staging an output folder and publishing it whole (publish.h). */
#define _GNU_SOURCE /* renameat2 */
#include "output/publish.h"

#include "output/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

weld_status weld__stage_create(const weld_target *t, char **stage, weld_error *err)
{
	*stage = weld__target_beside(t, WELD_STAGE_MARK);
	if (!*stage)
		return weld__nomem(err);
	if (mkdir(*stage, 0755) == 0)
		return WELD_OK;
	weld_status s = weld__fail(err, WELD_ERR_IO, "%s: cannot create the staging folder: %s", *stage, strerror(errno));
	free(*stage);
	*stage = NULL;
	return s;
}

void weld__stage_discard(const char *stage)
{
	if (stage)
		weld__remove_tree(stage);
}

/*
 * The two-step publish: T aside to *OLD, STAGE in. When the second step
 * fails, T goes back (or, if even that fails, the next run puts it back).
 */
static weld_status publish_two_step(const weld_target *t, const char *stage, char **old, weld_error *err)
{
	if (!(*old = weld__target_beside(t, WELD_OLD_MARK)))
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

/* STAGE into T, which must be missing or empty: rename(2) fails rather than replace a folder with files in it. */
static weld_status publish_new(const weld_target *t, const char *stage, weld_error *err)
{
	if (rename(stage, t->path) == 0)
		return WELD_OK;
	if (errno == ENOTEMPTY || errno == EEXIST)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: files appeared in it during the conversion; use --force to replace it", t->path);
	return weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", t->path, strerror(errno));
}

weld_status weld__stage_publish(const weld_target *t, const char *stage, bool replace, char *notice,
				size_t notice_len, weld_error *err)
{
	char *old = NULL, note[PATH_MAX + 128];
	const char *gone = NULL; /* where the old output is once the new one is in place */
	notice[0] = '\0';
	weld_status s = weld__fsync_dir(stage, err);
	if (s)
		return s;
	if (!replace || !weld__is_dir(t->path)) {
		s = publish_new(t, stage, err);
	} else if (renameat2(AT_FDCWD, stage, AT_FDCWD, t->path, RENAME_EXCHANGE) == 0) {
		gone = stage;
	} else if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
		return weld__fail(err, WELD_ERR_IO, "%s: cannot swap in the new output: %s", t->path, strerror(errno));
	} else {
		snprintf(note, sizeof(note), "%s: the filesystem cannot swap folders; replaced the output in two steps",
			 t->path);
		weld__append_note(notice, notice_len, note);
		s = publish_two_step(t, stage, &old, err);
		/* Under the staging name the old contents are only ever removed, never put back half-removed. */
		gone = !s && rename(old, stage) == 0 ? stage : old;
	}
	if (!s)
		s = weld__fsync_dir(t->parent, err);
	if (!s && gone && !weld__remove_tree(gone)) {
		snprintf(note, sizeof(note), "the old output could not be removed from %s; the next run into %s removes it",
			 gone, t->name);
		weld__append_note(notice, notice_len, note);
	}
	free(old);
	return s;
}
