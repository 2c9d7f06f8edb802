/*
 * The output folder appears whole or not at all. Everything is written into
 * a staging folder beside the target (".NAME.weld-stage-PID", on the same
 * filesystem), fsynced, and published in one step: a new target by
 * rename(2); an existing one by renameat2(RENAME_EXCHANGE), after which the
 * old contents, now in the staging folder, are removed. Nothing of the old
 * output is touched before the new one is complete.
 *
 * Where the filesystem has no RENAME_EXCHANGE, publish takes two renames:
 * the old target aside (".NAME.weld-old-PID"), then the staging folder in.
 * A run killed between them leaves no target; the next run on it (which
 * holds its lock, output/lock.h) finds the old folder and puts it back
 * before anything else.
 */
#ifndef WELD_OUTPUT_PUBLISH_H
#define WELD_OUTPUT_PUBLISH_H

#include "util/util.h"

typedef struct weld_target {
	char *path;   /* the output folder, trailing '/' cut */
	char *parent; /* the folder it is in, created when missing */
	char *name;
} weld_target;

#define WELD_TARGET_INIT {0}

/*
 * The output folder DIR: its parent (created with its missing ancestors,
 * each made durable) and name. "." and ".." are resolved.
 */
weld_status weld__target_open(weld_target *t, const char *dir, weld_error *err);
void weld__target_free(weld_target *t);

/*
 * Under the target's lock: put back an old output that a killed two-step
 * publish left aside, and remove leftover staging folders and temporary
 * files. NOTICE says what was done (empty when nothing).
 */
weld_status weld__target_repair(const weld_target *t, char *notice, size_t notice_len, weld_error *err);

/*
 * Whether T may be replaced: it does not exist, is an empty folder, or
 * FORCE. Else WELD_ERR_INVALID_ARG "<dir>: already holds <name>; use --force
 * to replace it" (a weight file when there is one).
 */
weld_status weld__target_check(const weld_target *t, bool force, weld_error *err);

/* A new, empty staging folder for T; *STAGE is its path (malloc'd). */
weld_status weld__stage_create(const weld_target *t, char **stage, weld_error *err);
/* STAGE and everything in it, removed (a failed run's, or the old contents after publish). */
void weld__stage_discard(const char *stage);
/*
 * STAGE (every file in it fsynced) becomes T: the folder is fsynced,
 * swapped in whole, the old contents removed, and T's parent fsynced.
 * NOTICE: when the two-step way was taken.
 */
weld_status weld__stage_publish(const weld_target *t, const char *stage, char *notice, size_t notice_len,
				weld_error *err);

/*
 * WELD_OK when nothing of an interrupted conversion into DIR is there: no
 * temporary file in it, and no staging or set-aside folder beside it unless
 * a conversion holding DIR's lock still runs (*RUNNING then). Else
 * WELD_ERR_MISMATCH naming the first such path.
 */
weld_status weld__target_unfinished(const char *dir, bool *running, weld_error *err);

#endif /* WELD_OUTPUT_PUBLISH_H */
