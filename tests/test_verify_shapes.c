/*
 * verify's config_shapes check. The oracle is transformers itself: every
 * folder of tests/fixtures/arch is a tiny model it wrote (make_arch.py) and
 * loads, so each converted output must PASS; each edit below breaks one size
 * of config.json, as a hand edit or a bad merge would, and the FAIL must name
 * the size, the tensor and both values. Each broken config was checked with
 * transformers 5.24 when this test was written: it refuses to load the model
 * (a size mismatch, or a value its config class rejects), or loads another
 * model than the one stored (GPT-2's second layer dropped as unexpected keys,
 * a head left untrained). The edits that must still PASS loaded as stored.
 * Other checks must not FAIL, so each finding stays on its one line.
 */
#include "test_verify.h"

/* Each architecture's output, converted once; its PASS line. */
static const struct {
	const char *arch, *pass;
} GOOD[] = {
	{"llama", "llama: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 4, intermediate 24 agree with the "
		  "tensors; lm_head stored"},
	{"qwen2", "qwen2: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 4, intermediate 24 agree with the "
		  "tensors; lm_head stored"},
	{"mistral", "mistral: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 4, intermediate 24 agree with the "
		    "tensors; lm_head stored"},
	{"gemma", "gemma: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 8, intermediate 24 agree with the "
		  "tensors; the head is the tied embedding"},
	{"gemma_untied", "gemma: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 8, intermediate 24 agree with "
			 "the tensors; lm_head stored"},
	{"gemma2", "gemma2: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 8, intermediate 24 agree with the "
		   "tensors; the head is the tied embedding"},
	{"phi3", "phi3: hidden 16, vocab 64, 2 layers, 4 heads (2 KV) of dim 4, intermediate 24 agree with the "
		 "tensors; lm_head stored"},
	{"gpt2", "gpt2: hidden 16, vocab 64, 2 layers, 4 heads of dim 4, intermediate 64, 32 positions agree with "
		 "the tensors; the head is the tied embedding"},
	{"gpt2_base", "gpt2: hidden 16, vocab 64, 2 layers, 4 heads of dim 4, intermediate 64, 32 positions agree "
		      "with the tensors"},
};

/* In ARCH's output's config.json, FIND becomes REPL; config_shapes then says DETAIL (NULL: PASSes as before). */
typedef struct edit {
	const char *arch, *find, *repl, *detail;
} edit;

