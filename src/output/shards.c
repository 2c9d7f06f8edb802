/*
 * Sharded output as transformers 5.24 writes it (shards.h). Each rule here
 * is a line of Python in transformers or huggingface_hub; the comments name
 * them, since byte identity with those files is the point.
 */
#include "output/shards.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's str.strip() on ASCII: the C whitespace and the four separators \x1c-\x1f. */
static bool py_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* A equals the lower-case word W, ignoring ASCII case (float() takes "Inf", "NaN"). */
static bool same_word(const char *a, const char *w)
{
	for (; *a && *w; a++, w++)
		if ((*a >= 'A' && *a <= 'Z' ? *a + 32 : *a) != *w)
			return false;
	return !*a && !*w;
}

/* A run of digits with single '_' between them (Python's float() grammar); *P past it. */
static bool py_digits(const char **p)
{
	const char *s = *p;
	if (*s < '0' || *s > '9')
		return false;
	while ((*s >= '0' && *s <= '9') || (*s == '_' && s[1] >= '0' && s[1] <= '9'))
		s++;
	*p = s;
	return true;
}

/*
 * S[0..N) as Python's float() reads it (stripped, sign, digits with '_',
 * point, exponent, inf/infinity/nan), into *OUT; false where float() raises.
 * strtod alone would take hex floats and refuse the underscores.
 */
static bool py_float(const char *s, size_t n, double *out)
{
	char buf[128], *w = buf;
	while (n && py_space(*s))
		s++, n--;
	while (n && py_space(s[n - 1]))
		n--;
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	const char *p = buf + (buf[0] == '+' || buf[0] == '-');
	static const char *const words[] = {"inf", "infinity", "nan"};
	for (size_t i = 0; i < 3; i++)
		if (same_word(p, words[i]))
			goto convert;
	bool whole = py_digits(&p);
	if (*p == '.') {
		p++;
		if (!py_digits(&p) && !whole)
			return false;
	} else if (!whole) {
		return false;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '+' || *p == '-';
		if (!py_digits(&p))
			return false;
	}
	if (*p)
		return false;
convert:
	for (const char *r = buf; *r; r++)
		if (*r != '_')
			*w++ = *r;
	*w = '\0';
	*out = strtod(buf, NULL);
	return true;
}

weld_status weld_shard_size_parse(const char *text, int64_t *bytes, weld_error *err)
{
	static const struct {
		const char *unit;
		double mult;
	} units[] = {{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}};
	if (!text || !bytes)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "max_shard_size: no size given");
	size_t n = strlen(text);
	/* save_pretrained's int form: a plain number of bytes. */
	if (n && strspn(text, "0123456789") == n) {
		uint64_t v = 0;
		for (size_t i = 0; i < n; i++)
			if (!weld__mul_u64(&v, v, 10) || !weld__add_u64(&v, v, (uint64_t)(text[i] - '0')))
				v = UINT64_MAX;
		*bytes = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
		return WELD_OK;
	}
	/* huggingface_hub's parse_size_to_int: strip, the last two characters upper-cased are the unit. */
	const char *s = text;
	while (n && py_space(*s))
		s++, n--;
	while (n && py_space(s[n - 1]))
		n--;
	char unit[3] = {0};
	for (size_t i = 0; i < 2 && n >= 2; i++)
		unit[i] = (char)(s[n - 2 + i] >= 'a' && s[n - 2 + i] <= 'z' ? s[n - 2 + i] - 32 : s[n - 2 + i]);
	double mult = 0, v;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (n >= 2 && strcmp(unit, units[i].unit) == 0)
			mult = units[i].mult;
	if (mult == 0)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "max_shard_size '%s': no unit TB, GB, MB or KB (powers of 1000, as transformers takes "
				  "them; KiB, MiB, GiB are not) and not a plain number of bytes", text);
	if (!py_float(s, n - 2, &v))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "max_shard_size '%s': '%.*s' is not a number", text,
				  (int)(n - 2), s);
	/* int(value * multiplier): NaN and infinity raise there; the rest truncates toward zero. */
	double b = v * mult;
	if (isnan(b) || isinf(b))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "max_shard_size '%s': not a finite size", text);
	*bytes = b >= 9223372036854775807.0 ? INT64_MAX : b <= -9223372036854775808.0 ? INT64_MIN : (int64_t)b;
	return WELD_OK;
}

