/*
 * The output folder appears whole or not at all. Everything is written into
 * a staging folder beside the target (target.h; same filesystem), fsynced,
 * and published in one step: a new target by rename(2); an existing one
 * replaced (--force) by renameat2(RENAME_EXCHANGE), after which the old
 * contents, now in the staging folder, are removed. Nothing of the old
 * output is touched before the new one is complete.
 *
 * Where the filesystem has no RENAME_EXCHANGE, a replacement takes two
 * renames: the old target aside (".NAME.weld-old-PID"), then the staging
 * folder in. A run killed between them leaves no target; the next run on it
 * (which holds its lock, lock.h) finds the old folder and puts it back
 * before anything else (weld__target_repair).
 */
#ifndef WELD_OUTPUT_PUBLISH_H
#define WELD_OUTPUT_PUBLISH_H

#include "output/target.h"

/* A new, empty staging folder for T; *STAGE is its path (malloc'd). */
weld_status weld__stage_create(const weld_target *t, char **stage, weld_error *err);
/* STAGE and everything in it, removed (a failed run's). */
void weld__stage_discard(const char *stage);
/*
 * STAGE (every file in it fsynced) becomes T: the folder is fsynced, put in
 * place whole, and T's parent fsynced. REPLACE: an existing T is swapped out
 * and its contents removed; without it, T must still be missing or empty, as
 * it was checked to be (files that appeared in it meanwhile are an error, not
 * lost). NOTICE: when the two-step way was taken, or the old contents could
 * not all be removed.
 */
weld_status weld__stage_publish(const weld_target *t, const char *stage, bool replace, char *notice,
				size_t notice_len, weld_error *err);

#endif /* WELD_OUTPUT_PUBLISH_H */
