/* The weld tool's shared pieces: exit codes, messages, option parsing, progress. */
#ifndef WELD_CLI_H
#define WELD_CLI_H

#include "weld.h"

#include <stdbool.h>

struct cJSON;

/* Exit codes, documented in the README and in `weld --help`. */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,      /* conversion or check failed: bad input, I/O, checksum */
	EXIT_USAGE = 2,       /* bad command line */
	EXIT_NO_DEVICE = 3,   /* --device cuda without a usable GPU */
	EXIT_SIGINT = 130,
	EXIT_SIGTERM = 143
};

/* The end of every --help: what the exit codes mean (verify words its own 0 and 1). */
#define CLI_EXIT_CODES_HELP                                                                      \
	"\n"                                                                                        \
	"exit codes: 0 success, 1 failure (bad or unsupported input, I/O, checksum),\n"             \
	"            2 usage error (also: two checkpoints would share one output),\n"             \
	"            3 --device cuda without a usable GPU, 130 SIGINT, 143 SIGTERM\n"

/* --dtype's line in convert's and batch's --help. */
#define CLI_DTYPE_HELP                                                                           \
	"  --dtype D           bfloat16 (default; alias bf16), float16 (fp16), float32 (fp32),\n"   \
	"                      or keep (every tensor keeps its dtype)\n"

/* ---- output.c: messages and JSON -------------------------------------------- */

/* ERR's message, or its status's name when the message is empty. */
const char *cli_error_text(const weld_error *err);
/* "weld: error: MESSAGE" on stderr; returns EXIT_FAILED. */
int cli_fail(const weld_error *err);
/* Like cli_fail, but EXIT_NO_DEVICE when S is a backend error (--device cuda without a GPU). */
int cli_fail_status(weld_status s, const weld_error *err);
/* "weld: error: out of memory" on stderr; returns EXIT_FAILED. */
int cli_oom(void);
/* "weld: CMD: FMT" + "Try 'weld CMD --help'." on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
/* The cross-check as a JSON object (as weld.json records it). */
struct cJSON *cli_cross_check_json(const weld_cross_check *x);
/*
 * V as an exact JSON integer (a cJSON raw decimal): a cJSON number is a
 * double, which prints 2^53 + 1 as 9.00719925474099e+15. NULL when out of
 * memory.
 */
struct cJSON *cli_json_u64(uint64_t v);
/* V under KEY of object O (cli_json_u64); false when out of memory. */
bool cli_add_u64(struct cJSON *o, const char *key, uint64_t v);
/* Print O unformatted on one line of stdout and delete it; EXIT_OK, or cli_oom()'s code. */
int cli_print_json(struct cJSON *o);

/* ---- options.c: the command line ------------------------------------------- */

/*
 * A declarative option table drives parsing. Flags set *flag = true; valued
 * options store the argument in *value ("--opt=V" or "--opt V").
 */
typedef struct cli_opt {
	const char *name;   /* long name without dashes */
	bool *flag;         /* for flags */
	const char **value; /* for options with an argument */
} cli_opt;

/* A command as the parser sees it. Every command takes --help, which prints USAGE. */
typedef struct cli_command {
	const char *name;    /* "convert", for messages */
	const char *usage;   /* the --help text */
	const cli_opt *opts; /* ends with {NULL, NULL, NULL} */
	const char *arg;     /* its one positional argument ("PATH"), or NULL for none */
} cli_command;

/* cli_parse's "go on": any other result is the exit code to return. */
#define CLI_PARSED (-1)

/*
 * Parse ARGV[1..] against CMD's options; the positional argument, when CMD
 * takes one, goes to *ARG. Returns CLI_PARSED; EXIT_OK after printing the
 * usage for --help; or EXIT_USAGE after printing the error.
 */
int cli_parse(const cli_command *cmd, int argc, char **argv, const char **arg);

/* An option given any number of times (--checkpoint-filter, --allow-global). */
#define CLI_REPEATED_MAX 64
typedef struct cli_repeated {
	const char *name; /* without dashes */
	const char *items[CLI_REPEATED_MAX];
	size_t n;
} cli_repeated;
/*
 * Every --NAME V and --NAME=V of ARGV[0..ARGC) into R, before the table parse
 * sees them, the other arguments moved down in ARGV (ours to change, C11
 * 5.1.2.2.1). The count of arguments left, or -1 after a usage error.
 */
int cli_take_repeated(const char *cmd, int argc, char **argv, cli_repeated *r);

/* A whole decimal number in [MIN, MAX] into *OUT: 0, or -1 when S is not one. */
int cli_parse_count(const char *s, long min, long max, long *out);
/* --device auto|cpu|cuda into *OUT: 0, or EXIT_USAGE after a message. */
int cli_parse_device(const char *cmd, const char *s, weld_device *out);

/* The conversion flags convert and batch share, as given on the command line. */
typedef struct cli_convert_args {
	const char *dtype, *device, *type, *threads, *chunk, *cross_check, *side_files, *max_shard_size;
	bool pytorch_bin, safetensors, force;
} cli_convert_args;

