/*
 * What a GLOBAL names, decided once when it is pushed, by an allowlist (as
 * torch's weights_only loader does): a name in the table below is accepted
 * as an inert data type, tagged for call.c and tensor.c to interpret or
 * (G_PLAIN) turned into an opaque WELD_PY_OBJECT when "called"; nothing is
 * ever imported or run. Any other name is refused on the spot with
 * WELD_ERR_UNSAFE, naming it. A caller can add classes it trusts with
 * weld_pickle_allow_global (still inert data, G_PLAIN).
 *
 * Python 2 names are mapped to Python 3 ones first (Python's _compat_pickle
 * tables); only the mapped name is looked up.
 *
 * The table was built from what real files reference:
 * scripts/list_globals.py lists every GLOBAL/STACK_GLOBAL in tests/fixtures
 * and ../shared/fixtures (zip members included).
 */
#include "io/pickle/internal.h"

#include <stdlib.h>
#include <string.h>

/* Python 2 names, as in Python's _compat_pickle (the parts that matter here). */
static const struct {
	const char *mod, *name, *to_mod, *to_name;
} name_map[] = {
	{"__builtin__", "xrange", "builtins", "range"},
	{"__builtin__", "reduce", "functools", "reduce"},
	{"__builtin__", "intern", "sys", "intern"},
	{"__builtin__", "unichr", "builtins", "chr"},
	{"__builtin__", "unicode", "builtins", "str"},
	{"__builtin__", "long", "builtins", "int"},
	{"__builtin__", "basestring", "builtins", "str"},
	{"itertools", "izip", "builtins", "zip"},
	{"itertools", "imap", "builtins", "map"},
	{"itertools", "ifilter", "builtins", "filter"},
	{"itertools", "ifilterfalse", "itertools", "filterfalse"},
	{"itertools", "izip_longest", "itertools", "zip_longest"},
	{"UserDict", "IterableUserDict", "collections", "UserDict"},
	{"UserList", "UserList", "collections", "UserList"},
	{"UserString", "UserString", "collections", "UserString"},
	{"whichdb", "whichdb", "dbm", "whichdb"},
	{"_socket", "fromfd", "socket", "fromfd"},
	{"_multiprocessing", "Connection", "multiprocessing.connection", "Connection"},
	{"multiprocessing.process", "Process", "multiprocessing.context", "Process"},
	{"multiprocessing.forking", "Popen", "multiprocessing.popen_fork", "Popen"},
	{"urllib", "ContentTooShortError", "urllib.error", "ContentTooShortError"},
	{"urllib", "getproxies", "urllib.request", "getproxies"},
	{"urllib", "pathname2url", "urllib.request", "pathname2url"},
	{"urllib", "quote_plus", "urllib.parse", "quote_plus"},
	{"urllib", "quote", "urllib.parse", "quote"},
	{"urllib", "unquote_plus", "urllib.parse", "unquote_plus"},
	{"urllib", "unquote", "urllib.parse", "unquote"},
	{"urllib", "url2pathname", "urllib.request", "url2pathname"},
	{"urllib", "urlcleanup", "urllib.request", "urlcleanup"},
	{"urllib", "urlencode", "urllib.parse", "urlencode"},
	{"urllib", "urlopen", "urllib.request", "urlopen"},
	{"urllib", "urlretrieve", "urllib.request", "urlretrieve"},
	{"urllib2", "HTTPError", "urllib.error", "HTTPError"},
	{"urllib2", "URLError", "urllib.error", "URLError"},
};

static const struct {
	const char *from, *to;
} module_map[] = {
	{"__builtin__", "builtins"}, {"copy_reg", "copyreg"},       {"Queue", "queue"},
	{"SocketServer", "socketserver"}, {"ConfigParser", "configparser"}, {"repr", "reprlib"},
	{"cPickle", "pickle"},        {"cStringIO", "io"},           {"StringIO", "io"},
	{"UserDict", "collections"},  {"UserList", "collections"},   {"UserString", "collections"},
	{"whichdb", "dbm"},           {"anydbm", "dbm"},             {"commands", "subprocess"},
	{"thread", "_thread"},        {"dummy_thread", "_dummy_thread"}, {"httplib", "http.client"},
	{"urlparse", "urllib.parse"}, {"urllib2", "urllib.request"}, {"cookielib", "http.cookiejar"},
	{"xmlrpclib", "xmlrpc.client"}, {"exceptions", "builtins"},  {"sets", "builtins"},
	{"itertools", "itertools"},
};

