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
#include "formats/dcp.h"
#include "formats/deepspeed.h"
#include "formats/hf.h"
#include "formats/unsupported.h"

#include <errno.h>
#include <stddef.h>
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
	{"dcp", WELD_INPUT_DCP, weld__dcp_present, weld__dcp_open},
	{"safetensors", WELD_INPUT_HF, weld__hf_safetensors_present, weld__hf_open_safetensors},
	{"pytorch-bin", WELD_INPUT_HF, weld__hf_bin_present, weld__hf_open_bin},
};
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

/*
 * What C notes when FOUND[0] was chosen over the other N - 1 kinds in DIR:
 * the sentence a conversion shows.
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
	c->choice_note = weld__ckpt_own(c, note);
	return c->choice_note ? WELD_OK : weld__nomem(err);
}

static bool holds_file(const char *dir, const char *name)
{
	char *path = weld__path_join(dir, name);
	bool yes = path && weld__is_file(path);
	free(path);
	return yes;
}

/*
 * The HF Trainer checkpoint-N the masters of C came from, in *HOME
 * (malloc'd): DIR itself when its `latest` led to the tag, or the folder
 * above a tag given directly when that folder's `latest` names it.
 */
static weld_status trainer_home(const weld_ckpt *c, const char *dir, char **home, weld_error *err)
{
	const char *tag = c->deepspeed->tag;
	if (strcmp(c->deepspeed->tag_dir, dir) != 0) {
		*home = weld__strdup(dir);
		return *home ? WELD_OK : weld__nomem(err);
	}
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	while (n > 0 && dir[n - 1] != '/')
		n--;
	*home = n ? weld__strndup(dir, n) : weld__strdup(".");
	char *latest = *home ? weld__path_join(*home, "latest") : NULL, *text = NULL;
	size_t len = 0;
	if (!latest) {
		free(*home);
		*home = NULL;
		return weld__nomem(err);
	}
	bool names_it = weld__read_small_file(latest, 4096, &text, &len, NULL) == WELD_OK &&
			strncmp(text, tag, strlen(tag)) == 0 && strspn(text + strlen(tag), "\r\n ") == len - strlen(tag);
	free(text);
	free(latest);
	if (!names_it) {
		free(*home);
		*home = NULL;
	}
	return WELD_OK;
}

/*
 * After DeepSpeed masters were opened from DIR: the Trainer folder around
 * them decides the rest. A LoRA run (adapter_config.json there) holds the
 * adapter-wrapped model, base_model.model.* names no loader serves: refused
 * unless --type zero asked for it. HF weights there are worth the
 * cross-check (c->hf_beside).
 */
static weld_status after_masters(weld_ckpt *c, const char *dir, weld_input_type type, weld_error *err)
{
	char *home = NULL;
	weld_status s = trainer_home(c, dir, &home, err);
	if (s || !home)
		return s;
	bool hf = weld__hf_safetensors_present(home) || weld__hf_bin_present(home);
	if (type == WELD_INPUT_AUTO && holds_file(home, "adapter_config.json"))
		s = weld__foreign_fail(err, dir, WELD_FOREIGN_PEFT,
				       "adapter_config.json beside a DeepSpeed tag; --type zero reads the tag anyway");
	else if (hf && !(c->hf_beside = weld__ckpt_own(c, weld__strdup(home))))
		s = weld__nomem(err);
	free(home);
	return s;
}

/* A failed read of the masters, when HF weights were passed over for them: say how to read those. */
static weld_status hint_hf(weld_status s, const folder_format *other, weld_error *err)
{
	size_t used = strlen(err->message);
	if (s != WELD_ERR_NOMEM)
		snprintf(err->message + used, sizeof(err->message) - used, "; --type hf reads the HF %s weights beside it",
			 other->kind);
	return s;
}

/*
 * A tag folder in DIR that no `latest` names (the file deleted or not yet
 * written): its name, malloc'd in *TAG, else NULL.
 */
