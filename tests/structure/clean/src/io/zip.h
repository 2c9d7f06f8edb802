#ifndef WELD_ZIP_H
#define WELD_ZIP_H
#include "util/util.h"
typedef struct weld_zip { int entries; } weld_zip;
int weld__zip_open(weld_zip *z, const char *path);
#endif
