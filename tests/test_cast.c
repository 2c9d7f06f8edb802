/*
 * Tests for the element conversions in src/backend/cast.h:
 *
 * 1. torch's own results (tests/fixtures/torch_edge/cast_oracle.json): every
 *    non-NaN fp32 pattern must give torch's bf16 and fp16 bits exactly; NaN
 *    inputs must give the canonical NaN of torch's scalar rule (bf16 0x7FC0,
 *    fp16 sign | 0x7E00; the oracle recorded torch's vectorized cast, whose
 *    NaN bits differ -- see tests/fixtures/README.md).
 * 2. All 2^32 fp32 patterns against reference conversions written here
 *    independently of cast.h: bf16 by exact integer rounding of the 16 dropped
 *    bits, fp16 by letting the FPU round (float arithmetic with a magic
 *    addend, the idea behind c10's fp16_ieee_from_fp32_value).
 * 3. All 65536 fp16 and bf16 patterns widened to fp32 against a reference
 *    built with ldexp, round trips, and weld_f16_is_inf.
 * 4. Integers to fp32 through the CPU backend (ZeRO buffers under --dtype
 *    keep, as zero_to_fp32's .float()): round to nearest even, as torch.
 *
 * WELD_CAST_STRIDE=N (default 1, exhaustive) checks every N-th fp32 pattern
 * only, for slow (sanitizer) builds; the count checked is printed.
 */
#include "backend/backend.h"
#include "backend/cast.h"

#include "test_util.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

/* The fp16 reference relies on float arithmetic being done in IEEE single
 * precision, one rounding per operation. Contraction (FMA) is avoided by
 * keeping each operation in its own statement; on targets that evaluate float
 * in wider precision, force every intermediate through memory. */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define REF_FLOAT float
