/*
 * Sharded output as transformers 5.24 writes it (save_pretrained with
 * max_shard_size, which calls huggingface_hub's
 * split_state_dict_into_shards_factory): the limit parsed as its
 * parse_size_to_int parses it, the names put in natural order
 * (core_model_loading.dot_natural_key, applied when the weight conversions
 * are reverted on save), the greedy split, the shard file names and the
 * model.safetensors.index.json text. The shards themselves are ordinary
 * safetensors files (safetensors.h), one per group.
 */
#ifndef WELD_OUTPUT_SHARDS_H
#define WELD_OUTPUT_SHARDS_H

#include "pipeline/plan.h"

#define WELD_ST_INDEX_NAME "model.safetensors.index.json"
/* "model-00001-of-00003.safetensors" and its terminating NUL, for up to 99999 shards */
#define WELD_SHARD_NAME_MAX 40

/*
 * Which shard each tensor of P goes to, under LIMIT bytes (transformers'
 * int: any value, negative included, behaves as it does there): FILE_OF[i]
 * for p->t[i], *NFILES shards. Shard numbers follow transformers': a tensor
 * over the limit is a shard of its own, numbered when it is met, ahead of
 * the shard still being filled.
 */
weld_status weld__shard_split(const weld_plan *p, int64_t limit, uint32_t *file_of, size_t *nfiles, weld_error *err);

/* "model-0000K-of-0000N.safetensors" for shard K (from 0) of N. */
void weld__shard_name(char *buf, size_t cap, size_t k, size_t n);

/*
 * The index transformers writes, json.dumps(index, indent=2, sort_keys=True)
 * and a newline: metadata {total_parameters, total_size} and the
 * weight_map of every tensor of P to its shard's name. *OUT malloc'd.
 */
weld_status weld__shard_index(const weld_plan *p, const uint32_t *file_of, size_t nfiles, char **out, size_t *len,
			      weld_error *err);

#endif /* WELD_OUTPUT_SHARDS_H */
