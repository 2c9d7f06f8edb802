/*
 * Tests for the safe pickle reader: real torch pickles (tests/fixtures), the
 * legacy multi-pickle file, Python-generated pickles (fixtures/pickles, see
 * gen_pickles.py there) and hand-built hostile byte strings.
 */
#include "io/pickle/pickle.h"
#include "test_util.h"

#include <stdbool.h>

static weld_pickle *P;

/* The made-up classes the generated and hand-built pickles use (foo.Bar...) are
 * not on weld's allowlist: each test arena accepts them explicitly. */
static weld_pickle *new_test_pickle(const weld_pickle_limits *lim)
{
	weld_pickle *p = NULL;
	weld_error err = {0};
	CHECK_OK(weld_pickle_new(&p, lim, &err), &err);
	static const char *const test_classes[] = {"foo.Bar", "foo.bar", "foo.MyDict", "foo.MyList"};
	for (size_t i = 0; p && i < sizeof(test_classes) / sizeof(test_classes[0]); i++)
		CHECK_OK(weld_pickle_allow_global(p, test_classes[i], &err), &err);
	return p;
}

/* Loads DATA[0..LEN) into the shared arena; NULL (and *ST set) on failure. */
static weld_py *load_mem(const void *data, size_t len, weld_error *err, weld_status *st, size_t *consumed)
{
	weld_py *out = NULL;
	size_t used = 0;
	*st = weld_pickle_load(P, data, len, &used, &out, err);
	if (consumed)
		*consumed = used;
	return out;
}

static weld_py *load_fixture(const char *rel, uint8_t **buf, size_t *len)
{
	weld_error err = {0};
	weld_status st;
	*buf = read_file(fixture(rel), len);
	CHECK(*buf != NULL);
	if (!*buf)
		return NULL;
	size_t used = 0;
	weld_py *o = load_mem(*buf, *len, &err, &st, &used);
	CHECK_OK(st, &err);
	CHECK(used == *len);
	return o;
}

/* Runs a pickle expected to fail with STATUS and exactly MSG, under LIMITS (or the defaults). */
static void expect_fail_lim(const void *data, size_t len, const weld_pickle_limits *lim, weld_status status,
			    const char *msg, int line)
{
	weld_pickle *p = new_test_pickle(lim);
	weld_error err = {0};
	weld_py *out = (weld_py *)1;
	weld_status st = weld_pickle_load(p, data, len, NULL, &out, &err);
	if (st != status || strcmp(err.message, msg) != 0) {
		fprintf(stderr, "%s:%d: expected status %d \"%s\"\n  got status %d \"%s\"\n", __FILE__, line,
			(int)status, msg, (int)st, err.message);
		test_failures++;
	}
	CHECK(out == NULL);
	weld_pickle_free(p);
}
#define EXPECT_FAIL(lit, status, msg) expect_fail_lim(lit, sizeof(lit) - 1, NULL, status, msg, __LINE__)

static bool is_int(const weld_py *o, int64_t v)
{
	return o && o->kind == WELD_PY_INT && !o->i.big && o->i.v == v;
}

static bool is_global(const weld_py *o, const char *module, const char *name)
{
	return o && o->kind == WELD_PY_GLOBAL && strcmp(o->obj.module, module) == 0 && strcmp(o->obj.name, name) == 0;
}

static bool is_object(const weld_py *o, const char *module, const char *name)
{
	return o && o->kind == WELD_PY_OBJECT && strcmp(o->obj.module, module) == 0 && strcmp(o->obj.name, name) == 0;
}

/* Tensor T has dtype, shape, stride and storage offset as given. */
static bool tensor_is(const weld_py *t, weld_dtype dtype, size_t ndim, const uint64_t *shape,
		      const int64_t *stride, uint64_t off)
{
	if (!t || t->kind != WELD_PY_TENSOR || t->tensor.dtype != dtype || t->tensor.ndim != ndim ||
	    t->tensor.storage_offset != off || !t->tensor.storage || t->tensor.storage->kind != WELD_PY_STORAGE)
		return false;
	for (size_t i = 0; i < ndim; i++)
		if (t->tensor.shape[i] != shape[i] || t->tensor.stride[i] != stride[i])
			return false;
	return true;
}

static bool storage_is(const weld_py *t, const char *key, weld_dtype dtype, uint64_t numel)
{
	if (!t || t->kind != WELD_PY_TENSOR)
		return false;
	const weld_py *s = t->tensor.storage;
	return s && strcmp(s->storage.key, key) == 0 && s->storage.dtype == dtype && s->storage.numel == numel &&
	       strcmp(s->storage.location, "cpu") == 0;
}

/* ------------------------------------------------------------------------- */

static void test_edge_zip(void)
{
	uint8_t *buf;
	size_t len;
	weld_py *root = load_fixture("pickles/edge_zip_data.pkl", &buf, &len);
	CHECK(root && root->kind == WELD_PY_DICT && !root->dict.ordered);
	if (!root || root->kind != WELD_PY_DICT) {
		free(buf);
		return;
	}
	static const char *const keys[] = {"transposed", "row_slice", "base", "col_slice", "scalar",
					   "empty", "i64", "bool", "f16", "bf16", "f64", "u8",
					   "specials", "nested"};
	CHECK(root->dict.n == 14);
	for (size_t i = 0; i < 14 && i < root->dict.n; i++)
		CHECK(weld_py_is_str(root->dict.keys[i], keys[i]));
	CHECK(root->depth == 4); /* root > nested > a > tuple > tensor (a leaf) */

	weld_py *tr = weld_py_dict_get(root, "transposed");
	CHECK(tensor_is(tr, WELD_DTYPE_F32, 2, (uint64_t[]){6, 4}, (int64_t[]){1, 6}, 0));
	CHECK(storage_is(tr, "0", WELD_DTYPE_F32, 24));
	CHECK(tr && !tr->tensor.requires_grad && !tr->tensor.parameter && !tr->tensor.storage->storage.untyped);
	weld_py *rs = weld_py_dict_get(root, "row_slice");
	CHECK(tensor_is(rs, WELD_DTYPE_F32, 2, (uint64_t[]){2, 6}, (int64_t[]){6, 1}, 6));
	CHECK(storage_is(rs, "0", WELD_DTYPE_F32, 24));
	CHECK(tensor_is(weld_py_dict_get(root, "col_slice"), WELD_DTYPE_F32, 2, (uint64_t[]){4, 3},
			(int64_t[]){6, 1}, 2));
	weld_py *sc = weld_py_dict_get(root, "scalar");
	CHECK(tensor_is(sc, WELD_DTYPE_F32, 0, NULL, NULL, 0));
	CHECK(storage_is(sc, "1", WELD_DTYPE_F32, 1));
	weld_py *em = weld_py_dict_get(root, "empty");
	CHECK(tensor_is(em, WELD_DTYPE_F32, 2, (uint64_t[]){0, 7}, (int64_t[]){7, 1}, 0));
	CHECK(storage_is(em, "2", WELD_DTYPE_F32, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "i64"), WELD_DTYPE_I64, 1, (uint64_t[]){10}, (int64_t[]){1}, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "bool"), WELD_DTYPE_BOOL, 1, (uint64_t[]){3}, (int64_t[]){1}, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "f16"), WELD_DTYPE_F16, 1, (uint64_t[]){9}, (int64_t[]){1}, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "bf16"), WELD_DTYPE_BF16, 1, (uint64_t[]){11}, (int64_t[]){1}, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "f64"), WELD_DTYPE_F64, 1, (uint64_t[]){3}, (int64_t[]){1}, 0));
	CHECK(tensor_is(weld_py_dict_get(root, "u8"), WELD_DTYPE_U8, 1, (uint64_t[]){3}, (int64_t[]){1}, 0));
	/* Views of one storage share its key (a fresh node per persistent id). */
	CHECK(tr && rs && strcmp(tr->tensor.storage->storage.key, rs->tensor.storage->storage.key) == 0);
	CHECK(weld_py_dict_get(root, "missing") == NULL);

	weld_py *nested = weld_py_dict_get(root, "nested");
	CHECK(nested && nested->kind == WELD_PY_DICT && nested->dict.n == 2);
	weld_py *a = weld_py_dict_get(nested, "a");
	CHECK(a && a->kind == WELD_PY_LIST && a->seq.n == 2);
	if (a && a->kind == WELD_PY_LIST && a->seq.n == 2) {
		CHECK(tensor_is(a->seq.items[0], WELD_DTYPE_F32, 1, (uint64_t[]){2}, (int64_t[]){1}, 0));
		CHECK(storage_is(a->seq.items[0], "10", WELD_DTYPE_F32, 2));
		weld_py *t = a->seq.items[1];
		CHECK(t->kind == WELD_PY_TUPLE && t->seq.n == 5);
		if (t->kind == WELD_PY_TUPLE && t->seq.n == 5) {
			CHECK(tensor_is(t->seq.items[0], WELD_DTYPE_F32, 1, (uint64_t[]){3}, (int64_t[]){1}, 0));
			CHECK(is_int(t->seq.items[1], 7));
			CHECK(weld_py_is_str(t->seq.items[2], "s"));
			CHECK(t->seq.items[3]->kind == WELD_PY_NONE);
			CHECK(t->seq.items[4]->kind == WELD_PY_FLOAT && t->seq.items[4]->f == 2.5);
		}
	}
	weld_py *b = weld_py_dict_get(nested, "b");
	CHECK(b && b->kind == WELD_PY_DICT && b->dict.n == 1);
	CHECK(tensor_is(weld_py_dict_get(b, "c"), WELD_DTYPE_F32, 2, (uint64_t[]){2, 2}, (int64_t[]){2, 1}, 0));
	free(buf);
}

