/*
 * weld batch: every checkpoint of a training run, as one command, a Slurm
 * array job (one checkpoint per task) or a job step. Checkpoints are found
 * in RUN (runs.c: HF Trainer checkpoint-N folders, DeepSpeed global_stepN
 * tags, plain HF folders), sorted by step; each goes to OUT/<NAME>_step_<N>/
 * (OUT/<NAME>_<FOLDER>/ without a step), and two that would go to one folder
 * stop the batch before anything is written.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char batch_usage[] =
	"usage: weld batch --input-dir RUN --output-dir OUT [options] [convert's options]\n"
	"\n"
	"Convert the checkpoints of a training run: HF Trainer checkpoint-N folders,\n"
	"DeepSpeed global_stepN tags, or plain HF model folders found in RUN.\n"
	"\n"
	"A folder's name gives a step only when it is checkpoint-N, global_stepN,\n"
	"step_N, step-N or iter_N, N all digits (iter_0000100 is step 100); that\n"
	"checkpoint goes to OUT/NAME_step_N/, any other folder F (sft-v1) to\n"
	"OUT/NAME_F/. They are taken by step, those without one last by name.\n"
	"Checkpoints that would share an output folder (checkpoint-100 and\n"
	"global_step100) are refused before anything is written, --force or not\n"
	"(exit 2). One failing checkpoint does not stop the others; the results\n"
	"table (on stderr) and the exit code say which.\n"
	"\n"
	"  --input-dir RUN            the run's folder\n"
	"  --output-dir OUT           where the outputs go\n"
	"  --latest                   only the newest checkpoint, the highest step (default)\n"
	"  --all-checkpoints          every checkpoint\n"
	"  --checkpoint-filter GLOB   only checkpoints whose folder name matches (repeatable)\n"
	"  --name NAME                output name prefix (default: RUN's folder name)\n"
	"  --dry-run                  print the plan, write nothing: a table of INDEX, NAME,\n"
	"                             STEP, TYPE, OUTPUT, bytes to READ and WRITE, and totals\n"
	"  --count                    with --dry-run: print only how many checkpoints there are\n"
	"  --skip-existing            skip checkpoints whose output verifies against its weld.json\n"
	"                             and was made from them (not another run's of the same name);\n"
	"                             redo (replace) any other output of theirs, saying why\n"
	"  --array-index I            convert only checkpoint I, the plan's INDEX\n"
	"                             (default $SLURM_ARRAY_TASK_ID)\n"
	"  --quiet                    only errors and the results table: no start line,\n"
	"                             progress, summary or note of each checkpoint\n"
	"  --json                     the plan or the results as one JSON object on stdout\n"
	"  --help                     this help\n"
	"\n"
	"convert's options (see weld convert --help): --pytorch-bin, --safetensors, --max-shard-size,\n"
	"--device, --type, --cross-check, --threads, --chunk-bytes, --force, --allow-global,\n"
	"--side-files, and\n" CLI_DTYPE_HELP CLI_EXIT_CODES_HELP;

/* The command line of one batch run. */
typedef struct batch_args {
	bool all, latest, dry, count, skip, quiet, json;
	const char *run, *outdir, *name, *index;
	cli_repeated filters, allow;
	weld_convert_options convert;
} batch_args;

/* The command line into B: CLI_PARSED, or the exit code after --help or an error. */
static int parse_args(int argc, char **argv, batch_args *b)
{
	b->filters.name = "checkpoint-filter";
	b->allow.name = "allow-global";
	int nrest = cli_take_repeated("batch", argc, argv, &b->filters);
	if (nrest >= 0)
		nrest = cli_take_repeated("batch", nrest, argv, &b->allow);
	if (nrest < 0)
		return EXIT_USAGE;
	cli_convert_args a = CLI_CONVERT_ARGS_INIT;
	const cli_opt opts[] = {{"input-dir", NULL, &b->run},     {"output-dir", NULL, &b->outdir},
				{"name", NULL, &b->name},         {"array-index", NULL, &b->index},
				{"all-checkpoints", &b->all, NULL}, {"latest", &b->latest, NULL},
				{"dry-run", &b->dry, NULL},       {"count", &b->count, NULL},
				{"skip-existing", &b->skip, NULL}, {"quiet", &b->quiet, NULL},
				{"json", &b->json, NULL},         CLI_CONVERT_OPTS(a),
				{NULL, NULL, NULL}};
	const cli_command cmd = {"batch", batch_usage, opts, NULL};
	int rc = cli_parse(&cmd, nrest, argv, NULL);
	if (rc != CLI_PARSED)
		return rc;
	if (!b->run || (!b->outdir && !(b->dry && b->count)))
		return cli_usage_error("batch", "needs --input-dir RUN and --output-dir OUT");
	if (b->all && b->latest)
		return cli_usage_error("batch", "--all-checkpoints and --latest exclude each other");
	if (b->count && !b->dry)
		return cli_usage_error("batch", "--count goes with --dry-run");
	if (b->count && b->json)
		return cli_usage_error("batch", "--count and --json exclude each other");
	if ((rc = cli_convert_options("batch", &a, &b->convert)))
		return rc;
	b->convert.allow_globals = b->allow.items;
	b->convert.nallow_globals = b->allow.n;
	return CLI_PARSED;
}

