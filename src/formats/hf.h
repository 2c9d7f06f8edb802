/* HuggingFace weights: single files and folders (index + shards, or one weights file). */
#ifndef WELD_FORMATS_HF_H
#define WELD_FORMATS_HF_H

#include "formats/ckpt.h"

/* One weights file, safetensors or torch (zip or legacy), told apart by its first bytes. */
weld_status weld__hf_open_file(weld_ckpt *c, const char *path, weld_error *err);

/* Whether DIR holds model.safetensors(.index.json) / pytorch_model.bin(.index.json). */
bool weld__hf_safetensors_present(const char *dir);
bool weld__hf_bin_present(const char *dir);
/* DIR's safetensors / .bin weights: the index and its shards when there is one. */
weld_status weld__hf_open_safetensors(weld_ckpt *c, const char *dir, weld_error *err);
weld_status weld__hf_open_bin(weld_ckpt *c, const char *dir, weld_error *err);

#endif /* WELD_FORMATS_HF_H */
