/*
 * The safetensors writer (safetensors.h): a header byte-identical to the
 * Python writer's, and a plan laid out as model.safetensors.
 */
#include "output/safetensors.h"

#include "io/safetensors.h"
#include "output/shards.h"
#include "output/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A JSON string escaped exactly as serde_json writes it. */
static void put_json_string(weld_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	weld__buf_put(b, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		weld__buf_put(b, run, (size_t)(s - run));
		run = s + 1;
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		weld__buf_put(b, esc, n);
	}
	weld__buf_put(b, run, (size_t)(s - run));
	weld__buf_put(b, "\"", 1);
}

/* The Python writer's order: dtype descending, then name bytewise ascending. */
static int cmp_out(const void *a, const void *b)
{
	const weld_st_out_tensor *x = a, *y = b;
	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Every tensor and metadata entry is one the reader would accept; sets each tensor's nbytes. */
static weld_status check_inputs(weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
				const char *const *meta_vals, size_t nmeta, weld_error *err)
{
	char nb[WELD_ST_SHOW_BUF], sb[400];
	for (size_t i = 0; i < n; i++) {
		weld_st_out_tensor *t = &tensors[i];
		int which;
		if (!t->name)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor %zu has no name", i);
		if (!weld__utf8_valid(t->name, strlen(t->name), false))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor name '%s' is not valid UTF-8", weld__st_show(nb, t->name));
		if (strcmp(t->name, "__metadata__") == 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor name '__metadata__' is reserved by safetensors");
		if (!weld_dtype_name(t->dtype))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s': invalid dtype %d", weld__st_show(nb, t->name),
					  (int)t->dtype);
		if (t->ndim > WELD_MAX_DIMS || (t->ndim && !t->shape))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s': invalid shape (%zu dimensions)",
					  weld__st_show(nb, t->name), t->ndim);
		if (!weld__st_tensor_bytes(t->dtype, t->shape, t->ndim, &t->nbytes, &which))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s': %s %s is %s",
					  weld__st_show(nb, t->name), weld_dtype_name(t->dtype),
					  weld__st_show_shape(sb, t->shape, t->ndim),
					  which == 2 ? "not a whole number of bytes" : "more bytes than fit in 64 bits");
	}
	for (size_t i = 0; i < nmeta; i++) {
		if (!meta_keys[i] || !meta_vals[i])
			return weld__fail(err, WELD_ERR_INVALID_ARG, "metadata entry %zu is NULL", i);
		if (!weld__utf8_valid(meta_keys[i], strlen(meta_keys[i]), false) ||
		    !weld__utf8_valid(meta_vals[i], strlen(meta_vals[i]), false))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "metadata entry %zu is not valid UTF-8", i);
	}
	return WELD_OK;
}

/* No tensor name and no metadata key twice. */
static weld_status check_unique(const weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
				size_t nmeta, weld_error *err)
{
	char nb[WELD_ST_SHOW_BUF];
	const char *dup = NULL;
	const char **names = weld__reallocarray(NULL, n ? n : 1, sizeof(*names));
	if (!names)
		return weld__nomem(err);
	for (size_t i = 0; i < n; i++)
		names[i] = tensors[i].name;
	bool ok = weld__find_duplicate(names, n, &dup);
	free(names);
	if (!ok)
		return weld__nomem(err);
	if (dup)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "duplicate tensor name '%s'", weld__st_show(nb, dup));
	if (!weld__find_duplicate(meta_keys, nmeta, &dup))
		return weld__nomem(err);
	if (dup)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "duplicate metadata key '%s'", weld__st_show(nb, dup));
	return WELD_OK;
}

/* Compact JSON in the order the Rust Metadata serializer uses, after an 8-byte placeholder. */
static void put_header_json(weld_buf *b, const weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
			    const char *const *meta_vals, size_t nmeta)
{
	weld__buf_put(b, "\0\0\0\0\0\0\0\0{", 9);
	bool first = true;
	if (nmeta) {
		/* nmeta == 0 stands for Python's metadata=None: no __metadata__ key at all. */
		weld__buf_str(b, "\"__metadata__\":{");
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				weld__buf_put(b, ",", 1);
			put_json_string(b, meta_keys[i]);
			weld__buf_put(b, ":", 1);
			put_json_string(b, meta_vals[i]);
		}
		weld__buf_put(b, "}", 1);
		first = false;
	}
	for (size_t i = 0; i < n; i++) {
		const weld_st_out_tensor *t = &tensors[i];
		if (!first)
			weld__buf_put(b, ",", 1);
		first = false;
		put_json_string(b, t->name);
		weld__buf_str(b, ":{\"dtype\":\"");
		weld__buf_str(b, weld_dtype_name(t->dtype));
		weld__buf_str(b, "\",\"shape\":[");
		for (size_t d = 0; d < t->ndim; d++) {
			if (d)
				weld__buf_put(b, ",", 1);
			weld__buf_u64(b, t->shape[d]);
		}
		weld__buf_str(b, "],\"data_offsets\":[");
		weld__buf_u64(b, t->offset);
		weld__buf_put(b, ",", 1);
		weld__buf_u64(b, t->offset + t->nbytes);
		weld__buf_str(b, "]}");
	}
	weld__buf_put(b, "}", 1);
	/* Pad with spaces so the data buffer starts 8-aligned; N counts the padding. */
	weld__buf_fill(b, ' ', (8 - b->len % 8) % 8);
}

