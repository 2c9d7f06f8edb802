/*
 * safetensors headers: a strict reader that enforces the reference (Rust)
 * reader's rules (shared docs, section D).
 *
 * The JSON parser is our own rather than cJSON: shapes and offsets must be
 * exact 64-bit integers (cJSON keeps doubles, exact only up to 2^53) and
 * duplicate keys must be caught (cJSON keeps both without a word). Its
 * tokens come from util/json.c. It only walks the header, never the data,
 * and nests at most JSON_MAX_DEPTH deep so a hostile header cannot exhaust
 * the stack.
 */
#include "io/safetensors.h"

#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest container nesting accepted anywhere (serde_json stops near 128). */
#define JSON_MAX_DEPTH 128

/* Longest name quoted in a message; longer ones are cut and end in "...". */
#define SHOW_MAX (WELD_ST_SHOW_BUF - 4)

/* ------------------------------------------------------------------------- */
/* Helpers shared with the writer (output/safetensors.c)                      */

const char *weld__st_show(char buf[WELD_ST_SHOW_BUF], const char *s)
{
	size_t n = strlen(s), lim = n, o = 0;
	if (n > SHOW_MAX) {
		lim = SHOW_MAX;
		while (lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
			lim--;
	}
	for (size_t i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[o++] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
	}
	if (lim < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* 16 dims of at most 20 digits fit in 400 bytes. */
const char *weld__st_show_shape(char buf[400], const uint64_t *shape, size_t ndim)
{
	size_t o = 0;
	buf[o++] = '[';
	for (size_t i = 0; i < ndim && i < WELD_MAX_DIMS; i++)
		o += (size_t)snprintf(buf + o, 400 - o, "%s%llu", i ? "," : "",
				      (unsigned long long)shape[i]);
	buf[o++] = ']';
	buf[o] = '\0';
	return buf;
}

/* The size checks both entry points share, before any header byte is read. */
static weld_status check_lengths(uint64_t n, uint64_t file_size, weld_error *err)
{
	if (n > WELD_ST_HEADER_MAX)
		return weld__fail(err, WELD_ERR_FORMAT, "header length %llu exceeds the %llu-byte limit",
				  (unsigned long long)n, (unsigned long long)WELD_ST_HEADER_MAX);
	if (file_size < 8 || n > file_size - 8)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "header length %llu runs past the end of the file (%llu bytes)",
				  (unsigned long long)n, (unsigned long long)file_size);
	return WELD_OK;
}

bool weld__st_tensor_bytes(weld_dtype dtype, const uint64_t *shape, size_t ndim, uint64_t *bytes, int *which)
{
	uint64_t numel = 1;
	for (size_t i = 0; i < ndim; i++)
		if (!weld__mul_u64(&numel, numel, shape[i])) {
			*which = 0;
			return false;
		}
	if (weld__dtype_is_sub_byte(dtype)) {
		/* The reference's rule: numel x bits, which must be whole bytes. */
		uint64_t bits;
		if (!weld__mul_u64(&bits, numel, weld_dtype_bits(dtype))) {
			*which = 1;
			return false;
		}
		if (bits % 8) {
			*which = 2;
			return false;
		}
		*bytes = bits / 8;
		return true;
	}
	if (!weld__mul_u64(bytes, numel, weld_dtype_size(dtype))) {
		*which = 1;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------- */
/* JSON reading                                                               */

typedef struct parser {
	const char *s;
	size_t len, pos;
	weld_error *err;
} parser;

static void skip_ws(parser *p)
{
	weld__json_skip_ws(p->s, p->len, &p->pos);
}

static weld_status json_fail(parser *p, size_t at, const char *what)
{
	return weld__fail(p->err, WELD_ERR_FORMAT, "header is not valid JSON at byte %zu: %s", at, what);
}

/* A token error, in this reader's words. */
static weld_status lex_fail(parser *p, weld_json_error e, size_t at)
{
	static const char *const what[] = {
		[WELD_JSON_OK] = "",
		[WELD_JSON_UNTERMINATED] = "unterminated string",
		[WELD_JSON_CONTROL] = "control character in a string",
		[WELD_JSON_ESCAPE] = "invalid escape in a string",
		[WELD_JSON_U_ESCAPE] = "invalid \\u escape",
		[WELD_JSON_SURROGATE] = "lone surrogate in a \\u escape",
		[WELD_JSON_NUMBER] = "invalid number",
	};
	return json_fail(p, at, what[e]);
}

/* Consume the byte C at the cursor or fail with "expected 'C'". */
static weld_status expect(parser *p, char c)
{
	if (p->pos >= p->len)
		return json_fail(p, p->pos, "unexpected end of header");
	if (p->s[p->pos] != c) {
		char what[32];
		snprintf(what, sizeof(what), "expected '%c'", c);
		return json_fail(p, p->pos, what);
	}
	p->pos++;
	return WELD_OK;
}

/*
 * The JSON string at the cursor, escapes decoded to UTF-8. With OUT non-NULL
 * it gets a malloc'd NUL-terminated copy and *OUT_LEN its length (which may
 * count embedded NULs from \u0000); with OUT NULL the string is only checked.
 */
static weld_status parse_string(parser *p, char **out, size_t *out_len)
{
	if (p->pos >= p->len)
		return json_fail(p, p->pos, "unexpected end of header");
	if (p->s[p->pos] != '"')
		return json_fail(p, p->pos, "expected a string");
	/* The closing quote and raw control characters are looked for before escapes are read. */
	size_t start = p->pos, at, n, end = start + 1;
	while (end < p->len && p->s[end] != '"') {
		if ((unsigned char)p->s[end] < 0x20)
			return json_fail(p, end, "control character in a string");
		end += p->s[end] == '\\' ? 2 : 1;
	}
	if (end >= p->len)
		return json_fail(p, start, "unterminated string");
	weld_json_error e = weld__json_string(p->s, p->len, &p->pos, true, NULL, &n, &at);
	if (e)
		return lex_fail(p, e, at);
	if (!out)
		return WELD_OK;
	/* Checked: decode it again, into a buffer of the decoded size. */
	char *d = malloc(n + 1);
	if (!d)
		return weld__nomem(p->err);
	weld__json_string(p->s, p->len, &start, true, d, &n, &at);
	d[n] = '\0';
	*out = d;
	*out_len = n;
	return WELD_OK;
}

/* After a container's member: ',' (*MORE) or its closing byte CLOSE. */
static weld_status next_member(parser *p, char close, bool *more)
{
	skip_ws(p);
	*more = p->pos < p->len && p->s[p->pos] == ',';
	if (*more) {
		p->pos++;
		return WELD_OK;
	}
	return expect(p, close);
}

/* A container's members start after OPEN; *EMPTY when CLOSE follows at once (consumed). */
static weld_status open_container(parser *p, char open, char close, bool *empty)
{
	weld_status st = expect(p, open);
	if (st)
		return st;
	skip_ws(p);
	*empty = p->pos < p->len && p->s[p->pos] == close;
	p->pos += *empty;
	return WELD_OK;
}

/*
 * Step over any JSON value (an ignored field). DEPTH is the nesting level a
 * container starting here would have; recursion stops at JSON_MAX_DEPTH.
 */
static weld_status skip_value(parser *p, int depth)
{
	if (p->pos >= p->len)
		return json_fail(p, p->pos, "unexpected end of header");
	char c = p->s[p->pos];
	weld_status st;
	if (c == '{' || c == '[') {
		if (depth > JSON_MAX_DEPTH)
			return json_fail(p, p->pos, "nested deeper than 128 levels");
		char close = c == '{' ? '}' : ']';
		bool empty, more = true;
		if ((st = open_container(p, c, close, &empty)) || empty)
			return st;
		while (more) {
			skip_ws(p);
			if (c == '{') {
				if ((st = parse_string(p, NULL, NULL)) != WELD_OK)
					return st;
				skip_ws(p);
				if ((st = expect(p, ':')) != WELD_OK)
					return st;
				skip_ws(p);
			}
			if ((st = skip_value(p, depth + 1)) || (st = next_member(p, close, &more)))
				return st;
		}
		return WELD_OK;
	}
	if (c == '"')
		return parse_string(p, NULL, NULL);
	if (c == '-' || (c >= '0' && c <= '9')) {
		size_t at = p->pos;
		weld_json_error e = weld__json_number(p->s, p->len, &p->pos, false);
		return e ? lex_fail(p, e, at) : WELD_OK;
	}
	static const char *const lits[] = {"true", "false", "null"};
	for (size_t k = 0; k < 3; k++) {
		size_t l = strlen(lits[k]);
		if (p->len - p->pos >= l && memcmp(p->s + p->pos, lits[k], l) == 0) {
			p->pos += l;
			return WELD_OK;
		}
	}
	return json_fail(p, p->pos, "unexpected character");
}

/*
 * An exact unsigned 64-bit integer at the cursor: 0 on success, 1 when the
 * value is not a non-negative integer (sign, fraction, exponent, leading
 * zero, not a number at all), 2 when it does not fit in 64 bits.
 */
static int parse_uint(parser *p, uint64_t *out)
{
	const char *s = p->s;
	size_t i = p->pos, n = p->len;
	if (i >= n || s[i] < '0' || s[i] > '9')
		return 1;
	if (s[i] == '0' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9')
		return 1;
	uint64_t v = 0;
	bool over = false;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		if (!over && (!weld__mul_u64(&v, v, 10) || !weld__add_u64(&v, v, s[i] - '0')))
			over = true;
	if (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
		return 1;
	if (over)
		return 2;
	p->pos = i;
	*out = v;
	return 0;
}

/*
 * A JSON array of at most MAX exact integers ("shape" or "data_offsets" of
 * tensor NAME) into VALS; *N gets the count.
 */
static weld_status parse_uint_list(parser *p, const char *name, const char *field, size_t max,
				   uint64_t *vals, size_t *n)
{
	char nb[WELD_ST_SHOW_BUF];
	bool offsets = strcmp(field, "data_offsets") == 0;
	*n = 0;
	if (p->pos >= p->len || p->s[p->pos] != '[')
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': %s is not an array",
				  weld__st_show(nb, name), field);
	weld_status st;
	bool empty;
	if ((st = open_container(p, '[', ']', &empty)) != WELD_OK || empty)
		return st;
	for (bool more = true; more;) {
		skip_ws(p);
		if (*n == max) {
			if (offsets)
				return weld__fail(p->err, WELD_ERR_FORMAT,
						  "tensor '%s': data_offsets must hold exactly 2 integers",
						  weld__st_show(nb, name));
			return weld__fail(p->err, WELD_ERR_UNSUPPORTED,
					  "tensor '%s': shape has more than %d dimensions", weld__st_show(nb, name),
					  WELD_MAX_DIMS);
		}
		int r = parse_uint(p, &vals[*n]);
		if (r)
			return weld__fail(p->err, WELD_ERR_FORMAT,
					  r == 1 ? "tensor '%s': %s[%zu] is not a non-negative integer"
						 : "tensor '%s': %s[%zu] does not fit in 64 bits",
					  weld__st_show(nb, name), field, *n);
		(*n)++;
		if ((st = next_member(p, ']', &more)) != WELD_OK)
			return st;
	}
	return WELD_OK;
}

/* The "dtype" value of tensor T (a string naming a known dtype). */
static weld_status parse_dtype(parser *p, weld_st_tensor *t)
{
	char nb[WELD_ST_SHOW_BUF], vb[WELD_ST_SHOW_BUF], *val;
	size_t vlen;
	if (p->pos >= p->len || p->s[p->pos] != '"')
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': dtype is not a string", weld__st_show(nb, t->name));
	weld_status st = parse_string(p, &val, &vlen);
	if (st != WELD_OK)
		return st;
	t->dtype = vlen == strlen(val) ? weld_dtype_from_name(val) : WELD_DTYPE_INVALID;
	if (t->dtype == WELD_DTYPE_INVALID)
		st = weld__fail(p->err, WELD_ERR_UNSUPPORTED, "tensor '%s': unknown dtype '%s'", weld__st_show(nb, t->name),
				weld__st_show(vb, val));
	free(val);
	return st;
}

/* The value of field FIELD (1 dtype, 2 shape, 3 data_offsets, 0 anything else) of tensor T. */
static weld_status parse_field(parser *p, weld_st_tensor *t, int field)
{
	char nb[WELD_ST_SHOW_BUF];
	uint64_t off[2];
	size_t n;
	weld_status st;
	switch (field) {
	case 1: return parse_dtype(p, t);
	case 2: return parse_uint_list(p, t->name, "shape", WELD_MAX_DIMS, t->shape, &t->ndim);
	case 3:
		if ((st = parse_uint_list(p, t->name, "data_offsets", 2, off, &n)) != WELD_OK)
			return st;
		if (n != 2)
			return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': data_offsets must hold exactly 2 integers",
					  weld__st_show(nb, t->name));
		t->begin = off[0];
		t->end = off[1];
		return WELD_OK;
	default:
		/* The Rust reader ignores unknown fields; so do we, after checking them. */
		return skip_value(p, 3);
	}
}

/* The data_offsets of T span exactly its dtype and shape's bytes. */
static weld_status check_tensor_size(parser *p, const weld_st_tensor *t)
{
	char nb[WELD_ST_SHOW_BUF], sb[400];
	const char *name = weld__st_show(nb, t->name);
	if (t->end < t->begin)
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': data_offsets [%llu,%llu] end before they begin", name,
				  (unsigned long long)t->begin, (unsigned long long)t->end);
	uint64_t bytes;
	int which;
	if (!weld__st_tensor_bytes(t->dtype, t->shape, t->ndim, &bytes, &which)) {
		if (which == 0)
			return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': shape %s has more elements than fit in 64 bits",
					  name, weld__st_show_shape(sb, t->shape, t->ndim));
		if (which == 2)
			return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': %s %s is not a whole number of bytes", name,
					  weld_dtype_name(t->dtype), weld__st_show_shape(sb, t->shape, t->ndim));
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': %s %s is more bytes than fit in 64 bits", name,
				  weld_dtype_name(t->dtype), weld__st_show_shape(sb, t->shape, t->ndim));
	}
	if (t->end - t->begin != bytes)
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but %s %s needs %llu",
				  name, (unsigned long long)t->begin, (unsigned long long)t->end,
				  (unsigned long long)(t->end - t->begin), weld_dtype_name(t->dtype),
				  weld__st_show_shape(sb, t->shape, t->ndim), (unsigned long long)bytes);
	return WELD_OK;
}

