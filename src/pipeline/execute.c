/*
 * Chunked, multi-threaded execution of a plan.
 *
 * Up front, the output tensors (in file order) are cut into pieces of at
 * most one chunk, small tensors batched together; each piece is cut where
 * its fragments change into segments. Workers take chunks in order: pread
 * the segments' source bytes into a staging buffer, let the backend gather,
 * cast and checksum them, and pwrite the pieces. Per-piece CRCs combine into
 * tensor CRCs afterwards with crc32_combine, so nothing is read back. The
 * calling thread sleeps on a condition variable, waking to report progress.
 */
#include "pipeline/execute.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the calling thread reports progress. */
#define PROGRESS_NS (100 * 1000 * 1000L)

/* Elements [elem_begin, elem_end) of one tensor, written from one chunk's output buffer. */
typedef struct piece {
	size_t tensor;
	uint64_t elem_begin, elem_end;
	size_t seg_first, seg_count;
	size_t out_off; /* within its chunk's output buffer */
} piece;

/* Where segment i's source bytes come from (the backend sees only the staging buffer). */
typedef struct seg_source {
	uint64_t offset;
	uint32_t src, record;
	uint32_t crc; /* of the bytes read, when record is set */
} seg_source;

typedef struct chunk {
	size_t piece_first, piece_count;
	size_t out_len, staging_len;
} chunk;

typedef struct exec_state {
	const weld_plan *p;
	weld_backend *b;
	const int *fds;           /* by p->t[i].file */
	const char *const *paths;
	piece *pieces;
	size_t npieces, piece_cap;
	weld_seg *segs;
	seg_source *from;
	size_t nsegs, seg_cap;
	chunk *chunks;
	size_t nchunks;
	uint32_t *piece_crcs;
	size_t max_out, max_staging, max_pieces;
	uint64_t out_total; /* output bytes of the pieces: the plan's, or a part's */

	_Atomic size_t next_chunk;
	_Atomic int stop; /* set on the first error or a cancel */
	_Atomic uint64_t bytes_done, bytes_read, overflows;
	pthread_mutex_t lock; /* guards running, status and err */
	pthread_cond_t changed; /* a worker finished or failed */
	int running;
	weld_status status;
	weld_error err;
} exec_state;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static weld_status new_seg(exec_state *st, weld_seg seg, seg_source from, weld_error *err)
{
	if (st->nsegs == st->seg_cap) {
		size_t cap = st->seg_cap ? st->seg_cap * 2 : 256;
		weld_seg *s = weld__reallocarray(st->segs, cap, sizeof(*s));
		if (s)
			st->segs = s;
		seg_source *f = s ? weld__reallocarray(st->from, cap, sizeof(*f)) : NULL;
		if (!f)
			return weld__nomem(err);
		st->from = f;
		st->seg_cap = cap;
	}
	st->segs[st->nsegs] = seg;
	st->from[st->nsegs++] = from;
	return WELD_OK;
}

/* The segments of elements [B, E) of piece PC, inside fragment F: one per run of F they touch. */
static weld_status add_segments(exec_state *st, const piece *pc, const weld_plan_tensor *t, const weld_frag *f,
				uint64_t b, uint64_t e, weld_error *err)
{
	size_t esz = weld_dtype_size(t->dtype), ssz = weld_dtype_size(t->src_dtype);
	const weld_pattern *pat = f->pattern == WELD_NO_PATTERN ? NULL : &st->p->patterns[f->pattern];
	while (b < e) {
		uint64_t rel = b - f->dst_elem, k = rel / f->count, in = rel % f->count;
		uint64_t n = f->count - in < e - b ? f->count - in : e - b;
		uint64_t from = (pat ? weld__pattern_run_start(pat, k) : 0) + in;
		weld_seg seg = {.out_off = (size_t)((b - pc->elem_begin) * esz), .count = n, .src_dtype = t->src_dtype,
				.dst_dtype = t->dtype};
		weld_status s = new_seg(st, seg, (seg_source){f->src_offset + from * ssz, f->src, f->record, 0}, err);
		if (s)
			return s;
		b += n;
	}
	return WELD_OK;
}

