/* C entry points into the CUDA code; no CUDA types cross this line. */
#ifndef WELD_CUDA_BACKEND_H
#define WELD_CUDA_BACKEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Count usable devices. The runtime is linked statically and finds the
 * driver at run time, so this works (and says why not) on machines with no
 * NVIDIA driver at all. MESSAGE gets the reason when *DEVICES is 0.
 */
void weld__cuda_probe(int *devices, int *runtime_version, char *message, size_t message_len);

#ifdef __cplusplus
}
#endif

#endif
