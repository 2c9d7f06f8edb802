/*
 * weld convert --dry-run: the plan of one conversion, as a person reads it:
 * what would be read, by kind of file, what would be written, and what the
 * plan itself takes in memory. Nothing is written; the output folder is not
 * even looked at.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>

void cli_print_plan(const weld_convert_result *r, const char *input)
{
	char b[32];
	printf("input  %s (%s%s%s)\n", input, r->format, r->format_detail[0] ? ": " : "", r->format_detail);
	if (r->source_choice[0])
		printf("note   %s\n", r->source_choice);
	size_t wfiles = 5;
	for (size_t i = 0; i < r->nreads; i++) {
		int n = snprintf(b, sizeof(b), "%zu", r->reads[i].files);
		wfiles = (size_t)n > wfiles ? (size_t)n : wfiles;
	}
	printf("%-6s %10s %*s  %s\n", "", "TENSORS", (int)wfiles, "FILES", "KIND OF FILE");
	for (size_t i = 0; i < r->nreads; i++)
		printf("%-6s %10s %*zu  %s%s\n", "read", cli_human(b, sizeof(b), r->reads[i].bytes), (int)wfiles,
		       r->reads[i].files, r->reads[i].pattern, r->reads[i].bytes ? "" : " (headers and pickles only)");
	char tied[64] = "";
	if (r->tied)
		snprintf(tied, sizeof(tied), " (+%zu tied alias%s written once)", r->tied, r->tied == 1 ? "" : "es");
	printf("%-6s %10s %*d  %s: %zu tensors%s\n", "write", cli_human(b, sizeof(b), r->bytes_written), (int)wfiles, 1,
	       r->output_file, r->tensors, tied);
	printf("plan   %s of tables; peak memory %.0f MB so far\n", cli_human(b, sizeof(b), r->plan_bytes),
	       cli_peak_rss_mb());
}

cJSON *cli_reads_json(const weld_convert_result *r)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < r->nreads; i++) {
		cJSON *g = cJSON_CreateObject();
		cJSON_AddStringToObject(g, "kind", r->reads[i].pattern);
		cli_add_u64(g, "files", r->reads[i].files);
		cli_add_u64(g, "bytes", r->reads[i].bytes);
		cJSON_AddItemToArray(a, g);
	}
	return a;
}
