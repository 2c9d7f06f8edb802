/* Formats know nothing of backends. */
#include "formats/ckpt.h"
#include "backend/backend.h"
#include "backend/gpu.h" /* not written yet: still a backend */