/* Which of a tensor entry's fields KEY[0..KLEN) is: 1 dtype, 2 shape, 3 data_offsets, 0 another. */
static int field_of(const char *key, size_t klen)
{
	static const char *const names[] = {"dtype", "shape", "data_offsets"};
	for (int i = 0; i < 3; i++)
		if (klen == strlen(names[i]) && memcmp(key, names[i], klen) == 0)
			return i + 1;
	return 0;
}

/* One tensor entry {"dtype":..,"shape":..,"data_offsets":..} for tensor T (name set). */
static weld_status parse_tensor(parser *p, weld_st_tensor *t)
{
	static const char *const fname[] = {"", "dtype", "shape", "data_offsets"};
	char nb[WELD_ST_SHOW_BUF];
	bool seen[4] = {false}, empty, more = true;
	weld_status st;
	if (p->pos >= p->len || p->s[p->pos] != '{')
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': entry is not a JSON object", weld__st_show(nb, t->name));
	if ((st = open_container(p, '{', '}', &empty)))
		return st;
	while (!empty && more) {
		skip_ws(p);
		char *key;
		size_t klen;
		if ((st = parse_string(p, &key, &klen)) != WELD_OK)
			return st;
		int field = field_of(key, klen);
		free(key);
		if (field && seen[field])
			return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': duplicate field '%s'", weld__st_show(nb, t->name),
					  fname[field]);
		skip_ws(p);
		if ((st = expect(p, ':')) != WELD_OK)
			return st;
		skip_ws(p);
		if ((st = parse_field(p, t, field)) != WELD_OK || (st = next_member(p, '}', &more)) != WELD_OK)
			return st;
		seen[field] = true;
	}
	if (!seen[1] || !seen[2] || !seen[3])
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': missing '%s'", weld__st_show(nb, t->name),
				  !seen[1] ? "dtype" : !seen[2] ? "shape" : "data_offsets");
	return check_tensor_size(p, t);
}

