/*
 * A sharded output's index against its shards. The reader already refuses
 * an index entry its shard does not hold; loaders also skip any tensor a
 * shard holds that the index does not list (the model then lacks it), and
 * tools size downloads by metadata.total_size. Both are checked here.
 */
#include "verify/verify.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *index_name(weld_format f)
{
	return f == WELD_FORMAT_SAFETENSORS_SHARDED ? "model.safetensors.index.json"
	       : f == WELD_FORMAT_TORCH_SHARDED     ? "pytorch_model.bin.index.json"
						    : NULL;
}

/* The first stored tensor MAP does not list in its own shard, or NULL; *BYTES the stored tensors' total. */
static const char *unlisted(const weld_verifier *v, const cJSON *map, uint64_t *bytes, const char **shard)
{
	*bytes = 0;
	for (size_t i = 0; i < v->out->nt; i++) {
		const ckpt_tensor *t = &v->out->t[i];
		if (t->alias_of)
			continue;
		*bytes += t->nbytes; /* sizes were checked against the shards as they opened */
		*shard = weld__vf_base_name(v->out->src[t->src].file->path);
		const char *listed = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(map, t->name));
		if (!listed || strcmp(listed, *shard) != 0)
			return t->name;
	}
	return NULL;
}

weld_status weld__vf_check_index(weld_verifier *v, weld_error *err)
{
	const char *name = index_name(weld_ckpt_format(v->out));
	if (!name)
		return WELD_OK;
	char *path = weld__path_join(v->dir, name);
	cJSON *root = NULL;
	weld_error e = {0};
	weld_status s = path ? weld__read_json_file_exact(path, (size_t)64 << 20, &root, &e) : WELD_ERR_NOMEM;
	free(path);
	if (s == WELD_ERR_NOMEM)
		return weld__nomem(err);
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"), "total_size");
	uint64_t bytes = 0, said = 0;
	const char *shard = "", *missing = s ? NULL : unlisted(v, map, &bytes, &shard);
	bool exact = cJSON_IsRaw(total) ? sscanf(total->valuestring, "%llu", (unsigned long long *)&said) == 1
					: cJSON_IsNumber(total) && total->valuedouble >= 0 &&
						  (said = (uint64_t)total->valuedouble, (double)said == total->valuedouble);
	if (s)
		weld__vf_check(v->r, "index", WELD_CHECK_FAIL, "%s", weld__vf_in_dir(v, e.message));
	else if (missing)
		weld__vf_check(v->r, "index", WELD_CHECK_FAIL,
			       "%s holds '%s', which %s does not list there: loaders would skip it", shard, missing, name);
	else if (!exact || said != bytes)
		weld__vf_check(v->r, "index", WELD_CHECK_FAIL, "%s: metadata.total_size is not %llu, the tensors' bytes",
			       name, (unsigned long long)bytes);
	else
		weld__vf_check(v->r, "index", WELD_CHECK_PASS, "%s lists every tensor of the %zu shards where it is, %llu bytes",
			       name, weld_ckpt_file_count(v->out), (unsigned long long)bytes);
	cJSON_Delete(root);
	return WELD_OK;
}
