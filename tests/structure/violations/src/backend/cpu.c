/* Backends know nothing of formats. */
#include "backend/backend.h"
#include "formats/ckpt.h"
