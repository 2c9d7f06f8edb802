/*
 * The output folder as one unit: the target named and its parents made, the
 * refusal of a folder that holds something, staging published by rename,
 * by exchange and by the two-step fallback, an interrupted run's leftovers
 * repaired, and the lock: held, refused with its holder named, taken over
 * from a dead process, and from another host only with force.
 */
#define _GNU_SOURCE /* renameat2, RENAME_EXCHANGE, syscall */
#include "output/lock.h"
#include "output/publish.h"
#include "test_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

/*
 * A filesystem without RENAME_EXCHANGE, while NO_EXCHANGE: this definition
 * takes the place of glibc's for the library linked into this test.
 */
static bool no_exchange;

int renameat2(int dfd_from, const char *from, int dfd_to, const char *to, unsigned flags)
{
	if (no_exchange && (flags & RENAME_EXCHANGE)) {
		errno = EINVAL;
		return -1;
	}
	return (int)syscall(SYS_renameat2, dfd_from, from, dfd_to, to, flags);
}

/* A filesystem where flock does nothing (Lustre without -o flock), while NO_FLOCK. */
static bool no_flock;

int flock(int fd, int op)
{
	if (no_flock) {
		errno = ENOSYS;
		return -1;
	}
	return (int)syscall(SYS_flock, fd, op);
}

