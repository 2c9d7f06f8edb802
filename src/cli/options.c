/*
 * The command line: the option-table parser, numbers, --device, and the
 * conversion flags convert and batch share, turned into weld_convert_options.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry for "--NAME" (NLEN bytes long), HELP for --help, or NULL. */
static const cli_opt *find_opt(const cli_opt *opts, const char *name, size_t nlen, const cli_opt *help)
{
	for (const cli_opt *p = opts; p->name; p++)
		if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0)
			return p;
	if (strlen(help->name) == nlen && strncmp(help->name, name, nlen) == 0)
		return help;
	return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, const char **arg)
{
	bool help = false, only_positional = false;
	const cli_opt help_opt = {"help", &help, NULL};
	int npos = 0, maxpos = cmd->arg ? 1 : 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (npos == maxpos)
				return cli_usage_error(cmd->name, "unexpected argument '%s'", a);
			*arg = a;
			npos++;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (a[1] != '-')
			return cli_usage_error(cmd->name, "unknown option '%s'", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const cli_opt *o = find_opt(cmd->opts, name, nlen, &help_opt);
		if (!o)
			return cli_usage_error(cmd->name, "unknown option '--%.*s'", (int)nlen, name);
		if (o->flag) {
			if (eq)
				return cli_usage_error(cmd->name, "option '--%s' takes no value", o->name);
			*o->flag = true;
		} else if (eq) {
			*o->value = eq + 1;
		} else if (i + 1 < argc) {
			*o->value = argv[++i];
		} else {
			return cli_usage_error(cmd->name, "option '--%s' needs a value", o->name);
		}
	}
	/* After the whole line: a bad option next to --help is still an error. */
	if (help) {
		fputs(cmd->usage, stdout);
		return EXIT_OK;
	}
	if (npos < maxpos)
		return cli_usage_error(cmd->name, "expects one %s", cmd->arg);
	return CLI_PARSED;
}

int cli_parse_count(const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_device(const char *cmd, const char *s, weld_device *out)
{
	if (strcmp(s, "auto") == 0)
		*out = WELD_DEVICE_AUTO;
	else if (strcmp(s, "cpu") == 0)
		*out = WELD_DEVICE_CPU;
	else if (strcmp(s, "cuda") == 0)
		*out = WELD_DEVICE_CUDA;
	else
		return cli_usage_error(cmd, "--device must be auto, cpu or cuda, not '%s'", s);
	return 0;
}

const char *cli_dtype_word(weld_out_dtype d)
{
	switch (d) {
	case WELD_OUT_BF16: return "bfloat16";
	case WELD_OUT_F16: return "float16";
	case WELD_OUT_F32: return "float32";
	case WELD_OUT_KEEP: break;
	}
	/* Read after "to write as" on the first line: "as stored" made "as as stored". */
	return "stored dtypes";
}

static int parse_dtype(const char *cmd, const char *s, weld_out_dtype *out)
{
	static const struct {
		const char *name;
		weld_out_dtype v;
	} dtypes[] = {{"bfloat16", WELD_OUT_BF16}, {"bf16", WELD_OUT_BF16}, {"float16", WELD_OUT_F16},
		      {"fp16", WELD_OUT_F16},      {"float32", WELD_OUT_F32}, {"fp32", WELD_OUT_F32},
		      {"keep", WELD_OUT_KEEP}};
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
		if (strcmp(s, dtypes[i].name) == 0) {
			*out = dtypes[i].v;
			return 0;
		}
	}
	return cli_usage_error(cmd, "--dtype must be bfloat16, float16, float32 or keep, not '%s'", s);
}

static int parse_type(const char *cmd, const char *s, weld_input_type *out)
{
	if (strcmp(s, "auto") == 0)
		*out = WELD_INPUT_AUTO;
	else if (strcmp(s, "hf") == 0 || strcmp(s, "hf_sharded") == 0)
		*out = WELD_INPUT_HF;
	else if (strcmp(s, "zero") == 0 || strcmp(s, "deepspeed") == 0)
		*out = WELD_INPUT_ZERO;
	else if (strcmp(s, "dcp") == 0 || strcmp(s, "fsdp") == 0)
		*out = WELD_INPUT_DCP;
	else
		return cli_usage_error(cmd, "--type must be auto, hf, zero or dcp, not '%s'", s);
	return 0;
}

