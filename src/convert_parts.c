/*
 * A conversion run as K parts at once (weld_convert_options.parts): each
 * part plans the whole job (cheap: no tensor data), joins the job's shared
 * folder (output/job.h) under the target's lock, writes its byte ranges of
 * the weights files (pipeline/parts.h) and records their CRC-32s. The part
 * that finds every record there, and wins the O_EXCL claim, publishes:
 * under the lock again it joins the records into tensor CRCs with
 * crc32_combine (nothing is read back), checks the source records every
 * part read pieces of, finishes the weights files, links them into an
 * ordinary staging folder with the side files and weld.json, and publishes
 * that as a whole run does. weld_convert_finish does the same later, from
 * what the job's folder recorded.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "convert_steps.h"
#include "output/job.h"
#include "output/publish.h"
#include "output/shards.h"
#include "pipeline/parts.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long a part waits for the target's lock, which other parts hold for moments at a time. */
#define LOCK_WAIT_MS 60000
#define LOCK_POLL_MS 20

weld_status weld__parts_take(conversion *cv, weld_error *err)
{
	unsigned k = cv->opts.parts, i = cv->opts.part;
	cv->parts = 0;
	/* A dry run shows the whole job's plan; one part is a whole run. */
	if (k <= 1 || cv->opts.dry_run)
		return i == 0 || k > 1 ? WELD_OK
				       : weld__fail(err, WELD_ERR_INVALID_ARG, "part %u of %u does not exist", i, k ? k : 1);
	if (k > WELD_PARTS_MAX)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%u parts: at most %u", k, WELD_PARTS_MAX);
	if (i >= k)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "part %u of %u does not exist (parts count from 0)", i, k);
	cv->parts = k;
	cv->part = i;
	return WELD_OK;
}

/* The layout every part must share: each file's name and size, each tensor's name, dtype, file, offset, size. */
static uint32_t layout_crc(const conversion *cv)
{
	uint32_t crc = 0;
	for (size_t k = 0; k < cv->w->nfiles; k++) {
		crc = weld__crc32(crc, cv->w->files[k].name, strlen(cv->w->files[k].name) + 1);
		crc = weld__crc32(crc, &cv->w->files[k].size, sizeof(cv->w->files[k].size));
	}
	for (size_t i = 0; i < cv->p->nt; i++) {
		const weld_plan_tensor *t = &cv->p->t[i];
		uint64_t v[4] = {(uint64_t)t->dtype, t->file, t->offset, t->nbytes};
		crc = weld__crc32(crc, t->name, strlen(t->name) + 1);
		crc = weld__crc32(crc, v, sizeof(v));
	}
	return crc;
}

/* S, or JSON null. */
static cJSON *string_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* A new job's id: 32 hex digits, random (from the clock and PID where /dev/urandom cannot be read). */
static void new_job_id(char *id, const char *salt)
{
	uint32_t r[4] = {0};
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t v[3] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid()};
		for (int k = 0; k < 4; k++)
			r[k] = weld__crc32(weld__crc32((uint32_t)k, v, sizeof(v)), salt, strlen(salt));
	}
	if (fd >= 0)
		close(fd);
	snprintf(id, 33, "%08x%08x%08x%08x", r[0], r[1], r[2], r[3]);
}

/* The input files as job.json records them: [[resolved path, "size mtime_ns inode"], ...]; NULL out of memory. */
static cJSON *sources(const conversion *cv)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t k = 0; a && k < weld_ckpt_file_count(cv->c); k++) {
		char real[PATH_MAX], st_text[80] = "missing";
		const char *f = weld_ckpt_file(cv->c, k);
		struct stat st;
		if (stat(f, &st) == 0)
			snprintf(st_text, sizeof(st_text), "%llu %lld%09ld %llu", (unsigned long long)st.st_size,
				 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
		cJSON *one = cJSON_CreateArray();
		cJSON_AddItemToArray(one, cJSON_CreateString(realpath(f, real) ? real : f));
		cJSON_AddItemToArray(one, cJSON_CreateString(st_text));
		cJSON_AddItemToArray(a, one);
	}
	return a;
}