static void test_target_open(const char *root)
{
	weld_error err = {0};
	char msg[1024];
	weld_target t;

	/* Missing parents are created; the target itself is not. */
	char *out = join(root, "deep/er/out");
	char *parent = join(root, "deep/er");
	CHECK_OK(weld__target_open(&t, out, &err), &err);
	CHECK(t.path && strcmp(t.path, out) == 0 && strcmp(t.parent, parent) == 0 && strcmp(t.name, "out") == 0);
	struct stat sb;
	mode_t mask = umask(0);
	umask(mask);
	CHECK(stat(parent, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == (0755 & ~mask));
	CHECK(!exists(parent, "out"));
	weld__target_free(&t);

	/* Trailing slashes are cut; "." names the folder itself. */
	char *slashed = join(out, "//");
	slashed[strlen(slashed) - 3] = '/';
	CHECK_OK(weld__target_open(&t, slashed, &err), &err);
	CHECK(strcmp(t.path, out) == 0);
	weld__target_free(&t);
	char *dot = join(parent, ".");
	CHECK_OK(weld__target_open(&t, dot, &err), &err);
	CHECK(t.name && strcmp(t.name, "er") == 0 && strcmp(t.path, parent) == 0);
	weld__target_free(&t);
	/* A link to a folder names the folder: the staging goes beside it, the publish renames it, not the link. */
	char *link_path = join(root, "link-to-er");
	CHECK(symlink(parent, link_path) == 0);
	CHECK_OK(weld__target_open(&t, link_path, &err), &err);
	CHECK(t.path && strcmp(t.path, parent) == 0);
	weld__target_free(&t);
	free(link_path);

	/* Paths that cannot be folders. */
	put(parent, "file", "x");
	char *under_file = join(parent, "file/sub/out");
	char *file = join(parent, "file");
	snprintf(msg, sizeof(msg), "%s: cannot create folder: Not a directory", file);
	CHECK_ERR(weld__target_open(&t, under_file, &err), WELD_ERR_IO, &err, msg);
	CHECK(t.path == NULL);
	CHECK_ERR(weld__target_open(&t, "", &err), WELD_ERR_INVALID_ARG, &err, "empty output folder name");
	CHECK_ERR(weld__target_open(&t, "/", &err), WELD_ERR_INVALID_ARG, &err, "/: the root folder cannot be an output folder");

	free(file);
	free(under_file);
	free(dot);
	free(slashed);
	free(parent);
	free(out);
}

static void test_target_check(const char *root)
{
	weld_error err = {0};
	char msg[1024];
	weld_target t;
	char *out = join(root, "check");
	CHECK_OK(weld__target_open(&t, out, &err), &err);

	CHECK_OK(weld__target_check(&t, false, &err), &err); /* absent */
	CHECK(mkdir(out, 0755) == 0);
	CHECK_OK(weld__target_check(&t, false, &err), &err); /* empty */

	/* Anything in it is refused without force: publish would replace it all. */
	put(out, "notes.txt", "mine");
	snprintf(msg, sizeof(msg), "%s: already holds notes.txt; use --force to replace it", out);
	CHECK_ERR(weld__target_check(&t, false, &err), WELD_ERR_INVALID_ARG, &err, msg);
	put(out, "model.safetensors", "old");
	snprintf(msg, sizeof(msg), "%s: already holds model.safetensors; use --force to replace it", out);
	CHECK_ERR(weld__target_check(&t, false, &err), WELD_ERR_INVALID_ARG, &err, msg);
	CHECK_OK(weld__target_check(&t, true, &err), &err);
	CHECK(strcmp(listing(out), "model.safetensors notes.txt") == 0); /* checking touches nothing */

	char *file = join(root, "plainfile");
	put(root, "plainfile", "x");
	weld_target f;
	CHECK_OK(weld__target_open(&f, file, &err), &err);
	snprintf(msg, sizeof(msg), "%s: exists and is not a folder", file);
	CHECK_ERR(weld__target_check(&f, true, &err), WELD_ERR_INVALID_ARG, &err, msg);
	weld__target_free(&f);
	free(file);
	weld__target_free(&t);
	free(out);
}

/* A staging folder for T holding one file NAME with TEXT. */
static char *staged(const weld_target *t, const char *name, const char *text)
{
	weld_error err = {0};
	char *stage = NULL;
	CHECK_OK(weld__stage_create(t, &stage, &err), &err);
	if (stage)
		put(stage, name, text);
	return stage;
}

static void check_publish(const char *root, const char *dir_name, bool exchange)
{
	weld_error err = {0};
	char note[256];
	weld_target t;
	char *out = join(root, dir_name);
	no_exchange = !exchange;
	CHECK_OK(weld__target_open(&t, out, &err), &err);

	/* A new target: the staging folder is renamed to it. */
	char *stage = staged(&t, "a", "first");
	CHECK_OK(weld__stage_publish(&t, stage, false, note, sizeof(note), &err), &err);
	CHECK(note[0] == '\0');
	CHECK(strcmp(listing(out), "a") == 0 && holds(out, "a", "first"));
	free(stage);

	bool running;
	/* An existing one is replaced whole: nothing of the old contents stays, nothing is left beside. */
	stage = staged(&t, "b", "second");
	CHECK_OK(weld__stage_publish(&t, stage, true, note, sizeof(note), &err), &err);
	CHECK(strcmp(listing(out), "b") == 0 && holds(out, "b", "second"));
	char expect[512];
	snprintf(expect, sizeof(expect), "%s: the filesystem cannot swap folders; replaced the output in two steps", out);
	CHECK(exchange ? note[0] == '\0' : strcmp(note, expect) == 0);
	CHECK(strcmp(listing(t.parent), dir_name) == 0);
	CHECK_OK(weld__target_unfinished(out, &running, &err), &err);
	free(stage);

	/* Without replace, a folder checked empty that got files meanwhile is an error, and keeps them. */
	stage = staged(&t, "d", "fourth");
	snprintf(expect, sizeof(expect), "%s: files appeared in it during the conversion; use --force to replace it", out);
	CHECK_ERR(weld__stage_publish(&t, stage, false, note, sizeof(note), &err), WELD_ERR_INVALID_ARG, &err, expect);
	CHECK(strcmp(listing(out), "b") == 0);
	weld__stage_discard(stage);
	free(stage);
	/* ... while an empty one is simply taken. */
	CHECK(weld__remove_tree(out) && mkdir(out, 0755) == 0);
	stage = staged(&t, "e", "fifth");
	CHECK_OK(weld__stage_publish(&t, stage, false, note, sizeof(note), &err), &err);
	CHECK(strcmp(listing(out), "e") == 0);
	free(stage);

	/* A failed run's staging folder goes, links in it removed, not followed; the target stays. */
	stage = staged(&t, "c", "third");
	char *into = join(stage, "link-to-target");
	CHECK(symlink(out, into) == 0);
	weld__stage_discard(stage);
	free(into);
	CHECK(strcmp(listing(t.parent), dir_name) == 0 && strcmp(listing(out), "e") == 0);
	free(stage);

	no_exchange = false;
	weld__target_free(&t);
	free(out);
}

static void test_publish(const char *root)
{
	char *a = join(root, "pub_exchange"), *b = join(root, "pub_two_step");
	CHECK(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);
	check_publish(a, "out", true);
	check_publish(b, "out", false);
	free(a);
	free(b);
}

/* What a run killed at each point leaves, and what the next run on the target makes of it. */
static void test_repair(const char *root)
{
	weld_error err = {0};
	char note[256], expect[512];
	bool running;
	weld_target t;
	char *parent = join(root, "repair");
	char *out = join(parent, "out");
	CHECK_OK(weld__target_open(&t, out, &err), &err);

	/* Killed while staging: the staging folder is a leftover, removed; the old output untouched. */
	CHECK(mkdir(out, 0755) == 0);
	put(out, "model.safetensors", "old");
	char *stage = staged(&t, "model.safetensors", "half");
	snprintf(expect, sizeof(expect), "%s/.out.weld-stage-", parent);
	CHECK(weld__target_unfinished(out, &running, &err) == WELD_ERR_MISMATCH && !running &&
	      strncmp(err.message, expect, strlen(expect)) == 0 &&
	      weld__has_suffix(err.message, ": left by an interrupted conversion; the next conversion into out removes it"));
	/* While a conversion holds the lock, its staging folder is no leftover but work in progress. */
	weld_lock held = WELD_LOCK_INIT;
	CHECK_OK(weld__lock_take(&held, parent, "out", false, note, sizeof(note), &err), &err);
	CHECK(weld__target_unfinished(out, &running, &err) == WELD_OK && running);
	weld__lock_release(&held);
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	CHECK(note[0] == '\0');
	CHECK(strcmp(listing(parent), "out") == 0 && holds(out, "model.safetensors", "old"));
	free(stage);

	/* Killed inside a two-step publish, after the old output went aside: it is put back. */
	char *aside = join(parent, ".out.weld-old-4242");
	CHECK(rename(out, aside) == 0);
	stage = staged(&t, "model.safetensors", "new");
	CHECK(weld__target_unfinished(out, &running, &err) == WELD_ERR_MISMATCH);
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	snprintf(expect, sizeof(expect), "put back the output an interrupted conversion had moved aside (.out.weld-old-4242)");
	CHECK(strcmp(note, expect) == 0);
	CHECK(strcmp(listing(parent), "out") == 0 && holds(out, "model.safetensors", "old"));
	free(stage);

	/* ... after the new one arrived: the old one is only a leftover. */
	CHECK(mkdir(aside, 0755) == 0);
	put(aside, "model.safetensors", "old");
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	CHECK(note[0] == '\0' && strcmp(listing(parent), "out") == 0);

	/* Temporary files of an older weld inside the target go; a name that only looks alike stays. */
	put(out, ".config.json.weld-tmp-77", "x");
	put(out, "weld-tmp-notes", "x");
	snprintf(expect, sizeof(expect),
		 "%s/.config.json.weld-tmp-77: left by an interrupted conversion; the next conversion into out removes it", out);
	CHECK_ERR(weld__target_unfinished(out, &running, &err), WELD_ERR_MISMATCH, &err, expect);
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	CHECK(strcmp(listing(out), "model.safetensors weld-tmp-notes") == 0);
	CHECK_OK(weld__target_unfinished(out, &running, &err), &err);

	/*
	 * Other targets' staging in the same parent is not this one's to remove,
	 * even where their names start like ours: targets "outer" and
	 * "out.weld-stage-a", whose lock and staging begin ".out.weld-stage-".
	 * Nor is a file that only has our staging's name.
	 */
	CHECK(mkdir(aside, 0755) == 0);
	char *other = join(parent, ".outer.weld-stage-1");
	char *alike = join(parent, ".out.weld-stage-a.weld-stage-7");
	CHECK(mkdir(other, 0755) == 0 && mkdir(alike, 0755) == 0);
	put(parent, ".out.weld-stage-a.weld-lock", "weld-lock host=h pid=7 start=1 since=0\n");
	put(parent, ".out.weld-old-9", "a file, not a folder weld made");
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	CHECK(strcmp(listing(parent), ".out.weld-old-9 .out.weld-stage-a.weld-lock .out.weld-stage-a.weld-stage-7 "
				      ".outer.weld-stage-1 out") == 0);
	CHECK_OK(weld__target_unfinished(out, &running, &err), &err);
	/* The old output moved aside is put back only from a folder; a file of that name stays where it is. */
	char *elsewhere = join(root, "repair-out-elsewhere");
	CHECK(rename(out, elsewhere) == 0);
	CHECK_OK(weld__target_repair(&t, note, sizeof(note), &err), &err);
	CHECK(note[0] == '\0' && !exists(parent, "out"));
	free(elsewhere);
	free(alike);

	free(other);
	free(aside);
	weld__target_free(&t);
	free(out);
	free(parent);
}

/* A lock file for NAME in PARENT as HOST's process PID would have written it. */
static void plant_lock(const char *parent, const char *name, const char *host, long pid)
{
	char file[256], text[512];
	snprintf(file, sizeof(file), ".%s.weld-lock", name);
	snprintf(text, sizeof(text), "weld-lock host=%s pid=%ld start=1 since=0\n", host, pid);
	put(parent, file, text);
}

/* A PID that ran and no longer does. */
static long dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return (long)p;
}

