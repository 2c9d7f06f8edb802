/*
 * config_shapes: do config.json's sizes agree with the tensors? For the
 * model types in ARCHS, each size transformers builds the model from is read
 * as transformers reads it (the config class's default when the key is
 * absent; for some keys null means a value computed from others), and every
 * weight matrix the model class makes from those sizes, in every layer, is
 * compared with the stored shape. The facts are transformers 5's
 * configuration_*.py and modeling_*.py.
 *
 * There is no config_shapes line for any other or no model_type, nor for a
 * quantized model (its packed shapes are not the model class's): nothing is
 * known to compare with.
 */
#include "verify/verify.h"

#include "pipeline/names.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The sizes a model is built from, in reading order: a computed one uses only those before it. */
enum { F_VOCAB, F_HIDDEN, F_LAYERS, F_INTER, F_HEADS, F_KV, F_HEAD_DIM, F_POS, NFIELDS };

/* Defaults that are not numbers: computed (KV heads = heads, head_dim = hidden / heads, n_inner = 4 x hidden)... */
#define DERIVED (-1)
/* ...and a size the architecture does not have. */
#define UNUSED 0
#define BIT(f) (1u << (f))

/* A tensor dimension made from config sizes: K x (A + 2 x B) x C, where B and C may be -1 (none). */
typedef struct dim_rule {
	int k, a, b, c;
} dim_rule;
#define D(f) {1, f, -1, -1}
#define D_TIMES(k, f) {k, f, -1, -1}
#define D_HEADS(f) {1, f, -1, F_HEAD_DIM}

typedef struct tensor_rule {
	const char *name; /* after the prefix, and after "LAYERS<i>." when per layer */
	bool per_layer;
	dim_rule dims[2];
} tensor_rule;

#define MAX_RULES 8

/* How a family of model classes names its sizes and tensors. */
typedef struct layout {
	const char *keys[NFIELDS]; /* config.json's names; NULL for a size it does not have */
	const char *prefix;        /* where names start under *ForCausalLM; a bare base model's have none */
	const char *layers;
	tensor_rule tensors[MAX_RULES]; /* the embedding first; a NULL name ends a shorter list */
} layout;

static const layout LLAMA = {
	{"vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
	 "num_key_value_heads", "head_dim", NULL},
	"model.",
	"layers.",
	{{"embed_tokens.weight", false, {D(F_VOCAB), D(F_HIDDEN)}},
	 {"self_attn.q_proj.weight", true, {D_HEADS(F_HEADS), D(F_HIDDEN)}},
	 {"self_attn.k_proj.weight", true, {D_HEADS(F_KV), D(F_HIDDEN)}},
	 {"self_attn.v_proj.weight", true, {D_HEADS(F_KV), D(F_HIDDEN)}},
	 {"self_attn.o_proj.weight", true, {D(F_HIDDEN), D_HEADS(F_HEADS)}},
	 {"mlp.gate_proj.weight", true, {D(F_INTER), D(F_HIDDEN)}},
	 {"mlp.up_proj.weight", true, {D(F_INTER), D(F_HIDDEN)}},
	 {"mlp.down_proj.weight", true, {D(F_HIDDEN), D(F_INTER)}}},
};

/* Phi-3 fuses q, k, v into one matrix, and gate and up into another. */
static const layout PHI3 = {
	{"vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
	 "num_key_value_heads", "head_dim", NULL},
	"model.",
	"layers.",
	{{"embed_tokens.weight", false, {D(F_VOCAB), D(F_HIDDEN)}},
	 {"self_attn.qkv_proj.weight", true, {{1, F_HEADS, F_KV, F_HEAD_DIM}, D(F_HIDDEN)}},
	 {"self_attn.o_proj.weight", true, {D(F_HIDDEN), D_HEADS(F_HEADS)}},
	 {"mlp.gate_up_proj.weight", true, {D_TIMES(2, F_INTER), D(F_HIDDEN)}},
	 {"mlp.down_proj.weight", true, {D(F_HIDDEN), D(F_INTER)}}},
};

/* GPT-2's Conv1D stores its weight as [in, out], the transpose of a Linear's. */
static const layout GPT2 = {
	{"vocab_size", "n_embd", "n_layer", "n_inner", "n_head", NULL, NULL, "n_positions"},
	"transformer.",
	"h.",
	{{"wte.weight", false, {D(F_VOCAB), D(F_HIDDEN)}},
	 {"wpe.weight", false, {D(F_POS), D(F_HIDDEN)}},
	 {"attn.c_attn.weight", true, {D(F_HIDDEN), D_TIMES(3, F_HIDDEN)}},
	 {"attn.c_proj.weight", true, {D(F_HIDDEN), D(F_HIDDEN)}},
	 {"mlp.c_fc.weight", true, {D(F_HIDDEN), D(F_INTER)}},
	 {"mlp.c_proj.weight", true, {D(F_INTER), D(F_HIDDEN)}}},
};

