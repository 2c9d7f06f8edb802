/*
 * Chunked, multi-threaded execution of a plan.
 *
 * Up front, the output tensors (in file order) are cut into pieces of at
 * most one chunk, small tensors batched together; each piece is cut where
 * its fragments change into segments. Workers take chunks in order: pread
 * the segments' source bytes into a staging buffer, let the backend gather,
 * cast and checksum them, and pwrite the pieces. Per-piece CRCs combine into
 * tensor CRCs afterwards with crc32_combine, so nothing is read back.
 */
#include "pipeline/execute.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

typedef struct piece {
	size_t tensor;
	uint64_t elem_begin, elem_end;
	size_t seg_first, seg_count;
	size_t out_off; /* within its chunk's output buffer */
} piece;

typedef struct chunk {
	size_t piece_first, piece_count;
	size_t out_len, staging_len;
} chunk;

typedef struct exec_state {
	const weld_plan *p;
	weld_backend *b;
	int fd;
	const char *path;
	piece *pieces;
	size_t npieces;
	weld_seg *segs;
	size_t nsegs, segcap;
	chunk *chunks;
	size_t nchunks;
	uint32_t *piece_crcs;
	size_t max_out, max_staging;

	_Atomic size_t next_chunk;
	_Atomic int stop;                /* set on the first error or a cancel */
	_Atomic uint64_t bytes_done, bytes_read, overflows;
	pthread_mutex_t lock;            /* guards err */
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

static weld_seg *new_seg(exec_state *st)
{
	if (st->nsegs == st->segcap) {
		size_t cap = st->segcap ? st->segcap * 2 : 256;
		weld_seg *s = weld__reallocarray(st->segs, cap, sizeof(*s));
		if (!s)
			return NULL;
		st->segs = s;
		st->segcap = cap;
	}
	return &st->segs[st->nsegs++];
}

/* Cut the plan into pieces, segments and chunks. */
static weld_status cut(exec_state *st, size_t chunk_bytes, weld_error *err)
{
	const weld_plan *p = st->p;
	/* Pieces: each tensor in slices of at most one chunk of output bytes. */
	size_t cap = 0;
	for (size_t i = 0; i < p->nt; i++) {
		const weld_plan_tensor *t = &p->t[i];
		size_t esz = weld_dtype_size(t->dtype);
		uint64_t per = chunk_bytes / esz ? chunk_bytes / esz : 1;
		size_t fi = t->frag_first;
		for (uint64_t e = 0; e < t->numel; e += per) {
			if (st->npieces == cap) {
				cap = cap ? cap * 2 : 256;
				piece *np = weld__reallocarray(st->pieces, cap, sizeof(*np));
				if (!np)
					return weld__nomem(err);
				st->pieces = np;
			}
			piece *pc = &st->pieces[st->npieces++];
			*pc = (piece){.tensor = i, .elem_begin = e,
				      .elem_end = t->numel - e < per ? t->numel : e + per,
				      .seg_first = st->nsegs};
			/* Fragments are in destination order and tile the tensor. */
			while (fi < t->frag_first + t->frag_count && pc->elem_begin < pc->elem_end) {
				const weld_frag *f = &p->f[fi];
				uint64_t fb = f->dst_elem, fe = f->dst_elem + f->count;
				if (fe <= pc->elem_begin) {
					fi++;
					continue;
				}
				uint64_t b = fb > pc->elem_begin ? fb : pc->elem_begin;
				uint64_t en = fe < pc->elem_end ? fe : pc->elem_end;
				if (b >= en)
					break;
				weld_seg *s = new_seg(st);
				if (!s)
					return weld__nomem(err);
				*s = (weld_seg){.src_offset = f->src_offset + (b - fb) * weld_dtype_size(f->src_dtype),
						.count = en - b,
						.out_off = (size_t)((b - pc->elem_begin) * esz),
						.src = f->src,
						.record = f->record,
						.src_dtype = f->src_dtype,
						.dst_dtype = t->dtype};
				if (en < fe)
					break;
				fi++;
			}
			pc->seg_count = st->nsegs - pc->seg_first;
		}
	}
	/* Chunks: consecutive pieces up to CHUNK_BYTES of output. */
	st->chunks = weld__calloc(st->npieces ? st->npieces : 1, sizeof(*st->chunks));
	st->piece_crcs = weld__calloc(st->npieces ? st->npieces : 1, sizeof(*st->piece_crcs));
	if (!st->chunks || !st->piece_crcs)
		return weld__nomem(err);
	for (size_t i = 0; i < st->npieces; i++) {
		piece *pc = &st->pieces[i];
		size_t esz = weld_dtype_size(p->t[pc->tensor].dtype);
		size_t len = (size_t)((pc->elem_end - pc->elem_begin) * esz);
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
	}
	return WELD_OK;
}

static void fail(exec_state *st, weld_status s, const weld_error *e)
{
	pthread_mutex_lock(&st->lock);
	if (!st->status) {
		st->status = s;
		st->err = *e;
	}
	pthread_mutex_unlock(&st->lock);
	atomic_store(&st->stop, 1);
}

static weld_status run_chunk(exec_state *st, const chunk *c, uint8_t *staging, uint8_t *out, weld_span *spans,
			     weld_error *err)
{
	const weld_plan *p = st->p;
	const piece *pieces = &st->pieces[c->piece_first];
	size_t seg_first = pieces[0].seg_first;
	size_t nsegs = 0;
	uint64_t read = 0;
	for (size_t i = 0; i < c->piece_count; i++)
		nsegs += pieces[i].seg_count;
	for (size_t k = 0; k < nsegs; k++) {
		weld_seg *s = &st->segs[seg_first + k];
		size_t n = (size_t)s->count * weld_dtype_size(s->src_dtype);
		weld_status r = weld_file_pread(p->files[s->src], staging + s->staging_off, n, s->src_offset, err);
		if (r)
			return r;
		if (s->record != WELD_NO_RECORD)
			s->src_crc = weld__crc32(0, staging + s->staging_off, n);
		read += n;
	}
	atomic_fetch_add(&st->bytes_read, read);
	weld_job job = {.staging = staging, .out = out, .segs = &st->segs[seg_first], .nsegs = nsegs,
			.spans = spans, .nspans = c->piece_count};
	for (size_t i = 0; i < c->piece_count; i++) {
		const piece *pc = &pieces[i];
		size_t esz = weld_dtype_size(p->t[pc->tensor].dtype);
		spans[i] = (weld_span){.out_off = pc->out_off, .len = (size_t)((pc->elem_end - pc->elem_begin) * esz)};
	}
	weld_status r = st->b->convert(st->b, &job, err);
	if (r)
		return r;
	atomic_fetch_add(&st->overflows, job.fp16_overflows);
	for (size_t i = 0; i < c->piece_count; i++) {
		const piece *pc = &pieces[i];
		const weld_plan_tensor *t = &p->t[pc->tensor];
		uint64_t off = t->offset + pc->elem_begin * weld_dtype_size(t->dtype);
		if ((r = weld_pwrite_all(st->fd, st->path, out + pc->out_off, spans[i].len, off, err)))
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
	size_t maxp = 1;
	for (size_t i = 0; i < st->nchunks; i++)
		maxp = st->chunks[i].piece_count > maxp ? st->chunks[i].piece_count : maxp;
	weld_span *spans = weld__calloc(maxp, sizeof(*spans));
	if (!staging || !out || !spans) {
		weld__nomem(&err);
		fail(st, WELD_ERR_NOMEM, &err);
	}
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
	return NULL;
}

typedef struct rec_piece {
	uint32_t record;
	uint64_t offset, len;
	uint32_t crc;
} rec_piece;

static int cmp_rec_piece(const void *a, const void *b)
{
	const rec_piece *x = a, *y = b;
	if (x->record != y->record)
		return x->record < y->record ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Padding a record's fragments skip is read only while it stays this small. */
#define MAX_GAP_BYTES (1u << 20)

/*
 * Every source record the plan marked gets its zip CRC-32 checked: the CRCs
 * of the segments read (in source order) joined with those of the gaps
 * between them (padding, read here), then compared with the central
 * directory's.
 */
static weld_status check_records(exec_state *st, weld_error *err)
{
	const weld_plan *p = st->p;
	rec_piece *pc = weld__calloc(st->nsegs ? st->nsegs : 1, sizeof(*pc));
	uint8_t *gap = malloc(MAX_GAP_BYTES);
	size_t n = 0;
	weld_status r = pc && gap ? WELD_OK : weld__nomem(err);
	for (size_t k = 0; !r && k < st->nsegs; k++) {
		const weld_seg *s = &st->segs[k];
		if (s->record != WELD_NO_RECORD)
			pc[n++] = (rec_piece){s->record, s->src_offset, s->count * weld_dtype_size(s->src_dtype), s->src_crc};
	}
	qsort(pc, n, sizeof(*pc), cmp_rec_piece);
	for (size_t i = 0; !r && i < n;) {
		const weld_plan_record *rec = &p->rec[pc[i].record];
		uint64_t at = rec->offset, end = rec->offset + rec->nbytes, gaps = 0;
		uint32_t crc = 0;
		bool whole = true;
		size_t j = i;
		/* Walk this record's pieces and the gaps before, between and after them. */
		for (; !r && whole && j <= n; j++) {
			bool last = j == n || pc[j].record != pc[i].record;
			uint64_t next = last ? end : pc[j].offset;
			if (next < at) {
				whole = false; /* overlapping views: nothing to check */
				break;
			}
			if (next > at) {
				gaps += next - at;
				if (gaps > MAX_GAP_BYTES) {
					whole = false;
					break;
				}
				r = weld_file_pread(p->files[rec->src], gap, (size_t)(next - at), at, err);
				if (!r)
					crc = (uint32_t)crc32_combine64(crc, weld__crc32(0, gap, (size_t)(next - at)),
									(z_off64_t)(next - at));
				at = next;
			}
			if (last)
				break;
			crc = (uint32_t)crc32_combine64(crc, pc[j].crc, (z_off64_t)pc[j].len);
			at += pc[j].len;
		}
		if (!r && whole && crc != rec->crc)
			r = weld__fail(err, WELD_ERR_CHECKSUM,
				       "%s: CRC-32 mismatch in record '%s' (stored 0x%08x, computed 0x%08x)",
				       p->files[rec->src]->path, rec->name, rec->crc, crc);
		uint32_t done = pc[i].record;
		while (i < n && pc[i].record == done)
			i++;
	}
	free(pc);
	free(gap);
	return r;
}

/* Combine piece CRCs into tensor CRCs; check every whole-read source record. */
static weld_status finish(exec_state *st, uint32_t *tensor_crcs, weld_error *err)
{
	const weld_plan *p = st->p;
	for (size_t i = 0; i < p->nt; i++)
		tensor_crcs[i] = (uint32_t)crc32(0L, Z_NULL, 0);
	for (size_t i = 0; i < st->npieces; i++) {
		const piece *pc = &st->pieces[i];
		uint64_t len = (pc->elem_end - pc->elem_begin) * weld_dtype_size(p->t[pc->tensor].dtype);
		tensor_crcs[pc->tensor] =
			(uint32_t)crc32_combine64(tensor_crcs[pc->tensor], st->piece_crcs[i], (z_off64_t)len);
	}
	return p->nrec ? check_records(st, err) : WELD_OK;
}

weld_status weld_execute(const weld_plan *p, weld_backend *b, int fd, const char *path,
			 const weld_exec_options *opts, weld_exec_result *res, weld_error *err)
{
	memset(res, 0, sizeof(*res));
	exec_state *st = calloc(1, sizeof(*st));
	if (!st)
		return weld__nomem(err);
	st->p = p;
	st->b = b;
	st->fd = fd;
	st->path = path;
	pthread_mutex_init(&st->lock, NULL);
	weld_status s = cut(st, opts->chunk_bytes, err);
	uint64_t read_before = 0;
	for (size_t i = 0; i < p->nfiles; i++)
		read_before += atomic_load(&p->files[i]->bytes_read);
	double t0 = now();
	int nthreads = opts->threads < 1 ? 1 : opts->threads;
	if ((size_t)nthreads > st->nchunks)
		nthreads = st->nchunks ? (int)st->nchunks : 1;
	/* One report before any data moves, so a pending cancel stops even a tiny run. */
	if (!s && opts->progress) {
		weld_progress pr = {0, p->out_bytes, 0, 0};
		if (opts->progress(&pr, opts->payload))
			s = weld__fail(err, WELD_ERR_CANCELLED, "cancelled");
	}
	pthread_t *tid = s ? NULL : weld__calloc((size_t)nthreads, sizeof(*tid));
	int started = 0;
	if (!s && !tid)
		s = weld__nomem(err);
	for (; !s && started < nthreads; started++)
		if (pthread_create(&tid[started], NULL, worker, st) != 0) {
			weld_error e;
			weld__fail(&e, WELD_ERR_NOMEM, "cannot start worker thread %d", started);
			fail(st, WELD_ERR_NOMEM, &e);
			break;
		}
	/* The calling thread reports progress (every 100 ms) and relays cancellation. */
	for (unsigned tick = 1; started && !s; tick++) {
		size_t done = atomic_load(&st->next_chunk);
		if (done >= st->nchunks + (size_t)started || atomic_load(&st->stop))
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (opts->progress && tick % 10 == 0) {
			weld_progress pr = {atomic_load(&st->bytes_done), p->out_bytes, atomic_load(&st->bytes_read),
					    now() - t0};
			if (opts->progress(&pr, opts->payload)) {
				weld_error e;
				weld__fail(&e, WELD_ERR_CANCELLED, "cancelled");
				fail(st, WELD_ERR_CANCELLED, &e);
			}
		}
	}
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	free(tid);
	if (!s && st->status) {
		s = st->status;
		*err = st->err;
	}
	if (!s && opts->progress) {
		weld_progress pr = {p->out_bytes, p->out_bytes, atomic_load(&st->bytes_read), now() - t0};
		opts->progress(&pr, opts->payload);
	}
	if (!s) {
		res->tensor_crcs = weld__calloc(p->nt ? p->nt : 1, sizeof(uint32_t));
		s = res->tensor_crcs ? finish(st, res->tensor_crcs, err) : weld__nomem(err);
	}
	res->fp16_overflows = atomic_load(&st->overflows);
	res->seconds = now() - t0;
	uint64_t read_after = 0;
	for (size_t i = 0; i < p->nfiles; i++)
		read_after += atomic_load(&p->files[i]->bytes_read);
	res->bytes_read = read_after - read_before;
	if (s) {
		free(res->tensor_crcs);
		res->tensor_crcs = NULL;
	}
	pthread_mutex_destroy(&st->lock);
	free(st->pieces);
	free(st->segs);
	free(st->chunks);
	free(st->piece_crcs);
	free(st);
	return s;
}
