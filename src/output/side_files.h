/*
 * The small files a servable folder needs beside its weights, copied from
 * the checkpoint: config.json with its dtype rewritten, the generation
 * config, tokenizer files, chat template, and so on.
 */
#ifndef WELD_OUTPUT_SIDE_FILES_H
#define WELD_OUTPUT_SIDE_FILES_H

#include "util/util.h"

/*
 * Copy the side files of SRC_DIR into DST_DIR: every regular file directly in
 * SRC_DIR that is not a weight file, not training state (optimizer.pt,
 * scheduler.pt, rng_state*.pth, training_args.bin, trainer_state.json,
 * `latest`, zero_to_fp32.py and other *.py), and at most WELD_SIDE_FILE_MAX
 * bytes; config.json goes through weld_config_set_dtype when DTYPE is not
 * NULL. Each file is put in place atomically; making DST_DIR's entries
 * durable is the caller's (convert fsyncs the staging folder before it
 * publishes it). *COPIED lists the names copied (free with weld__free_strings).
 */
weld_status weld_copy_side_files(const char *src_dir, const char *dst_dir, const char *dtype, char ***copied,
				 size_t *ncopied, weld_error *err);

#endif /* WELD_OUTPUT_SIDE_FILES_H */
