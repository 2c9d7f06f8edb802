/* config.json of the output: the dtype rewritten in place, nothing else touched. */
#ifndef WELD_OUTPUT_CONFIG_JSON_H
#define WELD_OUTPUT_CONFIG_JSON_H

#include "util/util.h"

/*
 * Rewrite the top-level "dtype" and "torch_dtype" values of config.json text
 * JSON[0..LEN) to DTYPE ("bfloat16", "float16", "float32"), leaving every
 * other byte as it was (so a transformers-written config comes out exactly as
 * transformers would write it). When neither key exists, "torch_dtype" is
 * added as the object's last member. Also rewrites the same keys one level
 * down in sub-config objects that already carry them (text_config, ...).
 * Invalid JSON or a non-object: WELD_ERR_FORMAT. *OUT is malloc'd.
 */
weld_status weld_config_set_dtype(const char *json, size_t len, const char *dtype, char **out,
				  size_t *out_len, weld_error *err);

#endif /* WELD_OUTPUT_CONFIG_JSON_H */
