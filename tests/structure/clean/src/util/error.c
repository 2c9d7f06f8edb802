/* Braces in comments { and in literals must not count. */
#include <stdio.h>

#include "util/util.h"

static const char *const braces[] = { "{", "}}", "\"{\"" };

const char *weld__brace(int i)
{
	char open = '{', close = '}', quote = '\'';
	(void)open, (void)close, (void)quote;
	/* } */
	// }
	return braces[i % 3];
}
