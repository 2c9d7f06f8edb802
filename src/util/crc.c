/*
 * CRC-32 (the zip/zlib polynomial) of bulk data. libdeflate's carry-less
 * multiply version runs an order of magnitude faster than the zlib in Debian
 * and returns the same values, so checksums still agree with Python's
 * zlib.crc32. zlib stays for crc32_combine, which libdeflate lacks.
 */
#include "util/util.h"

#include <libdeflate.h>
#include <zlib.h>

uint32_t weld__crc32(uint32_t crc, const void *data, size_t len)
{
	return libdeflate_crc32(crc, data, len);
}

uint32_t weld__crc32_combine(uint32_t a, uint32_t b, uint64_t len_b)
{
	/* In steps that fit z_off64_t whatever its width: the shift by a length is linear. */
	const uint64_t step = (uint64_t)1 << 30;
	while (len_b > step) {
		a = (uint32_t)crc32_combine64(a, 0, (z_off64_t)step);
		len_b -= step;
	}
	return (uint32_t)crc32_combine64(a, b, (z_off64_t)len_b);
}
