/* DeepSpeed checkpoint folders (a save folder with `latest`, or a tag folder). */
#ifndef WELD_FORMATS_DEEPSPEED_H
#define WELD_FORMATS_DEEPSPEED_H

#include "formats/ckpt.h"

/* Whether DIR holds `latest` or DeepSpeed model states files. */
bool weld__deepspeed_present(const char *dir);
/* The tensors zero_to_fp32 would rebuild from DIR, as fragments of the fp32 masters. */
weld_status weld__deepspeed_open(weld_ckpt *c, const char *dir, weld_error *err);

#endif /* WELD_FORMATS_DEEPSPEED_H */