/* The first of the input files OURS records that STORED records otherwise (or not at all); NULL when none. */
static const char *changed_source(const cJSON *stored, const cJSON *ours)
{
	const cJSON *o;
	int n = 0;
	cJSON_ArrayForEach(o, ours)
	{
		const cJSON *st = cJSON_GetArrayItem(stored, n++);
		if (!cJSON_Compare(st, o, true))
			return cJSON_GetStringValue(cJSON_GetArrayItem(o, 0));
	}
	return n == cJSON_GetArraySize(stored) ? NULL : "an input file";
}

/*
 * job.json: everything that makes the job (so that --finish can redo its
 * plan, and a part of another job is refused), as one line of JSON. A new
 * job's "id" names it in every part record.
 */
static char *job_text(const conversion *cv)
{
	char real[PATH_MAX], side[PATH_MAX], id[33];
	const weld_convert_options *o = &cv->opts;
	cJSON *j = cJSON_CreateObject(), *globals = cJSON_CreateArray();
	new_job_id(id, cv->output_dir);
	cJSON_AddItemToObject(j, "id", cJSON_CreateString(id));
	cJSON_AddNumberToObject(j, "parts", cv->parts);
	cJSON_AddItemToObject(j, "input", cJSON_CreateString(cv->input));
	cJSON_AddItemToObject(j, "input_path", string_or_null(realpath(cv->input, real) ? real : NULL));
	cJSON_AddNumberToObject(j, "type", o->type);
	cJSON_AddNumberToObject(j, "dtype", o->dtype);
	cJSON_AddBoolToObject(j, "pytorch_bin", o->pytorch_bin);
	cJSON_AddItemToObject(j, "max_shard_size", string_or_null(o->max_shard_size));
	cJSON_AddItemToObject(j, "side_files", string_or_null(o->side_files && realpath(o->side_files, side) ? side : NULL));
	cJSON_AddNumberToObject(j, "cross_check", o->cross_check);
	for (size_t i = 0; i < o->nallow_globals; i++)
		cJSON_AddItemToArray(globals, cJSON_CreateString(o->allow_globals[i]));
	cJSON_AddItemToObject(j, "allow_globals", globals);
	cJSON_AddBoolToObject(j, "replace", o->force || o->replace);
	cJSON_AddNumberToObject(j, "layout", layout_crc(cv));
	cJSON_AddItemToObject(j, "sources", sources(cv));
	char *text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return text;
}

/*
 * TEXT's job without what may differ between its parts: "input" as given
 * (relative to where each part ran), the id (the first part's stands),
 * "replace" (a part rerun with --force is still the job's) and the input
 * files' "sources" (compared on their own, to name a changed one). NULL
 * when it does not parse.
 */
static char *job_identity(const char *text, cJSON **sources_out)
{
	cJSON *j = cJSON_Parse(text);
	*sources_out = cJSON_DetachItemFromObjectCaseSensitive(j, "sources");
	cJSON_DeleteItemFromObjectCaseSensitive(j, "input");
	cJSON_DeleteItemFromObjectCaseSensitive(j, "id");
	cJSON_DeleteItemFromObjectCaseSensitive(j, "replace");
	char *id = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	return id;
}

static bool same_job(const char *stored, const char *ours, char *why, size_t cap)
{
	cJSON *sa, *sb;
	char *a = job_identity(stored, &sa), *b = job_identity(ours, &sb);
	bool same = a && b && strcmp(a, b) == 0;
	const char *changed = same ? changed_source(sa, sb) : NULL;
	if (changed)
		snprintf(why, cap, "%s changed (size, modification time or inode) since other parts of this job read it; "
				   "--force discards their work", changed);
	free(a);
	free(b);
	cJSON_Delete(sa);
	cJSON_Delete(sb);
	return same && !changed;
}

/*
 * The target's lock, waited for: the parts of a job take it in turn, each
 * for a moment (to join, or to publish). Held by another for longer (a
 * whole conversion into the same folder), it is that one's message.
 */
