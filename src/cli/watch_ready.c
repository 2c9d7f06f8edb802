/*
 * When a checkpoint of a running training job is complete, decided from what
 * each writer writes last, never from a timer alone: a checkpoint still
 * being written must never be read, and a pause in the writes (a slow
 * gather, a full page cache) says nothing about whether more are coming.
 */
#include "watch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* DIR/NAME's status in *ST; false when it is not there. */
static bool stat_in(const char *dir, const char *name, struct stat *st)
{
	char p[4096];
	return (size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) < sizeof(p) && stat(p, st) == 0;
}

static double mtime_of(const struct stat *st)
{
	return (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9;
}

static watch_ready ready(watch_state state, const char *why, double at)
{
	return (watch_ready){state, why, at, 0};
}

/* FNV-1a over LEN bytes of P, continuing from H. */
static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* DIR's entries (and, at DEPTH 0, those of its folders) folded into H: the order readdir gives is stable enough between two looks. */
static uint64_t fold_dir(uint64_t h, const char *dir, int depth)
{
	DIR *d = opendir(dir);
	if (!d)
		return h;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[4096];
		struct stat st;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    (size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= sizeof(p) || lstat(p, &st) != 0)
			continue;
		h = fnv(h, e->d_name, strlen(e->d_name) + 1);
		int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
		h = fnv(h, v, sizeof(v));
		if (S_ISDIR(st.st_mode) && depth == 0)
			h = fold_dir(h, p, 1);
	}
	closedir(d);
	return h;
}

uint64_t watch_signature(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return 0;
	uint64_t h = fold_dir(14695981039346656037ull, dir, 0);
	return h ? h : 1;
}

/* The whole of small file PATH as a string (NUL-terminated), or NULL; the caller frees it. */
static char *slurp(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	fclose(f);
	if (!buf || n > max) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/*
 * The size a safetensors file has once written: 8 + its header's length +
 * the end of its last tensor's data. 0 when the header is not whole yet (or
 * not a safetensors header at all).
 */
static uint64_t safetensors_final_size(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	unsigned char le[8];
	uint64_t n = 0, end = 0;
	char *head = NULL;
	if (fread(le, 1, 8, f) == 8) {
		for (int i = 7; i >= 0; i--)
			n = n << 8 | le[i];
		/* safetensors caps its header at 100 MB. */
		head = n && n <= 100000000u ? malloc(n + 1) : NULL;
	}
	cJSON *j = NULL;
	if (head && fread(head, 1, n, f) == n) {
		head[n] = '\0';
		j = cJSON_Parse(head);
	}
	fclose(f);
	free(head);
	for (const cJSON *t = j ? j->child : NULL; t; t = t->next) {
		const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
		const cJSON *hi = cJSON_IsArray(off) ? cJSON_GetArrayItem(off, 1) : NULL;
		if (cJSON_IsNumber(hi) && hi->valuedouble > (double)end)
			end = (uint64_t)hi->valuedouble;
	}
	bool ok = j != NULL;
	cJSON_Delete(j);
	return ok ? 8 + n + end : 0;
}

/* How far one weights file of a plain HF folder is: 1 whole, 0 not yet, -1 whole only if its size holds still. */
static int file_whole(const char *dir, const char *name, double *at)
{
	char p[4096];
	struct stat st;
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p) || stat(p, &st) != 0)
		return 0;
	*at = mtime_of(&st) > *at ? mtime_of(&st) : *at;
	size_t len = strlen(name);
	if (len > 12 && strcmp(name + len - 12, ".safetensors") == 0)
		return safetensors_final_size(p) == (uint64_t)st.st_size;
	return -1;
}

