/*
 * The servable output folder around model.safetensors.
 *
 * config.json is edited as text, never re-serialized: a small scanner
 * validates the whole document and records where the dtype values sit, and
 * only those bytes change, so a transformers-written config comes out exactly
 * as transformers would have written it for the new dtype. Side files are
 * copied under a temporary name, fsynced and renamed, so an interrupted run
 * never leaves a half-written tokenizer beside the weights; and stale weight
 * or index files are cleared first, because vLLM loads every *.safetensors in
 * a folder without an index and filters by any index it finds (shared docs,
 * section E).
 */
#include "output/output_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deepest container nesting accepted in config.json (keeps recursion bounded). */
#define JSON_MAX_DEPTH 256

/* Side files above this size are not copied (nothing servable is that big but weights). */
#define SIDE_FILE_MAX ((uint64_t)64 << 20)

/* Buffer of the copy loop. */
#define COPY_CHUNK ((size_t)1 << 20)

/* Suffix of the temporary names side files are written under. */
#define TMP_SUFFIX ".weld-tmp"

/* ------------------------------------------------------------------------- */
/* config.json                                                                */

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
	while (sc->pos < sc->n) {
		char c = sc->s[sc->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->pos++;
	}
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_digit(const json_scanner *sc, size_t i)
{
	return i < sc->n && sc->s[i] >= '0' && sc->s[i] <= '9';
}

/* A string token starting at the cursor's '"'; the cursor ends past its closing quote. */
static weld_status scan_string(json_scanner *sc)
{
	size_t start = sc->pos++;
	while (sc->pos < sc->n) {
		unsigned char c = (unsigned char)sc->s[sc->pos];
		if (c == '"') {
			sc->pos++;
			return WELD_OK;
		}
		if (c < 0x20)
			return bad(sc, "control character in string", sc->pos);
		if (c != '\\') {
			sc->pos++;
			continue;
		}
		size_t esc = sc->pos;
		if (esc + 1 >= sc->n)
			break;
		char e = sc->s[esc + 1];
		if (e == 'u') {
			if (sc->n - esc < 6)
				break;
			for (size_t k = 2; k < 6; k++)
				if (hex_digit(sc->s[esc + k]) < 0)
					return bad(sc, "invalid escape", esc);
			sc->pos = esc + 6;
		} else if (e != '\0' && strchr("\"\\/bfnrt", e)) {
			sc->pos = esc + 2;
		} else {
			return bad(sc, "invalid escape", esc);
		}
	}
	return bad(sc, "unterminated string", start);
}

/*
 * Whether the (validated) string token S[START..END) decodes to the ASCII
 * WORD, so an escaped spelling of "dtype" is still found.
 */
static bool key_is(const char *s, size_t start, size_t end, const char *word)
{
	size_t i = start + 1, stop = end - 1;
	while (i < stop) {
		unsigned c = (unsigned char)s[i++];
		if (c == '\\') {
			c = (unsigned char)s[i++];
			if (c == 'u') {
				c = 0;
				for (int k = 0; k < 4; k++)
					c = c << 4 | (unsigned)hex_digit(s[i++]);
			} else if (c != '"' && c != '\\' && c != '/') {
				return false; /* \b \f \n \r \t: control characters, never in WORD */
			}
		}
		if (*word == '\0' || c != (unsigned char)*word++)
			return false;
	}
	return *word == '\0';
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
	size_t start = sc->pos, i = start;
	if (sc->s[i] == '-')
		i++;
	if (literal_at(sc, i, "Infinity")) {
		sc->pos = i + 8;
		return WELD_OK;
	}
	if (i < sc->n && sc->s[i] == '0') {
		i++;
	} else if (is_digit(sc, i)) {
		while (is_digit(sc, i))
			i++;
	} else {
		return bad(sc, "invalid number", start);
	}
	if (i < sc->n && sc->s[i] == '.') {
		if (!is_digit(sc, ++i))
			return bad(sc, "invalid number", start);
		while (is_digit(sc, i))
			i++;
	}
	if (i < sc->n && (sc->s[i] == 'e' || sc->s[i] == 'E')) {
		i++;
		if (i < sc->n && (sc->s[i] == '+' || sc->s[i] == '-'))
			i++;
		if (!is_digit(sc, i))
			return bad(sc, "invalid number", start);
		while (is_digit(sc, i))
			i++;
	}
	sc->pos = i;
	return WELD_OK;
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

/* ------------------------------------------------------------------------- */
/* File names                                                                 */

static bool has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);
	return n >= k && memcmp(name + n - k, suffix, k) == 0;
}

