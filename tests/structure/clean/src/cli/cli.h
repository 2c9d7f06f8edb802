#ifndef WELD_CLI_H
#define WELD_CLI_H
#include "weld.h"
int cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;
#endif
