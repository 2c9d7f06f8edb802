/*
 * weld_map (src/util/map.h): names and other keys to indexes, checked
 * against what a linear scan would find. Many keys (growth), keys that all
 * collide (probing and wrapping past the table's end), the first value
 * added winning, items that move while the map is in use, reserve, and the
 * pointer set built on it.
 */
#include "test_util.h"

#include "util/util.h"

/* Items the maps index: a growable array of names, found through the list (it moves when it grows). */
typedef struct name_list {
	char **names;
	size_t n, cap;
} name_list;

static const char *list_name(const void *ctx, size_t i)
{
	return ((const name_list *)ctx)->names[i];
}

static void list_push(name_list *l, const char *name)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 4;
		char **grown = realloc(l->names, l->cap * sizeof(*grown));
		if (!grown)
			abort();
		l->names = grown;
	}
	l->names[l->n++] = strdup(name);
}

static void list_free(name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
}

/* 200,000 names, each added once and found again; names never added are not found. */
static void test_many_names(void)
{
	enum { N = 200000 };
	name_list l = {0};
	weld_map m;
	weld_map_init_names(&m, list_name, &l);
	CHECK(weld_map_get(&m, "model.layers.0.weight") == WELD_MAP_NONE); /* empty: nothing allocated */
	char name[64];
	bool ok = true;
	for (size_t i = 0; i < N && ok; i++) {
		snprintf(name, sizeof(name), "model.layers.%zu.mlp.weight", i);
		list_push(&l, name);
		size_t had = 0;
		ok = weld_map_add(&m, name, i, &had) && had == WELD_MAP_NONE;
	}
	CHECK(ok);
	CHECK(m.n == N);
	CHECK(m.cap >= 2 * (size_t)N && (m.cap & (m.cap - 1)) == 0); /* at most half full, a power of two */
	for (size_t i = 0; i < N && ok; i++) {
		snprintf(name, sizeof(name), "model.layers.%zu.mlp.weight", i);
		ok = weld_map_get(&m, name) == i;
	}
	CHECK(ok);
	for (size_t i = 0; i < 1000 && ok; i++) {
		snprintf(name, sizeof(name), "model.layers.%zu.mlp.bias", i);
		ok = weld_map_get(&m, name) == WELD_MAP_NONE;
	}
	CHECK(ok);
	CHECK(weld_map_get(&m, "") == WELD_MAP_NONE);
	weld_map_clear(&m);
	CHECK(m.n == 0 && m.slots == NULL && weld_map_get(&m, "model.layers.0.mlp.weight") == WELD_MAP_NONE);
	list_free(&l);
}

/* A name added again keeps its first value: *had tells the caller which, as the scans it replaces did. */
static void test_first_wins(void)
{
	name_list l = {0};
	weld_map m;
	weld_map_init_names(&m, list_name, &l);
	const char *names[] = {"a", "b", "a", "", "b", "", "a"};
	size_t want_had[] = {WELD_MAP_NONE, WELD_MAP_NONE, 0, WELD_MAP_NONE, 1, 3, 0};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		list_push(&l, names[i]);
		size_t had = 12345;
		CHECK(weld_map_add(&m, names[i], i, &had));
		CHECK(had == want_had[i]);
	}
	CHECK(m.n == 3);
	CHECK(weld_map_get(&m, "a") == 0 && weld_map_get(&m, "b") == 1 && weld_map_get(&m, "") == 3);
	size_t had = 0;
	CHECK(!weld_map_add(&m, "c", WELD_MAP_NONE, &had)); /* not a value */
	CHECK(weld_map_get(&m, "c") == WELD_MAP_NONE && m.n == 3);
	weld_map_clear(&m);
	list_free(&l);
}

/* Integer keys whose hash is a constant (or one of a few): every key collides. */
typedef struct ints {
	const uint64_t *keys;
	uint64_t buckets; /* hash = key % buckets; 1: all alike */
} ints;

static uint64_t alike; /* the hash every key has */

static uint64_t int_hash_all_alike(const void *key)
{
	(void)key;
	return alike;
}

static uint64_t int_hash_few(const void *key)
{
	return *(const uint64_t *)key % 3;
}

static bool int_holds(const weld_map *m, const void *key, size_t value)
{
	return ((const ints *)m->ctx)->keys[value] == *(const uint64_t *)key;
}

