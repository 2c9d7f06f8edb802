/*
 * weld verify DIR: the library's report printed one line per check (PASS /
 * WARN / FAIL) with a final summary line, or as one JSON object; exit 1 when
 * any check FAILed.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static const char verify_usage[] = "usage: weld verify DIR [--against SOURCE] [--device auto|cpu|cuda] [--json]\n"
				   "\n"
				   "Check that an output folder is intact and servable: its weight files are\n"
				   "valid, their size and CRC-32s match weld.json (recomputed), config.json\n"
				   "names the architecture and the tensors' dtype, there is exactly one weight\n"
				   "format (no stale shards or index, no consolidated*.safetensors), names carry\n"
				   "no 'module.' prefix, tied weights agree with tie_word_embeddings, tokenizer\n"
				   "files are present and the safetensors metadata says \"pt\". One line per\n"
				   "check, PASS / WARN / FAIL, then a summary line.\n"
				   "\n"
				   "  --against SOURCE  also compare with the checkpoint it came from (any input\n"
				   "                    weld reads): same names and shapes, every tensor exactly\n"
				   "                    the source cast to its dtype, per-tensor max abs diff,\n"
				   "                    relative L2 error, NaN and Inf counts; for DeepSpeed ZeRO\n"
				   "                    0-2 also the 16-bit weights DeepSpeed stored\n"
				   "  --device D        where to recompute the CRC-32s: auto (default), cpu, cuda\n"
				   "  --json            print one JSON object on stdout instead\n"
				   "  --help            this help\n"
				   "\n"
				   "exit codes: 0 all checks passed (warnings allowed), 1 a check failed or the\n"
				   "folder could not be read, 2 usage error, 3 --device cuda without a GPU\n";

static void print_text(const weld_verify_report *r)
{
	if (r->ndiffs) {
		size_t w = 6;
		for (size_t i = 0; i < r->ndiffs; i++)
			w = strlen(r->diffs[i].name) > w ? strlen(r->diffs[i].name) : w;
		printf("%-*s  %-5s %-5s %12s %12s %8s %8s  %s\n", (int)w, "TENSOR", "DTYPE", "FROM", "MAX_ABS_DIFF",
		       "REL_L2", "NAN", "INF", "EXACT");
		for (size_t i = 0; i < r->ndiffs; i++) {
			const weld_tensor_diff *d = &r->diffs[i];
			printf("%-*s  %-5s %-5s %12.4g %12.4g %8llu %8llu  %s\n", (int)w, d->name,
			       weld_dtype_name(d->dtype), weld_dtype_name(d->source_dtype), d->max_abs_diff, d->rel_l2,
			       (unsigned long long)d->nan_count, (unsigned long long)d->inf_count,
			       d->exact ? "yes" : "NO");
		}
	}
	/* A fixed column (the longest check name) keeps lines greppable across reports. */
	for (size_t i = 0; i < r->nchecks; i++)
		printf("%s  %-14s  %s\n", weld_check_level_name(r->checks[i].level), r->checks[i].name,
		       r->checks[i].detail);
}

static cJSON *checks_json(const weld_verify_report *r)
{
	cJSON *checks = cJSON_CreateArray();
	for (size_t i = 0; i < r->nchecks; i++) {
		cJSON *c = cJSON_CreateObject();
		cJSON_AddStringToObject(c, "name", r->checks[i].name);
		cJSON_AddStringToObject(c, "level", weld_check_level_name(r->checks[i].level));
		cJSON_AddStringToObject(c, "detail", r->checks[i].detail);
		cJSON_AddItemToArray(checks, c);
	}
	return checks;
}

static cJSON *diffs_json(const weld_verify_report *r)
{
	cJSON *diffs = cJSON_CreateArray();
	for (size_t i = 0; i < r->ndiffs; i++) {
		const weld_tensor_diff *d = &r->diffs[i];
		cJSON *t = cJSON_CreateObject();
		cJSON_AddStringToObject(t, "name", d->name);
		cJSON_AddStringToObject(t, "dtype", weld_dtype_name(d->dtype));
		cJSON_AddStringToObject(t, "source_dtype", weld_dtype_name(d->source_dtype));
		cli_add_u64(t, "numel", d->numel);
		cJSON_AddBoolToObject(t, "exact", d->exact);
		/* cJSON writes NaN and Inf as null. */
		cJSON_AddNumberToObject(t, "max_abs_diff", d->max_abs_diff);
		cJSON_AddNumberToObject(t, "rel_l2", d->rel_l2);
		cli_add_u64(t, "nan", d->nan_count);
		cli_add_u64(t, "inf", d->inf_count);
		cJSON_AddItemToArray(diffs, t);
	}
	return diffs;
}

static int print_json(const weld_verify_report *r, const char *dir, const char *against)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "dir", dir);
	if (against)
		cJSON_AddStringToObject(o, "against", against);
	else
		cJSON_AddNullToObject(o, "against");
	cJSON_AddStringToObject(o, "format", r->format);
	cJSON_AddStringToObject(o, "weights", r->weights_file);
	cli_add_u64(o, "tensors", r->tensors);
	cli_add_u64(o, "tied", r->tied);
	cli_add_u64(o, "parameters", r->parameters);
	cli_add_u64(o, "bytes", r->bytes);
	cJSON_AddStringToObject(o, "device", r->device);
	cJSON_AddStringToObject(o, "notice", r->notice);
	cJSON_AddItemToObject(o, "checks", checks_json(r));
	if (against)
		cJSON_AddItemToObject(o, "tensor_diffs", diffs_json(r));
	cli_add_u64(o, "passed", r->passed);
	cli_add_u64(o, "warnings", r->warnings);
	cli_add_u64(o, "failed", r->failed);
	cJSON_AddBoolToObject(o, "ok", r->failed == 0);
	return cli_print_json(o);
}

int cmd_verify(int argc, char **argv)
{
	bool json = false;
	const char *against = NULL, *device = "auto";
	const cli_opt opts[] = {{"against", NULL, &against}, {"device", NULL, &device}, {"json", &json, NULL},
				{NULL, NULL, NULL}};
	const cli_command cmd = {"verify", verify_usage, opts, "DIR"};
	const char *dir = NULL;
	int rc = cli_parse(&cmd, argc, argv, &dir);
	if (rc != CLI_PARSED)
		return rc;
	weld_device dev;
	if ((rc = cli_parse_device("verify", device, &dev)))
		return rc;

	weld_verify_report *r = NULL;
	weld_error err = {0};
	weld_status s = weld_verify(dir, against, dev, &r, &err);
	if (s)
		return cli_fail_status(s, &err);
	if (json) {
		rc = print_json(r, dir, against);
	} else {
		print_text(r);
		printf("weld verify: %zu checks: %zu passed, %zu warnings, %zu failed\n", r->nchecks, r->passed,
		       r->warnings, r->failed);
	}
	if (!rc && r->failed)
		rc = EXIT_FAILED;
	weld_verify_report_free(r);
	return rc;
}
