/*
 * weld_scan_file: every pickle in one file, walked without loading it
 * (src/io/pickle/scan.c), with the allowlist's verdict on each global.
 * A torch zip: each *.pkl member. A legacy torch file: its five pickles.
 * Anything else: pickles one after another to the end of the file.
 */
#include "io/dcp_meta.h"
#include "io/pickle/internal.h"
#include "io/pickle/scan.h"
#include "io/zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Legacy torch files start with a pickled magic number: PROTO 2, LONG1 10 bytes. */
static const uint8_t legacy_head[14] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
#define MAX_PICKLE ((uint64_t)1 << 30)

const char *weld_scan_verdict_name(weld_scan_verdict v)
{
	return v == WELD_SCAN_SAFE ? "safe" : v == WELD_SCAN_UNSAFE ? "unsafe" : "malformed";
}

void weld_scan_report_free(weld_scan_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nglobals; i++) {
		free(r->globals[i].module);
		free(r->globals[i].name);
		free(r->globals[i].why);
		free((char *)r->globals[i].pickle);
	}
	free(r->globals);
	free(r->problem);
	free(r->path);
	free(r);
}

/* Moves SC's globals (from pickle WHICH) into R. */
static weld_status take(weld_scan_report *r, weld_pk_scan *sc, const char *which, weld_error *err)
{
	weld_scan_global *g = weld__reallocarray(r->globals, r->nglobals + sc->n + 1, sizeof(*g));
	if (!g)
		return weld__nomem(err);
	r->globals = g;
	for (size_t i = 0; i < sc->n; i++) {
		weld_pk_scan_global *s = &sc->globals[i];
		weld_scan_global *d = &r->globals[r->nglobals++];
		*d = (weld_scan_global){.module = s->module, .name = s->name, .offset = s->offset, .allowed = s->allowed};
		d->pickle = weld__strdup(which);
		d->why = s->why ? weld__strdup(s->why) : NULL;
		if (!d->pickle || (s->why && !d->why))
			return weld__nomem(err);
	}
	sc->n = 0;
	return WELD_OK;
}

/* Walks the pickles of DATA[0..LEN): MAX of them (0: to the end), named WHICH (or "pickle N"). */
static weld_status scan_buf(weld_scan_report *r, const uint8_t *data, size_t len, size_t max, const char *which,
			    const weld_open_options *o, weld_error *err)
{
	weld_pk_scan sc = {.allow = o->allow_globals, .nallow = o->nallow_globals};
	weld_status s = WELD_OK;
	size_t pos = 0;
	for (size_t k = 1; (max == 0 || k <= max) && (pos < len || k == 1); k++) {
		char name[32];
		if (!which)
			snprintf(name, sizeof(name), "pickle %zu", k);
		size_t used = 0;
		weld_error e = {0};
		weld_status ws = weld__pk_scan(&sc, data + pos, len - pos, &used, &e);
		if ((s = take(r, &sc, which ? which : name, err)))
			break;
		r->npickles++;
		if (ws == WELD_ERR_NOMEM) {
			s = weld__nomem(err);
			break;
		}
		if (ws) {
			r->problem = weld__format("%s%s%s (at byte %zu of the file or member)", which ? which : name,
						  ": ", e.message, pos);
			break;
		}
		pos += used;
	}
	free(sc.globals);
	return s;
}

static weld_status scan_zip(weld_scan_report *r, weld_file *f, const weld_open_options *o, weld_error *err)
{
	weld_zip *z;
	weld_error e = {0};
	if (weld_zip_open(&z, f, &e)) {
		r->problem = weld__format("%s", e.message);
		return r->problem ? WELD_OK : weld__nomem(err);
	}
	weld_status s = WELD_OK;
	for (size_t i = 0; i < weld_zip_count(z) && !s && !r->problem; i++) {
		const weld_zip_entry *ent = weld_zip_entry_at(z, i);
		if (!weld__has_suffix(ent->record, ".pkl"))
			continue;
		uint8_t *buf = NULL;
		if (weld_zip_find(z, ent->record, &ent, &e) == WELD_OK && ent->size > MAX_PICKLE)
			weld__fail(&e, WELD_ERR_LIMIT, "%s is larger than 1 GiB", ent->name);
		else if (!e.message[0] && !(buf = malloc(ent->size ? ent->size : 1)))
			s = weld__nomem(err);
		else if (!e.message[0] && weld_zip_read(z, ent, buf, &e) == WELD_OK)
			s = scan_buf(r, buf, ent->size, 1, ent->name, o, err);
		if (e.message[0] && !r->problem && !(r->problem = weld__format("%s", e.message)))
			s = weld__nomem(err);
		free(buf);
	}
	weld_zip_close(z);
	return s;
}

/* A legacy file or bare pickles: the file's start, up to 1 GiB. */
static weld_status scan_plain(weld_scan_report *r, weld_file *f, const uint8_t *head, size_t nhead,
			      const weld_open_options *o, weld_error *err)
{
	bool legacy = nhead >= sizeof(legacy_head) && memcmp(head, legacy_head, sizeof(legacy_head)) == 0;
	size_t n = f->size > MAX_PICKLE ? (size_t)MAX_PICKLE : (size_t)f->size;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return weld__nomem(err);
	weld_status s = weld_file_pread(f, buf, n, 0, err);
	if (!s)
		s = scan_buf(r, buf, n, legacy ? 5 : 0, NULL, o, err);
	free(buf);
	return s;
}