static void test_other_torch_pickles(void)
{
	uint8_t *buf;
	size_t len;
	weld_py *root = load_fixture("pickles/plain_zip_data.pkl", &buf, &len);
	CHECK(root && (root->kind == WELD_PY_DICT));
	free(buf);
	root = load_fixture("pickles/qwen2_shard1_data.pkl", &buf, &len);
	weld_py *t = weld_py_dict_get(root, "model.embed_tokens.weight");
	CHECK(tensor_is(t, WELD_DTYPE_F32, 2, (uint64_t[]){509, 64}, (int64_t[]){64, 1}, 0));
	CHECK(storage_is(t, "0", WELD_DTYPE_F32, 32576));
	free(buf);
}

/* Legacy torch.save: five pickles in a row, then the raw storages. */
static void test_legacy(void)
{
	size_t len;
	uint8_t *buf = read_file(fixture("torch_edge/edge_legacy.pt"), &len);
	CHECK(buf != NULL);
	if (!buf)
		return;
	weld_error err = {0};
	weld_status st;
	weld_py *v[5] = {0};
	size_t pos = 0;
	for (int i = 0; i < 5; i++) {
		size_t used = 0;
		v[i] = load_mem(buf + pos, len - pos, &err, &st, &used);
		CHECK_OK(st, &err);
		CHECK(used > 0);
		pos += used;
	}
	CHECK(pos == 1458);
	/* 1: magic 0x1950A86A20F9469CFC6C, a 10-byte big int */
	static const uint8_t magic[] = {0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19};
	CHECK(v[0] && v[0]->kind == WELD_PY_INT && v[0]->i.big && v[0]->i.nle == 10 &&
	      memcmp(v[0]->i.le, magic, 10) == 0 && v[0]->i.v == INT64_MAX);
	/* 2: protocol 1001 */
	CHECK(is_int(v[1], 1001));
	/* 3: sys_info */
	weld_py *le = weld_py_dict_get(v[2], "little_endian");
	CHECK(le && le->kind == WELD_PY_BOOL && le->b);
	CHECK(is_int(weld_py_dict_get(v[2], "protocol_version"), 1001));
	CHECK(is_int(weld_py_dict_get(weld_py_dict_get(v[2], "type_sizes"), "long"), 4));
	/* 4: the object, with 6-tuple persistent ids */
	weld_py *tr = weld_py_dict_get(v[3], "transposed");
	CHECK(v[3] && v[3]->kind == WELD_PY_DICT && v[3]->dict.n == 13);
	CHECK(tensor_is(tr, WELD_DTYPE_F32, 2, (uint64_t[]){6, 4}, (int64_t[]){1, 6}, 0));
	CHECK(storage_is(tr, "450287920", WELD_DTYPE_F32, 24));
	/* 5: the sorted storage keys; the first storage's element count follows the pickles */
	CHECK(v[4] && v[4]->kind == WELD_PY_LIST && v[4]->seq.n == 10);
	if (v[4] && v[4]->kind == WELD_PY_LIST && v[4]->seq.n == 10 && v[3] && v[3]->kind == WELD_PY_DICT) {
		const weld_py *k0 = v[4]->seq.items[0];
		CHECK(weld_py_is_str(k0, "379388576"));
		uint64_t count = 0;
		for (int i = 0; i < 8; i++)
			count |= (uint64_t)buf[pos + i] << (8 * i);
		bool found = false;
		for (size_t i = 0; i < v[3]->dict.n; i++) {
			const weld_py *t = v[3]->dict.vals[i];
			if (t->kind == WELD_PY_TENSOR && weld_py_is_str(k0, t->tensor.storage->storage.key)) {
				CHECK(t->tensor.storage->storage.numel == count);
				found = true;
			}
		}
		CHECK(found);
	}
	free(buf);
}

/* ------------------------------------------------------------------------- */
/* Python-generated pickles (tests/fixtures/pickles/gen_pickles.py) */

static void test_deepspeed_like(const char *rel)
{
	uint8_t *buf;
	size_t len;
	weld_py *root = load_fixture(rel, &buf, &len);
	weld_py *m = weld_py_dict_get(root, "module");
	CHECK(m && m->kind == WELD_PY_DICT && m->dict.ordered && m->dict.n == 6);
	weld_py *w = weld_py_dict_get(m, "w");
	CHECK(tensor_is(w, WELD_DTYPE_F32, 2, (uint64_t[]){3, 4}, (int64_t[]){4, 1}, 0));
	CHECK(storage_is(w, "0", WELD_DTYPE_F32, 12));
	CHECK(weld_py_dict_get(m, "tied") == w); /* the memo shares the node */
	CHECK(tensor_is(weld_py_dict_get(m, "w_view"), WELD_DTYPE_F32, 2, (uint64_t[]){2, 2}, (int64_t[]){1, 4}, 4));
	weld_py *f8 = weld_py_dict_get(m, "f8");
	CHECK(tensor_is(f8, WELD_DTYPE_F8_E4M3, 2, (uint64_t[]){2, 4}, (int64_t[]){4, 1}, 0));
	CHECK(f8 && f8->tensor.storage->storage.untyped && f8->tensor.storage->storage.numel == 8 &&
	      f8->tensor.storage->storage.dtype == WELD_DTYPE_INVALID);
	weld_py *pa = weld_py_dict_get(m, "param");
	CHECK(tensor_is(pa, WELD_DTYPE_BF16, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));
	CHECK(pa && pa->tensor.parameter && pa->tensor.requires_grad);
	weld_py *sub = weld_py_dict_get(m, "sub");
	CHECK(tensor_is(sub, WELD_DTYPE_BF16, 1, (uint64_t[]){3}, (int64_t[]){1}, 1));
	CHECK(sub && sub->tensor.parameter);

	weld_py *z = weld_py_dict_get(root, "zero_stage");
	CHECK(is_object(z, "deepspeed.runtime.zero.config", "ZeroStageEnum"));
	CHECK(z && z->obj.args && z->obj.args->kind == WELD_PY_TUPLE && z->obj.args->seq.n == 1 &&
	      is_int(z->obj.args->seq.items[0], 2));
	weld_py *ls = weld_py_dict_get(root, "loss_scaler");
	CHECK(is_object(ls, "deepspeed.runtime.fp16.loss_scaler", "LossScaler"));
	weld_py *cs = ls ? weld_py_dict_get(ls->obj.state, "cur_scale") : NULL;
	CHECK(cs && cs->kind == WELD_PY_FLOAT && cs->f == 65536.0);
	weld_py *psm = weld_py_dict_get(root, "param_slice_mappings");
	CHECK(psm && psm->kind == WELD_PY_LIST && psm->seq.n == 1);
	if (psm && psm->kind == WELD_PY_LIST && psm->seq.n == 1) {
		weld_py *fa = weld_py_dict_get(psm->seq.items[0], "w");
		CHECK(is_object(fa, "deepspeed.utils.tensor_fragment", "fragment_address"));
		CHECK(fa && is_int(weld_py_dict_get(fa->obj.state, "numel"), 12));
	}
	weld_py *ps = weld_py_dict_get(root, "param_shapes");
	if (ps && ps->kind == WELD_PY_LIST && ps->seq.n == 1) {
		weld_py *s = weld_py_dict_get(ps->seq.items[0], "w");
		CHECK(s && s->kind == WELD_PY_SIZE && s->seq.n == 2 && is_int(s->seq.items[0], 3) &&
		      is_int(s->seq.items[1], 4));
	} else {
		CHECK(!"param_shapes is a list of one OrderedDict");
	}
	weld_py *args = weld_py_dict_get(root, "args");
	CHECK(is_object(args, "argparse", "Namespace") && is_int(weld_py_dict_get(args->obj.state, "seed"), 42));
	CHECK(weld_py_is_str(weld_py_dict_get(root, "ds_version"), "0.14.0"));
	free(buf);
}

