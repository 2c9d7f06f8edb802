/*
 * One conversion at a time into an output folder. The lock is a file beside
 * the target, ".NAME.weld-lock", holding the holder's host, PID, process
 * start time and the time it was taken. It is written whole under a draft
 * name and link(2)ed into place, which fails while another holds it (atomic
 * across hosts on local filesystems, NFS, Lustre and GPFS alike); flock on
 * it, where the filesystem has it, tells a running holder on this host from
 * a dead one at once. A lock whose holder is a process of this host that no
 * longer runs is taken over with a notice; one from another host only with
 * FORCE.
 */
#ifndef WELD_OUTPUT_LOCK_H
#define WELD_OUTPUT_LOCK_H

#include "util/util.h"

typedef struct weld_lock {
	int fd; /* -1 when not held */
	char *path;
} weld_lock;

#define WELD_LOCK_INIT {.fd = -1}

/*
 * Take the lock of output folder NAME in folder PARENT. Held by a running
 * process: WELD_ERR_INVALID_ARG naming its host, PID and start. NOTICE (may
 * be empty) says when a stale lock was taken over.
 */
weld_status weld__lock_take(weld_lock *l, const char *parent, const char *name, bool force, char *notice,
			    size_t notice_len, weld_error *err);
/* Release a held lock (nothing on WELD_LOCK_INIT). */
void weld__lock_release(weld_lock *l);

/* Whether the lock of NAME in PARENT is held by a process that still runs, as far as this host can tell. */
bool weld__lock_busy(const char *parent, const char *name);

#endif /* WELD_OUTPUT_LOCK_H */
