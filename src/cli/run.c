/*
 * What `weld convert` and `weld batch` share: the conversion flags, progress
 * rendering for terminals and Slurm logs, signal handling, and the summary.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

void cli_install_signals(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int cli_signal(void)
{
	return got_signal;
}

int cli_signal_exit(void)
{
	fprintf(stderr, "weld: interrupted by %s; no output file was left behind\n",
		got_signal == SIGTERM ? "SIGTERM" : "SIGINT");
	return got_signal == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
}

double cli_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cli_on_progress(const weld_progress *p, void *payload)
{
	cli_progress *ps = payload;
	if (got_signal)
		return 1;
	if (ps->quiet)
		return 0;
	double t = cli_wall();
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
		/* Slurm logs: plain lines starting with the checkpoint, at most one every 10 s. */
		if (t - ps->last_print < 10.0)
			return 0;
		time_t now = time(NULL);
		char stamp[32];
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", localtime(&now));
		fprintf(stderr, "%s: %s %5.1f%% of %.2f GB written, %.2f GB/s, ETA %.0f s\n", ps->label, stamp, pct,
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

int cli_parse_count(const char *s, long min, long max, long *out)
{
	return parse_int(s, min, max, out);
}

int cli_convert_options(const char *cmd, const cli_convert_args *a, weld_convert_options *o)
{
	*o = (weld_convert_options)WELD_CONVERT_OPTIONS_INIT;
	if (a->pytorch_bin && a->safetensors)
		return cli_usage_error(cmd, "--pytorch-bin and --safetensors exclude each other");
	static const struct {
		const char *name;
		weld_out_dtype v;
	} dtypes[] = {{"bfloat16", WELD_OUT_BF16}, {"bf16", WELD_OUT_BF16}, {"float16", WELD_OUT_F16},
		      {"fp16", WELD_OUT_F16},      {"float32", WELD_OUT_F32}, {"fp32", WELD_OUT_F32},
		      {"keep", WELD_OUT_KEEP}};
	size_t i = 0;
	while (i < sizeof(dtypes) / sizeof(dtypes[0]) && strcmp(a->dtype, dtypes[i].name) != 0)
		i++;
	if (i == sizeof(dtypes) / sizeof(dtypes[0]))
		return cli_usage_error(cmd, "--dtype must be bfloat16, float16, float32 or keep, not '%s'", a->dtype);
	o->dtype = dtypes[i].v;
	if (strcmp(a->device, "auto") == 0)
		o->device = WELD_DEVICE_AUTO;
	else if (strcmp(a->device, "cpu") == 0)
		o->device = WELD_DEVICE_CPU;
	else if (strcmp(a->device, "cuda") == 0)
		o->device = WELD_DEVICE_CUDA;
	else
		return cli_usage_error(cmd, "--device must be auto, cpu or cuda, not '%s'", a->device);
	if (strcmp(a->type, "auto") == 0)
		o->type = WELD_INPUT_AUTO;
	else if (strcmp(a->type, "hf") == 0 || strcmp(a->type, "hf_sharded") == 0)
		o->type = WELD_INPUT_HF;
	else if (strcmp(a->type, "zero") == 0 || strcmp(a->type, "deepspeed") == 0)
		o->type = WELD_INPUT_ZERO;
	else
		return cli_usage_error(cmd, "--type must be auto, hf or zero, not '%s'", a->type);
	long v;
	const char *slurm = getenv("SLURM_CPUS_PER_TASK");
	if (a->threads) {
		if (parse_int(a->threads, 1, 4096, &v))
			return cli_usage_error(cmd, "--threads must be a number from 1 to 4096");
		o->threads = (int)v;
	} else if (slurm && parse_int(slurm, 1, 4096, &v) == 0) {
		o->threads = (int)v;
	}
	if (a->chunk) {
		if (parse_int(a->chunk, 4096, 1L << 30, &v))
			return cli_usage_error(cmd, "--chunk-bytes must be from 4096 to 1073741824");
		o->chunk_bytes = (size_t)v;
	}
	o->pytorch_bin = a->pytorch_bin;
	o->force = a->force;
	return 0;
}

const char *cli_human(char *buf, size_t cap, uint64_t n)
{
	/* Decimal units, as disk sizes are quoted. */
	if (n >= 1000000000ull)
		snprintf(buf, cap, "%.2f GB", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, cap, "%.1f MB", (double)n / 1e6);
	else
		snprintf(buf, cap, "%.1f kB", (double)n / 1e3);
	return buf;
}

double cli_peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

void cli_print_summary(const char *label, const weld_convert_result *r, double secs)
{
	char rd[32], wr[32], tied[64] = "";
	if (r->tied)
		snprintf(tied, sizeof(tied), " (+%zu tied alias%s written once)", r->tied, r->tied == 1 ? "" : "es");
	printf("%s: %zu tensors%s -> %s: read %s, wrote %s in %.2f s (%.2f GB/s), peak memory %.0f MB, %d thread%s%s%s%s\n",
	       label, r->tensors, tied, r->output_file, cli_human(rd, sizeof(rd), r->bytes_read),
	       cli_human(wr, sizeof(wr), r->bytes_written), secs,
	       secs > 0 ? (double)r->bytes_written / 1e9 / secs : 0.0, cli_peak_rss_mb(), r->threads,
	       r->threads == 1 ? "" : "s", r->stripped_prefix[0] ? ", stripped prefix '" : "", r->stripped_prefix,
	       r->stripped_prefix[0] ? "'" : "");
	if (r->fp16_overflows)
		printf("%s: %llu finite values overflowed to inf in the float16 cast\n", label,
		       (unsigned long long)r->fp16_overflows);
}
