/*
 * The CPU backend: the reference every other backend must match byte for
 * byte. Casts through backend/cast.h; CRCs are zlib-compatible.
 */
#include "backend/backend.h"
#include "backend/cast.h"

#include <string.h>

#define INT_TO_F32(T)               \
	do {                        \
		T v_;               \
		float f_;           \
		memcpy(&v_, p, sizeof(v_)); \
		f_ = (float)v_;     \
		memcpy(&x, &f_, 4); \
		return x;           \
	} while (0)

/*
 * Widen any float source element to fp32 bits (exact except from f64), or
 * an integer one as torch's .float() does (round to nearest even): only
 * ZeRO buffers under --dtype keep are cast from integers.
 */
static uint32_t load_f32(const uint8_t *p, weld_dtype d)
{
	uint16_t h;
	uint32_t x;
	switch (d) {
	case WELD_DTYPE_BOOL: return *p ? 0x3f800000u : 0; /* 1.0f for any non-zero byte */
	case WELD_DTYPE_U8: INT_TO_F32(uint8_t);
	case WELD_DTYPE_I8: INT_TO_F32(int8_t);
	case WELD_DTYPE_I16: INT_TO_F32(int16_t);
	case WELD_DTYPE_U16: INT_TO_F32(uint16_t);
	case WELD_DTYPE_I32: INT_TO_F32(int32_t);
	case WELD_DTYPE_U32: INT_TO_F32(uint32_t);
	case WELD_DTYPE_I64: INT_TO_F32(int64_t);
	case WELD_DTYPE_U64: INT_TO_F32(uint64_t);
	case WELD_DTYPE_BF16:
		memcpy(&h, p, 2);
		return weld_bf16_to_f32(h);
	case WELD_DTYPE_F16:
		memcpy(&h, p, 2);
		return weld_f16_to_f32(h);
	case WELD_DTYPE_F64: {
		double v;
		float f;
		memcpy(&v, p, 8);
		/* torch casts f64 to 16-bit types directly; weld goes through fp32
		 * (round-to-nearest-even twice), which can differ on rare ties. */
		f = (float)v;
		memcpy(&x, &f, 4);
		return x;
	}
	default:
		memcpy(&x, p, 4);
		return x;
	}
}

static void f32_to_bf16(const uint8_t *src, uint8_t *dst, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t x;
		memcpy(&x, src + 4 * i, 4);
		uint16_t h = weld_f32_to_bf16(x);
		memcpy(dst + 2 * i, &h, 2);
	}
}

static uint64_t f32_to_f16(const uint8_t *src, uint8_t *dst, uint64_t n)
{
	uint64_t overflows = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t x;
		memcpy(&x, src + 4 * i, 4);
		uint16_t h = weld_f32_to_f16(x);
		overflows += weld_f16_is_inf(h) && (x & 0x7f800000u) != 0x7f800000u;
		memcpy(dst + 2 * i, &h, 2);
	}
	return overflows;
}

void weld_cpu_convert_run(const uint8_t *src, weld_dtype src_dtype, uint8_t *dst, weld_dtype dst_dtype,
			  uint64_t count, uint64_t *fp16_overflows)
{
	if (src_dtype == dst_dtype) {
		memcpy(dst, src, count * weld_dtype_size(src_dtype));
		return;
	}
	/* The common case gets tight loops the compiler can vectorise. */
	if (src_dtype == WELD_DTYPE_F32 && dst_dtype == WELD_DTYPE_BF16) {
		f32_to_bf16(src, dst, count);
		return;
	}
	if (src_dtype == WELD_DTYPE_F32 && dst_dtype == WELD_DTYPE_F16) {
		*fp16_overflows += f32_to_f16(src, dst, count);
		return;
	}
	size_t ssz = weld_dtype_size(src_dtype);
	for (uint64_t i = 0; i < count; i++) {
		uint32_t x = load_f32(src + i * ssz, src_dtype);
		uint16_t h;
		switch (dst_dtype) {
		case WELD_DTYPE_BF16:
			h = weld_f32_to_bf16(x);
			memcpy(dst + 2 * i, &h, 2);
			break;
		case WELD_DTYPE_F16:
			h = weld_f32_to_f16(x);
			*fp16_overflows += weld_f16_is_inf(h) && (x & 0x7f800000u) != 0x7f800000u;
			memcpy(dst + 2 * i, &h, 2);
			break;
		default: /* F32 */
			memcpy(dst + 4 * i, &x, 4);
			break;
		}
	}
}

static weld_status cpu_convert(weld_backend *b, weld_job *job, weld_error *err)
{
	uint64_t overflows = 0;
	for (size_t i = 0; i < job->nsegs; i++) {
		const weld_seg *s = &job->segs[i];
		weld_cpu_convert_run(job->staging + s->staging_off, s->src_dtype, job->out + s->out_off, s->dst_dtype,
				     s->count, &overflows);
	}
	for (size_t i = 0; i < job->nspans; i++) {
		weld_span *sp = &job->spans[i];
		sp->crc = weld__crc32(0, job->out + sp->out_off, sp->len);
	}
	job->fp16_overflows += overflows;
	return WELD_OK;
}

double weld_cpu_sum_squares(const double *v, size_t n)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += v[i] * v[i];
	return sum;
}

const weld_backend_iface weld_backend_cpu_iface = {.name = "cpu", .convert = cpu_convert};
