/*
 * What weld watch asks of the system: a low priority so that training runs
 * as fast beside it as without it, inotify to wake early, the --exec
 * command, and the removal of old outputs for --keep-last.
 */
#define _GNU_SOURCE /* syscall(), nftw(), usleep() */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#include <sys/syscall.h>
#endif

const char *watch_lower_priority(char *buf, size_t cap)
{
	/* Never raise it: a watcher started under `nice 19` stays there. */
	errno = 0;
	int cur = getpriority(PRIO_PROCESS, 0);
	bool niced = errno == 0 && (cur >= 10 || setpriority(PRIO_PROCESS, 0, 10) == 0);
	bool io = false;
#if defined(__linux__) && defined(SYS_ioprio_set)
	/*
	 * Best-effort level 7, not the idle class: a data loader reads without
	 * pause, and under the idle class the watcher could wait until
	 * save_total_limit had rotated the checkpoint away.
	 */
	enum { IOPRIO_WHO_PROCESS = 1, IOPRIO_CLASS_BE = 2, IOPRIO_CLASS_SHIFT = 13 };
	io = syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 7) == 0;
#endif
	snprintf(buf, cap, "low priority (%s, %s)", niced ? "nice 10" : "nice unchanged",
		 io ? "I/O best-effort 7" : "I/O priority unchanged");
	return buf;
}

watch_waiter watch_waiter_open(bool use_inotify)
{
	watch_waiter w = {-1};
#ifdef __linux__
	if (use_inotify)
		w.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
#else
	(void)use_inotify;
#endif
	return w;
}

void watch_waiter_close(watch_waiter *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

void watch_waiter_add(watch_waiter *w, const char *dir)
{
#ifdef __linux__
	/* Adding a folder already watched only renews its mask; one gone drops its watch by itself. */
	if (w->fd >= 0)
		inotify_add_watch(w->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR);
#else
	(void)w;
	(void)dir;
#endif
}

void watch_until_folder(watch_waiter *w, const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		watch_waiter_add(w, ".");
	else if ((size_t)snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path) < sizeof(dir))
		watch_waiter_add(w, dir);
}