/* The segments of piece PC: where its fragments (from *FI on, in destination order) overlap it. */
static weld_status cut_segments(exec_state *st, piece *pc, const weld_plan_tensor *t, size_t *fi, weld_error *err)
{
	pc->seg_first = st->nsegs;
	while (*fi < t->frag_first + t->frag_count) {
		const weld_frag *f = &st->p->frags[*fi];
		uint64_t fb = f->dst_elem, fe = f->dst_elem + f->count * weld__frag_runs(st->p->patterns, f);
		if (fe <= pc->elem_begin) {
			++*fi;
			continue;
		}
		uint64_t b = fb > pc->elem_begin ? fb : pc->elem_begin;
		uint64_t e = fe < pc->elem_end ? fe : pc->elem_end;
		if (b >= e)
			break;
		weld_status s = add_segments(st, pc, t, f, b, e, err);
		if (s)
			return s;
		if (e < fe)
			break;
		++*fi;
	}
	pc->seg_count = st->nsegs - pc->seg_first;
	return WELD_OK;
}

/* Elements [BEGIN, END) of tensor I in pieces of at most CHUNK_BYTES of output. */
static weld_status cut_tensor(exec_state *st, size_t i, uint64_t begin, uint64_t end, size_t chunk_bytes,
			      weld_error *err)
{
	const weld_plan_tensor *t = &st->p->t[i];
	uint64_t per = chunk_bytes / weld_dtype_size(t->dtype);
	size_t fi = t->frag_first;
	if (per == 0)
		per = 1;
	st->out_total += (end - begin) * weld_dtype_size(t->dtype);
	for (uint64_t e = begin; e < end; e += per) {
		if (st->npieces == st->piece_cap) {
			size_t cap = st->piece_cap ? st->piece_cap * 2 : 256;
			piece *np = weld__reallocarray(st->pieces, cap, sizeof(*np));
			if (!np)
				return weld__nomem(err);
			st->pieces = np;
			st->piece_cap = cap;
		}
		piece *pc = &st->pieces[st->npieces++];
		*pc = (piece){.tensor = i, .elem_begin = e, .elem_end = end - e < per ? end : e + per};
		weld_status s = cut_segments(st, pc, t, &fi, err);
		if (s)
			return s;
	}
	return WELD_OK;
}

/* Consecutive pieces in chunks of up to CHUNK_BYTES of output, each segment 8-byte aligned in staging. */
static weld_status group_chunks(exec_state *st, size_t chunk_bytes, weld_error *err)
{
	st->chunks = weld__calloc(st->npieces ? st->npieces : 1, sizeof(*st->chunks));
	st->piece_crcs = weld__calloc(st->npieces ? st->npieces : 1, sizeof(*st->piece_crcs));
	if (!st->chunks || !st->piece_crcs)
		return weld__nomem(err);
	for (size_t i = 0; i < st->npieces; i++) {
		piece *pc = &st->pieces[i];
		size_t len = (size_t)((pc->elem_end - pc->elem_begin) * weld_dtype_size(st->p->t[pc->tensor].dtype));
		chunk *c = st->nchunks ? &st->chunks[st->nchunks - 1] : NULL;
		if (!c || c->out_len + len > chunk_bytes) {
			c = &st->chunks[st->nchunks++];
			*c = (chunk){.piece_first = i};
		}
		pc->out_off = c->out_len;
		c->out_len += align8(len);
		c->piece_count++;
		for (size_t k = 0; k < pc->seg_count; k++) {
			weld_seg *s = &st->segs[pc->seg_first + k];
			s->out_off += pc->out_off;
			s->staging_off = c->staging_len;
			c->staging_len += align8((size_t)s->count * weld_dtype_size(s->src_dtype));
		}
		st->max_out = c->out_len > st->max_out ? c->out_len : st->max_out;
		st->max_staging = c->staging_len > st->max_staging ? c->staging_len : st->max_staging;
		st->max_pieces = c->piece_count > st->max_pieces ? c->piece_count : st->max_pieces;
	}
	return WELD_OK;
}