static void test_lock(const char *root)
{
	weld_error err = {0};
	char note[512], host[256], prefix[1024];
	gethostname(host, sizeof(host));
	char *parent = join(root, "locks");
	CHECK(mkdir(parent, 0755) == 0);
	weld_lock a = WELD_LOCK_INIT, b = WELD_LOCK_INIT;

	/* Held: a second taker is refused at once, with the holder's host and PID. */
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	CHECK(note[0] == '\0' && exists(parent, ".out.weld-lock") && weld__lock_busy(parent, "out"));
	snprintf(prefix, sizeof(prefix), "%s/.out.weld-lock: another conversion into this folder is running (process %ld on host %s since ",
		 parent, (long)getpid(), host);
	CHECK(weld__lock_take(&b, parent, "out", true, note, sizeof(note), &err) == WELD_ERR_INVALID_ARG);
	CHECK(strncmp(err.message, prefix, strlen(prefix)) == 0);
	CHECK(b.fd < 0);
	/* Another target in the same parent has its own lock. */
	CHECK_OK(weld__lock_take(&b, parent, "out2", false, note, sizeof(note), &err), &err);
	weld__lock_release(&b);
	weld__lock_release(&a);
	CHECK(!exists(parent, ".out.weld-lock") && !weld__lock_busy(parent, "out"));

	/* Drafts of processes of this host killed before they linked them go; another host's stay. */
	char draft[512];
	snprintf(draft, sizeof(draft), ".out.weld-lock.%s.%ld.3", host, dead_pid());
	put(parent, draft, "weld-lock half-written");
	put(parent, ".out.weld-lock.elsewhere-node-17.12.1", "x");
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	CHECK(!exists(parent, draft) && exists(parent, ".out.weld-lock.elsewhere-node-17.12.1"));
	weld__lock_release(&a);
	CHECK(strcmp(listing(parent), ".out.weld-lock.elsewhere-node-17.12.1") == 0);
	remove_tree(parent);
	CHECK(mkdir(parent, 0755) == 0);

	/* Left by a process of this host that is gone: taken over, with a notice. */
	long dead = dead_pid();
	plant_lock(parent, "out", host, dead);
	CHECK(!weld__lock_busy(parent, "out"));
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	snprintf(prefix, sizeof(prefix), "took over the lock of a conversion that no longer runs (process %ld on host %s since ",
		 dead, host);
	CHECK(strncmp(note, prefix, strlen(prefix)) == 0);
	weld__lock_release(&a);

	/* From another host: PIDs there mean nothing here, so only --force takes it. */
	plant_lock(parent, "out", "elsewhere-node-17", 99);
	CHECK(weld__lock_busy(parent, "out"));
	snprintf(prefix, sizeof(prefix), "%s/.out.weld-lock: locked by process 99 on host elsewhere-node-17 since an unknown time; if that conversion is gone, run again with --force",
		 parent);
	CHECK_ERR(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), WELD_ERR_INVALID_ARG, &err, prefix);
	CHECK(holds(parent, ".out.weld-lock", "weld-lock host=elsewhere-node-17 pid=99 start=1 since=0\n"));
	CHECK_OK(weld__lock_take(&a, parent, "out", true, note, sizeof(note), &err), &err);
	CHECK(strstr(note, "host elsewhere-node-17") != NULL);
	weld__lock_release(&a);

	/* An unreadable lock whose flock is free: its creator died before writing its line. */
	put(parent, ".out.weld-lock", "");
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	CHECK(strcmp(note, "took over the lock of a conversion that no longer runs (a lock left empty or unreadable)") == 0);
	weld__lock_release(&a);
	/* One whose flock is held: its creator is about to write it. */
	put(parent, ".out.weld-lock", "garbage");
	char *lock = join(parent, ".out.weld-lock");
	int creator = open(lock, O_RDONLY);
	CHECK(creator >= 0 && flock(creator, LOCK_EX) == 0);
	snprintf(prefix, sizeof(prefix),
		 "%s: another conversion into this folder is running (one that has not written its name yet)", lock);
	CHECK_ERR(weld__lock_take(&a, parent, "out", true, note, sizeof(note), &err), WELD_ERR_INVALID_ARG, &err, prefix);
	close(creator);
	CHECK(unlink(lock) == 0);
	free(lock);

	/* Without flock the lock file alone still excludes, and an unreadable one needs --force. */
	no_flock = true;
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	CHECK(weld__lock_take(&b, parent, "out", true, note, sizeof(note), &err) == WELD_ERR_INVALID_ARG &&
	      strstr(err.message, "another conversion into this folder is running (process ") != NULL);
	weld__lock_release(&a);
	put(parent, ".out.weld-lock", "garbage");
	snprintf(prefix, sizeof(prefix),
		 "%s/.out.weld-lock: a lock weld cannot read; if no conversion into this folder runs, run again with --force",
		 parent);
	CHECK_ERR(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), WELD_ERR_INVALID_ARG, &err, prefix);
	CHECK_OK(weld__lock_take(&a, parent, "out", true, note, sizeof(note), &err), &err);
	CHECK(strcmp(note, "took over the lock of a conversion that no longer runs (a lock left empty or unreadable)") == 0);
	weld__lock_release(&a);
	/* ... and one a dead local process left is not taken over by itself: others may be reading it too. */
	long gone = dead_pid();
	plant_lock(parent, "out", host, gone);
	snprintf(prefix, sizeof(prefix), "%s/.out.weld-lock: left by process %ld on host %s since an unknown time, which no "
		 "longer runs; without flock on this filesystem weld cannot take it over safely by itself: run again with --force",
		 parent, gone, host);
	CHECK_ERR(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), WELD_ERR_INVALID_ARG, &err, prefix);
	CHECK_OK(weld__lock_take(&a, parent, "out", true, note, sizeof(note), &err), &err);
	weld__lock_release(&a);
	no_flock = false;

	/* With flock, a lock of this host whose flock is free is stale, even if its PID runs again (reused). */
	plant_lock(parent, "out", host, (long)getpid());
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	weld__lock_release(&a);
	/* A PID Linux never hands out is no holder (kill(-1, 0) would say some process runs). */
	plant_lock(parent, "out", host, 4294967295L);
	CHECK_OK(weld__lock_take(&a, parent, "out", false, note, sizeof(note), &err), &err);
	weld__lock_release(&a);
	free(parent);
}