#else
#define REF_FLOAT volatile float
#endif

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static uint32_t bits_from_f32(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static int is_nan32(uint32_t x)
{
	return (x & 0x7fffffffu) > 0x7f800000u;
}

/* ------------------------------------------------------------------------- */
/* Reference conversions (independent of cast.h).                            */

/* fp32 -> bf16: keep the upper half, then decide from the dropped lower half
 * whether to round up (more than half, or exactly half and the kept half is
 * odd). A carry out of the mantissa bumps the exponent, and the largest
 * finite values carry into inf, both of which are what IEEE wants. */
static inline uint16_t ref_bf16(uint32_t x)
{
	uint32_t kept = x >> 16, dropped = x & 0xffffu;
	uint32_t up = (dropped > 0x8000u) | ((dropped == 0x8000u) & kept);
	uint16_t r = (uint16_t)(kept + up);
	return is_nan32(x) ? (uint16_t)0x7fc0 : r;
}

/* fp32 -> fp16 with the FPU doing the rounding.
 *
 * v = |f| * 2^112 * 2^-110 = 4|f|, except that the first product overflows to
 * inf for every |f| >= 2^16, so those come out as inf without a compare.
 * The fp16 result step for an input of (unbiased) exponent e is
 * 2^(max(e,-14) - 10), i.e. 2^(max(e,-14) - 8) in units of v. Adding
 * M = 2^(max(e,-14) + 15), whose ulp is exactly that step, makes the FPU
 * round v to the fp16 grid (nearest, ties to even); subtracting M again is
 * exact. The rounded value r = (v + M - M) / 4 is then an fp16 value (or
 * 2^16, which is past fp16's range and becomes inf) and its bits are read off
 * exactly. */
static inline uint16_t ref_f16(uint32_t x)
{
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t a = x & 0x7fffffffu;
	int e = (int)(a >> 23) - 127;
	if (e < -14)
		e = -14;
	if (e > 16) /* |f| >= 2^16 (inf, NaN too): v is inf or NaN whatever m is */
		e = 16;
	REF_FLOAT v = f32_from_bits(a) * 0x1p112f;
	v = v * 0x1p-110f;
	REF_FLOAT m = f32_from_bits((uint32_t)(e + 15 + 127) << 23); /* 2^1 .. 2^31 */
	REF_FLOAT s = v + m;
	s = s - m;
	REF_FLOAT r = s * 0.25f; /* exact: s is a multiple of 2^-22 */
	uint32_t rb = bits_from_f32(r);
	uint16_t h;
	if (rb >= 0x47800000u) /* 2^16 or inf */
		h = 0x7c00;
	else if (rb >= 0x38800000u) /* 2^-14: normal fp16 */
		h = (uint16_t)((((rb >> 23) - 112) << 10) | ((rb >> 13) & 0x3ffu));
	else /* subnormal fp16 or zero: an integer number of 2^-24 */
		h = (uint16_t)(r * 0x1p24f);
	return is_nan32(x) ? (uint16_t)(sign | 0x7e00) : (uint16_t)(sign | h);
}

/* fp16 bits -> fp32 bits: the value sign * mant * 2^exp assembled with ldexp;
 * NaN keeps its payload (sign | 0x7f800000 | mant << 13), as cast.h says. */
static uint32_t ref_f16_to_f32(uint16_t h)
{
	unsigned exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
	uint32_t sign = (h & 0x8000u) ? 0x80000000u : 0;
	if (exp == 0x1f)
		return mant ? (sign | 0x7f800000u | (uint32_t)mant << 13) : (sign | 0x7f800000u);
	double v = exp ? ldexp(1024.0 + mant, (int)exp - 25) : ldexp((double)mant, -24);
	return sign | bits_from_f32((float)v);
}

/* bf16 bits -> fp32 bits, the same way (8-bit exponent, 7-bit mantissa). */
static uint32_t ref_bf16_to_f32(uint16_t h)
{
	unsigned exp = (h >> 7) & 0xffu, mant = h & 0x7fu;
	uint32_t sign = (h & 0x8000u) ? 0x80000000u : 0;
	if (exp == 0xff)
		return sign | 0x7f800000u | (uint32_t)mant << 16;
	double v = exp ? ldexp(128.0 + mant, (int)exp - 134) : ldexp((double)mant, -133);
	return sign | bits_from_f32((float)v);
}

/* ------------------------------------------------------------------------- */

static unsigned long mismatches;

static void report(const char *what, uint32_t in, unsigned got, unsigned want)
{
	if (mismatches++ < 20)
		fprintf(stderr, "%s(0x%08x) = 0x%04x, expected 0x%04x\n", what, (unsigned)in,
			got, want);
	test_failures++;
}

/* 1. torch's recorded results. */
static void test_oracle(void)
{
	size_t len = 0;
	char *text = (char *)read_file(fixture("torch_edge/cast_oracle.json"), &len);
	CHECK(text != NULL);
	if (!text)
		return;
	cJSON *root = cJSON_ParseWithLength(text, len);
	free(text);
	CHECK(root != NULL);
	const cJSON *f32 = cJSON_GetObjectItem(root, "f32_hex");
	const cJSON *bf16 = cJSON_GetObjectItem(root, "bf16_hex");
	const cJSON *f16 = cJSON_GetObjectItem(root, "f16_hex");
	CHECK(cJSON_IsArray(f32) && cJSON_IsArray(bf16) && cJSON_IsArray(f16));
	int n = cJSON_GetArraySize(f32);
	CHECK(n == 4111);
	CHECK(cJSON_GetArraySize(bf16) == n && cJSON_GetArraySize(f16) == n);

	int nans = 0, checked = 0;
	const cJSON *a = f32 ? f32->child : NULL, *b = bf16 ? bf16->child : NULL,
		    *h = f16 ? f16->child : NULL;
	for (; a && b && h; a = a->next, b = b->next, h = h->next) {
		CHECK(cJSON_IsNumber(a) && cJSON_IsNumber(b) && cJSON_IsNumber(h));
		CHECK(a->valuedouble >= 0 && a->valuedouble <= 4294967295.0);
		CHECK(b->valuedouble >= 0 && b->valuedouble <= 65535.0);
		CHECK(h->valuedouble >= 0 && h->valuedouble <= 65535.0);
		uint32_t x = (uint32_t)a->valuedouble;
		CHECK((double)x == a->valuedouble);
		unsigned want_bf = (unsigned)b->valuedouble, want_h = (unsigned)h->valuedouble;
		if (is_nan32(x)) {
			nans++;
			want_bf = 0x7fc0;
			want_h = ((x >> 16) & 0x8000u) | 0x7e00u;
		}
		/* weld against torch, and the references against torch too. */
		if (weld_f32_to_bf16(x) != want_bf)
			report("oracle weld_f32_to_bf16", x, weld_f32_to_bf16(x), want_bf);
		if (weld_f32_to_f16(x) != want_h)
			report("oracle weld_f32_to_f16", x, weld_f32_to_f16(x), want_h);
		if (ref_bf16(x) != want_bf)
			report("oracle ref_bf16", x, ref_bf16(x), want_bf);
		if (ref_f16(x) != want_h)
			report("oracle ref_f16", x, ref_f16(x), want_h);
		checked++;
	}
	CHECK(checked == 4111);
	CHECK(nans == 14);
	cJSON_Delete(root);
	printf("cast: %d oracle patterns (%d NaN), ", checked, nans);
}

/* 2. Every fp32 pattern (or every STRIDE-th). Returns the number checked. */
static uint64_t test_exhaustive(uint32_t stride)
{
	uint64_t count = 0;
	if (stride == 1) {
		/* Blocks of 2^16 with a branch-free inner loop the compiler can
		 * vectorise; a block with a mismatch is rescanned to report it. */
		for (uint32_t hi = 0; hi < 0x10000u; hi++) {
			uint32_t base = hi << 16, bad = 0;
			for (uint32_t lo = 0; lo < 0x10000u; lo++) {
				uint32_t x = base | lo;
				bad |= (uint32_t)(weld_f32_to_bf16(x) ^ ref_bf16(x));
				bad |= (uint32_t)(weld_f32_to_f16(x) ^ ref_f16(x));
			}
			if (bad) {
				for (uint32_t lo = 0; lo < 0x10000u; lo++) {
					uint32_t x = base | lo;
					if (weld_f32_to_bf16(x) != ref_bf16(x))
						report("weld_f32_to_bf16", x, weld_f32_to_bf16(x), ref_bf16(x));
					if (weld_f32_to_f16(x) != ref_f16(x))
						report("weld_f32_to_f16", x, weld_f32_to_f16(x), ref_f16(x));
				}
			}
			count += 0x10000u;
		}
		return count;
	}
	for (uint64_t i = 0; i <= 0xffffffffu; i += stride) {
		uint32_t x = (uint32_t)i;
		if (weld_f32_to_bf16(x) != ref_bf16(x))
			report("weld_f32_to_bf16", x, weld_f32_to_bf16(x), ref_bf16(x));
		if (weld_f32_to_f16(x) != ref_f16(x))
			report("weld_f32_to_f16", x, weld_f32_to_f16(x), ref_f16(x));
		count++;
	}
	/* The landmarks, whatever the stride. */
	static const uint32_t edges[] = {
		0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x33000000u, 0x33000001u,
		0x337fffffu, 0x38800000u, 0x387fe000u, 0x387ff000u, 0x477fe000u, 0x477fefffu,
		0x477ff000u, 0x477fffffu, 0x47800000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu,
		0x7f800000u, 0xff800000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0x3f808000u,
		0x3f818000u,
	};
	for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
		uint32_t x = edges[i];
		if (weld_f32_to_bf16(x) != ref_bf16(x))
			report("weld_f32_to_bf16", x, weld_f32_to_bf16(x), ref_bf16(x));
		if (weld_f32_to_f16(x) != ref_f16(x))
			report("weld_f32_to_f16", x, weld_f32_to_f16(x), ref_f16(x));
	}
	return count;
}