typedef struct arch {
	const char *model_type;
	const layout *layout;
	long long absent[NFIELDS]; /* the config class's default for a key not in config.json */
	unsigned null_derives;     /* the keys for which null means DERIVED (elsewhere transformers refuses it) */
	bool tie;                  /* tie_word_embeddings' default */
} arch;

static const arch ARCHS[] = {
	{"llama", &LLAMA, {32000, 4096, 32, 11008, 32, DERIVED, DERIVED, UNUSED}, BIT(F_KV) | BIT(F_HEAD_DIM), false},
	{"qwen2", &LLAMA, {151936, 4096, 32, 22016, 32, 32, DERIVED, UNUSED}, BIT(F_KV), false},
	{"mistral", &LLAMA, {32000, 4096, 32, 14336, 32, 8, DERIVED, UNUSED}, BIT(F_HEAD_DIM), false},
	{"gemma", &LLAMA, {256000, 3072, 28, 24576, 16, 16, 256, UNUSED}, 0, true},
	{"gemma2", &LLAMA, {256000, 2304, 26, 9216, 8, 4, 256, UNUSED}, 0, true},
	{"phi3", &PHI3, {32064, 3072, 32, 8192, 32, DERIVED, DERIVED, UNUSED}, BIT(F_KV), false},
	{"gpt2", &GPT2, {50257, 768, 12, DERIVED, 12, DERIVED, DERIVED, 1024}, BIT(F_INTER), true},
};

/* Where a size came from, for messages. */
enum { SET, DEFAULT, UNSET_DERIVED, NULL_DERIVED };

typedef struct shapes {
	weld_verifier *v;
	const arch *a;
	uint64_t val[NFIELDS];
	int how[NFIELDS];
	char prefix[128]; /* where the base model's names start: "model.", after any wrapper prefix */
	char head[128];   /* the lm_head's name, after any wrapper prefix */
	char first[WELD_CHECK_DETAIL_MAX];
	size_t problems;
} shapes;

static const arch *arch_of(const cJSON *config)
{
	const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(config, "model_type"));
	for (size_t i = 0; t && i < sizeof(ARCHS) / sizeof(ARCHS[0]); i++)
		if (strcmp(t, ARCHS[i].model_type) == 0)
			return &ARCHS[i];
	return NULL;
}

static void problem(shapes *s, const char *fmt, ...) WELD_PRINTF(2, 3);
static void problem(shapes *s, const char *fmt, ...)
{
	if (s->problems++)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->first, sizeof(s->first), fmt, ap);
	va_end(ap);
}

/* "num_key_value_heads 8 (unset: mistral's default)" and the like, appended to BUF. */
static void field_text(const shapes *s, int f, char *buf, size_t cap)
{
	const char *const *k = s->a->layout->keys;
	weld__vf_appendf(buf, cap, "%s %llu", k[f], (unsigned long long)s->val[f]);
	if (s->how[f] == DEFAULT)
		weld__vf_appendf(buf, cap, " (unset: %s's default)", s->a->model_type);
	if (s->how[f] < UNSET_DERIVED)
		return;
	weld__vf_appendf(buf, cap, " (%s: ", s->how[f] == NULL_DERIVED ? "null" : "unset");
	if (f == F_KV)
		weld__vf_appendf(buf, cap, "as %s)", k[F_HEADS]);
	else if (f == F_HEAD_DIM)
		weld__vf_appendf(buf, cap, "%s / %s)", k[F_HIDDEN], k[F_HEADS]);
	else
		weld__vf_appendf(buf, cap, "4 x %s)", k[F_HIDDEN]);
}

/* A config.json value that is not a size, in words. */
static void value_text(const cJSON *j, char *buf, size_t cap)
{
	if (cJSON_IsNumber(j))
		snprintf(buf, cap, "%.15g", j->valuedouble);
	else if (cJSON_IsBool(j) || cJSON_IsNull(j))
		snprintf(buf, cap, "%s", cJSON_IsNull(j) ? "null" : cJSON_IsTrue(j) ? "true" : "false");
	else
		snprintf(buf, cap, "%s", cJSON_IsString(j) ? "a string" : cJSON_IsArray(j) ? "an array" : "an object");
}