static weld_status lock_waiting(conversion *cv, bool force, weld_error *err)
{
	char note[sizeof(cv->res->notice)];
	weld_status s = WELD_OK;
	for (int waited = 0;; waited += LOCK_POLL_MS) {
		s = weld__lock_take(&cv->lock, cv->target.parent, cv->target.name, force, note, sizeof(note), err);
		if (s != WELD_ERR_INVALID_ARG || waited >= LOCK_WAIT_MS)
			break;
		usleep(LOCK_POLL_MS * 1000);
	}
	if (!s) {
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
		s = weld__target_repair(&cv->target, note, sizeof(note), err);
	}
	if (!s)
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
	return s;
}

/* The id of the job DIR's job.json records, into ID (33 bytes); "" when it has none. */
static void stored_job_id(const char *dir, char *id)
{
	char *path = weld__path_join(dir, WELD_JOB_FILE);
	cJSON *j = NULL;
	weld_error scratch;
	id[0] = '\0';
	if (path && !weld__read_json_file(path, WELD_SIDE_FILE_MAX, &j, &scratch)) {
		const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
		snprintf(id, 33, "%s", v && strlen(v) == 32 ? v : "");
	}
	cJSON_Delete(j);
	free(path);
}

/* Into the job's folder, under the lock: the target may still be replaced, and the folder is this job's. */
static weld_status join(conversion *cv, weld_error *err)
{
	char *text = job_text(cv);
	bool discarded = false;
	weld_status s = text ? lock_waiting(cv, false, err) : weld__nomem(err);
	if (!s)
		s = weld__target_check(&cv->target, cv->opts.force || cv->opts.replace, err);
	if (!s)
		s = weld__job_join(cv->job_dir, text, strlen(text), same_job, cv->opts.force, &discarded, err);
	if (!s)
		stored_job_id(cv->job_dir, cv->job_id);
	if (!s && !cv->job_id[0])
		s = weld__fail(err, WELD_ERR_FORMAT, "%s/%s: names no job id", cv->job_dir, WELD_JOB_FILE);
	if (discarded)
		weld__append_note(cv->res->notice, sizeof(cv->res->notice),
				  "discarded the parts of another multi-part conversion into this folder (--force)");
	weld__lock_release(&cv->lock);
	free(text);
	return s;
}

/* Close the weights files FDS[0..N) (-1: not open), flushed first when FLUSH. */
static weld_status close_files(int *fds, char **paths, size_t n, bool flush, weld_status s, weld_error *err)
{
	for (size_t k = 0; k < n; k++) {
		if (fds[k] >= 0 && flush && !s && fsync(fds[k]) != 0)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", paths[k], strerror(errno));
		if (fds[k] >= 0 && close(fds[k]) != 0 && !s)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", paths[k], strerror(errno));
		free(paths[k]);
	}
	free(fds);
	free(paths);
	return s;
}

/*
 * The job's weights files, opened (CREATE: a part writing, created at full
 * size when missing; else the publish, which needs them there); every part
 * writes the same heads.
 */
static weld_status open_files(conversion *cv, bool create, int **fds, char ***paths, weld_error *err)
{
	size_t n = cv->w->nfiles;
	*fds = weld__calloc(n, sizeof(**fds));
	*paths = weld__calloc(n, sizeof(**paths));
	weld_status s = *fds && *paths ? WELD_OK : weld__nomem(err);
	for (size_t k = 0; *fds && k < n; k++)
		(*fds)[k] = -1;
	char missing[8];
	/* Once any part is recorded the files hold its bytes: one missing then is lost, never made again empty. */
	create = create && weld__job_missing(cv->job_dir, cv->parts, missing, sizeof(missing)) == cv->parts;
	for (size_t k = 0; !s && k < n; k++) {
		s = weld__job_file(cv->job_dir, cv->w->files[k].name, cv->w->files[k].size, create, &(*fds)[k], &(*paths)[k],
				   err);
		if (!s)
			s = cv->w->iface->write_head(cv->w, k, (*fds)[k], (*paths)[k], err);
	}
	return s;
}

