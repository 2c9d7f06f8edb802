/*
 * weld verify's internals, shared by its files: the report (report.c),
 * reading tensors by ranges and recomputing CRC-32s (read.c), integrity
 * (integrity.c: format, weights, manifest, size, CRC-32s, leftovers), servability
 * (servable.c: config, dtype, one format, prefixes, tied weights, tokenizer,
 * metadata; shapes.c: config sizes against tensor shapes) and the comparison
 * with a source (against.c).
 */
#ifndef WELD_VERIFY_VERIFY_H
#define WELD_VERIFY_VERIFY_H

#include "backend/backend.h"
#include "formats/ckpt.h"
#include "output/manifest.h"

struct cJSON;

/* Reads and comparisons go this many bytes at a time. */
#define WELD_VERIFY_CHUNK (8u << 20)
/* Lines in one report; verify's checks are fewer. */
#define WELD_VERIFY_MAX_CHECKS 32
/* Names quoted in one detail before "and N more". */
#define WELD_VERIFY_LIST_MAX 3

/* An output tensor by name, for bsearch. */
typedef struct weld_vf_name {
	const char *name;
	size_t index;
} weld_vf_name;

typedef struct weld_verifier {
	const char *dir;
	weld_verify_report *r;
	weld_backend *b;
	char **files; /* regular, non-hidden files in DIR, sorted */
	size_t nfiles;
	weld_manifest *manifest;                  /* weld.json when present and well-formed */
	weld_check_level manifest_level;          /* when weld.json is absent or malformed: WARN or FAIL... */
	char manifest_why[WELD_CHECK_DETAIL_MAX]; /* ...and why; empty when it is usable */
	weld_ckpt *out;                           /* the output's weights; NULL when they could not be opened */
	weld_vf_name *by_name;                    /* out's tensors, sorted by name */
	size_t nby;
	struct cJSON *config; /* config.json when present and a JSON object */
	int tie;              /* config's tie_word_embeddings: 1, 0, or -1 when not a bool */
} weld_verifier;

/* report.c */
void weld__vf_check(weld_verify_report *r, const char *name, weld_check_level level, const char *fmt, ...)
	WELD_PRINTF(4, 5);
void weld__vf_appendf(char *buf, size_t cap, const char *fmt, ...) WELD_PRINTF(3, 4);
/* Up to WELD_VERIFY_LIST_MAX of NAMES quoted, then "and N more". */
void weld__vf_append_names(char *buf, size_t cap, const char *const *names, size_t n);
/* SHAPE as "[509, 64]" into BUF. */
void weld__vf_shape_str(char *buf, size_t cap, const uint64_t *shape, size_t ndim);
/* MESSAGE without V's folder in front of the file names it starts with. */
const char *weld__vf_in_dir(const weld_verifier *v, const char *message);
const char *weld__vf_base_name(const char *path);
/* Orders weld_vf_name by name. */
int weld__vf_cmp_name(const void *a, const void *b);
/* Index of NAME among V's output tensors, or SIZE_MAX. */
size_t weld__vf_find_out(const weld_verifier *v, const char *name);
bool weld__vf_has_file(const weld_verifier *v, const char *name);

/* read.c */
/* *EQ: tensors A of CA and B of CB hold the same bytes (same size assumed). */
weld_status weld__vf_same_bytes(weld_ckpt *ca, size_t a, weld_ckpt *cb, size_t b, bool *eq, weld_error *err);

/* Bytes of one tensor of a checkpoint, read a range at a time. */
typedef struct weld_vf_reader {
	weld_file *f;
	uint64_t offset;
	uint8_t *whole; /* the tensor gathered, when it is not one run in a file */
} weld_vf_reader;
weld_status weld__vf_reader_open(weld_vf_reader *tr, weld_ckpt *c, size_t i, weld_error *err);
weld_status weld__vf_reader_read(weld_vf_reader *tr, void *buf, size_t n, uint64_t at, weld_error *err);
void weld__vf_reader_close(weld_vf_reader *tr);

/* A byte range of a file whose CRC-32 is wanted. */
typedef struct weld_vf_span {
	uint64_t offset, len;
	uint32_t crc; /* out */
} weld_vf_span;
/* CRC-32 of all of F and of each span (which must lie inside it), computed by backend B. */
weld_status weld__vf_crc_file(weld_backend *b, weld_file *f, weld_vf_span *spans, size_t n, uint32_t *file_crc,
			      weld_error *err);

/* integrity.c */
void weld__vf_load_manifest(weld_verifier *v);
weld_status weld__vf_open_output(weld_verifier *v, weld_error *err);
weld_status weld__vf_check_weight_files(weld_verifier *v, weld_error *err);
void weld__vf_check_manifest_tensors(weld_verifier *v);
weld_status weld__vf_check_size_and_crcs(weld_verifier *v, weld_error *err);
weld_status weld__vf_check_leftovers(weld_verifier *v, weld_error *err);
/* weld.json's record of the cross-check against HF 16-bit weights, when there is one (needs v->manifest). */
void weld__vf_check_cross_check(weld_verifier *v);

/* index.c: a sharded output's index lists every stored tensor where it is, and their total size. */
weld_status weld__vf_check_index(weld_verifier *v, weld_error *err);

/* servable.c */
void weld__vf_check_config(weld_verifier *v);
void weld__vf_check_config_dtype(weld_verifier *v);
weld_status weld__vf_check_one_format(weld_verifier *v, weld_error *err);
void weld__vf_check_prefix(weld_verifier *v);
weld_status weld__vf_check_tied(weld_verifier *v, weld_error *err);
void weld__vf_check_tokenizer(weld_verifier *v);
weld_status weld__vf_check_metadata(weld_verifier *v, weld_error *err);

/* shapes.c: config.json's sizes against the tensors' shapes (no line for an unknown model_type) */
weld_status weld__vf_check_config_shapes(weld_verifier *v, weld_error *err);

/* against.c */
weld_status weld__vf_check_against(weld_verifier *v, const char *against, weld_error *err);

#endif /* WELD_VERIFY_VERIFY_H */
