/*
 * The output folder a conversion replaces, and what stands beside it: its
 * staging folder ".NAME.weld-stage-PID", where the new output is built (see
 * publish.h), and ".NAME.weld-old-PID", where a two-step publish moves the
 * old output for a moment. Under the folder's lock (lock.h) these are ours:
 * an interrupted run's are repaired before anything else, and until then
 * verify reports them.
 */
#ifndef WELD_OUTPUT_TARGET_H
#define WELD_OUTPUT_TARGET_H

#include "util/util.h"

#define WELD_STAGE_MARK ".weld-stage-"
#define WELD_OLD_MARK ".weld-old-"

typedef struct weld_target {
	char *path;   /* the output folder: trailing '/' cut; ".", ".." and a link to a folder resolved */
	char *parent; /* the folder it is in */
	char *name;
} weld_target;

#define WELD_TARGET_INIT {0}

/* The output folder DIR, named; its parent created with its missing ancestors, each made durable. */
weld_status weld__target_open(weld_target *t, const char *dir, weld_error *err);
void weld__target_free(weld_target *t);

/* "PARENT/.NAME<MARK><PID>" for this process, malloc'd (NULL when out of memory). */
char *weld__target_beside(const weld_target *t, const char *mark);

/*
 * Whether T may be replaced: it does not exist, is an empty folder, or
 * FORCE. Else WELD_ERR_INVALID_ARG "<dir>: already holds <name>; use --force
 * to replace it" (a weight file when there is one).
 */
weld_status weld__target_check(const weld_target *t, bool force, weld_error *err);

/*
 * Under T's lock: put back an old output that a killed two-step publish left
 * aside, and remove leftover staging folders and temporary files. NOTICE
 * says what was put back (empty when nothing).
 */
weld_status weld__target_repair(const weld_target *t, char *notice, size_t notice_len, weld_error *err);

/*
 * WELD_OK when nothing of an interrupted conversion into DIR is there: no
 * temporary file in it, and no staging or set-aside folder beside it unless
 * a conversion holding DIR's lock still runs (*RUNNING then). Else
 * WELD_ERR_MISMATCH naming the first such path.
 */
weld_status weld__target_unfinished(const char *dir, bool *running, weld_error *err);

#endif /* WELD_OUTPUT_TARGET_H */