/* 3. Widening, round trips, weld_f16_is_inf. */
static void test_widening(void)
{
	for (uint32_t i = 0; i < 0x10000u; i++) {
		uint16_t h = (uint16_t)i;
		uint16_t sign = (uint16_t)(h & 0x8000u);
		int nan16 = (h & 0x7fffu) > 0x7c00u, nanbf = (h & 0x7fffu) > 0x7f80u;

		uint32_t w = weld_f16_to_f32(h);
		if (w != ref_f16_to_f32(h))
			report("weld_f16_to_f32", h, w, ref_f16_to_f32(h));
		/* fp16 -> fp32 -> fp16 is the identity; NaN comes back canonical. */
		uint16_t back = weld_f32_to_f16(w);
		uint16_t want = nan16 ? (uint16_t)(sign | 0x7e00) : h;
		if (back != want)
			report("weld_f32_to_f16(weld_f16_to_f32)", h, back, want);
		/* ... and the fp32 value is what the reference widening gives. */
		if (!nan16 && ref_f16(w) != h)
			report("ref_f16(weld_f16_to_f32)", h, ref_f16(w), h);
		CHECK(weld_f16_is_inf(h) == ((h & 0x7fffu) == 0x7c00u));
		CHECK(!!weld_f16_is_inf(h) == (!nan16 && isinf(f32_from_bits(w))));

		uint32_t wb = weld_bf16_to_f32(h);
		if (wb != ref_bf16_to_f32(h))
			report("weld_bf16_to_f32", h, wb, ref_bf16_to_f32(h));
		uint16_t backb = weld_f32_to_bf16(wb);
		uint16_t wantb = nanbf ? (uint16_t)0x7fc0 : h;
		if (backb != wantb)
			report("weld_f32_to_bf16(weld_bf16_to_f32)", h, backb, wantb);
	}
	/* Overflow lands exactly on inf. */
	CHECK(weld_f16_is_inf(weld_f32_to_f16(0x477ff000u)));  /* 65520: tie, rounds up */
	CHECK(!weld_f16_is_inf(weld_f32_to_f16(0x477fefffu))); /* just below: 65504 */
	CHECK(weld_f32_to_f16(0x477fefffu) == 0x7bff);
	CHECK(weld_f16_is_inf(weld_f32_to_f16(0xff800000u)));
	CHECK(!weld_f16_is_inf(weld_f32_to_f16(0x7fc00000u)));
	CHECK(weld_f32_to_bf16(0x7f7fffffu) == 0x7f80); /* FLT_MAX rounds to inf */
	CHECK(weld_f32_to_bf16(0x7f7f7fffu) == 0x7f7f);
}

