/* Weight file names (folder.h). */
#include "output/folder.h"

#include <string.h>

bool weld_is_weight_file(const char *name)
{
	/*
	 * By suffix, as vLLM and transformers glob: this covers shards,
	 * consolidated*.safetensors, every *.index.json, and the torch-saved
	 * training state (optimizer.pt, scheduler.pt, scaler.pt,
	 * rng_state*.pth, training_args.bin).
	 */
	static const char *const suffixes[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
					       ".h5", ".msgpack", ".gguf", ".index.json"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (weld__has_suffix(name, suffixes[i]))
			return true;
	return false;
}
