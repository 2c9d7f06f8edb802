/*
 * safetensors headers: a strict reader that enforces the reference (Rust)
 * reader's rules, and a builder whose output matches the Python writer byte
 * for byte (shared docs, section D).
 *
 * The JSON parser is our own rather than cJSON: shapes and offsets must be
 * exact 64-bit integers (cJSON keeps doubles, exact only up to 2^53) and
 * duplicate keys must be caught (cJSON keeps both without a word). It only
 * walks the header, never the data, and nests at most JSON_MAX_DEPTH deep so
 * a hostile header cannot exhaust the stack.
 */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest container nesting accepted anywhere (serde_json stops near 128). */
#define JSON_MAX_DEPTH 128

/* Longest name quoted in a message; longer ones are cut and end in "...". */
#define SHOW_MAX 200

/* ------------------------------------------------------------------------- */
/* Helpers shared by reader and builder                                       */

/*
 * S made fit for a one-line message into BUF: control bytes become '?', and a
 * long name is cut at a UTF-8 character boundary.
 */
static const char *show(char buf[SHOW_MAX + 4], const char *s)
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

/* "[509,64]" for messages; 16 dims of at most 20 digits fit in 400 bytes. */
static const char *show_shape(char buf[400], const uint64_t *shape, size_t ndim)
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

/* qsort on an array of C strings; used to find duplicate names in O(n log n). */
static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Sorts a copy of NAMES and reports the first name that appears twice in
 * *DUP (NULL when none). false only when out of memory.
 */
static bool find_duplicate(const char **names, size_t n, const char **dup)
{
	*dup = NULL;
	if (n < 2)
		return true;
	const char **s = weld__reallocarray(NULL, n, sizeof(*s));
	if (!s)
		return false;
	memcpy(s, names, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_strp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(s[i - 1], s[i]) == 0) {
			*dup = s[i];
			break;
		}
	free(s);
	return true;
}

