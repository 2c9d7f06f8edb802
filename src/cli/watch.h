/* weld watch's parts: when a checkpoint is complete, and what the watcher asks of the system. */
#ifndef WELD_CLI_WATCH_H
#define WELD_CLI_WATCH_H

#include "cli.h"

#include <stdint.h>

/* ---- watch_ready.c: is a checkpoint complete? ------------------------------- */

typedef enum watch_state {
	WATCH_INCOMPLETE, /* its writer is not done (or never started) */
	WATCH_UNSTABLE,   /* complete but for files whose final size only a second look can tell */
	WATCH_COMPLETE
} watch_state;

typedef struct watch_ready {
	watch_state state;
	const char *why;    /* what showed it complete ("trainer_state.json written"), or what it waits for */
	double done_at;     /* when it became complete: the mtime of what showed it, in seconds since 1970 */
	uint64_t signature; /* of its files' names, sizes and mtimes: a second look compares it */
} watch_ready;

/*
 * Whether checkpoint C of RUN is complete, from what its writer writes last:
 * trainer_state.json in an HF Trainer checkpoint-N, `latest` naming a
 * DeepSpeed tag or a later one, a DCP's .metadata, and for a plain HF folder
 * every shard of its index at the size its header gives (a .bin shard: the
 * same size and mtime as on the previous look, whose signature is PREV; 0
 * when there was none).
 */
watch_ready watch_check(const char *run, const ckpt_entry *c, uint64_t prev);
/* A signature of DIR's files and those one folder down (names, sizes, mtimes); 0 when DIR is gone. */
uint64_t watch_signature(const char *dir);

/* ---- watch_os.c: priority, waiting, --exec, --keep-last ----------------------- */

/* nice 10 and I/O best-effort level 7 for this thread and those it starts; what was set, in BUF. */
const char *watch_lower_priority(char *buf, size_t cap);

/* Wakes the watcher early: inotify where it works; a plain sleep otherwise. */
typedef struct watch_waiter {
	int fd; /* the inotify descriptor, or -1 */
} watch_waiter;
watch_waiter watch_waiter_open(bool use_inotify);
void watch_waiter_close(watch_waiter *w);
/* Watch DIR for files written, moved in or made (idempotent; a folder that is gone is ignored). */
void watch_waiter_add(watch_waiter *w, const char *dir);
/* Watch the folder PATH will appear in, so that --until-file wakes the watcher too. */
void watch_until_folder(watch_waiter *w, const char *path);
/* Up to SECS seconds, less when a watched folder changes or a signal comes. */
void watch_wait(watch_waiter *w, double secs);

/*
 * Run CMD with /bin/sh -c, WELD_OUTPUT=OUT, WELD_CHECKPOINT and WELD_STEP
 * from C in its environment, and wait for it (a signal to the watcher is
 * passed on). Its exit status, or -1 when it could not run or was killed.
 */
int watch_exec(const char *cmd, const char *out, const ckpt_entry *c);
/* STEP looks like a Slurm job step id: digits, a dot, then digits or a name (1234.0, 1234.batch). */
bool watch_step_id_valid(const char *step);
/*
 * true once job step STEP is no longer listed by `squeue -h -s -j JOB`: it
 * ended (or the whole job did, when squeue exits non-zero). squeue missing
 * counts as ended too, after a warning, rather than watching for ever.
 */
bool watch_step_ended(const char *step);

/*
 * --keep-last KEEP: of the OUTDIR/NAME_step_N folders, remove those older
 * than the KEEP newest, each only once it verifies (a folder that does not is
 * reported and kept) and never RUN or a folder holding it. How many were removed.
 */
int watch_keep_last(const char *outdir, const char *name, long keep, const char *run, bool quiet);

#endif