static weld_status cut(exec_state *st, const weld_exec_options *opts, weld_error *err)
{
	for (size_t i = 0; i < st->p->nt; i++) {
		uint64_t b = opts->range_begin ? opts->range_begin[i] : 0;
		uint64_t e = opts->range_end ? opts->range_end[i] : st->p->t[i].numel;
		weld_status s = cut_tensor(st, i, b, e > st->p->t[i].numel ? st->p->t[i].numel : e, opts->chunk_bytes, err);
		if (s)
			return s;
	}
	return group_chunks(st, opts->chunk_bytes, err);
}

/* Record the first failure, stop the others, and wake the calling thread. */
static void fail(exec_state *st, weld_status s, const weld_error *e)
{
	pthread_mutex_lock(&st->lock);
	if (!st->status) {
		st->status = s;
		st->err = *e;
	}
	atomic_store(&st->stop, 1);
	pthread_cond_broadcast(&st->changed);
	pthread_mutex_unlock(&st->lock);
}

/* Read chunk C's segments into STAGING, noting the CRC of what belongs to a checked record. */
static weld_status read_chunk(exec_state *st, const chunk *c, uint8_t *staging, weld_error *err)
{
	const piece *pieces = &st->pieces[c->piece_first];
	size_t first = pieces[0].seg_first, last = pieces[c->piece_count - 1].seg_first + pieces[c->piece_count - 1].seg_count;
	uint64_t read = 0;
	for (size_t k = first; k < last; k++) {
		const weld_seg *s = &st->segs[k];
		seg_source *from = &st->from[k];
		size_t n = (size_t)s->count * weld_dtype_size(s->src_dtype);
		weld_status r = weld_file_pread(st->p->src[from->src].file, staging + s->staging_off, n, from->offset, err);
		if (r)
			return r;
		if (from->record != WELD_NO_RECORD)
			from->crc = weld__crc32(0, staging + s->staging_off, n);
		read += n;
	}
	atomic_fetch_add(&st->bytes_read, read);
	return WELD_OK;
}

static weld_status run_chunk(exec_state *st, const chunk *c, uint8_t *staging, uint8_t *out, weld_span *spans,
			     weld_error *err)
{
	const weld_plan *p = st->p;
	const piece *pieces = &st->pieces[c->piece_first];
	weld_status r = read_chunk(st, c, staging, err);
	if (r)
		return r;
	size_t first = pieces[0].seg_first, last = pieces[c->piece_count - 1].seg_first + pieces[c->piece_count - 1].seg_count;
	weld_job job = {.staging = staging, .out = out, .segs = &st->segs[first], .nsegs = last - first,
			.spans = spans, .nspans = c->piece_count};
	for (size_t i = 0; i < c->piece_count; i++) {
		const piece *pc = &pieces[i];
		size_t esz = weld_dtype_size(p->t[pc->tensor].dtype);
		spans[i] = (weld_span){.out_off = pc->out_off, .len = (size_t)((pc->elem_end - pc->elem_begin) * esz)};
	}
	if ((r = weld_backend_convert(st->b, &job, err)))
		return r;
	atomic_fetch_add(&st->overflows, job.fp16_overflows);
	for (size_t i = 0; i < c->piece_count; i++) {
		const piece *pc = &pieces[i];
		const weld_plan_tensor *t = &p->t[pc->tensor];
		uint64_t off = t->offset + pc->elem_begin * weld_dtype_size(t->dtype);
		if ((r = weld_pwrite_all(st->fds[t->file], st->paths[t->file], out + pc->out_off, spans[i].len, off, err)))
			return r;
		st->piece_crcs[c->piece_first + i] = spans[i].crc;
	}
	atomic_fetch_add(&st->bytes_done, c->out_len);
	return WELD_OK;
}