/*
 * A Slurm array task converts just its own checkpoint: narrows the *N
 * checkpoints from *FIRST to the one the task index names. 0, or the exit
 * code after a message.
 */
static int apply_array_index(const batch_args *b, size_t *first, size_t *n)
{
	const char *task = b->index ? b->index : getenv("SLURM_ARRAY_TASK_ID");
	if (!task)
		return 0;
	long v;
	if (cli_parse_count(task, 0, 1L << 30, &v) || (size_t)v >= *n) {
		fprintf(stderr, "weld: error: array index %s is out of range: %zu checkpoint%s\n", task, *n,
			*n == 1 ? "" : "s");
		return b->index ? EXIT_USAGE : EXIT_FAILED;
	}
	*first += (size_t)v;
	*n = 1;
	return 0;
}

/* What became of one checkpoint; INTERRUPTED (by SIGINT/SIGTERM) ends the run. */
typedef enum { PLANNED, DONE, SKIPPED, FAILED, REFUSED, INTERRUPTED } outcome;
static const char *const outcome_words[] = {"planned", "done", "skipped", "failed", "refused"};

/* One checkpoint of the selection: where it goes and what became of it. */
typedef struct batch_row {
	const ckpt_entry *c;
	size_t index;       /* its place in the selection: what --array-index takes */
	char out[4096];     /* its output folder */
	const char *type;   /* its format's name; NULL when not read (skipped, or it does not open) */
	outcome result;
	bool clash;         /* another checkpoint of the selection has the same output */
	double secs;
	weld_convert_result r;
	char *error;        /* why it failed; NULL when it did not, or no memory was left for it */
} batch_row;

/* Whether W has the byte counts of a plan or a conversion (a skipped one read only to verify). */
static bool sized(const batch_row *w)
{
	return w->result == PLANNED || w->result == DONE;
}

/* The rows of the N selected checkpoints from C; 0, or EXIT_FAILED after a message. */
static int fill_rows(const batch_args *b, const ckpt_entry *c, size_t n, batch_row *rows)
{
	for (size_t k = 0; k < n; k++) {
		rows[k].c = &c[k];
		rows[k].index = k;
		if (cli_output_path(rows[k].out, sizeof(rows[k].out), b->outdir, b->name, &c[k])) {
			fprintf(stderr, "weld: error: %s: its output path is too long\n", c[k].base);
			return EXIT_FAILED;
		}
	}
	return 0;
}