/* Integer elements to fp32 bits, torch's values (tie cases round to the even neighbour). */
static void test_int_to_f32(void)
{
	static const struct {
		weld_dtype d;
		uint64_t bits; /* the element's little-endian bytes */
		uint32_t want;
	} cases[] = {
		{WELD_DTYPE_I64, 0, 0},
		{WELD_DTYPE_I64, (uint64_t)-3, 0xc0400000u},
		{WELD_DTYPE_I64, 16777217, 0x4b800000u},          /* 2^24 + 1: tie, down to 2^24 */
		{WELD_DTYPE_I64, 16777219, 0x4b800002u},          /* tie, up to 2^24 + 4 */
		{WELD_DTYPE_I64, 16777221, 0x4b800002u},          /* tie, down to 2^24 + 4 */
		{WELD_DTYPE_I64, INT64_MAX, 0x5f000000u},         /* 2^63 */
		{WELD_DTYPE_I64, (uint64_t)INT64_MIN, 0xdf000000u},
		{WELD_DTYPE_U64, UINT64_MAX, 0x5f800000u},        /* 2^64 */
		{WELD_DTYPE_I32, INT32_MAX, 0x4f000000u},
		{WELD_DTYPE_I32, (uint32_t)-7, 0xc0e00000u},
		{WELD_DTYPE_U32, UINT32_MAX, 0x4f800000u},
		{WELD_DTYPE_I16, 0x8000, 0xc7000000u},            /* -32768 */
		{WELD_DTYPE_U16, 0xffff, 0x477fff00u},
		{WELD_DTYPE_I8, 0x80, 0xc3000000u},               /* -128 */
		{WELD_DTYPE_U8, 0xff, 0x437f0000u},
		{WELD_DTYPE_BOOL, 1, 0x3f800000u},
		{WELD_DTYPE_BOOL, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t src[8];
		uint32_t got = 0xdeadbeefu;
		uint64_t ovf = 0;
		memcpy(src, &cases[i].bits, 8); /* little-endian: the low bytes are the element */
		weld_cpu_convert_run(src, cases[i].d, (uint8_t *)&got, WELD_DTYPE_F32, 1, &ovf);
		if (got != cases[i].want)
			report(weld_dtype_name(cases[i].d), (uint32_t)cases[i].bits, got, cases[i].want);
	}
}

int main(void)
{
	uint32_t stride = 1;
	const char *s = getenv("WELD_CAST_STRIDE");
	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (*end || v == 0 || v > 0xffffffffu) {
			fprintf(stderr, "WELD_CAST_STRIDE must be a positive integer\n");
			return 2;
		}
		stride = (uint32_t)v;
	}

	test_oracle();
	uint64_t n = test_exhaustive(stride);
	if (stride == 1)
		CHECK(n == 0x100000000ull);
	test_widening();
	test_int_to_f32();
	printf("%llu %s patterns (stride %u) x 2 dtypes, 65536 x 2 widened, %lu mismatches\n",
	       (unsigned long long)n, stride == 1 ? "exhaustive" : "strided", (unsigned)stride,
	       mismatches);
	TEST_DONE();
}
