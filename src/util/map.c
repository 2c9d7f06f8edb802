/* The hash table (weld_map, util.h). */
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* The first table holds this many slots; it doubles when half full. */
#define FIRST_CAP 64

uint64_t weld__hash_bytes(uint64_t h, const void *p, size_t n)
{
	/* FNV-1a: short keys (tensor names) hash in a few cycles a byte; the slot comes from mix() below. */
	const unsigned char *b = p;
	h ^= 0xCBF29CE484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001B3ull;
	return h;
}

uint64_t weld__hash_u64(uint64_t h, uint64_t v)
{
	h = (h ^ v) * 0x9E3779B97F4A7C15ull;
	return h ^ h >> 29;
}

/* The avalanche of MurmurHash3's finaliser, so that the low bits of a slot depend on every bit of H. */
static size_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDull;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ull;
	h ^= h >> 33;
	return (size_t)h;
}

void weld_map_init(weld_map *m, const weld_map_kind *kind, const void *ctx)
{
	*m = (weld_map){.kind = kind, .ctx = ctx};
}

static uint64_t hash_name(const void *key)
{
	return weld__hash_bytes(0, key, strlen(key));
}

static bool holds_name(const weld_map *m, const void *key, size_t value)
{
	return strcmp(m->name_of(m->ctx, value), key) == 0;
}

static const weld_map_kind names_kind = {hash_name, holds_name};

void weld_map_init_names(weld_map *m, const char *(*name_of)(const void *ctx, size_t i), const void *ctx)
{
	weld_map_init(m, &names_kind, ctx);
	m->name_of = name_of;
}

/* Slot of M for a key of hash H: the one holding KEY, or the empty one it would take. */
static size_t find_slot(const weld_map *m, uint64_t h, const void *key)
{
	size_t mask = m->cap - 1, i = mix(h) & mask;
	for (;; i = (i + 1) & mask) {
		const weld_map_slot *s = &m->slots[i];
		if (s->value == WELD_MAP_NONE || (s->hash == h && m->kind->holds(m, key, s->value)))
			return i;
	}
}

/* M's slots, CAP of them (a power of two), the entries moved over by their stored hashes. */
static bool rehash(weld_map *m, size_t cap)
{
	weld_map_slot *slots = weld__reallocarray(NULL, cap, sizeof(*slots));
	if (!slots)
		return false;
	for (size_t i = 0; i < cap; i++)
		slots[i].value = WELD_MAP_NONE;
	for (size_t k = 0; k < m->cap; k++) {
		const weld_map_slot *s = &m->slots[k];
		if (s->value == WELD_MAP_NONE)
			continue;
		size_t i = mix(s->hash) & (cap - 1);
		while (slots[i].value != WELD_MAP_NONE)
			i = (i + 1) & (cap - 1);
		slots[i] = *s;
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return true;
}

bool weld_map_reserve(weld_map *m, size_t n)
{
	size_t cap = m->cap ? m->cap : FIRST_CAP, want;
	if (!weld__mul_size(&want, n, 2))
		return false;
	while (cap < want)
		if (!weld__mul_size(&cap, cap, 2))
			return false;
	return cap == m->cap || rehash(m, cap);
}

size_t weld_map_get(const weld_map *m, const void *key)
{
	if (!m->n)
		return WELD_MAP_NONE;
	return m->slots[find_slot(m, m->kind->hash(key), key)].value;
}

bool weld_map_add(weld_map *m, const void *key, size_t value, size_t *had)
{
	*had = WELD_MAP_NONE;
	if (value == WELD_MAP_NONE || !weld_map_reserve(m, m->n + 1))
		return false;
	uint64_t h = m->kind->hash(key);
	weld_map_slot *s = &m->slots[find_slot(m, h, key)];
	if (s->value != WELD_MAP_NONE) {
		*had = s->value;
		return true;
	}
	*s = (weld_map_slot){h, value};
	m->n++;
	return true;
}

void weld_map_clear(weld_map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}