/* One "."-separated part of a name as dot_natural_key sees it. */
typedef struct nat_part {
	const char *text, *digits; /* text part, then its trailing ASCII digits (digits only: a number) */
	size_t ntext, ndigits;
} nat_part;

/* The part of S starting at *AT (up to '.' or the end); *AT moves past the '.'; false at the end. */
static bool next_part(const char *s, size_t *at, bool *more, nat_part *out)
{
	if (!*more)
		return false;
	const char *b = s + *at, *dot = strchr(b, '.');
	size_t len = dot ? (size_t)(dot - b) : strlen(b);
	*more = dot != NULL;
	*at += len + 1;
	size_t t = len;
	while (t && b[t - 1] >= '0' && b[t - 1] <= '9')
		t--;
	*out = (nat_part){b, b + t, t, len - t};
	return true;
}

/* Two runs of ASCII digits as integers (Python's int(): leading zeros do not count). */
static int cmp_number(const char *a, size_t na, const char *b, size_t nb)
{
	while (na && *a == '0')
		a++, na--;
	while (nb && *b == '0')
		b++, nb--;
	if (na != nb)
		return na < nb ? -1 : 1;
	return memcmp(a, b, na);
}

/* Strings of bytes as Python compares str: code points, which UTF-8 byte order keeps. */
static int cmp_text(const char *a, size_t na, const char *b, size_t nb)
{
	int c = memcmp(a, b, na < nb ? na : nb);
	return c ? c : na < nb ? -1 : na > nb;
}

/*
 * transformers' dot_natural_key tuples compared: an all-digit part is
 * (0, int) and sorts first; another is (1, text) or (1, text, int) of its
 * trailing digits. Parts are ASCII-digit based (Python's isdigit takes other
 * digits too, where int() then fails: no model has them).
 */
static int cmp_part(const nat_part *x, const nat_part *y)
{
	bool xn = x->ntext == 0 && x->ndigits, yn = y->ntext == 0 && y->ndigits;
	if (xn != yn)
		return xn ? -1 : 1;
	if (xn)
		return cmp_number(x->digits, x->ndigits, y->digits, y->ndigits);
	int c = cmp_text(x->text, x->ntext, y->text, y->ntext);
	if (c || (!x->ndigits && !y->ndigits))
		return c;
	if (!x->ndigits || !y->ndigits)
		return x->ndigits ? 1 : -1;
	return cmp_number(x->digits, x->ndigits, y->digits, y->ndigits);
}

static int cmp_natural(const char *a, const char *b)
{
	size_t ia = 0, ib = 0;
	bool ma = true, mb = true;
	nat_part pa, pb;
	for (;;) {
		bool ha = next_part(a, &ia, &ma, &pa), hb = next_part(b, &ib, &mb, &pb);
		if (!ha || !hb)
			return ha ? 1 : hb ? -1 : 0;
		int c = cmp_part(&pa, &pb);
		if (c)
			return c;
	}
}

typedef struct nat_entry {
	const char *name;
	size_t index;
} nat_entry;

/* Natural order; equal keys ("layers.01", "layers.1") keep the plan's order, as Python's stable sort would. */
static int cmp_entry(const void *a, const void *b)
{
	const nat_entry *x = a, *y = b;
	int c = cmp_natural(x->name, y->name);
	return c ? c : x->index < y->index ? -1 : x->index > y->index;
}

weld_status weld__shard_split(const weld_plan *p, int64_t limit, uint32_t *file_of, size_t *nfiles, weld_error *err)
{
	nat_entry *order = weld__calloc(p->nt ? p->nt : 1, sizeof(*order));
	size_t *open = weld__calloc(p->nt ? p->nt : 1, sizeof(*open));
	if (!order || !open) {
		free(order);
		free(open);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < p->nt; i++)
		order[i] = (nat_entry){p->t[i].name, i};
	qsort(order, p->nt, sizeof(*order), cmp_entry);
	/* split_state_dict_into_shards_factory; sizes are file sizes, so below 2^63 and their sums too. */
	size_t nopen = 0, n = 0;
	uint64_t open_bytes = 0;
	for (size_t k = 0; k < p->nt; k++) {
		size_t i = order[k].index;
		uint64_t size = p->t[i].nbytes;
		if ((int64_t)size > limit) {
			file_of[i] = (uint32_t)n++; /* its own shard, now; the open one stays open */
			continue;
		}
		if ((int64_t)(open_bytes + size) > limit) {
			for (size_t j = 0; j < nopen; j++)
				file_of[open[j]] = (uint32_t)n;
			n += nopen > 0;
			nopen = 0;
			open_bytes = 0;
		}
		open[nopen++] = i;
		open_bytes += size;
	}
	for (size_t j = 0; j < nopen; j++)
		file_of[open[j]] = (uint32_t)n;
	n += nopen > 0;
	free(order);
	free(open);
	if (n > 99999)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "max_shard_size: %zu shards; transformers' names (model-00001-of-00005) number at most 99999", n);
	*nfiles = n;
	return WELD_OK;
}

