/*
 * config.json with its dtype rewritten, edited as text and never
 * re-serialized: a small scanner validates the whole document (Python's
 * json rules, tokens from util/json.c) and records where the dtype values
 * sit, and only those bytes change, so a transformers-written config comes
 * out exactly as transformers would have written it for the new dtype.
 */
#include "output/config_json.h"

#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest container nesting accepted in config.json (keeps recursion bounded). */
#define JSON_MAX_DEPTH 256

/* Bytes [start, end) of the input replaced by text[0..text_len). */
typedef struct json_edit {
	size_t start, end;
	const char *text;
	size_t text_len;
} json_edit;

typedef struct json_scanner {
	const char *s;
	size_t n, pos;
	const char *quoted_dtype; /* "\"bfloat16\"", the text every edit writes */
	size_t quoted_len;
	json_edit *edits;
	size_t nedits, cap;
	weld_error *err;
} json_scanner;

/* Where the top-level object's members sit, to add "torch_dtype" in its style. */
typedef struct object_shape {
	size_t open;           /* the '{' */
	size_t nmembers;
	size_t first_key;      /* the first key's opening quote */
	size_t prev_value_end; /* end of the next-to-last member's value */
	size_t last_key, last_key_end, last_value, last_value_end;
	bool has_dtype_key;
} object_shape;

static weld_status bad(json_scanner *sc, const char *what, size_t at)
{
	return weld__fail(sc->err, WELD_ERR_FORMAT, "not a JSON object: %s at byte %zu", what, at);
}

/* "expected X" at the cursor, or end of text when the text ran out first. */
static weld_status expected(json_scanner *sc, const char *what)
{
	return bad(sc, sc->pos < sc->n ? what : "unexpected end of text", sc->pos);
}

static void skip_ws(json_scanner *sc)
{
	weld__json_skip_ws(sc->s, sc->n, &sc->pos);
}

/* A token error, in this scanner's words. */
static weld_status lex_fail(json_scanner *sc, weld_json_error e, size_t at)
{
	static const char *const what[] = {
		[WELD_JSON_OK] = "",
		[WELD_JSON_UNTERMINATED] = "unterminated string",
		[WELD_JSON_CONTROL] = "control character in string",
		[WELD_JSON_ESCAPE] = "invalid escape",
		[WELD_JSON_U_ESCAPE] = "invalid escape",
		[WELD_JSON_SURROGATE] = "invalid escape",
		[WELD_JSON_NUMBER] = "invalid number",
	};
	return bad(sc, what[e], at);
}

/* A string token at the cursor, Python's json rules (lone surrogates pass). */
static weld_status scan_string(json_scanner *sc)
{
	size_t at;
	weld_json_error e = weld__json_string(sc->s, sc->n, &sc->pos, false, NULL, NULL, &at);
	return e ? lex_fail(sc, e, at) : WELD_OK;
}

/*
 * Whether the (validated) string token S[START..END) decodes to the ASCII
 * WORD, so an escaped spelling of "dtype" is still found.
 */
static bool key_is(const char *s, size_t start, size_t end, const char *word)
{
	/*
	 * The token may spell each character of WORD as a 6-byte \uXXXX escape:
	 * "torch_dtype" fully escaped is 68 bytes. A token longer than that is
	 * not WORD; one that fits decodes into no more bytes than it has.
	 */
	char decoded[2 + 6 * 16];
	size_t len, at;
	if (strlen(word) > 16 || end - start > 2 + 6 * strlen(word))
		return false;
	weld__json_string(s, end, &start, false, decoded, &len, &at);
	return len == strlen(word) && memcmp(decoded, word, len) == 0;
}

static bool literal_at(const json_scanner *sc, size_t at, const char *word)
{
	size_t len = strlen(word);
	return sc->n - at >= len && memcmp(sc->s + at, word, len) == 0;
}

/*
 * A number by JSON's grammar. Python's json (what transformers and vLLM read
 * config.json with) also accepts NaN, Infinity and -Infinity, and writes them
 * for non-finite floats, so they are accepted too.
 */
static weld_status scan_number(json_scanner *sc)
{
	size_t at = sc->pos;
	weld_json_error e = weld__json_number(sc->s, sc->n, &sc->pos, true);
	return e ? lex_fail(sc, e, at) : WELD_OK;
}

static weld_status add_edit(json_scanner *sc, size_t start, size_t end)
{
	if (sc->nedits == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 8;
		json_edit *e = weld__reallocarray(sc->edits, cap, sizeof(*e));
		if (!e)
			return weld__nomem(sc->err);
		sc->edits = e;
		sc->cap = cap;
	}
	sc->edits[sc->nedits++] = (json_edit){start, end, sc->quoted_dtype, sc->quoted_len};
	return WELD_OK;
}

