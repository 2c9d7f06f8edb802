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

/*
 * TEXT (LEN bytes) into ERR's message. One too long keeps its head and its
 * tail around "...": the head names the file, the tail says what went wrong.
 */
/*
 * Messages quote names taken from the input (a legacy storage key, a tensor
 * name), which may hold any byte: control characters become '?', so a
 * message stays one line and cannot send escape sequences to a terminal.
 */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void set_message(weld_error *err, const char *text, size_t len)
{
	size_t cap = sizeof(err->message);
	if (len < cap) {
		memcpy(err->message, text, len + 1);
	} else {
		size_t head = cap / 3, tail = cap - 1 - head - 3;
		memcpy(err->message, text, head);
		memcpy(err->message + head, "...", 3);
		memcpy(err->message + head + 3, text + len - tail, tail + 1);
	}
	one_line(err->message);
}

/* FMT and AP formatted into a malloc'd string, or into FALLBACK (cut) when there is no memory. */
static char *format(char *fallback, size_t cap, size_t *len, const char *fmt, va_list ap)
{
	va_list again;
	va_copy(again, ap);
	int n = vsnprintf(fallback, cap, fmt, ap);
	char *text = n >= 0 && (size_t)n >= cap ? malloc((size_t)n + 1) : NULL;
	if (text)
		vsnprintf(text, (size_t)n + 1, fmt, again);
	va_end(again);
	*len = text ? (size_t)n : strlen(fallback);
	return text ? text : fallback;
}

weld_status weld__fail(weld_error *err, weld_status status, const char *fmt, ...)
{
	if (err) {
		char buf[WELD_ERROR_MESSAGE_MAX];
		size_t len;
		va_list ap;
		va_start(ap, fmt);
		char *text = format(buf, sizeof(buf), &len, fmt, ap);
		va_end(ap);
		set_message(err, text, len);
		if (text != buf)
			free(text);
		err->status = status;
	}
	return status;
}

weld_status weld__prefix(weld_error *err, const char *fmt, ...)
{
	if (!err)
		return WELD_ERR_INVALID_ARG;
	char buf[WELD_ERROR_MESSAGE_MAX], joined[2 * WELD_ERROR_MESSAGE_MAX + 2];
	size_t len;
	va_list ap;
	va_start(ap, fmt);
	char *prefix = format(buf, sizeof(buf), &len, fmt, ap);
	va_end(ap);
	/* The old message is at most the buffer; a long prefix is what gets cut. */
	int n = snprintf(joined, sizeof(joined), "%.*s: %s", (int)(len < WELD_ERROR_MESSAGE_MAX ? len : WELD_ERROR_MESSAGE_MAX),
			 prefix, err->message);
	if (prefix != buf)
		free(prefix);
	set_message(err, joined, n > 0 ? strlen(joined) : 0);
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
