/*
 * HuggingFace weights: one .safetensors or torch .bin file, or a folder with
 * an index (model.safetensors.index.json, pytorch_model.bin.index.json) and
 * its shards, or with one model.safetensors / pytorch_model.bin.
 */
#include "formats/hf.h"

#include "formats/torch_file.h"
#include "formats/unsupported.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Index files are a few MB even for the largest models. */
#define INDEX_MAX_BYTES (256u << 20)

static const char ST_INDEX[] = "model.safetensors.index.json", ST_FILE[] = "model.safetensors";
static const char BIN_INDEX[] = "pytorch_model.bin.index.json", BIN_FILE[] = "pytorch_model.bin";

static void st_header_free(void *p)
{
	weld_st_header_clear(p);
	free(p);
}

/* The tensors of the safetensors file PATH, each one run of the data buffer. */
static weld_status add_st_file(weld_ckpt *c, const char *path, weld_error *err)
{
	uint32_t src;
	weld_status s = weld__ckpt_add_source(c, path, &src, err);
	if (s)
		return s;
	ckpt_source *so = &c->src[src];
	weld_st_header *h = calloc(1, sizeof(*h));
	if (!h)
		return weld__nomem(err);
	so->parsed = h;
	so->free_parsed = st_header_free;
	if ((s = weld_st_read_header(h, so->file, err)))
		return s;
	for (size_t i = 0; i < h->ntensors && !s; i++) {
		const weld_st_tensor *ht = &h->tensors[i];
		ckpt_tensor *t;
		if ((s = weld__ckpt_new_tensor(c, ht->name, &t, err)))
			break;
		t->src = src;
		t->dtype = ht->dtype;
		t->ndim = ht->ndim;
		memcpy(t->shape, ht->shape, sizeof(uint64_t) * ht->ndim);
		if (!(s = weld__ckpt_set_sizes(t, path, err)))
			s = weld__ckpt_add_frag(c, (weld_frag){h->data_start + ht->begin, t->numel, 0, src, WELD_NO_RECORD, WELD_NO_PATTERN},
						err);
	}
	return s;
}

static bool json_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * A safetensors file: its header's first byte that is not JSON whitespace is
 * '{'. The reference reader (serde_json) skips leading whitespace, so
 * "   {...}" is a safetensors header too; only then is the length prefix
 * trusted to bound the scan (HEAD holds the first 9 bytes of F).
 */
static bool st_sniff(weld_file *f, const uint8_t *head, size_t n)
{
	if (n < 9)
		return false;
	if (head[8] == '{')
		return true;
	if (!json_ws(head[8]))
		return false;
	uint64_t len = 0;
	for (int i = 7; i >= 0; i--)
		len = len << 8 | head[i];
	if (len > WELD_ST_HEADER_MAX || len > f->size - 8)
		return false;
	uint8_t buf[4096];
	for (uint64_t at = 0; at < len;) {
		size_t k = len - at < sizeof(buf) ? (size_t)(len - at) : sizeof(buf);
		weld_error e = {0};
		if (weld_file_pread(f, buf, k, 8 + at, &e) != WELD_OK)
			return false;
		for (size_t i = 0; i < k; i++)
			if (!json_ws(buf[i]))
				return buf[i] == '{';
		at += k;
	}
	return false;
}

weld_status weld__hf_open_file(weld_ckpt *c, const char *path, weld_error *err)
{
	uint8_t head[9] = {0};
	weld_file *f;
	weld_status s = weld_file_open(&f, path, err);
	if (s)
		return s;
	size_t n = f->size < sizeof(head) ? (size_t)f->size : sizeof(head);
	s = weld_file_pread(f, head, n, 0, err);
	bool is_st = !s && st_sniff(f, head, n);
	weld_file_close(f);
	/* Formats weld does not read, by name or magic, before the bytes are guessed at (unsupported.c). */
	if (s || (s = weld__unsupported_file(path, head, n, err)))
		return s;
	if (is_st) {
		c->format = WELD_FORMAT_SAFETENSORS;
		return add_st_file(c, path, err);
	}
	if (!weld_torch_sniff(head, n))
		return weld__fail(err, WELD_ERR_FORMAT,
				  "%s: not a safetensors or torch checkpoint file (unrecognised first bytes)", path);
	weld_torch_kind kind;
	if ((s = weld__torch_add_file(c, path, &kind, err)))
		return s;
	c->format = kind == WELD_TORCH_ZIP ? WELD_FORMAT_TORCH_ZIP : WELD_FORMAT_TORCH_LEGACY;
	return WELD_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* F, the shard weight_map gives tensor NAME, must be a file beside the index. */
static weld_status check_shard_name(const char *index_path, const char *name, const char *f, weld_error *err)
{
	if (!f || !*f)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, name);
	/* Shards live beside the index; a path that leaves the folder is hostile. */
	if (strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: weight_map names '%s', which is not a file in this folder",
				  index_path, f);
	return WELD_OK;
}

/* Name I of the list whose pointer LIST points to (it moves as it grows). */
static const char *listed_name(const void *list, size_t i)
{
	return (*(const char **const *)list)[i];
}