bool weld_is_weight_file(const char *name)
{
	/*
	 * By suffix, as vLLM and transformers glob: this covers shards,
	 * consolidated*.safetensors, every *.index.json, and the torch-saved
	 * training state (optimizer.pt, scheduler.pt, scaler.pt,
	 * rng_state*.pth, training_args.bin).
	 */
	static const char *const suffixes[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
					       ".h5", ".msgpack", ".gguf", ".index.json"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (has_suffix(name, suffixes[i]))
			return true;
	return false;
}

/* ".NAME.weld-tmp" and anything longer: what a killed run may leave behind. */
static bool is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name + 1, TMP_SUFFIX) != NULL;
}

/* Training state and tooling that is not a weight file by name but must not be served. */
static bool is_training_file(const char *name)
{
	static const char *const names[] = {"latest", "latest_universal", "trainer_state.json", "weld.json"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return has_suffix(name, ".py");
}

/* ------------------------------------------------------------------------- */
/* Folders and files                                                          */

/* malloc'd "DIR/PREFIX NAME SUFFIX" (no doubled '/'); NULL when out of memory. */
static char *path_join(const char *dir, const char *prefix, const char *name, const char *suffix)
{
	size_t dl = strlen(dir);
	const char *slash = (dl && dir[dl - 1] == '/') ? "" : "/";
	int n = snprintf(NULL, 0, "%s%s%s%s%s", dir, slash, prefix, name, suffix);
	if (n < 0)
		return NULL;
	char *p = malloc((size_t)n + 1);
	if (p)
		snprintf(p, (size_t)n + 1, "%s%s%s%s%s", dir, slash, prefix, name, suffix);
	return p;
}

void weld_free_strings(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names in DIR, without "." and "..", so every result and message is deterministic. */
static weld_status list_dir(const char *dir, char ***names, size_t *count, weld_error *err)
{
	*names = NULL;
	*count = 0;
	DIR *d = opendir(dir);
	if (!d)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
	char **list = NULL;
	size_t n = 0, cap = 0;
	weld_status st = WELD_OK;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno)
				st = weld__fail(err, WELD_ERR_IO, "%s: cannot read folder: %s", dir, strerror(errno));
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 16;
			char **l = weld__reallocarray(list, c, sizeof(*l));
			if (!l) {
				st = weld__nomem(err);
				break;
			}
			list = l;
			cap = c;
		}
		if (!(list[n] = weld__strdup(e->d_name))) {
			st = weld__nomem(err);
			break;
		}
		n++;
	}
	closedir(d);
	if (st) {
		weld_free_strings(list, n);
		return st;
	}
	if (n)
		qsort(list, n, sizeof(*list), cmp_strp);
	*names = list;
	*count = n;
	return WELD_OK;
}

static weld_status write_all(int fd, const char *path, const char *buf, size_t n, weld_error *err)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return weld__fail(err, WELD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
		}
		buf += w;
		n -= (size_t)w;
	}
	return WELD_OK;
}

/* read() that retries on EINTR; failures name PATH. */
static weld_status read_some(int fd, const char *path, char *buf, size_t cap, size_t *got, weld_error *err)
{
	for (;;) {
		ssize_t r = read(fd, buf, cap);
		if (r >= 0) {
			*got = (size_t)r;
			return WELD_OK;
		}
		if (errno != EINTR)
			return weld__fail(err, WELD_ERR_IO, "%s: read failed: %s", path, strerror(errno));
	}
}