/* Size F computed from those before it, as the model class computes it when the key is unset. */
static bool derive_size(shapes *s, int f)
{
	uint64_t *v = s->val;
	if (f == F_KV) {
		v[f] = v[F_HEADS];
	} else if (f == F_INTER) {
		v[f] = 4 * v[F_HIDDEN]; /* sizes are at most 2^53 */
	} else if (v[F_HIDDEN] % v[F_HEADS] == 0) {
		v[f] = v[F_HIDDEN] / v[F_HEADS];
	} else {
		char hidden[160] = "", heads[160] = "";
		field_text(s, F_HIDDEN, hidden, sizeof(hidden));
		field_text(s, F_HEADS, heads, sizeof(heads));
		const char *key = s->a->layout->keys[F_HEAD_DIM];
		problem(s, "config.json %s is not a multiple of %s%s%s%s", hidden, heads, key ? ", and " : "",
			key ? key : "", key ? (s->how[f] == NULL_DERIVED ? " is null" : " is unset") : "");
		return false;
	}
	return true;
}

/* cJSON keeps numbers as doubles: integers are exact up to here. */
#define EXACT_MAX 9007199254740992.0

/* Size F as transformers reads it; false, with the problem noted, when config.json's value is not one. */
static bool read_size(shapes *s, int f)
{
	const char *key = s->a->layout->keys[f];
	long long dflt = s->a->absent[f];
	if (dflt == UNUSED)
		return true;
	const cJSON *j = key ? cJSON_GetObjectItemCaseSensitive(s->v->config, key) : NULL;
	if (!j ? dflt == DERIVED : cJSON_IsNull(j) && (s->a->null_derives & BIT(f))) {
		s->how[f] = j ? NULL_DERIVED : UNSET_DERIVED;
		return derive_size(s, f);
	}
	if (!j) {
		s->how[f] = DEFAULT;
		s->val[f] = (uint64_t)dflt;
		return true;
	}
	double d = cJSON_IsNumber(j) ? j->valuedouble : 0;
	if (cJSON_IsNumber(j) && d >= 1 && d <= EXACT_MAX && d == (double)(uint64_t)d) {
		s->how[f] = SET;
		s->val[f] = (uint64_t)d;
		return true;
	}
	char what[64];
	value_text(j, what, sizeof(what));
	problem(s, "config.json %s is %s, not a positive integer%s", key, what,
		d > EXACT_MAX ? " weld can read exactly (at most 2^53)" : "");
	return false;
}

/* Rule R's value; false when it overflows 64 bits. */
static bool dim_value(const shapes *s, const dim_rule *r, uint64_t *out)
{
	uint64_t x = s->val[r->a], twice;
	if (r->b >= 0 && (!weld__mul_u64(&twice, 2, s->val[r->b]) || !weld__add_u64(&x, x, twice)))
		return false;
	if (r->c >= 0 && !weld__mul_u64(&x, x, s->val[r->c]))
		return false;
	return weld__mul_u64(out, x, (uint64_t)r->k);
}

/* How rule R makes VALUE from config.json, appended to BUF: "num_key_value_heads 2 x head_dim 4 = 8". */
static void dim_text(const shapes *s, const dim_rule *r, uint64_t value, bool ok, char *buf, size_t cap)
{
	if (r->k > 1)
		weld__vf_appendf(buf, cap, "%d x ", r->k);
	weld__vf_appendf(buf, cap, "%s", r->b >= 0 ? "(" : "");
	field_text(s, r->a, buf, cap);
	if (r->b >= 0) {
		weld__vf_appendf(buf, cap, " + 2 x ");
		field_text(s, r->b, buf, cap);
		weld__vf_appendf(buf, cap, ")");
	}
	if (r->c >= 0) {
		weld__vf_appendf(buf, cap, " x ");
		field_text(s, r->c, buf, cap);
	}
	if (!ok)
		weld__vf_appendf(buf, cap, " = more than 64 bits hold");
	else if (r->k > 1 || r->b >= 0 || r->c >= 0)
		weld__vf_appendf(buf, cap, " = %llu", (unsigned long long)value);
}

