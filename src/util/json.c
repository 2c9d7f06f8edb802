/* JSON tokens for the strict readers (json.h). */
#include "util/json.h"

#include <string.h>

void weld__json_skip_ws(const char *s, size_t n, size_t *pos)
{
	while (*pos < n && weld__json_is_ws(s[*pos]))
		++*pos;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int hex4(const char *s)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int d = hex_digit(s[i]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* Append code point CP to OUT as UTF-8 (surrogates too, when they are let through). */
static void put_utf8(char *out, size_t *o, uint32_t cp)
{
	if (!out) {
		*o += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
		return;
	}
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xC0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xE0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[(*o)++] = (char)(0x80 | (cp & 0x3F));
	} else {
		out[(*o)++] = (char)(0xF0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[(*o)++] = (char)(0x80 | (cp & 0x3F));
	}
}

/* The \u escape at S[i] (inside a string ending somewhere before N): its code point and length. */
static weld_json_error u_escape(const char *s, size_t n, size_t i, bool strict, uint32_t *cp, size_t *len)
{
	/* A character that is not a hex digit says more than the text running out before four. */
	for (size_t k = i + 2; k < n && k < i + 6; k++)
		if (hex_digit(s[k]) < 0)
			return WELD_JSON_U_ESCAPE;
	if (n - i < 6)
		return WELD_JSON_UNTERMINATED;
	int v = hex4(s + i + 2);
	*cp = (uint32_t)v;
	*len = 6;
	if (v >= 0xD800 && v <= 0xDBFF) {
		/* A high surrogate wants a low one right after it. */
		int lo = n - i >= 12 && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s + i + 8) : -1;
		if (lo >= 0xDC00 && lo <= 0xDFFF) {
			*cp = 0x10000 + (((uint32_t)v - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
			*len = 12;
			return WELD_JSON_OK;
		}
	} else if (v < 0xDC00 || v > 0xDFFF) {
		return WELD_JSON_OK;
	}
	return strict ? WELD_JSON_SURROGATE : WELD_JSON_OK;
}

weld_json_error weld__json_string(const char *s, size_t n, size_t *pos, bool strict, char *out, size_t *out_len,
				  size_t *at)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	size_t start = *pos, o = 0;
	for (size_t i = start + 1; i < n;) {
		unsigned char c = (unsigned char)s[i];
		weld_json_error e = WELD_JSON_OK;
		if (c == '"') {
			*pos = i + 1;
			if (out_len)
				*out_len = o;
			return WELD_JSON_OK;
		}
		if (c < 0x20) {
			e = WELD_JSON_CONTROL;
		} else if (c != '\\') {
			if (out)
				out[o] = (char)c;
			o++;
			i++;
			continue;
		} else if (i + 1 >= n) {
			break;
		} else if (s[i + 1] == 'u') {
			uint32_t cp;
			size_t len;
			if (!(e = u_escape(s, n, i, strict, &cp, &len))) {
				put_utf8(out, &o, cp);
				i += len;
				continue;
			}
			if (e == WELD_JSON_UNTERMINATED)
				break;
		} else {
			const char *k = s[i + 1] ? strchr(from, s[i + 1]) : NULL;
			if (k) {
				if (out)
					out[o] = to[k - from];
				o++;
				i += 2;
				continue;
			}
			e = WELD_JSON_ESCAPE;
		}
		*at = i;
		return e;
	}
	*at = start;
	return WELD_JSON_UNTERMINATED;
}

static bool digit_at(const char *s, size_t n, size_t i)
{
	return i < n && s[i] >= '0' && s[i] <= '9';
}

/* Step I over one or more digits; false when there are none. */
static bool digits(const char *s, size_t n, size_t *i)
{
	if (!digit_at(s, n, *i))
		return false;
	while (digit_at(s, n, *i))
		++*i;
	return true;
}

weld_json_error weld__json_number(const char *s, size_t n, size_t *pos, bool python)
{
	size_t i = *pos;
	if (i < n && s[i] == '-')
		i++;
	if (python && n - i >= 8 && memcmp(s + i, "Infinity", 8) == 0) {
		*pos = i + 8;
		return WELD_JSON_OK;
	}
	if (digit_at(s, n, i) && s[i] == '0')
		i++;
	else if (!digits(s, n, &i))
		return WELD_JSON_NUMBER;
	if (i < n && s[i] == '.' && (++i, !digits(s, n, &i)))
		return WELD_JSON_NUMBER;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (!digits(s, n, &i))
			return WELD_JSON_NUMBER;
	}
	*pos = i;
	return WELD_JSON_OK;
}