/* A worker buffer: the backend's (pinned, for CUDA) when it offers one, else malloc's. */
static void *buf_alloc(weld_backend *b, size_t n, bool *from_backend)
{
	void *p = weld_backend_alloc_host(b, n ? n : 1);
	*from_backend = p != NULL;
	return p ? p : malloc(n ? n : 1);
}

static void buf_free(weld_backend *b, void *p, bool from_backend)
{
	if (from_backend)
		weld_backend_free_host(b, p);
	else
		free(p);
}

static void *worker(void *arg)
{
	exec_state *st = arg;
	weld_error err = {0};
	bool staging_b, out_b;
	uint8_t *staging = buf_alloc(st->b, st->max_staging, &staging_b);
	uint8_t *out = buf_alloc(st->b, st->max_out, &out_b);
	weld_span *spans = weld__calloc(st->max_pieces ? st->max_pieces : 1, sizeof(*spans));
	if (!staging || !out || !spans)
		fail(st, weld__nomem(&err), &err);
	while (!atomic_load(&st->stop)) {
		size_t i = atomic_fetch_add(&st->next_chunk, 1);
		if (i >= st->nchunks)
			break;
		weld_status s = run_chunk(st, &st->chunks[i], staging, out, spans, &err);
		if (s)
			fail(st, s, &err);
	}
	buf_free(st->b, staging, staging_b);
	buf_free(st->b, out, out_b);
	free(spans);
	pthread_mutex_lock(&st->lock);
	st->running--;
	pthread_cond_broadcast(&st->changed);
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/*
 * Every source record the plan's fragments name gets its zip CRC-32 checked
 * (io/record.h); a part hands its pieces back in RES instead: the record's
 * other pieces are other parts', and the publisher checks them all.
 */
static weld_status check_records(exec_state *st, bool part, weld_exec_result *res, weld_error *err)
{
	weld_record_piece *pc = weld__calloc(st->nsegs ? st->nsegs : 1, sizeof(*pc));
	if (!pc)
		return weld__nomem(err);
	size_t n = 0;
	for (size_t k = 0; k < st->nsegs; k++) {
		const seg_source *f = &st->from[k];
		if (f->record != WELD_NO_RECORD)
			pc[n++] = (weld_record_piece){f->record, f->offset,
						      st->segs[k].count * weld_dtype_size(st->segs[k].src_dtype), f->crc};
	}
	if (part) {
		res->record_pieces = pc;
		res->nrecord_pieces = n;
		return WELD_OK;
	}
	weld_status s = weld_records_check(st->p->records, pc, n, WELD_RECORD_GAP_MAX, err);
	free(pc);
	return s;
}

/* Combine piece CRCs into tensor CRCs. */
static void tensor_crcs(const exec_state *st, uint32_t *crcs)
{
	const weld_plan *p = st->p;
	for (size_t i = 0; i < p->nt; i++)
		crcs[i] = 0;
	for (size_t i = 0; i < st->npieces; i++) {
		const piece *pc = &st->pieces[i];
		uint64_t len = (pc->elem_end - pc->elem_begin) * weld_dtype_size(p->t[pc->tensor].dtype);
		crcs[pc->tensor] = weld__crc32_combine(crcs[pc->tensor], st->piece_crcs[i], len);
	}
}

static bool report(exec_state *st, const weld_exec_options *opts, uint64_t done, double t0)
{
	weld_progress pr = {done, st->out_total, atomic_load(&st->bytes_read), now() - t0, WELD_PHASE_CONVERT};
	return opts->progress && opts->progress(&pr, opts->payload) != 0;
}

/* Sleep until the workers are done, reporting progress and relaying a cancel. */
static void wait_workers(exec_state *st, const weld_exec_options *opts, double t0)
{
	pthread_mutex_lock(&st->lock);
	while (st->running > 0) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += PROGRESS_NS;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		if (pthread_cond_timedwait(&st->changed, &st->lock, &until) != ETIMEDOUT || atomic_load(&st->stop))
			continue;
		pthread_mutex_unlock(&st->lock);
		if (report(st, opts, atomic_load(&st->bytes_done), t0)) {
			weld_error e;
			fail(st, weld__fail(&e, WELD_ERR_CANCELLED, "cancelled"), &e);
		}
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
}

static weld_status run_workers(exec_state *st, const weld_exec_options *opts, double t0, weld_error *err)
{
	int nthreads = opts->threads < 1 ? 1 : opts->threads;
	if ((size_t)nthreads > st->nchunks)
		nthreads = st->nchunks ? (int)st->nchunks : 1;
	pthread_t *tid = weld__calloc((size_t)nthreads, sizeof(*tid));
	if (!tid)
		return weld__nomem(err);
	int started = 0;
	for (; started < nthreads; started++) {
		pthread_mutex_lock(&st->lock);
		st->running++;
		pthread_mutex_unlock(&st->lock);
		if (pthread_create(&tid[started], NULL, worker, st) != 0) {
			weld_error e;
			pthread_mutex_lock(&st->lock);
			st->running--;
			pthread_mutex_unlock(&st->lock);
			fail(st, weld__fail(&e, WELD_ERR_NOMEM, "cannot start worker thread %d", started), &e);
			break;
		}
	}
	wait_workers(st, opts, t0);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	free(tid);
	if (st->status)
		*err = st->err;
	return st->status;
}

static void free_state(exec_state *st)
{
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->changed);
	free(st->pieces);
	free(st->segs);
	free(st->from);
	free(st->chunks);
	free(st->piece_crcs);
	free(st);
}

