/*
 * Element conversions, one definition shared by the CPU backend (C) and the
 * CUDA kernels (included from .cu files, where the functions become
 * __host__ __device__). Integer bit manipulation only, so every backend and
 * compiler gives the same bits; never build with fast-math.
 *
 * Rounding is round-to-nearest-even, which is what torch's .to() does for
 * every non-NaN input. NaN is torch's *scalar* rule, which weld applies on
 * every backend (torch's own vectorized CPU and CUDA casts disagree on NaN
 * payloads): bf16 0x7FC0, fp16 sign | 0x7E00.
 */
#ifndef WELD_CAST_H
#define WELD_CAST_H

#include <stdint.h>

#ifdef __CUDACC__
#define WELD_CAST_FN __host__ __device__ static inline
#else
#define WELD_CAST_FN static inline
#endif

/* fp32 bits -> bf16 bits. */
WELD_CAST_FN uint16_t weld_f32_to_bf16(uint32_t x)
{
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	/* Adding 0x7FFF plus the kept LSB rounds half to even in one step. */
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* fp32 bits -> fp16 bits. Finite values past 65504 (after rounding) become inf. */
WELD_CAST_FN uint16_t weld_f32_to_f16(uint32_t x)
{
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t a = x & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7e00;
	/* 65520 is halfway between 65504 and 2^16; ties-to-even rounds it up to inf. */
	if (a >= 0x477ff000u)
		return sign | 0x7c00;
	if (a >= 0x38800000u) {
		/* Normal half: rebias the exponent (127 -> 15), round off 13 mantissa bits. */
		uint32_t m = a - 0x38000000u;
		m += 0x0fffu + ((m >> 13) & 1u);
		return sign | (uint16_t)(m >> 13);
	}
	/* Subnormal half (units of 2^-24), or zero. */
	uint32_t exp = a >> 23;
	if (exp < 102) /* below 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
		return sign;
	uint32_t mant = (a & 0x7fffffu) | 0x800000u;
	uint32_t shift = 126 - exp; /* 14..24 */
	uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1u)))
		q++;
	return sign | (uint16_t)q;
}

/* bf16 bits -> fp32 bits: exact. */
WELD_CAST_FN uint32_t weld_bf16_to_f32(uint16_t h)
{
	return (uint32_t)h << 16;
}

/* fp16 bits -> fp32 bits: exact (subnormals normalised, NaN payload kept). */
WELD_CAST_FN uint32_t weld_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
	if (exp == 0x1f)
		return sign | 0x7f800000u | (mant << 13);
	if (exp != 0)
		return sign | ((exp + 112) << 23) | (mant << 13);
	if (mant == 0)
		return sign;
	/* Subnormal: shift the leading one into the implicit bit. */
	exp = 113;
	while (!(mant & 0x400u)) {
		mant <<= 1;
		exp--;
	}
	return sign | (exp << 23) | ((mant & 0x3ffu) << 13);
}

/* true when fp16 bits H are +-inf. */
WELD_CAST_FN int weld_f16_is_inf(uint16_t h)
{
	return (h & 0x7fffu) == 0x7c00u;
}

#endif /* WELD_CAST_H */
