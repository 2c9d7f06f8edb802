/*
 * pytorch_model.bin writer (see torch_bin.h and shared docs, sections A
 * and B): the archive torch.save (>= 2.7, miniz underneath) produces for a
 * plain dict of contiguous CPU tensors, laid out up front so that tensor
 * bytes can be pwritten straight to their final offsets.
 *
 * Records, in torch's order: data.pkl, .format_version "1",
 * .storage_alignment "64", byteorder "little", data/0..data/N-1, version
 * "3\n", .data/serialization_id. Every record is stored, its data 64-byte
 * aligned through an "FB" local extra field of 'Z' bytes; local headers carry
 * CRC and sizes 0 (flag bit 3) and non-empty records are followed by a data
 * descriptor (24 bytes when the entry carries a ZIP64 extra field). Times and
 * dates are 0 and "version made by/needed" 0, as torch 2.11 and 2.15 write them, so
 * apart from the serialization id the file is byte-identical to torch.save's.
 *
 * .data/serialization_id (informational; torch hashes with std::hash): 20
 * zero-padded decimal digits of the FNV-1a 64-bit hash of the record names
 * that precede it (after the prefix, each followed by a NUL byte), then 20
 * zero-padded digits of the CRC-32 of those records' data concatenated.
 *
 * data.pkl is what CPython's C pickler emits for torch.save at protocol 2:
 * a memo entry for every string, non-empty tuple, global and reduced object;
 * names and storage keys are distinct string objects in torch (even a name
 * "0" next to storage key "0", checked against torch 2.15 / CPython 3.11),
 * while "storage", "cpu" and the globals are pickled once and then fetched.
 */
#include "output/torch_bin.h"

#include "output/writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TW_ALIGN 64
#define TW_U32_MAX 0xFFFFFFFFu
#define TW_LOCAL_HEADER 30
#define TW_CENTRAL_HEADER 46
#define TW_EOCD64 56
#define TW_LOCATOR 20
#define TW_EOCD 22
#define TW_SID_LEN 40
#define TW_PICKLE_BATCH 1000 /* CPython's BATCHSIZE for SETITEMS */

/* Legacy typed-storage classes (frozen in torch); NULL: UntypedStorage + _rebuild_tensor_v3. */
static const char *const storage_class[WELD_DTYPE_COUNT] = {
	[WELD_DTYPE_BOOL] = "BoolStorage",
	[WELD_DTYPE_U8] = "ByteStorage",
	[WELD_DTYPE_I8] = "CharStorage",
	[WELD_DTYPE_I16] = "ShortStorage",
	[WELD_DTYPE_F16] = "HalfStorage",
	[WELD_DTYPE_BF16] = "BFloat16Storage",
	[WELD_DTYPE_I32] = "IntStorage",
	[WELD_DTYPE_F32] = "FloatStorage",
	[WELD_DTYPE_C64] = "ComplexFloatStorage",
	[WELD_DTYPE_F64] = "DoubleStorage",
	[WELD_DTYPE_I64] = "LongStorage",
};

/* One byte of an opcode or its argument. */
static void buf_u8(weld_buf *b, unsigned v)
{
	weld__buf_le(b, v, 1);
}

/* ------------------------------------------------------------------------- */
/* Pickle (protocol 2), mirroring CPython's _pickle.c choices.               */

typedef struct pk {
	weld_buf b;
	uint64_t memo; /* next memo index */
	/* memo index + 1 of objects pickled once and fetched afterwards; 0 = not yet */
	uint64_t m_v2, m_v3, m_odict, m_untyped, m_storage, m_cpu;
	uint64_t m_class[WELD_DTYPE_COUNT], m_dtype[WELD_DTYPE_COUNT];
} pk;

