/*
 * weld_verify: is an output folder intact and servable, and (with a source)
 * is every tensor exactly the source cast to its dtype? Each finding is one
 * PASS / WARN / FAIL line of the report; only a folder that cannot be
 * examined at all is an error. Reads in bounded chunks, except that a
 * source tensor is read whole (the checkpoint read API has no ranges).
 */
#include "backend/backend.h"
#include "backend/cast.h"
#include "formats/ckpt.h"
#include "output/manifest.h"
#include "output/output_dir.h"
#include "io/safetensors.h"
#include "io/torch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CHUNK_BYTES (8u << 20)
#define MANIFEST_MAX_BYTES (64u << 20)
#define CONFIG_MAX_BYTES (16u << 20)
#define MAX_CHECKS 32
#define LIST_MAX 3 /* names quoted in one detail before "and N more" */

const char *weld_check_level_name(weld_check_level level)
{
	switch (level) {
	case WELD_CHECK_PASS: return "PASS";
	case WELD_CHECK_WARN: return "WARN";
	case WELD_CHECK_FAIL: break;
	}
	return "FAIL";
}

/* An output tensor by name, for bsearch. */
typedef struct name_ix {
	const char *name;
	size_t index;
} name_ix;

typedef struct verifier {
	const char *dir;
	weld_verify_report *r;
	weld_backend *b;
	char **files; /* regular, non-hidden files in DIR, sorted */
	size_t nfiles;
	cJSON *manifest;                          /* weld.json when present and well-formed */
	weld_check_level manifest_level;          /* when weld.json is absent or malformed: WARN or FAIL... */
	char manifest_why[WELD_CHECK_DETAIL_MAX]; /* ...and why; empty when it is usable */
	const char *weights;                      /* the weights file weld.json names, or NULL */
	weld_ckpt *out;                           /* the output's weights; NULL when they could not be opened */
	name_ix *by_name;                         /* out's tensors, sorted by name */
	size_t nby;
	cJSON *config; /* config.json when present and a JSON object */
	int tie;       /* config's tie_word_embeddings: 1, 0, or -1 when not a bool */
} verifier;

/* ------------------------------------------------------------------------- */
/* small helpers                                                              */

static void appendf(char *buf, size_t cap, const char *fmt, ...) WELD_PRINTF(3, 4);
static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(buf);
	if (n + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
}

static void add_check(weld_verify_report *r, const char *name, weld_check_level level, const char *fmt, ...)
	WELD_PRINTF(4, 5);
static void add_check(weld_verify_report *r, const char *name, weld_check_level level, const char *fmt, ...)
{
	if (r->nchecks == MAX_CHECKS)
		return; /* cannot happen: the checks below are fewer */
	weld_check *c = &r->checks[r->nchecks++];
	c->name = name;
	c->level = level;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
}

/* Up to LIST_MAX of NAMES quoted, then "and N more". */
static void append_names(char *buf, size_t cap, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n && i < LIST_MAX; i++)
		appendf(buf, cap, "%s'%s'", i ? ", " : "", names[i]);
	if (n > LIST_MAX)
		appendf(buf, cap, " and %zu more", n - LIST_MAX);
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_name_ix(const void *a, const void *b)
{
	return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* Index of NAME among V's output tensors, or SIZE_MAX. */
static size_t find_out(const verifier *v, const char *name)
{
	name_ix key = {name, 0};
	const name_ix *hit = v->nby ? bsearch(&key, v->by_name, v->nby, sizeof(key), cmp_name_ix) : NULL;
	return hit ? hit->index : SIZE_MAX;
}

static bool has_file(const verifier *v, const char *name)
{
	const char *key = name;
	return v->nfiles && bsearch(&key, v->files, v->nfiles, sizeof(char *), cmp_str) != NULL;
}

/* A JSON number that is a whole value in 0..2^53, as uint64. */
static bool json_u64(const cJSON *o, const char *key, uint64_t *out)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > 9007199254740992.0 ||
	    (double)(uint64_t)n->valuedouble != n->valuedouble)
		return false;
	*out = (uint64_t)n->valuedouble;
	return true;
}

static void shape_str(char *buf, size_t cap, const uint64_t *shape, size_t ndim)
{
	snprintf(buf, cap, "[");
	for (size_t d = 0; d < ndim; d++)
		appendf(buf, cap, "%s%llu", d ? ", " : "", (unsigned long long)shape[d]);
	appendf(buf, cap, "]");
}

static bool is_float(weld_dtype d)
{
	return d == WELD_DTYPE_F16 || d == WELD_DTYPE_BF16 || d == WELD_DTYPE_F32 || d == WELD_DTYPE_F64;
}

/* config.json's dtype names ("bfloat16", "torch.float16", ...). */
static weld_dtype dtype_from_config(const char *s)
{
	if (strncmp(s, "torch.", 6) == 0)
		s += 6;
	static const struct {
		const char *name;
		weld_dtype dtype;
	} names[] = {{"bfloat16", WELD_DTYPE_BF16}, {"float16", WELD_DTYPE_F16}, {"half", WELD_DTYPE_F16},
		     {"float32", WELD_DTYPE_F32},   {"float", WELD_DTYPE_F32},   {"float64", WELD_DTYPE_F64}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].dtype;
	return WELD_DTYPE_INVALID;
}

/* Whole small file as a parsed JSON value; NULL with *WHY filled when absent or invalid. */
static cJSON *read_json(const char *path, size_t max, char *why, size_t why_len)
{
	char *text = NULL;
	size_t len;
	weld_error e = {0};
	if (weld__read_small_file(path, max, &text, &len, &e)) {
		snprintf(why, why_len, "%s", e.message);
		return NULL;
	}
	cJSON *j = cJSON_ParseWithLength(text, len);
	free(text);
	if (!j)
		snprintf(why, why_len, "%s: not valid JSON", base_name(path));
	return j;
}

/* Regular, non-hidden files directly in DIR, sorted. */
static weld_status list_files(verifier *v, weld_error *err)
{
	DIR *d = opendir(v->dir);
	if (!d)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot open the folder", v->dir);
	struct dirent *e;
	weld_status s = WELD_OK;
	size_t cap = 0;
	while (!s && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *path = weld__path_join(v->dir, e->d_name);
		bool regular = path && weld__is_file(path);
		free(path);
		if (!regular)
			continue;
		if (v->nfiles == cap) {
			cap = cap ? cap * 2 : 32;
			char **grown = weld__reallocarray(v->files, cap, sizeof(*grown));
			if (!grown) {
				s = weld__nomem(err);
				break;
			}
			v->files = grown;
		}
		if (!(v->files[v->nfiles] = weld__strdup(e->d_name)))
			s = weld__nomem(err);
		else
			v->nfiles++;
	}
	closedir(d);
	if (!s && v->nfiles)
		qsort(v->files, v->nfiles, sizeof(*v->files), cmp_str);
	return s;
}

/* ------------------------------------------------------------------------- */
/* reading tensors in ranges                                                  */

/*
 * Bytes of one tensor of a checkpoint, read a range at a time: straight from
 * the file when they are one run there (every tensor weld writes), else the
 * whole tensor gathered once.
 */
typedef struct treader {
	weld_file *f;
	uint64_t offset;
	uint8_t *whole;
} treader;

static weld_status treader_open(treader *tr, weld_ckpt *c, size_t i, weld_error *err)
{
	memset(tr, 0, sizeof(*tr));
	const ckpt_tensor *t = &c->t[i];
	if (weld__ckpt_one_run(c, i, &tr->f, &tr->offset))
		return WELD_OK;
	if (t->nbytes > SIZE_MAX)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: tensor '%s' is too large to read", c->src[t->src].file->path,
				  t->name);
	if (!(tr->whole = malloc(t->nbytes ? (size_t)t->nbytes : 1)))
		return weld__nomem(err);
	return weld_ckpt_read_tensor(c, i, tr->whole, (size_t)t->nbytes, err);
}

static weld_status treader_read(treader *tr, void *buf, size_t n, uint64_t at, weld_error *err)
{
	if (tr->whole) {
		memcpy(buf, tr->whole + at, n);
		return WELD_OK;
	}
	return weld_file_pread(tr->f, buf, n, tr->offset + at, err);
}

