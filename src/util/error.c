/* Status names and the one-line error messages every failing call fills. */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *weld_status_str(weld_status status)
{
	switch (status) {
	case WELD_OK: return "ok";
	case WELD_ERR_INVALID_ARG: return "invalid argument";
	case WELD_ERR_NOMEM: return "out of memory";
	case WELD_ERR_IO: return "I/O error";
	case WELD_ERR_FORMAT: return "format error";
	case WELD_ERR_UNSUPPORTED: return "unsupported";
	case WELD_ERR_UNSAFE: return "unsafe input";
	case WELD_ERR_CHECKSUM: return "checksum mismatch";
	case WELD_ERR_MISMATCH: return "inconsistent checkpoint";
	case WELD_ERR_LIMIT: return "limit exceeded";
	case WELD_ERR_NO_DEVICE: return "no usable device";
	case WELD_ERR_CANCELLED: return "cancelled";
	case WELD_ERR_DEVICE: return "device failure";
	}
	return "unknown status";
}

const char *weld_version(void)
{
	return WELD_VERSION_STRING;
}

weld_status weld__fail(weld_error *err, weld_status status, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
		err->status = status;
	}
	return status;
}

weld_status weld__prefix(weld_error *err, const char *fmt, ...)
{
	if (!err)
		return WELD_ERR_INVALID_ARG;
	char prefix[512];
	char old[WELD_ERROR_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	char joined[sizeof(prefix) + sizeof(old) + 2];
	memcpy(old, err->message, sizeof(old));
	old[sizeof(old) - 1] = '\0';
	snprintf(joined, sizeof(joined), "%s: %s", prefix, old);
	/* Long messages are cut, never overflowed. */
	snprintf(err->message, sizeof(err->message), "%.*s", (int)sizeof(err->message) - 1, joined);
	return err->status;
}

weld_status weld__nomem(weld_error *err)
{
	return weld__fail(err, WELD_ERR_NOMEM, "out of memory");
}

void *weld__calloc(size_t n, size_t size)
{
	if (n == 0 || size == 0)
		return calloc(1, 1);
	return calloc(n, size);
}

void *weld__reallocarray(void *p, size_t n, size_t size)
{
	size_t total;
	if (!weld__mul_size(&total, n, size))
		return NULL;
	return realloc(p, total ? total : 1);
}

char *weld__strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *weld__strdup(const char *s)
{
	return weld__strndup(s, strlen(s));
}