/* Memoize the object just written (BINPUT / LONG_BINPUT); returns its index + 1. */
static uint64_t pk_put(pk *p)
{
	uint64_t idx = p->memo++;
	if (idx < 256) {
		buf_u8(&p->b, 'q');
		buf_u8(&p->b, (unsigned)idx);
	} else {
		if (idx > TW_U32_MAX)
			p->b.failed = true;
		buf_u8(&p->b, 'r');
		weld__buf_le(&p->b, idx, 4);
	}
	return idx + 1;
}

static void pk_get(pk *p, uint64_t slot)
{
	uint64_t idx = slot - 1;
	if (idx < 256) {
		buf_u8(&p->b, 'h');
		buf_u8(&p->b, (unsigned)idx);
	} else {
		buf_u8(&p->b, 'j');
		weld__buf_le(&p->b, idx, 4);
	}
}

static void pk_global(pk *p, uint64_t *slot, const char *module, const char *name)
{
	if (*slot) {
		pk_get(p, *slot);
		return;
	}
	buf_u8(&p->b, 'c');
	weld__buf_put(&p->b, module, strlen(module));
	buf_u8(&p->b, '\n');
	weld__buf_put(&p->b, name, strlen(name));
	buf_u8(&p->b, '\n');
	*slot = pk_put(p);
}

/* BINUNICODE; SLOT (may be NULL) memoizes a string object pickled repeatedly. */
static void pk_str(pk *p, const char *s, size_t n, uint64_t *slot)
{
	if (slot && *slot) {
		pk_get(p, *slot);
		return;
	}
	buf_u8(&p->b, 'X');
	weld__buf_le(&p->b, n, 4);
	weld__buf_put(&p->b, s, n);
	uint64_t idx = pk_put(p);
	if (slot)
		*slot = idx;
}

/* Non-negative int: BININT1, BININT2, BININT, or LONG1 beyond int32. */
static void pk_int(pk *p, uint64_t v)
{
	if (v <= 0xFF) {
		buf_u8(&p->b, 'K');
		buf_u8(&p->b, (unsigned)v);
	} else if (v <= 0xFFFF) {
		buf_u8(&p->b, 'M');
		weld__buf_le(&p->b, v, 2);
	} else if (v <= 0x7FFFFFFF) {
		buf_u8(&p->b, 'J');
		weld__buf_le(&p->b, v, 4);
	} else {
		/* CPython: bit_length / 8 + 1 bytes, so the sign bit stays clear
		 * (at most 8: callers pass values <= INT64_MAX). */
		size_t bits = 64 - (size_t)__builtin_clzll(v);
		size_t n = bits / 8 + 1;
		buf_u8(&p->b, 0x8A);
		buf_u8(&p->b, (unsigned)n);
		weld__buf_le(&p->b, v, n);
	}
}

/* A fresh tuple of ints: EMPTY_TUPLE (never memoized), TUPLE1..3, or MARK ... TUPLE. */
static void pk_int_tuple(pk *p, const uint64_t *v, size_t n)
{
	if (n == 0) {
		buf_u8(&p->b, ')');
		return;
	}
	if (n > 3)
		buf_u8(&p->b, '(');
	for (size_t i = 0; i < n; i++)
		pk_int(p, v[i]);
	buf_u8(&p->b, n > 3 ? 't' : 0x85 + (unsigned)(n - 1));
	pk_put(p);
}

/*
 * One dict entry NAME -> tensor as torch reduces it:
 * _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()), or
 * _rebuild_tensor_v3(..., dtype) over an UntypedStorage for newer dtypes.
 */
