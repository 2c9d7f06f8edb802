/*
 * The output folder: created when missing, and cleared of what would make a
 * loader pick the wrong weights. vLLM loads every *.safetensors in a folder
 * without an index and filters by any index it finds (shared docs, section
 * E), so no other weight or index file may stay beside the new weights.
 */
#ifndef WELD_OUTPUT_FOLDER_H
#define WELD_OUTPUT_FOLDER_H

#include "util/util.h"

/* Whether NAME is a weight or index file (never copied; stale in an output folder). */
bool weld_is_weight_file(const char *name);

/*
 * Create DIR (mkdir -p) and look at what it holds. Weight files in DIR that
 * are not KEEP (e.g. "model.safetensors"): stale shards, index files,
 * consolidated*.safetensors, pytorch_model*.bin. Without FORCE, any
 * existing one (KEEP included) is WELD_ERR_INVALID_ARG "<dir>: already holds
 * <name>; use --force to replace it"; with FORCE the stale ones are deleted
 * (KEEP is left for the atomic rename to replace). Leftover temporary files
 * of killed runs are removed either way.
 */
weld_status weld_output_dir_prepare(const char *dir, const char *keep, bool force, weld_error *err);

#endif /* WELD_OUTPUT_FOLDER_H */