void weld__shard_name(char *buf, size_t cap, size_t k, size_t n)
{
	snprintf(buf, cap, "model-%05zu-of-%05zu.safetensors", k + 1, n);
}

/* The next code point of UTF-8 text at *S (valid UTF-8: the header builder checked every name). */
static uint32_t utf8_next(const unsigned char **s)
{
	const unsigned char *p = *s;
	uint32_t c = p[0];
	size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (len > 1)
		c &= 0x3f >> (len - 1);
	for (size_t i = 1; i < len; i++)
		c = (c << 6) | (p[i] & 0x3f);
	*s = p + len;
	return c;
}

/* S as Python's json.dumps writes a str with ensure_ascii: \uXXXX for all but printable ASCII. */
static void put_py_json_string(weld_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	weld__buf_put(b, "\"", 1);
	while (*p) {
		uint32_t c = utf8_next(&p);
		const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" :
				  c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
		if (esc) {
			weld__buf_str(b, esc);
			continue;
		}
		if (c >= 0x20 && c < 0x7f) {
			char ch = (char)c;
			weld__buf_put(b, &ch, 1);
			continue;
		}
		uint32_t units[2] = {c, 0};
		size_t nu = 1;
		if (c > 0xffff) {
			units[0] = 0xd800 + ((c - 0x10000) >> 10);
			units[1] = 0xdc00 + ((c - 0x10000) & 0x3ff);
			nu = 2;
		}
		for (size_t i = 0; i < nu; i++) {
			char u[6] = {'\\', 'u', hex[units[i] >> 12], hex[(units[i] >> 8) & 15], hex[(units[i] >> 4) & 15],
				     hex[units[i] & 15]};
			weld__buf_put(b, u, 6);
		}
	}
	weld__buf_put(b, "\"", 1);
}

static int cmp_name_bytes(const void *a, const void *b)
{
	return strcmp(((const nat_entry *)a)->name, ((const nat_entry *)b)->name);
}

weld_status weld__shard_index(const weld_plan *p, const uint32_t *file_of, size_t nfiles, char **out, size_t *len,
			      weld_error *err)
{
	/* save_pretrained: {"metadata": {"total_parameters": num_parameters(), "total_size": ...}, "weight_map": ...} */
	nat_entry *byname = weld__calloc(p->nt ? p->nt : 1, sizeof(*byname));
	if (!byname)
		return weld__nomem(err);
	uint64_t params = 0, size = 0;
	for (size_t i = 0; i < p->nt; i++) {
		byname[i] = (nat_entry){p->t[i].name, i};
		params += p->t[i].numel;
		size += p->t[i].nbytes;
	}
	/* sort_keys=True: Python orders str keys by code point, which strcmp on UTF-8 keeps. */
	qsort(byname, p->nt, sizeof(*byname), cmp_name_bytes);
	weld_buf b = {0};
	char shard[WELD_SHARD_NAME_MAX];
	weld__buf_str(&b, "{\n  \"metadata\": {\n    \"total_parameters\": ");
	weld__buf_u64(&b, params);
	weld__buf_str(&b, ",\n    \"total_size\": ");
	weld__buf_u64(&b, size);
	weld__buf_str(&b, "\n  },\n  \"weight_map\": {");
	for (size_t k = 0; k < p->nt; k++) {
		weld__buf_str(&b, k ? ",\n    " : "\n    ");
		put_py_json_string(&b, byname[k].name);
		weld__buf_str(&b, ": \"");
		weld__shard_name(shard, sizeof(shard), file_of[byname[k].index], nfiles);
		weld__buf_str(&b, shard);
		weld__buf_str(&b, "\"");
	}
	weld__buf_str(&b, "\n  }\n}\n");
	free(byname);
	if (b.failed) {
		free(b.p);
		return weld__nomem(err);
	}
	*out = (char *)b.p;
	*len = b.len;
	return WELD_OK;
}