/* Adds N keys that collide as KIND says, checking them all; true when the run of full slots wraps past the end. */
static bool check_collisions(const weld_map_kind *kind)
{
	enum { N = 1500 };
	uint64_t *keys = malloc(N * sizeof(*keys));
	for (size_t i = 0; i < N; i++)
		keys[i] = (uint64_t)i * 7919 + 1;
	ints ctx = {keys, 0};
	weld_map m;
	weld_map_init(&m, kind, &ctx);
	bool ok = true;
	for (size_t i = 0; i < N && ok; i++) {
		size_t had;
		ok = weld_map_add(&m, &keys[i], i, &had) && had == WELD_MAP_NONE;
		/* Each key added so far is found, and the next one is not, at every size the table passes. */
		if ((i & (i + 1)) == 0 || i == N - 1)
			for (size_t k = 0; k <= i && ok; k++)
				ok = weld_map_get(&m, &keys[k]) == k;
		if (ok && i + 1 < N)
			ok = weld_map_get(&m, &keys[i + 1]) == WELD_MAP_NONE;
	}
	CHECK(ok);
	for (size_t i = 0; i < N && ok; i++) {
		size_t had;
		ok = weld_map_add(&m, &keys[i], N + i, &had) && had == i;
	}
	CHECK(ok);
	CHECK(m.n == N);
	uint64_t absent = 2;
	CHECK(weld_map_get(&m, &absent) == WELD_MAP_NONE);
	bool wraps = m.slots[0].value != WELD_MAP_NONE && m.slots[m.cap - 1].value != WELD_MAP_NONE;
	weld_map_clear(&m);
	free(keys);
	return wraps;
}

static void test_collisions(void)
{
	static const weld_map_kind all_alike = {int_hash_all_alike, int_holds}, few = {int_hash_few, int_holds};
	/* Hashes until one whose run of slots wraps past the table's end: probing must go on at slot 0. */
	bool wrapped = false;
	for (alike = 0; alike < 64 && !wrapped; alike++)
		wrapped = check_collisions(&all_alike);
	CHECK(wrapped);
	check_collisions(&few);
}

/* Reserve makes room once: adding up to that many moves nothing; an impossible size fails and changes nothing. */
static void test_reserve(void)
{
	name_list l = {0};
	weld_map m;
	weld_map_init_names(&m, list_name, &l);
	CHECK(weld_map_reserve(&m, 1000));
	weld_map_slot *slots = m.slots;
	size_t cap = m.cap;
	CHECK(cap >= 2000);
	char name[32];
	for (size_t i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "t%zu", i);
		list_push(&l, name);
		size_t had;
		CHECK(weld_map_add(&m, name, i, &had));
	}
	CHECK(m.slots == slots && m.cap == cap);
	CHECK(weld_map_reserve(&m, 10)); /* smaller than what it holds: nothing to do */
	CHECK(m.slots == slots && m.cap == cap);
	CHECK(!weld_map_reserve(&m, SIZE_MAX / 2 + 1)); /* twice that overflows */
	CHECK(!weld_map_reserve(&m, SIZE_MAX / 4));     /* no such allocation */
	CHECK(m.slots == slots && m.cap == cap && m.n == 1000);
	CHECK(weld_map_get(&m, "t999") == 999 && weld_map_get(&m, "t1000") == WELD_MAP_NONE);
	weld_map_clear(&m);
	list_free(&l);
}

/* The pointer set: each pointer added once, a zeroed set is empty, clear empties it again. */
static void test_ptrset(void)
{
	enum { N = 5000 };
	int *items = calloc(N, sizeof(*items));
	weld_ptrset set = {0};
	bool added = false, ok = true;
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < N && ok; i++)
			ok = weld_ptrset_add(&set, &items[i], &added) && added == (round == 0);
		CHECK(ok);
	}
	CHECK(set.map.n == N);
	weld_ptrset_clear(&set);
	CHECK(weld_ptrset_add(&set, &items[0], &added) && added);
	weld_ptrset_clear(&set);
	free(items);
}

/* The hashes: deterministic, and sensitive to every byte, every length and the order of what they continue. */
static void test_hashes(void)
{
	CHECK(weld__hash_bytes(0, "abc", 3) == weld__hash_bytes(0, "abc", 3));
	CHECK(weld__hash_bytes(0, "abc", 3) != weld__hash_bytes(0, "abd", 3));
	CHECK(weld__hash_bytes(0, "abc", 3) != weld__hash_bytes(0, "abc", 2));
	CHECK(weld__hash_u64(0, 1) != weld__hash_u64(0, 2));
	CHECK(weld__hash_u64(weld__hash_u64(0, 1), 2) != weld__hash_u64(weld__hash_u64(0, 2), 1));
}

int main(void)
{
	test_many_names();
	test_first_wins();
	test_collisions();
	test_reserve();
	test_ptrset();
	test_hashes();
	TEST_DONE();
}
