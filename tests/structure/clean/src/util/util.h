#ifndef WELD_UTIL_H
#define WELD_UTIL_H
#include "weld.h"
const char *weld__brace(int i);
#endif
