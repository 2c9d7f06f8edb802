/*
 * Fuzz target: the input is a config.json text, rewritten to bfloat16 by
 * weld_config_set_dtype. Properties checked:
 *  - a refusal leaves *out NULL and says why in one line;
 *  - the rewrite is idempotent and forgets any earlier dtype: f(f(x,a),a)
 *    and f(f(x,b),a) are f(x,a) byte for byte;
 *  - against cJSON (an independent parser): when both read the input, the
 *    output parses too, every top-level "dtype"/"torch_dtype" (and those one
 *    level down, in sub-config objects) holds the new dtype, "torch_dtype"
 *    was added last when there was none, and everything else is unchanged.
 * cJSON is more lenient than Python's json (whitespace is any byte <= 32,
 * raw control characters in strings, leading zeros), so weld refusing what
 * cJSON reads is by design and not checked. The reverse, weld accepting what
 * cJSON refuses, is allowed only for what Python's json reads and cJSON does
 * not: NaN/Infinity, \u escapes (lone surrogates), numbers past cJSON 1.7's
 * 63-character number buffer.
 */
#include "output/config_json.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char DTYPE[] = "bfloat16";

static void check_failure(weld_status st, const char *out, const weld_error *err)
{
	if (st == WELD_OK || out || !memchr(err->message, '\0', sizeof(err->message)) ||
	    err->message[0] == '\0' || strchr(err->message, '\n'))
		abort();
}

/*
 * Deep equality in member order. Not cJSON_Compare: it looks object members
 * up by name, so duplicate keys (valid JSON, kept by weld) would compare unequal.
 */
static bool same(const cJSON *a, const cJSON *b)
{
	if ((a->type & 0xff) != (b->type & 0xff))
		return false;
	if ((a->string || b->string) && (!a->string || !b->string || strcmp(a->string, b->string) != 0))
		return false;
	if (cJSON_IsString(a))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsNumber(a))
		return a->valuedouble == b->valuedouble;
	const cJSON *x = a->child, *y = b->child;
	for (; x && y; x = x->next, y = y->next)
		if (!same(x, y))
			return false;
	return !x && !y;
}

static bool is_dtype_key(const char *k)
{
	return k && (strcmp(k, "dtype") == 0 || strcmp(k, "torch_dtype") == 0);
}

static bool is_new_dtype(const cJSON *v)
{
	return cJSON_IsString(v) && strcmp(v->valuestring, DTYPE) == 0;
}

/* A member one level down: its dtype keys rewritten, the rest equal. */
static void check_sub_object(const cJSON *in, const cJSON *out)
{
	const cJSON *a = in->child, *b = out->child;
	for (; a && b; a = a->next, b = b->next) {
		if (!a->string || !b->string || strcmp(a->string, b->string) != 0)
			abort();
		if (is_dtype_key(a->string) ? !is_new_dtype(b) : !same(a, b))
			abort();
	}
	if (a || b)
		abort();
}

/* OUT is IN with the dtype rewritten, member by member in order (duplicates included). */
static void check_members(const cJSON *in, const cJSON *out)
{
	bool had_dtype = false;
	const cJSON *a = in->child, *b = out->child;
	for (; a && b; a = a->next, b = b->next) {
		if (!a->string || !b->string || strcmp(a->string, b->string) != 0)
			abort();
		if (is_dtype_key(a->string)) {
			had_dtype = true;
			if (!is_new_dtype(b))
				abort();
		} else if (cJSON_IsObject(a)) {
			if (!cJSON_IsObject(b))
				abort();
			check_sub_object(a, b);
		} else if (!same(a, b)) {
			abort();
		}
	}
	if (a)
		abort();
	if (had_dtype ? b != NULL : (!b || b->next || strcmp(b->string, "torch_dtype") != 0 || !is_new_dtype(b)))
		abort();
}

/* Whether a 64-character run of number characters is there (cJSON 1.7.15 cuts numbers at 63). */
static bool has_long_number(const char *s)
{
	size_t run = 0;
	for (; *s; s++) {
		run = strchr("0123456789+-.eE", *s) ? run + 1 : 0;
		if (run >= 64)
			return true;
	}
	return false;
}

/* Only what Python's json reads and cJSON does not may make cJSON refuse what weld took. */
static void check_cjson_refusal_explained(const char *text)
{
	if (!strstr(text, "NaN") && !strstr(text, "Infinity") && !strstr(text, "\\u") &&
	    !has_long_number(text))
		abort();
}

static void check_against_cjson(const char *text, const char *out)
{
	/* \u0000 ends a cJSON string early: a key "dtype\u0000x" would read as "dtype". */
	if (strstr(text, "\\u0000"))
		return;
	cJSON *in = cJSON_ParseWithOpts(text, NULL, true);
	if (!in) {
		check_cjson_refusal_explained(text);
		return;
	}
	if (!cJSON_IsObject(in))
		abort(); /* weld took a non-object */
	cJSON *o = cJSON_ParseWithOpts(out, NULL, true);
	if (!o || !cJSON_IsObject(o))
		abort();
	check_members(in, o);
	cJSON_Delete(o);
	cJSON_Delete(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	weld_error err = {0};
	char *out = (char *)1;
	size_t out_len = 0;
	weld_status st = weld_config_set_dtype(json, size, DTYPE, &out, &out_len, &err);
	if (st != WELD_OK) {
		check_failure(st, out, &err);
		return 0;
	}
	/* No NUL is valid anywhere in JSON text, raw. */
	if (memchr(data, 0, size) || !out || out[out_len] != '\0' || strlen(out) != out_len)
		abort();

	/* Idempotent, and an earlier rewrite to another dtype leaves no trace. */
	char *again = NULL, *other = NULL, *back = NULL;
	size_t again_len = 0, other_len = 0, back_len = 0;
	if (weld_config_set_dtype(out, out_len, DTYPE, &again, &again_len, &err) != WELD_OK ||
	    again_len != out_len || memcmp(again, out, out_len) != 0)
		abort();
	if (weld_config_set_dtype(json, size, "float16", &other, &other_len, &err) != WELD_OK ||
	    weld_config_set_dtype(other, other_len, DTYPE, &back, &back_len, &err) != WELD_OK ||
	    back_len != out_len || memcmp(back, out, out_len) != 0)
		abort();

	/* A dtype name that could break the JSON is refused before anything is read. */
	char *bad_out = (char *)1;
	size_t bad_len = 0;
	weld_error bad_err = {0};
	st = weld_config_set_dtype(json, size, "a\"b", &bad_out, &bad_len, &bad_err);
	check_failure(st, bad_out, &bad_err);

	char *text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	check_against_cjson(text, out);
	free(text);
	free(back);
	free(other);
	free(again);
	free(out);
	return 0;
}
