/*
 * What every layer of the library shares: overflow-checked arithmetic, error
 * reporting, allocation, input files and paths, CRC-32, UTF-8, the hash
 * table and a pointer set on it, dtype names. Never included by the
 * CLI (src/cli/), which sees only include/weld.h.
 */
#ifndef WELD_UTIL_H
#define WELD_UTIL_H

#include "weld.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define WELD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WELD_PRINTF(f, a)
#endif

/*
 * Overflow-checked arithmetic for every size or offset that came from a file.
 * Each returns true on success and false when the result would not fit.
 */
static inline bool weld__add_u64(uint64_t *out, uint64_t a, uint64_t b)
{
	return !__builtin_add_overflow(a, b, out);
}
static inline bool weld__mul_u64(uint64_t *out, uint64_t a, uint64_t b)
{
	return !__builtin_mul_overflow(a, b, out);
}
static inline bool weld__add_size(size_t *out, size_t a, size_t b)
{
	return !__builtin_add_overflow(a, b, out);
}
static inline bool weld__mul_size(size_t *out, size_t a, size_t b)
{
	return !__builtin_mul_overflow(a, b, out);
}

/*
 * Set ERR (may be NULL) to STATUS and a formatted one-line message; returns
 * STATUS so that `return weld__fail(err, WELD_ERR_FORMAT, "...")` is one line.
 */
weld_status weld__fail(weld_error *err, weld_status status, const char *fmt, ...) WELD_PRINTF(3, 4);
/* Prefix the message already in ERR with "PREFIX: " (e.g. a file name). */
weld_status weld__prefix(weld_error *err, const char *fmt, ...) WELD_PRINTF(2, 3);
/* WELD_ERR_NOMEM with a fixed message. */
weld_status weld__nomem(weld_error *err);

/* Allocation helpers: NULL on overflow or exhaustion (caller reports NOMEM). */
void *weld__calloc(size_t n, size_t size);
void *weld__reallocarray(void *p, size_t n, size_t size);
char *weld__strdup(const char *s);
char *weld__strndup(const char *s, size_t n);
/* FMT formatted into a string of its own size, malloc'd. */
char *weld__format(const char *fmt, ...) WELD_PRINTF(1, 2);
/* NOTE appended to the one-line notice BUF (of CAP bytes), after "; " when BUF holds one already; cut to fit. */
void weld__append_note(char *buf, size_t cap, const char *note);

/*
 * The first string of NAMES[0..N) that appears twice, in *DUP (NULL when
 * none), in O(n log n). false only when out of memory.
 */
bool weld__find_duplicate(const char *const *names, size_t n, const char **dup);
/* Whether S ends with SUFFIX. */
bool weld__has_suffix(const char *s, const char *suffix);
/* Frees the N strings of LIST and LIST (either may be NULL). */
void weld__free_strings(char **list, size_t n);

/* ------------------------------------------------------------------------- */
/* Input files: opened once, read with pread, never slurped.                  */

/*
 * An input file. Its descriptor comes from a process-wide cache that holds
 * at most a budget of them (see weld__file_cache_budget): a file whose
 * descriptor was closed to make room is reopened on its next read, and must
 * then still be the file first opened (same device, inode, size and
 * modification time). So a checkpoint may have more files than the process
 * may keep open. Reads from several threads at once are safe.
 */
typedef struct weld_file {
	uint64_t size;
	char *path;
	_Atomic uint64_t bytes_read; /* every byte pread from this file */
	/* The cache's: under its lock, but PINS, which a reader drops without it. */
	int fd;                      /* -1 while closed */
	_Atomic unsigned pins;       /* reads in flight on fd: it stays open */
	uint64_t dev, ino;           /* what the file was when first opened */
	int64_t mtime_s, mtime_ns;
	struct weld_file *newer, *older; /* the cache's list of open files, newest first */
	/* A window (weld_file_window): bytes [base, base + size) of PARENT, read through it. */
	struct weld_file *parent;
	uint64_t base;
	_Atomic unsigned refs; /* the opener's reference and one per window on it */
} weld_file;

weld_status weld_file_open(weld_file **out, const char *path, weld_error *err);
/*
 * Bytes [BASE, BASE + LEN) of PARENT as a file of its own (a zip archive
 * stored inside a bigger file): offsets are relative to BASE, reads past LEN
 * are "truncated", and NAME (copied) is its path in messages. PARENT stays
 * open until it and every window on it are closed. Not thread-safe with
 * closing PARENT; reads are, as for any file.
 */
weld_status weld_file_window(weld_file **out, weld_file *parent, uint64_t base, uint64_t len, const char *name,
			     weld_error *err);