/* numel and byte size of a tensor; false (with WHICH set) on overflow. */
static bool tensor_bytes(weld_dtype dtype, const uint64_t *shape, size_t ndim, uint64_t *bytes,
			 int *which)
{
	uint64_t numel = 1;
	for (size_t i = 0; i < ndim; i++)
		if (!weld__mul_u64(&numel, numel, shape[i])) {
			*which = 0;
			return false;
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
	const unsigned char *s;
	size_t len, pos;
	weld_error *err;
} parser;

static void skip_ws(parser *p)
{
	while (p->pos < p->len) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static weld_status json_fail(parser *p, size_t at, const char *what)
{
	return weld__fail(p->err, WELD_ERR_FORMAT, "header is not valid JSON at byte %zu: %s", at, what);
}

/* Consume the byte C at the cursor or fail with "expected 'C'". */
static weld_status expect(parser *p, char c)
{
	if (p->pos >= p->len)
		return json_fail(p, p->pos, "unexpected end of header");
	if (p->s[p->pos] != (unsigned char)c) {
		char what[32];
		snprintf(what, sizeof(what), "expected '%c'", c);
		return json_fail(p, p->pos, what);
	}
	p->pos++;
	return WELD_OK;
}

static int hex4(const unsigned char *s)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = s[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
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
	size_t start = p->pos + 1, end = start;
	/* Find the closing quote first: decoding never grows a string, so the raw length bounds the copy. */
	while (end < p->len && p->s[end] != '"') {
		if (p->s[end] < 0x20)
			return json_fail(p, end, "control character in a string");
		end += p->s[end] == '\\' ? 2 : 1;
	}
	if (end >= p->len)
		return json_fail(p, p->pos, "unterminated string");
	char *d = NULL;
	if (out) {
		d = malloc(end - start + 1);
		if (!d)
			return weld__nomem(p->err);
	}
	size_t o = 0;
#define PUT(ch)                                 \
	do {                                    \
		if (d)                          \
			d[o] = (char)(ch);      \
		o++;                            \
	} while (0)
	for (size_t i = start; i < end;) {
		unsigned char c = p->s[i];
		if (c != '\\') {
			PUT(c);
			i++;
			continue;
		}
		unsigned char e = p->s[i + 1]; /* i + 1 < end: the scan above skipped pairs */
		if (e != 'u') {
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			const char *k = e ? strchr(from, e) : NULL;
			if (!k) {
				free(d);
				return json_fail(p, i, "invalid escape in a string");
			}
			PUT(to[k - from]);
			i += 2;
			continue;
		}
		int cp = end - i >= 6 ? hex4(p->s + i + 2) : -1;
		if (cp < 0) {
			free(d);
			return json_fail(p, i, "invalid \\u escape");
		}
		size_t esc = 6;
		if (cp >= 0xDC00 && cp <= 0xDFFF) {
			free(d);
			return json_fail(p, i, "lone surrogate in a \\u escape");
		}
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			/* A high surrogate must be followed by a low one. */
			int lo = (end - i >= 12 && p->s[i + 6] == '\\' && p->s[i + 7] == 'u')
					 ? hex4(p->s + i + 8)
					 : -1;
			if (lo < 0xDC00 || lo > 0xDFFF) {
				free(d);
				return json_fail(p, i, "lone surrogate in a \\u escape");
			}
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			esc = 12;
		}
		if (cp < 0x80) {
			PUT(cp);
		} else if (cp < 0x800) {
			PUT(0xC0 | (cp >> 6));
			PUT(0x80 | (cp & 0x3F));
		} else if (cp < 0x10000) {
			PUT(0xE0 | (cp >> 12));
			PUT(0x80 | ((cp >> 6) & 0x3F));
			PUT(0x80 | (cp & 0x3F));
		} else {
			PUT(0xF0 | (cp >> 18));
			PUT(0x80 | ((cp >> 12) & 0x3F));
			PUT(0x80 | ((cp >> 6) & 0x3F));
			PUT(0x80 | (cp & 0x3F));
		}
		i += esc;
	}
#undef PUT
	p->pos = end + 1;
	if (d) {
		d[o] = '\0';
		*out = d;
		*out_len = o;
	}
	return WELD_OK;
}

/* Check a JSON number's grammar and step over it. */
static weld_status skip_number(parser *p)
{
	const unsigned char *s = p->s;
	size_t i = p->pos, n = p->len;
	if (i < n && s[i] == '-')
		i++;
	if (i >= n || s[i] < '0' || s[i] > '9')
		return json_fail(p, p->pos, "invalid number");
	if (s[i] == '0')
		i++;
	else
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return json_fail(p, p->pos, "invalid number");
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return json_fail(p, p->pos, "invalid number");
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	p->pos = i;
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
	unsigned char c = p->s[p->pos];
	weld_status st;
	if (c == '{' || c == '[') {
		if (depth > JSON_MAX_DEPTH)
			return json_fail(p, p->pos, "nested deeper than 128 levels");
		char close = c == '{' ? '}' : ']';
		p->pos++;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
			p->pos++;
			return WELD_OK;
		}
		for (;;) {
			skip_ws(p);
			if (c == '{') {
				if ((st = parse_string(p, NULL, NULL)) != WELD_OK)
					return st;
				skip_ws(p);
				if ((st = expect(p, ':')) != WELD_OK)
					return st;
				skip_ws(p);
			}
			if ((st = skip_value(p, depth + 1)) != WELD_OK)
				return st;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == ',') {
				p->pos++;
				continue;
			}
			return expect(p, close);
		}
	}
	if (c == '"')
		return parse_string(p, NULL, NULL);
	if (c == '-' || (c >= '0' && c <= '9'))
		return skip_number(p);
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
	const unsigned char *s = p->s;
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
	char nb[SHOW_MAX + 4];
	bool offsets = strcmp(field, "data_offsets") == 0;
	*n = 0;
	if (p->pos >= p->len || p->s[p->pos] != '[')
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': %s is not an array",
				  show(nb, name), field);
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']') {
		p->pos++;
		return WELD_OK;
	}
	for (;;) {
		skip_ws(p);
		if (*n == max) {
			if (offsets)
				return weld__fail(p->err, WELD_ERR_FORMAT,
						  "tensor '%s': data_offsets must hold exactly 2 integers",
						  show(nb, name));
			return weld__fail(p->err, WELD_ERR_UNSUPPORTED,
					  "tensor '%s': shape has more than %d dimensions", show(nb, name),
					  WELD_MAX_DIMS);
		}
		int r = parse_uint(p, &vals[*n]);
		if (r)
			return weld__fail(p->err, WELD_ERR_FORMAT,
					  r == 1 ? "tensor '%s': %s[%zu] is not a non-negative integer"
						 : "tensor '%s': %s[%zu] does not fit in 64 bits",
					  show(nb, name), field, *n);
		(*n)++;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		return expect(p, ']');
	}
}