/* Tensor NAME is there and is [DIMS[0], DIMS[1]]. */
static void check_tensor(shapes *s, const char *name, const dim_rule dims[2])
{
	size_t i = weld__vf_find_out(s->v, name);
	if (i == SIZE_MAX) {
		problem(s, "no '%s', which a %s model has", name, s->a->model_type);
		return;
	}
	const ckpt_tensor *t = &s->v->out->t[i];
	for (int d = 0; d < 2; d++) {
		uint64_t want = 0;
		bool ok = dim_value(s, &dims[d], &want);
		if (ok && t->ndim == 2 && t->shape[d] == want)
			continue;
		char made[WELD_CHECK_DETAIL_MAX] = "", shape[400];
		dim_text(s, &dims[d], want, ok, made, sizeof(made));
		weld__vf_shape_str(shape, sizeof(shape), t->shape, t->ndim);
		problem(s, "config.json %s, but '%s' is %s", made, name, shape);
		return;
	}
}

/* One more than the largest layer index in the tensors' names under START ("model.layers."). */
static uint64_t count_layers(const shapes *s, const char *start)
{
	size_t n = strlen(start);
	uint64_t count = 0;
	for (size_t i = 0; i < s->v->out->nt; i++) {
		const char *p = s->v->out->t[i].name;
		if (strncmp(p, start, n) != 0)
			continue;
		uint64_t index = 0;
		bool ok = p[n] >= '0' && p[n] <= '9';
		for (p += n; *p >= '0' && *p <= '9'; p++)
			ok = ok && weld__mul_u64(&index, index, 10) && weld__add_u64(&index, index, (uint64_t)(*p - '0'));
		if (ok && *p == '.' && index >= count && index < UINT64_MAX)
			count = index + 1;
	}
	return count;
}

/* The layer count, then every per-layer tensor of the layers both config.json and the tensors have. */
static void check_layers(shapes *s)
{
	const layout *l = s->a->layout;
	char start[256], made[WELD_CHECK_DETAIL_MAX] = "", name[512];
	snprintf(start, sizeof(start), "%s%s", s->prefix, l->layers);
	uint64_t have = count_layers(s, start), both = have < s->val[F_LAYERS] ? have : s->val[F_LAYERS];
	field_text(s, F_LAYERS, made, sizeof(made));
	if (have && have != s->val[F_LAYERS])
		problem(s, "config.json %s, but the tensors have %llu layers ('%s0.' to '%s%llu.')", made,
			(unsigned long long)have, start, start, (unsigned long long)(have - 1));
	else if (have != s->val[F_LAYERS])
		problem(s, "config.json %s, but no tensor name starts with '%s'", made, start);
	for (uint64_t i = 0; i < both; i++)
		for (size_t k = 0; k < MAX_RULES && l->tensors[k].name; k++) {
			if (!l->tensors[k].per_layer)
				continue;
			snprintf(name, sizeof(name), "%s%llu.%s", start, (unsigned long long)i, l->tensors[k].name);
			check_tensor(s, name, l->tensors[k].dims);
		}
}

static bool causal_lm(const cJSON *config)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(config, "architectures");
	const char *a = cJSON_GetStringValue(cJSON_GetArrayItem(list, 0));
	return a && (weld__has_suffix(a, "ForCausalLM") || weld__has_suffix(a, "LMHeadModel"));
}

/*
 * lm_head.weight's shape; and where config.json leaves tie_word_embeddings to
 * the model type's default (a value it sets is the tied check's), whether
 * the stored head suits that default: transformers leaves a missing untied
 * head untrained, and vLLM, when tying, skips a stored head and serves the
 * embedding (transformers 5 keeps a stored head that differs, with a warning).
 */
static weld_status check_head(shapes *s, const char *embed, weld_error *err)
{
	static const dim_rule head_dims[2] = {D(F_VOCAB), D(F_HIDDEN)};
	size_t head = weld__vf_find_out(s->v, s->head), e = weld__vf_find_out(s->v, embed);
	if (head != SIZE_MAX)
		check_tensor(s, s->head, head_dims);
	if (s->v->tie >= 0 || !causal_lm(s->v->config))
		return WELD_OK;
	const char *mt = s->a->model_type;
	if (!s->a->tie && head == SIZE_MAX)
		problem(s, "config.json does not set tie_word_embeddings, and %s's default is false, but there is no "
			   "'%s': the head would be left untrained", mt, s->head);
	if (!s->a->tie || head == SIZE_MAX || e == SIZE_MAX)
		return WELD_OK;
	const ckpt_tensor *h = &s->v->out->t[head];
	bool eq = h->dtype == s->v->out->t[e].dtype && h->nbytes == s->v->out->t[e].nbytes;
	weld_error why = {0};
	weld_status st = eq ? weld__vf_same_bytes(s->v->out, head, s->v->out, e, &eq, &why) : WELD_OK;
	if (st == WELD_ERR_NOMEM)
		return weld__nomem(err);
	if (st)
		problem(s, "%s", why.message);
	else if (!eq)
		problem(s, "config.json does not set tie_word_embeddings, and %s's default is true, but '%s' differs "
			   "from '%s': vLLM would serve the embedding as the head", mt, s->head, embed);
	return WELD_OK;
}

