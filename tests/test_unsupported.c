/*
 * Formats weld recognises but does not read: each is refused with
 * WELD_ERR_UNSUPPORTED and its exact one-line message, from a minimal fake
 * folder or file made here (the Megatron files are real torch.save output:
 * tests/fixtures/make_unsupported.py). Beside each, what must stay readable:
 * a folder that also holds full weights, a normal DeepSpeed tag.
 */
#include "util/util.h"
#include "test_util.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* Folders along REL (in the scratch folder), created; REL's last part too when DIR. */
static void make_parents(const char *rel, bool dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", scratch(rel));
	for (char *p = path + strlen(scratch_dir) + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
			*p = '/';
		}
	if (dir)
		CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* Files (a few bytes each) and, for names ending in '/', folders, made under the scratch folder. */
static void tree(const char *const *rels)
{
	for (; *rels; rels++) {
		size_t n = strlen(*rels);
		make_parents(*rels, (*rels)[n - 1] == '/');
		if ((*rels)[n - 1] != '/')
			CHECK(write_file(scratch(*rels), "weld", 4) == 0);
	}
}

static void copy(const char *from, const char *rel)
{
	size_t n;
	uint8_t *d = read_file(from, &n);
	make_parents(rel, false);
	CHECK(d && write_file(scratch(rel), d, n) == 0);
	free(d);
}

/* Opening scratch REL (as TYPE) is refused as unsupported: "<path>: WHAT". */
static void refused_as(const char *rel, weld_input_type type, const char *what)
{
	char msg[8192];
	snprintf(msg, sizeof(msg), "%s: %s", scratch(rel), what);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_ERR(weld_ckpt_open_as(&c, scratch(rel), type, &err), WELD_ERR_UNSUPPORTED, &err, msg);
	CHECK(c == NULL);
}

static void refused(const char *rel, const char *what)
{
	refused_as(rel, WELD_INPUT_AUTO, what);
}

/* Opening scratch REL as TYPE finds nothing weld reads, and nothing it recognises either. */
static void not_found_as(const char *rel, weld_input_type type)
{
	char msg[8192];
	snprintf(msg, sizeof(msg),
		 "%s: no checkpoint found (no model.safetensors, pytorch_model.bin, index file or DeepSpeed tag)",
		 scratch(rel));
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_ERR(weld_ckpt_open_as(&c, scratch(rel), type, &err), WELD_ERR_FORMAT, &err, msg);
	CHECK(c == NULL);
}

/* Opening scratch REL succeeds as FORMAT. */
static void readable(const char *rel, weld_format format)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_OK(weld_ckpt_open(&c, scratch(rel), &err), &err);
	CHECK(c && weld_ckpt_format(c) == format);
	weld_ckpt_free(c);
}

#define NOT_YET "; weld does not read this format yet"

#define DCP_THEN "; convert the folder that holds its .metadata (weld batch converts a run of them)"

/* tree()'s filler text where a pickle should be: the folder was taken for a DCP and its .metadata read. */
static void dcp_read(const char *path, const char *metadata)
{
	weld_error err = {0};
	weld_ckpt *c = NULL;
	char want[4200];
	snprintf(want, sizeof(want), "%s: unknown pickle opcode 0x77 at offset 0", scratch(metadata));
	CHECK(weld_ckpt_open(&c, scratch(path), &err) == WELD_ERR_FORMAT && strcmp(err.message, want) == 0);
	if (strcmp(err.message, want) != 0)
		fprintf(stderr, "  got \"%s\"\n  want \"%s\"\n", err.message, want);
}