/* The record of this part: its tensors' ranges and CRC-32s, and the source record pieces it read. */
static weld_status record_part(conversion *cv, const uint64_t *begin, const uint64_t *end, weld_error *err)
{
	weld_buf b = {0};
	char line[160];
	snprintf(line, sizeof(line), "weld-part %u of %u job %s\nbytes_read %llu\nfp16_overflows %llu\n", cv->part, cv->parts, cv->job_id,
		 (unsigned long long)cv->ex.bytes_read, (unsigned long long)cv->ex.fp16_overflows);
	weld__buf_str(&b, line);
	for (size_t i = 0; i < cv->p->nt; i++) {
		if (begin[i] >= end[i])
			continue;
		snprintf(line, sizeof(line), "t %zu %llu %llu %u\n", i, (unsigned long long)begin[i],
			 (unsigned long long)end[i], (unsigned)cv->ex.tensor_crcs[i]);
		weld__buf_str(&b, line);
	}
	for (size_t k = 0; k < cv->ex.nrecord_pieces;) {
		weld_record_piece r = cv->ex.record_pieces[k++];
		/* Pieces that continue one another (a tensor read chunk by chunk) are one line. */
		for (const weld_record_piece *n; k < cv->ex.nrecord_pieces; k++) {
			n = &cv->ex.record_pieces[k];
			if (n->record != r.record || n->offset != r.offset + r.len)
				break;
			r.crc = weld__crc32_combine(r.crc, n->crc, n->len);
			r.len += n->len;
		}
		snprintf(line, sizeof(line), "r %u %llu %llu %u\n", (unsigned)r.record, (unsigned long long)r.offset,
			 (unsigned long long)r.len, (unsigned)r.crc);
		weld__buf_str(&b, line);
	}
	weld__buf_str(&b, "end\n");
	weld_status s = b.failed ? weld__nomem(err) : weld__job_record(cv->job_dir, cv->part, (char *)b.p, b.len, err);
	free(b.p);
	return s;
}

/* This part's byte ranges, written and flushed, then recorded. */
static weld_status write_part(conversion *cv, weld_error *err)
{
	size_t nt = cv->p->nt ? cv->p->nt : 1;
	uint64_t *begin = weld__calloc(nt, sizeof(*begin)), *end = weld__calloc(nt, sizeof(*end)), to_read;
	int *fds = NULL;
	char **paths = NULL;
	weld_status s = begin && end ? open_files(cv, true, &fds, &paths, err) : weld__nomem(err);
	if (!s) {
		weld__part_ranges(cv->p, cv->parts, cv->part, begin, end, &to_read);
		cv->res->bytes_to_read = to_read;
		weld_exec_options eo = {.threads = cv->res->threads,
					.chunk_bytes = cv->opts.chunk_bytes ? cv->opts.chunk_bytes : (8u << 20),
					.progress = cv->opts.progress,
					.payload = cv->opts.payload,
					.range_begin = begin,
					.range_end = end};
		s = weld_execute(cv->p, cv->b, fds, (const char *const *)paths, &eo, &cv->ex, err);
	}
	if (fds)
		s = close_files(fds, paths, cv->w->nfiles, true, s, err);
	/* Only once its bytes are on disk does the part say it is done. */
	if (!s)
		s = record_part(cv, begin, end, err);
	cv->res->bytes_written = cv->ex.bytes_written;
	cv->res->fp16_overflows = cv->ex.fp16_overflows;
	cv->res->seconds = cv->ex.seconds;
	free(begin);
	free(end);
	return s;
}

/* What the publish gathers from the records. */
typedef struct gathered {
	uint64_t *next; /* per tensor: the element the next piece must start at */
	uint64_t *begin, *end; /* per tensor: the range the part being read must have written (weld__part_ranges) */
	weld_record_piece *pieces;
	size_t npieces, cap;
} gathered;

static bool add_piece(gathered *g, weld_record_piece r)
{
	if (g->npieces == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 256;
		weld_record_piece *p = weld__reallocarray(g->pieces, cap, sizeof(*p));
		if (!p)
			return false;
		g->pieces = p;
		g->cap = cap;
	}
	g->pieces[g->npieces++] = r;
	return true;
}

