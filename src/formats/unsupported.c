/*
 * Checkpoint formats weld recognises but does not read. Without this they
 * got "no checkpoint found", which reads like the user's mistake, or worse,
 * a Megatron file was converted into model.language_model.* names no HF
 * loader understands. Each is refused instead, naming the format and the
 * file or folder that gave it away, so the user can check:
 *
 *   DIR: a Megatron-LM checkpoint (latest_checkpointed_iteration.txt); weld does not read this format yet
 *
 * Only where nothing weld reads is there: detect.c asks about a folder only
 * when no format of its table was found in it (and no --type named one), so
 * full weights beside an adapter or a .gguf win. A DeepSpeed
 * tag is asked about as deepspeed.c opens it. Files are asked about before
 * their first bytes are sniffed (hf.c); a torch file's contents are
 * torch_file.c's to judge (Megatron's dict), with the message made here.
 *
 * What each format's own tools write, and so what is looked for:
 *   PyTorch DCP   read by dcp.c; named here only where weld needs its folder:
 *                 a *.distcp file given alone, or torchtitan's checkpoint/
 *                 holding step-N/ folders.
 *   Megatron-LM   latest_checkpointed_iteration.txt beside iter_NNNNNNN/
 *                 (or release/) folders holding mp_rank_TT[_PPP]/
 *                 model_optim_rng.pt (model_rng.pt without the optimizer);
 *                 its distributed format puts metadata.json + common.pt (and
 *                 a DCP) in iter_NNNNNNN/, hence Megatron's rows before DCP's.
 *   DeepSpeed universal   ds_to_universal.py: a tag folder holding
 *                 zero/<param name>/fp32.pt (plus copies of the model states
 *                 files, so deepspeed.c asks too), named by latest_universal.
 *   PEFT adapter  PeftModel.save_pretrained: adapter_config.json +
 *                 adapter_model.safetensors (or .bin), the adapter's weights
 *                 only.
 *   GGUF          llama.cpp's format, a serving format already: a file that
 *                 starts with the bytes "GGUF".
 */
#include "formats/unsupported.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char NOT_YET[] = "weld does not read this format yet";

/* What the input is, and what weld says about it. */
static const struct {
	const char *name, *then;
} foreign[] = {
	[WELD_FOREIGN_DCP] = {"a PyTorch Distributed Checkpoint",
			      "convert the folder that holds its .metadata (weld batch converts a run of them)"},
	[WELD_FOREIGN_MEGATRON] = {"a Megatron-LM checkpoint", NOT_YET},
	[WELD_FOREIGN_DS_UNIVERSAL] = {"a DeepSpeed universal checkpoint",
				       "weld does not read this format yet; convert the ZeRO checkpoint it was made from"},
	[WELD_FOREIGN_PEFT] = {"a PEFT adapter", "weld does not read adapters; merge it into its base model first "
						 "(PEFT's merge_and_unload) and convert that"},
	[WELD_FOREIGN_GGUF] = {"a GGUF model", "weld does not read GGUF, a serving format already (llama.cpp)"},
};

weld_status weld__foreign_fail(weld_error *err, const char *path, weld_foreign kind, const char *evidence)
{
	return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: %s (%s); %s", path, foreign[kind].name, evidence,
			  foreign[kind].then);
}

/* What one recogniser looks at, and what it found. */
typedef struct look {
	const char *path;     /* the folder or file */
	char **names;         /* a folder's entries, sorted (deterministic evidence) */
	size_t n;
	const uint8_t *head;  /* a file's first bytes */
	size_t nhead;
	bool nomem;           /* a listing or path ran out of memory: nothing can be said */
	char ev[512];         /* the evidence, once seen */
} look;

