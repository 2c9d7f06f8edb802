/*
 * The servable output folder around model.safetensors: side files copied
 * from the checkpoint (config.json with its dtype rewritten, generation
 * config, tokenizer files, chat template, ...), and the check that nothing
 * stale (other weight files, index files) stays beside the new weights.
 */
#ifndef WELD_OUTPUT_DIR_H
#define WELD_OUTPUT_DIR_H

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

/* true for file names weld treats as weights or indexes (never copied, stale in the output). */
bool weld_is_weight_file(const char *name);

/*
 * Copy the side files of SRC_DIR into DST_DIR: every regular file directly in
 * SRC_DIR that is not a weight file, not training state (optimizer.pt,
 * scheduler.pt, rng_state*.pth, training_args.bin, trainer_state.json,
 * `latest`, zero_to_fp32.py and other *.py), and at most 64 MiB; config.json
 * goes through weld_config_set_dtype when DTYPE is not NULL. Each file is
 * written under a temporary name, fsynced and renamed. *COPIED lists the
 * names copied (malloc'd array of malloc'd strings; free with
 * weld_free_strings).
 */
weld_status weld_copy_side_files(const char *src_dir, const char *dst_dir, const char *dtype, char ***copied,
				 size_t *ncopied, weld_error *err);

/*
 * Weight files in DIR that are not KEEP (e.g. "model.safetensors"): stale
 * shards, index files, consolidated*.safetensors, pytorch_model*.bin. Without
 * FORCE, any existing one (KEEP included) is WELD_ERR_INVALID_ARG
 * "<dir>: already holds <name>; use --force to replace it"; with FORCE the
 * stale ones are deleted (KEEP is left for the atomic rename to replace).
 */
weld_status weld_output_dir_prepare(const char *dir, const char *keep, bool force, weld_error *err);

void weld_free_strings(char **list, size_t n);

#endif /* WELD_OUTPUT_DIR_H */
