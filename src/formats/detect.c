/*
 * Which format an input is: a weights file is told by its first bytes; a
 * folder by the table below, each format saying whether a folder holds it.
 * With --type auto a folder holding several is read in the table's order of
 * preference: a DeepSpeed tag's fp32 master weights first (exact: what
 * zero_to_fp32 reads; an HF Trainer checkpoint-N holds them beside its own
 * 16-bit copy), then safetensors before .bin, as vLLM does. The checkpoint
 * notes the choice, and which HF weights it passed over, so that a
 * conversion can say so and cross-check them.
 */
#define _DEFAULT_SOURCE /* lstat, S_ISLNK */
#include "formats/deepspeed.h"
#include "formats/hf.h"
#include "formats/unsupported.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct folder_format {
	const char *kind;      /* named when a folder holds several */
	weld_input_type type;  /* the --type that selects it */
	bool (*present)(const char *dir);
	weld_status (*open)(weld_ckpt *c, const char *dir, weld_error *err);
} folder_format;

static const folder_format formats[] = {
	{"deepspeed", WELD_INPUT_ZERO, weld__deepspeed_present, weld__deepspeed_open},
	{"safetensors", WELD_INPUT_HF, weld__hf_safetensors_present, weld__hf_open_safetensors},
	{"pytorch-bin", WELD_INPUT_HF, weld__hf_bin_present, weld__hf_open_bin},
};
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

/*
 * What C notes when FOUND[0] was chosen over the other N - 1 kinds in DIR:
 * the sentence a conversion shows, and the HF weights it may cross-check.
 */
static weld_status note_choice(weld_ckpt *c, const char *dir, const folder_format *const *found, size_t n,
			       weld_error *err)
{
	char others[64] = "";
	for (size_t i = 1; i < n; i++)
		snprintf(others + strlen(others), sizeof(others) - strlen(others), "%s%s", i > 1 ? " and " : "",
			 found[i]->kind);
	char *note;
	if (found[0]->type == WELD_INPUT_ZERO)
		note = weld__format("%s: read the DeepSpeed fp32 master weights (tag %s), not the HF %s weights beside "
				    "them (--type hf reads those)",
				    dir, c->deepspeed ? c->deepspeed->tag : "?", others);
	else
		note = weld__format("%s: read the %s weights, not the %s ones beside them", dir, found[0]->kind, others);
	if (!weld__ckpt_own(c, note))
		return weld__nomem(err);
	c->choice_note = note;
	if (found[0]->type == WELD_INPUT_ZERO && !(c->hf_beside = weld__ckpt_own(c, weld__strdup(dir))))
		return weld__nomem(err);
	return WELD_OK;
}

/*
 * A LoRA run trained with DeepSpeed: its tag holds the PEFT-wrapped model
 * (base_model.model.* names, adapter weights apart), which no HF loader
 * takes as a model. Read only when --type zero asks for it.
 */
static weld_status peft_run(const char *dir, const folder_format *chosen, weld_input_type type, weld_error *err)
{
	if (type != WELD_INPUT_AUTO || chosen->type != WELD_INPUT_ZERO)
		return WELD_OK;
	char *config = weld__path_join(dir, "adapter_config.json");
	bool adapter = config && weld__is_file(config);
	free(config);
	if (!config)
		return weld__nomem(err);
	return adapter ? weld__foreign_fail(err, dir, WELD_FOREIGN_PEFT, "adapter_config.json beside a DeepSpeed tag")
		       : WELD_OK;
}

static weld_status open_folder(weld_ckpt *c, const char *dir, weld_input_type type, weld_error *err)
{
	const folder_format *found[NFORMATS];
	size_t n = 0;
	for (size_t i = 0; i < NFORMATS; i++)
		if ((type == WELD_INPUT_AUTO || formats[i].type == type) && formats[i].present(dir))
			found[n++] = &formats[i];
	if (n > 0) {
		weld_status s = peft_run(dir, found[0], type, err);
		if (!s)
			s = found[0]->open(c, dir, err);
		/* Only the choice among kinds needs a note: HF's safetensors-over-.bin under --type hf is documented. */
		if (!s && n > 1 && type == WELD_INPUT_AUTO)
			s = note_choice(c, dir, found, n, err);
		/* --type zero on a Trainer folder: its HF weights are still worth the cross-check. */
		if (!s && type == WELD_INPUT_ZERO && (weld__hf_safetensors_present(dir) || weld__hf_bin_present(dir)) &&
		    !(c->hf_beside = weld__ckpt_own(c, weld__strdup(dir))))
			s = weld__nomem(err);
		return s;
	}
	/* Nothing weld reads: a format it knows but does not read is named (not with --type: it asked for one). */
	weld_status s = type == WELD_INPUT_AUTO ? weld__unsupported_folder(dir, err) : WELD_OK;
	if (s)
		return s;
	if (type == WELD_INPUT_ZERO)
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a DeepSpeed checkpoint (no 'latest' and no model states files)",
				  dir);
	return weld__fail(err, WELD_ERR_FORMAT,
			  "%s: no checkpoint found (no model.safetensors, pytorch_model.bin, index file or DeepSpeed tag)", dir);
}

weld_status weld_ckpt_open(weld_ckpt **out, const char *path, weld_error *err)
{
	return weld_ckpt_open_as(out, path, WELD_INPUT_AUTO, err);
}

/* Why PATH is neither a file nor a folder: missing, a dangling link, a link loop, or another kind of file. */
static weld_status not_openable(const char *path, weld_error *err)
{
	struct stat sb;
	if (stat(path, &sb) == 0)
		return weld__fail(err, WELD_ERR_IO, "%s: not a regular file or a folder", path);
	if (errno != ENOENT)
		return weld__fail(err, WELD_ERR_IO, "%s: %s", path, strerror(errno));
	if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
		return weld__fail(err, WELD_ERR_IO, "%s: a symbolic link whose target does not exist", path);
	return weld__fail(err, WELD_ERR_IO, "%s: no such file or folder", path);
}

weld_status weld_ckpt_open_as(weld_ckpt **out, const char *path, weld_input_type type, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	*out = NULL;
	weld_ckpt *c = calloc(1, sizeof(*c));
	if (!c)
		return weld__nomem(err);
	weld_status s;
	if (weld__is_dir(path))
		s = open_folder(c, path, type, err);
	else if (weld__is_file(path) && type == WELD_INPUT_ZERO)
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: a DeepSpeed checkpoint is a folder, not a file", path);
	else if (weld__is_file(path))
		s = weld__hf_open_file(c, path, err);
	else
		s = not_openable(path, err);
	if (s) {
		weld_ckpt_free(c);
		return s;
	}
	*out = c;
	return WELD_OK;
}