/* The distinct shard names of an index's weight_map, sorted. */
static weld_status list_shards(const char *index_path, const cJSON *map, const char ***out, size_t *n,
			       weld_error *err)
{
	const cJSON *e;
	weld_status s = WELD_OK;
	weld_map seen;
	weld_map_init_names(&seen, listed_name, out);
	*out = NULL;
	*n = 0;
	cJSON_ArrayForEach(e, map)
	{
		const char *f = cJSON_GetStringValue(e);
		if ((s = check_shard_name(index_path, e->string, f, err)))
			break;
		if (weld_map_get(&seen, f) != WELD_MAP_NONE)
			continue;
		size_t had;
		const char **grown = weld__reallocarray(*out, *n + 1, sizeof(**out));
		if (grown)
			*out = grown;
		if (!grown || !weld_map_add(&seen, f, *n, &had)) {
			s = weld__nomem(err);
			break;
		}
		(*out)[(*n)++] = f;
	}
	weld_map_clear(&seen);
	if (s)
		return s;
	if (*n == 0)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: weight_map is empty", index_path);
	qsort(*out, *n, sizeof(**out), cmp_str);
	return WELD_OK;
}

static weld_status open_shard(weld_ckpt *c, const char *dir, const char *index_path, const char *shard, bool st,
			      weld_error *err)
{
	char *path = weld__path_join(dir, shard);
	if (!path)
		return weld__nomem(err);
	weld_status s;
	weld_torch_kind kind;
	if (!weld__is_file(path))
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: names shard '%s', which is missing", index_path, shard);
	else
		s = st ? add_st_file(c, path, err) : weld__torch_add_file(c, path, &kind, err);
	free(path);
	return s;
}

/* A tensor's name and the base name of its file: what a weight_map entry says of it. */
typedef struct in_shard {
	const char *name, *shard;
} in_shard;

static const char *base_name(const char *path)
{
	const char *base = strrchr(path, '/');
	return base ? base + 1 : path;
}

static uint64_t in_shard_hash(const void *key)
{
	const in_shard *k = key;
	uint64_t h = weld__hash_bytes(0, k->name, strlen(k->name) + 1); /* the NUL: "ab"+"c" is not "a"+"bc" */
	return weld__hash_bytes(h, k->shard, strlen(k->shard));
}

static bool in_shard_holds(const weld_map *m, const void *key, size_t i)
{
	const weld_ckpt *c = m->ctx;
	const in_shard *k = key;
	return strcmp(c->t[i].name, k->name) == 0 && strcmp(base_name(c->src[c->t[i].src].file->path), k->shard) == 0;
}

static const weld_map_kind in_shard_kind = {in_shard_hash, in_shard_holds};

/* Every name the index lists must be in the shard it names. */
static weld_status check_index(const weld_ckpt *c, const char *index_path, const cJSON *map, weld_error *err)
{
	weld_map held;
	weld_map_init(&held, &in_shard_kind, c);
	bool ok = weld_map_reserve(&held, c->nt);
	for (size_t i = 0; ok && i < c->nt; i++) {
		size_t had;
		in_shard k = {c->t[i].name, base_name(c->src[c->t[i].src].file->path)};
		ok = weld_map_add(&held, &k, i, &had);
	}
	if (!ok) {
		weld_map_clear(&held);
		return weld__nomem(err);
	}
	weld_status s = WELD_OK;
	const cJSON *e;
	cJSON_ArrayForEach(e, map)
	{
		in_shard k = {e->string, cJSON_GetStringValue(e)};
		if (weld_map_get(&held, &k) == WELD_MAP_NONE) {
			s = weld__fail(err, WELD_ERR_MISMATCH, "%s: lists tensor '%s' in '%s', but that shard does not hold it",
				       index_path, e->string, k.shard);
			break;
		}
	}
	weld_map_clear(&held);
	return s;
}

/* A sharded folder: the index's weight_map says which shard holds each tensor; shards open in name order. */
static weld_status open_index(weld_ckpt *c, const char *dir, const char *index_name, bool st, weld_error *err)
{
	char *index_path = weld__path_join(dir, index_name);
	cJSON *root = NULL;
	const char **shards = NULL;
	size_t nshards = 0;
	if (!index_path)
		return weld__nomem(err);
	weld_status s = weld__read_json_file(index_path, INDEX_MAX_BYTES, &root, err);
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!s && !cJSON_IsObject(root))
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: not valid JSON", index_path);
	else if (!s && !cJSON_IsObject(map))
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
	if (!s)
		s = list_shards(index_path, map, &shards, &nshards, err);
	for (size_t i = 0; i < nshards && !s; i++)
		s = open_shard(c, dir, index_path, shards[i], st, err);
	if (!s)
		s = check_index(c, index_path, map, err);
	if (!s)
		c->format = st ? WELD_FORMAT_SAFETENSORS_SHARDED : WELD_FORMAT_TORCH_SHARDED;
	free(shards);
	cJSON_Delete(root);
	free(index_path);
	return s;
}

static bool has(const char *dir, const char *name)
{
	char *p = weld__path_join(dir, name);
	bool yes = p && weld__is_file(p);
	free(p);
	return yes;
}

/* The folder's index when there is one, else its single weights file NAME. */
static weld_status open_folder(weld_ckpt *c, const char *dir, const char *index, const char *name, bool st,
			       weld_error *err)
{
	if (has(dir, index))
		return open_index(c, dir, index, st, err);
	char *p = weld__path_join(dir, name);
	if (!p)
		return weld__nomem(err);
	weld_status s = weld__hf_open_file(c, p, err);
	free(p);
	return s;
}

bool weld__hf_safetensors_present(const char *dir)
{
	return has(dir, ST_INDEX) || has(dir, ST_FILE);
}

bool weld__hf_bin_present(const char *dir)
{
	return has(dir, BIN_INDEX) || has(dir, BIN_FILE);
}

weld_status weld__hf_open_safetensors(weld_ckpt *c, const char *dir, weld_error *err)
{
	return open_folder(c, dir, ST_INDEX, ST_FILE, true, err);
}

weld_status weld__hf_open_bin(weld_ckpt *c, const char *dir, weld_error *err)
{
	return open_folder(c, dir, BIN_INDEX, BIN_FILE, false, err);
}