static void test_generated(void)
{
	uint8_t *buf;
	size_t len;
	weld_py *o, *v;

	/* argparse.Namespace via NEWOBJ + BUILD */
	o = load_fixture("pickles/namespace.pkl", &buf, &len);
	CHECK(is_object(o, "argparse", "Namespace"));
	CHECK(o && o->obj.args && o->obj.args->kind == WELD_PY_TUPLE && o->obj.args->seq.n == 0);
	v = o ? weld_py_dict_get(o->obj.state, "lr") : NULL;
	CHECK(v && v->kind == WELD_PY_FLOAT && v->f == 0.5);
	CHECK(o && weld_py_is_str(weld_py_dict_get(o->obj.state, "name"), "run"));
	v = o ? weld_py_dict_get(o->obj.state, "layers") : NULL;
	CHECK(v && v->kind == WELD_PY_LIST && v->seq.n == 2 && is_int(v->seq.items[1], 2));
	CHECK(o && o->depth == 3);
	free(buf);

	/* Enum member as Cls(value) */
	o = load_fixture("pickles/enum_reduce.pkl", &buf, &len);
	v = weld_py_dict_get(o, "zero_stage");
	CHECK(is_object(v, "deepspeed.runtime.zero.config", "ZeroStageEnum"));
	CHECK(v && v->obj.args && v->obj.args->kind == WELD_PY_TUPLE && is_int(v->obj.args->seq.items[0], 1));
	free(buf);

	/* Enum member as __builtin__ getattr(Cls, "name") */
	o = load_fixture("pickles/enum_getattr.pkl", &buf, &len);
	v = weld_py_dict_get(o, "zero_stage");
	CHECK(is_object(v, "deepspeed.runtime.zero.config", "ZeroStageEnum"));
	CHECK(v && weld_py_is_str(v->obj.args, "weights") && v->obj.state == NULL);
	free(buf);

	/* OrderedDict with BUILD {_metadata: ...}: the state is dropped */
	o = load_fixture("pickles/ordered_metadata.pkl", &buf, &len);
	CHECK(o && o->kind == WELD_PY_DICT && o->dict.ordered && o->dict.n == 2);
	CHECK(is_int(weld_py_dict_get(o, "w"), 1) && is_int(weld_py_dict_get(o, "b"), 2));
	free(buf);

	/* torch.Size, set, frozenset, bytes, bytearray, ints, floats, str, device, dtype */
	o = load_fixture("pickles/misc_p2.pkl", &buf, &len);
	v = weld_py_dict_get(o, "size");
	CHECK(v && v->kind == WELD_PY_SIZE && v->seq.n == 3 && is_int(v->seq.items[2], 4));
	v = weld_py_dict_get(o, "set");
	CHECK(v && v->kind == WELD_PY_SET && v->seq.n == 3 && is_int(v->seq.items[0], 1));
	v = weld_py_dict_get(o, "frozen");
	CHECK(v && v->kind == WELD_PY_SET && v->seq.n == 1 && is_int(v->seq.items[0], 7));
	v = weld_py_dict_get(o, "bytes");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 5 && memcmp(v->str.s, "\x00\xff" "ab\x80", 5) == 0);
	v = weld_py_dict_get(o, "empty_bytes");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 0);
	v = weld_py_dict_get(o, "bytearray");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 2 && memcmp(v->str.s, "xy", 2) == 0);
	static const uint8_t big[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};       /* 2**70 */
	static const uint8_t neg_big[] = {0, 0, 0, 0, 0, 0, 0, 0, 0xC0};   /* -2**70 */
	v = weld_py_dict_get(o, "big");
	CHECK(v && v->kind == WELD_PY_INT && v->i.big && v->i.nle == 9 && memcmp(v->i.le, big, 9) == 0);
	v = weld_py_dict_get(o, "neg_big");
	CHECK(v && v->kind == WELD_PY_INT && v->i.big && v->i.nle == 9 && memcmp(v->i.le, neg_big, 9) == 0 &&
	      v->i.v == INT64_MIN);
	CHECK(is_int(weld_py_dict_get(o, "i64max"), INT64_MAX));
	CHECK(is_int(weld_py_dict_get(o, "i64min"), INT64_MIN));
	CHECK(is_int(weld_py_dict_get(o, "neg"), -5));
	v = weld_py_dict_get(o, "float");
	CHECK(v && v->kind == WELD_PY_FLOAT && v->f == -1.25);
	CHECK(weld_py_is_str(weld_py_dict_get(o, "unicode"), "h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80"));
	v = weld_py_dict_get(o, "device");
	CHECK(is_object(v, "torch", "device") && v->obj.args->seq.n == 2 &&
	      weld_py_is_str(v->obj.args->seq.items[0], "cuda") && is_int(v->obj.args->seq.items[1], 1));
	v = weld_py_dict_get(o, "dtype");
	CHECK(is_global(v, "torch", "bfloat16") && weld__dtype_from_torch_name(v->obj.name) == WELD_DTYPE_BF16);
	free(buf);

	/* Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_SET/ADDITEMS, FROZENSET */
	o = load_fixture("pickles/proto4.pkl", &buf, &len);
	CHECK(o && o->kind == WELD_PY_DICT && o->dict.n == 8);
	CHECK(weld_py_is_str(weld_py_dict_get(o, "name"), "layer"));
	v = weld_py_dict_get(o, "shared");
	CHECK(v && v->kind == WELD_PY_LIST && v->seq.n == 2 && weld_py_dict_get(o, "again") == v);
	v = weld_py_dict_get(o, "set");
	CHECK(v && v->kind == WELD_PY_SET && v->seq.n == 2 && is_int(v->seq.items[1], 5));
	v = weld_py_dict_get(o, "frozen");
	CHECK(v && v->kind == WELD_PY_SET && v->seq.n == 1 && is_int(v->seq.items[0], 6));
	v = weld_py_dict_get(o, "bytes");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 2 && memcmp(v->str.s, "\x01\x02", 2) == 0);
	v = weld_py_dict_get(o, "ns");
	CHECK(is_object(v, "argparse", "Namespace") && is_int(weld_py_dict_get(v->obj.state, "a"), 1));
	v = weld_py_dict_get(o, "od");
	CHECK(v && v->kind == WELD_PY_DICT && v->dict.ordered && is_int(weld_py_dict_get(v, "x"), 1));
	free(buf);

	/* Protocol 5: BYTEARRAY8, BINBYTES */
	o = load_fixture("pickles/proto5.pkl", &buf, &len);
	v = weld_py_dict_get(o, "ba");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 2 && memcmp(v->str.s, "zz", 2) == 0);
	v = weld_py_dict_get(o, "b");
	CHECK(v && v->kind == WELD_PY_BYTES && v->str.len == 300 && v->str.s[299] == 'q');
	free(buf);

	/* list/dict subclasses keep their items in .state; defaultdict and Counter are dicts */
	o = load_fixture("pickles/containers_p2.pkl", &buf, &len);
	v = weld_py_dict_get(o, "mylist");
	CHECK(is_object(v, "foo", "MyList") && v->obj.state && v->obj.state->kind == WELD_PY_TUPLE);
	if (is_object(v, "foo", "MyList") && v->obj.state && v->obj.state->kind == WELD_PY_TUPLE) {
		const weld_py *items = v->obj.state->seq.items[0], *attrs = v->obj.state->seq.items[1];
		CHECK(items->kind == WELD_PY_LIST && items->seq.n == 2 && is_int(items->seq.items[1], 2));
		CHECK(weld_py_is_str(weld_py_dict_get(attrs, "tag"), "t"));
		CHECK(v->depth == 3);
	}
	v = weld_py_dict_get(o, "mydict");
	CHECK(is_object(v, "foo", "MyDict") && is_int(weld_py_dict_get(v->obj.state, "a"), 1) && v->depth == 2);
	v = weld_py_dict_get(weld_py_dict_get(o, "dd"), "k");
	CHECK(v && v->kind == WELD_PY_LIST && v->seq.n == 1 && is_int(v->seq.items[0], 1));
	CHECK(is_int(weld_py_dict_get(weld_py_dict_get(o, "counter"), "a"), 2));
	CHECK(o && o->depth == 4);
	free(buf);

	test_deepspeed_like("pickles/deepspeed_like.pkl");
	test_deepspeed_like("pickles/deepspeed_like_p4.pkl");
}