/* Room for one more entry in a growing array (doubling). */
static bool grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return true;
	size_t ncap = *cap ? *cap : 8;
	if (!weld__mul_size(&ncap, ncap, *cap ? 2 : 1))
		return false;
	void *q = weld__reallocarray(*arr, ncap, elem);
	if (!q)
		return false;
	*arr = q;
	*cap = ncap;
	return true;
}

/* "__metadata__": an object of string -> string (null counts as absent). */
static weld_status parse_metadata(parser *p, weld_st_header *h, size_t *cap)
{
	char kb[WELD_ST_SHOW_BUF];
	weld_status st;
	if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "null", 4) == 0) {
		/* serde reads the Rust reader's Option<HashMap> from null as None. */
		p->pos += 4;
		return WELD_OK;
	}
	if (p->pos >= p->len || p->s[p->pos] != '{')
		return weld__fail(p->err, WELD_ERR_FORMAT, "__metadata__ is not a JSON object");
	bool empty;
	if ((st = open_container(p, '{', '}', &empty)) != WELD_OK || empty)
		return st;
	for (bool more = true; more;) {
		skip_ws(p);
		size_t at = p->pos, klen, vlen;
		char *key, *val;
		if ((st = parse_string(p, &key, &klen)) != WELD_OK)
			return st;
		if (klen != strlen(key)) {
			free(key);
			return weld__fail(p->err, WELD_ERR_UNSUPPORTED,
					  "__metadata__ key at byte %zu contains a NUL character", at);
		}
		skip_ws(p);
		if ((st = expect(p, ':')) != WELD_OK) {
			free(key);
			return st;
		}
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != '"') {
			weld__fail(p->err, WELD_ERR_FORMAT, "__metadata__ value for '%s' is not a string",
				   weld__st_show(kb, key));
			free(key);
			return WELD_ERR_FORMAT;
		}
		if ((st = parse_string(p, &val, &vlen)) != WELD_OK) {
			free(key);
			return st;
		}
		if (vlen != strlen(val)) {
			weld__fail(p->err, WELD_ERR_UNSUPPORTED,
				   "__metadata__ value for '%s' contains a NUL character", weld__st_show(kb, key));
			free(key);
			free(val);
			return WELD_ERR_UNSUPPORTED;
		}
		size_t kcap = *cap;
		if (!grow((void **)&h->meta_keys, &kcap, h->nmeta, sizeof(char *)) ||
		    !grow((void **)&h->meta_vals, cap, h->nmeta, sizeof(char *))) {
			free(key);
			free(val);
			return weld__nomem(p->err);
		}
		h->meta_keys[h->nmeta] = key;
		h->meta_vals[h->nmeta] = val;
		h->nmeta++;
		if ((st = next_member(p, '}', &more)) != WELD_OK)
			return st;
	}
	return WELD_OK;
}

