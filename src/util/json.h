/*
 * The tokens of JSON text, for the two strict readers weld has besides
 * cJSON: safetensors headers (io/safetensors.c), whose numbers must stay
 * exact 64-bit integers and whose duplicate keys must be caught, and
 * config.json (output/config_json.c), which is edited in place; and the
 * white space that may follow a value cJSON parsed (util/file.c). Errors are
 * kinds and byte positions; each reader words its own messages.
 */
#ifndef WELD_UTIL_JSON_H
#define WELD_UTIL_JSON_H

#include "util/util.h"

typedef enum weld_json_error {
	WELD_JSON_OK = 0,
	WELD_JSON_UNTERMINATED, /* a string runs to the end of the text */
	WELD_JSON_CONTROL,      /* a raw control character in a string */
	WELD_JSON_ESCAPE,       /* a backslash escape JSON does not have */
	WELD_JSON_U_ESCAPE,     /* \u not followed by four hex digits */
	WELD_JSON_SURROGATE,    /* a \u surrogate escape not in a high-low pair (strict only) */
	WELD_JSON_NUMBER        /* not a number by JSON's grammar */
} weld_json_error;

static inline bool weld__json_is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Step *POS over white space in S[0..N). */
void weld__json_skip_ws(const char *s, size_t n, size_t *pos);

/*
 * The string token whose opening quote is at S[*POS]; *POS moves past its
 * closing quote. With OUT (room for the token's raw length) it is decoded
 * there as UTF-8, *OUT_LEN bytes (NULs from \u0000 included). STRICT: lone
 * surrogate escapes are errors (serde_json); otherwise they pass (Python's
 * json). On error *AT is the offending byte (the opening quote when the
 * string is unterminated).
 */
weld_json_error weld__json_string(const char *s, size_t n, size_t *pos, bool strict, char *out, size_t *out_len,
				  size_t *at);

/*
 * The number at S[*POS] by JSON's grammar; *POS moves past it. PYTHON also
 * accepts -Infinity, which Python's json writes for non-finite floats.
 */
weld_json_error weld__json_number(const char *s, size_t n, size_t *pos, bool python);

#endif /* WELD_UTIL_JSON_H */