static const edit EDITS[] = {
	/* Each size of a Qwen2 (no head_dim in its config: hidden / heads). */
	{"qwen2", "\"hidden_size\": 16", "\"hidden_size\": 8",
	 "config.json hidden_size 8, but 'model.embed_tokens.weight' is [64, 16] (and 15 more disagreements)"},
	{"qwen2", "\"vocab_size\": 64", "\"vocab_size\": 65",
	 "config.json vocab_size 65, but 'model.embed_tokens.weight' is [64, 16] (and 1 more disagreement)"},
	{"qwen2", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3",
	 "config.json num_hidden_layers 3, but the tensors have 2 layers ('model.layers.0.' to 'model.layers.1.')"},
	{"qwen2", "\"intermediate_size\": 24", "\"intermediate_size\": 32",
	 "config.json intermediate_size 32, but 'model.layers.0.mlp.gate_proj.weight' is [24, 16] (and 5 more "
	 "disagreements)"},
	{"qwen2", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1",
	 "config.json num_key_value_heads 1 x head_dim 4 (unset: hidden_size / num_attention_heads) = 4, but "
	 "'model.layers.0.self_attn.k_proj.weight' is [8, 16] (and 3 more disagreements)"},
	{"qwen2", "\"num_attention_heads\": 4", "\"num_attention_heads\": 8",
	 "config.json num_key_value_heads 2 x head_dim 2 (unset: hidden_size / num_attention_heads) = 4, but "
	 "'model.layers.0.self_attn.k_proj.weight' is [8, 16] (and 3 more disagreements)"},
	{"qwen2", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
	 "config.json num_attention_heads 4 is not a multiple of num_key_value_heads 3"},
	{"qwen2", "\"num_attention_heads\": 4", "\"num_attention_heads\": 3",
	 "config.json hidden_size 16 is not a multiple of num_attention_heads 3, and head_dim is unset"},
	/* Sizes transformers' strict config classes refuse, and one cJSON cannot hold exactly. */
	{"qwen2", "\"hidden_size\": 16", "\"hidden_size\": 16.5",
	 "config.json hidden_size is 16.5, not a positive integer"},
	{"qwen2", "\"vocab_size\": 64", "\"vocab_size\": \"64\"",
	 "config.json vocab_size is a string, not a positive integer"},
	{"qwen2", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0",
	 "config.json num_hidden_layers is 0, not a positive integer"},
	{"qwen2", "\"num_attention_heads\": 4", "\"num_attention_heads\": true",
	 "config.json num_attention_heads is true, not a positive integer"},
	{"qwen2", "\"intermediate_size\": 24", "\"intermediate_size\": 1e300",
	 "config.json intermediate_size is 1e+300, not a positive integer weld can read exactly (at most 2^53)"},
	/* Unset sizes take the config class's default; null means "as computed" only where the class says so. */
	{"qwen2", "\"hidden_size\": 16,", "",
	 "config.json hidden_size 4096 (unset: qwen2's default), but 'model.embed_tokens.weight' is [64, 16] (and 15 "
	 "more disagreements)"},
	{"qwen2", "\"num_key_value_heads\": 2,", "",
	 "config.json num_attention_heads 4 is not a multiple of num_key_value_heads 32 (unset: qwen2's default)"},
	{"qwen2", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": null",
	 "config.json num_key_value_heads 4 (null: as num_attention_heads) x head_dim 4 (unset: hidden_size / "
	 "num_attention_heads) = 16, but 'model.layers.0.self_attn.k_proj.weight' is [8, 16] (and 3 more "
	 "disagreements)"},
	{"llama", "\"num_key_value_heads\": 2,", "",
	 "config.json num_key_value_heads 4 (unset: as num_attention_heads) x head_dim 4 = 16, but "
	 "'model.layers.0.self_attn.k_proj.weight' is [8, 16] (and 3 more disagreements)"},
	{"llama", "\"num_attention_heads\": 4", "\"num_attention_heads\": 8",
	 "config.json num_attention_heads 8 x head_dim 4 = 32, but 'model.layers.0.self_attn.q_proj.weight' is [16, "
	 "16] (and 3 more disagreements)"},
	{"llama", "\"head_dim\": 4", "\"head_dim\": 8",
	 "config.json num_attention_heads 4 x head_dim 8 = 32, but 'model.layers.0.self_attn.q_proj.weight' is [16, "
	 "16] (and 7 more disagreements)"},
	{"llama", "\"tie_word_embeddings\": false,", "", NULL},
	{"mistral", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": null",
	 "config.json num_key_value_heads is null, not a positive integer"},
	{"mistral", "\"head_dim\": 4", "\"head_dim\": null", NULL},
	{"gemma", "\"head_dim\": 8,", "",
	 "config.json num_attention_heads 4 x head_dim 256 (unset: gemma's default) = 1024, but "
	 "'model.layers.0.self_attn.q_proj.weight' is [32, 16] (and 7 more disagreements)"},
	{"gemma", "\"tie_word_embeddings\": true,", "", NULL},
	{"gemma2", "\"hidden_size\": 16,", "",
	 "config.json hidden_size 2304 (unset: gemma2's default), but 'model.embed_tokens.weight' is [64, 16] (and "
	 "14 more disagreements)"},
	{"gemma2", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1",
	 "config.json num_hidden_layers 1, but the tensors have 2 layers ('model.layers.0.' to 'model.layers.1.')"},
	/* Phi-3's fused matrices. */
	{"phi3", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4",
	 "config.json (num_attention_heads 4 + 2 x num_key_value_heads 4) x head_dim 4 (unset: hidden_size / "
	 "num_attention_heads) = 48, but 'model.layers.0.self_attn.qkv_proj.weight' is [32, 16] (and 1 more "
	 "disagreement)"},
	{"phi3", "\"intermediate_size\": 24", "\"intermediate_size\": 32",
	 "config.json 2 x intermediate_size 32 = 64, but 'model.layers.0.mlp.gate_up_proj.weight' is [48, 16] (and 3 "
	 "more disagreements)"},
	/* GPT-2's own names, with and without the 'transformer.' prefix. */
	{"gpt2", "\"n_embd\": 16", "\"n_embd\": 32",
	 "config.json n_embd 32, but 'transformer.wte.weight' is [64, 16] (and 9 more disagreements)"},
	{"gpt2", "\"n_inner\": null", "\"n_inner\": 32",
	 "config.json n_inner 32, but 'transformer.h.0.mlp.c_fc.weight' is [16, 64] (and 3 more disagreements)"},
	{"gpt2", "\"n_inner\": null", "\"n_inner\": 64", NULL},
	{"gpt2", "\"n_head\": 4", "\"n_head\": 3", "config.json n_embd 16 is not a multiple of n_head 3"},
	{"gpt2", "\"n_layer\": 2", "\"n_layer\": 1",
	 "config.json n_layer 1, but the tensors have 2 layers ('transformer.h.0.' to 'transformer.h.1.')"},
	{"gpt2", ",\n  \"vocab_size\": 64", "",
	 "config.json vocab_size 50257 (unset: gpt2's default), but 'transformer.wte.weight' is [64, 16]"},
	{"gpt2_base", "\"n_positions\": 32", "\"n_positions\": 64",
	 "config.json n_positions 64, but 'wpe.weight' is [32, 16]"},
	/* tie_word_embeddings unset: the model type's default must suit the stored head. */
	{"gemma_untied", "\"tie_word_embeddings\": false,", "",
	 "config.json does not set tie_word_embeddings, and gemma's default is true, but 'lm_head.weight' differs from "
	 "'model.embed_tokens.weight': vLLM would serve the embedding as the head"},
};

