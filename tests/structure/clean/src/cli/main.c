/* The tool sees the public API only; this comment's
 * #include "formats/ckpt.h" is not an include. */
#include <stdio.h>

#include "cli.h"
#include "weld.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: weld IN OUT }\n");
		return 2;
	}
	return weld_convert(argv[1], argv[2]) ? 1 : 0;
}
