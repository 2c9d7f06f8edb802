/*
 * weld batch: every checkpoint of a training run, as one command, a Slurm
 * array job (one checkpoint per task) or a job step. Checkpoints are found
 * in RUN (runs.c: HF Trainer checkpoint-N folders, DeepSpeed global_stepN
 * tags, plain HF folders), sorted by step; each goes to OUT/<NAME>_step_<N>/.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char batch_usage[] =
	"usage: weld batch --input-dir RUN --output-dir OUT [options] [convert's options]\n"
	"\n"
	"Convert the checkpoints of a training run: HF Trainer checkpoint-N folders,\n"
	"DeepSpeed global_stepN tags, or plain HF model folders found in RUN, sorted\n"
	"by step. Each goes to OUT/NAME_step_N/, a complete output folder. One failing\n"
	"checkpoint does not stop the others; the table and the exit code say which.\n"
	"\n"
	"  --input-dir RUN            the run's folder\n"
	"  --output-dir OUT           where the outputs go\n"
	"  --latest                   only the newest checkpoint (the default)\n"
	"  --all-checkpoints          every checkpoint\n"
	"  --checkpoint-filter GLOB   only checkpoints whose folder name matches (repeatable)\n"
	"  --name NAME                output name prefix (default: RUN's folder name)\n"
	"  --dry-run                  print the plan (type, output, bytes to read and write), write nothing\n"
	"  --count                    with --dry-run: print only how many checkpoints there are\n"
	"  --skip-existing            skip checkpoints whose output verifies against its weld.json;\n"
	"                             redo (replace) any other output of theirs\n"
	"  --array-index I            convert only checkpoint I (0-based; default $SLURM_ARRAY_TASK_ID)\n"
	"  --quiet                    no progress lines\n"
	"  --help                     this help\n"
	"convert's options: --dtype, --pytorch-bin, --safetensors, --device, --type, --threads,\n"
	"--chunk-bytes, --force (see weld convert --help)\n";

/* The command line of one batch run. */
typedef struct batch_args {
	bool all, latest, dry, count, skip, quiet;
	const char *run, *outdir, *name, *index;
	const char *filters[64];
	size_t nfilters;
	weld_convert_options convert;
} batch_args;

/*
 * --checkpoint-filter repeats: collect it into B before the table parse sees
 * it, moving the other arguments down in ARGV (ours to change, C11
 * 5.1.2.2.1). The count of arguments left, or -1 after a usage error.
 */
static int take_filters(int argc, char **argv, batch_args *b)
{
	int nrest = 0;
	for (int i = 0; i < argc; i++) {
		const char *f = NULL;
		if (strcmp(argv[i], "--checkpoint-filter") == 0 && i + 1 < argc)
			f = argv[++i];
		else if (strncmp(argv[i], "--checkpoint-filter=", 20) == 0)
			f = argv[i] + 20;
		else
			argv[nrest++] = argv[i];
		if (f && b->nfilters == sizeof(b->filters) / sizeof(b->filters[0])) {
			cli_usage_error("batch", "at most 64 --checkpoint-filter options");
			return -1;
		}
		if (f)
			b->filters[b->nfilters++] = f;
	}
	return nrest;
}