static void pk_tensor(pk *p, const weld_tw_tensor *t, size_t key, const uint64_t *stride)
{
	const char *cls = storage_class[t->dtype];
	char keybuf[24];
	int keylen = snprintf(keybuf, sizeof(keybuf), "%zu", key);

	pk_str(p, t->name, strlen(t->name), NULL);
	if (cls)
		pk_global(p, &p->m_v2, "torch._utils", "_rebuild_tensor_v2");
	else
		pk_global(p, &p->m_v3, "torch._utils", "_rebuild_tensor_v3");
	buf_u8(&p->b, '(');
	/* persistent id ('storage', class, key, 'cpu', numel) */
	buf_u8(&p->b, '(');
	pk_str(p, "storage", 7, &p->m_storage);
	if (cls)
		pk_global(p, &p->m_class[t->dtype], "torch", cls);
	else
		pk_global(p, &p->m_untyped, "torch.storage", "UntypedStorage");
	pk_str(p, keybuf, (size_t)keylen, NULL);
	pk_str(p, "cpu", 3, &p->m_cpu);
	/* typed storages count elements, untyped ones bytes */
	pk_int(p, cls ? t->nbytes / weld_dtype_size(t->dtype) : t->nbytes);
	buf_u8(&p->b, 't');
	pk_put(p);
	buf_u8(&p->b, 'Q');
	pk_int(p, 0); /* storage_offset */
	pk_int_tuple(p, t->shape, t->ndim);
	pk_int_tuple(p, stride, t->ndim);
	buf_u8(&p->b, 0x89); /* requires_grad = False */
	pk_global(p, &p->m_odict, "collections", "OrderedDict");
	buf_u8(&p->b, ')');
	buf_u8(&p->b, 'R');
	pk_put(p);
	if (!cls)
		pk_global(p, &p->m_dtype[t->dtype], "torch", weld__dtype_torch_name(t->dtype));
	buf_u8(&p->b, 't');
	pk_put(p);
	buf_u8(&p->b, 'R');
	pk_put(p);
}

/* ------------------------------------------------------------------------- */
/* Layout                                                                     */

typedef struct tw_record {
	char *name;   /* full name, "<prefix>/<record>" */
	size_t name_len;
	size_t prefix_len; /* bytes of "<prefix>/" */
	uint64_t size;
	uint64_t local_offset, data_offset;
	uint8_t *local; /* the local header, data_offset - local_offset bytes */
	size_t local_len;
	const uint8_t *content; /* small records' bytes; NULL for tensors and the id */
	uint32_t crc;           /* small records */
	size_t tensor;          /* tensor index, or SIZE_MAX */
	bool zip64;             /* entry carries a ZIP64 extra field */
} tw_record;

struct weld_tw_layout {
	tw_record *recs;
	size_t nrecs;
	size_t ntensors;
	size_t sid; /* index of .data/serialization_id */
	uint8_t *pkl;
	size_t pkl_len;
	uint64_t cd_offset, cd_size, eocd64_offset, file_size;
};

static uint64_t desc_len(const tw_record *r)
{
	return r->size == 0 ? 0 : r->zip64 ? 24 : 16;
}

/* Bytes of the central-directory ZIP64 extra field (0 when none). */
static uint64_t central_extra_len(const tw_record *r)
{
	if (!r->zip64)
		return 0;
	return 4 + (r->size >= TW_U32_MAX ? 16 : 0) + (r->local_offset >= TW_U32_MAX ? 8 : 0);
}

void weld_tw_layout_free(weld_tw_layout *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nrecs; i++) {
		free(l->recs[i].name);
		free(l->recs[i].local);
	}
	free(l->recs);
	free(l->pkl);
	free(l);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check every tensor; the first problem is the error. */
