/* A growable byte buffer whose first failed allocation sticks until checked (util.h). */
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void weld__buf_put(weld_buf *b, const void *data, size_t n)
{
	if (b->failed || n == 0)
		return;
	size_t need;
	if (!weld__add_size(&need, b->len, n)) {
		b->failed = true;
		return;
	}
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < need)
			if (!weld__mul_size(&cap, cap, 2)) {
				b->failed = true;
				return;
			}
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len = need;
}

void weld__buf_str(weld_buf *b, const char *s)
{
	weld__buf_put(b, s, strlen(s));
}

void weld__buf_u64(weld_buf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	weld__buf_put(b, tmp, (size_t)n);
}

void weld__buf_le(weld_buf *b, uint64_t v, size_t n)
{
	uint8_t t[8];
	for (size_t i = 0; i < n && i < 8; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	weld__buf_put(b, t, n < 8 ? n : 8);
}

void weld__buf_fill(weld_buf *b, uint8_t c, size_t n)
{
	uint8_t t[64];
	memset(t, c, sizeof(t));
	while (n > 0) {
		size_t k = n < sizeof(t) ? n : sizeof(t);
		weld__buf_put(b, t, k);
		n -= k;
	}
}