/* Threads of one process taking one lock in turn: never two holders at once. */
typedef struct racer {
	const char *parent;
	int *holders, *overlaps, *takes;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	for (int i = 0; i < 500; i++) {
		weld_lock l;
		char note[256];
		weld_error err;
		if (weld__lock_take(&l, r->parent, "out", false, note, sizeof(note), &err) != WELD_OK)
			continue;
		if (__atomic_add_fetch(r->holders, 1, __ATOMIC_SEQ_CST) > 1)
			__atomic_add_fetch(r->overlaps, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(r->takes, 1, __ATOMIC_SEQ_CST);
		struct timespec hold = {0, 50 * 1000}; /* long enough for another to try its luck */
		nanosleep(&hold, NULL);
		__atomic_sub_fetch(r->holders, 1, __ATOMIC_SEQ_CST);
		weld__lock_release(&l);
	}
	return NULL;
}

static void test_lock_threads(const char *root)
{
	char *parent = join(root, "thread-locks");
	CHECK(mkdir(parent, 0755) == 0);
	int holders = 0, overlaps = 0, takes = 0;
	racer r = {parent, &holders, &overlaps, &takes};
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, race, &r) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK(overlaps == 0 && takes > 0);
	CHECK(strcmp(listing(parent), "") == 0); /* no lock, no draft left */
	free(parent);
}

int main(void)
{
	char root[] = "/tmp/weld_test_publish_XXXXXX";
	CHECK(mkdtemp(root) != NULL);
	test_target_open(root);
	test_target_check(root);
	test_publish(root);
	test_repair(root);
	test_lock(root);
	test_lock_threads(root);
	remove_tree(root);
	TEST_DONE();
}