/* The next whole number of *AT, at most MAX; false when there is none (or it is larger). */
static bool take_u64(char **at, uint64_t max, uint64_t *v)
{
	char *end;
	while (**at == ' ')
		++*at;
	if (**at < '0' || **at > '9')
		return false;
	errno = 0;
	unsigned long long x = strtoull(*at, &end, 10);
	if (errno == ERANGE || x > max)
		return false;
	*v = x;
	*at = end;
	return true;
}

/* One line of a part record ("t ..." or "r ..."), into CV's tensor CRCs and G; false when malformed. */
static bool take_line(conversion *cv, char *line, gathered *g)
{
	uint64_t a, b, c, crc;
	char *at = line + 1;
	if (line[0] == 't' && line[1] == ' ') {
		if (!take_u64(&at, cv->p->nt ? cv->p->nt - 1 : 0, &a) || !cv->p->nt)
			return false;
		const weld_plan_tensor *t = &cv->p->t[a];
		/* Pieces come in part order, each starting where the last ended: together they cover the tensor once. */
		if (!take_u64(&at, t->numel, &b) || b != g->next[a] || b != g->begin[a] || !take_u64(&at, t->numel, &c) ||
		    c <= b || c != g->end[a] ||
		    !take_u64(&at, UINT32_MAX, &crc) || *at)
			return false;
		cv->ex.tensor_crcs[a] = weld__crc32_combine(cv->ex.tensor_crcs[a], (uint32_t)crc,
							    (c - b) * weld_dtype_size(t->dtype));
		g->next[a] = c;
		return true;
	}
	if (line[0] != 'r' || line[1] != ' ' || !cv->c->nrec || !take_u64(&at, cv->c->nrec - 1, &a) ||
	    !take_u64(&at, UINT64_MAX, &b) || !take_u64(&at, UINT64_MAX, &c) || !take_u64(&at, UINT32_MAX, &crc) || *at)
		return false;
	return add_piece(g, (weld_record_piece){(uint32_t)a, b, c, (uint32_t)crc});
}

/* Whether TEXT begins as part PART's record of this job; *OURS: whether it names this job's id. */
static bool record_head(const conversion *cv, const char *text, unsigned part, bool *ours)
{
	unsigned long long i, k;
	char id[33] = "";
	bool ok = sscanf(text, "weld-part %llu of %llu job %32s", &i, &k, id) == 3 && i == part && k == cv->parts;
	*ours = ok && strcmp(id, cv->job_id) == 0;
	return ok;
}

/* Part PART's record into CV and G: this job's, its ranges the part's share (weld__part_ranges). */
static weld_status take_record(conversion *cv, unsigned part, gathered *g, weld_error *err)
{
	char name[24], *text = NULL, *line, *save = NULL;
	size_t len;
	weld__job_part_name(name, sizeof(name), part);
	char *path = weld__path_join(cv->job_dir, name);
	weld_status s = path ? weld__read_small_file(path, WELD_JOB_PART_MAX, &text, &len, err) : weld__nomem(err);
	uint64_t v[4];
	bool ours = false, ok = !s && record_head(cv, text, part, &ours), ended = false;
	if (ok && !ours) {
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: the record of another job (not job %s); run part %u again", path,
			       cv->job_id, part);
		ok = false;
	}
	if (ok)
		weld__part_ranges(cv->p, cv->parts, part, g->begin, g->end, &v[0]);
	for (line = ok ? strtok_r(text, "\n", &save) : NULL; ok && line; line = strtok_r(NULL, "\n", &save)) {
		char *num = strchr(line, ' ');
		if (ended || strncmp(line, "weld-part ", 10) == 0)
			ok = !ended;
		else if (strcmp(line, "end") == 0)
			ended = true;
		else if (strncmp(line, "bytes_read ", 11) == 0 && num)
			ok = take_u64(&num, UINT64_MAX, &v[2]) && !*num;
		else if (strncmp(line, "fp16_overflows ", 15) == 0 && num)
			ok = take_u64(&num, UINT64_MAX, &v[3]) && !*num && weld__add_u64(&cv->ex.fp16_overflows,
										cv->ex.fp16_overflows, v[3]);
		else
			ok = take_line(cv, line, g);
	}
	if (!s && (!ok || !ended))
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: not a part record of this job (malformed or cut short)", path);
	free(text);
	free(path);
	return s;
}

