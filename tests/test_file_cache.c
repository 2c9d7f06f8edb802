/*
 * The input files' descriptor cache (util.h, file.c): more files than the
 * budget, least recently used descriptors closed first, transparent
 * reopens, a file replaced or changed between reads refused, the budget
 * derived from RLIMIT_NOFILE, and readers in several threads at once.
 */
#include "util/util.h"

#include "test_fs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>

#define NFILES 200

static char dir[] = "/tmp/weld-test-file-cache-XXXXXX";
static char *paths[NFILES];

/* File I's text: its own number, so that every read says which file it came from. */
static void text_of(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "input file %04d of the descriptor cache test", i);
}

static void make_files(void)
{
	CHECK(mkdtemp(dir) != NULL);
	for (int i = 0; i < NFILES; i++) {
		char name[32], text[64];
		snprintf(name, sizeof(name), "f%03d", i);
		text_of(i, text, sizeof(text));
		paths[i] = join(dir, name);
		CHECK(write_file(paths[i], text, strlen(text)) == 0);
	}
}

/* F holds file I's text. */
static bool reads_as(weld_file *f, int i)
{
	char want[64], got[64] = {0};
	weld_error err = {0};
	text_of(i, want, sizeof(want));
	return f->size == strlen(want) && weld_file_pread(f, got, strlen(want), 0, &err) == WELD_OK &&
	       memcmp(got, want, strlen(want)) == 0;
}

static void open_all(weld_file **f, int n)
{
	weld_error err = {0};
	for (int i = 0; i < n; i++)
		CHECK_OK(weld_file_open(&f[i], paths[i], &err), &err);
}

static void close_all(weld_file **f, int n)
{
	for (int i = 0; i < n; i++) {
		weld_file_close(f[i]);
		f[i] = NULL;
	}
}

/* Five files, a budget of three: the least recently used descriptor goes first, and comes back on a read. */
static void test_lru(void)
{
	weld_file *f[5];
	weld__file_cache_budget(3);
	open_all(f, 3);
	CHECK(weld__file_cache_held() == 3);
	CHECK(reads_as(f[0], 0)); /* f0 is now the newest, f1 the oldest */
	weld_error err = {0};
	CHECK_OK(weld_file_open(&f[3], paths[3], &err), &err); /* needs room: f1 goes */
	CHECK(f[0]->fd >= 0 && f[1]->fd < 0 && f[2]->fd >= 0 && f[3]->fd >= 0);
	CHECK(weld__file_cache_held() == 3);
	uint64_t opens = weld__file_cache_opens();
	CHECK(reads_as(f[1], 1)); /* reopened; f2 was the oldest */
	CHECK(weld__file_cache_opens() == opens + 1);
	CHECK(f[1]->fd >= 0 && f[2]->fd < 0);
	CHECK(reads_as(f[1], 1) && weld__file_cache_opens() == opens + 1); /* held: no open */
	CHECK(f[1]->bytes_read == 2 * f[1]->size);
	close_all(f, 4);
	CHECK(weld__file_cache_held() == 0);
}

/* Many more files than the budget, read in a scattered order, never more held than it. */
static void test_many(void)
{
	static weld_file *f[NFILES];
	weld__file_cache_budget(8);
	open_all(f, NFILES);
	CHECK(weld__file_cache_held() == 8);
	for (int k = 0; k < 3 * NFILES; k++) {
		int i = (k * 37) % NFILES;
		CHECK(reads_as(f[i], i));
		CHECK(weld__file_cache_held() <= 8);
	}
	close_all(f, NFILES);
	CHECK(weld__file_cache_held() == 0);
}