static weld_status too_deep(json_scanner *sc)
{
	char what[64];
	snprintf(what, sizeof(what), "nesting deeper than %d levels", JSON_MAX_DEPTH);
	return bad(sc, what, sc->pos);
}

static weld_status scan_value(json_scanner *sc, int depth, bool collect);

/*
 * An object at the cursor. COLLECT: record the values of its "dtype" and
 * "torch_dtype" members as edits. SHAPE (top level only) also collects in
 * the objects one level down and notes the layout.
 */
static weld_status scan_object(json_scanner *sc, int depth, bool collect, object_shape *shape)
{
	if (depth > JSON_MAX_DEPTH)
		return too_deep(sc);
	size_t open = sc->pos++;
	if (shape)
		*shape = (object_shape){.open = open};
	skip_ws(sc);
	if (sc->pos < sc->n && sc->s[sc->pos] == '}') {
		sc->pos++;
		return WELD_OK;
	}
	for (size_t prev_end = 0;;) {
		if (sc->pos >= sc->n || sc->s[sc->pos] != '"')
			return expected(sc, "expected a string key");
		size_t key = sc->pos;
		weld_status st = scan_string(sc);
		if (st)
			return st;
		size_t key_end = sc->pos;
		bool is_dtype = collect && (key_is(sc->s, key, key_end, "dtype") ||
					    key_is(sc->s, key, key_end, "torch_dtype"));
		skip_ws(sc);
		if (sc->pos >= sc->n || sc->s[sc->pos] != ':')
			return expected(sc, "expected ':'");
		sc->pos++;
		skip_ws(sc);
		size_t value = sc->pos;
		/* A dtype value is replaced whole, so nothing inside it is collected. */
		st = scan_value(sc, depth + 1, shape && !is_dtype);
		if (st)
			return st;
		if (is_dtype && (st = add_edit(sc, value, sc->pos)))
			return st;
		if (shape) {
			if (shape->nmembers++ == 0)
				shape->first_key = key;
			shape->prev_value_end = prev_end;
			shape->last_key = key;
			shape->last_key_end = key_end;
			shape->last_value = value;
			shape->last_value_end = sc->pos;
			shape->has_dtype_key |= is_dtype;
		}
		prev_end = sc->pos;
		skip_ws(sc);
		if (sc->pos < sc->n && sc->s[sc->pos] == ',') {
			sc->pos++;
			skip_ws(sc);
			continue;
		}
		if (sc->pos < sc->n && sc->s[sc->pos] == '}') {
			sc->pos++;
			return WELD_OK;
		}
		return expected(sc, "expected ',' or '}'");
	}
}

static weld_status scan_array(json_scanner *sc, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return too_deep(sc);
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->n && sc->s[sc->pos] == ']') {
		sc->pos++;
		return WELD_OK;
	}
	for (;;) {
		weld_status st = scan_value(sc, depth + 1, false);
		if (st)
			return st;
		skip_ws(sc);
		if (sc->pos < sc->n && sc->s[sc->pos] == ',') {
			sc->pos++;
			skip_ws(sc);
			continue;
		}
		if (sc->pos < sc->n && sc->s[sc->pos] == ']') {
			sc->pos++;
			return WELD_OK;
		}
		return expected(sc, "expected ',' or ']'");
	}
}

static weld_status scan_value(json_scanner *sc, int depth, bool collect)
{
	if (sc->pos >= sc->n)
		return bad(sc, "unexpected end of text", sc->pos);
	unsigned char c = (unsigned char)sc->s[sc->pos];
	switch (c) {
	case '{': return scan_object(sc, depth, collect, NULL);
	case '[': return scan_array(sc, depth);
	case '"': return scan_string(sc);
	case '-': return scan_number(sc);
	case 't':
	case 'f':
	case 'n':
	case 'N':
	case 'I': {
		static const char *const words[] = {"true", "false", "null", "NaN", "Infinity"};
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (literal_at(sc, sc->pos, words[i])) {
				sc->pos += strlen(words[i]);
				return WELD_OK;
			}
		return bad(sc, "invalid literal", sc->pos);
	}
	default:
		if (c >= '0' && c <= '9')
			return scan_number(sc);
		char what[48];
		if (c > 0x20 && c < 0x7f)
			snprintf(what, sizeof(what), "unexpected character '%c'", c);
		else
			snprintf(what, sizeof(what), "unexpected byte 0x%02x", c);
		return bad(sc, what, sc->pos);
	}
}

/*
 * The member `"torch_dtype": "<dtype>"` added after the last one, with the
 * separators the object already uses: the text between the last two members
 * (",\n  " when pretty-printed), or for a single member the first member's
 * indentation when it sits on its own line, else the spacing after its ':'.
 * An empty object gets the member alone.
 */