/* Closes F; a file with windows on it closes once the last of them is closed too. */
void weld_file_close(weld_file *f);
/*
 * Read exactly N bytes at OFFSET. Reading past the end of the file is a
 * WELD_ERR_FORMAT "truncated" error naming the file; other failures are
 * WELD_ERR_IO with errno's text. A file reopened and found replaced or
 * resized is WELD_ERR_IO "PATH: replaced or changed since it was first
 * opened".
 */
weld_status weld_file_pread(weld_file *f, void *buf, size_t n, uint64_t offset, weld_error *err);

/*
 * The descriptor cache's budget: the most input files it keeps open at
 * once. 0 (the default) derives it from the soft RLIMIT_NOFILE at each
 * open: the limit less WELD_FILE_HEADROOM descriptors (at most half of it)
 * left for outputs, the staging and output folders, the lock, stdio and
 * the CUDA driver. The library never changes the limit itself (the CLI
 * raises the soft limit to the hard one). Also, when open(2) fails with
 * EMFILE or ENFILE, the least recently used idle descriptor is closed and
 * the open tried again.
 */
#define WELD_FILE_HEADROOM 64
void weld__file_cache_budget(size_t budget);
/* Input file descriptors the cache holds now, and open(2) calls it made in all. */
size_t weld__file_cache_held(void);
uint64_t weld__file_cache_opens(void);
/* Write all N bytes at OFFSET of FD (PATH names it in errors), retrying short writes. */
weld_status weld_pwrite_all(int fd, const char *path, const void *buf, size_t n, uint64_t offset, weld_error *err);

/*
 * UTF-8: the length of the valid prefix of S[0..N) (N when all of it is
 * valid). SURROGATES: accept encoded U+D800..U+DFFF, as Python's pickle and
 * torch do ("surrogatepass"); JSON readers do not.
 */
size_t weld__utf8_valid_len(const void *s, size_t n, bool surrogates);
bool weld__utf8_valid(const void *s, size_t n, bool surrogates);
/* The code point at S[*I] of text already validated; *I moves past it. */
uint32_t weld__utf8_next(const uint8_t *s, size_t *i);

/* Paths and small files. */

/* "DIR/NAME" (no doubled '/'), malloc'd; NULL when out of memory. */
char *weld__path_join(const char *dir, const char *name);
/* Whether PATH is (after symlinks) a regular file / a folder. */
bool weld__is_file(const char *path);
bool weld__is_dir(const char *path);
/*
 * The whole file PATH, NUL-terminated, for small files (indexes, configs,
 * manifests, `latest`); over MAX bytes is WELD_ERR_LIMIT naming the file.
 */
weld_status weld__read_small_file(const char *path, size_t max, char **out, size_t *len, weld_error *err);
/*
 * PATH (at most MAX bytes) parsed by cJSON; "PATH: not valid JSON" when it
 * does not parse, "PATH: not valid JSON (trailing data after the value at byte N)"
 * when more than white space follows the value, and likewise for a leading
 * byte order mark: Python's json.loads, and so transformers, refuses both.
 * Still accepted where Python refuses: control characters as white space.
 * Refused where Python accepts: NaN and Infinity. Free *OUT with cJSON_Delete.
 */
struct cJSON;
weld_status weld__read_json_file(const char *path, size_t max, struct cJSON **out, weld_error *err);
/*
 * weld__read_json_file, but a whole number past 2^53 (which a double would
 * round) comes back exact, as a raw node (cJSON_IsRaw) holding its digits.
 */
weld_status weld__read_json_file_exact(const char *path, size_t max, struct cJSON **out, weld_error *err);

/*
 * The names in DIR but "." and "..", sorted so that every result and message
 * is deterministic. Free with weld__free_strings.
 */
weld_status weld__list_dir(const char *dir, char ***names, size_t *count, weld_error *err);
/*
 * PATH removed, with everything in it when it is a folder; symbolic links
 * are removed, never followed. false when some of it stays.
 */
bool weld__remove_tree(const char *path);

/* Side files (config.json, tokenizer files, weld.json) are never larger than this. */
#define WELD_SIDE_FILE_MAX ((uint64_t)64 << 20)

/*
 * A growable byte buffer for building headers and small files. The first
 * failed allocation sets FAILED and later appends do nothing, so a builder
 * checks once at the end. A zeroed struct is an empty buffer; free(p).
 */
typedef struct weld_buf {
	uint8_t *p;
	size_t len, cap;
	bool failed;
} weld_buf;
void weld__buf_put(weld_buf *b, const void *data, size_t n);
void weld__buf_str(weld_buf *b, const char *s);
/* V in decimal. */
void weld__buf_u64(weld_buf *b, uint64_t v);
/* The low N bytes (at most 8) of V, little-endian. */
void weld__buf_le(weld_buf *b, uint64_t v, size_t n);
/* N bytes of C. */
void weld__buf_fill(weld_buf *b, uint8_t c, size_t n);