/* A file whose descriptor was closed, then replaced, rewritten or removed: its next read says so. */
static void test_changed(void)
{
	weld_file *f[4];
	weld_error err = {0};
	char msg[4200], buf[8];
	weld__file_cache_budget(1);
	open_all(f, 4); /* only f3 keeps its descriptor */
	CHECK(f[0]->fd < 0 && f[3]->fd >= 0);

	/* f3 holds its descriptor: it reads the file it opened, whatever the name now leads to */
	CHECK(unlink(paths[3]) == 0);
	CHECK(reads_as(f[3], 3));

	/* f0: another file renamed over it, of the same size (f3's descriptor makes room for it) */
	char *tmp = join(dir, "replacement");
	char text[64];
	text_of(0, text, sizeof(text));
	CHECK(write_file(tmp, text, strlen(text)) == 0);
	CHECK(rename(tmp, paths[0]) == 0);
	snprintf(msg, sizeof(msg), "%s: replaced or changed since it was first opened", paths[0]);
	CHECK_ERR(weld_file_pread(f[0], buf, 4, 0, &err), WELD_ERR_IO, &err, msg);
	CHECK(f[0]->bytes_read == 0 && f[0]->fd < 0 && f[3]->fd < 0);

	/* f1: rewritten in place, one byte longer */
	text_of(1, text, sizeof(text));
	strcat(text, "!");
	CHECK(write_file(paths[1], text, strlen(text)) == 0);
	snprintf(msg, sizeof(msg), "%s: replaced or changed since it was first opened", paths[1]);
	CHECK_ERR(weld_file_pread(f[1], buf, 4, 0, &err), WELD_ERR_IO, &err, msg);

	/* f2: the same inode and size, but written since (its modification time moved) */
	struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
	CHECK(utimensat(AT_FDCWD, paths[2], times, 0) == 0);
	snprintf(msg, sizeof(msg), "%s: replaced or changed since it was first opened", paths[2]);
	CHECK_ERR(weld_file_pread(f[2], buf, 4, 0, &err), WELD_ERR_IO, &err, msg);

	/* f3, its descriptor closed to make room, cannot come back */
	snprintf(msg, sizeof(msg), "%s: cannot reopen: No such file or directory", paths[3]);
	CHECK_ERR(weld_file_pread(f[3], buf, 4, 0, &err), WELD_ERR_IO, &err, msg);
	CHECK(weld__file_cache_held() == 0);
	close_all(f, 4);
	free(tmp);
	/* put the four back as they were */
	for (int i = 0; i < 4; i++) {
		text_of(i, text, sizeof(text));
		CHECK(write_file(paths[i], text, strlen(text)) == 0);
	}
}

/* The budget from RLIMIT_NOFILE, and open(2) out of descriptors (EMFILE) closing idle ones instead of failing. */
static void test_rlimit(void)
{
	static weld_file *f[NFILES];
	struct rlimit saved, low;
	CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	low = saved;
	low.rlim_cur = 100; /* budget: 100 less half of it */
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	weld__file_cache_budget(0);
	open_all(f, NFILES);
	CHECK(weld__file_cache_held() == 50);
	for (int i = NFILES - 1; i >= 0; i--)
		CHECK(reads_as(f[i], i));
	close_all(f, NFILES);

	/* A budget above what the limit allows: each open that fails for it closes the oldest idle one. */
	low.rlim_cur = 40;
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	weld__file_cache_budget(1000);
	open_all(f, NFILES);
	CHECK(weld__file_cache_held() < 40);
	for (int i = 0; i < NFILES; i++)
		CHECK(reads_as(f[i], i));
	close_all(f, NFILES);
	CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
}

typedef struct reader {
	weld_file **f;
	int first;
	int bad;
} reader;

static void *read_many(void *arg)
{
	reader *r = arg;
	for (int k = 0; k < 4 * NFILES; k++) {
		int i = (r->first + k * 13) % NFILES;
		r->bad += !reads_as(r->f[i], i);
	}
	return NULL;
}

/* Eight threads reading the same files, more than the budget, at once (the tsan tier runs this). */
static void test_threads(void)
{
	static weld_file *f[NFILES];
	pthread_t tid[8];
	reader r[8];
	weld__file_cache_budget(6);
	open_all(f, NFILES);
	for (int t = 0; t < 8; t++) {
		r[t] = (reader){f, t * 7, 0};
		CHECK(pthread_create(&tid[t], NULL, read_many, &r[t]) == 0);
	}
	uint64_t total = 0;
	for (int t = 0; t < 8; t++) {
		pthread_join(tid[t], NULL);
		CHECK(r[t].bad == 0);
	}
	for (int i = 0; i < NFILES; i++)
		total += f[i]->bytes_read;
	CHECK(total == 8 * 4 * NFILES * f[0]->size);
	CHECK(weld__file_cache_held() <= 6 + 8); /* over the budget only while every descriptor is in use */
	close_all(f, NFILES);
	CHECK(weld__file_cache_held() == 0);
}

int main(void)
{
	make_files();
	test_lru();
	test_many();
	test_changed();
	test_rlimit();
	test_threads();
	weld__file_cache_budget(0);
	for (int i = 0; i < NFILES; i++) {
		unlink(paths[i]);
		free(paths[i]);
	}
	rmdir(dir);
	TEST_DONE();
}
