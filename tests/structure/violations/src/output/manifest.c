/* Only src/cli/ includes src/cli/. */
#include "output/output_dir.h"
#include "cli/cli.h"
