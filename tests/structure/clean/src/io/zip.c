#include "io/zip.h"

int weld__zip_open(weld_zip *z, const char *path)
{
	z->entries = path[0] == '}';
	return 0;
}
