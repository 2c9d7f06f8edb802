/*
 * PyTorch Distributed Checkpoints (torch.distributed.checkpoint: FSDP,
 * FSDP2, torchtitan, HF Trainer + accelerate with a sharded state dict) as
 * a checkpoint: the model's tensors, each planned as fragments of the
 * chunks its .metadata lists, as torch's dcp_to_torch_save assembles them.
 */
#ifndef WELD_FORMATS_DCP_H
#define WELD_FORMATS_DCP_H

#include "formats/ckpt.h"

/* true when DIR is a DCP folder (.metadata beside *.distcp) or holds one as pytorch_model_fsdp_0/. */
bool weld__dcp_present(const char *dir);
weld_status weld__dcp_open(weld_ckpt *c, const char *dir, weld_error *err);

#endif /* WELD_FORMATS_DCP_H */
