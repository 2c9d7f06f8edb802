/*
 * Is the output servable? config.json and its dtype, exactly one weight
 * format, no wrapper prefixes, tied weights that agree with the config,
 * tokenizer files, and the safetensors metadata transformers requires.
 */
#include "verify/verify.h"

#include "io/safetensors.h"
#include "output/folder.h"
#include "pipeline/names.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* config.json's dtype names ("bfloat16", "torch.float16", ...). */
static weld_dtype dtype_from_config(const char *s)
{
	if (strncmp(s, "torch.", 6) == 0)
		s += 6;
	static const struct {
		const char *name;
		weld_dtype dtype;
	} names[] = {{"bfloat16", WELD_DTYPE_BF16}, {"float16", WELD_DTYPE_F16}, {"half", WELD_DTYPE_F16},
		     {"float32", WELD_DTYPE_F32},   {"float", WELD_DTYPE_F32},   {"float64", WELD_DTYPE_F64}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].dtype;
	return WELD_DTYPE_INVALID;
}

void weld__vf_check_config(weld_verifier *v)
{
	char *path = weld__path_join(v->dir, "config.json");
	cJSON *c = NULL;
	weld_error e = {0};
	bool there = path && weld__is_file(path);
	if (there && !weld__read_json_file(path, WELD_SIDE_FILE_MAX, &c, &e) && !cJSON_IsObject(c))
		snprintf(e.message, sizeof(e.message), "config.json: not a JSON object");
	free(path);
	if (!cJSON_IsObject(c)) {
		cJSON_Delete(c);
		weld__vf_check(v->r, "config", WELD_CHECK_FAIL, "%s", there ? weld__vf_in_dir(v, e.message) : "config.json: missing");
		return;
	}
	v->config = c;
	const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings");
	v->tie = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : -1;
	const cJSON *arch = cJSON_GetObjectItemCaseSensitive(c, "architectures"), *a;
	const char *model_type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "model_type"));
	char names[WELD_CHECK_DETAIL_MAX] = "";
	size_t n = 0;
	cJSON_ArrayForEach(a, (cJSON_IsArray(arch) ? arch : NULL))
	{
		if (!cJSON_GetStringValue(a) || !*a->valuestring) {
			n = 0;
			break;
		}
		weld__vf_appendf(names, sizeof(names), "%s%s", n++ ? ", " : "", a->valuestring);
	}
	if (n == 0)
		weld__vf_check(v->r, "config", WELD_CHECK_FAIL,
			  "config.json has no \"architectures\" list (vLLM needs one to pick the model class)");
	else
		weld__vf_check(v->r, "config", WELD_CHECK_PASS, "config.json: %s%s%s%s", names,
			  model_type ? " (model_type " : "", model_type ? model_type : "", model_type ? ")" : "");
}

static const char *config_dtype_label(weld_dtype d)
{
	switch (d) {
	case WELD_DTYPE_BF16: return "bfloat16";
	case WELD_DTYPE_F16: return "float16";
	case WELD_DTYPE_F32: return "float32";
	default: return "float64";
	}
}

