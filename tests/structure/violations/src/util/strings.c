/* util/ includes only util/; a backend breaks two rules at once. */
#include "util/util.h"
#include "io/zip.h"
#include "backend/backend.h"
