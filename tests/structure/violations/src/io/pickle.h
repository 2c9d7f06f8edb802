#ifndef WELD_PICKLE_H
#define WELD_PICKLE_H
#include "util/util.h"
#endif
