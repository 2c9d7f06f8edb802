/*
 * The few helpers every unit test uses: a CHECK that prints file:line and the
 * expression and keeps going, fixture paths, and whole-file reads.
 */
#ifndef WELD_TEST_UTIL_H
#define WELD_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures++;                                                 \
		}                                                                        \
	} while (0)

/* CHECK that status S equals EXPECTED and the error message equals MSG exactly. */
#define CHECK_ERR(s, expected, errp, msg)                                                \
	do {                                                                             \
		int s_ = (s);                                                            \
		if (s_ != (expected) || strcmp((errp)->message, (msg)) != 0) {           \
			fprintf(stderr,                                                  \
				"%s:%d: expected status %d \"%s\"\n  got status %d \"%s\"\n", \
				__FILE__, __LINE__, (int)(expected), (msg), s_,          \
				(errp)->message);                                        \
			test_failures++;                                                 \
		}                                                                        \
	} while (0)

#define CHECK_OK(s, errp)                                                                \
	do {                                                                             \
		int s_ = (s);                                                            \
		if (s_ != 0) {                                                           \
			fprintf(stderr, "%s:%d: %s failed: %d %s\n", __FILE__, __LINE__, #s,  \
				s_, (errp)->message);                                    \
			test_failures++;                                                 \
		}                                                                        \
	} while (0)

#define TEST_DONE()                                                                      \
	do {                                                                             \
		if (test_failures) {                                                     \
			fprintf(stderr, "%d check(s) failed\n", test_failures);          \
			return 1;                                                        \
		}                                                                        \
		return 0;                                                                \
	} while (0)

/* Path of a file under tests/fixtures in the source tree (static buffer). */
static inline const char *fixture(const char *rel)
{
	static char buf[8][4096];
	static int slot;
	char *b = buf[slot++ & 7];
	snprintf(b, 4096, "%s/tests/fixtures/%s", WELD_SOURCE_DIR, rel);
	return b;
}

/* Whole file into a malloc'd buffer (tests only); NULL on failure. */
static inline uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
	if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	if (p)
		*len = (size_t)n;
	return p;
}

/* Write LEN bytes to a fresh file at PATH; 0 on success. */
static inline int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(data, 1, len, f);
	return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* A scratch folder per test run, made by scratch_init and removed by scratch_remove. */
static char scratch_dir[4096];

static inline int scratch_init(const char *name)
{
	snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/weld_test_%s_XXXXXX", name);
	return mkdtemp(scratch_dir) ? 0 : -1;
}

/* Path of REL inside the scratch folder (rotating static buffers). */
static inline const char *scratch(const char *rel)
{
	static char buf[8][4096];
	static int slot;
	char *b = buf[slot++ & 7];
	snprintf(b, 4096, "%s/%s", scratch_dir, rel);
	return b;
}

static inline int scratch_remove(void)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dir);
	return system(cmd);
}

/* Files A and B hold the same bytes; says which differ when not. */
static inline int same_file(const char *a, const char *b)
{
	size_t na = 0, nb = 0;
	uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
	int same = x && y && na == nb && memcmp(x, y, na) == 0;
	if (!same)
		fprintf(stderr, "  %s (%zu bytes) differs from %s (%zu bytes)\n", a, na, b, nb);
	free(x);
	free(y);
	return same;
}

#endif
