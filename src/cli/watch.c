/*
 * weld watch: every checkpoint of a training run converted as soon as its
 * writer is done with it, while training goes on, into the folder weld
 * batch would give it (so either resumes the other). Which checkpoints
 * there are, how outputs are named, the skip-existing check and the
 * conversion are batch's (runs.c, progress.c); when a checkpoint is
 * complete is watch_ready.c's, waiting and the system's part watch_os.c's.
 */
#define _XOPEN_SOURCE 700 /* realpath() */
#include "watch.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char watch_usage[] =
	"usage: weld watch --input-dir RUN --output-dir OUT [options] [convert's options]\n"
	"\n"
	"Watch a training run and convert each checkpoint, in step order, as soon as it\n"
	"is complete, into OUT/NAME_step_N/ as weld batch names it. Complete means its\n"
	"writer wrote what it writes last: trainer_state.json in an HF Trainer\n"
	"checkpoint-N, `latest` naming a DeepSpeed tag (or a later one), a DCP's\n"
	".metadata, every shard of a plain HF folder at its final size. Outputs that\n"
	"verify and were made from their checkpoint are skipped: a restart resumes.\n"
	"A checkpoint removed while it is converted (save_total_limit) is abandoned,\n"
	"its staging removed; a failure is reported and tried again when its files\n"
	"change. SIGTERM/SIGINT stop it at once (exit 143/130), leaving no staging.\n"
	"\n"
	"  --input-dir RUN            the run's folder (it may not exist yet)\n"
	"  --output-dir OUT           where the outputs go (not inside RUN)\n"
	"  --checkpoint-filter GLOB   only checkpoints whose folder name matches (repeatable)\n"
	"  --name NAME                output name prefix (default: RUN's folder name)\n"
	"  --poll SECONDS             look at RUN this often (default 30); inotify wakes it\n"
	"                             sooner where the filesystem sends events\n"
	"  --no-inotify               only poll (also: WELD_WATCH_NO_INOTIFY=1)\n"
	"  --once                     convert what is complete now, then exit\n"
	"  --until-file PATH          once PATH exists, convert what is left and exit\n"
	"  --until-step JOB.STEP      once that Slurm job step (the training, e.g.\n"
	"                             $SLURM_JOB_ID.0) is no longer in squeue, convert what\n"
	"                             is left and exit; checked at each look (--poll)\n"
	"  --keep-last N              keep only the N newest NAME_step_N outputs in OUT; an\n"
	"                             older one is removed only once it verifies\n"
	"  --exec CMD                 after each publish, run CMD with /bin/sh -c, the output\n"
	"                             in $WELD_OUTPUT (also $WELD_CHECKPOINT, $WELD_STEP);\n"
	"                             its failure is reported, not fatal\n"
	"  --priority P               low (default: nice 10, I/O best-effort 7) or normal\n"
	"  --gpu-memory MB            with --device cuda/auto, the GPU memory each conversion\n"
	"                             may use (default 2048, or $WELD_GPU_MEMORY_MB): training\n"
	"                             holds the rest\n"
	"  --quiet                    only errors and the watcher's own lines\n"
	"  --help                     this help\n"
	"\n"
	"convert's options (see weld convert --help): --pytorch-bin, --safetensors,\n"
	"--device, --type, --cross-check, --threads (default here: $SLURM_CPUS_PER_TASK/4,\n"
	"else 2: training shares the node), --chunk-bytes, --allow-global, --side-files,\n"
	"and\n" CLI_DTYPE_HELP CLI_EXIT_CODES_HELP;

/* The command line of one watch. */
typedef struct watch_args {
	bool once, quiet, no_inotify, low;
	const char *run, *outdir, *name, *until, *until_step, *exec;
	double poll;
	long keep; /* 0: keep all */
	cli_repeated filters, allow;
	weld_convert_options convert;
} watch_args;

/* Training shares the node: a small share of its CPUs, not all of them. */
static int default_threads(void)
{
	long v;
	const char *slurm = getenv("SLURM_CPUS_PER_TASK");
	if (slurm && cli_parse_count(slurm, 1, 4096, &v) == 0)
		return v >= 8 ? (int)(v / 4) : 2 < v ? 2 : (int)v;
	return 2;
}