#define CLI_CONVERT_ARGS_INIT {"bfloat16", "auto", "auto", NULL, NULL, "warn", NULL, NULL, false, false, false}
/* cli_opt entries for every field of A, to splice into a command's table. */
#define CLI_CONVERT_OPTS(a)                                                                       \
	{"dtype", NULL, &(a).dtype}, {"device", NULL, &(a).device}, {"type", NULL, &(a).type},        \
	{"threads", NULL, &(a).threads}, {"chunk-bytes", NULL, &(a).chunk},                           \
	{"cross-check", NULL, &(a).cross_check}, {"side-files", NULL, &(a).side_files},               \
	{"max-shard-size", NULL, &(a).max_shard_size},                                                \
	{"pytorch-bin", &(a).pytorch_bin, NULL}, {"safetensors", &(a).safetensors, NULL},             \
	{"force", &(a).force, NULL}

/* What the first line writes after "to write as": "bfloat16", ..., or "stored dtypes" for keep. */
const char *cli_dtype_word(weld_out_dtype d);
/* Fill O from A (threads default to $SLURM_CPUS_PER_TASK); 0 or EXIT_USAGE after a message. */
int cli_convert_options(const char *cmd, const cli_convert_args *a, weld_convert_options *o);

/* ---- progress.c: what a running conversion shows ----------------------------- */

/* Progress on stderr: a redrawn bar on a terminal, plain lines every 10 s otherwise. */
typedef struct cli_progress {
	bool tty, quiet;
	double last_print;
	const char *label;
	const char *input, *dtype; /* for the first line */
	size_t notice_shown;       /* how much of the result's notice the first line showed */
} cli_progress;
/* A progress state for LABEL on stderr, its clock started now. */
cli_progress cli_progress_start(const char *label, bool quiet);
int cli_on_progress(const weld_progress *p, void *payload); /* nonzero after SIGINT/SIGTERM */
/*
 * weld_convert's start callback: the first line (input, format, tensors,
 * bytes to read and write, output, backend) and the notice so far, before
 * any data moves, so that even a short Slurm log says what ran.
 */
void cli_on_start(const weld_convert_result *planned, void *payload);
void cli_install_signals(void);
int cli_signal(void);      /* the signal received, or 0 */
int cli_signal_exit(void); /* says so on stderr; returns 130 or 143 */
double cli_wall(void);
const char *cli_human(char *buf, size_t cap, uint64_t n);
double cli_peak_rss_mb(void);
/*
 * The end of a conversion on stderr: the summary line, the cross-check, and
 * the notices the first line did not show (PS may be NULL: all of them).
 */
void cli_print_summary(const char *label, const weld_convert_result *r, double secs, const cli_progress *ps);

struct ckpt_entry;
/*
 * weld_convert of C's checkpoint into OUT with options O, its start line,
 * progress (labelled with C's folder name, cancelled by SIGINT/SIGTERM) and,
 * unless QUIET or a dry run, its summary on stderr.
 */
weld_status cli_convert_logged(const struct ckpt_entry *c, const char *out, const weld_convert_options *o, bool quiet,
			       weld_convert_result *r, weld_error *err);

/* ---- dryrun.c: weld convert --dry-run ------------------------------------------ */

/* The plan in R (a dry run's result) on stdout: input, reads by kind of file, the write, the plan's memory. */
void cli_print_plan(const weld_convert_result *r, const char *input);
/* R's reads by kind of file as a JSON array. */
struct cJSON *cli_reads_json(const weld_convert_result *r);

/* ---- runs.c: the checkpoints of a training run (weld batch) ----------------- */

struct ckpt_entry {
	char *dir;  /* input path */
	char *base; /* folder name */
	long step;  /* -1 when the name means none (only checkpoint-N, global_stepN, step_N, ...) */
};
typedef struct ckpt_entry ckpt_entry;

/*
 * The checkpoint folders in RUN whose names match one of the FILTERS (any
 * when there are none), sorted by step, those without one last by name, into
 * *OUT (*N of them). 0, or EXIT_FAILED after a message: never a partial list.
 */
int cli_find_checkpoints(const char *run, const char *const *filters, size_t nfilters, ckpt_entry **out,
			 size_t *n);
void cli_free_checkpoints(ckpt_entry *list, size_t n);
/* The step a folder's NAME gives (checkpoint-N, global_stepN, step_N, step-N, iter_N), or -1. */
long cli_step_of(const char *name);
/* RUN's folder name, trailing slashes dropped, in BUF (CAP bytes): the default output name. */
const char *cli_run_name(const char *run, char *buf, size_t cap);
/*
 * OUTDIR/NAME_step_N, or OUTDIR/NAME_FOLDER for a checkpoint without a step,
 * in BUF (NAME_... alone when OUTDIR is NULL: --count needs none); -1 when
 * too long. Batch and watch name outputs alike, so either resumes the other.
 */
int cli_output_path(char *buf, size_t cap, const char *outdir, const char *name, const ckpt_entry *c);
/*
 * Whether OUT verifies against its weld.json and was made from C's checkpoint
 * (--skip-existing); when an output is there that does not, says why on
 * stderr unless QUIET.
 */
bool cli_output_verifies(const ckpt_entry *c, const char *out, bool quiet);

/* ---- one file per command ----------------------------------------------------- */

int cmd_inspect(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);

#endif