static void treader_close(treader *tr)
{
	free(tr->whole);
	tr->whole = NULL;
}

/* *EQ: tensors A of CA and B of CB hold the same bytes (same size assumed). */
static weld_status same_bytes(weld_ckpt *ca, size_t a, weld_ckpt *cb, size_t b, bool *eq, weld_error *err)
{
	treader ra, rb;
	uint8_t *x = malloc(CHUNK_BYTES), *y = malloc(CHUNK_BYTES);
	uint64_t n = ca->t[a].nbytes;
	weld_status s = (x && y) ? WELD_OK : weld__nomem(err);
	*eq = true;
	bool ra_open = false, rb_open = false;
	if (!s && !(s = treader_open(&ra, ca, a, err)))
		ra_open = true;
	if (!s && !(s = treader_open(&rb, cb, b, err)))
		rb_open = true;
	for (uint64_t off = 0; !s && *eq && off < n;) {
		size_t k = n - off < CHUNK_BYTES ? (size_t)(n - off) : CHUNK_BYTES;
		if (!(s = treader_read(&ra, x, k, off, err)) && !(s = treader_read(&rb, y, k, off, err)))
			*eq = memcmp(x, y, k) == 0;
		off += k;
	}
	if (ra_open)
		treader_close(&ra);
	if (rb_open)
		treader_close(&rb);
	free(x);
	free(y);
	return s;
}

/* ------------------------------------------------------------------------- */
/* CRC-32s                                                                    */

typedef struct crc_span {
	uint64_t offset, len;
	uint32_t crc; /* out */
} crc_span;

typedef struct span_order {
	uint64_t offset;
	size_t index;
} span_order;

static int cmp_span_order(const void *a, const void *b)
{
	const span_order *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * The one place CRCs are recomputed: CRC-32 of all of F and of each span,
 * CHUNK_BYTES at a time through backend B (a same-dtype byte copy plus the
 * backend's span CRCs), so a CUDA backend computes them on the GPU. Spans
 * must lie inside the file.
 */
static weld_status crc_file(weld_backend *b, weld_file *f, crc_span *spans, size_t n, uint32_t *file_crc,
			    weld_error *err)
{
	uint8_t *staging = malloc(CHUNK_BYTES), *out = malloc(CHUNK_BYTES);
	weld_span *js = weld__calloc(n + 1, sizeof(*js));
	size_t *owner = weld__calloc(n + 1, sizeof(*owner));
	span_order *order = weld__calloc(n ? n : 1, sizeof(*order));
	weld_status s = (staging && out && js && owner && order) ? WELD_OK : weld__nomem(err);
	for (size_t i = 0; i < n; i++) {
		spans[i].crc = 0;
		if (order)
			order[i] = (span_order){spans[i].offset, i};
	}
	if (!s)
		qsort(order, n, sizeof(*order), cmp_span_order);
	*file_crc = 0;
	size_t first = 0;
	for (uint64_t c0 = 0; !s && c0 < f->size;) {
		size_t len = f->size - c0 < CHUNK_BYTES ? (size_t)(f->size - c0) : CHUNK_BYTES;
		uint64_t c1 = c0 + len;
		if ((s = weld_file_pread(f, staging, len, c0, err)))
			break;
		size_t nj = 0;
		js[nj++] = (weld_span){0, len, 0};
		while (first < n && spans[order[first].index].offset + spans[order[first].index].len <= c0)
			first++;
		for (size_t k = first; k < n && order[k].offset < c1; k++) {
			const crc_span *sp = &spans[order[k].index];
			uint64_t a = sp->offset > c0 ? sp->offset : c0,
				 e = sp->offset + sp->len < c1 ? sp->offset + sp->len : c1;
			if (a >= e)
				continue;
			owner[nj] = order[k].index;
			js[nj++] = (weld_span){(size_t)(a - c0), (size_t)(e - a), 0};
		}
		weld_seg seg = {.count = len, .src_dtype = WELD_DTYPE_U8, .dst_dtype = WELD_DTYPE_U8};
		weld_job job = {.staging = staging, .out = out, .segs = &seg, .nsegs = 1, .spans = js, .nspans = nj};
		if ((s = weld_backend_convert(b, &job, err)))
			break;
		*file_crc = (uint32_t)crc32_combine64(*file_crc, js[0].crc, (z_off64_t)len);
		for (size_t j = 1; j < nj; j++) {
			crc_span *sp = &spans[owner[j]];
			sp->crc = (uint32_t)crc32_combine64(sp->crc, js[j].crc, (z_off64_t)js[j].len);
		}
		c0 = c1;
	}
	free(staging);
	free(out);
	free(js);
	free(owner);
	free(order);
	return s;
}

/* ------------------------------------------------------------------------- */
/* structure: manifest, weights, sizes, CRCs                                  */

static void load_manifest(verifier *v)
{
	char *path = weld__path_join(v->dir, WELD_MANIFEST_NAME), why[WELD_CHECK_DETAIL_MAX] = "";
	if (!path || !weld__is_file(path)) {
		free(path);
		v->manifest_level = WELD_CHECK_WARN;
		snprintf(v->manifest_why, sizeof(v->manifest_why),
			 "no weld.json: not written by weld convert; sizes and CRC-32s not checked");
		return;
	}
	cJSON *m = read_json(path, MANIFEST_MAX_BYTES, why, sizeof(why));
	free(path);
	const cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "files"), 0);
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(file, "name"));
	const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(m, "tensors"), *t;
	uint64_t u;
	if (m && !why[0] && (!name || !*name || strchr(name, '/') || strcmp(name, "..") == 0))
		snprintf(why, sizeof(why), "weld.json: files[0] has no file name");
	if (m && !why[0] && (!json_u64(file, "size", &u) || !json_u64(file, "crc32", &u) || u > UINT32_MAX))
		snprintf(why, sizeof(why), "weld.json: files[0] has no size or crc32");
	if (m && !why[0] && !cJSON_IsArray(tensors))
		snprintf(why, sizeof(why), "weld.json: no \"tensors\" list");
	cJSON_ArrayForEach(t, (why[0] ? NULL : tensors))
	{
		const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape"), *d;
		bool ok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name")) &&
			  cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "dtype")) && cJSON_IsArray(shape) &&
			  cJSON_GetArraySize(shape) <= WELD_MAX_DIMS && json_u64(t, "offset", &u) &&
			  json_u64(t, "bytes", &u) && json_u64(t, "crc32", &u) && u <= UINT32_MAX;
		cJSON_ArrayForEach(d, (ok ? shape : NULL)) ok = ok && cJSON_IsNumber(d) && d->valuedouble >= 0;
		if (!ok) {
			int k = 0;
			for (const cJSON *p = tensors->child; p && p != t; p = p->next)
				k++;
			snprintf(why, sizeof(why),
				 "weld.json: tensors[%d] lacks a name, dtype, shape, offset, bytes or crc32", k);
			break;
		}
	}
	if (why[0]) {
		cJSON_Delete(m);
		v->manifest_level = WELD_CHECK_FAIL;
		snprintf(v->manifest_why, sizeof(v->manifest_why), "%s", why);
		return;
	}
	v->manifest = m;
	v->weights = name;
}