/*
 * One storage window W of a .distcp (entry ST): a torch.save archive is
 * scanned as a zip; a byte item otherwise as pickles, whatever their
 * protocol (torch loads byte items with torch.load(weights_only=False));
 * a tensor's raw bytes in a safetensors-format file (SAFETENSORS) hold none.
 */
static weld_status scan_item(weld_scan_report *r, weld_file *w, const dcp_storage *st, bool st_file,
			     const weld_open_options *o, weld_error *err)
{
	uint8_t head[4] = {0};
	weld_error e = {0};
	if (weld_file_pread(w, head, st->length < 4 ? (size_t)st->length : 4, 0, &e))
		return (r->problem = weld__format("%s", e.message)) ? WELD_OK : weld__nomem(err);
	if (memcmp(head, "PK\x03\x04", 4) == 0)
		return scan_zip(r, w, o, err);
	if (!st->bytes_item && st_file)
		return WELD_OK;
	if (st->length > MAX_PICKLE)
		return (r->problem = weld__format("%s: larger than 1 GiB", w->path)) ? WELD_OK : weld__nomem(err);
	return scan_plain(r, w, head, 0, o, err);
}

/*
 * A DCP .distcp: torch.save archives (tensor chunks) and byte items one
 * after another, found only through the folder's .metadata, each scanned in
 * its window of the file (scan_item). A .distcp no entry names is not
 * scanned, and says so.
 */
static weld_status scan_distcp(weld_scan_report *r, weld_file *f, const weld_open_options *o, weld_error *err)
{
	const char *slash = strrchr(f->path, '/'), *base = slash ? slash + 1 : f->path;
	char *meta = weld__format("%.*s.metadata", (int)(base - f->path), f->path);
	if (!meta)
		return weld__nomem(err);
	dcp_meta m;
	weld_error e = {0};
	weld_status s = WELD_OK;
	uint8_t head[9] = {0};
	bool st_file = f->size >= 9 && !weld_file_pread(f, head, 9, 0, &e) && head[8] == '{', named = false;
	if (weld__dcp_meta_read(&m, meta, o->allow_globals, o->nallow_globals, &e))
		r->problem = weld__format("%s (the .metadata that says where its pickles are)", e.message);
	for (size_t i = 0; !r->problem && !s && i < m.nstorage; i++) {
		const dcp_storage *st = &m.storage[i];
		weld_file *w = NULL;
		if (strcmp(st->relative_path, base) != 0)
			continue;
		named = true;
		char *name = weld__format("%s (bytes %llu-%llu)", f->path, (unsigned long long)st->offset,
					  (unsigned long long)(st->offset + st->length));
		if (!name)
			s = weld__nomem(err);
		else if (st->transform) /* compressed, say: its pickles cannot be walked */
			weld__fail(&e, WELD_ERR_UNSUPPORTED, "%s: stored through the extension '%s', which weld cannot look inside",
				   name, st->transform);
		else if (!weld_file_window(&w, f, st->offset, st->length, name, &e))
			s = scan_item(r, w, st, st_file, o, err);
		if (e.message[0] && !r->problem && !(r->problem = weld__format("%s", e.message)))
			s = weld__nomem(err);
		weld_file_close(w);
		free(name);
	}
	if (!s && !r->problem && !named && !(r->problem = weld__format("%s: not named in %s, so not scanned", f->path, meta)))
		s = weld__nomem(err);
	weld__dcp_meta_free(&m);
	free(meta);
	return s;
}

weld_status weld_scan_file(const char *path, weld_scan_report **out, weld_error *err)
{
	return weld_scan_file_with(path, NULL, out, err);
}

weld_status weld_scan_file_with(const char *path, const weld_open_options *options, weld_scan_report **out,
				weld_error *err)
{
	static const weld_open_options defaults = WELD_OPEN_OPTIONS_INIT;
	const weld_open_options *o = options ? options : &defaults;
	if (!path || !out)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_scan_file: NULL argument");
	*out = NULL;
	for (size_t i = 0; i < o->nallow_globals; i++) {
		weld_status st = weld__pk_allow_name_check(o->allow_globals[i], err);
		if (st)
			return st;
	}
	weld_scan_report *r = weld__calloc(1, sizeof(*r));
	if (!r || !(r->path = weld__strdup(path))) {
		free(r);
		return weld__nomem(err);
	}
	weld_file *f;
	weld_status s = weld_file_open(&f, path, err);
	if (s) {
		weld_scan_report_free(r);
		return s;
	}
	uint8_t head[14] = {0};
	size_t nhead = f->size < sizeof(head) ? (size_t)f->size : sizeof(head);
	s = weld_file_pread(f, head, nhead, 0, err);
	if (!s)
		s = weld__has_suffix(path, ".distcp") ? scan_distcp(r, f, o, err)
		    : nhead >= 4 && memcmp(head, "PK\x03\x04", 4) == 0 ? scan_zip(r, f, o, err)
									 : scan_plain(r, f, head, nhead, o, err);
	weld_file_close(f);
	if (s) {
		weld_scan_report_free(r);
		return s;
	}
	r->verdict = WELD_SCAN_SAFE;
	for (size_t i = 0; i < r->nglobals; i++)
		if (!r->globals[i].allowed)
			r->verdict = WELD_SCAN_UNSAFE;
	if (r->problem)
		r->verdict = WELD_SCAN_MALFORMED;
	*out = r;
	return WELD_OK;
}