static weld_status check_tensors(const weld_tw_tensor *t, size_t n, weld_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *name = t[i].name;
		if (!name)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "torch writer: tensor %zu has no name", i);
		size_t len = strlen(name);
		if (len > TW_U32_MAX || !weld__utf8_valid(name, len, true))
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "torch writer: tensor name '%s' is not valid UTF-8 (or too long)", name);
		size_t esize = weld_dtype_size(t[i].dtype);
		if (esize == 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "torch writer: tensor '%s' has an invalid dtype",
					  name);
		if (weld__dtype_is_sub_byte(t[i].dtype))
			return weld__fail(err, WELD_ERR_UNSUPPORTED,
					  "torch writer: tensor '%s' is %s, which no torch dtype holds one element of", name,
					  weld_dtype_name(t[i].dtype));
		if (t[i].ndim > WELD_MAX_DIMS || (t[i].ndim > 0 && !t[i].shape))
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "torch writer: tensor '%s' has a bad shape (%zu dims)", name, t[i].ndim);
		uint64_t numel = 1, nbytes;
		for (size_t d = 0; d < t[i].ndim; d++) {
			if (t[i].shape[d] > (uint64_t)INT64_MAX || !weld__mul_u64(&numel, numel, t[i].shape[d]))
				return weld__fail(err, WELD_ERR_INVALID_ARG,
						  "torch writer: tensor '%s': shape overflows", name);
		}
		if (!weld__mul_u64(&nbytes, numel, esize) || nbytes != t[i].nbytes)
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "torch writer: tensor '%s': nbytes %" PRIu64 " does not match its shape and dtype %s",
					  name, t[i].nbytes, weld_dtype_name(t[i].dtype));
	}
	if (n < 2)
		return WELD_OK;
	const char **names = weld__calloc(n, sizeof(*names));
	if (!names)
		return weld__nomem(err);
	for (size_t i = 0; i < n; i++)
		names[i] = t[i].name;
	qsort(names, n, sizeof(*names), cmp_name);
	weld_status s = WELD_OK;
	for (size_t i = 1; i < n && s == WELD_OK; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			s = weld__fail(err, WELD_ERR_INVALID_ARG, "torch writer: duplicate tensor name '%s'",
				       names[i]);
	free(names);
	return s;
}

/* data.pkl for the dict; strides are C-contiguous as torch computes them. */
static weld_status build_pickle(weld_tw_layout *l, const weld_tw_tensor *t, size_t n, weld_error *err)
{
	pk *p = calloc(1, sizeof(*p));
	if (!p)
		return weld__nomem(err);
	buf_u8(&p->b, 0x80); /* PROTO 2 */
	buf_u8(&p->b, 2);
	buf_u8(&p->b, '}');
	pk_put(p);
	/* CPython: a lone item is a SETITEM; otherwise batches of 1000 in MARK ... SETITEMS,
	 * with an empty batch after a full last one. */
	size_t i = 0;
	do {
		size_t batch = 0;
		if (n > 1)
			buf_u8(&p->b, '(');
		for (; i < n && batch < TW_PICKLE_BATCH; i++, batch++) {
			uint64_t stride[WELD_MAX_DIMS];
			uint64_t acc = 1;
			for (size_t d = t[i].ndim; d-- > 0;) {
				stride[d] = acc;
				uint64_t dim = t[i].shape[d] ? t[i].shape[d] : 1;
				if (!weld__mul_u64(&acc, acc, dim) || (d > 0 && acc > (uint64_t)INT64_MAX)) {
					free(p->b.p);
					free(p);
					return weld__fail(err, WELD_ERR_INVALID_ARG,
							  "torch writer: tensor '%s': strides overflow", t[i].name);
				}
			}
			pk_tensor(p, &t[i], i, stride);
		}
		if (n == 1)
			buf_u8(&p->b, 's');
		else if (n > 1)
			buf_u8(&p->b, 'u');
		if (batch < TW_PICKLE_BATCH)
			break;
	} while (true);
	buf_u8(&p->b, '.');
	if (p->b.failed) {
		free(p->b.p);
		free(p);
		return weld__nomem(err);
	}
	l->pkl = p->b.p;
	l->pkl_len = p->b.len;
	free(p);
	return WELD_OK;
}