/* Open the weights: the file weld.json names, else whatever weld_ckpt_open finds in DIR. */
static weld_status open_output(verifier *v, weld_error *err)
{
	weld_verify_report *r = v->r;
	weld_error e = {0};
	weld_status s;
	if (v->weights) {
		char *path = weld__path_join(v->dir, v->weights);
		if (!path)
			return weld__nomem(err);
		s = weld_ckpt_open(&v->out, path, &e);
		free(path);
	} else {
		s = weld_ckpt_open(&v->out, v->dir, &e);
	}
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		add_check(r, "format", WELD_CHECK_FAIL, "%s", e.message);
		return WELD_OK;
	}
	weld_format f = weld_ckpt_format(v->out);
	const char *label = NULL;
	switch (f) {
	case WELD_FORMAT_SAFETENSORS:
	case WELD_FORMAT_SAFETENSORS_SHARDED: label = "safetensors"; break;
	case WELD_FORMAT_TORCH_ZIP:
	case WELD_FORMAT_TORCH_LEGACY:
	case WELD_FORMAT_TORCH_SHARDED: label = "pytorch-bin"; break;
	default: break;
	}
	if (!label) {
		add_check(r, "format", WELD_CHECK_FAIL, "the folder holds a %s checkpoint, not servable weights",
			  weld_format_name(f));
		weld_ckpt_free(v->out);
		v->out = NULL;
		return WELD_OK;
	}
	snprintf(r->format, sizeof(r->format), "%s", label);
	if (f == WELD_FORMAT_SAFETENSORS_SHARDED)
		snprintf(r->weights_file, sizeof(r->weights_file), "model.safetensors.index.json");
	else if (f == WELD_FORMAT_TORCH_SHARDED)
		snprintf(r->weights_file, sizeof(r->weights_file), "pytorch_model.bin.index.json");
	else
		snprintf(r->weights_file, sizeof(r->weights_file), "%s", base_name(weld_ckpt_file(v->out, 0)));

	size_t n = weld_ckpt_tensor_count(v->out);
	if (!(v->by_name = weld__calloc(n ? n : 1, sizeof(*v->by_name))))
		return weld__nomem(err);
	bool overflow = false;
	for (size_t i = 0; i < n; i++) {
		const ckpt_tensor *t = &v->out->t[i];
		v->by_name[v->nby++] = (name_ix){t->name, i};
		if (t->alias_of) {
			r->tied++;
			continue;
		}
		r->tensors++;
		overflow |= !weld__add_u64(&r->parameters, r->parameters, t->numel) ||
			    !weld__add_u64(&r->bytes, r->bytes, t->nbytes);
	}
	qsort(v->by_name, v->nby, sizeof(*v->by_name), cmp_name_ix);
	const cJSON *tied = cJSON_GetObjectItemCaseSensitive(v->manifest, "tied");
	if (cJSON_IsObject(tied))
		r->tied += (uint64_t)cJSON_GetArraySize(tied);
	char files[64] = "", tied_n[64] = "";
	if (weld_ckpt_file_count(v->out) > 1)
		snprintf(files, sizeof(files), " (%zu files)", weld_ckpt_file_count(v->out));
	if (r->tied)
		snprintf(tied_n, sizeof(tied_n), " (+ %llu tied alias%s)", (unsigned long long)r->tied,
			 r->tied == 1 ? "" : "es");
	add_check(r, "format", overflow ? WELD_CHECK_FAIL : WELD_CHECK_PASS,
		  "%s: %s%s, %llu tensors%s, %llu parameters, %llu tensor bytes%s", label, r->weights_file, files,
		  (unsigned long long)r->tensors, tied_n, (unsigned long long)r->parameters,
		  (unsigned long long)r->bytes, overflow ? ": totals overflow" : "");
	return WELD_OK;
}

/* Every .safetensors and .bin file in DIR parses under the reference rules. */
static weld_status check_weight_files(verifier *v, weld_error *err)
{
	const char *ok[LIST_MAX + 1];
	size_t nok = 0, nbad = 0, total = 0;
	char first_bad[WELD_CHECK_DETAIL_MAX] = "";
	for (size_t i = 0; i < v->nfiles; i++) {
		const char *name = v->files[i];
		bool st = has_suffix(name, ".safetensors");
		if (!st && !has_suffix(name, ".bin"))
			continue;
		total++;
		char *path = weld__path_join(v->dir, name);
		if (!path)
			return weld__nomem(err);
		weld_error e = {0};
		weld_status s;
		if (st) {
			weld_file *f = NULL;
			weld_st_header h = {0};
			if (!(s = weld_file_open(&f, path, &e)))
				s = weld_st_read_header(&h, f, &e); /* its messages name the file */
			weld_st_header_clear(&h);
			weld_file_close(f);
		} else {
			weld_ckpt *c = NULL;
			s = weld_ckpt_open(&c, path, &e);
			weld_ckpt_free(c);
		}
		free(path);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s) {
			if (!nbad++)
				appendf(first_bad, sizeof(first_bad), "%s", e.message);
		} else if (nok < LIST_MAX + 1) {
			ok[nok++] = name;
		}
	}
	if (total == 0) {
		add_check(v->r, "weights", WELD_CHECK_FAIL, "no .safetensors or .bin file in the folder");
	} else if (nbad) {
		add_check(v->r, "weights", WELD_CHECK_FAIL, "%s", first_bad);
		if (nbad > 1)
			appendf(v->r->checks[v->r->nchecks - 1].detail, WELD_CHECK_DETAIL_MAX,
				" (and %zu more invalid)", nbad - 1);
	} else {
		char names[WELD_CHECK_DETAIL_MAX] = "";
		for (size_t i = 0; i < nok && i < LIST_MAX; i++)
			appendf(names, sizeof(names), "%s%s", i ? ", " : "", ok[i]);
		if (total > LIST_MAX)
			appendf(names, sizeof(names), " and %zu more", total - LIST_MAX);
		add_check(v->r, "weights", WELD_CHECK_PASS, "%zu weight file%s valid: %s", total, total == 1 ? "" : "s",
			  names);
	}
	return WELD_OK;
}

/* weld.json's tensor table agrees with the weights file's own header. */
static void check_manifest_tensors(verifier *v)
{
	const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(v->manifest, "tensors"), *t;
	const cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v->manifest, "files"), 0);
	char first[WELD_CHECK_DETAIL_MAX] = "";
	size_t problems = 0, listed = 0;
	uint64_t count;
	cJSON_ArrayForEach(t, tensors)
	{
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
		const char *dtype = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "dtype"));
		const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape"), *d;
		uint64_t offset = 0, bytes = 0, dims[WELD_MAX_DIMS];
		size_t ndim = 0;
		json_u64(t, "offset", &offset);
		json_u64(t, "bytes", &bytes);
		cJSON_ArrayForEach(d, shape) dims[ndim++] = (uint64_t)d->valuedouble;
		listed++;
		size_t i = find_out(v, name);
		if (i == SIZE_MAX) {
			if (!problems++)
				snprintf(first, sizeof(first), "weld.json lists '%s', which %s lacks", name,
					 v->weights);
			continue;
		}
		const ckpt_tensor *o = &v->out->t[i];
		weld_file *f;
		uint64_t where = UINT64_MAX;
		/* Only a tensor stored as one run has an offset to compare; that is every one weld writes. */
		weld__ckpt_one_run(v->out, i, &f, &where);
		if (strcmp(dtype, weld_dtype_name(o->dtype)) != 0 || ndim != o->ndim ||
		    memcmp(dims, o->shape, ndim * sizeof(uint64_t)) != 0 || bytes != o->nbytes || offset != where) {
			if (!problems++) {
				char a[256], b[256];
				shape_str(a, sizeof(a), dims, ndim);
				shape_str(b, sizeof(b), o->shape, o->ndim);
				appendf(first, sizeof(first),
					"weld.json says '%s' is %s %s at offset %llu, %s has %s %s at %llu", name,
					dtype, a, (unsigned long long)offset, v->weights, weld_dtype_name(o->dtype), b,
					(unsigned long long)where);
			}
		}
	}
	size_t stored = (size_t)(v->r->tensors);
	if (!problems && listed != stored) {
		problems++;
		/* Name the first stored tensor weld.json lacks (an error path: quadratic is fine). */
		for (size_t i = 0; i < v->nby; i++) {
			const ckpt_tensor *o = &v->out->t[v->by_name[i].index];
			bool found = false;
			cJSON_ArrayForEach(t, tensors)
			{
				const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
				found = found || strcmp(name, o->name) == 0;
			}
			if (!found && !o->alias_of) {
				snprintf(first, sizeof(first), "%s holds '%s', which weld.json does not list",
					 v->weights, o->name);
				break;
			}
		}
		if (!first[0])
			snprintf(first, sizeof(first), "weld.json lists %zu tensors, %s holds %zu", listed, v->weights,
				 stored);
	}
	if (!problems && json_u64(file, "tensor_count", &count) && count != listed) {
		problems++;
		snprintf(first, sizeof(first), "weld.json: tensor_count is %llu but it lists %zu tensors",
			 (unsigned long long)count, listed);
	}
	/* Each tied alias must name an owner that is stored. */
	const cJSON *tied = cJSON_GetObjectItemCaseSensitive(v->manifest, "tied"), *a;
	cJSON_ArrayForEach(a, tied)
	{
		const char *owner = cJSON_GetStringValue(a);
		if (!owner || find_out(v, owner) == SIZE_MAX) {
			if (!problems++)
				snprintf(first, sizeof(first), "weld.json ties '%s' to '%s', which %s lacks", a->string,
					 owner ? owner : "?", v->weights);
		}
	}
	if (problems) {
		if (problems > 1)
			appendf(first, sizeof(first), " (%zu problems)", problems);
		add_check(v->r, "manifest", WELD_CHECK_FAIL, "%s", first);
	} else {
		add_check(v->r, "manifest", WELD_CHECK_PASS, "weld.json describes the %zu tensors of %s", listed,
			  v->weights);
	}
}

