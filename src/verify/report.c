/* The lines of weld verify's report and the small helpers every check uses (verify.h). */
#include "verify/verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *weld_check_level_name(weld_check_level level)
{
	switch (level) {
	case WELD_CHECK_PASS: return "PASS";
	case WELD_CHECK_WARN: return "WARN";
	case WELD_CHECK_FAIL: break;
	}
	return "FAIL";
}

void weld__vf_appendf(char *buf, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(buf);
	if (n + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
}

void weld__vf_check(weld_verify_report *r, const char *name, weld_check_level level, const char *fmt, ...)
{
	if (r->nchecks == WELD_VERIFY_MAX_CHECKS)
		return; /* cannot happen: the checks are fewer */
	weld_check *c = &r->checks[r->nchecks++];
	c->name = name;
	c->level = level;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
}

void weld__vf_append_names(char *buf, size_t cap, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n && i < WELD_VERIFY_LIST_MAX; i++)
		weld__vf_appendf(buf, cap, "%s'%s'", i ? ", " : "", names[i]);
	if (n > WELD_VERIFY_LIST_MAX)
		weld__vf_appendf(buf, cap, " and %zu more", n - WELD_VERIFY_LIST_MAX);
}

void weld__vf_shape_str(char *buf, size_t cap, const uint64_t *shape, size_t ndim)
{
	snprintf(buf, cap, "[");
	for (size_t d = 0; d < ndim; d++)
		weld__vf_appendf(buf, cap, "%s%llu", d ? ", " : "", (unsigned long long)shape[d]);
	weld__vf_appendf(buf, cap, "]");
}

const char *weld__vf_in_dir(const weld_verifier *v, const char *message)
{
	size_t n = strlen(v->dir);
	while (n > 1 && v->dir[n - 1] == '/')
		n--;
	return strncmp(message, v->dir, n) == 0 && message[n] == '/' ? message + n + 1 : message;
}

const char *weld__vf_base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

int weld__vf_cmp_name(const void *a, const void *b)
{
	return strcmp(((const weld_vf_name *)a)->name, ((const weld_vf_name *)b)->name);
}

size_t weld__vf_find_out(const weld_verifier *v, const char *name)
{
	weld_vf_name key = {name, 0};
	const weld_vf_name *hit = v->nby ? bsearch(&key, v->by_name, v->nby, sizeof(key), weld__vf_cmp_name) : NULL;
	return hit ? hit->index : SIZE_MAX;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool weld__vf_has_file(const weld_verifier *v, const char *name)
{
	const char *key = name;
	return v->nfiles && bsearch(&key, v->files, v->nfiles, sizeof(char *), cmp_str) != NULL;
}
