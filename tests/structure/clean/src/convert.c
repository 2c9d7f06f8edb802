#include "weld.h"
#include "formats/ckpt.h"
#include "pipeline/plan.h"
#include "output/output_dir.h"

weld_status weld_convert(const char *input, const char *output_dir)
{
	weld_ckpt c;
	if (weld__ckpt_open(&c, input, 0))
		return 1;
	return weld__plan_build(&c, 1) + weld__output_write(output_dir);
}
