/* Writers of weights files (writer.h). */
#include "output/writer.h"

#include <stdio.h>
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
	free(w->files);
	free(w->index);
	free(w);
}

weld_status weld_writer_layout(weld_writer *w, weld_plan *p, uint64_t *total, weld_error *err)
{
	for (size_t i = 0; i < p->nt; i++)
		p->t[i].file = 0;
	weld_status s = w->iface->layout(w, p, total, err);
	if (s || w->nfiles)
		return s;
	/* One file: the kind's own name. */
	if (!(w->files = calloc(1, sizeof(*w->files))))
		return weld__nomem(err);
	snprintf(w->files[0].name, sizeof(w->files[0].name), "%s", w->iface->file_name);
	w->files[0].size = *total;
	w->nfiles = 1;
	return WELD_OK;
}