/* Build the local header of R at R->local_offset (sets data_offset). */
static weld_status plan_record(tw_record *r, uint64_t pos, weld_error *err)
{
	r->local_offset = pos;
	r->zip64 = r->size >= TW_U32_MAX || pos >= TW_U32_MAX;
	uint64_t z64 = 0;
	if (r->zip64)
		z64 = 4 + (r->size >= TW_U32_MAX ? 16 : 0) + (pos >= TW_U32_MAX ? 8 : 0);
	/* torch's getPadding: where the data starts with an empty FB field, then pad to 64 */
	uint64_t start;
	if (!weld__add_u64(&start, pos, TW_LOCAL_HEADER + r->name_len + 4 + z64))
		return weld__fail(err, WELD_ERR_LIMIT, "torch writer: archive offsets overflow");
	uint64_t pad = (TW_ALIGN - start % TW_ALIGN) % TW_ALIGN;
	if (!weld__add_u64(&r->data_offset, start, pad))
		return weld__fail(err, WELD_ERR_LIMIT, "torch writer: archive offsets overflow");

	weld_buf b = {0};
	weld__buf_le(&b, 0x04034B50, 4);
	weld__buf_le(&b, 0, 2); /* version needed */
	weld__buf_le(&b, r->size ? 0x0808 : 0x0800, 2);
	weld__buf_le(&b, 0, 2); /* stored */
	weld__buf_le(&b, 0, 4); /* time, date */
	weld__buf_le(&b, 0, 4); /* CRC: in the descriptor */
	weld__buf_le(&b, 0, 8); /* sizes: in the descriptor */
	weld__buf_le(&b, r->name_len, 2);
	weld__buf_le(&b, z64 + 4 + pad, 2);
	weld__buf_put(&b, r->name, r->name_len);
	if (r->zip64) {
		weld__buf_le(&b, 0x0001, 2);
		weld__buf_le(&b, z64 - 4, 2);
		if (r->size >= TW_U32_MAX) {
			weld__buf_le(&b, r->size, 8);
			weld__buf_le(&b, 0, 8); /* compressed size, unknown when miniz writes it */
		}
		if (pos >= TW_U32_MAX)
			weld__buf_le(&b, pos, 8);
	}
	weld__buf_put(&b, "FB", 2);
	weld__buf_le(&b, pad, 2);
	weld__buf_fill(&b, 'Z', (size_t)pad);
	if (b.failed) {
		free(b.p);
		return weld__nomem(err);
	}
	r->local = b.p;
	r->local_len = b.len;
	return WELD_OK;
}