/* Every part's record joined: the tensors' CRC-32s, each tensor covered exactly, and the source records checked. */
static weld_status gather(conversion *cv, weld_error *err)
{
	size_t nt = cv->p->nt ? cv->p->nt : 1;
	gathered g = {.next = weld__calloc(nt, sizeof(uint64_t)),
		      .begin = weld__calloc(nt, sizeof(uint64_t)),
		      .end = weld__calloc(nt, sizeof(uint64_t))};
	cv->ex.tensor_crcs = weld__calloc(nt, sizeof(uint32_t));
	weld_status s = g.next && g.begin && g.end && cv->ex.tensor_crcs ? WELD_OK : weld__nomem(err);
	for (unsigned k = 0; !s && k < cv->parts; k++)
		s = take_record(cv, k, &g, err);
	for (size_t i = 0; !s && i < cv->p->nt; i++)
		if (g.next[i] != cv->p->t[i].numel)
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: the part records do not cover tensor '%s'", cv->job_dir,
				       cv->p->t[i].name);
	if (!s)
		s = weld_records_check(cv->p->records, g.pieces, g.npieces, WELD_RECORD_GAP_MAX, err);
	free(g.next);
	free(g.begin);
	free(g.end);
	free(g.pieces);
	return s;
}

/*
 * The job's weights files finished (what follows the tensors, from their
 * CRCs), flushed, and hard-linked into the staging folder, so that the
 * job's folder stays whole until the publish, and a failure here leaves it
 * for --finish. Never moved: a publish that failed after a move would
 * leave --finish nothing to publish.
 */
static weld_status stage_weights(conversion *cv, weld_error *err)
{
	size_t n = cv->w->nfiles;
	int *fds = NULL;
	char **paths = NULL;
	cv->file_crcs = weld__calloc(n, sizeof(*cv->file_crcs));
	weld_status s = cv->file_crcs ? open_files(cv, false, &fds, &paths, err) : weld__nomem(err);
	for (size_t k = 0; !s && k < n; k++)
		s = cv->w->iface->finish(cv->w, k, cv->p, fds[k], paths[k], cv->ex.tensor_crcs, &cv->file_crcs[k], err);
	for (size_t k = 0; !s && k < n; k++) {
		char *to = weld__path_join(cv->stage, cv->w->files[k].name);
		if (!to)
			s = weld__nomem(err);
		else if (link(paths[k], to) != 0)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot link into %s (a multi-part job needs hard links): %s",
				       paths[k], cv->stage, strerror(errno));
		free(to);
	}
	if (fds)
		s = close_files(fds, paths, n, true, s, err);
	cv->file_crc = cv->file_crcs ? cv->file_crcs[0] : 0;
	if (!s && cv->w->index) {
		s = weld__write_file_atomic(cv->stage, WELD_ST_INDEX_NAME, cv->w->index, cv->w->index_len, err);
		cv->file_crc = weld__crc32(0, cv->w->index, cv->w->index_len);
	}
	return s;
}

/*
 * Publish the job, every part recorded: under the lock, as a whole run
 * publishes. The job's folder goes last, once the output is in place.
 * Another publisher (--finish) may have been first: then there is nothing
 * left to do.
 */
static weld_status publish_job(conversion *cv, weld_error *err)
{
	weld_status s = lock_waiting(cv, cv->finish_force, err);
	if (!s && !weld__is_dir(cv->job_dir)) {
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), "the job was published by another process");
		return WELD_OK;
	}
	if (!s)
		s = gather(cv, err);
	if (!s)
		s = weld__target_check(&cv->target, cv->opts.force || cv->opts.replace, err);
	if (!s)
		s = weld__stage_create(&cv->target, &cv->stage, err);
	if (!s)
		s = stage_weights(cv, err);
	if (!s)
		s = weld__write_side_files(cv, err);
	if (!s)
		s = weld__publish(cv, err);
	if (!s && !weld__job_remove(cv->job_dir))
		weld__append_note(cv->res->notice, sizeof(cv->res->notice),
				  "the job's parts folder could not be removed; remove it by hand");
	if (!s) {
		weld__fill_result(cv);
		cv->res->bytes_written = cv->file_size;
	}
	return s;
}

