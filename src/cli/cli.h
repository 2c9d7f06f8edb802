/* The weld tool's shared pieces: exit codes, messages, option parsing. */
#ifndef WELD_CLI_H
#define WELD_CLI_H

#include "weld.h"

#include <stdbool.h>

/* Exit codes, documented in the README and in `weld --help`. */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,      /* conversion or check failed: bad input, I/O, checksum */
	EXIT_USAGE = 2,       /* bad command line */
	EXIT_NO_DEVICE = 3,   /* --device cuda without a usable GPU */
	EXIT_SIGINT = 130,
	EXIT_SIGTERM = 143
};

/* "weld: error: MESSAGE" on stderr; returns EXIT_FAILED. */
int cli_fail(const weld_error *err);
/* "weld: CMD: FMT" + "Try 'weld CMD --help'." on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;

/*
 * A declarative option table drives parsing. Flags set *flag = true; valued
 * options store the argument in *value ("--opt=V" or "--opt V").
 */
typedef struct cli_opt {
	const char *name;   /* long name without dashes */
	bool *flag;         /* for flags */
	const char **value; /* for options with an argument */
} cli_opt;

/*
 * Parse ARGV[1..] against OPTS; positional arguments go to POS (up to
 * MAXPOS, count in *NPOS). Returns 0, or EXIT_USAGE after printing the error.
 */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, const char **pos, int maxpos,
	      int *npos);

int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
