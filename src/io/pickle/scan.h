/* The pickle opcode walker behind weld_scan_file (scan.c there explains it). */
#ifndef WELD_PICKLE_SCAN_H
#define WELD_PICKLE_SCAN_H

#include "util/util.h"

typedef struct weld_pk_scan_global {
	char *module, *name; /* malloc'd, Python 3 spelling; NULL when unknown */
	const char *why;     /* static text for unknown or refused-getattr ones */
	size_t offset;
	bool allowed;
	bool plain_class, getattr, getattr_used, getattr_misused;
	bool getattr_target; /* an enum getattr may fetch members of (weld__pk_getattr_target) */
	bool misused;        /* called by OBJ or INST, or its attributes set by BUILD: the reader refuses both */
} weld_pk_scan_global;

typedef struct weld_pk_scan {
	weld_pk_scan_global *globals;
	size_t n, cap;
	const char *const *allow; /* the user's extra classes ("module.Name"), as the reader takes them */
	size_t nallow;
} weld_pk_scan;

/*
 * Walks one pickle of DATA[0..LEN) up to its STOP, appending the globals it
 * references to SC; *CONSUMED gets the bytes walked. WELD_ERR_FORMAT with
 * the opcode offset when it cannot be walked (the globals seen so far stay).
 */
weld_status weld__pk_scan(weld_pk_scan *sc, const uint8_t *data, size_t len, size_t *consumed, weld_error *err);

#endif /* WELD_PICKLE_SCAN_H */
