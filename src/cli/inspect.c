/* weld inspect PATH [--json]: what a checkpoint holds, without reading its tensors. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char inspect_usage[] =
	"usage: weld inspect PATH [--json]\n"
	"\n"
	"Show what a checkpoint file or folder holds: the format detected, each\n"
	"tensor's name, dtype, shape and source file, and totals. For DeepSpeed\n"
	"folders also the tag, ZeRO stage, world size and files found. Reads\n"
	"headers and pickles only, never tensor data, and refuses what convert\n"
	"would refuse before reading it (a record's CRC-32 is checked only then).\n"
	"\n"
	"  --json    print one JSON object on stdout instead of a table\n"
	"  --allow-global M.N\n"
	"            accept the class M.N in pickles as inert data (repeatable)\n"
	"  --help    this help\n" CLI_EXIT_CODES_HELP;

/* Path relative to the input when it lies inside it: shorter, and stable in tests. */
static const char *short_path(const char *file, const char *input)
{
	if (strcmp(file, input) == 0) {
		const char *base = strrchr(file, '/');
		return base && base[1] ? base + 1 : file;
	}
	size_t n = strlen(input);
	while (n > 1 && input[n - 1] == '/')
		n--;
	if (strncmp(file, input, n) == 0 && file[n] == '/')
		return file + n + 1;
	return file;
}

static void shape_str(char *buf, size_t cap, const weld_tensor_info *t)
{
	size_t n = (size_t)snprintf(buf, cap, "[");
	for (size_t d = 0; d < t->ndim && n < cap; d++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
}

typedef struct totals {
	uint64_t params, bytes;
	size_t tensors, aliases;
} totals;

static totals sum(const weld_ckpt *c)
{
	totals t = {0};
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		t.tensors++;
		if (ti.alias_of) {
			t.aliases++;
			continue;
		}
		t.params += ti.numel;
		t.bytes += ti.nbytes;
	}
	return t;
}

static cJSON *tensor_json(const weld_tensor_info *ti, size_t parts, const char *path)
{
	cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray();
	cJSON_AddStringToObject(t, "name", ti->name);
	cJSON_AddStringToObject(t, "dtype", weld_dtype_name(ti->dtype));
	for (size_t d = 0; d < ti->ndim; d++)
		cJSON_AddItemToArray(shape, cli_json_u64(ti->shape[d]));
	cJSON_AddItemToObject(t, "shape", shape);
	cJSON_AddStringToObject(t, "file", short_path(ti->file, path));
	cli_add_u64(t, "parts", parts);
	cli_add_u64(t, "bytes", ti->nbytes);
	if (ti->alias_of)
		cJSON_AddStringToObject(t, "tied_to", ti->alias_of);
	return t;
}

static cJSON *deepspeed_json(const weld_deepspeed_info *ds, const char *path)
{
	cJSON *d = cJSON_CreateObject(), *files = cJSON_CreateArray();
	cJSON_AddStringToObject(d, "tag", ds->tag);
	cJSON_AddStringToObject(d, "tag_dir", short_path(ds->tag_dir, path));
	cJSON_AddNumberToObject(d, "zero_stage", ds->zero_stage);
	cJSON_AddNumberToObject(d, "world_size", ds->world_size);
	cJSON_AddBoolToObject(d, "bf16_files", ds->bf16_files);
	cJSON_AddBoolToObject(d, "bf16_optimizer", ds->bf16_optimizer);
	if (ds->ds_version)
		cJSON_AddStringToObject(d, "ds_version", ds->ds_version);
	for (size_t i = 0; i < ds->nfiles; i++)
		cJSON_AddItemToArray(files, cJSON_CreateString(short_path(ds->files[i], path)));
	cJSON_AddItemToObject(d, "files", files);
	return d;
}