static void check_good(void)
{
	for (size_t i = 0; i < sizeof(GOOD) / sizeof(GOOD[0]); i++) {
		char src[256];
		snprintf(src, sizeof(src), "arch/%s", GOOD[i].arch);
		convert(fixture(src), tpath(GOOD[i].arch), WELD_OUT_BF16, 0);
		weld_verify_report *r = verify(tpath(GOOD[i].arch), NULL);
		EXPECT_FAILS(r, NO_FAILS);
		EXPECT(r, "config_shapes", WELD_CHECK_PASS, GOOD[i].pass);
		weld_verify_report_free(r);
	}
}

static void check_edits(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tpath("edited"));
	for (size_t i = 0; i < sizeof(EDITS) / sizeof(EDITS[0]); i++) {
		const edit *e = &EDITS[i];
		int before = test_failures;
		copy_dir(tpath(e->arch), dir);
		edit_file(dir, "config.json", e->find, e->repl);
		weld_verify_report *r = verify(dir, NULL);
		if (e->detail) {
			EXPECT_FAILS(r, "config_shapes");
			EXPECT(r, "config_shapes", WELD_CHECK_FAIL, e->detail);
		} else {
			EXPECT_FAILS(r, NO_FAILS);
			EXPECT(r, "config_shapes", WELD_CHECK_PASS, NULL);
		}
		if (test_failures != before)
			fprintf(stderr, "  (after edit %zu: %s '%s' -> '%s')\n", i, e->arch, e->find, e->repl);
		weld_verify_report_free(r);
	}
}

/* A tied Qwen2 whose config lost tie_word_embeddings: qwen2's default (false) wants an lm_head it does not have. */
static void check_lost_tie(void)
{
	const char *dir = tpath("lost_tie");
	convert(fixture("qwen2_tied/st_single_fp32"), dir, WELD_OUT_BF16, 0);
	edit_file(dir, "config.json", "\"tie_word_embeddings\": true,", "");
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "config_shapes");
	EXPECT(r, "config_shapes", WELD_CHECK_FAIL,
	       "config.json does not set tie_word_embeddings, and qwen2's default is false, but there is no "
	       "'lm_head.weight': the head would be left untrained");
	weld_verify_report_free(r);

	/* Set false, it is the tied check's finding alone. */
	convert(fixture("qwen2_tied/st_single_fp32"), dir, WELD_OUT_BF16, 0);
	edit_file(dir, "config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
	r = verify(dir, NULL);
	EXPECT_FAILS(r, "tied");
	EXPECT(r, "config_shapes", WELD_CHECK_PASS,
	       "qwen2: hidden 64, vocab 509, 2 layers, 4 heads (2 KV) of dim 16, intermediate 176 agree with the "
	       "tensors");
	weld_verify_report_free(r);
}

/* A layer's tensor missing (written by hand; weld convert keeps what its source has). */
static void check_missing_tensor(void)
{
	const char *dir = tpath("missing");
	write_by_hand(fixture("arch/qwen2/model.safetensors"), dir, "", "model.layers.1.mlp.up_proj.weight", true);
	weld_verify_report *r = verify(dir, NULL);
	EXPECT_FAILS(r, "config_shapes");
	EXPECT(r, "config_shapes", WELD_CHECK_FAIL, "no 'model.layers.1.mlp.up_proj.weight', which a qwen2 model has");
	weld_verify_report_free(r);
}

/* Nothing known to compare: no line at all. */
static void check_no_line(void)
{
	static const char *const from[] = {"\"model_type\": \"qwen2\"", "\"model_type\": \"qwen2\",", "{"};
	static const char *const to[] = {"\"model_type\": \"qwen3\"", "",
					 "{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4},"};
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tpath("no_line"));
	for (size_t i = 0; i < 3; i++) {
		copy_dir(tpath("qwen2"), dir);
		edit_file(dir, "config.json", from[i], to[i]);
		weld_verify_report *r = verify(dir, NULL);
		EXPECT_FAILS(r, NO_FAILS);
		CHECK(r && find(r, "config_shapes") == NULL);
		weld_verify_report_free(r);
	}
}

int main(void)
{
	tmp_init("verify_shapes");
	check_good();
	check_edits();
	check_lost_tie();
	check_missing_tensor();
	check_no_line();
	tmp_remove();
	TEST_DONE();
}
