/*
 * weld: the command-line tool. Dispatches to one function per command (one
 * file each); only this layer prints and maps library statuses to exit codes.
 */
#include "cli.h"

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
