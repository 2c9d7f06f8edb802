/*
 * torch.save files (shared docs, sections A and B.9).
 *
 * Zip: "<prefix>/data.pkl" holds the pickle; each storage is the stored
 * record "<prefix>/data/<key>". Legacy: five pickles in a row (magic number,
 * protocol 1001, sys_info, the object, the sorted storage keys), then for each
 * key an 8-byte little-endian element count and the raw bytes.
 */
#include "io/torch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The legacy format's magic number 0x1950A86A20F9469CFC6C, little-endian. */
static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

/* data.pkl is small next to the tensors, but it comes from the file: cap it. */
#define PICKLE_MAX_BYTES (1ull << 30)

typedef struct legacy_record {
	const char *key;
	uint64_t offset, nbytes;
} legacy_record;

struct weld_torch {
	weld_file *file;
	weld_torch_kind kind;
	weld_zip *zip;
	weld_pickle *pk;
	weld_py *root;
	uint64_t pickle_bytes;
	legacy_record *legacy; /* sorted by key */
	size_t nlegacy;
	const char *const *allow; /* the user's extra classes, during open only */
	size_t nallow;
};

/* T's pickle reader, anew, with the user's extra classes allowed. */
static weld_status new_pickle(weld_torch *t, weld_error *err)
{
	weld_pickle_free(t->pk);
	t->pk = NULL;
	weld_status s = weld_pickle_new(&t->pk, NULL, err);
	for (size_t i = 0; !s && i < t->nallow; i++)
		s = weld_pickle_allow_global(t->pk, t->allow[i], err);
	return s;
}

bool weld_torch_sniff(const uint8_t *head, size_t n)
{
	if (n >= 4 && memcmp(head, "PK\3\4", 4) == 0)
		return true;
	/* A legacy file starts with a PROTO opcode; the magic number it pickles is checked on open. */
	return n >= 2 && head[0] == 0x80;
}

weld_torch_kind weld_torch_kind_of(const weld_torch *t)
{
	return t->kind;
}

weld_py *weld_torch_root(const weld_torch *t)
{
	return t->root;
}

uint64_t weld_torch_pickle_bytes(const weld_torch *t)
{
	return t->pickle_bytes;
}

void weld_torch_close(weld_torch *t)
{
	if (!t)
		return;
	weld_zip_close(t->zip);
	weld_pickle_free(t->pk);
	free(t->legacy);
	free(t);
}

/* The file format versions torch's PyTorchStreamReader reads (inline_container.h). */
#define TORCH_MIN_FILE_VERSION 1
#define TORCH_MAX_FILE_VERSION 10

/*
 * The archive's format version, as torch.load reads it: ".data/version",
 * else "version" (one of them must exist), parsed as strtoll does (leading
 * space, a sign, digits, anything after ignored) and within the versions
 * torch reads. torch refuses every other file, so weld does too.
 */
static weld_status check_version(weld_torch *t, weld_error *err)
{
	const weld_zip_entry *e;
	const char *rec = ".data/version";
	weld_status s;
	if (weld_zip_find(t->zip, rec, &e, NULL) != WELD_OK) {
		rec = "version";
		if (weld_zip_find(t->zip, rec, &e, NULL) != WELD_OK) {
			/* Say why when the record is there but unreadable. */
			if ((s = weld_zip_find(t->zip, rec, &e, err)) == WELD_ERR_FORMAT &&
			    strstr(err ? err->message : "", "missing record"))
				return weld__fail(err, WELD_ERR_FORMAT,
						  "%s: no 'version' record (torch.load refuses such a file)",
						  t->file->path);
			return s;
		}
	}
	char v[32] = {0};
	if (e->size >= sizeof(v))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: %s record is %llu bytes long", t->file->path, rec,
				  (unsigned long long)e->size);
	if ((s = weld_zip_read(t->zip, e, v, err)))
		return s;
	const char *p = v;
	while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		p++;
	bool neg = *p == '-';
	p += *p == '-' || *p == '+';
	if (*p < '0' || *p > '9')
		return weld__fail(err, WELD_ERR_FORMAT, "%s: %s record is not a number", t->file->path, rec);
	uint64_t n = 0;
	bool big = false;
	for (; *p >= '0' && *p <= '9'; p++)
		if (!weld__mul_u64(&n, n, 10) || !weld__add_u64(&n, n, (uint64_t)(*p - '0')))
			big = true;
	if (neg || big || n < TORCH_MIN_FILE_VERSION || n > TORCH_MAX_FILE_VERSION) {
		char shown[24];
		snprintf(shown, sizeof(shown), "%s%llu", neg && n ? "-" : "", (unsigned long long)n);
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: file format version %s is outside the %d..%d torch.load reads", t->file->path,
				  big ? "(too large)" : shown, TORCH_MIN_FILE_VERSION, TORCH_MAX_FILE_VERSION);
	}
	return WELD_OK;
}

