#ifndef WELD_OUTPUT_DIR_H
#define WELD_OUTPUT_DIR_H
#include "pipeline/plan.h"
int weld__output_write(const char *dir);
#endif