/* A plain HF folder's weights, whole or not, by its index (INDEX) or its one file (SINGLE). */
static watch_ready plain_hf(const char *dir, const char *index, const char *single, uint64_t prev, uint64_t sig)
{
	double at = 0;
	int whole = 1;
	char p[4096];
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, index) >= sizeof(p))
		return ready(WATCH_INCOMPLETE, "a path too long", 0);
	struct stat st;
	if (stat(p, &st) != 0) {
		whole = file_whole(dir, single, &at);
	} else {
		/* An index still being written does not parse: not complete yet. */
		char *text = slurp(p, 64u << 20, NULL);
		cJSON *j = text ? cJSON_Parse(text) : NULL;
		const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
		whole = cJSON_IsObject(map) && map->child ? 1 : 0;
		at = mtime_of(&st);
		for (const cJSON *t = map ? map->child : NULL; t && whole; t = t->next) {
			int w = cJSON_IsString(t) ? file_whole(dir, t->valuestring, &at) : 0;
			whole = w == 0 ? 0 : w < 0 ? -1 : whole;
		}
		cJSON_Delete(j);
		free(text);
	}
	if (whole == 0)
		return ready(WATCH_INCOMPLETE, "shards not all written", 0);
	/* .bin files say nothing of their final size: unchanged since the last look is the best there is. */
	if (whole < 0 && (prev == 0 || prev != sig))
		return ready(WATCH_UNSTABLE, "shard sizes not yet seen twice alike", 0);
	return ready(WATCH_COMPLETE, whole < 0 ? "shard sizes unchanged since the last look" : "every shard at its final size", at);
}

/*
 * A DeepSpeed tag folder of RUN (global_stepN) is complete once RUN's
 * `latest` names it or a later tag: DeepSpeed writes `latest` after the
 * tag's files, and a later one after its own.
 */
static watch_ready deepspeed_tag(const char *run, const ckpt_entry *c)
{
	char p[4096];
	struct stat st;
	if ((size_t)snprintf(p, sizeof(p), "%s/latest", run) >= sizeof(p) || stat(p, &st) != 0)
		return ready(WATCH_INCOMPLETE, "no latest yet", 0);
	char *tag = slurp(p, 4096, NULL);
	if (!tag)
		return ready(WATCH_INCOMPLETE, "latest unreadable", 0);
	tag[strcspn(tag, " \t\r\n")] = '\0';
	long step = cli_step_of(tag);
	bool named = strcmp(tag, c->base) == 0 || (step >= 0 && c->step >= 0 && step >= c->step);
	free(tag);
	return named ? ready(WATCH_COMPLETE, "named by latest", mtime_of(&st))
		     : ready(WATCH_INCOMPLETE, "latest names an earlier tag", 0);
}

watch_ready watch_check(const char *run, const ckpt_entry *c, uint64_t prev)
{
	struct stat st;
	watch_ready r;
	uint64_t sig = watch_signature(c->dir);
	bool trainer = strncmp(c->base, "checkpoint-", 11) == 0;
	/* HF Trainer: weights, optimizer (DeepSpeed's global_stepN, FSDP's DCP), RNG, then trainer_state.json. */
	if (trainer || stat_in(c->dir, "trainer_state.json", &st))
		r = stat_in(c->dir, "trainer_state.json", &st) ? ready(WATCH_COMPLETE, "trainer_state.json written", mtime_of(&st))
							       : ready(WATCH_INCOMPLETE, "no trainer_state.json yet", 0);
	/* torch.distributed.checkpoint: every rank's .distcp, then the coordinator's .metadata. */
	else if (stat_in(c->dir, ".metadata", &st))
		r = ready(WATCH_COMPLETE, ".metadata written", mtime_of(&st));
	/* A DeepSpeed save folder of its own: `latest` comes after the tag it names. */
	else if (stat_in(c->dir, "latest", &st))
		r = ready(WATCH_COMPLETE, "latest written", mtime_of(&st));
	else if (strncmp(c->base, "global_step", 11) == 0)
		r = deepspeed_tag(run, c);
	else if (stat_in(c->dir, "model.safetensors.index.json", &st) || stat_in(c->dir, "model.safetensors", &st))
		r = plain_hf(c->dir, "model.safetensors.index.json", "model.safetensors", prev, sig);
	else
		r = plain_hf(c->dir, "pytorch_model.bin.index.json", "pytorch_model.bin", prev, sig);
	r.signature = sig;
	return r;
}