/* DCP folders are read (tests/cli_dcp.sh has real ones); only a shard alone, or a folder of them, is named. */
static void check_dcp(void)
{
	tree((const char *[]){"dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp", NULL});
	dcp_read("dcp", "dcp/.metadata");
	refused("dcp/__1_0.distcp", "a PyTorch Distributed Checkpoint (a *.distcp shard of one)" DCP_THEN);

	/* HF Trainer + accelerate, FSDP SHARDED_STATE_DICT: the model's DCP is read, never the optimizer's. */
	tree((const char *[]){"checkpoint-10/pytorch_model_fsdp_0/.metadata",
			      "checkpoint-10/pytorch_model_fsdp_0/__0_0.distcp", "checkpoint-10/optimizer_0/.metadata",
			      "checkpoint-10/optimizer_0/__0_0.distcp",
			      "checkpoint-10/config.json", "checkpoint-10/trainer_state.json", "checkpoint-10/rng_state_0.pth",
			      "checkpoint-10/scheduler.pt", NULL});
	dcp_read("checkpoint-10", "checkpoint-10/pytorch_model_fsdp_0/.metadata");

	/* torchtitan: checkpoint/step-N/ folders, each a DCP. */
	tree((const char *[]){"titan/step-10/.metadata", "titan/step-10/__0_0.distcp", "titan/step-20/.metadata",
			      "titan/step-20/__0_0.distcp", NULL});
	refused("titan", "a PyTorch Distributed Checkpoint (step-10/ holds .metadata + __0_0.distcp)" DCP_THEN);
	dcp_read("titan/step-20", "titan/step-20/.metadata");

	/* .distcp files without .metadata are nothing weld can name. */
	tree((const char *[]){"no_meta/__0_0.distcp", NULL});
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK(weld_ckpt_open(&c, scratch("no_meta"), &err) == WELD_ERR_FORMAT);
}

static void check_megatron(void)
{
	const char *file = fixture("megatron/model_optim_rng.pt");
	tree((const char *[]){"mega/latest_checkpointed_iteration.txt", "mega/iter_0000010/mp_rank_00/", NULL});
	copy(file, "mega/iter_0000010/mp_rank_00/model_optim_rng.pt");
	refused("mega", "a Megatron-LM checkpoint (latest_checkpointed_iteration.txt)" NOT_YET);
	refused("mega/iter_0000010", "a Megatron-LM checkpoint (mp_rank_00/model_optim_rng.pt)" NOT_YET);
	refused("mega/iter_0000010/mp_rank_00", "a Megatron-LM checkpoint (model_optim_rng.pt)" NOT_YET);
	refused("mega/iter_0000010/mp_rank_00/model_optim_rng.pt",
		"a Megatron-LM checkpoint (named model_optim_rng.pt)" NOT_YET);

	/* No tracker file; tensor and pipeline ranks; no optimizer (model_rng.pt). */
	tree((const char *[]){"mega_pp/iter_0000200/mp_rank_00_000/model_rng.pt",
			      "mega_pp/iter_0000200/mp_rank_00_001/model_rng.pt", NULL});
	refused("mega_pp", "a Megatron-LM checkpoint (iter_0000200/mp_rank_00_000/model_rng.pt)" NOT_YET);
	refused("mega_pp/iter_0000200", "a Megatron-LM checkpoint (mp_rank_00_000/model_rng.pt)" NOT_YET);
	refused("mega_pp/iter_0000200/mp_rank_00_001/model_rng.pt", "a Megatron-LM checkpoint (named model_rng.pt)" NOT_YET);

	/* Megatron's distributed format: its files beside a DCP, named Megatron rather than DCP. */
	tree((const char *[]){"mega_dist/iter_0000300/metadata.json", "mega_dist/iter_0000300/common.pt",
			      "mega_dist/iter_0000300/.metadata", "mega_dist/iter_0000300/__0_0.distcp", NULL});
	refused("mega_dist/iter_0000300", "a Megatron-LM checkpoint (metadata.json + common.pt)" NOT_YET);

	/* An iter_N folder of HF weights (a hand-written loop's) is no Megatron run: batch and convert both read it. */
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), "loop/iter_0000100/model.safetensors");
	not_found_as("loop", WELD_INPUT_AUTO);
	readable("loop/iter_0000100", WELD_FORMAT_SAFETENSORS);

	/* Renamed, by its dict: as a file, as a folder's only weights, and from before checkpoint_version. */
	copy(file, "renamed/megatron.pt");
	refused("renamed/megatron.pt", "a Megatron-LM checkpoint (its dict has 'checkpoint_version')" NOT_YET);
	copy(file, "as_hf/pytorch_model.bin");
	char msg[4096];
	snprintf(msg, sizeof(msg),
		 "%s/pytorch_model.bin: a Megatron-LM checkpoint (its dict has 'checkpoint_version')" NOT_YET,
		 scratch("as_hf"));
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_ERR(weld_ckpt_open(&c, scratch("as_hf"), &err), WELD_ERR_UNSUPPORTED, &err, msg);
	copy(fixture("megatron/pre_version.pt"), "renamed/old.bin");
	refused("renamed/old.bin", "a Megatron-LM checkpoint (its dict has 'iteration', 'args' and 'model')" NOT_YET);
}