/* Small hand-built streams: Python-2 strings, POP/DUP, LONG4, legacy tensor forms. */
static void test_hand_built_ok(void)
{
	weld_error err = {0};
	weld_status st;
	weld_py *o;

	/* SHORT_BINSTRING / BINSTRING, DUP, POP, POP_MARK, LONG4, BININT */
	static const char s1[] = "\x80\x02(U\x03" "abcT\x02\x00\x00\x00" "de2N0(K\x01" "1\x8b\x02\x00\x00\x00\xff\x7f"
				 "J\xfe\xff\xff\xff" "t.";
	o = load_mem(s1, sizeof(s1) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(o && o->kind == WELD_PY_TUPLE && o->seq.n == 5);
	if (o && o->kind == WELD_PY_TUPLE && o->seq.n == 5) {
		CHECK(weld_py_is_str(o->seq.items[0], "abc"));
		CHECK(weld_py_is_str(o->seq.items[1], "de"));
		CHECK(o->seq.items[2] == o->seq.items[1]); /* DUP */
		CHECK(is_int(o->seq.items[3], 0x7fff));
		CHECK(is_int(o->seq.items[4], -2));
	}
	/* A non-UTF-8 Python 2 str becomes bytes. */
	static const char s2[] = "U\x02\xff\xfe.";
	o = load_mem(s2, sizeof(s2) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(o && o->kind == WELD_PY_BYTES && o->str.len == 2);

	/* Legacy: NEWOBJ torch.Tensor, BUILD (storage, offset, size, stride); Parameter(tensor) */
	static const char s4[] = "\x80\x02" "ctorch.nn.parameter\nParameter\n"
				 "ctorch\nTensor\n)\x81"
				 "((X\x07\x00\x00\x00" "storagectorch\nHalfStorage\nX\x01\x00\x00\x00" "7X\x03\x00\x00\x00"
				 "cpuK\x06tQ" "K\x01K\x02K\x02\x86K\x02K\x01\x86tb"
				 "\x89\x86\x81.";
	o = load_mem(s4, sizeof(s4) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(tensor_is(o, WELD_DTYPE_F16, 2, (uint64_t[]){2, 2}, (int64_t[]){2, 1}, 1));
	CHECK(o && o->tensor.parameter && !o->tensor.requires_grad);
	CHECK(o && strcmp(o->tensor.storage->storage.key, "7") == 0 && o->tensor.storage->storage.numel == 6);

	/* OrderedDict from a list of pairs (Python 2 form); copyreg._reconstructor */
	static const char s5[] = "ccollections\nOrderedDict\n]((X\x01\x00\x00\x00" "aK\x01t(X\x01\x00\x00\x00" "bK\x02"
				 "te\x85R.";
	o = load_mem(s5, sizeof(s5) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(o && o->kind == WELD_PY_DICT && o->dict.ordered && is_int(weld_py_dict_get(o, "b"), 2));
	static const char s6[] = "ccopy_reg\n_reconstructor\n(cfoo\nBar\nc__builtin__\nobject\nNtR}b.";
	o = load_mem(s6, sizeof(s6) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(is_object(o, "foo", "Bar") && o->obj.args == NULL && o->obj.state && o->obj.state->kind == WELD_PY_DICT);

	/* A storage-less torch.Tensor() that is never BUILT is refused at STOP. */
	EXPECT_FAIL("ctorch\nTensor\n)\x81.", WELD_ERR_FORMAT,
		    "pickle creates a tensor at offset 15 that never gets a storage");

	/* Several loads in one arena keep earlier trees alive. */
	weld_py *first = load_mem("K\x05.", 3, &err, &st, NULL);
	weld_py *second = load_mem("X\x02\x00\x00\x00hi.", 8, &err, &st, NULL);
	CHECK(is_int(first, 5) && weld_py_is_str(second, "hi"));
}

/* ------------------------------------------------------------------------- */
/* Hostile and broken input */

#define STORAGE_PID(key, cls, numel)                                                                     \
	"(X\x07\x00\x00\x00" "storagectorch\n" cls "\nX\x01\x00\x00\x00" key "X\x03\x00\x00\x00" "cpuK" numel \
	"tQ"
#define REBUILD_V2 "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n("
#define HOOKS "\x89" "ccollections\nOrderedDict\n)R"

/* A _rebuild_tensor_v2 stream: offset 4 of "R" is its length - 2. */
static void expect_tensor_fail(const char *lit, size_t len, weld_status status, const char *fmt, int line)
{
	char msg[512];
	snprintf(msg, sizeof(msg), fmt, len - 2);
	expect_fail_lim(lit, len, NULL, status, msg, line);
}
#define EXPECT_TENSOR_FAIL(lit, status, fmt) expect_tensor_fail(lit, sizeof(lit) - 1, status, fmt, __LINE__)

static void test_unsafe(void)
{
	EXPECT_FAIL("\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00" "lsq\x01\x85q\x02Rq\x03.", WELD_ERR_UNSAFE,
		    "global 'os.system' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("\x80\x02" "cposix\nsystem\nX\x02\x00\x00\x00" "ls\x85R.", WELD_ERR_UNSAFE,
		    "global 'posix.system' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("\x80\x04\x8c\x0asubprocess\x94\x8c\x05Popen\x94\x93\x94]\x85R.", WELD_ERR_UNSAFE,
		    "global 'subprocess.Popen' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("\x80\x03" "cbuiltins\neval\nX\x01\x00\x00\x00" "1\x85R.", WELD_ERR_UNSAFE,
		    "global 'builtins.eval' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("\x80\x02" "c__builtin__\nexec\nX\x01\x00\x00\x00" "1\x85R.", WELD_ERR_UNSAFE,
		    "global 'builtins.exec' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("c__builtin__\n__import__\n.", WELD_ERR_UNSAFE,
		    "global 'builtins.__import__' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("cos.path\njoin\n.", WELD_ERR_UNSAFE,
		    "global 'os.path.join' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("ccommands\ngetoutput\n.", WELD_ERR_UNSAFE,
		    "global 'subprocess.getoutput' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("c__builtin__\nintern\n.", WELD_ERR_UNSAFE,
		    "global 'sys.intern' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("cnumpy\nlinalg.__dict__\n.", WELD_ERR_UNSAFE,
		    "global 'numpy.linalg.__dict__' is not a data type weld knows; nothing was executed");
	/* getattr: only getattr(Class, "member") is accepted, and never called or passed around */
	EXPECT_FAIL("c__builtin__\ngetattr\n(cargparse\nNamespace\nX\x08\x00\x00\x00" "__init__tR.", WELD_ERR_UNSAFE,
		    "pickle calls builtins.getattr at offset 56 on something other than (an enum weld knows, member name), which could run code; refusing to load");
	EXPECT_FAIL("c__builtin__\ngetattr\n(X\x01\x00\x00\x00" "aX\x01\x00\x00\x00" "btR.", WELD_ERR_UNSAFE,
		    "pickle calls builtins.getattr at offset 35 on something other than (an enum weld knows, member name), which could run code; refusing to load");
	/* ... on an enum only: any other class, even one allowed as data, may hand out code (pathlib's write_text). */
	EXPECT_FAIL("c__builtin__\ngetattr\n(cfoo\nBar\nX\x03\x00\x00\x00" "runtR)R.", WELD_ERR_UNSAFE,
		    "pickle calls builtins.getattr at offset 40 on something other than (an enum weld knows, member name), which could run code; refusing to load");
	EXPECT_FAIL("c__builtin__\ngetattr\n(cpathlib\nPosixPath\nX\x0a\x00\x00\x00" "write_texttR.", WELD_ERR_UNSAFE,
		    "pickle calls builtins.getattr at offset 57 on something other than (an enum weld knows, member name), which could run code; refusing to load");
	EXPECT_FAIL("c__builtin__\ngetattr\n(cdeepspeed.runtime.zero.config\nZeroStageEnum\nX\x09\x00\x00\x00" "gradientstR)R.",
		    WELD_ERR_UNSAFE,
		    "pickle calls deepspeed.runtime.zero.config.ZeroStageEnum.gradients, fetched with builtins.getattr, at offset 84, which could run code; refusing to load");
	/* The allowlist: anything not on it is refused at GLOBAL, even harmless-looking names. */
	EXPECT_FAIL("curllib.request\nurlopen\n.", WELD_ERR_UNSAFE,
		    "global 'urllib.request.urlopen' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("curllib\nurlopen\n.", WELD_ERR_UNSAFE, /* Python 2 spelling, mapped first */
		    "global 'urllib.request.urlopen' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("ctypes\nCodeType\n.", WELD_ERR_UNSAFE,
		    "global 'types.CodeType' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("cbuiltins\ndict\n.", WELD_ERR_UNSAFE,
		    "global 'builtins.dict' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("cnumpy\nload\n.", WELD_ERR_UNSAFE,
		    "global 'numpy.load' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("ctorch\nload\n.", WELD_ERR_UNSAFE,
		    "global 'torch.load' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("ctorch.cuda\nfloat32\n.", WELD_ERR_UNSAFE, /* dtypes live in torch only */
		    "global 'torch.cuda.float32' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("ctorch._utils\n_rebuild_tensor_v2.__globals__\n.", WELD_ERR_UNSAFE,
		    "global 'torch._utils._rebuild_tensor_v2.__globals__' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("\x80\x04\x8c\x10" "torch.jit._state\x8c\x0b" "execWrapper\x93.", WELD_ERR_UNSAFE,
		    "global 'torch.jit._state.execWrapper' is not a data type weld knows; nothing was executed");
	/* A nested pickle (torch.storage._load_from_bytes) is refused, not parsed or kept. */
	EXPECT_FAIL("\x80\x02" "ctorch.storage\n_load_from_bytes\nC\x02" "..\x85R.", WELD_ERR_UNSAFE,
		    "global 'torch.storage._load_from_bytes' is not a data type weld knows; nothing was executed");
	/* getattr only on an allowlisted data class, never on a function weld interprets */
	EXPECT_FAIL("c__builtin__\ngetattr\n(cos\nsystem\nX\x01\x00\x00\x00" "atR.", WELD_ERR_UNSAFE,
		    "global 'os.system' is not a data type weld knows; nothing was executed");
	EXPECT_FAIL("c__builtin__\ngetattr\n(c_codecs\nencode\nX\x01\x00\x00\x00" "atR.", WELD_ERR_UNSAFE,
		    "pickle calls builtins.getattr at offset 45 on something other than (an enum weld knows, member name), which could run code; refusing to load");
	EXPECT_FAIL("]c__builtin__\ngetattr\na.", WELD_ERR_UNSAFE,
		    "pickle passes builtins.getattr around as a value at offset 22, which could run code; refusing to load");
	EXPECT_FAIL("c__builtin__\ngetattr\n.", WELD_ERR_UNSAFE,
		    "pickle returns builtins.getattr itself at offset 21, which is not data; refusing to load");
}

/* N copies of A followed by M copies of B, then STOP. */
static uint8_t *repeat2(char a, size_t n, char b, size_t m, size_t *len)
{
	uint8_t *buf = malloc(n + m + 1);
	memset(buf, a, n);
	memset(buf + n, b, m);
	buf[n + m] = '.';
	*len = n + m + 1;
	return buf;
}

static void test_limits(void)
{
	size_t len;
	/* 200000 nested lists: ]]]...aaa */
	uint8_t *buf = repeat2(']', 200000, 'a', 199999, &len);
	expect_fail_lim(buf, len, NULL, WELD_ERR_LIMIT, "pickle nests deeper than 1000 levels at offset 200999",
			__LINE__);
	free(buf);
	/* 200000 MARKs closed by TUPLEs: nested empty tuples */
	buf = repeat2('(', 200000, 't', 200000, &len);
	expect_fail_lim(buf, len, NULL, WELD_ERR_LIMIT, "pickle nests deeper than 1000 levels at offset 201000",
			__LINE__);
	weld_pickle_limits lim = {.max_stack = 1000};
	expect_fail_lim(buf, len, &lim, WELD_ERR_LIMIT, "pickle stack grows past 1000 entries at offset 1000",
			__LINE__);
	free(buf);
	/* Exactly at the limit is fine: 1000 nested lists. */
	buf = repeat2(']', 1000, 'a', 999, &len);
	{
		weld_error err = {0};
		weld_status st;
		weld_py *o = load_mem(buf, len, &err, &st, NULL);
		CHECK_OK(st, &err);
		CHECK(o && o->kind == WELD_PY_LIST && o->depth == 1000);
	}
	free(buf);
	lim = (weld_pickle_limits){.max_depth = 3};
	expect_fail_lim("]]]]aaa.", 8, &lim, WELD_ERR_LIMIT, "pickle nests deeper than 3 levels at offset 6", __LINE__);
	lim = (weld_pickle_limits){.max_memo = 100};
	expect_fail_lim("Nr\x64\x00\x00\x00.", 7, &lim, WELD_ERR_LIMIT,
			"pickle memo index 100 at offset 1 is beyond the limit of 100 entries", __LINE__);
	/* Memory: a 100 KB string in a 64 KB budget */
	lim = (weld_pickle_limits){.max_bytes = 64 << 10};
	len = 5 + 100000 + 1;
	buf = calloc(1, len);
	buf[0] = 'X';
	buf[1] = 0xa0, buf[2] = 0x86, buf[3] = 0x01;
	memset(buf + 5, 'x', 100000);
	buf[len - 1] = '.';
	expect_fail_lim(buf, len, &lim, WELD_ERR_LIMIT, "pickle needs more than 65536 bytes of memory at offset 0",
			__LINE__);
	free(buf);
	/* "Billion laughs": each tuple holds the previous one twice. */
	len = 1 + 5 * 40 + 1;
	buf = malloc(len);
	buf[0] = ']';
	for (int i = 0; i < 40; i++)
		memcpy(buf + 1 + 5 * i, "q\x00h\x00\x86", 5);
	buf[len - 1] = '.';
	expect_fail_lim(buf, len, NULL, WELD_ERR_LIMIT,
			"pickle expands to more than 268435456 values through shared references at offset 140", __LINE__);
	free(buf);
	EXPECT_FAIL("\x80\x02\x8b\x00\x10\x00\x00.", WELD_ERR_LIMIT, "pickle integer at offset 2 is 4096 bytes long, more than 1024");
	/* Cycles would defeat depth tracking and any tree walk. */
	EXPECT_FAIL("]q\x00h\x00" "a.", WELD_ERR_UNSUPPORTED,
		    "pickle grows a container after nesting it elsewhere at offset 5 (APPEND); cyclic structures are not supported");
	EXPECT_FAIL("]q\x00]q\x01h\x00" "a0h\x01" "a.", WELD_ERR_UNSUPPORTED,
		    "pickle grows a container after nesting it elsewhere at offset 12 (APPEND); cyclic structures are not supported");
	EXPECT_FAIL("]q\x00]h\x00" "a0h\x00K\x01" "a.", WELD_ERR_UNSUPPORTED,
		    "pickle grows a container after nesting it elsewhere at offset 12 (APPEND); cyclic structures are not supported");
	EXPECT_FAIL("cfoo\nBar\n)\x81" "22s.", WELD_ERR_UNSUPPORTED,
		    "pickle grows a container after nesting it elsewhere at offset 13 (SETITEM); cyclic structures are not supported");
	EXPECT_FAIL("}q\x00K\x01h\x00s.", WELD_ERR_UNSUPPORTED,
		    "pickle grows a container after nesting it elsewhere at offset 7 (SETITEM); cyclic structures are not supported");
}

static void test_truncated(void)
{
	static const char *const files[] = {"pickles/edge_zip_data.pkl", "pickles/proto4.pkl",
					    "pickles/misc_p2.pkl", "pickles/deepspeed_like.pkl",
					    "pickles/proto5.pkl", "pickles/containers_p2.pkl"};
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		size_t len;
		uint8_t *buf = read_file(fixture(files[f]), &len);
		CHECK(buf != NULL);
		for (size_t n = 0; buf && n < len; n++) {
			weld_pickle *p = new_test_pickle(NULL);
			weld_error err = {0};
			weld_py *out = NULL;
			/* An exact-size copy lets ASan see any read past the end. */
			uint8_t *cut = malloc(n ? n : 1);
			memcpy(cut, buf, n);
			weld_status st = weld_pickle_load(p, cut, n, NULL, &out, &err);
			if (st != WELD_ERR_FORMAT || strncmp(err.message, "truncated pickle", 16) != 0) {
				fprintf(stderr, "%s: prefix %zu: status %d \"%s\"\n", files[f], n, st, err.message);
				test_failures++;
			}
			free(cut);
			weld_pickle_free(p);
		}
		free(buf);
	}
	EXPECT_FAIL("", WELD_ERR_FORMAT, "truncated pickle: data ends at offset 0 before STOP");
	EXPECT_FAIL("\x80\x02X\xe8\x03\x00\x00" "0123456789", WELD_ERR_FORMAT,
		    "truncated pickle: BINUNICODE at offset 2 needs 1000 bytes, 10 left");
	EXPECT_FAIL("\x80\x02X\xf0\xff\xff\xff" "abc.", WELD_ERR_FORMAT,
		    "truncated pickle: BINUNICODE at offset 2 needs 4294967280 bytes, 4 left");
	EXPECT_FAIL("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", WELD_ERR_FORMAT,
		    "truncated pickle: BINUNICODE8 at offset 2 needs 18446744073709551615 bytes, 1 left");
	EXPECT_FAIL("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00N.", WELD_ERR_FORMAT,
		    "truncated pickle: FRAME at offset 2 announces 16 bytes, 2 left");
	EXPECT_FAIL("cos", WELD_ERR_FORMAT,
		    "truncated pickle: GLOBAL at offset 0 has no newline-terminated module and name");
	EXPECT_FAIL("\x80", WELD_ERR_FORMAT, "truncated pickle: PROTO at offset 0 needs 1 bytes, 0 left");
}

static void test_malformed(void)
{
	EXPECT_FAIL("\x80\x02h\x07.", WELD_ERR_FORMAT, "pickle memo index 7 not defined at offset 2");
	EXPECT_FAIL("\x80\x02Nq\x03j\x04\x00\x00\x00.", WELD_ERR_FORMAT, "pickle memo index 4 not defined at offset 5");
	EXPECT_FAIL("\x80\x02(u.", WELD_ERR_FORMAT, "pickle stack underflow at offset 3 (SETITEMS)");
	EXPECT_FAIL("\x80\x02R.", WELD_ERR_FORMAT, "pickle stack underflow at offset 2 (REDUCE)");
	EXPECT_FAIL("N(R.", WELD_ERR_FORMAT, "pickle stack underflow at offset 2 (REDUCE)");
	EXPECT_FAIL(".", WELD_ERR_FORMAT, "pickle stack underflow at offset 0 (STOP)");
	EXPECT_FAIL("}(K\x01u.", WELD_ERR_FORMAT, "pickle SETITEMS at offset 4 has an odd number of items");
	EXPECT_FAIL("Nt.", WELD_ERR_FORMAT, "pickle TUPLE at offset 1 has no MARK before it");
	EXPECT_FAIL("K\x01K\x02" "a.", WELD_ERR_FORMAT, "pickle APPEND at offset 4 targets an int, not a list");
	EXPECT_FAIL("\x80\x02\xff.", WELD_ERR_FORMAT, "unknown pickle opcode 0xff at offset 2");
	EXPECT_FAIL("\x80\x06N.", WELD_ERR_UNSUPPORTED, "pickle protocol 6 at offset 0 is newer than 5");
	EXPECT_FAIL("\x80\x02ios\nsystem\n.", WELD_ERR_UNSUPPORTED,
		    "pickle opcode INST (0x69) at offset 2 is not supported");
	EXPECT_FAIL("(o.", WELD_ERR_UNSUPPORTED, "pickle opcode OBJ (0x6f) at offset 1 is not supported");
	EXPECT_FAIL("\x82\x01.", WELD_ERR_UNSUPPORTED, "pickle opcode EXT1 (0x82) at offset 0 is not supported");
	EXPECT_FAIL("I1\n.", WELD_ERR_UNSUPPORTED, "pickle opcode INT (0x49) at offset 0 is not supported");
	EXPECT_FAIL("\x97.", WELD_ERR_UNSUPPORTED, "pickle opcode NEXT_BUFFER (0x97) at offset 0 is not supported");
	EXPECT_FAIL("X\x02\x00\x00\x00\xc3(.", WELD_ERR_FORMAT, "pickle BINUNICODE at offset 0 is not valid UTF-8");
	EXPECT_FAIL("X\x02\x00\x00\x00\xc0\x80.", WELD_ERR_FORMAT, "pickle BINUNICODE at offset 0 is not valid UTF-8");
	EXPECT_FAIL("\x8c\x04\xf4\x90\x80\x80.", WELD_ERR_FORMAT, "pickle SHORT_BINUNICODE at offset 0 is not valid UTF-8");
	EXPECT_FAIL("\x8b\xff\xff\xff\xff.", WELD_ERR_FORMAT, "pickle LONG4 at offset 0 has a negative length");
	EXPECT_FAIL("T\x00\x00\x00\x80.", WELD_ERR_FORMAT, "pickle BINSTRING at offset 0 has a negative length");
	EXPECT_FAIL("c\nfoo\n.", WELD_ERR_FORMAT, "pickle GLOBAL at offset 0 has an empty or malformed name");
	EXPECT_FAIL("NK\x01\x93.", WELD_ERR_FORMAT, "pickle STACK_GLOBAL at offset 3 needs two str, got None and an int");
	EXPECT_FAIL("K\x01)R.", WELD_ERR_FORMAT, "pickle REDUCE at offset 3 calls an int, not a class or function");
	EXPECT_FAIL("cfoo\nBar\nNR.", WELD_ERR_FORMAT,
		    "pickle REDUCE at offset 10 passes None as the argument tuple of foo.Bar");
	EXPECT_FAIL("}Nb.", WELD_ERR_FORMAT, "pickle BUILD at offset 2 targets a dict");
	/* Characters that do not fit latin1 */
	EXPECT_FAIL("c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00" "latin1\x86R.", WELD_ERR_FORMAT,
		    "_codecs.encode at offset 35: U+0100 does not fit latin1");
	EXPECT_FAIL("c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x05\x00\x00\x00" "ascii\x86R.", WELD_ERR_UNSUPPORTED,
		    "_codecs.encode at offset 33 uses encoding 'ascii'; weld handles latin1 and utf-8");
}

static void test_tensors_bad(void)
{
	/* Good baseline: a [4] float tensor over a 4-element storage. */
	static const char ok[] = REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x04\x85K\x01\x85" HOOKS
		"tR.";
	weld_error err = {0};
	weld_status st;
	weld_py *o = load_mem(ok, sizeof(ok) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(tensor_is(o, WELD_DTYPE_F32, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));

	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x04\x85J\xff\xff\xff\xff\x85"
			   HOOKS "tR.",
			   WELD_ERR_UNSUPPORTED, "tensor at offset %zu has negative stride -1 in dimension 0");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x05\x85K\x01\x85" HOOKS "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu reaches element 4 but its storage '0' holds only 4");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x01K\x02K\x02\x86K\x02K\x01\x86" HOOKS
			   "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu reaches element 4 but its storage '0' holds only 4");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "J\xff\xff\xff\xffK\x01\x85K\x01\x85"
			   HOOKS "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu has negative storage offset -1");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00J\xfe\xff\xff\xff\x85K\x01\x85"
			   HOOKS "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu has negative size -2 in dimension 0");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x01\x85K\x01K\x01\x86" HOOKS
			   "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu has 1 sizes but 2 strides");
	/* Huge sizes with zero strides reach element 0 but hold over 2^64 bytes. */
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04")
			   "K\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40\x86"
			   "K\x00K\x00\x86" HOOKS "tR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu has more than 2^64 bytes");
	EXPECT_TENSOR_FAIL(REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00(K\x01K\x01K\x01K\x01K\x01K\x01"
			   "K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t(K\x01K\x01K\x01K\x01K\x01K\x01K\x01"
			   "K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t" HOOKS "tR.",
			   WELD_ERR_UNSUPPORTED, "tensor at offset %zu has 17 dimensions; weld supports at most 16");
	EXPECT_FAIL(REBUILD_V2 STORAGE_PID("0", "QInt8Storage", "\x04") "K\x00K\x04\x85K\x01\x85" HOOKS "tR.",
		    WELD_ERR_UNSUPPORTED, "storage class torch.QInt8Storage at offset 86 is not supported");
	EXPECT_FAIL(REBUILD_V2 "(X\x07\x00\x00\x00" "storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00"
		    "cpuK\x04(X\x01\x00\x00\x00" "1K\x00K\x04ttQ.",
		    WELD_ERR_UNSUPPORTED,
		    "storage persistent id at offset 98 is a legacy storage view, which weld does not support");
	EXPECT_FAIL("(X\x06\x00\x00\x00" "modulecfoo\nBar\nNNtQ.", WELD_ERR_UNSUPPORTED,
		    "persistent id at offset 24 holds a pickled nn.Module class, which weld does not load");
	EXPECT_FAIL("K\x01Q.", WELD_ERR_FORMAT, "persistent id at offset 2 is an int, not a ('storage', ...) tuple");
	EXPECT_FAIL("(X\x07\x00\x00\x00" "storagectorch\nfloat32\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00"
		    "cpuK\x04tQ.",
		    WELD_ERR_FORMAT, "storage persistent id at offset 45 names a non-storage global, not a storage class");
	EXPECT_FAIL("ctorch._utils\n_rebuild_qtensor\n)R.", WELD_ERR_UNSUPPORTED,
		    "pickle rebuilds a tensor with torch._utils._rebuild_qtensor at offset 32, which weld does not support");
	EXPECT_FAIL("ctorch._utils\n_rebuild_sparse_tensor\n)R.", WELD_ERR_UNSUPPORTED,
		    "pickle rebuilds a tensor with torch._utils._rebuild_sparse_tensor at offset 38, which weld does not support");
	EXPECT_FAIL("ctorch._utils\n_rebuild_tensor_v2\n(K\x01tR.", WELD_ERR_FORMAT,
		    "torch._utils._rebuild_tensor_v2 at offset 37 takes 6 or 7 arguments, got 1");
	/* A v3 tensor whose dtype has no safetensors type */
	EXPECT_TENSOR_FAIL("\x80\x02" "ctorch._utils\n_rebuild_tensor_v3\n("
			   "(X\x07\x00\x00\x00" "storagectorch.storage\nUntypedStorage\nX\x01\x00\x00\x00"
			   "0X\x03\x00\x00\x00" "cpuK\x04tQ"
			   "K\x00K\x01\x85K\x01\x85" HOOKS "ctorch\ncomplex32\ntR.",
			   WELD_ERR_UNSUPPORTED, "tensor dtype torch.complex32 at offset %zu is not supported");
	/* v3 on untyped storage: 8 bytes hold 2 int32 elements, not 3 */
	EXPECT_TENSOR_FAIL("\x80\x02" "ctorch._utils\n_rebuild_tensor_v3\n("
			   "(X\x07\x00\x00\x00" "storagectorch.storage\nUntypedStorage\nX\x01\x00\x00\x00"
			   "0X\x03\x00\x00\x00" "cpuK\x08tQ"
			   "K\x00K\x03\x85K\x01\x85" HOOKS "ctorch\nint32\ntR.",
			   WELD_ERR_FORMAT, "tensor at offset %zu reaches element 2 but its storage '0' holds only 2");
}