/* Whether this part's record is in the job's folder, and names this job. */
static bool recorded_here(const conversion *cv)
{
	char name[24], *text = NULL;
	size_t len;
	bool ours = false;
	weld_error scratch;
	weld__job_part_name(name, sizeof(name), cv->part);
	char *path = weld__path_join(cv->job_dir, name);
	if (path && weld__is_file(path) && !weld__read_small_file(path, WELD_JOB_PART_MAX, &text, &len, &scratch))
		record_head(cv, text, cv->part, &ours);
	free(text);
	free(path);
	return ours;
}

weld_status weld__part_run(conversion *cv, weld_error *err)
{
	char missing[256], note[512];
	cv->job_dir = weld__job_dir(&cv->target);
	weld_status s = cv->job_dir ? join(cv, err) : weld__nomem(err);
	/* Recorded already (a rerun): its bytes may be in a published file by now; never written again. */
	if (!s && recorded_here(cv)) {
		snprintf(note, sizeof(note), "part %u was already recorded", cv->part);
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
	} else if (!s) {
		s = write_part(cv, err);
	}
	free(cv->ex.record_pieces);
	cv->ex.record_pieces = NULL;
	free(cv->ex.tensor_crcs);
	cv->ex.tensor_crcs = NULL;
	unsigned left = s ? 0 : weld__job_missing(cv->job_dir, cv->parts, missing, sizeof(missing));
	if (!s && left) {
		snprintf(note, sizeof(note), "part %u of %u recorded; the output is published when part%s %s %s too",
			 cv->part, cv->parts, left > 1 ? "s" : "", missing, left > 1 ? "are" : "is");
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
		return WELD_OK;
	}
	/* Two parts finishing together both see every record; only the one whose O_EXCL create succeeds publishes. */
	if (!s && !weld__job_claim(cv->job_dir, err, &s)) {
		if (!s) {
			snprintf(note, sizeof(note), "part %u of %u recorded; another part publishes the output "
				 "(if it cannot, weld convert --finish --output %s does)", cv->part, cv->parts, cv->output_dir);
			weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
		}
		return s;
	}
	cv->ex = (weld_exec_result){.seconds = cv->ex.seconds};
	return s ? s : publish_job(cv, err);
}

/* KEY of the recorded job J as a whole number up to MAX, into *V; false when it is not one. */
static bool job_number(const cJSON *j, const char *key, double max, unsigned *v)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, key);
	if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > max || n->valuedouble != (unsigned)n->valuedouble)
		return false;
	*v = (unsigned)n->valuedouble;
	return true;
}

/* KEY of J: a string, or null (NULL); false when it is something else. */
static bool job_string(const cJSON *j, const char *key, const char **v)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, key);
	*v = cJSON_GetStringValue(n);
	return *v || cJSON_IsNull(n);
}

