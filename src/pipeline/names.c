/* Wrapper prefixes and tied embeddings (names.h). */
#include "pipeline/names.h"

#include <stdio.h>
#include <string.h>

static const char *const wrappers[] = {"module.", "_orig_mod."};

const char *weld__wrapper(size_t k)
{
	return k < sizeof(wrappers) / sizeof(wrappers[0]) ? wrappers[k] : NULL;
}

static bool all_have_prefix(const weld_ckpt *c, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < c->nt; i++)
		if (strncmp(c->t[i].name, prefix, n) != 0 || c->t[i].name[n] == '\0')
			return false;
	return c->nt > 0;
}

size_t weld__wrapper_prefix(const weld_ckpt *c, char *prefix, size_t cap)
{
	prefix[0] = '\0';
	for (bool again = true; again;) {
		again = false;
		for (size_t k = 0; k < sizeof(wrappers) / sizeof(wrappers[0]); k++) {
			char probe[64];
			snprintf(probe, sizeof(probe), "%s%s", prefix, wrappers[k]);
			if (strlen(probe) < cap && all_have_prefix(c, probe)) {
				memcpy(prefix, probe, strlen(probe) + 1);
				again = true;
			}
		}
	}
	return strlen(prefix);
}

size_t weld__tied_embedding(const weld_ckpt *c, size_t head)
{
	static const char *const names[] = {"embed_tokens.weight", "wte.weight", "word_embeddings.weight",
					    "embed_in.weight", "tok_embeddings.weight"};
	const ckpt_tensor *h = &c->t[head];
	for (size_t i = 0; i < c->nt; i++) {
		const ckpt_tensor *e = &c->t[i];
		if (i == head || e->alias_of || e->ndim != h->ndim ||
		    memcmp(e->shape, h->shape, sizeof(uint64_t) * e->ndim) != 0)
			continue;
		size_t n = strlen(e->name);
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			size_t m = strlen(names[k]);
			if (n >= m && strcmp(e->name + n - m, names[k]) == 0)
				return i;
		}
	}
	return SIZE_MAX;
}