/*
 * Records torch.load reads though weld has no use for them: their local
 * headers must be sound too (torch's miniz refuses "invalid header or
 * archive is corrupted"), so a file torch refuses is not converted.
 */
static weld_status check_torch_reads(weld_torch *t, weld_error *err)
{
	static const char *const reads[] = {".format_version", ".storage_alignment", "byteorder",
					       ".data/serialization_id"};
	for (size_t i = 0; i < weld_zip_count(t->zip); i++) {
		const weld_zip_entry *e = weld_zip_entry_at(t->zip, i), *found;
		for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++) {
			weld_status s;
			if (strcmp(e->record, reads[k]) == 0 && (s = weld_zip_find(t->zip, reads[k], &found, err)))
				return s;
		}
	}
	return WELD_OK;
}

static weld_status open_zip(weld_torch *t, weld_error *err)
{
	weld_status s = weld_zip_open(&t->zip, t->file, err);
	if (s)
		return s;
	const weld_zip_entry *e;
	/* TorchScript archives also start with PK; torch.load hands them to jit. */
	if (weld_zip_find(t->zip, "constants.pkl", &e, NULL) == WELD_OK)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: a TorchScript archive (torch.jit.save), not a checkpoint", t->file->path);
	if ((s = check_version(t, err)) || (s = check_torch_reads(t, err)))
		return s;
	if (weld_zip_find(t->zip, "byteorder", &e, NULL) == WELD_OK) {
		char order[16] = {0};
		if (e->size >= sizeof(order))
			return weld__fail(err, WELD_ERR_FORMAT, "%s: byteorder record is %llu bytes long",
					  t->file->path, (unsigned long long)e->size);
		if ((s = weld_zip_read(t->zip, e, order, err)))
			return s;
		if (strcmp(order, "big") == 0)
			return weld__fail(err, WELD_ERR_UNSUPPORTED,
					  "%s: saved on a big-endian machine; only little-endian checkpoints are supported",
					  t->file->path);
		if (strcmp(order, "little") != 0)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: byteorder record says '%s'",
					  t->file->path, order);
	}
	if ((s = weld_zip_find(t->zip, "data.pkl", &e, err)))
		return s;
	if (e->size > PICKLE_MAX_BYTES)
		return weld__fail(err, WELD_ERR_LIMIT, "%s: data.pkl is %llu bytes, over the 1 GiB limit",
				  t->file->path, (unsigned long long)e->size);
	uint8_t *buf = malloc(e->size ? (size_t)e->size : 1);
	if (!buf)
		return weld__nomem(err);
	s = weld_zip_read(t->zip, e, buf, err);
	size_t used = 0;
	if (!s && (s = weld_pickle_load(t->pk, buf, (size_t)e->size, &used, &t->root, err)))
		weld__prefix(err, "%s: data.pkl", t->file->path);
	free(buf);
	t->pickle_bytes = e->size;
	return s;
}

/* Every storage node reachable from ROOT, each shared container visited once. */
typedef struct storage_list {
	const weld_py **items;
	size_t n, cap;
} storage_list;

static bool list_push(storage_list *l, const weld_py *o)
{
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 64;
		const weld_py **items = weld__reallocarray(l->items, c, sizeof(*items));
		if (!items)
			return false;
		l->items = items;
		l->cap = c;
	}
	l->items[l->n++] = o;
	return true;
}

static bool push_new(weld_ptrset *seen, storage_list *stack, const weld_py *o)
{
	bool added;
	if (!o)
		return true;
	if (!weld_ptrset_add(seen, o, &added))
		return false;
	return !added || list_push(stack, o);
}

static weld_status collect_storages(const weld_py *root, storage_list *found, weld_error *err)
{
	weld_ptrset seen = {0};
	storage_list stack = {0};
	bool ok = push_new(&seen, &stack, root);
	while (ok && stack.n) {
		const weld_py *o = stack.items[--stack.n];
		switch (o->kind) {
		case WELD_PY_TUPLE:
		case WELD_PY_LIST:
		case WELD_PY_SET:
		case WELD_PY_SIZE:
			for (size_t i = 0; ok && i < o->seq.n; i++)
				ok = push_new(&seen, &stack, o->seq.items[i]);
			break;
		case WELD_PY_DICT:
			for (size_t i = 0; ok && i < o->dict.n; i++)
				ok = push_new(&seen, &stack, o->dict.vals[i]);
			break;
		case WELD_PY_OBJECT:
			ok = push_new(&seen, &stack, o->obj.args) && push_new(&seen, &stack, o->obj.state);
			break;
		case WELD_PY_TENSOR:
			ok = push_new(&seen, &stack, o->tensor.storage);
			break;
		case WELD_PY_STORAGE:
			ok = list_push(found, o);
			break;
		default:
			break;
		}
	}
	free(stack.items);
	weld_ptrset_clear(&seen);
	return ok ? WELD_OK : weld__nomem(err);
}