/* The top-level object, filling H's tensors and metadata. */
static weld_status parse_object(parser *p, weld_st_header *h)
{
	weld_status st;
	size_t tcap = 0, mcap = 0;
	bool have_meta = false;
	skip_ws(p);
	if (p->pos >= p->len)
		return json_fail(p, p->pos, "unexpected end of header");
	if (p->s[p->pos] != '{') {
		if (p->s[p->pos] && strchr("[\"-0123456789tfn", p->s[p->pos]))
			return weld__fail(p->err, WELD_ERR_FORMAT, "header is not a JSON object");
		return expect(p, '{');
	}
	bool empty;
	if ((st = open_container(p, '{', '}', &empty)) != WELD_OK || empty)
		return st;
	for (bool more = true; more;) {
		skip_ws(p);
		size_t at = p->pos, klen;
		char *key;
		if ((st = parse_string(p, &key, &klen)) != WELD_OK)
			return st;
		skip_ws(p);
		if ((st = expect(p, ':')) != WELD_OK) {
			free(key);
			return st;
		}
		skip_ws(p);
		if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
			free(key);
			if (have_meta)
				return weld__fail(p->err, WELD_ERR_FORMAT, "duplicate key '__metadata__'");
			have_meta = true;
			if ((st = parse_metadata(p, h, &mcap)) != WELD_OK)
				return st;
		} else {
			if (klen != strlen(key)) {
				free(key);
				return weld__fail(p->err, WELD_ERR_UNSUPPORTED,
						  "tensor name at byte %zu contains a NUL character", at);
			}
			if (!grow((void **)&h->tensors, &tcap, h->ntensors, sizeof(*h->tensors))) {
				free(key);
				return weld__nomem(p->err);
			}
			weld_st_tensor *t = &h->tensors[h->ntensors++];
			memset(t, 0, sizeof(*t));
			t->name = key; /* owned by H from here, freed by weld_st_header_clear */
			if ((st = parse_tensor(p, t)) != WELD_OK)
				return st;
		}
		if ((st = next_member(p, '}', &more)) != WELD_OK)
			return st;
	}
	return WELD_OK;
}