weld_status weld_st_build_header(weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
				 const char *const *meta_vals, size_t nmeta, uint8_t **out_header,
				 size_t *out_len, uint64_t *out_data_len, weld_error *err)
{
	if (!out_header || !out_len || !out_data_len || (n && !tensors) || (nmeta && (!meta_keys || !meta_vals)))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_st_build_header: missing argument");
	*out_header = NULL;
	*out_len = 0;
	*out_data_len = 0;
	weld_status s = check_inputs(tensors, n, meta_keys, meta_vals, nmeta, err);
	if (!s)
		s = check_unique(tensors, n, meta_keys, nmeta, err);
	if (s)
		return s;
	if (n)
		qsort(tensors, n, sizeof(*tensors), cmp_out);
	uint64_t offset = 0;
	for (size_t i = 0; i < n; i++) {
		tensors[i].offset = offset;
		if (!weld__add_u64(&offset, offset, tensors[i].nbytes))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensors total more bytes than fit in 64 bits");
	}
	weld_buf b = {0};
	put_header_json(&b, tensors, n, meta_keys, meta_vals, nmeta);
	if (b.failed) {
		free(b.p);
		return weld__nomem(err);
	}
	uint64_t hlen = (uint64_t)b.len - 8;
	if (hlen > WELD_ST_HEADER_MAX) {
		free(b.p);
		return weld__fail(err, WELD_ERR_LIMIT, "header of %llu bytes exceeds the %llu-byte limit",
				  (unsigned long long)hlen, (unsigned long long)WELD_ST_HEADER_MAX);
	}
	for (int i = 0; i < 8; i++)
		b.p[i] = (uint8_t)(hlen >> (8 * i));
	*out_header = b.p;
	*out_len = b.len;
	*out_data_len = offset;
	return WELD_OK;
}

/*
 * The tensors MEMBERS[0..M) of P laid out as one safetensors file FILE with
 * __metadata__ {"format": "pt"} (what save_pretrained writes in every file):
 * ORDER[0..M) gets them in the file's order, offsets and file set.
 */
static weld_status layout_file(const weld_plan *p, const size_t *members, size_t m, uint32_t file,
			       weld_plan_tensor *order, uint8_t **header, size_t *header_len, uint64_t *file_size,
			       weld_error *err)
{
	static const char *const key[] = {"format"}, *const val[] = {"pt"};
	weld_st_out_tensor *st = weld__calloc(m ? m : 1, sizeof(*st));
	uint64_t data_len;
	if (!st)
		return weld__nomem(err);
	for (size_t j = 0; j < m; j++) {
		const weld_plan_tensor *t = &p->t[members[j]];
		st[j] = (weld_st_out_tensor){t->name, t->dtype, t->ndim, t->shape, 0, 0, members[j]};
	}
	weld_status s = weld_st_build_header(st, m, key, val, 1, header, header_len, &data_len, err);
	for (size_t j = 0; !s && j < m; j++) {
		order[j] = p->t[st[j].index];
		order[j].offset = *header_len + st[j].offset;
		order[j].file = file;
	}
	if (!s)
		*file_size = *header_len + data_len;
	free(st);
	return s;
}

weld_status weld_st_layout(weld_plan *p, uint8_t **header, size_t *header_len, uint64_t *file_size,
			   weld_error *err)
{
	size_t *all = weld__calloc(p->nt ? p->nt : 1, sizeof(*all));
	weld_plan_tensor *order = weld__calloc(p->nt ? p->nt : 1, sizeof(*order));
	weld_status s = all && order ? WELD_OK : weld__nomem(err);
	for (size_t i = 0; !s && i < p->nt; i++)
		all[i] = i;
	if (!s)
		s = layout_file(p, all, p->nt, 0, order, header, header_len, file_size, err);
	/* The plan takes the file's order, so that tensor i is the i-th in the file. */
	if (!s)
		memcpy(p->t, order, p->nt * sizeof(*order));
	free(all);
	free(order);
	return s;
}

/* What a safetensors writer keeps between its steps: each file's header. */
typedef struct st_state {
	uint8_t **header;
	size_t *len;
	size_t n;
} st_state;

