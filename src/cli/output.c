/*
 * What the tool says besides results: error and usage messages on stderr,
 * and JSON objects on stdout.
 */
#include "cli.h"

#include <cjson/cJSON.h>
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

cJSON *cli_cross_check_json(const weld_cross_check *x)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "result", weld_cross_check_result_name(x->result));
	cJSON_AddStringToObject(o, "against", x->against);
	cJSON_AddNumberToObject(o, "compared", (double)x->compared);
	cJSON_AddNumberToObject(o, "differing", (double)x->differing);
	cJSON_AddNumberToObject(o, "placeholders", (double)x->placeholders);
	cJSON_AddNumberToObject(o, "not_compared", (double)x->not_compared);
	cJSON_AddNumberToObject(o, "missing", (double)x->missing);
	if (x->first_difference[0])
		cJSON_AddStringToObject(o, "first_difference", x->first_difference);
	else
		cJSON_AddNullToObject(o, "first_difference");
	cJSON_AddStringToObject(o, "summary", x->summary);
	return o;
}