static int parse_cross_check(const char *cmd, const char *s, weld_cross_check_mode *out)
{
	if (strcmp(s, "warn") == 0)
		*out = WELD_CROSS_CHECK_WARN;
	else if (strcmp(s, "error") == 0)
		*out = WELD_CROSS_CHECK_ERROR;
	else if (strcmp(s, "off") == 0)
		*out = WELD_CROSS_CHECK_OFF;
	else
		return cli_usage_error(cmd, "--cross-check must be warn, error or off, not '%s'", s);
	return 0;
}

/* --threads N, else $SLURM_CPUS_PER_TASK when it is a valid count, else 0 (all cores). */
static int parse_threads(const char *cmd, const char *s, int *out)
{
	long v;
	const char *slurm = getenv("SLURM_CPUS_PER_TASK");
	if (s) {
		if (cli_parse_count(s, 1, 4096, &v))
			return cli_usage_error(cmd, "--threads must be a number from 1 to 4096");
		*out = (int)v;
	} else if (slurm && cli_parse_count(slurm, 1, 4096, &v) == 0) {
		*out = (int)v;
	}
	return 0;
}

int cli_convert_options(const char *cmd, const cli_convert_args *a, weld_convert_options *o)
{
	*o = (weld_convert_options)WELD_CONVERT_OPTIONS_INIT;
	if (a->pytorch_bin && a->safetensors)
		return cli_usage_error(cmd, "--pytorch-bin and --safetensors exclude each other");
	int rc;
	if ((rc = parse_dtype(cmd, a->dtype, &o->dtype)) || (rc = cli_parse_device(cmd, a->device, &o->device)) ||
	    (rc = parse_type(cmd, a->type, &o->type)) || (rc = parse_threads(cmd, a->threads, &o->threads)) ||
	    (rc = parse_cross_check(cmd, a->cross_check, &o->cross_check)))
		return rc;
	if (a->chunk) {
		long v;
		if (cli_parse_count(a->chunk, 4096, 1L << 30, &v))
			return cli_usage_error(cmd, "--chunk-bytes must be from 4096 to 1073741824");
		o->chunk_bytes = (size_t)v;
	}
	o->pytorch_bin = a->pytorch_bin;
	o->force = a->force;
	o->side_files = a->side_files;
	if (a->max_shard_size) {
		/* The library's own parse, so that a bad SIZE is a usage error before anything is opened. */
		int64_t bytes;
		weld_error e;
		if (weld_shard_size_parse(a->max_shard_size, &bytes, &e))
			return cli_usage_error(cmd, "--max-shard-size: %s", e.message);
		if (a->pytorch_bin)
			return cli_usage_error(cmd, "--max-shard-size shards safetensors only: transformers 5.24 writes no "
						    "sharded pytorch_model.bin to match");
		o->max_shard_size = a->max_shard_size;
	}
	return 0;
}

int cli_take_repeated(const char *cmd, int argc, char **argv, cli_repeated *r)
{
	size_t len = strlen(r->name);
	int nrest = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		bool ours = strncmp(a, "--", 2) == 0 && strncmp(a + 2, r->name, len) == 0;
		if (ours && a[2 + len] == '\0' && i + 1 < argc)
			v = argv[++i];
		else if (ours && a[2 + len] == '=')
			v = a + 3 + len;
		else
			argv[nrest++] = argv[i];
		if (v && r->n == CLI_REPEATED_MAX) {
			cli_usage_error(cmd, "at most %d --%s options", CLI_REPEATED_MAX, r->name);
			return -1;
		}
		if (v)
			r->items[r->n++] = v;
	}
	return nrest;
}