static void check_universal(void)
{
	const char *states = fixture("zero/s1_w1_bf16/global_step1/mp_rank_00_model_states.pt");
	static const char *const uni[] = {"uni/latest_universal", "uni/global_step1_universal/zero/optimizer_state.pt",
					  "uni/global_step1_universal/zero/fc.weight/fp32.pt",
					  "uni/global_step1_universal/zero/fc.weight/exp_avg.pt", NULL};
	tree(uni);
	copy(states, "uni/global_step1_universal/mp_rank_00_model_states.pt");
	refused("uni", "a DeepSpeed universal checkpoint (latest_universal, and no latest); weld does not read this "
		       "format yet; convert the ZeRO checkpoint it was made from");
	/* The tag itself holds model states, so DeepSpeed's reader finds it (and would take it for stage 0). */
	const char *why = "a DeepSpeed universal checkpoint (zero/fc.weight/fp32.pt); weld does not read this format "
			  "yet; convert the ZeRO checkpoint it was made from";
	refused("uni/global_step1_universal", why);
	refused_as("uni/global_step1_universal", WELD_INPUT_ZERO, why);
	/* `latest` naming the universal tag, with --type zero: the tag folder is named. */
	CHECK(write_file(scratch("uni/latest"), "global_step1_universal", 22) == 0);
	char msg[4096];
	snprintf(msg, sizeof(msg), "%s/global_step1_universal: %s", scratch("uni"), why);
	weld_error err = {0};
	weld_ckpt *c = NULL;
	CHECK_ERR(weld_ckpt_open_as(&c, scratch("uni"), WELD_INPUT_ZERO, &err), WELD_ERR_UNSUPPORTED, &err, msg);
	/* Without model states (as from a ZeRO-3 run with no files copied), the folder table knows it. */
	tree((const char *[]){"uni3/zero/fc.weight/fp32.pt", NULL});
	refused("uni3", "a DeepSpeed universal checkpoint (zero/fc.weight/fp32.pt); weld does not read this format "
			"yet; convert the ZeRO checkpoint it was made from");

	/* A save folder whose `latest` names a normal tag stays readable, universal tag beside it or not. */
	copy(states, "both/global_step1/mp_rank_00_model_states.pt");
	copy(fixture("zero/s1_w1_bf16/global_step1/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"),
	     "both/global_step1/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt");
	CHECK(write_file(scratch("both/latest"), "global_step1", 12) == 0);
	tree((const char *[]){"both/latest_universal", "both/global_step1_universal/zero/fc.weight/fp32.pt", NULL});
	readable("both", WELD_FORMAT_DEEPSPEED);
}

