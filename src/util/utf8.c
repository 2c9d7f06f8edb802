/*
 * UTF-8 validation, one definition for every reader and writer. Two rules
 * differ only in encoded UTF-16 surrogates (U+D800..U+DFFF): JSON readers
 * (serde_json, the safetensors reference) refuse them, while Python's
 * pickle and torch decode with "surrogatepass" and accept them.
 */
#include "util/util.h"

size_t weld__utf8_valid_len(const void *data, size_t n, bool surrogates)
{
	const uint8_t *s = data;
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t more;
		uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
		if (c >= 0xC2 && c <= 0xDF) {
			more = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			more = 2;
			if (c == 0xE0)
				lo = 0xA0; /* overlong */
			else if (c == 0xED && !surrogates)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			more = 3;
			if (c == 0xF0)
				lo = 0x90; /* overlong */
			else if (c == 0xF4)
				hi = 0x8F; /* past U+10FFFF */
		} else {
			return i;
		}
		if (n - i <= more || s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= more; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
		i += more + 1;
	}
	return n;
}

bool weld__utf8_valid(const void *s, size_t n, bool surrogates)
{
	return weld__utf8_valid_len(s, n, surrogates) == n;
}

uint32_t weld__utf8_next(const uint8_t *s, size_t *i)
{
	uint8_t c = s[*i];
	size_t k = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : 3;
	uint32_t cp = k == 0 ? c : k == 1 ? (c & 0x1Fu) : k == 2 ? (c & 0x0Fu) : (c & 0x07u);
	for (size_t j = 1; j <= k; j++)
		cp = (cp << 6) | (s[*i + j] & 0x3Fu);
	*i += k + 1;
	return cp;
}
