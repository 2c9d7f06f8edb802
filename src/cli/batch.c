/*
 * weld batch: every checkpoint of a training run, as one command, a Slurm
 * array job (one checkpoint per task) or a job step. Checkpoints are found
 * in RUN (HF Trainer checkpoint-N folders, DeepSpeed global_stepN tags, plain
 * HF folders), sorted by step; each goes to OUT/<NAME>_step_<N>/.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	"  --skip-existing            skip checkpoints whose output manifest verifies\n"
	"  --array-index I            convert only checkpoint I (0-based; default $SLURM_ARRAY_TASK_ID)\n"
	"  --quiet                    no progress lines\n"
	"  --help                     this help\n"
	"convert's options: --dtype, --pytorch-bin, --safetensors, --device, --type, --threads,\n"
	"--chunk-bytes, --force (see weld convert --help)\n";

typedef struct ckpt_entry {
	char *dir;  /* input path */
	char *base; /* folder name */
	long step;  /* -1 when the name carries none */
} ckpt_entry;

/* Step from "checkpoint-N", "global_stepN", or a trailing number. */
static long step_of(const char *name)
{
	const char *p = name + strlen(name);
	while (p > name && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return *p ? strtol(p, NULL, 10) : -1;
}

static bool has_weights(const char *dir)
{
	static const char *const names[] = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
					    "pytorch_model.bin.index.json", "latest"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char p[4096];
		struct stat st;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, names[i]) < sizeof(p) && stat(p, &st) == 0)
			return true;
	}
	return false;
}

static bool is_checkpoint_dir(const char *dir, const char *name)
{
	if (strncmp(name, "checkpoint-", 11) == 0 || strncmp(name, "global_step", 11) == 0)
		return true;
	return has_weights(dir);
}

static int cmp_entry(const void *a, const void *b)
{
	const ckpt_entry *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return strcmp(x->base, y->base);
}

static void free_entries(ckpt_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].dir);
		free(e[i].base);
	}
	free(e);
}

/* Appends a copy of DIR and BASE to *LIST; -1 when out of memory (nothing added). */
static int add_entry(ckpt_entry **list, size_t *cnt, const char *dir, const char *base)
{
	ckpt_entry *grown = realloc(*list, (*cnt + 1) * sizeof(**list));
	if (!grown)
		return -1;
	*list = grown;
	ckpt_entry e = {strdup(dir), strdup(base), step_of(base)};
	if (!e.dir || !e.base) {
		free(e.dir);
		free(e.base);
		return -1;
	}
	grown[(*cnt)++] = e;
	return 0;
}

/* Whether NAME passes the filters: 1 yes, 0 no, -1 fnmatch failed (out of memory). */
static int wanted(const char *name, const char *const *filters, size_t nfilters)
{
	for (size_t i = 0; i < nfilters; i++) {
		int m = fnmatch(filters[i], name, 0);
		if (m != 0 && m != FNM_NOMATCH)
			return -1;
		if (m == 0)
			return 1;
	}
	return nfilters == 0;
}

/* The checkpoint folders directly in RUN, filtered, unsorted: 0, or EXIT_FAILED after a message. */
static int scan_run(DIR *d, const char *run, const char *const *filters, size_t nfilters, ckpt_entry **list,
		    size_t *cnt)
{
	struct dirent *e;
	/* readdir says "no more entries" and "failed" both with NULL; errno tells them apart. */
	while ((errno = 0, e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096];
		struct stat st;
		/* A path longer than PATH_MAX could not be opened anyway. */
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", run, e->d_name) >= sizeof(path) || stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !is_checkpoint_dir(path, e->d_name))
			continue;
		int keep = wanted(e->d_name, filters, nfilters);
		if (keep < 0 || (keep && add_entry(list, cnt, path, e->d_name)))
			return cli_oom();
	}
	if (errno) {
		fprintf(stderr, "weld: error: %s: cannot read the run folder: %s\n", run, strerror(errno));
		return EXIT_FAILED;
	}
	return 0;
}

/*
 * The checkpoints in RUN, sorted by step. A DeepSpeed save folder's tags are
 * checkpoints of their own only when no HF Trainer folder wraps them. RUN
 * itself counts when it holds weights and nothing below does. 0, or
 * EXIT_FAILED after a message: never a partial list.
 */