/* Call and BUILD forms no fixture reaches: NEWOBJ_EX, Parameter() + BUILD, tensor states, bad arguments. */
/* torch's view bits: the 7th argument of _rebuild_tensor_v2, {'neg': True} / {'conj': True}. */
#define BITS_V2(md) REBUILD_V2 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x04\x85K\x01\x85" HOOKS md "tR."
static void test_view_bits(void)
{
	static const struct {
		const char *lit;
		size_t len;
		bool neg, conj;
	} ok[] = {
#define OK_BITS(md, n, c) {BITS_V2(md), sizeof(BITS_V2(md)) - 1, n, c}
		OK_BITS("}X\x03\x00\x00\x00neg\x88s", true, false),
		OK_BITS("}X\x04\x00\x00\x00" "conj\x88s", false, true),
		OK_BITS("}(X\x03\x00\x00\x00neg\x88X\x04\x00\x00\x00" "conjK\x01u", true, true),
		OK_BITS("}X\x03\x00\x00\x00neg\x89s", false, false),
		OK_BITS("}X\x01\x00\x00\x00" "aK\x01s", false, false),
		OK_BITS("N", false, false),
		OK_BITS("", false, false),
#undef OK_BITS
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		weld_error err = {0};
		weld_status st;
		weld_py *o = load_mem(ok[i].lit, ok[i].len, &err, &st, NULL);
		CHECK_OK(st, &err);
		CHECK(tensor_is(o, WELD_DTYPE_F32, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));
		CHECK(o && o->kind == WELD_PY_TENSOR && o->tensor.neg == ok[i].neg && o->tensor.conj == ok[i].conj);
	}
	EXPECT_TENSOR_FAIL(BITS_V2("K\x01"), WELD_ERR_FORMAT,
			   "torch._utils._rebuild_tensor_v2 at offset %zu expects a metadata dict, got an int");
	EXPECT_TENSOR_FAIL(BITS_V2("}X\x03\x00\x00\x00negX\x01\x00\x00\x00ys"), WELD_ERR_FORMAT,
			   "torch._utils._rebuild_tensor_v2 at offset %zu has a tensor metadata flag that is a str, not a bool");
}
#undef BITS_V2