/* One tensor entry {"dtype":..,"shape":..,"data_offsets":..} for tensor T (name set). */
static weld_status parse_tensor(parser *p, weld_st_tensor *t)
{
	char nb[SHOW_MAX + 4];
	const char *name = t->name;
	weld_status st;
	bool have_dtype = false, have_shape = false, have_offsets = false;
	if (p->pos >= p->len || p->s[p->pos] != '{')
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': entry is not a JSON object",
				  show(nb, name));
	p->pos++;
	skip_ws(p);
	bool empty = p->pos < p->len && p->s[p->pos] == '}';
	if (empty)
		p->pos++;
	while (!empty) {
		skip_ws(p);
		char *key;
		size_t klen;
		if ((st = parse_string(p, &key, &klen)) != WELD_OK)
			return st;
		int field = klen == 5 && memcmp(key, "dtype", 5) == 0	  ? 1
			    : klen == 5 && memcmp(key, "shape", 5) == 0	  ? 2
			    : klen == 12 && memcmp(key, "data_offsets", 12) == 0 ? 3
										 : 0;
		free(key);
		static const char *const fname[] = {"", "dtype", "shape", "data_offsets"};
		bool *seen = field == 1 ? &have_dtype : field == 2 ? &have_shape : &have_offsets;
		if (field && *seen)
			return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': duplicate field '%s'",
					  show(nb, name), fname[field]);
		skip_ws(p);
		if ((st = expect(p, ':')) != WELD_OK)
			return st;
		skip_ws(p);
		if (field == 1) {
			if (p->pos >= p->len || p->s[p->pos] != '"')
				return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': dtype is not a string",
						  show(nb, name));
			char *val;
			size_t vlen;
			if ((st = parse_string(p, &val, &vlen)) != WELD_OK)
				return st;
			t->dtype = vlen == strlen(val) ? weld_dtype_from_name(val) : WELD_DTYPE_INVALID;
			if (t->dtype == WELD_DTYPE_INVALID) {
				char vb[SHOW_MAX + 4];
				weld__fail(p->err, WELD_ERR_UNSUPPORTED, "tensor '%s': unknown dtype '%s'",
					   show(nb, name), show(vb, val));
				free(val);
				return WELD_ERR_UNSUPPORTED;
			}
			free(val);
		} else if (field == 2) {
			if ((st = parse_uint_list(p, name, "shape", WELD_MAX_DIMS, t->shape, &t->ndim)) !=
			    WELD_OK)
				return st;
		} else if (field == 3) {
			uint64_t off[2];
			size_t n;
			if ((st = parse_uint_list(p, name, "data_offsets", 2, off, &n)) != WELD_OK)
				return st;
			if (n != 2)
				return weld__fail(p->err, WELD_ERR_FORMAT,
						  "tensor '%s': data_offsets must hold exactly 2 integers",
						  show(nb, name));
			t->begin = off[0];
			t->end = off[1];
		} else {
			/* The Rust reader ignores unknown fields; so do we, after checking them. */
			if ((st = skip_value(p, 3)) != WELD_OK)
				return st;
		}
		if (field)
			*seen = true;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if ((st = expect(p, '}')) != WELD_OK)
			return st;
		break;
	}
	if (!have_dtype || !have_shape || !have_offsets)
		return weld__fail(p->err, WELD_ERR_FORMAT, "tensor '%s': missing '%s'", show(nb, name),
				  !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");

	char sb[400];
	if (t->end < t->begin)
		return weld__fail(p->err, WELD_ERR_FORMAT,
				  "tensor '%s': data_offsets [%llu,%llu] end before they begin", show(nb, name),
				  (unsigned long long)t->begin, (unsigned long long)t->end);
	uint64_t bytes;
	int which;
	if (!tensor_bytes(t->dtype, t->shape, t->ndim, &bytes, &which)) {
		if (which == 0)
			return weld__fail(p->err, WELD_ERR_FORMAT,
					  "tensor '%s': shape %s has more elements than fit in 64 bits",
					  show(nb, name), show_shape(sb, t->shape, t->ndim));
		return weld__fail(p->err, WELD_ERR_FORMAT,
				  "tensor '%s': %s %s is more bytes than fit in 64 bits", show(nb, name),
				  weld_dtype_name(t->dtype), show_shape(sb, t->shape, t->ndim));
	}
	if (t->end - t->begin != bytes)
		return weld__fail(p->err, WELD_ERR_FORMAT,
				  "tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but %s %s needs %llu",
				  show(nb, name), (unsigned long long)t->begin, (unsigned long long)t->end,
				  (unsigned long long)(t->end - t->begin), weld_dtype_name(t->dtype),
				  show_shape(sb, t->shape, t->ndim), (unsigned long long)bytes);
	return WELD_OK;
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
	char kb[SHOW_MAX + 4];
	weld_status st;
	if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "null", 4) == 0) {
		/* serde reads the Rust reader's Option<HashMap> from null as None. */
		p->pos += 4;
		return WELD_OK;
	}
	if (p->pos >= p->len || p->s[p->pos] != '{')
		return weld__fail(p->err, WELD_ERR_FORMAT, "__metadata__ is not a JSON object");
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		return WELD_OK;
	}
	for (;;) {
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
				   show(kb, key));
			free(key);
			return WELD_ERR_FORMAT;
		}
		if ((st = parse_string(p, &val, &vlen)) != WELD_OK) {
			free(key);
			return st;
		}
		if (vlen != strlen(val)) {
			weld__fail(p->err, WELD_ERR_UNSUPPORTED,
				   "__metadata__ value for '%s' contains a NUL character", show(kb, key));
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
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		return expect(p, '}');
	}
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
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		return WELD_OK;
	}
	for (;;) {
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
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		return expect(p, '}');
	}
}

