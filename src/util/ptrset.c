/* A set of pointers, to visit each shared pickle node once: a weld_map whose values are the pointers. */
#include "util/util.h"

static uint64_t hash_ptr(const void *key)
{
	return weld__hash_u64(0, (uint64_t)(uintptr_t)key);
}

static bool holds_ptr(const weld_map *m, const void *key, size_t value)
{
	(void)m;
	return (size_t)(uintptr_t)key == value;
}

static const weld_map_kind ptr_kind = {hash_ptr, holds_ptr};

bool weld_ptrset_add(weld_ptrset *set, const void *p, bool *added)
{
	size_t had;
	if (!set->map.kind)
		weld_map_init(&set->map, &ptr_kind, NULL);
	if (!weld_map_add(&set->map, p, (size_t)(uintptr_t)p, &had))
		return false;
	*added = had == WELD_MAP_NONE;
	return true;
}

void weld_ptrset_clear(weld_ptrset *set)
{
	weld_map_clear(&set->map);
}
