/* weld scan PATH... [--json]: the globals each pickle references, and whether weld's allowlist accepts them. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char scan_usage[] =
	"usage: weld scan PATH... [--json] [--allow-global M.N]...\n"
	"\n"
	"List the globals every pickle in each file references, without loading\n"
	"it (nothing is built or called), and a verdict per file: safe (only data\n"
	"types on weld's allowlist), unsafe (names each other global and its opcode\n"
	"offset) or malformed. A folder is scanned recursively: torch files (zip or\n"
	"legacy), *.pkl, and DCP's .metadata and *.distcp (every chunk archive in\n"
	"them, found through the .metadata). Run it before\n"
	"a torch.load(weights_only=False). Exit 0 only when every file is safe.\n"
	"\n"
	"  --json    print one JSON object on stdout instead of lines\n"
	"  --allow-global M.N\n"
	"            count the class M.N as allowed, as convert --allow-global\n"
	"            accepts it (repeatable)\n"
	"  --help    this help\n" CLI_EXIT_CODES_HELP;

typedef struct scan_state {
	bool json;
	bool all_safe;
	size_t files;
	weld_open_options open;
	cJSON *arr;
} scan_state;

static const char *gname(const weld_scan_global *g, char *buf, size_t cap)
{
	if (!g->module)
		return "<unknown>";
	snprintf(buf, cap, "%s.%s", g->module, g->name);
	return buf;
}

static cJSON *report_json(const weld_scan_report *r)
{
	cJSON *o = cJSON_CreateObject(), *gs = cJSON_CreateArray();
	char buf[1024];
	cJSON_AddStringToObject(o, "path", r->path);
	cJSON_AddStringToObject(o, "verdict", weld_scan_verdict_name(r->verdict));
	cJSON_AddNumberToObject(o, "pickles", (double)r->npickles);
	for (size_t i = 0; i < r->nglobals; i++) {
		const weld_scan_global *g = &r->globals[i];
		cJSON *j = cJSON_CreateObject();
		if (g->module)
			cJSON_AddStringToObject(j, "global", gname(g, buf, sizeof(buf)));
		else
			cJSON_AddNullToObject(j, "global");
		cJSON_AddStringToObject(j, "pickle", g->pickle);
		cJSON_AddNumberToObject(j, "offset", (double)g->offset);
		cJSON_AddBoolToObject(j, "allowed", g->allowed);
		if (g->why)
			cJSON_AddStringToObject(j, "why", g->why);
		cJSON_AddItemToArray(gs, j);
	}
	cJSON_AddItemToObject(o, "globals", gs);
	if (r->problem)
		cJSON_AddStringToObject(o, "problem", r->problem);
	return o;
}

static void report_text(const weld_scan_report *r)
{
	char buf[1024];
	printf("%-9s  %s  (%zu global%s)\n", weld_scan_verdict_name(r->verdict), r->path, r->nglobals,
	       r->nglobals == 1 ? "" : "s");
	for (size_t i = 0; i < r->nglobals; i++) {
		const weld_scan_global *g = &r->globals[i];
		if (g->allowed)
			continue;
		printf("  %s at offset %llu of %s%s%s\n", gname(g, buf, sizeof(buf)), (unsigned long long)g->offset,
		       g->pickle[0] ? g->pickle : "the file", g->why ? ": " : "", g->why ? g->why : "");
	}
	if (r->problem)
		printf("  %s\n", r->problem);
}

static void scan_one(scan_state *st, const char *path)
{
	weld_error err = {0};
	weld_scan_report *r;
	st->files++;
	if (weld_scan_file_with(path, &st->open, &r, &err)) {
		fprintf(stderr, "weld: error: %s\n", cli_error_text(&err));
		st->all_safe = false;
		return;
	}
	if (r->verdict != WELD_SCAN_SAFE)
		st->all_safe = false;
	if (st->json)
		cJSON_AddItemToArray(st->arr, report_json(r));
	else
		report_text(r);
	weld_scan_report_free(r);
}

/* In a folder: torch files (zip or legacy magic), *.pkl, DCP's .metadata and *.distcp. */
static bool wanted(const char *path, const char *name)
{
	size_t n = strlen(name);
	if ((n > 4 && strcmp(name + n - 4, ".pkl") == 0) || (n >= 9 && strcmp(name + n - 9, ".metadata") == 0) ||
	    (n > 7 && strcmp(name + n - 7, ".distcp") == 0))
		return true;
	static const unsigned char legacy[4] = {0x80, 0x02, 0x8a, 0x0a};
	unsigned char head[4] = {0};
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t got = fread(head, 1, 4, f);
	fclose(f);
	return got == 4 && (memcmp(head, "PK\x03\x04", 4) == 0 || memcmp(head, legacy, 4) == 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void scan_path(scan_state *st, const char *path, bool top)
{
	struct stat sb;
	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		if (top || (S_ISREG(sb.st_mode) && wanted(path, strrchr(path, '/') ? strrchr(path, '/') + 1 : path)))
			scan_one(st, path);
		return;
	}
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "weld: error: %s: cannot open the folder\n", path);
		st->all_safe = false;
		return;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			char **nn = realloc(names, cap * sizeof(*names));
			if (!nn)
				break;
			names = nn;
		}
		size_t len = strlen(path) + strlen(e->d_name) + 2;
		if (!(names[n] = malloc(len)))
			break;
		snprintf(names[n++], len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", e->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (lstat(names[i], &sb) == 0 && !S_ISLNK(sb.st_mode))
			scan_path(st, names[i], false);
		free(names[i]);
	}
	free(names);
}

int cmd_scan(int argc, char **argv)
{
	scan_state st = {.all_safe = true, .open = WELD_OPEN_OPTIONS_INIT};
	cli_repeated allow = {.name = "allow-global"};
	argc = cli_take_repeated("scan", argc, argv, &allow);
	if (argc < 0)
		return EXIT_USAGE;
	st.open.allow_globals = allow.items;
	st.open.nallow_globals = allow.n;
	int npaths = 0;
	bool only_paths = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!only_paths && strcmp(a, "--help") == 0) {
			fputs(scan_usage, stdout);
			return EXIT_OK;
		} else if (!only_paths && strcmp(a, "--json") == 0) {
			st.json = true;
		} else if (!only_paths && strcmp(a, "--") == 0) {
			only_paths = true;
		} else if (!only_paths && a[0] == '-' && a[1]) {
			return cli_usage_error("scan", "unknown option '%s'", a);
		} else {
			npaths++;
		}
	}
	if (!npaths)
		return cli_usage_error("scan", "missing PATH");
	if (st.json && !(st.arr = cJSON_CreateArray()))
		return cli_oom();
	only_paths = false;
	for (int i = 1; i < argc; i++) {
		if (!only_paths && strcmp(argv[i], "--") == 0)
			only_paths = true;
		else if (only_paths || argv[i][0] != '-' || !argv[i][1])
			scan_path(&st, argv[i], true);
	}
	if (st.json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddBoolToObject(o, "all_safe", st.all_safe);
		cJSON_AddItemToObject(o, "files", st.arr);
		if (cli_print_json(o) != EXIT_OK)
			return EXIT_FAILED;
	}
	return st.all_safe ? EXIT_OK : EXIT_FAILED;
}
