/*
 * weld convert: one checkpoint to one servable folder, with progress for
 * terminals and for Slurm logs, and a one-line (or JSON) summary.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static const char convert_usage[] =
	"usage: weld convert --input PATH --output DIR [options]\n"
	"\n"
	"Weld a checkpoint (HF folder or file, DeepSpeed checkpoint, or PyTorch\n"
	"Distributed Checkpoint: FSDP, FSDP2, torchtitan) into DIR:\n"
	"one model.safetensors, config.json with its dtype set, the tokenizer and\n"
	"other small files, and a weld.json manifest with CRC-32 checksums.\n"
	"\n"
	"  --input PATH        checkpoint file or folder\n"
	"  --output DIR        output folder (created if missing)\n"
	CLI_DTYPE_HELP
	"  --pytorch-bin       write pytorch_model.bin instead of model.safetensors\n"
	"  --safetensors       write model.safetensors (the default)\n"
	"  --max-shard-size S  shards and index exactly as transformers' save_pretrained(\n"
	"                      max_shard_size=S) writes them: S is 5GB, 500MB, 0.5KB (TB,\n"
	"                      GB, MB, KB: powers of 1000; KiB, GiB are refused) or a\n"
	"                      number of bytes; a model that fits is one model.safetensors\n"
	"  --device D          auto (default), cpu, or cuda\n"
	"  --type T            auto (default), hf, zero or dcp (aliases: hf_sharded,\n"
	"                      deepspeed, fsdp); auto reads a DeepSpeed tag's fp32 masters,\n"
	"                      then a DCP's, before HF weights in the same folder, and\n"
	"                      safetensors before .bin\n"
	"  --threads N         CPU threads (default: $SLURM_CPUS_PER_TASK, else all cores)\n"
	"  --chunk-bytes N     output bytes per work unit (default 8388608)\n"
	"  --cross-check M     warn (default), error or off: what to do when the HF 16-bit\n"
	"                      weights an HF Trainer saves beside DeepSpeed's fp32 masters\n"
	"                      are not the masters cast to the output dtype\n"
	"  --force             replace an existing output folder whole\n"
	"  --side-files DIR    copy config.json, tokenizer and other small files from DIR\n"
	"                      instead of the input's folder (an HF Trainer FSDP checkpoint\n"
	"                      holds none: give the base model's folder)\n"
	"  --allow-global M.N  accept the class M.N in pickles as inert data, never called,\n"
	"                      besides weld's allowlist (repeatable): for a class you trust\n"
	"  --parts K           run the conversion as K processes at once (Slurm tasks on\n"
	"                      several nodes), each reading about 1/K of the bytes; the\n"
	"                      last to finish publishes (default: $SLURM_NTASKS when\n"
	"                      over 1; --parts 1 runs everything in this process)\n"
	"  --part I            this process's part, 0 to K-1 (default: $SLURM_PROCID)\n"
	"  --finish            publish the unfinished multi-part conversion into --output\n"
	"                      once all its parts are recorded (no --input: the job's own)\n"
	"  --dry-run           plan only: print what would be read (by kind of file) and\n"
	"                      written, the tensor count and the plan's memory; write nothing\n"
	"  --quiet             no progress and no summary\n"
	"  --json              the summary as one JSON object on stdout (progress and\n"
	"                      notes stay on stderr; without --json stdout is empty)\n"
	"  --help              this help\n" CLI_EXIT_CODES_HELP;

/*
 * --parts and --part, else Slurm's task count and rank when a step runs
 * more than one task: O's parts and part. The library reads no environment.
 */
static int take_parts(const char *parts, const char *part, weld_convert_options *o)
{
	const char *ntasks = getenv("SLURM_NTASKS"), *procid = getenv("SLURM_PROCID");
	long k = 0, i = 0;
	if (part && !parts)
		return cli_usage_error("convert", "--part needs --parts");
	if (parts && cli_parse_count(parts, 1, 4096, &k))
		return cli_usage_error("convert", "--parts must be a number from 1 to 4096");
	if (!parts && (!ntasks || cli_parse_count(ntasks, 2, 4096, &k)))
		return 0; /* no Slurm step of several tasks: one process */
	if (k == 1)
		return 0;
	const char *which = part ? part : procid;
	if (!which)
		return cli_usage_error("convert", "--parts %ld needs --part I (0 to %ld)", k, k - 1);
	if (cli_parse_count(which, 0, k - 1, &i))
		return cli_usage_error("convert", "%s must be a number from 0 to %ld, not '%s'",
				       part ? "--part" : "$SLURM_PROCID", k - 1, which);
	o->parts = (unsigned)k;
	o->part = (unsigned)i;
	return 0;
}