/* The command line into B: CLI_PARSED, or the exit code after --help or an error. */
static int parse_args(int argc, char **argv, batch_args *b)
{
	int nrest = take_filters(argc, argv, b);
	if (nrest < 0)
		return EXIT_USAGE;
	cli_convert_args a = CLI_CONVERT_ARGS_INIT;
	const cli_opt opts[] = {{"input-dir", NULL, &b->run},     {"output-dir", NULL, &b->outdir},
				{"name", NULL, &b->name},         {"array-index", NULL, &b->index},
				{"all-checkpoints", &b->all, NULL}, {"latest", &b->latest, NULL},
				{"dry-run", &b->dry, NULL},       {"count", &b->count, NULL},
				{"skip-existing", &b->skip, NULL}, {"quiet", &b->quiet, NULL},
				CLI_CONVERT_OPTS(a),              {NULL, NULL, NULL}};
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
	if ((rc = cli_convert_options("batch", &a, &b->convert)))
		return rc;
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

/* RUN's folder name, trailing slashes dropped, in BUF (CAP bytes): the default output name. */
static const char *run_name(const char *run, char *buf, size_t cap)
{
	size_t n = strlen(run);
	while (n > 1 && run[n - 1] == '/')
		n--;
	if ((size_t)snprintf(buf, cap, "%.*s", (int)n, run) >= cap)
		return "run";
	const char *base = strrchr(buf, '/');
	return base ? base + 1 : buf;
}

/* What became of one checkpoint; INTERRUPTED (by SIGINT/SIGTERM) ends the run. */
typedef enum { DONE, SKIPPED, FAILED, PLANNED, INTERRUPTED } outcome;

/* OUT/NAME_step_N, or OUT/NAME_FOLDER for a checkpoint without a step, in BUF; -1 when too long. */
static int output_path(char *buf, size_t cap, const batch_args *b, const ckpt_entry *c)
{
	int len = c->step >= 0 ? snprintf(buf, cap, "%s/%s_step_%ld", b->outdir, b->name, c->step)
			       : snprintf(buf, cap, "%s/%s_%s", b->outdir, b->name, c->base);
	return len < 0 || (size_t)len >= cap ? -1 : 0;
}

static outcome fail_one(const char *label, const weld_error *err)
{
	fprintf(stderr, "%s: error: %s\n", label, cli_error_text(err));
	return FAILED;
}

/* The dry run's line for C: its format, where it would go, what it would read and write. */
static outcome print_plan(const batch_args *b, const ckpt_entry *c, const char *label, const char *out,
			  const weld_convert_result *r)
{
	/* weld_convert just read it, so only running out of memory can make this fail. */
	weld_ckpt *ck = NULL;
	weld_error err = {0};
	if (weld_ckpt_open_as(&ck, c->dir, b->convert.type, &err))
		return fail_one(label, &err);
	char rd[32], wr[32];
	printf("%s: step %ld, %s -> %s: %zu tensors, reads %s, writes %s\n", label, c->step,
	       weld_format_name(weld_ckpt_format(ck)), out, r->tensors, cli_human(rd, sizeof(rd), r->bytes_read),
	       cli_human(wr, sizeof(wr), r->bytes_written));
	weld_ckpt_free(ck);
	return PLANNED;
}

/*
 * Convert (or plan) checkpoint C; *SECS gets the time it took. FIRST: the
 * run's first checkpoint, the one whose notice (why not CUDA) is shown.
 */
static outcome convert_one(const batch_args *b, const ckpt_entry *c, bool first, double *secs)
{
	char out[4096], label[512];
	if (output_path(out, sizeof(out), b, c) || (size_t)snprintf(label, sizeof(label), "%s", c->base) >= sizeof(label)) {
		fprintf(stderr, "%s: error: output path too long\n", c->base);
		return FAILED;
	}
	if (cli_signal())
		return INTERRUPTED;
	if (b->skip && !b->dry && weld_output_intact(out, NULL) == WELD_OK) {
		printf("%s: skipped: %s verifies\n", label, out);
		return SKIPPED;
	}
	cli_progress ps = cli_progress_start(label, b->quiet);
	weld_convert_options co = b->convert;
	/* An output of this batch that does not verify (a killed run's, a damaged one) is redone whole. */
	co.replace = b->skip;
	co.progress = cli_on_progress;
	co.payload = &ps;
	co.dry_run = b->dry;
	weld_convert_result r;
	weld_error err = {0};
	double t0 = cli_wall();
	weld_status s = weld_convert(c->dir, out, &co, &r, &err);
	*secs = cli_wall() - t0;
	if (s == WELD_ERR_CANCELLED || (s && cli_signal()))
		return INTERRUPTED;
	if (s)
		return fail_one(label, &err);
	if (b->dry)
		return print_plan(b, c, label, out, &r);
	if (r.notice[0] && !b->quiet && first)
		fprintf(stderr, "%s: %s\n", label, r.notice);
	cli_print_summary(label, &r, *secs);
	return DONE;
}

typedef struct batch_row {
	outcome result;
	double secs;
} batch_row;

static void print_table(const ckpt_entry *c, const batch_row *rows, size_t n, int failed)
{
	static const char *const words[] = {"done", "skipped", "FAILED", "planned"};
	printf("%-32s %-8s %8s\n", "CHECKPOINT", "RESULT", "SECONDS");
	for (size_t k = 0; k < n; k++)
		printf("%-32s %-8s %8.2f\n", c[k].base, words[rows[k].result], rows[k].secs);
	printf("weld batch: %zu checkpoint%s, %d failed\n", n, n == 1 ? "" : "s", failed);
}

/* Convert the N checkpoints from C in turn, then print the table (not for a dry run); the exit code. */
static int convert_all(const batch_args *b, const ckpt_entry *c, size_t n)
{
	cli_install_signals();
	batch_row *rows = calloc(n, sizeof(*rows));
	if (!rows)
		return cli_oom();
	int failed = 0;
	for (size_t k = 0; k < n; k++) {
		rows[k].result = convert_one(b, &c[k], k == 0, &rows[k].secs);
		if (rows[k].result == INTERRUPTED) {
			free(rows);
			return cli_signal_exit();
		}
		failed += rows[k].result == FAILED;
	}
	if (!b->dry)
		print_table(c, rows, n, failed);
	free(rows);
	return failed ? EXIT_FAILED : EXIT_OK;
}

/* Of the N checkpoints found, count or convert those this run is for; the exit code. */
static int run_selected(batch_args *b, const ckpt_entry *list, size_t n)
{
	/*
	 * Without --all-checkpoints only the newest counts: the highest step, or
	 * in a run without steps the last folder by name (those sort last).
	 */
	size_t nstep = 0;
	while (nstep < n && list[nstep].step >= 0)
		nstep++;
	size_t first = 0, selected = n;
	if (!b->all && n) {
		first = (nstep ? nstep : n) - 1;
		selected = 1;
	}
	if (b->count) {
		printf("%zu\n", selected);
		return EXIT_OK;
	}
	if (selected == 0) {
		fprintf(stderr, "weld: error: %s: no checkpoints found%s\n", b->run,
			b->nfilters ? " matching the filters" : "");
		return EXIT_FAILED;
	}
	int rc = apply_array_index(b, &first, &selected);
	if (rc)
		return rc;
	char name[1024];
	if (!b->name)
		b->name = run_name(b->run, name, sizeof(name));
	return convert_all(b, list + first, selected);
}

int cmd_batch(int argc, char **argv)
{
	batch_args b = {0};
	int rc = parse_args(argc, argv, &b);
	if (rc != CLI_PARSED)
		return rc;
	ckpt_entry *list = NULL;
	size_t n = 0;
	if ((rc = cli_find_checkpoints(b.run, b.filters, b.nfilters, &list, &n)))
		return rc;
	rc = run_selected(&b, list, n);
	cli_free_checkpoints(list, n);
	return rc;
}
