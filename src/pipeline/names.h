/*
 * State-dict naming conventions the plan applies and verify checks: wrapper
 * prefixes (DDP/DeepSpeed 'module.', torch.compile '_orig_mod.') and the
 * input embedding a tied lm_head.weight stands for.
 */
#ifndef WELD_PIPELINE_NAMES_H
#define WELD_PIPELINE_NAMES_H

#include "formats/ckpt.h"

/*
 * The wrapper prefixes every tensor name of C carries (nested ones too, as
 * "module._orig_mod."), into PREFIX (CAP bytes); returns its length, 0 when
 * the names carry none.
 */
size_t weld__wrapper_prefix(const weld_ckpt *c, char *prefix, size_t cap);

/* The K-th wrapper prefix ("module.", then "_orig_mod."); NULL past the last. */
const char *weld__wrapper(size_t k);

/*
 * The input embedding that the lm_head.weight at tensor HEAD of C is tied
 * to: a tensor (not an alias) of the same shape under a usual embedding
 * name; SIZE_MAX when there is none.
 */
size_t weld__tied_embedding(const weld_ckpt *c, size_t head);

#endif /* WELD_PIPELINE_NAMES_H */