/* The weights file has weld.json's size and CRC-32s, recomputed. */
static weld_status check_size_and_crcs(verifier *v, weld_error *err)
{
	weld_verify_report *r = v->r;
	const cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v->manifest, "files"), 0);
	const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(v->manifest, "tensors"), *t;
	uint64_t want_size = 0, want_crc = 0;
	json_u64(file, "size", &want_size);
	json_u64(file, "crc32", &want_crc);
	char *path = weld__path_join(v->dir, v->weights);
	if (!path)
		return weld__nomem(err);
	weld_file *f = NULL;
	weld_error e = {0};
	weld_status s = weld_file_open(&f, path, &e);
	free(path);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		add_check(r, "size", WELD_CHECK_FAIL, "%s", e.message);
		return WELD_OK;
	}
	if (f->size != want_size)
		add_check(r, "size", WELD_CHECK_FAIL, "%s: %llu bytes, weld.json says %llu", v->weights,
			  (unsigned long long)f->size, (unsigned long long)want_size);
	else
		add_check(r, "size", WELD_CHECK_PASS, "%s: %llu bytes, as weld.json says", v->weights,
			  (unsigned long long)f->size);

	size_t n = (size_t)cJSON_GetArraySize(tensors), i = 0;
	crc_span *spans = weld__calloc(n ? n : 1, sizeof(*spans));
	const char **names = weld__calloc(n ? n : 1, sizeof(*names));
	uint32_t *want = weld__calloc(n ? n : 1, sizeof(*want));
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	if (!spans || !names || !want) {
		s = weld__nomem(err);
		goto done;
	}
	cJSON_ArrayForEach(t, tensors)
	{
		uint64_t off = 0, len = 0, crc = 0, end;
		json_u64(t, "offset", &off);
		json_u64(t, "bytes", &len);
		json_u64(t, "crc32", &crc);
		names[i] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
		if (!weld__add_u64(&end, off, len) || end > f->size) {
			add_check(r, "crc32", WELD_CHECK_FAIL,
				  "tensor '%s' (%llu bytes at offset %llu) lies past the end of %s", names[i],
				  (unsigned long long)len, (unsigned long long)off, v->weights);
			goto done;
		}
		spans[i] = (crc_span){off, len, 0};
		want[i++] = (uint32_t)crc;
	}
	uint32_t got_file;
	if ((s = crc_file(v->b, f, spans, n, &got_file, &e))) {
		if (s == WELD_ERR_NOMEM)
			goto done;
		/* A read error part way is a finding about this folder, not a failure to verify. */
		add_check(r, "crc32", WELD_CHECK_FAIL, "%s", e.message);
		s = WELD_OK;
		goto done;
	}
	size_t bad = 0;
	for (i = 0; i < n; i++) {
		if (spans[i].crc == want[i])
			continue;
		if (bad++ < LIST_MAX)
			appendf(detail, sizeof(detail), "%stensor '%s': CRC-32 0x%08x, weld.json says 0x%08x",
				bad > 1 ? "; " : "", names[i], spans[i].crc, want[i]);
	}
	if (bad > LIST_MAX)
		appendf(detail, sizeof(detail), "; and %zu more tensors", bad - LIST_MAX);
	if (got_file != (uint32_t)want_crc)
		appendf(detail, sizeof(detail), "%s%s: CRC-32 0x%08x, weld.json says 0x%08x", detail[0] ? "; " : "",
			v->weights, got_file, (uint32_t)want_crc);
	if (detail[0])
		add_check(r, "crc32", WELD_CHECK_FAIL, "%s (computed on %s)", detail, weld_backend_name(v->b));
	else
		add_check(r, "crc32", WELD_CHECK_PASS, "%s and its %zu tensors match weld.json (computed on %s)",
			  v->weights, n, weld_backend_name(v->b));
done:
	if (s == WELD_ERR_NOMEM)
		weld__nomem(err);
	weld_file_close(f);
	free(spans);
	free(names);
	free(want);
	return s;
}

/* ------------------------------------------------------------------------- */
/* servability                                                                */

static void check_config(verifier *v)
{
	char *path = weld__path_join(v->dir, "config.json"), why[WELD_CHECK_DETAIL_MAX] = "";
	if (!path || !weld__is_file(path)) {
		free(path);
		add_check(v->r, "config", WELD_CHECK_FAIL, "config.json: missing");
		return;
	}
	cJSON *c = read_json(path, CONFIG_MAX_BYTES, why, sizeof(why));
	free(path);
	if (c && !cJSON_IsObject(c)) {
		cJSON_Delete(c);
		c = NULL;
		snprintf(why, sizeof(why), "config.json: not a JSON object");
	}
	if (!c) {
		add_check(v->r, "config", WELD_CHECK_FAIL, "%s", why);
		return;
	}
	v->config = c;
	const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings");
	v->tie = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : -1;
	const cJSON *arch = cJSON_GetObjectItemCaseSensitive(c, "architectures"), *a;
	const char *model_type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "model_type"));
	char names[WELD_CHECK_DETAIL_MAX] = "";
	size_t n = 0;
	cJSON_ArrayForEach(a, (cJSON_IsArray(arch) ? arch : NULL))
	{
		if (!cJSON_GetStringValue(a) || !*a->valuestring) {
			n = 0;
			break;
		}
		appendf(names, sizeof(names), "%s%s", n++ ? ", " : "", a->valuestring);
	}
	if (n == 0)
		add_check(v->r, "config", WELD_CHECK_FAIL,
			  "config.json has no \"architectures\" list (vLLM needs one to pick the model class)");
	else
		add_check(v->r, "config", WELD_CHECK_PASS, "config.json: %s%s%s%s", names,
			  model_type ? " (model_type " : "", model_type ? model_type : "", model_type ? ")" : "");
}

static const char *config_dtype_label(weld_dtype d)
{
	switch (d) {
	case WELD_DTYPE_BF16: return "bfloat16";
	case WELD_DTYPE_F16: return "float16";
	case WELD_DTYPE_F32: return "float32";
	default: return "float64";
	}
}

/* config.json's "dtype" / "torch_dtype" name the floating-point tensors' dtype. */
static void check_config_dtype(verifier *v)
{
	weld_dtype seen = WELD_DTYPE_INVALID, other = WELD_DTYPE_INVALID;
	for (size_t i = 0; i < v->out->nt; i++) {
		weld_dtype d = v->out->t[i].dtype;
		if (!is_float(d) || v->out->t[i].alias_of)
			continue;
		if (!seen)
			seen = d;
		else if (d != seen)
			other = d;
	}
	static const char *const keys[] = {"dtype", "torch_dtype"};
	const char *said = NULL;
	for (size_t k = 0; k < 2; k++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(v->config, keys[k]);
		if (!j || cJSON_IsNull(j))
			continue;
		const char *s = cJSON_GetStringValue(j);
		if (!s) {
			add_check(v->r, "config_dtype", WELD_CHECK_FAIL, "config.json: \"%s\" is not a string",
				  keys[k]);
			return;
		}
		weld_dtype d = dtype_from_config(s);
		if (!d) {
			add_check(v->r, "config_dtype", WELD_CHECK_FAIL,
				  "config.json says \"%s\": \"%s\", which is not a dtype", keys[k], s);
			return;
		}
		if (seen && !other && d != seen) {
			add_check(v->r, "config_dtype", WELD_CHECK_FAIL,
				  "config.json says \"%s\": \"%s\", the tensors are %s", keys[k], s,
				  weld_dtype_name(seen));
			return;
		}
		said = s;
	}
	if (!seen)
		add_check(v->r, "config_dtype", WELD_CHECK_PASS, "no floating-point tensors");
	else if (other)
		add_check(v->r, "config_dtype", WELD_CHECK_WARN, "the tensors mix %s and %s; config.json says %s",
			  weld_dtype_name(seen), weld_dtype_name(other), said ? said : "no dtype");
	else if (!said)
		add_check(v->r, "config_dtype", WELD_CHECK_WARN,
			  "config.json names no dtype (\"dtype\" or \"torch_dtype\"); the tensors are %s (%s)",
			  weld_dtype_name(seen), config_dtype_label(seen));
	else
		add_check(v->r, "config_dtype", WELD_CHECK_PASS, "config.json says %s, the tensors are %s", said,
			  weld_dtype_name(seen));
}