/* The job the folder records, as CV's input and options (the strings stay in cv->job). */
static bool take_job(conversion *cv)
{
	const cJSON *j = cv->job, *g, *globals = cJSON_GetObjectItemCaseSensitive(j, "allow_globals");
	unsigned type, dtype, cross, layout_lo;
	weld_convert_options *o = &cv->opts;
	if (!job_number(j, "parts", WELD_PARTS_MAX, &cv->parts) || cv->parts < 2 || !job_string(j, "input", &cv->input) ||
	    !cv->input || !job_string(j, "input_path", &cv->input_path) || !job_number(j, "type", WELD_INPUT_DCP, &type) ||
	    !job_number(j, "dtype", WELD_OUT_KEEP, &dtype) || !job_string(j, "max_shard_size", &o->max_shard_size) ||
	    !job_string(j, "side_files", &o->side_files) || !job_number(j, "cross_check", WELD_CROSS_CHECK_OFF, &cross) ||
	    !job_number(j, "layout", 4294967295.0, &layout_lo) || !cJSON_IsArray(globals))
		return false;
	o->type = (weld_input_type)type;
	o->dtype = (weld_out_dtype)dtype;
	o->cross_check = (weld_cross_check_mode)cross;
	o->pytorch_bin = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "pytorch_bin"));
	o->replace = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "replace"));
	cv->finish_force = o->force;
	o->force = 0;
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
	if (!id || strlen(id) != 32)
		return false;
	memcpy(cv->job_id, id, 33);
	size_t n = (size_t)cJSON_GetArraySize(globals);
	if (!(cv->job_globals = weld__calloc(n ? n : 1, sizeof(*cv->job_globals))))
		return false;
	cJSON_ArrayForEach(g, globals)
	{
		if (!(cv->job_globals[o->nallow_globals++] = cJSON_GetStringValue(g)))
			return false;
	}
	o->allow_globals = cv->job_globals;
	cv->part = cv->parts; /* none of them: this process only publishes */
	return true;
}

/* The job recorded beside the output: read, its plan made again, and every part's record there. */
static weld_status finish_prepare(conversion *cv, weld_error *err)
{
	char *path = NULL, missing[256];
	weld_status s = weld__target_open(&cv->target, cv->output_dir, err);
	if (!s && !(cv->job_dir = weld__job_dir(&cv->target)))
		s = weld__nomem(err);
	if (!s && !weld__is_dir(cv->job_dir))
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: no multi-part conversion into this folder is unfinished",
			       cv->output_dir);
	if (!s && !(path = weld__path_join(cv->job_dir, WELD_JOB_FILE)))
		s = weld__nomem(err);
	if (!s)
		s = weld__read_json_file(path, WELD_SIDE_FILE_MAX, &cv->job, err);
	if (!s && !take_job(cv))
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: not a job weld wrote", path);
	unsigned left = s ? 0 : weld__job_missing(cv->job_dir, cv->parts, missing, sizeof(missing));
	if (left)
		s = weld__fail(err, WELD_ERR_INVALID_ARG,
			       "%s: part%s %s of %u not recorded; run %s again (the same command with --parts %u --part N), "
			       "and the last one publishes",
			       cv->output_dir, left > 1 ? "s" : "", missing, cv->parts, left > 1 ? "them" : "it", cv->parts);
	weld__target_free(&cv->target); /* weld__prepare names it again */
	if (!s)
		s = weld__prepare(cv, err);
	unsigned layout;
	if (!s && (!job_number(cv->job, "layout", 4294967295.0, &layout) || layout != layout_crc(cv)))
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: the input is no longer what the parts converted (%s)", path,
			       cv->input);
	cJSON *ours = s ? NULL : sources(cv);
	const char *changed = s ? NULL : changed_source(cJSON_GetObjectItemCaseSensitive(cv->job, "sources"), ours);
	if (changed)
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: %s changed (size, modification time or inode) since the parts read it",
			       path, changed);
	cJSON_Delete(ours);
	free(path);
	return s;
}

weld_status weld_convert_finish(const char *output_dir, const weld_convert_options *options,
				weld_convert_result *res, weld_error *err)
{
	weld_error scratch;
	weld_convert_result local;
	if (!err)
		err = &scratch;
	if (!res)
		res = &local;
	conversion cv;
	weld_status s = weld__conversion_begin(&cv, NULL, output_dir, options, res, err);
	/* Of the caller's options only how to run; what to convert is the job's. */
	cv.opts.dry_run = 0;
	cv.opts.nallow_globals = 0;
	cv.opts.allow_globals = NULL;
	if (!s)
		s = finish_prepare(&cv, err);
	if (!s)
		weld__fill_planned(&cv);
	if (!s && cv.opts.start)
		cv.opts.start(res, cv.opts.payload);
	if (!s)
		s = publish_job(&cv, err);
	if (cv.c)
		res->bytes_read = weld__total_bytes_read(cv.c) + res->cross_check.bytes_read;
	weld__release(&cv);
	return s;
}