static void test_calls_and_builds(void)
{
	weld_error err = {0};
	weld_status st;
	weld_py *o;

	/* NEWOBJ_EX: keyword arguments of an opaque class are dropped. */
	static const char kw[] = "\x80\x04" "cfoo\nBar\n)}(X\x01\x00\x00\x00" "kK\x01u\x92.";
	o = load_mem(kw, sizeof(kw) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(is_object(o, "foo", "Bar") && o->obj.args && o->obj.args->kind == WELD_PY_TUPLE &&
	      o->obj.args->seq.n == 0 && !o->obj.state);
	/* An empty Parameter() filled by BUILD (storage, offset, size, stride) requires grad. */
	static const char pp[] = "\x80\x02" "ctorch.nn.parameter\nParameter\n)\x81("
				 STORAGE_PID("0", "FloatStorage", "\x04") "K\x00K\x04\x85K\x01\x85tb.";
	o = load_mem(pp, sizeof(pp) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(tensor_is(o, WELD_DTYPE_F32, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));
	CHECK(o && o->tensor.parameter && o->tensor.requires_grad);
	/* Legacy Parameter.__setstate__((data, requires_grad, hooks)) on an empty Parameter(). */
	static const char ps[] = "\x80\x02" "ctorch\nTensor\n)\x81(" STORAGE_PID("0", "FloatStorage", "\x04")
				 "K\x00K\x04\x85K\x01\x85tbq\x00" "ctorch.nn.parameter\nParameter\n)\x81h\x00\x88}\x87"
				 "b.";
	o = load_mem(ps, sizeof(ps) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(tensor_is(o, WELD_DTYPE_F32, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));
	CHECK(o && o->tensor.parameter && o->tensor.requires_grad);
	/* A dict state (attributes of a tensor subclass) leaves the tensor as it was. */
	static const char ds[] = "\x80\x02" "ctorch\nTensor\n)\x81(" STORAGE_PID("0", "FloatStorage", "\x04")
				 "K\x00K\x04\x85K\x01\x85tb}b.";
	o = load_mem(ds, sizeof(ds) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(tensor_is(o, WELD_DTYPE_F32, 1, (uint64_t[]){4}, (int64_t[]){1}, 0));
	CHECK(o && !o->tensor.parameter && !o->tensor.requires_grad);
	/* POP with nothing above the mark drops the mark. */
	o = load_mem("(0N.", 4, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(o && o->kind == WELD_PY_NONE);

	EXPECT_FAIL("\x80\x04" "ccollections\nOrderedDict\n)}(X\x01\x00\x00\x00" "kK\x01u\x92.", WELD_ERR_UNSUPPORTED,
		    "pickle NEWOBJ_EX at offset 39 passes keyword arguments to collections.OrderedDict");
	EXPECT_FAIL("\x80\x04" "cfoo\nBar\n)N\x92.", WELD_ERR_FORMAT,
		    "pickle NEWOBJ_EX at offset 13 has None for keyword arguments");
	EXPECT_FAIL("ctorch\nSize\nK\x01\x85R.", WELD_ERR_FORMAT, "torch.Size at offset 15 expects a tuple of ints");
	EXPECT_FAIL("ctorch\nSize\nN\x85\x85R.", WELD_ERR_FORMAT,
		    "torch.Size at offset 15 expects a tuple of ints, got None");
	EXPECT_FAIL("c__builtin__\nset\nK\x01\x85R.", WELD_ERR_FORMAT, "builtins.set at offset 20 expects a list");
	EXPECT_FAIL("cfoo\nBar\n)\x81}bK\x01" "a.", WELD_ERR_UNSUPPORTED,
		    "pickle APPEND at offset 15 adds items to foo.Bar whose state is a dict");
	EXPECT_FAIL("\x80\x02" "ctorch\nTensor\nK\x01\x85R.", WELD_ERR_UNSUPPORTED,
		    "torch.Tensor at offset 19 is called with arguments; only the empty tensor plus BUILD form is supported");
	EXPECT_FAIL("\x80\x02" "ctorch\nTensor\n)\x81K\x01" "b.", WELD_ERR_FORMAT,
		    "pickle BUILD at offset 20 gives a tensor an int as its state");
	EXPECT_FAIL("\x80\x02" "ctorch._utils\n_rebuild_parameter\n(ctorch\nTensor\n)\x81X\x01\x00\x00\x00" "x}tR.",
		    WELD_ERR_FORMAT,
		    "torch._utils._rebuild_parameter at offset 60 expects a bool requires_grad, got a str");
	EXPECT_FAIL("\x80\x02" "ctorch._tensor\n_rebuild_from_type_v2\n)R.", WELD_ERR_FORMAT,
		    "torch._tensor._rebuild_from_type_v2 at offset 40 takes 4 arguments, got 0");
	EXPECT_FAIL("\x80\x02" "ctorch._tensor\n_rebuild_from_type_v2\n(cfoo\nbar\nctorch\nTensor\n)}tR.",
		    WELD_ERR_UNSUPPORTED,
		    "torch._tensor._rebuild_from_type_v2 at offset 66 applies foo.bar, which is not a tensor rebuild function");
}

/* weld_py_index_strs finds what weld_py_dict_get finds (the last of equal keys), without a scan per key. */
static void test_index_strs(void)
{
	static const char dict[] = "\x80\x02}(X\x01\0\0\0aK\x01X\x01\0\0\0bK\x02X\x01\0\0\0aK\x03K\x05K\x04"
				   "X\x03\0\0\0x\0yK\x06u.";
	static const char list[] = "\x80\x02](X\x01\0\0\0pX\x01\0\0\0qX\x01\0\0\0pe.";
	weld_error err = {0};
	weld_status st;
	weld_py *d = load_mem(dict, sizeof(dict) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	weld_map m;
	CHECK(d && d->kind == WELD_PY_DICT && d->dict.n == 5 && weld_py_index_strs(d, &m));
	CHECK(weld_map_get(&m, "a") == 2 && d->dict.vals[2] == weld_py_dict_get(d, "a"));
	CHECK(weld_map_get(&m, "b") == 1);
	CHECK(weld_map_get(&m, "x") == WELD_MAP_NONE && weld_py_dict_get(d, "x") == NULL); /* "x\0y" is no C string */
	CHECK(weld_map_get(&m, "5") == WELD_MAP_NONE && weld_map_get(&m, "c") == WELD_MAP_NONE);
	weld_map_clear(&m);
	weld_py *l = load_mem(list, sizeof(list) - 1, &err, &st, NULL);
	CHECK_OK(st, &err);
	CHECK(l && l->kind == WELD_PY_LIST && weld_py_index_strs(l, &m));
	CHECK(weld_map_get(&m, "p") == 2 && weld_map_get(&m, "q") == 1);
	weld_map_clear(&m);
	CHECK(weld_py_index_strs(NULL, &m) && weld_map_get(&m, "p") == WELD_MAP_NONE);
	weld_map_clear(&m);
}

/* weld_pickle_allow_global: a caller-trusted class is inert data; dunders never are. */
static void test_allow_global(void)
{
	weld_pickle *p = NULL;
	weld_error err = {0};
	weld_py *o = NULL;
	static const char s[] = "\x80\x02" "cmy.pkg\nCfg\n)\x81}X\x01\x00\x00\x00" "aK\x01sb.";
	CHECK_OK(weld_pickle_new(&p, NULL, &err), &err);
	CHECK(weld_pickle_load(p, (const uint8_t *)s, sizeof(s) - 1, NULL, &o, &err) == WELD_ERR_UNSAFE);
	CHECK(strcmp(err.message, "global 'my.pkg.Cfg' is not a data type weld knows; nothing was executed") == 0);
	CHECK_OK(weld_pickle_allow_global(p, "my.pkg.Cfg", &err), &err);
	CHECK_OK(weld_pickle_load(p, (const uint8_t *)s, sizeof(s) - 1, NULL, &o, &err), &err);
	CHECK(is_object(o, "my.pkg", "Cfg") && is_int(weld_py_dict_get(o->obj.state, "a"), 1));
	CHECK(weld_pickle_allow_global(p, "Cfg", &err) == WELD_ERR_INVALID_ARG);
	CHECK(weld_pickle_allow_global(p, "my.pkg.", &err) == WELD_ERR_INVALID_ARG);
	CHECK(weld_pickle_allow_global(p, "builtins.__import__", &err) == WELD_ERR_INVALID_ARG);
	CHECK(weld_pickle_allow_global(p, "my.Cfg.__init__", &err) == WELD_ERR_INVALID_ARG);
	CHECK(weld_pickle_allow_global(p, "__main__.Cfg", &err) == WELD_ERR_INVALID_ARG);
	weld_pickle_free(p);
}

int main(void)
{
	P = new_test_pickle(NULL);
	test_edge_zip();
	test_other_torch_pickles();
	test_legacy();
	test_generated();
	test_hand_built_ok();
	test_unsafe();
	test_limits();
	test_truncated();
	test_malformed();
	test_tensors_bad();
	test_view_bits();
	test_calls_and_builds();
	test_index_strs();
	test_allow_global();
	weld_pickle_free(P);
	weld_pickle_free(NULL);
	TEST_DONE();
}
