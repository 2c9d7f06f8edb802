/*
 * weld: the command-line tool. Dispatches to one function per command (one
 * file each); only this layer prints and maps library statuses to exit codes.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

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
	"  watch --input-dir RUN --output-dir OUT [options]\n"
	"                          convert each checkpoint of a running training job as it completes\n"
	"  inspect PATH [--json]   show the format and tensors of a checkpoint file or folder\n"
	"  scan PATH... [--json]   list the globals pickles reference; safe, unsafe or malformed\n"
	"  verify DIR [--against SOURCE] [--json]\n"
	"                          check an output folder is intact and servable\n"
	"\n"
	"options:\n"
	"  -h, --help              this help; `weld COMMAND --help` for a command's\n"
	"  -V, --version           version and build information\n"
	"  weld help COMMAND       the same as `weld COMMAND --help`\n" CLI_EXIT_CODES_HELP;

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

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {{"convert", cmd_convert}, {"batch", cmd_batch}, {"watch", cmd_watch},
		{"inspect", cmd_inspect}, {"verify", cmd_verify}, {"scan", cmd_scan}};

static int (*find_command(const char *name))(int, char **)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return commands[i].run;
	return NULL;
}

/* `weld help [COMMAND]`: the top-level help, or COMMAND's own --help. */
static int help(int argc, char **argv)
{
	if (argc < 3) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	int (*run)(int, char **) = find_command(argv[2]);
	if (!run || argc > 3)
		return cli_usage_error(NULL, argc > 3 ? "help takes one command" : "no command '%s'", argv[2]);
	char *sub[] = {argv[2], "--help", NULL};
	return run(2, sub);
}

/*
 * The soft limit on open files raised to the hard one. The library keeps
 * its input files' descriptors within whatever the limit is (closing and
 * reopening them as needed), but a ZeRO-3 checkpoint of W ranks has 2W
 * files, and with all of them open each is opened once. The tool does this,
 * not the library: a process embedding libweld may rely on its soft limit
 * (select(2) cannot watch descriptors past 1024, which is why systemd and
 * many clusters leave it there), so only a program sets its own.
 */
static void raise_open_files_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl); /* a failure leaves the limit as it was, which still works */
	}
}

/*
 * Planning a ZeRO-3 checkpoint parses one pickle per rank, each into blocks
 * that are freed before the next: with glibc's defaults those blocks are
 * mapped and unmapped (or trimmed) every time, and at 8192 ranks the page
 * faults cost three times the parsing (56 s instead of 10 s for a
 * 405B-shaped plan). Keeping freed memory for reuse costs no peak memory,
 * which is what the last rank's parse needs anyway. Like the open-files
 * limit, this is the program's to set, not the library's.
 */
static void keep_freed_memory(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

int main(int argc, char **argv)
{
	raise_open_files_limit();
	keep_freed_memory();
	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "help") == 0)
		return help(argc, argv);
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0)
		return print_version();
	int (*run)(int, char **) = find_command(cmd);
	if (run)
		return run(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return cli_usage_error(NULL, "unknown option '%s'", cmd);
	return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