static int print_json(const weld_convert_result *r, const char *input, const char *output, double seconds, bool dry)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "dry_run", dry);
	cJSON_AddStringToObject(o, "input", input);
	cJSON_AddStringToObject(o, "output", output);
	cJSON_AddStringToObject(o, "weights", r->output_file);
	cli_add_u64(o, "tensors", r->tensors);
	cli_add_u64(o, "tied", r->tied);
	cli_add_u64(o, "bytes_read", r->bytes_read);
	cli_add_u64(o, "bytes_written", r->bytes_written);
	cli_add_u64(o, "crc32", r->file_crc32);
	cli_add_u64(o, "fp16_overflows", r->fp16_overflows);
	cJSON_AddNumberToObject(o, "seconds", seconds);
	cJSON_AddNumberToObject(o, "peak_rss_mb", cli_peak_rss_mb());
	cJSON_AddNumberToObject(o, "threads", r->threads);
	cJSON_AddStringToObject(o, "backend", r->backend);
	cJSON_AddStringToObject(o, "stripped_prefix", r->stripped_prefix);
	cJSON_AddStringToObject(o, "format", r->format);
	cJSON_AddStringToObject(o, "format_detail", r->format_detail);
	cli_add_u64(o, "bytes_to_read", r->bytes_to_read);
	cJSON_AddStringToObject(o, "notice", r->notice);
	cJSON_AddStringToObject(o, "source_choice", r->source_choice);
	cJSON_AddItemToObject(o, "cross_check", cli_cross_check_json(&r->cross_check));
	cJSON_AddItemToObject(o, "reads", cli_reads_json(r));
	cli_add_u64(o, "plan_bytes", r->plan_bytes);
	return cli_print_json(o);
}

int cmd_convert(int argc, char **argv)
{
	bool quiet = false, json = false, dry = false, finish = false;
	const char *input = NULL, *output = NULL, *parts = NULL, *part = NULL;
	cli_convert_args a = CLI_CONVERT_ARGS_INIT;
	const cli_opt opts[] = {{"input", NULL, &input}, {"output", NULL, &output}, CLI_CONVERT_OPTS(a),
				{"quiet", &quiet, NULL}, {"json", &json, NULL},      {"dry-run", &dry, NULL},
				{"parts", NULL, &parts},    {"part", NULL, &part},       {"finish", &finish, NULL},
				{NULL, NULL, NULL}};
	const cli_command cmd = {"convert", convert_usage, opts, NULL};
	cli_repeated allow = {.name = "allow-global"};
	int nrest = cli_take_repeated("convert", argc, argv, &allow);
	if (nrest < 0)
		return EXIT_USAGE;
	int rc = cli_parse(&cmd, nrest, argv, NULL);
	if (rc != CLI_PARSED)
		return rc;
	if (finish && (input || parts || part || dry))
		return cli_usage_error("convert", "--finish takes only --output DIR (and how to run: --threads, --device)");
	if (finish && !output)
		return cli_usage_error("convert", "--finish needs --output DIR");
	if (!finish && (!input || !output))
		return cli_usage_error("convert", "needs --input PATH and --output DIR");
	weld_convert_options o;
	if ((rc = cli_convert_options("convert", &a, &o)) || (!finish && !dry && (rc = take_parts(parts, part, &o))))
		return rc;
	cli_progress ps = cli_progress_start("weld", quiet);
	ps.input = finish ? output : input;
	ps.dtype = cli_dtype_word(o.dtype);
	o.progress = cli_on_progress;
	o.start = cli_on_start;
	o.payload = &ps;
	o.dry_run = dry;
	o.allow_globals = allow.items;
	o.nallow_globals = allow.n;
	cli_install_signals();

	double t0 = cli_wall();
	weld_convert_result r;
	weld_error err = {0};
	weld_status s = finish ? weld_convert_finish(output, &o, &r, &err) : weld_convert(input, output, &o, &r, &err);
	double secs = cli_wall() - t0;
	/* A signal after the publish is too late to undo anything: the output is complete. */
	if (s == WELD_ERR_CANCELLED || (s && cli_signal()))
		return cli_signal_exit();
	if (s)
		return cli_fail_status(s, &err);
	if (dry && !json)
		cli_print_plan(&r, input);
	else if (!quiet && !dry)
		cli_print_summary("weld", &r, secs, &ps);
	return json ? print_json(&r, finish ? "" : input, output, secs, dry) : EXIT_OK;
}