/* Exactly one weight format: nothing but the weights (and their index) may look like weights. */
static weld_status check_one_format(verifier *v, weld_error *err)
{
	const char **stale = weld__calloc(v->nfiles ? v->nfiles : 1, sizeof(*stale));
	const char **consolidated = weld__calloc(v->nfiles ? v->nfiles : 1, sizeof(*consolidated));
	size_t nstale = 0, ncons = 0;
	if (!stale || !consolidated) {
		free(stale);
		free(consolidated);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < v->nfiles; i++) {
		const char *name = v->files[i];
		if (!weld_is_weight_file(name) || strcmp(name, v->r->weights_file) == 0)
			continue;
		bool expected = false;
		for (size_t k = 0; k < weld_ckpt_file_count(v->out) && !expected; k++)
			expected = strcmp(base_name(weld_ckpt_file(v->out, k)), name) == 0;
		if (expected)
			continue;
		if (strncmp(name, "consolidated", 12) == 0 && has_suffix(name, ".safetensors"))
			consolidated[ncons++] = name;
		else
			stale[nstale++] = name;
	}
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	if (nstale) {
		appendf(detail, sizeof(detail), "stale weight file%s beside %s: ", nstale == 1 ? "" : "s",
			v->r->weights_file);
		append_names(detail, sizeof(detail), stale, nstale);
	}
	if (ncons) {
		appendf(detail, sizeof(detail), "%s", detail[0] ? "; " : "");
		append_names(detail, sizeof(detail), consolidated, ncons);
		appendf(detail, sizeof(detail), " present: vLLM then loads consolidated*.safetensors (Mistral format)");
	}
	if (detail[0]) {
		add_check(v->r, "one_format", WELD_CHECK_FAIL, "%s", detail);
	} else if (weld_ckpt_file_count(v->out) > 1) {
		add_check(v->r, "one_format", WELD_CHECK_PASS, "%s and its %zu shards only", v->r->weights_file,
			  weld_ckpt_file_count(v->out));
	} else {
		add_check(v->r, "one_format", WELD_CHECK_PASS, "%s only", v->r->weights_file);
	}
	free(stale);
	free(consolidated);
	return WELD_OK;
}

static const char *const wrapper_prefixes[] = {"module.", "_orig_mod."};

/* No DDP/DeepSpeed 'module.' or torch.compile '_orig_mod.' prefixes left on names. */
static void check_prefix(verifier *v)
{
	for (size_t k = 0; k < 2; k++) {
		const char *p = wrapper_prefixes[k], *example = NULL;
		size_t n = 0, len = strlen(p);
		for (size_t i = 0; i < v->out->nt; i++)
			if (strncmp(v->out->t[i].name, p, len) == 0 && !n++)
				example = v->out->t[i].name;
		if (n) {
			add_check(v->r, "prefix", WELD_CHECK_FAIL,
				  "%zu of %zu tensor names start with '%s' (e.g. '%s'); loaders expect the bare names",
				  n, v->out->nt, p, example);
			return;
		}
	}
	add_check(v->r, "prefix", WELD_CHECK_PASS, "no 'module.' or '_orig_mod.' prefixes");
}

/* The input embedding an lm_head.weight is tied to: same shape, a usual name (as the planner picks). */
static size_t embedding_for(const verifier *v, size_t head)
{
	static const char *const names[] = {"embed_tokens.weight", "wte.weight", "word_embeddings.weight",
					    "embed_in.weight", "tok_embeddings.weight"};
	const ckpt_tensor *h = &v->out->t[head];
	for (size_t i = 0; i < v->out->nt; i++) {
		const ckpt_tensor *e = &v->out->t[i];
		if (i == head || e->ndim != h->ndim || memcmp(e->shape, h->shape, sizeof(uint64_t) * e->ndim) != 0)
			continue;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (has_suffix(e->name, names[k]))
				return i;
	}
	return SIZE_MAX;
}

/* Tied weights agree with config.json's tie_word_embeddings. */
static weld_status check_tied(verifier *v, weld_error *err)
{
	const cJSON *tied = cJSON_GetObjectItemCaseSensitive(v->manifest, "tied");
	const cJSON *first = cJSON_IsObject(tied) ? tied->child : NULL;
	size_t head = SIZE_MAX;
	for (size_t i = 0; i < v->out->nt && head == SIZE_MAX; i++)
		if (has_suffix(v->out->t[i].name, "lm_head.weight") && !v->out->t[i].alias_of)
			head = i;
	size_t embed = head == SIZE_MAX ? SIZE_MAX : embedding_for(v, head);
	const char *arch0 = cJSON_GetStringValue(
		cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v->config, "architectures"), 0));
	if (first) {
		const char *owner = cJSON_GetStringValue(first);
		if (v->tie == 0)
			add_check(v->r, "tied", WELD_CHECK_FAIL,
				  "'%s' is stored only as '%s' (weld.json \"tied\"), but config.json has "
				  "tie_word_embeddings false: the model would not load it",
				  first->string, owner ? owner : "?");
		else if (v->tie < 0)
			add_check(v->r, "tied", WELD_CHECK_WARN,
				  "'%s' is stored only as '%s'; config.json does not set tie_word_embeddings, so the "
				  "model class's default must tie them",
				  first->string, owner ? owner : "?");
		else
			add_check(v->r, "tied", WELD_CHECK_PASS,
				  "'%s' is stored as '%s', and tie_word_embeddings is true", first->string,
				  owner ? owner : "?");
		return WELD_OK;
	}
	if (v->tie == 1 && head != SIZE_MAX && embed != SIZE_MAX) {
		bool eq;
		weld_error e = {0};
		weld_status s = same_bytes(v->out, head, v->out, embed, &eq, &e);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s)
			add_check(v->r, "tied", WELD_CHECK_FAIL, "%s", e.message);
		else if (!eq)
			add_check(v->r, "tied", WELD_CHECK_FAIL,
				  "tie_word_embeddings is true but '%s' differs from '%s': loaders will use the "
				  "embedding",
				  v->out->t[head].name, v->out->t[embed].name);
		else
			add_check(v->r, "tied", WELD_CHECK_PASS,
				  "'%s' equals '%s' (stored twice), and tie_word_embeddings is true",
				  v->out->t[head].name, v->out->t[embed].name);
		return WELD_OK;
	}
	if (v->tie == 0 && head == SIZE_MAX && arch0 && has_suffix(arch0, "ForCausalLM")) {
		add_check(v->r, "tied", WELD_CHECK_FAIL,
			  "no lm_head.weight, and config.json has tie_word_embeddings false: the head would be left "
			  "untrained");
		return WELD_OK;
	}
	if (v->tie == 1 && head == SIZE_MAX)
		add_check(v->r, "tied", WELD_CHECK_PASS,
			  "no lm_head.weight stored, and tie_word_embeddings is true: the head is the input embedding");
	else
		add_check(v->r, "tied", WELD_CHECK_PASS, "no tied weights");
	return WELD_OK;
}

