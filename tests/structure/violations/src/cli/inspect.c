/* The tool sees the public API only. */
#include "cli.h"
#include "options.h" /* not written yet: src/cli/options.h */
#include "formats/ckpt.h"