static int cmp_storage_key(const void *a, const void *b)
{
	return strcmp((*(const weld_py *const *)a)->storage.key, (*(const weld_py *const *)b)->storage.key);
}

static int cmp_record(const void *a, const void *b)
{
	return strcmp(((const legacy_record *)a)->key, ((const legacy_record *)b)->key);
}

static const legacy_record *find_legacy(const weld_torch *t, const char *key)
{
	legacy_record k = {.key = key};
	return bsearch(&k, t->legacy, t->nlegacy, sizeof(k), cmp_record);
}

static size_t storage_elem_size(const weld_py *s)
{
	return s->storage.untyped ? 1 : weld_dtype_size(s->storage.dtype);
}

/* Run the five legacy pickles from a window of the file's start. */
static weld_status legacy_pickles(weld_torch *t, const uint8_t *buf, size_t len, weld_py **keys,
				  weld_error *err)
{
	static const char *what[5] = {"magic number", "protocol version", "sys_info", "object",
				      "storage keys"};
	weld_py *v[5];
	size_t pos = 0;
	for (int i = 0; i < 5; i++) {
		size_t used = 0;
		weld_status s = weld_pickle_load(t->pk, buf + pos, len - pos, &used, &v[i], err);
		if (s)
			return s == WELD_ERR_FORMAT && strncmp(err->message, "truncated pickle", 16) == 0
				       ? WELD_ERR_FORMAT
				       : weld__prefix(err, "%s: legacy %s pickle", t->file->path, what[i]);
		pos += used;
	}
	const weld_py *m = v[0];
	if (m->kind != WELD_PY_INT || !m->i.big || m->i.nle < 10 ||
	    memcmp(m->i.le, legacy_magic, 10) != 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a torch checkpoint (bad legacy magic number)",
				  t->file->path);
	if (v[1]->kind != WELD_PY_INT || v[1]->i.big || v[1]->i.v != 1001)
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: legacy protocol version is not 1001",
				  t->file->path);
	const weld_py *le = weld_py_dict_get(v[2], "little_endian");
	if (le && le->kind == WELD_PY_BOOL && !le->b)
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: saved on a big-endian machine; only little-endian checkpoints are supported",
				  t->file->path);
	if (v[4]->kind != WELD_PY_LIST)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: legacy storage key list is not a list",
				  t->file->path);
	t->root = v[3];
	*keys = v[4];
	t->pickle_bytes = pos;
	return WELD_OK;
}