static void check_tokenizer(verifier *v)
{
	/* A vocabulary in some form; tokenizer_config.json alone is not one. */
	static const char *const vocab[] = {"tokenizer.json", "tokenizer.model", "vocab.json",
					    "vocab.txt",      "spiece.model",    "sentencepiece.bpe.model",
					    "tekken.json",    "tiktoken.model"};
	const char *found[sizeof(vocab) / sizeof(vocab[0]) + 2];
	size_t n = 0;
	bool have_vocab = false;
	for (size_t k = 0; k < sizeof(vocab) / sizeof(vocab[0]); k++)
		if (has_file(v, vocab[k])) {
			found[n++] = vocab[k];
			have_vocab = true;
		}
	for (size_t i = 0; i < v->nfiles && !have_vocab; i++)
		if (has_suffix(v->files[i], ".tiktoken")) {
			found[n++] = v->files[i];
			have_vocab = true;
		}
	if (has_file(v, "tokenizer_config.json"))
		found[n++] = "tokenizer_config.json";
	char names[WELD_CHECK_DETAIL_MAX] = "";
	for (size_t i = 0; i < n; i++)
		appendf(names, sizeof(names), "%s%s", i ? ", " : "", found[i]);
	if (have_vocab)
		add_check(v->r, "tokenizer", WELD_CHECK_PASS, "%s", names);
	else if (n)
		add_check(v->r, "tokenizer", WELD_CHECK_WARN,
			  "%s but no vocabulary (tokenizer.json, tokenizer.model, ...)", names);
	else
		add_check(v->r, "tokenizer", WELD_CHECK_WARN,
			  "no tokenizer files (tokenizer.json, tokenizer.model, ...): serve with a tokenizer from "
			  "elsewhere");
}

/* The __metadata__ "format" of the safetensors file PATH, into FMT (empty when it has none). */
static weld_status metadata_format(const char *path, char *fmt, size_t cap, weld_error *err)
{
	weld_file *f = NULL;
	weld_st_header h = {0};
	weld_status s = weld_file_open(&f, path, err);
	if (!s)
		s = weld_st_read_header(&h, f, err);
	fmt[0] = '\0';
	for (size_t k = 0; !s && k < h.nmeta; k++)
		if (strcmp(h.meta_keys[k], "format") == 0)
			snprintf(fmt, cap, "%s", h.meta_vals[k]);
	weld_st_header_clear(&h);
	weld_file_close(f);
	return s;
}

/* safetensors __metadata__ "format" must be "pt": transformers refuses a file without one. */
static weld_status check_metadata(verifier *v, weld_error *err)
{
	if (strcmp(v->r->format, "safetensors") != 0) {
		add_check(v->r, "metadata", WELD_CHECK_PASS, "%s: no safetensors metadata needed", v->r->format);
		return WELD_OK;
	}
	for (size_t i = 0; i < weld_ckpt_file_count(v->out); i++) {
		const char *path = weld_ckpt_file(v->out, i);
		char fmt[256];
		weld_error e = {0};
		weld_status s = metadata_format(path, fmt, sizeof(fmt), &e);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s) {
			add_check(v->r, "metadata", WELD_CHECK_FAIL, "%s", e.message);
			return WELD_OK;
		}
		if (!fmt[0]) {
			add_check(v->r, "metadata", WELD_CHECK_FAIL,
				  "%s has no __metadata__ \"format\" (transformers refuses to load it)", base_name(path));
			return WELD_OK;
		}
		if (strcmp(fmt, "pt") != 0) {
			bool known = strcmp(fmt, "tf") == 0 || strcmp(fmt, "flax") == 0 || strcmp(fmt, "mlx") == 0;
			add_check(v->r, "metadata", known ? WELD_CHECK_WARN : WELD_CHECK_FAIL,
				  "%s: __metadata__ \"format\" is \"%s\", not \"pt\"", base_name(path), fmt);
			return WELD_OK;
		}
	}
	add_check(v->r, "metadata", WELD_CHECK_PASS, "__metadata__ \"format\": \"pt\"");
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* against a source                                                           */

/* One element as a double; NAN for types without a value (f8, complex). */
static double widen(const uint8_t *p, weld_dtype d)
{
	uint16_t h;
	uint32_t x;
	float f;
	switch (d) {
	case WELD_DTYPE_BF16:
		memcpy(&h, p, 2);
		x = weld_bf16_to_f32(h);
		memcpy(&f, &x, 4);
		return f;
	case WELD_DTYPE_F16:
		memcpy(&h, p, 2);
		x = weld_f16_to_f32(h);
		memcpy(&f, &x, 4);
		return f;
	case WELD_DTYPE_F32: memcpy(&f, p, 4); return f;
	case WELD_DTYPE_F64: {
		double g;
		memcpy(&g, p, 8);
		return g;
	}
	case WELD_DTYPE_BOOL:
	case WELD_DTYPE_U8: return *p;
	case WELD_DTYPE_I8: return (int8_t)*p;
	case WELD_DTYPE_I16: {
		int16_t i;
		memcpy(&i, p, 2);
		return i;
	}
	case WELD_DTYPE_U16: {
		uint16_t i;
		memcpy(&i, p, 2);
		return i;
	}
	case WELD_DTYPE_I32: {
		int32_t i;
		memcpy(&i, p, 4);
		return i;
	}
	case WELD_DTYPE_U32: {
		uint32_t i;
		memcpy(&i, p, 4);
		return i;
	}
	case WELD_DTYPE_I64: {
		int64_t i;
		memcpy(&i, p, 8);
		return (double)i;
	}
	case WELD_DTYPE_U64: {
		uint64_t i;
		memcpy(&i, p, 8);
		return (double)i;
	}
	default: return NAN;
	}
}

static bool has_value(weld_dtype d)
{
	return is_float(d) || (d >= WELD_DTYPE_BOOL && d <= WELD_DTYPE_I8) || d == WELD_DTYPE_I16 ||
	       d == WELD_DTYPE_U16 || d == WELD_DTYPE_I32 || d == WELD_DTYPE_U32 || d == WELD_DTYPE_I64 ||
	       d == WELD_DTYPE_U64;
}

/* The casts weld makes: none, or float to a 16/32-bit float. */
static bool castable(weld_dtype from, weld_dtype to)
{
	return from == to ||
	       (is_float(from) && (to == WELD_DTYPE_BF16 || to == WELD_DTYPE_F16 || to == WELD_DTYPE_F32));
}

/*
 * Output tensor OI against source tensor SI: exact bytes of the cast, and
 * error statistics against the source widened to double. The source tensor
 * is read whole; the comparison runs CHUNK_BYTES of output at a time.
 */
static weld_status compare_tensor(verifier *v, size_t oi, weld_ckpt *src, size_t si, weld_tensor_diff *d,
				  weld_error *err)
{
	const ckpt_tensor *o = &v->out->t[oi], *st = &src->t[si];
	weld_dtype od = o->dtype, sd = st->dtype;
	size_t osz = weld_dtype_size(od), ssz = weld_dtype_size(sd);
	d->dtype = od;
	d->source_dtype = sd;
	d->numel = o->numel;
	d->exact = 1;
	if (st->nbytes > SIZE_MAX)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: tensor '%s' is too large to read", src->src[st->src].file->path,
				  st->name);
	size_t per = CHUNK_BYTES / (osz > ssz ? osz : ssz);
	uint8_t *sbuf = malloc(st->nbytes ? (size_t)st->nbytes : 1), *cast = malloc(per * osz),
		*obuf = malloc(per * osz);
	treader tr;
	bool tr_open = false;
	weld_status s = (sbuf && cast && obuf) ? WELD_OK : weld__nomem(err);
	if (!s)
		s = weld_ckpt_read_tensor(src, si, sbuf, (size_t)st->nbytes, err);
	if (!s && !(s = treader_open(&tr, v->out, oi, err)))
		tr_open = true;
	bool stats = has_value(od) && has_value(sd), fl = is_float(od);
	double num = 0, den = 0, max = 0;
	uint64_t overflows = 0;
	for (uint64_t e = 0; !s && e < o->numel;) {
		size_t n = o->numel - e < per ? (size_t)(o->numel - e) : per;
		if ((s = treader_read(&tr, obuf, n * osz, e * osz, err)))
			break;
		weld_cpu_convert_run(sbuf + e * ssz, sd, cast, od, n, &overflows);
		if (memcmp(cast, obuf, n * osz) != 0)
			d->exact = 0;
		for (size_t k = 0; stats && k < n; k++) {
			double x = widen(sbuf + (e + k) * ssz, sd), y = widen(obuf + k * osz, od);
			if (fl && isnan(y))
				d->nan_count++;
			else if (fl && isinf(y))
				d->inf_count++;
			if ((isnan(x) && isnan(y)) || (isinf(x) && x == y))
				continue;
			double diff = y > x ? y - x : x - y;
			if (isnan(diff))
				diff = INFINITY; /* one side NaN, the other not */
			max = diff > max ? diff : max;
			num += diff * diff;
			if (isfinite(x))
				den += x * x;
		}
		e += n;
	}
	if (tr_open)
		treader_close(&tr);
	free(sbuf);
	free(cast);
	free(obuf);
	d->max_abs_diff = stats ? max : (d->exact ? 0 : NAN);
	/* 0 against an all-zero source only when the output is all zero too. */
	d->rel_l2 = !stats ? (d->exact ? 0 : NAN) : den > 0 ? sqrt(num) / sqrt(den) : (num > 0 ? INFINITY : 0);
	return s;
}