/*
 * Walk the tensors in offset order: contiguous from 0, no holes or overlaps,
 * and the last byte of data is the last byte of the file.
 */
static weld_status check_layout(const weld_st_header *h, uint64_t file_size, weld_error *err)
{
	char nb[WELD_ST_SHOW_BUF], pb[SHOW_MAX + 4];
	size_t n = h->ntensors;
	size_t *idx = weld__reallocarray(NULL, n ? n : 1, sizeof(*idx));
	if (!idx)
		return weld__nomem(err);
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	/*
	 * Sort indices by (begin, end) as the reference reader does. A stable
	 * merge sort rather than qsort: ties keep JSON order (so messages are
	 * deterministic) and qsort would need global state to see the tensors.
	 */
	size_t *tmp = weld__reallocarray(NULL, n ? n : 1, sizeof(*tmp));
	if (!tmp) {
		free(idx);
		return weld__nomem(err);
	}
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t a = lo, b = mid, o = lo;
			while (a < mid && b < hi) {
				const weld_st_tensor *x = &h->tensors[idx[a]], *y = &h->tensors[idx[b]];
				bool take_b = y->begin < x->begin || (y->begin == x->begin && y->end < x->end);
				tmp[o++] = take_b ? idx[b++] : idx[a++];
			}
			while (a < mid)
				tmp[o++] = idx[a++];
			while (b < hi)
				tmp[o++] = idx[b++];
		}
		memcpy(idx, tmp, n * sizeof(*idx));
		if (w > SIZE_MAX / 4)
			break;
	}
	free(tmp);

	uint64_t cursor = 0;
	const weld_st_tensor *prev = NULL;
	weld_status st = WELD_OK;
	for (size_t i = 0; i < n && st == WELD_OK; i++) {
		const weld_st_tensor *t = &h->tensors[idx[i]];
		if (t->begin != cursor) {
			if (!prev)
				st = weld__fail(err, WELD_ERR_FORMAT,
						"tensor '%s' starts at %llu but the first tensor must start at 0",
						weld__st_show(nb, t->name), (unsigned long long)t->begin);
			else
				st = weld__fail(err, WELD_ERR_FORMAT,
						"tensor '%s' starts at %llu but tensor '%s' ends at %llu (%s)",
						weld__st_show(nb, t->name), (unsigned long long)t->begin,
						weld__st_show(pb, prev->name), (unsigned long long)cursor,
						t->begin > cursor ? "hole" : "overlap");
		}
		cursor = t->end;
		prev = t;
	}
	free(idx);
	if (st != WELD_OK)
		return st;
	uint64_t data_start = 8 + h->header_len, avail = file_size - data_start;
	if (cursor < avail)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "data ends at byte %llu but the file has %llu bytes (trailing bytes)",
				  (unsigned long long)(data_start + cursor), (unsigned long long)file_size);
	if (cursor > avail)
		return weld__fail(err, WELD_ERR_FORMAT,
				  "header describes %llu bytes of data but the file has %llu after the header"
				  " (truncated)",
				  (unsigned long long)cursor, (unsigned long long)avail);
	return WELD_OK;
}

