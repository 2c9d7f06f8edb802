/*
 * What a GLOBAL names, decided once when it is pushed: code-running modules
 * and builtins are refused on the spot (WELD_ERR_UNSAFE), a short list
 * (OrderedDict, torch.Size, set, _codecs.encode, the torch rebuild functions,
 * storage classes...) is tagged for call.c and tensor.c to interpret, and
 * everything else turns into an opaque WELD_PY_OBJECT when called.
 *
 * Python 2 names are mapped to Python 3 ones first (Python's _compat_pickle
 * tables); both spellings of the module are checked, so neither hides a
 * blocked one.
 */
#include "io/pickle/internal.h"

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

/* Modules whose every name (and submodules') is refused. */
static const char *const blocked_modules[] = {
	"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pty", "importlib", "runpy",
	"code", "codeop", "ctypes", "pickle", "_pickle", "marshal", "webbrowser", "multiprocessing",
	"commands", "popen2", "platform", "signal", "_posixsubprocess", "timeit", "pdb", "cPickle",
};

/* builtins names that run code, reach frames or read files. */
static const char *const blocked_builtins[] = {
	"eval", "exec", "execfile", "compile", "open", "file", "getattr", "setattr", "delattr",
	"globals", "locals", "vars", "input", "raw_input", "breakpoint", "memoryview", "reload",
	"help", "exit", "quit",
};

/* S is PREFIX or starts with PREFIX followed by a dot. */
static bool starts_dotted(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(s, prefix, n) == 0 && (s[n] == '\0' || s[n] == '.');
}

static bool module_blocked(const char *m)
{
	for (size_t i = 0; i < sizeof(blocked_modules) / sizeof(blocked_modules[0]); i++)
		if (starts_dotted(m, blocked_modules[i]))
			return true;
	return false;
}

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

/* MOD.NAME (mapped from module ORIG_MOD of the stream) could run code. */
static bool unsafe(const char *orig_mod, const char *mod, const char *name)
{
	if (module_blocked(mod) || module_blocked(orig_mod))
		return true;
	/* getattr is refused where it is called, unless it fetches an enum member (call.c). */
	if (strcmp(mod, "builtins") == 0 && strcmp(name, "getattr") != 0) {
		if (strncmp(name, "__", 2) == 0)
			return true;
		for (size_t i = 0; i < sizeof(blocked_builtins) / sizeof(blocked_builtins[0]); i++)
			if (starts_dotted(name, blocked_builtins[i]))
				return true;
	}
	/* A dunder attribute of a class (Cls.__init__.__globals__) reaches anything. */
	for (const char *d = strchr(name, '.'); d; d = strchr(d + 1, '.'))
		if (strncmp(d + 1, "__", 2) == 0)
			return true;
	return false;
}

/* The symbols call.c and tensor.c interpret. */
static const struct {
	const char *mod, *name;
	enum gkind kind;
} known[] = {
	{"builtins", "getattr", G_GETATTR},
	{"builtins", "set", G_SET},
	{"builtins", "frozenset", G_FROZENSET},
	{"builtins", "bytearray", G_BYTEARRAY},
	{"builtins", "bytes", G_BYTES},
	{"collections", "OrderedDict", G_ORDERED_DICT},
	{"collections", "defaultdict", G_DICTLIKE},
	{"collections", "Counter", G_COUNTER},
	{"_codecs", "encode", G_ENCODE},
	{"copyreg", "_reconstructor", G_RECONSTRUCTOR},
	{"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2},
	{"torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3},
	{"torch._utils", "_rebuild_tensor", G_REBUILD},
	{"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM},
	{"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
	{"torch._tensor", "_rebuild_from_type_v2", G_FROM_TYPE_V2},
	{"torch.nn.parameter", "Parameter", G_PARAMETER},
	{"torch.nn", "Parameter", G_PARAMETER},
	{"torch", "Size", G_SIZE},
	{"torch", "Tensor", G_TENSOR},
};

static enum gkind classify(const char *m, const char *n)
{
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i].mod) == 0 && strcmp(n, known[i].name) == 0)
			return known[i].kind;
	/* Other tensor rebuilds (sparse, quantized...): calling one is refused, not made opaque. */
	if ((strcmp(m, "torch._utils") == 0 || strcmp(m, "torch._tensor") == 0) && strncmp(n, "_rebuild_", 9) == 0)
		return G_REBUILD_UNSUPPORTED;
	if (strcmp(m, "torch") == 0 || strcmp(m, "torch.cuda") == 0 || strcmp(m, "torch.storage") == 0) {
		size_t ln = strlen(n);
		if (ln >= 7 && strcmp(n + ln - 7, "Storage") == 0)
			return G_STORAGE;
	}
	return G_PLAIN;
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
	if (unsafe(m, mm, mn))
		return weld__pk_unsafe_global(p, mm, mn);
	weld_py *g = weld__pk_new_node(p, WELD_PY_GLOBAL);
	TRY_PTR(g);
	g->obj.module = mm;
	g->obj.name = mn;
	hdr(g)->gkind = (uint8_t)classify(mm, mn);
	*out = g;
	return WELD_OK;
}

weld_status weld__pk_unsafe_global(weld_pickle *p, const char *module, const char *name)
{
	return weld__pk_fail(p, WELD_ERR_UNSAFE,
			     "pickle calls %s.%s at offset %zu, which could run code; refusing to load", module, name,
			     p->off);
}
