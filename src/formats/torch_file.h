/*
 * torch.save files (zip or legacy) as sources of a checkpoint: their object
 * trees, and their tensors as fragments. Used by the HF formats (.bin files
 * and shards) and by DeepSpeed (model and optimizer states).
 */
#ifndef WELD_FORMATS_TORCH_FILE_H
#define WELD_FORMATS_TORCH_FILE_H

#include "formats/ckpt.h"
#include "io/torch.h"

/* PATH as a source of C, its torch object tree read once; *ROOT is that tree. */
weld_status weld__torch_source(weld_ckpt *c, const char *path, uint32_t *src, const weld_py **root,
			       weld_error *err);
/* Like weld__torch_source for an open file F (a window of a bigger file), taken over as weld__ckpt_add_file does. */
weld_status weld__torch_file_source(weld_ckpt *c, weld_file *f, uint32_t *src, const weld_py **root, weld_error *err);
/*
 * The torch file PATH read on its own, not as a source (to look inside it
 * without listing it among the checkpoint's files). Close *T, then *F.
 */
weld_status weld__torch_peek(const weld_ckpt *c, const char *path, weld_file **f, weld_torch **t, weld_error *err);
/* The parsed file of source SRC (opened with weld__torch_source). */
weld_torch *weld__torch_of(const weld_ckpt *c, uint32_t src);
/* Tensor NAME of C from view V of source SRC: its fragments, or an alias when V was seen already. */
/*
 * WELD_OK unless tensor V carries torch's neg or conj view bit, whose values
 * weld would copy un-negated / un-conjugated: then one error,
 * "PATH: WHAT is a negative view ..." (WHAT followed by 'NAME' when NAME is
 * not NULL). Refused rather than resolved: no reader applies a sign flip.
 */
weld_status weld__torch_plain_view(const char *path, const char *what, const char *name, const weld_py *v,
				   weld_error *err);
weld_status weld__torch_add_tensor(weld_ckpt *c, uint32_t src, const char *name, const weld_py *v, weld_error *err);
/* Every tensor under ROOT's dicts, lists and tuples, named as state-dict keys. */
weld_status weld__torch_add_tree(weld_ckpt *c, uint32_t src, const weld_py *root, weld_error *err);
/* Every tensor of the torch file PATH; *KIND says zip or legacy. */
weld_status weld__torch_add_file(weld_ckpt *c, const char *path, weld_torch_kind *kind, weld_error *err);

#endif /* WELD_FORMATS_TORCH_FILE_H */
