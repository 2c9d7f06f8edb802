/*
 * Folder helpers for the unit tests that build and inspect output folders:
 * files put and read back, a folder's sorted listing, a tree removed.
 */
#ifndef WELD_TEST_FS_H
#define WELD_TEST_FS_H

#include "test_util.h"

#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static inline void put(const char *dir, const char *name, const char *text)
{
	char *p = join(dir, name);
	CHECK(write_file(p, text, strlen(text)) == 0);
	free(p);
}

static inline bool exists(const char *dir, const char *name)
{
	char *p = join(dir, name);
	struct stat sb;
	bool r = lstat(p, &sb) == 0;
	free(p);
	return r;
}

/* Whether DIR/NAME holds exactly TEXT. */
static inline bool holds(const char *dir, const char *name, const char *text)
{
	char *p = join(dir, name);
	size_t len = 0;
	uint8_t *b = read_file(p, &len);
	bool r = b && len == strlen(text) && memcmp(b, text, len) == 0;
	free(b);
	free(p);
	return r;
}

/* Names in DIR, sorted and joined with ' ' (static buffer). */
static inline const char *listing(const char *dir)
{
	static char buf[4096];
	char *names[64];
	size_t n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < 64)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[n++] = strdup(e->d_name);
	if (d)
		closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];
			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(buf, " ");
		strncat(buf, names[i], sizeof(buf) - strlen(buf) - 2);
		free(names[i]);
	}
	return buf;
}

static inline void remove_tree(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				char *p = join(path, e->d_name);
				remove_tree(p);
				free(p);
			}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

#endif /* WELD_TEST_FS_H */