static char *insertion_text(const json_scanner *sc, const object_shape *obj, size_t *len)
{
	const char *s = sc->s;
	const char *sep = "";
	size_t sep_len = 0;
	const char *keysep = ": ";
	size_t keysep_len = 2;
	bool comma = false;
	if (obj->nmembers >= 2) {
		sep = s + obj->prev_value_end;
		sep_len = obj->last_key - obj->prev_value_end;
	} else if (obj->nmembers == 1) {
		comma = true;
		sep = s + obj->open + 1;
		sep_len = obj->first_key - (obj->open + 1);
		if (!memchr(sep, '\n', sep_len)) {
			const char *colon = memchr(s + obj->last_key_end, ':', obj->last_value - obj->last_key_end);
			sep = colon + 1;
			sep_len = (size_t)(s + obj->last_value - sep);
		}
	}
	if (obj->nmembers >= 1) {
		keysep = s + obj->last_key_end;
		keysep_len = obj->last_value - obj->last_key_end;
	}
	static const char key[] = "\"torch_dtype\"";
	size_t total = comma + sep_len + (sizeof(key) - 1) + keysep_len + sc->quoted_len;
	char *t = malloc(total);
	if (!t)
		return NULL;
	size_t at = 0;
	if (comma)
		t[at++] = ',';
	memcpy(t + at, sep, sep_len);
	at += sep_len;
	memcpy(t + at, key, sizeof(key) - 1);
	at += sizeof(key) - 1;
	memcpy(t + at, keysep, keysep_len);
	at += keysep_len;
	memcpy(t + at, sc->quoted_dtype, sc->quoted_len);
	*len = total;
	return t;
}

/* dtype names are plain identifiers; anything else could break the JSON it goes into. */
static bool dtype_name_ok(const char *dtype)
{
	size_t n = strlen(dtype);
	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = dtype[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* JSON[0..LEN) with the EDITS (in order, disjoint) applied, NUL-terminated; NULL if out of memory. */
static char *apply_edits(const char *json, size_t len, const json_edit *edits, size_t nedits, size_t *out_len)
{
	size_t total = len;
	for (size_t i = 0; i < nedits; i++)
		if (!weld__add_size(&total, total - (edits[i].end - edits[i].start), edits[i].text_len))
			return NULL;
	if (total == SIZE_MAX)
		return NULL;
	char *buf = malloc(total + 1);
	if (!buf)
		return NULL;
	size_t from = 0, o = 0;
	for (size_t i = 0; i < nedits; i++) {
		memcpy(buf + o, json + from, edits[i].start - from);
		o += edits[i].start - from;
		memcpy(buf + o, edits[i].text, edits[i].text_len);
		o += edits[i].text_len;
		from = edits[i].end;
	}
	memcpy(buf + o, json + from, len - from);
	o += len - from;
	buf[o] = '\0';
	*out_len = o;
	return buf;
}

/* Validates the whole text and records the edits (the insertion included) in SC. */
static weld_status scan_config(json_scanner *sc, char **insert)
{
	skip_ws(sc);
	if (sc->pos >= sc->n)
		return bad(sc, "unexpected end of text", sc->pos);
	if (sc->s[sc->pos] != '{')
		return bad(sc, "the top-level value is not an object", sc->pos);
	object_shape top;
	weld_status st = scan_object(sc, 1, true, &top);
	if (st)
		return st;
	skip_ws(sc);
	if (sc->pos != sc->n)
		return bad(sc, "trailing data after the object", sc->pos);
	if (top.has_dtype_key)
		return WELD_OK;
	/* Every recorded edit lies inside a member's value, so before this point. */
	size_t at = top.nmembers ? top.last_value_end : top.open + 1;
	size_t ins_len = 0;
	if (!(*insert = insertion_text(sc, &top, &ins_len)))
		return weld__nomem(sc->err);
	if ((st = add_edit(sc, at, at)))
		return st;
	sc->edits[sc->nedits - 1].text = *insert;
	sc->edits[sc->nedits - 1].text_len = ins_len;
	return WELD_OK;
}

weld_status weld_config_set_dtype(const char *json, size_t len, const char *dtype, char **out,
				  size_t *out_len, weld_error *err)
{
	*out = NULL;
	*out_len = 0;
	if (!dtype || !dtype_name_ok(dtype))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "invalid dtype name for config.json");
	char quoted[40];
	int qlen = snprintf(quoted, sizeof(quoted), "\"%s\"", dtype);
	json_scanner sc = {.s = json, .n = len, .quoted_dtype = quoted, .quoted_len = (size_t)qlen, .err = err};
	char *insert = NULL;
	weld_status st = scan_config(&sc, &insert);
	if (!st && !(*out = apply_edits(json, len, sc.edits, sc.nedits, out_len)))
		st = weld__nomem(err);
	free(sc.edits);
	free(insert);
	return st;
}

