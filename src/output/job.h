/*
 * The shared staging folder of a multi-part conversion (pipeline/parts.h):
 * ".NAME.weld-parts" beside the target, named from the target alone so that
 * every part, on any node, finds the same one. It holds
 *   job.json          what the job is (input, options, part count, layout);
 *                     made whole by link(2) from a draft, so the first
 *                     part's stands and later parts compare theirs with it
 *   the weights files under their final names, created at their full size
 *                     by every part alike (idempotent) and filled by pwrite
 *   part-I            part I's record (its pieces' CRC-32s and sizes),
 *                     written atomically once its bytes are flushed: its
 *                     presence is the part's done marker
 *   publish.claim     created with O_EXCL by the part that found every
 *                     record there: only that one publishes
 * The output is published from it (linked into an ordinary staging folder,
 * see publish.h) once every part is recorded; then the folder is renamed
 * aside and removed (weld__job_remove), so job.json never goes first.
 * Nothing here is removed by weld__target_repair: parts of a job run, and
 * fail, at different times.
 */
#ifndef WELD_OUTPUT_JOB_H
#define WELD_OUTPUT_JOB_H

#include "output/target.h"

#define WELD_JOB_MARK ".weld-parts"
#define WELD_JOB_FILE "job.json"
#define WELD_JOB_CLAIM "publish.claim"
/* A part record is small: its pieces, a few per tensor and source record. */
#define WELD_JOB_PART_MAX ((uint64_t)1 << 30)

/* "PARENT/.NAME.weld-parts" for T, malloc'd (NULL when out of memory). */
char *weld__job_dir(const weld_target *t);

/*
 * Whether the job STORED is OURS (both job.json texts): only what
 * identifies a job is compared. When it is not, WHY (CAP bytes, "" on
 * entry) may say how, else the caller's message is a generic one.
 */
typedef bool (*weld_job_same)(const char *stored, const char *ours, char *why, size_t cap);

/*
 * Join the job in DIR described by TEXT (TEXT_LEN bytes): DIR and its
 * job.json made when missing, else job.json must be SAME's. Another job's
 * folder, or one with entries but no job.json (a cleanup cut short):
 * WELD_ERR_INVALID_ARG naming it, unless DISCARD, which removes it first
 * (*DISCARDED then).
 */
weld_status weld__job_join(const char *dir, const char *text, size_t text_len, weld_job_same same, bool discard,
			   bool *discarded, weld_error *err);

/* DIR removed: renamed aside first, so that job.json never goes before the records; false when it stays. */
bool weld__job_remove(const char *dir);

/*
 * DIR/NAME opened for writing and sized to SIZE; *FD, *PATH (malloc'd) for
 * it. CREATE: made when missing (a part writing); else (the publish) it must
 * be there at SIZE bytes.
 */
weld_status weld__job_file(const char *dir, const char *name, uint64_t size, bool create, int *fd, char **path,
			   weld_error *err);

/* Part PART's record TEXT, atomically: it appears whole or not at all. */
weld_status weld__job_record(const char *dir, unsigned part, const char *text, size_t len, weld_error *err);

/* "part-I": the record's name (BUF of at least 24 bytes). */
void weld__job_part_name(char *buf, size_t cap, unsigned part);

/* Whether part PART's record is in DIR. */
bool weld__job_recorded(const char *dir, unsigned part);

/* The parts of PARTS not recorded, as "1, 4" into BUF; their count. */
unsigned weld__job_missing(const char *dir, unsigned parts, char *buf, size_t cap);

/* Whether this process won the right to publish (O_EXCL on publish.claim); false when another has it. */
bool weld__job_claim(const char *dir, weld_error *err, weld_status *s);

#endif /* WELD_OUTPUT_JOB_H */