static weld_status open_legacy(weld_torch *t, weld_error *err)
{
	/*
	 * The pickles' total length is unknown until they are parsed, so parse a
	 * window of the file's start and widen it while they run off its end.
	 */
	uint64_t window = 1 << 20;
	weld_py *keys = NULL;
	weld_status s;
	for (;;) {
		if (window > t->file->size)
			window = t->file->size;
		if (window > PICKLE_MAX_BYTES)
			return weld__fail(err, WELD_ERR_LIMIT, "%s: legacy pickles exceed 1 GiB",
					  t->file->path);
		uint8_t *buf = malloc(window ? (size_t)window : 1);
		if (!buf)
			return weld__nomem(err);
		s = weld_file_pread(t->file, buf, (size_t)window, 0, err);
		if (!s) {
			s = new_pickle(t, err);
			if (!s)
				s = legacy_pickles(t, buf, (size_t)window, &keys, err);
		}
		free(buf);
		bool truncated = s == WELD_ERR_FORMAT && strncmp(err->message, "truncated pickle", 16) == 0;
		if (!truncated)
			break;
		if (window == t->file->size)
			return weld__prefix(err, "%s: truncated legacy checkpoint", t->file->path);
		window *= 4;
	}
	if (s)
		return s;

	storage_list found = {0};
	if ((s = collect_storages(t->root, &found, err))) {
		free(found.items);
		return s;
	}
	/*
	 * Sorted by key, so each listed key finds its dtype by bisection. With no
	 * storage the list is NULL, which qsort and bsearch must not be given.
	 */
	if (found.n)
		qsort(found.items, found.n, sizeof(*found.items), cmp_storage_key);
	t->legacy = weld__calloc(keys->seq.n, sizeof(*t->legacy));
	if (!t->legacy) {
		free(found.items);
		return weld__nomem(err);
	}
	uint64_t pos = t->pickle_bytes;
	for (size_t i = 0; i < keys->seq.n && !s; i++) {
		const weld_py *k = keys->seq.items[i];
		if (k->kind != WELD_PY_STR) {
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: legacy storage key %zu is not a string",
				       t->file->path, i);
			break;
		}
		weld_py probe = {.kind = WELD_PY_STORAGE};
		probe.storage.key = k->str.s;
		const weld_py *pp = &probe;
		const weld_py **hit =
			found.n ? bsearch(&pp, found.items, found.n, sizeof(*found.items), cmp_storage_key) : NULL;
		const weld_py *st = hit ? *hit : NULL;
		if (!st) {
			s = weld__fail(err, WELD_ERR_FORMAT,
				       "%s: legacy storage '%s' is listed but no tensor uses it",
				       t->file->path, k->str.s);
			break;
		}
		uint8_t cnt[8];
		if ((s = weld_file_pread(t->file, cnt, 8, pos, err)))
			break;
		uint64_t count = 0, nbytes;
		for (int b = 7; b >= 0; b--)
			count = count << 8 | cnt[b];
		if (count != st->storage.numel) {
			s = weld__fail(err, WELD_ERR_FORMAT,
				       "%s: legacy storage '%s' holds %llu elements but the pickle says %llu",
				       t->file->path, k->str.s, (unsigned long long)count,
				       (unsigned long long)st->storage.numel);
			break;
		}
		if (!weld__mul_u64(&nbytes, count, storage_elem_size(st)) || !weld__add_u64(&pos, pos, 8) ||
		    pos > t->file->size || nbytes > t->file->size - pos) {
			s = weld__fail(err, WELD_ERR_FORMAT, "%s: truncated: legacy storage '%s' runs past the end of the file",
				       t->file->path, k->str.s);
			break;
		}
		t->legacy[i] = (legacy_record){.key = k->str.s, .offset = pos, .nbytes = nbytes};
		t->nlegacy++;
		pos += nbytes;
	}
	free(found.items);
	if (s)
		return s;
	qsort(t->legacy, t->nlegacy, sizeof(*t->legacy), cmp_record);
	for (size_t i = 1; i < t->nlegacy; i++)
		if (strcmp(t->legacy[i - 1].key, t->legacy[i].key) == 0)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: legacy storage '%s' is listed twice",
					  t->file->path, t->legacy[i].key);
	return WELD_OK;
}

weld_status weld_torch_open(weld_torch **out, weld_file *f, const char *const *allow, size_t nallow, weld_error *err)
{
	*out = NULL;
	uint8_t head[4] = {0};
	weld_status s;
	if (f->size < 4)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: too small to be a torch checkpoint (%llu bytes)",
				  f->path, (unsigned long long)f->size);
	if ((s = weld_file_pread(f, head, sizeof(head), 0, err)))
		return s;
	if (!weld_torch_sniff(head, sizeof(head)))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a torch checkpoint", f->path);
	weld_torch *t = calloc(1, sizeof(*t));
	if (!t)
		return weld__nomem(err);
	t->file = f;
	t->kind = head[0] == 'P' ? WELD_TORCH_ZIP : WELD_TORCH_LEGACY;
	t->allow = allow;
	t->nallow = nallow;
	s = new_pickle(t, err);
	if (!s)
		s = t->kind == WELD_TORCH_ZIP ? open_zip(t, err) : open_legacy(t, err);
	if (s) {
		weld_torch_close(t);
		return s;
	}
	t->allow = NULL; /* borrowed for the open only */
	t->nallow = 0;
	*out = t;
	return WELD_OK;
}

weld_status weld_torch_storage_range(weld_torch *t, const weld_py *storage, weld_torch_storage *out,
				     weld_error *err)
{
	uint64_t want;
	if (storage->kind != WELD_PY_STORAGE)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: tensor without a storage", t->file->path);
	if (!weld__mul_u64(&want, storage->storage.numel, storage_elem_size(storage)))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: storage '%s' size overflows", t->file->path,
				  storage->storage.key);
	if (t->kind == WELD_TORCH_LEGACY) {
		const legacy_record *r = find_legacy(t, storage->storage.key);
		if (!r)
			return weld__fail(err, WELD_ERR_FORMAT, "%s: missing storage '%s'", t->file->path,
					  storage->storage.key);
		*out = (weld_torch_storage){.offset = r->offset, .nbytes = r->nbytes, .entry = NULL};
		return WELD_OK;
	}
	char record[512];
	if (snprintf(record, sizeof(record), "data/%s", storage->storage.key) >= (int)sizeof(record))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: storage key too long", t->file->path);
	const weld_zip_entry *e;
	weld_status s = weld_zip_find(t->zip, record, &e, err);
	if (s)
		return s;
	if (e->size != want)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: record '%s' holds %llu bytes but its storage needs %llu", t->file->path,
				  record, (unsigned long long)e->size, (unsigned long long)want);
	*out = (weld_torch_storage){.offset = e->data_offset, .nbytes = e->size, .entry = e};
	return WELD_OK;
}