weld_status weld_tw_layout_new(weld_tw_layout **out, weld_tw_tensor *tensors, size_t n,
			       const char *archive_name, uint64_t *file_size, weld_error *err)
{
	*out = NULL;
	if (!archive_name || !archive_name[0] || strchr(archive_name, '/'))
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "torch writer: archive name must be non-empty and contain no '/'");
	if (n > 0 && !tensors)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "torch writer: no tensors given");
	size_t prefix_len = strlen(archive_name);
	if (prefix_len > 60000) /* zip names are at most 65535 bytes */
		return weld__fail(err, WELD_ERR_INVALID_ARG, "torch writer: archive name too long");
	weld_status s = check_tensors(tensors, n, err);
	if (s != WELD_OK)
		return s;

	weld_tw_layout *l = calloc(1, sizeof(*l));
	size_t nrecs;
	if (!l || !weld__add_size(&nrecs, n, 6)) {
		free(l);
		return weld__nomem(err);
	}
	l->recs = weld__calloc(nrecs, sizeof(*l->recs));
	if (!l->recs) {
		free(l);
		return weld__nomem(err);
	}
	l->nrecs = nrecs;
	l->ntensors = n;
	s = build_pickle(l, tensors, n, err);
	if (s != WELD_OK) {
		weld_tw_layout_free(l);
		return s;
	}

	static const struct {
		const char *name, *content;
	} small[] = {
		{"data.pkl", NULL},         {".format_version", "1"}, {".storage_alignment", "64"},
		{"byteorder", "little"},    {"version", "3\n"},       {".data/serialization_id", NULL},
	};
	uint64_t pos = 0;
	for (size_t i = 0; i < nrecs; i++) {
		tw_record *r = &l->recs[i];
		char rec[48];
		r->tensor = SIZE_MAX;
		if (i < 4 || i >= n + 4) {
			size_t k = i < 4 ? i : i - n;
			snprintf(rec, sizeof(rec), "%s", small[k].name);
			if (k == 0) {
				r->content = l->pkl;
				r->size = l->pkl_len;
			} else if (small[k].content) {
				r->content = (const uint8_t *)small[k].content;
				r->size = strlen(small[k].content);
			} else {
				l->sid = i;
				r->size = TW_SID_LEN;
			}
			if (r->content)
				r->crc = weld__crc32(0, r->content, (size_t)r->size);
		} else {
			r->tensor = i - 4;
			snprintf(rec, sizeof(rec), "data/%zu", r->tensor);
			r->size = tensors[r->tensor].nbytes;
		}
		r->prefix_len = prefix_len + 1;
		r->name_len = prefix_len + 1 + strlen(rec);
		r->name = malloc(r->name_len + 1);
		if (!r->name) {
			weld_tw_layout_free(l);
			return weld__nomem(err);
		}
		snprintf(r->name, r->name_len + 1, "%s/%s", archive_name, rec);
		s = plan_record(r, pos, err);
		if (s != WELD_OK) {
			weld_tw_layout_free(l);
			return s;
		}
		if (r->tensor != SIZE_MAX)
			tensors[r->tensor].offset = r->data_offset;
		if (!weld__add_u64(&pos, r->data_offset, r->size) || !weld__add_u64(&pos, pos, desc_len(r))) {
			weld_tw_layout_free(l);
			return weld__fail(err, WELD_ERR_LIMIT, "torch writer: archive offsets overflow");
		}
	}
	l->cd_offset = pos;
	for (size_t i = 0; i < nrecs; i++) {
		uint64_t e = TW_CENTRAL_HEADER + l->recs[i].name_len + central_extra_len(&l->recs[i]);
		if (!weld__add_u64(&l->cd_size, l->cd_size, e)) {
			weld_tw_layout_free(l);
			return weld__fail(err, WELD_ERR_LIMIT, "torch writer: archive offsets overflow");
		}
	}
	if (!weld__add_u64(&l->eocd64_offset, l->cd_offset, l->cd_size) ||
	    !weld__add_u64(&l->file_size, l->eocd64_offset, TW_EOCD64 + TW_LOCATOR + TW_EOCD) ||
	    l->file_size > (uint64_t)INT64_MAX) {
		weld_tw_layout_free(l);
		return weld__fail(err, WELD_ERR_LIMIT, "torch writer: archive offsets overflow");
	}
	*file_size = l->file_size;
	*out = l;
	return WELD_OK;
}

/* ------------------------------------------------------------------------- */
/* Writing                                                                    */

weld_status weld_tw_write_head(const weld_tw_layout *l, int fd, const char *path, weld_error *err)
{
	for (size_t i = 0; i < l->nrecs; i++) {
		const tw_record *r = &l->recs[i];
		weld_status s = weld_pwrite_all(fd, path, r->local, r->local_len, r->local_offset, err);
		if (s == WELD_OK && r->content)
			s = weld_pwrite_all(fd, path, r->content, (size_t)r->size, r->data_offset, err);
		if (s != WELD_OK)
			return s;
	}
	return WELD_OK;
}

static void put_descriptor(weld_buf *b, const tw_record *r, uint32_t crc)
{
	weld__buf_le(b, 0x08074B50, 4);
	weld__buf_le(b, crc, 4);
	weld__buf_le(b, r->size, r->zip64 ? 8 : 4); /* compressed */
	weld__buf_le(b, r->size, r->zip64 ? 8 : 4);
}

static uint64_t clamp32(uint64_t v)
{
	return v < TW_U32_MAX ? v : TW_U32_MAX;
}