/* All of config.json (bounded, in case it grew since it was listed), dtype rewritten, to OUT. */
static weld_status copy_config(int in, const char *src, int out, const char *tmp, const char *dtype,
			       weld_error *err)
{
	char *text = NULL, *edited = NULL;
	size_t n = 0, cap = 0, edited_len = 0;
	weld_status st;
	for (;;) {
		if (n == cap) {
			if (cap > SIDE_FILE_MAX) {
				st = weld__fail(err, WELD_ERR_LIMIT, "%s: larger than %llu MiB", src,
						(unsigned long long)(SIDE_FILE_MAX >> 20));
				goto done;
			}
			size_t c = cap ? cap * 2 : 65536;
			if (c > SIDE_FILE_MAX)
				c = SIDE_FILE_MAX + 1;
			char *t = realloc(text, c);
			if (!t) {
				st = weld__nomem(err);
				goto done;
			}
			text = t;
			cap = c;
		}
		size_t got;
		if ((st = read_some(in, src, text + n, cap - n, &got, err)))
			goto done;
		if (got == 0)
			break;
		n += got;
	}
	if ((st = weld_config_set_dtype(text, n, dtype, &edited, &edited_len, err))) {
		weld__prefix(err, "%s", src);
		goto done;
	}
	st = write_all(out, tmp, edited, edited_len, err);
done:
	free(text);
	free(edited);
	return st;
}

static weld_status copy_bytes(int in, const char *src, int out, const char *tmp, weld_error *err)
{
	char *buf = malloc(COPY_CHUNK);
	if (!buf)
		return weld__nomem(err);
	weld_status st;
	for (;;) {
		size_t got;
		if ((st = read_some(in, src, buf, COPY_CHUNK, &got, err)) || got == 0)
			break;
		if ((st = write_all(out, tmp, buf, got, err)))
			break;
	}
	free(buf);
	return st;
}

