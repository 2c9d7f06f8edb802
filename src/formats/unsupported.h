/*
 * Checkpoint formats weld recognises but does not read (unsupported.c):
 * refused with WELD_ERR_UNSUPPORTED and one line naming the format and what
 * gave it away, instead of a "no checkpoint found" that reads like the
 * user's mistake.
 */
#ifndef WELD_FORMATS_UNSUPPORTED_H
#define WELD_FORMATS_UNSUPPORTED_H

#include "util/util.h"

typedef enum weld_foreign {
	WELD_FOREIGN_DCP,          /* PyTorch Distributed Checkpoint (FSDP, torchtitan) */
	WELD_FOREIGN_MEGATRON,     /* Megatron-LM's own layout and files */
	WELD_FOREIGN_DS_UNIVERSAL, /* DeepSpeed universal checkpoint (ds_to_universal) */
	WELD_FOREIGN_PEFT,         /* a PEFT (LoRA...) adapter without its base model */
	WELD_FOREIGN_GGUF,         /* llama.cpp's file format */
} weld_foreign;

/*
 * WELD_ERR_UNSUPPORTED with "PATH: <the format> (EVIDENCE); <what weld says
 * about it>", EVIDENCE naming what PATH holds or is that gave it away.
 */
weld_status weld__foreign_fail(weld_error *err, const char *path, weld_foreign kind, const char *evidence);

/*
 * Folder DIR, in which no format weld reads was found: WELD_ERR_UNSUPPORTED
 * when it is one of the formats above, else WELD_OK (nothing recognised;
 * the caller says what it did not find).
 */
weld_status weld__unsupported_folder(const char *dir, weld_error *err);

/*
 * The file PATH, whose first N bytes are HEAD, before it is read as weights:
 * refused by its name, its neighbours or its magic, else WELD_OK.
 */
weld_status weld__unsupported_file(const char *path, const uint8_t *head, size_t n, weld_error *err);

/* A DeepSpeed tag folder about to be read: refused when it is a universal checkpoint, else WELD_OK. */
weld_status weld__unsupported_ds_tag(const char *tag_dir, weld_error *err);

#endif /* WELD_FORMATS_UNSUPPORTED_H */