static int find_checkpoints(const char *run, const char *const *filters, size_t nfilters, ckpt_entry **out,
			    size_t *n)
{
	DIR *d = opendir(run);
	if (!d) {
		if (errno == ENOMEM)
			return cli_oom();
		fprintf(stderr, "weld: error: %s: cannot open the run folder\n", run);
		return EXIT_FAILED;
	}
	ckpt_entry *list = NULL;
	size_t cnt = 0;
	int rc = scan_run(d, run, filters, nfilters, &list, &cnt);
	closedir(d);
	if (rc == 0 && cnt == 0 && nfilters == 0 && has_weights(run)) {
		const char *base = strrchr(run, '/');
		base = base && base[1] ? base + 1 : run;
		if (add_entry(&list, &cnt, run, base))
			rc = cli_oom();
	}
	if (rc) {
		free_entries(list, cnt);
		return rc;
	}
	if (cnt > 1)
		qsort(list, cnt, sizeof(*list), cmp_entry);
	*out = list;
	*n = cnt;
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

typedef enum { DONE, SKIPPED, FAILED, PLANNED } outcome;

int cmd_batch(int argc, char **argv)
{
	bool all = false, latest = false, dry = false, count = false, skip = false, quiet = false;
	const char *run = NULL, *outdir = NULL, *name = NULL, *index = NULL;
	const char *filters[64];
	size_t nfilters = 0;
	cli_convert_args a = CLI_CONVERT_ARGS_INIT;
	/*
	 * --checkpoint-filter repeats: collect it before the table parse sees it,
	 * moving the other arguments down in ARGV (ours to change, C11 5.1.2.2.1).
	 */
	int nrest = 0;
	for (int i = 0; i < argc; i++) {
		const char *f = NULL;
		if (strcmp(argv[i], "--checkpoint-filter") == 0 && i + 1 < argc)
			f = argv[++i];
		else if (strncmp(argv[i], "--checkpoint-filter=", 20) == 0)
			f = argv[i] + 20;
		else
			argv[nrest++] = argv[i];
		if (f && nfilters == sizeof(filters) / sizeof(filters[0]))
			return cli_usage_error("batch", "at most 64 --checkpoint-filter options");
		if (f)
			filters[nfilters++] = f;
	}
	const cli_opt opts[] = {{"input-dir", NULL, &run},     {"output-dir", NULL, &outdir}, {"name", NULL, &name},
				{"array-index", NULL, &index}, {"all-checkpoints", &all, NULL}, {"latest", &latest, NULL},
				{"dry-run", &dry, NULL},       {"count", &count, NULL},       {"skip-existing", &skip, NULL},
				{"quiet", &quiet, NULL},       CLI_CONVERT_OPTS(a),           {NULL, NULL, NULL}};
	const cli_command cmd = {"batch", batch_usage, opts, NULL};
	int rc = cli_parse(&cmd, nrest, argv, NULL);
	if (rc != CLI_PARSED)
		return rc;
	if (!run || (!outdir && !(dry && count)))
		return cli_usage_error("batch", "needs --input-dir RUN and --output-dir OUT");
	if (all && latest)
		return cli_usage_error("batch", "--all-checkpoints and --latest exclude each other");
	if (count && !dry)
		return cli_usage_error("batch", "--count goes with --dry-run");
	weld_convert_options o;
	if ((rc = cli_convert_options("batch", &a, &o)))
		return rc;

	ckpt_entry *list = NULL;
	size_t n = 0;
	if ((rc = find_checkpoints(run, filters, nfilters, &list, &n)))
		return rc;
	/* Without --all-checkpoints only the newest counts. */
	size_t first = (!all && n) ? n - 1 : 0;
	size_t selected = n - first;
	if (count) {
		printf("%zu\n", selected);
		free_entries(list, n);
		return EXIT_OK;
	}
	if (selected == 0) {
		fprintf(stderr, "weld: error: %s: no checkpoints found%s\n", run, nfilters ? " matching the filters" : "");
		free_entries(list, n);
		return EXIT_FAILED;
	}
	/* A Slurm array task converts just its own checkpoint. */
	const char *task = index ? index : getenv("SLURM_ARRAY_TASK_ID");
	if (task) {
		long v;
		if (cli_parse_count(task, 0, 1L << 30, &v) || (size_t)v >= selected) {
			fprintf(stderr, "weld: error: array index %s is out of range: %zu checkpoint%s\n", task, selected,
				selected == 1 ? "" : "s");
			free_entries(list, n);
			return index ? EXIT_USAGE : EXIT_FAILED;
		}
		first += (size_t)v;
		selected = 1;
	}
	char namebuf[1024];
	if (!name)
		name = run_name(run, namebuf, sizeof(namebuf));

	cli_install_signals();
	outcome *res = calloc(selected, sizeof(*res));
	double *secs = calloc(selected, sizeof(*secs));
	if (!res || !secs) {
		free(res);
		free(secs);
		free_entries(list, n);
		return cli_oom();
	}
	int failed = 0;
	for (size_t k = 0; k < selected; k++) {
		ckpt_entry *c = &list[first + k];
		char out[4096], label[512];
		int len = c->step >= 0 ? snprintf(out, sizeof(out), "%s/%s_step_%ld", outdir, name, c->step)
				       : snprintf(out, sizeof(out), "%s/%s_%s", outdir, name, c->base);
		if ((size_t)len >= sizeof(out) || (size_t)snprintf(label, sizeof(label), "%s", c->base) >= sizeof(label)) {
			fprintf(stderr, "%s: error: output path too long\n", c->base);
			res[k] = FAILED;
			failed++;
			continue;
		}
		if (cli_signal()) {
			free(res);
			free(secs);
			free_entries(list, n);
			return cli_signal_exit();
		}
		if (skip && !dry && weld_output_intact(out, NULL) == WELD_OK) {
			printf("%s: skipped: %s verifies\n", label, out);
			res[k] = SKIPPED;
			continue;
		}
		cli_progress ps = cli_progress_start(label, quiet);
		weld_convert_options co = o;
		co.progress = cli_on_progress;
		co.payload = &ps;
		co.dry_run = dry;
		weld_convert_result r;
		weld_error err = {0};
		double t0 = cli_wall();
		weld_status s = weld_convert(c->dir, out, &co, &r, &err);
		secs[k] = cli_wall() - t0;
		if (s == WELD_ERR_CANCELLED || (s && cli_signal())) {
			free(res);
			free(secs);
			free_entries(list, n);
			return cli_signal_exit();
		}
		if (s) {
			fprintf(stderr, "%s: error: %s\n", label, cli_error_text(&err));
			res[k] = FAILED;
			failed++;
			continue;
		}
		if (dry) {
			/* The plan names the format: open it again (it just converted, so only memory can fail). */
			weld_ckpt *ck = NULL;
			if (weld_ckpt_open_as(&ck, c->dir, o.type, &err)) {
				fprintf(stderr, "%s: error: %s\n", label, cli_error_text(&err));
				res[k] = FAILED;
				failed++;
				continue;
			}
			char rd[32], wr[32];
			printf("%s: step %ld, %s -> %s: %zu tensors, reads %s, writes %s\n", label, c->step,
			       weld_format_name(weld_ckpt_format(ck)), out, r.tensors, cli_human(rd, sizeof(rd), r.bytes_read),
			       cli_human(wr, sizeof(wr), r.bytes_written));
			weld_ckpt_free(ck);
			res[k] = PLANNED;
			continue;
		}
		if (r.notice[0] && !quiet && k == 0)
			fprintf(stderr, "%s: %s\n", label, r.notice);
		cli_print_summary(label, &r, secs[k]);
		res[k] = DONE;
	}
	if (!dry) {
		printf("%-32s %-8s %8s\n", "CHECKPOINT", "RESULT", "SECONDS");
		static const char *const words[] = {"done", "skipped", "FAILED", "planned"};
		for (size_t k = 0; k < selected; k++)
			printf("%-32s %-8s %8.2f\n", list[first + k].base, words[res[k]], secs[k]);
		printf("weld batch: %zu checkpoint%s, %d failed\n", selected, selected == 1 ? "" : "s", failed);
	}
	free(res);
	free(secs);
	free_entries(list, n);
	return failed ? EXIT_FAILED : EXIT_OK;
}