/*
 * The wrapper prefix of the source's names, found as the planner finds it
 * (every name carries it), so any form of the same weights compares.
 */
static void source_prefix(const weld_ckpt *src, char *prefix, size_t cap)
{
	prefix[0] = '\0';
	for (bool again = true; again && src->nt;) {
		again = false;
		for (size_t k = 0; k < 2; k++) {
			char probe[64];
			snprintf(probe, sizeof(probe), "%s%s", prefix, wrapper_prefixes[k]);
			size_t len = strlen(probe);
			bool all = len < cap;
			for (size_t i = 0; i < src->nt && all; i++)
				all = strncmp(src->t[i].name, probe, len) == 0 && src->t[i].name[len];
			if (all) {
				memcpy(prefix, probe, len + 1);
				again = true;
			}
		}
	}
}

/* Stage 0-2 DeepSpeed: the 16-bit weights the engine stored must equal the output where dtypes agree. */
static weld_status check_zero_16bit(verifier *v, weld_ckpt *src, const char *prefix, weld_error *err)
{
	const weld_deepspeed_info *ds = weld_ckpt_deepspeed(src);
	if (!ds || ds->zero_stage < 0 || ds->zero_stage > 2)
		return WELD_OK; /* ZeRO-3 model states hold no weights */
	const char *states = NULL;
	for (size_t i = 0; i < ds->nfiles && !states; i++)
		if (strcmp(base_name(ds->files[i]), "mp_rank_00_model_states.pt") == 0)
			states = ds->files[i];
	if (!states) {
		add_check(v->r, "zero_16bit", WELD_CHECK_WARN, "%s: no mp_rank_00_model_states.pt to cross-check",
			  ds->tag_dir);
		return WELD_OK;
	}
	weld_ckpt *m = NULL;
	weld_error e = {0};
	weld_status s = weld_ckpt_open(&m, states, &e);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (s) {
		add_check(v->r, "zero_16bit", WELD_CHECK_FAIL, "%s", e.message);
		return WELD_OK;
	}
	size_t compared = 0, differ = 0, sixteen = 0;
	const char *first = NULL;
	weld_dtype stored = WELD_DTYPE_INVALID;
	for (size_t k = 0; k < m->nt; k++)
		if (m->t[k].dtype == WELD_DTYPE_BF16 || m->t[k].dtype == WELD_DTYPE_F16) {
			sixteen++;
			stored = m->t[k].dtype;
		}
	for (size_t i = 0; i < v->out->nt && !s && sixteen; i++) {
		const ckpt_tensor *o = &v->out->t[i];
		if (o->dtype != WELD_DTYPE_BF16 && o->dtype != WELD_DTYPE_F16)
			continue;
		char name[4096];
		snprintf(name, sizeof(name), "module.%s%s", prefix, o->name);
		for (size_t k = 0; k < m->nt; k++) {
			const ckpt_tensor *t = &m->t[k];
			if (strcmp(t->name, name) != 0 || t->dtype != o->dtype || t->numel != o->numel)
				continue;
			bool eq;
			if ((s = same_bytes(v->out, i, m, k, &eq, &e)))
				break;
			compared++;
			if (!eq && !differ++)
				first = o->name;
			break;
		}
	}
	if (s == WELD_ERR_NOMEM)
		s = weld__nomem(err);
	else if (s)
		add_check(v->r, "zero_16bit", WELD_CHECK_FAIL, "%s", e.message);
	else if (differ)
		add_check(v->r, "zero_16bit", WELD_CHECK_FAIL,
			  "%zu of %zu tensors differ from the 16-bit weights in %s (first '%s')", differ, compared,
			  base_name(states), first);
	else if (!compared && sixteen) /* e.g. fp16 training written as bf16: nothing comparable */
		add_check(v->r, "zero_16bit", WELD_CHECK_WARN,
			  "%s holds %s weights, none of the output's dtype and name", base_name(states),
			  weld_dtype_name(stored));
	else if (compared) /* fp32 training stores no 16-bit weights: no line */
		add_check(v->r, "zero_16bit", WELD_CHECK_PASS,
			  "%zu tensors equal the 16-bit weights DeepSpeed stored in %s", compared, base_name(states));
	weld_ckpt_free(m);
	return s == WELD_ERR_NOMEM ? s : WELD_OK;
}

