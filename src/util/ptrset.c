/* An open-addressing pointer set: visit each shared pickle node once. */
#include "util/util.h"

#include <stdlib.h>

static size_t slot_of(const void *p, size_t cap)
{
	uintptr_t h = (uintptr_t)p;
	h ^= h >> 17;
	h *= (uintptr_t)0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 7) & (cap - 1);
}

static bool grow(weld_ptrset *set)
{
	size_t cap = set->cap ? set->cap * 2 : 256;
	const void **slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return false;
	for (size_t i = 0; i < set->cap; i++) {
		if (!set->slots[i])
			continue;
		size_t h = slot_of(set->slots[i], cap);
		while (slots[h])
			h = (h + 1) & (cap - 1);
		slots[h] = set->slots[i];
	}
	free(set->slots);
	set->slots = slots;
	set->cap = cap;
	return true;
}

bool weld_ptrset_add(weld_ptrset *set, const void *p, bool *added)
{
	if ((set->n + 1) * 2 > set->cap && !grow(set))
		return false;
	size_t h = slot_of(p, set->cap);
	while (set->slots[h]) {
		if (set->slots[h] == p) {
			*added = false;
			return true;
		}
		h = (h + 1) & (set->cap - 1);
	}
	set->slots[h] = p;
	set->n++;
	*added = true;
	return true;
}

void weld_ptrset_clear(weld_ptrset *set)
{
	free(set->slots);
	*set = (weld_ptrset){0};
}