static int print_json(const weld_ckpt *c, const char *path)
{
	cJSON *o = cJSON_CreateObject(), *files = cJSON_CreateArray(), *tensors = cJSON_CreateArray();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddStringToObject(o, "format", weld_format_name(weld_ckpt_format(c)));
	for (size_t i = 0; i < weld_ckpt_file_count(c); i++)
		cJSON_AddItemToArray(files, cJSON_CreateString(short_path(weld_ckpt_file(c, i), path)));
	cJSON_AddItemToObject(o, "files", files);
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		cJSON_AddItemToArray(tensors, tensor_json(&ti, weld_ckpt_tensor_parts(c, i), path));
	}
	cJSON_AddItemToObject(o, "tensors", tensors);
	totals tot = sum(c);
	cli_add_u64(o, "tensor_count", tot.tensors);
	cli_add_u64(o, "tied_count", tot.aliases);
	cli_add_u64(o, "parameters", tot.params);
	cli_add_u64(o, "bytes", tot.bytes);
	const weld_deepspeed_info *ds = weld_ckpt_deepspeed(c);
	if (ds)
		cJSON_AddItemToObject(o, "deepspeed", deepspeed_json(ds, path));
	if (weld_ckpt_choice_note(c))
		cJSON_AddStringToObject(o, "choice", weld_ckpt_choice_note(c));
	return cli_print_json(o);
}

static int print_table(const weld_ckpt *c, const char *path)
{
	printf("%s: %s, %zu file%s\n", path, weld_format_name(weld_ckpt_format(c)), weld_ckpt_file_count(c),
	       weld_ckpt_file_count(c) == 1 ? "" : "s");
	const weld_deepspeed_info *ds = weld_ckpt_deepspeed(c);
	if (ds) {
		printf("deepspeed: tag %s, ZeRO stage %d, world size %d%s%s%s%s\n", ds->tag, ds->zero_stage,
		       ds->world_size, ds->bf16_files ? ", bf16_* optimizer files" : "",
		       ds->bf16_optimizer ? ", BF16_Optimizer" : "",
		       ds->ds_version ? ", version " : "", ds->ds_version ? ds->ds_version : "");
		for (size_t i = 0; i < ds->nfiles; i++)
			printf("  %s\n", short_path(ds->files[i], path));
	}
	if (weld_ckpt_choice_note(c))
		printf("note: %s\n", weld_ckpt_choice_note(c));
	size_t wname = 4;
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		weld_ckpt_tensor(c, i, &ti);
		size_t n = strlen(ti.name);
		wname = n > wname ? n : wname;
	}
	printf("%-*s  %-7s %-18s %s\n", (int)wname, "NAME", "DTYPE", "SHAPE", "FILE");
	for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
		weld_tensor_info ti;
		char shape[512];
		weld_ckpt_tensor(c, i, &ti);
		shape_str(shape, sizeof(shape), &ti);
		printf("%-*s  %-7s %-18s %s", (int)wname, ti.name, weld_dtype_name(ti.dtype), shape,
		       short_path(ti.file, path));
		size_t parts = weld_ckpt_tensor_parts(c, i);
		if (ti.alias_of)
			printf("  (tied to %s)", ti.alias_of);
		else if (parts > 1)
			printf("  (data in %zu files)", parts);
		putchar('\n');
	}
	totals tot = sum(c);
	printf("%zu tensors", tot.tensors);
	if (tot.aliases)
		printf(" (%zu tied)", tot.aliases);
	printf(", %" PRIu64 " parameters, %" PRIu64 " bytes\n", tot.params, tot.bytes);
	return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
	bool json = false;
	const cli_opt opts[] = {{"json", &json, NULL}, {NULL, NULL, NULL}};
	const cli_command cmd = {"inspect", inspect_usage, opts, "PATH"};
	const char *path = NULL;
	cli_repeated allow = {.name = "allow-global"};
	int nrest = cli_take_repeated("inspect", argc, argv, &allow);
	if (nrest < 0)
		return EXIT_USAGE;
	int rc = cli_parse(&cmd, nrest, argv, &path);
	if (rc != CLI_PARSED)
		return rc;
	weld_error err = {0};
	weld_ckpt *c;
	weld_open_options oo = WELD_OPEN_OPTIONS_INIT;
	oo.allow_globals = allow.items;
	oo.nallow_globals = allow.n;
	if (weld_ckpt_open_with(&c, path, &oo, &err))
		return cli_fail(&err);
	/* What convert would refuse before reading data, inspect refuses too. */
	if (weld_ckpt_check(c, &err)) {
		weld_ckpt_free(c);
		return cli_fail(&err);
	}
	rc = json ? print_json(c, path) : print_table(c, path);
	weld_ckpt_free(c);
	return rc;
}