static int cmp_output(const void *a, const void *b)
{
	const batch_row *x = *(const batch_row *const *)a, *y = *(const batch_row *const *)b;
	int c = strcmp(x->out, y->out);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* How many rows from ORDER[K] on (ORDER sorted by output) have ORDER[K]'s output. */
static size_t group_len(batch_row *const *order, size_t n, size_t k)
{
	size_t m = 1;
	while (k + m < n && strcmp(order[k]->out, order[k + m]->out) == 0)
		m++;
	return m;
}

/*
 * Marks the N rows whose output another has too, and returns how many. The
 * whole selection is checked, before --array-index narrows it, so every
 * array task refuses alike instead of two racing for one folder. ORDER gets
 * the rows sorted by output, each clash's rows together.
 */
static size_t mark_clashes(batch_row *rows, size_t n, batch_row **order)
{
	for (size_t k = 0; k < n; k++)
		order[k] = &rows[k];
	qsort(order, n, sizeof(*order), cmp_output);
	size_t marked = 0;
	for (size_t k = 0, m; k < n; k += m) {
		m = group_len(order, n, k);
		for (size_t i = 0; m > 1 && i < m; i++)
			order[k + i]->clash = true;
		marked += m > 1 ? m : 0;
	}
	return marked;
}

/* The clash error on stderr: each shared output with the checkpoints that map to it. EXIT_USAGE. */
static int print_clashes(batch_row *const *order, size_t n)
{
	fputs("weld: error: checkpoints would share an output folder, so none is converted (--force or not); "
	      "rename one or leave it out with --checkpoint-filter:\n",
	      stderr);
	for (size_t k = 0, m; k < n; k += m) {
		if ((m = group_len(order, n, k)) < 2)
			continue;
		fprintf(stderr, "  %s: %s", order[k]->out, order[k]->c->base);
		for (size_t i = 1; i < m; i++)
			fprintf(stderr, ", %s", order[k + i]->c->base);
		fputc('\n', stderr);
	}
	return EXIT_USAGE;
}

/* W failed with ERR: said on stderr, kept for the JSON report. */
static outcome fail_row(batch_row *w, const weld_error *err)
{
	fprintf(stderr, "%s: error: %s\n", w->c->base, cli_error_text(err));
	w->error = strdup(cli_error_text(err));
	return FAILED;
}

/* Convert (or plan) W's checkpoint, filling W. */
static outcome convert_one(const batch_args *b, batch_row *w)
{
	const char *label = w->c->base;
	weld_error err = {0};
	if (cli_signal())
		return INTERRUPTED;
	double t0 = cli_wall();
	if (b->skip && !b->dry && cli_output_verifies(w->c, w->out, b->quiet)) {
		w->secs = cli_wall() - t0;
		if (!b->quiet)
			fprintf(stderr, "%s: skipped: %s verifies\n", label, w->out);
		return SKIPPED;
	}
	weld_convert_options co = b->convert;
	/* An output of this batch that does not verify (a killed run's, a damaged one) is redone whole. */
	co.replace = b->skip;
	co.dry_run = b->dry;
	weld_status s = cli_convert_logged(w->c, w->out, &co, b->quiet, &w->r, &err);
	w->secs = cli_wall() - t0;
	/* Set once the checkpoint is read, before anything is written: a late failure keeps it. */
	w->type = w->r.format[0] ? w->r.format : NULL;
	if (s == WELD_ERR_CANCELLED || (s && cli_signal()))
		return INTERRUPTED;
	if (s)
		return fail_row(w, &err);
	return b->dry ? PLANNED : DONE;
}

/*
 * The tables' columns: the dry run's plan, and the results of a real run.
 * Each ends with its NOTE, shown when some row has one: the plan's says
 * what stops a checkpoint (a clash, a failure), the results' what a
 * conversion found that its RESULT does not (a 16-bit copy that differs).
 */
enum {
	COL_INDEX, COL_NAME, COL_STEP, COL_TYPE, COL_OUTPUT, COL_READ, COL_WRITE, COL_RESULT, COL_SECONDS, COL_NOTE,
	COL_FOUND, COL_COUNT
};
static const struct {
	const char *head;
	bool right; /* numbers: aligned right */
} columns[] = {{"INDEX", true}, {"NAME", false},   {"STEP", true},    {"TYPE", false}, {"OUTPUT", false}, {"READ", true},
	       {"WRITE", true}, {"RESULT", false}, {"SECONDS", true}, {"NOTE", false}, {"NOTE", false}};
static const int plan_cols[] = {COL_INDEX, COL_NAME, COL_STEP, COL_TYPE, COL_OUTPUT, COL_READ, COL_WRITE, COL_NOTE};
static const int result_cols[] = {COL_INDEX, COL_NAME, COL_STEP, COL_TYPE, COL_OUTPUT, COL_RESULT, COL_SECONDS, COL_FOUND};

/* A cell's room: the longest is the cross-check's note with a tensor's name. */
#define CELL_MAX (sizeof(((weld_cross_check *)0)->first_difference) + 64)

/* What the table shows of W in column COL; BUF (CAP bytes) holds it when it is made here. */
static const char *cell(const batch_row *w, int col, char *buf, size_t cap)
{
	switch (col) {
	case COL_INDEX:
		snprintf(buf, cap, "%zu", w->index);
		return buf;
	case COL_NAME:
		return w->c->base;
	case COL_STEP:
		if (w->c->step < 0)
			return "-";
		snprintf(buf, cap, "%ld", w->c->step);
		return buf;
	case COL_TYPE:
		return w->type ? w->type : "-";
	case COL_OUTPUT:
		return w->out;
	case COL_READ:
	case COL_WRITE:
		return sized(w) ? cli_human(buf, cap, col == COL_READ ? w->r.bytes_read : w->r.bytes_written) : "-";
	case COL_RESULT:
		return w->result == FAILED ? "FAILED" : outcome_words[w->result];
	case COL_SECONDS:
		snprintf(buf, cap, "%.2f", w->secs);
		return buf;
	case COL_NOTE:
		return w->clash ? (w->result == FAILED ? "CLASH, FAILED" : "CLASH") : w->result == FAILED ? "FAILED" : "";
	default: /* COL_FOUND */
		if (w->result != DONE || w->r.cross_check.result != WELD_CROSS_CHECK_DIFFER)
			return "";
		snprintf(buf, cap, "cross-check: differs (first: %s)", w->r.cross_check.first_difference);
		return buf;
	}
}

/* One line of the table: W's cells (the header when W is NULL), WIDTH wide but for the last. */
static void print_line(FILE *f, const int *cols, size_t ncols, const int *width, const batch_row *w)
{
	for (size_t j = 0; j < ncols; j++) {
		char buf[CELL_MAX];
		const char *s = w ? cell(w, cols[j], buf, sizeof(buf)) : columns[cols[j]].head;
		bool right = columns[cols[j]].right, last = j + 1 == ncols;
		if (last && !*s)
			break;
		fprintf(f, right ? "%s%*s" : "%s%-*s", j ? "  " : "", last && !right ? 0 : width[j], s);
	}
	fputc('\n', f);
}

/* What the N rows add up to: bytes planned or converted, and failures. */
typedef struct batch_totals {
	uint64_t read, written;
	int failed;
} batch_totals;

static batch_totals sum_rows(const batch_row *rows, size_t n)
{
	batch_totals t = {0, 0, 0};
	for (size_t k = 0; k < n; k++) {
		t.read += sized(&rows[k]) ? rows[k].r.bytes_read : 0;
		t.written += sized(&rows[k]) ? rows[k].r.bytes_written : 0;
		t.failed += rows[k].result == FAILED;
	}
	return t;
}

/*
 * The N rows as a table on F, each column as wide as its widest cell, then
 * the totals. The NOTE column only when some row has a note.
 */
static void print_table(FILE *f, const batch_row *rows, size_t n, bool plan)
{
	const int *cols = plan ? plan_cols : result_cols;
	size_t ncols = (plan ? sizeof(plan_cols) / sizeof(plan_cols[0]) : sizeof(result_cols) / sizeof(result_cols[0])) - 1;
	int width[COL_COUNT];
	batch_totals t = sum_rows(rows, n);
	bool notes = false;
	for (size_t k = 0; k < n && !notes; k++) {
		char buf[CELL_MAX];
		notes = *cell(&rows[k], cols[ncols], buf, sizeof(buf)) != '\0';
	}
	ncols += notes;
	for (size_t j = 0; j < ncols; j++) {
		width[j] = (int)strlen(columns[cols[j]].head);
		for (size_t k = 0; k < n; k++) {
			char buf[CELL_MAX];
			int len = (int)strlen(cell(&rows[k], cols[j], buf, sizeof(buf)));
			width[j] = len > width[j] ? len : width[j];
		}
	}
	print_line(f, cols, ncols, width, NULL);
	for (size_t k = 0; k < n; k++)
		print_line(f, cols, ncols, width, &rows[k]);
	char rd[32], wr[32];
	fprintf(f, "weld batch: %zu checkpoint%s, %s %s, %s %s, %d failed\n", n, n == 1 ? "" : "s",
		cli_human(rd, sizeof(rd), t.read), plan ? "to read" : "read", cli_human(wr, sizeof(wr), t.written),
		plan ? "to write" : "written", t.failed);
}

/* W as JSON: the table's fields, what became of it, and why it failed or what it wrote. */
static cJSON *row_json(const batch_row *w)
{
	cJSON *o = cJSON_CreateObject();
	cli_add_u64(o, "index", w->index);
	cJSON_AddStringToObject(o, "name", w->c->base);
	cJSON_AddItemToObject(o, "step", w->c->step >= 0 ? cli_json_u64((uint64_t)w->c->step) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "type", w->type ? cJSON_CreateString(w->type) : cJSON_CreateNull());
	cJSON_AddStringToObject(o, "output", w->out);
	cli_add_u64(o, "bytes_read", sized(w) ? w->r.bytes_read : 0);
	cli_add_u64(o, "bytes_written", sized(w) ? w->r.bytes_written : 0);
	cJSON_AddStringToObject(o, "result", outcome_words[w->result]);
	cJSON_AddNumberToObject(o, "seconds", w->secs);
	cJSON_AddBoolToObject(o, "clash", w->clash);
	if (w->result == FAILED)
		cJSON_AddStringToObject(o, "error", w->error ? w->error : "out of memory");
	if (w->result == DONE) {
		cli_add_u64(o, "tensors", w->r.tensors);
		cli_add_u64(o, "crc32", w->r.file_crc32);
		cJSON_AddStringToObject(o, "backend", w->r.backend);
		/* What convert --json says of the same run, under its names: a batch is read by the same scripts. */
		cli_add_u64(o, "tied", w->r.tied);
		cli_add_u64(o, "fp16_overflows", w->r.fp16_overflows);
		cli_add_u64(o, "bytes_to_read", w->r.bytes_to_read);
		cJSON_AddStringToObject(o, "format_detail", w->r.format_detail);
		cJSON_AddStringToObject(o, "weights", w->r.output_file);
		cJSON_AddStringToObject(o, "notice", w->r.notice);
		cJSON_AddStringToObject(o, "source_choice", w->r.source_choice);
		cJSON_AddItemToObject(o, "cross_check", cli_cross_check_json(&w->r.cross_check));
	}
	return o;
}

/* Each output two or more of the N rows in ORDER share, with their names, as a JSON array. */
static cJSON *clashes_json(batch_row *const *order, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t k = 0, m; k < n; k += m) {
		if ((m = group_len(order, n, k)) < 2)
			continue;
		cJSON *o = cJSON_CreateObject(), *names = cJSON_CreateArray();
		for (size_t i = 0; i < m; i++)
			cJSON_AddItemToArray(names, cJSON_CreateString(order[k + i]->c->base));
		cJSON_AddStringToObject(o, "output", order[k]->out);
		cJSON_AddItemToObject(o, "checkpoints", names);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/*
 * --json: the run, the N ROWS it reports, the clashes among the NALL rows in
 * ORDER, and the totals, as one object on stdout. The exit code of printing.
 */
static int print_json(const batch_args *b, const batch_row *rows, size_t n, batch_row *const *order, size_t nall)
{
	cJSON *o = cJSON_CreateObject(), *list = cJSON_CreateArray(), *totals = cJSON_CreateObject();
	batch_totals t = sum_rows(rows, n);
	cJSON_AddStringToObject(o, "run", b->run);
	cJSON_AddStringToObject(o, "name", b->name);
	cJSON_AddStringToObject(o, "output_dir", b->outdir);
	cJSON_AddBoolToObject(o, "dry_run", b->dry);
	for (size_t k = 0; k < n; k++)
		cJSON_AddItemToArray(list, row_json(&rows[k]));
	cJSON_AddItemToObject(o, "checkpoints", list);
	cJSON_AddItemToObject(o, "clashes", clashes_json(order, nall));
	cli_add_u64(totals, "count", n);
	cli_add_u64(totals, "bytes_read", t.read);
	cli_add_u64(totals, "bytes_written", t.written);
	cJSON_AddNumberToObject(totals, "failed", t.failed);
	cJSON_AddItemToObject(o, "totals", totals);
	return cli_print_json(o);
}

/* Convert (or plan) the N rows in turn; 0, or the exit code after a signal. */
static int convert_all(const batch_args *b, batch_row *rows, size_t n)
{
	cli_install_signals();
	for (size_t k = 0; k < n; k++) {
		rows[k].result = convert_one(b, &rows[k]);
		if (rows[k].result == INTERRUPTED)
			return cli_signal_exit();
	}
	return 0;
}

/*
 * The N selected rows, ORDER sorted by output, CLASHING of them sharing one:
 * counted, or refused when they clash, or else converted or planned (only
 * the one the array index names, if any), and reported. The exit code.
 */
static int run_rows(const batch_args *b, batch_row *rows, size_t n, batch_row *const *order, size_t clashing)
{
	/* Before anything is written; a count would size an array job of tasks that all fail. */
	if (clashing && (!b->dry || b->count)) {
		for (size_t k = 0; k < n; k++)
			rows[k].result = REFUSED;
		/* The clash sets the exit code, even when the object could not be printed. */
		if (b->json)
			print_json(b, rows, n, order, n);
		return print_clashes(order, n);
	}
	if (b->count) {
		printf("%zu\n", n);
		return EXIT_OK;
	}
	size_t first = 0, all = n;
	int rc = clashing ? 0 : apply_array_index(b, &first, &n);
	if (rc || (rc = convert_all(b, rows + first, n)))
		return rc;
	/* The plan is the dry run's result; a real run's table is a log, like its progress. */
	if (b->json)
		rc = print_json(b, rows + first, n, order, all);
	else
		print_table(b->dry ? stdout : stderr, rows + first, n, b->dry);
	if (clashing)
		return print_clashes(order, n);
	return rc ? rc : sum_rows(rows + first, n).failed ? EXIT_FAILED : EXIT_OK;
}

/*
 * The part of the N sorted checkpoints this run is for, from *FIRST on: all
 * with --all-checkpoints; else the newest: those of the highest step (two of
 * one step are a clash to refuse, not one to pick by its name), or in a run
 * without steps its last folder by name (those sort last). How many.
 */
static size_t select_newest(const batch_args *b, const ckpt_entry *list, size_t n, size_t *first)
{
	*first = 0;
	if (b->all || n == 0)
		return n;
	size_t end = 0;
	while (end < n && list[end].step >= 0)
		end++;
	if (end == 0) {
		*first = n - 1;
		return 1;
	}
	size_t k = end - 1;
	while (k > 0 && list[k - 1].step == list[end - 1].step)
		k--;
	*first = k;
	return end - k;
}

/*
 * No checkpoint in RUN: a count of 0, or an error. A Megatron-LM run or a
 * PyTorch DCP holds no folder taken for a checkpoint, yet "no checkpoints
 * found" would hide what it is: the run itself, opened, names its format
 * (and an array sized by a count of 0 would convert nothing). The exit code.
 */
static int none_found(const batch_args *b)
{
	weld_ckpt *c = NULL;
	weld_error err = {0};
	weld_status s = weld_ckpt_open(&c, b->run, &err);
	weld_ckpt_free(c);
	if (s == WELD_ERR_UNSUPPORTED)
		return cli_fail(&err);
	if (s == WELD_ERR_NOMEM)
		return cli_oom();
	if (b->count) {
		printf("0\n");
		return EXIT_OK;
	}
	fprintf(stderr, "weld: error: %s: no checkpoints found%s\n", b->run, b->filters.n ? " matching the filters" : "");
	return EXIT_FAILED;
}

/* Of the N checkpoints found, count or convert those this run is for; the exit code. */
static int run_selected(batch_args *b, const ckpt_entry *list, size_t n)
{
	size_t first, selected = select_newest(b, list, n, &first);
	if (selected == 0)
		return none_found(b);
	char name[1024];
	if (!b->name)
		b->name = cli_run_name(b->run, name, sizeof(name));
	batch_row *rows = calloc(selected, sizeof(*rows));
	batch_row **order = calloc(selected, sizeof(*order));
	int rc = rows && order ? fill_rows(b, list + first, selected, rows) : cli_oom();
	if (!rc)
		rc = run_rows(b, rows, selected, order, mark_clashes(rows, selected, order));
	for (size_t k = 0; rows && k < selected; k++)
		free(rows[k].error);
	free(rows);
	free(order);
	return rc;
}

int cmd_batch(int argc, char **argv)
{
	batch_args b = {0};
	int rc = parse_args(argc, argv, &b);
	if (rc != CLI_PARSED)
		return rc;
	ckpt_entry *list = NULL;
	size_t n = 0;
	if ((rc = cli_find_checkpoints(b.run, b.filters.items, b.filters.n, &list, &n)))
		return rc;
	rc = run_selected(&b, list, n);
	cli_free_checkpoints(list, n);
	return rc;
}