/* --poll, --keep-last and --priority into A; 0 or EXIT_USAGE after a message. */
static int parse_numbers(watch_args *a, const char *poll, const char *keep, const char *priority)
{
	long v;
	if (poll && cli_parse_count(poll, 1, 86400, &v))
		return cli_usage_error("watch", "--poll must be a whole number of seconds from 1 to 86400");
	a->poll = poll ? (double)v : 30.0;
	if (keep && cli_parse_count(keep, 1, 1L << 30, &a->keep))
		return cli_usage_error("watch", "--keep-last must be a number from 1");
	if (priority && strcmp(priority, "low") != 0 && strcmp(priority, "normal") != 0)
		return cli_usage_error("watch", "--priority must be low or normal, not '%s'", priority);
	a->low = !priority || strcmp(priority, "low") == 0;
	const char *env = getenv("WELD_WATCH_NO_INOTIFY");
	a->no_inotify |= env && *env && strcmp(env, "0") != 0;
	return 0;
}

/* The command line into A: CLI_PARSED, or the exit code after --help or an error. */
static int parse_args(int argc, char **argv, watch_args *a)
{
	a->filters.name = "checkpoint-filter";
	a->allow.name = "allow-global";
	int nrest = cli_take_repeated("watch", argc, argv, &a->filters);
	if (nrest >= 0)
		nrest = cli_take_repeated("watch", nrest, argv, &a->allow);
	if (nrest < 0)
		return EXIT_USAGE;
	const char *poll = NULL, *keep = NULL, *priority = NULL, *gpu = NULL;
	cli_convert_args c = CLI_CONVERT_ARGS_INIT;
	const cli_opt opts[] = {{"input-dir", NULL, &a->run}, {"output-dir", NULL, &a->outdir}, {"name", NULL, &a->name},
				{"poll", NULL, &poll},         {"keep-last", NULL, &keep},       {"exec", NULL, &a->exec},
				{"until-file", NULL, &a->until}, {"until-step", NULL, &a->until_step},
				{"priority", NULL, &priority}, {"once", &a->once, NULL},
				{"quiet", &a->quiet, NULL},    {"no-inotify", &a->no_inotify, NULL}, {"gpu-memory", NULL, &gpu},
				CLI_CONVERT_OPTS(c),
				{NULL, NULL, NULL}};
	const cli_command cmd = {"watch", watch_usage, opts, NULL};
	int rc = cli_parse(&cmd, nrest, argv, NULL);
	if (rc != CLI_PARSED)
		return rc;
	if (!a->run || !a->outdir)
		return cli_usage_error("watch", "needs --input-dir RUN and --output-dir OUT");
	if ((rc = parse_numbers(a, poll, keep, priority)) || (rc = cli_convert_options("watch", &c, &a->convert)))
		return rc;
	if (!c.threads)
		a->convert.threads = default_threads();
	if (a->until_step && !watch_step_id_valid(a->until_step))
		return cli_usage_error("watch", "--until-step must be a Slurm JOB.STEP (e.g. 1234.0), not '%s'", a->until_step);
	long mb;
	if (gpu && cli_parse_count(gpu, 1, 16777216, &mb))
		return cli_usage_error("watch", "--gpu-memory must be a whole number of MiB from 1 to 16777216");
	/* The library's budget comes from the environment; a user's own setting stands unless --gpu-memory says. */
	if (setenv("WELD_GPU_MEMORY_MB", gpu ? gpu : "2048", gpu != NULL) != 0)
		return cli_oom();
	a->convert.allow_globals = a->allow.items;
	a->convert.nallow_globals = a->allow.n;
	return CLI_PARSED;
}

/* One checkpoint the watcher has seen: where it goes and how far it is. */
typedef struct seen {
	char *dir;
	char out[4096];
	uint64_t sig;        /* its files' signature at the last look */
	uint64_t failed_sig; /* when it failed: its signature then; tried again once that changes */
	bool handled;        /* converted, found converted, abandoned or refused: never looked at again */
	bool failed;
} seen;

typedef struct watcher {
	const watch_args *a;
	seen *s;
	size_t n;
	watch_waiter waiter;
	int converted, skipped, abandoned;
	bool unstable; /* some checkpoint waits for a second look at its sizes */
} watcher;

