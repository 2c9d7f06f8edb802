#ifndef WELD_BACKEND_H
#define WELD_BACKEND_H
#include "util/util.h"
int weld__backend_open(int gpu);
#endif
