/* The plan cut into parts of about equal bytes to read (parts.h). */
#include "pipeline/parts.h"

/* The J-th of PARTS cut points of TOTAL bytes: floor(TOTAL * J / PARTS), without overflowing. */
static uint64_t cut_point(uint64_t total, unsigned parts, unsigned j)
{
	return total / parts * j + total % parts * j / parts;
}

/* Where byte cut CUT falls in a tensor whose source bytes start at AT, in whole elements of ESZ bytes. */
static uint64_t cut_elem(uint64_t cut, uint64_t at, uint64_t esz, uint64_t numel)
{
	if (cut <= at)
		return 0;
	uint64_t e = (cut - at) / esz + ((cut - at) % esz != 0);
	return e < numel ? e : numel;
}

void weld__part_ranges(const weld_plan *p, unsigned parts, unsigned part, uint64_t *begin, uint64_t *end,
		       uint64_t *src_bytes)
{
	/* Each tensor's source bytes were checked to fit when the plan was built, and their sum (src_bytes). */
	uint64_t total = 0, at = 0;
	for (size_t i = 0; i < p->nt; i++)
		total += p->t[i].numel * weld_dtype_size(p->t[i].src_dtype);
	uint64_t lo = cut_point(total, parts, part), hi = cut_point(total, parts, part + 1);
	*src_bytes = 0;
	for (size_t i = 0; i < p->nt; i++) {
		const weld_plan_tensor *t = &p->t[i];
		uint64_t esz = weld_dtype_size(t->src_dtype);
		begin[i] = cut_elem(lo, at, esz, t->numel);
		/* The last part takes everything to the end, empty tensors at the end included. */
		end[i] = part + 1 == parts ? t->numel : cut_elem(hi, at, esz, t->numel);
		*src_bytes += (end[i] - begin[i]) * esz;
		at += t->numel * esz;
	}
}