static void st_free(void *p)
{
	st_state *s = p;
	for (size_t i = 0; i < s->n; i++)
		free(s->header[i]);
	free(s->header);
	free(s->len);
	free(s);
}

static weld_status st_state_new(weld_writer *w, size_t n, weld_error *err)
{
	st_state *s = calloc(1, sizeof(*s));
	if (!s)
		return weld__nomem(err);
	w->state = s;
	s->header = weld__calloc(n, sizeof(*s->header));
	s->len = weld__calloc(n, sizeof(*s->len));
	if (!s->header || !s->len)
		return weld__nomem(err);
	s->n = n;
	return WELD_OK;
}

/*
 * P over the NFILES shards FILE_OF gives: the plan in shard order, each
 * shard laid out as its own file, W's files named as transformers names them.
 */
static weld_status layout_shards(weld_writer *w, weld_plan *p, const uint32_t *file_of, size_t nfiles,
				 uint64_t *total, weld_error *err)
{
	st_state *st = w->state;
	size_t *members = weld__calloc(p->nt, sizeof(*members)), *first = weld__calloc(nfiles + 1, sizeof(*first));
	weld_plan_tensor *order = weld__calloc(p->nt, sizeof(*order));
	w->files = weld__calloc(nfiles, sizeof(*w->files));
	weld_status s = members && first && order && w->files ? WELD_OK : weld__nomem(err);
	/* Each shard's tensors, in plan order: a counting sort by shard. */
	for (size_t i = 0; !s && i < p->nt; i++)
		first[file_of[i] + 1]++;
	for (size_t k = 0; !s && k < nfiles; k++)
		first[k + 1] += first[k];
	for (size_t i = 0; !s && i < p->nt; i++)
		members[first[file_of[i]]++] = i;
	for (size_t k = nfiles; !s && k > 0; k--)
		first[k] = first[k - 1]; /* filling moved each start to the next shard's; put them back */
	if (!s)
		first[0] = 0;
	*total = 0;
	for (size_t k = 0; !s && k < nfiles; k++) {
		size_t m = first[k + 1] - first[k];
		s = layout_file(p, members + first[k], m, (uint32_t)k, order + first[k], &st->header[k], &st->len[k],
				&w->files[k].size, err);
		weld__shard_name(w->files[k].name, sizeof(w->files[k].name), k, nfiles);
		if (!s && !weld__add_u64(total, *total, w->files[k].size))
			s = weld__fail(err, WELD_ERR_INVALID_ARG, "shards total more bytes than fit in 64 bits");
	}
	if (!s) {
		memcpy(p->t, order, p->nt * sizeof(*order));
		w->nfiles = nfiles;
	}
	free(members);
	free(first);
	free(order);
	return s;
}

/*
 * One model.safetensors, or with a shard limit the shards and index
 * transformers writes (one file still when everything fits one shard, as
 * there: no index then).
 */
static weld_status st_layout(weld_writer *w, weld_plan *p, uint64_t *file_size, weld_error *err)
{
	uint32_t *file_of = NULL;
	size_t nfiles = 1;
	weld_status s = WELD_OK;
	if (w->sharded && p->nt) {
		file_of = weld__calloc(p->nt, sizeof(*file_of));
		s = file_of ? weld__shard_split(p, w->shard_limit, file_of, &nfiles, err) : weld__nomem(err);
	}
	if (!s)
		s = st_state_new(w, nfiles, err);
	if (!s && nfiles > 1)
		s = weld__shard_index(p, file_of, nfiles, &w->index, &w->index_len, err);
	if (!s && nfiles > 1)
		s = layout_shards(w, p, file_of, nfiles, file_size, err);
	else if (!s) {
		st_state *st = w->state;
		s = weld_st_layout(p, &st->header[0], &st->len[0], file_size, err);
	}
	free(file_of);
	return s;
}

static weld_status st_write_head(weld_writer *w, size_t file, int fd, const char *path, weld_error *err)
{
	const st_state *s = w->state;
	return weld_pwrite_all(fd, path, s->header[file], s->len[file], 0, err);
}

/* Nothing follows the tensors: the file's CRC is the header's and its tensors', in order. */
static weld_status st_finish(weld_writer *w, size_t file, const weld_plan *p, int fd, const char *path,
			     const uint32_t *tensor_crcs, uint32_t *file_crc, weld_error *err)
{
	const st_state *s = w->state;
	(void)fd, (void)path, (void)err;
	*file_crc = weld__crc32(0, s->header[file], s->len[file]);
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].file == file)
			*file_crc = weld__crc32_combine(*file_crc, tensor_crcs[i], p->t[i].nbytes);
	return WELD_OK;
}

const weld_writer_iface weld_writer_safetensors = {
	.file_name = "model.safetensors",
	.layout = st_layout,
	.write_head = st_write_head,
	.finish = st_finish,
	.free_state = st_free,
};
