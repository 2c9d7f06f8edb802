#ifndef WELD_CUDA_BACKEND_H
#define WELD_CUDA_BACKEND_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
int weld__cuda_open(int device);
#ifdef __cplusplus
}
#endif
#endif