/* config.json's "dtype" / "torch_dtype" name the floating-point tensors' dtype. */
void weld__vf_check_config_dtype(weld_verifier *v)
{
	weld_dtype seen = WELD_DTYPE_INVALID, other = WELD_DTYPE_INVALID;
	for (size_t i = 0; i < v->out->nt; i++) {
		weld_dtype d = v->out->t[i].dtype;
		if (!weld__dtype_is_float(d) || v->out->t[i].alias_of)
			continue;
		if (!seen)
			seen = d;
		else if (d != seen)
			other = d;
	}
	static const char *const keys[] = {"dtype", "torch_dtype"};
	const char *said = NULL;
	for (size_t k = 0; k < 2; k++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(v->config, keys[k]);
		if (!j || cJSON_IsNull(j))
			continue;
		const char *s = cJSON_GetStringValue(j);
		if (!s) {
			weld__vf_check(v->r, "config_dtype", WELD_CHECK_FAIL, "config.json: \"%s\" is not a string",
				  keys[k]);
			return;
		}
		weld_dtype d = dtype_from_config(s);
		if (!d) {
			weld__vf_check(v->r, "config_dtype", WELD_CHECK_FAIL,
				  "config.json says \"%s\": \"%s\", which is not a dtype", keys[k], s);
			return;
		}
		if (seen && !other && d != seen) {
			weld__vf_check(v->r, "config_dtype", WELD_CHECK_FAIL,
				  "config.json says \"%s\": \"%s\", the tensors are %s", keys[k], s,
				  weld_dtype_name(seen));
			return;
		}
		said = s;
	}
	if (!seen)
		weld__vf_check(v->r, "config_dtype", WELD_CHECK_PASS, "no floating-point tensors");
	else if (other)
		weld__vf_check(v->r, "config_dtype", WELD_CHECK_WARN, "the tensors mix %s and %s; config.json says %s",
			  weld_dtype_name(seen), weld_dtype_name(other), said ? said : "no dtype");
	else if (!said)
		weld__vf_check(v->r, "config_dtype", WELD_CHECK_WARN,
			  "config.json names no dtype (\"dtype\" or \"torch_dtype\"); the tensors are %s (%s)",
			  weld_dtype_name(seen), config_dtype_label(seen));
	else
		weld__vf_check(v->r, "config_dtype", WELD_CHECK_PASS, "config.json says %s, the tensors are %s", said,
			  weld_dtype_name(seen));
}

/* Exactly one weight format: nothing but the weights (and their index) may look like weights. */
weld_status weld__vf_check_one_format(weld_verifier *v, weld_error *err)
{
	const char **stale = weld__calloc(v->nfiles ? v->nfiles : 1, sizeof(*stale));
	const char **consolidated = weld__calloc(v->nfiles ? v->nfiles : 1, sizeof(*consolidated));
	size_t nstale = 0, ncons = 0;
	if (!stale || !consolidated) {
		free(stale);
		free(consolidated);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < v->nfiles; i++) {
		const char *name = v->files[i];
		if (!weld_is_weight_file(name) || strcmp(name, v->r->weights_file) == 0)
			continue;
		bool expected = false;
		for (size_t k = 0; k < weld_ckpt_file_count(v->out) && !expected; k++)
			expected = strcmp(weld__vf_base_name(weld_ckpt_file(v->out, k)), name) == 0;
		if (expected)
			continue;
		if (strncmp(name, "consolidated", 12) == 0 && weld__has_suffix(name, ".safetensors"))
			consolidated[ncons++] = name;
		else
			stale[nstale++] = name;
	}
	char detail[WELD_CHECK_DETAIL_MAX] = "";
	if (nstale) {
		weld__vf_appendf(detail, sizeof(detail), "stale weight file%s beside %s: ", nstale == 1 ? "" : "s",
			v->r->weights_file);
		weld__vf_append_names(detail, sizeof(detail), stale, nstale);
	}
	if (ncons) {
		weld__vf_appendf(detail, sizeof(detail), "%s", detail[0] ? "; " : "");
		weld__vf_append_names(detail, sizeof(detail), consolidated, ncons);
		weld__vf_appendf(detail, sizeof(detail), " present: vLLM then loads consolidated*.safetensors (Mistral format)");
	}
	if (detail[0]) {
		weld__vf_check(v->r, "one_format", WELD_CHECK_FAIL, "%s", detail);
	} else if (weld_ckpt_file_count(v->out) > 1) {
		weld__vf_check(v->r, "one_format", WELD_CHECK_PASS, "%s and its %zu shards only", v->r->weights_file,
			  weld_ckpt_file_count(v->out));
	} else {
		weld__vf_check(v->r, "one_format", WELD_CHECK_PASS, "%s only", v->r->weights_file);
	}
	free(stale);
	free(consolidated);
	return WELD_OK;
}