static weld_status check_against(verifier *v, const char *against, weld_error *err)
{
	weld_verify_report *r = v->r;
	weld_ckpt *src = NULL;
	weld_status s = weld_ckpt_open(&src, against, err);
	if (s)
		return s;
	char prefix[64];
	source_prefix(src, prefix, sizeof(prefix));
	size_t plen = strlen(prefix), nout = v->out->nt;
	const cJSON *tied = cJSON_GetObjectItemCaseSensitive(v->manifest, "tied");
	size_t *src_of = weld__calloc(nout ? nout : 1, sizeof(*src_of));
	const char **missing = weld__calloc(src->nt ? src->nt : 1, sizeof(*missing));
	const char **extra = weld__calloc(nout ? nout : 1, sizeof(*extra));
	const char **shapes = weld__calloc(nout ? nout : 1, sizeof(*shapes));
	if (!src_of || !missing || !extra || !shapes) {
		s = weld__nomem(err);
		goto done;
	}
	for (size_t i = 0; i < nout; i++)
		src_of[i] = SIZE_MAX;
	size_t nmissing = 0, nextra = 0, nshapes = 0, skipped = 0;
	for (size_t i = 0; i < src->nt; i++) {
		const ckpt_tensor *t = &src->t[i];
		const char *name = strncmp(t->name, prefix, plen) == 0 ? t->name + plen : t->name;
		size_t oi = find_out(v, name);
		/* Aliases are stored once, under their owner; so is a tied head without weld.json. */
		bool alias = t->alias_of || cJSON_GetObjectItemCaseSensitive(tied, name) ||
			     (!v->manifest && v->tie == 1 && oi == SIZE_MAX && has_suffix(name, "lm_head.weight"));
		if (alias) {
			skipped++;
			continue;
		}
		if (oi == SIZE_MAX)
			missing[nmissing++] = name;
		else
			src_of[oi] = i;
	}
	for (size_t i = 0; i < nout; i++) {
		const ckpt_tensor *o = &v->out->t[i];
		if (o->alias_of)
			continue;
		if (src_of[i] == SIZE_MAX) {
			extra[nextra++] = o->name;
		} else {
			const ckpt_tensor *t = &src->t[src_of[i]];
			if (t->ndim != o->ndim || memcmp(t->shape, o->shape, sizeof(uint64_t) * o->ndim) != 0) {
				shapes[nshapes++] = o->name;
				src_of[i] = SIZE_MAX;
			}
		}
	}
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	if (nmissing) {
		appendf(detail, sizeof(detail), "%zu source tensor%s missing from the output: ", nmissing,
			nmissing == 1 ? "" : "s");
		append_names(detail, sizeof(detail), missing, nmissing);
	}
	if (nextra) {
		appendf(detail, sizeof(detail), "%s%zu output tensor%s not in the source: ", detail[0] ? "; " : "",
			nextra, nextra == 1 ? "" : "s");
		append_names(detail, sizeof(detail), extra, nextra);
	}
	if (nshapes) {
		appendf(detail, sizeof(detail), "%s%zu shape%s differ from the source: ", detail[0] ? "; " : "",
			nshapes, nshapes == 1 ? "" : "s");
		append_names(detail, sizeof(detail), shapes, nshapes);
	}
	if (detail[0])
		add_check(r, "against_names", WELD_CHECK_FAIL, "%s", detail);
	else
		add_check(r, "against_names", WELD_CHECK_PASS,
			  "the %llu output tensors match the source's names and shapes%s%s%s%s%s%s",
			  (unsigned long long)r->tensors, skipped || plen ? " (" : "",
			  skipped ? "tied aliases folded" : "", skipped && plen ? "; " : "",
			  plen ? "prefix stripped: " : "", plen ? prefix : "", skipped || plen ? ")" : "");

	/* Values: every matched tensor, exactly the source cast to its dtype. */
	if (!(r->diffs = weld__calloc(nout ? nout : 1, sizeof(*r->diffs)))) {
		s = weld__nomem(err);
		goto done;
	}
	size_t compared = 0, inexact = 0, bad_cast = 0, nonfinite = 0, unreadable = 0;
	const char *first_inexact = NULL, *first_nonfinite = NULL, *first_cast = NULL;
	double worst_rel = 0;
	char read_error[WELD_CHECK_DETAIL_MAX] = "";
	for (size_t i = 0; i < nout; i++) {
		if (src_of[i] == SIZE_MAX)
			continue;
		const ckpt_tensor *o = &v->out->t[i], *t = &src->t[src_of[i]];
		if (!castable(t->dtype, o->dtype)) {
			if (!bad_cast++)
				first_cast = o->name;
			continue;
		}
		weld_tensor_diff *d = &r->diffs[r->ndiffs];
		if (!(d->name = weld__strdup(o->name))) {
			s = weld__nomem(err);
			goto done;
		}
		r->ndiffs++;
		weld_error e = {0};
		if ((s = compare_tensor(v, i, src, src_of[i], d, &e))) {
			if (s == WELD_ERR_NOMEM) {
				weld__nomem(err);
				goto done;
			}
			/* An unreadable tensor is a FAIL of this check, not of the run. */
			d->exact = 0;
			d->max_abs_diff = d->rel_l2 = NAN;
			if (!unreadable++)
				appendf(read_error, sizeof(read_error), "%s", e.message);
			s = WELD_OK;
			continue;
		}
		compared++;
		if (!d->exact && !inexact++)
			first_inexact = d->name;
		if (d->nan_count + d->inf_count && !nonfinite++)
			first_nonfinite = d->name;
		if (d->rel_l2 > worst_rel)
			worst_rel = d->rel_l2;
	}
	detail[0] = '\0';
	if (unreadable)
		appendf(detail, sizeof(detail), "%s%s", read_error, unreadable > 1 ? " (and more unreadable)" : "");
	if (inexact) {
		const weld_tensor_diff *d = NULL;
		for (size_t k = 0; k < r->ndiffs && !d; k++)
			if (r->diffs[k].name == first_inexact)
				d = &r->diffs[k];
		appendf(detail, sizeof(detail),
			"%s%zu of %zu tensors differ from the source cast to their dtype: '%s' "
			"(max abs diff %g, rel L2 %g)",
			detail[0] ? "; " : "", inexact, compared, first_inexact, d->max_abs_diff, d->rel_l2);
	}
	if (bad_cast)
		appendf(detail, sizeof(detail), "%s%zu tensor%s of a dtype weld cannot make from the source's: '%s'",
			detail[0] ? "; " : "", bad_cast, bad_cast == 1 ? "" : "s", first_cast);
	if (detail[0])
		add_check(r, "against_values", WELD_CHECK_FAIL, "%s", detail);
	else
		add_check(r, "against_values", WELD_CHECK_PASS,
			  "all %zu tensors equal the source cast to their dtype exactly (largest rel L2 error %g)",
			  compared, worst_rel);
	if (nonfinite) {
		const weld_tensor_diff *d = NULL;
		for (size_t k = 0; k < r->ndiffs && !d; k++)
			if (r->diffs[k].name == first_nonfinite)
				d = &r->diffs[k];
		add_check(r, "finite", WELD_CHECK_WARN, "%zu tensor%s NaN or Inf: '%s' (%llu NaN, %llu Inf)", nonfinite,
			  nonfinite == 1 ? " holds" : "s hold", first_nonfinite, (unsigned long long)d->nan_count,
			  (unsigned long long)d->inf_count);
	} else {
		add_check(r, "finite", WELD_CHECK_PASS, "no NaN or Inf in the %zu tensors compared", compared);
	}
	s = check_zero_16bit(v, src, prefix, err);
done:
	free(src_of);
	free(missing);
	free(extra);
	free(shapes);
	weld_ckpt_free(src);
	return s;
}

/* ------------------------------------------------------------------------- */

void weld_verify_report_free(weld_verify_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ndiffs; i++)
		free(r->diffs[i].name);
	free(r->diffs);
	free(r->checks);
	free(r);
}

weld_status weld_verify(const char *dir, const char *against, weld_device device, weld_verify_report **out,
			weld_error *err)
{
	weld_error scratch = {0};
	if (!err)
		err = &scratch;
	if (!out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_verify: no place for the report");
	*out = NULL;
	if (!dir || !*dir)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_verify: no folder given");
	if (!weld__is_dir(dir))
		return weld__fail(err, WELD_ERR_IO, "%s: no such folder", dir);
	verifier v = {.dir = dir, .tie = -1};
	weld_verify_report *r = calloc(1, sizeof(*r));
	weld_status s = WELD_OK;
	if (!r || !(r->checks = weld__calloc(MAX_CHECKS, sizeof(*r->checks)))) {
		free(r);
		return weld__nomem(err);
	}
	v.r = r;
	char why[sizeof(r->notice)];
	s = weld_backend_open(&v.b, device, why, sizeof(why), err);
	if (!s && why[0])
		snprintf(r->notice, sizeof(r->notice), "CUDA not used (%s); verifying on the CPU", why);
	if (!s) {
		snprintf(r->device, sizeof(r->device), "%s", weld_backend_name(v.b));
		s = list_files(&v, err);
	}
	/* The order of the lines: what is there, is it intact, is it servable, is it the source. */
	if (!s) {
		load_manifest(&v);
		s = open_output(&v, err);
	}
	if (!s)
		s = check_weight_files(&v, err);
	if (!s && v.manifest_why[0])
		add_check(r, "manifest", v.manifest_level, "%s", v.manifest_why);
	else if (!s && v.out)
		check_manifest_tensors(&v);
	if (!s && v.manifest)
		s = check_size_and_crcs(&v, err);
	if (!s)
		check_config(&v);
	if (!s && v.out && v.config)
		check_config_dtype(&v);
	if (!s && v.out)
		s = check_one_format(&v, err);
	if (!s && v.out)
		check_prefix(&v);
	if (!s && v.out)
		s = check_tied(&v, err);
	if (!s)
		check_tokenizer(&v);
	if (!s && v.out)
		s = check_metadata(&v, err);
	if (!s && against && v.out)
		s = check_against(&v, against, err);
	else if (!s && against)
		add_check(r, "against_names", WELD_CHECK_FAIL,
			  "not compared with %s: the output's weights could not be read", against);
	for (size_t i = 0; i < r->nchecks; i++) {
		r->passed += r->checks[i].level == WELD_CHECK_PASS;
		r->warnings += r->checks[i].level == WELD_CHECK_WARN;
		r->failed += r->checks[i].level == WELD_CHECK_FAIL;
	}
	weld_backend_close(v.b);
	weld_ckpt_free(v.out);
	free(v.by_name);
	cJSON_Delete(v.manifest);
	cJSON_Delete(v.config);
	weld_free_strings(v.files, v.nfiles);
	if (s) {
		weld_verify_report_free(r);
		return s;
	}
	*out = r;
	return WELD_OK;
}