weld_status weld_st_parse_header(weld_st_header *out, const char *json, size_t len,
				 uint64_t file_size, weld_error *err)
{
	if (!out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_st_parse_header: no output");
	memset(out, 0, sizeof(*out));
	if (!json && len)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_st_parse_header: no header bytes");
	weld_status st = check_lengths(len, file_size, err);
	if (st != WELD_OK)
		return st;
	out->header_len = len;
	out->data_start = 8 + (uint64_t)len;

	size_t bad = weld__utf8_valid_len(json, len, false);
	if (bad < len)
		return weld__fail(err, WELD_ERR_FORMAT, "header is not valid UTF-8 (byte %zu)", bad);

	parser p = {.s = json, .len = len, .pos = 0, .err = err};
	st = parse_object(&p, out);
	if (st == WELD_OK) {
		skip_ws(&p); /* the writer pads with spaces; serde allows any whitespace */
		if (p.pos != p.len)
			st = weld__fail(err, WELD_ERR_FORMAT, "header has data after the JSON object (byte %zu)",
					p.pos);
	}
	if (st == WELD_OK) {
		const char **names = weld__reallocarray(NULL, out->ntensors ? out->ntensors : 1,
							sizeof(*names));
		const char *dup = NULL;
		if (names) {
			for (size_t i = 0; i < out->ntensors; i++)
				names[i] = out->tensors[i].name;
		}
		char nb[WELD_ST_SHOW_BUF];
		if (!names || !weld__find_duplicate(names, out->ntensors, &dup))
			st = weld__nomem(err);
		else if (dup)
			st = weld__fail(err, WELD_ERR_FORMAT, "duplicate tensor name '%s'", weld__st_show(nb, dup));
		free(names);
		if (st == WELD_OK) {
			if (!weld__find_duplicate((const char *const *)out->meta_keys, out->nmeta, &dup))
				st = weld__nomem(err);
			else if (dup)
				st = weld__fail(err, WELD_ERR_FORMAT, "__metadata__: duplicate key '%s'",
						weld__st_show(nb, dup));
		}
	}
	if (st == WELD_OK)
		st = check_layout(out, file_size, err);
	if (st != WELD_OK)
		weld_st_header_clear(out);
	return st;
}

weld_status weld_st_read_header(weld_st_header *out, weld_file *f, weld_error *err)
{
	if (!out || !f)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_st_read_header: no file or output");
	memset(out, 0, sizeof(*out));
	if (f->size < 8)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: too small to be a safetensors file (%llu bytes)",
				  f->path, (unsigned long long)f->size);
	uint8_t pre[8];
	weld_status st = weld_file_pread(f, pre, 8, 0, err);
	if (st != WELD_OK)
		return st;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | pre[i];
	/* Check N before allocating: a hostile prefix must not choose our allocation size. */
	if ((st = check_lengths(n, f->size, err)) != WELD_OK)
		return weld__prefix(err, "%s", f->path);
	char *buf = malloc(n ? (size_t)n : 1);
	if (!buf)
		return weld__nomem(err);
	st = weld_file_pread(f, buf, (size_t)n, 8, err);
	if (st == WELD_OK) {
		st = weld_st_parse_header(out, buf, (size_t)n, f->size, err);
		if (st != WELD_OK && st != WELD_ERR_NOMEM)
			weld__prefix(err, "%s", f->path);
	}
	free(buf);
	return st;
}

void weld_st_header_clear(weld_st_header *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->ntensors; i++)
		free(h->tensors[i].name);
	free(h->tensors);
	for (size_t i = 0; i < h->nmeta; i++) {
		free(h->meta_keys[i]);
		free(h->meta_vals[i]);
	}
	free(h->meta_keys);
	free(h->meta_vals);
	memset(h, 0, sizeof(*h));
}

