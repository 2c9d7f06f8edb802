#ifndef WELD_PLAN_H
#define WELD_PLAN_H
#include "formats/ckpt.h"
int weld__plan_build(const weld_ckpt *c, int threads);
#endif
