/*
 * weld: the command-line tool. Dispatches to one function per command; only
 * this layer prints and maps library statuses to exit codes.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: weld COMMAND [OPTIONS]\n"
	"\n"
	"Weld a training checkpoint into one servable model.safetensors.\n"
	"\n"
	"commands:\n"
	"  convert --input PATH --output DIR [options]\n"
	"                          weld a checkpoint into one servable model folder\n"
	"  batch --input-dir RUN --output-dir OUT [options]\n"
	"                          convert the checkpoints of a run (Slurm array jobs too)\n"
	"  inspect PATH [--json]   show the format and tensors of a checkpoint file or folder\n"
	"  verify DIR [--against SOURCE] [--json]\n"
	"                          check an output folder is intact and servable\n"
	"\n"
	"options:\n"
	"  -h, --help              this help; `weld COMMAND --help` for a command's\n"
	"  -V, --version           version and build information\n"
	"\n"
	"exit codes: 0 success, 1 failure (bad input, I/O, checksum), 2 usage error,\n"
	"            3 --device cuda without a usable GPU, 130 SIGINT, 143 SIGTERM\n";

int cli_fail(const weld_error *err)
{
	fprintf(stderr, "weld: error: %s\n", err->message[0] ? err->message : weld_status_str(err->status));
	return EXIT_FAILED;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "weld: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'weld %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, const char **pos, int maxpos,
	      int *npos)
{
	*npos = 0;
	bool only_positional = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (*npos == maxpos)
				return cli_usage_error(cmd, "unexpected argument '%s'", a);
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (a[1] != '-')
			return cli_usage_error(cmd, "unknown option '%s'", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const cli_opt *o = NULL;
		for (const cli_opt *p = opts; p->name && !o; p++)
			if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0)
				o = p;
		if (!o)
			return cli_usage_error(cmd, "unknown option '--%.*s'", (int)nlen, name);
		if (o->flag) {
			if (eq)
				return cli_usage_error(cmd, "option '--%s' takes no value", o->name);
			*o->flag = true;
		} else if (eq) {
			*o->value = eq + 1;
		} else if (i + 1 < argc) {
			*o->value = argv[++i];
		} else {
			return cli_usage_error(cmd, "option '--%s' needs a value", o->name);
		}
	}
	return 0;
}

static int print_version(void)
{
	weld_cuda_info cuda;
	weld_cuda_probe(&cuda);
	printf("weld %s (cuda backend: ", weld_version());
	if (!cuda.built)
		printf("not built)\n");
	else if (cuda.devices)
		printf("built with CUDA %d.%d, %d device%s)\n", cuda.runtime_version / 1000,
		       cuda.runtime_version % 1000 / 10, cuda.devices, cuda.devices == 1 ? "" : "s");
	else
		printf("built with CUDA %d.%d, no usable device: %s)\n", cuda.runtime_version / 1000,
		       cuda.runtime_version % 1000 / 10, cuda.message);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0)
		return print_version();
	if (strcmp(cmd, "inspect") == 0)
		return cmd_inspect(argc - 1, argv + 1);
	if (strcmp(cmd, "convert") == 0)
		return cmd_convert(argc - 1, argv + 1);
	if (strcmp(cmd, "batch") == 0)
		return cmd_batch(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return cli_usage_error(NULL, "unknown option '%s'", cmd);
	return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