static uint64_t bytes_read(const weld_plan *p)
{
	uint64_t n = 0;
	for (size_t i = 0; i < p->nsrc; i++)
		n += atomic_load(&p->src[i].file->bytes_read);
	return n;
}

weld_status weld_execute(const weld_plan *p, weld_backend *b, const int *fds, const char *const *paths,
			 const weld_exec_options *opts, weld_exec_result *res, weld_error *err)
{
	memset(res, 0, sizeof(*res));
	exec_state *st = calloc(1, sizeof(*st));
	if (!st)
		return weld__nomem(err);
	st->p = p;
	st->b = b;
	st->fds = fds;
	st->paths = paths;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	/* Progress (and so a cancel) keeps its pace even when the wall clock jumps. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->changed, &ca);
	pthread_condattr_destroy(&ca);
	weld_status s = cut(st, opts, err);
	uint64_t read_before = bytes_read(p);
	double t0 = now();
	/* One report before any data moves, so a pending cancel stops even a tiny run. */
	if (!s && report(st, opts, 0, t0))
		s = weld__fail(err, WELD_ERR_CANCELLED, "cancelled");
	if (!s)
		s = run_workers(st, opts, t0, err);
	if (!s && opts->progress)
		report(st, opts, st->out_total, t0);
	if (!s)
		s = (res->tensor_crcs = weld__calloc(p->nt ? p->nt : 1, sizeof(uint32_t))) ? WELD_OK : weld__nomem(err);
	if (!s) {
		tensor_crcs(st, res->tensor_crcs);
		s = check_records(st, opts->range_begin != NULL, res, err);
	}
	res->bytes_written = st->out_total;
	res->fp16_overflows = atomic_load(&st->overflows);
	res->seconds = now() - t0;
	res->bytes_read = bytes_read(p) - read_before;
	if (s) {
		free(res->tensor_crcs);
		free(res->record_pieces);
		res->tensor_crcs = NULL;
		res->record_pieces = NULL;
	}
	free_state(st);
	return s;
}
