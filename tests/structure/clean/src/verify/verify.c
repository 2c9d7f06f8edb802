#include "backend/backend.h"
#include "formats/ckpt.h"
#include "output/output_dir.h"

int weld__verify(const char *dir)
{
	return weld__output_write(dir) + weld__backend_open(0);
}