weld_status weld_tw_finish(const weld_tw_layout *l, int fd, const char *path, const uint32_t *tensor_crcs,
			   uint32_t *file_crc, weld_error *err)
{
	if (l->ntensors > 0 && !tensor_crcs)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: no tensor CRCs given", path);
	uint32_t *crcs = weld__calloc(l->nrecs, sizeof(*crcs));
	if (!crcs)
		return weld__nomem(err);
	for (size_t i = 0; i < l->nrecs; i++) {
		const tw_record *r = &l->recs[i];
		crcs[i] = r->tensor != SIZE_MAX ? (r->size ? tensor_crcs[r->tensor] : 0) : r->crc;
	}

	/* The serialization id covers every record before it. */
	uint64_t name_hash = 0xcbf29ce484222325u;
	uint32_t data_crc = 0;
	for (size_t i = 0; i < l->sid; i++) {
		const tw_record *r = &l->recs[i];
		for (size_t k = r->prefix_len; k <= r->name_len; k++) { /* includes the NUL */
			name_hash ^= (uint8_t)r->name[k];
			name_hash *= 0x100000001b3u;
		}
		data_crc = weld__crc32_combine(data_crc, crcs[i], r->size);
	}
	char sid[TW_SID_LEN + 1];
	snprintf(sid, sizeof(sid), "%020" PRIu64 "%020" PRIu32, name_hash, data_crc);
	crcs[l->sid] = weld__crc32(0, sid, TW_SID_LEN);
	weld_status s = weld_pwrite_all(fd, path, sid, TW_SID_LEN, l->recs[l->sid].data_offset, err);

	/* Descriptors, and the whole-file CRC from the pieces in file order. */
	uint32_t crc = 0;
	weld_buf b = {0};
	for (size_t i = 0; i < l->nrecs && s == WELD_OK; i++) {
		const tw_record *r = &l->recs[i];
		crc = weld__crc32_combine(crc, weld__crc32(0, r->local, r->local_len), r->local_len);
		crc = weld__crc32_combine(crc, crcs[i], r->size);
		if (r->size == 0)
			continue;
		b.len = 0;
		put_descriptor(&b, r, crcs[i]);
		if (b.failed) {
			s = weld__nomem(err);
			break;
		}
		crc = weld__crc32_combine(crc, weld__crc32(0, b.p, b.len), b.len);
		s = weld_pwrite_all(fd, path, b.p, b.len, r->data_offset + r->size, err);
	}

	/* Central directory and end records, one write. */
	b.len = 0;
	for (size_t i = 0; i < l->nrecs && s == WELD_OK; i++) {
		const tw_record *r = &l->recs[i];
		uint64_t extra = central_extra_len(r);
		weld__buf_le(&b, 0x02014B50, 4);
		weld__buf_le(&b, 0, 2); /* version made by */
		weld__buf_le(&b, 0, 2); /* version needed */
		weld__buf_le(&b, r->size ? 0x0808 : 0x0800, 2);
		weld__buf_le(&b, 0, 2); /* stored */
		weld__buf_le(&b, 0, 4); /* time, date */
		weld__buf_le(&b, crcs[i], 4);
		weld__buf_le(&b, clamp32(r->size), 4);
		weld__buf_le(&b, clamp32(r->size), 4);
		weld__buf_le(&b, r->name_len, 2);
		weld__buf_le(&b, extra, 2);
		weld__buf_le(&b, 0, 2); /* comment */
		weld__buf_le(&b, 0, 2); /* disk */
		weld__buf_le(&b, 0, 2); /* internal attributes */
		weld__buf_le(&b, 0, 4); /* external attributes */
		weld__buf_le(&b, clamp32(r->local_offset), 4);
		weld__buf_put(&b, r->name, r->name_len);
		if (extra) {
			weld__buf_le(&b, 0x0001, 2);
			weld__buf_le(&b, extra - 4, 2);
			if (r->size >= TW_U32_MAX) {
				weld__buf_le(&b, r->size, 8);
				weld__buf_le(&b, r->size, 8);
			}
			if (r->local_offset >= TW_U32_MAX)
				weld__buf_le(&b, r->local_offset, 8);
		}
	}
	if (s == WELD_OK) {
		weld__buf_le(&b, 0x06064B50, 4); /* ZIP64 end of central directory */
		weld__buf_le(&b, TW_EOCD64 - 12, 8);
		weld__buf_le(&b, 0x031E, 2);
		weld__buf_le(&b, 0x002D, 2);
		weld__buf_le(&b, 0, 8); /* this disk, central directory disk */
		weld__buf_le(&b, l->nrecs, 8);
		weld__buf_le(&b, l->nrecs, 8);
		weld__buf_le(&b, l->cd_size, 8);
		weld__buf_le(&b, l->cd_offset, 8);
		weld__buf_le(&b, 0x07064B50, 4); /* locator */
		weld__buf_le(&b, 0, 4);
		weld__buf_le(&b, l->eocd64_offset, 8);
		weld__buf_le(&b, 1, 4);
		weld__buf_le(&b, 0x06054B50, 4); /* classic end record, clamped */
		weld__buf_le(&b, 0, 4);
		weld__buf_le(&b, l->nrecs < 0xFFFF ? l->nrecs : 0xFFFF, 2);
		weld__buf_le(&b, l->nrecs < 0xFFFF ? l->nrecs : 0xFFFF, 2);
		weld__buf_le(&b, clamp32(l->cd_size), 4);
		weld__buf_le(&b, clamp32(l->cd_offset), 4);
		weld__buf_le(&b, 0, 2);
		if (b.failed)
			s = weld__nomem(err);
	}
	if (s == WELD_OK)
		s = weld_pwrite_all(fd, path, b.p, b.len, l->cd_offset, err);
	if (s == WELD_OK) {
		crc = weld__crc32_combine(crc, weld__crc32(0, b.p, b.len), b.len);
		if (file_crc)
			*file_crc = crc;
	}
	free(b.p);
	free(crcs);
	return s;
}

