/*
 * What the tool says besides results: error and usage messages on stderr,
 * and JSON objects on stdout.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *cli_error_text(const weld_error *err)
{
	return err->message[0] ? err->message : weld_status_str(err->status);
}

int cli_fail(const weld_error *err)
{
	fprintf(stderr, "weld: error: %s\n", cli_error_text(err));
	return EXIT_FAILED;
}

int cli_fail_status(weld_status s, const weld_error *err)
{
	cli_fail(err);
	return s == WELD_ERR_NO_DEVICE ? EXIT_NO_DEVICE : EXIT_FAILED;
}

int cli_oom(void)
{
	fputs("weld: error: out of memory\n", stderr);
	return EXIT_FAILED;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "weld: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'weld %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int cli_print_json(cJSON *o)
{
	/* cJSON_Print of a NULL object (its creation failed) is NULL too. */
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return cli_oom();
	puts(text);
	free(text);
	return EXIT_OK;
}

cJSON *cli_json_u64(uint64_t v)
{
	char text[24];
	snprintf(text, sizeof(text), "%" PRIu64, v);
	return cJSON_CreateRaw(text);
}

bool cli_add_u64(cJSON *o, const char *key, uint64_t v)
{
	cJSON *n = cli_json_u64(v);
	if (n && cJSON_AddItemToObject(o, key, n))
		return true;
	cJSON_Delete(n);
	return false;
}

cJSON *cli_cross_check_json(const weld_cross_check *x)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "result", weld_cross_check_result_name(x->result));
	cJSON_AddStringToObject(o, "against", x->against);
	cli_add_u64(o, "compared", x->compared);
	cli_add_u64(o, "differing", x->differing);
	cli_add_u64(o, "placeholders", x->placeholders);
	cli_add_u64(o, "not_compared", x->not_compared);
	cli_add_u64(o, "missing", x->missing);
	if (x->first_difference[0])
		cJSON_AddStringToObject(o, "first_difference", x->first_difference);
	else
		cJSON_AddNullToObject(o, "first_difference");
	cJSON_AddStringToObject(o, "summary", x->summary);
	return o;
}