/* *MOD and *NAME as Python 3 spells them. */
static void map_py2_name(const char **mod, const char **name)
{
	for (size_t i = 0; i < sizeof(name_map) / sizeof(name_map[0]); i++)
		if (strcmp(*mod, name_map[i].mod) == 0 && strcmp(*name, name_map[i].name) == 0) {
			*mod = name_map[i].to_mod, *name = name_map[i].to_name;
			return;
		}
	for (size_t i = 0; i < sizeof(module_map) / sizeof(module_map[0]); i++)
		if (strcmp(*mod, module_map[i].from) == 0) {
			*mod = module_map[i].to;
			return;
		}
}

/*
 * The allowlist. Each group says where real files use it. G_PLAIN entries
 * are classes kept as opaque objects (their state is data); builtins.getattr
 * is accepted only as getattr(G_PLAIN class, member name) (call.c).
 */
static const struct {
	const char *mod, *name;
	enum gkind kind;
} allowed[] = {
	/* torch.save of any tensor (every .pt/.bin fixture): rebuild functions,
	 * Parameter, the tensor subclass path (_rebuild_from_type_v2 + Tensor). */
	{"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2},
	{"torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3},
	{"torch._utils", "_rebuild_tensor", G_REBUILD},
	{"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM},
	{"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
	{"torch._tensor", "_rebuild_from_type_v2", G_FROM_TYPE_V2},
	{"torch.nn.parameter", "Parameter", G_PARAMETER},
	{"torch.nn", "Parameter", G_PARAMETER},
	{"torch", "Tensor", G_TENSOR},
	/* Storage classes (persistent ids): typed ones in every torch version
	 * (FloatStorage...), UntypedStorage since torch 2.0 (DeepSpeed states). */
	{"torch.storage", "UntypedStorage", G_STORAGE},
	{"torch.storage", "TypedStorage", G_STORAGE},
	{"torch", "UntypedStorage", G_STORAGE},
	{"torch", "TypedStorage", G_STORAGE},
	/* torch.Size (DeepSpeed param_shapes), torch.device (optimizer and trainer
	 * states, misc_p2.pkl). */
	{"torch", "Size", G_SIZE},
	{"torch", "device", G_PLAIN},
	/* Containers and bytes: OrderedDict wraps every state dict; defaultdict,
	 * Counter and list (a defaultdict factory) in optimizer states and
	 * containers_p2.pkl; set/frozenset/bytes/bytearray in misc_p2.pkl and
	 * DeepSpeed states; _codecs.encode is how protocol 2 writes bytes (Megatron
	 * rng states, numpy arrays). copyreg._reconstructor/object: protocol 0/1
	 * objects, only of classes allowed here. */
	{"collections", "OrderedDict", G_ORDERED_DICT},
	{"collections", "defaultdict", G_DICTLIKE},
	{"collections", "Counter", G_COUNTER},
	{"builtins", "set", G_SET},
	{"builtins", "frozenset", G_FROZENSET},
	{"builtins", "bytearray", G_BYTEARRAY},
	{"builtins", "bytes", G_BYTES},
	{"builtins", "slice", G_PLAIN},
	{"builtins", "list", G_PLAIN},
	{"builtins", "object", G_PLAIN},
	{"builtins", "getattr", G_GETATTR},
	{"_codecs", "encode", G_ENCODE},
	{"copyreg", "_reconstructor", G_RECONSTRUCTOR},
	/* numpy arrays and scalars in trainer and Megatron rng states
	 * (megatron/model_optim_rng.pt); numpy 2 writes numpy._core. */
	{"numpy.core.multiarray", "_reconstruct", G_PLAIN},
	{"numpy.core.multiarray", "scalar", G_PLAIN},
	{"numpy._core.multiarray", "_reconstruct", G_PLAIN},
	{"numpy._core.multiarray", "scalar", G_PLAIN},
	{"numpy", "ndarray", G_PLAIN},
	{"numpy", "dtype", G_PLAIN},
	/* DeepSpeed optimizer and model states (tests/fixtures/zero*, trainer):
	 * the ZeRO stage enum (also as getattr(ZeroStageEnum, 'gradients')),
	 * loss scalers, fragment addresses of frozen/universal params. */
	{"deepspeed.runtime.zero.config", "ZeroStageEnum", G_PLAIN},
	{"deepspeed.runtime.fp16.loss_scaler", "LossScaler", G_PLAIN},
	{"deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler", G_PLAIN},
	{"deepspeed.utils.tensor_fragment", "fragment_address", G_PLAIN},
	/* Megatron checkpoints keep their command line (the .pt files in tests/fixtures/megatron). */
	{"argparse", "Namespace", G_PLAIN},
	/* torch.distributed.checkpoint .metadata files (tests/fixtures/dcp: HF
	 * Trainer + FSDP2, torchtitan's layout, plain dcp.save): the metadata
	 * dataclasses, the memory-format enum and torch.layout (pickled as a call
	 * of _get_layout on its name, "torch.strided"), and StorageMeta's
	 * checkpoint_id path. */
	{"torch.distributed.checkpoint.metadata", "Metadata", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "TensorStorageMetadata", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "ChunkStorageMetadata", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "BytesStorageMetadata", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "MetadataIndex", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "TensorProperties", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "StorageMeta", G_PLAIN},
	{"torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", G_PLAIN},
	{"torch.distributed.checkpoint.filesystem", "_StorageInfo", G_PLAIN},
	{"torch.serialization", "_get_layout", G_PLAIN},
	{"pathlib", "PosixPath", G_PLAIN},
};

/* torch.<Name>Storage (and torch.cuda.<Name>Storage): the legacy typed storage classes. */
static const char *const storage_names[] = {
	"FloatStorage",  "DoubleStorage", "HalfStorage",   "BFloat16Storage",      "ByteStorage",
	"CharStorage",   "ShortStorage",  "IntStorage",    "LongStorage",          "BoolStorage",
	"ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage", "QInt32Storage",
	"QUInt4x2Storage", "QUInt2x4Storage",
};

/* torch.<dtype>: every dtype torch has (v3 rebuilds, optimizer and trainer
 * states); ones weld cannot convert are refused later, as unsupported. */
static const char *const dtype_names[] = {
	"float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32", "chalf",
	"complex64", "cfloat", "complex128", "cdouble", "uint8", "int8", "int16", "short", "int32", "int",
	"int64", "long", "bool", "uint16", "uint32", "uint64", "qint8", "quint8", "qint32", "quint4x2",
	"quint2x4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
	"float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
};

static bool in_names(const char *n, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(n, names[i]) == 0)
			return true;
	return false;
}
#define IN_NAMES(n, arr) in_names(n, arr, sizeof(arr) / sizeof(arr[0]))

/* The kind of allowlisted M.N (P may be NULL: the built-in list only); false when it is not allowed. */
static bool classify(const weld_pickle *p, const char *m, const char *n, enum gkind *kind)
{
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(m, allowed[i].mod) == 0 && strcmp(n, allowed[i].name) == 0) {
			*kind = allowed[i].kind;
			return true;
		}
	if ((strcmp(m, "torch") == 0 || strcmp(m, "torch.cuda") == 0) && IN_NAMES(n, storage_names)) {
		*kind = G_STORAGE;
		return true;
	}
	if (strcmp(m, "torch") == 0 && IN_NAMES(n, dtype_names)) {
		*kind = G_PLAIN;
		return true;
	}
	/* Other tensor rebuilds (sparse, quantized, nested...): a clear "unsupported" when called. */
	if ((strcmp(m, "torch._utils") == 0 || strcmp(m, "torch._tensor") == 0) && strncmp(n, "_rebuild_", 9) == 0 &&
	    !strchr(n, '.')) {
		*kind = G_REBUILD_UNSUPPORTED;
		return true;
	}
	for (size_t i = 0; p && i < p->nallow; i++)
		if (strcmp(m, p->allow[i].mod) == 0 && strcmp(n, p->allow[i].name) == 0) {
			*kind = G_PLAIN;
			return true;
		}
	return false;
}

bool weld__pk_global_allowed(const char **mod, const char **name, enum gkind *kind)
{
	enum gkind k;
	map_py2_name(mod, name);
	bool ok = classify(NULL, *mod, *name, &k);
	if (ok && kind)
		*kind = k;
	return ok;
}

weld_status weld__pk_global(weld_pickle *p, const uint8_t *mod, size_t nmod, const uint8_t *name, size_t nname,
			    weld_py **out)
{
	if (nmod == 0 || nname == 0 || memchr(mod, 0, nmod) || memchr(name, 0, nname) ||
	    !weld__utf8_valid(mod, nmod, true) || !weld__utf8_valid(name, nname, true))
		return weld__pk_fail(p, WELD_ERR_FORMAT, "pickle %s at offset %zu has an empty or malformed name",
				     p->opname, p->off);
	char *m = weld__pk_copy_str(p, mod, nmod), *n = m ? weld__pk_copy_str(p, name, nname) : NULL;
	TRY_PTR(n);
	const char *mm = m, *mn = n;
	map_py2_name(&mm, &mn);
	enum gkind kind;
	if (!classify(p, mm, mn, &kind))
		return weld__pk_unsafe_global(p, mm, mn);
	weld_py *g = weld__pk_new_node(p, WELD_PY_GLOBAL);
	TRY_PTR(g);
	g->obj.module = mm;
	g->obj.name = mn;
	hdr(g)->gkind = (uint8_t)kind;
	*out = g;
	return WELD_OK;
}

weld_status weld__pk_unsafe_global(weld_pickle *p, const char *module, const char *name)
{
	return weld__pk_fail(p, WELD_ERR_UNSAFE, "global '%s.%s' is not a data type weld knows; nothing was executed",
			     module, name);
}

weld_status weld__pk_allow_name_check(const char *dotted, weld_error *err)
{
	const char *dot = strrchr(dotted, '.');
	size_t len = strlen(dotted);
	if (!dot || dot == dotted || !dot[1] || strstr(dotted, "..") || dotted[0] == '.' ||
	    !weld__utf8_valid((const uint8_t *)dotted, len, true))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "allowed global '%s' is not MODULE.NAME", dotted);
	/* A dunder part (Cls.__init__, builtins.__import__) reaches code: never data. */
	for (const char *q = dotted; q; q = strchr(q + 1, '.'))
		if (strncmp(q == dotted ? q : q + 1, "__", 2) == 0)
			return weld__fail(err, WELD_ERR_INVALID_ARG,
					  "allowed global '%s' names a dunder attribute, which is never data", dotted);
	return WELD_OK;
}

weld_status weld_pickle_allow_global(weld_pickle *p, const char *dotted, weld_error *err)
{
	if (!p || !dotted)
		return weld__fail(err, WELD_ERR_INVALID_ARG, "weld_pickle_allow_global: p or name is NULL");
	weld_status st = weld__pk_allow_name_check(dotted, err);
	if (st)
		return st;
	const char *dot = strrchr(dotted, '.');
	size_t len = strlen(dotted);
	if (p->nallow == p->cap_allow) {
		size_t cap = p->cap_allow ? 2 * p->cap_allow : 4;
		void *a = realloc(p->allow, cap * sizeof(*p->allow));
		if (!a)
			return weld__nomem(err);
		p->allow = a;
		p->cap_allow = cap;
	}
	char *mod = malloc(len + 1);
	if (!mod)
		return weld__nomem(err);
	memcpy(mod, dotted, len + 1);
	mod[dot - dotted] = 0;
	p->allow[p->nallow].mod = mod;
	p->allow[p->nallow].name = mod + (dot - dotted) + 1;
	p->nallow++;
	return WELD_OK;
}

bool weld__pk_getattr_target(const char *module, const char *name)
{
	static const struct {
		const char *module, *name;
	} enums[] = {
		{"deepspeed.runtime.zero.config", "ZeroStageEnum"}, /* optimizer states: getattr(ZeroStageEnum, 'gradients') */
	};
	for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++)
		if (module && name && strcmp(enums[i].module, module) == 0 && strcmp(enums[i].name, name) == 0)
			return true;
	return false;
}