/*
 * Walk the tensors in offset order: contiguous from 0, no holes or overlaps,
 * and the last byte of data is the last byte of the file.
 */
static weld_status check_layout(const weld_st_header *h, uint64_t file_size, weld_error *err)
{
	char nb[SHOW_MAX + 4], pb[SHOW_MAX + 4];
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
						show(nb, t->name), (unsigned long long)t->begin);
			else
				st = weld__fail(err, WELD_ERR_FORMAT,
						"tensor '%s' starts at %llu but tensor '%s' ends at %llu (%s)",
						show(nb, t->name), (unsigned long long)t->begin,
						show(pb, prev->name), (unsigned long long)cursor,
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

	const unsigned char *s = (const unsigned char *)json;
	size_t bad = weld__utf8_valid_len(s, len, false);
	if (bad < len)
		return weld__fail(err, WELD_ERR_FORMAT, "header is not valid UTF-8 (byte %zu)", bad);

	parser p = {.s = s, .len = len, .pos = 0, .err = err};
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
		char nb[SHOW_MAX + 4];
		if (!names || !find_duplicate(names, out->ntensors, &dup))
			st = weld__nomem(err);
		else if (dup)
			st = weld__fail(err, WELD_ERR_FORMAT, "duplicate tensor name '%s'", show(nb, dup));
		free(names);
		if (st == WELD_OK) {
			if (!find_duplicate((const char **)out->meta_keys, out->nmeta, &dup))
				st = weld__nomem(err);
			else if (dup)
				st = weld__fail(err, WELD_ERR_FORMAT, "__metadata__: duplicate key '%s'",
						show(nb, dup));
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

/* ------------------------------------------------------------------------- */
/* Header building                                                            */

typedef struct obuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} obuf;

static void put(obuf *b, const void *data, size_t n)
{
	if (b->oom)
		return;
	size_t need;
	if (!weld__add_size(&need, b->len, n)) {
		b->oom = true;
		return;
	}
	if (need > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;
		while (ncap < need)
			if (!weld__mul_size(&ncap, ncap, 2)) {
				b->oom = true;
				return;
			}
		uint8_t *q = realloc(b->p, ncap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, data, n);
	b->len = need;
}

static void put_str(obuf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void put_u64(obuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	put(b, tmp, (size_t)n);
}

/* A JSON string escaped exactly as serde_json writes it. */
static void put_json_string(obuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	put(b, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(b, run, (size_t)(s - run));
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
		put(b, esc, n);
	}
	put(b, run, (size_t)(s - run));
	put(b, "\"", 1);
}

/* The Python writer's order: dtype descending, then name bytewise ascending. */
static int cmp_out(const void *a, const void *b)
{
	const weld_st_out_tensor *x = a, *y = b;
	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

weld_status weld_st_build_header(weld_st_out_tensor *tensors, size_t n, const char *const *meta_keys,
				 const char *const *meta_vals, size_t nmeta, uint8_t **out_header,
				 size_t *out_len, uint64_t *out_data_len, weld_error *err)
{
	char nb[SHOW_MAX + 4], sb[400];
	if (!out_header || !out_len || !out_data_len || (n && !tensors) ||
	    (nmeta && (!meta_keys || !meta_vals)))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_st_build_header: missing argument");
	*out_header = NULL;
	*out_len = 0;
	*out_data_len = 0;

	for (size_t i = 0; i < n; i++) {
		weld_st_out_tensor *t = &tensors[i];
		if (!t->name)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor %zu has no name", i);
		size_t nl = strlen(t->name);
		if (!weld__utf8_valid(t->name, nl, false))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor name '%s' is not valid UTF-8",
					  show(nb, t->name));
		if (strcmp(t->name, "__metadata__") == 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "tensor name '__metadata__' is reserved by safetensors");
		if (!weld_dtype_name(t->dtype))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s': invalid dtype %d",
					  show(nb, t->name), (int)t->dtype);
		if (t->ndim > WELD_MAX_DIMS || (t->ndim && !t->shape))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensor '%s': invalid shape (%zu dimensions)",
					  show(nb, t->name), t->ndim);
		int which;
		if (!tensor_bytes(t->dtype, t->shape, t->ndim, &t->nbytes, &which))
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "tensor '%s': %s %s is more bytes than fit in 64 bits",
					  show(nb, t->name), weld_dtype_name(t->dtype),
					  show_shape(sb, t->shape, t->ndim));
	}
	for (size_t i = 0; i < nmeta; i++) {
		if (!meta_keys[i] || !meta_vals[i])
			return weld__fail(err, WELD_ERR_INVALID_ARG, "metadata entry %zu is NULL", i);
		size_t kl = strlen(meta_keys[i]), vl = strlen(meta_vals[i]);
		if (!weld__utf8_valid(meta_keys[i], kl, false) ||
		    !weld__utf8_valid(meta_vals[i], vl, false))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "metadata entry %zu is not valid UTF-8", i);
	}

	/* Duplicates: tensor names, then metadata keys. */
	const char *dup = NULL;
	const char **names = weld__reallocarray(NULL, n ? n : 1, sizeof(*names));
	if (!names)
		return weld__nomem(err);
	for (size_t i = 0; i < n; i++)
		names[i] = tensors[i].name;
	bool ok = find_duplicate(names, n, &dup);
	free(names);
	if (!ok)
		return weld__nomem(err);
	if (dup)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "duplicate tensor name '%s'", show(nb, dup));
	{
		const char **keys = weld__reallocarray(NULL, nmeta ? nmeta : 1, sizeof(*keys));
		if (!keys)
			return weld__nomem(err);
		for (size_t i = 0; i < nmeta; i++)
			keys[i] = meta_keys[i];
		ok = find_duplicate(keys, nmeta, &dup);
		free(keys);
		if (!ok)
			return weld__nomem(err);
		if (dup)
			return weld__fail(err, WELD_ERR_INVALID_ARG, "duplicate metadata key '%s'",
					  show(nb, dup));
	}

	if (n)
		qsort(tensors, n, sizeof(*tensors), cmp_out);
	uint64_t offset = 0;
	for (size_t i = 0; i < n; i++) {
		tensors[i].offset = offset;
		if (!weld__add_u64(&offset, offset, tensors[i].nbytes))
			return weld__fail(err, WELD_ERR_INVALID_ARG, "tensors total more bytes than fit in 64 bits");
	}

	/* Compact JSON in the order the Rust Metadata serializer uses. */
	obuf b = {0};
	put(&b, "\0\0\0\0\0\0\0\0", 8); /* the length prefix, filled in below */
	put(&b, "{", 1);
	bool first = true;
	if (nmeta) {
		/* nmeta == 0 stands for Python's metadata=None: no __metadata__ key at all. */
		put_str(&b, "\"__metadata__\":{");
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				put(&b, ",", 1);
			put_json_string(&b, meta_keys[i]);
			put(&b, ":", 1);
			put_json_string(&b, meta_vals[i]);
		}
		put(&b, "}", 1);
		first = false;
	}
	for (size_t i = 0; i < n; i++) {
		const weld_st_out_tensor *t = &tensors[i];
		if (!first)
			put(&b, ",", 1);
		first = false;
		put_json_string(&b, t->name);
		put_str(&b, ":{\"dtype\":\"");
		put_str(&b, weld_dtype_name(t->dtype));
		put_str(&b, "\",\"shape\":[");
		for (size_t d = 0; d < t->ndim; d++) {
			if (d)
				put(&b, ",", 1);
			put_u64(&b, t->shape[d]);
		}
		put_str(&b, "],\"data_offsets\":[");
		put_u64(&b, t->offset);
		put(&b, ",", 1);
		put_u64(&b, t->offset + t->nbytes);
		put_str(&b, "]}");
	}
	put(&b, "}", 1);
	/* Pad with spaces so the data buffer starts 8-aligned; N counts the padding. */
	while (!b.oom && b.len % 8)
		put(&b, " ", 1);
	if (b.oom) {
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
