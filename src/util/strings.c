/* Strings: lists of them, formatted ones, one-line notices (util.h). */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool weld__find_duplicate(const char *const *names, size_t n, const char **dup)
{
	*dup = NULL;
	if (n < 2)
		return true;
	const char **s = weld__reallocarray(NULL, n, sizeof(*s));
	if (!s)
		return false;
	memcpy(s, names, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_strp);
	for (size_t i = 1; i < n && !*dup; i++)
		if (strcmp(s[i - 1], s[i]) == 0)
			*dup = s[i];
	free(s);
	return true;
}

void weld__free_strings(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

bool weld__has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

char *weld__format(const char *fmt, ...)
{
	va_list ap, again;
	va_start(ap, fmt);
	va_copy(again, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = n < 0 ? NULL : malloc((size_t)n + 1);
	if (p)
		vsnprintf(p, (size_t)n + 1, fmt, again);
	va_end(again);
	return p;
}

void weld__append_note(char *buf, size_t cap, const char *note)
{
	size_t used = strlen(buf);
	if (note[0] && used + 1 < cap)
		snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", note);
}
