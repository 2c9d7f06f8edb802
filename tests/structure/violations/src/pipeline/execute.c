/* Only src/backend/ includes cuda/. */
#include "pipeline/plan.h"
#include "cuda/cuda_backend.h"
