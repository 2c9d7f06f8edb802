// The conversion kernels' building blocks, shared by the kernels (device)
// and by their host emulation (tests on machines without a GPU). Internal to
// cuda/: CUDA types are fine here, and nothing outside cuda/ includes it.
//
// One chunk is two launches on the caller's stream:
//  - gather_cast: block b converts up to kPartElems elements of one segment
//    (the segment table carries each segment's first block); casts come from
//    src/backend/cast.h, so the bits are the CPU backend's by construction.
//  - crc: block b computes the zlib CRC-32 of up to kCrcBlock bytes of one
//    span. Each thread CRCs a kCrcSlice-byte slice (a byte table in shared
//    memory, one copy per lane so that lookups never collide); the slices
//    are combined in a tree by multiplying by x^(8n) modulo the polynomial,
//    as zlib's crc32_combine does. The host combines the blocks of a span
//    with zlib's crc32_combine64.
#ifndef WELD_CUDA_KERNELS_CUH
#define WELD_CUDA_KERNELS_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "backend/cast.h"
#include "weld.h"

#define WELD_HD __host__ __device__ static inline

namespace weld_cuda {

constexpr unsigned kThreads = 256;        // threads per block, both kernels
constexpr unsigned kElemsPerThread = 8;   // gather_cast: elements per thread
constexpr uint64_t kPartElems = (uint64_t)kThreads * kElemsPerThread;
constexpr uint32_t kCrcBlock = 64 * 1024; // bytes of a span per crc block
constexpr uint32_t kCrcSlice = kCrcBlock / kThreads;
constexpr uint32_t kCrcPoly = 0xedb88320u; // zlib's, reflected
static_assert(kThreads == 256, "one crc table row per thread");

// Index widths. A launch may cover more than 2^32 bytes (one chunk of a
// tensor of more than 2^31 elements, with a large --chunk-bytes and GPU
// budget), so offsets, counts and element indices are 64-bit everywhere, and
// a 32-bit block number is widened before it is multiplied by a block's size.
// Block numbers themselves (part_first, block_first, blockIdx.x) are 32-bit:
// plan_job (backend.cu) refuses a launch of more than 2^31 - 1 blocks, the
// grid's x limit.

// A segment as the kernel sees it: 32 bytes.
struct DevSeg {
	uint64_t staging_off, out_off, count;
	uint32_t part_first; // first gather_cast block of this segment
	uint16_t src, dst;   // weld_dtype values
};

// A span: 24 bytes.
struct DevSpan {
	uint64_t out_off, len;
	uint32_t block_first; // first crc block of this span
	uint32_t pad;
};

// x^(2^k) modulo the CRC polynomial (reflected), k = 0..31.
struct CrcConsts {
	uint32_t x2n[32];
};

WELD_HD unsigned dtype_size(unsigned d)
{
	switch (d) {
	case WELD_DTYPE_BOOL: case WELD_DTYPE_U8: case WELD_DTYPE_I8: case WELD_DTYPE_F8_E5M2:
	case WELD_DTYPE_F8_E4M3: case WELD_DTYPE_F8_E8M0: case WELD_DTYPE_F8_E4M3FNUZ: case WELD_DTYPE_F8_E5M2FNUZ:
		return 1;
	case WELD_DTYPE_I16: case WELD_DTYPE_U16: case WELD_DTYPE_F16: case WELD_DTYPE_BF16:
		return 2;
	case WELD_DTYPE_I32: case WELD_DTYPE_U32: case WELD_DTYPE_F32:
		return 4;
	case WELD_DTYPE_C64: case WELD_DTYPE_F64: case WELD_DTYPE_I64: case WELD_DTYPE_U64:
		return 8;
	default:
		return 0;
	}
}

// Aligned loads and stores (the executor aligns every run to its element size).
template <typename T> WELD_HD T ld(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
	return *reinterpret_cast<const T *>(p);
#else
	T v;
	memcpy(&v, p, sizeof(v));
	return v;
#endif
}

template <typename T> WELD_HD void st(uint8_t *p, T v)
{
#ifdef __CUDA_ARCH__
	*reinterpret_cast<T *>(p) = v;
#else
	memcpy(p, &v, sizeof(v));
#endif
}

// The bits of F.
WELD_HD uint32_t f32_bits(float f)
{
#ifdef __CUDA_ARCH__
	return __float_as_uint(f);
#else
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	return x;
#endif
}

// float64 bits -> float32 bits as the CPU backend's C cast gives them: round
// to nearest even for numbers; a NaN keeps its sign and top payload bits and
// becomes quiet (x86-64 and AArch64 both do this; the GPU would canonicalise).
WELD_HD uint32_t f64_to_f32_bits(uint64_t b)
{
	if ((b & 0x7fffffffffffffffull) > 0x7ff0000000000000ull)
		return (uint32_t)((b >> 32) & 0x80000000u) | 0x7fc00000u | (uint32_t)((b >> 29) & 0x7fffffu);
	float f;
#ifdef __CUDA_ARCH__
	f = __double2float_rn(__longlong_as_double((long long)b));
#else
	double v;
	memcpy(&v, &b, sizeof(v));
	f = (float)v;
#endif
	return f32_bits(f);
}

// An integer element as torch's .float() makes it (round to nearest even), as fp32 bits.
template <typename T> WELD_HD uint32_t int_to_f32_bits(const uint8_t *p)
{
	return f32_bits((float)ld<T>(p));
}

// Any float source element widened to fp32 bits, or an integer one cast
// (ZeRO buffers under --dtype keep): the CPU backend's load_f32.
WELD_HD uint32_t load_f32(const uint8_t *p, unsigned d)
{
	switch (d) {
	case WELD_DTYPE_BF16: return weld_bf16_to_f32(ld<uint16_t>(p));
	case WELD_DTYPE_F16: return weld_f16_to_f32(ld<uint16_t>(p));
	case WELD_DTYPE_F64: return f64_to_f32_bits(ld<uint64_t>(p));
	case WELD_DTYPE_BOOL: return ld<uint8_t>(p) ? 0x3f800000u : 0; // 1.0f for any non-zero byte
	case WELD_DTYPE_U8: return int_to_f32_bits<uint8_t>(p);
	case WELD_DTYPE_I8: return int_to_f32_bits<int8_t>(p);
	case WELD_DTYPE_I16: return int_to_f32_bits<int16_t>(p);
	case WELD_DTYPE_U16: return int_to_f32_bits<uint16_t>(p);
	case WELD_DTYPE_I32: return int_to_f32_bits<int32_t>(p);
	case WELD_DTYPE_U32: return int_to_f32_bits<uint32_t>(p);
	case WELD_DTYPE_I64: return int_to_f32_bits<int64_t>(p);
	case WELD_DTYPE_U64: return int_to_f32_bits<uint64_t>(p);
	default: return ld<uint32_t>(p);
	}
}

// Finite fp32 X became inf H in an fp16 cast.
WELD_HD uint32_t f16_overflowed(uint32_t x, uint16_t h)
{
	return weld_f16_is_inf(h) && (x & 0x7f800000u) != 0x7f800000u;
}

// The last segment whose first block is <= PART.
WELD_HD uint32_t seg_of_part(const DevSeg *segs, uint32_t nsegs, uint32_t part)
{
	uint32_t lo = 0, hi = nsegs;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (segs[mid].part_first <= part)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

// The loop every case of gather_cast_thread runs: this thread's elements of
// the block's part of the segment, coalesced across the block.
#ifdef __CUDA_ARCH__
#define WELD_UNROLL _Pragma("unroll")
#else
#define WELD_UNROLL
#endif
#define WELD_EACH_ELEM(i)                                                                    \
	WELD_UNROLL for (unsigned k_ = 0; k_ < kElemsPerThread; k_++)                         \
		for (uint64_t i = base + (uint64_t)k_ * kThreads; i < end; i = end)

// Block PART, thread T of gather_cast. Returns the fp16 overflows it saw.
// Elements I are 64-bit, and so are the byte offsets 2 * I, 4 * I, SS * I.
WELD_HD uint32_t gather_cast_thread(const DevSeg *segs, uint32_t nsegs, const uint8_t *staging, uint8_t *out,
				     uint32_t part, unsigned t)
{
	const DevSeg s = segs[seg_of_part(segs, nsegs, part)];
	uint64_t first = (uint64_t)(part - s.part_first) * kPartElems; // widened before the multiply
	uint64_t end = s.count - first < kPartElems ? s.count : first + kPartElems;
	uint64_t base = first + t;
	const uint8_t *src = staging + s.staging_off;
	uint8_t *dst = out + s.out_off;
	uint32_t overflows = 0;
	if (s.src == s.dst) {
		switch (dtype_size(s.src)) {
		case 1: WELD_EACH_ELEM(i) st<uint8_t>(dst + i, ld<uint8_t>(src + i)); break;
		case 2: WELD_EACH_ELEM(i) st<uint16_t>(dst + 2 * i, ld<uint16_t>(src + 2 * i)); break;
		case 4: WELD_EACH_ELEM(i) st<uint32_t>(dst + 4 * i, ld<uint32_t>(src + 4 * i)); break;
		default: WELD_EACH_ELEM(i) st<uint64_t>(dst + 8 * i, ld<uint64_t>(src + 8 * i)); break;
		}
		return 0;
	}
	if (s.src == WELD_DTYPE_F32 && s.dst == WELD_DTYPE_BF16) {
		WELD_EACH_ELEM(i) st<uint16_t>(dst + 2 * i, weld_f32_to_bf16(ld<uint32_t>(src + 4 * i)));
		return 0;
	}
	if (s.src == WELD_DTYPE_F32 && s.dst == WELD_DTYPE_F16) {
		WELD_EACH_ELEM(i)
		{
			uint32_t x = ld<uint32_t>(src + 4 * i);
			uint16_t h = weld_f32_to_f16(x);
			overflows += f16_overflowed(x, h);
			st<uint16_t>(dst + 2 * i, h);
		}
		return overflows;
	}
	unsigned ss = dtype_size(s.src);
	WELD_EACH_ELEM(i)
	{
		uint32_t x = load_f32(src + ss * i, s.src);
		if (s.dst == WELD_DTYPE_BF16) {
			st<uint16_t>(dst + 2 * i, weld_f32_to_bf16(x));
		} else if (s.dst == WELD_DTYPE_F16) {
			uint16_t h = weld_f32_to_f16(x);
			overflows += f16_overflowed(x, h);
			st<uint16_t>(dst + 2 * i, h);
		} else {
			st<uint32_t>(dst + 4 * i, x);
		}
	}
	return overflows;
}

// ---- CRC-32 ------------------------------------------------------------------

// The byte table, one copy per lane of a warp: entry E of lane L is
// tab[E][L], so the 32 lanes' lookups always fall in 32 different
// shared-memory banks (random indices into one table would collide about
// 3.5-fold). Thread T (of 256) fills row T, starting at its own bank.
constexpr unsigned kLanes = 32;

WELD_HD void crc_table_row(uint32_t (*tab)[kLanes], unsigned t)
{
	uint32_t c = t;
	for (int k = 0; k < 8; k++)
		c = (c >> 1) ^ (kCrcPoly & (0u - (c & 1u)));
	for (unsigned l = 0; l < kLanes; l++)
		tab[t][(l + t) % kLanes] = c;
}

WELD_HD uint32_t crc_byte(const uint32_t (*tab)[kLanes], unsigned lane, uint32_t c, uint32_t b)
{
	return tab[(c ^ b) & 0xffu][lane] ^ (c >> 8);
}

WELD_HD uint32_t crc_word(const uint32_t (*tab)[kLanes], unsigned lane, uint32_t c, uint32_t w)
{
	c ^= w; // little-endian: the word's first byte is its low byte
	c = tab[c & 0xffu][lane] ^ (c >> 8);
	c = tab[c & 0xffu][lane] ^ (c >> 8);
	c = tab[c & 0xffu][lane] ^ (c >> 8);
	return tab[c & 0xffu][lane] ^ (c >> 8);
}

// The CRC register after N bytes at P starting from C (no pre/post
// inversion), using LANE's copy of the table. 16-byte loads once aligned.
WELD_HD uint32_t crc_run(const uint32_t (*tab)[kLanes], unsigned lane, const uint8_t *p, uint32_t n, uint32_t c)
{
	while (n && ((uintptr_t)p & 15u)) {
		c = crc_byte(tab, lane, c, *p++);
		n--;
	}
	for (; n >= 16; n -= 16, p += 16) {
		uint4 w = ld<uint4>(p);
		c = crc_word(tab, lane, c, w.x);
		c = crc_word(tab, lane, c, w.y);
		c = crc_word(tab, lane, c, w.z);
		c = crc_word(tab, lane, c, w.w);
	}
	while (n--)
		c = crc_byte(tab, lane, c, *p++);
	return c;
}

// a(x) b(x) modulo the polynomial, both reflected (bit 31 is x^0).
WELD_HD uint32_t gf2_mul(uint32_t a, uint32_t b)
{
	uint32_t p = 0;
	for (int k = 0; k < 32; k++) {
		p ^= b & (0u - (a >> 31));
		a <<= 1;
		b = (b >> 1) ^ (kCrcPoly & (0u - (b & 1u)));
	}
	return p;
}

// C followed by N zero bytes: C x^(8N) mod P. N < 2^29.
WELD_HD uint32_t crc_shift(uint32_t c, uint32_t n, const CrcConsts &k)
{
	for (unsigned j = 3; n; j++, n >>= 1)
		if (n & 1u)
			c = gf2_mul(k.x2n[j], c);
	return c;
}

// Block B of the crc kernel covers LEN bytes of the output from START.
WELD_HD void crc_block_range(const DevSpan *spans, uint32_t nspans, uint32_t b, uint64_t *start, uint32_t *len)
{
	uint32_t lo = 0, hi = nspans;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (spans[mid].block_first <= b)
			lo = mid;
		else
			hi = mid;
	}
	const DevSpan &s = spans[lo];
	uint64_t off = (uint64_t)(b - s.block_first) * kCrcBlock; // widened: spans pass 2^32 bytes
	*start = s.out_off + off;
	*len = (uint32_t)(s.len - off < kCrcBlock ? s.len - off : kCrcBlock);
}

// Thread T's slice of a block of LEN bytes at P: its register (thread 0
// starts from zlib's ~0) and its length.
WELD_HD void crc_slice_phase(const uint32_t (*tab)[kLanes], const uint8_t *p, uint32_t len, unsigned t,
			     uint32_t *part, uint32_t *plen)
{
	uint32_t off = t * kCrcSlice;
	uint32_t n = off < len ? (len - off < kCrcSlice ? len - off : kCrcSlice) : 0;
	part[t] = crc_run(tab, t % kLanes, p + off, n, t == 0 ? 0xffffffffu : 0u);
	plen[t] = n;
}

// One level of the tree: thread T absorbs thread T+S (S a power of two).
WELD_HD void crc_combine_phase(uint32_t *part, uint32_t *plen, unsigned t, unsigned s, const CrcConsts &k)
{
	if ((t & (2 * s - 1)) == 0 && t + s < kThreads) {
		part[t] = crc_shift(part[t], plen[t + s], k) ^ part[t + s];
		plen[t] += plen[t + s];
	}
}

// ---- host side (kernels.cu) -----------------------------------------------------

const CrcConsts &crc_consts();

cudaError_t launch_gather_cast(const DevSeg *segs, uint32_t nsegs, uint32_t nparts, const uint8_t *staging,
			       uint8_t *out, unsigned long long *overflows, cudaStream_t stream);
cudaError_t launch_crc(const DevSpan *spans, uint32_t nspans, uint32_t nblocks, const uint8_t *out, uint32_t *crcs,
		       cudaStream_t stream);
// N consecutive uint32 values from FIRST (the cast test's inputs).
cudaError_t launch_iota(uint32_t *p, uint32_t first, uint64_t n, cudaStream_t stream);
// N pseudo-random fp32 values in about [-1, 1) from SEED (benchmarks).
cudaError_t launch_fill_random(float *p, uint64_t n, uint64_t seed, cudaStream_t stream);

// The same two kernels run on the host, thread by thread (no GPU needed):
// every block, or one block (tests pick blocks far into a huge job).
uint64_t emulate_gather_cast(const DevSeg *segs, uint32_t nsegs, uint32_t nparts, const uint8_t *staging,
			     uint8_t *out);
uint32_t emulate_gather_part(const DevSeg *segs, uint32_t nsegs, const uint8_t *staging, uint8_t *out, uint32_t part);
void emulate_crc(const DevSpan *spans, uint32_t nspans, uint32_t nblocks, const uint8_t *out, uint32_t *crcs);

// The crc kernel's shared-memory table, on the host (malloc'd; free() it).
struct CrcTable {
	uint32_t row[256][kLanes];
};
CrcTable *crc_table_new();
// The zlib CRC-32 of crc block B's bytes.
uint32_t emulate_crc_block(const CrcTable *tab, const DevSpan *spans, uint32_t nspans, const uint8_t *out, uint32_t b);

} // namespace weld_cuda

#endif