static bool listed(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/*
 * The entries of L's folder's entry SUB (sorted), none when it is no folder
 * or cannot be listed: an unreadable subfolder is no evidence of anything.
 */
static void list_sub(look *l, const char *sub, char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	char *p = weld__path_join(l->path, sub);
	if (!p)
		l->nomem = true;
	else if (weld__is_dir(p) && weld__list_dir(p, names, n, NULL) == WELD_ERR_NOMEM)
		l->nomem = true;
	free(p);
}

/* Whether L's folder's entry SUB holds the file NAME. */
static bool sub_holds(look *l, const char *sub, const char *name)
{
	char *p = weld__format("%s/%s/%s", l->path, sub, name);
	bool yes = p && weld__is_file(p);
	l->nomem |= !p;
	free(p);
	return yes;
}

/* The first *.distcp of a DCP folder's entries (NAMES holds .metadata too), else NULL. */
static const char *dcp_shard(char *const *names, size_t n)
{
	if (!listed(names, n, ".metadata"))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (weld__has_suffix(names[i], ".distcp"))
			return names[i];
	return NULL;
}

/* A subfolder of L that is a DCP (torchtitan's checkpoint/ of step-N/): the evidence names both. */
static bool dcp_below(look *l)
{
	for (size_t i = 0; i < l->n && !l->ev[0] && !l->nomem; i++) {
		char **sub;
		size_t nsub;
		list_sub(l, l->names[i], &sub, &nsub);
		const char *shard = dcp_shard(sub, nsub);
		if (shard)
			snprintf(l->ev, sizeof(l->ev), "%s/ holds .metadata + %s", l->names[i], shard);
		weld__free_strings(sub, nsub);
	}
	return l->ev[0];
}

/* An iteration folder: one mp_rank_TT[_PPP]/ per tensor (and pipeline) rank. */
static bool megatron_ranks(look *l)
{
	static const char *const files[] = {"model_optim_rng.pt", "model_rng.pt"};
	for (size_t i = 0; i < l->n && !l->ev[0]; i++) {
		if (strncmp(l->names[i], "mp_rank_", 8) != 0)
			continue;
		for (size_t k = 0; k < 2 && !l->ev[0]; k++)
			if (sub_holds(l, l->names[i], files[k]))
				snprintf(l->ev, sizeof(l->ev), "%s/%s", l->names[i], files[k]);
	}
	return l->ev[0];
}

/* Megatron's distributed format: its own two files beside the DCP. */
static bool megatron_dist(look *l)
{
	if (!listed(l->names, l->n, "metadata.json") || !listed(l->names, l->n, "common.pt"))
		return false;
	snprintf(l->ev, sizeof(l->ev), "metadata.json + common.pt");
	return true;
}

/*
 * Megatron names its iteration folders iter_%07d; one counts when it holds
 * what Megatron writes there (a hand-written loop's iter_N of HF weights is
 * a checkpoint weld reads, as batch does).
 */
static bool megatron_iterations(look *l)
{
	for (size_t i = 0; i < l->n && !l->ev[0] && !l->nomem; i++) {
		const char *s = l->names[i];
		if (strncmp(s, "iter_", 5) != 0 || !s[5] || strspn(s + 5, "0123456789") != strlen(s + 5))
			continue;
		look in = {.path = weld__path_join(l->path, s)};
		l->nomem |= !in.path;
		list_sub(l, s, &in.names, &in.n);
		if (in.path && (megatron_ranks(&in) || megatron_dist(&in)))
			snprintf(l->ev, sizeof(l->ev), "%s/%s", s, in.ev);
		l->nomem |= in.nomem;
		weld__free_strings(in.names, in.n);
		free((char *)in.path);
	}
	return l->ev[0];
}

/* Only where there is no `latest`: with one, deepspeed.c reads the tag it names. */
static bool universal_pointer(look *l)
{
	if (!listed(l->names, l->n, "latest_universal") || listed(l->names, l->n, "latest"))
		return false;
	snprintf(l->ev, sizeof(l->ev), "latest_universal, and no latest");
	return true;
}

/* zero/<param>/fp32.pt for the first <param>, in name order, that has one. */
static bool universal_tag(look *l)
{
	char **params;
	size_t n;
	list_sub(l, "zero", &params, &n);
	for (size_t i = 0; i < n && !l->ev[0]; i++) {
		char *sub = weld__format("zero/%s", params[i]);
		l->nomem |= !sub;
		if (sub && sub_holds(l, sub, "fp32.pt"))
			snprintf(l->ev, sizeof(l->ev), "zero/%s/fp32.pt", params[i]);
		free(sub);
	}
	weld__free_strings(params, n);
	return l->ev[0];
}

/* Full weights are not there (detect.c asks only then), so the adapter is all there is. */
static bool peft_folder(look *l)
{
	static const char *const weights[] = {"adapter_model.safetensors", "adapter_model.bin"};
	if (!listed(l->names, l->n, "adapter_config.json"))
		return false;
	for (size_t k = 0; k < 2; k++)
		if (listed(l->names, l->n, weights[k])) {
			snprintf(l->ev, sizeof(l->ev), "adapter_config.json + %s, no full weights", weights[k]);
			return true;
		}
	return false;
}

static bool gguf_folder(look *l)
{
	for (size_t i = 0; i < l->n && !l->ev[0]; i++)
		if (weld__has_suffix(l->names[i], ".gguf"))
			snprintf(l->ev, sizeof(l->ev), "%s", l->names[i]);
	return l->ev[0];
}

/*
 * A row recognises one format by one piece of evidence: the entry HOLDS of
 * the folder (a file's own name, for files), or what SEEN finds. The first
 * row that matches names the format, so the more telling ones come first.
 */
typedef struct recogniser {
	weld_foreign kind;
	const char *holds;
	bool (*seen)(look *l);
} recogniser;

static const recogniser folder_rows[] = {
	{WELD_FOREIGN_PEFT, NULL, peft_folder},
	{WELD_FOREIGN_MEGATRON, "latest_checkpointed_iteration.txt", NULL},
	{WELD_FOREIGN_MEGATRON, NULL, megatron_iterations},
	{WELD_FOREIGN_MEGATRON, NULL, megatron_ranks},
	{WELD_FOREIGN_MEGATRON, "model_optim_rng.pt", NULL},
	{WELD_FOREIGN_MEGATRON, "model_rng.pt", NULL},
	{WELD_FOREIGN_MEGATRON, NULL, megatron_dist},
	{WELD_FOREIGN_DS_UNIVERSAL, NULL, universal_pointer},
	{WELD_FOREIGN_DS_UNIVERSAL, NULL, universal_tag},
	{WELD_FOREIGN_DCP, NULL, dcp_below},
	{WELD_FOREIGN_GGUF, NULL, gguf_folder},
};

/* adapter_model.* is converted happily as a safetensors or torch file, but into LoRA deltas, not a model. */
static bool peft_file(look *l)
{
	const char *base = strrchr(l->path, '/');
	base = base ? base + 1 : l->path;
	if (strcmp(base, "adapter_model.safetensors") != 0 && strcmp(base, "adapter_model.bin") != 0)
		return false;
	char *config = weld__format("%.*sadapter_config.json", (int)(base - l->path), l->path);
	bool yes = config && weld__is_file(config);
	l->nomem |= !config;
	free(config);
	if (yes)
		snprintf(l->ev, sizeof(l->ev), "adapter_config.json beside it");
	return yes;
}

static bool gguf_file(look *l)
{
	if (l->nhead < 4 || memcmp(l->head, "GGUF", 4) != 0)
		return false;
	snprintf(l->ev, sizeof(l->ev), "starts with GGUF");
	return true;
}

/* A shard of a DCP: neither safetensors nor torch, so without this, "unrecognised first bytes". */
static bool dcp_file(look *l)
{
	if (!weld__has_suffix(l->path, ".distcp"))
		return false;
	snprintf(l->ev, sizeof(l->ev), "a *.distcp shard of one");
	return true;
}

/* A Megatron file by name; under another name torch_file.c knows it by its dict. */
static const recogniser file_rows[] = {
	{WELD_FOREIGN_MEGATRON, "model_optim_rng.pt", NULL},
	{WELD_FOREIGN_MEGATRON, "model_rng.pt", NULL},
	{WELD_FOREIGN_PEFT, NULL, peft_file},
	{WELD_FOREIGN_GGUF, NULL, gguf_file},
	{WELD_FOREIGN_DCP, NULL, dcp_file},
};

/* The first of the N rows that recognises L, refused; else WELD_OK. FILE: L is a file, HOLDS its own name. */
static weld_status recognise(look *l, const recogniser *rows, size_t n, bool file, weld_error *err)
{
	const char *base = strrchr(l->path, '/');
	base = base ? base + 1 : l->path;
	for (size_t i = 0; i < n && !l->nomem; i++) {
		const recogniser *r = &rows[i];
		bool seen = r->seen ? r->seen(l) : file ? strcmp(base, r->holds) == 0 : listed(l->names, l->n, r->holds);
		if (seen && r->holds)
			snprintf(l->ev, sizeof(l->ev), "%s%s", file ? "named " : "", r->holds);
		if (seen && !l->nomem)
			return weld__foreign_fail(err, l->path, r->kind, l->ev);
	}
	return l->nomem ? weld__nomem(err) : WELD_OK;
}

weld_status weld__unsupported_folder(const char *dir, weld_error *err)
{
	look l = {.path = dir};
	weld_status s = weld__list_dir(dir, &l.names, &l.n, NULL);
	/* An unlistable folder is no evidence: the caller's "not found" stands, unless memory ran out. */
	if (s)
		return s == WELD_ERR_NOMEM ? weld__nomem(err) : WELD_OK;
	s = recognise(&l, folder_rows, sizeof(folder_rows) / sizeof(folder_rows[0]), false, err);
	weld__free_strings(l.names, l.n);
	return s;
}

weld_status weld__unsupported_file(const char *path, const uint8_t *head, size_t n, weld_error *err)
{
	look l = {.path = path, .head = head, .nhead = n};
	return recognise(&l, file_rows, sizeof(file_rows) / sizeof(file_rows[0]), true, err);
}

weld_status weld__unsupported_ds_tag(const char *tag_dir, weld_error *err)
{
	static const recogniser universal[] = {{WELD_FOREIGN_DS_UNIVERSAL, NULL, universal_tag}};
	look l = {.path = tag_dir};
	return recognise(&l, universal, 1, false, err);
}