/* Read away every pending event: each wait starts from a clean slate. */
static void drain(int fd)
{
	char buf[8192];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

void watch_wait(watch_waiter *w, double secs)
{
	double end = cli_wall() + secs;
	while (!cli_signal()) {
		double left = end - cli_wall();
		if (left <= 0)
			return;
		struct pollfd p = {w->fd, POLLIN, 0};
		/* One second at most at a time: a signal that lands just before poll() waits no longer than that. */
		int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
		if (poll(&p, w->fd >= 0 ? 1 : 0, ms) > 0) {
			/* A save writes many files at once: one look after the burst, not one per file. */
			drain(w->fd);
			usleep(100000);
			drain(w->fd);
			return;
		}
	}
}

int watch_exec(const char *cmd, const char *out, const ckpt_entry *c)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char step[32];
		snprintf(step, sizeof(step), "%ld", c->step);
		setenv("WELD_OUTPUT", out, 1);
		setenv("WELD_CHECKPOINT", c->dir, 1);
		setenv("WELD_STEP", c->step >= 0 ? step : "", 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	int st;
	bool passed_on = false;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -1;
		/* The watcher is stopping: so is the command it started, or the stop would wait for it. */
		if (cli_signal() && !passed_on) {
			kill(pid, SIGTERM);
			passed_on = true;
		}
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One output of the run: its step and folder. */
typedef struct kept {
	long step;
	char path[4096];
} kept;

static int newest_first(const void *a, const void *b)
{
	const kept *x = a, *y = b;
	return (x->step < y->step) - (x->step > y->step);
}

/* OUTDIR's NAME_step_N folders into *LIST, newest first; how many, or -1 when out of memory. */
static long list_outputs(const char *outdir, const char *name, kept **list)
{
	DIR *d = opendir(outdir);
	if (!d)
		return 0;
	long n = 0;
	size_t len = strlen(name);
	struct dirent *e;
	*list = NULL;
	while ((e = readdir(d))) {
		const char *digits = e->d_name + len + 6;
		if (strncmp(e->d_name, name, len) != 0 || strncmp(e->d_name + len, "_step_", 6) != 0 || !*digits ||
		    strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 18)
			continue;
		kept *grown = realloc(*list, (size_t)(n + 1) * sizeof(**list));
		if (!grown) {
			closedir(d);
			return -1;
		}
		*list = grown;
		grown[n].step = strtol(digits, NULL, 10);
		if ((size_t)snprintf(grown[n].path, sizeof(grown[n].path), "%s/%s", outdir, e->d_name) < sizeof(grown[n].path))
			n++;
	}
	closedir(d);
	if (n > 1)
		qsort(*list, (size_t)n, sizeof(**list), newest_first);
	return n;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Whether PATH is RUN or holds it: --keep-last never touches an input. */
static bool holds_input(const char *path, const char *run)
{
	char a[PATH_MAX], b[PATH_MAX];
	if (!realpath(path, a) || !realpath(run, b))
		return true;
	size_t n = strlen(a);
	return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

/*
 * Out of the way first, then removed: a reader never finds a half-removed
 * folder under the output's name, and a crash leaves a hidden leftover, not
 * a broken output.
 */
static int remove_output(const char *path)
{
	char gone[4200];
	const char *base = strrchr(path, '/');
	int dirlen = (int)(base - path);
	snprintf(gone, sizeof(gone), "%.*s/.%s.weld-old-%ld", dirlen, path, base + 1, (long)getpid());
	if (rename(path, gone) != 0)
		return -1;
	return nftw(gone, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int watch_keep_last(const char *outdir, const char *name, long keep, const char *run, bool quiet)
{
	kept *list = NULL;
	long n = list_outputs(outdir, name, &list), removed = 0;
	for (long k = keep; k < n; k++) {
		weld_error err = {0};
		if (holds_input(list[k].path, run))
			continue;
		if (weld_output_intact(list[k].path, &err) != WELD_OK) {
			fprintf(stderr, "weld watch: kept %s beyond --keep-last %ld: %s\n", list[k].path, keep, cli_error_text(&err));
			continue;
		}
		if (remove_output(list[k].path) != 0) {
			fprintf(stderr, "weld watch: cannot remove %s: %s\n", list[k].path, strerror(errno));
			continue;
		}
		removed++;
		if (!quiet)
			fprintf(stderr, "weld watch: removed %s (--keep-last %ld)\n", list[k].path, keep);
	}
	free(list);
	return (int)removed;
}

bool watch_step_id_valid(const char *step)
{
	const char *dot = strchr(step, '.');
	if (!dot || dot == step || !dot[1] || dot - step > 20 || strlen(dot + 1) > 32)
		return false;
	for (const char *p = step; p < dot; p++)
		if (*p < '0' || *p > '9')
			return false;
	for (const char *p = dot + 1; *p; p++)
		if (!(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && *p != '_')
			return false;
	return true;
}

bool watch_step_ended(const char *step)
{
	char cmd[128], line[128];
	/* STEP is digits, a dot and a word (watch_step_id_valid): nothing the shell would read. */
	snprintf(cmd, sizeof(cmd), "squeue -h -s -j %.*s -o %%i 2>/dev/null", (int)(strchr(step, '.') - step), step);
	FILE *p = popen(cmd, "r");
	if (!p) {
		fprintf(stderr, "weld watch: cannot run squeue to follow job step %s: %s; taking it as ended\n", step,
			strerror(errno));
		return true;
	}
	bool listed = false;
	while (fgets(line, sizeof(line), p)) {
		line[strcspn(line, " \n")] = '\0';
		listed |= strcmp(line, step) == 0;
	}
	int status = pclose(p);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 127)
		fprintf(stderr, "weld watch: squeue not found, cannot follow job step %s; taking it as ended\n", step);
	return !listed;
}