/* SRC_DIR/NAME -> DST_DIR/.NAME.weld-tmp, fsync, rename to DST_DIR/NAME. */
static weld_status copy_one(const char *src_dir, const char *dst_dir, const char *name, const char *dtype,
			    weld_error *err)
{
	char *src = path_join(src_dir, "", name, "");
	char *tmp = path_join(dst_dir, ".", name, TMP_SUFFIX);
	char *dst = path_join(dst_dir, "", name, "");
	int in = -1, out = -1;
	bool created = false;
	weld_status st = WELD_OK;
	if (!src || !tmp || !dst) {
		st = weld__nomem(err);
		goto done;
	}
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
		st = weld__fail(err, WELD_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
		goto done;
	}
	/* O_NOFOLLOW: never write through a symlink planted under the temporary name. */
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0) {
		st = weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
		goto done;
	}
	created = true;
	if (dtype && strcmp(name, "config.json") == 0)
		st = copy_config(in, src, out, tmp, dtype, err);
	else
		st = copy_bytes(in, src, out, tmp, err);
	if (st)
		goto done;
	if (fsync(out) != 0) {
		st = weld__fail(err, WELD_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
		goto done;
	}
	if (close(out) != 0) {
		out = -1; /* closed even when close() fails */
		st = weld__fail(err, WELD_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
		goto done;
	}
	out = -1;
	if (rename(tmp, dst) != 0) {
		st = weld__fail(err, WELD_ERR_IO, "%s: cannot rename %s into place: %s", dst, tmp,
				strerror(errno));
		goto done;
	}
	created = false;
done:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (created)
		unlink(tmp);
	free(src);
	free(tmp);
	free(dst);
	return st;
}

/* Whether SRC_DIR/NAME is a side file to copy; symlinks are followed (HF cache snapshots). */
static weld_status is_side_file(const char *src_dir, const char *name, bool *yes, weld_error *err)
{
	*yes = false;
	if (weld_is_weight_file(name) || is_training_file(name) || is_temp_name(name))
		return WELD_OK;
	char *path = path_join(src_dir, "", name, "");
	if (!path)
		return weld__nomem(err);
	struct stat st;
	if (stat(path, &st) != 0) {
		weld_status s = weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
		free(path);
		return s;
	}
	free(path);
	*yes = S_ISREG(st.st_mode) && (uint64_t)st.st_size <= SIDE_FILE_MAX;
	return WELD_OK;
}

weld_status weld_copy_side_files(const char *src_dir, const char *dst_dir, const char *dtype, char ***copied,
				 size_t *ncopied, weld_error *err)
{
	*copied = NULL;
	*ncopied = 0;
	struct stat s, d;
	if (stat(src_dir, &s) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", src_dir, strerror(errno));
	if (stat(dst_dir, &d) != 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot stat: %s", dst_dir, strerror(errno));
	/* Writing into the input folder would overwrite the input's own config.json. */
	if (s.st_dev == d.st_dev && s.st_ino == d.st_ino)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: is the input folder %s itself; choose another output folder", dst_dir,
				  src_dir);

	char **names;
	size_t n;
	weld_status st = list_dir(src_dir, &names, &n, err);
	if (st)
		return st;
	/* Entries that are not copied are freed; copied ones move down into the result. */
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		bool yes = false;
		if (!st)
			st = is_side_file(src_dir, names[i], &yes, err);
		if (!st && yes)
			st = copy_one(src_dir, dst_dir, names[i], dtype, err);
		if (!st && yes)
			names[kept++] = names[i];
		else
			free(names[i]);
	}
	if (st) {
		weld_free_strings(names, kept);
		return st;
	}
	if (kept == 0) {
		free(names);
		names = NULL;
	}
	/* Make the renames themselves durable. */
	int fd = open(dst_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		st = weld__fail(err, WELD_ERR_IO, "%s: cannot sync folder: %s", dst_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		weld_free_strings(names, kept);
		return st;
	}
	close(fd);
	*copied = names;
	*ncopied = kept;
	return WELD_OK;
}

/* mkdir -p DIR with mode 0755; components that already exist as folders are fine. */
static weld_status make_dirs(const char *dir, weld_error *err)
{
	char *p = weld__strdup(dir);
	if (!p)
		return weld__nomem(err);
	weld_status st = WELD_OK;
	for (char *c = p + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char saved = *c;
		*c = '\0';
		struct stat sb;
		if (mkdir(p, 0755) != 0) {
			int e = errno;
			if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
				st = weld__fail(err, WELD_ERR_IO, "%s: cannot create folder: %s", p,
						strerror(e == EEXIST ? ENOTDIR : e));
				break;
			}
		}
		*c = saved;
		if (saved == '\0')
			break;
	}
	free(p);
	return st;
}

weld_status weld_output_dir_prepare(const char *dir, const char *keep, bool force, weld_error *err)
{
	if (!dir || !*dir)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "empty output folder name");
	weld_status st = make_dirs(dir, err);
	if (st)
		return st;
	char **names;
	size_t n;
	if ((st = list_dir(dir, &names, &n, err)))
		return st;
	/* Refuse before touching anything, so an error leaves the folder as it was. */
	for (size_t i = 0; i < n && !force; i++)
		if (weld_is_weight_file(names[i]) || (keep && strcmp(names[i], keep) == 0)) {
			st = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: already holds %s; use --force to replace it",
					dir, names[i]);
			goto done;
		}
	for (size_t i = 0; i < n; i++) {
		bool stale = force && weld_is_weight_file(names[i]) && !(keep && strcmp(names[i], keep) == 0);
		if (!stale && !is_temp_name(names[i]))
			continue;
		char *path = path_join(dir, "", names[i], "");
		if (!path) {
			st = weld__nomem(err);
			goto done;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			st = weld__fail(err, WELD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
			free(path);
			goto done;
		}
		free(path);
	}
done:
	weld_free_strings(names, n);
	return st;
}