static void check_peft(void)
{
	const char *st = fixture("qwen2_tied/st_single_fp32/model.safetensors");
	tree((const char *[]){"lora/adapter_config.json", "lora/README.md", NULL});
	copy(st, "lora/adapter_model.safetensors");
	const char *merge = "weld does not read adapters; merge it into its base model first (PEFT's merge_and_unload) "
			    "and convert that";
	char what[4096];
	snprintf(what, sizeof(what), "a PEFT adapter (adapter_config.json + adapter_model.safetensors, no full weights); %s",
		 merge);
	refused("lora", what);
	snprintf(what, sizeof(what), "a PEFT adapter (adapter_config.json beside it); %s", merge);
	refused("lora/adapter_model.safetensors", what);
	tree((const char *[]){"lora_bin/adapter_config.json", "lora_bin/adapter_model.bin", NULL});
	snprintf(what, sizeof(what), "a PEFT adapter (adapter_config.json + adapter_model.bin, no full weights); %s", merge);
	refused("lora_bin", what);

	/* A LoRA run under DeepSpeed: its tag holds the adapter-wrapped model, not one to serve. */
	static const char *const ds_files[] = {"latest", "global_step1/mp_rank_00_model_states.pt",
					       "global_step1/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
					       "global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"};
	for (size_t i = 0; i < sizeof(ds_files) / sizeof(ds_files[0]); i++) {
		char from[512], to[512];
		snprintf(from, sizeof(from), "zero/s2_w2_bf16/%s", ds_files[i]);
		snprintf(to, sizeof(to), "lora_ds/%s", ds_files[i]);
		copy(fixture(from), to);
	}
	tree((const char *[]){"lora_ds/adapter_config.json", NULL});
	copy(st, "lora_ds/adapter_model.safetensors");
	snprintf(what, sizeof(what),
		 "a PEFT adapter (adapter_config.json beside a DeepSpeed tag; --type zero reads the tag anyway); %s", merge);
	refused("lora_ds", what);
	/* ... also when the tag is given itself: the folder whose `latest` names it is the run's. */
	refused("lora_ds/global_step1", what);
	weld_ckpt *tag = NULL;
	weld_error tag_err = {0};
	CHECK_OK(weld_ckpt_open_as(&tag, scratch("lora_ds"), WELD_INPUT_ZERO, &tag_err), &tag_err);
	weld_ckpt_free(tag);

	/* Full weights beside the adapter win; an adapter file alone is just a safetensors file. */
	copy(st, "lora/model.safetensors");
	readable("lora", WELD_FORMAT_SAFETENSORS);
	copy(st, "alone/adapter_model.safetensors");
	readable("alone/adapter_model.safetensors", WELD_FORMAT_SAFETENSORS);
	/* --type names what to read: not found is what it says then. */
	not_found_as("lora_bin", WELD_INPUT_HF);
}

static void check_gguf(void)
{
	static const char gguf[] = "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0";
	const char *not_read = "weld does not read GGUF, a serving format already (llama.cpp)";
	char what[4096];
	make_parents("gg/", true);
	CHECK(write_file(scratch("gg/model-Q4_K_M.gguf"), gguf, sizeof(gguf) - 1) == 0);
	CHECK(write_file(scratch("gg/renamed.bin"), gguf, sizeof(gguf) - 1) == 0);
	CHECK(write_file(scratch("gg/tiny"), "GGUF", 4) == 0);
	tree((const char *[]){"gg/config.json", NULL});
	snprintf(what, sizeof(what), "a GGUF model (starts with GGUF); %s", not_read);
	refused("gg/model-Q4_K_M.gguf", what);
	refused("gg/renamed.bin", what);
	refused("gg/tiny", what);
	snprintf(what, sizeof(what), "a GGUF model (model-Q4_K_M.gguf); %s", not_read);
	refused("gg", what);
	copy(fixture("qwen2_tied/st_single_fp32/model.safetensors"), "gg/model.safetensors");
	readable("gg", WELD_FORMAT_SAFETENSORS);
}

int main(void)
{
	CHECK(scratch_init("unsupported") == 0);
	check_dcp();
	check_megatron();
	check_universal();
	check_peft();
	check_gguf();
	CHECK(scratch_remove() == 0);
	TEST_DONE();
}
