/*
 * weld convert: one checkpoint to one servable folder, with progress for
 * terminals and for Slurm logs, and a one-line (or JSON) summary.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char convert_usage[] =
	"usage: weld convert --input PATH --output DIR [options]\n"
	"\n"
	"Weld a checkpoint (HF folder or file, or DeepSpeed checkpoint) into DIR:\n"
	"one model.safetensors, config.json with its dtype set, the tokenizer and\n"
	"other small files, and a weld.json manifest with CRC-32 checksums.\n"
	"\n"
	"  --input PATH        checkpoint file or folder\n"
	"  --output DIR        output folder (created if missing)\n"
	"  --dtype D           bfloat16 (default), float16, float32, or keep\n"
	"  --pytorch-bin       write pytorch_model.bin instead of model.safetensors\n"
	"  --safetensors       write model.safetensors (the default)\n"
	"  --device D          auto (default), cpu, or cuda\n"
	"  --type T            auto (default), hf, or zero (aliases: hf_sharded, deepspeed)\n"
	"  --threads N         CPU threads (default: $SLURM_CPUS_PER_TASK, else all cores)\n"
	"  --chunk-bytes N     output bytes per work unit (default 8388608)\n"
	"  --force             replace an existing output and remove stale weight files\n"
	"  --quiet             no progress and no summary\n"
	"  --json              print the summary as one JSON object on stdout\n"
	"  --help              this help\n";

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

typedef struct progress_state {
	bool tty, quiet;
	double last_print;
	const char *label;
} progress_state;

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_progress(const weld_progress *p, void *payload)
{
	progress_state *ps = payload;
	if (got_signal)
		return 1;
	if (ps->quiet)
		return 0;
	double t = wall();
	bool done = p->bytes_done >= p->bytes_total;
	double pct = p->bytes_total ? 100.0 * (double)p->bytes_done / (double)p->bytes_total : 100.0;
	double rate = p->seconds > 0 ? (double)p->bytes_done / p->seconds / 1e9 : 0;
	double eta = rate > 0 ? ((double)(p->bytes_total - p->bytes_done) / 1e9) / rate : 0;
	if (ps->tty) {
		if (t - ps->last_print < 0.125 && !done)
			return 0;
		int width = 30, fill = (int)(pct / 100.0 * width);
		fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %.2f GB/s ETA %3.0fs ", ps->label, fill,
			"##############################", width - fill, "", pct, rate, eta);
		if (done)
			fputc('\n', stderr);
	} else {
		/* Slurm logs: plain lines, at most one every 10 s. */
		if (t - ps->last_print < 10.0)
			return 0;
		time_t now = time(NULL);
		char stamp[32];
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", localtime(&now));
		fprintf(stderr, "%s %s: %5.1f%% of %.2f GB written, %.2f GB/s, ETA %.0f s\n", stamp, ps->label, pct,
			(double)p->bytes_total / 1e9, rate, eta);
	}
	fflush(stderr);
	ps->last_print = t;
	return 0;
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Decimal units, as disk sizes are quoted. */
static const char *human(char *buf, size_t cap, uint64_t n)
{
	if (n >= 1000000000ull)
		snprintf(buf, cap, "%.2f GB", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, cap, "%.1f MB", (double)n / 1e6);
	else
		snprintf(buf, cap, "%.1f kB", (double)n / 1e3);
	return buf;
}

static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

static void print_json(const weld_convert_result *r, const char *input, const char *output, double seconds)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "input", input);
	cJSON_AddStringToObject(o, "output", output);
	cJSON_AddStringToObject(o, "weights", r->output_file);
	cJSON_AddNumberToObject(o, "tensors", (double)r->tensors);
	cJSON_AddNumberToObject(o, "tied", (double)r->tied);
	cJSON_AddNumberToObject(o, "bytes_read", (double)r->bytes_read);
	cJSON_AddNumberToObject(o, "bytes_written", (double)r->bytes_written);
	cJSON_AddNumberToObject(o, "crc32", (double)r->file_crc32);
	cJSON_AddNumberToObject(o, "fp16_overflows", (double)r->fp16_overflows);
	cJSON_AddNumberToObject(o, "seconds", seconds);
	cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_mb());
	cJSON_AddNumberToObject(o, "threads", r->threads);
	cJSON_AddStringToObject(o, "backend", r->backend);
	cJSON_AddStringToObject(o, "stripped_prefix", r->stripped_prefix);
	char *text = cJSON_PrintUnformatted(o);
	if (text)
		puts(text);
	free(text);
	cJSON_Delete(o);
}

