#ifndef WELD_TORCH_H
#define WELD_TORCH_H
#include "io/zip.h"
#include "io/pickle.h"
#endif