/* The line: the first problem (and how many more), or what agreed. */
static void report(shapes *s, bool head)
{
	const uint64_t *v = s->val;
	if (s->problems > 1)
		weld__vf_appendf(s->first, sizeof(s->first), " (and %zu more disagreement%s)", s->problems - 1,
				 s->problems == 2 ? "" : "s");
	if (s->problems) {
		weld__vf_check(s->v->r, "config_shapes", WELD_CHECK_FAIL, "%s", s->first);
		return;
	}
	char kv[64] = "", pos[64] = "";
	bool tied = s->v->tie >= 0 ? s->v->tie == 1 : s->a->tie;
	if (s->a->layout->keys[F_KV])
		snprintf(kv, sizeof(kv), " (%llu KV)", (unsigned long long)v[F_KV]);
	if (s->a->layout->keys[F_POS])
		snprintf(pos, sizeof(pos), ", %llu positions", (unsigned long long)v[F_POS]);
	weld__vf_check(s->v->r, "config_shapes", WELD_CHECK_PASS,
		       "%s: hidden %llu, vocab %llu, %llu layers, %llu heads%s of dim %llu, intermediate %llu%s agree "
		       "with the tensors%s",
		       s->a->model_type, (unsigned long long)v[F_HIDDEN], (unsigned long long)v[F_VOCAB],
		       (unsigned long long)v[F_LAYERS], (unsigned long long)v[F_HEADS], kv,
		       (unsigned long long)v[F_HEAD_DIM], (unsigned long long)v[F_INTER], pos,
		       head ? "; lm_head stored" : tied && causal_lm(s->v->config) ? "; the head is the tied embedding" : "");
}

/*
 * The names' prefixes: the layout's under *ForCausalLM, none in a bare base
 * model (whose embedding is then found without it). A wrapper prefix
 * ('module.') is the prefix check's finding; the shapes are checked through it.
 */
static void choose_prefix(shapes *s)
{
	const layout *l = s->a->layout;
	char wrap[64], name[256];
	weld__wrapper_prefix(s->v->out, wrap, sizeof(wrap));
	snprintf(s->head, sizeof(s->head), "%slm_head.weight", wrap);
	snprintf(s->prefix, sizeof(s->prefix), "%s%s", wrap, l->prefix);
	snprintf(name, sizeof(name), "%s%s", s->prefix, l->tensors[0].name);
	if (weld__vf_find_out(s->v, name) != SIZE_MAX)
		return;
	snprintf(name, sizeof(name), "%s%s", wrap, l->tensors[0].name);
	if (weld__vf_find_out(s->v, name) != SIZE_MAX)
		snprintf(s->prefix, sizeof(s->prefix), "%s", wrap);
}

/* The sizes, read; false when one cannot be (the problem is noted). */
static bool read_sizes(shapes *s)
{
	for (int f = 0; f < NFIELDS; f++)
		if (!read_size(s, f))
			return false;
	if (s->val[F_HEADS] % s->val[F_KV] == 0)
		return true;
	char heads[160] = "", kv[160] = "";
	field_text(s, F_HEADS, heads, sizeof(heads));
	field_text(s, F_KV, kv, sizeof(kv));
	problem(s, "config.json %s is not a multiple of %s", heads, kv);
	return false;
}

weld_status weld__vf_check_config_shapes(weld_verifier *v, weld_error *err)
{
	shapes s = {.v = v, .a = arch_of(v->config)};
	if (!s.a || cJSON_GetObjectItemCaseSensitive(v->config, "quantization_config"))
		return WELD_OK;
	const layout *l = s.a->layout;
	if (!read_sizes(&s)) {
		report(&s, false);
		return WELD_OK;
	}
	choose_prefix(&s);
	char name[256];
	for (size_t k = 0; k < MAX_RULES && l->tensors[k].name; k++)
		if (!l->tensors[k].per_layer) {
			snprintf(name, sizeof(name), "%s%s", s.prefix, l->tensors[k].name);
			check_tensor(&s, name, l->tensors[k].dims);
		}
	check_layers(&s);
	snprintf(name, sizeof(name), "%s%s", s.prefix, l->tensors[0].name);
	weld_status st = check_head(&s, name, err);
	if (!st)
		report(&s, weld__vf_find_out(v, s.head) != SIZE_MAX);
	return st;
}