static weld_status unnamed_tag(const char *dir, char **tag, weld_error *err)
{
	char **names = NULL;
	size_t n = 0;
	*tag = NULL;
	weld_status s = weld__list_dir(dir, &names, &n, err);
	if (s)
		return s == WELD_ERR_NOMEM ? s : WELD_OK; /* unlistable: nothing to say */
	for (size_t i = 0; i < n && !*tag && !s; i++) {
		char *sub = weld__path_join(dir, names[i]);
		if (!sub)
			s = weld__nomem(err);
		else if (weld__is_dir(sub) && weld__deepspeed_present(sub) && !holds_file(sub, "latest") &&
			 !(*tag = weld__strdup(names[i])))
			s = weld__nomem(err);
		free(sub);
	}
	weld__free_strings(names, n);
	return s;
}

static weld_status open_found(weld_ckpt *c, const char *dir, const folder_format *const *found, size_t n,
			      weld_input_type type, weld_error *err)
{
	weld_status s = found[0]->open(c, dir, err);
	if (s && n > 1 && type == WELD_INPUT_AUTO && found[0]->type == WELD_INPUT_ZERO)
		return hint_hf(s, found[1], err);
	if (!s && found[0]->type == WELD_INPUT_ZERO)
		s = after_masters(c, dir, type, err);
	/* Only the choice among kinds needs a note: HF's safetensors-over-.bin under --type hf is documented. */
	if (!s && n > 1 && type == WELD_INPUT_AUTO)
		s = note_choice(c, dir, found, n, err);
	char *tag = NULL;
	if (!s && found[0]->type == WELD_INPUT_HF && type == WELD_INPUT_AUTO && !(s = unnamed_tag(dir, &tag, err)) && tag) {
		c->choice_note = weld__ckpt_own(c, weld__format("%s: read the HF %s weights; %s/ holds DeepSpeed masters, but no "
								"'latest' names it (--input %s/%s reads them)",
								dir, found[0]->kind, tag, dir, tag));
		s = c->choice_note ? WELD_OK : weld__nomem(err);
	}
	free(tag);
	return s;
}

static weld_status open_folder(weld_ckpt *c, const char *dir, weld_input_type type, weld_error *err)
{
	const folder_format *found[NFORMATS];
	size_t n = 0;
	for (size_t i = 0; i < NFORMATS; i++)
		if ((type == WELD_INPUT_AUTO || formats[i].type == type) && formats[i].present(dir))
			found[n++] = &formats[i];
	if (n > 0)
		return open_found(c, dir, found, n, type, err);
	/* Nothing weld reads: a format it knows but does not read is named (not with --type: it asked for one). */
	weld_status s = type == WELD_INPUT_AUTO ? weld__unsupported_folder(dir, err) : WELD_OK;
	char *tag = NULL;
	if (!s)
		s = unnamed_tag(dir, &tag, err);
	if (!s && tag)
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: no 'latest' names the DeepSpeed tag %s/ (--input %s/%s reads it)", dir,
			       tag, dir, tag);
	free(tag);
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
	weld_open_options o = WELD_OPEN_OPTIONS_INIT;
	o.type = type;
	return weld_ckpt_open_with(out, path, &o, err);
}

weld_status weld_ckpt_open_with(weld_ckpt **out, const char *path, const weld_open_options *options, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	*out = NULL;
	weld_open_options o = WELD_OPEN_OPTIONS_INIT;
	if (options && (options->struct_size < offsetof(weld_open_options, type) + sizeof(o.type) ||
			options->struct_size > sizeof(o)))
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "weld_ckpt_open_with: options.struct_size is %zu; set it with WELD_OPEN_OPTIONS_INIT",
				  options->struct_size);
	if (options)
		memcpy(&o, options, options->struct_size);
	weld_input_type type = o.type;
	weld_ckpt *c = calloc(1, sizeof(*c));
	if (!c)
		return weld__nomem(err);
	c->allow_globals = o.allow_globals;
	c->nallow_globals = o.nallow_globals;
	weld_status s;
	if (weld__is_dir(path))
		s = open_folder(c, path, type, err);
	else if (weld__is_file(path) && type == WELD_INPUT_ZERO)
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: a DeepSpeed checkpoint is a folder, not a file", path);
	else if (weld__is_file(path))
		s = weld__hf_open_file(c, path, err);
	else
		s = not_openable(path, err);
	c->allow_globals = NULL; /* borrowed for the open only */
	c->nallow_globals = 0;
	if (s) {
		weld_ckpt_free(c);
		return s;
	}
	*out = c;
	return WELD_OK;
}
