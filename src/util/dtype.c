/* dtype tables: safetensors names, element sizes, torch's spellings. */
#include "util/util.h"

#include <string.h>

static const struct {
	const char *st_name;
	size_t size;
	const char *torch_name;    /* torch.<x> attribute */
	const char *storage_class; /* legacy typed storage class, when one exists */
} dtypes[WELD_DTYPE_COUNT] = {
	[WELD_DTYPE_BOOL] = {"BOOL", 1, "bool", "BoolStorage"},
	/* Sub-byte: SIZE is the unit weld copies (a byte). No torch dtype holds one
	 * element of these (torch.float4_e2m1fn_x2 packs two), so no torch name. */
	[WELD_DTYPE_F4] = {"F4", 1, NULL, NULL},
	[WELD_DTYPE_F6_E2M3] = {"F6_E2M3", 1, NULL, NULL},
	[WELD_DTYPE_F6_E3M2] = {"F6_E3M2", 1, NULL, NULL},
	[WELD_DTYPE_U8] = {"U8", 1, "uint8", "ByteStorage"},
	[WELD_DTYPE_I8] = {"I8", 1, "int8", "CharStorage"},
	[WELD_DTYPE_F8_E5M2] = {"F8_E5M2", 1, "float8_e5m2", NULL},
	[WELD_DTYPE_F8_E4M3] = {"F8_E4M3", 1, "float8_e4m3fn", NULL},
	[WELD_DTYPE_F8_E8M0] = {"F8_E8M0", 1, "float8_e8m0fnu", NULL},
	[WELD_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 1, "float8_e4m3fnuz", NULL},
	[WELD_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 1, "float8_e5m2fnuz", NULL},
	[WELD_DTYPE_I16] = {"I16", 2, "int16", "ShortStorage"},
	[WELD_DTYPE_U16] = {"U16", 2, "uint16", NULL},
	[WELD_DTYPE_F16] = {"F16", 2, "float16", "HalfStorage"},
	[WELD_DTYPE_BF16] = {"BF16", 2, "bfloat16", "BFloat16Storage"},
	[WELD_DTYPE_I32] = {"I32", 4, "int32", "IntStorage"},
	[WELD_DTYPE_U32] = {"U32", 4, "uint32", NULL},
	[WELD_DTYPE_F32] = {"F32", 4, "float32", "FloatStorage"},
	[WELD_DTYPE_C64] = {"C64", 8, "complex64", "ComplexFloatStorage"},
	[WELD_DTYPE_F64] = {"F64", 8, "float64", "DoubleStorage"},
	[WELD_DTYPE_I64] = {"I64", 8, "int64", "LongStorage"},
	[WELD_DTYPE_U64] = {"U64", 8, "uint64", NULL},
};

/* torch's other spellings of the same dtypes (torch.half, torch.long ...). */
static const struct {
	const char *alias;
	weld_dtype dtype;
} torch_aliases[] = {
	{"half", WELD_DTYPE_F16},  {"float", WELD_DTYPE_F32}, {"double", WELD_DTYPE_F64},
	{"long", WELD_DTYPE_I64},  {"int", WELD_DTYPE_I32},   {"short", WELD_DTYPE_I16},
	{"cfloat", WELD_DTYPE_C64},
};

static bool valid(weld_dtype d)
{
	return d > WELD_DTYPE_INVALID && d < WELD_DTYPE_COUNT;
}

const char *weld_dtype_name(weld_dtype dtype)
{
	return valid(dtype) ? dtypes[dtype].st_name : NULL;
}

size_t weld_dtype_size(weld_dtype dtype)
{
	return valid(dtype) ? dtypes[dtype].size : 0;
}

size_t weld_dtype_bits(weld_dtype dtype)
{
	switch (dtype) {
	case WELD_DTYPE_F4: return 4;
	case WELD_DTYPE_F6_E2M3:
	case WELD_DTYPE_F6_E3M2: return 6;
	default: return 8 * weld_dtype_size(dtype);
	}
}

bool weld__dtype_is_sub_byte(weld_dtype d)
{
	return d == WELD_DTYPE_F4 || d == WELD_DTYPE_F6_E2M3 || d == WELD_DTYPE_F6_E3M2;
}

weld_dtype weld_dtype_from_name(const char *name)
{
	for (int d = 1; d < WELD_DTYPE_COUNT; d++)
		if (strcmp(dtypes[d].st_name, name) == 0)
			return (weld_dtype)d;
	return WELD_DTYPE_INVALID;
}

weld_dtype weld__dtype_from_storage_class(const char *name)
{
	for (int d = 1; d < WELD_DTYPE_COUNT; d++)
		if (dtypes[d].storage_class && strcmp(dtypes[d].storage_class, name) == 0)
			return (weld_dtype)d;
	return WELD_DTYPE_INVALID;
}

weld_dtype weld__dtype_from_torch_name(const char *name)
{
	for (int d = 1; d < WELD_DTYPE_COUNT; d++)
		if (dtypes[d].torch_name && strcmp(dtypes[d].torch_name, name) == 0)
			return (weld_dtype)d;
	for (size_t i = 0; i < sizeof(torch_aliases) / sizeof(torch_aliases[0]); i++)
		if (strcmp(torch_aliases[i].alias, name) == 0)
			return torch_aliases[i].dtype;
	return WELD_DTYPE_INVALID;
}

const char *weld__dtype_torch_name(weld_dtype dtype)
{
	return valid(dtype) && dtypes[dtype].torch_name ? dtypes[dtype].torch_name : "invalid";
}

bool weld__dtype_is_float(weld_dtype d)
{
	return d == WELD_DTYPE_F16 || d == WELD_DTYPE_BF16 || d == WELD_DTYPE_F32 || d == WELD_DTYPE_F64;
}
