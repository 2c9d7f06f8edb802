#ifndef WELD_CKPT_H
#define WELD_CKPT_H
#include "util/util.h"
#include "io/zip.h"
typedef struct weld_ckpt {
	int tensors;
	struct { int a, b; } range;
} weld_ckpt;
int weld__ckpt_open(weld_ckpt *c, const char *path, int flags);
#endif
