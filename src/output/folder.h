/*
 * Which names are weights. vLLM loads every *.safetensors in a folder
 * without an index and filters by any index it finds (shared docs, section
 * E), so no other weight or index file may stand beside the weights weld
 * writes: side files never include them, and verify fails a folder that has
 * stale ones.
 */
#ifndef WELD_OUTPUT_FOLDER_H
#define WELD_OUTPUT_FOLDER_H

#include "util/util.h"

/* Whether NAME is a weight or index file (never copied; stale in an output folder). */
bool weld_is_weight_file(const char *name);

#endif /* WELD_OUTPUT_FOLDER_H */
