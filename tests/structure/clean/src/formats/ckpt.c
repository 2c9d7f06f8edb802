/* Formats know nothing of backends: not even in a comment that says
#include "backend/backend.h"
 */
#include "formats/ckpt.h"
// #include "pipeline/plan.h"

static const struct { const char *name; int id; } kinds[] = {
	{ "zip", 1 },
	{ "legacy", 2 },
};

int weld__ckpt_open(weld_ckpt *c,
		    const char *path,
		    int flags)
{
	c->tensors = kinds[flags & 1].id;
	return path[0] == '{';
}