static weld_status tw_layout(weld_writer *w, weld_plan *p, uint64_t *file_size, weld_error *err)
{
	weld_tw_tensor *tw = weld__calloc(p->nt ? p->nt : 1, sizeof(*tw));
	if (!tw)
		return weld__nomem(err);
	for (size_t i = 0; i < p->nt; i++)
		tw[i] = (weld_tw_tensor){p->t[i].name, p->t[i].dtype, p->t[i].ndim, p->t[i].shape, p->t[i].nbytes, 0};
	weld_tw_layout *l = NULL;
	weld_status s = weld_tw_layout_new(&l, tw, p->nt, "pytorch_model", file_size, err);
	w->state = l;
	for (size_t i = 0; !s && i < p->nt; i++)
		p->t[i].offset = tw[i].offset;
	free(tw);
	return s;
}

static weld_status tw_write_head(weld_writer *w, size_t file, int fd, const char *path, weld_error *err)
{
	(void)file; /* one file: the layout never shards */
	return weld_tw_write_head(w->state, fd, path, err);
}

static weld_status tw_finish(weld_writer *w, size_t file, const weld_plan *p, int fd, const char *path,
			     const uint32_t *tensor_crcs, uint32_t *file_crc, weld_error *err)
{
	(void)p, (void)file;
	return weld_tw_finish(w->state, fd, path, tensor_crcs, file_crc, err);
}

static void tw_free(void *state)
{
	weld_tw_layout_free(state);
}

const weld_writer_iface weld_writer_torch_bin = {
	.file_name = "pytorch_model.bin",
	.layout = tw_layout,
	.write_head = tw_write_head,
	.finish = tw_finish,
	.free_state = tw_free,
};