/* zlib-compatible CRC-32 of LEN bytes, continuing from CRC (start from 0). */
uint32_t weld__crc32(uint32_t crc, const void *data, size_t len);
/* The CRC-32 of A's bytes followed by LEN_B bytes whose CRC-32 is B, without the bytes. */
uint32_t weld__crc32_combine(uint32_t a, uint32_t b, uint64_t len_b);

/* ------------------------------------------------------------------------- */
/*
 * weld_map: the one hash table of the library, for lookups that would
 * otherwise scan a list per item (names, tied views, zip records, visited
 * pickle nodes).
 *
 * It maps keys to values that index the caller's own items, and it keeps
 * each value with its key's hash, never the key: a key is found by hashing
 * it and asking the caller's kind whether the item a value stands for has
 * that key. So the items may live in an array that moves as it grows, no
 * key is copied, and any kind of key (a string, a tensor view, a file and
 * offset) uses the same table. Open addressing with linear probing, never
 * more than half full, no removal; time and memory linear in the keys.
 */

/* "No value": what a lookup of a missing key returns; never a value itself. */
#define WELD_MAP_NONE SIZE_MAX

typedef struct weld_map weld_map;

/* How a map finds its keys. */
typedef struct weld_map_kind {
	/* KEY's hash: keys that HOLDS calls equal must hash alike. */
	uint64_t (*hash)(const void *key);
	/* true when the item VALUE stands for has key KEY (M's ctx and name_of describe the items). */
	bool (*holds)(const weld_map *m, const void *key, size_t value);
} weld_map_kind;

typedef struct weld_map_slot {
	uint64_t hash;
	size_t value; /* WELD_MAP_NONE: an empty slot */
} weld_map_slot;

struct weld_map {
	const weld_map_kind *kind;
	const void *ctx;                                   /* the caller's items, for KIND's holds */
	const char *(*name_of)(const void *ctx, size_t i); /* name maps: item I's name */
	weld_map_slot *slots;
	size_t cap, n;
};

/* M, empty, finding keys as KIND says, with CTX for its holds. Allocates nothing. */
void weld_map_init(weld_map *m, const weld_map_kind *kind, const void *ctx);
/*
 * M, empty, from names (strings, compared with strcmp) to indexes of the
 * caller's items: item I of CTX is named NAME_OF(CTX, I).
 */
void weld_map_init_names(weld_map *m, const char *(*name_of)(const void *ctx, size_t i), const void *ctx);
/* Room for N keys in all, so that adding up to N allocates nothing more. false when out of memory. */
bool weld_map_reserve(weld_map *m, size_t n);
/* The value stored under KEY, or WELD_MAP_NONE. */
size_t weld_map_get(const weld_map *m, const void *key);
/*
 * Stores VALUE (not WELD_MAP_NONE) under KEY unless KEY is there already:
 * *HAD gets the value already stored (the first one added wins), or
 * WELD_MAP_NONE when VALUE was stored. false, storing nothing, when out of
 * memory (or VALUE is WELD_MAP_NONE).
 */
bool weld_map_add(weld_map *m, const void *key, size_t value, size_t *had);
/* Frees M's slots; M is then empty, of the same kind. */
void weld_map_clear(weld_map *m);

/* 64-bit hashes to build a kind's from: H continued with N bytes at P, or with V. Start from 0. */
uint64_t weld__hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t weld__hash_u64(uint64_t h, uint64_t v);

/* ------------------------------------------------------------------------- */
/* A set of pointers, for walking object graphs that share nodes (zeroed: empty). */

typedef struct weld_ptrset {
	weld_map map;
} weld_ptrset;

/* Adds P (not NULL); *ADDED says whether it was new. false only when out of memory. */
bool weld_ptrset_add(weld_ptrset *set, const void *p, bool *added);
void weld_ptrset_clear(weld_ptrset *set);

/* ------------------------------------------------------------------------- */
/* dtypes */

/* F16, BF16, F32 or F64: the dtypes weld casts. */
bool weld__dtype_is_float(weld_dtype dtype);
/* F4, F6_E2M3, F6_E3M2: fewer than 8 bits an element, copied as bytes. */
bool weld__dtype_is_sub_byte(weld_dtype dtype);
/* torch's legacy storage class name ("FloatStorage") -> dtype. */
weld_dtype weld__dtype_from_storage_class(const char *name);
/* torch dtype attribute name ("float32", "bfloat16") -> dtype. */
weld_dtype weld__dtype_from_torch_name(const char *name);
/* "torch.float32" style name for messages and the edge fixtures. */
const char *weld__dtype_torch_name(weld_dtype dtype);

#endif /* WELD_UTIL_H */
