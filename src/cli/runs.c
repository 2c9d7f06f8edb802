/*
 * The checkpoints of a training run, for weld batch: HF Trainer checkpoint-N
 * folders, DeepSpeed save folders (global_stepN tags) and plain HF folders
 * found in the run's folder, sorted by step, the folders without one last.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * The step in a name that means one: a prefix below, then only digits
 * ("iter_0000100" is step 100). Any other name, "sft-v1" say, is a model
 * folder of its own: its digits are part of its name, not a step (taking
 * them as one gave "sft-v1" and "dpo-v1" one output). -1 when none, or too
 * large for a long.
 */
static long step_of(const char *name)
{
	static const char *const prefixes[] = {"checkpoint-", "global_step", "step_", "step-", "iter_"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t len = strlen(prefixes[i]);
		const char *d = name + len;
		if (strncmp(name, prefixes[i], len) != 0 || !*d || strspn(d, "0123456789") != strlen(d))
			continue;
		errno = 0;
		long v = strtol(d, NULL, 10);
		return errno ? -1 : v;
	}
	return -1;
}

static bool has_weights(const char *dir)
{
	/* .metadata: a DCP folder (torchtitan's step-N/); a Trainer's checkpoint-N is taken by name. */
	static const char *const names[] = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
					    "pytorch_model.bin.index.json", "latest", ".metadata"};
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

/* RUN/NAME in PATH when it is a checkpoint folder. One longer than PATH_MAX could not be opened anyway. */
static bool checkpoint_path(const char *run, const char *name, char *path, size_t cap)
{
	struct stat st;
	return name[0] != '.' && (size_t)snprintf(path, cap, "%s/%s", run, name) < cap && stat(path, &st) == 0 &&
	       S_ISDIR(st.st_mode) && is_checkpoint_dir(path, name);
}

/*
 * By step, then the folders without a step by name: an order that does not
 * depend on the directory's, so every array task numbers the run alike.
 */
static int cmp_entry(const void *a, const void *b)
{
	const ckpt_entry *x = a, *y = b;
	if ((x->step < 0) != (y->step < 0))
		return x->step < 0 ? 1 : -1;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return strcmp(x->base, y->base);
}

void cli_free_checkpoints(ckpt_entry *e, size_t n)
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
		char path[4096];
		if (!checkpoint_path(run, e->d_name, path, sizeof(path)))
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
 * A DeepSpeed save folder's tags are checkpoints of their own only when no
 * HF Trainer folder wraps them. RUN itself counts when it holds weights and
 * nothing below does.
 */
int cli_find_checkpoints(const char *run, const char *const *filters, size_t nfilters, ckpt_entry **out,
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
		cli_free_checkpoints(list, cnt);
		return rc;
	}
	if (cnt > 1)
		qsort(list, cnt, sizeof(*list), cmp_entry);
	*out = list;
	*n = cnt;
	return 0;
}


long cli_step_of(const char *name)
{
	return step_of(name);
}

const char *cli_run_name(const char *run, char *buf, size_t cap)
{
	size_t n = strlen(run);
	while (n > 1 && run[n - 1] == '/')
		n--;
	if ((size_t)snprintf(buf, cap, "%.*s", (int)n, run) >= cap)
		return "run";
	const char *base = strrchr(buf, '/');
	return base ? base + 1 : buf;
}

int cli_output_path(char *buf, size_t cap, const char *outdir, const char *name, const ckpt_entry *c)
{
	const char *dir = outdir ? outdir : "", *sep = outdir ? "/" : "";
	int len = c->step >= 0 ? snprintf(buf, cap, "%s%s%s_step_%ld", dir, sep, name, c->step)
			       : snprintf(buf, cap, "%s%s%s_%s", dir, sep, name, c->base);
	return len < 0 || (size_t)len >= cap ? -1 : 0;
}

/*
 * Made from C's own checkpoint, not another run's of the same name
 * (e1/output/checkpoint-1 and e2/output/checkpoint-1 both go to
 * OUT/output_step_1): an output there that is not is redone, and unless
 * QUIET the log says why before it goes.
 */
bool cli_output_verifies(const ckpt_entry *c, const char *out, bool quiet)
{
	weld_error err = {0};
	if (weld_output_intact_from(out, c->dir, &err) == WELD_OK)
		return true;
	struct stat st;
	if (!quiet && stat(out, &st) == 0)
		fprintf(stderr, "%s: %s; converting %s into it again\n", c->base, cli_error_text(&err), c->dir);
	return false;
}