/* No DDP/DeepSpeed 'module.' or torch.compile '_orig_mod.' prefixes left on names. */
void weld__vf_check_prefix(weld_verifier *v)
{
	for (size_t k = 0; weld__wrapper(k); k++) {
		const char *p = weld__wrapper(k), *example = NULL;
		size_t n = 0, len = strlen(p);
		for (size_t i = 0; i < v->out->nt; i++)
			if (strncmp(v->out->t[i].name, p, len) == 0 && !n++)
				example = v->out->t[i].name;
		if (n) {
			weld__vf_check(v->r, "prefix", WELD_CHECK_FAIL,
				       "%zu of %zu tensor names start with '%s' (e.g. '%s'); loaders expect the bare names", n,
				       v->out->nt, p, example);
			return;
		}
	}
	weld__vf_check(v->r, "prefix", WELD_CHECK_PASS, "no 'module.' or '_orig_mod.' prefixes");
}

/* Tied weights agree with config.json's tie_word_embeddings. */
weld_status weld__vf_check_tied(weld_verifier *v, weld_error *err)
{
	const weld_manifest_tie *first = v->manifest && v->manifest->nties ? &v->manifest->ties[0] : NULL;
	size_t head = SIZE_MAX;
	for (size_t i = 0; i < v->out->nt && head == SIZE_MAX; i++)
		if (weld__has_suffix(v->out->t[i].name, "lm_head.weight") && !v->out->t[i].alias_of)
			head = i;
	size_t embed = head == SIZE_MAX ? SIZE_MAX : weld__tied_embedding(v->out, head);
	const char *arch0 = cJSON_GetStringValue(
		cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v->config, "architectures"), 0));
	if (first) {
		const char *owner = first->owner;
		if (v->tie == 0)
			weld__vf_check(v->r, "tied", WELD_CHECK_FAIL,
				  "'%s' is stored only as '%s' (weld.json \"tied\"), but config.json has "
				  "tie_word_embeddings false: the model would not load it",
				  first->name, owner ? owner : "?");
		else if (v->tie < 0)
			weld__vf_check(v->r, "tied", WELD_CHECK_WARN,
				  "'%s' is stored only as '%s'; config.json does not set tie_word_embeddings, so the "
				  "model class's default must tie them",
				  first->name, owner ? owner : "?");
		else
			weld__vf_check(v->r, "tied", WELD_CHECK_PASS,
				  "'%s' is stored as '%s', and tie_word_embeddings is true", first->name,
				  owner ? owner : "?");
		return WELD_OK;
	}
	if (v->tie == 1 && head != SIZE_MAX && embed != SIZE_MAX) {
		bool eq;
		weld_error e = {0};
		weld_status s = weld__vf_same_bytes(v->out, head, v->out, embed, &eq, &e);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s)
			weld__vf_check(v->r, "tied", WELD_CHECK_FAIL, "%s", e.message);
		else if (!eq)
			weld__vf_check(v->r, "tied", WELD_CHECK_FAIL,
				  "tie_word_embeddings is true but '%s' differs from '%s': loaders will use the "
				  "embedding",
				  v->out->t[head].name, v->out->t[embed].name);
		else
			weld__vf_check(v->r, "tied", WELD_CHECK_PASS,
				  "'%s' equals '%s' (stored twice), and tie_word_embeddings is true",
				  v->out->t[head].name, v->out->t[embed].name);
		return WELD_OK;
	}
	if (v->tie == 0 && head == SIZE_MAX && arch0 && weld__has_suffix(arch0, "ForCausalLM")) {
		weld__vf_check(v->r, "tied", WELD_CHECK_FAIL,
			  "no lm_head.weight, and config.json has tie_word_embeddings false: the head would be left "
			  "untrained");
		return WELD_OK;
	}
	if (v->tie == 1 && head == SIZE_MAX)
		weld__vf_check(v->r, "tied", WELD_CHECK_PASS,
			  "no lm_head.weight stored, and tie_word_embeddings is true: the head is the input embedding");
	else
		weld__vf_check(v->r, "tied", WELD_CHECK_PASS, "no tied weights");
	return WELD_OK;
}