/* The record of C, made on first sight; NULL when out of memory. */
static seen *find_seen(watcher *w, const ckpt_entry *c)
{
	for (size_t k = 0; k < w->n; k++)
		if (strcmp(w->s[k].dir, c->dir) == 0)
			return &w->s[k];
	seen *grown = realloc(w->s, (w->n + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	w->s = grown;
	seen *s = &grown[w->n];
	*s = (seen){0};
	if (!(s->dir = strdup(c->dir)))
		return NULL;
	w->n++;
	if (cli_output_path(s->out, sizeof(s->out), w->a->outdir, w->a->name, c)) {
		fprintf(stderr, "%s: error: its output path is too long; not converted\n", c->base);
		s->handled = true;
		return s;
	}
	/* Two checkpoints of one output (checkpoint-100, global_step100): the first seen has it. */
	for (size_t k = 0; k + 1 < w->n; k++) {
		if (strcmp(w->s[k].out, s->out) == 0) {
			fprintf(stderr, "%s: error: %s is %s's output already; not converted\n", c->base, s->out, w->s[k].dir);
			s->handled = true;
		}
	}
	return s;
}

static double now_epoch(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* After S's output is published: --exec, then --keep-last. */
static void after_publish(watcher *w, const ckpt_entry *c, const seen *s)
{
	const watch_args *a = w->a;
	if (a->exec) {
		int rc = watch_exec(a->exec, s->out, c);
		if (rc != 0)
			fprintf(stderr, "%s: --exec failed (%s %d); watching on\n", c->base, rc < 0 ? "killed or not run:" : "exit",
				rc);
	}
	if (a->keep)
		watch_keep_last(a->outdir, a->name, a->keep, a->run, a->quiet);
}

/* A conversion of C that failed with ERR: abandoned if C went away, else tried again when its files change. */
static void failed(watcher *w, const ckpt_entry *c, seen *s, const weld_error *err)
{
	struct stat st;
	/* Going (rmtree removes the files first) is as gone; a .bin folder's second look is not owed again. */
	if (stat(c->dir, &st) != 0 || watch_check(w->a->run, c, s->sig).state == WATCH_INCOMPLETE) {
		fprintf(stderr, "%s: removed while being converted (save_total_limit?); abandoned, nothing published (%s)\n",
			c->base, cli_error_text(err));
		s->handled = true;
		w->abandoned++;
		return;
	}
	fprintf(stderr, "%s: error: %s; tried again when its files change\n", c->base, cli_error_text(err));
	s->failed = true;
	s->failed_sig = watch_signature(c->dir);
}

/* Convert C, complete as R says, unless its output is there already. 0, or the exit code after a signal. */
static int convert_seen(watcher *w, const ckpt_entry *c, seen *s, const watch_ready *r)
{
	const watch_args *a = w->a;
	if (cli_output_verifies(c, s->out, a->quiet)) {
		if (!a->quiet)
			fprintf(stderr, "%s: skipped: %s verifies\n", c->base, s->out);
		s->handled = true;
		w->skipped++;
		return 0;
	}
	if (!a->quiet)
		fprintf(stderr, "%s: complete: %s %.1f s ago\n", c->base, r->why, now_epoch() - r->done_at);
	weld_convert_options co = a->convert;
	/* An output that does not verify (a killed run's, a damaged one) is redone whole, as --skip-existing does. */
	co.replace = 1;
	weld_convert_result res;
	weld_error err = {0};
	weld_status st = cli_convert_logged(c, s->out, &co, a->quiet, &res, &err);
	if (st == WELD_ERR_CANCELLED || (st && cli_signal()))
		return cli_signal_exit();
	if (st) {
		failed(w, c, s, &err);
		return 0;
	}
	s->handled = true;
	s->failed = false;
	w->converted++;
	fprintf(stderr, "%s: published %s %.1f s after the checkpoint was complete\n", c->base, s->out,
		now_epoch() - r->done_at);
	after_publish(w, c, s);
	return 0;
}

/* One look at C; 0, or the exit code after a signal. */
static int consider(watcher *w, const ckpt_entry *c)
{
	if (cli_signal())
		return cli_signal_exit();
	watch_waiter_add(&w->waiter, c->dir);
	seen *s = find_seen(w, c);
	if (!s)
		return cli_oom();
	if (s->handled)
		return 0;
	watch_ready r = watch_check(w->a->run, c, s->sig);
	s->sig = r.signature;
	if (s->failed && r.signature == s->failed_sig)
		return 0;
	w->unstable |= r.state == WATCH_UNSTABLE;
	return r.state == WATCH_COMPLETE ? convert_seen(w, c, s, &r) : 0;
}

/* One look at the run: each complete checkpoint not yet handled converted, by step. 0 or the exit code. */
static int look(watcher *w)
{
	const watch_args *a = w->a;
	struct stat st;
	w->unstable = false;
	/* A watcher started beside training may come before the run's folder. */
	if (stat(a->run, &st) != 0)
		return 0;
	watch_waiter_add(&w->waiter, a->run);
	ckpt_entry *list = NULL;
	size_t n = 0;
	int rc = cli_find_checkpoints(a->run, a->filters.items, a->filters.n, &list, &n);
	for (size_t k = 0; !rc && k < n; k++)
		rc = consider(w, &list[k]);
	cli_free_checkpoints(list, n);
	return rc;
}

/* The last line: what the watch did and what it left. EXIT_FAILED when a checkpoint failed, else EXIT_OK. */
static int finish(const watcher *w)
{
	int nfailed = 0, left = 0;
	for (size_t k = 0; k < w->n; k++) {
		nfailed += w->s[k].failed && !w->s[k].handled;
		if (!w->s[k].handled && !w->s[k].failed)
			fprintf(stderr, "weld watch: %s: not complete, not converted\n", w->s[k].dir);
		left += !w->s[k].handled && !w->s[k].failed;
	}
	fprintf(stderr, "weld watch: %d converted, %d already done, %d abandoned, %d failed, %d incomplete\n", w->converted,
		w->skipped, w->abandoned, nfailed, left);
	return nfailed ? EXIT_FAILED : EXIT_OK;
}

/*
 * PATH resolved into BUF (PATH_MAX bytes): its nearest folder that exists
 * resolved, and the names below it that do not exist yet.
 */
static bool resolve(const char *path, char *buf)
{
	char head[PATH_MAX];
	size_t len = strlen(path);
	if (len >= sizeof(head))
		return false;
	memcpy(head, path, len + 1);
	for (;;) {
		head[len] = '\0';
		if (realpath(len ? head : path[0] == '/' ? "/" : ".", buf))
			break;
		if (len == 0)
			return false;
		char *slash = strrchr(head, '/');
		len = slash ? (size_t)(slash - head) : 0;
	}
	const char *rest = path + len;
	if (strcmp(buf, "/") == 0)
		buf[0] = '\0';
	size_t n = strlen(buf);
	return (size_t)snprintf(buf + n, PATH_MAX - n, "%s%s", *rest == '/' || !*rest ? "" : "/", rest) < PATH_MAX - n;
}

/* OUT inside RUN would be taken for the run's own checkpoints. */
static bool output_inside_run(const watch_args *a)
{
	char r[PATH_MAX], o[PATH_MAX];
	if (!resolve(a->run, r) || !resolve(a->outdir, o))
		return false;
	size_t n = strlen(r);
	return strncmp(o, r, n) == 0 && (o[n] == '\0' || o[n] == '/');
}

/* Look, wait, look again until a signal, --once, --until-file or --until-step ends it. The exit code. */
static int watch_loop(watcher *w)
{
	const watch_args *a = w->a;
	struct stat st;
	for (bool first = true;; first = false) {
		/* Seen before the look, so that the look converts whatever training left. */
		bool last = a->once || (a->until && stat(a->until, &st) == 0) ||
			    (a->until_step && watch_step_ended(a->until_step));
		int rc = look(w);
		if (rc)
			return rc;
		/* After each publish, and once at the start for outputs a run before this one left. */
		if (first && a->keep)
			watch_keep_last(a->outdir, a->name, a->keep, a->run, a->quiet);
		/* A last look still owes the .bin folders their second look: a short one. */
		if (last && !w->unstable)
			return finish(w);
		watch_wait(&w->waiter, last ? 1.0 : a->poll);
		if (cli_signal())
			return cli_signal_exit();
	}
}

int cmd_watch(int argc, char **argv)
{
	watch_args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc != CLI_PARSED)
		return rc;
	if (output_inside_run(&a))
		return cli_usage_error("watch", "--output-dir is inside --input-dir: its outputs would be taken for checkpoints");
	char name[1024], prio[128] = "normal priority";
	if (!a.name)
		a.name = cli_run_name(a.run, name, sizeof(name));
	/* Before the library starts any thread: each inherits it. */
	if (a.low)
		watch_lower_priority(prio, sizeof(prio));
	cli_install_signals();
	watcher w = {.a = &a, .waiter = watch_waiter_open(!a.no_inotify)};
	if (a.until)
		watch_until_folder(&w.waiter, a.until);
	fprintf(stderr, "weld watch: watching %s -> %s: %s, a look every %.0f s; %s, %d thread%s%s%s%s%s\n", a.run,
		a.outdir, w.waiter.fd >= 0 ? "inotify" : "no inotify", a.poll, prio, a.convert.threads,
		a.convert.threads == 1 ? "" : "s", a.until ? "; until " : "", a.until ? a.until : "",
		a.until_step ? "; until job step ended: " : "", a.until_step ? a.until_step : "");
	rc = watch_loop(&w);
	watch_waiter_close(&w.waiter);
	for (size_t k = 0; k < w.n; k++)
		free(w.s[k].dir);
	free(w.s);
	return rc;
}
