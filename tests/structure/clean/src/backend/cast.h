#ifndef WELD_CAST_H
#define WELD_CAST_H
static inline int weld__cast(int x) { return x; }
#endif