void weld__vf_check_tokenizer(weld_verifier *v)
{
	/* A vocabulary in some form; tokenizer_config.json alone is not one. */
	static const char *const vocab[] = {"tokenizer.json", "tokenizer.model", "vocab.json",
					    "vocab.txt",      "spiece.model",    "sentencepiece.bpe.model",
					    "tekken.json",    "tiktoken.model"};
	const char *found[sizeof(vocab) / sizeof(vocab[0]) + 2];
	size_t n = 0;
	bool have_vocab = false;
	for (size_t k = 0; k < sizeof(vocab) / sizeof(vocab[0]); k++)
		if (weld__vf_has_file(v, vocab[k])) {
			found[n++] = vocab[k];
			have_vocab = true;
		}
	for (size_t i = 0; i < v->nfiles && !have_vocab; i++)
		if (weld__has_suffix(v->files[i], ".tiktoken")) {
			found[n++] = v->files[i];
			have_vocab = true;
		}
	if (weld__vf_has_file(v, "tokenizer_config.json"))
		found[n++] = "tokenizer_config.json";
	char names[WELD_CHECK_DETAIL_MAX] = "";
	for (size_t i = 0; i < n; i++)
		weld__vf_appendf(names, sizeof(names), "%s%s", i ? ", " : "", found[i]);
	if (have_vocab)
		weld__vf_check(v->r, "tokenizer", WELD_CHECK_PASS, "%s", names);
	else if (n)
		weld__vf_check(v->r, "tokenizer", WELD_CHECK_WARN,
			  "%s but no vocabulary (tokenizer.json, tokenizer.model, ...)", names);
	else
		weld__vf_check(v->r, "tokenizer", WELD_CHECK_WARN,
			  "no tokenizer files (tokenizer.json, tokenizer.model, ...): serve with a tokenizer from "
			  "elsewhere");
}

/* The __metadata__ "format" of the safetensors file PATH, into FMT (empty when it has none). */
static weld_status metadata_format(const char *path, char *fmt, size_t cap, weld_error *err)
{
	weld_file *f = NULL;
	weld_st_header h = {0};
	weld_status s = weld_file_open(&f, path, err);
	if (!s)
		s = weld_st_read_header(&h, f, err);
	fmt[0] = '\0';
	for (size_t k = 0; !s && k < h.nmeta; k++)
		if (strcmp(h.meta_keys[k], "format") == 0)
			snprintf(fmt, cap, "%s", h.meta_vals[k]);
	weld_st_header_clear(&h);
	weld_file_close(f);
	return s;
}

/* safetensors __metadata__ "format" must be "pt": transformers refuses a file without one. */
weld_status weld__vf_check_metadata(weld_verifier *v, weld_error *err)
{
	if (strcmp(v->r->format, "safetensors") != 0) {
		weld__vf_check(v->r, "metadata", WELD_CHECK_PASS, "%s: no safetensors metadata needed", v->r->format);
		return WELD_OK;
	}
	for (size_t i = 0; i < weld_ckpt_file_count(v->out); i++) {
		const char *path = weld_ckpt_file(v->out, i);
		char fmt[256];
		weld_error e = {0};
		weld_status s = metadata_format(path, fmt, sizeof(fmt), &e);
		if (s == WELD_ERR_NOMEM)
			return weld__nomem(err);
		if (s) {
			weld__vf_check(v->r, "metadata", WELD_CHECK_FAIL, "%s", e.message);
			return WELD_OK;
		}
		if (!fmt[0]) {
			weld__vf_check(v->r, "metadata", WELD_CHECK_FAIL,
				  "%s has no __metadata__ \"format\" (transformers refuses to load it)", weld__vf_base_name(path));
			return WELD_OK;
		}
		if (strcmp(fmt, "pt") != 0) {
			bool known = strcmp(fmt, "tf") == 0 || strcmp(fmt, "flax") == 0 || strcmp(fmt, "mlx") == 0;
			weld__vf_check(v->r, "metadata", known ? WELD_CHECK_WARN : WELD_CHECK_FAIL,
				  "%s: __metadata__ \"format\" is \"%s\", not \"pt\"", weld__vf_base_name(path), fmt);
			return WELD_OK;
		}
	}
	weld__vf_check(v->r, "metadata", WELD_CHECK_PASS, "__metadata__ \"format\": \"pt\"");
	return WELD_OK;
}