int cmd_convert(int argc, char **argv)
{
	bool pytorch_bin = false, safetensors = false, force = false, quiet = false, json = false, help = false;
	const char *input = NULL, *output = NULL, *dtype = "bfloat16", *device = "auto", *type = "auto";
	const char *threads = NULL, *chunk = NULL;
	const cli_opt opts[] = {
		{"input", NULL, &input},      {"output", NULL, &output},     {"dtype", NULL, &dtype},
		{"device", NULL, &device},    {"type", NULL, &type},         {"threads", NULL, &threads},
		{"chunk-bytes", NULL, &chunk}, {"pytorch-bin", &pytorch_bin, NULL},
		{"safetensors", &safetensors, NULL}, {"force", &force, NULL}, {"quiet", &quiet, NULL},
		{"json", &json, NULL},        {"help", &help, NULL},        {NULL, NULL, NULL}};
	const char *pos[1];
	int npos, rc = cli_parse("convert", argc, argv, opts, pos, 0, &npos);
	if (rc)
		return rc;
	if (help) {
		fputs(convert_usage, stdout);
		return EXIT_OK;
	}
	if (!input || !output)
		return cli_usage_error("convert", "needs --input PATH and --output DIR");
	if (pytorch_bin && safetensors)
		return cli_usage_error("convert", "--pytorch-bin and --safetensors exclude each other");

	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	if (strcmp(dtype, "bfloat16") == 0 || strcmp(dtype, "bf16") == 0)
		o.dtype = WELD_OUT_BF16;
	else if (strcmp(dtype, "float16") == 0 || strcmp(dtype, "fp16") == 0)
		o.dtype = WELD_OUT_F16;
	else if (strcmp(dtype, "float32") == 0 || strcmp(dtype, "fp32") == 0)
		o.dtype = WELD_OUT_F32;
	else if (strcmp(dtype, "keep") == 0)
		o.dtype = WELD_OUT_KEEP;
	else
		return cli_usage_error("convert", "--dtype must be bfloat16, float16, float32 or keep, not '%s'", dtype);
	if (strcmp(device, "auto") == 0)
		o.device = WELD_DEVICE_AUTO;
	else if (strcmp(device, "cpu") == 0)
		o.device = WELD_DEVICE_CPU;
	else if (strcmp(device, "cuda") == 0)
		o.device = WELD_DEVICE_CUDA;
	else
		return cli_usage_error("convert", "--device must be auto, cpu or cuda, not '%s'", device);
	if (strcmp(type, "auto") == 0)
		o.type = WELD_INPUT_AUTO;
	else if (strcmp(type, "hf") == 0 || strcmp(type, "hf_sharded") == 0)
		o.type = WELD_INPUT_HF;
	else if (strcmp(type, "zero") == 0 || strcmp(type, "deepspeed") == 0)
		o.type = WELD_INPUT_ZERO;
	else
		return cli_usage_error("convert", "--type must be auto, hf or zero, not '%s'", type);
	long v;
	const char *slurm = getenv("SLURM_CPUS_PER_TASK");
	if (threads) {
		if (parse_int(threads, 1, 4096, &v))
			return cli_usage_error("convert", "--threads must be a number from 1 to 4096");
		o.threads = (int)v;
	} else if (slurm && parse_int(slurm, 1, 4096, &v) == 0) {
		o.threads = (int)v;
	}
	if (chunk) {
		if (parse_int(chunk, 4096, 1L << 30, &v))
			return cli_usage_error("convert", "--chunk-bytes must be from 4096 to 1073741824");
		o.chunk_bytes = (size_t)v;
	}
	o.pytorch_bin = pytorch_bin;
	o.force = force;

	progress_state ps = {.tty = isatty(STDERR_FILENO), .quiet = quiet, .label = "weld", .last_print = wall()};
	o.progress = on_progress;
	o.payload = &ps;
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	double t0 = wall();
	weld_convert_result r;
	weld_error err = {0};
	weld_status s = weld_convert(input, output, &o, &r, &err);
	double secs = wall() - t0;
	if (s == WELD_ERR_CANCELLED || got_signal) {
		fprintf(stderr, "weld: interrupted by %s; no output file was left behind\n",
			got_signal == SIGTERM ? "SIGTERM" : "SIGINT");
		return got_signal == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
	}
	if (s) {
		cli_fail(&err);
		return s == WELD_ERR_BACKEND ? EXIT_NO_DEVICE : EXIT_FAILED;
	}
	if (r.notice[0] && !quiet)
		fprintf(stderr, "weld: %s\n", r.notice);
	if (json) {
		print_json(&r, input, output, secs);
	} else if (!quiet) {
		char rd[32], wr[32], tied[64] = "";
		if (r.tied)
			snprintf(tied, sizeof(tied), " (+%zu tied alias%s written once)", r.tied, r.tied == 1 ? "" : "es");
		printf("weld: %zu tensors%s -> %s: read %s, wrote %s in %.2f s (%.2f GB/s), peak memory %.0f MB, %d thread%s%s%s%s\n",
		       r.tensors, tied, r.output_file, human(rd, sizeof(rd), r.bytes_read),
		       human(wr, sizeof(wr), r.bytes_written), secs,
		       secs > 0 ? (double)r.bytes_written / 1e9 / secs : 0.0, peak_rss_mb(), r.threads,
		       r.threads == 1 ? "" : "s", r.stripped_prefix[0] ? ", stripped prefix '" : "",
		       r.stripped_prefix, r.stripped_prefix[0] ? "'" : "");
		if (r.fp16_overflows)
			printf("weld: %llu finite values overflowed to inf in the float16 cast\n",
			       (unsigned long long)r.fp16_overflows);
	}
	return EXIT_OK;
}
