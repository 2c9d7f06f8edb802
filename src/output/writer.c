/* Writers of weights files (writer.h). */
#include "output/writer.h"

#include <stdlib.h>

weld_status weld_writer_new(weld_writer **out, const weld_writer_iface *kind, weld_error *err)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return weld__nomem(err);
	(*out)->iface = kind;
	return WELD_OK;
}

void weld_writer_free(weld_writer *w)
{
	if (!w)
		return;
	if (w->state)
		w->iface->free_state(w->state);
	free(w);
}
